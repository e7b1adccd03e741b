/* util/fileio.c - whole-file reads and writes (fileio.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "cleanup.h"
#include "fileio.h"

int cairn_read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;

    for (;;) {
        ssize_t n;

        /* Room for one byte more and the NUL. */
        if (CAIRN_GROW(buf, cap, len + 2, 4096) < 0)
            return -ENOMEM;
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
        if (max && len > max)
            return -EFBIG;
    }
    buf[len] = '\0';
    if (ret_len)
        *ret_len = len;
    *ret = TAKE_PTR(buf);
    return 0;
}

int cairn_read_file(const char *path, size_t max, char **ret,
                    size_t *ret_len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    return cairn_read_fd(fd, max, ret, ret_len);
}

int cairn_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n, len -= (size_t)n;
    }
    return 0;
}

int cairn_write_file(const char *path, const void *data, size_t len,
                     int flags, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | flags, mode);
    int r;

    if (fd < 0)
        return -errno;
    r = cairn_write_all(fd, data, len);
    if (close(fd) < 0 && r == 0 && errno != EINTR)
        r = -errno;
    return r;
}

int cairn_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    struct stat st;
    size_t len = strlen(path);

    if (len == 0)
        return -ENOENT;
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    /* Each prefix ending at a '/' (or the end), the root excepted. */
    for (char *p = buf + 1;; p++) {
        char c = *p;

        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) == 0) {
            if (chmod(buf, mode) < 0)
                return -errno;
        } else if (errno != EEXIST) {
            return -errno;
        }
        /* EEXIST also for a file: say which, rather than fail later. */
        if (stat(buf, &st) < 0)
            return -errno;
        if (!S_ISDIR(st.st_mode))
            return -ENOTDIR;
        *p = c;
        if (c == '\0')
            return 0;
    }
}
