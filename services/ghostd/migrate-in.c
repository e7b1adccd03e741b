/* migrate-in.c - migration, the target's side (migrate.c says how a
 * migration goes): begin (the checks, ghost-restore spawned on a pipe),
 * each chunk into that pipe (a queue written on POLLOUT where it is
 * full), the restored tree's answer, status, commit and abort; post-copy:
 * ghost-restore --pages-fd, its first line "the copy runs", its second
 * "every page came" (or the job is lost); the record of a migration that
 * outlives ghostd, taken up again at start.
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


/* ---- target ------------------------------------------------------------- */

static migrate_in_t *s_in_find(migrate_t *m, const char *id)
{
    for (size_t i = 0; id && i < MIGRATE_MAX; i++)
        if (m->in[i].state != IN_FREE && strcmp(m->in[i].id, id) == 0)
            return &m->in[i];
    return NULL;
}

static void s_in_unwatch(migrate_in_t *in)
{
    if (in->watch > 0)
        cairn_loop_remove(migrate_loop(in->m), in->watch);
    in->watch = 0;
}

static void s_in_close_pipe(migrate_in_t *in)
{
    s_in_unwatch(in);
    if (in->pipe_fd >= 0)
        close(in->pipe_fd);
    in->pipe_fd = -1;
}

/* Drops the queued chunks, answering each with code/msg. */
static void s_in_drop_queue(migrate_in_t *in, int code, const char *msg)
{
    cairn_service_t *svc = in->m->gd->svc;

    for (; in->q_n; in->q_n--) {
        migrate_chunk_t *c = &in->q[in->q_head];
        if (c->d)
            cairn_deferred_fail(svc, c->d, code, msg);
        free(c->data);
        *c = (migrate_chunk_t){ 0 };
        in->q_head = (in->q_head + 1) % MIGRATE_QUEUE_MAX;
    }
}

/* Kills what this migration made: the restore, or the restored tree
 * (every member: a plain tree is not one process group). */
static void s_in_kill(migrate_in_t *in)
{
    if (in->rst)
        ghostd_helper_kill(in->rst);
    for (size_t i = 0; i < in->n_members; i++)
        if (in->members[i] > 0)
            kill(in->members[i], SIGKILL);
}

/* ---- target: the record that outlives ghostd ----------------------------- */

/* <rundir>/migrate/<id>.json: written when a migration begins here and
 * again once its restored tree runs -- before the source is told so --
 * and removed when it ends (committed, failed). A ghostd that starts
 * finds what a killed predecessor left (migrate_in_recover): a tree that runs
 * as recorded is "running" again, so the source, asking status, kills its
 * copy and commits; a migration that had not reached running is failed
 * once whatever it may have made is killed (the restore helper's group,
 * a job's job-<gpid> sub-cgroup), so the source resumes. One copy either
 * way, where a new ghostd's "unknown" used to make the source resume
 * beside a copy running here. */
static void s_in_record_path(const migrate_in_t *in, char *out, size_t size)
{
    snprintf(out, size, "%s/migrate/%s.json",
             cairn_service_node(in->m->gd->svc)->rundir, in->id);
}

static void s_in_record(migrate_in_t *in)
{
    char path[PATH_MAX];
    uint64_t hstart = 0, pstart = 0;
    json_t *members = json_array();

    for (size_t i = 0; members && i < in->n_members; i++)
        json_array_append_new(members, json_integer(in->members[i]));
    if (in->helper > 0)
        ghostd_proc_start(in->helper, &hstart);
    if (in->pid)
        ghostd_proc_start((pid_t)in->pid, &pstart);
    json_t *v = json_pack("{s:s,s:i,s:s,s:i,s:i,s:s,s:i,s:I,s:i,s:I,s:o,s:s,s:s,s:b}",
                          "id", in->id, "from", (int)in->from, "gpid", in->gpid,
                          "uid", (int)in->uid, "gid", (int)in->gid,
                          "state", in->state == IN_RUNNING ? "running" : "receiving",
                          "helper", (int)in->helper, "helper_start", (json_int_t)hstart,
                          "pid", (int)in->pid, "pid_start", (json_int_t)pstart,
                          "members", members ? members : json_array(),
                          "cgroup", in->cgroup, "unit", in->unit,
                          "sub_cgroup", in->sub_cgroup);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    s_in_record_path(in, path, sizeof path);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    int r = text ? cairn_mkdir_p(path, 0700) : -ENOMEM;
    *slash = '/';
    if (r == 0) {
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        r = cairn_write_file(tmp, text, strlen(text), O_CREAT | O_TRUNC, 0600);
        if (r == 0 && rename(tmp, path) < 0)
            r = -errno;
    }
    if (r < 0)
        cairn_log_warn(r, "migrate-in-record", "id=%s msg=\"cannot write %s: a ghostd "
                       "restarted now would not know this migration, ignoring\"",
                       in->id, path);
    free(text);
    json_decref(v);
}

static void s_in_unrecord(const migrate_in_t *in)
{
    char path[PATH_MAX];

    s_in_record_path(in, path, sizeof path);
    unlink(path);
}

