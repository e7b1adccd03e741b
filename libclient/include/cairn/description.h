/* cairn/description.h - the cluster description: one XML file for a cluster.
 *
 * Every daemon and the CLI read the same file (docs/architecture.md §5).
 * Loading parses it with libxml2 (no network, no entity expansion),
 * validates it against the RelaxNG schema compiled into libcairn
 * (libclient/cluster.rng), then checks what a schema cannot: unique node
 * ids, names and addresses, appliances that exist and do not extend in a
 * cycle, services that are declared, ports that do not collide, keys for
 * every node when CURVE is on. Every error names the
 * file, the line, the element and the reason.
 *
 * The loaded description is immutable; all strings it returns live as long
 * as it does. Descriptions are written by one builder (below), through
 * libxml2, and every document it writes is loaded back before it is handed
 * out.
 */
#ifndef CAIRN_DESCRIPTION_H
#define CAIRN_DESCRIPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_DEFAULT_RUN_BASE "/run/cairn"
/* The scheduler policy a generated description (and a local cluster) runs:
 * round robin, which never moves a job by itself (docs/scheduler.md). */
#define CAIRN_SCHED_DEFAULT_POLICY "rr"

typedef struct cairn_description cairn_description_t;
/* A description being written: see "the builder" below. */
typedef struct cairn_description_builder cairn_description_builder_t;

typedef struct cairn_node_desc {
    uint32_t id;              /* 1..255 */
    const char *name;         /* unique */
    const char *address;      /* IPv4/IPv6 literal or host name, unique */
    const char *appliance;    /* name of an appliance */
    const char *rundir;       /* <run-base>/<cluster>/<id> unless set per node */
    bool seed;                /* contacted by joining nodes */
    int line;                 /* line of the <node> element */
} cairn_node_desc_t;

typedef struct cairn_service_desc {
    const char *name;         /* "clusterd", "ghostd", ... */
    uint16_t port;            /* ROUTER tcp port on the node address */
    uint16_t pub_port;        /* PUB tcp port, 0 if the service publishes nothing */
    uint16_t metrics_port;    /* HTTP port of its metrics (docs/metrics.md),
                               * 0: no HTTP listener */
} cairn_service_desc_t;

typedef struct cairn_membership_desc {
    uint32_t protocol_period_ms;  /* SWIM: one probe of a random member per period */
    uint32_t ping_timeout_ms;     /* direct ping answered within this, else indirect */
    uint32_t indirect_checks;     /* k members asked to ping on our behalf */
    uint32_t suspect_timeout_ms;  /* suspect -> dead after this without refutation */
    uint32_t gossip_fanout;       /* max updates piggybacked per message */
} cairn_membership_desc_t;

typedef struct cairn_probe_desc {
    const char *name;         /* "load", "memory", ... */
    uint32_t period_ms;
} cairn_probe_desc_t;

/* probed's dissemination, from <scheduler>'s attributes (docs/scheduler.md). */
typedef struct cairn_gossip_desc {
    uint32_t period_ms;       /* every period a node's vector goes to a few
                               * peers; 0: the shortest probe period */
    uint32_t fanout;          /* peers per period, default 2 */
    uint32_t window;          /* peers' vectors a node keeps, default 8 */
} cairn_gossip_desc_t;

/* The policies' and ghostd's placement parameters, from <scheduler>'s
 * attributes (docs/scheduler.md, "Parameters"); defaults where not given. */
typedef struct cairn_sched_desc {
    uint32_t balance_period_ms;    /* a balance check at most this often;
                                    * 0 (default): probed's gossip period */
    uint32_t stability_margin_pct; /* hundredths of a CPU a move must gain
                                    * beyond one job's load: 25 */
    uint32_t hold_periods;         /* balance periods a moved job stays: 4 */
    uint32_t high_water_pct;       /* ushering starts at this % of the
                                    * node's memory limit: 85 */
    uint32_t mem_margin_pct;       /* sched-mem's free-memory gap, % of the
                                    * larger limit: 10 */
    uint32_t placement_hold_ms;    /* ghostd holds a run this long at most
                                    * while no policy answers: 10000 */
    uint32_t ghost_file_max;       /* bytes of an open unlinked file a
                                    * checkpoint saves, larger refused
                                    * (ghost-dump --ghost-file-max) */
} cairn_sched_desc_t;

