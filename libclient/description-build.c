/* description-build.c - writing cluster descriptions: the builder and the
 * generator of `cairn config generate` (docs/architecture.md §5).
 *
 * Writing has one path, the builder: it keeps the document as libxml2
 * nodes (escaping is libxml2's job, never ours), dumps them in the schema's
 * order and loads its own output with cairn_description_load_memory()
 * before handing it out, so a written file always loads.
 * cairn_description_generate() and the local cluster harness (lib/harness)
 * are users of the builder. Reading is description.c's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "cairn/description.h"
#include "description-private.h"
#include "util/cleanup.h"
#include "util/fileio.h"

/* ---- the builder ------------------------------------------------------- */

/* The sections of <cluster>, in the schema's order. */
enum {
    S_SEC_SERVICES, S_SEC_APPLIANCES, S_SEC_NODES, S_SEC_MEMBERSHIP,
    S_SEC_SCHEDULER, S_SEC_SECURITY, S_N_SECTIONS
};
static const char *const s_section_names[S_N_SECTIONS] = {
    "services", "appliances", "nodes", "membership", "scheduler", "security",
};

/* The document is kept as libxml2 nodes: the root linked in doc, each
 * section unlinked until a write puts them under the root in the schema's
 * order (and takes them out again), so calls may come in any order. */
struct cairn_description_builder {
    xmlDocPtr doc;                      /* owns root and comment */
    xmlNodePtr root;                    /* <cluster name [run-base]> */
    xmlNodePtr comment;                 /* before root, NULL if none */
    xmlNodePtr sections[S_N_SECTIONS];  /* unlinked; NULL until used */
};

static int s_oom(cairn_error_t *err)
{
    return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
}

static int s_missing(const char *call, const char *what, cairn_error_t *err)
{
    return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                           "cairn_description_builder_%s: %s is required",
                           call, what);
}

/* New child element of parent with attributes (name, value pairs, NULL
 * ended; a NULL name ends the list early, so an optional attribute goes
 * last); NULL if out of memory. */
