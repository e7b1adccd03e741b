/* restart-ckpt.c - the checkpoints of this node's jobs and their
 * transfer to a replica node (restart.h, restart-private.h).
 *
 * Design. One restart_ckpt_t per job of this node with
 * checkpoint_every_s: its repeating timer, its tracker (ghost-dump
 * --serve-fd 3: a helper with no deadline, on_output reading its answers
 * line by line, fd 3 our pipe of "checkpoint DIR" lines; its end stops
 * it), then the transfer of the files the replica lacks of the answer's
 * chain (the newest alone when the replica confirmed the chain before
 * it): each file read 1 MiB at a time and sent as replica_put chunks,
 * RESTART_WINDOW unanswered at most. A replica that refuses a delta for
 * want of its parents is sent the chain whole at once. With no tracker
 * slot, the tick dumps the job whole in place (ghost-dump --in-place
 * over image.ghost, then a file, as before trackers). A restart_ckpt_t
 * whose job ended is freed once no callback of it is due. The replica is
 * the rendezvous home of the gpid among the other alive ghostds; when it
 * changes, the old one is told to drop its copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>

#include "jobinfo.h"
#include "jobs.h"
#include "log.h"
#include "restart-private.h"
#include "util/clock.h"
#include "util/fileio.h"

/* The replica of gpid: the rendezvous home of the gpid among the alive
 * ghostds but this node; 0 when there is none. */
