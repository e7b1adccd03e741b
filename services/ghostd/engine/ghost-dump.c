/* ghost-dump - checkpoint one process tree into an image file.
 *
 *   ghost-dump --pid PID --out FILE [--leave-running] [--in-place] [--check]
 *              [--pagemap-read] [--probe-eventfds] [--as UID:GID]
 *              [--ghost-file-max BYTES] [--precopy [--rounds N] [--round-until BYTES]]
 *   ghost-dump --pid PID --out-fd N [--hold-fd M] [--leave-running] ...
 *   ghost-dump --pid PID --postcopy --out-fd N --hold-fd M --pages-fd P ...
 *
 * One job, one JSON line on stdout, nothing else there:
 *   success  {"pid":N,"image":"FILE","image_bytes":N,"pages":N,"processes":N,
 *             "threads":N,"freeze_us":N,"dump_us":N,"frozen_us":N,
 *             "copy_threads":N,"stopped":N,"left_running":bool,
 *             "steps_us":{"seize","check","state","vmas","pages","files",
 *             "end","sync","release"},"dumper_us":{"cpu","runqueue","asleep"},
 *             "durable_us":N}
 *            and with --precopy {"rounds":N,"round_bytes":[N,...],
 *             "precopy_bytes":N,"kept_pages":N,"track_us":N}
 *   --check  {"pid":N,"checkpointable":true}
 *   failure  {"error":{"code":"<cairn code name>","message":"..."}}
 *   refusal  the same with "reasons":[{"code","pid","what","message"},...]
 *            (every reason the check found, the first being the error;
 *            "more_reasons":N beyond the 32 listed) -- reasons.h
 * Exit codes: 0 done; 2 refused before anything changed (the process runs
 * on untouched); 1 failed during the dump (the process is detached and left
 * running if at all possible, the message says which). The image is
 * written as FILE.part and renamed to FILE when complete, so a refused or
 * failed dump leaves no file and an earlier FILE intact. --in-place writes
 * over FILE itself instead, reusing the memory of the image it holds (on
 * tmpfs the allocation of new pages costs more than the copy: periodic
 * checkpoints pay it once); a refusal leaves FILE as it was, a failure
 * once writing began removes it. --pagemap-read finds present pages the
 * way kernels before 6.7 (without PAGEMAP_SCAN) must, to test that path on
 * newer ones; --probe-eventfds finds whether each eventfd is a semaphore by
 * probing it (anonfd.h), as on kernels before 6.2, likewise.
 * --ghost-file-max sets how big an open file unlinked from every
 * directory may be for its contents to go into the image (1 MiB by
 * default; a bigger one is refused, ghostfile.h). --precopy
 * copies the tree's memory while it runs, in rounds (at most --rounds,
 * 8 by default; until one copies at most --round-until bytes, 1 MiB by
 * default), tracking what it writes, so that the freeze copies only what
 * changed since the last round (docs/ghost.md, "Pre-copy"); a kernel
 * without what that needs is a refusal (exit 2, unsupported). 100 wrong usage. ghostd runs this per
 * request so that a hostile process can never take the daemon down.
 *
 * --out-fd N: the image stream goes to the inherited fd N (a pipe: ghostd
 * streams it to another node, services/ghostd/migrate.h) instead of a
 * file; no .part, no rename, nothing made on disk, always streamed. The
 * success line says "out_fd":N instead of "image".
 *
 * --hold-fd M (with --out-fd): once the image is completely written, fd N
 * is closed (its reader sees the end) and the tree stays frozen --
 * seized, nothing of it runs -- while the success line is printed with
 * "held":true; then a line is read from fd M: "kill" kills the tree,
 * "resume" -- or anything else, or the end of M (ghostd died: the job must
 * never be lost) -- lets it go running. A second line follows,
 * {"outcome":"killed"|"resumed","left_running":B}, and the exit is 0
 * either way. A dump that fails before the hold prints its error line as
 * usual and leaves the tree running. SIGPIPE is ignored meanwhile: a
 * reader gone must not kill the holder of a frozen tree.
 *
 * --postcopy (with --out-fd N --hold-fd M --pages-fd P): the image lists
 * the vmas of private anonymous memory whole (lazy_pages records, no
 * page-table walk; but the pages the restore touches first) instead of
 * holding their pages, and the held tree serves them on P (lazy.h's
 * frames; docs/ghost.md, "Post-copy"). The success line adds
 * "postcopy":true,"lazy_pages":N (the ranges' extent),
 * "lazy_resident_pages":N (of them, about how many the tree held: what
 * comes as bytes). The words on M: `kill` and `resume` as
 * above; `serve` starts answering the target's page requests on P and
 * pushing every lazy page in address order. Once serving began the
 * tree's pages may be half on the target, which may run: the tree is
 * killed once every page was sent and the target said END (or closed P,
 * or the holder says `kill`), and it runs again only if the holder says
 * `resume` -- while serving, or after P broke (the line after that is
 * waited for: the holder knows whether the target ran; its end kills).
 * The second line adds "served":true,"pages_requested":N,"requests":N,
 * "pages_pushed":N,"pages_absent":N (pushed as ZERO: never touched),
 * "serve_us":N,"target_done":B and, if P broke,
 * "serve_error":{"code","message"}.
 * --serve-fd C: the tracker of incremental checkpoints (serve.h,
 * docs/ghost.md "Incremental checkpoints"). It tracks the tree's writes
 * and stays; each line "checkpoint DIR" read from fd C writes
 * DIR/image.ghost.N -- a full image first, then deltas naming the one
 * before, a full one again after --compact-every K deltas (16) or when
 * the chain outgrows twice the full one -- points DIR/image.ghost at it
 * and answers one line on stdout:
 *   {"checkpoint":N,"image":"DIR/image.ghost.N","latest":"DIR/image.ghost",
 *    "full":B,"why_full":"..."|null,"freeze_us":N,"frozen_us":N,"dump_us":N,
 *    "image_bytes":N,"pages":N,"kept_pages":N,"processes":N,
 *    "chain":["image.ghost.B",...,"image.ghost.N"],"chain_bytes":N,"pid":N,
 *    "job":B,"steps_us":{...},"dumper_us":{...},"durable_us":N}
 * or an error line as above (the chain as it was; the next is full). The
 * end of C stops it: {"stopped":true,"checkpoints":N}, exit 0 (1: the
 * tree is gone). The tree runs on between checkpoints and after.
 *
 * --as UID:GID: a user who is not root asked (ghostd says who). Every
 * process of the tree must be theirs (owner.h; refused with
 * permission-denied, exit 2, the tree untouched -- judged again once it is
 * frozen), and every file operation on the image -- making FILE's
 * directory (0700, parents too: ghostd makes none for a user), creating,
 * renaming and removing FILE -- is made with the user's file rights, so the
 * image is theirs and lands only where they may write. The dump itself
 * (ptrace, /proc) keeps root's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"
#include "owner.h"
#include "chain.h"
#include "place.h"
#include "report.h"
#include "serve.h"
#include "util/cleanup.h"
#include "util/fileio.h"
#include "util/options.h"

enum { S_EXIT_OK = 0, S_EXIT_FAILED = 1, S_EXIT_REFUSED = 2, S_EXIT_USAGE = 100 };

typedef struct s_args {
    long pid;              /* --pid */
    const char *out;       /* --out */
    bool leave_running;    /* --leave-running */
    bool in_place;         /* --in-place */
    bool pagemap_read;     /* --pagemap-read */
    bool probe_eventfds;   /* --probe-eventfds */
    long ghost_file_max;   /* --ghost-file-max, 0 if not given */
    bool check;            /* --check */
    bool precopy;          /* --precopy */
    long rounds;           /* --rounds */
    long round_until;      /* --round-until */
    int out_fd;            /* --out-fd N, -1 if not given */
    int hold_fd;           /* --hold-fd M, -1 if not given */
    int serve_fd;          /* --serve-fd C, -1 if not given */
    long compact_every;    /* --compact-every K */
    bool as_user;          /* --as: owner is set */
    bool out_fd_closed;    /* the hold closed out_fd */
    bool postcopy;         /* --postcopy */
    int pages_fd;          /* --pages-fd P, -1 if not given */
    ghost_owner_t owner;   /* --as UID:GID: who asked (owned) */
} s_args_t;

