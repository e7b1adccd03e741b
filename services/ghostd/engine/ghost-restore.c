/* ghost-restore - restores one checkpoint image (a process tree); ghostd
 * runs one per request so a hostile image can never take the daemon down.
 *
 *   ghost-restore --image FILE [--new-pid] [--pread-pages] [--no-verify]
 *                 [--scope UNIT --slice SLICE | --cgroup NAME] [--as UID:GID]
 *   ghost-restore --image FILE --check [--as UID:GID]
 *   ghost-restore --image-fd N ...   (or --image -: stdin)
 *   ghost-restore --image-fd N --pages-fd P ...   (post-copy)
 *
 * Prints exactly one JSON line on stdout: on success
 *   {"pid":N,"original_pid":N,"same_pid":B,"image_bytes":N,"pages":N,
 *    "processes":N,"threads":N,"restore_us":N,"tail_us":N,"placed_bytes":N,
 *    "cgroup":S[,"unit":S],
 *    "members":[{"pid":N,"original_pid":N,"ppid":N,"threads":N},...],
 *    "steps_us":{"load","plan","spawn","held","release","verify"},
 *    "verify":{"cosmetic":[{"pid","what","want","got"},...],"us":N}}
 * where pid is the root's, members lists every process, root first
 * (ppid 0 for the root), cgroup is the root's cgroup (place.h) and unit
 * the scope given with --scope, and on failure
 * {"error":{"code":"<cairn code name>","message":"..."}}. --check reads,
 * checks and plans the restore without making anything
 * (ghost_restore_check) and prints
 *   {"check":true,"original_pid":N,"pids_free":B,"image_bytes":N,
 *    "pages":N,"processes":N,"threads":N,"check_us":N}
 * pids_free: every original pid and thread id is free now. A refused
 * --check adds every reason it found to its error line:
 * "reasons":[{"code","pid","what","message"},...] (reasons.h; the files
 * the image names, the kernel, the room for its pages here: room.h).
 * Exit codes: 0 restored (the tree runs, no longer traced; the root is
 * reparented when this program exits right after); 1 failed (nothing is
 * left running); 3 the original pid of a process of the tree is taken and
 * --new-pid was not given (nothing was made); 100 wrong usage. With
 * --check: 0 the image would be restored, 1 it would be refused.
 * Before the tree is let go, the verifier compares each process's /proc
 * with its image (verify.h): a fatal difference fails the restore (exit
 * 1, the tree killed, the error naming process, what, want and got); the
 * cosmetic ones are listed in "verify" ("verify":null with --no-verify,
 * which skips it).
 * --pread-pages makes the restorer pread the pages straight into place,
 * its way where the kernel refuses process_vm_writev (for tests).
 * --scope UNIT --slice SLICE: before anything is made, ask systemd for the
 * transient scope UNIT in SLICE holding this helper, so the whole tree is
 * born there, outside ghostd.service (ghost_place_scope; exit 1
 * "unavailable" when systemd cannot, 2 "unsupported" when built without
 * libsystemd; nothing is made either way).
 * --cgroup NAME: before anything is made, make the sub-cgroup NAME of
 * this helper's cgroups and move there (ghost_place_enter_cgroup), as
 * ghost-init places a job it launches: a job restarted from a checkpoint
 * lives in job-<gpid> under the node's cgroup like a launched one (exit 1
 * "failed-precondition" when that cannot be; nothing is made).
 *
 * Whose image (docs/ghost.md, "Who may checkpoint and restart what"): an
 * image restores with the rights of whoever could have written it. One
 * writable by its group or by others is refused (anyone could have
 * changed what it runs). One owned by root restores as before. One owned
 * by a user U -- and --as UID:GID, a user who is not root asking, may only
 * restart an image they own -- restores as U's: every process in it must
 * be U's (owner.h), every file it names is opened with U's file rights,
 * and the helper keeps only the capabilities a restore needs, so nothing
 * U wrote into it can reach beyond what U may do. Refusals are
 * permission-denied (exit 1), before anything is made; --check obeys the
 * same rules. The image is opened with the asking user's file rights.
 *
 * --pages-fd P: a post-copy image (ghost-dump --postcopy; docs/ghost.md,
 * "Post-copy"): its lazy pages come from the page source on inherited fd
 * P (lazy.h's frames; ghostd bridges it to the source's ghost-dump). The
 * tree runs as soon as everything else is in place: the success line is
 * printed then, with "lazy_pages":N and "postcopy":true, and this helper
 * stays, serving the tree's faults from P and taking the pushed pages,
 * until every lazy page is in; then a second line
 *   {"outcome":"complete","lazy_pages":N,"received":N,"faults":N,
 *    "requested":N,"zero_pages":N,"dropped":N,"forks":N,"serve_us":N,
 *    "absent":N,"early_faults":N}
 * (lazy_pages: the ranges' extent; received: of them, come; absent: of
 * those, never touched at the source, left to read as zeros;
 * early_faults: faults before the tree ran, each a round trip the
 * freeze waited for)
 * and exit 0. If the source fails first (P ends or errs, an ERROR frame,
 * END with pages missing) the tree is killed -- it must never run with
 * pages missing, which would read as zeros -- and the second line is
 * {"outcome":"killed",...,"error":{"code","message"}}, exit 1. If this
 * helper dies meanwhile, the kernel kills the tree (it stays traced with
 * PTRACE_O_EXITKILL until every page is in). A post-copy image without
 * --pages-fd is refused (failed-precondition), nothing made.
 *
 * --image-fd N (--image - is fd 0): the image is read from an inherited fd,
 * a pipe ghostd fills with a stream from another node (migrate.h); it is
 * staged in a memfd as any non-file image is. A stream has no owner on
 * disk to judge: it restores with the rights --as names (every process of
 * it must be that user's), else root's -- ghostd names the job's owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "owner.h"
#include "place.h"
#include "report.h"
#include "restore.h"
#include "util/cleanup.h"
#include "util/options.h"

/* The success line (see the top of this file). */
static json_t *s_success(const ghost_restore_stats_t *st, const char *unit)
{
    json_t *members = json_array();
    char cgroup[4096] = "";

    for (uint32_t i = 0; members && i < st->processes; i++)
        json_array_append_new(members, json_pack(
            "{s:i,s:i,s:i,s:i,s:i,s:b}", "pid", (int)st->members[i].pid,
            "host_pid", (int)st->members[i].host_pid,
            "original_pid", (int)st->members[i].original_pid,
            "ppid", (int)st->members[i].ppid,
            "threads", (int)st->members[i].threads,
            "stopped", st->members[i].stopped));
    ghost_place_cgroup_of(st->host_pid, cgroup, sizeof cgroup);
    json_t *j = json_pack("{s:i,s:i,s:i,s:b,s:b,s:I,s:I,s:i,s:i,s:i,s:I,s:s,s:s*,s:o*}",
                     "pid", (int)st->pid, "original_pid", (int)st->original_pid,
                     "host_pid", (int)st->host_pid, "job", st->job,
                     "same_pid", st->same_pid, "image_bytes",
                     (json_int_t)st->image_bytes, "pages",
                     (json_int_t)st->pages, "processes", (int)st->processes,
                     "threads", (int)st->threads, "stopped", (int)st->stopped,
                     "restore_us", (json_int_t)st->restore_us, "cgroup", cgroup,
                     "unit", unit, "members", members);
    if (j) {   /* where the time went once the stream had ended, and what
                  was read straight into place (docs/ghost.md, "Page data") */
        json_object_set_new(j, "tail_us", json_integer((json_int_t)st->tail_us));
        json_object_set_new(j, "placed_bytes", json_integer((json_int_t)st->placed_bytes));
    }
    return j;
}