static xmlNodePtr s_add(xmlNodePtr parent, const char *name, ...)
{
    xmlNodePtr n = xmlNewChild(parent, NULL, (const xmlChar *) name, NULL);
    va_list ap;
    va_start(ap, name);
    for (const char *k; n && (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        if (!xmlNewProp(n, (const xmlChar *) k, (const xmlChar *) v))
            n = NULL;
    }
    va_end(ap);
    return n;
}

/* Section i, made (unlinked) on first use; NULL if out of memory. */
static xmlNodePtr s_section(cairn_description_builder_t *b, int i)
{
    if (!b->sections[i])
        b->sections[i] = xmlNewDocNode(b->doc, NULL,
                                       (const xmlChar *) s_section_names[i],
                                       NULL);
    return b->sections[i];
}

/* Drops section i (to be made again). */
static void s_section_drop(cairn_description_builder_t *b, int i)
{
    xmlFreeNode(b->sections[i]);
    b->sections[i] = NULL;
}

cairn_description_builder_t *cairn_description_builder_new(const char *cluster,
                                                           const char *run_base)
{
    cairn_description_builder_t *b = cluster ? calloc(1, sizeof(*b)) : NULL;
    if (!b)
        return NULL;
    b->doc = xmlNewDoc((const xmlChar *) "1.0");
    b->root = b->doc ? xmlNewDocNode(b->doc, NULL, (const xmlChar *) "cluster",
                                     NULL)
                     : NULL;
    if (b->root)
        xmlDocSetRootElement(b->doc, b->root);
    if (!b->root ||
        !xmlNewProp(b->root, (const xmlChar *) "name", (const xmlChar *) cluster) ||
        (run_base && !xmlNewProp(b->root, (const xmlChar *) "run-base",
                                 (const xmlChar *) run_base)))
        return cairn_description_builder_free(b);
    return b;
}

cairn_description_builder_t *
cairn_description_builder_free(cairn_description_builder_t *b)
{
    if (!b)
        return NULL;
    for (int i = 0; i < S_N_SECTIONS; i++)
        xmlFreeNode(b->sections[i]);
    if (b->doc)
        xmlFreeDoc(b->doc);   /* root and comment with it */
    free(b);
    return NULL;
}

int cairn_description_builder_comment(cairn_description_builder_t *b,
                                      const char *text, cairn_error_t *err)
{
    if (!b || !text)
        return s_missing("comment", "text", err);
    xmlNodePtr c = xmlNewDocComment(b->doc, (const xmlChar *) text);
    if (!c || !xmlAddPrevSibling(b->root, c)) {
        xmlFreeNode(c);
        return s_oom(err);
    }
    if (b->comment) {
        xmlUnlinkNode(b->comment);
        xmlFreeNode(b->comment);
    }
    b->comment = c;
    return 0;
}

int cairn_description_builder_add_service(cairn_description_builder_t *b,
                                          const char *name, uint16_t port,
                                          uint16_t pub_port,
                                          cairn_error_t *err)
{
    char p[8], pub[8];
    if (!b || !name)
        return s_missing("add_service", "name", err);
    snprintf(p, sizeof(p), "%u", port);
    snprintf(pub, sizeof(pub), "%u", pub_port);
    xmlNodePtr sec = s_section(b, S_SEC_SERVICES);
    if (!sec || !s_add(sec, "service", "name", name, "port", p,
                       pub_port ? "pub-port" : NULL, pub, NULL))
        return s_oom(err);
    return 0;
}

int cairn_description_builder_set_metrics_port(cairn_description_builder_t *b,
                                               const char *name, uint16_t port,
                                               cairn_error_t *err)
{
    char p[8];
    if (!b || !name)
        return s_missing("set_metrics_port", "name", err);
    xmlNodePtr sec = b->sections[S_SEC_SERVICES];
    for (xmlNodePtr n = sec ? xmlFirstElementChild(sec) : NULL; n;
         n = xmlNextElementSibling(n)) {
        xmlChar *have = xmlGetProp(n, (const xmlChar *) "name");
        bool match = have && strcmp((const char *) have, name) == 0;
        xmlFree(have);
        if (!match)
            continue;
        snprintf(p, sizeof(p), "%u", port);
        if (!xmlSetProp(n, (const xmlChar *) "metrics-port", (const xmlChar *) p))
            return s_oom(err);
        return 0;
    }
    return cairn_error_set(err, -ENOENT, CAIRN_INVALID_ARGUMENT,
                           "set_metrics_port: no service '%s' added", name);
}

int cairn_description_builder_add_appliance(cairn_description_builder_t *b,
                                            const char *name,
                                            const char *const *services,
                                            size_t n, const char *extends,
                                            cairn_error_t *err)
{
    if (!b || !name || (n > 0 && !services))
        return s_missing("add_appliance", "name (and services when n > 0)",
                         err);
    for (size_t i = 0; i < n; i++)
        if (!services[i])
            return s_missing("add_appliance", "every service name", err);
    xmlNodePtr sec = s_section(b, S_SEC_APPLIANCES);
    xmlNodePtr a = sec ? s_add(sec, "appliance", "name", name,
                               extends ? "extends" : NULL, extends, NULL)
                       : NULL;
    for (size_t i = 0; a && i < n; i++)
        if (!s_add(a, "use", "service", services[i], NULL))
            a = NULL;
    return a ? 0 : s_oom(err);
}

int cairn_description_builder_add_node(cairn_description_builder_t *b,
                                       uint32_t id, const char *name,
                                       const char *address,
                                       const char *appliance, bool seed,
                                       cairn_error_t *err)
{
    char sid[16];
    if (!b || !name || !address || !appliance)
        return s_missing("add_node", "name, address and appliance", err);
    snprintf(sid, sizeof(sid), "%u", id);
    xmlNodePtr sec = s_section(b, S_SEC_NODES);
    if (!sec || !s_add(sec, "node", "id", sid, "name", name, "address", address,
                       "appliance", appliance, seed ? "seed" : NULL, "true",
                       NULL))
        return s_oom(err);
    return 0;
}

/* The timings `generate` writes (docs/description.md). */
static const cairn_membership_desc_t s_default_membership = {
    .protocol_period_ms = 600, .ping_timeout_ms = 100, .indirect_checks = 3,
    .suspect_timeout_ms = 800, .gossip_fanout = 6,
};

int cairn_description_builder_set_membership(cairn_description_builder_t *b,
                                             const cairn_membership_desc_t *m,
                                             cairn_error_t *err)
{
    char v[5][16];
    if (!b)
        return s_missing("set_membership", "the builder", err);
    if (!m)
        m = &s_default_membership;
    snprintf(v[0], sizeof(v[0]), "%u", m->protocol_period_ms);
    snprintf(v[1], sizeof(v[1]), "%u", m->ping_timeout_ms);
    snprintf(v[2], sizeof(v[2]), "%u", m->indirect_checks);
    snprintf(v[3], sizeof(v[3]), "%u", m->suspect_timeout_ms);
    snprintf(v[4], sizeof(v[4]), "%u", m->gossip_fanout);
    s_section_drop(b, S_SEC_MEMBERSHIP);
    xmlNodePtr n = s_section(b, S_SEC_MEMBERSHIP);
    const char *const names[5] = {
        "protocol-period-ms", "ping-timeout-ms", "indirect-checks",
        "suspect-timeout-ms", "gossip-fanout",
    };
    for (size_t i = 0; n && i < 5; i++)
        if (!xmlNewProp(n, (const xmlChar *) names[i], (const xmlChar *) v[i]))
            n = NULL;
    return n ? 0 : s_oom(err);
}

int cairn_description_builder_set_scheduler(cairn_description_builder_t *b,
                                            const char *policy,
                                            cairn_error_t *err)
{
    if (!b || !policy)
        return s_missing("set_scheduler", "policy", err);
    xmlNodePtr n = s_section(b, S_SEC_SCHEDULER);
    if (!n || !xmlSetProp(n, (const xmlChar *) "policy", (const xmlChar *) policy))
        return s_oom(err);
    return 0;
}

int cairn_description_builder_add_probe(cairn_description_builder_t *b,
                                        const char *name, uint32_t period_ms,
                                        cairn_error_t *err)
{
    char period[16];
    if (!b || !name)
        return s_missing("add_probe", "name", err);
    if (!b->sections[S_SEC_SCHEDULER])
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cairn_description_builder_add_probe: probe "
                               "'%s' needs a scheduler (set_scheduler first)",
                               name);
    snprintf(period, sizeof(period), "%u", period_ms);
    if (!s_add(b->sections[S_SEC_SCHEDULER], "probe", "name", name,
               "period-ms", period, NULL))
        return s_oom(err);
    return 0;
}

