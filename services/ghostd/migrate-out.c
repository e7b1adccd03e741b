/* migrate-out.c - migration, the source's side (migrate.c says how a
 * migration goes): the request (checked, carried to the job's node when
 * another runs it), begin at the target, ghost-dump and its image read
 * from a pipe and sent as chunks within a window, the held tree killed
 * or resumed on the target's answer, post-copy's serving through the
 * relay, a lost answer confirmed (status, then clusterd), and --check.
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

#define S_CONFIRM_EVERY_MS 500   /* the source asks a silent target again */
#define S_ASK_MS 1000            /* timeout of one status or clusterd ask */

/* ---- source -------------------------------------------------------------- */

static void s_out_step(migrate_out_t *o);
static void s_out_confirm(migrate_out_t *o);
static void s_out_reset(migrate_out_t *o);

/* Frees the slot once answered and no callback is due. */
static void s_out_maybe_free(migrate_out_t *o)
{
    if (o->state != OUT_ENDED || o->calls || o->dump || o->deferred ||
        migrate_relay_busy(&o->relay))
        return;
    if (o->timer > 0)
        cairn_loop_cancel_timer(migrate_loop(o->m), o->timer);
    free(o->endpoint);
    free(o->buf);
    s_out_reset(o);
}

/* The end of a peer's answer to o: the reply (if any) freed, o freed if
 * that answer was all it still waited for. */
static void s_out_answered(migrate_out_t *o, ProtobufCMessage *reply)
{
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    s_out_maybe_free(o);
}

/* An empty slot again; its bulk connection is dropped (safe inside that
 * connection's own callback) but the object kept for the next use. */
static void s_out_reset(migrate_out_t *o)
{
    migrate_t *m = o->m;
    cairn_peers_t *bulk = o->bulk;

    if (bulk && o->to)
        cairn_peers_forget(bulk, o->to);
    migrate_relay_clear(&o->relay);
    if (o->pages_fd >= 0)
        close(o->pages_fd);
    *o = (migrate_out_t){ .m = m, .bulk = bulk, .img_fd = -1, .hold_fd = -1, .pages_fd = -1 };
}

void migrate_out_close_img(migrate_out_t *o)
{
    if (o->img_watch > 0)
        cairn_loop_remove(migrate_loop(o->m), o->img_watch);
    o->img_watch = 0;
    if (o->img_fd >= 0)
        close(o->img_fd);
    o->img_fd = -1;
}

/* Tells a holding ghost-dump its verdict ("kill" or "resume") and closes
 * the hold pipe (its end, for a dump not holding yet, means resume). */
void migrate_out_verdict(migrate_out_t *o, const char *word)
{
    if (o->hold_fd < 0)
        return;
    ssize_t k = write(o->hold_fd, word, strlen(word));
    (void)k;   /* a dump gone cannot hold anything: its exit tells */
    close(o->hold_fd);
    o->hold_fd = -1;
}

static int s_out_call(migrate_out_t *o, Cairn__Ghostd__Request *req, uint64_t timeout_ms,
                      cairn_peer_fn fn);
static int s_out_call_on(migrate_out_t *o, cairn_peers_t *peers, Cairn__Ghostd__Request *req,
                         uint64_t timeout_ms, cairn_peer_fn fn);

static void s_on_abort_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    migrate_out_t *o = userdata;

    o->calls--;
    if (code != CAIRN_OK)
        cairn_log_info("migrate-abort", "id=%s to=%u answer=%s msg=\"%s\"", o->id, node,
                       cairn_code_name(code), message);
    s_out_answered(o, reply);
}

static void s_out_abort_target(migrate_out_t *o, const char *why)
{
    Cairn__Ghostd__MigrateAbortRequest a = CAIRN__GHOSTD__MIGRATE_ABORT_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;

    a.id = o->id;
    a.why = (char *)why;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_ABORT;
    req.migrate_abort = &a;
    s_out_call(o, &req, S_ASK_MS * 3, s_on_abort_answer);
}

/* Answers the client with the failure recorded (the tree runs at the
 * source, said so). */
static void s_out_answer_failure(migrate_out_t *o)
{
    char msg[1400];

    restart_job_moving(o->m->gd, o->pid, false);   /* it stays: checkpoints go on */
    if (!o->deferred)
        return;
    snprintf(msg, sizeof msg, "migration of %s%s%u to node %u failed: %s; the job "
             "runs on at node %u", o->gpid[0] ? "job " : "pid ",
             o->gpid[0] ? o->gpid : "", o->gpid[0] ? 0 : o->pid, o->to, o->fail_msg,
             migrate_self(o->m));
    if (o->gpid[0])   /* "job G" without the pid printed as 0 */
        snprintf(msg, sizeof msg, "migration of job %s to node %u failed: %s; the "
                 "job runs on at node %u", o->gpid, o->to, o->fail_msg, migrate_self(o->m));
    cairn_log_warn(0, "migrate-failed", "id=%s pid=%u to=%u code=%s msg=\"%s\"", o->id,
                   o->pid, o->to, cairn_code_name(o->fail_code), o->fail_msg);
    ghostd_metrics_op(o->m->gd, "migration", "failed", 0);
    if (o->is_job)   /* it runs on here */
        ghostd_jobs_set_migrating(o->m->gd->jobs, o->gpid, false, 0, NULL);
    cairn_deferred_fail(o->m->gd->svc, o->deferred, o->fail_code, msg);
    o->deferred = NULL;
}

/* A failure while the source copy may still be resumed: record it (the
 * first one counts), let the tree go, abort the target; the client is
 * answered once ghost-dump is reaped (or now, when none ran). */