/* Where restore_us went (restore.h, enum ghost_restore_step). */
static json_t *s_steps(const ghost_restore_stats_t *st)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < GHOST_RESTORE_STEPS; i++)
        json_object_set_new(o, ghost_restore_step_names[i],
                            json_integer((json_int_t)st->steps_us[i]));
    return o;
}

/* What the verifier found and let pass (verify.h): the cosmetic
 * differences, and its time. */
static json_t *s_verified(const ghost_restore_stats_t *st)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < st->verify.n; i++) {
        const ghost_verify_diff_t *d = &st->verify.v[i];
        json_array_append_new(list, json_pack("{s:i,s:s,s:s,s:s}", "pid", (int)d->pid,
                                              "what", d->what, "want", d->want, "got",
                                              d->got));
    }
    return json_pack("{s:o*,s:I,s:I}", "cosmetic", list, "more",
                     (json_int_t)(st->verify.n_cosmetic - st->verify.n), "us",
                     (json_int_t)st->steps_us[GHOST_RESTORE_VERIFY]);
}

/* The --check success line. */
static json_t *s_checked(const ghost_restore_stats_t *st)
{
    return json_pack("{s:b,s:i,s:b,s:b,s:I,s:I,s:i,s:i,s:I}", "check", 1,
                     "original_pid", (int)st->original_pid, "pids_free", st->same_pid,
                     "job", st->job,
                     "image_bytes", (json_int_t)st->image_bytes,
                     "pages", (json_int_t)st->pages,
                     "processes", (int)st->processes, "threads", (int)st->threads,
                     "check_us", (json_int_t)st->restore_us);
}

