/* place-hold.h - where a `cairn run` without --node goes: ghostd asks this
 * node's scheduler policy, and holds the request while none answers
 * (docs/scheduler.md, "ghostd: placement and the hold").
 *
 * A RunRequest without node comes here from jobs.c's run handler:
 *
 *   - the node's appliance runs no "sched", or the cluster runs security
 *     mode none (no node vouches for a user's job elsewhere): run here at
 *     once, and say why (RunReply.placed_by "local");
 *   - else the request is deferred into a slot of the hold queue
 *     (holdq.h: at most GHOSTD_PLACE_HOLD_MAX) and the local sched is asked
 *     (sched.proto, Request{place}) -- at once when its socket has a
 *     listener, else every GHOSTD_PLACE_ASK_EVERY_MS until one comes up;
 *   - the policy's answer (node, policy, reason) sends the run, node set,
 *     to this node's own ghostd on the caller's behalf -- the path `cairn
 *     run --node N` takes, so a run placed on another node is carried there
 *     by jobs.c exactly as one the user placed --, and that answer is
 *     relayed with placed_by, placement and held_ms filled in;
 *   - at the hold deadline (the request's deadline less room for the
 *     launch, at most the description's <scheduler placement-hold-ms>,
 *     10 s by default, read anew for each request so SIGHUP changes it)
 *     the run goes to this node with
 *     placed_by "local" and the reason.
 *
 * Every held request is answered exactly once: a policy's answer that comes
 * after the request was placed (by an earlier answer, or by the deadline)
 * is dropped. At stop every request still held is answered UNAVAILABLE.
 */
#ifndef GHOSTD_PLACE_HOLD_H
#define GHOSTD_PLACE_HOLD_H

#include "ghostd.h"
#include "holdq.h"

typedef struct place_hold place_hold_t;

/* Makes gd->hold (from ops->start). 0 or -ENOMEM. */
int place_hold_start(ghostd_t *gd);

/* Answers what is held UNAVAILABLE and frees gd->hold. Safe twice. */
void place_hold_stop(ghostd_t *gd);

/* Places req, a RunRequest without node. Returns the handler's value when
 * it answered or deferred req (*ret_here left NULL); or 0 with *ret_here
 * the reason the job runs on this node at once, for jobs.c to launch it
 * there (RunReply.placed_by "local", placement *ret_here: a static
 * string). */
int place_hold_run(place_hold_t *h, cairn_request_t *req, const char **ret_here);

#endif