static void s_out_fail(migrate_out_t *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_out_fail(migrate_out_t *o, int code, const char *fmt, ...)
{
    va_list ap;

    if (!o->fail_code) {
        o->fail_code = code ? code : CAIRN_INTERNAL;
        va_start(ap, fmt);
        vsnprintf(o->fail_msg, sizeof o->fail_msg, fmt, ap);
        va_end(ap);
    }
    if (o->state == OUT_RESUMING || o->state == OUT_ENDED)
        return;
    bool began = o->state != OUT_BEGIN || o->calls;
    migrate_out_close_img(o);           /* a dump still writing fails and lets go */
    migrate_out_verdict(o, "resume\n");   /* post-copy: the target never ran */
    migrate_relay_close(&o->relay, o->fail_msg);
    if (began)
        s_out_abort_target(o, o->fail_msg);
    o->state = o->dump ? OUT_RESUMING : OUT_ENDED;
    if (!o->dump) {
        s_out_answer_failure(o);
        s_out_maybe_free(o);
    }
}

/* Answers the client: moved; job is the target's word on it (NULL for a
 * plain process, or when the commit's answer was lost). */
static void s_out_succeed(migrate_out_t *o, Cairn__Ghostd__Job *job)
{
    Cairn__Ghostd__MigrateReply mr = CAIRN__GHOSTD__MIGRATE_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;

    mr.gpid = o->gpid;
    mr.from = migrate_self(o->m);
    mr.to = o->to;
    mr.source_pid = o->pid;
    mr.pid = o->new_pid;
    mr.image_bytes = o->bytes;
    ghostd_metrics_op(o->m->gd, "migration", "ok", o->bytes);
    mr.freeze_us = o->frozen_us;
    mr.dump_us = o->dump_us;
    mr.restore_us = o->restore_us;
    mr.total_us = cairn_now_us() - o->t0_us;
    mr.processes = o->processes;
    mr.threads = o->threads;
    mr.cgroup = o->cgroup;
    mr.chunks = (uint32_t)o->seq;
    mr.mode = (char *)migrate_mode_name(o->mode);
    mr.rounds = o->rounds;
    mr.precopy_bytes = o->precopy_bytes;
    mr.lazy_pages = o->lazy_pages;
    mr.resident_bytes = o->rss;
    mr.job = job;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_REPLY;
    reply.migrate_reply = &mr;
    cairn_log_info("migrate-done", "id=%s pid=%u to=%u mode=%s new_pid=%u bytes=%llu "
                   "rounds=%u frozen_us=%llu total_us=%llu", o->id, o->pid, o->to,
                   mr.mode, o->new_pid, (unsigned long long)o->bytes, o->rounds,
                   (unsigned long long)o->frozen_us, (unsigned long long)mr.total_us);
    if (o->deferred)
        cairn_deferred_reply(o->m->gd->svc, o->deferred, &reply.base);
    o->deferred = NULL;
}

static int s_on_commit_again(cairn_loop_t *loop, int64_t timer_id, void *userdata);

/* Post-copy: the copy ran, then its pages stopped coming; nothing of the
 * job runs any more. The client hears it (DATA is lost: never a silent
 * success). */
static void s_out_answer_lost(migrate_out_t *o, const char *why)
{
    char msg[1400];

    snprintf(msg, sizeof msg, "post-copy migration of %s%s to node %u: the copy ran, then "
             "its memory stopped coming: %s", o->gpid[0] ? "job " : "a process tree",
             o->gpid, o->to, why);
    cairn_log_err(-EIO, "migrate-lost", "id=%s gpid=%s pid=%u to=%u msg=\"%s\"", o->id,
                  o->gpid, o->pid, o->to, msg);
    if (o->deferred)
        cairn_deferred_fail(o->m->gd->svc, o->deferred, CAIRN_FAILED_PRECONDITION, msg);
    o->deferred = NULL;
}

static void s_on_commit_answer(void *userdata, uint32_t node, int code, const char *message,
                               ProtobufCMessage *reply)
{
    migrate_out_t *o = userdata;
    const Cairn__Ghostd__MigrateState *st = migrate_state_of(reply);

    o->calls--;
    if ((code == CAIRN_TIMEOUT || code == CAIRN_UNAVAILABLE) &&
        cairn_now_ms() + S_CONFIRM_EVERY_MS < o->deadline_ms) {
        /* The target runs it but has not heard (its ghostd restarting:
         * it finds the migration in its record): ask again. */
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        if (o->timer > 0)
            cairn_loop_cancel_timer(migrate_loop(o->m), o->timer);
        o->timer = cairn_loop_add_timer(migrate_loop(o->m), S_CONFIRM_EVERY_MS, 0,
                                        s_on_commit_again, o);
        if (o->timer > 0)
            return;
        o->timer = 0;
    }
    if (o->mode == MIGRATE_POST_COPY && code == CAIRN_FAILED_PRECONDITION) {
        /* its pages stopped coming before the commit: the target recorded
         * the job lost, and the client hears it now */
        s_out_answer_lost(o, message);
        s_out_answered(o, reply);
        return;
    }
    if (code != CAIRN_OK)   /* the job runs there either way */
        cairn_log_warn(0, "migrate-commit", "id=%s to=%u code=%s msg=\"%s\", ignoring",
                       o->id, node, cairn_code_name(code), message);
    /* The client hears of the move once the target's table has the job,
     * so a ps right after the answer finds it there. */
    s_out_succeed(o, st ? st->job : NULL);
    s_out_answered(o, reply);
}

/* Tells the target the job is its own (the source copy is gone); the
 * client is answered with its answer. */
static void s_out_commit(migrate_out_t *o)
{
    Cairn__Ghostd__MigrateCommitRequest cm = CAIRN__GHOSTD__MIGRATE_COMMIT_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;

    cm.id = o->id;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_COMMIT;
    req.migrate_commit = &cm;
    if (s_out_call(o, &req, S_ASK_MS * 3, s_on_commit_answer) < 0)
        s_out_succeed(o, NULL);   /* the job runs there either way */
}

static int s_on_commit_again(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    migrate_out_t *o = userdata;

    o->timer = 0;
    s_out_commit(o);
    s_out_maybe_free(o);
    return 0;
}

/* Post-copy: the relay ended or broke. While ghost-dump serves a copy
 * that ran, that means the target is done with its source or gone:
 * `kill` (ghost-dump ends serving and kills the source's tree, which
 * must never run again). Before the copy ran, the last chunk's answer
 * decides (resume or kill); ghost-dump waits for the word. */
static void s_out_on_relay(migrate_relay_t *r, void *owner)
{
    migrate_out_t *o = owner;

    if (o->state == OUT_SERVING && (r->broken || r->peer_end))
        migrate_out_verdict(o, "kill\n");
    s_out_maybe_free(o);
}

/* Kills what is left of the source's tree: ghost-dump died while it
 * served, and the kernel let its tracees go -- the target's copy ran, so
 * this one must not (a job: its reaper, pid 1 of its namespace, and its
 * sub-cgroup; a plain tree: every process under its root). */
static void s_out_kill_tree(migrate_out_t *o, pid_t pid, int depth)
{
    _cleanup_free_ pid_t *kids = NULL;
    size_t n = 0;
    cairn_error_t err;
    char cg[80];

    kill(pid, SIGKILL);
    if (depth < 64 && proc_list_children(pid, &kids, &n, &err) == 0)
        for (size_t i = 0; i < n; i++)
            s_out_kill_tree(o, kids[i], depth + 1);
    if (depth == 0 && o->sub_cgroup) {
        snprintf(cg, sizeof cg, "job-%s", o->gpid);
        ghost_place_kill_cgroup(cg);
    }
}

/* Post-copy: ghost-dump ended after the copy ran. */
static void s_out_served(migrate_out_t *o, int status, json_t *second)
{
    const char *outcome = json_string_value(json_object_get(second, "outcome"));

    if (!outcome || strcmp(outcome, "killed") != 0) {
        s_out_kill_tree(o, (pid_t)o->pid, 0);
        cairn_log_err(-EIO, "migrate-serve-died", "id=%s pid=%u to=%u msg=\"ghost-dump "
                      "ended while serving the copy's pages (%s): the source's tree was "
                      "killed; the target's copy loses its missing pages\"", o->id, o->pid,
                      o->to, WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited");
    } else if (!json_is_true(json_object_get(second, "target_done"))) {
        cairn_log_warn(0, "migrate-serve-ended", "id=%s to=%u msg=\"serving ended before "
                       "the target said every page came: the target decides whether the "
                       "job is lost\"", o->id, o->to);
    } else {
        cairn_log_info("migrate-served", "id=%s to=%u pages_requested=%llu pages_pushed=%llu "
                       "serve_us=%llu", o->id, o->to,
                       (unsigned long long)ghostd_json_u64(second, "pages_requested"),
                       (unsigned long long)ghostd_json_u64(second, "pages_pushed"),
                       (unsigned long long)ghostd_json_u64(second, "serve_us"));
    }
    o->state = OUT_ENDED;
}

/* Post-copy: ghost-dump served every page and the target said END before
 * its answer that the copy runs came here (the relay and the chunks go
 * on two connections): the copy runs; that answer decides the rest. */
static bool s_out_served_early(const migrate_out_t *o, json_t *second)
{
    const char *outcome = json_string_value(json_object_get(second, "outcome"));

    return o->mode == MIGRATE_POST_COPY && (o->state == OUT_STREAM || o->state == OUT_CONFIRM) &&
           outcome && strcmp(outcome, "killed") == 0 &&
           json_is_true(json_object_get(second, "target_done"));
}

/* ghost-dump was reaped: the end of every path that froze the tree. */
static void s_out_on_exit(ghostd_helper_t *j, int status)
{
    migrate_out_t *o = j->hook_data;
    json_t *first = ghostd_helper_line(j, 0);
    json_t *second = o->held ? ghostd_helper_line(j, 1) : NULL;
    const char *outcome = second ? json_string_value(json_object_get(second, "outcome")) : NULL;
    char msg[1024];

    o->dump = NULL;
    migrate_out_close_img(o);
    if (o->hold_fd >= 0) {
        close(o->hold_fd);
        o->hold_fd = -1;
    }
    if (o->state == OUT_KILLING && outcome && strcmp(outcome, "killed") == 0) {
        o->state = OUT_ENDED;
        s_out_commit(o);
    } else if (o->state == OUT_SERVING) {
        s_out_served(o, status, second);
    } else if (s_out_served_early(o, second)) {
        cairn_log_info("migrate-served", "id=%s to=%u msg=\"every page served before the "
                       "answer that the copy runs\"", o->id, o->to);
    } else if (o->state == OUT_KILLING) {
        /* Told to kill, yet the source copy was let go (ghost-dump died
         * holding: the kernel resumes a tracer's tracees): the target's
         * copy goes, so one remains -- and the job is this node's again. */
        if (o->is_job)
            ghostd_jobs_take_back(o->m->gd->jobs, o->gpid);
        snprintf(msg, sizeof msg, "ghost-dump did not kill the source copy (%s): the "
                 "target's copy was aborted instead",
                 outcome ? outcome : WIFSIGNALED(status) ? "it died" : "no outcome");
        o->state = OUT_STREAM;   /* so s_out_fail aborts the target */
        s_out_fail(o, CAIRN_INTERNAL, "%s", msg);
        o->state = OUT_ENDED;
        s_out_answer_failure(o);
    } else if (o->state == OUT_RESUMING) {
        o->state = OUT_ENDED;
        s_out_answer_failure(o);
    } else {
        /* The dump ended on its own before any verdict: refused or failed
         * (the tree left running), or it died. */
        if (o->held)
            snprintf(msg, sizeof msg, "ghost-dump ended while holding the frozen tree "
                     "(%s)", WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited");
        else
            ghostd_helper_error(j, status, first, msg, sizeof msg);
        int code = o->held ? CAIRN_INTERNAL : ghostd_helper_error(j, status, first,
                                                                  msg, sizeof msg);
        s_out_fail(o, code, "dump at node %u: %s", migrate_self(o->m), msg);
        o->state = OUT_ENDED;
        s_out_answer_failure(o);
    }
    json_decref(first);
    json_decref(second);
    s_out_maybe_free(o);
}

static void s_out_on_relay(migrate_relay_t *r, void *owner);

/* Post-copy, at "held": ghost-dump is told to serve and its P relayed to
 * the target before the last chunk goes, for the restore faults on lazy
 * pages before its tree can run. */
static void s_out_serve(migrate_out_t *o)
{
    char why[128];
    ssize_t k = o->hold_fd >= 0 ? write(o->hold_fd, "serve\n", 6) : -1;
    int r = -EPIPE;

    if (k == 6)
        r = migrate_relay_open(&o->relay, o->m->gd->svc, o->bulk, o->to, o->endpoint,
                               o->id, true, o->pages_fd, s_out_on_relay, o);
    else
        close(o->pages_fd);
    o->pages_fd = -1;   /* the relay's, or closed */
    if (r < 0) {
        snprintf(why, sizeof why, "cannot relay the page source: %s", strerror(-r));
        s_out_fail(o, CAIRN_INTERNAL, "%s", why);
    }
}

/* ghost-dump printed: its first line, "held", means the image is whole
 * and the tree frozen. */
static void s_out_on_output(ghostd_helper_t *j)
{
    migrate_out_t *o = j->hook_data;

    if (o->held)
        return;
    json_t *v = ghostd_helper_line(j, 0);
    if (v && json_is_true(json_object_get(v, "held"))) {
        o->held = true;
        o->held_us = cairn_now_us();
        o->dump_us = ghostd_json_u64(v, "dump_us");
        o->freeze_us = ghostd_json_u64(v, "freeze_us");
        o->processes = (uint32_t)ghostd_json_u64(v, "processes");
        o->threads = (uint32_t)ghostd_json_u64(v, "threads");
        o->rounds = (uint32_t)ghostd_json_u64(v, "rounds");
        o->precopy_bytes = ghostd_json_u64(v, "precopy_bytes");
        o->lazy_pages = ghostd_json_u64(v, "lazy_pages");
        if (o->mode == MIGRATE_POST_COPY)
            s_out_serve(o);
        s_out_step(o);
    }
    json_decref(v);
}

static void s_on_chunk_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply);

/* Sends buf[0, n) as the next chunk. */
static int s_out_send_chunk(migrate_out_t *o, size_t n, bool last)
{
    Cairn__Ghostd__MigrateChunkRequest ch = CAIRN__GHOSTD__MIGRATE_CHUNK_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    uint64_t now = cairn_now_ms();
    uint64_t left = o->deadline_ms > now ? o->deadline_ms - now : 1;

    ch.id = o->id;
    ch.seq = o->seq;
    ch.data.data = o->buf;
    ch.data.len = n;
    ch.last = last;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_CHUNK;
    req.migrate_chunk = &ch;
    /* A chunk is answered once in the restore's pipe: seconds at most; the
     * last one once the tree runs -- past MIGRATE_LAST_MS the target is
     * asked its state instead, every S_CONFIRM_EVERY_MS (a slow restore
     * says "restoring"; a restarted ghostd, what became of it). */
    uint64_t limit = last ? MIGRATE_LAST_MS : MIGRATE_CHUNK_MS;
    int r = s_out_call_on(o, o->bulk, &req, left < limit ? left : limit, s_on_chunk_answer);
    if (r < 0)
        return r;
    cairn_log_debug("migrate-chunk", "id=%s seq=%llu bytes=%zu in_flight=%u t_us=%llu",
                    o->id, (unsigned long long)o->seq, n, o->in_flight + 1,
                    (unsigned long long)cairn_now_us());
    o->seq++;
    o->in_flight++;
    if (last)
        o->last_sent = true;
    return 0;
}

static int s_out_on_readable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                             void *userdata);

/* Moves the stream on: full chunks out while the window allows, the pipe
 * watched while there is room, the last chunk once the pipe ended and
 * ghost-dump holds the tree. */
static void s_out_step(migrate_out_t *o)
{
    if (o->state != OUT_STREAM)
        return;
    while (o->len > MIGRATE_CHUNK && o->in_flight < MIGRATE_WINDOW) {
        int r = s_out_send_chunk(o, MIGRATE_CHUNK, false);
        if (r < 0)
            return s_out_fail(o, CAIRN_UNAVAILABLE, "cannot send to node %u: %s", o->to,
                              strerror(-r));
        memmove(o->buf, o->buf + MIGRATE_CHUNK, o->len - MIGRATE_CHUNK);
        o->len -= MIGRATE_CHUNK;
    }
    bool room = o->len <= MIGRATE_CHUNK;
    if (!o->eof && room && o->img_watch <= 0 && o->img_fd >= 0)
        o->img_watch = cairn_loop_add_fd(migrate_loop(o->m), o->img_fd, ZMQ_POLLIN,
                                         s_out_on_readable, o);
    else if (!room && o->img_watch > 0) {
        cairn_loop_remove(migrate_loop(o->m), o->img_watch);
        o->img_watch = 0;
    }
    if (o->eof && o->held && !o->last_sent && o->len <= MIGRATE_CHUNK &&
        o->in_flight < MIGRATE_WINDOW) {
        int r = s_out_send_chunk(o, o->len, true);
        if (r < 0)
            return s_out_fail(o, CAIRN_UNAVAILABLE, "cannot send to node %u: %s", o->to,
                              strerror(-r));
        o->len = 0;
    }
}

static int s_out_on_readable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                             void *userdata)
{
    migrate_out_t *o = userdata;

    while (o->img_fd >= 0 && o->len <= MIGRATE_CHUNK) {
        ssize_t k = read(o->img_fd, o->buf + o->len, MIGRATE_CHUNK + 1 - o->len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN)
            break;
        if (k <= 0) {   /* the end (or an error: ghost-dump's exit says) */
            o->eof = true;
            migrate_out_close_img(o);
            break;
        }
        o->len += (size_t)k;
        o->bytes += (uint64_t)k;
    }
    s_out_step(o);
    return 0;
}

