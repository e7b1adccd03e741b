/* migrate-int.h - what the pieces of ghostd's migration share (private
 * to migrate.c, migrate-in.c, migrate-out.c): the two tables of
 * migrations, a slot's state machine each, and the few helpers more than
 * one of them calls. migrate.c's opening comment says how a migration
 * goes; migrate.h is the module's face to ghostd.
 *
 * migrate.c      the requests' glue: modes, the checks a target makes of
 *                itself, a job another node runs (the request carried
 *                there), the page source's messages to either side's
 *                relay, start and stop
 * migrate-in.c   the target: begin, chunks into ghost-restore's pipe,
 *                status, commit, abort, the record that outlives ghostd
 * migrate-out.c  the source: the request, ghost-dump and its image sent
 *                as chunks, post-copy's serving, confirming a lost
 *                answer, --check
 * migrate-relay.c  post-copy's page source carried between the ghostds
 */
#ifndef GHOSTD_MIGRATE_INT_H
#define GHOSTD_MIGRATE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ghostd.h"
#include "migrate.h"
#include "migrate-relay.h"
#include "peer.h"

#define MIGRATE_QUEUE_MAX (2 * MIGRATE_WINDOW)  /* target: chunks buffered */
#define MIGRATE_PIPE_SIZE (1 << 20)             /* the image pipes (else 64 KiB) */

typedef enum {
    OUT_FREE,
    OUT_BEGIN,       /* begin sent, nothing frozen yet */
    OUT_STREAM,      /* ghost-dump runs; chunks going out */
    OUT_CONFIRM,     /* the last chunk's answer was lost: asking the target */
    OUT_KILLING,     /* the target runs it: "kill" written, ghost-dump to exit */
    OUT_SERVING,     /* post-copy: the target runs it, ghost-dump serves its
                        pages through the relay until it is done */
    OUT_RESUMING,    /* failed: "resume" written, ghost-dump to exit */
    OUT_ENDED,       /* answered; waiting for callbacks still due */
} migrate_out_state_t;

typedef struct migrate_out {
    struct migrate *m;            /* the module */
    migrate_out_state_t state;
    char id[64];                  /* the migration's id */
    cairn_deferred_t *deferred;   /* the client's request, NULL once answered */
    cairn_caller_t as;            /* who asked: vouched to the target */
    uint32_t to;                  /* target node */
    char *endpoint;               /* its ghostd, tcp://...; owned */
    cairn_peers_t *bulk;          /* the chunks' own connection (one DEALER
                                     per migration, so begin, status or
                                     abort never queue behind a window of
                                     chunks); the slot's, kept across uses */
    uint32_t pid, uid, gid;       /* the tree's root and owner */
    char gpid[64];                /* the job, "" for a plain process */
    bool is_job;                  /* restored in its own pid namespace */
    bool no_verify;               /* the target's restore skips its verifier */
    bool sub_cgroup;              /* a job in its job-<gpid> sub-cgroup here */
    migrate_mode_t mode;          /* resolved: never MIGRATE_AUTO */
    uint64_t rss;                 /* the tree's resident bytes when asked */
    uint32_t rounds;              /* pre-copy: ghost-dump's figures */
    uint64_t precopy_bytes;
    uint64_t lazy_pages;          /* post-copy: pages left out of the image */
    int pages_fd;                 /* post-copy: our end of P until relayed */
    migrate_relay_t relay;        /* post-copy: P to and from the target */
    uint64_t t0_us;               /* request received (monotonic) */
    uint64_t deadline_ms;         /* the client's deadline (monotonic ms) */
    ghostd_helper_t *dump;        /* ghost-dump while it runs, else NULL */
    int img_fd;                   /* read end of the image pipe, -1 closed */
    int64_t img_watch;            /* loop watch on img_fd, 0 none */
    int hold_fd;                  /* write end of the hold pipe, -1 closed */
    uint8_t *buf;                 /* MIGRATE_CHUNK + 1 bytes */
    size_t len;                   /* bytes in buf */
    uint64_t seq;                 /* next chunk's number */
    unsigned in_flight;           /* chunks sent, not answered */
    unsigned calls;               /* peer calls whose callback is due */
    bool eof, held, last_sent, answered_last;
    uint64_t bytes;               /* image bytes read from the pipe */
    uint64_t held_us;             /* when ghost-dump said held (monotonic) */
    uint64_t dump_us, freeze_us;  /* ghost-dump's figures */
    uint32_t processes, threads;
    uint32_t new_pid;             /* the target's restored root */
    uint64_t restore_us;
    char cgroup[512];
    uint64_t frozen_us;           /* frozen until killed */
    int fail_code;                /* the first failure, 0 none */
    char fail_msg[1024];
    int64_t timer;                /* deadline, then confirm retries */
    bool confirm_asking;          /* a status or clusterd ask is out */
} migrate_out_t;

