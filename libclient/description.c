/* description.c - the cluster description loader, its accessors, the run
 * base and hotplugged nodes (docs/architecture.md §5); the builder and the
 * generator are in description-build.c.
 *
 * Loading runs in three passes, each stopping at the first error:
 *   1. parse: the bytes (read by us, so an unreadable file gives its errno)
 *      go through xmlCtxtReadMemory with XML_PARSE_NONET and without NOENT or
 *      DTDLOAD. A DOCTYPE is refused as soon as the parser meets it (a SAX
 *      internalSubset hook stops the parser), so no entity can be declared,
 *      expanded or fetched;
 *   2. schema: the RelaxNG schema compiled into the library (cluster.rng);
 *   3. semantics: uniqueness, references, port collisions, extends cycles,
 *      timings, keys - what the schema cannot say.
 * libxml2 reports through structured handlers set on our own parser and
 * validation contexts (never the process-wide ones), so nothing reaches
 * stderr and no libxml2 global is changed. The first error becomes the
 * cairn_error_t, its message formatted "<file>:<line>: <element>: <reason>".
 *
 * Every string a loaded description hands out is copied into a pool owned
 * by it, so the libxml2 tree is freed before load returns. Public structs
 * are embedded in private ones that also keep the line of their element.
 * Writing has one path, the builder: it keeps the document as libxml2
 * nodes (escaping is libxml2's job, never ours), dumps them in the
 * schema's order and loads its own output before handing it out, so a
 * written file always loads. cairn_description_generate() and the local
 * cluster harness (lib/harness) are users of the builder.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/SAX2.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "cairn/description.h"
#include "cairn/security.h"
#include "description-private.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/fileio.h"

extern const char cairn_cluster_schema_text[];

#define S_MAX_FILE_SIZE (16u << 20)

#if LIBXML_VERSION >= 21200
typedef const xmlError *s_xml_error_ptr;
#else
typedef xmlErrorPtr s_xml_error_ptr;
#endif

typedef struct s_service {
    cairn_service_desc_t pub;  /* what the accessors return */
    int line;                  /* line of <service> */
} s_service_t;

typedef struct s_use {
    const char *service;       /* service named by <use> */
    int line;                  /* line of <use> */
} s_use_t;

typedef struct s_appliance {
    const char *name;          /* appliance name */
    const char *extends;       /* base appliance, NULL if none */
    int line;                  /* line of <appliance> */
    s_use_t *uses;             /* its own <use> elements, document order */
    size_t n_uses;             /* entries in uses */
    const char **resolved;     /* base's services first, each once */
    size_t n_resolved;         /* entries in resolved */
    int state;                 /* 0 unresolved, 1 resolving, 2 resolved */
} s_appliance_t;

typedef struct s_probe {
    cairn_probe_desc_t pub;    /* what the accessors return */
    int line;                  /* line of <probe> */
} s_probe_t;

typedef struct s_key {
    cairn_key_desc_t pub;      /* what the accessors return, paths resolved */
    int line;                  /* line of <key> */
} s_key_t;

struct cairn_description {
    const char *path;          /* file name as given to load */
    const char *cluster;       /* cluster name */
    const char *run_base;      /* run-base attribute or the default */
    const char *policy;        /* scheduler policy, "" if none */
    const char *security_mode; /* "none" or "curve" */
    int cluster_line;          /* line of <cluster> */
    int membership_line;       /* line of <membership>, 0 if absent */
    int security_line;         /* line of <security>, 0 if absent */
    s_service_t *services;     /* document order */
    size_t n_services;         /* entries in services */
    s_appliance_t *appliances; /* document order */
    size_t n_appliances;       /* entries in appliances */
    cairn_node_desc_t *nodes;  /* document order */
    size_t n_nodes;            /* entries in nodes */
    cairn_membership_desc_t membership; /* defaults where not given */
    s_probe_t *probes;         /* document order */
    size_t n_probes;           /* entries in probes */
    cairn_gossip_desc_t gossip; /* defaults where not given */
    cairn_sched_desc_t sched;  /* defaults where not given */
    int scheduler_line;        /* line of <scheduler>, 0 if absent */
    s_key_t *keys;             /* document order */
    size_t n_keys;             /* entries in keys */
    char **strings;            /* pool: every string above is one of these */
    size_t n_strings;          /* entries used in strings */
    size_t cap_strings;        /* entries allocated in strings */
};

/* State of one load: where errors go and what is being built. */
typedef struct s_loader {
    const char *file;          /* name used in error messages */
    char *base_dir;            /* absolute dir relative key paths start from */
    cairn_error_t *err;        /* caller's, may be NULL */
    int ret;                   /* first error's return value, 0 if none */
    cairn_description_t *d;    /* being built */
} s_loader_t;

/* ---- line numbers ------------------------------------------------------ */

/* SAX hook: libxml2 keeps an element's line in 16 bits; keep the full line
 * in _private (unused by libxml2's tree and RelaxNG code) for s_line(). */
static void s_start_element(void *data, const xmlChar *localname, const xmlChar *prefix,
                            const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                            int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = data;
    xmlSAX2StartElementNs(data, localname, prefix, uri, nb_namespaces, namespaces,
                          nb_attributes, nb_defaulted, attributes);
    if (ctxt->node && ctxt->input)
        ctxt->node->_private = (void *) (intptr_t) ctxt->input->line;
}

static int s_line(xmlNodePtr n)
{
    if (n->type == XML_ELEMENT_NODE && n->_private)
        return (int) (intptr_t) n->_private;
    return (int) xmlGetLineNo(n);
}

/* ---- errors ------------------------------------------------------------ */

static void s_strip(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = '\0';
}

/* Records the first error of a load; later ones are dropped. */
static int s_vfail(s_loader_t *ld, int ret, int code, int line,
                   const char *element, const char *fmt, va_list ap)
{
    char reason[CAIRN_ERROR_MESSAGE_MAX];

    if (ld->ret < 0)
        return ld->ret;
    ld->ret = ret;
    vsnprintf(reason, sizeof(reason), fmt, ap);
    s_strip(reason);
    char where[CAIRN_ERROR_FILE_MAX + 16];
    if (line > 0)
        snprintf(where, sizeof(where), "%s:%d", ld->file, line);
    else
        snprintf(where, sizeof(where), "%s", ld->file);
    if (element && *element)
        cairn_error_set_at(ld->err, ret, code, ld->file, line, element,
                           "%s: %s: %s", where, element, reason);
    else
        cairn_error_set_at(ld->err, ret, code, ld->file, line, NULL, "%s: %s", where, reason);
    return ret;
}