static void s_out_commit(migrate_out_t *o);

/* The target runs the tree: kill the source's copy. Post-copy: the copy
 * runs with its memory still here -- ghost-dump serves it and kills the
 * source's tree itself once the target has every page (or is told `kill`
 * when the relay ends first); the job is the target's now (commit), and
 * the source's copy never runs again. */
static void s_out_kill_source(migrate_out_t *o)
{
    /* The job leaves the table first: its reaper's end is the move, not
     * the job's (no exit record). */
    if (o->is_job)
        ghostd_jobs_release(o->m->gd->jobs, o->gpid);
    o->frozen_us = cairn_now_us() - (o->held_us - o->dump_us);
    if (o->mode == MIGRATE_POST_COPY) {
        /* ghost-dump may be done already: the target had every page
         * before its answer came */
        o->state = o->dump ? OUT_SERVING : OUT_ENDED;
        cairn_log_info("migrate-serving", "id=%s to=%u lazy_pages=%llu frozen_us=%llu",
                       o->id, o->to, (unsigned long long)o->lazy_pages,
                       (unsigned long long)o->frozen_us);
        s_out_commit(o);
        s_out_on_relay(&o->relay, o);   /* it may have ended meanwhile */
        return;
    }
    o->state = OUT_KILLING;
    migrate_out_verdict(o, "kill\n");
}

