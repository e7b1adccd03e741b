/* jobs-settle.c - a move the ghostd before us left under way, settled with
 * its target when this one starts (docs/jobs.md, "Migration": one copy).
 *
 * Why. The source records a job's move in job.json (migrating_to,
 * migration) before the tree freezes. Its ghost-dump holds the frozen
 * tree; if that ghostd dies before the move ends, the hold pipe's end
 * makes ghost-dump let the tree run again -- unless it had been told to
 * kill it, once the target said its copy runs -- and the target is left
 * with a copy nobody commits: it runs, out of every table, beside the
 * resumed source (two copies), or it is the only one and nobody lists it.
 * A ghostd that starts and finds the mark settles it -- first waiting
 * while the reaper is traced: the old ghost-dump still holds the tree and
 * acts on its verdict (kill, or let go) as it ends, and deciding before
 * would abort the target's copy of a tree about to be killed:
 *
 *   the source's reaper runs (its copy was let go, or never frozen):
 *       the target's copy goes -- MigrateAbort, which kills what the
 *       target made and is refused only for a committed move -- and the
 *       job stays here, adopted as usual, the mark cleared;
 *   the reaper is gone (ghost-dump killed it for the move): the target is
 *       asked (MigrateStatus): its copy runs -> MigrateCommit, the job is
 *       the target's (the target rewrites job.json); committed -> the
 *       target's already; failed or unknown -> nothing runs the job: lost,
 *       its exit record says why; receiving or restoring -> asked again
 *       (the target fails a stream that went silent on its own).
 *
 * A target that does not answer is asked again every S_EVERY_MS until it
 * does, or until the membership says its node is dead, gone or no member:
 * then a job whose copy runs here stays, one whose copy was killed is lost
 * (nobody else restarts it: its job.json names this node). Calls go as
 * this node's ghostd itself (the target checks the caller is the source
 * node).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobinfo.h"
#include "jobs-private.h"
#include "log.h"
#include "migrate.h"
#include "proc/proc.h"
#include "util/clock.h"

#define S_EVERY_MS 1000    /* asking the target again */
#define S_CALL_MS 3000     /* one call's deadline */
#define S_HELD_MAX 30      /* ticks waiting for the old dumper to let go */

typedef enum { S_DECIDE, S_ABORT, S_STATUS, S_COMMIT } s_step_t;

struct jobs_settle {
    ghostd_jobs_t *jobs;
    char gpid[GHOSTD_GPID_MAX];
    char id[64];               /* the migration */
    uint32_t to;               /* its target */
    ghostd_jobrec_t rec;       /* the record's pid and start (argv not kept) */
    unsigned held_ticks;       /* S_DECIDE: ticks the reaper was traced */
    s_step_t step;             /* the next call */
    int64_t timer;             /* every S_EVERY_MS until settled */
    bool asking;               /* a call in flight */
    bool done;                 /* settled: freed once no call is due */
    struct jobs_settle *next;  /* in jobs->settles */
};

/* Whether rec's reaper (host_pid, with its start time when recorded) runs:
 * not a zombie -- killed for the move, it waits for a parent that died
 * with the old ghostd to reap it. */
static bool s_reaper_runs(const ghostd_jobrec_t *rec)
{
    proc_stat_t st;
    uint64_t start = 0;

    return rec->host_pid > 0 && proc_read_stat(rec->host_pid, &st, NULL) == 0 &&
           !proc_state_exited(st.state) && ghostd_proc_start(rec->host_pid, &start) == 0 &&
           (!rec->host_start || start == rec->host_start);
}

/* Whether a tracer (the old ghost-dump) still holds rec's reaper. */
static bool s_reaper_held(const ghostd_jobrec_t *rec)
{
    proc_status_t st;

    return proc_read_status(rec->host_pid, &st, NULL, NULL) == 0 && st.tracer_pid != 0;
}

