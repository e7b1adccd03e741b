/* migrate.c - migration, ghostd to ghostd (migrate.h): the requests' glue;
 * the target's side is migrate-in.c, the source's migrate-out.c, post-copy's
 * relay migrate-relay.c, what they share migrate-int.h.
 *
 * Design. Each side keeps a small table of migrations (s_out_t at the
 * source, s_in_t at the target), each a state machine driven by the loop:
 * pipe readiness, peer replies (cairn_peers: one DEALER per node, replies
 * matched by id, each call with its deadline), helper output and exit
 * (ghostd_helper_start's hooks) and timers. Nothing blocks. The chunks go
 * over a connection of their own (each source slot's own cairn_peers, so
 * one DEALER per migration): begin, status, commit and abort go over the
 * shared one and never wait behind a window of image bytes.
 *
 * Source. The target is asked first (begin: it checks and spawns
 * ghost-restore reading a pipe), so a refusal or a dead target costs the
 * job nothing. Then ghost-dump --out-fd 3 --hold-fd 4 freezes and dumps
 * the tree into a pipe; the loop reads it into a buffer of MIGRATE_CHUNK + 1
 * bytes and sends a chunk whenever it holds more than a chunk (so the last
 * byte of the image only ever goes in the chunk marked last), at most
 * MIGRATE_WINDOW chunks unanswered (the target answers each once it is in
 * the restore's pipe: that is the flow control; while the window is full
 * the pipe is not read and ghost-dump waits on it). When the pipe ends and
 * ghost-dump says "held" (the image is whole, the tree frozen), the rest
 * goes as the last chunk, which the target answers once the restored tree
 * runs. Then ghost-dump is told "kill"; its second line must say "killed";
 * then commit tells the target the job is its own.
 *
 * Any failure before the last chunk was sent -- the target refusing or
 * gone, a chunk unanswered, the dump failing, the deadline -- closes the
 * pipe (a dump still writing fails on it and lets the tree go), tells a
 * held ghost-dump "resume", aborts the target (it kills what it has), and
 * answers the client with why once ghost-dump is reaped. After the last
 * chunk was sent, only a definite answer decides: "running" means kill,
 * "failed" (or "unknown": that ghostd never finished such a restore, see
 * migrate.h) means resume, and no answer means ask again -- every 500 ms,
 * until the target answers or the local clusterd declares the target dead.
 * Past the client's deadline the client is answered TIMEOUT but the asking
 * goes on: the tree stays frozen rather than risk two copies. If
 * ghost-dump dies while holding, the kernel lets the tree run: the target
 * is aborted, so the source's copy is the one.
 *
 * Target. A chunk goes from the request straight into the restore's pipe
 * (non-blocking; 1 MiB) and is answered at once; what the pipe does not
 * take is copied into a queue written from a POLLOUT watch, and such a
 * chunk is answered once written. The last one closes the pipe and is answered when
 * ghost-restore exits: the restored root's pid, or the restore's error.
 * Chunks out of order, for an unknown id, from another node or after a
 * failure are refused. A stream silent for MIGRATE_IDLE_MS fails. Abort
 * kills the restore, or the restored tree if the source has not committed.
 * Ended migrations are remembered MIGRATE_KEEP_MS for status questions.
 *
 * Who. A user migrates only what is theirs: the source checks the tree's
 * owner against the caller (cairn_caller_may_act_on) and every call to
 * the target goes with cairn_peers_call_as, vouching for the caller; the
 * target checks the vouched user against the job's owner again, and the
 * restore runs --as the owner (root's jobs as root). In mode none nobody
 * vouches and the skeleton refuses the target's side: migration needs
 * CURVE between nodes.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "clusterd.pb-c.h"
#include "engine/place.h"
#include "jobinfo.h"
#include "jobs.h"
#include "log.h"
#include "migrate-int.h"
#include "peer.h"
#include "proc/proc.h"
#include "restart.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

#define S_ROOM_MARGIN (16ull << 20)       /* target: room beyond 2 x the job */

cairn_loop_t *migrate_loop(const migrate_t *m)
{
    return cairn_service_loop(m->gd->svc);
}

uint32_t migrate_self(const migrate_t *m)
{
    return cairn_service_node(m->gd->svc)->id;
}

/* ---- small helpers ------------------------------------------------------ */

