/* restart.c - restart on failure: periodic checkpoints, their replicas,
 * and restarts from them when a node dies (restart.h).
 *
 * Design. Three tables, all driven by the loop, nothing blocks but the
 * writes of a replica's chunks into its spool file (a tmpfs):
 *
 * - s_ckpt_t, one per job of this node with checkpoint_every_s: its
 *   repeating timer, its tracker (ghost-dump --serve-fd 3: a helper with
 *   no deadline, on_output reading its answers line by line, fd 3 our
 *   pipe of "checkpoint DIR" lines; its end stops it), then the transfer
 *   of the files the replica lacks of the answer's chain (the newest
 *   alone when the replica confirmed the chain before it): each file read
 *   1 MiB at a time and sent as replica_put chunks, RESTART_WINDOW
 *   unanswered at most. A replica that refuses a delta for want of its
 *   parents is sent the chain whole at once. With no tracker slot, the
 *   tick dumps the job whole in place (ghost-dump --in-place over
 *   image.ghost, then a file, as before trackers). An s_ckpt_t whose
 *   job ended is freed once no callback of it is due.
 *
 * - s_in_t, one per replica transfer under way here: the .part file,
 *   the next seq. Seq 0 of a new id replaces whatever the gpid had under
 *   way; the last chunk renames the image into place and writes the
 *   job's record beside it.
 *
 * - the scan, every RESTART_SCAN_MS and at every view change: with
 *   quorum, the jobs of dead nodes (restart from the replica here, or
 *   mark lost when this node is the gpid's home and nobody can restart
 *   it); always, this node's stale copies (jobs.c supersedes them); now
 *   and then, replicas nobody needs any more.
 *
 * Times: last_checkpoint_ms is when the tick began (before the freeze),
 * so lost_ms (now - that) never under-counts the work lost.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "engine/place.h"
#include "jobinfo.h"
#include "jobs.h"
#include "log.h"
#include "peer.h"
#include "restart.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"
#include "view.h"

CAIRN_DEFINE_CLEANUP(s_json_decrefp, json_t *, json_decref);

#define S_GC_EVERY 10              /* scans between replica clean-ups */
#define S_MAX_RESTORES 4           /* restores from replicas at once */
#define S_MAX_CHAIN 64             /* files of a chain (the tracker compacts at 17) */
#define S_FILE_MAX 32              /* "image.ghost.N" */

typedef char s_name_t[S_FILE_MAX];

typedef enum { CK_IDLE, CK_DUMPING, CK_SENDING } s_ck_state_t;

/* A job of this node checkpointed every `every_s`. */
typedef struct s_ckpt {
    struct restart *r;
    char gpid[GHOSTD_GPID_MAX];
    uint32_t every_s;
    int64_t timer;                /* the tick, repeating */
    s_ck_state_t state;
    bool gone;                    /* the job ended: free once nothing is due */
    ghostd_helper_t *dump;        /* ghost-dump while it runs (full, untracked) */
    /* the tracker (incremental checkpoints): ghost-dump --serve-fd 3 */
    ghostd_helper_t *tracker;     /* NULL when none runs */
    int cmd_fd;                   /* its fd 3's other end, -1 none */
    bool untracked;               /* said once: no tracker slot, full dumps */
    bool moving;                  /* migrating away: no checkpoints */
    uint64_t began_ms;            /* unix ms the tick began */
    uint64_t began_mono;          /* monotonic ms, for the log */
    uint64_t frozen_us, image_bytes;
    bool full;                    /* this checkpoint's image is full */
    /* This checkpoint's chain (the tracker's answer), the full image
     * first; n_chain 0: a whole image.ghost (untracked). The files
     * chain[send_from ..] are sent, one transfer each. */
    s_name_t chain[S_MAX_CHAIN];
    size_t n_chain, send_from, send_at;
    /* What replica held_by holds for sure: held[0 .. n_held) */
    uint32_t held_by;
    s_name_t held[S_MAX_CHAIN];
    size_t n_held;
    bool resent;                  /* this checkpoint sends the whole chain again */
    int fail_code;                /* the replica's refusal */
    /* the transfer of one file */
    char id[128];
    int fd;                       /* the file, -1 closed */
    uint64_t size, off;           /* file bytes, bytes sent */
    uint64_t sent_bytes;          /* this checkpoint's, all files */
    uint64_t seq;                 /* next chunk */
    unsigned in_flight;           /* chunks unanswered */
    bool last_sent, failed;
    uint32_t replica, prev_replica; /* now, and the last whole one's */
    unsigned calls;               /* peer callbacks due */
    uint64_t done, failures;      /* checkpoints replicated, failed */
    struct s_ckpt *next;
} s_ckpt_t;

/* A replica coming in. */
typedef struct s_in {
    bool used;
    char id[128];
    char gpid[GHOSTD_GPID_MAX];
    s_name_t file;                /* image.ghost.N, "" a whole image.ghost */
    uint32_t from;
    int fd;                       /* <file>.part */
    uint64_t next_seq, written;
    uint64_t touched_ms;          /* monotonic */
} s_in_t;

/* A restore from a replica under way. */
typedef struct s_restore {
    struct restart *r;
    bool used;
    char gpid[GHOSTD_GPID_MAX];
    ghostd_helper_t *rst;
} s_restore_t;

