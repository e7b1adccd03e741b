/* dashboard.h - clusterd's dashboard (docs/metrics.md, "The dashboard"):
 * the static page at / and the JSON it polls at /api/cluster, both served
 * by the skeleton's metrics HTTP server.
 *
 * Once a second the dashboard asks this node's own services what they
 * know -- clusterd the members, probed the load vectors of its gossip
 * window (kept as a load history per node) and, only while someone
 * polls the JSON, ghostd the cluster's jobs (its one fan-out) -- and
 * publishes a new JSON document. A job seen on another node than the
 * time before is a migration; the last ones are listed.
 */
#ifndef CLUSTERD_DASHBOARD_H
#define CLUSTERD_DASHBOARD_H

#include "service.h"

typedef struct dashboard dashboard_t;

/* A dashboard for svc when clusterd has a metrics-port, else NULL with
 * *ret_r 0 (nothing to show it on); NULL with *ret_r < 0 on a failure.
 * The caller owns the result. */
dashboard_t *dashboard_new(cairn_service_t *svc, int *ret_r);
/* Starts the period (after READY: it asks the node's services). */
int dashboard_start(dashboard_t *db);
/* Frees; pending questions are dropped; NULL-safe; returns NULL. */
dashboard_t *dashboard_free(dashboard_t *db);

#endif
