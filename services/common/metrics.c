/* metrics.c - a daemon's Prometheus registry and its HTTP server
 * (metrics.h, docs/metrics.md).
 *
 * Design. Families and pages sit in arrays that only grow; a series is
 * found by comparing its label values (a family has a few dozen series at
 * most, a linear scan is cheaper than hashing them). Every access, from
 * the loop (updates) or from libmicrohttpd's thread (a scrape, a page),
 * holds m->lock, so the two threads never see half a series; what a
 * response needs is copied out under the lock and the lock is let go
 * before libmicrohttpd sends it.
 *
 * The text format (Prometheus "exposition formats", version 0.0.4): one
 * HELP and one TYPE line per family, `name{l="v",...} value` per series;
 * a histogram writes cumulative `_bucket{le="..."}` lines ending with
 * le="+Inf", then `_sum` and `_count`. Label values escape \, " and
 * newline; HELP text escapes \ and newline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "metrics.h"
#include "util/cleanup.h"
#include "util/clock.h"

#define HTTP_CONNECTION_LIMIT 32     /* scrapers and dashboards at once */
#define HTTP_TIMEOUT_S 10            /* an idle connection is closed after */

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } m_kind_t;

static const char *const s_kind_names[] = { "counter", "gauge", "histogram" };

typedef struct m_series {
    char **values;        /* label values (owned), n_labels of them */
    double value;         /* counter, gauge: the value; histogram: the sum */
    uint64_t count;       /* histogram: observations */
    uint64_t *buckets;    /* histogram: per bucket, n_bounds + 1 (not cumulative) */
} m_series_t;

struct cairn_metric {
    cairn_metrics_t *owner;   /* the registry (its lock) */
    m_kind_t kind;            /* counter, gauge, histogram */
    char *name;               /* metric name (owned) */
    char *help;               /* HELP text (owned) */
    char *labels;             /* label names as declared, "" if none (owned) */
    char *label[CAIRN_METRIC_MAX_LABELS]; /* each label name (owned) */
    size_t n_labels;          /* how many */
    double *bounds;           /* histogram: bucket upper bounds (owned) */
    size_t n_bounds;          /* how many */
    m_series_t *series;       /* the series (owned) */
    size_t n_series;          /* how many */
};

typedef struct m_page {
    char *path;               /* "/", "/api/cluster" (owned) */
    char *type;               /* content type (owned) */
    void *body;               /* the bytes (owned) */
    size_t len;               /* their size */
    uint64_t read_ms;         /* cairn_now_ms() of its last GET, 0: never */
} m_page_t;

struct cairn_metrics {
    pthread_mutex_t lock;     /* guards everything below */
    cairn_metric_t **families;/* declared families, in order (owned) */
    size_t n_families;        /* how many */
    m_page_t *pages;          /* served pages (owned) */
    size_t n_pages;           /* how many */
    struct MHD_Daemon *httpd; /* the server, NULL when not running */
};

/* ---- names ------------------------------------------------------------- */

static bool s_valid_name(const char *s, bool colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || (colon && *s == ':')))
            return false;
    return true;
}

/* Splits "a,b" into f->label; false on a bad or reserved name. */
static bool s_split_labels(cairn_metric_t *f, const char *labels)
{
    _cleanup_free_ char *copy = strdup(labels ? labels : "");
    char *save = NULL;

    if (!copy)
        return false;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (f->n_labels == CAIRN_METRIC_MAX_LABELS || !s_valid_name(t, false) ||
            strncmp(t, "__", 2) == 0 || (f->kind == M_HISTOGRAM && strcmp(t, "le") == 0))
            return false;
        if (!(f->label[f->n_labels++] = strdup(t)))
            return false;
    }
    return true;
}

/* ---- families ---------------------------------------------------------- */

static void s_series_clear(const cairn_metric_t *f, m_series_t *s)
{
    for (size_t i = 0; s->values && i < f->n_labels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->buckets);
}

