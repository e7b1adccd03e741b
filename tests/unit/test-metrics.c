/* test-metrics.c - the metrics registry and its HTTP server
 * (services/common/metrics.h): the exact exposition text of counters,
 * gauges and histograms, escaping, refusals (bad names, wrong kinds,
 * negative counter steps, the series cap), pages, and a scrape over real
 * HTTP while another thread updates (no torn series: a histogram's
 * +Inf bucket always equals its _count).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"

static char *s_render(cairn_metrics_t *m)
{
    char *text = NULL;
    size_t len = 0;

    cr_assert_eq(cairn_metrics_render(m, &text, &len), 0);
    cr_assert_eq(strlen(text), len);
    return text;
}

Test(metrics, counter_gauge_text)
{
    cairn_metrics_t *m = cairn_metrics_new();
    cairn_metric_t *c = cairn_metrics_counter(m, "cairn_x_total", "X things.", "type,status");
    cairn_metric_t *g = cairn_metrics_gauge(m, "cairn_y", "Why\\not\nnow.", NULL);

    cr_assert_not_null(c);
    cr_assert_not_null(g);
    cr_assert_eq(cairn_metrics_counter(m, "cairn_x_total", "again", "type,status"), c);
    cr_assert_eq(cairn_metric_add(c, 1, "a", "ok"), 0);
    cr_assert_eq(cairn_metric_add(c, 2, "a", "ok"), 0);
    cr_assert_eq(cairn_metric_add(c, 1, "q\"\\\n", "ok"), 0);
    cr_assert_eq(cairn_metric_set(g, 0.25), 0);
    cr_assert_eq(cairn_metric_add(g, -1), 0);
    char *text = s_render(m);
    cr_assert_str_eq(text,
                     "# HELP cairn_x_total X things.\n"
                     "# TYPE cairn_x_total counter\n"
                     "cairn_x_total{type=\"a\",status=\"ok\"} 3\n"
                     "cairn_x_total{type=\"q\\\"\\\\\\n\",status=\"ok\"} 1\n"
                     "# HELP cairn_y Why\\\\not\\nnow.\n"
                     "# TYPE cairn_y gauge\n"
                     "cairn_y -0.75\n");
    free(text);
    cairn_metrics_free(m);
}

Test(metrics, histogram_text)
{
    static const double b[] = { 0.001, 0.1, 1 };
    cairn_metrics_t *m = cairn_metrics_new();
    cairn_metric_t *h = cairn_metrics_histogram(m, "cairn_d_seconds", "D.", "type", b, 3);

    cr_assert_not_null(h);
    cr_assert_eq(cairn_metric_observe(h, 0.0005, "t"), 0);
    cr_assert_eq(cairn_metric_observe(h, 0.1, "t"), 0);   /* le is inclusive */
    cr_assert_eq(cairn_metric_observe(h, 5, "t"), 0);
    char *text = s_render(m);
    cr_assert_str_eq(text,
                     "# HELP cairn_d_seconds D.\n"
                     "# TYPE cairn_d_seconds histogram\n"
                     "cairn_d_seconds_bucket{type=\"t\",le=\"0.001\"} 1\n"
                     "cairn_d_seconds_bucket{type=\"t\",le=\"0.1\"} 2\n"
                     "cairn_d_seconds_bucket{type=\"t\",le=\"1\"} 2\n"
                     "cairn_d_seconds_bucket{type=\"t\",le=\"+Inf\"} 3\n"
                     "cairn_d_seconds_sum{type=\"t\"} 5.1005\n"
                     "cairn_d_seconds_count{type=\"t\"} 3\n");
    free(text);
    cairn_metrics_free(m);
}

Test(metrics, refusals)
{
    static const double bad[] = { 1, 0.5 };
    cairn_metrics_t *m = cairn_metrics_new();
    cairn_metric_t *c = cairn_metrics_counter(m, "cairn_c_total", "", "k");

    cr_assert_null(cairn_metrics_counter(m, "9lives", "", NULL));
    cr_assert_null(cairn_metrics_counter(m, "has space", "", NULL));
    cr_assert_null(cairn_metrics_counter(m, "cairn_l", "", "ok,__reserved"));
    cr_assert_null(cairn_metrics_counter(m, "cairn_l", "", "a,b,c,d,e"));
    cr_assert_null(cairn_metrics_histogram(m, "cairn_h", "", "le", (double[]){ 1 }, 1));
    cr_assert_null(cairn_metrics_histogram(m, "cairn_h", "", NULL, bad, 2));
    cr_assert_null(cairn_metrics_gauge(m, "cairn_c_total", "", "k"), "same name, other kind");
    cr_assert_null(cairn_metrics_counter(m, "cairn_c_total", "", "j"), "other labels");
    cr_assert_null(cairn_metrics_counter(NULL, "cairn_n", "", NULL));
    cr_assert_eq(cairn_metric_add(NULL, 1), -EINVAL);
    cr_assert_eq(cairn_metric_add(c, -1, "x"), -EINVAL);
    cr_assert_eq(cairn_metric_set(c, 1, "x"), -EINVAL);
    cr_assert_eq(cairn_metric_observe(c, 1, "x"), -EINVAL);
    cr_assert_eq(cairn_metric_add(c, 1, (const char *)NULL), -EINVAL);
    char v[16];
    for (int i = 0; i < CAIRN_METRIC_MAX_SERIES; i++) {
        snprintf(v, sizeof(v), "%d", i);
        cr_assert_eq(cairn_metric_add(c, 1, v), 0);
    }
    cr_assert_eq(cairn_metric_add(c, 1, "one-too-many"), -ENOSPC);
    cr_assert_eq(cairn_metric_add(c, 1, "7"), 0, "an existing series still counts");
    cairn_metrics_free(m);
}