#define CAIRN_GHOST_FILE_MAX_DEFAULT (1u << 20)   /* ghost-dump's own */
#define CAIRN_GHOST_FILE_MAX_LIMIT (1u << 30)

typedef struct cairn_key_desc {
    uint32_t node;            /* node id the key pair belongs to */
    const char *public_key;   /* Z85 CURVE public key, 40 characters */
    const char *secret_path;  /* its secret key file: as given, relative to
                               * the description's directory, default
                               * keys/node-<id>.key there */
} cairn_key_desc_t;

/* Loads and validates path. On success *ret is a new description the caller
 * frees with cairn_description_free(). On failure returns -errno (-ENOENT,
 * -EINVAL for any validation error) with err carrying code INVALID_CONFIG
 * (or SYSTEM for an unreadable file), file, line, element and reason; *ret is
 * untouched. */
int cairn_description_load(const char *path, cairn_description_t **ret,
                           cairn_error_t *err);

/* Same for an in-memory document; `name` is used as the file in errors. */
int cairn_description_load_memory(const char *xml, size_t len, const char *name,
                                  cairn_description_t **ret, cairn_error_t *err);

/* Frees; accepts NULL; returns NULL. */
cairn_description_t *cairn_description_free(cairn_description_t *d);

const char *cairn_description_path(const cairn_description_t *d);   /* as loaded */
const char *cairn_description_cluster(const cairn_description_t *d); /* cluster name */
const char *cairn_description_run_base(const cairn_description_t *d);

size_t cairn_description_n_nodes(const cairn_description_t *d);
/* i < n_nodes; nodes in document order. */
const cairn_node_desc_t *cairn_description_node(const cairn_description_t *d, size_t i);
/* NULL if absent. */
const cairn_node_desc_t *cairn_description_find_node(const cairn_description_t *d, uint32_t id);
const cairn_node_desc_t *cairn_description_find_node_by_name(const cairn_description_t *d,
                                                             const char *name);
/* Picks a node from a --node argument: a decimal id or a name. NULL if none. */
const cairn_node_desc_t *cairn_description_lookup_node(const cairn_description_t *d,
                                                       const char *id_or_name);

/* Adds a node that is not in the file: a node hotplugged into a running
 * cluster (`cairn node add`) whose daemons are started with --node-id and
 * --address. Checks what the loader checks for a <node>: id 1..255 and
 * unused, name (default "n<id>") and address (an IP literal) unused,
 * appliance (default: the first node's) declared. rundir is the default
 * <run-base>/<cluster>/<id>. Call it only before the description is shared:
 * it may move the node array, so node pointers taken earlier are invalid.
 * On success *ret (may be NULL) points at the new node, owned by d. Errors:
 * -EINVAL / -EEXIST with code INVALID_ARGUMENT / ALREADY_EXISTS. */
int cairn_description_add_node(cairn_description_t *d, uint32_t id,
                               const char *name, const char *address,
                               const char *appliance,
                               const cairn_node_desc_t **ret,
                               cairn_error_t *err);

size_t cairn_description_n_services(const cairn_description_t *d);
const cairn_service_desc_t *cairn_description_service_at(const cairn_description_t *d, size_t i);
/* NULL if the service is not declared. */
const cairn_service_desc_t *cairn_description_service(const cairn_description_t *d,
                                                      const char *name);

/* Services of an appliance with `extends` resolved: the base's services
 * first, each name once. *ret_names points into d (do not free); returns 0,
 * or -ENOENT if no such appliance. */
int cairn_description_appliance_services(const cairn_description_t *d,
                                         const char *appliance,
                                         const char *const **ret_names,
                                         size_t *ret_n);

/* True if `service` runs on node (via its appliance). */
bool cairn_description_node_runs(const cairn_description_t *d,
                                 const cairn_node_desc_t *node,
                                 const char *service);