/* Into the scope or the sub-cgroup when one is asked for (place.h),
 * before anything is made. */
static int s_place(const char *unit, const char *slice, const char *cgroup,
                   const char *image, cairn_error_t *err)
{
    char description[512];

    if (cgroup)
        return ghost_place_enter_cgroup(cgroup, err);
    if (!unit)
        return 0;
    snprintf(description, sizeof description,
             "Cairn job restored by ghostd from %s", image);
    return ghost_place_scope(unit, slice, description, err);
}

static int s_usage(const char *why)
{
    cairn_error_t err;

    cairn_error_set(
        &err, -EINVAL, CAIRN_USAGE,
        "%s; usage: ghost-restore (--image FILE|- | --image-fd N) [--pages-fd P] "
        "[--new-pid] [--pread-pages] [--no-verify] [--scope UNIT --slice SLICE | --cgroup NAME] "
        "[--as UID:GID] | --check [--as UID:GID]",
        why);
    return ghost_report_error(&err, 100);
}

/* The options, as cairn_args_t values. */
enum {
    S_OPT_IMAGE,
    S_OPT_NEW_PID,
    S_OPT_CHECK,
    S_OPT_PREAD_PAGES,
    S_OPT_SCOPE,
    S_OPT_SLICE,
    S_OPT_AS,
    S_OPT_IMAGE_FD,
    S_OPT_PAGES_FD,
    S_OPT_CGROUP,
    S_OPT_NO_VERIFY
};

static const cairn_option_t s_options[] = {
    [S_OPT_IMAGE] = { "--image", "FILE", "the image to restore" },
    [S_OPT_NEW_PID] = { "--new-pid", NULL,
                        "restore under new pids if the original ones are "
                        "taken" },
    [S_OPT_CHECK] = { "--check", NULL, "check and plan, restore nothing" },
    [S_OPT_PREAD_PAGES] = { "--pread-pages", NULL,
                            "the restorer preads the pages into place" },
    [S_OPT_SCOPE] = { "--scope", "UNIT",
                      "restore into this new systemd scope" },
    [S_OPT_SLICE] = { "--slice", "SLICE", "the scope's slice (with --scope)" },
    [S_OPT_AS] = { "--as", "UID:GID", "for this user (not root): only an image "
                   "of theirs, restored with their rights" },
    [S_OPT_IMAGE_FD] = { "--image-fd", "N", "read the image from inherited fd N "
                         "(a pipe) instead of a file" },
    [S_OPT_PAGES_FD] = { "--pages-fd", "P", "post-copy: the lazy pages come from "
                         "the page source on inherited fd P" },
    [S_OPT_CGROUP] = { "--cgroup", "NAME", "restore into sub-cgroup NAME of ours "
                       "(a job's job-<gpid>)" },
    [S_OPT_NO_VERIFY] = { "--no-verify", NULL, "let the tree go without comparing its "
                          "/proc with the image (verify.h)" },
    [S_OPT_NO_VERIFY + 1] = { NULL, NULL, NULL },
};

/* The image as the kernel has it: a regular file that only its owner
 * (and root) may have written; with `asker` (--as), owned by them. */
