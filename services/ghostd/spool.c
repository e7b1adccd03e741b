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

#define S_OPTS "mode=0700"

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

/* Entries of dir besides . and ..; rm_empty_dirs first removes those that
 * are empty directories. -errno if it cannot be read. */
static long s_entries(const char *dir, bool rm_empty_dirs)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (rm_empty_dirs && unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0)
            continue;
        n++;
    }
    closedir(d);
    return n;
}

int ghostd_spool_prepare(ghostd_spool_t *sp, const char *rundir, cairn_error_t *err)
{
    *sp = (ghostd_spool_t){ 0 };
    if (snprintf(sp->path, sizeof sp->path, "%s/ghost", rundir) >= (int)sizeof sp->path)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "%s/ghost: path too long", rundir);
    if (mkdir(sp->path, 0700) < 0 && errno != EEXIST)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "mkdir %s: %s", sp->path,
                               strerror(errno));
    int r = s_is_mount_root(sp->path);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "stat %s: %s", sp->path, strerror(-r));
    if (r == 1)
        return 0;   /* an earlier ghostd's, or the admin's: theirs to keep */
    long n = s_entries(sp->path, false);
    if (n != 0)
        return cairn_error_set(err, n < 0 ? (int)n : -ENOTEMPTY, CAIRN_FAILED_PRECONDITION,
                               "%s %s: not mounted over", sp->path,
                               n < 0 ? strerror((int)-n) : "holds files");
    /* MS_NOEXEC: images are read and mapped, never run. */
    unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    sp->huge = mount("cairn-ghost", sp->path, "tmpfs", fl, S_OPTS ",huge=always") == 0;
    /* EINVAL: a kernel without huge tmpfs pages takes a plain tmpfs. */
    if (!sp->huge && (errno != EINVAL || mount("cairn-ghost", sp->path, "tmpfs", fl, S_OPTS) < 0))
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
