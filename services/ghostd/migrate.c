/* migrate.c - stop-and-copy migration, ghostd to ghostd (migrate.h).
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
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "clusterd.pb-c.h"
#include "engine/place.h"
#include "jobinfo.h"
#include "jobs.h"
#include "log.h"
#include "migrate.h"
#include "peer.h"
#include "proc/proc.h"
#include "restart.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

#define S_CONFIRM_EVERY_MS 500   /* the source asks a silent target again */
#define S_ASK_MS 1000            /* timeout of one status or clusterd ask */
#define S_QUEUE_MAX (2 * MIGRATE_WINDOW)  /* target: chunks buffered */
#define S_ROOM_MARGIN (16ull << 20)       /* target: room beyond 2 x the job */
#define S_PIPE_SIZE (1 << 20)             /* the image pipes (else 64 KiB) */

/* ---- the tables -------------------------------------------------------- */

typedef enum {
    OUT_FREE,
    OUT_BEGIN,       /* begin sent, nothing frozen yet */
    OUT_STREAM,      /* ghost-dump runs; chunks going out */
    OUT_CONFIRM,     /* the last chunk's answer was lost: asking the target */
    OUT_KILLING,     /* the target runs it: "kill" written, ghost-dump to exit */
    OUT_RESUMING,    /* failed: "resume" written, ghost-dump to exit */
    OUT_ENDED,       /* answered; waiting for callbacks still due */
} s_out_state_t;

typedef struct s_out {
    struct migrate *m;            /* the module */
    s_out_state_t state;
    char id[64];                  /* the migration's id */
    cairn_deferred_t *deferred;   /* the client's request, NULL once answered */
    cairn_caller_t as;            /* who asked: vouched to the target */
    uint32_t to;                  /* target node */
    char *endpoint;               /* its ghostd, tcp://...; owned */
    cairn_peers_t *bulk;          /* the chunks' own connection (one DEALER
                                     per migration, so begin, status or
                                     abort never queue behind a window of
                                     chunks); the slot's, kept across uses */
    uint32_t pid, uid, gid;       /* the tree's root and owner */
    char gpid[64];                /* the job, "" for a plain process */
    bool is_job;                  /* restored in its own pid namespace */
    migrate_mode_t mode;          /* resolved: never MIGRATE_AUTO */
    uint64_t rss;                 /* the tree's resident bytes when asked */
    uint32_t rounds;              /* pre-copy: ghost-dump's figures */
    uint64_t precopy_bytes;
    uint64_t t0_us;               /* request received (monotonic) */
    uint64_t deadline_ms;         /* the client's deadline (monotonic ms) */
    ghostd_helper_t *dump;        /* ghost-dump while it runs, else NULL */
    int img_fd;                   /* read end of the image pipe, -1 closed */
    int64_t img_watch;            /* loop watch on img_fd, 0 none */
    int hold_fd;                  /* write end of the hold pipe, -1 closed */
    uint8_t *buf;                 /* MIGRATE_CHUNK + 1 bytes */
    size_t len;                   /* bytes in buf */
    uint64_t seq;                 /* next chunk's number */
    unsigned in_flight;           /* chunks sent, not answered */
    unsigned calls;               /* peer calls whose callback is due */
    bool eof, held, last_sent, answered_last;
    uint64_t bytes;               /* image bytes read from the pipe */
    uint64_t held_us;             /* when ghost-dump said held (monotonic) */
    uint64_t dump_us, freeze_us;  /* ghost-dump's figures */
    uint32_t processes, threads;
    uint32_t new_pid;             /* the target's restored root */
    uint64_t restore_us;
    char cgroup[512];
    uint64_t frozen_us;           /* frozen until killed */
    int fail_code;                /* the first failure, 0 none */
    char fail_msg[1024];
    int64_t timer;                /* deadline, then confirm retries */
    bool confirm_asking;          /* a status or clusterd ask is out */
} s_out_t;

typedef enum {
    IN_FREE,
    IN_RECEIVING,
    IN_RESTORING,
    IN_RUNNING,
    IN_COMMITTED,
    IN_FAILED,
} s_in_state_t;

typedef struct s_chunk {
    uint8_t *data;                /* owned */
    size_t len, off;              /* bytes, bytes written */
    uint64_t seq;
    bool last;
    cairn_deferred_t *d;          /* to answer once written */
} s_chunk_t;

typedef struct s_in {
    struct migrate *m;
    s_in_state_t state;
    char id[64];
    uint32_t from;                /* the source node */
    uint32_t uid, gid;            /* the job's owner */
    char gpid[64];
    bool sub_cgroup;              /* a job restored in job-<gpid> sub-cgroups */
    char unit[128];               /* a job restored in this scope, "" none */
    ghostd_helper_t *rst;         /* ghost-restore while it runs */
    int pipe_fd;                  /* write end of its image pipe, -1 closed */
    int64_t watch;                /* POLLOUT watch, 0 none */
    s_chunk_t q[S_QUEUE_MAX];     /* FIFO from q_head */
    size_t q_head, q_n;
    uint64_t next_seq, written;
    cairn_deferred_t *last_d;     /* the last chunk, answered at the end */
    uint32_t pid, original_pid, processes, threads;
    uint64_t restore_us;
    char cgroup[512];
    pid_t *members;               /* the restored tree, for an abort */
    size_t n_members;
    char error[1024];             /* failed: why */
    pid_t helper;                 /* ghost-restore's pid, for the record */
    uint64_t touched_ms;          /* last chunk (idle) or end (forget) */
    int64_t timer;                /* idle check */
} s_in_t;