typedef struct restart {
    ghostd_t *gd;
    cairn_view_t *view;           /* the alive ghostds, quorum */
    cairn_peers_t *peers;         /* to them */
    s_ckpt_t *ckpts;              /* this node's checkpointed jobs */
    unsigned trackers;            /* of them, with a tracker running */
    s_in_t in[RESTART_MAX_IN];
    s_restore_t restores[S_MAX_RESTORES];
    int64_t scan_timer;
    unsigned scans;
    char ckpt_dir[3072];          /* <spool>/ckpt */
    char replica_dir[3072];       /* <spool>/replicas */
    uint8_t *buf;                 /* RESTART_CHUNK: one chunk's bytes */
} restart_t;

static cairn_loop_t *s_loop(const restart_t *r)
{
    return cairn_service_loop(r->gd->svc);
}

static uint32_t s_self(const restart_t *r)
{
    return cairn_service_node(r->gd->svc)->id;
}

static void s_mkdir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        cairn_log_warn(-errno, "restart", "msg=\"cannot make %s, ignoring\"", path);
}

/* Removes dir and the files restart.c and a tracker make in it (image.ghost,
 * image.ghost.N, their .part, the symlink's temporary, job.json). */
static void s_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char path[PATH_MAX + 300];

    for (struct dirent *e; d && (e = readdir(d));)
        if (strncmp(e->d_name, GHOSTD_IMAGE_NAME, strlen(GHOSTD_IMAGE_NAME)) == 0 ||
            strncmp(e->d_name, "." GHOSTD_IMAGE_NAME, strlen(GHOSTD_IMAGE_NAME) + 1) == 0 ||
            strncmp(e->d_name, "job.json", 8) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* name is image.ghost.N (N decimal, no sign, at most 19 digits). */
static bool s_file_name_ok(const char *name)
{
    size_t k = strlen(GHOSTD_IMAGE_NAME);
    size_t len = strlen(name);

    if (len <= k + 1 || len > k + 20 || strncmp(name, GHOSTD_IMAGE_NAME ".", k + 1) != 0)
        return false;
    for (const char *p = name + k + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* The replica of gpid: the rendezvous home of the gpid among the alive
 * ghostds but this node; 0 when there is none. */
static uint32_t s_pick_replica(restart_t *r, const char *gpid)
{
    uint32_t ids[CAIRN_VIEW_MAX_NODES], others[CAIRN_VIEW_MAX_NODES];
    size_t n = cairn_view_members(r->view, ids), k = 0;

    for (size_t i = 0; i < n; i++)
        if (ids[i] != s_self(r))
            others[k++] = ids[i];
    return k ? cairn_view_home_among(gpid, others, k) : 0;
}

/* ---- the checkpoints of this node's jobs ------------------------------- */

static s_ckpt_t *s_ckpt_find(restart_t *r, const char *gpid)
{
    for (s_ckpt_t *c = r->ckpts; c; c = c->next)
        if (!c->gone && strcmp(c->gpid, gpid) == 0)
            return c;
    return NULL;
}

static void s_ckpt_close(s_ckpt_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* The tracker is told to stop: the end of its fd 3 (it answers "stopped"
 * and exits; the kernel drops its write protection with its fds). */
static void s_tracker_stop(s_ckpt_t *c)
{
    if (c->cmd_fd >= 0)
        close(c->cmd_fd);
    c->cmd_fd = -1;
}

/* Frees c once it is gone and nothing of it is due; its local chain goes
 * with it. */
static void s_ckpt_maybe_free(s_ckpt_t *c)
{
    restart_t *r = c->r;
    char dir[PATH_MAX];

    if (!c->gone || c->calls || c->dump || c->tracker)
        return;
    for (s_ckpt_t **p = &r->ckpts; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    snprintf(dir, sizeof dir, "%s/%.31s", r->ckpt_dir, c->gpid);
    s_remove_dir(dir);
    s_ckpt_close(c);
    s_tracker_stop(c);
    free(c);
}

static void s_drop_replica_at(restart_t *r, uint32_t node, const char *gpid);
static void s_ckpt_send_file(s_ckpt_t *c);

/* The transfer ended (ok or not): back to idle. A replica that refused a
 * delta for want of its parents is sent the whole chain at once. */
static void s_ckpt_finish(s_ckpt_t *c, bool ok, const char *why)
{
    restart_t *r = c->r;
    uint64_t took = cairn_now_ms() - c->began_mono;

    s_ckpt_close(c);
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
static void s_ckpt_file_done(s_ckpt_t *c)
{
    s_ckpt_close(c);
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

static void s_ckpt_pump(s_ckpt_t *c);

static void s_on_put_answer(void *userdata, uint32_t node, int code, const char *message,
                            ProtobufCMessage *reply)
{
    s_ckpt_t *c = userdata;
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
static void s_ckpt_pump(s_ckpt_t *c)
{
    restart_t *r = c->r;
    const char *ep = cairn_view_endpoint(r->view, c->replica);
    char *chain[S_MAX_CHAIN];

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
static void s_ckpt_send_file(s_ckpt_t *c)
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
    snprintf(c->id, sizeof c->id, "%u-%s-%llu-%zu", s_self(r), c->gpid,
             (unsigned long long)c->began_ms, c->send_at);
    c->state = CK_SENDING;
    s_ckpt_pump(c);
}

/* The checkpoint is written: send the replica what it lacks of it -- the
 * newest file when it holds the chain before it, else the whole chain
 * from its full image (a new replica, one that failed, a new chain). */
static void s_ckpt_send(s_ckpt_t *c)
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
    s_ckpt_t *c = j->hook_data;
    _cleanup_(s_json_decrefp) json_t *v = ghostd_helper_line(j, -1);
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
static void s_tracker_answer(s_ckpt_t *c, ghostd_helper_t *j, json_t *v)
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
              n <= S_MAX_CHAIN;
    for (size_t i = 0; ok && i < n; i++) {
        const char *name = json_string_value(json_array_get(chain, i));
        ok = name && s_file_name_ok(name);
        if (ok)
            snprintf(c->chain[i], sizeof c->chain[i], "%s", name);
    }
    if (!ok) {
        if (json_object_get(v, "error"))
            ghostd_helper_error(j, 1 << 8, v, msg, sizeof msg);
        else
            snprintf(msg, sizeof msg, "its answer names no chain of at most %d files",
                     S_MAX_CHAIN);
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
    s_ckpt_t *c = j->hook_data;
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
    s_ckpt_t *c = j->hook_data;
    restart_t *r = c->r;
    char msg[1200];

    s_tracker_lines(j);
    c->tracker = NULL;
    r->trackers--;
    s_tracker_stop(c);
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
static int s_tracker_start(s_ckpt_t *c, pid_t pid, const char *dir)
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
static int s_tracker_ask(s_ckpt_t *c, pid_t pid, const char *dir)
{
    char line[PATH_MAX + 16];
    int n = snprintf(line, sizeof line, "checkpoint %s\n", dir);

    if (n < 0 || (size_t)n >= sizeof line || write(c->cmd_fd, line, (size_t)n) != n) {
        int e = n < 0 || (size_t)n >= sizeof line ? -ENAMETOOLONG : -errno;
        cairn_log_warn(e, "checkpoint-failed", "gpid=%s msg=\"cannot ask the tracker; "
                       "it is stopped\"", c->gpid);
        s_tracker_stop(c);
        ghostd_helper_kill(c->tracker);
        return e;
    }
    c->tracker->pid = (uint32_t)pid;   /* a checkpoint asked meanwhile is busy */
    c->state = CK_DUMPING;
    return 0;
}

/* A full in-place dump (no tracker slot): image.ghost a file of its own,
 * never written through a tracker's symlink. */
static void s_full_dump(s_ckpt_t *c, pid_t host_pid, const char *dir)
{
    restart_t *r = c->r;
    char pid[16], image[PATH_MAX + 16];
    cairn_error_t err = { 0 };
    struct stat st;

    snprintf(image, sizeof image, "%s/" GHOSTD_IMAGE_NAME, dir);
    if (lstat(image, &st) == 0 && !S_ISREG(st.st_mode)) {
        s_remove_dir(dir);   /* an old tracker's chain */
        s_mkdir(dir, 0700);
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
    s_ckpt_t *c = userdata;
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
    s_mkdir(dir, 0700);
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
    s_ckpt_t *c = rec ? s_ckpt_find(r, gpid) : NULL;

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
    c->timer = cairn_loop_add_timer(s_loop(r), (uint64_t)c->every_s * 1000,
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

    for (s_ckpt_t *c = r ? r->ckpts : NULL; c; c = c->next) {
        const ghostd_jobrec_t *rec = ghostd_jobs_running(gd->jobs, c->gpid);
        if (c->gone || !rec || rec->host_pid <= 0 || (uint32_t)rec->host_pid != host_pid)
            continue;
        c->moving = moving;
        if (moving && c->tracker) {
            /* killed, not asked to stop: a checkpoint under way would hold
             * the tree the migration's dump is about to freeze; the
             * kernel drops the write protection with the tracker's fds */
            s_tracker_stop(c);
            ghostd_helper_kill(c->tracker);
            cairn_log_info("tracker-stopping", "gpid=%s msg=\"the job is migrating\"",
                           c->gpid);
        }
    }
}

static void s_ckpt_stop(s_ckpt_t *c)
{
    restart_t *r = c->r;

    if (c->timer > 0)
        cairn_loop_cancel_timer(s_loop(r), c->timer);
    c->timer = 0;
    if (c->dump)
        ghostd_helper_kill(c->dump);   /* on_exit frees c once reaped */
    s_tracker_stop(c);                 /* it stops; on_exit frees c */
    c->gone = true;
    s_ckpt_maybe_free(c);
}

void restart_job_ended(ghostd_t *gd, const char *gpid, uint32_t replica)
{
    restart_t *r = gd->restart;
    s_ckpt_t *c = r ? s_ckpt_find(r, gpid) : NULL;

    if (!r)
        return;
    if (c)
        s_ckpt_stop(c);
    if (replica && replica != s_self(r))
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

/* ---- the replica's side ------------------------------------------------- */

static void s_in_free(s_in_t *in)
{
    if (in->fd >= 0)
        close(in->fd);
    memset(in, 0, sizeof *in);
    in->fd = -1;
}

/* The .part file a transfer writes. */
static void s_in_part(const restart_t *r, const s_in_t *in, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%.31s/%s.part", r->replica_dir, in->gpid,
             in->file[0] ? in->file : GHOSTD_IMAGE_NAME);
}

/* Drops a transfer and its .part file. */
static void s_in_abandon(restart_t *r, s_in_t *in)
{
    char part[PATH_MAX + 64];

    s_in_part(r, in, part, sizeof part);
    unlink(part);
    s_in_free(in);
}

static s_in_t *s_in_find_gpid(restart_t *r, const char *gpid)
{
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (r->in[i].used && strcmp(r->in[i].gpid, gpid) == 0)
            return &r->in[i];
    return NULL;
}

/* A free slot, dropping transfers silent for RESTART_IN_IDLE_MS. */
static s_in_t *s_in_claim(restart_t *r)
{
    uint64_t now = cairn_now_ms();

    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (r->in[i].used && now > r->in[i].touched_ms + RESTART_IN_IDLE_MS)
            s_in_abandon(r, &r->in[i]);
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (!r->in[i].used)
            return &r->in[i];
    return NULL;
}

static int s_reply_put(cairn_request_t *req, uint64_t seq, uint64_t written, bool complete)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__ReplicaPutReply *pr = cairn_request_alloc(req, sizeof *pr);

    if (!pr)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    cairn__ghostd__replica_put_reply__init(pr);
    pr->seq = seq;
    pr->written = written;
    pr->complete = complete;
    reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_REPLICA_PUT_REPLY;
    reply->replica_put_reply = pr;
    return CAIRN_REPLY_NOW;
}

/* seq 0: a new image for p->gpid, replacing whatever was under way. */
static int s_in_begin(restart_t *r, cairn_request_t *req,
                      const Cairn__Ghostd__ReplicaPutRequest *p, uint32_t from,
                      s_in_t **ret)
{
    char dir[PATH_MAX], part[PATH_MAX + 64];
    s_in_t *in = s_in_find_gpid(r, p->gpid);

    if (p->file && *p->file && !s_file_name_ok(p->file))
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: '%.64s' is "
                                  "no image.ghost.N", p->file);
    if (in)
        s_in_abandon(r, in);
    if (!(in = s_in_claim(r)))
        return cairn_request_fail(req, CAIRN_BUSY, "node %u receives %d replicas "
                                  "already; try again later", s_self(r), RESTART_MAX_IN);
    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, p->gpid);
    s_mkdir(dir, 0700);
    snprintf(in->gpid, sizeof in->gpid, "%s", p->gpid);
    snprintf(in->file, sizeof in->file, "%s", p->file ? p->file : "");
    s_in_part(r, in, part, sizeof part);
    in->fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (in->fd < 0) {
        int e = errno;
        s_in_free(in);
        return cairn_request_fail(req, CAIRN_SYSTEM, "node %u: cannot make %s: %s",
                                  s_self(r), part, strerror(e));
    }
    in->used = true;
    snprintf(in->id, sizeof in->id, "%s", p->id);
    in->from = from;
    *ret = in;
    return 0;
}

/* Whether the chain of a file's last chunk is one the replica can keep:
 * at most S_MAX_CHAIN names image.ghost.N, the file last; NULL or why not. */
static const char *s_in_chain_bad(const s_in_t *in, const Cairn__Ghostd__ReplicaPutRequest *p)
{
    if (!in->file[0])
        return p->n_chain ? "a chain names the files of image.ghost.N transfers only" : NULL;
    if (p->n_chain == 0 || p->n_chain > S_MAX_CHAIN)
        return "the chain of an image.ghost.N holds 1 to 64 names";
    for (size_t i = 0; i < p->n_chain; i++)
        if (!p->chain[i] || !s_file_name_ok(p->chain[i]))
            return "the chain names a file that is no image.ghost.N";
    if (strcmp(p->chain[p->n_chain - 1], in->file) != 0)
        return "the chain does not end with the file sent";
    return NULL;
}

/* dir/image.ghost names file now (a new symlink renamed over it), and
 * the files of older chains go: only now, with a whole chain named. */
static int s_in_point(const char *dir, const char *file,
                      const Cairn__Ghostd__ReplicaPutRequest *p)
{
    char tmp[PATH_MAX + 32], latest[PATH_MAX + 32], path[PATH_MAX + 300];

    snprintf(tmp, sizeof tmp, "%s/." GHOSTD_IMAGE_NAME ".link", dir);
    snprintf(latest, sizeof latest, "%s/" GHOSTD_IMAGE_NAME, dir);
    unlink(tmp);
    if (symlink(file, tmp) < 0 || rename(tmp, latest) < 0) {
        int e = -errno;
        unlink(tmp);
        return e;
    }
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        bool keep = !s_file_name_ok(e->d_name);
        for (size_t i = 0; !keep && i < p->n_chain; i++)
            keep = strcmp(e->d_name, p->chain[i]) == 0;
        if (!keep) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
    return 0;
}

/* The last chunk is written: the file goes into place -- a whole image
 * renamed over image.ghost, or a chain's file renamed to its name and,
 * when every file before it is here, named by the image.ghost symlink --
 * and the job's record beside it. */
static int s_in_complete(restart_t *r, cairn_request_t *req, s_in_t *in,
                         const Cairn__Ghostd__ReplicaPutRequest *p)
{
    char dir[PATH_MAX], part[PATH_MAX + 64], image[PATH_MAX + 64], file[S_FILE_MAX];
    ghostd_jobrec_t rec = { 0 };
    uint64_t seq = in->next_seq - 1, written = in->written;
    const char *bad = s_in_chain_bad(in, p);

    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, in->gpid);
    s_in_part(r, in, part, sizeof part);
    snprintf(file, sizeof file, "%s", in->file);
    snprintf(image, sizeof image, "%s/%s", dir, file[0] ? file : GHOSTD_IMAGE_NAME);
    int e = bad || !p->record ? -EBADMSG
                              : ghostd_jobrec_loads(p->record, strlen(p->record), &rec);
    if (e == 0 && strcmp(rec.gpid, in->gpid) != 0)
        e = -EBADMSG;
    if (e < 0) {
        ghostd_jobrec_clear(&rec);
        s_in_abandon(r, in);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: %s", bad ? bad
                                  : "the last chunk's record is not the job's record");
    }
    rec.last_checkpoint_ms = p->checkpoint_ms;
    rec.replica = s_self(r);
    if (fsync(in->fd) < 0 || rename(part, image) < 0)
        e = -errno;
    s_in_free(in);
    for (size_t i = 0; e == 0 && file[0] && i + 1 < p->n_chain; i++) {
        char parent[PATH_MAX + 64];
        struct stat st;
        snprintf(parent, sizeof parent, "%s/%s", dir, p->chain[i]);
        if (lstat(parent, &st) < 0 || !S_ISREG(st.st_mode)) {
            ghostd_jobrec_clear(&rec);
            return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "node %u holds no "
                                      "%s of the chain of %s; send the chain whole",
                                      s_self(r), p->chain[i], file);
        }
    }
    if (e == 0 && file[0])
        e = s_in_point(dir, file, p);
    if (e == 0)
        e = ghostd_jobrec_write(dir, &rec);
    if (e < 0) {
        ghostd_jobrec_clear(&rec);
        return cairn_request_fail(req, CAIRN_SYSTEM, "node %u: cannot keep the replica "
                                  "of %s: %s", s_self(r), p->gpid, strerror(-e));
    }
    cairn_log_info("replica", "gpid=%s from=%u file=%s chain=%zu image_bytes=%llu "
                   "checkpoint_ms=%llu", rec.gpid, rec.node,
                   file[0] ? file : GHOSTD_IMAGE_NAME, p->n_chain,
                   (unsigned long long)written, (unsigned long long)p->checkpoint_ms);
    ghostd_jobrec_clear(&rec);
    return s_reply_put(req, seq, written, true);
}

int restart_handle_put(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    restart_t *r = gd->restart;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__ReplicaPutRequest *p = body->replica_put;
    const cairn_caller_t *c = cairn_request_caller(req);
    uint32_t node;
    uint64_t seqn;
    s_in_t *in;

    if (!p || !p->id || !*p->id || strlen(p->id) >= sizeof r->in[0].id)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: no id");
    if (!p->gpid || ghostd_gpid_parse(p->gpid, &node, &seqn) < 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: '%.64s' "
                                  "is not a gpid", p->gpid ? p->gpid : "");
    if (c->kind != CAIRN_CALLER_NODE || c->node == s_self(r))
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "replica_put: only "
                                  "another member node's ghostd keeps a replica here");
    if (p->data.len > RESTART_CHUNK)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: a chunk "
                                  "holds at most %u bytes", RESTART_CHUNK);
    in = s_in_find_gpid(r, p->gpid);
    if (p->seq == 0) {
        int e = s_in_begin(r, req, p, c->node, &in);
        if (e != 0)
            return e;
    } else if (!in || strcmp(in->id, p->id) != 0 || in->from != c->node) {
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "replica_put: no "
                                  "transfer %s under way here", p->id);
    } else if (p->seq != in->next_seq || strcmp(in->file, p->file ? p->file : "") != 0) {
        uint64_t want = in->next_seq;
        s_in_abandon(r, in);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: chunk %llu "
                                  "where %llu was due; the transfer is dropped",
                                  (unsigned long long)p->seq, (unsigned long long)want);
    }
    if (cairn_write_all(in->fd, p->data.data, p->data.len) < 0) {
        int e = errno;
        s_in_abandon(r, in);
        return cairn_request_fail(req, CAIRN_SYSTEM, "node %u: cannot write the replica: "
                                  "%s", s_self(r), strerror(e));
    }
    in->written += p->data.len;
    in->next_seq++;
    in->touched_ms = cairn_now_ms();
    if (p->last)
        return s_in_complete(r, req, in, p);
    return s_reply_put(req, p->seq, in->written, false);
}

int restart_handle_drop(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    restart_t *r = gd->restart;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__ReplicaDropRequest *d = body->replica_drop;
    char dir[PATH_MAX];
    uint32_t node;
    uint64_t seq;

    if (!d || !d->gpid || ghostd_gpid_parse(d->gpid, &node, &seq) < 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_drop: no gpid");
    s_in_t *in = s_in_find_gpid(r, d->gpid);
    if (in)
        s_in_free(in);
    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, d->gpid);
    s_remove_dir(dir);
    cairn_log_info("replica-dropped", "gpid=%s", d->gpid);
    return s_reply_put(req, 0, 0, false);
}

/* ---- restarts ------------------------------------------------------------ */

static s_restore_t *s_restore_find(restart_t *r, const char *gpid)
{
    for (size_t i = 0; i < S_MAX_RESTORES; i++)
        if (r->restores[i].used && strcmp(r->restores[i].gpid, gpid) == 0)
            return &r->restores[i];
    return NULL;
}

static void s_mark_lost(restart_t *r, const char *gpid, const char *why)
{
    int e = ghostd_jobs_mark_lost(r->gd->jobs, gpid, why);

    if (e < 0 && e != -EEXIST)
        cairn_log_warn(e, "job-lost", "gpid=%s msg=\"cannot write its exit record: %s\"",
                       gpid, why);
}

static void s_restore_on_exit(ghostd_helper_t *j, int status)
{
    s_restore_t *rs = j->hook_data;
    restart_t *r = rs->r;
    _cleanup_(s_json_decrefp) json_t *v = ghostd_helper_line(j, -1);
    char dir[PATH_MAX], msg[1200], why[1400];
    ghostd_jobrec_t rec = { 0 };

    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, rs->gpid);
    int e = ghostd_jobrec_read(dir, &rec);
    /* a job's root is pid 1 inside: its host pid is the reaper to watch */
    uint64_t host_pid = ghostd_json_u64(v, "host_pid");
    bool restored = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool named = host_pid > 1 && host_pid <= INT32_MAX;
    if (!restored || !named || e < 0) {
        if (!restored)
            ghostd_helper_error(j, status, v, msg, sizeof msg);
        else if (!named)
            snprintf(msg, sizeof msg, "ghost-restore's answer lacks a valid host_pid");
        else
            snprintf(msg, sizeof msg, "its replica's record is gone");
        if (restored && named)   /* nothing may run that nobody watches */
            kill((pid_t)host_pid, SIGKILL);
        snprintf(why, sizeof why, "its node died and the restart from its checkpoint "
                 "on node %u failed: %s", s_self(r), msg);
        s_mark_lost(r, rs->gpid, why);
        ghostd_jobrec_clear(&rec);
        rs->used = false;
        return;
    }
    const char *cg = json_string_value(json_object_get(v, "cgroup"));
    const char *unit = json_string_value(json_object_get(v, "unit"));
    uint64_t now = cairn_realtime_ms();
    uint32_t dead = rec.node;
    uint64_t lost = now > rec.last_checkpoint_ms ? now - rec.last_checkpoint_ms : 0;
    rec.node = s_self(r);
    rec.host_pid = (int32_t)host_pid;
    rec.restarts++;
    rec.lost_ms += lost;
    rec.replica = 0;   /* the next checkpoint picks one among the others */
    snprintf(rec.cgroup, sizeof rec.cgroup, "%s", cg ? cg : "");
    snprintf(rec.unit, sizeof rec.unit, "%s", unit ? unit : "");
    rec.sub_cgroup = r->gd->placement.mode != GHOSTD_PLACE_SCOPE;
    char gpid[GHOSTD_GPID_MAX];
    snprintf(gpid, sizeof gpid, "%s", rs->gpid);
    uint32_t restarts = rec.restarts;
    e = ghostd_jobs_adopt_restored(r->gd->jobs, &rec);
    ghostd_jobrec_clear(&rec);
    rs->used = false;
    if (e < 0) {
        cairn_log_err(e, "job-restart", "gpid=%s msg=\"restored (host pid %d) but the "
                      "table cannot take it; killing it\"", gpid, (int)host_pid);
        kill((pid_t)host_pid, SIGKILL);
        return;
    }
    s_remove_dir(dir);
    cairn_log_info("job-restart", "gpid=%s dead_node=%u host_pid=%d restarts=%u "
                   "lost_ms=%llu restore_us=%llu", gpid, dead, (int)host_pid, restarts,
                   (unsigned long long)lost,
                   (unsigned long long)ghostd_json_u64(v, "restore_us"));
}