int cairn_description_builder_set_security(cairn_description_builder_t *b,
                                           const char *mode,
                                           cairn_error_t *err)
{
    if (!b || !mode)
        return s_missing("set_security", "mode", err);
    xmlNodePtr n = s_section(b, S_SEC_SECURITY);
    if (!n || !xmlSetProp(n, (const xmlChar *) "mode", (const xmlChar *) mode))
        return s_oom(err);
    return 0;
}

int cairn_description_builder_add_key(cairn_description_builder_t *b,
                                      uint32_t node, const char *public_key,
                                      const char *secret_path,
                                      cairn_error_t *err)
{
    char id[16];
    if (!b || !public_key)
        return s_missing("add_key", "public_key", err);
    snprintf(id, sizeof(id), "%u", node);
    xmlNodePtr sec = s_section(b, S_SEC_SECURITY);
    if (!sec || !s_add(sec, "key", "node", id, "public", public_key,
                       secret_path ? "secret" : NULL, secret_path, NULL))
        return s_oom(err);
    return 0;
}

typedef struct s_default_service {
    const char *name;          /* service name */
    uint16_t port;             /* ROUTER port */
    uint16_t pub_port;         /* PUB port, 0 if none */
    uint16_t metrics_port;     /* HTTP metrics port (docs/metrics.md) */
} s_default_service_t;

static const s_default_service_t s_default_services[] = {
    { "clusterd", 7100, 7101, 7109 },
    { "ghostd", 7110, 7111, 7119 },
    { "dsmd", 7120, 7121, 7129 },
    { "syncd", 7130, 7131, 7139 },
    { "probed", 7140, 7141, 7149 },
    { "sched", 7150, 7151, 7159 },   /* whichever policy runs (sched-<policy>) */
    { "kernetd", 7160, 7161, 7169 },
};

#define S_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

int cairn_description_builder_add_defaults(cairn_description_builder_t *b,
                                           cairn_error_t *err)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < S_ELEMS(s_default_services); i++) {
        const s_default_service_t *s = &s_default_services[i];
        r = cairn_description_builder_add_service(b, s->name, s->port,
                                                  s->pub_port, err);
        r = r ? r : cairn_description_builder_set_metrics_port(b, s->name,
                                                              s->metrics_port, err);
    }
    r = r ? r : cairn_description_builder_set_membership(b, NULL, err);
    r = r ? r : cairn_description_builder_set_scheduler(b, CAIRN_SCHED_DEFAULT_POLICY,
                                                     err);
    /* probed's probes (docs/scheduler.md, "Defaults") */
    r = r ? r : cairn_description_builder_add_probe(b, "cpu", 1000, err);
    r = r ? r : cairn_description_builder_add_probe(b, "runqueue", 1000, err);
    r = r ? r : cairn_description_builder_add_probe(b, "memory", 1000, err);
    r = r ? r : cairn_description_builder_add_probe(b, "jobs", 2000, err);
    return r ? r : cairn_description_builder_add_probe(b, "migration-cost", 2000, err);
}

