/* holdq.c - the held placements' queue (holdq.h).
 *
 * A fixed array: 256 slots cost nothing to scan every 200 ms, and a slot's
 * address stays valid for the callbacks that name it.
 */
#include <errno.h>
#include <string.h>

#include "holdq.h"

void holdq_init(holdq_t *q)
{
    memset(q, 0, sizeof *q);
}

int holdq_add(holdq_t *q, uint64_t now, uint64_t hold_ms, void *data,
              holdq_slot_t **ret)
{
    for (size_t i = 0; i < GHOSTD_PLACE_HOLD_MAX; i++) {
        holdq_slot_t *s = &q->slots[i];
        if (s->state != HOLDQ_FREE || s->outstanding)
            continue;
        *s = (holdq_slot_t){ .state = HOLDQ_WAITING, .arrived_ms = now,
                             .deadline_ms = now + hold_ms, .data = data };
        q->used++;
        *ret = s;
        return 0;
    }
    return -ENOSPC;
}

holdq_action_t holdq_next(const holdq_slot_t *s, uint64_t now, bool policy_up,
                          uint64_t ask_timeout_ms)
{
    if (s->state != HOLDQ_WAITING)
        return HOLDQ_WAIT;
    if (now >= s->deadline_ms)
        return HOLDQ_EXPIRED;
    if (policy_up && (!s->asking || now >= s->asked_ms + ask_timeout_ms))
        return HOLDQ_ASK;
    return HOLDQ_WAIT;
}

void holdq_asked(holdq_slot_t *s, uint64_t now)
{
    s->asked_ms = now;
    s->asking = true;
    s->outstanding++;
}

void holdq_ask_failed(holdq_slot_t *s)
{
    s->asking = false;
}

void holdq_policy_gone(holdq_t *q)
{
    for (size_t i = 0; i < GHOSTD_PLACE_HOLD_MAX; i++)
        q->slots[i].asking = false;
}

void holdq_returned(holdq_slot_t *s)
{
    if (s->outstanding)
        s->outstanding--;
}

bool holdq_place(holdq_slot_t *s)
{
    if (s->state != HOLDQ_WAITING)
        return false;
    s->state = HOLDQ_RUNNING;
    return true;
}

void holdq_answered(holdq_t *q, holdq_slot_t *s)
{
    if (s->state == HOLDQ_FREE)
        return;
    s->state = HOLDQ_FREE;
    s->data = NULL;
    q->used--;
}

size_t holdq_waiting(const holdq_t *q)
{
    size_t n = 0;

    for (size_t i = 0; i < GHOSTD_PLACE_HOLD_MAX; i++)
        n += q->slots[i].state == HOLDQ_WAITING;
    return n;
}