/* Restores gpid from its replica here (ghost-restore, placed as ghost-init
 * places a launch). */
static void s_restart_job(restart_t *r, const char *gpid, const ghostd_jobrec_t *rec)
{
    ghostd_t *gd = r->gd;
    char image[PATH_MAX + 32], scope[160], cg[64];
    cairn_error_t err = { 0 };
    s_restore_t *rs = NULL;

    if (s_restore_find(r, gpid))
        return;   /* under way */
    for (size_t i = 0; i < S_MAX_RESTORES && !rs; i++)
        if (!r->restores[i].used)
            rs = &r->restores[i];
    if (!rs)
        return;   /* the next scan */
    snprintf(image, sizeof image, "%s/%.31s/" GHOSTD_IMAGE_NAME, r->replica_dir, gpid);
    if (access(image, R_OK) < 0) {
        char why[300];
        snprintf(why, sizeof why, "its node %u died and its replica on node %u holds "
                 "no complete image", rec->node, s_self(r));
        s_mark_lost(r, gpid, why);
        return;
    }
    char *argv[10] = { NULL, "--image", image };
    int n = 3;
    if (gd->placement.mode == GHOSTD_PLACE_SCOPE) {
        snprintf(scope, sizeof scope, "cairn-job-%s.scope", gpid);
        argv[n++] = "--scope";
        argv[n++] = scope;
        argv[n++] = "--slice";
        argv[n++] = GHOSTD_JOB_SLICE;
    } else {
        snprintf(cg, sizeof cg, "job-%.31s", gpid);
        argv[n++] = "--cgroup";
        argv[n++] = cg;
    }
    argv[n] = NULL;
    int e = ghostd_helper_start(gd, GHOSTD_RESTART, argv, NULL, 0,
                                GHOSTD_DEFAULT_DEADLINE_MS, &rs->rst, &err);
    if (e < 0) {
        cairn_log_warn(e, "job-restart", "gpid=%s msg=\"%s; again at the next scan\"",
                       gpid, err.message);
        return;
    }
    rs->used = true;
    rs->r = r;
    snprintf(rs->gpid, sizeof rs->gpid, "%s", gpid);
    rs->rst->on_exit = s_restore_on_exit;
    rs->rst->hook_data = rs;
    cairn_log_info("job-restarting", "gpid=%s dead_node=%u checkpoint_ms=%llu helper=%d",
                   gpid, rec->node, (unsigned long long)rec->last_checkpoint_ms,
                   (int)rs->rst->helper);
}