static const char *const s_mode_names[] = {
    [MIGRATE_STOP_COPY] = "stop-copy",
    [MIGRATE_PRE_COPY] = "pre-copy",
    [MIGRATE_POST_COPY] = "post-copy",
    [MIGRATE_AUTO] = "auto",
};

int migrate_mode_parse(const char *name, migrate_mode_t *ret)
{
    if (!name || !*name) {
        *ret = MIGRATE_STOP_COPY;
        return 0;
    }
    for (size_t i = 0; i < sizeof s_mode_names / sizeof *s_mode_names; i++)
        if (strcmp(name, s_mode_names[i]) == 0) {
            *ret = (migrate_mode_t)i;
            return 0;
        }
    return -EINVAL;
}

const char *migrate_mode_name(migrate_mode_t mode)
{
    return (unsigned)mode < sizeof s_mode_names / sizeof *s_mode_names
               ? s_mode_names[mode] : "unknown";
}

migrate_mode_t migrate_mode_auto(uint64_t rss)
{
    return rss >= MIGRATE_AUTO_PRECOPY ? MIGRATE_PRE_COPY : MIGRATE_STOP_COPY;
}

/* Resident bytes of the tree rooted at pid (statm), 0 where unreadable. */
uint64_t migrate_tree_rss(pid_t pid, int depth, uint64_t *ret_largest)
{
    char path[64];
    unsigned long size = 0, rss = 0;
    uint64_t total = 0;
    _cleanup_free_ pid_t *kids = NULL;
    size_t n = 0;
    cairn_error_t err;

    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) == 2)
            total = (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    if (ret_largest && total > *ret_largest)
        *ret_largest = total;
    if (depth < 64 && proc_list_children(pid, &kids, &n, &err) == 0)
        for (size_t i = 0; i < n; i++)
            total += migrate_tree_rss(kids[i], depth + 1, ret_largest);
    return total;
}

/* The room this node's memory cgroup (and its ancestors) leaves: limit
 * less usage, the tightest; UINT64_MAX when nothing limits it. */
static uint64_t s_room_of(const char *dir, const char *limit_name,
                          const char *usage_name)
{
    char path[PATH_MAX + 64], buf[64];
    uint64_t best = UINT64_MAX;
    char d[PATH_MAX];

    snprintf(d, sizeof d, "%s", dir);
    for (;;) {
        unsigned long long limit = 0, usage = 0;
        bool have = false;
        snprintf(path, sizeof path, "%s/%s", d, limit_name);
        FILE *f = fopen(path, "re");
        if (f) {
            have = fgets(buf, sizeof buf, f) && sscanf(buf, "%llu", &limit) == 1;
            fclose(f);
        }
        snprintf(path, sizeof path, "%s/%s", d, usage_name);
        f = have ? fopen(path, "re") : NULL;
        if (f) {
            if (fscanf(f, "%llu", &usage) == 1 && limit < (1ull << 60))
                best = limit > usage ? (limit - usage < best ? limit - usage : best) : 0;
            fclose(f);
        }
        char *slash = strrchr(d, '/');
        if (!slash || slash == d || strlen(d) <= strlen("/sys/fs/cgroup"))
            break;
        *slash = '\0';
    }
    return best;
}

/* The memory room of the cgroup this daemon runs in (a local cluster's
 * node cgroup; restored trees land there), v2 or v1. */
static uint64_t s_memory_room(void)
{
    char line[1024], dir[PATH_MAX];
    uint64_t room = UINT64_MAX;
    FILE *f = fopen("/proc/self/cgroup", "re");

    if (!f)
        return room;
    while (fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        char *path = c2 + 1;
        path[strcspn(path, "\n")] = '\0';
        if (strcmp(c1 + 1, "") == 0 && line[0] == '0') {
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", path);
            uint64_t r = s_room_of(dir, "memory.max", "memory.current");
            room = r < room ? r : room;
        } else if (strstr(c1 + 1, "memory")) {
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s", path);
            uint64_t r = s_room_of(dir, "memory.limit_in_bytes", "memory.usage_in_bytes");
            room = r < room ? r : room;
        }
    }
    fclose(f);
    return room;
}