typedef enum {
    IN_FREE,
    IN_RECEIVING,
    IN_RESTORING,
    IN_RUNNING,
    IN_COMMITTED,
    IN_FAILED,
} migrate_in_state_t;

typedef struct migrate_chunk {
    uint8_t *data;                /* owned */
    size_t len, off;              /* bytes, bytes written */
    uint64_t seq;
    bool last;
    cairn_deferred_t *d;          /* to answer once written */
} migrate_chunk_t;

typedef struct migrate_in {
    struct migrate *m;
    migrate_in_state_t state;
    char id[64];
    uint32_t from;                /* the source node */
    uint32_t uid, gid;            /* the job's owner */
    char gpid[64];
    bool sub_cgroup;              /* a job restored in job-<gpid> sub-cgroups */
    char unit[128];               /* a job restored in this scope, "" none */
    ghostd_helper_t *rst;         /* ghost-restore while it runs */
    int pipe_fd;                  /* write end of its image pipe, -1 closed */
    int64_t watch;                /* POLLOUT watch, 0 none */
    migrate_chunk_t q[MIGRATE_QUEUE_MAX];     /* FIFO from q_head */
    size_t q_head, q_n;
    uint64_t next_seq, written;
    cairn_deferred_t *last_d;     /* the last chunk, answered at the end */
    uint32_t pid, original_pid, processes, threads;
    uint64_t restore_us;
    char cgroup[512];
    pid_t *members;               /* the restored tree, for an abort */
    size_t n_members;
    char error[1024];             /* failed: why */
    pid_t helper;                 /* ghost-restore's pid, for the record */
    bool postcopy;                /* ghost-restore --pages-fd */
    bool no_verify;               /* ghost-restore --no-verify */
    bool pages_done;              /* post-copy: every page came */
    uint64_t lazy_pages;          /* post-copy: pages the copy ran without */
    int pages_fd;                 /* post-copy: our end of P until relayed */
    migrate_relay_t relay;        /* post-copy: P to and from the source */
    cairn_peers_t *bulk;          /* the relay's connection to the source */
    uint64_t touched_ms;          /* last chunk (idle) or end (forget) */
    int64_t timer;                /* idle check */
} migrate_in_t;

/* A request for a job another node runs, carried there. */
typedef struct migrate_fwd {
    struct migrate *m;
    cairn_deferred_t *d;          /* the client's request */
    struct migrate_fwd *next;           /* in m->fwds */
} migrate_fwd_t;

typedef struct migrate {
    ghostd_t *gd;
    migrate_fwd_t *fwds;                /* carried requests not answered yet */
    cairn_peers_t *peers;         /* to other ghostds */
    cairn_peers_t *clusterd;      /* to this node's clusterd */
    migrate_out_t out[MIGRATE_MAX];
    migrate_in_t in[MIGRATE_MAX];
    unsigned serial;              /* for ids */
} migrate_t;

/* ---- shared helpers (migrate.c) ------------------------------------------ */

cairn_loop_t *migrate_loop(const migrate_t *m);
uint32_t migrate_self(const migrate_t *m);

/* The resident bytes of the tree rooted at pid (its children to depth);
 * *ret_largest (if not NULL; the caller sets it to 0) rises to the
 * largest one process holds. */
uint64_t migrate_tree_rss(pid_t pid, int depth, uint64_t *ret_largest);

/* Why this node cannot take a tree of memory_bytes resident, largest_bytes
 * of them its largest process's (placed, not staged, by a streamed
 * restore), dumped on kernel (post-copy: also without userfaultfd): up to
 * max reasons, each a malloc'ed string the caller frees; their count. */
size_t migrate_target_reasons(uint64_t memory_bytes, uint64_t largest_bytes,
                              const char *kernel, bool postcopy, char *reasons[], size_t max);

/* A job another node runs: the request carried there, its answer passed
 * back (deferred). */
int migrate_forward(migrate_t *m, cairn_request_t *req, const Cairn__Ghostd__MigrateRequest *mr,
                    uint64_t deadline);

/* ---- the target (migrate-in.c) ------------------------------------------- */

const char *migrate_in_state_name(migrate_in_state_t s);

/* The migration failed here: nothing of it runs (what ran is killed),
 * every request still waiting is answered with why. */
void migrate_in_fail(migrate_in_t *in, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The slot freed (its pipe, queue, timer, relay). */
void migrate_in_free(migrate_in_t *in);

/* At start: the records a ghostd that died left, taken up again. */
void migrate_in_recover(migrate_t *m);

/* ---- the source (migrate-out.c) ------------------------------------------ */

/* The image pipe closed (a dump still writing fails on it). */
void migrate_out_close_img(migrate_out_t *o);

/* The holder's word to a held ghost-dump ("kill\n", "resume\n", "serve\n"). */
void migrate_out_verdict(migrate_out_t *o, const char *word);

#endif
