/* policy.h - a scheduler policy's decisions, as pure functions.
 *
 * A policy sees what its node knows -- its own load vector, the window of
 * peers' vectors its probed keeps, the node's jobs, the alive nodes that
 * run ghostd -- and decides three things: where a new job goes (place),
 * whether one job should move to even out the load (balance), whether one
 * job must leave before the node's memory runs out (usher). The functions
 * here read nothing but their arguments and keep no state: the core
 * (sched-core.c) gathers the inputs, carries a move out through ghostd and
 * logs every decision; the unit tests (test-policy.c) drive them with
 * hand-made vectors.
 *
 * Load. A node's CPU demand is what it uses (cpu_load), or, when it is
 * busy (a quarter of its CPUs or more), its run queue if longer, counting
 * at most one task a job -- a runnable task wants a whole CPU, a node's
 * busy CPUs cannot show more than its quota (and show less on a host
 * others share), and the run queue of an idle node is its daemons passing
 * through -- plus `pending_cpu`, what this node sent or placed there since
 * that vector was sampled (the core's bookkeeping, so sixteen placements
 * in one period do not all go to the node that looked idle). The load is
 * demand / cpus: openMosix's run-queue length over the node's speed. A
 * job's demand is its share of its node's: its cpu scaled by how much the
 * node is oversubscribed (16 jobs sharing 0.5 CPU use 0.03 each but want
 * 1 each).
 *
 * Rules every moving decision keeps (docs/scheduler.md):
 *   - a peer's vector older than stale_periods gossip periods, or of a
 *     node not alive among ghostd's members, is ignored;
 *   - a job that moved (or whose move failed) within hold_periods balance
 *     periods stays where it is: no ping-pong;
 *   - balancing moves a job only when the imbalance exceeds what the move
 *     itself adds at the target plus a margin, so the reverse move is
 *     never justified right after;
 *   - one decision at a time: each call returns at most one move.
 */
#ifndef SCHED_POLICY_H
#define SCHED_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHED_GPID_MAX 32
#define SCHED_REASON_MAX 384
#define SCHED_NEVER UINT64_MAX /* since_move_ms of a job that never moved */

/* Every tunable, with its default from sched_params_default(). */
typedef struct sched_params {
    uint32_t gossip_period_ms;  /* probed's (its LoadReply says): 1000 */
    uint32_t balance_period_ms; /* 0: the gossip period (a new window
                                 * each period: an idle node is fed as
                                 * soon as its vector arrives) */
    double margin_cpu;          /* the stability margin beyond one job's
                                 * load at the target, in CPUs: 0.25 */
    uint32_t hold_periods;      /* balance periods a moved job stays: 4 */
    uint32_t stale_periods;     /* gossip periods a vector stays usable: 3 */
    double high_water;          /* ushering starts at this share of the
                                 * node's memory limit: 0.85 */
    double mem_margin;          /* sched-mem: the free-memory gap that
                                 * starts a move, as a share of the larger
                                 * limit, beyond the job's own size: 0.10 */
    uint64_t job_mem_bytes;     /* a new job's memory when the request
                                 * gives no hint (sched-mem): 32 MiB */
} sched_params_t;

/* What the policy knows of one node. */
typedef struct sched_node {
    uint32_t node;          /* id, 1..255 */
    double cpus;            /* capacity in CPUs; 0: no cpu probe */
    double cpu_load;        /* CPUs busy over the last period */
    uint32_t runnable;      /* tasks runnable */
    uint64_t mem_limit;     /* bytes; 0: no memory probe */
    uint64_t mem_used;
    uint64_t mem_free;
    uint32_t jobs;
    uint64_t age_ms;        /* how old its vector is, here, now */
    double pending_cpu;     /* CPUs placed or moved there (negative: away)
                             * since the vector was sampled */
    int64_t pending_mem;    /* bytes, likewise */
} sched_node_t;

