/* sched-private.h - the policy daemon's context, shared by its parts:
 *
 *   sched-core.c  lifecycle (the node's lock), the handlers (place, show,
 *                 log, swap), the decision log's publishing;
 *   follow.c      what the node knows: probed's vectors and window,
 *                 ghostd's jobs, the alive ghostds, and the bookkeeping of
 *                 what this node placed or moved since (commitments);
 *   moves.c       balancing and ushering: when to ask the policy, and the
 *                 migration through ghostd;
 *   swap.c        Request{swap} on a systemd host.
 */
#ifndef SCHED_PRIVATE_H
#define SCHED_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "decisions.h"
#include "ghostd.pb-c.h"
#include "peer.h"
#include "policy.h"
#include "probed.pb-c.h"
#include "sched.pb-c.h"
#include "service.h"
#include "view.h"

#define SCHED_COMMITS 128   /* placements and moves not yet in a vector */
#define SCHED_HELD 256      /* jobs moved (or tried) lately */
#define SCHED_SETTLE_MS 250 /* a vector sampled this long after a move
                             * shows it, and a probe period more (its CPU
                             * figure covers the period before it) */

/* Demand placed on or moved to (or away from) a node, counted until a
 * vector of that node sampled after it arrives. */
typedef struct sched_commit {
    uint32_t node;
    uint64_t unix_ms;      /* when it happened */
    double cpu;
    int64_t mem;
    bool have_used;        /* the node's vector was known then: */
    uint64_t used_before;  /* its mem_used, which must move by half of
                              mem before the vector counts as showing it */
} sched_commit_t;

/* A job that moved, arrived or whose move failed: when (monotonic). */
typedef struct sched_held {
    char gpid[SCHED_GPID_MAX];
    uint64_t at_ms;
} sched_held_t;

/* The one migration this node runs at a time. */
typedef struct sched_move {
    bool busy;
    uint64_t seq;          /* its decision */
    char gpid[SCHED_GPID_MAX];
    uint32_t to;
    bool usher;
    double cpu;            /* what it takes along */
    uint64_t rss;
    uint64_t started_ms;   /* monotonic */
} sched_move_t;

typedef struct sched {
    const sched_policy_t *policy;
    cairn_service_t *svc;
    sched_params_t params;
    int lock_fd;                   /* flock'ed <rundir>/sched.lock */
    sched_log_t *log;
    uint64_t started_ms;           /* unix ms */
    uint64_t placements, migrations, migrations_failed, usherings;
    uint32_t last_placed;          /* rr's counter, from the log */

    /* follow.c */
    cairn_view_t *view;            /* alive nodes running ghostd */
    cairn_peers_t *probed;         /* the node's probed (Request{load}) */
    cairn_peers_t *ghostd;         /* the node's ghostd (ps, migrate) */
    void *sub;                     /* SUB "load" on probed's PUB */
    int64_t sub_watch, tick;
    Cairn__Probed__LoadReply *load;/* probed's last answer, owned */
    uint64_t load_at;              /* monotonic ms it came */
    uint64_t local_seq;            /* its local vector's seq */
    uint64_t mem_used_before;      /* the local vector before that one */
    char probed_error[160];        /* why probed does not answer, "" */
    char ps_error[160];            /* why ghostd's ps failed, "" */
    bool asking_load, asking_ps, ask_again;
    bool had_jobs;                 /* ghostd answered once */
    sched_job_t *jobs;             /* this node's running jobs */
    size_t n_jobs;
    sched_commit_t commits[SCHED_COMMITS];
    size_t n_commits;
    sched_held_t held[SCHED_HELD];
    size_t n_held;

    /* moves.c */
    sched_move_t move;
    uint64_t next_balance;         /* monotonic ms */
    char no_move[SCHED_REASON_MAX];/* the last check's "why not" */
} sched_t;

/* follow.c */
int sched_follow_start(sched_t *s);   /* from ops->ready */
void sched_follow_stop(sched_t *s);
/* Asks probed (then ghostd) now; the policy is asked when they answer. */
void sched_follow_refresh(sched_t *s);
/* What the policy sees now: self, peers[] (caller's array of
 * CAIRN_VIEW_MAX_NODES), members[] (likewise). */
void sched_follow_input(sched_t *s, sched_input_t *in, sched_node_t *peers,
                        uint32_t *members);
/* Counts demand on node from now until a vector shows it. */
void sched_follow_commit(sched_t *s, uint32_t node, double cpu, int64_t mem);
/* The job moved, arrived or failed to move now: hold it. */
void sched_follow_hold(sched_t *s, const char *gpid);
/* The endpoint of the node's own `service` for a request as this daemon:
 * tcp in mode curve (a member node, root), ipc in mode none (root by
 * SO_PEERCRED); caller frees. NULL on ENOMEM / no such service. */
char *sched_follow_endpoint(sched_t *s, const char *service);
/* The known nodes' load as the JSON array ShowReply.known holds (caller
 * frees). */
char *sched_follow_known_json(sched_t *s);

/* moves.c: the jobs and vectors are fresh; decide whether to move one. */
void sched_moves_check(sched_t *s);

/* sched-core.c: a decision made; logged, published; *ret its entry. */
int sched_decide(sched_t *s, const sched_entry_t *e, const sched_entry_t **ret);
/* Its outcome known: logged and published again. */
void sched_decided(sched_t *s, uint64_t seq, const char *outcome);

/* swap.c: Request{swap}. */
int sched_handle_swap(void *ctx, cairn_request_t *req);
/* ShowReply of this daemon into out (strings from req's arena). */
int sched_fill_show(sched_t *s, cairn_request_t *req, Cairn__Sched__ShowReply *out);

#endif