/* pid runs and is the process that started at `start` (0: unknown). */
static bool s_same_process(pid_t pid, uint64_t start)
{
    uint64_t now = 0;

    return pid > 0 && ghostd_proc_start(pid, &now) == 0 && (!start || now == start);
}

/* The migration failed here: nothing of it runs (what ran is killed),
 * every request still waiting is answered with why. */
void migrate_in_fail(migrate_in_t *in, int code, const char *fmt, ...)
{
    va_list ap;

    if (in->state == IN_FAILED || in->state == IN_COMMITTED)
        return;
    va_start(ap, fmt);
    vsnprintf(in->error, sizeof in->error, fmt, ap);
    va_end(ap);
    s_in_kill(in);
    s_in_unrecord(in);
    migrate_relay_close(&in->relay, in->error);
    in->state = IN_FAILED;
    in->touched_ms = cairn_now_ms();
    s_in_close_pipe(in);
    s_in_drop_queue(in, code, in->error);
    if (in->last_d)
        cairn_deferred_fail(in->m->gd->svc, in->last_d, code, in->error);
    in->last_d = NULL;
    cairn_log_warn(0, "migrate-in-failed", "id=%s from=%u msg=\"%s\"", in->id,
                   in->from, in->error);
}

void migrate_in_free(migrate_in_t *in)
{
    if (in->timer > 0)
        cairn_loop_cancel_timer(migrate_loop(in->m), in->timer);
    s_in_close_pipe(in);
    s_in_drop_queue(in, CAIRN_UNAVAILABLE, "ghostd is stopping");
    free(in->members);
    migrate_relay_clear(&in->relay);
    if (in->pages_fd >= 0)
        close(in->pages_fd);
    migrate_t *m = in->m;
    cairn_peers_t *bulk = in->bulk;
    if (bulk && in->from)
        cairn_peers_forget(bulk, in->from);
    *in = (migrate_in_t){ .m = m, .pipe_fd = -1, .pages_fd = -1, .bulk = bulk };
}

static int s_in_on_writable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                            void *userdata);

/* Writes what the restore's pipe takes of p[0, n) without blocking: the
 * bytes written, or -1 when the restore stopped reading (the pipe is
 * closed then: the restore failed, and its exit says why). */
static ssize_t s_in_write(migrate_in_t *in, const uint8_t *p, size_t n)
{
    size_t done = 0;

    while (done < n && in->pipe_fd >= 0) {
        ssize_t k = write(in->pipe_fd, p + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN)
            break;
        if (k < 0) {
            s_in_close_pipe(in);
            return -1;
        }
        done += (size_t)k;
    }
    in->written += done;
    return (ssize_t)done;
}

/* Watches the pipe for room (the queue is written from there). */
static void s_in_watch(migrate_in_t *in)
{
    if (in->watch <= 0 && in->pipe_fd >= 0)
        in->watch = cairn_loop_add_fd(migrate_loop(in->m), in->pipe_fd, ZMQ_POLLOUT,
                                      s_in_on_writable, in);
}

/* The last chunk is wholly in the pipe: its end tells the restore the
 * image is complete; the answer waits for the restore. */
/* Post-copy: the page source's bytes go both ways from now on. Not
 * before: the source opens its side at "held", before it sends the last
 * chunk, and nothing here needs a page before the image is whole. */
static void s_in_relay_open(migrate_in_t *in)
{
    const cairn_description_t *d = cairn_service_description(in->m->gd->svc);
    const cairn_node_desc_t *nd = cairn_description_find_node(d, in->from);
    _cleanup_free_ char *ep = nd ? cairn_description_tcp_endpoint(d, nd, "ghostd", false)
                                 : NULL;
    int r = ep ? migrate_relay_open(&in->relay, in->m->gd->svc, in->bulk, in->from, ep,
                                    in->id, false, in->pages_fd, NULL, in)
               : -ENOENT;

    in->pages_fd = -1;   /* the relay's, or closed: the restore then fails */
    if (r < 0)
        cairn_log_warn(r, "migrate-in-relay", "id=%s from=%u msg=\"cannot relay the page "
                       "source: the restore will fail\"", in->id, in->from);
}

static void s_in_stream_ended(migrate_in_t *in, cairn_deferred_t *last_d)
{
    in->last_d = last_d;
    s_in_close_pipe(in);
    in->state = IN_RESTORING;
    cairn_log_info("migrate-in-restoring", "id=%s bytes=%llu", in->id,
                   (unsigned long long)in->written);
    if (in->postcopy)
        s_in_relay_open(in);
}

/* Writes queued chunks into the restore's pipe until it would block;
 * watches for POLLOUT then. A chunk wholly written is answered; the last
 * one closes the pipe and waits for the restore's end. */
