/* util/fdpass.h - one packet and at most one file descriptor over a unix
 * socket (SCM_RIGHTS): how a process hands dsmd its userfaultfd and dsmd
 * hands it a memfd. Both ends use these two, so the framing is one code.
 */
#ifndef CAIRN_UTIL_FDPASS_H
#define CAIRN_UTIL_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

/* Sends buf (n bytes) with fd attached when fd >= 0 (the caller keeps
 * its fd). flags: MSG_DONTWAIT... (MSG_NOSIGNAL is always added).
 * 0 or -errno. */
int cairn_fd_send(int sock, const void *buf, size_t n, int fd, int flags);

/* Receives one packet into buf (size bytes) and its first descriptor in
 * *fd (-1 when none; the caller owns it, close-on-exec; any others are
 * closed). Returns its length, 0 at end of stream, -EMSGSIZE for a packet
 * larger than buf (its descriptor closed), or -errno. */
ssize_t cairn_fd_recv(int sock, void *buf, size_t size, int *fd, int flags);

#endif