static int s_usage(const char *why)
{
    cairn_error_t err;
    cairn_error_set(&err, -EINVAL, CAIRN_USAGE,
                    "%s; usage: ghost-dump --pid PID (--out FILE | --out-fd N "
                    "[--hold-fd M]) [--leave-running] [--in-place] [--check] "
                    "[--pagemap-read] [--probe-eventfds] [--as UID:GID] "
                    "[--ghost-file-max BYTES] [--precopy [--rounds N] [--round-until BYTES]] "
                    "[--postcopy --pages-fd P]; or ghost-dump --pid PID "
                    "--serve-fd C [--compact-every K] [--as UID:GID]",
                    why);
    return ghost_report_error(&err, S_EXIT_USAGE);
}

/* The options, in the order of s_args_t. */
enum {
    S_OPT_PID, S_OPT_OUT, S_OPT_LEAVE_RUNNING, S_OPT_IN_PLACE,
    S_OPT_PAGEMAP_READ, S_OPT_PROBE_EVENTFDS, S_OPT_CHECK, S_OPT_AS,
    S_OPT_PRECOPY, S_OPT_ROUNDS, S_OPT_ROUND_UNTIL, S_OPT_OUT_FD, S_OPT_HOLD_FD,
    S_OPT_POSTCOPY, S_OPT_PAGES_FD,
    S_OPT_SERVE_FD, S_OPT_COMPACT_EVERY, S_OPT_GHOST_FILE_MAX,
};