static cairn_metric_t *s_family_free(cairn_metric_t *f)
{
    if (!f)
        return NULL;
    for (size_t i = 0; i < f->n_series; i++)
        s_series_clear(f, &f->series[i]);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->label[i]);
    free(f->series);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f->labels);
    free(f);
    return NULL;
}

static bool s_bounds_ok(const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(b[i]) || (i > 0 && b[i] <= b[i - 1]))
            return false;
    return true;
}

static cairn_metric_t *s_family_new(cairn_metrics_t *m, m_kind_t kind,
                                    const char *name, const char *help,
                                    const char *labels, const double *bounds,
                                    size_t n_bounds)
{
    cairn_metric_t *f = calloc(1, sizeof(*f));

    if (!f)
        return NULL;
    f->owner = m;
    f->kind = kind;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->labels = strdup(labels ? labels : "");
    if (!f->name || !f->help || !f->labels || !s_split_labels(f, labels))
        return s_family_free(f);
    if (kind == M_HISTOGRAM) {
        if (n_bounds == 0 || !bounds || !s_bounds_ok(bounds, n_bounds) ||
            !(f->bounds = malloc(n_bounds * sizeof(double))))
            return s_family_free(f);
        memcpy(f->bounds, bounds, n_bounds * sizeof(double));
        f->n_bounds = n_bounds;
    }
    return f;
}

static cairn_metric_t *s_declare(cairn_metrics_t *m, m_kind_t kind, const char *name,
                                 const char *help, const char *labels,
                                 const double *bounds, size_t n_bounds)
{
    cairn_metric_t *f = NULL;

    if (!m || !s_valid_name(name, true))
        return NULL;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_families; i++) {
        cairn_metric_t *o = m->families[i];
        if (strcmp(o->name, name) != 0)
            continue;
        f = o->kind == kind && strcmp(o->labels, labels ? labels : "") == 0 ? o : NULL;
        goto out;
    }
    cairn_metric_t **grown = realloc(m->families, (m->n_families + 1) * sizeof(*grown));
    if (!grown)
        goto out;
    m->families = grown;
    f = s_family_new(m, kind, name, help, labels, bounds, n_bounds);
    if (f)
        m->families[m->n_families++] = f;
out:
    pthread_mutex_unlock(&m->lock);
    return f;
}

cairn_metric_t *cairn_metrics_counter(cairn_metrics_t *m, const char *name,
                                      const char *help, const char *labels)
{
    return s_declare(m, M_COUNTER, name, help, labels, NULL, 0);
}

cairn_metric_t *cairn_metrics_gauge(cairn_metrics_t *m, const char *name,
                                    const char *help, const char *labels)
{
    return s_declare(m, M_GAUGE, name, help, labels, NULL, 0);
}