const cairn_membership_desc_t *cairn_description_membership(const cairn_description_t *d);

const char *cairn_description_policy(const cairn_description_t *d); /* active policy, "" if none */
size_t cairn_description_n_probes(const cairn_description_t *d);
const cairn_probe_desc_t *cairn_description_probe(const cairn_description_t *d, size_t i);
/* The gossip settings: given ones, defaults for the others. */
const cairn_gossip_desc_t *cairn_description_gossip(const cairn_description_t *d);
/* The scheduler's parameters: given ones, defaults for the others. */
const cairn_sched_desc_t *cairn_description_sched(const cairn_description_t *d);

/* "none" or "curve". */
const char *cairn_description_security_mode(const cairn_description_t *d);
size_t cairn_description_n_keys(const cairn_description_t *d);
const cairn_key_desc_t *cairn_description_key(const cairn_description_t *d, size_t i);

/* Endpoint strings for reaching `service` on node: ipc://<rundir>/<svc>.sock
 * and tcp://<address>:<port> (IPv6 addresses bracketed). Caller frees the
 * returned string; NULL with errno=ENOENT if the service is not declared. */
char *cairn_description_ipc_endpoint(const cairn_description_t *d,
                                     const cairn_node_desc_t *node,
                                     const char *service);
char *cairn_description_tcp_endpoint(const cairn_description_t *d,
                                     const cairn_node_desc_t *node,
                                     const char *service, bool pub);

/* Writes a valid description for hosts[0..n) (each "name", "address" or
 * "name=address"; ids 1..n in order) with every appliance name in
 * `appliance` (NULL = "compute") and the default services, ports, timings.
 * *ret_xml is a malloc'ed NUL-terminated document the caller frees. The
 * result always passes cairn_description_load_memory(). */
int cairn_description_generate(const char *cluster, const char *const *hosts,
                               size_t n, const char *appliance,
                               const char *run_base, char **ret_xml,
                               cairn_error_t *err);

/* The same document for hosts as a builder, to write with
 * cairn_description_builder_write_file() or change before writing. On
 * success *ret is a builder the caller frees with
 * cairn_description_builder_free(); errors as cairn_description_generate(),
 * *ret untouched. */
int cairn_description_generate_builder(const char *cluster,
                                       const char *const *hosts, size_t n,
                                       const char *appliance,
                                       const char *run_base,
                                       cairn_description_builder_t **ret,
                                       cairn_error_t *err);

/* ---- the builder ------------------------------------------------------- */

/* A description put together element by element, then written as XML
 * through libxml2 (which escapes every value) and validated before it is
 * handed out: the text is loaded back by cairn_description_load_memory(),
 * so it passes the RelaxNG schema and every semantic check, or the call
 * fails with the loader's located message ("<generated>:LINE: element:
 * reason") and code INVALID_ARGUMENT. Values are not checked when added --
 * the schema is the one place that knows what a name or a port may be --
 * except that required strings must not be NULL.
 *
 * Ownership: the builder copies every string it is given (the caller's may
 * go away at once); the XML text to_string returns is the caller's to
 * free(). Elements come out in the schema's order whatever the order of the
 * calls; within a section, in the order they were added. All calls return
 * 0 or a negative errno with err filled (-EINVAL for a NULL argument or an
 * invalid document, -ENOMEM); nothing is printed.
 */

/* New builder for cluster `cluster` whose run directories live under
 * run_base (NULL: no run-base attribute, the loader's default applies).
 * NULL if out of memory or cluster is NULL. */
cairn_description_builder_t *cairn_description_builder_new(const char *cluster,
                                                           const char *run_base);

/* Frees b and everything it holds; accepts NULL; returns NULL. */
cairn_description_builder_t *
cairn_description_builder_free(cairn_description_builder_t *b);

/* An XML comment written before <cluster> (replaces an earlier one). */
int cairn_description_builder_comment(cairn_description_builder_t *b,
                                      const char *text, cairn_error_t *err);