/* A request for a job another node runs, carried there. */
typedef struct s_fwd {
    struct migrate *m;
    cairn_deferred_t *d;          /* the client's request */
    struct s_fwd *next;           /* in m->fwds */
} s_fwd_t;

typedef struct migrate {
    ghostd_t *gd;
    s_fwd_t *fwds;                /* carried requests not answered yet */
    cairn_peers_t *peers;         /* to other ghostds */
    cairn_peers_t *clusterd;      /* to this node's clusterd */
    s_out_t out[MIGRATE_MAX];
    s_in_t in[MIGRATE_MAX];
    unsigned serial;              /* for ids */
} migrate_t;

static cairn_loop_t *s_loop(const migrate_t *m)
{
    return cairn_service_loop(m->gd->svc);
}

static uint32_t s_self(const migrate_t *m)
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
static uint64_t s_tree_rss(pid_t pid, int depth)
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
    if (depth < 64 && proc_list_children(pid, &kids, &n, &err) == 0)
        for (size_t i = 0; i < n; i++)
            total += s_tree_rss(kids[i], depth + 1);
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

/* Every reason this node cannot take a job of memory_bytes dumped on
 * kernel `kernel`, appended to reasons (n of them; each malloc'ed). */
static size_t s_target_reasons(uint64_t memory_bytes, const char *kernel,
                               char *reasons[], size_t max)
{
    struct utsname u;
    size_t n = 0;
    uint64_t room = s_memory_room();
    uint64_t need = 2 * memory_bytes + S_ROOM_MARGIN;

    uname(&u);
    if (kernel && *kernel && strcmp(kernel, u.release) != 0 && n < max &&
        asprintf(&reasons[n], "kernel: the job was dumped on kernel %s, this node "
                 "runs %s (its vdso and layout may differ)", kernel, u.release) > 0)
        n++;
    if (room != UINT64_MAX && room < need && n < max &&
        asprintf(&reasons[n], "memory: this node's cgroup has %llu MiB of room, the "
                 "job needs %llu MiB (its %llu MiB resident, staged once while it "
                 "is restored, + %llu MiB)", (unsigned long long)(room >> 20),
                 (unsigned long long)(need >> 20),
                 (unsigned long long)(memory_bytes >> 20),
                 (unsigned long long)(S_ROOM_MARGIN >> 20)) > 0)
        n++;
    return n;
}

static const char *s_in_state_name(s_in_state_t s)
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

/* ---- target ------------------------------------------------------------- */

static s_in_t *s_in_find(migrate_t *m, const char *id)
{
    for (size_t i = 0; id && i < MIGRATE_MAX; i++)
        if (m->in[i].state != IN_FREE && strcmp(m->in[i].id, id) == 0)
            return &m->in[i];
    return NULL;
}

static void s_in_unwatch(s_in_t *in)
{
    if (in->watch > 0)
        cairn_loop_remove(s_loop(in->m), in->watch);
    in->watch = 0;
}

static void s_in_close_pipe(s_in_t *in)
{
    s_in_unwatch(in);
    if (in->pipe_fd >= 0)
        close(in->pipe_fd);
    in->pipe_fd = -1;
}

/* Drops the queued chunks, answering each with code/msg. */
static void s_in_drop_queue(s_in_t *in, int code, const char *msg)
{
    cairn_service_t *svc = in->m->gd->svc;

    for (; in->q_n; in->q_n--) {
        s_chunk_t *c = &in->q[in->q_head];
        if (c->d)
            cairn_deferred_fail(svc, c->d, code, msg);
        free(c->data);
        *c = (s_chunk_t){ 0 };
        in->q_head = (in->q_head + 1) % S_QUEUE_MAX;
    }
}

/* Kills what this migration made: the restore, or the restored tree
 * (every member: a plain tree is not one process group). */