/* One job of the jobs directory, whose node may be dead. */
static void s_scan_job(restart_t *r, const char *jobs_dir, const char *gpid)
{
    char dir[PATH_MAX], exit_path[PATH_MAX + 8], why[400];
    ghostd_jobrec_t rec = { 0 };

    snprintf(dir, sizeof dir, "%s/%.31s", jobs_dir, gpid);
    snprintf(exit_path, sizeof exit_path, "%s/exit", dir);
    if (access(exit_path, F_OK) == 0 || ghostd_jobrec_read(dir, &rec) < 0)
        return;   /* ended (or lost already), or no record */
    const char *state = cairn_view_state(r->view, rec.node);
    if (rec.node == s_self(r) || !state || strcmp(state, "dead") != 0) {
        ghostd_jobrec_clear(&rec);
        return;
    }
    if (rec.restart_on_failure && rec.replica == s_self(r)) {
        s_restart_job(r, gpid, &rec);
    } else if (rec.restart_on_failure && rec.replica && cairn_view_alive(r->view, rec.replica)) {
        ;   /* its replica's to restart */
    } else if (cairn_view_home(r->view, gpid) == s_self(r)) {
        if (!rec.restart_on_failure)
            snprintf(why, sizeof why, "node %u died (declared dead by clusterd) and the "
                     "job was not run with --restart-on-failure", rec.node);
        else if (!rec.replica)
            snprintf(why, sizeof why, "node %u died before a first checkpoint of the "
                     "job was replicated", rec.node);
        else
            snprintf(why, sizeof why, "node %u died and node %u, which held its last "
                     "checkpoint, is dead too", rec.node, rec.replica);
        s_mark_lost(r, gpid, why);
    }
    ghostd_jobrec_clear(&rec);
}