/* <service name port [pub-port]>; pub_port 0 writes no pub-port. */
int cairn_description_builder_add_service(cairn_description_builder_t *b,
                                          const char *name, uint16_t port,
                                          uint16_t pub_port,
                                          cairn_error_t *err);

/* Adds metrics-port="port" to the <service> named `name` added before;
 * -ENOENT (err says which) when there is none. */
int cairn_description_builder_set_metrics_port(cairn_description_builder_t *b,
                                               const char *name, uint16_t port,
                                               cairn_error_t *err);

/* <appliance name [extends]> with one <use> per services[0..n). */
int cairn_description_builder_add_appliance(cairn_description_builder_t *b,
                                            const char *name,
                                            const char *const *services,
                                            size_t n, const char *extends,
                                            cairn_error_t *err);

/* <node id name address appliance [seed="true"]>. */
int cairn_description_builder_add_node(cairn_description_builder_t *b,
                                       uint32_t id, const char *name,
                                       const char *address,
                                       const char *appliance, bool seed,
                                       cairn_error_t *err);

/* <membership> with every timing of m (NULL: the defaults of
 * docs/description.md); replaces an earlier one. */
int cairn_description_builder_set_membership(cairn_description_builder_t *b,
                                             const cairn_membership_desc_t *m,
                                             cairn_error_t *err);

/* <scheduler policy>; a second call changes the policy, keeping probes. */
int cairn_description_builder_set_scheduler(cairn_description_builder_t *b,
                                            const char *policy,
                                            cairn_error_t *err);

/* <probe name period-ms> in the scheduler; -EINVAL before set_scheduler. */
int cairn_description_builder_add_probe(cairn_description_builder_t *b,
                                        const char *name, uint32_t period_ms,
                                        cairn_error_t *err);

/* <security mode> ("none" or "curve"); keys added before are kept. */
int cairn_description_builder_set_security(cairn_description_builder_t *b,
                                           const char *mode,
                                           cairn_error_t *err);

/* <key node public [secret]> in <security> (made without a mode if there
 * is none yet): public_key a Z85 CURVE public key, secret_path may be
 * NULL (the loader's default, keys/node-<id>.key beside the file). */
int cairn_description_builder_add_key(cairn_description_builder_t *b,
                                      uint32_t node, const char *public_key,
                                      const char *secret_path,
                                      cairn_error_t *err);

/* What `cairn config generate` writes besides appliances and nodes: the
 * default services and ports (service "sched": whichever policy runs),
 * membership timings, and the scheduler (policy
 * CAIRN_SCHED_DEFAULT_POLICY and its probes). */
int cairn_description_builder_add_defaults(cairn_description_builder_t *b,
                                           cairn_error_t *err);

/* The document as UTF-8 XML, validated as said above. *ret_xml is a
 * malloc'ed NUL-terminated string the caller frees; untouched on failure.
 * b is unchanged and may be written again. */
int cairn_description_builder_to_string(cairn_description_builder_t *b,
                                        char **ret_xml, cairn_error_t *err);

/* Validates as to_string, then writes path atomically: a temp file beside
 * it, mode 0644, fsync, rename. A failed write leaves path as it was
 * (code SYSTEM, err->file = path). */
int cairn_description_builder_write_file(cairn_description_builder_t *b,
                                         const char *path,
                                         cairn_error_t *err);

/* ---- the run base ------------------------------------------------------ */

/* Where a cluster's run directories live on this host, the one rule shared
 * by the CLI's target resolution and the local cluster harness:
 * explicit_base (--run-base) when given and not empty, else
 * $CAIRN_RUN_BASE, else CAIRN_DEFAULT_RUN_BASE as root, else
 * ${XDG_RUNTIME_DIR:-/tmp}/cairn. Written to out without trailing slashes.
 * 0, or -ENAMETOOLONG / -EINVAL (code INVALID_ARGUMENT: too long for size,
 * not absolute). err may be NULL. */
int cairn_run_base(const char *explicit_base, char *out, size_t size,
                   cairn_error_t *err);

/* The RelaxNG schema text compiled into the library (static storage). */
const char *cairn_description_schema(void);

#ifdef __cplusplus
}
#endif
#endif