Test(metrics, pages)
{
    cairn_metrics_t *m = cairn_metrics_new();

    cr_assert_eq(cairn_metrics_page(m, "nope", "text/plain", "x", 1), -EINVAL);
    cr_assert_eq(cairn_metrics_page(m, "/a", "text/plain", "one", 3), 0);
    cr_assert_eq(cairn_metrics_page(m, "/a", "text/plain", "two", 3), 0);
    cr_assert_eq(cairn_metrics_page_read_ms(m, "/a"), 0);
    cr_assert_eq(cairn_metrics_page_read_ms(m, "/none"), 0);
    cairn_metrics_free(m);
}

/* ---- over HTTP ------------------------------------------------------------ */

/* GET path from 127.0.0.1:port; the whole answer, headers included. */
static char *s_get(uint16_t port, const char *method, const char *path)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    char req[256], *buf = calloc(1, 1 << 20);
    size_t n = 0;
    ssize_t k;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    while ((k = read(fd, buf + n, (1 << 20) - 1 - n)) > 0)
        n += (size_t)k;
    close(fd);
    return buf;
}

/* A port free on 127.0.0.1 now. */
static uint16_t s_free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct {
    cairn_metric_t *h;
    _Atomic int stop;
} s_writer_t;

static void *s_write(void *arg)
{
    s_writer_t *w = arg;
    char type[8];

    for (unsigned i = 0; !w->stop; i++) {
        snprintf(type, sizeof(type), "t%u", i % 8);
        cairn_metric_observe(w->h, (double)(i % 100) / 100.0, type);
    }
    return NULL;
}

Test(metrics, http_while_updating)
{
    static const double b[] = { 0.1, 0.5 };
    cairn_metrics_t *m = cairn_metrics_new();
    s_writer_t w = { cairn_metrics_histogram(m, "cairn_h_seconds", "H.", "type", b, 2), 0 };
    uint16_t port = s_free_port();
    pthread_t t;

    cr_assert_eq(cairn_metrics_listen(m, "not-an-address", port), -EINVAL);
    cr_assert_eq(cairn_metrics_listen(m, "127.0.0.1", port), 0);
    cr_assert_eq(cairn_metrics_listen(m, "127.0.0.1", port), -EALREADY);
    cr_assert_eq(cairn_metrics_page(m, "/p", "application/json", "{}", 2), 0);
    pthread_create(&t, NULL, s_write, &w);
    for (int i = 0; i < 30; i++) {
        char *r = s_get(port, "GET", "/metrics");
        cr_assert(strstr(r, "HTTP/1.0 200") || strstr(r, "HTTP/1.1 200"), "%.80s", r);
        cr_assert(strstr(r, "text/plain; version=0.0.4"));
        /* every series: +Inf bucket == _count */
        for (char *p = strstr(r, "le=\"+Inf\"} "); p; p = strstr(p + 1, "le=\"+Inf\"} ")) {
            unsigned long inf = strtoul(p + 11, NULL, 10);
            char *cnt = strstr(p, "_count{");
            cr_assert_not_null(cnt);
            cr_assert_eq(strtoul(strchr(cnt, ' ') + 1, NULL, 10), inf);
        }
        free(r);
    }
    w.stop = 1;
    pthread_join(t, NULL);
    char *r = s_get(port, "GET", "/p");
    cr_assert(strstr(r, "application/json") && strstr(r, "\r\n\r\n{}"), "%s", r);
    cr_assert_gt(cairn_metrics_page_read_ms(m, "/p"), 0);
    free(r);
    r = s_get(port, "POST", "/metrics");
    cr_assert(strstr(r, " 405 "), "%.80s", r);
    free(r);
    r = s_get(port, "GET", "/elsewhere");
    cr_assert(strstr(r, " 404 "), "%.80s", r);
    free(r);
    cairn_metrics_stop(m);
    cairn_metrics_stop(m);
    cairn_metrics_free(m);
}