__attribute__((format(printf, 4, 5)))
static int s_fail(s_loader_t *ld, int line, const char *element, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = s_vfail(ld, -EINVAL, CAIRN_INVALID_CONFIG, line, element, fmt, ap);
    va_end(ap);
    return r;
}

__attribute__((format(printf, 3, 4)))
static int s_fail_sys(s_loader_t *ld, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = s_vfail(ld, ret, ret == -ENOMEM ? CAIRN_INTERNAL : CAIRN_SYSTEM,
                    0, NULL, fmt, ap);
    va_end(ap);
    return r;
}

static void s_record_xml(s_loader_t *ld, s_xml_error_ptr e, const char *element)
{
    if (e->level < XML_ERR_ERROR)
        return;
    int line = e->line;
    xmlNodePtr n = e->node;
    if (n && n->type == XML_ELEMENT_NODE) {
        element = (const char *) n->name;
        line = s_line(n);   /* e->line stops at 65535 */
    }
    s_fail(ld, line, element, "%s", e->message ? e->message : "invalid XML");
}

/* Parser errors: data is the parser context, whose _private is the loader;
 * ctxt->name is the element open when the error happened. */
static void s_parse_error(void *data, s_xml_error_ptr e)
{
    xmlParserCtxtPtr ctxt = data;
    s_record_xml(ctxt->_private, e, (const char *) ctxt->name);
}

/* libxml2's RelaxNG wording for the two vague cases, made readable. */
static const char *s_relaxng_reason(const char *msg)
{
    if (!msg)
        return "does not match the schema";
    if (strstr(msg, "failed to validate attributes"))
        return "an attribute is missing, unknown, malformed or out of range";
    if (strstr(msg, "Expecting an element , got nothing"))
        return "a required child element is missing";
    return msg;
}

static void s_valid_error(void *data, s_xml_error_ptr e)
{
    xmlError copy = *e;
    copy.message = (char *) s_relaxng_reason(e->message);
    s_record_xml(data, &copy, NULL);
}

/* The embedded schema does not parse: a bug in the library, not the file. */
static void s_schema_error(void *data, s_xml_error_ptr e)
{
    s_loader_t *ld = data;
    if (e->level >= XML_ERR_ERROR && ld->ret == 0) {
        ld->ret = -EINVAL;
        cairn_error_set(ld->err, -EINVAL, CAIRN_INTERNAL,
                        "embedded schema: line %d: %s", e->line,
                        e->message ? e->message : "invalid");
    }
}

/* SAX hook: a DOCTYPE stops the parse before any declaration is read. */
static void s_refuse_dtd(void *data, const xmlChar *name, const xmlChar *ext_id,
                         const xmlChar *sys_id)
{
    xmlParserCtxtPtr ctxt = data;
    int line = ctxt->input ? ctxt->input->line : 0;
    s_fail(ctxt->_private, line, NULL,
           "DOCTYPE declarations are not allowed in a cluster description");
    xmlStopParser(ctxt);
}

/* ---- pool and small helpers -------------------------------------------- */

/* Takes ownership of s (malloc'ed) into d's pool; NULL on failure (s freed). */
static const char *s_adopt(cairn_description_t *d, char *s)
{
    if (!s)
        return NULL;
    if (CAIRN_GROW(d->strings, d->cap_strings, d->n_strings + 1, 32) < 0) {
        free(s);
        return NULL;
    }
    d->strings[d->n_strings++] = s;
    return s;
}

static const char *s_pool(cairn_description_t *d, const char *s)
{
    return s_adopt(d, strdup(s));
}

bool desc_parse_ip(const char *s, int *ret_family, unsigned char out[16])
{
    memset(out, 0, 16);
    if (inet_pton(AF_INET, s, out) == 1) {
        *ret_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *ret_family = AF_INET6;
        return true;
    }
    return false;
}

static bool s_same_ip(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    int fa, fb;
    if (!desc_parse_ip(a, &fa, x) || !desc_parse_ip(b, &fb, y))
        return strcmp(a, b) == 0;
    return fa == fb && memcmp(x, y, 16) == 0;
}

/* ---- reading the tree -------------------------------------------------- */

/* Copies attribute `name` of n into the pool; NULL if absent (or no memory,
 * which sets ld->ret). */
static const char *s_attr(s_loader_t *ld, xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *) name);
    if (!v)
        return NULL;
    const char *s = s_pool(ld->d, (const char *) v);
    xmlFree(v);
    if (!s)
        s_fail_sys(ld, -ENOMEM, "out of memory");
    return s;
}

/* Unsigned attribute already range-checked by the schema; def if absent. */
static uint32_t s_attr_u32(xmlNodePtr n, const char *name, uint32_t def)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *) name);
    if (!v)
        return def;
    unsigned long x = strtoul((const char *) v, NULL, 10);
    xmlFree(v);
    return x > UINT32_MAX ? UINT32_MAX : (uint32_t) x;
}

static bool s_attr_bool(xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *) name);
    char word[8] = "";
    if (v)
        sscanf((const char *) v, " %7s", word);
    xmlFree(v);
    return strcmp(word, "true") == 0 || strcmp(word, "1") == 0;
}

static bool s_is(xmlNodePtr n, const char *name)
{
    return n && xmlStrEqual(n->name, (const xmlChar *) name);
}

/* calloc for an array of count(children) elements of size sz. */
static void *s_array_for(s_loader_t *ld, xmlNodePtr parent, size_t sz)
{
    size_t n = parent ? (size_t) xmlChildElementCount(parent) : 0;
    if (n == 0)
        return NULL;
    void *p = calloc(n, sz);
    if (!p)
        s_fail_sys(ld, -ENOMEM, "out of memory");
    return p;
}

/* ---- building (after the schema passed) -------------------------------- */

static int s_read_services(s_loader_t *ld, xmlNodePtr sec)
{
    cairn_description_t *d = ld->d;
    d->services = s_array_for(ld, sec, sizeof(*d->services));
    for (xmlNodePtr n = xmlFirstElementChild(sec); n && d->services;
         n = xmlNextElementSibling(n)) {
        s_service_t *s = &d->services[d->n_services++];
        s->line = s_line(n);
        s->pub.name = s_attr(ld, n, "name");
        s->pub.port = (uint16_t) s_attr_u32(n, "port", 0);
        s->pub.pub_port = (uint16_t) s_attr_u32(n, "pub-port", 0);
        s->pub.metrics_port = (uint16_t) s_attr_u32(n, "metrics-port", 0);
    }
    return ld->ret;
}

