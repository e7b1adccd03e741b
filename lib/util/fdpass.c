/* fdpass.c - one packet and one descriptor over a unix socket
 * (util/fdpass.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdpass.h"

#define S_FDS_MAX 4   /* descriptors a packet may carry before the extra are closed */

typedef union {
    char b[CMSG_SPACE(sizeof(int) * S_FDS_MAX)];
    struct cmsghdr align;
} s_cmsg_t;

int cairn_fd_send(int sock, const void *buf, size_t n, int fd, int flags)
{
    s_cmsg_t u;
    struct iovec iov = { (void *)buf, n };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    memset(&u, 0, sizeof u);
    if (fd >= 0) {
        mh.msg_control = u.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    while (sendmsg(sock, &mh, flags | MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

ssize_t cairn_fd_recv(int sock, void *buf, size_t size, int *fd, int flags)
{
    s_cmsg_t u;
    struct iovec iov = { buf, size };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                         .msg_controllen = sizeof u.b };
    ssize_t n;
    *fd = -1;
    while ((n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC)) < 0)
        if (errno != EINTR)
            return -errno;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (*fd < 0)
                *fd = f;
            else
                close(f);
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return -EMSGSIZE;
    }
    return n;
}