#define S_ROUNDS_DEFAULT 8
#define S_ROUND_UNTIL_DEFAULT (1l << 20)

static const cairn_option_t s_options[] = {
    [S_OPT_PID] = { "--pid", "PID", "the root of the tree to dump" },
    [S_OPT_OUT] = { "--out", "FILE", "the image (FILE.part until complete)" },
    [S_OPT_LEAVE_RUNNING] = { "--leave-running", NULL,
                              "the tree runs on after the dump" },
    [S_OPT_IN_PLACE] = { "--in-place", NULL,
                         "write over FILE itself, reusing its pages" },
    [S_OPT_PAGEMAP_READ] = { "--pagemap-read", NULL,
                             "find present pages as before PAGEMAP_SCAN" },
    [S_OPT_PROBE_EVENTFDS] = { "--probe-eventfds", NULL,
                               "probe eventfds for EFD_SEMAPHORE" },
    [S_OPT_CHECK] = { "--check", NULL, "only say whether PID can be dumped" },
    [S_OPT_AS] = { "--as", "UID:GID", "for this user (not root): their processes "
                   "only, the image made with their file rights" },
    [S_OPT_PRECOPY] = { "--precopy", NULL, "copy in rounds while the tree runs, then "
                        "freeze for what changed since" },
    [S_OPT_ROUNDS] = { "--rounds", "N", "pre-copy rounds at most (8)" },
    [S_OPT_ROUND_UNTIL] = { "--round-until", "BYTES",
                            "freeze once a round copied at most this (1048576)" },
    [S_OPT_OUT_FD] = { "--out-fd", "N", "stream the image into inherited fd N "
                       "(a pipe) instead of a file" },
    [S_OPT_HOLD_FD] = { "--hold-fd", "M", "with --out-fd: keep the tree frozen "
                        "after the image, then read kill or resume from fd M" },
    [S_OPT_POSTCOPY] = { "--postcopy", NULL, "list private anonymous pages instead of "
                         "copying them; serve them on --pages-fd once told serve" },
    [S_OPT_PAGES_FD] = { "--pages-fd", "P", "with --postcopy: the page source fd" },
    [S_OPT_SERVE_FD] = { "--serve-fd", "C", "stay, tracking writes: each line \"checkpoint "
                         "DIR\" on fd C writes what changed since the last one" },
    [S_OPT_COMPACT_EVERY] = { "--compact-every", "K", "with --serve-fd: a full image "
                              "after K deltas (16)" },
    [S_OPT_GHOST_FILE_MAX] = { "--ghost-file-max", "BYTES", "an unlinked open file's "
                               "contents go into the image up to this (1048576)" },
    { NULL, NULL, NULL },
};

