/* fuzz-description.c - fuzz target: the cluster description loader
 * (libclient/description.c, cairn_description_load_memory).
 *
 * Input: the bytes of a description file (no NUL needed: the loader takes
 * a length).
 *
 * Design. A document the loader refuses must be refused the documented
 * way: -EINVAL, code INVALID_CONFIG, a message. A document it accepts is
 * walked through every accessor a daemon or the CLI uses, and what the
 * loader promises is checked: every node found again by id, by name and
 * by its id as a --node argument; every node's appliance declared; every
 * service found by name and reachable through an endpoint; every key for
 * a described node. Then a node is hotplugged into it (add_node), the one
 * call that changes a loaded description. Keys are read by node only: the
 * key's other fields are being reshaped (issue 17, CURVE).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/description.h"
#include "fuzz.h"

/* The endpoints of service on node; both exist for a declared service. */
static void s_walk_endpoints(const cairn_description_t *d,
                             const cairn_node_desc_t *node,
                             const cairn_service_desc_t *svc)
{
    char *ipc = cairn_description_ipc_endpoint(d, node, svc->name);
    char *tcp = cairn_description_tcp_endpoint(d, node, svc->name, false);

    FUZZ_CHECK(ipc != NULL && strncmp(ipc, "ipc://", 6) == 0);
    FUZZ_CHECK(tcp != NULL && strncmp(tcp, "tcp://", 6) == 0);
    free(ipc);
    free(tcp);
    if (svc->pub_port) {
        tcp = cairn_description_tcp_endpoint(d, node, svc->name, true);
        FUZZ_CHECK(tcp != NULL);
        free(tcp);
    }
}

static void s_walk_node(const cairn_description_t *d,
                        const cairn_node_desc_t *node)
{
    const char *const *names = NULL;
    char id[16];
    size_t n = 0;

    snprintf(id, sizeof(id), "%u", node->id);
    FUZZ_CHECK(node->id >= 1 && node->id <= 255);
    FUZZ_CHECK(cairn_description_find_node(d, node->id) == node);
    FUZZ_CHECK(cairn_description_find_node_by_name(d, node->name) == node);
    FUZZ_CHECK(cairn_description_lookup_node(d, id) == node);
    FUZZ_CHECK(cairn_description_lookup_node(d, node->name) != NULL);
    FUZZ_CHECK(node->address && node->rundir && node->rundir[0] == '/');
    FUZZ_CHECK(cairn_description_appliance_services(d, node->appliance, &names,
                                                    &n) == 0);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(cairn_description_node_runs(d, node, names[i]));
    for (size_t i = 0; i < cairn_description_n_services(d); i++)
        s_walk_endpoints(d, node, cairn_description_service_at(d, i));
}

static void s_walk(const cairn_description_t *d)
{
    const char *mode = cairn_description_security_mode(d);

    FUZZ_CHECK(cairn_description_cluster(d) && cairn_description_path(d));
    FUZZ_CHECK(cairn_description_run_base(d) != NULL);
    FUZZ_CHECK(cairn_description_n_nodes(d) >= 1);
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++)
        s_walk_node(d, cairn_description_node(d, i));
    FUZZ_CHECK(cairn_description_node(d, cairn_description_n_nodes(d)) == NULL);
    for (size_t i = 0; i < cairn_description_n_services(d); i++) {
        const cairn_service_desc_t *s = cairn_description_service_at(d, i);
        FUZZ_CHECK(cairn_description_service(d, s->name) == s);
        FUZZ_CHECK(s->port != 0 && s->pub_port != s->port);
    }
    FUZZ_CHECK(cairn_description_membership(d) != NULL);
    FUZZ_CHECK(cairn_description_policy(d) != NULL);
    for (size_t i = 0; i < cairn_description_n_probes(d); i++)
        FUZZ_CHECK(cairn_description_probe(d, i)->period_ms > 0);
    FUZZ_CHECK(strcmp(mode, "none") == 0 || strcmp(mode, "curve") == 0);
    for (size_t i = 0; i < cairn_description_n_keys(d); i++)
        FUZZ_CHECK(cairn_description_find_node(
                       d, cairn_description_key(d, i)->node) != NULL);
}

/* Hotplugs a node with the first free id and an unused address; either it
 * joins and is found, or it is refused the documented way. */
static void s_add_node(cairn_description_t *d)
{
    const cairn_node_desc_t *added = NULL;
    cairn_error_t err;
    uint32_t id = 1;

    while (id <= 255 && cairn_description_find_node(d, id))
        id++;
    if (id > 255)
        return;
    int r = cairn_description_add_node(d, id, NULL, "fd00:fff::1", NULL, &added,
                                       &err);
    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL || r == -EEXIST);
        return;
    }
    FUZZ_CHECK(added && cairn_description_find_node(d, id) == added);
    s_walk_node(d, added);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cairn_description_t *d = NULL;
    cairn_error_t err;
    int r = cairn_description_load_memory((const char *)data, size, "fuzz", &d,
                                          &err);

    if (r < 0) {
        /* -ENOMEM (code INTERNAL) only when libFuzzer's malloc limit bites. */
        FUZZ_CHECK((r == -EINVAL && err.code == CAIRN_INVALID_CONFIG) ||
                   (r == -ENOMEM && err.code == CAIRN_INTERNAL));
        FUZZ_CHECK(err.message[0] != '\0');
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        return 0;
    }
    s_walk(d);
    s_add_node(d);
    cairn_description_free(d);
    return 0;
}
