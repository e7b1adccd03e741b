/* gossip.h - probed's dissemination, openMosix-style.
 *
 * Every gossip period the node's newest vector, with up to
 * GOSSIP_RELAYED of the freshest from its window, goes to `fanout` random
 * alive peers running probed (the membership view of services/common/
 * view.h) -- never to all of them, and never twice to a peer whose last
 * request is still unanswered. A peer merges what it gets into its window
 * (window.h). So each node sends fanout messages a period and receives
 * fanout on average, however many nodes there are: the traffic per node
 * is flat in N (bench/sched.sh), and a node knows a few candidates, not
 * the cluster.
 *
 * Ages: a vector's age on arrival is the receiver's wall clock less the
 * vector's sampled_ms (0 if that is in the future: clocks differ a
 * little); a vector older than GOSSIP_MAX_AGE_PERIODS periods is not
 * merged, and window entries past that age are dropped on every tick.
 * A node that dies or leaves is dropped from the window when the view
 * says so.
 */
#ifndef PROBED_GOSSIP_H
#define PROBED_GOSSIP_H

#include <stdint.h>

#include "loadvec.h"
#include "service.h"
#include "window.h"

#define GOSSIP_RELAYED 2          /* window vectors added to each message */
#define GOSSIP_MAX_AGE_PERIODS 4  /* a vector older than this is stale */
#define GOSSIP_MAX_VECTORS 16     /* in one request; more is refused */

typedef struct gossip gossip_t;

/* The gossip of svc's node: sends *local (the caller's) and relays from
 * w, merges into w. Both must outlive it. NULL on ENOMEM. */
gossip_t *gossip_new(cairn_service_t *svc, window_t *w, const loadvec_t *local);
gossip_t *gossip_free(gossip_t *g);   /* NULL-safe; returns NULL */

/* Starts the membership view and the period's timer (from ops->ready).
 * 0 or -errno. */
int gossip_start(gossip_t *g, uint32_t period_ms, uint32_t fanout);

/* A new period or fanout (a reload); the timer is made anew. 0 or -errno. */
int gossip_set(gossip_t *g, uint32_t period_ms, uint32_t fanout);

/* Drops window entries past the maximum age (before the window is shown). */
void gossip_age(gossip_t *g);

/* Request{gossip}: merges the sender's vectors; INVALID_ARGUMENT naming
 * the first bad vector (then none is merged). A handler. */
int gossip_handle(gossip_t *g, cairn_request_t *req);

/* Vectors sent and received (valid ones) since start. */
uint64_t gossip_sent(const gossip_t *g);
uint64_t gossip_received(const gossip_t *g);

#endif
