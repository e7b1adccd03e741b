/* jobinfo.h - what a job is on disk and in /proc: its gpid, its records
 * (job.json, exit) and a sample of its processes (docs/jobs.md).
 *
 * The pure half of ghostd's job table (jobs.h keeps the live half): no
 * loop, no daemon state, so each piece is unit-tested on its own
 * (test-jobinfo.c).
 *
 * gpid: "<node>.<seq>", node 1..255, seq >= 1, both decimal without
 * leading zeros -- one spelling per job, so a gpid is also its directory's
 * name under the jobs directory (<run base>/<cluster>/jobs). A ghostd
 * starts numbering at 1 + the highest <its node>.<n> directory there, and
 * takes a number by making its directory (mkdir fails with EEXIST when
 * another took it), so no two jobs ever share one.
 *
 * Records, each written to NAME.tmp and renamed (a reader sees a whole one
 * or none):
 *   job.json  {"gpid","uid","gid","argv":[...],"name","start_ms","node",
 *              "host_pid","host_start","moves","restarts","cgroup","unit",
 *              "sub_cgroup"}  -- rewritten on every change by the ghostd
 *              that runs the job; host_start is the reaper's start time
 *              (clock ticks after boot, /proc/PID/stat field 22): with
 *              host_pid it names one process for the life of the boot;
 *              Restart on failure adds "checkpoint_every_s",
 *              "restart_on_failure", "last_checkpoint_ms", "replica",
 *              "lost_ms" (optional: 0 when absent); a move under way
 *              adds "migrating_to" and "migration" (its id);
 *   exit      {"exit_code","exit_signal","end_ms"[,"lost"]} -- ghost-init's
 *              reaper writes it; ghostd writes it for a job that ended
 *              without, and with "lost" (why) for a job whose node died
 *              and that nobody restarts (restart.h).
 */
#ifndef GHOSTD_JOBINFO_H
#define GHOSTD_JOBINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

#define GHOSTD_GPID_MAX 32        /* "255.18446744073709551615" fits */
#define GHOSTD_JOB_NAME_MAX 128   /* --name */
#define GHOSTD_CGROUP_MAX 1024    /* a cgroup path as /proc names it */

/* Parses gpid s: 0, or -EINVAL for anything but "<1..255>.<1..>". */
int ghostd_gpid_parse(const char *s, uint32_t *ret_node, uint64_t *ret_seq);

/* Writes "<node>.<seq>" into out (GHOSTD_GPID_MAX bytes suffice);
 * -EINVAL for node 0 or > 255 or seq 0. */
int ghostd_gpid_format(uint32_t node, uint64_t seq, char *out, size_t size);

/* 1 + the highest seq of the "<node>.<seq>" entries of jobs_dir (1 when
 * there is none or jobs_dir does not exist); other entries are ignored. */
int ghostd_gpid_next_seq(const char *jobs_dir, uint32_t node, uint64_t *ret);

/* job.json. */
typedef struct ghostd_jobrec {
    char gpid[GHOSTD_GPID_MAX];    /* its gpid */
    uint32_t uid, gid;             /* whose */
    char **argv;                   /* the command, NULL-terminated; owned */
    size_t argc;                   /* entries of argv */
    char name[GHOSTD_JOB_NAME_MAX]; /* --name, "" if none */
    uint64_t start_ms;             /* unix ms of the launch */
    uint32_t node;                 /* the node it runs on */
    int32_t host_pid;              /* the reaper's pid there */
    uint64_t host_start;           /* the reaper's start time (ticks) */
    uint32_t moves, restarts;      /* migrations, restarts so far */
    char cgroup[GHOSTD_CGROUP_MAX]; /* the reaper's cgroup */
    char unit[128];                /* its systemd scope, "" if none */
    bool sub_cgroup;               /* in job-<gpid> sub-cgroups of ghostd's */
    /* restart on failure (restart.h); absent from older records: 0 */
    uint32_t checkpoint_every_s;   /* periodic checkpoints, 0: none */
    bool restart_on_failure;       /* restarted elsewhere if its node dies */
    uint64_t last_checkpoint_ms;   /* unix ms of the last replicated one, 0 none */
    uint32_t replica;              /* the node holding it, 0 none */
    uint64_t lost_ms;              /* work lost by its restarts, in total */
    /* a migration under way (absent: none): written by the source before
     * the tree freezes, cleared when the move fails, gone when the target
     * rewrites the record at commit -- so a ghostd that died mid-move
     * leaves its successor what to settle (jobs-settle.c) */
    uint32_t migrating_to;         /* the target node, 0 none */
    char migration[64];            /* the migration's id, "" none */
} ghostd_jobrec_t;

/* Frees what r owns (argv); safe twice and on a zeroed record. */
void ghostd_jobrec_clear(ghostd_jobrec_t *r);

/* Copies argv (n entries) into r->argv. -ENOMEM. */
int ghostd_jobrec_set_argv(ghostd_jobrec_t *r, char *const *argv, size_t n);

/* Writes dir/job.json (through dir/job.json.tmp, mode 0644, owned by the
 * caller). 0 or -errno. */
int ghostd_jobrec_write(const char *dir, const ghostd_jobrec_t *r);

/* Reads dir/job.json into *ret (cleared first). -ENOENT when absent,
 * -EBADMSG when it is not a job record (a field missing or of the wrong
 * type, a bad gpid). */
int ghostd_jobrec_read(const char *dir, ghostd_jobrec_t *ret);

/* The record as one line of JSON (what job.json holds); caller frees.
 * NULL on ENOMEM. */
char *ghostd_jobrec_dumps(const ghostd_jobrec_t *r);

/* Parses text (len bytes) as ghostd_jobrec_read does a file: -EBADMSG for
 * anything but a job record. */
int ghostd_jobrec_loads(const char *text, size_t len, ghostd_jobrec_t *ret);

/* The exit record. */
typedef struct ghostd_exitrec {
    int32_t exit_code;    /* its exit status, -1 when killed by a signal */
    int32_t exit_signal;  /* the signal that killed it, else 0 */
    uint64_t end_ms;      /* unix ms */
    char lost[256];       /* "" unless the job was lost: why (its node
                           * died and nobody restarts it), "lost" in JSON */
} ghostd_exitrec_t;

/* Reads dir/exit. -ENOENT when absent, -EBADMSG when malformed. */
int ghostd_exitrec_read(const char *dir, ghostd_exitrec_t *ret);

/* Writes dir/exit (through dir/exit.tmp), mode 0600, owned by uid:gid. */
int ghostd_exitrec_write(const char *dir, const ghostd_exitrec_t *r,
                         uint32_t uid, uint32_t gid);

/* The start time of pid (ticks after boot). -ESRCH/-ENOENT when gone. */
int ghostd_proc_start(pid_t pid, uint64_t *ret);

/* A look at a running job's processes: the reaper and its descendants. */
typedef struct ghostd_jobsample {
    bool stopped;         /* the program (pid 2 inside) is stopped (T) */
    uint32_t processes;   /* the reaper included */
    uint64_t rss_bytes;   /* summed resident memory (shared pages counted
                           * once per process) */
    uint64_t cpu_ms;      /* cpu time of them and of their reaped children */
    uint32_t pid_inside;  /* the program's pid inside (NSpid), 0 if gone */
    pid_t program;        /* the program's host pid, 0 if gone */
} ghostd_jobsample_t;

/* Samples the job whose reaper is `reaper`. -ESRCH when the reaper is gone. */
int ghostd_job_sample(pid_t reaper, ghostd_jobsample_t *ret);

#endif