static int s_read_appliance(s_loader_t *ld, xmlNodePtr n, s_appliance_t *a)
{
    a->line = s_line(n);
    a->name = s_attr(ld, n, "name");
    a->extends = s_attr(ld, n, "extends");
    a->uses = s_array_for(ld, n, sizeof(*a->uses));
    for (xmlNodePtr u = xmlFirstElementChild(n); u && a->uses;
         u = xmlNextElementSibling(u)) {
        a->uses[a->n_uses].line = s_line(u);
        a->uses[a->n_uses++].service = s_attr(ld, u, "service");
    }
    return ld->ret;
}

static int s_read_appliances(s_loader_t *ld, xmlNodePtr sec)
{
    cairn_description_t *d = ld->d;
    d->appliances = s_array_for(ld, sec, sizeof(*d->appliances));
    for (xmlNodePtr n = xmlFirstElementChild(sec); n && d->appliances;
         n = xmlNextElementSibling(n))
        if (s_read_appliance(ld, n, &d->appliances[d->n_appliances++]) < 0)
            break;
    return ld->ret;
}

static const char *s_default_rundir(s_loader_t *ld, uint32_t id)
{
    const cairn_description_t *d = ld->d;
    size_t n = strlen(d->run_base);
    const char *sep = n > 0 && d->run_base[n - 1] == '/' ? "" : "/";
    char *s = NULL;
    if (asprintf(&s, "%s%s%s/%u", d->run_base, sep, d->cluster, id) < 0)
        s = NULL;
    const char *r = s_adopt(ld->d, s);
    if (!r)
        s_fail_sys(ld, -ENOMEM, "out of memory");
    return r;
}

static int s_read_nodes(s_loader_t *ld, xmlNodePtr sec)
{
    cairn_description_t *d = ld->d;
    d->nodes = s_array_for(ld, sec, sizeof(*d->nodes));
    for (xmlNodePtr n = xmlFirstElementChild(sec); n && d->nodes && ld->ret == 0;
         n = xmlNextElementSibling(n)) {
        cairn_node_desc_t *nd = &d->nodes[d->n_nodes++];
        nd->line = s_line(n);
        nd->id = s_attr_u32(n, "id", 0);
        nd->name = s_attr(ld, n, "name");
        nd->address = s_attr(ld, n, "address");
        nd->appliance = s_attr(ld, n, "appliance");
        nd->seed = s_attr_bool(n, "seed");
        nd->rundir = s_attr(ld, n, "rundir");
        if (!nd->rundir && ld->ret == 0)
            nd->rundir = s_default_rundir(ld, nd->id);
    }
    return ld->ret;
}

static void s_read_membership(s_loader_t *ld, xmlNodePtr n)
{
    cairn_membership_desc_t *m = &ld->d->membership;
    m->protocol_period_ms = s_attr_u32(n, "protocol-period-ms", 600);
    m->ping_timeout_ms = s_attr_u32(n, "ping-timeout-ms", 100);
    m->indirect_checks = s_attr_u32(n, "indirect-checks", 3);
    m->suspect_timeout_ms = s_attr_u32(n, "suspect-timeout-ms", 800);
    m->gossip_fanout = s_attr_u32(n, "gossip-fanout", 6);
    ld->d->membership_line = n ? s_line(n) : 0;
}

static void s_read_gossip(s_loader_t *ld, xmlNodePtr n)
{
    cairn_gossip_desc_t *g = &ld->d->gossip;
    g->period_ms = s_attr_u32(n, "gossip-period-ms", 0);
    g->fanout = s_attr_u32(n, "gossip-fanout", 2);
    g->window = s_attr_u32(n, "window", 8);
    ld->d->scheduler_line = n ? s_line(n) : 0;
}

static void s_read_sched_params(s_loader_t *ld, xmlNodePtr n)
{
    cairn_sched_desc_t *p = &ld->d->sched;
    p->balance_period_ms = s_attr_u32(n, "balance-period-ms", 0);
    p->stability_margin_pct = s_attr_u32(n, "stability-margin-pct", 25);
    p->hold_periods = s_attr_u32(n, "hold-periods", 4);
    p->high_water_pct = s_attr_u32(n, "high-water-pct", 85);
    p->mem_margin_pct = s_attr_u32(n, "mem-margin-pct", 10);
    p->placement_hold_ms = s_attr_u32(n, "placement-hold-ms", 10000);
    p->ghost_file_max = s_attr_u32(n, "ghost-file-max", CAIRN_GHOST_FILE_MAX_DEFAULT);
}

static int s_read_scheduler(s_loader_t *ld, xmlNodePtr sec)
{
    cairn_description_t *d = ld->d;
    d->policy = s_attr(ld, sec, "policy");
    s_read_gossip(ld, sec);
    s_read_sched_params(ld, sec);
    d->probes = s_array_for(ld, sec, sizeof(*d->probes));
    for (xmlNodePtr n = xmlFirstElementChild(sec); n && d->probes;
         n = xmlNextElementSibling(n)) {
        s_probe_t *p = &d->probes[d->n_probes++];
        p->line = s_line(n);
        p->pub.name = s_attr(ld, n, "name");
        p->pub.period_ms = s_attr_u32(n, "period-ms", 0);
    }
    return ld->ret;
}

/* A secret key path as written, or joined to the loader's base dir if
 * relative; keys/node-<id>.key there when not given. */
static const char *s_key_path(s_loader_t *ld, xmlNodePtr n, uint32_t node)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *) "secret");
    char *s = NULL;
    int r;
    if (v && desc_is_absolute((const char *) v))
        r = (s = strdup((const char *) v)) ? 0 : -1;
    else if (v)
        r = asprintf(&s, "%s/%s", ld->base_dir, (const char *) v);
    else
        r = asprintf(&s, "%s/keys/node-%u.key", ld->base_dir, node);
    xmlFree(v);
    const char *path = r < 0 ? NULL : s_adopt(ld->d, s);
    if (!path)
        s_fail_sys(ld, -ENOMEM, "out of memory");
    return path;
}