/* Whether the view holds any member dead. */
static bool s_any_dead(restart_t *r)
{
    const cairn_description_t *d = cairn_service_description(r->gd->svc);

    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const char *st = cairn_view_state(r->view, cairn_description_node(d, i)->id);
        if (st && strcmp(st, "dead") == 0)
            return true;
    }
    return false;
}

/* This node's copy of gpid is stale when job.json names another node or
 * its exit record says it was lost. */
static bool s_stale(restart_t *r, const char *jobs_dir, const char *gpid)
{
    char dir[PATH_MAX];
    ghostd_jobrec_t rec = { 0 };
    ghostd_exitrec_t ex = { 0 };

    snprintf(dir, sizeof dir, "%s/%.31s", jobs_dir, gpid);
    if (ghostd_jobrec_read(dir, &rec) < 0)
        return false;
    bool stale = rec.node != s_self(r) ||
                 (ghostd_exitrec_read(dir, &ex) == 0 && ex.lost[0]);
    ghostd_jobrec_clear(&rec);
    return stale;
}

/* Replicas here nobody needs: the job ended, or names another replica. */
static void s_gc_replicas(restart_t *r, const char *jobs_dir)
{
    DIR *d = opendir(r->replica_dir);
    uint32_t node;
    uint64_t seq;

    for (struct dirent *e; d && (e = readdir(d));) {
        char jdir[PATH_MAX], rdir[PATH_MAX], exit_path[PATH_MAX + 8];
        ghostd_jobrec_t rec = { 0 };
        if (ghostd_gpid_parse(e->d_name, &node, &seq) < 0 ||
            s_in_find_gpid(r, e->d_name) || s_restore_find(r, e->d_name))
            continue;
        snprintf(jdir, sizeof jdir, "%s/%.31s", jobs_dir, e->d_name);
        snprintf(exit_path, sizeof exit_path, "%s/exit", jdir);
        int rd = ghostd_jobrec_read(jdir, &rec);
        bool keep = rd == 0 && access(exit_path, F_OK) < 0 &&
                    (rec.replica == s_self(r) || rec.replica == 0);
        ghostd_jobrec_clear(&rec);
        if (keep || (rd < 0 && rd != -ENOENT))
            continue;
        snprintf(rdir, sizeof rdir, "%s/%.31s", r->replica_dir, e->d_name);
        s_remove_dir(rdir);
        cairn_log_info("replica-dropped", "gpid=%s msg=\"no longer needed\"", e->d_name);
    }
    if (d)
        closedir(d);
}