static int s_parse(int argc, char **argv, s_args_t *a)
{
    cairn_args_t v;
    cairn_error_t err;

    if (cairn_args_parse("ghost-dump", s_options, argc > 0 ? argc - 1 : 0,
                         argv + 1, 0, &v, &err) < 0)
        return -EINVAL;
    if (v.values[S_OPT_PID] &&
        cairn_parse_long("--pid", v.values[S_OPT_PID], 1, 0x3fffffff, &a->pid,
                         &err) < 0)
        return -EINVAL;
    a->out = v.values[S_OPT_OUT];
    a->leave_running = v.values[S_OPT_LEAVE_RUNNING] != NULL;
    a->in_place = v.values[S_OPT_IN_PLACE] != NULL;
    a->pagemap_read = v.values[S_OPT_PAGEMAP_READ] != NULL;
    a->probe_eventfds = v.values[S_OPT_PROBE_EVENTFDS] != NULL;
    a->check = v.values[S_OPT_CHECK] != NULL;
    if (v.values[S_OPT_GHOST_FILE_MAX] &&
        cairn_parse_long("--ghost-file-max", v.values[S_OPT_GHOST_FILE_MAX], 1, 1l << 40,
                         &a->ghost_file_max, &err) < 0)
        return -EINVAL;
    a->precopy = v.values[S_OPT_PRECOPY] != NULL;
    a->rounds = S_ROUNDS_DEFAULT;
    a->round_until = S_ROUND_UNTIL_DEFAULT;
    if (v.values[S_OPT_ROUNDS] &&
        cairn_parse_long("--rounds", v.values[S_OPT_ROUNDS], 1, GHOST_MAX_ROUNDS, &a->rounds,
                         &err) < 0)
        return -EINVAL;
    if (v.values[S_OPT_ROUND_UNTIL] &&
        cairn_parse_long("--round-until", v.values[S_OPT_ROUND_UNTIL], 0, 1l << 40,
                         &a->round_until, &err) < 0)
        return -EINVAL;
    if (!a->precopy && (v.values[S_OPT_ROUNDS] || v.values[S_OPT_ROUND_UNTIL]))
        return -EINVAL;   /* they mean nothing without it */
    long fd = -1;
    if (v.values[S_OPT_OUT_FD] &&
        cairn_parse_long("--out-fd", v.values[S_OPT_OUT_FD], 3, INT_MAX, &fd, &err) < 0)
        return -EINVAL;
    a->out_fd = (int)fd;
    fd = -1;
    if (v.values[S_OPT_HOLD_FD] &&
        cairn_parse_long("--hold-fd", v.values[S_OPT_HOLD_FD], 3, INT_MAX, &fd, &err) < 0)
        return -EINVAL;
    a->hold_fd = (int)fd;
    fd = -1;
    if (v.values[S_OPT_SERVE_FD] &&
        cairn_parse_long("--serve-fd", v.values[S_OPT_SERVE_FD], 0, INT_MAX, &fd, &err) < 0)
        return -EINVAL;
    a->serve_fd = (int)fd;
    a->compact_every = SERVE_COMPACT_EVERY;
    if (v.values[S_OPT_COMPACT_EVERY] &&
        (a->serve_fd < 0 ||
         cairn_parse_long("--compact-every", v.values[S_OPT_COMPACT_EVERY], 0, CHAIN_MAX - 2,
                          &a->compact_every, &err) < 0))
        return -EINVAL;
    if (a->serve_fd >= 0 && (a->out || a->out_fd >= 0 || a->hold_fd >= 0 || a->check ||
                             a->precopy || a->in_place || a->pagemap_read || a->pid <= 0 ||
                             v.values[S_OPT_POSTCOPY] || v.values[S_OPT_PAGES_FD]))
        return -EINVAL;   /* the tracker writes its own files, running */
    if (a->serve_fd >= 0)
        goto owner;
    if (a->pid <= 0 || (!a->check && !a->out == (a->out_fd < 0)))
        return -EINVAL;   /* exactly one of --out, --out-fd (none for --check) */
    if (a->check && (a->out || a->out_fd >= 0 || a->hold_fd >= 0))
        return -EINVAL;
    if (a->out_fd >= 0 && (a->in_place || a->out_fd == a->hold_fd))
        return -EINVAL;   /* a stream has nothing to write over */
    if (a->hold_fd >= 0 && (a->out_fd < 0 || a->leave_running))
        return -EINVAL;   /* the holder decides, not --leave-running */
    fd = -1;
    if (v.values[S_OPT_PAGES_FD] &&
        cairn_parse_long("--pages-fd", v.values[S_OPT_PAGES_FD], 3, INT_MAX, &fd, &err) < 0)
        return -EINVAL;
    a->pages_fd = (int)fd;
    a->postcopy = v.values[S_OPT_POSTCOPY] != NULL;
    if (a->postcopy != (a->pages_fd >= 0) ||
        (a->postcopy && (a->hold_fd < 0 || a->precopy || a->pages_fd == a->out_fd ||
                         a->pages_fd == a->hold_fd)))
        return -EINVAL;   /* post-copy: held, streamed, its own fds; not pre-copy */
owner:
    if (v.values[S_OPT_AS] && ghost_owner_parse(v.values[S_OPT_AS], &a->owner, &err) < 0)
        return -EINVAL;
    a->as_user = v.values[S_OPT_AS] != NULL;
    return 0;
}

