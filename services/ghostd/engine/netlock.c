/* netlock.c - the network lock: an nftables set of TCP connections whose
 * incoming packets are dropped while the connections are away (dumped,
 * not restored yet), so that no packet finds their port closed and is
 * answered with a RST, and none is acknowledged after their queues were
 * read (inetsk.c, docs/ghost.md "Sockets: TCP and UDP"). As CRIU's
 * network lock, but per connection and by nft(8), Debian's nftables: the
 * table is made again by each lock in the same transaction (idempotent;
 * its sets keep their elements), elements are only added and removed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netlock.h"

/* The table, its two sets of 4-tuples (peer address . peer port . our
 * address . our port) and the chain dropping what matches, made again
 * in one transaction each time (idempotent; the sets keep their
 * elements). */
static const char s_nft_table[] =
    "add table inet cairn_ghost\n"
    "add set inet cairn_ghost conns4 { type ipv4_addr . inet_service . ipv4_addr . "
    "inet_service; }\n"
    "add set inet cairn_ghost conns6 { type ipv6_addr . inet_service . ipv6_addr . "
    "inet_service; }\n"
    "add chain inet cairn_ghost lock { type filter hook input priority -300; policy "
    "accept; }\n"
    "flush chain inet cairn_ghost lock\n"
    "add rule inet cairn_ghost lock ip saddr . tcp sport . ip daddr . tcp dport "
    "@conns4 drop\n"
    "add rule inet cairn_ghost lock ip6 saddr . tcp sport . ip6 daddr . tcp dport "
    "@conns6 drop\n";

/* Runs `nft -f -` on script in network namespace ns_fd (-1: ours);
 * 0, or -errno with err set (nft's own words in it). */
static int s_nft(int ns_fd, const char *script, cairn_error_t *err)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pipe: %s", strerror(errno));
    if (pipe2(out, O_CLOEXEC) < 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "pipe: %s", strerror(e));
    }
    pid_t pid = fork();
    if (pid == 0) {
        if ((ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) < 0) || dup2(in[0], 0) < 0 ||
            dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
            _exit(126);
        execlp("nft", "nft", "-f", "-", (char *)NULL);
        _exit(127);
    }
    int e = errno;
    close(in[0]);
    close(out[1]);
    if (pid > 0) {
        size_t len = strlen(script);
        for (size_t done = 0; done < len;) {
            ssize_t w = write(in[1], script + done, len - done);
            if (w <= 0)
                break;
            done += (size_t)w;
        }
    }
    close(in[1]);
    char said[256] = "";
    ssize_t n = pid > 0 ? read(out[0], said, sizeof said - 1) : 0;
    said[n > 0 ? n : 0] = '\0';
    close(out[0]);
    int st = 0;
    if (pid < 0)
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "fork: %s", strerror(e));
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    char *nl = strchr(said, '\n');
    if (nl)
        *nl = '\0';
    return cairn_error_set(err, -ENOLCK, CAIRN_FAILED_PRECONDITION,
                           "the network lock (nft) failed%s: %s",
                           WIFEXITED(st) && WEXITSTATUS(st) == 127 ? " (nft is not installed: "
                           "apt-get install nftables)" : "", said[0] ? said : "no word");
}

/* The set element of a connection: "peer . pport . local . lport" in
 * conns4 or conns6 (an IPv4-mapped IPv6 address's packets are IPv4). */
static void s_nft_element(int family, const struct inet_diag_sockid *id, char *set,
                          char *elem, size_t size)
{
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    bool v4 = family == AF_INET ||
              IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)id->idiag_src);
    const void *s = id->idiag_src, *d = id->idiag_dst;
    if (v4 && family == AF_INET6) {
        s = (const uint8_t *)id->idiag_src + 12;
        d = (const uint8_t *)id->idiag_dst + 12;
    }
    inet_ntop(v4 ? AF_INET : AF_INET6, s, src, sizeof src);
    inet_ntop(v4 ? AF_INET : AF_INET6, d, dst, sizeof dst);
    strcpy(set, v4 ? "conns4" : "conns6");
    snprintf(elem, size, "%s . %u . %s . %u", dst, ntohs(id->idiag_dport), src,
             ntohs(id->idiag_sport));
}

/* Drops (lock) or lets through again (unlock) the peers' packets to
 * connections v[0..n) in network namespace ns_fd (-1: ours), in one
 * nft transaction. An unlock adds each element before it deletes it, so
 * it cannot fail on one already gone (Debian 12's nft has no "destroy"). */
int netlock_batch(int ns_fd, const netlock_conn_t *v, size_t n, bool lock, cairn_error_t *err)
{
    char *script = NULL;
    size_t size = 0;
    FILE *f = n ? open_memstream(&script, &size) : NULL;
    if (!n)
        return 0;
    if (!f)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (lock)
        fputs(s_nft_table, f);
    for (size_t i = 0; i < n; i++) {
        char set[8], elem[160];
        s_nft_element(v[i].family, &v[i].id, set, elem, sizeof elem);
        fprintf(f, "add element inet cairn_ghost %s { %s }\n", set, elem);
        if (!lock)
            fprintf(f, "delete element inet cairn_ghost %s { %s }\n", set, elem);
    }
    int r = fclose(f) == 0 ? s_nft(ns_fd, script, err)
                           : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    free(script);
    return r < 0 ? cairn_error_append(err, r, " (%s %zu connection(s))",
                                      lock ? "locking" : "unlocking", n)
                 : 0;
}

/* Whether nft is on PATH (as execlp will look for it). */
bool netlock_available(void)
{
    const char *path = getenv("PATH");
    char dir[PATH_MAX];
    for (const char *p = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin"; *p;) {
        size_t n = strcspn(p, ":");
        if (n && n + 5 < sizeof dir) {
            memcpy(dir, p, n);
            memcpy(dir + n, "/nft", 5);
            if (access(dir, X_OK) == 0)
                return true;
        }
        p += n + (p[n] == ':');
    }
    return false;
}