static int s_read_security(s_loader_t *ld, xmlNodePtr sec)
{
    cairn_description_t *d = ld->d;
    xmlChar *mode = xmlGetProp(sec, (const xmlChar *) "mode");
    d->security_mode = mode && xmlStrEqual(mode, (const xmlChar *) "curve") ? "curve" : "none";
    xmlFree(mode);
    d->security_line = s_line(sec);
    d->keys = s_array_for(ld, sec, sizeof(*d->keys));
    for (xmlNodePtr n = xmlFirstElementChild(sec); n && d->keys;
         n = xmlNextElementSibling(n)) {
        s_key_t *k = &d->keys[d->n_keys++];
        k->line = s_line(n);
        k->pub.node = s_attr_u32(n, "node", 0);
        k->pub.public_key = s_attr(ld, n, "public");
        k->pub.secret_path = s_key_path(ld, n, k->pub.node);
    }
    return ld->ret;
}

/* Walks <cluster>'s children, which the schema put in order. */
static int s_read_tree(s_loader_t *ld, xmlNodePtr root)
{
    cairn_description_t *d = ld->d;
    d->cluster_line = s_line(root);
    d->cluster = s_attr(ld, root, "name");
    d->run_base = s_attr(ld, root, "run-base");
    if (!d->run_base)
        d->run_base = CAIRN_DEFAULT_RUN_BASE;
    d->policy = "";
    d->security_mode = "none";
    xmlNodePtr n = xmlFirstElementChild(root);
    if (s_read_services(ld, n) < 0)
        return ld->ret;
    n = xmlNextElementSibling(n);
    if (s_read_appliances(ld, n) < 0)
        return ld->ret;
    n = xmlNextElementSibling(n);
    if (s_read_nodes(ld, n) < 0)
        return ld->ret;
    n = xmlNextElementSibling(n);
    s_read_membership(ld, s_is(n, "membership") ? n : NULL);
    if (s_is(n, "membership"))
        n = xmlNextElementSibling(n);
    s_read_gossip(ld, NULL);
    s_read_sched_params(ld, NULL);
    if (s_is(n, "scheduler")) {
        if (s_read_scheduler(ld, n) < 0)
            return ld->ret;
        n = xmlNextElementSibling(n);
    }
    if (s_is(n, "security"))
        s_read_security(ld, n);
    return ld->ret;
}

/* ---- semantic checks --------------------------------------------------- */

static const s_service_t *s_find_service(const cairn_description_t *d, const char *name,
                                         size_t before)
{
    for (size_t i = 0; i < before; i++)
        if (strcmp(d->services[i].pub.name, name) == 0)
            return &d->services[i];
    return NULL;
}

/* The service among the first `before` with port, pub-port or
 * metrics-port == port. */
static const s_service_t *s_port_user(const cairn_description_t *d, uint16_t port,
                                      size_t before)
{
    for (size_t i = 0; i < before; i++)
        if (d->services[i].pub.port == port || d->services[i].pub.pub_port == port ||
            d->services[i].pub.metrics_port == port)
            return &d->services[i];
    return NULL;
}

/* metrics-port: not the service's own port or pub-port, nobody else's. */
static int s_check_metrics_port(s_loader_t *ld, size_t i)
{
    const s_service_t *s = &ld->d->services[i], *o;
    uint16_t m = s->pub.metrics_port;
    if (m == 0)
        return 0;
    if (m == s->pub.port || m == s->pub.pub_port)
        return s_fail(ld, s->line, "service",
                      "metrics-port %u of service '%s' is the same as its %s", m,
                      s->pub.name, m == s->pub.port ? "port" : "pub-port");
    if ((o = s_port_user(ld->d, m, i)))
        return s_fail(ld, s->line, "service",
                      "metrics-port %u is already used by service '%s' (line %d)",
                      m, o->pub.name, o->line);
    return 0;
}

static int s_check_service(s_loader_t *ld, size_t i)
{
    const s_service_t *s = &ld->d->services[i], *o;
    if ((o = s_find_service(ld->d, s->pub.name, i)))
        return s_fail(ld, s->line, "service", "service '%s' is already declared (line %d)",
                      s->pub.name, o->line);
    if ((o = s_port_user(ld->d, s->pub.port, i)))
        return s_fail(ld, s->line, "service", "port %u is already used by service '%s' (line %d)",
                      s->pub.port, o->pub.name, o->line);
    if (s->pub.pub_port == 0)
        return s_check_metrics_port(ld, i);
    if (s->pub.pub_port == s->pub.port)
        return s_fail(ld, s->line, "service", "pub-port %u of service '%s' is the same as its port",
                      s->pub.pub_port, s->pub.name);
    if ((o = s_port_user(ld->d, s->pub.pub_port, i)))
        return s_fail(ld, s->line, "service",
                      "pub-port %u is already used by service '%s' (line %d)",
                      s->pub.pub_port, o->pub.name, o->line);
    return s_check_metrics_port(ld, i);
}

static s_appliance_t *s_find_appliance(const cairn_description_t *d, const char *name,
                                       size_t before)
{
    for (size_t i = 0; i < before; i++)
        if (strcmp(d->appliances[i].name, name) == 0)
            return &d->appliances[i];
    return NULL;
}

static int s_check_appliance(s_loader_t *ld, size_t i)
{
    const cairn_description_t *d = ld->d;
    const s_appliance_t *a = &d->appliances[i], *o;
    if ((o = s_find_appliance(d, a->name, i)))
        return s_fail(ld, a->line, "appliance", "appliance '%s' is already declared (line %d)",
                      a->name, o->line);
    if (a->extends && !s_find_appliance(d, a->extends, d->n_appliances))
        return s_fail(ld, a->line, "appliance", "appliance '%s' extends unknown appliance '%s'",
                      a->name, a->extends);
    for (size_t u = 0; u < a->n_uses; u++)
        if (!s_find_service(d, a->uses[u].service, d->n_services))
            return s_fail(ld, a->uses[u].line, "use",
                          "appliance '%s' uses undeclared service '%s'",
                          a->name, a->uses[u].service);
    return 0;
}

/* Follows extends from a; if the chain comes back to a, reports the cycle. */
static int s_check_cycle(s_loader_t *ld, const s_appliance_t *a)
{
    const cairn_description_t *d = ld->d;
    char chain[512];
    int len = snprintf(chain, sizeof(chain), "%s", a->name);
    const s_appliance_t *p = a;
    for (size_t steps = 0; p->extends && steps < d->n_appliances; steps++) {
        p = s_find_appliance(d, p->extends, d->n_appliances);
        if (len >= 0 && (size_t) len < sizeof(chain))
            len += snprintf(chain + len, sizeof(chain) - (size_t) len, " -> %s", p->name);
        if (p == a)
            return s_fail(ld, a->line, "appliance", "appliance '%s' extends itself: %s",
                          a->name, chain);
    }
    return 0;
}