static void s_in_kill(s_in_t *in)
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
 * finds what a killed predecessor left (s_in_recover): a tree that runs
 * as recorded is "running" again, so the source, asking status, kills its
 * copy and commits; a migration that had not reached running is failed
 * once whatever it may have made is killed (the restore helper's group,
 * a job's job-<gpid> sub-cgroup), so the source resumes. One copy either
 * way, where a new ghostd's "unknown" used to make the source resume
 * beside a copy running here. */
static void s_in_record_path(const s_in_t *in, char *out, size_t size)
{
    snprintf(out, size, "%s/migrate/%s.json",
             cairn_service_node(in->m->gd->svc)->rundir, in->id);
}

static void s_in_record(s_in_t *in)
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

static void s_in_unrecord(const s_in_t *in)
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
static void s_in_fail(s_in_t *in, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_in_fail(s_in_t *in, int code, const char *fmt, ...)
{
    va_list ap;

    if (in->state == IN_FAILED || in->state == IN_COMMITTED)
        return;
    va_start(ap, fmt);
    vsnprintf(in->error, sizeof in->error, fmt, ap);
    va_end(ap);
    s_in_kill(in);
    s_in_unrecord(in);
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

static void s_in_free(s_in_t *in)
{
    if (in->timer > 0)
        cairn_loop_cancel_timer(s_loop(in->m), in->timer);
    s_in_close_pipe(in);
    s_in_drop_queue(in, CAIRN_UNAVAILABLE, "ghostd is stopping");
    free(in->members);
    migrate_t *m = in->m;
    *in = (s_in_t){ .m = m, .pipe_fd = -1 };
}

static void s_in_ack(s_in_t *in, s_chunk_t *c)
{
    Cairn__Ghostd__MigrateChunkReply cr = CAIRN__GHOSTD__MIGRATE_CHUNK_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;

    cr.seq = c->seq;
    cr.written = in->written;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_CHUNK_REPLY;
    reply.migrate_chunk_reply = &cr;
    cairn_deferred_reply(in->m->gd->svc, c->d, &reply.base);
    c->d = NULL;
}

static int s_in_on_writable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                            void *userdata);

/* Writes what the restore's pipe takes of p[0, n) without blocking: the
 * bytes written, or -1 when the restore stopped reading (the pipe is
 * closed then: the restore failed, and its exit says why). */
static ssize_t s_in_write(s_in_t *in, const uint8_t *p, size_t n)
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
static void s_in_watch(s_in_t *in)
{
    if (in->watch <= 0 && in->pipe_fd >= 0)
        in->watch = cairn_loop_add_fd(s_loop(in->m), in->pipe_fd, ZMQ_POLLOUT,
                                      s_in_on_writable, in);
}

/* The last chunk is wholly in the pipe: its end tells the restore the
 * image is complete; the answer waits for the restore. */
static void s_in_stream_ended(s_in_t *in, cairn_deferred_t *last_d)
{
    in->last_d = last_d;
    s_in_close_pipe(in);
    in->state = IN_RESTORING;
    cairn_log_info("migrate-in-restoring", "id=%s bytes=%llu", in->id,
                   (unsigned long long)in->written);
}

/* Writes queued chunks into the restore's pipe until it would block;
 * watches for POLLOUT then. A chunk wholly written is answered; the last
 * one closes the pipe and waits for the restore's end. */
static void s_in_pump(s_in_t *in)
{
    while (in->q_n && in->pipe_fd >= 0) {
        s_chunk_t *c = &in->q[in->q_head];
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
            s_in_ack(in, c);
        free(c->data);
        *c = (s_chunk_t){ 0 };
        in->q_head = (in->q_head + 1) % S_QUEUE_MAX;
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
static void s_in_members(s_in_t *in, json_t *v)
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

static void s_in_restored(s_in_t *in, json_t *v)
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
    snprintf(in->cgroup, sizeof in->cgroup, "%s", cg ? cg : "");
    s_in_members(in, v);
    in->state = IN_RUNNING;
    in->touched_ms = cairn_now_ms();
    s_in_record(in);   /* before the source hears it runs */
    cairn_log_info("migrate-in-running", "id=%s from=%u pid=%u original=%u "
                   "bytes=%llu restore_us=%llu", in->id, in->from, in->pid,
                   in->original_pid, (unsigned long long)in->written,
                   (unsigned long long)in->restore_us);
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

/* ghost-restore was reaped. */
static void s_in_on_exit(ghostd_helper_t *j, int status)
{
    s_in_t *in = j->hook_data;
    json_t *v = ghostd_helper_line(j, 0);
    char msg[1024];

    in->rst = NULL;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && v && ghostd_json_u64(v, "pid") &&
        in->state == IN_RESTORING) {
        s_in_restored(in, v);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && v) {
        /* Restored though the stream had not ended here: cannot be (the
         * last byte comes with the last chunk); kill what it made. */
        s_in_members(in, v);
        s_in_fail(in, CAIRN_INTERNAL, "ghost-restore finished before the stream ended");
    } else {
        int code = ghostd_helper_error(j, status, v, msg, sizeof msg);
        s_in_fail(in, code, "restore on node %u failed: %s", s_self(in->m), msg);
    }
    json_decref(v);
}

static int s_in_on_idle(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    s_in_t *in = userdata;
    uint64_t now = cairn_now_ms();

    if (in->state == IN_RECEIVING && now - in->touched_ms >= MIGRATE_IDLE_MS)
        s_in_fail(in, CAIRN_TIMEOUT, "the stream from node %u was silent for %u s",
                  in->from, MIGRATE_IDLE_MS / 1000);
    else if ((in->state == IN_FAILED || in->state == IN_COMMITTED) &&
             now - in->touched_ms >= MIGRATE_KEEP_MS && !in->rst)
        s_in_free(in);
    return 0;
}

/* A free slot, else the oldest ended one. */
static s_in_t *s_in_claim(migrate_t *m)
{
    s_in_t *best = NULL;

    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        s_in_t *in = &m->in[i];
        if (in->state == IN_FREE)
            return in;
        if ((in->state == IN_FAILED || in->state == IN_COMMITTED) && !in->rst &&
            (!best || in->touched_ms < best->touched_ms))
            best = in;
    }
    if (best)
        s_in_free(best);
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

/* Answers a chunk written wholly into the pipe as it came. */
static int s_reply_chunk(cairn_request_t *req, const s_in_t *in, uint64_t seq)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__MigrateChunkReply *cr = cairn_request_alloc(req, sizeof *cr);

    if (!cr)
        return -ENOMEM;
    cairn__ghostd__migrate_chunk_reply__init(cr);
    cr->seq = seq;
    cr->written = in->written;
    reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_CHUNK_REPLY;
    reply->migrate_chunk_reply = cr;
    return CAIRN_REPLY_NOW;
}

static int s_in_check_only(cairn_request_t *req, const Cairn__Ghostd__MigrateBeginRequest *b)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__MigrateState *st = cairn_request_alloc(req, sizeof *st);
    char *reasons[8];
    size_t n = s_target_reasons(b->memory_bytes, b->kernel_release, reasons, 8);
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
                               "%s already", s_self(m), b->gpid);
    for (size_t i = 0; i < MIGRATE_MAX; i++)
        if ((m->in[i].state == IN_RECEIVING || m->in[i].state == IN_RESTORING ||
             m->in[i].state == IN_RUNNING) && strcmp(m->in[i].gpid, b->gpid) == 0)
            return cairn_error_set(err, -EBUSY, CAIRN_BUSY, "node %u is receiving job "
                                   "%s already (%s)", s_self(m), b->gpid, m->in[i].id);
    snprintf(dir, sizeof dir, "%s/%s", ghostd_jobs_dir(m->gd->jobs), b->gpid);
    int r = ghostd_jobrec_read(dir, &rec);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION, "node %u cannot read "
                               "job %s's record %s/job.json (%s): the jobs directory must "
                               "be the same on every node (docs/jobs.md)", s_self(m),
                               b->gpid, dir, strerror(-r));
    bool same = rec.uid == b->uid;
    ghostd_jobrec_clear(&rec);
    if (!same)
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED, "job %s's record "
                               "names another owner than uid %u", b->gpid, b->uid);
    return 0;
}

