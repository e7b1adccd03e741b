/* probe.h - one interface for every probe of probed, and their table.
 *
 * A probe is one small source file (probe-cpu.c, probe-runqueue.c, ...)
 * that defines one probe_ops_t: its name, the probe it needs, its state's
 * size and `sample`, which fills its fields of the node's vector from
 * what it reads under env->root (and, for "jobs", from the local ghostd's
 * job list the sampler fetched before). Adding a probe is a file and a
 * row of probe_table (probe.c).
 *
 * The configuration -- which probes run, at which period, and the gossip
 * settings -- is read from the description by probe_config_from, which
 * refuses an unknown probe name (naming the known ones), a probe whose
 * `needs` is not configured, and a period below PROBE_MIN_PERIOD_MS.
 */
#ifndef PROBED_PROBE_H
#define PROBED_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/description.h"
#include "cairn/error.h"
#include "loadvec.h"
#include "nodecg.h"

#define PROBE_MAX 8                  /* rows of probe_table at most */
#define PROBE_MIN_PERIOD_MS 50       /* faster only burns the node's CPU */
#define PROBE_DEFAULT_GOSSIP_MS 1000 /* with no probe configured */

/* A job as the local ghostd's Ps{local_only} lists it. */
typedef struct probe_psjob {
    const char *gpid;
    uint32_t uid;
    const char *state;      /* "running", "stopped", "migrating", ... */
    double cpu_percent;     /* cpu time over the job's age, in percent */
    uint64_t rss_bytes;
    uint64_t start_ms;      /* unix ms of its launch */
    uint32_t moves;         /* migrations so far */
} probe_psjob_t;

/* What a sample may read. */
typedef struct probe_env {
    const char *root;           /* "" on a node; a fixture tree in tests */
    const nodecg_t *cg;         /* the node's cgroup (nodecg_find) */
    uint64_t now_ns;            /* monotonic time of this sample */
    uint64_t wall_ms;           /* unix ms of this sample */
    long self_tid;              /* the sampling thread (not counted as
                                 * runnable), 0 in tests */
    long clk_tck;               /* clock ticks per second */
    /* the local ghostd's jobs, for probes with needs_ps */
    bool ps_ok;                 /* the list below was fetched */
    const char *ps_error;       /* else why not */
    const probe_psjob_t *ps;    /* its jobs */
    size_t n_ps;
} probe_env_t;

typedef struct probe_ops {
    const char *name;           /* as the description names it */
    const char *needs;          /* a probe whose fields it reads, or NULL */
    bool needs_ps;              /* sampled after the ghostd's job list */
    size_t state_size;          /* zeroed before the first sample */
    /* Fills its fields of v (others untouched). On a failure returns
     * -errno with err set; v's fields stay as they were. */
    int (*sample)(void *state, const probe_env_t *env, loadvec_t *v,
                  cairn_error_t *err);
    void (*fini)(void *state);  /* frees what state holds; may be NULL */
} probe_ops_t;

extern const probe_ops_t probe_cpu;
extern const probe_ops_t probe_runqueue;
extern const probe_ops_t probe_memory;
extern const probe_ops_t probe_jobs;
extern const probe_ops_t probe_migration_cost;

/* The table, in the order vectors list missing probes. */
extern const probe_ops_t *const probe_table[];
extern const size_t probe_table_size;

/* The row named name, or -ENOENT. */
int probe_index(const char *name);

/* probed's configuration. */
typedef struct probe_config {
    struct {
        int index;              /* row of probe_table */
        uint32_t period_ms;
    } probes[PROBE_MAX];        /* in the description's order */
    size_t n_probes;
    uint32_t gossip_period_ms;  /* given, else the shortest probe period */
    uint32_t gossip_fanout;
    uint32_t window;
} probe_config_t;

/* Reads the configuration from d. -EINVAL with err (INVALID_CONFIG)
 * naming the probe and why; ret untouched then. */
int probe_config_from(const cairn_description_t *d, probe_config_t *ret,
                      cairn_error_t *err);

/* The bit of row i in loadvec_t.missing for everything cfg does not run. */
uint32_t probe_config_missing(const probe_config_t *cfg);

#endif