static void s_on_chunk_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    migrate_out_t *o = userdata;
    Cairn__Ghostd__Reply *rep = (Cairn__Ghostd__Reply *)reply;
    const Cairn__Ghostd__MigrateChunkReply *cr =
        rep && rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_MIGRATE_CHUNK_REPLY
            ? rep->migrate_chunk_reply : NULL;

    o->calls--;
    o->in_flight--;
    cairn_log_debug("migrate-chunk-answer", "id=%s seq=%lld code=%s t_us=%llu", o->id,
                    cr ? (long long)cr->seq : -1LL, cairn_code_name(code),
                    (unsigned long long)cairn_now_us());
    if (o->state == OUT_STREAM && cr && cr->restored) {
        o->new_pid = cr->pid;
        o->restore_us = cr->restore_us;
        snprintf(o->cgroup, sizeof o->cgroup, "%s", cr->cgroup ? cr->cgroup : "");
        s_out_kill_source(o);
    } else if (o->state == OUT_STREAM && o->last_sent && (code != CAIRN_OK || !cr) &&
               o->in_flight == 0) {
        /* The last chunk (or one before it, answered after it was sent)
         * failed: only the target knows whether its restore runs. */
        if (!o->fail_code) {
            o->fail_code = code != CAIRN_OK ? code : CAIRN_INTERNAL;
            snprintf(o->fail_msg, sizeof o->fail_msg, "node %u: %s", node,
                     code != CAIRN_OK ? message : "not a chunk reply");
        }
        o->state = OUT_CONFIRM;
        s_out_confirm(o);
    } else if (o->state == OUT_STREAM && o->last_sent && (code != CAIRN_OK || !cr)) {
        if (!o->fail_code) {   /* confirm once the others are answered */
            o->fail_code = code != CAIRN_OK ? code : CAIRN_INTERNAL;
            snprintf(o->fail_msg, sizeof o->fail_msg, "node %u: %s", node,
                     code != CAIRN_OK ? message : "not a chunk reply");
        }
    } else if (o->state == OUT_STREAM && (code != CAIRN_OK || !cr)) {
        s_out_fail(o, code != CAIRN_OK ? code : CAIRN_INTERNAL, "the stream to node %u "
                   "broke: %s", node, code != CAIRN_OK ? message : "not a chunk reply");
    } else if (o->state == OUT_STREAM && o->last_sent && o->fail_code && o->in_flight == 0) {
        o->state = OUT_CONFIRM;
        s_out_confirm(o);
    } else {
        s_out_step(o);
    }
    s_out_answered(o, reply);
}

