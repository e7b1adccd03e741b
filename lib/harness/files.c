/* files.c - the harness's small tools: directories, cgroup knobs, rm -rf
 * under mounts, the up/down lock, growable text and sortable names.
 *
 * Removing a cluster directory must first detach what is mounted inside
 * it (ghostd mounts its image spool in a node's run dir, spool.h):
 * mountinfo lists parents first, so they are detached last-first. The
 * lock is host-wide as root because subnets and namespace names are.
 *
 * A run base that up had to create gets a mark file, HX_BASE_MARK; down
 * removes the base again once nothing but the mark is in it (the last
 * cluster of that base gone). A base somebody else made has no mark and
 * is never removed, nor one holding anything else (such as the lock file
 * <run-base>/.lock of a non-root harness).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness-private.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/fileio.h"

/* ---- paths and files --------------------------------------------------- */

void hx_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool hx_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 8 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

bool hx_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int hx_mkdir_p(const char *path, cairn_error_t *err)
{
    int r = cairn_mkdir_p(path, 0755);

    if (r < 0)
        return cairn_error_set(err, r, r == -ENAMETOOLONG
                                           ? CAIRN_INVALID_ARGUMENT
                                           : CAIRN_SYSTEM,
                               "mkdir -p %s: %s", path, strerror(-r));
    return 0;
}

int hx_write_knob(const char *path, const char *value, cairn_error_t *err)
{
    int r = cairn_write_file(path, value, strlen(value), 0, 0);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "write '%s' to %s: %s",
                               value, path, strerror(-r));
    return 0;
}

/* ---- removing a directory tree ----------------------------------------- */

static int s_rm_entry(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

/* A mount point field of /proc/self/mountinfo with its octal escapes
 * (\040 for a space...) undone, in place. */
static void s_unescape_mount(char *p)
{
    char *o = p;
    for (; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' &&
            p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* True if mount point mnt is path or under it. */
static bool s_under(const char *mnt, const char *path, size_t len)
{
    return strncmp(mnt, path, len) == 0 &&
           (mnt[len] == '\0' || mnt[len] == '/');
}

/* The mount points at or under path, in mountinfo order (parents first);
 * *ret is an array of *ret_n strings the caller frees. */
static int s_mounts_under(const char *path, char ***ret, size_t *ret_n)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    _cleanup_free_ char *line = NULL;
    char **found = NULL, mnt[PATH_MAX];
    size_t n = 0, cap = 0, line_cap = 0, len = strlen(path);
    int r = 0;
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    while (r == 0 && getline(&line, &line_cap, f) > 0) {
        /* id parent major:minor root mount-point ... */
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
            continue;
        s_unescape_mount(mnt);
        if (!s_under(mnt, path, len))
            continue;
        r = CAIRN_GROW(found, cap, n + 1, 8);
        if (r == 0 && !(found[n++] = strdup(mnt)))
            r = -ENOMEM;
    }
    *ret = found;
    *ret_n = n;
    return r;
}

/* Detaches every mount at or under path, the last mounted first: 0, or
 * -errno of the first that could not be. */
static int s_umount_under(const char *path)
{
    char **found = NULL;
    size_t n = 0;
    int r = s_mounts_under(path, &found, &n);
    for (size_t i = n; i-- > 0;) {
        if (r == 0 && found[i] &&
            umount2(found[i], MNT_DETACH | UMOUNT_NOFOLLOW) < 0 &&
            errno != EINVAL)
            r = -errno;
        free(found[i]);
    }
    free(found);
    return r;
}

int hx_rm_rf(const char *path)
{
    if (!hx_exists(path))
        return 0;
    int r = s_umount_under(path);
    if (r < 0)
        return errno = -r, r;
    if (nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
        return -errno;
    return 0;
}

/* ---- the run base ------------------------------------------------------ */

int hx_base_mark(const char *base, cairn_error_t *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/" HX_BASE_MARK, base);
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "create %s: %m",
                               path);
    return 0;
}

CAIRN_DEFINE_CLEANUP(s_closedirp, DIR *, closedir)

/* True if dir holds nothing but the mark (and the mark is there). */
static bool s_only_mark(const char *dir)
{
    _cleanup_(s_closedirp) DIR *d = opendir(dir);
    bool mark = false, other = false;
    for (struct dirent *e; d && !other && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strcmp(e->d_name, HX_BASE_MARK) == 0)
            mark = true;
        else
            other = true;
    }
    return d && mark && !other;
}

bool hx_base_tidy(const char *base)
{
    char path[PATH_MAX + 32];
    if (!s_only_mark(base))
        return false;
    snprintf(path, sizeof(path), "%s/" HX_BASE_MARK, base);
    if (unlink(path) < 0)
        return false;
    if (rmdir(base) == 0)
        return true;
    /* something came in meanwhile: keep the mark for a later down */
    hx_base_mark(base, NULL);
    return false;
}

/* ---- the lock ---------------------------------------------------------- */

int hx_lock(const char *run_base, cairn_error_t *err)
{
    char path[PATH_MAX];
    bool root = geteuid() == 0;
    int r = hx_mkdir_p(root ? "/run/lock" : run_base, err);
    if (r < 0)
        return r;
    if (root)
        snprintf(path, sizeof(path), "%s", HX_HOST_LOCK);
    else
        snprintf(path, sizeof(path), "%s/.lock", run_base);
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "open lock %s: %m",
                               path);
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "flock %s: %m",
                                   path);
    return TAKE_FD(fd);
}

/* ---- text and names ---------------------------------------------------- */

int hx_buf_add(hx_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if (CAIRN_GROW(b->s, b->cap, b->len + (size_t)n + 1, 256) < 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void hx_one_line(const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 4 < size; p++) {
        if (*p == '\n') {
            if (p[1])
                o += (size_t)snprintf(out + o, size - o, " | ");
        } else {
            out[o++] = *p;
        }
    }
    while (o > 0 && strchr(" |", out[o - 1]))
        o--;
    out[o] = '\0';
}

bool hx_match_k(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 && s[n] &&
           strspn(s + n, "0123456789") == strlen(s + n);
}

/* Shorter first, then by bytes: "cairn-x-2" before "cairn-x-10". */
static int s_cmp_names(const void *a, const void *b)
{
    const char *x = json_string_value(*(json_t *const *)a);
    const char *y = json_string_value(*(json_t *const *)b);
    size_t lx = strlen(x), ly = strlen(y);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

void hx_sort_names(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    _cleanup_free_ json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
    json_t *e;
    if (!v)
        return;
    json_array_foreach(arr, i, e) v[i] = json_incref(e);
    qsort(v, n, sizeof(*v), s_cmp_names);
    json_array_clear(arr);
    for (i = 0; i < n; i++)
        json_array_append_new(arr, v[i]);
}