/* Spawns ghost-restore reading a new pipe; in->pipe_fd its write end. */
static int s_in_spawn(s_in_t *in, bool new_pid, cairn_error_t *err)
{
    ghostd_t *gd = in->m->gd;
    char as[24], scope[64], cg[80];
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s", strerror(errno));
    char *argv[12] = { NULL, "--image-fd", "3" };
    int n = 3;
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
    int r = ghostd_helper_start(gd, GHOSTD_RESTART, argv, &p[0], 1,
                                GHOSTD_MAX_DEADLINE_MS, &in->rst, err);
    close(p[0]);
    if (r < 0) {
        close(p[1]);
        return r;
    }
    in->rst->on_exit = s_in_on_exit;
    in->rst->hook_data = in;
    in->rst->for_user = in->uid != 0;
    in->rst->uid = in->uid;
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    fcntl(p[1], F_SETPIPE_SZ, S_PIPE_SIZE);
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
    s_in_t *in = s_in_find(m, b->id);
    if (in)   /* asked again: the same answer */
        return in->from == c->node ? s_reply_state(req, in->id, s_in_state_name(in->state),
                                                   in->pid, in->error)
                                   : cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                                                        "migration %s exists", b->id);
    size_t n = s_target_reasons(b->memory_bytes, b->kernel_release, reasons, 8);
    if (n) {
        char msg[2048] = "";
        for (size_t i = 0; i < n; i++) {
            size_t at = strlen(msg);
            snprintf(msg + at, sizeof msg - at, "%s%s", i ? "; " : "", reasons[i]);
            free(reasons[i]);
        }
        cairn_log_info("migrate-in-refused", "id=%s from=%u msg=\"%s\"", b->id, c->node, msg);
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "node %u cannot take "
                                  "the job: %s", s_self(m), msg);
    }
    if (b->gpid && *b->gpid && s_in_check_job(m, b, &err) < 0) {
        cairn_log_info("migrate-in-refused", "id=%s from=%u msg=\"%s\"", b->id, c->node,
                       err.message);
        return cairn_request_fail(req, err.code, "%s", err.message);
    }
    if (!(in = s_in_claim(m)))
        return cairn_request_fail(req, CAIRN_BUSY, "%d migrations are under way on "
                                  "node %u; try again later", MIGRATE_MAX, s_self(m));
    in->state = IN_RECEIVING;
    snprintf(in->id, sizeof in->id, "%s", b->id);
    snprintf(in->gpid, sizeof in->gpid, "%s", b->gpid ? b->gpid : "");
    in->from = c->node;
    in->uid = b->uid;
    in->gid = b->gid;
    in->touched_ms = cairn_now_ms();
    if (s_in_spawn(in, b->new_pid, &err) < 0) {
        s_in_free(in);
        return cairn_request_fail(req, err.code, "node %u: %s", s_self(m), err.message);
    }
    in->timer = cairn_loop_add_timer(s_loop(m), 1000, 1000, s_in_on_idle, in);
    in->helper = in->rst->helper;
    s_in_record(in);
    cairn_log_info("migrate-in", "id=%s from=%u gpid=%s uid=%u helper=%d", in->id,
                   in->from, in->gpid, in->uid, (int)in->rst->helper);
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
    s_in_t *in = s_in_find(gd->migrate, ch->id);
    if (!in)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "no migration %s on node %u",
                                  ch->id ? ch->id : "", s_self(gd->migrate));
    if (s_in_check_caller(cairn_request_caller(req), in->uid, in->from, &err) < 0)
        return cairn_request_fail(req, err.code, "%s", err.message);
    if (in->state == IN_FAILED)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "%s", in->error);
    if (in->state != IN_RECEIVING)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s is %s: "
                                  "no more chunks", in->id, s_in_state_name(in->state));
    if (ch->seq != in->next_seq) {
        s_in_fail(in, CAIRN_INVALID_ARGUMENT, "chunk %llu came where chunk %llu was "
                  "due: the stream is broken", (unsigned long long)ch->seq,
                  (unsigned long long)in->next_seq);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "%s", in->error);
    }
    if (ch->data.len > MIGRATE_CHUNK || in->q_n == S_QUEUE_MAX)
        return cairn_request_fail(req, CAIRN_TOO_LARGE, "chunk %llu: %zu bytes with "
                                  "%zu chunks queued (at most %u bytes, %d chunks)",
                                  (unsigned long long)ch->seq, ch->data.len, in->q_n,
                                  MIGRATE_CHUNK, S_QUEUE_MAX);
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
        return s_reply_chunk(req, in, ch->seq);
    }
    s_chunk_t *c = &in->q[(in->q_head + in->q_n) % S_QUEUE_MAX];
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
        *c = (s_chunk_t){ 0 };
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
static s_in_t *s_in_lookup(ghostd_t *gd, cairn_request_t *req, const char *id, int *ret)
{
    s_in_t *in = s_in_find(gd->migrate, id);
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
    s_in_t *in = s_in_lookup(ctx, req, body->migrate_status->id, &r);
    return in ? s_reply_state(req, in->id, s_in_state_name(in->state), in->pid, in->error)
              : r;
}