/* Why this node cannot take a post-copy job's faults, into buf; false
 * when it can: ghost-restore's page server needs a userfaultfd that takes
 * the kernel's own faults with the fork, remap, remove and unmap events
 * (docs/ghost.md, "Post-copy", limits). Probed as ghostd, root here. */
static bool s_uffd_refused(char *buf, size_t size)
{
    struct uffdio_api api = { .api = UFFD_API,
                              .features = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                                          UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP };
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        snprintf(buf, size, "post-copy: this node cannot make a userfaultfd (%s): the "
                 "job's missing pages could not be asked for", strerror(errno));
        return true;
    }
    int r = ioctl(fd, UFFDIO_API, &api);
    int e = errno;
    close(fd);
    if (r < 0)
        snprintf(buf, size, "post-copy: this node's userfaultfd lacks the fork, remap, "
                 "remove and unmap events (%s; Linux 4.11+)", strerror(e));
    return r < 0;
}

const Cairn__Ghostd__MigrateState *migrate_state_of(const ProtobufCMessage *reply)
{
    const Cairn__Ghostd__Reply *rep = (const Cairn__Ghostd__Reply *)reply;
    return rep && rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_MIGRATE_STATE
               ? rep->migrate_state : NULL;
}

/* Every reason this node cannot take a job of memory_bytes (largest_bytes
 * of them one process's) dumped on kernel `kernel` (post-copy: its faults
 * too), appended to reasons (n of them; each malloc'ed). */
size_t migrate_target_reasons(uint64_t memory_bytes, uint64_t largest_bytes,
                              const char *kernel, bool postcopy, char *reasons[], size_t max)
{
    struct utsname u;
    size_t n = 0;
    uint64_t room = s_memory_room();
    /* stop-copy and pre-copy stream the image: the largest process's pages
     * are read into place (the restored process inherits them), the other
     * processes' staged in a memfd while they are restored, so held twice
     * for a while; post-copy's image is small and its pages go into
     * place. An older source sends no largest_bytes: all staged. */
    uint64_t placed = largest_bytes < memory_bytes ? largest_bytes : memory_bytes;
    uint64_t staged = postcopy ? 0 : memory_bytes - placed;
    uint64_t need = memory_bytes + staged + S_ROOM_MARGIN;
    char why[256];

    uname(&u);
    if (kernel && *kernel && strcmp(kernel, u.release) != 0 && n < max &&
        asprintf(&reasons[n], "kernel: the job was dumped on kernel %s, this node "
                 "runs %s (its vdso and layout may differ)", kernel, u.release) > 0)
        n++;
    if (room != UINT64_MAX && room < need && n < max &&
        asprintf(&reasons[n], "memory: this node's cgroup has %llu MiB of room, the "
                 "job needs %llu MiB (its %llu MiB resident, %llu MiB of it staged "
                 "once more while it is restored, + %llu MiB)",
                 (unsigned long long)(room >> 20), (unsigned long long)(need >> 20),
                 (unsigned long long)(memory_bytes >> 20), (unsigned long long)(staged >> 20),
                 (unsigned long long)(S_ROOM_MARGIN >> 20)) > 0)
        n++;
    if (postcopy && s_uffd_refused(why, sizeof why) && n < max &&
        (reasons[n] = strdup(why)))
        n++;
    return n;
}

const char *migrate_in_state_name(migrate_in_state_t s)
{
    switch (s) {
    case IN_RECEIVING: return "receiving";
    case IN_RESTORING: return "restoring";
    case IN_RUNNING: return "running";
    case IN_COMMITTED: return "committed";
    case IN_FAILED: return "failed";
    default: return "unknown";
    }
}

/* ---- a job another node runs: the request carried there ------------------ */