static void s_in_pump(migrate_in_t *in)
{
    while (in->q_n && in->pipe_fd >= 0) {
        migrate_chunk_t *c = &in->q[in->q_head];
        ssize_t k = s_in_write(in, c->data + c->off, c->len - c->off);
        if (k < 0)
            return;
        c->off += (size_t)k;
        if (c->off < c->len) {
            s_in_watch(in);
            return;
        }
        bool last = c->last;
        cairn_deferred_t *last_d = NULL;
        cairn_log_debug("migrate-in-chunk", "id=%s seq=%llu queued=%zu written=%llu t_us=%llu",
                        in->id, (unsigned long long)c->seq, in->q_n,
                        (unsigned long long)in->written, (unsigned long long)cairn_now_us());
        if (last)
            last_d = TAKE_PTR(c->d);
        else
            migrate_chunk_ack(in->m->gd->svc, &c->d, c->seq, in->written);
        free(c->data);
        *c = (migrate_chunk_t){ 0 };
        in->q_head = (in->q_head + 1) % MIGRATE_QUEUE_MAX;
        in->q_n--;
        if (last)
            s_in_stream_ended(in, last_d);
    }
    if (!in->q_n)
        s_in_unwatch(in);
}

static int s_in_on_writable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                            void *userdata)
{
    s_in_pump(userdata);
    return 0;
}

/* The restored tree's members from ghost-restore's line. */
static void s_in_members(migrate_in_t *in, json_t *v)
{
    json_t *arr = json_object_get(v, "members"), *e;
    size_t i;

    if (!json_is_array(arr) || !(in->members = calloc(json_array_size(arr) + 1,
                                                      sizeof(pid_t))))
        return;
    /* a job's members: their pids inside, and host_pid (what kill needs) */
    json_array_foreach(arr, i, e) in->members[in->n_members++] =
        (pid_t)(ghostd_json_u64(e, "host_pid") ? ghostd_json_u64(e, "host_pid")
                                                : ghostd_json_u64(e, "pid"));
}

static void s_in_restored(migrate_in_t *in, json_t *v)
{
    Cairn__Ghostd__MigrateChunkReply cr = CAIRN__GHOSTD__MIGRATE_CHUNK_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    const char *cg = json_string_value(json_object_get(v, "cgroup"));

    /* a job's root is its reaper, pid 1 inside: the node knows it by host_pid */
    in->pid = (uint32_t)(ghostd_json_u64(v, "host_pid") ? ghostd_json_u64(v, "host_pid")
                                                        : ghostd_json_u64(v, "pid"));
    in->original_pid = (uint32_t)ghostd_json_u64(v, "original_pid");
    in->processes = (uint32_t)ghostd_json_u64(v, "processes");
    in->threads = (uint32_t)ghostd_json_u64(v, "threads");
    in->restore_us = ghostd_json_u64(v, "restore_us");
    in->lazy_pages = ghostd_json_u64(v, "lazy_pages");
    snprintf(in->cgroup, sizeof in->cgroup, "%s", cg ? cg : "");
    s_in_members(in, v);
    in->state = IN_RUNNING;
    in->touched_ms = cairn_now_ms();
    s_in_record(in);   /* before the source hears it runs */
    cairn_log_info("migrate-in-running", "id=%s from=%u pid=%u original=%u "
                   "bytes=%llu restore_us=%llu lazy_pages=%llu", in->id, in->from, in->pid,
                   in->original_pid, (unsigned long long)in->written,
                   (unsigned long long)in->restore_us, (unsigned long long)in->lazy_pages);
    if (!in->last_d)
        return;   /* the source asks status */
    cr.seq = in->next_seq - 1;
    cr.written = in->written;
    cr.restored = true;
    cr.pid = in->pid;
    cr.original_pid = in->original_pid;
    cr.restore_us = in->restore_us;
    cr.processes = in->processes;
    cr.threads = in->threads;
    cr.cgroup = in->cgroup;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_CHUNK_REPLY;
    reply.migrate_chunk_reply = &cr;
    cairn_deferred_reply(in->m->gd->svc, in->last_d, &reply.base);
    in->last_d = NULL;
}

/* Post-copy: the copy ran and its pages stopped coming -- it was killed
 * (ghost-restore's doing: a copy with holes never runs on). Said loudly:
 * a committed job is recorded lost in the table (ps, wait); one not
 * committed yet fails the migration (the source's commit is refused, the
 * client hears it) and is recorded lost here. */
static void s_in_lost(migrate_in_t *in, const char *why)
{
    char msg[1200];

    snprintf(msg, sizeof msg, "post-copy migration %s from node %u: %s; the copy ran "
             "without all its pages and was killed: the job is lost", in->id, in->from, why);
    cairn_log_err(-EIO, "migrate-lost", "id=%s gpid=%s pid=%u msg=\"%s\"", in->id,
                  in->gpid, in->pid, msg);
    if (in->gpid[0] && in->state == IN_COMMITTED)
        ghostd_jobs_lose(in->m->gd->jobs, in->gpid, msg);
    else if (in->gpid[0] && ghostd_jobs_mark_lost(in->m->gd->jobs, in->gpid, msg) < 0)
        cairn_log_warn(0, "migrate-lost", "gpid=%s msg=\"its exit record could not be "
                       "written\"", in->gpid);
    if (in->state != IN_COMMITTED)
        migrate_in_fail(in, CAIRN_FAILED_PRECONDITION, "%s", msg);
}

