/* util/fileio.h - whole-file reads and writes (and mkdir -p), retried on EINTR and short
 * transfers, for /proc files, cgroup knobs, descriptions and images.
 *
 * Every call returns 0 or a negative errno; none prints. Buffers handed
 * out are the caller's to free() and are NUL-terminated (one byte past
 * *ret_len), so text can be parsed in place.
 */
#ifndef CAIRN_UTIL_FILEIO_H
#define CAIRN_UTIL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Reads fd to its end (files whose size stat cannot tell, like /proc).
 * -EFBIG past max bytes (0: no bound). */
int cairn_read_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* Opens path (O_RDONLY|O_CLOEXEC) and reads it whole; as cairn_read_fd. */
int cairn_read_file(const char *path, size_t max, char **ret,
                    size_t *ret_len);

/* Writes all len bytes of buf to fd. */
int cairn_write_all(int fd, const void *buf, size_t len);

/* Opens path with O_WRONLY|O_CLOEXEC|flags (mode for O_CREAT), writes
 * len bytes of data and closes it; a failing close() (NFS, a cgroup knob
 * that refuses the value on close) is the call's failure. */
int cairn_write_file(const char *path, const void *data, size_t len,
                     int flags, mode_t mode);

/* mkdir -p: makes path and each missing parent, each with exactly mode
 * (chmod after mkdir: the umask would make a 0755 directory for files
 * every daemon reads 0700); directories already there are left as they
 * are. -ENOTDIR when a component exists and is not a directory,
 * -ENAMETOOLONG past PATH_MAX, -ENOENT for "". */
int cairn_mkdir_p(const char *path, mode_t mode);

#endif
