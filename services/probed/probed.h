/* probed.h - private umbrella of the probed daemon.
 *
 * probed samples its node's load with the probes the description names
 * (probe.h, sampler.h), publishes every new vector on its PUB socket
 * (topic "load"), spreads it to a few random peers and keeps a window of
 * theirs (gossip.h, window.h), and answers Request{load} with all of it.
 * docs/scheduler.md has the design.
 */
#ifndef PROBED_H
#define PROBED_H

#include "gossip.h"
#include "loadvec.h"
#include "nodecg.h"
#include "probe.h"
#include "probed.pb-c.h"
#include "sampler.h"
#include "service.h"
#include "window.h"

typedef struct probed {
    cairn_service_t *svc;       /* the skeleton running us; set in start */
    probe_config_t cfg;         /* the configuration that runs */
    char config_error[1024];     /* the last reload's refusal, "" if none */
    nodecg_t cg;                /* the node's cgroup, found at start */
    loadvec_t local;            /* this node's newest vector; owns its jobs */
    window_t *window;           /* peers' vectors; owned */
    sampler_t *sampler;         /* the probes on their timers; owned */
    gossip_t *gossip;           /* the dissemination; owned */
} probed_t;

/* The skeleton's view of probed: name, message types, handler table. */
extern const cairn_service_ops_t probed_ops;

/* Frees what the context owns (after cairn_service_main returns). */
void probed_done(probed_t *pd);

#endif