/* Post-copy: ghost-restore's first line, "the copy runs". */
static void s_in_on_output(ghostd_helper_t *j)
{
    migrate_in_t *in = j->hook_data;

    if (in->state != IN_RESTORING)
        return;
    json_t *v = ghostd_helper_line(j, 0);
    if (v && ghostd_json_u64(v, "pid") && !json_object_get(v, "error"))
        s_in_restored(in, v);
    json_decref(v);
}

/* Post-copy: ghost-restore ended after its copy ran: its second line says
 * whether every page came. */
static void s_in_pages_ended(migrate_in_t *in, ghostd_helper_t *j, int status)
{
    json_t *v = ghostd_helper_line(j, 1);
    const char *outcome = json_string_value(json_object_get(v, "outcome"));
    char msg[1024];

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && outcome &&
        strcmp(outcome, "complete") == 0) {
        in->pages_done = true;
        if (in->gpid[0])
            ghostd_jobs_set_pages_pending(in->m->gd->jobs, in->gpid, false);
        cairn_log_info("migrate-in-pages", "id=%s gpid=%s lazy_pages=%llu faults=%llu "
                       "serve_us=%llu", in->id, in->gpid,
                       (unsigned long long)ghostd_json_u64(v, "lazy_pages"),
                       (unsigned long long)ghostd_json_u64(v, "faults"),
                       (unsigned long long)ghostd_json_u64(v, "serve_us"));
    } else {
        json_t *e = json_object_get(v, "error");
        const char *m = json_string_value(json_object_get(e, "message"));
        if (m)
            snprintf(msg, sizeof msg, "its pages stopped coming (%s)", m);
        else
            snprintf(msg, sizeof msg, "ghost-restore ended %s before every page came%s%s",
                     WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "without saying why",
                     in->relay.error[0] ? "; the relay: " : "", in->relay.error);
        s_in_lost(in, msg);
    }
    json_decref(v);
}

/* ghost-restore was reaped. */
static void s_in_on_exit(ghostd_helper_t *j, int status)
{
    migrate_in_t *in = j->hook_data;
    json_t *v = ghostd_helper_line(j, 0);
    char msg[1024];

    in->rst = NULL;
    if (in->postcopy && (in->state == IN_RUNNING || in->state == IN_COMMITTED)) {
        s_in_pages_ended(in, j, status);
    } else if (in->postcopy && in->state == IN_FAILED) {
        /* failed while its pages came (aborted): nothing of it runs */
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && v && ghostd_json_u64(v, "pid") &&
        in->state == IN_RESTORING) {
        s_in_restored(in, v);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && v) {
        /* Restored though the stream had not ended here: cannot be (the
         * last byte comes with the last chunk); kill what it made. */
        s_in_members(in, v);
        migrate_in_fail(in, CAIRN_INTERNAL, "ghost-restore finished before the stream ended");
    } else {
        int code = ghostd_helper_error(j, status, v, msg, sizeof msg);
        migrate_in_fail(in, code, "restore on node %u failed: %s", migrate_self(in->m), msg);
    }
    json_decref(v);
}

static int s_in_on_idle(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    migrate_in_t *in = userdata;
    uint64_t now = cairn_now_ms();

    if (in->state == IN_RECEIVING && now - in->touched_ms >= MIGRATE_IDLE_MS)
        migrate_in_fail(in, CAIRN_TIMEOUT, "the stream from node %u was silent for %u s",
                  in->from, MIGRATE_IDLE_MS / 1000);
    else if ((in->state == IN_FAILED || in->state == IN_COMMITTED) &&
             now - in->touched_ms >= MIGRATE_KEEP_MS && !in->rst &&
             !migrate_relay_busy(&in->relay))
        migrate_in_free(in);
    return 0;
}

/* A free slot, else the oldest ended one. */
static migrate_in_t *s_in_claim(migrate_t *m)
{
    migrate_in_t *best = NULL;

    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        migrate_in_t *in = &m->in[i];
        if (in->state == IN_FREE)
            return in;
        if ((in->state == IN_FAILED || in->state == IN_COMMITTED) && !in->rst &&
            !migrate_relay_busy(&in->relay) && (!best || in->touched_ms < best->touched_ms))
            best = in;
    }
    if (best)
        migrate_in_free(best);
    return best;
}

/* The caller is the source node's daemon vouching for someone who may act
 * on the job's owner. */
static int s_in_check_caller(const cairn_caller_t *c, uint32_t uid, uint32_t from,
                             cairn_error_t *err)
{
    char who[128];

    if (c->kind != CAIRN_CALLER_NODE || (from && c->node != from))
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "migration: %s is not the source node's ghostd",
                               cairn_caller_describe(c, who, sizeof who));
    if (!cairn_caller_may_act_on(c, uid))
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "migration: the job is uid %u's; %s may move only "
                               "its own jobs (root may move any)", uid,
                               cairn_caller_describe(c, who, sizeof who));
    return 0;
}

static int s_reply_state(cairn_request_t *req, const char *id, const char *state,
                         uint32_t pid, const char *error)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__MigrateState *st = cairn_request_alloc(req, sizeof *st);

    if (!st)
        return -ENOMEM;
    cairn__ghostd__migrate_state__init(st);
    st->id = cairn_request_strdup(req, id);
    st->state = cairn_request_strdup(req, state);
    st->pid = pid;
    st->error = cairn_request_strdup(req, error ? error : "");
    reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_STATE;
    reply->migrate_state = st;
    return CAIRN_REPLY_NOW;
}

