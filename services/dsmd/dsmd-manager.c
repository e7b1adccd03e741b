/* dsmd-manager.c - dsmd's lifecycle and handler table.
 *
 * start: the node's memory limit (the largest segment), the peers, the
 * membership view; ready: the view and the processes' socket
 * (fdsock.c); stop: every process's attachment goes (their faults then
 * get SIGBUS from the closed userfaultfd: a stopped dsmd serves no page).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../probed/nodecg.h"
#include "dsmd.h"
#include "log.h"

/* The node's memory: its cgroup's limit, else the host's. */
static uint64_t s_mem_limit(void)
{
    nodecg_t cg;
    uint64_t v = 0;
    char *text = NULL;
    nodecg_find("", &cg);
    if (cg.mem[0] &&
        (nodecg_read_u64("", cg.mem, "memory.max", &v) == 0 ||
         nodecg_read_u64("", cg.mem, "memory.limit_in_bytes", &v) == 0) && v > 0)
        return v;
    if (nodecg_read("", "/proc", "meminfo", &text) == 0 &&
        nodecg_key_u64(text, "MemTotal", &v) == 0) {
        free(text);
        return v * 1024;
    }
    free(text);
    long pages = sysconf(_SC_PHYS_PAGES);
    return pages > 0 ? (uint64_t)pages * DSM_PAGE : 1ull << 30;
}

static void s_on_view(void *userdata, uint64_t old_view, uint64_t new_view)
{
    (void)old_view; (void)new_view;
    dsm_dir_view(userdata);
}

static int s_start(cairn_service_t *svc, void *ctx)
{
    dsmd_t *d = ctx;
    d->svc = svc;
    d->self = cairn_service_node(svc)->id;
    d->mem_limit = s_mem_limit() / DSM_PAGE * DSM_PAGE;
    d->peers = cairn_peers_new(svc, "dsmd", &cairn__dsmd__reply__descriptor);
    d->view = cairn_view_new(svc, "dsmd", s_on_view, d);
    if (!d->peers || !d->view)
        return -ENOMEM;
    cairn_log_info("start", "memory-limit=%llu", (unsigned long long)d->mem_limit);
    return 0;
}

static int s_ready(cairn_service_t *svc, void *ctx)
{
    (void)svc;
    dsmd_t *d = ctx;
    cairn_error_t err = { 0 };
    if (dsm_fdsock_start(d, &err) < 0)
        return cairn_log_err(err.code ? err.code : -EIO, "fdsock", "%s", err.message);
    return cairn_view_start(d->view);
}

static void s_stop(cairn_service_t *svc, void *ctx)
{
    (void)svc;
    dsmd_t *d = ctx;
    dsm_fdsock_stop(d);
    dsm_recover_free(d);
    /* the skeleton terminates the ZeroMQ context next: no socket may stay */
    d->peers = cairn_peers_free(d->peers);
    d->view = cairn_view_free(d->view);
}

/* After the loop is gone: the attachments went with their connections
 * in s_stop (or the daemon never started serving). */
void dsmd_done(dsmd_t *d)
{
    while (d->segs)
        dsm_seg_free(d, d->segs);
    dsm_dir_free(d);
    d->peers = cairn_peers_free(d->peers);
    d->view = cairn_view_free(d->view);
}

int dsm_reply_done(cairn_request_t *req)
{
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)cairn_request_reply(req);
    Cairn__Dsmd__Empty *done = cairn_request_alloc(req, sizeof *done);
    if (!done)
        return -ENOMEM;
    cairn__dsmd__empty__init(done);
    rep->msg_case = CAIRN__DSMD__REPLY__MSG_DONE;
    rep->done = done;
    return CAIRN_REPLY_NOW;
}

static const cairn_handler_t s_handlers[] = {
    /* reads, filtered to what the caller may see */
    { CAIRN__DSMD__REQUEST__MSG_LS, "ls", dsm_handle_ls, CAIRN_ACCESS_ANYONE },
    { CAIRN__DSMD__REQUEST__MSG_SHOW, "show", dsm_handle_show, CAIRN_ACCESS_ANYONE },
    /* a user removes what is theirs (the home checks) */
    { CAIRN__DSMD__REQUEST__MSG_RM, "rm", dsm_handle_rm, CAIRN_ACCESS_USER },
    /* between dsmds of member nodes (admin); an open from a process comes
     * through fdsock.c, never here */
    { CAIRN__DSMD__REQUEST__MSG_OPEN, "open", dsm_handle_open },
    { CAIRN__DSMD__REQUEST__MSG_PAGE, "page", dsm_handle_page },
    { CAIRN__DSMD__REQUEST__MSG_INVALIDATE, "invalidate", dsm_handle_invalidate },
    { CAIRN__DSMD__REQUEST__MSG_RECOVER, "recover", dsm_handle_recover },
    { CAIRN__DSMD__REQUEST__MSG_PROBE, "probe", dsm_handle_probe },
    { CAIRN__DSMD__REQUEST__MSG_PROMOTE, "promote", dsm_handle_promote },
};

const cairn_service_ops_t dsmd_ops = {
    .name = "dsmd",
    .request_desc = &cairn__dsmd__request__descriptor,
    .reply_desc = &cairn__dsmd__reply__descriptor,
    .handlers = s_handlers,
    .n_handlers = sizeof(s_handlers) / sizeof(s_handlers[0]),
    .start = s_start,
    .ready = s_ready,
    .stop = s_stop,
};