/* ---- source: confirming a lost answer -------------------------------------- */

static int s_on_confirm_timer(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    migrate_out_t *o = userdata;

    o->timer = 0;
    s_out_confirm(o);
    return 0;
}

static void s_out_confirm_later(migrate_out_t *o)
{
    if (o->timer > 0)
        cairn_loop_cancel_timer(migrate_loop(o->m), o->timer);
    o->timer = cairn_loop_add_timer(migrate_loop(o->m), S_CONFIRM_EVERY_MS, 0,
                                    s_on_confirm_timer, o);
}

/* The client's deadline passed while confirming: it is told, the asking
 * goes on (the tree stays frozen rather than risk two copies). */
static void s_out_confirm_deadline(migrate_out_t *o)
{
    char msg[1400];

    if (!o->deferred || cairn_now_ms() < o->deadline_ms)
        return;
    snprintf(msg, sizeof msg, "migration %s: node %u has not said whether the restored "
             "job runs (%s); the job stays frozen at node %u until it does or is "
             "declared dead", o->id, o->to, o->fail_msg, migrate_self(o->m));
    cairn_deferred_fail(o->m->gd->svc, o->deferred, CAIRN_TIMEOUT, msg);
    o->deferred = NULL;
}

static void s_on_nodes_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    migrate_out_t *o = userdata;
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)reply;
    const char *state = NULL;

    o->calls--;
    o->confirm_asking = false;
    if (code == CAIRN_OK && rep && rep->msg_case == CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY) {
        state = "gone";
        for (size_t i = 0; i < rep->nodes_reply->n_nodes; i++)
            if (rep->nodes_reply->nodes[i]->id == o->to)
                state = rep->nodes_reply->nodes[i]->state;
    }
    if (o->state == OUT_CONFIRM && state &&
        (strcmp(state, "dead") == 0 || strcmp(state, "left") == 0 ||
         strcmp(state, "gone") == 0)) {
        char why[1200];
        snprintf(why, sizeof why, "%s; then node %u was declared %s", o->fail_msg, o->to,
                 state);
        snprintf(o->fail_msg, sizeof o->fail_msg, "%.1000s", why);
        o->state = OUT_STREAM;   /* still resumable: s_out_fail lets it go */
        s_out_fail(o, o->fail_code, "%s", o->fail_msg);
    } else if (o->state == OUT_CONFIRM) {
        s_out_confirm_deadline(o);
        s_out_confirm_later(o);
    }
    s_out_answered(o, reply);
}

/* Asks this node's clusterd whether the target is dead. */
static void s_out_ask_clusterd(migrate_out_t *o)
{
    const cairn_node_desc_t *self = cairn_service_node(o->m->gd->svc);
    _cleanup_free_ char *ep = cairn_description_tcp_endpoint(
        cairn_service_description(o->m->gd->svc), self, "clusterd", false);
    Cairn__Clusterd__NodesRequest nr = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;

    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    req.nodes = &nr;
    if (ep && cairn_peers_call(o->m->clusterd, self->id, ep, &req.base, S_ASK_MS,
                               s_on_nodes_answer, o) == 0) {
        o->calls++;
        o->confirm_asking = true;
        return;
    }
    s_out_confirm_deadline(o);
    s_out_confirm_later(o);
}