/* The user's file rights for what follows (--as), or nothing to do. */
static int s_fs_user(s_args_t *a, cairn_error_t *err)
{
    return a->as_user ? ghost_owner_fs_enter(&a->owner, err) : 0;
}

/* Root's file rights back; the dump needs them (/proc/PID/map_files...). */
static int s_fs_root(s_args_t *a, cairn_error_t *err)
{
    return a->as_user ? ghost_owner_fs_leave(&a->owner, err) : 0;
}

/* FILE's directory, made as the user (--as) with its parents, 0700; the
 * errors a user can cause are named as ghostd names its own. */
static int s_make_dir(const s_args_t *a, cairn_error_t *err)
{
    char dir[PATH_MAX];
    char *slash;
    if (snprintf(dir, sizeof(dir), "%s", a->out) >= (int)sizeof(dir))
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "%s: path too long", a->out);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    int r = cairn_mkdir_p(dir, 0700);
    if (r == 0)
        return 0;
    int code = r == -EACCES || r == -EPERM || r == -EROFS ? CAIRN_PERMISSION_DENIED
               : r == -ENOTDIR || r == -ENAMETOOLONG       ? CAIRN_INVALID_ARGUMENT
                                                           : CAIRN_FAILED_PRECONDITION;
    return cairn_error_set(err, r, code, "cannot make directory %s as uid %u: %s", dir,
                           a->owner.uid, strerror(-r));
}

/* Reports a failure with the reasons of a refusal (rs: NULL or empty when
 * there are none); the owner rule's refusal (--as) says what it means. */
static int s_fail(const s_args_t *a, cairn_error_t *err, ghost_reasons_t *rs, int exit_code)
{
    if (a->as_user && err->code == CAIRN_PERMISSION_DENIED && err->message[0]) {
        cairn_error_append(err, -EPERM, "; only root may checkpoint it");
        for (size_t i = 0; rs && i < rs->n; i++)
            if (rs->v[i].code == CAIRN_PERMISSION_DENIED)
                snprintf(rs->v[i].message + strlen(rs->v[i].message),
                         sizeof(rs->v[i].message) - strlen(rs->v[i].message),
                         "; only root may checkpoint it");
    }
    return ghost_report_refusal(err, rs, exit_code);
}

static int s_check(const s_args_t *a)
{
    cairn_error_t err;
    ghost_reasons_t rs = { 0 };
    ghost_dump_opts_t o = { .leave_running = a->leave_running,
                            .ghost_file_max = (uint64_t)a->ghost_file_max,
                            .owner = a->as_user ? &a->owner : NULL, .reasons = &rs };
    int code = S_EXIT_OK;
    if (ghost_check((pid_t)a->pid, &o, &err) < 0)
        code = s_fail(a, &err, &rs, S_EXIT_REFUSED);
    else
        ghost_report(json_pack("{s:I,s:b}", "pid", (json_int_t)a->pid, "checkpointable", 1));
    ghost_reasons_free(&rs);
    return code;
}