static uint32_t s_pick_replica(restart_t *r, const char *gpid)
{
    uint32_t ids[CAIRN_VIEW_MAX_NODES], others[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(r->view, ids), k = 0;

    for (size_t i = 0; i < n; i++)
        if (ids[i] != restart_self(r))
            others[k++] = ids[i];
    return k ? cairn_view_home_among(gpid, others, k) : 0;
}

/* ---- the checkpoints of this node's jobs ------------------------------- */

static restart_ckpt_t *s_ckpt_find(restart_t *r, const char *gpid)
{
    for (restart_ckpt_t *c = r->ckpts; c; c = c->next)
        if (!c->gone && strcmp(c->gpid, gpid) == 0)
            return c;
    return NULL;
}

void restart_ckpt_close(restart_ckpt_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* The tracker is told to stop: the end of its fd 3 (it answers "stopped"
 * and exits; the kernel drops its write protection with its fds). */
void restart_tracker_stop(restart_ckpt_t *c)
{
    if (c->cmd_fd >= 0)
        close(c->cmd_fd);
    c->cmd_fd = -1;
}

/* Frees c once it is gone and nothing of it is due; its local chain goes
 * with it. */
static void s_ckpt_maybe_free(restart_ckpt_t *c)
{
    restart_t *r = c->r;
    char dir[PATH_MAX];

    if (!c->gone || c->calls || c->dump || c->tracker)
        return;
    for (restart_ckpt_t **p = &r->ckpts; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    snprintf(dir, sizeof dir, "%s/%.31s", r->ckpt_dir, c->gpid);
    restart_remove_dir(dir);
    restart_ckpt_close(c);
    restart_tracker_stop(c);
    free(c);
}

static void s_drop_replica_at(restart_t *r, uint32_t node, const char *gpid);
static void s_ckpt_send_file(restart_ckpt_t *c);

/* The transfer ended (ok or not): back to idle. A replica that refused a
 * delta for want of its parents is sent the whole chain at once. */
static void s_ckpt_finish(restart_ckpt_t *c, bool ok, const char *why)
{
    restart_t *r = c->r;
    uint64_t took = cairn_now_ms() - c->began_mono;

    restart_ckpt_close(c);
    if (!ok) {
        c->n_held = 0;   /* what the replica holds is not known any more */
        if (c->n_chain && c->send_from > 0 && !c->resent &&
            c->fail_code == CAIRN_FAILED_PRECONDITION) {
            cairn_log_info("checkpoint-resend", "gpid=%s replica=%u msg=\"%s; sending "
                           "the whole chain\"", c->gpid, c->replica, why);
            c->resent = true;
            c->send_from = c->send_at = 0;
            s_ckpt_send_file(c);
            return;
        }
        c->state = CK_IDLE;
        c->failures++;
        cairn_log_warn(0, "checkpoint-failed", "gpid=%s replica=%u msg=\"%s; the "
                       "next one in %u s\"", c->gpid, c->replica, why, c->every_s);
        return;
    }
    c->state = CK_IDLE;
    c->done++;
    int w = ghostd_jobs_checkpointed(r->gd->jobs, c->gpid, c->began_ms, c->replica);
    if (w < 0 && w != -ENOENT)
        cairn_log_warn(w, "checkpoint", "gpid=%s msg=\"cannot rewrite job.json, "
                       "ignoring\"", c->gpid);
    cairn_log_info("checkpoint", "gpid=%s replica=%u file=%s full=%s chain=%zu "
                   "image_bytes=%llu sent_bytes=%llu frozen_us=%llu took_ms=%llu n=%llu",
                   c->gpid, c->replica, c->n_chain ? c->chain[c->n_chain - 1]
                   : GHOSTD_IMAGE_NAME, c->full ? "yes" : "no", c->n_chain,
                   (unsigned long long)c->image_bytes, (unsigned long long)c->sent_bytes,
                   (unsigned long long)c->frozen_us, (unsigned long long)took,
                   (unsigned long long)c->done);
    if (c->prev_replica && c->prev_replica != c->replica)
        s_drop_replica_at(r, c->prev_replica, c->gpid);
    c->prev_replica = c->replica;
}

/* A file is whole on the replica: it holds the chain up to it. */
static void s_ckpt_file_done(restart_ckpt_t *c)
{
    restart_ckpt_close(c);
    if (c->n_chain == 0 || c->send_at + 1 >= c->n_chain) {
        if (c->n_chain) {
            memcpy(c->held, c->chain, c->n_chain * sizeof c->chain[0]);
            c->n_held = c->n_chain;
        }
        c->held_by = c->replica;
        s_ckpt_finish(c, true, NULL);
        return;
    }
    c->send_at++;
    s_ckpt_send_file(c);
}

static void s_ckpt_pump(restart_ckpt_t *c);

static void s_on_put_answer(void *userdata, uint32_t node, int code, const char *message,
                            ProtobufCMessage *reply)
{
    restart_ckpt_t *c = userdata;
    Cairn__Ghostd__Reply *rep = (Cairn__Ghostd__Reply *)reply;
    bool complete = code == CAIRN_OK && rep &&
                    rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_REPLICA_PUT_REPLY &&
                    rep->replica_put_reply->complete;

    c->calls--;
    c->in_flight--;
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (c->gone || c->state != CK_SENDING) {
        s_ckpt_maybe_free(c);
        return;
    }
    if (code != CAIRN_OK && !c->failed) {
        char why[1200];
        snprintf(why, sizeof why, "replica node %u: %s", node,
                 message ? message : cairn_code_name(code));
        c->failed = true;
        c->fail_code = code;
        if (c->in_flight == 0)
            s_ckpt_finish(c, false, why);
        else
            cairn_log_warn(0, "checkpoint", "gpid=%s msg=\"%s\"", c->gpid, why);
        return;
    }
    if (c->failed) {
        if (c->in_flight == 0)
            s_ckpt_finish(c, false, "the replica refused a chunk");
        return;
    }
    if (c->last_sent && c->in_flight == 0) {
        if (complete)
            s_ckpt_file_done(c);
        else
            s_ckpt_finish(c, false, "the replica did not say the image is whole");
        return;
    }
    s_ckpt_pump(c);
}

/* Sends chunks of the file while the window has room. */
static void s_ckpt_pump(restart_ckpt_t *c)
{
    restart_t *r = c->r;
    const char *ep = cairn_view_endpoint(r->view, c->replica);
    char *chain[RESTART_MAX_CHAIN];

    while (!c->last_sent && c->in_flight < RESTART_WINDOW) {
        Cairn__Ghostd__ReplicaPutRequest put = CAIRN__GHOSTD__REPLICA_PUT_REQUEST__INIT;
        Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
        _cleanup_free_ char *record = NULL;
        size_t want = c->size - c->off < RESTART_CHUNK ? c->size - c->off : RESTART_CHUNK;
        ssize_t got = want ? pread(c->fd, r->buf, want, (off_t)c->off) : 0;

        if (got < 0 || (size_t)got != want) {
            c->failed = true;
            if (c->in_flight == 0)
                s_ckpt_finish(c, false, "cannot read the image back");
            return;
        }
        put.id = c->id;
        put.gpid = c->gpid;
        put.seq = c->seq;
        put.data.data = r->buf;
        put.data.len = want;
        put.last = c->off + want == c->size;
        if (c->n_chain)
            put.file = c->chain[c->send_at];
        if (put.last) {
            const ghostd_jobrec_t *rec = ghostd_jobs_running(r->gd->jobs, c->gpid);
            if (!rec || !(record = ghostd_jobrec_dumps(rec))) {
                c->failed = true;
                if (c->in_flight == 0)
                    s_ckpt_finish(c, false, "the job no longer runs here");
                return;
            }
            put.record = record;
            put.checkpoint_ms = c->began_ms;
            for (size_t i = 0; c->n_chain && i <= c->send_at; i++)
                chain[i] = c->chain[i];
            put.n_chain = c->n_chain ? c->send_at + 1 : 0;
            put.chain = chain;
        }
        req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_REPLICA_PUT;
        req.replica_put = &put;
        int e = ep ? cairn_peers_call(r->peers, c->replica, ep, &req.base,
                                      RESTART_CHUNK_MS, s_on_put_answer, c)
                   : -EHOSTUNREACH;
        if (e < 0) {
            c->failed = true;
            if (c->in_flight == 0)
                s_ckpt_finish(c, false, "cannot reach the replica");
            return;
        }
        c->calls++;
        c->in_flight++;
        c->seq++;
        c->off += want;
        c->sent_bytes += want;
        c->last_sent = put.last;
    }
}

/* Starts the transfer of chain[send_at] (or of the whole image.ghost). */
static void s_ckpt_send_file(restart_ckpt_t *c)
{
    restart_t *r = c->r;
    char path[PATH_MAX + 64];
    struct stat st;

    snprintf(path, sizeof path, "%s/%.31s/%s", r->ckpt_dir, c->gpid,
             c->n_chain ? c->chain[c->send_at] : GHOSTD_IMAGE_NAME);
    c->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (c->fd < 0 || fstat(c->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
        s_ckpt_finish(c, false, "cannot open the image just written");
        return;
    }
    c->size = (uint64_t)st.st_size;
    c->off = 0;
    c->seq = 0;
    c->last_sent = false;
    c->failed = false;
    c->fail_code = 0;
    snprintf(c->id, sizeof c->id, "%u-%s-%llu-%zu", restart_self(r), c->gpid,
             (unsigned long long)c->began_ms, c->send_at);
    c->state = CK_SENDING;
    s_ckpt_pump(c);
}

/* The checkpoint is written: send the replica what it lacks of it -- the
 * newest file when it holds the chain before it, else the whole chain
 * from its full image (a new replica, one that failed, a new chain). */
static void s_ckpt_send(restart_ckpt_t *c)
{
    restart_t *r = c->r;

    c->replica = s_pick_replica(r, c->gpid);
    c->sent_bytes = 0;
    c->resent = false;
    if (!c->replica) {
        s_ckpt_finish(c, false, "no other alive ghostd to hold the replica");
        return;
    }
    c->send_from = 0;
    if (c->n_chain && c->held_by == c->replica && c->n_held < c->n_chain) {
        size_t k = 0;
        while (k < c->n_held && strcmp(c->held[k], c->chain[k]) == 0)
            k++;
        if (k == c->n_held)
            c->send_from = k;
    }
    c->send_at = c->send_from;
    s_ckpt_send_file(c);
}

static void s_ckpt_on_dump_exit(ghostd_helper_t *j, int status)
{
    restart_ckpt_t *c = j->hook_data;
    _cleanup_(restart_json_decrefp) json_t *v = ghostd_helper_line(j, -1);
    char msg[1200];

    c->dump = NULL;
    j->exited = WIFEXITED(status);   /* it cleaned up after itself: keep the image */
    if (c->gone) {
        s_ckpt_maybe_free(c);
        return;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ghostd_helper_error(j, status, v, msg, sizeof msg);
        c->state = CK_IDLE;
        c->failures++;
        cairn_log_warn(0, "checkpoint-failed", "gpid=%s msg=\"ghost-dump: %s; the "
                       "next one in %u s\"", c->gpid, msg, c->every_s);
        return;
    }
    c->frozen_us = ghostd_json_u64(v, "frozen_us");
    c->image_bytes = ghostd_json_u64(v, "image_bytes");
    c->full = true;
    c->n_chain = 0;
    c->n_held = 0;   /* the replica's chain, if any, is replaced whole */
    s_ckpt_send(c);
}

/* ---- the tracker ---------------------------------------------------------- */

/* One answer of the tracker: a checkpoint written (sent on to the
 * replica), a refusal (this checkpoint failed; its next one is full), or
 * its last word ("stopped"). */
static void s_tracker_answer(restart_ckpt_t *c, ghostd_helper_t *j, json_t *v)
{
    char msg[1200];

    if (json_is_true(json_object_get(v, "stopped")) || c->gone)
        return;
    if (c->state != CK_DUMPING) {
        cairn_log_warn(0, "tracker", "gpid=%s msg=\"an answer nobody asked for, ignoring\"",
                       c->gpid);
        return;
    }
    j->pid = 0;   /* checkpoints of the job may be asked again */
    json_t *chain = json_object_get(v, "chain");
    size_t n = json_array_size(chain);
    bool ok = json_is_integer(json_object_get(v, "checkpoint")) && n > 0 &&
              n <= RESTART_MAX_CHAIN;
    for (size_t i = 0; ok && i < n; i++) {
        const char *name = json_string_value(json_array_get(chain, i));
        ok = name && restart_file_name_ok(name);
        if (ok)
            snprintf(c->chain[i], sizeof c->chain[i], "%s", name);
    }
    if (!ok) {
        if (json_object_get(v, "error"))
            ghostd_helper_error(j, 1 << 8, v, msg, sizeof msg);
        else
            snprintf(msg, sizeof msg, "its answer names no chain of at most %d files",
                     RESTART_MAX_CHAIN);
        c->state = CK_IDLE;
        c->failures++;
        cairn_log_warn(0, "checkpoint-failed", "gpid=%s msg=\"tracker: %s; the next "
                       "one in %u s\"", c->gpid, msg, c->every_s);
        return;
    }
    c->n_chain = n;
    c->full = json_is_true(json_object_get(v, "full"));
    c->frozen_us = ghostd_json_u64(v, "frozen_us");
    c->image_bytes = ghostd_json_u64(v, "image_bytes");
    s_ckpt_send(c);
}

/* Each whole line the tracker printed is one answer; the rest waits. */
static void s_tracker_lines(ghostd_helper_t *j)
{
    restart_ckpt_t *c = j->hook_data;
    size_t start = 0;

    for (;;) {
        char *nl = memchr(j->out + start, '\n', j->out_len - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (j->out + start));
        json_t *v = json_loadb(j->out + start, len, 0, NULL);
        if (json_is_object(v))
            s_tracker_answer(c, j, v);
        else if (len)
            cairn_log_warn(0, "tracker", "gpid=%s msg=\"a line that is no JSON object, "
                           "ignoring\"", c->gpid);
        json_decref(v);
        start += len + 1;
    }
    if (start == 0 && j->out_len == sizeof j->out - 1)
        start = j->out_len;   /* one line longer than all we keep: dropped */
    memmove(j->out, j->out + start, j->out_len - start);
    j->out_len -= start;
}

static void s_tracker_on_output(ghostd_helper_t *j)
{
    s_tracker_lines(j);
}

static void s_tracker_on_exit(ghostd_helper_t *j, int status)
{
    restart_ckpt_t *c = j->hook_data;
    restart_t *r = c->r;
    char msg[1200];

    s_tracker_lines(j);
    c->tracker = NULL;
    r->trackers--;
    restart_tracker_stop(c);
    if (c->gone) {
        s_ckpt_maybe_free(c);
        return;
    }
    if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0) {
        ghostd_helper_error(j, status, NULL, msg, sizeof msg);
        cairn_log_warn(0, "tracker-ended", "gpid=%s msg=\"%s; the next checkpoint "
                       "starts a new one (full)\"", c->gpid, msg);
    } else {
        cairn_log_info("tracker-ended", "gpid=%s", c->gpid);
    }
    if (c->state == CK_DUMPING) {
        c->state = CK_IDLE;
        c->failures++;
        cairn_log_warn(0, "checkpoint-failed", "gpid=%s msg=\"the tracker ended before "
                       "it answered; the next one in %u s\"", c->gpid, c->every_s);
    }
}

/* A tracker for c's job (pid), if a tracker slot is free: 0, or -errno
 * (then the checkpoint is a full dump). */
static int s_tracker_start(restart_ckpt_t *c, pid_t pid, const char *dir)
{
    restart_t *r = c->r;
    char pidbuf[16];
    char *argv[] = { NULL, "--pid", pidbuf, "--serve-fd", "3", NULL };
    cairn_error_t err = { 0 };
    int p[2];

    if (r->trackers >= GHOSTD_MAX_TRACKERS) {
        if (!c->untracked)
            cairn_log_warn(0, "checkpoint-untracked", "gpid=%s msg=\"%d jobs are "
                           "tracked already: this one's checkpoints are full dumps\"",
                           c->gpid, GHOSTD_MAX_TRACKERS);
        c->untracked = true;
        return -EBUSY;
    }
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
    int e = ghostd_helper_start(r->gd, GHOSTD_CHECKPOINT, argv, &p[0], 1, 0, &c->tracker,
                                &err);
    close(p[0]);
    if (e < 0) {
        close(p[1]);
        c->tracker = NULL;
        cairn_log_warn(e, "checkpoint-untracked", "gpid=%s msg=\"no tracker: %s; a full "
                       "dump instead\"", c->gpid, err.message);
        return e;
    }
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    c->cmd_fd = p[1];
    c->untracked = false;
    r->trackers++;
    snprintf(c->tracker->dir, sizeof c->tracker->dir, "%s", dir);
    c->tracker->on_output = s_tracker_on_output;
    c->tracker->on_exit = s_tracker_on_exit;
    c->tracker->hook_data = c;
    cairn_log_info("tracker", "gpid=%s pid=%d helper=%d", c->gpid, (int)pid,
                   (int)c->tracker->helper);
    return 0;
}

/* Asks the tracker for a checkpoint into dir: 0, or -errno (it is
 * stopped: the next tick starts a new one). */
static int s_tracker_ask(restart_ckpt_t *c, pid_t pid, const char *dir)
{
    char line[PATH_MAX + 16];
    int n = snprintf(line, sizeof line, "checkpoint %s\n", dir);

    if (n < 0 || (size_t)n >= sizeof line || write(c->cmd_fd, line, (size_t)n) != n) {
        int e = n < 0 || (size_t)n >= sizeof line ? -ENAMETOOLONG : -errno;
        cairn_log_warn(e, "checkpoint-failed", "gpid=%s msg=\"cannot ask the tracker; "
                       "it is stopped\"", c->gpid);
        restart_tracker_stop(c);
        ghostd_helper_kill(c->tracker);
        return e;
    }
    c->tracker->pid = (uint32_t)pid;   /* a checkpoint asked meanwhile is busy */
    c->state = CK_DUMPING;
    return 0;
}

/* A full in-place dump (no tracker slot): image.ghost a file of its own,
 * never written through a tracker's symlink. */
static void s_full_dump(restart_ckpt_t *c, pid_t host_pid, const char *dir)
{
    restart_t *r = c->r;
    char pid[16], image[PATH_MAX + 16];
    cairn_error_t err = { 0 };
    struct stat st;

    snprintf(image, sizeof image, "%s/" GHOSTD_IMAGE_NAME, dir);
    if (lstat(image, &st) == 0 && !S_ISREG(st.st_mode)) {
        restart_remove_dir(dir);   /* an old tracker's chain */
        restart_mkdir(dir, 0700);
    }
    snprintf(pid, sizeof pid, "%d", (int)host_pid);
    char *argv[] = { NULL, "--pid", pid, "--out", image, "--leave-running",
                     "--in-place", NULL };
    int e = ghostd_helper_start(r->gd, GHOSTD_CHECKPOINT, argv, NULL, 0,
                                GHOSTD_DEFAULT_DEADLINE_MS, &c->dump, &err);
    if (e < 0) {
        cairn_log_warn(e, "checkpoint-skipped", "gpid=%s msg=\"%s\"", c->gpid,
                       err.message);
        return;
    }
    c->dump->pid = (uint32_t)host_pid;   /* a checkpoint asked meanwhile is busy */
    c->dump->leave_running = true;
    c->dump->in_place = true;
    snprintf(c->dump->dir, sizeof c->dump->dir, "%s", dir);
    snprintf(c->dump->image, sizeof c->dump->image, "%s", image);
    c->dump->on_exit = s_ckpt_on_dump_exit;
    c->dump->hook_data = c;
    c->state = CK_DUMPING;
}

/* One tick: asks the job's tracker for a checkpoint (starting one first
 * if none runs), or dumps the job whole in place when no tracker slot is
 * free -- unless the last one is still under way, the job is gone or
 * moving, or this side has no quorum. */
static int s_ckpt_on_tick(cairn_loop_t *loop, int64_t id, void *userdata)
{
    restart_ckpt_t *c = userdata;
    restart_t *r = c->r;
    const ghostd_jobrec_t *rec = ghostd_jobs_running(r->gd->jobs, c->gpid);
    char dir[PATH_MAX];

    if (!rec || c->moving)
        return 0;   /* ended or not yet watched: restart_job_ended stops us */
    if (c->state != CK_IDLE) {
        cairn_log_info("checkpoint-skipped", "gpid=%s msg=\"the last one is still "
                       "%s\"", c->gpid, c->state == CK_DUMPING ? "dumping" : "sending");
        return 0;
    }
    if (!cairn_view_known(r->view) || !cairn_view_quorum(r->view))
        return 0;   /* cut off: the majority may restart it; nothing to replicate to */
    snprintf(dir, sizeof dir, "%s/%.31s", r->ckpt_dir, c->gpid);
    restart_mkdir(dir, 0700);
    c->began_ms = cairn_realtime_ms();
    c->began_mono = cairn_now_ms();
    if (c->tracker && c->cmd_fd < 0)
        return 0;   /* stopping: the next tick starts a new one */
    if (c->tracker || s_tracker_start(c, rec->host_pid, dir) == 0)
        s_tracker_ask(c, rec->host_pid, dir);
    else
        s_full_dump(c, rec->host_pid, dir);
    return 0;
}

void restart_job_running(ghostd_t *gd, const char *gpid)
{
    restart_t *r = gd->restart;
    const ghostd_jobrec_t *rec = r ? ghostd_jobs_running(gd->jobs, gpid) : NULL;
    restart_ckpt_t *c = rec ? s_ckpt_find(r, gpid) : NULL;

    if (c)
        c->moving = false;   /* it stayed (a migration that failed) */
    if (!rec || !rec->checkpoint_every_s || c)
        return;
    c = calloc(1, sizeof *c);
    if (!c) {
        cairn_log_err(-ENOMEM, "checkpoint", "gpid=%s msg=\"out of memory: no "
                      "checkpoints for this job\"", gpid);
        return;
    }
    c->r = r;
    c->fd = -1;
    c->cmd_fd = -1;
    snprintf(c->gpid, sizeof c->gpid, "%s", gpid);
    c->every_s = rec->checkpoint_every_s;
    c->prev_replica = rec->replica;
    c->timer = cairn_loop_add_timer(restart_loop(r), (uint64_t)c->every_s * 1000,
                                    (uint64_t)c->every_s * 1000, s_ckpt_on_tick, c);
    if (c->timer < 0) {
        cairn_log_err((int)c->timer, "checkpoint", "gpid=%s msg=\"no timer: no "
                      "checkpoints for this job\"", gpid);
        free(c);
        return;
    }
    c->next = r->ckpts;
    r->ckpts = c;
    cairn_log_info("checkpoints", "gpid=%s every_s=%u restart_on_failure=%s", gpid,
                   c->every_s, rec->restart_on_failure ? "yes" : "no");
}

void restart_job_moving(ghostd_t *gd, uint32_t host_pid, bool moving)
{
    restart_t *r = gd ? gd->restart : NULL;

    for (restart_ckpt_t *c = r ? r->ckpts : NULL; c; c = c->next) {
        const ghostd_jobrec_t *rec = ghostd_jobs_running(gd->jobs, c->gpid);
        if (c->gone || !rec || rec->host_pid <= 0 || (uint32_t)rec->host_pid != host_pid)
            continue;
        c->moving = moving;
        if (moving && c->tracker) {
            /* killed, not asked to stop: a checkpoint under way would hold
             * the tree the migration's dump is about to freeze; the
             * kernel drops the write protection with the tracker's fds */
            restart_tracker_stop(c);
            ghostd_helper_kill(c->tracker);
            cairn_log_info("tracker-stopping", "gpid=%s msg=\"the job is migrating\"",
                           c->gpid);
        }
    }
}

static void s_ckpt_stop(restart_ckpt_t *c)
{
    restart_t *r = c->r;

    if (c->timer > 0)
        cairn_loop_cancel_timer(restart_loop(r), c->timer);
    c->timer = 0;
    if (c->dump)
        ghostd_helper_kill(c->dump);   /* on_exit frees c once reaped */
    restart_tracker_stop(c);                 /* it stops; on_exit frees c */
    c->gone = true;
    s_ckpt_maybe_free(c);
}

void restart_job_ended(ghostd_t *gd, const char *gpid, uint32_t replica)
{
    restart_t *r = gd->restart;
    restart_ckpt_t *c = r ? s_ckpt_find(r, gpid) : NULL;

    if (!r)
        return;
    if (c)
        s_ckpt_stop(c);
    if (replica && replica != restart_self(r))
        s_drop_replica_at(r, replica, gpid);
}

/* ---- dropping a replica elsewhere --------------------------------------- */

static void s_on_drop_answer(void *userdata, uint32_t node, int code, const char *message,
                             ProtobufCMessage *reply)
{
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (code != CAIRN_OK)
        cairn_log_info("replica-drop", "node=%u msg=\"%s, ignoring\"", node,
                       message ? message : cairn_code_name(code));
}

/* Best effort: a replica left behind is removed by its own node's
 * clean-up once the job's record names another replica or an end. */
static void s_drop_replica_at(restart_t *r, uint32_t node, const char *gpid)
{
    Cairn__Ghostd__ReplicaDropRequest drop = CAIRN__GHOSTD__REPLICA_DROP_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    const char *ep = cairn_view_alive(r->view, node) ? cairn_view_endpoint(r->view, node)
                                                    : NULL;

    if (!ep)
        return;
    drop.gpid = (char *)gpid;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_REPLICA_DROP;
    req.replica_drop = &drop;
    cairn_peers_call(r->peers, node, ep, &req.base, 3000, s_on_drop_answer, NULL);
}
