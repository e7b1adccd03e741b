/* clusterd.h - private umbrella of the clusterd daemon.
 *
 * clusterd owns membership and the node directory. Its context holds
 * everything the daemon knows; handlers and the membership protocol reach it
 * through the `ctx` pointer the skeleton passes back.
 */
#ifndef CLUSTERD_H
#define CLUSTERD_H

#include "clusterd.pb-c.h"
#include "dashboard.h"
#include "membership.h"
#include "service.h"

typedef struct clusterd {
    cairn_service_t *svc;       /* the skeleton running us; set in start */
    membership_t *members;      /* SWIM membership; owned */
    dashboard_t *dash;          /* the dashboard, NULL without metrics-port; owned */
} clusterd_t;

/* The skeleton's view of clusterd: name, message types, handler table. */
extern const cairn_service_ops_t clusterd_ops;

/* Frees what the context owns (after cairn_service_main returns). */
void clusterd_done(clusterd_t *cd);

#endif