int migrate_handle_commit(void *ctx, cairn_request_t *req)
{
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    int r = 0;

    if (!body->migrate_commit)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate_commit: empty");
    s_in_t *in = s_in_lookup(ctx, req, body->migrate_commit->id, &r);
    if (!in)
        return r;
    if (in->state != IN_RUNNING && in->state != IN_COMMITTED)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s is %s, "
                                  "not running", in->id, s_in_state_name(in->state));
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
    s_in_t *in = s_in_lookup(ctx, req, a->id, &r);
    if (!in)
        return r;
    if (in->state == IN_COMMITTED)   /* the source's copy is gone: never */
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s is "
                                  "committed: the job is this node's", in->id);
    s_in_fail(in, CAIRN_UNAVAILABLE, "aborted by node %u: %s", in->from,
              a->why && *a->why ? a->why : "(no reason given)");
    return s_reply_state(req, in->id, "failed", 0, in->error);
}

/* ---- source -------------------------------------------------------------- */

static void s_out_step(s_out_t *o);
static void s_out_confirm(s_out_t *o);
static void s_out_reset(s_out_t *o);

/* Frees the slot once answered and no callback is due. */
static void s_out_maybe_free(s_out_t *o)
{
    if (o->state != OUT_ENDED || o->calls || o->dump || o->deferred)
        return;
    if (o->timer > 0)
        cairn_loop_cancel_timer(s_loop(o->m), o->timer);
    free(o->endpoint);
    free(o->buf);
    s_out_reset(o);
}

/* The end of a peer's answer to o: the reply (if any) freed, o freed if
 * that answer was all it still waited for. */
static void s_out_answered(s_out_t *o, ProtobufCMessage *reply)
{
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    s_out_maybe_free(o);
}

/* An empty slot again; its bulk connection is dropped (safe inside that
 * connection's own callback) but the object kept for the next use. */
static void s_out_reset(s_out_t *o)
{
    migrate_t *m = o->m;
    cairn_peers_t *bulk = o->bulk;

    if (bulk && o->to)
        cairn_peers_forget(bulk, o->to);
    *o = (s_out_t){ .m = m, .bulk = bulk, .img_fd = -1, .hold_fd = -1 };
}

static void s_out_close_img(s_out_t *o)
{
    if (o->img_watch > 0)
        cairn_loop_remove(s_loop(o->m), o->img_watch);
    o->img_watch = 0;
    if (o->img_fd >= 0)
        close(o->img_fd);
    o->img_fd = -1;
}

/* Tells a holding ghost-dump its verdict ("kill" or "resume") and closes
 * the hold pipe (its end, for a dump not holding yet, means resume). */
static void s_out_verdict(s_out_t *o, const char *word)
{
    if (o->hold_fd < 0)
        return;
    ssize_t k = write(o->hold_fd, word, strlen(word));
    (void)k;   /* a dump gone cannot hold anything: its exit tells */
    close(o->hold_fd);
    o->hold_fd = -1;
}

static int s_out_call(s_out_t *o, Cairn__Ghostd__Request *req, uint64_t timeout_ms,
                      cairn_peer_fn fn);
static int s_out_call_on(s_out_t *o, cairn_peers_t *peers, Cairn__Ghostd__Request *req,
                         uint64_t timeout_ms, cairn_peer_fn fn);

static void s_on_abort_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    s_out_t *o = userdata;

    o->calls--;
    if (code != CAIRN_OK)
        cairn_log_info("migrate-abort", "id=%s to=%u answer=%s msg=\"%s\"", o->id, node,
                       cairn_code_name(code), message);
    s_out_answered(o, reply);
}

static void s_out_abort_target(s_out_t *o, const char *why)
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
static void s_out_answer_failure(s_out_t *o)
{
    char msg[1400];

    restart_job_moving(o->m->gd, o->pid, false);   /* it stays: checkpoints go on */
    if (!o->deferred)
        return;
    snprintf(msg, sizeof msg, "migration of %s%s%u to node %u failed: %s; the job "
             "runs on at node %u", o->gpid[0] ? "job " : "pid ",
             o->gpid[0] ? o->gpid : "", o->gpid[0] ? 0 : o->pid, o->to, o->fail_msg,
             s_self(o->m));
    if (o->gpid[0])   /* "job G" without the pid printed as 0 */
        snprintf(msg, sizeof msg, "migration of job %s to node %u failed: %s; the "
                 "job runs on at node %u", o->gpid, o->to, o->fail_msg, s_self(o->m));
    cairn_log_warn(0, "migrate-failed", "id=%s pid=%u to=%u code=%s msg=\"%s\"", o->id,
                   o->pid, o->to, cairn_code_name(o->fail_code), o->fail_msg);
    if (o->is_job)   /* it runs on here */
        ghostd_jobs_set_migrating(o->m->gd->jobs, o->gpid, false);
    cairn_deferred_fail(o->m->gd->svc, o->deferred, o->fail_code, msg);
    o->deferred = NULL;
}

/* A failure while the source copy may still be resumed: record it (the
 * first one counts), let the tree go, abort the target; the client is
 * answered once ghost-dump is reaped (or now, when none ran). */