/* The pre-copy figures into o (o's own on failure: nothing is added). */
static void s_add_precopy(json_t *o, const ghost_dump_stats_t *s)
{
    json_t *rb = json_array();
    for (uint32_t i = 0; rb && i < s->rounds && i < GHOST_MAX_ROUNDS; i++)
        json_array_append_new(rb, json_integer((json_int_t)s->round_bytes[i]));
    json_object_set_new(o, "rounds", json_integer((json_int_t)s->rounds));
    json_object_set_new(o, "round_bytes", rb ? rb : json_null());
    json_object_set_new(o, "precopy_bytes", json_integer((json_int_t)s->precopy_bytes));
    json_object_set_new(o, "kept_pages", json_integer((json_int_t)s->kept_pages));
    json_object_set_new(o, "track_us", json_integer((json_int_t)s->track_us));
}

static void s_print_stats(const s_args_t *a, const ghost_dump_stats_t *s)
{
    json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b}",
                      "pid", (json_int_t)a->pid,
                      "image_bytes", (json_int_t)s->image_bytes,
                      "pages", (json_int_t)s->pages,
                      "processes", (json_int_t)s->processes,
                      "threads", (json_int_t)s->threads,
                      "freeze_us", (json_int_t)s->freeze_us,
                      "dump_us", (json_int_t)s->dump_us,
                      "frozen_us", (json_int_t)s->frozen_us,
                      "copy_threads", (json_int_t)s->copy_threads,
                      "stopped", (json_int_t)s->stopped,
                      "left_running", s->left_running, "job", s->job);
    if (j && a->out_fd >= 0)
        json_object_set_new(j, "out_fd", json_integer(a->out_fd));
    else if (j)
        json_object_set_new(j, "image", json_string(a->out));
    if (j) {
        json_object_set_new(j, "steps_us", ghost_steps_json(&s->steps));
        json_object_set_new(j, "dumper_us", ghost_dumper_json(s));
        json_object_set_new(j, "durable_us", json_integer((json_int_t)s->durable_us));
    }
    if (j && s->held)
        json_object_set_new(j, "held", json_true());
    if (j && a->precopy)
        s_add_precopy(j, s);
    if (j && a->postcopy) {
        json_object_set_new(j, "postcopy", json_true());
        json_object_set_new(j, "lazy_pages", json_integer((json_int_t)s->lazy_pages));
        json_object_set_new(j, "lazy_resident_pages",
                            json_integer((json_int_t)s->lazy_resident));
    }
    ghost_report(j);
}

/* The holder's word, one line from fd: GHOST_HOLD_KILL for "kill",
 * GHOST_HOLD_SERVE for "serve" (postcopy); "resume", anything else, an
 * error or the end (ghostd died) let the tree go. */
static int s_read_verdict(int fd, bool postcopy)
{
    char line[32];
    size_t n = 0;

    while (n < sizeof(line) - 1) {
        ssize_t k = read(fd, line + n, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    if (strcmp(line, "kill") == 0)
        return GHOST_HOLD_KILL;
    return postcopy && strcmp(line, "serve") == 0 ? GHOST_HOLD_SERVE : GHOST_HOLD_RESUME;
}

/* ghost_dump_opts_t.hold: the image is whole; close the stream so its
 * reader sees the end, say so (the success line, "held":true), and wait
 * for the verdict. */
static int s_hold(void *data, const ghost_dump_stats_t *stats)
{
    s_args_t *a = data;
    ghost_dump_stats_t s = *stats;

    close(a->out_fd);
    a->out_fd_closed = true;
    s.left_running = false;   /* not yet decided */
    s_print_stats(a, &s);
    return s_read_verdict(a->hold_fd, a->postcopy);
}

/* The file the image is written into: OUT.part (into *part), renamed to
 * OUT once complete, so a refused or failed dump leaves no file behind and
 * never touches an earlier image at OUT; with --in-place OUT itself, as it
 * is (*created says whether this made it). -1 and err on failure. */
static int s_open_out(const s_args_t *a, char *part, size_t size, bool *created,
                      cairn_error_t *err)
{
    *created = false;
    if (snprintf(part, size, a->in_place ? "%s" : "%s.part", a->out) >= (int)size)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT, "%s: path too long",
                               a->out), -1;
    int fd = a->in_place ? open(part, O_RDWR | O_CLOEXEC) : -1;
    if (fd < 0 && (!a->in_place || errno == ENOENT)) {
        fd = open(part, O_RDWR | O_CREAT | (a->in_place ? O_EXCL : O_TRUNC) | O_CLOEXEC, 0600);
        *created = fd >= 0;
    }
    if (fd < 0)
        return cairn_error_set(err, -errno,
                               errno == EACCES || errno == EPERM ? CAIRN_PERMISSION_DENIED
                                                                 : CAIRN_SYSTEM,
                               "cannot %s %s: %s", a->in_place ? "open" : "create", part,
                               strerror(errno)), -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "%s is not a regular file", part);
        close(fd);
        return -1;
    }
    return fd;
}

