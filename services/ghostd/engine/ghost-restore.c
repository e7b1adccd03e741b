/* ghost-restore - restores one checkpoint image (a process tree); ghostd
 * runs one per request so a hostile image can never take the daemon down.
 *
 *   ghost-restore --image FILE [--new-pid] [--pread-pages]
 *                 [--scope UNIT --slice SLICE]
 *   ghost-restore --image FILE --check
 *
 * Prints exactly one JSON line on stdout: on success
 *   {"pid":N,"original_pid":N,"same_pid":B,"image_bytes":N,"pages":N,
 *    "processes":N,"threads":N,"restore_us":N,"cgroup":S[,"unit":S],
 *    "members":[{"pid":N,"original_pid":N,"ppid":N,"threads":N},...]}
 * where pid is the root's, members lists every process, root first
 * (ppid 0 for the root), cgroup is the root's cgroup (place.h) and unit
 * the scope given with --scope, and on failure
 * {"error":{"code":"<cairn code name>","message":"..."}}. --check reads,
 * checks and plans the restore without making anything
 * (ghost_restore_check) and prints
 *   {"check":true,"original_pid":N,"pids_free":B,"image_bytes":N,
 *    "pages":N,"processes":N,"threads":N,"check_us":N}
 * pids_free: every original pid and thread id is free now.
 * Exit codes: 0 restored (the tree runs, no longer traced; the root is
 * reparented when this program exits right after); 1 failed (nothing is
 * left running); 3 the original pid of a process of the tree is taken and
 * --new-pid was not given (nothing was made); 100 wrong usage. With
 * --check: 0 the image would be restored, 1 it would be refused.
 * --pread-pages makes the restorer pread the pages straight into place,
 * its way where the kernel refuses process_vm_writev (for tests).
 * --scope UNIT --slice SLICE: before anything is made, ask systemd for the
 * transient scope UNIT in SLICE holding this helper, so the whole tree is
 * born there, outside ghostd.service (ghost_place_scope; exit 1
 * "unavailable" when systemd cannot, 2 "unsupported" when built without
 * libsystemd; nothing is made either way).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "place.h"
#include "report.h"
#include "restore.h"
#include "util/options.h"

/* The success line (see the top of this file). */
static json_t *s_success(const ghost_restore_stats_t *st, const char *unit)
{
    json_t *members = json_array();
    char cgroup[4096] = "";

    for (uint32_t i = 0; members && i < st->processes; i++)
        json_array_append_new(members, json_pack(
            "{s:i,s:i,s:i,s:i,s:b}", "pid", (int)st->members[i].pid,
            "original_pid", (int)st->members[i].original_pid,
            "ppid", (int)st->members[i].ppid,
            "threads", (int)st->members[i].threads,
            "stopped", st->members[i].stopped));
    ghost_place_cgroup_of(st->pid, cgroup, sizeof cgroup);
    return json_pack("{s:i,s:i,s:b,s:I,s:I,s:i,s:i,s:i,s:I,s:s,s:s*,s:o*}",
                     "pid", (int)st->pid, "original_pid", (int)st->original_pid,
                     "same_pid", st->same_pid, "image_bytes",
                     (json_int_t)st->image_bytes, "pages",
                     (json_int_t)st->pages, "processes", (int)st->processes,
                     "threads", (int)st->threads, "stopped", (int)st->stopped,
                     "restore_us", (json_int_t)st->restore_us, "cgroup", cgroup,
                     "unit", unit, "members", members);
}

/* The --check success line. */
static json_t *s_checked(const ghost_restore_stats_t *st)
{
    return json_pack("{s:b,s:i,s:b,s:I,s:I,s:i,s:i,s:I}", "check", 1,
                     "original_pid", (int)st->original_pid, "pids_free", st->same_pid,
                     "image_bytes", (json_int_t)st->image_bytes,
                     "pages", (json_int_t)st->pages,
                     "processes", (int)st->processes, "threads", (int)st->threads,
                     "check_us", (json_int_t)st->restore_us);
}

/* Into the scope when one is asked for (place.h), before anything is made. */
static int s_place(const char *unit, const char *slice, const char *image,
                   cairn_error_t *err)
{
    char description[512];

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
        "%s; usage: ghost-restore --image FILE [--new-pid] [--pread-pages] "
        "[--scope UNIT --slice SLICE] | --check",
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
    S_OPT_SLICE
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
    { NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
    bool check;
    ghost_restore_opts_t opts = { 0 };
    ghost_restore_stats_t st;
    cairn_error_t err;
    cairn_args_t a;
    const char *image;
    int fd, ret;

    /* Positionals are taken here and refused below, to say which it was. */
    if (cairn_args_parse("ghost-restore", s_options, argc > 0 ? argc - 1 : 0,
                         argv + 1, CAIRN_MAX_ARGS, &a, &err) < 0)
        return s_usage("unknown option");
    image = a.values[S_OPT_IMAGE];
    opts.new_pid = a.values[S_OPT_NEW_PID] != NULL;
    check = a.values[S_OPT_CHECK] != NULL;
    opts.pread_pages = a.values[S_OPT_PREAD_PAGES] != NULL;
    if (!image || a.n_pos > 0)
        return s_usage(image ? "unexpected argument" : "--image is required");
    if (check && opts.new_pid)
        return s_usage("--check restores nothing: it takes no --new-pid");
    if (check && opts.pread_pages)
        return s_usage("--check restores nothing: it takes no --pread-pages");
    if (check && a.values[S_OPT_SCOPE])
        return s_usage("--check restores nothing: it takes no --scope");
    if (!a.values[S_OPT_SCOPE] != !a.values[S_OPT_SLICE])
        return s_usage("--scope and --slice go together");
    fd = open(image, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cairn_error_set(&err, -errno, CAIRN_NOT_FOUND, "cannot open image %s: %s",
                        image, strerror(errno));
        return ghost_report_error(&err, 1);
    }
    cairn_error_clear(&err);
    if (check) {
        ret = ghost_restore_check(fd, &st, &err);
        close(fd);
        if (ret < 0)
            return ghost_report_error(&err, 1);
        ghost_report(s_checked(&st));
        return 0;
    }
    ret = s_place(a.values[S_OPT_SCOPE], a.values[S_OPT_SLICE], image, &err);
    if (ret < 0) {
        close(fd);
        return ghost_report_error(&err, ret == -ENOTSUP ? 2 : 1);
    }
    ret = ghost_restore(fd, &opts, &st, &err);
    close(fd);
    if (ret < 0)
        return ghost_report_error(&err, err.code == CAIRN_ALREADY_EXISTS ? 3 : 1);
    ghost_report(s_success(&st, a.values[S_OPT_SCOPE]));
    free(st.members);
    return 0;
}