static void s_scan(restart_t *r, bool fence_only)
{
    const char *jobs_dir = ghostd_jobs_dir(r->gd->jobs);
    bool act = !fence_only && cairn_view_known(r->view) && cairn_view_quorum(r->view) &&
               s_any_dead(r);
    bool gc = !fence_only && ++r->scans % S_GC_EVERY == 0;
    DIR *d = opendir(jobs_dir);
    uint32_t node;
    uint64_t seq;

    for (struct dirent *e; d && (e = readdir(d));) {
        if (ghostd_gpid_parse(e->d_name, &node, &seq) < 0)
            continue;
        if (ghostd_jobs_running(r->gd->jobs, e->d_name)) {
            if (s_stale(r, jobs_dir, e->d_name))
                ghostd_jobs_supersede(r->gd->jobs, e->d_name, "job.json names another "
                                      "node or says the job was lost");
        } else if (act) {
            s_scan_job(r, jobs_dir, e->d_name);
        }
    }
    if (d)
        closedir(d);
    if (gc)
        s_gc_replicas(r, jobs_dir);
}

static int s_on_scan(cairn_loop_t *loop, int64_t id, void *userdata)
{
    s_scan(userdata, false);
    return 0;
}

static void s_on_view(void *userdata, uint64_t old_view, uint64_t new_view)
{
    s_scan(userdata, false);
}