static void s_fwd_unlink(migrate_fwd_t *f)
{
    for (migrate_fwd_t **p = &f->m->fwds; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    free(f);
}

static void s_on_fwd_answer(void *userdata, uint32_t node, int code, const char *message,
                            ProtobufCMessage *reply)
{
    migrate_fwd_t *f = userdata;
    cairn_service_t *svc = f->m->gd->svc;

    if (f->d && code == CAIRN_OK && reply)
        cairn_deferred_reply(svc, f->d, reply);
    else if (f->d)
        cairn_deferred_fail(svc, f->d, code, message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    s_fwd_unlink(f);
}

/* gpid is not in this node's table: its job.json names the node that runs
 * it (the jobs directory is shared, docs/jobs.md), and the request goes
 * there, local_only, on the caller's behalf; its answer is relayed. */
int migrate_forward(migrate_t *m, cairn_request_t *req,
                     const Cairn__Ghostd__MigrateRequest *mr, uint64_t deadline)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const cairn_description_t *d = cairn_service_description(m->gd->svc);
    ghostd_jobrec_t rec = { 0 };
    ghostd_exitrec_t ex;
    char dir[PATH_MAX], who[128];
    uint32_t node;
    uint64_t seq;

    if (ghostd_gpid_parse(mr->gpid, &node, &seq) < 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate: '%.64s' is not "
                                  "a gpid (NODE.SEQ, e.g. 1.7)", mr->gpid);
    snprintf(dir, sizeof dir, "%s/%s", ghostd_jobs_dir(m->gd->jobs), mr->gpid);
    if (mr->local_only || ghostd_jobrec_read(dir, &rec) < 0)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "migrate: %s %s on node %u",
                                  mr->local_only ? "job" : "no job", mr->gpid,
                                  migrate_self(m));
    node = rec.node;
    uint32_t uid = rec.uid;
    ghostd_jobrec_clear(&rec);
    if (!cairn_caller_may_act_on(c, uid))
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "migrate: job %s is uid "
                                  "%u's; %s may migrate only its own (root may migrate "
                                  "any)", mr->gpid, uid,
                                  cairn_caller_describe(c, who, sizeof who));
    if (ghostd_exitrec_read(dir, &ex) == 0)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migrate: job %s has "
                                  "exited (exit_code %d, exit_signal %d)", mr->gpid,
                                  ex.exit_code, ex.exit_signal);
    const cairn_node_desc_t *nd = cairn_description_find_node(d, node);
    _cleanup_free_ char *ep = nd && node != migrate_self(m)
                                  ? cairn_description_tcp_endpoint(d, nd, "ghostd", false)
                                  : NULL;
    if (!ep)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "migrate: job %s is not in node "
                                  "%u's table, and its record names node %u", mr->gpid,
                                  migrate_self(m), node);
    Cairn__Ghostd__MigrateRequest fwd = *mr;
    Cairn__Ghostd__Request body = CAIRN__GHOSTD__REQUEST__INIT;
    fwd.local_only = true;
    body.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE;
    body.migrate = &fwd;
    migrate_fwd_t *f = calloc(1, sizeof *f);
    if (!f)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    f->m = m;
    /* The answer comes from the loop, never before this returns. */
    int r = cairn_peers_call_as(m->peers, node, ep, &body.base, (uint32_t)deadline,
                                c->uid == 0 ? NULL : c, s_on_fwd_answer, f);
    if (r < 0) {
        free(f);
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "migrate: cannot reach node "
                                  "%u, which runs job %s: %s", node, mr->gpid,
                                  strerror(-r));
    }
    f->d = cairn_request_defer(req);   /* NULL: out of memory, answered by timeout */
    f->next = m->fwds;
    m->fwds = f;
    cairn_log_info("migrate-carried", "gpid=%s node=%u to=%u", mr->gpid, node, mr->to);
    return CAIRN_REPLY_DEFERRED;
}

/* ---- post-copy: the page source's bytes, either way ------------------------ */

int migrate_handle_pages(void *ctx, cairn_request_t *req)
{
    migrate_t *m = ((ghostd_t *)ctx)->migrate;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__MigratePagesRequest *p = body->migrate_pages;
    const cairn_caller_t *c = cairn_request_caller(req);
    migrate_relay_t *r = NULL;
    uint32_t peer = 0;

    if (!p || !p->id)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_pages: no id");
    for (size_t i = 0; !r && i < MIGRATE_MAX; i++) {
        if (p->to_target && m->in[i].state != IN_FREE && strcmp(m->in[i].id, p->id) == 0) {
            r = &m->in[i].relay;
            peer = m->in[i].from;
        } else if (!p->to_target && m->out[i].state != OUT_FREE &&
                   strcmp(m->out[i].id, p->id) == 0) {
            r = &m->out[i].relay;
            peer = m->out[i].to;
        }
    }
    if (!r)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "migrate_pages: no migration %s "
                                  "on node %u", p->id, migrate_self(m));
    if (c->kind != CAIRN_CALLER_NODE || c->node != peer)
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "migrate_pages: only "
                                  "node %u's ghostd relays migration %s's pages", peer, p->id);
    return migrate_relay_receive(r, req, p);
}