static int s_check_file(int fd, const char *image, const ghost_owner_t *asker,
                        struct stat *ret, cairn_error_t *err)
{
    if (fstat(fd, ret) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fstat %s: %s", image,
                               strerror(errno));
    if (!S_ISREG(ret->st_mode))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "image %s is not a regular file", image);
    if (ret->st_mode & (S_IWGRP | S_IWOTH))
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "image %s is writable by %s (mode %04o): anyone there "
                               "could have changed what it runs; chmod go-w it first",
                               image, ret->st_mode & S_IWOTH ? "others" : "its group",
                               (unsigned)(ret->st_mode & 07777));
    if (asker && ret->st_uid != asker->uid)
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "image %s belongs to uid %u, not to uid %u: only root "
                               "or its owner may restart it", image,
                               (unsigned)ret->st_uid, asker->uid);
    return 0;
}

/* Opens the image with the asker's file rights (--as: theirs; else
 * root's) and checks the file; *ret_fd and *ret_st on success. */
static int s_open_image(const char *image, ghost_owner_t *asker, int *ret_fd,
                        struct stat *ret_st, cairn_error_t *err)
{
    int r = asker ? ghost_owner_fs_enter(asker, err) : 0;
    int fd = r == 0 ? open(image, O_RDONLY | O_CLOEXEC) : -1;
    if (r == 0 && fd < 0) {
        char as[32] = "";
        int e = errno;
        if (asker)
            snprintf(as, sizeof(as), " as uid %u", asker->uid);
        r = cairn_error_set(err, -e,
                            e == EACCES || e == EPERM ? CAIRN_PERMISSION_DENIED
                                                      : CAIRN_NOT_FOUND,
                            "cannot open image %s%s: %s", image, as, strerror(e));
    }
    if (r == 0)
        r = s_check_file(fd, image, asker, ret_st, err);
    /* Back to root's for the scope (D-Bus), until the restore proper. */
    if (asker && ghost_owner_fs_leave(asker, r < 0 ? NULL : err) < 0 && r == 0)
        r = -EPERM;
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

/* --image-fd: the inherited fd, which must be open; its principal is
 * the asker (--as), else none (root's rights). */
static int s_open_stream(int fd, ghost_owner_t *asker, int *ret_fd, ghost_owner_t *ret,
                         bool *ret_is, cairn_error_t *err)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_USAGE, "--image-fd %d: %s", fd,
                               strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cairn_error_set(err, -EISDIR, CAIRN_INVALID_ARGUMENT,
                               "--image-fd %d is a directory", fd);
    *ret_is = false;
    if (asker) {
        *ret = *asker;
        *asker = (ghost_owner_t){ 0 };   /* moved */
        *ret_is = true;
    }
    *ret_fd = fd;
    return 0;
}

/* Whose rights the restore runs with: the asker's (--as), else the
 * image's owner's when that is not root (its gid: the user database's,
 * else the file's group); *ret_is unset for root's image. */
static int s_principal(ghost_owner_t *asker, const struct stat *st, ghost_owner_t *ret,
                       bool *ret_is, cairn_error_t *err)
{
    struct passwd pw, *found = NULL;
    char buf[4096];

    *ret_is = false;
    if (asker) {
        *ret = *asker;
        *asker = (ghost_owner_t){ 0 };   /* moved */
        *ret_is = true;
        return 0;
    }
    if (st->st_uid == 0)
        return 0;
    gid_t gid = getpwuid_r(st->st_uid, &pw, buf, sizeof(buf), &found) == 0 && found
                    ? found->pw_gid : st->st_gid;
    int r = ghost_owner_init(ret, st->st_uid, gid, err);
    *ret_is = r == 0;
    return r;
}

/* The restore runs with the principal's rights: their file access, and
 * only the capabilities a restore needs (owner.h). */
static int s_take_rights(ghost_owner_t *p, cairn_error_t *err)
{
    int r = ghost_owner_fs_enter(p, err);
    return r < 0 ? r : ghost_owner_restrict_caps(err);
}

/* The owner rule's refusal of one message, saying which image and whose
 * rights it restores with. */
static void s_owned(char *message, size_t size, const char *image, const ghost_owner_t *p)
{
    char why[CAIRN_ERROR_MESSAGE_MAX];

    snprintf(why, sizeof(why), "%s", message);
    if (snprintf(message, size, "restart refused: image %s is uid %u's, and %s", image,
                 p->uid, why) >= (int)size)
        message[size - 1] = '\0';   /* cut, as every message is */
}