static void s_on_status_answer(void *userdata, uint32_t node, int code, const char *message,
                               ProtobufCMessage *reply)
{
    migrate_out_t *o = userdata;
    const Cairn__Ghostd__MigrateState *st = migrate_state_of(reply);

    o->calls--;
    o->confirm_asking = false;
    if (o->state != OUT_CONFIRM) {
        /* nothing to decide any more */
    } else if (st && (strcmp(st->state, "running") == 0 ||
                      strcmp(st->state, "committed") == 0)) {
        o->new_pid = st->pid;
        cairn_log_info("migrate-confirmed", "id=%s to=%u state=%s pid=%u", o->id, o->to,
                       st->state, st->pid);
        o->fail_code = 0;
        o->fail_msg[0] = '\0';
        s_out_kill_source(o);
    } else if (st && (strcmp(st->state, "failed") == 0 ||
                      strcmp(st->state, "unknown") == 0)) {
        char why[1200];
        snprintf(why, sizeof why, "%s", st->error && *st->error ? st->error : o->fail_msg);
        o->state = OUT_STREAM;
        o->fail_code = 0;
        s_out_fail(o, CAIRN_FAILED_PRECONDITION, "node %u: %s", o->to, why);
    } else if (st) {   /* receiving, restoring: not yet */
        s_out_confirm_deadline(o);
        s_out_confirm_later(o);
    } else {
        s_out_ask_clusterd(o);
    }
    s_out_answered(o, reply);
}

static void s_out_confirm(migrate_out_t *o)
{
    Cairn__Ghostd__MigrateStatusRequest sr = CAIRN__GHOSTD__MIGRATE_STATUS_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;

    if (o->state != OUT_CONFIRM || o->confirm_asking)
        return;
    sr.id = o->id;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_STATUS;
    req.migrate_status = &sr;
    if (s_out_call(o, &req, S_ASK_MS, s_on_status_answer) == 0)
        o->confirm_asking = true;
    else
        s_out_ask_clusterd(o);
}

/* ---- source: the start ---------------------------------------------------- */

static int s_out_call(migrate_out_t *o, Cairn__Ghostd__Request *req, uint64_t timeout_ms,
                      cairn_peer_fn fn)
{
    return s_out_call_on(o, o->m->peers, req, timeout_ms, fn);
}

static int s_out_call_on(migrate_out_t *o, cairn_peers_t *peers, Cairn__Ghostd__Request *req,
                         uint64_t timeout_ms, cairn_peer_fn fn)
{
    int r = cairn_peers_call_as(peers, o->to, o->endpoint, &req->base,
                                (uint32_t)(timeout_ms ? timeout_ms : 1),
                                o->as.uid == 0 ? NULL : &o->as, fn, o);
    if (r == 0)
        o->calls++;
    return r;
}

/* Spawns ghost-dump --out-fd 3 --hold-fd 4 on the tree (post-copy:
 * --postcopy --pages-fd 5, P a socketpair whose other end o->pages_fd is
 * relayed from "serve" on). */
static int s_out_spawn_dump(migrate_out_t *o, cairn_error_t *err)
{
    char pid[16], as[24];
    int img[2], hold[2], sp[2] = { -1, -1 };

    if (pipe2(img, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s", strerror(errno));
    if (pipe2(hold, O_CLOEXEC) < 0) {
        close(img[0]);
        close(img[1]);
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s", strerror(errno));
    }
    if (o->mode == MIGRATE_POST_COPY &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        int e = errno;
        close(img[0]);
        close(img[1]);
        close(hold[0]);
        close(hold[1]);
        return cairn_error_set(err, -e, CAIRN_INTERNAL, "socketpair: %s", strerror(e));
    }
    restart_job_moving(o->m->gd, o->pid, true);   /* its tracker lets go first */
    snprintf(pid, sizeof pid, "%u", o->pid);
    char *argv[14] = { NULL, "--pid", pid, "--out-fd", "3", "--hold-fd", "4" };
    int n = 7;
    if (o->mode == MIGRATE_PRE_COPY)   /* rounds while it runs: ghost-dump's
                                          defaults (8, until one <= 1 MiB) */
        argv[n++] = "--precopy";
    if (o->mode == MIGRATE_POST_COPY) {
        argv[n++] = "--postcopy";
        argv[n++] = "--pages-fd";
        argv[n++] = "5";
    }
    if (ghostd_for_user(&o->as)) {
        snprintf(as, sizeof as, "%u:%u", o->as.uid, o->as.gid);
        argv[n++] = "--as";
        argv[n++] = as;
    }
    argv[n] = NULL;
    int fds[3] = { img[1], hold[0], sp[1] };
    /* Post-copy: no deadline -- killed while it serves, the pages stop */
    int r = ghostd_helper_start(o->m->gd, GHOSTD_CHECKPOINT, argv, fds, sp[1] >= 0 ? 3 : 2,
                                sp[1] >= 0 ? 0 : GHOSTD_MAX_DEADLINE_MS, &o->dump, err);
    close(img[1]);
    close(hold[0]);
    if (sp[1] >= 0)
        close(sp[1]);
    if (r < 0) {
        close(img[0]);
        close(hold[1]);
        if (sp[0] >= 0)
            close(sp[0]);
        return r;
    }
    o->pages_fd = sp[0];
    o->dump->pid = o->pid;   /* a checkpoint of it meanwhile is busy */
    o->dump->on_output = s_out_on_output;
    o->dump->on_exit = s_out_on_exit;
    o->dump->hook_data = o;
    fcntl(img[0], F_SETFL, O_NONBLOCK);
    fcntl(img[0], F_SETPIPE_SZ, MIGRATE_PIPE_SIZE);
    o->img_fd = img[0];
    o->hold_fd = hold[1];
    return 0;
}

static void s_on_begin_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    migrate_out_t *o = userdata;
    cairn_error_t err = { 0 };

    o->calls--;
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (o->state != OUT_BEGIN) {
        /* failed meanwhile (deadline) */
    } else if (code != CAIRN_OK) {
        s_out_fail(o, code, "node %u %s: %s", node,
                   code == CAIRN_TIMEOUT ? "did not answer" : "refused", message);
    } else if (s_out_spawn_dump(o, &err) < 0) {
        o->state = OUT_STREAM;   /* the target began: abort it */
        s_out_fail(o, err.code, "%s", err.message);
    } else {
        o->state = OUT_STREAM;
        cairn_log_info("migrate-stream", "id=%s pid=%u to=%u dump=%d", o->id, o->pid,
                       o->to, (int)o->dump->helper);
        s_out_step(o);
    }
    s_out_maybe_free(o);
}

static int s_on_out_deadline(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    migrate_out_t *o = userdata;

    o->timer = 0;
    if (o->state == OUT_STREAM && !o->last_sent)
        s_out_fail(o, CAIRN_TIMEOUT, "the deadline passed after %llu of the image's "
                   "bytes were read", (unsigned long long)o->bytes);
    /* begin and the last chunk end by their own timeouts; confirm asks on */
    return 0;
}

/* The source's request, checked: the tree, its owner, the target. */
static int s_out_prepare(migrate_t *m, cairn_request_t *req,
                         const Cairn__Ghostd__MigrateRequest *mr, migrate_out_t *o,
                         cairn_error_t *err)
{
    const cairn_caller_t *c = cairn_request_caller(req);
    const cairn_description_t *d = cairn_service_description(m->gd->svc);
    const cairn_node_desc_t *nd;
    const ghostd_jobrec_t *rec = NULL;
    char who[128];
    int r;

    if (mr->gpid && *mr->gpid && mr->pid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "migrate: a gpid or a pid, not both");
    if (mr->gpid && *mr->gpid && !(rec = ghostd_jobs_running(m->gd->jobs, mr->gpid)))
        return cairn_error_set(err, -EREMOTE, CAIRN_NOT_FOUND, "migrate: job %s does "
                               "not run on node %u", mr->gpid, migrate_self(m));
    if (!rec && !mr->pid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "migrate: a gpid or a pid is required");
    if (!mr->to)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "migrate: the target node is required");
    if (mr->to == migrate_self(m))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "migrate: the job "
                               "is on node %u already", mr->to);
    if (!(nd = cairn_description_find_node(d, mr->to)))
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "migrate: no node %u in "
                               "the cluster description", mr->to);
    if (rec) {   /* a job: its reaper's tree, its owner's */
        o->pid = (uint32_t)rec->host_pid;
        o->uid = rec->uid;
        o->gid = rec->gid;
        o->is_job = true;
        o->sub_cgroup = rec->sub_cgroup;
        snprintf(o->gpid, sizeof o->gpid, "%s", rec->gpid);
    } else if ((r = ghostd_process_owner(mr->pid, &o->uid, &o->gid, err)) < 0) {
        return r;
    } else {
        o->pid = mr->pid;
    }
    if (!cairn_caller_may_act_on(c, o->uid))
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED, "migrate: %s %s%.0u "
                               "is uid %u's; %s may migrate only its own (root may "
                               "migrate any)", rec ? "job" : "process",
                               rec ? rec->gpid : "", rec ? 0 : o->pid, o->uid,
                               cairn_caller_describe(c, who, sizeof who));
    for (size_t i = 0; i < MIGRATE_MAX; i++)
        if (&m->out[i] != o && m->out[i].state != OUT_FREE && m->out[i].pid == o->pid)
            return cairn_error_set(err, -EBUSY, CAIRN_BUSY, "migrate: %s%s%.0u is being "
                                   "migrated (%s)", rec ? "job " : "pid ",
                                   rec ? rec->gpid : "", rec ? 0 : o->pid, m->out[i].id);
    if ((r = migrate_mode_parse(mr->mode, &o->mode)) < 0)
        return cairn_error_set(err, r, CAIRN_INVALID_ARGUMENT, "migrate: mode '%s': one "
                               "of stop-copy, pre-copy, post-copy, auto", mr->mode);
    o->rss = migrate_tree_rss((pid_t)o->pid, 0, NULL);
    if (o->mode == MIGRATE_AUTO)
        o->mode = migrate_mode_auto(o->rss);
    o->endpoint = cairn_description_tcp_endpoint(d, nd, "ghostd", false);
    if (!o->endpoint)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "migrate: node %u runs no "
                               "ghostd", mr->to);
    o->to = mr->to;
    o->as = *c;
    o->no_verify = mr->no_verify;
    return 0;
}