static void s_out_fail(s_out_t *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_out_fail(s_out_t *o, int code, const char *fmt, ...)
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
    s_out_close_img(o);           /* a dump still writing fails and lets go */
    s_out_verdict(o, "resume\n");
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
static void s_out_succeed(s_out_t *o, Cairn__Ghostd__Job *job)
{
    Cairn__Ghostd__MigrateReply mr = CAIRN__GHOSTD__MIGRATE_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;

    mr.gpid = o->gpid;
    mr.from = s_self(o->m);
    mr.to = o->to;
    mr.source_pid = o->pid;
    mr.pid = o->new_pid;
    mr.image_bytes = o->bytes;
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

static void s_on_commit_answer(void *userdata, uint32_t node, int code, const char *message,
                               ProtobufCMessage *reply)
{
    s_out_t *o = userdata;
    Cairn__Ghostd__Reply *rep = (Cairn__Ghostd__Reply *)reply;
    const Cairn__Ghostd__MigrateState *st =
        rep && rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_MIGRATE_STATE
            ? rep->migrate_state : NULL;

    o->calls--;
    if ((code == CAIRN_TIMEOUT || code == CAIRN_UNAVAILABLE) &&
        cairn_now_ms() + S_CONFIRM_EVERY_MS < o->deadline_ms) {
        /* The target runs it but has not heard (its ghostd restarting:
         * it finds the migration in its record): ask again. */
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        if (o->timer > 0)
            cairn_loop_cancel_timer(s_loop(o->m), o->timer);
        o->timer = cairn_loop_add_timer(s_loop(o->m), S_CONFIRM_EVERY_MS, 0,
                                        s_on_commit_again, o);
        if (o->timer > 0)
            return;
        o->timer = 0;
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
static void s_out_commit(s_out_t *o)
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
    s_out_t *o = userdata;

    o->timer = 0;
    s_out_commit(o);
    s_out_maybe_free(o);
    return 0;
}

/* ghost-dump was reaped: the end of every path that froze the tree. */
static void s_out_on_exit(ghostd_helper_t *j, int status)
{
    s_out_t *o = j->hook_data;
    json_t *first = ghostd_helper_line(j, 0);
    json_t *second = o->held ? ghostd_helper_line(j, 1) : NULL;
    const char *outcome = second ? json_string_value(json_object_get(second, "outcome")) : NULL;
    char msg[1024];

    o->dump = NULL;
    s_out_close_img(o);
    if (o->hold_fd >= 0) {
        close(o->hold_fd);
        o->hold_fd = -1;
    }
    if (o->state == OUT_KILLING && outcome && strcmp(outcome, "killed") == 0) {
        o->state = OUT_ENDED;
        s_out_commit(o);
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
        s_out_fail(o, code, "dump at node %u: %s", s_self(o->m), msg);
        o->state = OUT_ENDED;
        s_out_answer_failure(o);
    }
    json_decref(first);
    json_decref(second);
    s_out_maybe_free(o);
}

/* ghost-dump printed: its first line, "held", means the image is whole
 * and the tree frozen. */
static void s_out_on_output(ghostd_helper_t *j)
{
    s_out_t *o = j->hook_data;

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
        s_out_step(o);
    }
    json_decref(v);
}

static void s_on_chunk_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply);

/* Sends buf[0, n) as the next chunk. */
static int s_out_send_chunk(s_out_t *o, size_t n, bool last)
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
     * last one once the tree runs, within the client's deadline. */
    int r = s_out_call_on(o, o->bulk, &req,
                          last ? left : (left < MIGRATE_CHUNK_MS ? left : MIGRATE_CHUNK_MS),
                          s_on_chunk_answer);
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
static void s_out_step(s_out_t *o)
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
        o->img_watch = cairn_loop_add_fd(s_loop(o->m), o->img_fd, ZMQ_POLLIN,
                                         s_out_on_readable, o);
    else if (!room && o->img_watch > 0) {
        cairn_loop_remove(s_loop(o->m), o->img_watch);
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
    s_out_t *o = userdata;

    while (o->img_fd >= 0 && o->len <= MIGRATE_CHUNK) {
        ssize_t k = read(o->img_fd, o->buf + o->len, MIGRATE_CHUNK + 1 - o->len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN)
            break;
        if (k <= 0) {   /* the end (or an error: ghost-dump's exit says) */
            o->eof = true;
            s_out_close_img(o);
            break;
        }
        o->len += (size_t)k;
        o->bytes += (uint64_t)k;
    }
    s_out_step(o);
    return 0;
}

/* The target runs the tree: kill the source's copy. */
static void s_out_kill_source(s_out_t *o)
{
    /* The job leaves the table first: its reaper's end is the move, not
     * the job's (no exit record). */
    if (o->is_job)
        ghostd_jobs_release(o->m->gd->jobs, o->gpid);
    o->state = OUT_KILLING;
    o->frozen_us = cairn_now_us() - (o->held_us - o->dump_us);
    s_out_verdict(o, "kill\n");
    if (!o->dump)   /* reaped already: its exit path decided */
        return;
}

static void s_on_chunk_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    s_out_t *o = userdata;
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
    s_out_t *o = userdata;

    o->timer = 0;
    s_out_confirm(o);
    return 0;
}

static void s_out_confirm_later(s_out_t *o)
{
    if (o->timer > 0)
        cairn_loop_cancel_timer(s_loop(o->m), o->timer);
    o->timer = cairn_loop_add_timer(s_loop(o->m), S_CONFIRM_EVERY_MS, 0,
                                    s_on_confirm_timer, o);
}

/* The client's deadline passed while confirming: it is told, the asking
 * goes on (the tree stays frozen rather than risk two copies). */
static void s_out_confirm_deadline(s_out_t *o)
{
    char msg[1400];

    if (!o->deferred || cairn_now_ms() < o->deadline_ms)
        return;
    snprintf(msg, sizeof msg, "migration %s: node %u has not said whether the restored "
             "job runs (%s); the job stays frozen at node %u until it does or is "
             "declared dead", o->id, o->to, o->fail_msg, s_self(o->m));
    cairn_deferred_fail(o->m->gd->svc, o->deferred, CAIRN_TIMEOUT, msg);
    o->deferred = NULL;
}

