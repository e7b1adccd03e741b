/* cairn/description.h - the cluster description: one XML file for a cluster.
 *
 * Every daemon and the CLI read the same file (docs/architecture.md §5). Loading parses it
 * with libxml2 (no network, no entity expansion), validates it against the
 * RelaxNG schema compiled into libcairn (libclient/cluster.rng), then checks
 * what a schema cannot: unique node ids, names and addresses, appliances that
 * exist and do not extend in a cycle, services that are declared, ports that
 * do not collide, keys for every node when CURVE is on. Every error names the
 * file, the line, the element and the reason.
 *
 * The loaded description is immutable; all strings it returns live as long
 * as it does.
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

typedef struct cairn_description cairn_description_t;

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

typedef struct cairn_key_desc {
    uint32_t node;            /* node id the key pair belongs to */
    const char *public_path;  /* Z85 public key file */
    const char *secret_path;  /* Z85 secret key file, NULL if not given */
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

/* The RelaxNG schema text compiled into the library (static storage). */
const char *cairn_description_schema(void);

#ifdef __cplusplus
}
#endif
#endif
