/* metrics.h - a daemon's Prometheus metrics and the HTTP server that
 * shows them (docs/metrics.md).
 *
 * A registry holds metric families (counter, gauge, histogram), each with
 * a fixed list of label names and the series its label values made. The
 * service's loop updates them; the HTTP server (libmicrohttpd, on its own
 * thread) renders them in the text exposition format at /metrics. One
 * mutex guards the registry: an update takes it for a few instructions, a
 * scrape for one rendering, so neither thread ever reads what the other
 * is writing.
 *
 * Besides /metrics the server answers pages: a path, a content type and a
 * body the loop gives it (a copy is kept; giving the same path again
 * replaces it). clusterd's dashboard is two of them: its static HTML and
 * the JSON it rebuilds every second. Anything else is 404, any method but
 * GET and HEAD 405.
 *
 * Ownership: the registry owns its families, their series and the pages;
 * a family pointer stays valid until the registry is freed.
 */
#ifndef CAIRN_METRICS_H
#define CAIRN_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cairn_metrics cairn_metrics_t;
typedef struct cairn_metric cairn_metric_t;

/* Label names a family may have at most, and series per family (a
 * label value past that is refused with -ENOSPC, never grows memory). */
#define CAIRN_METRIC_MAX_LABELS 4
#define CAIRN_METRIC_MAX_SERIES 512

/* A new, empty registry; NULL on ENOMEM. The caller owns it. */
cairn_metrics_t *cairn_metrics_new(void);
/* Stops the server if it runs, frees everything; NULL-safe; returns NULL. */
cairn_metrics_t *cairn_metrics_free(cairn_metrics_t *m);

/* Declares a family. name matches [a-zA-Z_:][a-zA-Z0-9_:]*, labels is
 * NULL or comma-separated label names ("type,status"). Declaring a name
 * again with the same kind and labels returns the same family. NULL when
 * m is NULL, on a bad name or label list, a name declared differently,
 * or ENOMEM -- the update functions accept NULL, so a service whose
 * registration failed runs on unmeasured. bounds: a histogram's bucket
 * upper bounds, ascending (+Inf is implied); copied. */
cairn_metric_t *cairn_metrics_counter(cairn_metrics_t *m, const char *name,
                                      const char *help, const char *labels);
cairn_metric_t *cairn_metrics_gauge(cairn_metrics_t *m, const char *name,
                                    const char *help, const char *labels);
cairn_metric_t *cairn_metrics_histogram(cairn_metrics_t *m, const char *name,
                                        const char *help, const char *labels,
                                        const double *bounds, size_t n_bounds);

/* Updates the series of the label values that follow (one const char *
 * per label name of the family, none if it has no labels). add: a
 * counter grows by v >= 0, a gauge moves by v; set: a gauge takes v;
 * observe: a histogram counts v. -EINVAL for a NULL family, a NULL label
 * value, the wrong kind or a negative counter step; -ENOSPC when the
 * family holds CAIRN_METRIC_MAX_SERIES already; -ENOMEM. */
int cairn_metric_add(cairn_metric_t *f, double v, ...);
int cairn_metric_set(cairn_metric_t *f, double v, ...);
int cairn_metric_observe(cairn_metric_t *f, double v, ...);

/* The exposition text of every family, in declaration order (HELP, TYPE,
 * then the series in creation order). The caller frees *ret. */
int cairn_metrics_render(cairn_metrics_t *m, char **ret, size_t *ret_len);

/* Serves body (len bytes, copied) at path with content type `type`;
 * replaces an earlier body at that path. */
int cairn_metrics_page(cairn_metrics_t *m, const char *path, const char *type,
                       const void *body, size_t len);

/* cairn_now_ms() when path was last served, 0 if never or no such page:
 * lets the loop gather what a page shows only while someone looks. */
uint64_t cairn_metrics_page_read_ms(cairn_metrics_t *m, const char *path);

/* Starts the HTTP server on address (an IPv4 or IPv6 literal) and port,
 * its own thread. -EALREADY when it runs, -EINVAL for an address that is
 * not a literal, else the bind's -errno (-EADDRINUSE, ...). */
int cairn_metrics_listen(cairn_metrics_t *m, const char *address, uint16_t port);
/* Stops it (waits for the thread); NULL-safe, safe when not running. */
void cairn_metrics_stop(cairn_metrics_t *m);

/* The seconds since `start_ns` (cairn_now_ns(), util/clock.h) -- what a
 * latency histogram observes. */
double cairn_metrics_since(uint64_t start_ns);

#endif