static bool s_has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* Fills a->resolved: the base's resolved list, then a's own uses, each once.
 * Called after the cycle check, so the recursion ends. */
static int s_resolve(s_loader_t *ld, s_appliance_t *a)
{
    s_appliance_t *base = NULL;
    if (a->state == 2)
        return 0;
    assert(a->state == 0);
    a->state = 1;
    if (a->extends) {
        base = s_find_appliance(ld->d, a->extends, ld->d->n_appliances);
        if (s_resolve(ld, base) < 0)
            return ld->ret;
    }
    size_t cap = (base ? base->n_resolved : 0) + a->n_uses;
    a->resolved = cap ? calloc(cap, sizeof(*a->resolved)) : NULL;
    if (cap && !a->resolved)
        return s_fail_sys(ld, -ENOMEM, "out of memory");
    for (size_t i = 0; base && i < base->n_resolved; i++)
        a->resolved[a->n_resolved++] = base->resolved[i];
    for (size_t i = 0; i < a->n_uses; i++)
        if (!s_has(a->resolved, a->n_resolved, a->uses[i].service))
            a->resolved[a->n_resolved++] = a->uses[i].service;
    a->state = 2;
    return 0;
}

static int s_check_appliances(s_loader_t *ld)
{
    cairn_description_t *d = ld->d;
    for (size_t i = 0; i < d->n_appliances; i++)
        if (s_check_appliance(ld, i) < 0)
            return ld->ret;
    for (size_t i = 0; i < d->n_appliances; i++)
        if (s_check_cycle(ld, &d->appliances[i]) < 0)
            return ld->ret;
    for (size_t i = 0; i < d->n_appliances; i++)
        if (s_resolve(ld, &d->appliances[i]) < 0)
            return ld->ret;
    return 0;
}

static int s_check_node(s_loader_t *ld, size_t i)
{
    const cairn_description_t *d = ld->d;
    const cairn_node_desc_t *n = &d->nodes[i];
    unsigned char ip[16];
    int family;
    for (size_t j = 0; j < i; j++) {
        const cairn_node_desc_t *o = &d->nodes[j];
        if (o->id == n->id)
            return s_fail(ld, n->line, "node", "node id %u is already used by node '%s' (line %d)",
                          n->id, o->name, o->line);
        if (strcmp(o->name, n->name) == 0)
            return s_fail(ld, n->line, "node", "node name '%s' is already used by node %u (line %d)",
                          n->name, o->id, o->line);
    }
    if (!desc_parse_ip(n->address, &family, ip))
        return s_fail(ld, n->line, "node", "address '%s' of node '%s' is not an IPv4 or IPv6 literal",
                      n->address, n->name);
    for (size_t j = 0; j < i; j++)
        if (s_same_ip(d->nodes[j].address, n->address))
            return s_fail(ld, n->line, "node", "address %s is already used by node '%s' (line %d)",
                          n->address, d->nodes[j].name, d->nodes[j].line);
    if (!s_find_appliance(d, n->appliance, d->n_appliances))
        return s_fail(ld, n->line, "node", "node '%s' uses unknown appliance '%s'",
                      n->name, n->appliance);
    if (!desc_is_absolute(n->rundir))
        return s_fail(ld, n->line, "node", "rundir '%s' of node '%s' is not an absolute path",
                      n->rundir, n->name);
    return 0;
}

static int s_check_membership(s_loader_t *ld)
{
    const cairn_membership_desc_t *m = &ld->d->membership;
    int line = ld->d->membership_line;
    if (m->protocol_period_ms == 0)
        return s_fail(ld, line, "membership", "protocol-period-ms must be greater than 0");
    if (m->ping_timeout_ms == 0)
        return s_fail(ld, line, "membership", "ping-timeout-ms must be greater than 0");
    if (m->suspect_timeout_ms == 0)
        return s_fail(ld, line, "membership", "suspect-timeout-ms must be greater than 0");
    if (m->gossip_fanout == 0)
        return s_fail(ld, line, "membership", "gossip-fanout must be greater than 0");
    if (m->ping_timeout_ms >= m->protocol_period_ms)
        return s_fail(ld, line, "membership",
                      "ping-timeout-ms (%u) must be less than protocol-period-ms (%u)",
                      m->ping_timeout_ms, m->protocol_period_ms);
    return 0;
}

/* Bounds that keep a typo from flooding the network or the memory: a
 * period under 10 ms, a fanout or a window past the 255 nodes a cluster
 * can have. */
static int s_check_gossip(s_loader_t *ld)
{
    const cairn_gossip_desc_t *g = &ld->d->gossip;
    int line = ld->d->scheduler_line;
    if (g->period_ms != 0 && g->period_ms < 10)
        return s_fail(ld, line, "scheduler", "gossip-period-ms must be at least 10 (or 0: "
                      "the shortest probe period), not %u", g->period_ms);
    if (g->fanout == 0 || g->fanout > 255)
        return s_fail(ld, line, "scheduler", "gossip-fanout must be 1..255, not %u", g->fanout);
    if (g->window == 0 || g->window > 255)
        return s_fail(ld, line, "scheduler", "window must be 1..255, not %u", g->window);
    return 0;
}

/* Bounds that keep a policy useful: a balance check that is not a busy
 * loop, a move that can happen at all, a hold that ends, ushering that
 * starts before the limit, a held run that cannot outlive its client. */
static int s_check_sched_params(s_loader_t *ld)
{
    const cairn_sched_desc_t *p = &ld->d->sched;
    int line = ld->d->scheduler_line;
    if (p->balance_period_ms != 0 && (p->balance_period_ms < 100 || p->balance_period_ms > 600000))
        return s_fail(ld, line, "scheduler", "balance-period-ms must be 100..600000 (or 0: the "
                      "gossip period), not %u", p->balance_period_ms);
    if (p->stability_margin_pct > 400)
        return s_fail(ld, line, "scheduler", "stability-margin-pct must be 0..400 (hundredths "
                      "of a CPU), not %u", p->stability_margin_pct);
    if (p->hold_periods == 0 || p->hold_periods > 100)
        return s_fail(ld, line, "scheduler", "hold-periods must be 1..100, not %u", p->hold_periods);
    if (p->high_water_pct < 10 || p->high_water_pct > 99)
        return s_fail(ld, line, "scheduler", "high-water-pct must be 10..99, not %u",
                      p->high_water_pct);
    if (p->mem_margin_pct > 100)
        return s_fail(ld, line, "scheduler", "mem-margin-pct must be 0..100, not %u",
                      p->mem_margin_pct);
    if (p->placement_hold_ms > 60000)
        return s_fail(ld, line, "scheduler", "placement-hold-ms must be 0..60000, not %u",
                      p->placement_hold_ms);
    if (p->ghost_file_max == 0 || p->ghost_file_max > CAIRN_GHOST_FILE_MAX_LIMIT)
        return s_fail(ld, line, "scheduler", "ghost-file-max must be 1..%u (bytes), not %u",
                      CAIRN_GHOST_FILE_MAX_LIMIT, p->ghost_file_max);
    return 0;
}

