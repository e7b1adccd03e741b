/* jobs-private.h - what the three files of ghostd's job table share: the
 * job, the table, the waits and the queries to other ghostds, and the
 * functions one file calls in another. jobs.h is the module's interface;
 * nothing outside jobs*.c includes this file.
 *
 *  - jobs.c: the table: a job's life on this node (watched, ended,
 *    adopted at start, swept and expired), the table's lifecycle, and
 *    what restart.c and migrate.c ask of it;
 *  - jobs-run.c: the run request: a job launched here through
 *    ghost-init, or carried to the node asked for;
 *  - jobs-query.c: ps, signal and wait, and the queries to other ghostds
 *    they (and a forwarded run) make.
 *
 * Ownership: the table owns its jobs; a job owns its record, its pidfd
 * and its waits; a wait owns its deferred request; a query owns its
 * deferred request until answered, the replies and messages it heard and
 * its local ps part, and lives (in jobs->queries) until its last callback
 * ran.
 */
#ifndef GHOSTD_JOBS_PRIVATE_H
#define GHOSTD_JOBS_PRIVATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jobinfo.h"
#include "jobs.h"
#include "peer.h"
#include "view.h"

struct ghostd_job {
    ghostd_jobs_t *jobs;       /* the table */
    ghostd_jobrec_t rec;       /* job.json */
    char dir[PATH_MAX];        /* <jobs>/<gpid> */
    bool launching;            /* ghost-init runs: not listed yet */
    int pidfd;                 /* on the reaper, -1 once it ended */
    int64_t watch;             /* loop watch on pidfd, 0 if none */
    bool exited;               /* ended: exit is meaningful */
    ghostd_exitrec_t exit;     /* how */
    uint64_t ended_at;         /* monotonic ms we saw it end */
    bool killed;               /* SIGKILL sent to the reaper from here */
    bool migrating;            /* being moved to another node (migrate.c) */
    bool pages_pending;        /* arrived post-copy, pages still coming: an
                                  end without an exit record is a loss */
    const char *here_why;      /* run without a node, placed here at once:
                                  why (place-hold.h), NULL if asked for */
    struct jobs_wait **waits;  /* wait requests deferred on it */
    size_t n_waits;
};

/* A wait deferred until the job ends or the deadline. */
typedef struct jobs_wait {
    ghostd_job_t *job;         /* what it waits for */
    cairn_deferred_t *d;       /* the request; owned */
    int64_t timer;             /* its deadline */
    uint64_t since;            /* monotonic ms of the request */
    uint64_t deadline;         /* monotonic ms its answer is due */
    cairn_caller_t caller;     /* on whose behalf */
    bool forwarded;            /* asked by another ghostd (local_only),
                                  which follows a moved job itself */
} jobs_wait_t;

typedef enum { Q_RUN, Q_PS, Q_SIGNAL, Q_WAIT } jobs_qkind_t;

/* Requests to other ghostds for one request of ours. */
typedef struct jobs_query {
    ghostd_jobs_t *jobs;
    jobs_qkind_t kind;
    cairn_deferred_t *d;       /* our request; NULL once answered */
    cairn_caller_t caller;     /* on whose behalf */
    char gpid[GHOSTD_GPID_MAX]; /* signal, wait */
    size_t asked, heard;       /* requests sent, callbacks run */
    uint32_t nodes[CAIRN_VIEW_MAX_NODES]; /* asked, in order */
    Cairn__Ghostd__Reply *replies[CAIRN_VIEW_MAX_NODES]; /* OK replies; owned */
    int codes[CAIRN_VIEW_MAX_NODES];      /* their codes */
    char *errors[CAIRN_VIEW_MAX_NODES];   /* their messages; owned */
    Cairn__Ghostd__PsReply *local;        /* ps: this node's part; owned */
    uint32_t only_node;        /* ps: the node asked for, 0: all */
    int64_t settle;            /* timer answering a query nobody had to
                                  answer, 0 if none */
    uint32_t signal;           /* signal: the signal */
    uint64_t deadline;         /* signal, wait: monotonic ms the answer is due */
    int64_t retry;             /* signal, wait: timer of the next search for
                                  a moving job, 0 if none */
    struct jobs_query *next;   /* in jobs->queries */
} jobs_query_t;