/* A failure of the restore or its check, with the check's reasons (rs:
 * NULL or empty when there are none); the owner rule's refusal says
 * which image and whose rights it restores with. */
static int s_refused(const char *image, const ghost_owner_t *p, ghost_reasons_t *rs,
                     cairn_error_t *err)
{
    if (p && err->code == CAIRN_PERMISSION_DENIED)
        s_owned(err->message, sizeof(err->message), image, p);
    for (size_t i = 0; p && rs && i < rs->n; i++)
        if (rs->v[i].code == CAIRN_PERMISSION_DENIED)
            s_owned(rs->v[i].message, sizeof(rs->v[i].message), image, p);
    return ghost_report_refusal(err, rs, err->code == CAIRN_ALREADY_EXISTS ? 3 : 1);
}

/* Post-copy: the tree runs; its lazy pages come (ghost_restore_lazy),
 * then the second line says how that ended. */
static int s_window(struct ghost_lazy *lz)
{
    ghost_lazy_stats_t ls;
    cairn_error_t err;
    cairn_error_clear(&err);
    int r = ghost_restore_lazy(lz, &ls, &err);
    const lazy_srv_stats_t *v = &ls.srv;
    json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                          "outcome", r < 0 ? "killed" : "complete",
                          "lazy_pages", (json_int_t)v->pages, "received", (json_int_t)v->received,
                          "faults", (json_int_t)v->faults, "requested", (json_int_t)v->requested,
                          "zero_pages", (json_int_t)v->zero, "dropped", (json_int_t)v->dropped,
                          "forks", (json_int_t)v->forks, "serve_us", (json_int_t)v->serve_us);
    if (j) {
        json_object_set_new(j, "absent", json_integer((json_int_t)v->absent));
        json_object_set_new(j, "early_faults", json_integer((json_int_t)v->early_faults));
    }
    if (j && r < 0)
        json_object_set_new(j, "error", json_pack("{s:s,s:s}", "code",
                                                  cairn_code_name(err.code), "message",
                                                  err.message));
    ghost_report(j);
    return r < 0 ? 1 : 0;
}

/* Checks, plans and (unless check) restores the image open on fd, with
 * the rights of principal p (NULL: root's image, root's rights). */
static int s_run(int fd, const char *image, bool check, ghost_restore_opts_t *opts,
                 ghost_owner_t *p, const char *unit)
{
    ghost_restore_stats_t st;
    cairn_error_t err;
    _cleanup_(ghost_reasons_free) ghost_reasons_t rs = { 0 };
    int ret;

    cairn_error_clear(&err);
    opts->owner = p;
    opts->reasons = &rs;
    if (p && (ret = s_take_rights(p, &err)) < 0)
        return ghost_report_error(&err, 1);
    if (check) {
        ret = ghost_restore_check(fd, opts, &st, &err);
        if (ret < 0)
            return s_refused(image, p, &rs, &err);
        ghost_report(s_checked(&st));
        return 0;
    }
    opts->exiting = !opts->postcopy;   /* we exit right after the line */
    ret = ghost_restore(fd, opts, &st, &err);
    if (ret < 0)
        return s_refused(image, p, NULL, &err);
    json_t *j = s_success(&st, unit);
    if (j && opts->postcopy) {
        json_object_set_new(j, "postcopy", json_true());
        json_object_set_new(j, "lazy_pages", json_integer((json_int_t)st.lazy_pages));
    }
    if (j) {
        json_object_set_new(j, "steps_us", s_steps(&st));
        json_object_set_new(j, "verify", opts->no_verify ? json_null() : s_verified(&st));
    }
    ghost_report(j);
    free(st.members);
    ghost_verify_free(&st.verify);
    return st.lazy ? s_window(st.lazy) : 0;
}