static int s_in_check_only(cairn_request_t *req, const Cairn__Ghostd__MigrateBeginRequest *b)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__MigrateState *st = cairn_request_alloc(req, sizeof *st);
    char *reasons[8];
    size_t n = migrate_target_reasons(b->memory_bytes, b->largest_bytes, b->kernel_release,
                                      b->postcopy, reasons, 8);
    char **kept = cairn_request_alloc(req, sizeof(char *) * (n + 1));

    if (!st || !kept) {
        for (size_t i = 0; i < n; i++)
            free(reasons[i]);
        return -ENOMEM;
    }
    cairn__ghostd__migrate_state__init(st);
    for (size_t i = 0; i < n; i++) {
        kept[i] = cairn_request_strdup(req, reasons[i]);
        free(reasons[i]);
    }
    st->id = cairn_request_strdup(req, b->id);
    st->state = "checked";
    st->error = "";
    st->n_reasons = n;
    st->reasons = kept;
    st->movable = n == 0;
    reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_STATE;
    reply->migrate_state = st;
    return CAIRN_REPLY_NOW;
}

/* A job may come here: its record is in the shared jobs directory, names
 * the gpid and the owner the source says, and this node does not run it
 * already (nor receives it). */
static int s_in_check_job(migrate_t *m, const Cairn__Ghostd__MigrateBeginRequest *b,
                          cairn_error_t *err)
{
    ghostd_jobrec_t rec = { 0 };
    char dir[PATH_MAX];
    uint32_t node;
    uint64_t seq;

    if (ghostd_gpid_parse(b->gpid, &node, &seq) < 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "migrate_begin: "
                               "'%.64s' is not a gpid", b->gpid);
    if (b->new_pid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "migrate_begin: a "
                               "job keeps its pids: new_pid is for plain processes");
    if (ghostd_jobs_running(m->gd->jobs, b->gpid))
        return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS, "node %u runs job "
                               "%s already", migrate_self(m), b->gpid);
    for (size_t i = 0; i < MIGRATE_MAX; i++)
        if ((m->in[i].state == IN_RECEIVING || m->in[i].state == IN_RESTORING ||
             m->in[i].state == IN_RUNNING) && strcmp(m->in[i].gpid, b->gpid) == 0)
            return cairn_error_set(err, -EBUSY, CAIRN_BUSY, "node %u is receiving job "
                                   "%s already (%s)", migrate_self(m), b->gpid, m->in[i].id);
    snprintf(dir, sizeof dir, "%s/%s", ghostd_jobs_dir(m->gd->jobs), b->gpid);
    int r = ghostd_jobrec_read(dir, &rec);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION, "node %u cannot read "
                               "job %s's record %s/job.json (%s): the jobs directory must "
                               "be the same on every node (docs/jobs.md)", migrate_self(m),
                               b->gpid, dir, strerror(-r));
    bool same = rec.uid == b->uid;
    ghostd_jobrec_clear(&rec);
    if (!same)
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED, "job %s's record "
                               "names another owner than uid %u", b->gpid, b->uid);
    return 0;
}

/* Spawns ghost-restore reading a new pipe; in->pipe_fd its write end.
 * Post-copy: P, a socketpair, is its fd 4 (--pages-fd) and in->pages_fd
 * our end, relayed once the stream ended. */
static int s_in_spawn(migrate_in_t *in, bool new_pid, cairn_error_t *err)
{
    ghostd_t *gd = in->m->gd;
    char as[24], scope[64], cg[80];
    int p[3], sp[2] = { -1, -1 };

    if (in->postcopy && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "socketpair: %s",
                               strerror(errno));
    if (pipe2(p, O_CLOEXEC) < 0) {
        int e = errno;
        if (sp[0] >= 0) {
            close(sp[0]);
            close(sp[1]);
        }
        return cairn_error_set(err, -e, CAIRN_INTERNAL, "pipe2: %s", strerror(e));
    }
    p[2] = sp[1];
    char *argv[16] = { NULL, "--image-fd", "3" };
    int n = 3;
    if (in->no_verify)
        argv[n++] = "--no-verify";
    if (in->postcopy) {
        argv[n++] = "--pages-fd";
        argv[n++] = "4";
    }
    if (new_pid)
        argv[n++] = "--new-pid";
    if (gd->placement.mode == GHOSTD_PLACE_SCOPE &&
        ghostd_placement_next_scope(&gd->placement, scope, sizeof scope) == 0) {
        argv[n++] = "--scope";
        argv[n++] = scope;
        argv[n++] = "--slice";
        argv[n++] = GHOSTD_JOB_SLICE;
        if (in->gpid[0])
            snprintf(in->unit, sizeof in->unit, "%s", scope);
    } else if (in->gpid[0]) {   /* placed as a launched job is (docs/jobs.md) */
        snprintf(cg, sizeof cg, "job-%s", in->gpid);
        ghostd_jobs_cgroup_wanted(gd->jobs, in->gpid);   /* back: not the sweep's */
        argv[n++] = "--cgroup";
        argv[n++] = cg;
        in->sub_cgroup = true;
    }
    if (in->uid != 0) {   /* a user's job restores with their rights */
        snprintf(as, sizeof as, "%u:%u", in->uid, in->gid);
        argv[n++] = "--as";
        argv[n++] = as;
    }
    argv[n] = NULL;
    int fds[2] = { p[0], p[2] };
    /* Post-copy: no deadline -- killing it kills the job (its pages come
     * at the link's speed; a dead source or link ends it: the relay). */
    int r = ghostd_helper_start(gd, GHOSTD_RESTART, argv, fds, in->postcopy ? 2 : 1,
                                in->postcopy ? 0 : GHOSTD_MAX_DEADLINE_MS, &in->rst, err);
    close(p[0]);
    if (p[2] >= 0)
        close(p[2]);
    if (r < 0) {
        close(p[1]);
        if (sp[0] >= 0)
            close(sp[0]);
        return r;
    }
    if (in->postcopy) {
        in->pages_fd = sp[0];
        in->rst->on_output = s_in_on_output;
    }
    in->rst->on_exit = s_in_on_exit;
    in->rst->hook_data = in;
    in->rst->for_user = in->uid != 0;
    in->rst->uid = in->uid;
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    fcntl(p[1], F_SETPIPE_SZ, MIGRATE_PIPE_SIZE);
    in->pipe_fd = p[1];
    return 0;
}