/* The document as text: sections put under the root in the schema's
 * order, dumped (libxml2 escapes), and taken out again. */
static char *s_dump(cairn_description_builder_t *b)
{
    xmlChar *mem = NULL;
    int size = 0;
    for (int i = 0; i < S_N_SECTIONS; i++)
        if (b->sections[i])
            xmlAddChild(b->root, b->sections[i]);
    xmlDocDumpFormatMemoryEnc(b->doc, &mem, &size, "UTF-8", 1);
    for (int i = 0; i < S_N_SECTIONS; i++)
        if (b->sections[i])
            xmlUnlinkNode(b->sections[i]);
    char *xml = mem ? strndup((const char *) mem, (size_t) size) : NULL;
    xmlFree(mem);
    return xml;
}

int cairn_description_builder_to_string(cairn_description_builder_t *b,
                                        char **ret_xml, cairn_error_t *err)
{
    if (!b || !ret_xml)
        return s_missing("to_string", "the builder and ret_xml", err);
    char *xml = s_dump(b);
    if (!xml)
        return s_oom(err);
    cairn_description_t *d = NULL;
    int r = cairn_description_load_memory(xml, strlen(xml), "<generated>", &d,
                                          err);
    cairn_description_free(d);
    if (r < 0) {
        /* what is wrong came from the builder's caller, not from a file */
        if (err && err->code == CAIRN_INVALID_CONFIG)
            err->code = CAIRN_INVALID_ARGUMENT;
        free(xml);
        return r;
    }
    *ret_xml = xml;
    return 0;
}

/* Writes text to path atomically: a temp file beside it, fsync, rename. */
static int s_write_atomic(const char *path, const char *text,
                          cairn_error_t *err)
{
    _cleanup_free_ char *tmp = NULL;
    int fd, r;

    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        return s_oom(err);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return cairn_error_set_at(err, -errno, CAIRN_SYSTEM, path, 0, NULL,
                                  "cannot create a file beside %s: %s", path,
                                  strerror(errno));
    r = cairn_write_all(fd, text, strlen(text));
    if (r == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return cairn_error_set_at(err, r, CAIRN_SYSTEM, path, 0, NULL,
                                  "cannot write %s: %s", path, strerror(-r));
    }
    return 0;
}

int cairn_description_builder_write_file(cairn_description_builder_t *b,
                                         const char *path,
                                         cairn_error_t *err)
{
    _cleanup_free_ char *xml = NULL;
    if (!path)
        return s_missing("write_file", "path", err);
    int r = cairn_description_builder_to_string(b, &xml, err);
    return r < 0 ? r : s_write_atomic(path, xml, err);
}

/* ---- generation -------------------------------------------------------- */

static const char *const s_compute_uses[] = {
    "clusterd", "ghostd", "dsmd", "syncd", "probed", "sched", "kernetd",
};

/* True if s is 1..max chars, first in `first`, the rest in `rest`
 * (character sets as strspn takes them). */
static bool s_valid_name(const char *s, const char *first, const char *rest, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= max && strchr(first, s[0]) &&
           strspn(s + 1, rest) == n - 1;
}

#define S_ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static int s_gen_appliances(cairn_description_builder_t *b, cairn_error_t *err)
{
    int r = cairn_description_builder_add_appliance(
        b, "compute", s_compute_uses, S_ELEMS(s_compute_uses), NULL, err);
    /* a frontend is a compute node people log in to: nothing more runs */
    return r ? r : cairn_description_builder_add_appliance(
        b, "frontend", NULL, 0, "compute", err);
}