/* S_DECIDE: once the tree is let go or killed, which way it settles. */
static bool s_decide(jobs_settle_t *s)
{
    if (s_reaper_runs(&s->rec) && s_reaper_held(&s->rec) && ++s->held_ticks < S_HELD_MAX)
        return false;   /* asked again on the next tick */
    if (s_reaper_runs(&s->rec)) {
        /* the copy here runs: the table takes it back, the mark cleared */
        ghostd_jobs_take_back(s->jobs, s->gpid);
        s->step = S_ABORT;
    } else {
        s->step = S_STATUS;
    }
    cairn_log_info("job-settle", "gpid=%s id=%s to=%u msg=\"%s\"", s->gpid, s->id, s->to,
                   s->step == S_ABORT ? "the copy here runs; the target's is aborted"
                                      : "the copy here was killed; asking the target");
    return true;
}

static void s_free(jobs_settle_t *s)
{
    for (jobs_settle_t **p = &s->jobs->settles; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    if (s->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(s->jobs->svc), s->timer);
    free(s);
}

static void s_done(jobs_settle_t *s)
{
    s->done = true;
    if (!s->asking)
        s_free(s);
}

/* Nothing runs the job any more: its exit record says so. */
static void s_lost(jobs_settle_t *s, const char *why)
{
    char msg[512];

    snprintf(msg, sizeof msg, "ghostd on node %u stopped while moving the job to node %u, "
             "which %s: its copy here had been killed for the move", s->jobs->self, s->to,
             why);
    int r = ghostd_jobs_mark_lost(s->jobs, s->gpid, msg);
    if (r < 0)
        cairn_log_warn(r, "job-settle", "gpid=%s msg=\"cannot record the job lost\"",
                       s->gpid);
    s_done(s);
}

static void s_on_answer(void *userdata, uint32_t node, int code, const char *message,
                        ProtobufCMessage *reply)
{
    jobs_settle_t *s = userdata;
    const Cairn__Ghostd__MigrateState *st = migrate_state_of(reply);
    const char *state = st && st->state ? st->state : "";

    /* s->asking stays set until the end: s_done then only marks it */
    if (s->done) {
        /* settled meanwhile (cannot be: one call at a time) */
    } else if (code == CAIRN_TIMEOUT || code == CAIRN_UNAVAILABLE) {
        /* asked again on the next tick */
    } else if (s->step == S_ABORT) {
        if (code == CAIRN_OK)
            cairn_log_info("job-settled", "gpid=%s id=%s to=%u msg=\"the copy here runs; "
                           "node %u's was aborted\"", s->gpid, s->id, node, node);
        else
            cairn_log_err(-EPROTO, "job-settle", "gpid=%s id=%s to=%u code=%s msg=\"the "
                          "copy here runs, but node %u refused to abort its own: %s\"",
                          s->gpid, s->id, node, cairn_code_name(code), node, message);
        s_done(s);
    } else if (s->step == S_STATUS && code == CAIRN_OK && strcmp(state, "running") == 0) {
        s->step = S_COMMIT;   /* on the next tick */
    } else if (s->step == S_STATUS && code == CAIRN_OK && strcmp(state, "committed") == 0) {
        cairn_log_info("job-settled", "gpid=%s id=%s to=%u msg=\"the move had ended: the "
                       "job is node %u's\"", s->gpid, s->id, node, node);
        s_done(s);
    } else if (s->step == S_STATUS && code == CAIRN_OK &&
               (strcmp(state, "receiving") == 0 || strcmp(state, "restoring") == 0)) {
        /* the target fails a stream gone silent on its own: asked again */
    } else if (s->step == S_COMMIT && code == CAIRN_OK) {
        cairn_log_info("job-settled", "gpid=%s id=%s to=%u msg=\"committed: the job runs "
                       "on node %u\"", s->gpid, s->id, node, node);
        s_done(s);
    } else {
        char why[300];
        snprintf(why, sizeof why, "has no copy of it (%s%s%s)",
                 code == CAIRN_OK ? state : cairn_code_name(code),
                 message && *message ? ": " : "", message ? message : "");
        s_lost(s, why);
    }
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    s->asking = false;
    if (s->done)
        s_free(s);
}

/* One call of s's step to its target. */
static int s_ask(jobs_settle_t *s)
{
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__MigrateAbortRequest ab = CAIRN__GHOSTD__MIGRATE_ABORT_REQUEST__INIT;
    Cairn__Ghostd__MigrateStatusRequest stq = CAIRN__GHOSTD__MIGRATE_STATUS_REQUEST__INIT;
    Cairn__Ghostd__MigrateCommitRequest cm = CAIRN__GHOSTD__MIGRATE_COMMIT_REQUEST__INIT;
    const char *ep = cairn_view_endpoint(s->jobs->view, s->to);

    if (!ep)
        return -ENOENT;
    switch (s->step) {
    case S_DECIDE:
        return -EINVAL;   /* decided before any call */
    case S_ABORT:
        ab.id = s->id;
        ab.why = "the source's ghostd restarted and its copy of the job runs there";
        req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_ABORT;
        req.migrate_abort = &ab;
        break;
    case S_STATUS:
        stq.id = s->id;
        req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_STATUS;
        req.migrate_status = &stq;
        break;
    case S_COMMIT:
        cm.id = s->id;
        req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_COMMIT;
        req.migrate_commit = &cm;
        break;
    }
    int r = cairn_peers_call_as(s->jobs->peers, s->to, ep, &req.base, S_CALL_MS, NULL,
                                s_on_answer, s);
    s->asking = r == 0;
    return r;
}

static int s_on_tick(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    jobs_settle_t *s = userdata;
    const char *st = cairn_view_known(s->jobs->view)
                         ? cairn_view_state(s->jobs->view, s->to) : "unknown";

    if (s->asking || s->done)
        return 0;
    if (s->step == S_DECIDE && !s_decide(s))
        return 0;
    if (!st || strcmp(st, "dead") == 0 || strcmp(st, "left") == 0) {
        /* the target is gone: its copy with it */
        char why[96];
        snprintf(why, sizeof why, "is %s", st ? st : "no member any more");
        if (s->step == S_ABORT) {
            cairn_log_info("job-settled", "gpid=%s id=%s to=%u msg=\"the copy here runs; "
                           "node %u %s\"", s->gpid, s->id, s->to, s->to, why);
            s_done(s);
        } else {
            s_lost(s, why);
        }
        return 0;
    }
    int r = s_ask(s);
    if (r < 0)
        cairn_log_warn(r, "job-settle", "gpid=%s to=%u msg=\"cannot ask node %u, "
                       "again in %u ms\"", s->gpid, s->to, s->to, S_EVERY_MS);
    return 0;
}

void jobs_settle_start(ghostd_jobs_t *jobs, const ghostd_jobrec_t *rec, bool ended)
{
    jobs_settle_t *s = calloc(1, sizeof *s);

    if (!s) {
        cairn_log_err(-ENOMEM, "job-settle", "gpid=%s msg=\"out of memory: the move to "
                      "node %u is left unsettled\"", rec->gpid, rec->migrating_to);
        return;
    }
    s->jobs = jobs;
    snprintf(s->gpid, sizeof s->gpid, "%s", rec->gpid);
    snprintf(s->id, sizeof s->id, "%s", rec->migration);
    s->to = rec->migrating_to;
    s->rec.host_pid = rec->host_pid;
    s->rec.host_start = rec->host_start;
    s->step = ended ? S_ABORT : S_DECIDE;   /* an ended job is never "lost" */
    s->timer = cairn_loop_add_timer(cairn_service_loop(jobs->svc), 1, S_EVERY_MS,
                                    s_on_tick, s);
    if (s->timer < 0) {
        cairn_log_err((int)s->timer, "job-settle", "gpid=%s msg=\"no timer: the move to "
                      "node %u is left unsettled\"", rec->gpid, rec->migrating_to);
        free(s);
        return;
    }
    s->next = jobs->settles;
    jobs->settles = s;
    cairn_log_warn(0, "job-settle", "gpid=%s id=%s to=%u msg=\"a move the ghostd before "
                   "this one left under way: settled with node %u once the tree is "
                   "not held\"", s->gpid, s->id, s->to, s->to);
}

void jobs_settle_free_all(ghostd_jobs_t *jobs)
{
    while (jobs->settles) {
        jobs->settles->asking = false;   /* the peers are gone: no callback comes */
        s_free(jobs->settles);
    }
}