static void s_on_nodes_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    s_out_t *o = userdata;
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
static void s_out_ask_clusterd(s_out_t *o)
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
    s_out_t *o = userdata;
    Cairn__Ghostd__Reply *rep = (Cairn__Ghostd__Reply *)reply;
    const Cairn__Ghostd__MigrateState *st =
        rep && rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_MIGRATE_STATE
            ? rep->migrate_state : NULL;

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

static void s_out_confirm(s_out_t *o)
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

static int s_out_call(s_out_t *o, Cairn__Ghostd__Request *req, uint64_t timeout_ms,
                      cairn_peer_fn fn)
{
    return s_out_call_on(o, o->m->peers, req, timeout_ms, fn);
}

static int s_out_call_on(s_out_t *o, cairn_peers_t *peers, Cairn__Ghostd__Request *req,
                         uint64_t timeout_ms, cairn_peer_fn fn)
{
    int r = cairn_peers_call_as(peers, o->to, o->endpoint, &req->base,
                                (uint32_t)(timeout_ms ? timeout_ms : 1),
                                o->as.uid == 0 ? NULL : &o->as, fn, o);
    if (r == 0)
        o->calls++;
    return r;
}

/* Spawns ghost-dump --out-fd 3 --hold-fd 4 on the tree. */
static int s_out_spawn_dump(s_out_t *o, cairn_error_t *err)
{
    char pid[16], as[24];
    int img[2], hold[2];

    if (pipe2(img, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s", strerror(errno));
    if (pipe2(hold, O_CLOEXEC) < 0) {
        close(img[0]);
        close(img[1]);
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s", strerror(errno));
    }
    restart_job_moving(o->m->gd, o->pid, true);   /* its tracker lets go first */
    snprintf(pid, sizeof pid, "%u", o->pid);
    char *argv[12] = { NULL, "--pid", pid, "--out-fd", "3", "--hold-fd", "4" };
    int n = 7;
    if (o->mode == MIGRATE_PRE_COPY)   /* rounds while it runs: ghost-dump's
                                          defaults (8, until one <= 1 MiB) */
        argv[n++] = "--precopy";
    if (ghostd_for_user(&o->as)) {
        snprintf(as, sizeof as, "%u:%u", o->as.uid, o->as.gid);
        argv[n++] = "--as";
        argv[n++] = as;
    }
    argv[n] = NULL;
    int fds[2] = { img[1], hold[0] };
    int r = ghostd_helper_start(o->m->gd, GHOSTD_CHECKPOINT, argv, fds, 2,
                                GHOSTD_MAX_DEADLINE_MS, &o->dump, err);
    close(img[1]);
    close(hold[0]);
    if (r < 0) {
        close(img[0]);
        close(hold[1]);
        return r;
    }
    o->dump->pid = o->pid;   /* a checkpoint of it meanwhile is busy */
    o->dump->on_output = s_out_on_output;
    o->dump->on_exit = s_out_on_exit;
    o->dump->hook_data = o;
    fcntl(img[0], F_SETFL, O_NONBLOCK);
    fcntl(img[0], F_SETPIPE_SZ, S_PIPE_SIZE);
    o->img_fd = img[0];
    o->hold_fd = hold[1];
    return 0;
}

static void s_on_begin_answer(void *userdata, uint32_t node, int code, const char *message,
                              ProtobufCMessage *reply)
{
    s_out_t *o = userdata;
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
    s_out_t *o = userdata;

    o->timer = 0;
    if (o->state == OUT_STREAM && !o->last_sent)
        s_out_fail(o, CAIRN_TIMEOUT, "the deadline passed after %llu of the image's "
                   "bytes were read", (unsigned long long)o->bytes);
    /* begin and the last chunk end by their own timeouts; confirm asks on */
    return 0;
}

/* The source's request, checked: the tree, its owner, the target. */
static int s_out_prepare(migrate_t *m, cairn_request_t *req,
                         const Cairn__Ghostd__MigrateRequest *mr, s_out_t *o,
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
                               "not run on node %u", mr->gpid, s_self(m));
    if (!rec && !mr->pid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "migrate: a gpid or a pid is required");
    if (!mr->to)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "migrate: the target node is required");
    if (mr->to == s_self(m))
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
    o->rss = s_tree_rss((pid_t)o->pid, 0);
    if (o->mode == MIGRATE_AUTO)
        o->mode = migrate_mode_auto(o->rss);
    if (o->mode == MIGRATE_POST_COPY)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED, "migrate: "
                               "post-copy between ghostds is not implemented yet");
    o->endpoint = cairn_description_tcp_endpoint(d, nd, "ghostd", false);
    if (!o->endpoint)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "migrate: node %u runs no "
                               "ghostd", mr->to);
    o->to = mr->to;
    o->as = *c;
    return 0;
}

static s_out_t *s_out_claim(migrate_t *m)
{
    for (size_t i = 0; i < MIGRATE_MAX; i++)
        if (m->out[i].state == OUT_FREE)
            return &m->out[i];
    return NULL;
}

/* Sends begin; check_only asks the target's checks only. fn gets ud. */
static int s_out_begin(s_out_t *o, bool check_only, cairn_peer_fn fn, void *ud)
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
    b.memory_bytes = s_tree_rss((pid_t)o->pid, 0);
    b.kernel_release = u.release;
    b.check_only = check_only;
    b.new_pid = !o->is_job;
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
    s_out_t *o;
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
    s_out_t *o = k->o;

    if (!k->dump_done || !k->target_done)
        return;
    mr.gpid = o->gpid;
    mr.from = s_self(o->m);
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
    Cairn__Ghostd__Reply *rep = (Cairn__Ghostd__Reply *)reply;
    const Cairn__Ghostd__MigrateState *st =
        rep && rep->msg_case == CAIRN__GHOSTD__REPLY__MSG_MIGRATE_STATE
            ? rep->migrate_state : NULL;

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

