/* service-metrics.c - what the daemon skeleton measures for every service
 * (service-private.h, metrics.h, docs/metrics.md): its requests by type
 * and status, their latency, which service runs where and since when;
 * and the HTTP server that shows them on the service's metrics-port.
 *
 * Design. The registry is made before ops->start, so a service declares
 * its own families there (cairn_service_metrics); the server starts once
 * the sockets are bound, on the node's address -- in a local cluster the
 * node's network namespace, where the daemon runs. A service without a
 * metrics-port counts all the same and nobody reads it: no listener, no
 * thread. A reload never moves the listener (a changed metrics-port is
 * logged, as a changed port is).
 */
#include <errno.h>
#include <stdio.h>

#include "cairn-config.h"
#include "log.h"
#include "service-private.h"
#include "util/clock.h"

/* Request latency buckets, seconds: 100 us (a local answer) to 30 s (a
 * migration's stream). */
static const double s_latency_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

cairn_metrics_t *cairn_service_metrics(cairn_service_t *svc)
{
    return svc ? svc->metrics : NULL;
}

int service_metrics_start(cairn_service_t *svc)
{
    char node[16];
    int r;

    if (!(svc->metrics = cairn_metrics_new()))
        return cairn_log_err(-ENOMEM, "metrics", "msg=\"no registry\"");
    svc->m_requests = cairn_metrics_counter(
        svc->metrics, "cairn_requests_total",
        "Requests answered, by request type and status code.", "type,status");
    svc->m_latency = cairn_metrics_histogram(
        svc->metrics, "cairn_request_duration_seconds",
        "Time from a request reaching its handler to its answer.", "type",
        s_latency_bounds, sizeof(s_latency_bounds) / sizeof(s_latency_bounds[0]));
    cairn_metric_t *info = cairn_metrics_gauge(
        svc->metrics, "cairn_service_info",
        "Always 1: the service, the node it runs on, the version.",
        "service,node,version");
    cairn_metric_t *start = cairn_metrics_gauge(
        svc->metrics, "cairn_service_start_time_seconds",
        "Unix time the service started.", NULL);
    snprintf(node, sizeof(node), "%u", svc->node->id);
    if ((r = cairn_metric_set(info, 1, svc->ops->name, node, CAIRN_VERSION)) < 0 ||
        (r = cairn_metric_set(start, (double)cairn_realtime_ms() / 1000.0)) < 0 ||
        !svc->m_requests || !svc->m_latency)
        return cairn_log_err(r < 0 ? r : -ENOMEM, "metrics", "msg=\"cannot declare\"");
    return 0;
}

int service_metrics_listen(cairn_service_t *svc)
{
    uint16_t port = svc->sdesc->metrics_port;
    int r;

    if (port == 0) {
        cairn_log_debug("metrics", "msg=\"no metrics-port: no HTTP listener\"");
        return 0;
    }
    if ((r = cairn_metrics_listen(svc->metrics, svc->node->address, port)) < 0)
        return cairn_log_err(r, "metrics-listen", "address=%s port=%u",
                             svc->node->address, port);
    cairn_log_info("metrics-listen", "address=%s port=%u", svc->node->address, port);
    return 0;
}

void service_metrics_request(cairn_service_t *svc, const char *type, int code,
                             uint64_t started_ns)
{
    type = type ? type : "none";
    cairn_metric_add(svc->m_requests, 1, type, cairn_code_name(code));
    if (started_ns)
        cairn_metric_observe(svc->m_latency, cairn_metrics_since(started_ns), type);
}