static int s_check_probes(s_loader_t *ld)
{
    const cairn_description_t *d = ld->d;
    if (s_check_gossip(ld) < 0 || s_check_sched_params(ld) < 0)
        return ld->ret;
    for (size_t i = 0; i < d->n_probes; i++) {
        const s_probe_t *p = &d->probes[i];
        if (p->pub.period_ms == 0)
            return s_fail(ld, p->line, "probe", "probe '%s' has period-ms 0", p->pub.name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->probes[j].pub.name, p->pub.name) == 0)
                return s_fail(ld, p->line, "probe", "probe '%s' is already declared (line %d)",
                              p->pub.name, d->probes[j].line);
    }
    return 0;
}

static const s_key_t *s_find_key(const cairn_description_t *d, uint32_t node, size_t before)
{
    for (size_t i = 0; i < before; i++)
        if (d->keys[i].pub.node == node)
            return &d->keys[i];
    return NULL;
}

static int s_check_security(s_loader_t *ld)
{
    const cairn_description_t *d = ld->d;
    for (size_t i = 0; i < d->n_keys; i++) {
        const s_key_t *k = &d->keys[i], *o;
        if (!cairn_description_find_node(d, k->pub.node))
            return s_fail(ld, k->line, "key", "key for unknown node %u", k->pub.node);
        if ((o = s_find_key(d, k->pub.node, i)))
            return s_fail(ld, k->line, "key", "node %u already has a key (line %d)",
                          k->pub.node, o->line);
        if (!cairn_key_is_valid(k->pub.public_key))
            return s_fail(ld, k->line, "key",
                          "public key of node %u is not a Z85 CURVE key "
                          "(cairn keys generate prints one)", k->pub.node);
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->keys[j].pub.public_key, k->pub.public_key) == 0)
                return s_fail(ld, k->line, "key",
                              "node %u has the public key of node %u (line %d): "
                              "every node needs its own keypair",
                              k->pub.node, d->keys[j].pub.node, d->keys[j].line);
    }
    if (strcmp(d->security_mode, "curve") != 0)
        return 0;
    for (size_t i = 0; i < d->n_nodes; i++)
        if (!s_find_key(d, d->nodes[i].id, d->n_keys))
            return s_fail(ld, d->security_line, "security",
                          "mode is curve but node %u ('%s', line %d) has no <key>",
                          d->nodes[i].id, d->nodes[i].name, d->nodes[i].line);
    return 0;
}

static int s_check(s_loader_t *ld)
{
    cairn_description_t *d = ld->d;
    if (!desc_is_absolute(d->run_base))
        return s_fail(ld, d->cluster_line, "cluster", "run-base '%s' is not an absolute path",
                      d->run_base);
    for (size_t i = 0; i < d->n_services; i++)
        if (s_check_service(ld, i) < 0)
            return ld->ret;
    if (s_check_appliances(ld) < 0)
        return ld->ret;
    for (size_t i = 0; i < d->n_nodes; i++)
        if (s_check_node(ld, i) < 0)
            return ld->ret;
    if (s_check_membership(ld) < 0 || s_check_probes(ld) < 0)
        return ld->ret;
    return s_check_security(ld);
}

/* ---- parse and validate ------------------------------------------------ */

static xmlDocPtr s_parse(s_loader_t *ld, const char *xml, size_t len)
{
    if (len > INT_MAX || len > S_MAX_FILE_SIZE) {
        s_fail(ld, 0, NULL, "document is larger than %u bytes", S_MAX_FILE_SIZE);
        return NULL;
    }
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        s_fail_sys(ld, -ENOMEM, "out of memory");
        return NULL;
    }
    ctxt->_private = ld;
    ctxt->sax->serror = s_parse_error;
    ctxt->sax->internalSubset = s_refuse_dtd;
    ctxt->sax->startElementNs = s_start_element;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, len ? xml : "", (int) len, ld->file, NULL,
                                      XML_PARSE_NONET | XML_PARSE_BIG_LINES);
    if (!doc && ld->ret == 0)
        s_fail(ld, 0, NULL, "not a well-formed XML document");
    xmlFreeParserCtxt(ctxt);
    if (ld->ret < 0 && doc) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

static int s_validate(s_loader_t *ld, xmlDocPtr doc)
{
    xmlRelaxNGParserCtxtPtr pctxt = xmlRelaxNGNewMemParserCtxt(
        cairn_cluster_schema_text, (int) strlen(cairn_cluster_schema_text));
    if (!pctxt)
        return s_fail_sys(ld, -ENOMEM, "out of memory");
    xmlRelaxNGSetParserStructuredErrors(pctxt, s_schema_error, ld);
    xmlRelaxNGPtr schema = xmlRelaxNGParse(pctxt);
    xmlRelaxNGFreeParserCtxt(pctxt);
    if (!schema) {
        if (ld->ret == 0)
            s_fail_sys(ld, -ENOMEM, "cannot compile the embedded schema");
        return ld->ret;
    }
    xmlRelaxNGValidCtxtPtr vctxt = xmlRelaxNGNewValidCtxt(schema);
    if (vctxt) {
        xmlRelaxNGSetValidStructuredErrors(vctxt, s_valid_error, ld);
        int r = xmlRelaxNGValidateDoc(vctxt, doc);
        if (r != 0 && ld->ret == 0)
            s_fail(ld, s_line(xmlDocGetRootElement(doc)), "cluster",
                   "does not match the cluster description schema");
        xmlRelaxNGFreeValidCtxt(vctxt);
    } else {
        s_fail_sys(ld, -ENOMEM, "out of memory");
    }
    xmlRelaxNGFree(schema);
    return ld->ret;
}

static void s_free_appliances(cairn_description_t *d)
{
    for (size_t i = 0; i < d->n_appliances; i++) {
        free(d->appliances[i].uses);
        free(d->appliances[i].resolved);
    }
    free(d->appliances);
}