/* Resolves a host name to its first address, as a literal. */
static int s_resolve_host(const char *spec, const char *host, char *out, size_t outsz,
                          cairn_error_t *err)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, NULL, &hints, &res);
    if (r != 0 || !res)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "host '%s': cannot resolve '%s': %s", spec, host,
                               r ? gai_strerror(r) : "no address");
    const void *a = res->ai_family == AF_INET
        ? (const void *) &((struct sockaddr_in *) res->ai_addr)->sin_addr
        : (const void *) &((struct sockaddr_in6 *) res->ai_addr)->sin6_addr;
    const char *ok = inet_ntop(res->ai_family, a, out, (socklen_t) outsz);
    freeaddrinfo(res);
    if (!ok)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "host '%s': no usable address", spec);
    return 0;
}

/* Splits a host argument ("name", "address" or "name=address") into a node
 * name and an address literal. */
static int s_parse_host(const char *spec, uint32_t id, char *name, size_t namesz,
                        char *addr, size_t addrsz, cairn_error_t *err)
{
    unsigned char ip[16];
    int family;
    const char *eq = spec ? strchr(spec, '=') : NULL;
    const char *a = eq ? eq + 1 : spec;
    if (!spec || !*spec || (eq && (eq == spec || !*a)))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "host '%s': expected name, address or name=address",
                               spec ? spec : "(null)");
    if (eq)
        snprintf(name, namesz, "%.*s", (int) (eq - spec), spec);
    else if (desc_parse_ip(spec, &family, ip))
        snprintf(name, namesz, "node%u", id);
    else
        snprintf(name, namesz, "%s", spec);
    if (!s_valid_name(name, S_ALNUM, S_ALNUM "_.-", 64))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "host '%s': node name must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
                               spec);
    if (desc_parse_ip(a, &family, ip)) {
        inet_ntop(family, ip, addr, (socklen_t) addrsz);
        return 0;
    }
    return s_resolve_host(spec, a, addr, addrsz, err);
}

static int s_gen_nodes(cairn_description_builder_t *b, const char *const *hosts,
                       size_t n, const char *appliance, cairn_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        char name[80], addr[INET6_ADDRSTRLEN];
        int r = s_parse_host(hosts[i], (uint32_t) (i + 1), name, sizeof(name), addr,
                             sizeof(addr), err);
        r = r ? r : cairn_description_builder_add_node(b, (uint32_t) (i + 1), name,
                                                       addr, appliance, i == 0, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int s_gen_check_args(const char *cluster, const char *const *hosts, size_t n,
                            const char *appliance, const char *run_base,
                            cairn_error_t *err)
{
    if (!s_valid_name(cluster, S_ALNUM "_.-", S_ALNUM "_.-", 32))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "cluster name '%s' must match [A-Za-z0-9_.-]{1,32}",
                               cluster ? cluster : "(null)");
    if (n == 0 || n > DESC_MAX_NODES || !hosts)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "between 1 and %d hosts are needed, got %zu", DESC_MAX_NODES, n);
    if (strcmp(appliance, "compute") != 0 && strcmp(appliance, "frontend") != 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "unknown appliance '%s' (generate knows compute and frontend)",
                               appliance);
    if (run_base && !desc_is_absolute(run_base))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "run-base '%s' is not an absolute path", run_base);
    return 0;
}

int cairn_description_generate_builder(const char *cluster,
                                       const char *const *hosts, size_t n,
                                       const char *appliance,
                                       const char *run_base,
                                       cairn_description_builder_t **ret,
                                       cairn_error_t *err)
{
    if (!appliance)
        appliance = "compute";
    if (!ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "ret is required");
    int r = s_gen_check_args(cluster, hosts, n, appliance, run_base, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (!hosts[i])
            return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "host %zu is NULL", i);
    cairn_description_builder_t *b = cairn_description_builder_new(cluster, run_base);
    if (!b)
        return s_oom(err);
    r = cairn_description_builder_add_defaults(b, err);
    r = r ? r : s_gen_appliances(b, err);
    r = r ? r : s_gen_nodes(b, hosts, n, appliance, err);
    if (r < 0) {
        cairn_description_builder_free(b);
        return r;
    }
    *ret = b;
    return 0;
}

int cairn_description_generate(const char *cluster, const char *const *hosts, size_t n,
                               const char *appliance, const char *run_base,
                               char **ret_xml, cairn_error_t *err)
{
    cairn_description_builder_t *b = NULL;
    if (!ret_xml)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "ret_xml is required");
    int r = cairn_description_generate_builder(cluster, hosts, n, appliance, run_base,
                                               &b, err);
    r = r ? r : cairn_description_builder_to_string(b, ret_xml, err);
    cairn_description_builder_free(b);
    return r;
}

