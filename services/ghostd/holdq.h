/* holdq.h - the queue of placements ghostd holds while no scheduler policy
 * answers (docs/scheduler.md, "ghostd: placement and the hold").
 *
 * The pure half of place-hold.c: slots, states, deadlines and the one rule
 * that a held request is answered exactly once, with no socket, timer or
 * request in sight, so tests/unit drives it with plain numbers. Times are
 * monotonic milliseconds given by the caller.
 *
 * A slot's life:
 *
 *   FREE --add--> WAITING --placed (a policy's answer, or the deadline:
 *   here)--> RUNNING --answered--> FREE
 *
 * Each request sent on a slot's behalf (an ask to the policy, the run
 * carried to the chosen node) is counted in `outstanding` until its
 * callback comes back; a slot is reused only when it is FREE and nothing is
 * outstanding, so a late callback never lands on a newer request. An ask
 * answered after its slot was placed (by an earlier answer, or by the
 * deadline) is dropped: holdq_place says yes once per request.
 */
#ifndef GHOSTD_HOLDQ_H
#define GHOSTD_HOLDQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GHOSTD_PLACE_HOLD_MAX 256        /* placements held at once */
#define GHOSTD_PLACE_ASK_EVERY_MS 200    /* is a policy up? (the tick) */
#define GHOSTD_PLACE_ASK_TIMEOUT_MS 2000 /* an ask unanswered this long is
                                            sent again */

typedef enum holdq_state {
    HOLDQ_FREE,     /* unused */
    HOLDQ_WAITING,  /* no node chosen yet */
    HOLDQ_RUNNING,  /* placed: the run is out, its answer awaited */
} holdq_state_t;

/* What the caller should do for a WAITING slot now (holdq_next). */
typedef enum holdq_action {
    HOLDQ_WAIT,     /* nothing: an ask is out, or no policy runs */
    HOLDQ_ASK,      /* ask the policy (again) */
    HOLDQ_EXPIRED,  /* the hold deadline passed: place it here */
} holdq_action_t;

typedef struct holdq_slot {
    holdq_state_t state;
    uint64_t arrived_ms;   /* when the request came */
    uint64_t deadline_ms;  /* placed here at this time if no policy did */
    uint64_t asked_ms;     /* when the newest ask went out, 0: none */
    bool asking;           /* that ask may still be answered */
    unsigned outstanding;  /* callbacks still to come for this slot */
    void *data;            /* the caller's, while not FREE */
} holdq_slot_t;

typedef struct holdq {
    holdq_slot_t slots[GHOSTD_PLACE_HOLD_MAX];
    size_t used;           /* slots not FREE */
} holdq_t;

/* An empty queue. */
void holdq_init(holdq_t *q);

/* Takes a slot for a new request arrived at now and placed here at
 * now + hold_ms at the latest. 0 with *ret set, or -ENOSPC when
 * GHOSTD_PLACE_HOLD_MAX are held. */
int holdq_add(holdq_t *q, uint64_t now, uint64_t hold_ms, void *data,
              holdq_slot_t **ret);

/* What to do for s at now: EXPIRED past its deadline, else ASK when a
 * policy is up and no ask is out (or the one out is older than
 * ask_timeout_ms), else WAIT. Only for WAITING slots (else WAIT). */
holdq_action_t holdq_next(const holdq_slot_t *s, uint64_t now, bool policy_up,
                          uint64_t ask_timeout_ms);

/* An ask goes out for s at now: one more outstanding callback. */
void holdq_asked(holdq_slot_t *s, uint64_t now);

/* s's ask came back without an answer (no policy, a timeout): the next
 * holdq_next asks again as soon as a policy is up. */
void holdq_ask_failed(holdq_slot_t *s);

/* The policy went away (its socket has no listener): no ask that is out
 * will be answered, so every WAITING slot is asked again once one is up. */
void holdq_policy_gone(holdq_t *q);

/* A callback for s came back (an ask's or the run's). */
void holdq_returned(holdq_slot_t *s);

/* s is placed (by a policy or by the deadline): true the first time, when
 * s was WAITING -- it is RUNNING after --, false for any later answer. */
bool holdq_place(holdq_slot_t *s);

/* s's request was answered: it is FREE (reused once nothing is
 * outstanding). */
void holdq_answered(holdq_t *q, holdq_slot_t *s);

/* How many slots are WAITING. */
size_t holdq_waiting(const holdq_t *q);

#endif