int main(int argc, char **argv)
{
    bool check, as_user = false, has_principal = false;
    ghost_restore_opts_t opts = { 0 };
    ghost_owner_t asker = { 0 }, principal = { 0 };
    struct stat st;
    cairn_error_t err;
    cairn_args_t a;
    const char *image;
    int fd = -1, ret;

    if (ghost_place_take_oom(&err) < 0)
        return ghost_report_error(&err, 1);

    /* Positionals are taken here and refused below, to say which it was. */
    if (cairn_args_parse("ghost-restore", s_options, argc > 0 ? argc - 1 : 0,
                         argv + 1, CAIRN_MAX_ARGS, &a, &err) < 0)
        return s_usage("unknown option");
    image = a.values[S_OPT_IMAGE];
    long image_fd = -1;
    if (a.values[S_OPT_IMAGE_FD] &&
        cairn_parse_long("--image-fd", a.values[S_OPT_IMAGE_FD], 0, INT_MAX, &image_fd,
                         &err) < 0)
        return s_usage(err.message);
    if (image && a.values[S_OPT_IMAGE_FD])
        return s_usage("--image and --image-fd exclude each other");
    if (image && strcmp(image, "-") == 0)
        image_fd = 0;
    if (image_fd >= 0)
        image = image_fd == 0 ? "(stdin)" : "(stream)";
    long pages_fd = -1;
    if (a.values[S_OPT_PAGES_FD] &&
        cairn_parse_long("--pages-fd", a.values[S_OPT_PAGES_FD], 0, INT_MAX, &pages_fd,
                         &err) < 0)
        return s_usage(err.message);
    if (pages_fd >= 0 && (pages_fd == image_fd || pages_fd <= 2))
        return s_usage("--pages-fd must be an fd of its own above 2");
    if (pages_fd >= 0 && fcntl((int)pages_fd, F_GETFD) < 0)
        return s_usage("--pages-fd: not an open fd");
    opts.postcopy = pages_fd >= 0;
    opts.pages_fd = (int)pages_fd;
    opts.image_path = image_fd < 0 ? image : NULL;   /* a delta's parents are beside it */
    opts.new_pid = a.values[S_OPT_NEW_PID] != NULL;
    check = a.values[S_OPT_CHECK] != NULL;
    opts.pread_pages = a.values[S_OPT_PREAD_PAGES] != NULL;
    opts.no_verify = a.values[S_OPT_NO_VERIFY] != NULL;
    if (!image || a.n_pos > 0)
        return s_usage(image ? "unexpected argument" : "--image is required");
    if (check && opts.new_pid)
        return s_usage("--check restores nothing: it takes no --new-pid");
    if (check && opts.no_verify)
        return s_usage("--check restores nothing: it takes no --no-verify");
    if (check && opts.pread_pages)
        return s_usage("--check restores nothing: it takes no --pread-pages");
    if (check && a.values[S_OPT_SCOPE])
        return s_usage("--check restores nothing: it takes no --scope");
    if (check && opts.postcopy)
        return s_usage("--check restores nothing: it takes no --pages-fd");
    if (!a.values[S_OPT_SCOPE] != !a.values[S_OPT_SLICE])
        return s_usage("--scope and --slice go together");
    if (a.values[S_OPT_CGROUP] && (check || a.values[S_OPT_SCOPE]))
        return s_usage("--cgroup places a restore: not with --check or --scope");
    if (a.values[S_OPT_AS]) {
        if (ghost_owner_parse(a.values[S_OPT_AS], &asker, &err) < 0)
            return s_usage(err.message);
        as_user = true;
    }
    cairn_error_clear(&err);
    if (image_fd >= 0)
        ret = s_open_stream((int)image_fd, as_user ? &asker : NULL, &fd, &principal,
                            &has_principal, &err);
    else
        ret = s_open_image(image, as_user ? &asker : NULL, &fd, &st, &err);
    if (ret == 0 && image_fd < 0)
        ret = s_principal(as_user ? &asker : NULL, &st, &principal, &has_principal, &err);
    if (ret == 0 && !check)
        ret = s_place(a.values[S_OPT_SCOPE], a.values[S_OPT_SLICE],
                      a.values[S_OPT_CGROUP], image, &err);
    if (ret < 0)
        ret = ghost_report_error(&err, ret == -ENOTSUP ? 2 : 1);
    else
        ret = s_run(fd, image, check, &opts, has_principal ? &principal : NULL,
                    a.values[S_OPT_SCOPE]);
    if (fd >= 0)
        close(fd);
    ghost_owner_free(&asker);
    ghost_owner_free(&principal);
    return ret;
}