static migrate_out_t *s_out_claim(migrate_t *m)
{
    for (size_t i = 0; i < MIGRATE_MAX; i++)
        if (m->out[i].state == OUT_FREE)
            return &m->out[i];
    return NULL;
}

/* Sends begin; check_only asks the target's checks only. fn gets ud. */
static int s_out_begin(migrate_out_t *o, bool check_only, cairn_peer_fn fn, void *ud)
{
    Cairn__Ghostd__MigrateBeginRequest b = CAIRN__GHOSTD__MIGRATE_BEGIN_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    struct utsname u;
    uint64_t now = cairn_now_ms();
    uint64_t left = o->deadline_ms > now ? o->deadline_ms - now : 1;

    uname(&u);
    b.id = o->id;
    b.gpid = o->gpid;
    b.uid = o->uid;
    b.gid = o->gid;
    b.largest_bytes = 0;
    b.memory_bytes = migrate_tree_rss((pid_t)o->pid, 0, &b.largest_bytes);
    b.kernel_release = u.release;
    b.check_only = check_only;
    b.new_pid = !o->is_job;
    b.postcopy = o->mode == MIGRATE_POST_COPY;
    b.no_verify = o->no_verify;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_BEGIN;
    req.migrate_begin = &b;
    int r = cairn_peers_call_as(o->m->peers, o->to, o->endpoint, &req.base,
                                (uint32_t)(left < MIGRATE_BEGIN_MS ? left : MIGRATE_BEGIN_MS),
                                o->as.uid == 0 ? NULL : &o->as, fn, ud);
    if (r == 0)
        o->calls++;
    return r;
}

/* ---- source: --check --------------------------------------------------- */

/* A check: ghost-dump --check here, the target's checks there; every
 * reason either gives, in one list. */
typedef struct s_check {
    migrate_out_t *o;
    bool dump_done, target_done;
    int n;                         /* reasons */
    char *reasons[16];
} s_check_t;