int migrate_handle_begin(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    migrate_t *m = gd->migrate;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__MigrateBeginRequest *b = body->migrate_begin;
    const cairn_caller_t *c = cairn_request_caller(req);
    cairn_error_t err = { 0 };
    char *reasons[8];

    if (!b || !b->id || !*b->id || strlen(b->id) >= sizeof m->in[0].id)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_begin: no id");
    if (s_in_check_caller(c, b->uid, 0, &err) < 0)
        return cairn_request_fail(req, err.code, "%s", err.message);
    if (b->check_only)
        return s_in_check_only(req, b);
    migrate_in_t *in = s_in_find(m, b->id);
    if (in)   /* asked again: the same answer */
        return in->from == c->node ? s_reply_state(req, in->id, migrate_in_state_name(in->state),
                                                   in->pid, in->error)
                                   : cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                                                        "migration %s exists", b->id);
    size_t n = migrate_target_reasons(b->memory_bytes, b->largest_bytes, b->kernel_release,
                                      b->postcopy, reasons, 8);
    if (n) {
        char msg[2048] = "";
        for (size_t i = 0; i < n; i++) {
            size_t at = strlen(msg);
            snprintf(msg + at, sizeof msg - at, "%s%s", i ? "; " : "", reasons[i]);
            free(reasons[i]);
        }
        cairn_log_info("migrate-in-refused", "id=%s from=%u msg=\"%s\"", b->id, c->node, msg);
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "node %u cannot take "
                                  "the job: %s", migrate_self(m), msg);
    }
    if (b->gpid && *b->gpid && s_in_check_job(m, b, &err) < 0) {
        cairn_log_info("migrate-in-refused", "id=%s from=%u msg=\"%s\"", b->id, c->node,
                       err.message);
        return cairn_request_fail(req, err.code, "%s", err.message);
    }
    if (!(in = s_in_claim(m)))
        return cairn_request_fail(req, CAIRN_BUSY, "%d migrations are under way on "
                                  "node %u; try again later", MIGRATE_MAX, migrate_self(m));
    in->state = IN_RECEIVING;
    snprintf(in->id, sizeof in->id, "%s", b->id);
    snprintf(in->gpid, sizeof in->gpid, "%s", b->gpid ? b->gpid : "");
    in->from = c->node;
    in->uid = b->uid;
    in->gid = b->gid;
    in->postcopy = b->postcopy;
    in->no_verify = b->no_verify;
    in->touched_ms = cairn_now_ms();
    if (s_in_spawn(in, b->new_pid, &err) < 0) {
        migrate_in_free(in);
        return cairn_request_fail(req, err.code, "node %u: %s", migrate_self(m), err.message);
    }
    in->timer = cairn_loop_add_timer(migrate_loop(m), 1000, 1000, s_in_on_idle, in);
    in->helper = in->rst->helper;
    s_in_record(in);
    cairn_log_info("migrate-in", "id=%s from=%u gpid=%s uid=%u helper=%d postcopy=%d",
                   in->id, in->from, in->gpid, in->uid, (int)in->rst->helper,
                   (int)in->postcopy);
    return s_reply_state(req, in->id, "receiving", 0, NULL);
}