struct ghostd_jobs {
    ghostd_t *gd;              /* the daemon */
    cairn_service_t *svc;      /* its skeleton */
    uint32_t self;             /* this node */
    char dir[PATH_MAX - GHOSTD_GPID_MAX - 1]; /* <run base>/<cluster>/jobs */
    uint64_t next_seq;         /* the next sequence number to try */
    ghostd_job_t **jobs;       /* the table */
    size_t n_jobs;
    cairn_view_t *view;        /* the alive ghostds */
    cairn_peers_t *peers;      /* to them */
    jobs_query_t *queries;     /* in flight */
    struct jobs_settle *settles; /* moves left under way, being settled */
    int64_t sweep_timer, expire_timer;
    /* The sub-cgroups of jobs that left this node alive (migrated away):
     * removed by the sweep once their killed processes are gone. */
    char (*left_cgroups)[GHOSTD_GPID_MAX + 8];
    size_t n_left_cgroups;
};

/* The daemon of a handler's ctx. */
static inline ghostd_t *jobs_gd(void *ctx) { return ctx; }

/* ---- jobs.c ---- */

int jobs_pidfd_open(pid_t pid);
int jobs_pidfd_signal(int pidfd, int sig);
/* How long a request may take from now: Header.deadline_ms (else
 * `dflt`), less a margin for the answer to travel back. */
uint64_t jobs_budget_ms(cairn_request_t *req, uint64_t dflt);
/* Logs and answers req with err; CAIRN_REPLY_NOW. */
int jobs_fail(cairn_request_t *req, const cairn_error_t *err);
/* The cgroup name of a job's sub-cgroups. */
void jobs_cgroup_name(const char *gpid, char *out, size_t size);
/* The job of gpid in the table (launching or exited too), or NULL. */
ghostd_job_t *jobs_find(const ghostd_jobs_t *jobs, const char *gpid);
/* A new, empty job in the table; NULL when full or out of memory. */
ghostd_job_t *jobs_job_new(ghostd_jobs_t *jobs);
/* Takes job out of the table and frees it; its waits are answered
 * UNAVAILABLE with msg. */
void jobs_job_drop(ghostd_job_t *job, const char *msg);
/* job left this node alive (migrated, superseded): its waits follow it --
 * a client's wait becomes a search of the cluster (jobs-query.c), a wait
 * another ghostd forwarded is answered UNAVAILABLE with msg (that ghostd
 * searches). job keeps no wait. */
void jobs_waits_follow(ghostd_job_t *job, const char *msg);
/* Fills m (Job) from job; strings point into job (valid until it
 * changes). A running job is sampled now. */
void jobs_job_msg(const ghostd_job_t *job, Cairn__Ghostd__Job *m);
/* The job's reaper ended: reaped, its exit recorded, its waits answered. */
void jobs_job_ended(ghostd_job_t *job);
/* Watches a running job's reaper through a pidfd; -ESRCH when it is
 * gone. */
int jobs_job_watch(ghostd_job_t *job);

/* ---- jobs-settle.c ---- */

typedef struct jobs_settle jobs_settle_t;
/* Settles the move rec records (migrating_to, migration) with its target,
 * once rec's reaper is not held by a dumper any more: it runs (the copy
 * here was let go: taken back, the target's aborted), or it is gone
 * (killed for the move: the target's committed, or the job recorded
 * lost). ended: the job ended here before any freeze (its reaper's exit
 * record): whatever the target made is aborted, nothing more decided.
 * Asynchronous; failures are logged. */
void jobs_settle_start(ghostd_jobs_t *jobs, const ghostd_jobrec_t *rec, bool ended);
/* Drops every settle (after jobs->peers is freed: no callback comes). */
void jobs_settle_free_all(ghostd_jobs_t *jobs);

/* ---- jobs-query.c ---- */

/* Answers w (job: its end, NULL: code and msg) and frees it. */
void jobs_wait_answer(jobs_wait_t *w, const ghostd_job_t *job, int code,
                      const char *msg);
/* Frees q (not linked in the table any more). */
void jobs_query_free(jobs_query_t *q);
/* A query of kind for req, which it defers; NULL on ENOMEM. */
jobs_query_t *jobs_query_new(ghostd_jobs_t *jobs, jobs_qkind_t kind,
                             cairn_request_t *req);
/* Sends req to node on behalf of q's caller. */
void jobs_query_ask(jobs_query_t *q, uint32_t node, const ProtobufCMessage *req,
                    uint64_t timeout_ms);
/* After the asks; CAIRN_REPLY_DEFERRED. */
int jobs_query_sent(jobs_query_t *q);

#endif
