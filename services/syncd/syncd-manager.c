/* syncd-manager.c - syncd's lifecycle and handler table.
 *
 * Every request belongs to relay.c, which decides per caller whether it
 * is a request of this node's processes (carried to the object's home) or
 * one of another node's relay (served here as the home). This file only
 * says who may send what and wires the relay into the skeleton's
 * start/ready/stop callbacks.
 */
#include <errno.h>

#include "syncd.h"

static int s_start(cairn_service_t *svc, void *ctx)
{
    syncd_t *sd = ctx;
    cairn_error_t err;

    sd->svc = svc;
    sd->relay = relay_new(svc, &err);
    return sd->relay ? 0 : -ENOMEM;
}

static int s_ready(cairn_service_t *svc, void *ctx)
{
    syncd_t *sd = ctx;
    return relay_start(sd->relay);
}

static void s_stop(cairn_service_t *svc, void *ctx)
{
    syncd_t *sd = ctx;
    relay_stop(sd->relay);
}

void syncd_done(syncd_t *sd)
{
    sd->relay = relay_free(sd->relay);
}

#define S_RELAY_HANDLER(fname, call)                       \
    static int fname(void *ctx, cairn_request_t *req)      \
    {                                                      \
        return call(((syncd_t *)ctx)->relay, req);         \
    }
S_RELAY_HANDLER(s_handle_acquire, relay_handle_acquire)
S_RELAY_HANDLER(s_handle_release, relay_handle_release)
S_RELAY_HANDLER(s_handle_consistent, relay_handle_consistent)
S_RELAY_HANDLER(s_handle_barrier, relay_handle_barrier)
S_RELAY_HANDLER(s_handle_cond_wait, relay_handle_cond_wait)
S_RELAY_HANDLER(s_handle_cond_signal, relay_handle_cond_signal)
S_RELAY_HANDLER(s_handle_ls, relay_handle_ls)
S_RELAY_HANDLER(s_handle_show, relay_handle_show)
S_RELAY_HANDLER(s_handle_destroy, relay_handle_destroy)
S_RELAY_HANDLER(s_handle_declare, relay_handle_declare)
S_RELAY_HANDLER(s_handle_slot_release, relay_handle_slot_release)
S_RELAY_HANDLER(s_handle_revoke, relay_handle_revoke)
S_RELAY_HANDLER(s_handle_gone, relay_handle_gone)
S_RELAY_HANDLER(s_handle_announce, relay_handle_announce)

static const cairn_handler_t s_handlers[] = {
    /* what any user may do to objects that are theirs or shared (the
     * relay and the home check ownership) */
    { CAIRN__SYNCD__REQUEST__MSG_ACQUIRE, "acquire", s_handle_acquire, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_RELEASE, "release", s_handle_release, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_CONSISTENT, "consistent", s_handle_consistent, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_BARRIER, "barrier", s_handle_barrier, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_COND_WAIT, "cond-wait", s_handle_cond_wait, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_COND_SIGNAL, "cond-signal", s_handle_cond_signal, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_DESTROY, "destroy", s_handle_destroy, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_DECLARE, "declare", s_handle_declare, CAIRN_ACCESS_USER },
    { CAIRN__SYNCD__REQUEST__MSG_SLOT_RELEASE, "slot-release", s_handle_slot_release, CAIRN_ACCESS_USER },
    /* reads: filtered to what the caller may see */
    { CAIRN__SYNCD__REQUEST__MSG_LS, "ls", s_handle_ls, CAIRN_ACCESS_ANYONE },
    { CAIRN__SYNCD__REQUEST__MSG_SHOW, "show", s_handle_show, CAIRN_ACCESS_ANYONE },
    /* between syncds of member nodes (admin) */
    { CAIRN__SYNCD__REQUEST__MSG_REVOKE, "revoke", s_handle_revoke },
    { CAIRN__SYNCD__REQUEST__MSG_GONE, "gone", s_handle_gone },
    { CAIRN__SYNCD__REQUEST__MSG_ANNOUNCE, "announce", s_handle_announce },
};

const cairn_service_ops_t syncd_ops = {
    .name = "syncd",
    .request_desc = &cairn__syncd__request__descriptor,
    .reply_desc = &cairn__syncd__reply__descriptor,
    .handlers = s_handlers,
    .n_handlers = sizeof(s_handlers) / sizeof(s_handlers[0]),
    .start = s_start,
    .ready = s_ready,
    .stop = s_stop,
};