static int s_out_check(s_out_t *o, cairn_error_t *err)
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

/* ---- a job another node runs: the request carried there ------------------ */

static void s_fwd_unlink(s_fwd_t *f)
{
    for (s_fwd_t **p = &f->m->fwds; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    free(f);
}

static void s_on_fwd_answer(void *userdata, uint32_t node, int code, const char *message,
                            ProtobufCMessage *reply)
{
    s_fwd_t *f = userdata;
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
static int s_forward(migrate_t *m, cairn_request_t *req,
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
                                  s_self(m));
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
    _cleanup_free_ char *ep = nd && node != s_self(m)
                                  ? cairn_description_tcp_endpoint(d, nd, "ghostd", false)
                                  : NULL;
    if (!ep)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "migrate: job %s is not in node "
                                  "%u's table, and its record names node %u", mr->gpid,
                                  s_self(m), node);
    Cairn__Ghostd__MigrateRequest fwd = *mr;
    Cairn__Ghostd__Request body = CAIRN__GHOSTD__REQUEST__INIT;
    fwd.local_only = true;
    body.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE;
    body.migrate = &fwd;
    s_fwd_t *f = calloc(1, sizeof *f);
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
    s_out_t *o;

    if (!mr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "migrate: request body is empty");
    if (!(o = s_out_claim(m)))
        return cairn_request_fail(req, CAIRN_BUSY, "%d migrations are under way from "
                                  "node %u; try again later", MIGRATE_MAX, s_self(m));
    if (deadline > GHOSTD_MAX_DEADLINE_MS)
        deadline = GHOSTD_MAX_DEADLINE_MS;
    deadline -= deadline / 20 < 1000 ? deadline / 20 : 1000;   /* answer in time */
    int pr = s_out_prepare(m, req, mr, o, &err);
    if (pr < 0) {
        free(o->endpoint);
        s_out_reset(o);
        if (pr == -EREMOTE && !mr->local_only)   /* another node runs it */
            return s_forward(m, req, mr, deadline);
        cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(err.code),
                       err.message);
        return cairn_request_fail(req, err.code, "%s", err.message);
    }
    o->t0_us = t0;
    o->deadline_ms = cairn_now_ms() + deadline;
    snprintf(o->id, sizeof o->id, "%u-%u-%llu-%u", s_self(m), o->pid,
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
    o->timer = cairn_loop_add_timer(s_loop(m), o->deadline_ms - cairn_now_ms(), 0,
                                    s_on_out_deadline, o);
    if (o->is_job)
        ghostd_jobs_set_migrating(m->gd->jobs, o->gpid, true);
    cairn_log_info("migrate", "id=%s pid=%u to=%u uid=%u", o->id, o->pid, o->to, o->uid);
    return CAIRN_REPLY_DEFERRED;
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
    s_in_t *in = id && state && gpid && strlen(id) < sizeof m->in[0].id ? s_in_claim(m) : NULL;
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
    in->timer = cairn_loop_add_timer(s_loop(m), 1000, 1000, s_in_on_idle, in);
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
        in->state = IN_RECEIVING;   /* so that s_in_fail acts */
        s_in_fail(in, CAIRN_UNAVAILABLE, "ghostd on node %u restarted during the "
                  "migration; what it had restored was killed", s_self(m));
    }
    json_decref(v);
}

/* At start: the migrations a ghostd that died left records of. */
static void s_in_recover(migrate_t *m)
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
        m->out[i] = (s_out_t){ .m = m, .img_fd = -1, .hold_fd = -1 };
        m->in[i] = (s_in_t){ .m = m, .pipe_fd = -1 };
        m->out[i].bulk = cairn_peers_new(gd->svc, "ghostd", &cairn__ghostd__reply__descriptor);
        if (!m->out[i].bulk) {
            migrate_stop(gd);
            return -ENOMEM;
        }
    }
    s_in_recover(m);
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
        s_out_t *o = &m->out[i];
        if (o->state == OUT_FREE)
            continue;
        s_out_close_img(o);
        /* Confirming: the target may run it; the tree stays frozen is not
         * an option once we exit (ghost-dump would see the end: resume). */
        s_out_verdict(o, o->state == OUT_KILLING ? "kill\n" : "resume\n");
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
            cairn_loop_cancel_timer(s_loop(m), o->timer);
        free(o->endpoint);
        free(o->buf);
    }
    for (size_t i = 0; i < MIGRATE_MAX; i++) {
        s_in_t *in = &m->in[i];
        if (in->state == IN_FREE)
            continue;
        if (in->state == IN_RECEIVING || in->state == IN_RESTORING)
            s_in_fail(in, CAIRN_UNAVAILABLE, "ghostd on node %u is stopping", s_self(m));
        if (in->rst) {
            in->rst->on_exit = NULL;
            in->rst = NULL;
        }
        s_in_free(in);
    }
    while (m->fwds) {   /* their peers go below, callbacks with them */
        if (m->fwds->d)
            cairn_deferred_fail(gd->svc, m->fwds->d, CAIRN_UNAVAILABLE,
                                "ghostd is stopping; the request it carried to the "
                                "job's node may still run there");
        s_fwd_unlink(m->fwds);
    }
    for (size_t i = 0; i < MIGRATE_MAX; i++)
        cairn_peers_free(m->out[i].bulk);
    cairn_peers_free(m->peers);
    cairn_peers_free(m->clusterd);
    free(m);
    gd->migrate = NULL;
}
