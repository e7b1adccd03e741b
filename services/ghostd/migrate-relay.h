/* migrate-relay.h - a post-copy migration's page source carried between
 * the two ghostds: the bytes one helper writes on its end of P (a
 * socketpair: ghost-dump --pages-fd at the source, ghost-restore
 * --pages-fd at the target) sent to the other ghostd, which writes them
 * into its helper's P, both ways, without parsing them (docs/ghost.md,
 * "Post-copy", the protocol on P; proto/ghostd.proto, MigratePagesRequest).
 *
 * One relay per migration and side, embedded in migrate.c's slot (its
 * address stays put: peer callbacks carry it). Outgoing: P is read only
 * while fewer than MIGRATE_WINDOW messages are unanswered, each read
 * (at most MIGRATE_CHUNK bytes) sent at once (a fault's request is 24
 * bytes: latency, not batching). Incoming: written into P without
 * blocking, answered once written; what P does not take is queued and
 * written on POLLOUT -- the sender's window is the bound, P's fullness
 * the backpressure. Every second of silence sends an empty message, so a
 * peer ghostd that died is noticed (its answer never comes: broken after
 * MIGRATE_CHUNK_MS) even when the job never faults.
 *
 * Ends. The local helper closing P sends `end`; the peer's `end` shuts
 * P's write side once its bytes are written (the helper reads EOF). A
 * refused or unanswered message, a sequence gap, breaks the relay: P is
 * closed at once. The owner hears of each change through on_change and
 * reads the flags; it may close the relay from there.
 */
#ifndef GHOSTD_MIGRATE_RELAY_H
#define GHOSTD_MIGRATE_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "ghostd.h"
#include "peer.h"

#define MIGRATE_RELAY_QUEUE 128         /* incoming messages waiting for P */
#define MIGRATE_RELAY_KEEPALIVE_MS 1000 /* an empty message after this silence */

typedef struct migrate_relay migrate_relay_t;

/* A change: bytes ended one way, the relay broke, or it went idle. */
typedef void (*migrate_relay_fn)(migrate_relay_t *r, void *owner);

typedef struct migrate_relay_msg {
    uint8_t *data;                /* owned */
    size_t len, off;              /* bytes, bytes written */
    uint64_t seq;
    bool end;                     /* the peer's last message */
    cairn_deferred_t *d;          /* answered once written */
} migrate_relay_msg_t;

struct migrate_relay {
    cairn_service_t *svc;         /* NULL: never opened */
    cairn_peers_t *peers;         /* the connection to the peer (not owned) */
    uint32_t node;                /* the peer node */
    char endpoint[256];           /* its ghostd */
    char id[64];                  /* the migration */
    bool to_target;               /* this side is the source */
    int fd;                       /* our end of P, -1 closed */
    int64_t rd_watch, wr_watch;   /* loop watches on fd, 0 none */
    int64_t timer;                /* keepalive, 0 none */
    uint8_t *buf;                 /* MIGRATE_CHUNK bytes, read from P */
    uint64_t seq_out, seq_in;     /* next to send, next expected */
    unsigned in_flight;           /* messages sent, not answered */
    migrate_relay_msg_t q[MIGRATE_RELAY_QUEUE];   /* FIFO from q_head */
    size_t q_head, q_n;
    bool rd_eof;                  /* the helper closed P (or it failed) */
    bool end_sent;                /* our `end` went out */
    bool peer_end;                /* the peer's `end` came */
    bool wr_closed;               /* P's write side shut (or the helper gone) */
    bool broken;                  /* closed on a failure; error says why */
    char error[512];
    uint64_t sent, received;      /* bytes each way */
    uint64_t last_sent_ms;        /* for the keepalive */
    migrate_relay_fn on_change;
    void *owner;
};

/* Starts relaying fd (taken: closed by the relay) with node's ghostd at
 * endpoint for migration id. 0, or -errno (the fd closed, r unopened). */
int migrate_relay_open(migrate_relay_t *r, cairn_service_t *svc, cairn_peers_t *peers,
                       uint32_t node, const char *endpoint, const char *id,
                       bool to_target, int fd, migrate_relay_fn on_change, void *owner);

/* A MigratePagesRequest for this relay (the handler found it by id and
 * checked the caller is the peer): CAIRN_REPLY_NOW, _DEFERRED, or the
 * request failed. */
int migrate_relay_receive(migrate_relay_t *r, cairn_request_t *req,
                          const Cairn__Ghostd__MigratePagesRequest *p);

/* Breaks the relay now (why into r->error unless one is there): P
 * closed, queued messages refused. No on_change. Safe twice. */
void migrate_relay_close(migrate_relay_t *r, const char *why);

/* Both ways ended (our end answered, the peer's written). */
bool migrate_relay_done(const migrate_relay_t *r);

/* A peer callback is still due, or the relay is open: the slot holding
 * it must not be reused. */
bool migrate_relay_busy(const migrate_relay_t *r);

/* req (a chunk or a relay message written at once) answered now with
 * MigrateChunkReply {seq, written}: CAIRN_REPLY_NOW, or -ENOMEM. */
int migrate_chunk_reply(cairn_request_t *req, uint64_t seq, uint64_t written);

/* Answers *d (a chunk or a relay message, deferred until written) with
 * MigrateChunkReply {seq, written}; *d is NULL after. */
void migrate_chunk_ack(cairn_service_t *svc, cairn_deferred_t **d, uint64_t seq,
                       uint64_t written);

/* Frees what the relay holds once it is not busy (after close): the
 * slot may be reset then. */
void migrate_relay_clear(migrate_relay_t *r);

#endif
