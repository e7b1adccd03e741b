/* sampler.h - runs probed's probes at their periods into the node's
 * vector.
 *
 * Probes with the same period share one timer and one new vector: on each
 * tick the sampler runs them in table order (and after them every
 * configured probe that needs one of them, so "migration-cost" follows
 * every "jobs"), then bumps the vector's seq, stamps it and calls the
 * owner's callback (which publishes it). A tick with a probe that needs
 * the local ghostd's job list first asks ghostd (Ps{local_only}, through
 * cairn_peers: the loop never blocks) and runs when the answer -- or the
 * failure, which those probes then report -- arrives.
 *
 * seq starts at the start time in unix ms x 1000, so a probed that
 * restarts sends vectors newer than any of its previous life (unless that
 * life made 1000 vectors a millisecond).
 */
#ifndef PROBED_SAMPLER_H
#define PROBED_SAMPLER_H

#include "loadvec.h"
#include "nodecg.h"
#include "probe.h"
#include "service.h"

typedef struct sampler sampler_t;

/* A new local vector is in *local. */
typedef void (*sampler_fn)(void *userdata);

/* One probe's record since start or the last change of configuration. */
typedef struct sampler_stat {
    uint64_t samples;       /* taken, successful or not */
    char error[1024];       /* the last sample's failure, "" if none */
} sampler_stat_t;

/* The sampler of svc's node, filling *local (the caller's, which must
 * outlive it). cg is copied. NULL on ENOMEM. */
sampler_t *sampler_new(cairn_service_t *svc, const nodecg_t *cg,
                       loadvec_t *local, sampler_fn fn, void *userdata);
sampler_t *sampler_free(sampler_t *s);   /* NULL-safe; returns NULL */

/* Starts, or changes to, cfg's probes and periods (timers made anew; the
 * state of a probe that stays configured is kept, so its next rate is
 * over the last period). 0 or -errno (-ENOMEM). */
int sampler_apply(sampler_t *s, const probe_config_t *cfg);

/* The record of probe_table row `index`. */
const sampler_stat_t *sampler_stat(const sampler_t *s, int index);

#endif
