/* clusterd-manager.c - clusterd's lifecycle and handler table.
 *
 * Status answers who this node is; everything about other nodes (Nodes, the
 * SWIM messages, hotplug, leave) belongs to membership.c, which this file
 * wires into the skeleton's start/ready/reload/stop callbacks, as it wires
 * the dashboard (dashboard.c) when clusterd has a metrics-port.
 */
#include <errno.h>
#include <unistd.h>

#include "cairn-config.h"
#include "clusterd.h"

static int s_start(cairn_service_t *svc, void *ctx)
{
    clusterd_t *cd = ctx;
    int r;

    cd->svc = svc;
    cd->members = membership_new(svc);
    if (!cd->members)
        return -ENOMEM;
    cd->dash = dashboard_new(svc, &r);
    return r;
}

static int s_ready(cairn_service_t *svc, void *ctx)
{
    clusterd_t *cd = ctx;
    int r = membership_start(cd->members);
    return r < 0 ? r : dashboard_start(cd->dash);
}

static int s_reload(cairn_service_t *svc, void *ctx,
                    const cairn_description_t *newd, cairn_error_t *err)
{
    clusterd_t *cd = ctx;
    membership_reload(cd->members, newd);
    return 0;
}

static void s_stop(cairn_service_t *svc, void *ctx)
{
    clusterd_t *cd = ctx;
    membership_stop(cd->members);
    /* its sockets close before the skeleton ends the zmq context */
    cd->dash = dashboard_free(cd->dash);
}

void clusterd_done(clusterd_t *cd)
{
    cd->members = membership_free(cd->members);
    cd->dash = dashboard_free(cd->dash);
}

/* Copies the appliance's service names into the reply's arena. */
static int s_fill_services(cairn_request_t *req, const cairn_description_t *d,
                           const cairn_node_desc_t *self,
                           Cairn__Clusterd__StatusReply *sr)
{
    const char *const *names = NULL;
    size_t n = 0;
    if (cairn_description_appliance_services(d, self->appliance, &names, &n) < 0)
        return -ENOENT;
    sr->services = cairn_request_alloc(req, (n ? n : 1) * sizeof(char *));
    if (!sr->services)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        sr->services[i] = (char *)names[i];   /* description outlives the reply */
    sr->n_services = n;
    return 0;
}

/* The security mode and, in mode curve, this node's key fingerprint:
 * what `cairn status` shows so an operator sees which mode runs. */
static int s_fill_security(cairn_request_t *req, cairn_service_t *svc,
                           Cairn__Clusterd__StatusReply *sr)
{
    const cairn_keypair_t *own = cairn_service_keypair(svc);
    char fp[CAIRN_KEY_FINGERPRINT_LEN + 1] = "";

    if (own)
        cairn_key_fingerprint(own->public_key, fp);
    sr->security_mode = (char *)cairn_service_security_mode(svc);
    sr->key_fingerprint = cairn_request_strdup(req, fp);
    return sr->key_fingerprint ? 0 : -ENOMEM;
}

static int s_handle_status(void *ctx, cairn_request_t *req)
{
    clusterd_t *cd = ctx;
    const cairn_description_t *d = cairn_service_description(cd->svc);
    const cairn_node_desc_t *self = cairn_service_node(cd->svc);
    Cairn__Clusterd__Reply *reply = (Cairn__Clusterd__Reply *)cairn_request_reply(req);
    Cairn__Clusterd__StatusReply *sr = cairn_request_alloc(req, sizeof(*sr));
    if (!sr)
        return -ENOMEM;
    cairn__clusterd__status_reply__init(sr);
    if (s_fill_security(req, cd->svc, sr) < 0)
        return -ENOMEM;
    sr->node_id = self->id;
    sr->node_name = (char *)self->name;
    sr->address = (char *)self->address;
    sr->appliance = (char *)self->appliance;
    sr->cluster = (char *)cairn_description_cluster(d);
    sr->version = (char *)CAIRN_VERSION;
    sr->uptime_ms = cairn_service_uptime_ms(cd->svc);
    sr->pid = (uint32_t)getpid();
    sr->incarnation = membership_incarnation(cd->members);
    int r = s_fill_services(req, d, self, sr);
    if (r < 0)
        return r;
    reply->status_reply = sr;
    reply->msg_case = CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY;
    return CAIRN_REPLY_NOW;
}

#define S_MEMBERSHIP_HANDLER(fname, call)                  \
    static int fname(void *ctx, cairn_request_t *req)      \
    {                                                      \
        return call(((clusterd_t *)ctx)->members, req);    \
    }
S_MEMBERSHIP_HANDLER(s_handle_nodes, membership_handle_nodes)
S_MEMBERSHIP_HANDLER(s_handle_ping, membership_handle_ping)
S_MEMBERSHIP_HANDLER(s_handle_ping_req, membership_handle_ping_req)
S_MEMBERSHIP_HANDLER(s_handle_join, membership_handle_join)
S_MEMBERSHIP_HANDLER(s_handle_node_add, membership_handle_node_add)
S_MEMBERSHIP_HANDLER(s_handle_node_remove, membership_handle_node_remove)
S_MEMBERSHIP_HANDLER(s_handle_leave, membership_handle_leave)

static const cairn_handler_t s_handlers[] = {
    { CAIRN__CLUSTERD__REQUEST__MSG_STATUS, "status", s_handle_status,
      CAIRN_ACCESS_ANYONE },
    { CAIRN__CLUSTERD__REQUEST__MSG_NODES, "nodes", s_handle_nodes,
      CAIRN_ACCESS_ANYONE },
    /* the rest: the members' protocol and the operator's changes (admin) */
    { CAIRN__CLUSTERD__REQUEST__MSG_PING, "ping", s_handle_ping },
    { CAIRN__CLUSTERD__REQUEST__MSG_PING_REQ, "ping-req", s_handle_ping_req },
    { CAIRN__CLUSTERD__REQUEST__MSG_JOIN, "join", s_handle_join },
    { CAIRN__CLUSTERD__REQUEST__MSG_NODE_ADD, "node-add", s_handle_node_add },
    { CAIRN__CLUSTERD__REQUEST__MSG_NODE_REMOVE, "node-remove", s_handle_node_remove },
    { CAIRN__CLUSTERD__REQUEST__MSG_LEAVE, "leave", s_handle_leave },
};

const cairn_service_ops_t clusterd_ops = {
    .name = "clusterd",
    .request_desc = &cairn__clusterd__request__descriptor,
    .reply_desc = &cairn__clusterd__reply__descriptor,
    .handlers = s_handlers,
    .n_handlers = sizeof(s_handlers) / sizeof(s_handlers[0]),
    .start = s_start,
    .ready = s_ready,
    .reload = s_reload,
    .stop = s_stop,
};