int migrate_handle_chunk(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__MigrateChunkRequest *ch = body->migrate_chunk;
    cairn_error_t err = { 0 };

    if (!ch)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_chunk: empty");
    migrate_in_t *in = s_in_find(gd->migrate, ch->id);
    if (!in)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "no migration %s on node %u",
                                  ch->id ? ch->id : "", migrate_self(gd->migrate));
    if (s_in_check_caller(cairn_request_caller(req), in->uid, in->from, &err) < 0)
        return cairn_request_fail(req, err.code, "%s", err.message);
    if (in->state == IN_FAILED)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "%s", in->error);
    if (in->state != IN_RECEIVING)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s is %s: "
                                  "no more chunks", in->id, migrate_in_state_name(in->state));
    if (ch->seq != in->next_seq) {
        migrate_in_fail(in, CAIRN_INVALID_ARGUMENT, "chunk %llu came where chunk %llu was "
                  "due: the stream is broken", (unsigned long long)ch->seq,
                  (unsigned long long)in->next_seq);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "%s", in->error);
    }
    if (ch->data.len > MIGRATE_CHUNK || in->q_n == MIGRATE_QUEUE_MAX)
        return cairn_request_fail(req, CAIRN_TOO_LARGE, "chunk %llu: %zu bytes with "
                                  "%zu chunks queued (at most %u bytes, %d chunks)",
                                  (unsigned long long)ch->seq, ch->data.len, in->q_n,
                                  MIGRATE_CHUNK, MIGRATE_QUEUE_MAX);
    cairn_log_debug("migrate-in-received", "id=%s seq=%llu t_us=%llu", in->id,
                    (unsigned long long)ch->seq, (unsigned long long)cairn_now_us());
    /* Nothing queued before it: straight from the request into the pipe,
     * and only what the pipe did not take is copied and queued. */
    size_t off = 0;
    if (!in->q_n) {
        ssize_t k = s_in_write(in, ch->data.data, ch->data.len);
        off = k > 0 ? (size_t)k : 0;
    }
    in->touched_ms = cairn_now_ms();
    if (off == ch->data.len && in->pipe_fd >= 0) {
        cairn_log_debug("migrate-in-chunk", "id=%s seq=%llu direct written=%llu t_us=%llu",
                        in->id, (unsigned long long)ch->seq,
                        (unsigned long long)in->written, (unsigned long long)cairn_now_us());
        in->next_seq++;
        if (ch->last) {
            cairn_deferred_t *d = cairn_request_defer(req);
            if (!d)
                return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
            s_in_stream_ended(in, d);
            return CAIRN_REPLY_DEFERRED;
        }
        return migrate_chunk_reply(req, ch->seq, in->written);
    }
    migrate_chunk_t *c = &in->q[(in->q_head + in->q_n) % MIGRATE_QUEUE_MAX];
    c->data = malloc(ch->data.len - off ? ch->data.len - off : 1);
    if (!c->data)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    memcpy(c->data, ch->data.data + off, ch->data.len - off);
    c->len = ch->data.len - off;
    c->off = 0;
    c->seq = ch->seq;
    c->last = ch->last;
    c->d = cairn_request_defer(req);
    if (!c->d) {
        free(c->data);
        *c = (migrate_chunk_t){ 0 };
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    }
    in->q_n++;
    in->next_seq++;
    /* Written from the pipe's watch, never from here: a chunk answered
     * inside its own handler would free the request the skeleton still
     * holds as deferred. */
    s_in_watch(in);
    return CAIRN_REPLY_DEFERRED;
}

/* The migration id named by a status, commit or abort request, from the
 * node that began it. NULL with the request answered. */
static migrate_in_t *s_in_lookup(ghostd_t *gd, cairn_request_t *req, const char *id, int *ret)
{
    migrate_in_t *in = s_in_find(gd->migrate, id);
    cairn_error_t err = { 0 };

    if (in && s_in_check_caller(cairn_request_caller(req), in->uid, in->from, &err) < 0) {
        *ret = cairn_request_fail(req, err.code, "%s", err.message);
        return NULL;
    }
    if (!in)
        *ret = s_reply_state(req, id ? id : "", "unknown", 0, NULL);
    return in;
}

int migrate_handle_status(void *ctx, cairn_request_t *req)
{
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    int r = 0;

    if (!body->migrate_status)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_status: empty");
    migrate_in_t *in = s_in_lookup(ctx, req, body->migrate_status->id, &r);
    return in ? s_reply_state(req, in->id, migrate_in_state_name(in->state), in->pid, in->error)
              : r;
}

int migrate_handle_commit(void *ctx, cairn_request_t *req)
{
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    int r = 0;

    if (!body->migrate_commit)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_commit: empty");
    migrate_in_t *in = s_in_lookup(ctx, req, body->migrate_commit->id, &r);
    if (!in)
        return r;
    if (in->state != IN_RUNNING && in->state != IN_COMMITTED)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s is %s, "
                                  "not running%s%s", in->id, migrate_in_state_name(in->state),
                                  in->error[0] ? ": " : "", in->error);
    if (in->state == IN_RUNNING) {
        cairn_log_info("migrate-in-committed", "id=%s from=%u pid=%u gpid=%s", in->id,
                       in->from, in->pid, in->gpid);
        int k = in->gpid[0] ? ghostd_jobs_arrived(((ghostd_t *)ctx)->jobs, in->gpid,
                                                  (pid_t)in->pid, in->cgroup, in->unit,
                                                  in->sub_cgroup)
                            : 0;
        if (k < 0)
            cairn_log_warn(k, "migrate-in-committed", "id=%s gpid=%s msg=\"the job's "
                           "table entry could not be made\"", in->id, in->gpid);
        if (in->postcopy && !in->pages_done && in->gpid[0])
            ghostd_jobs_set_pages_pending(((ghostd_t *)ctx)->jobs, in->gpid, true);
    }
    in->state = IN_COMMITTED;
    in->touched_ms = cairn_now_ms();
    s_in_unrecord(in);
    r = s_reply_state(req, in->id, "committed", in->pid, NULL);
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__Job *job = in->gpid[0] ? cairn_request_alloc(req, sizeof *job) : NULL;
    if (r == CAIRN_REPLY_NOW && job &&
        ghostd_jobs_describe(((ghostd_t *)ctx)->jobs, in->gpid, job) == 0)
        reply->migrate_state->job = job;
    return r;
}

