/* netlock.h - the network lock (netlock.c): TCP connections whose
 * incoming packets nftables drops while they are away between a dump and
 * its restore.
 */
#ifndef GHOST_NETLOCK_H
#define GHOST_NETLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/inet_diag.h>

#include "cairn/error.h"

/* A connection the lock names: its family and 4-tuple as sock_diag gives
 * it (src and sport ours, dst and dport the peer's; network order). */
typedef struct netlock_conn {
    int family;                /* AF_INET, AF_INET6 (v4-mapped: IPv4) */
    struct inet_diag_sockid id;
} netlock_conn_t;

/* Drops (lock) or lets through again (unlock) the peers' packets to
 * connections v[0..n) in network namespace ns_fd (-1: ours), in one nft
 * transaction. An unlock cannot fail on a connection no longer locked.
 * 0 (n == 0 too), or -errno with err set, nft's own words in it. */
int netlock_batch(int ns_fd, const netlock_conn_t *v, size_t n, bool lock,
                  cairn_error_t *err);

/* Whether nft is on PATH, where the lock runs it from. */
bool netlock_available(void);

#endif
