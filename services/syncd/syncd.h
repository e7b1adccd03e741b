/* syncd.h - private umbrella of the syncd daemon.
 *
 * syncd gives the processes of the cluster named mutexes, rwlocks,
 * semaphores, barriers and condition variables (README.md has the design).
 * Its context holds the relay, which owns everything else (the membership
 * view, the objects this node is home of, the node cache, the connections
 * to the other nodes' syncd); handlers reach it through the `ctx` pointer
 * the skeleton passes back.
 */
#ifndef SYNCD_H
#define SYNCD_H

#include "relay.h"
#include "service.h"
#include "syncd.pb-c.h"

typedef struct syncd {
    cairn_service_t *svc;       /* the skeleton running us; set in start */
    relay_t *relay;             /* requests, homes, cache, failover; owned */
} syncd_t;

/* The skeleton's view of syncd: name, message types, handler table. */
extern const cairn_service_ops_t syncd_ops;

/* Frees what the context owns (after cairn_service_main returns). */
void syncd_done(syncd_t *sd);

#endif