int migrate_handle_abort(void *ctx, cairn_request_t *req)
{
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__MigrateAbortRequest *a = body->migrate_abort;
    int r = 0;

    if (!a)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_abort: empty");
    migrate_in_t *in = s_in_lookup(ctx, req, a->id, &r);
    if (!in)
        return r;
    if (in->state == IN_COMMITTED)   /* the source's copy is gone: never */
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s is "
                                  "committed: the job is this node's", in->id);
    migrate_in_fail(in, CAIRN_UNAVAILABLE, "aborted by node %u: %s", in->from,
              a->why && *a->why ? a->why : "(no reason given)");
    return s_reply_state(req, in->id, "failed", 0, in->error);
}

/* One record left by a ghostd that died: the migration again, running
 * (its tree runs) or failed (what it made is killed). */
static void s_in_recover_one(migrate_t *m, const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, 0, &jerr), *e;
    const char *id = json_string_value(json_object_get(v, "id"));
    const char *state = json_string_value(json_object_get(v, "state"));
    const char *gpid = json_string_value(json_object_get(v, "gpid"));
    migrate_in_t *in = id && state && gpid && strlen(id) < sizeof m->in[0].id ? s_in_claim(m) : NULL;
    size_t i;

    if (!in) {
        cairn_log_warn(0, "migrate-in-record", "path=%s msg=\"unreadable or no slot, "
                       "removed\"", path);
        unlink(path);
        json_decref(v);
        return;
    }
    snprintf(in->id, sizeof in->id, "%s", id);
    snprintf(in->gpid, sizeof in->gpid, "%s", gpid);
    const char *cg = json_string_value(json_object_get(v, "cgroup"));
    const char *unit = json_string_value(json_object_get(v, "unit"));
    snprintf(in->cgroup, sizeof in->cgroup, "%s", cg ? cg : "");
    snprintf(in->unit, sizeof in->unit, "%s", unit ? unit : "");
    in->from = (uint32_t)ghostd_json_u64(v, "from");
    in->uid = (uint32_t)json_integer_value(json_object_get(v, "uid"));
    in->gid = (uint32_t)json_integer_value(json_object_get(v, "gid"));
    in->pid = (uint32_t)ghostd_json_u64(v, "pid");
    in->sub_cgroup = json_is_true(json_object_get(v, "sub_cgroup"));
    json_t *arr = json_object_get(v, "members");
    if (json_is_array(arr) && (in->members = calloc(json_array_size(arr) + 1, sizeof(pid_t))))
        json_array_foreach(arr, i, e) in->members[in->n_members++] = (pid_t)json_integer_value(e);
    in->touched_ms = cairn_now_ms();
    in->timer = cairn_loop_add_timer(migrate_loop(m), 1000, 1000, s_in_on_idle, in);
    if (strcmp(state, "running") == 0 &&
        s_same_process((pid_t)in->pid, ghostd_json_u64(v, "pid_start"))) {
        in->state = IN_RUNNING;
        cairn_log_info("migrate-in-recovered", "id=%s from=%u pid=%u gpid=%s state=running",
                       in->id, in->from, in->pid, in->gpid);
    } else {
        pid_t helper = (pid_t)ghostd_json_u64(v, "helper");
        if (s_same_process(helper, ghostd_json_u64(v, "helper_start")))
            kill(-helper, SIGKILL);   /* its own process group */
        if (in->sub_cgroup && in->gpid[0]) {
            char name[80];
            snprintf(name, sizeof name, "job-%s", in->gpid);
            ghost_place_kill_cgroup(name);
        }
        in->state = IN_RECEIVING;   /* so that migrate_in_fail acts */
        migrate_in_fail(in, CAIRN_UNAVAILABLE, "ghostd on node %u restarted during the "
                  "migration; what it had restored was killed", migrate_self(m));
    }
    json_decref(v);
}

/* At start: the migrations a ghostd that died left records of. */
void migrate_in_recover(migrate_t *m)
{
    char dir[PATH_MAX], path[PATH_MAX + 256];
    DIR *d;

    snprintf(dir, sizeof dir, "%s/migrate", cairn_service_node(m->gd->svc)->rundir);
    if (!(d = opendir(dir)))
        return;
    for (struct dirent *de; (de = readdir(d));) {
        size_t n = strlen(de->d_name);
        if (n > 5 && strcmp(de->d_name + n - 5, ".json") == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            s_in_recover_one(m, path);
        }
    }
    closedir(d);
}
