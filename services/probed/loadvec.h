/* loadvec.h - a node's load vector as probed holds it.
 *
 * The probes fill a loadvec_t (plain C, no protobuf), the window keeps
 * peers' vectors in the same form, and the two conversions below are the
 * only places that touch probed.proto's LoadVector: on the way out (the
 * PUB socket, Request{load}, the gossip) and on the way in (a peer's
 * gossip, checked field by field so a bad vector is refused with the
 * reason, never merged).
 */
#ifndef PROBED_LOADVEC_H
#define PROBED_LOADVEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "probed.pb-c.h"

#define LOADVEC_GPID_MAX 40   /* "<node>.<sequence>" with room to spare */

/* One job of the node (the "jobs" and "migration-cost" probes). */
typedef struct loadvec_job {
    char gpid[LOADVEC_GPID_MAX];  /* the job's global id */
    uint32_t uid;                 /* whose job */
    double cpu;                   /* CPUs it used over the last period */
    uint64_t rss_bytes;           /* resident memory */
    int64_t rss_growth_bytes_s;   /* change of rss per second */
    uint64_t migration_cost_ms;   /* what moving it would take, estimated */
    uint64_t age_ms;              /* since its launch or its arrival here */
} loadvec_job_t;

typedef struct loadvec {
    uint32_t node;                /* whose vector */
    uint64_t seq;                 /* the node's counter: newer wins */
    uint64_t sampled_ms;          /* unix ms of the last sample */
    double cpus;                  /* capacity in CPUs */
    double cpu_load;              /* CPUs busy over the last period */
    uint32_t runnable;            /* run-queue length */
    uint64_t mem_limit_bytes;     /* the node's memory */
    uint64_t mem_used_bytes;      /* of it, used */
    uint64_t mem_free_bytes;      /* limit - used, never negative */
    uint32_t jobs;                /* jobs running on the node */
    loadvec_job_t *job;           /* owned; the local vector's only */
    size_t n_job;                 /* entries in job */
    uint32_t missing;             /* bit i: probe i of probe_table not run */
} loadvec_t;

/* Frees v's job list and zeroes it (v itself is the caller's). */
void loadvec_clear(loadvec_t *v);

/* Copies src into dst (dst cleared first); with_jobs copies the job list
 * too, else dst has none. 0 or -ENOMEM (dst then empty). */
int loadvec_copy(loadvec_t *dst, const loadvec_t *src, bool with_jobs);

/* Zeroed memory that lives as long as the message built from it: a
 * request's arena (cairn_request_alloc) or a loadvec_arena_t. */
typedef void *(*loadvec_alloc_fn)(void *userdata, size_t size);

/* Fills out (already LoadVector-initialised) from v; with_jobs adds the
 * job list (the local vector's; never gossiped). Arrays come from alloc;
 * strings point into v and the probe table, so v must outlive out.
 * 0 or -ENOMEM. */
int loadvec_to_pb(const loadvec_t *v, bool with_jobs,
                  Cairn__Probed__LoadVector *out, loadvec_alloc_fn alloc,
                  void *userdata);

/* Checks a peer's vector and copies it into out (no jobs: a gossiped
 * vector carries none, and one that does is refused). On a refusal
 * returns -EINVAL with the reason in why; out untouched. */
int loadvec_from_pb(const Cairn__Probed__LoadVector *m, loadvec_t *out,
                    char *why, size_t why_size);

/* A few heap blocks freed together: the arena of a message built outside
 * a request (a gossip, a publication). */
#define LOADVEC_ARENA_BLOCKS 64
typedef struct loadvec_arena {
    void *blocks[LOADVEC_ARENA_BLOCKS];  /* calloc'ed */
    size_t n;                            /* in use */
} loadvec_arena_t;

/* loadvec_alloc_fn over a loadvec_arena_t; NULL when full or on ENOMEM. */
void *loadvec_arena_alloc(void *arena, size_t size);
/* Frees every block; the arena can be used again. */
void loadvec_arena_clear(loadvec_arena_t *a);

#endif