/* One running job of this node (not migrating, not stopped). */
typedef struct sched_job {
    char gpid[SCHED_GPID_MAX];
    double cpu;             /* CPUs it used over the last period */
    uint64_t rss_bytes;
    int64_t rss_growth;     /* bytes per second over the last period */
    uint64_t cost_ms;       /* estimated migration cost */
    uint64_t since_move_ms; /* since its last move or failed move here,
                             * SCHED_NEVER if it never moved */
} sched_job_t;

typedef struct sched_input {
    const sched_params_t *params;
    sched_node_t self;            /* this node; self.cpus 0: no vector yet */
    const sched_node_t *peers;    /* the window (never this node) */
    size_t n_peers;
    const sched_job_t *jobs;      /* this node's running jobs */
    size_t n_jobs;
    const uint32_t *members;      /* alive nodes running ghostd, sorted */
    size_t n_members;             /* 0: membership unknown (any is alive) */
    uint32_t last_placed;         /* rr: the node it chose last, 0 none */
    uint64_t mem_used_before;     /* self's used memory one sample earlier */
    uint64_t memory_hint;         /* place: the request's hint, 0 unknown */
} sched_input_t;

/* A decision: a placement (node) or a move (gpid to node). */
typedef struct sched_verdict {
    uint32_t node;
    char gpid[SCHED_GPID_MAX];
    char reason[SCHED_REASON_MAX]; /* why, with the figures that decided;
                                    * for "no move", why not */
} sched_verdict_t;

/* A policy: its name and its decision functions. */
typedef struct sched_policy {
    const char *name;   /* "rr", "mosix", "mem" */
    /* Always decides (this node when nothing else is known): 0. */
    int (*place)(const sched_input_t *in, sched_verdict_t *out);
    /* 1: move out->gpid to out->node; 0: no move (out->reason says why).
     * NULL: the policy never balances. */
    int (*balance)(const sched_input_t *in, sched_verdict_t *out);
    bool ushers;        /* moves growing jobs off a node near its limit */
} sched_policy_t;

extern const sched_policy_t sched_policy_rr;
extern const sched_policy_t sched_policy_mosix;
extern const sched_policy_t sched_policy_mem;

/* The policies, NULL-terminated, in the order their units are ordered. */
extern const sched_policy_t *const sched_policies[];
/* The policy named name, or NULL. */
const sched_policy_t *sched_policy_find(const char *name);

void sched_params_default(sched_params_t *p);
/* The balance period in ms (balance_period_ms, else the gossip period). */
uint64_t sched_balance_period(const sched_params_t *p);

/* A node's CPU demand (above, + pending_cpu, >= 0) and
 * load (demand / cpus; 0 without a cpu probe). */
double sched_node_demand(const sched_node_t *n);
double sched_node_load(const sched_node_t *n);
/* Free memory less what was committed there since its sample (>= 0). */
uint64_t sched_node_free(const sched_node_t *n);
/* Whether a peer's vector may be used: fresh and its node alive. */
bool sched_peer_usable(const sched_input_t *in, const sched_node_t *n);
/* Whether a job may move now (outside its hold). */
bool sched_job_movable(const sched_input_t *in, const sched_job_t *j,
                       uint64_t hold_ms);
/* The best usable peer with CPU figures (mem false) or memory figures
 * (mem true) -- a before b when before(a, b, arg) -- or `start` (may be NULL)
 * if none comes before it. *ret_known (may be NULL): the candidates,
 * start included. */
const sched_node_t *sched_best_peer(const sched_input_t *in, bool mem,
                                    const sched_node_t *start,
                                    bool (*before)(const sched_node_t *a,
                                                   const sched_node_t *b,
                                                   const void *arg),
                                    const void *arg, size_t *ret_known);
/* A job's CPU demand on this node (see the top of this file). */
double sched_job_demand(const sched_node_t *self, const sched_job_t *j);

/* Memory ushering (sched-mosix and sched-mem): 1 when out names the job
 * to move and where, 0 when none must (out->reason says why). */
int sched_usher(const sched_input_t *in, sched_verdict_t *out);

/* Appends printf output to out->reason. */
void sched_reason(sched_verdict_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
