/* spool.c - ghostd's default image directory on a tmpfs of huge pages
 * (spool.h says why and when).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "util/cleanup.h"

/* 0711: users pass through to their own uid-N directory, list nothing. */
#define S_MODE 0711
#define S_OPTS "mode=0711"
/* The tmpfs's source name: how a later ghostd knows the mount for its own. */
#define S_SOURCE "cairn-ghost"

/* Is path the root of a mount? -errno if it cannot be told. */
static int s_is_mount_root(const char *path)
{
    struct statx sx;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) < 0)
        return -errno;
    if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
        return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    /* Kernels before 5.8: a mount root sits on another device than its
     * parent (a bind mount of the same filesystem is not seen). */
    char parent[PATH_MAX + 4];
    struct stat self, up;
    snprintf(parent, sizeof parent, "%s/..", path);
    if (stat(path, &self) < 0 || stat(parent, &up) < 0)
        return -errno;
    return self.st_dev != up.st_dev;
}

/* Is the top mount on path a spool an earlier ghostd mounted (a tmpfs
 * named S_SOURCE)? 1 (and *ret_huge: it has huge=always), 0 when not (an
 * admin's mount, or a path mountinfo escapes: never taken for ours), or
 * -errno. mountinfo lists the mounts on one point bottom first. */
static int s_is_ours(const char *path, bool *ret_huge)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    int ours = 0;
    bool huge = false;

    if (!f)
        return -errno;
    /* "id parent maj:min root point options [tags] - fstype source super" */
    while (getline(&line, &cap, f) > 0) {
        char point[PATH_MAX], fstype[16], source[sizeof S_SOURCE + 1];
        const char *sep = strstr(line, " - ");

        if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
            strcmp(point, path) != 0)
            continue;
        ours = sscanf(sep + 3, "%15s %12s", fstype, source) == 2 &&
               strcmp(fstype, "tmpfs") == 0 && strcmp(source, S_SOURCE) == 0;
        huge = ours && strstr(sep, ",huge=always");
    }
    if (ours)
        *ret_huge = huge;
    return ours;
}

/* Entries of dir besides . and ..; rm_empty_dirs first removes those that
 * are empty directories, and with users, empty ones in the users' uid-N
 * directories too, then those left empty (in a user's directory only
 * empty directories go, as the user could remove them: no link in there
 * leads elsewhere, unlinkat works on the entry). -errno if it cannot be
 * read. */
static long s_entries_in(const char *dir, bool rm_empty_dirs, bool users)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        if (rm_empty_dirs && users && strncmp(e->d_name, "uid-", 4) == 0 &&
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) < (int)sizeof sub)
            s_entries_in(sub, true, false);
        if (rm_empty_dirs && unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0)
            continue;
        n++;
    }
    closedir(d);
    return n;
}

static long s_entries(const char *dir, bool rm_empty_dirs)
{
    return s_entries_in(dir, rm_empty_dirs, true);
}

/* Users pass through a spool of root's to their uid-N directory: one made
 * 0700 by an older ghostd gets the search bits (nothing else changes). */
static void s_let_users_through(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 &&
        (st.st_mode & 0011) != 0011)
        chmod(path, (st.st_mode & 07777) | 0011);
}

int ghostd_spool_prepare(ghostd_spool_t *sp, const char *rundir, cairn_error_t *err)
{
    *sp = (ghostd_spool_t){ 0 };
    if (snprintf(sp->path, sizeof sp->path, "%s/ghost", rundir) >= (int)sizeof sp->path)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "%s/ghost: path too long", rundir);
    if (mkdir(sp->path, S_MODE) < 0 && errno != EEXIST)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %s", sp->path,
                               strerror(errno));
    s_let_users_through(sp->path);
    int r = s_is_mount_root(sp->path);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "stat %s: %s", sp->path, strerror(-r));
    if (r == 1) {
        /* An earlier ghostd's is adopted: unmounted at stop once empty,
         * as that ghostd would have if a watchdog or a crash had not
         * ended it first. The admin's is theirs to keep. */
        r = s_is_ours(sp->path, &sp->huge);
        if (r < 0)
            return cairn_error_set(err, r, CAIRN_SYSTEM, "/proc/self/mountinfo: %s",
                                   strerror(-r));
        sp->mounted = sp->adopted = r == 1;
        return 0;
    }
    long n = s_entries(sp->path, false);
    if (n != 0)
        return cairn_error_set(err, n < 0 ? (int)n : -ENOTEMPTY, CAIRN_FAILED_PRECONDITION,
                               "%s %s: not mounted over", sp->path,
                               n < 0 ? strerror((int)-n) : "holds files");
    /* MS_NOEXEC: images are read and mapped, never run. */
    unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    sp->huge = mount(S_SOURCE, sp->path, "tmpfs", fl, S_OPTS ",huge=always") == 0;
    /* EINVAL: a kernel without huge tmpfs pages takes a plain tmpfs. */
    if (!sp->huge && (errno != EINVAL || mount(S_SOURCE, sp->path, "tmpfs", fl, S_OPTS) < 0))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mount tmpfs on %s: %s", sp->path,
                               strerror(errno));
    sp->mounted = true;
    return 0;
}

int ghostd_spool_release(ghostd_spool_t *sp)
{
    if (!sp->mounted)
        return 0;
    long n = s_entries(sp->path, true);
    if (n != 0)
        return n < 0 ? (int)n : -ENOTEMPTY;
    if (umount2(sp->path, UMOUNT_NOFOLLOW) < 0)
        return -errno;
    sp->mounted = false;
    return 0;
}

int ghostd_spool_user_dir(const ghostd_spool_t *sp, uint32_t uid, uint32_t gid,
                          char *out, size_t size, cairn_error_t *err)
{
    if (snprintf(out, size, "%s/uid-%u", sp->path, uid) >= (int)size)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "%s/uid-%u: path too long", sp->path, uid);
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %s", out,
                               strerror(errno));
    /* O_NOFOLLOW: whatever is there, it is this directory that is given. */
    int fd = open(out, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    int r = fd < 0 ? -errno : 0;
    if (r == 0 && (fstat(fd, &st) < 0 ||
                   ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0) ||
                   ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)))
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot give %s to uid %u: %s", out,
                               uid, strerror(-r));
    return 0;
}