cairn_metric_t *cairn_metrics_histogram(cairn_metrics_t *m, const char *name,
                                        const char *help, const char *labels,
                                        const double *bounds, size_t n_bounds)
{
    return s_declare(m, M_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

/* ---- series ------------------------------------------------------------ */

static bool s_series_is(const cairn_metric_t *f, const m_series_t *s,
                        const char *const *values)
{
    for (size_t i = 0; i < f->n_labels; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

/* The series of values, made if new; under the lock. */
static int s_series(cairn_metric_t *f, const char *const *values, m_series_t **ret)
{
    m_series_t s = { 0 };

    for (size_t i = 0; i < f->n_series; i++)
        if (s_series_is(f, &f->series[i], values))
            return *ret = &f->series[i], 0;
    if (f->n_series == CAIRN_METRIC_MAX_SERIES)
        return -ENOSPC;
    m_series_t *grown = realloc(f->series, (f->n_series + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    f->series = grown;
    s.values = calloc(f->n_labels ? f->n_labels : 1, sizeof(char *));
    if (s.values && f->kind == M_HISTOGRAM)
        s.buckets = calloc(f->n_bounds + 1, sizeof(uint64_t));
    bool ok = s.values && (f->kind != M_HISTOGRAM || s.buckets);
    for (size_t i = 0; ok && i < f->n_labels; i++)
        ok = (s.values[i] = strdup(values[i])) != NULL;
    if (!ok) {
        s_series_clear(f, &s);
        return -ENOMEM;
    }
    f->series[f->n_series] = s;
    *ret = &f->series[f->n_series++];
    return 0;
}

typedef enum { OP_ADD, OP_SET, OP_OBSERVE } m_op_t;

static void s_apply(const cairn_metric_t *f, m_series_t *s, m_op_t op, double v)
{
    size_t b = 0;

    switch (op) {
    case OP_ADD:
        s->value += v;
        break;
    case OP_SET:
        s->value = v;
        break;
    case OP_OBSERVE:
        while (b < f->n_bounds && v > f->bounds[b])
            b++;
        s->buckets[b]++;
        s->count++;
        s->value += v;
        break;
    }
}

static bool s_op_fits(const cairn_metric_t *f, m_op_t op, double v)
{
    if (isnan(v))
        return false;
    switch (op) {
    case OP_ADD:
        return f->kind == M_GAUGE || (f->kind == M_COUNTER && v >= 0);
    case OP_SET:
        return f->kind == M_GAUGE;
    case OP_OBSERVE:
        return f->kind == M_HISTOGRAM;
    }
    return false;
}

static int s_update(cairn_metric_t *f, m_op_t op, double v, va_list ap)
{
    const char *values[CAIRN_METRIC_MAX_LABELS] = { 0 };
    m_series_t *s;
    int r;

    if (!f || !s_op_fits(f, op, v))
        return -EINVAL;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!(values[i] = va_arg(ap, const char *)))
            return -EINVAL;
    pthread_mutex_lock(&f->owner->lock);
    r = s_series(f, values, &s);
    if (r == 0)
        s_apply(f, s, op, v);
    pthread_mutex_unlock(&f->owner->lock);
    return r;
}

/* The three public updates: the label values go on to s_update. */
#define S_UPDATE_FN(fname, op)                          \
    int fname(cairn_metric_t *f, double v, ...)         \
    {                                                   \
        va_list ap;                                     \
        va_start(ap, v);                                \
        int r = s_update(f, op, v, ap);                 \
        va_end(ap);                                     \
        return r;                                       \
    }
S_UPDATE_FN(cairn_metric_add, OP_ADD)
S_UPDATE_FN(cairn_metric_set, OP_SET)
S_UPDATE_FN(cairn_metric_observe, OP_OBSERVE)

/* ---- rendering --------------------------------------------------------- */

/* Writes s escaped: \ and newline always, " too inside a label value. */
static void s_escaped(FILE *out, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else if (quote && *s == '"')
            fputs("\\\"", out);
        else
            fputc(*s, out);
    }
}

/* v in as few digits as read back the same (0.1, not 0.10000000000000001). */
static void s_shortest(char *buf, size_t size, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* A sample value: integers without an exponent, +Inf/-Inf spelled out. */
static void s_number(FILE *out, double v)
{
    char buf[32];

    if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", out);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(out, "%.0f", v);
    else {
        s_shortest(buf, sizeof(buf), v);
        fputs(buf, out);
    }
}

/* `name{l="v",...,le="x"}` ; le may be NULL. */
static void s_series_name(FILE *out, const cairn_metric_t *f, const char *suffix,
                          const m_series_t *s, const char *le)
{
    bool any = f->n_labels > 0 || le;

    fprintf(out, "%s%s%s", f->name, suffix, any ? "{" : "");
    for (size_t i = 0; i < f->n_labels; i++) {
        fprintf(out, "%s%s=\"", i ? "," : "", f->label[i]);
        s_escaped(out, s->values[i], true);
        fputc('"', out);
    }
    if (le)
        fprintf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
    fputs(any ? "} " : " ", out);
}

static void s_render_histogram(FILE *out, const cairn_metric_t *f, const m_series_t *s)
{
    uint64_t cum = 0;
    char le[32];

    for (size_t b = 0; b <= f->n_bounds; b++) {
        cum += s->buckets[b];
        if (b < f->n_bounds)
            s_shortest(le, sizeof(le), f->bounds[b]);
        s_series_name(out, f, "_bucket", s, b < f->n_bounds ? le : "+Inf");
        fprintf(out, "%llu\n", (unsigned long long)cum);
    }
    s_series_name(out, f, "_sum", s, NULL);
    s_number(out, s->value);
    fputc('\n', out);
    s_series_name(out, f, "_count", s, NULL);
    fprintf(out, "%llu\n", (unsigned long long)s->count);
}

static void s_render_family(FILE *out, const cairn_metric_t *f)
{
    fprintf(out, "# HELP %s ", f->name);
    s_escaped(out, f->help, false);
    fprintf(out, "\n# TYPE %s %s\n", f->name, s_kind_names[f->kind]);
    for (size_t i = 0; i < f->n_series; i++) {
        const m_series_t *s = &f->series[i];
        if (f->kind == M_HISTOGRAM) {
            s_render_histogram(out, f, s);
            continue;
        }
        s_series_name(out, f, "", s, NULL);
        s_number(out, s->value);
        fputc('\n', out);
    }
}

int cairn_metrics_render(cairn_metrics_t *m, char **ret, size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out;

    if (!m || !ret || !ret_len)
        return -EINVAL;
    if (!(out = open_memstream(&buf, &len)))
        return -errno;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_families; i++)
        s_render_family(out, m->families[i]);
    pthread_mutex_unlock(&m->lock);
    if (fclose(out) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* ---- pages ------------------------------------------------------------- */

static void s_page_clear(m_page_t *p)
{
    free(p->path);
    free(p->type);
    free(p->body);
    *p = (m_page_t){ 0 };
}

static m_page_t *s_find_page(cairn_metrics_t *m, const char *path)
{
    for (size_t i = 0; i < m->n_pages; i++)
        if (strcmp(m->pages[i].path, path) == 0)
            return &m->pages[i];
    return NULL;
}

int cairn_metrics_page(cairn_metrics_t *m, const char *path, const char *type,
                       const void *body, size_t len)
{
    m_page_t p = { 0 };
    int r = 0;

    if (!m || !path || path[0] != '/' || !type || (!body && len))
        return -EINVAL;
    p.path = strdup(path);
    p.type = strdup(type);
    p.body = malloc(len ? len : 1);
    if (!p.path || !p.type || !p.body) {
        s_page_clear(&p);
        return -ENOMEM;
    }
    if (len)
        memcpy(p.body, body, len);
    p.len = len;
    pthread_mutex_lock(&m->lock);
    m_page_t *old = s_find_page(m, path);
    m_page_t *grown = old ? NULL : realloc(m->pages, (m->n_pages + 1) * sizeof(*grown));
    if (old) {
        p.read_ms = old->read_ms;
        s_page_clear(old);
        *old = p;
    } else if (grown) {
        m->pages = grown;
        m->pages[m->n_pages++] = p;
    } else {
        s_page_clear(&p);
        r = -ENOMEM;
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

uint64_t cairn_metrics_page_read_ms(cairn_metrics_t *m, const char *path)
{
    uint64_t ms = 0;

    if (!m || !path)
        return 0;
    pthread_mutex_lock(&m->lock);
    m_page_t *p = s_find_page(m, path);
    if (p)
        ms = p->read_ms;
    pthread_mutex_unlock(&m->lock);
    return ms;
}

/* ---- the HTTP server (libmicrohttpd's thread) -------------------------- */

static enum MHD_Result s_respond(struct MHD_Connection *c, unsigned status,
                                 const char *type, void *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result r;

    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result s_respond_text(struct MHD_Connection *c, unsigned status,
                                      const char *text)
{
    char *body = strdup(text);

    if (!body)
        return MHD_NO;
    return s_respond(c, status, "text/plain; charset=utf-8", body, strlen(body));
}

/* A copy of the page at url, taken under the lock. */
static enum MHD_Result s_serve_page(cairn_metrics_t *m, struct MHD_Connection *c,
                                    const char *url)
{
    char type[128] = "";
    void *body = NULL;
    size_t len = 0;
    bool found;

    pthread_mutex_lock(&m->lock);
    m_page_t *p = s_find_page(m, url);
    found = p != NULL;
    if (p)
        p->read_ms = cairn_now_ms();
    if (p && (body = malloc(p->len ? p->len : 1))) {
        memcpy(body, p->body, p->len);
        len = p->len;
        snprintf(type, sizeof(type), "%s", p->type);
    }
    pthread_mutex_unlock(&m->lock);
    if (!found)
        return s_respond_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
    if (!body)
        return MHD_NO;
    return s_respond(c, MHD_HTTP_OK, type, body, len);
}

static enum MHD_Result s_on_request(void *cls, struct MHD_Connection *c,
                                    const char *url, const char *method,
                                    const char *version, const char *upload_data,
                                    size_t *upload_data_size, void **con_cls)
{
    cairn_metrics_t *m = cls;
    char *text;
    size_t len;

    (void)version;
    (void)upload_data;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return s_respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (*upload_data_size != 0)
        return s_respond_text(c, MHD_HTTP_BAD_REQUEST, "a GET has no body\n");
    if (strcmp(url, "/metrics") != 0)
        return s_serve_page(m, c, url);
    if (cairn_metrics_render(m, &text, &len) < 0)
        return MHD_NO;
    return s_respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                     text, len);
}

/* address:port as a sockaddr; -EINVAL when address is not a literal. */
static int s_sockaddr(const char *address, uint16_t port,
                      struct sockaddr_storage *ss, bool *ret_v6)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *ret_v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *ret_v6 = true;
        return 0;
    }
    return -EINVAL;
}

int cairn_metrics_listen(cairn_metrics_t *m, const char *address, uint16_t port)
{
    struct sockaddr_storage ss;
    bool v6;
    int r;

    if (!m || !address || port == 0)
        return -EINVAL;
    if (m->httpd)
        return -EALREADY;
    if ((r = s_sockaddr(address, port, &ss, &v6)) < 0)
        return r;
    errno = 0;
    m->httpd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY |
            (v6 ? MHD_USE_IPv6 : 0),
        port, NULL, NULL, s_on_request, m,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
        MHD_OPTION_END);
    if (!m->httpd)
        return errno ? -errno : -EADDRNOTAVAIL;
    return 0;
}

void cairn_metrics_stop(cairn_metrics_t *m)
{
    if (!m || !m->httpd)
        return;
    MHD_stop_daemon(m->httpd);
    m->httpd = NULL;
}

/* ---- life -------------------------------------------------------------- */

cairn_metrics_t *cairn_metrics_new(void)
{
    cairn_metrics_t *m = calloc(1, sizeof(*m));

    if (m && pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

cairn_metrics_t *cairn_metrics_free(cairn_metrics_t *m)
{
    if (!m)
        return NULL;
    cairn_metrics_stop(m);
    for (size_t i = 0; i < m->n_families; i++)
        s_family_free(m->families[i]);
    for (size_t i = 0; i < m->n_pages; i++)
        s_page_clear(&m->pages[i]);
    free(m->families);
    free(m->pages);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return NULL;
}

double cairn_metrics_since(uint64_t start_ns)
{
    return (double)(cairn_now_ns() - start_ns) / 1e9;
}