/* The image file, opened with the user's file rights (--as), its
 * directory made first for them. */
static int s_open_as(s_args_t *a, char *part, size_t size, bool *created,
                     cairn_error_t *err)
{
    int fd = -1;
    int r = s_fs_user(a, err);
    if (r == 0 && a->as_user)
        r = s_make_dir(a, err);
    if (r == 0)
        fd = s_open_out(a, part, size, created, err);
    if (s_fs_root(a, err) < 0 && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* After the dump: the image renamed into place, or what is left of it
 * removed -- with the user's file rights (--as); without them, nothing is
 * touched in the user's directory. */
static int s_finish(s_args_t *a, const char *part, bool created,
                    const ghost_dump_stats_t *s, int r, cairn_error_t *err)
{
    cairn_error_t fs_err;
    if (s_fs_user(a, &fs_err) < 0) {
        if (r == 0)
            *err = fs_err;
        return r < 0 ? r : -EPERM;
    }
    if (r == 0 && !a->in_place && rename(part, a->out) < 0)
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "renaming %s: %s", part,
                            strerror(errno));
    if (r < 0) {
        /* A refusal wrote nothing (unless pre-copy rounds had): an image
         * written over stays whole. */
        bool changed = !s->refused || s->began;
        if (!a->in_place || created || changed)
            unlink(part);
        if (a->in_place && !created && changed)
            cairn_error_append(err, r, "; the image written over at %s was removed", part);
    }
    s_fs_root(a, NULL);
    return r;
}

/* What serving the lazy pages did, into o (the outcome line). */
static void s_add_served(json_t *o, const ghost_dump_stats_t *s)
{
    const lazy_serve_stats_t *v = &s->serve;
    json_object_set_new(o, "served", json_true());
    json_object_set_new(o, "lazy_pages", json_integer((json_int_t)v->pages));
    json_object_set_new(o, "pages_requested", json_integer((json_int_t)v->requested));
    json_object_set_new(o, "requests", json_integer((json_int_t)v->requests));
    json_object_set_new(o, "pages_pushed", json_integer((json_int_t)v->pushed));
    json_object_set_new(o, "pages_absent", json_integer((json_int_t)v->absent));
    json_object_set_new(o, "serve_us", json_integer((json_int_t)v->serve_us));
    json_object_set_new(o, "target_done", json_boolean(v->target_done));
    if (s->serve_broken)
        json_object_set_new(o, "serve_error",
                            json_pack("{s:s,s:s}", "code",
                                      cairn_code_name(s->serve_error.code), "message",
                                      s->serve_error.message));
}

/* --out-fd: the stream into the inherited fd; --hold-fd: the tree waits,
 * frozen, for the holder's word (s_hold), and a second line says what
 * became of it. */
static int s_dump_stream(s_args_t *a, ghost_dump_opts_t *o)
{
    cairn_error_t err;
    ghost_dump_stats_t s;
    struct stat st;

    if (fstat(a->out_fd, &st) < 0 || (a->hold_fd >= 0 && fstat(a->hold_fd, &st) < 0) ||
        (a->pages_fd >= 0 && fstat(a->pages_fd, &st) < 0)) {
        cairn_error_set(&err, -EBADF, CAIRN_USAGE, "--out-fd %d / --hold-fd %d / "
                        "--pages-fd %d: not an open fd", a->out_fd, a->hold_fd, a->pages_fd);
        return ghost_report_error(&err, S_EXIT_USAGE);
    }
    if (a->hold_fd >= 0) {
        signal(SIGPIPE, SIG_IGN);
        o->hold = s_hold;
        o->hold_data = a;
    }
    int r = ghost_dump((pid_t)a->pid, o, a->out_fd, &s, &err);
    if (!a->out_fd_closed && close(a->out_fd) < 0 && r == 0)
        r = cairn_error_set(&err, -errno, CAIRN_SYSTEM, "closing fd %d: %s", a->out_fd,
                            strerror(errno));
    if (s.held) {   /* the success line is out: the outcome follows */
        json_t *j = json_pack("{s:s,s:b}", "outcome", s.killed ? "killed" : "resumed",
                              "left_running", s.left_running);
        if (j && s.served)
            s_add_served(j, &s);
        ghost_report(j);
        return S_EXIT_OK;
    }
    if (r < 0)
        return s_fail(a, &err, s.refused ? o->reasons : NULL,
                      s.refused ? S_EXIT_REFUSED : S_EXIT_FAILED);
    s_print_stats(a, &s);
    return S_EXIT_OK;
}

static int s_dump(s_args_t *a)
{
    cairn_error_t err;
    _cleanup_(ghost_reasons_free) ghost_reasons_t rs = { 0 };
    ghost_dump_opts_t o = { .leave_running = a->leave_running,
                            .pagemap_read = a->pagemap_read,
                            .probe_eventfds = a->probe_eventfds,
                            .ghost_file_max = (uint64_t)a->ghost_file_max,
                            .owner = a->as_user ? &a->owner : NULL, .reasons = &rs,
                            .precopy = a->precopy,
                            .rounds = (uint32_t)a->rounds,
                            .round_until = (uint64_t)a->round_until,
                            .postcopy = a->postcopy, .pages_fd = a->pages_fd,
                            .hold_fd = a->hold_fd };
    char part[PATH_MAX];
    bool created;
    if (a->out_fd >= 0)
        return s_dump_stream(a, &o);
    int fd = s_open_as(a, part, sizeof(part), &created, &err);
    if (fd < 0)
        return ghost_report_error(&err, S_EXIT_FAILED);
    ghost_dump_stats_t s;
    int r = ghost_dump((pid_t)a->pid, &o, fd, &s, &err);
    if (close(fd) < 0 && r == 0)
        r = cairn_error_set(&err, -errno, CAIRN_SYSTEM, "closing %s: %s", part,
                            strerror(errno));
    r = s_finish(a, part, created, &s, r, &err);
    if (r < 0)
        return s_fail(a, &err, s.refused ? &rs : NULL,
                      s.refused ? S_EXIT_REFUSED : S_EXIT_FAILED);
    s_print_stats(a, &s);
    return S_EXIT_OK;
}

int main(int argc, char **argv)
{
    s_args_t a = { .out_fd = -1, .hold_fd = -1, .pages_fd = -1, .serve_fd = -1 };
    cairn_error_t oom_err = { 0 };
    if (ghost_place_take_oom(&oom_err) < 0)
        return ghost_report_error(&oom_err, 1);
    if (s_parse(argc, argv, &a) < 0)
        return s_usage("bad arguments");
    int code;
    if (a.serve_fd >= 0) {
        ghost_serve_opts_t so = { .compact_every = (uint32_t)a.compact_every,
                                  .owner = a.as_user ? &a.owner : NULL,
                                  .ghost_file_max = (uint64_t)a.ghost_file_max };
        struct stat st;
        if (fstat(a.serve_fd, &st) < 0)
            return s_usage("--serve-fd: not an open fd");
        code = ghost_serve((pid_t)a.pid, a.serve_fd, &so);
    } else {
        code = a.check ? s_check(&a) : s_dump(&a);
    }
    ghost_owner_free(&a.owner);
    return code;
}