/* At start: the copies this node still runs of jobs whose job.json names
 * another node now, or that were declared lost, are killed with their
 * sub-cgroups (they are not in the table: jobs.c takes back only jobs
 * whose record names this node, and a lost one as ended). */
static void s_fence_at_start(restart_t *r)
{
    const char *jobs_dir = ghostd_jobs_dir(r->gd->jobs);
    DIR *d = opendir(jobs_dir);
    uint32_t node;
    uint64_t seq;
    char cg[64];

    for (struct dirent *e; d && (e = readdir(d));) {
        if (ghostd_gpid_parse(e->d_name, &node, &seq) < 0 ||
            ghostd_jobs_running(r->gd->jobs, e->d_name) || !s_stale(r, jobs_dir, e->d_name))
            continue;
        snprintf(cg, sizeof cg, "job-%.31s", e->d_name);
        int n = ghost_place_kill_cgroup(cg);
        if (n > 0)
            cairn_log_warn(0, "job-superseded", "gpid=%s killed=%d msg=\"a stale copy "
                           "(job.json names another node or says lost) was killed\"",
                           e->d_name, n);
    }
    if (d)
        closedir(d);
}

/* ---- lifecycle ------------------------------------------------------------- */

int restart_start(ghostd_t *gd)
{
    restart_t *r = calloc(1, sizeof *r);

    if (!r || !(r->buf = malloc(RESTART_CHUNK))) {
        free(r);
        return -ENOMEM;
    }
    r->gd = gd;
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        r->in[i].fd = -1;
    snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%.*s/ckpt", 3000, gd->spool.path);
    snprintf(r->replica_dir, sizeof r->replica_dir, "%.*s/replicas", 3000,
             gd->spool.path);
    s_mkdir(r->ckpt_dir, 0700);
    s_mkdir(r->replica_dir, 0700);
    r->view = cairn_view_new(gd->svc, "ghostd", s_on_view, r);
    r->peers = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
    if (!r->view || !r->peers) {
        cairn_view_free(r->view);
        cairn_peers_free(r->peers);
        free(r->buf);
        free(r);
        return -ENOMEM;
    }
    gd->restart = r;
    return 0;
}