/* ---- lifecycle ---------------------------------------------------------- */

int migrate_start(ghostd_t *gd)
{
    migrate_t *m = calloc(1, sizeof *m);

    if (!m)
        return -ENOMEM;
    m->gd = gd;
    m->peers = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
    m->clusterd = cairn_peers_new(gd->svc, "clusterd", &cairn__clusterd__reply__descriptor);
    if (!m->peers || !m->clusterd) {
        cairn_peers_free(m->peers);
        cairn_peers_free(m->clusterd);
        free(m);
        return -ENOMEM;
    }
    gd->migrate = m;
    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        m->out[i] = (migrate_out_t){ .m = m, .img_fd = -1, .hold_fd = -1, .pages_fd = -1,
                               .relay.fd = -1 };
        m->in[i] = (migrate_in_t){ .m = m, .pipe_fd = -1, .pages_fd = -1, .relay.fd = -1 };
        m->out[i].bulk = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
        m->in[i].bulk = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
        if (!m->out[i].bulk || !m->in[i].bulk) {
            migrate_stop(gd);
            return -ENOMEM;
        }
    }
    migrate_in_recover(m);
    return 0;
}

/* Waits for a helper told to let go (at most a few seconds: resuming a
 * tree is quick), then kills it. */
static void s_reap(ghostd_helper_t *j)
{
    int status;

    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(j->helper, &status, WNOHANG);
        if (r == j->helper || (r < 0 && errno != EINTR))
            return;
        usleep(10000);
    }
    ghostd_helper_kill(j);
    while (waitpid(j->helper, &status, 0) < 0 && errno == EINTR)
        ;
}

void migrate_stop(ghostd_t *gd)
{
    migrate_t *m = gd ? gd->migrate : NULL;

    if (!m)
        return;
    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        migrate_out_t *o = &m->out[i];
        if (o->state == OUT_FREE)
            continue;
        migrate_out_close_img(o);
        /* Confirming: the target may run it; the tree stays frozen is not
         * an option once we exit (ghost-dump would see the end: resume).
         * Serving post-copy: the target's copy ran, so the source's must
         * not -- it is killed, and the target loses its missing pages. */
        migrate_relay_close(&o->relay, "ghostd is stopping");
        migrate_out_verdict(o, o->state == OUT_KILLING || o->state == OUT_SERVING ? "kill\n"
                                                                            : "resume\n");
        if (o->dump) {
            s_reap(o->dump);
            o->dump->on_exit = NULL;   /* ghostd_done frees the slot */
            o->dump->on_output = NULL;
        }
        if (o->deferred)
            cairn_deferred_fail(gd->svc, o->deferred, CAIRN_UNAVAILABLE,
                                "ghostd is stopping; the migration was abandoned and the "
                                "job resumed here");
        if (o->timer > 0)
            cairn_loop_cancel_timer(migrate_loop(m), o->timer);
        free(o->endpoint);
        free(o->buf);
    }
    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        migrate_in_t *in = &m->in[i];
        if (in->state == IN_FREE)
            continue;
        if (in->state == IN_RECEIVING || in->state == IN_RESTORING)
            migrate_in_fail(in, CAIRN_UNAVAILABLE, "ghostd on node %u is stopping", migrate_self(m));
        migrate_relay_close(&in->relay, "ghostd is stopping");
        if (in->rst) {
            in->rst->on_exit = NULL;
            in->rst->on_output = NULL;
            in->rst = NULL;
        }
        migrate_in_free(in);
    }
    while (m->fwds) {   /* their peers go below, callbacks with them */
        if (m->fwds->d)
            cairn_deferred_fail(gd->svc, m->fwds->d, CAIRN_UNAVAILABLE,
                                "ghostd is stopping; the request it carried to the "
                                "job's node may still run there");
        s_fwd_unlink(m->fwds);
    }
    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        cairn_peers_free(m->out[i].bulk);
        cairn_peers_free(m->in[i].bulk);
    }
    cairn_peers_free(m->peers);
    cairn_peers_free(m->clusterd);
    free(m);
    gd->migrate = NULL;
}