cairn_description_t *cairn_description_free(cairn_description_t *d)
{
    if (!d)
        return NULL;
    s_free_appliances(d);
    free(d->services);
    free(d->nodes);
    free(d->probes);
    free(d->keys);
    for (size_t i = 0; i < d->n_strings; i++)
        free(d->strings[i]);
    free(d->strings);
    free(d);
    return NULL;
}

/* Parses, validates, builds and checks; the loader's file/base_dir are set. */
static int s_load(s_loader_t *ld, const char *xml, size_t len, const char *path,
                  cairn_description_t **ret)
{
    xmlDocPtr doc = s_parse(ld, xml, len);
    if (!doc)
        return ld->ret;
    ld->d = calloc(1, sizeof(*ld->d));
    if (!ld->d)
        s_fail_sys(ld, -ENOMEM, "out of memory");
    else if (s_validate(ld, doc) == 0 && s_read_tree(ld, xmlDocGetRootElement(doc)) == 0)
        s_check(ld);
    if (ld->ret == 0 && !(ld->d->path = s_pool(ld->d, path)))
        s_fail_sys(ld, -ENOMEM, "out of memory");
    xmlFreeDoc(doc);
    if (ld->ret < 0) {
        ld->d = cairn_description_free(ld->d);
        return ld->ret;
    }
    cairn_error_clear(ld->err);
    *ret = ld->d;
    return 0;
}

/* Absolute directory of path (or the cwd for NULL). */
static int s_base_dir(const char *path, char **ret)
{
    char cwd[PATH_MAX];
    const char *slash = path ? strrchr(path, '/') : NULL;
    if (slash && path[0] == '/') {
        *ret = strndup(path, slash == path ? 1 : (size_t) (slash - path));
        return *ret ? 0 : -ENOMEM;
    }
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    if (slash) {
        if (asprintf(ret, "%s/%.*s", cwd, (int) (slash - path), path) < 0)
            return -ENOMEM;
    } else if (!(*ret = strdup(cwd))) {
        return -ENOMEM;
    }
    return 0;
}

/* The file whole, at most S_MAX_FILE_SIZE bytes (-EFBIG past that). */
static int s_read_file(const char *path, char **ret_buf, size_t *ret_len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    return cairn_read_fd(fd, S_MAX_FILE_SIZE, ret_buf, ret_len);
}