int restart_ready(ghostd_t *gd)
{
    restart_t *r = gd->restart;

    if (!r)
        return 0;
    s_fence_at_start(r);
    s_scan(r, true);
    int e = cairn_view_start(r->view);
    if (e < 0)
        cairn_log_warn(e, "restart", "msg=\"cannot follow the membership; no job "
                       "is restarted from here\"");
    r->scan_timer = cairn_loop_add_timer(s_loop(r), RESTART_SCAN_MS, RESTART_SCAN_MS,
                                         s_on_scan, r);
    return 0;
}

void restart_stop(ghostd_t *gd)
{
    restart_t *r = gd ? gd->restart : NULL;

    if (!r)
        return;
    /* peers first: their callbacks never run after this */
    r->peers = cairn_peers_free(r->peers);
    r->view = cairn_view_free(r->view);
    if (r->scan_timer > 0)
        cairn_loop_cancel_timer(s_loop(r), r->scan_timer);
    while (r->ckpts) {
        s_ckpt_t *c = r->ckpts;
        r->ckpts = c->next;
        if (c->timer > 0)
            cairn_loop_cancel_timer(s_loop(r), c->timer);
        if (c->dump) {   /* ghostd_done kills and reaps it; no hook after */
            c->dump->on_exit = NULL;
            c->dump->hook_data = NULL;
        }
        if (c->tracker) {   /* likewise: killed, its registrations dropped */
            c->tracker->on_output = NULL;
            c->tracker->on_exit = NULL;
            c->tracker->hook_data = NULL;
        }
        s_tracker_stop(c);
        s_ckpt_close(c);
        free(c);
    }
    for (size_t i = 0; i < S_MAX_RESTORES; i++)
        if (r->restores[i].used && r->restores[i].rst) {
            r->restores[i].rst->on_exit = NULL;
            r->restores[i].rst->hook_data = NULL;
        }
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (r->in[i].used)
            s_in_abandon(r, &r->in[i]);
    free(r->buf);
    free(r);
    gd->restart = NULL;
}