static void s_check_add(s_check_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_check_add(s_check_t *k, const char *fmt, ...)
{
    va_list ap;

    if (k->n >= 16)
        return;
    va_start(ap, fmt);
    if (vasprintf(&k->reasons[k->n], fmt, ap) > 0)
        k->n++;
    va_end(ap);
}

static void s_check_finish(s_check_t *k)
{
    Cairn__Ghostd__MigrateReply mr = CAIRN__GHOSTD__MIGRATE_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    migrate_out_t *o = k->o;

    if (!k->dump_done || !k->target_done)
        return;
    mr.gpid = o->gpid;
    mr.from = migrate_self(o->m);
    mr.to = o->to;
    mr.source_pid = o->pid;
    mr.checked_only = true;
    mr.movable = k->n == 0;
    mr.n_reasons = (size_t)k->n;
    mr.reasons = k->reasons;
    mr.total_us = cairn_now_us() - o->t0_us;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_REPLY;
    reply.migrate_reply = &mr;
    cairn_log_info("migrate-checked", "pid=%u to=%u movable=%d reasons=%d", o->pid, o->to,
                   (int)mr.movable, k->n);
    if (o->deferred)
        cairn_deferred_reply(o->m->gd->svc, o->deferred, &reply.base);
    o->deferred = NULL;
    for (int i = 0; i < k->n; i++)
        free(k->reasons[i]);
    free(k);
    o->state = OUT_ENDED;
    s_out_maybe_free(o);
}

static void s_check_on_dump(ghostd_helper_t *j, int status)
{
    s_check_t *k = j->hook_data;
    json_t *v = ghostd_helper_line(j, 0);
    char msg[1024];

    k->o->dump = NULL;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0 && v &&
          json_is_true(json_object_get(v, "checkpointable")))) {
        json_t *list = v ? json_object_get(json_object_get(v, "error"), "reasons") : NULL;
        size_t i;
        json_t *e;
        if (json_is_array(list) && json_array_size(list))   /* the reasons engineer's */
            json_array_foreach(list, i, e) s_check_add(k, "source: %s",
                                                       json_is_string(e) ? json_string_value(e)
                                                                         : "(not a string)");
        else {
            ghostd_helper_error(j, status, v, msg, sizeof msg);
            s_check_add(k, "source: %s", msg);
        }
    }
    json_decref(v);
    k->dump_done = true;
    s_check_finish(k);
}

static void s_check_on_target(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    s_check_t *k = userdata;
    const Cairn__Ghostd__MigrateState *st = migrate_state_of(reply);

    k->o->calls--;
    if (code != CAIRN_OK)
        s_check_add(k, "target: node %u %s: %s", node,
                    code == CAIRN_TIMEOUT ? "did not answer" : "refused", message);
    for (size_t i = 0; st && i < st->n_reasons; i++)
        s_check_add(k, "target: %s", st->reasons[i]);
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    k->target_done = true;
    s_check_finish(k);
}

static int s_out_check(migrate_out_t *o, cairn_error_t *err)
{
    s_check_t *k = calloc(1, sizeof *k);
    char pid[16], as[24];

    if (!k)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    k->o = o;
    snprintf(pid, sizeof pid, "%u", o->pid);
    char *argv[8] = { NULL, "--pid", pid, "--check" };
    int n = 4;
    if (ghostd_for_user(&o->as)) {
        snprintf(as, sizeof as, "%u:%u", o->as.uid, o->as.gid);
        argv[n++] = "--as";
        argv[n++] = as;
    }
    argv[n] = NULL;
    if (ghostd_helper_start(o->m->gd, GHOSTD_CHECKPOINT, argv, NULL, 0,
                            GHOSTD_DEFAULT_DEADLINE_MS, &o->dump, err) < 0) {
        free(k);
        return -EBUSY;
    }
    o->dump->on_exit = s_check_on_dump;
    o->dump->hook_data = k;
    o->dump->check_only = true;
    o->dump->pid = o->pid;
    if (s_out_begin(o, true, s_check_on_target, k) < 0) {
        s_check_add(k, "target: cannot reach node %u", o->to);
        k->target_done = true;
    }
    return 0;
}

/* ---- source: the request -------------------------------------------------- */

int migrate_handle(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    migrate_t *m = gd->migrate;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__MigrateRequest *mr = body->migrate;
    const Cairn__Header *h = cairn_request_header(req);
    uint64_t t0 = cairn_now_us();
    uint64_t deadline = h && h->deadline_ms ? h->deadline_ms : GHOSTD_DEFAULT_DEADLINE_MS;
    cairn_error_t err = { 0 };
    migrate_out_t *o;

    if (!mr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate: request body is empty");
    if (!(o = s_out_claim(m)))
        return cairn_request_fail(req, CAIRN_BUSY, "%d migrations are under way from "
                                  "node %u; try again later", MIGRATE_MAX, migrate_self(m));
    if (deadline > GHOSTD_MAX_DEADLINE_MS)
        deadline = GHOSTD_MAX_DEADLINE_MS;
    deadline -= deadline / 20 < 1000 ? deadline / 20 : 1000;   /* answer in time */
    int pr = s_out_prepare(m, req, mr, o, &err);
    if (pr < 0) {
        free(o->endpoint);
        s_out_reset(o);
        if (pr == -EREMOTE && !mr->local_only)   /* another node runs it */
            return migrate_forward(m, req, mr, deadline);
        cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(err.code),
                       err.message);
        return cairn_request_fail(req, err.code, "%s", err.message);
    }
    o->t0_us = t0;
    o->deadline_ms = cairn_now_ms() + deadline;
    snprintf(o->id, sizeof o->id, "%u-%u-%llu-%u", migrate_self(m), o->pid,
             (unsigned long long)(cairn_now_us() / 1000), ++m->serial);
    if (mr->check_only) {
        o->state = OUT_BEGIN;
        if (s_out_check(o, &err) < 0) {
            o->state = OUT_ENDED;
            s_out_maybe_free(o);
            return cairn_request_fail(req, err.code, "%s", err.message);
        }
        o->deferred = cairn_request_defer(req);
        return CAIRN_REPLY_DEFERRED;
    }
    if (!(o->buf = malloc(MIGRATE_CHUNK + 1)) || s_out_begin(o, false, s_on_begin_answer,
                                                             o) < 0) {
        o->state = OUT_ENDED;
        s_out_maybe_free(o);
        return cairn_request_fail(req, CAIRN_UNAVAILABLE, "migrate: cannot reach node %u",
                                  mr->to);
    }
    o->state = OUT_BEGIN;
    o->deferred = cairn_request_defer(req);
    o->timer = cairn_loop_add_timer(migrate_loop(m), o->deadline_ms - cairn_now_ms(), 0,
                                    s_on_out_deadline, o);
    if (o->is_job)   /* recorded in job.json before anything freezes */
        ghostd_jobs_set_migrating(m->gd->jobs, o->gpid, true, o->to, o->id);
    cairn_log_info("migrate", "id=%s pid=%u to=%u uid=%u", o->id, o->pid, o->to, o->uid);
    return CAIRN_REPLY_DEFERRED;
}