int cairn_description_load(const char *path, cairn_description_t **ret, cairn_error_t *err)
{
    if (!path || !ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cairn_description_load: path and ret are required");
    s_loader_t ld = { .file = path, .err = err };
    char *buf = NULL;
    size_t len = 0;
    int r = s_read_file(path, &buf, &len);
    if (r == -EFBIG)   /* what s_parse says of a document that large */
        return s_fail(&ld, 0, NULL, "document is larger than %u bytes", S_MAX_FILE_SIZE);
    if (r < 0) {
        cairn_error_set_at(err, r, CAIRN_SYSTEM, path, 0, NULL, "%s: cannot read: %s",
                           path, strerror(-r));
        return r;
    }
    r = s_base_dir(path, &ld.base_dir);
    if (r < 0)
        s_fail_sys(&ld, r, "%s: cannot find its directory: %s", path, strerror(-r));
    else
        r = s_load(&ld, buf, len, path, ret);
    free(ld.base_dir);
    free(buf);
    return r;
}

int cairn_description_load_memory(const char *xml, size_t len, const char *name,
                                  cairn_description_t **ret, cairn_error_t *err)
{
    if ((!xml && len > 0) || !ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cairn_description_load_memory: xml and ret are required");
    s_loader_t ld = { .file = name ? name : "<memory>", .err = err };
    int r = s_base_dir(NULL, &ld.base_dir);
    if (r < 0)
        s_fail_sys(&ld, r, "cannot get the current directory: %s", strerror(-r));
    else
        r = s_load(&ld, xml, len, ld.file, ret);
    free(ld.base_dir);
    return r;
}

/* ---- accessors --------------------------------------------------------- */

const char *cairn_description_path(const cairn_description_t *d)
{
    return d ? d->path : NULL;
}

const char *cairn_description_cluster(const cairn_description_t *d)
{
    return d ? d->cluster : NULL;
}

const char *cairn_description_run_base(const cairn_description_t *d)
{
    return d ? d->run_base : NULL;
}

size_t cairn_description_n_nodes(const cairn_description_t *d)
{
    return d ? d->n_nodes : 0;
}

const cairn_node_desc_t *cairn_description_node(const cairn_description_t *d, size_t i)
{
    return d && i < d->n_nodes ? &d->nodes[i] : NULL;
}

const cairn_node_desc_t *cairn_description_find_node(const cairn_description_t *d, uint32_t id)
{
    for (size_t i = 0; d && i < d->n_nodes; i++)
        if (d->nodes[i].id == id)
            return &d->nodes[i];
    return NULL;
}

const cairn_node_desc_t *cairn_description_find_node_by_name(const cairn_description_t *d,
                                                             const char *name)
{
    for (size_t i = 0; d && name && i < d->n_nodes; i++)
        if (strcmp(d->nodes[i].name, name) == 0)
            return &d->nodes[i];
    return NULL;
}

const cairn_node_desc_t *cairn_description_lookup_node(const cairn_description_t *d,
                                                       const char *id_or_name)
{
    if (!d || !id_or_name || !*id_or_name)
        return NULL;
    if (strspn(id_or_name, "0123456789") == strlen(id_or_name) && strlen(id_or_name) <= 3) {
        const cairn_node_desc_t *n = cairn_description_find_node(d, (uint32_t) atoi(id_or_name));
        if (n)
            return n;
    }
    return cairn_description_find_node_by_name(d, id_or_name);
}

size_t cairn_description_n_services(const cairn_description_t *d)
{
    return d ? d->n_services : 0;
}

const cairn_service_desc_t *cairn_description_service_at(const cairn_description_t *d, size_t i)
{
    return d && i < d->n_services ? &d->services[i].pub : NULL;
}

const cairn_service_desc_t *cairn_description_service(const cairn_description_t *d,
                                                      const char *name)
{
    if (!d || !name)
        return NULL;
    const s_service_t *s = s_find_service(d, name, d->n_services);
    return s ? &s->pub : NULL;
}

int cairn_description_appliance_services(const cairn_description_t *d,
                                         const char *appliance,
                                         const char *const **ret_names, size_t *ret_n)
{
    if (!d || !appliance || !ret_names || !ret_n)
        return -EINVAL;
    const s_appliance_t *a = s_find_appliance(d, appliance, d->n_appliances);
    if (!a)
        return -ENOENT;
    *ret_names = (const char *const *) a->resolved;
    *ret_n = a->n_resolved;
    return 0;
}

bool cairn_description_node_runs(const cairn_description_t *d,
                                 const cairn_node_desc_t *node, const char *service)
{
    const char *const *names;
    size_t n;
    if (!node || !service ||
        cairn_description_appliance_services(d, node->appliance, &names, &n) < 0)
        return false;
    return s_has(names, n, service);
}

const cairn_membership_desc_t *cairn_description_membership(const cairn_description_t *d)
{
    return d ? &d->membership : NULL;
}

const char *cairn_description_policy(const cairn_description_t *d)
{
    return d ? d->policy : NULL;
}

size_t cairn_description_n_probes(const cairn_description_t *d)
{
    return d ? d->n_probes : 0;
}

const cairn_gossip_desc_t *cairn_description_gossip(const cairn_description_t *d)
{
    return d ? &d->gossip : NULL;
}

const cairn_sched_desc_t *cairn_description_sched(const cairn_description_t *d)
{
    return d ? &d->sched : NULL;
}

const cairn_probe_desc_t *cairn_description_probe(const cairn_description_t *d, size_t i)
{
    return d && i < d->n_probes ? &d->probes[i].pub : NULL;
}

const char *cairn_description_security_mode(const cairn_description_t *d)
{
    return d ? d->security_mode : NULL;
}

size_t cairn_description_n_keys(const cairn_description_t *d)
{
    return d ? d->n_keys : 0;
}

const cairn_key_desc_t *cairn_description_key(const cairn_description_t *d, size_t i)
{
    return d && i < d->n_keys ? &d->keys[i].pub : NULL;
}

const char *cairn_description_schema(void)
{
    return cairn_cluster_schema_text;
}

/* ---- endpoints --------------------------------------------------------- */

char *cairn_description_ipc_endpoint(const cairn_description_t *d,
                                     const cairn_node_desc_t *node, const char *service)
{
    char *s = NULL;
    if (!d || !node || !service) {
        errno = EINVAL;
        return NULL;
    }
    if (!cairn_description_service(d, service)) {
        errno = ENOENT;
        return NULL;
    }
    if (asprintf(&s, "ipc://%s/%s.sock", node->rundir, service) < 0) {
        errno = ENOMEM;
        return NULL;
    }
    return s;
}

char *cairn_description_tcp_endpoint(const cairn_description_t *d,
                                     const cairn_node_desc_t *node,
                                     const char *service, bool pub)
{
    char *s = NULL;
    if (!d || !node || !service) {
        errno = EINVAL;
        return NULL;
    }
    const cairn_service_desc_t *sv = cairn_description_service(d, service);
    uint16_t port = sv ? (pub ? sv->pub_port : sv->port) : 0;
    if (port == 0) {
        errno = ENOENT;
        return NULL;
    }
    bool v6 = strchr(node->address, ':') != NULL;
    if (asprintf(&s, "tcp://%s%s%s:%u", v6 ? "[" : "", node->address, v6 ? "]" : "",
                 port) < 0) {
        errno = ENOMEM;
        return NULL;
    }
    return s;
}

/* ---- the run base ------------------------------------------------------ */

/* Non-empty environment variable, or NULL. */
static const char *s_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int cairn_run_base(const char *explicit_base, char *out, size_t size,
                   cairn_error_t *err)
{
    const char *env = s_env("CAIRN_RUN_BASE"), *xdg = s_env("XDG_RUNTIME_DIR");
    int n;

    if (explicit_base && *explicit_base)
        n = snprintf(out, size, "%s", explicit_base);
    else if (env)
        n = snprintf(out, size, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(out, size, "%s", CAIRN_DEFAULT_RUN_BASE);
    else
        n = snprintf(out, size, "%s/cairn", xdg ? xdg : "/tmp");
    if (n < 0 || (size_t) n >= size)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "run base too long (at most %zu bytes)", size - 1);
    if (out[0] != '/')
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run base '%s' is not an absolute path", out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

/* ---- hotplug ----------------------------------------------------------- */

static int s_check_new_node(const cairn_description_t *d, uint32_t id,
                            const char *name, const char *address,
                            const char *appliance, cairn_error_t *err)
{
    int fam;
    unsigned char ip[16];
    const char *const *names;
    size_t n;
    if (id < 1 || id > 255)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "node id %u is not in 1..255", id);
    if (!address || !desc_parse_ip(address, &fam, ip))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "address '%s' is not an IPv4 or IPv6 literal",
                               address ? address : "");
    if (cairn_description_appliance_services(d, appliance, &names, &n) < 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no appliance named '%s' in %s", appliance, d->path);
    for (size_t i = 0; i < d->n_nodes; i++) {
        const cairn_node_desc_t *o = &d->nodes[i];
        if (o->id == id || strcmp(o->name, name) == 0 || strcmp(o->address, address) == 0)
            return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                                   "node %u (%s at %s) in the description already has "
                                   "this %s", o->id, o->name, o->address,
                                   o->id == id ? "id" : strcmp(o->name, name) == 0 ? "name" : "address");
    }
    return 0;
}

int cairn_description_add_node(cairn_description_t *d, uint32_t id,
                               const char *name, const char *address,
                               const char *appliance,
                               const cairn_node_desc_t **ret,
                               cairn_error_t *err)
{
    char defname[16];
    snprintf(defname, sizeof(defname), "n%u", id);
    if (!name || !*name)
        name = defname;
    if ((!appliance || !*appliance) && d->n_nodes > 0)
        appliance = d->nodes[0].appliance;
    int r = s_check_new_node(d, id, name, address, appliance ? appliance : "", err);
    if (r < 0)
        return r;
    cairn_node_desc_t *nodes = realloc(d->nodes, (d->n_nodes + 1) * sizeof(*nodes));
    if (!nodes)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    d->nodes = nodes;
    s_loader_t ld = { .file = d->path, .err = err, .d = d };
    cairn_node_desc_t nd = { .id = id, .line = 0 };
    nd.name = s_pool(d, name);
    nd.address = s_pool(d, address);
    nd.appliance = s_pool(d, appliance);
    nd.rundir = s_default_rundir(&ld, id);
    if (!nd.name || !nd.address || !nd.appliance || !nd.rundir)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    d->nodes[d->n_nodes++] = nd;
    if (ret)
        *ret = &d->nodes[d->n_nodes - 1];
    return 0;
}
