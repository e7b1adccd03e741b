/* test-holdq.c - the rules of the placements ghostd holds (holdq.h):
 * bounded, asked when a policy is up and again after a lost ask, placed
 * here at the deadline, answered exactly once, a slot never reused while
 * a callback for it is still to come.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "holdq.h"

static holdq_t s_q;

static void s_setup(void)
{
    holdq_init(&s_q);
}

TestSuite(holdq, .init = s_setup);

Test(holdq, bounded)
{
    holdq_slot_t *s;
    int tag;

    for (int i = 0; i < GHOSTD_PLACE_HOLD_MAX; i++)
        cr_assert_eq(holdq_add(&s_q, 1000, 500, &tag, &s), 0, "slot %d", i);
    cr_assert_eq(holdq_waiting(&s_q), GHOSTD_PLACE_HOLD_MAX);
    cr_assert_eq(holdq_add(&s_q, 1000, 500, &tag, &s), -ENOSPC);
    /* one answered frees one slot, and only one */
    holdq_slot_t *first = &s_q.slots[0];
    cr_assert(holdq_place(first));
    holdq_answered(&s_q, first);
    cr_assert_eq(holdq_add(&s_q, 2000, 500, &tag, &s), 0);
    cr_assert_eq(s, first);
    cr_assert_eq(s->deadline_ms, 2500);
    cr_assert_eq(holdq_add(&s_q, 2000, 500, &tag, &s), -ENOSPC);
}

Test(holdq, asked_when_a_policy_is_up)
{
    holdq_slot_t *s;

    cr_assert_eq(holdq_add(&s_q, 1000, 10000, NULL, &s), 0);
    cr_assert_eq(holdq_next(s, 1000, false, 2000), HOLDQ_WAIT, "no policy: wait");
    cr_assert_eq(holdq_next(s, 1200, true, 2000), HOLDQ_ASK);
    holdq_asked(s, 1200);
    cr_assert_eq(holdq_next(s, 1400, true, 2000), HOLDQ_WAIT, "an ask is out");
    cr_assert_eq(holdq_next(s, 3200, true, 2000), HOLDQ_ASK, "unanswered too long");
    /* the policy went away: asked again as soon as one is up */
    holdq_policy_gone(&s_q);
    cr_assert_eq(holdq_next(s, 1500, false, 2000), HOLDQ_WAIT);
    cr_assert_eq(holdq_next(s, 1600, true, 2000), HOLDQ_ASK);
    holdq_asked(s, 1600);
    holdq_returned(s);
    holdq_ask_failed(s);   /* a timeout */
    cr_assert_eq(holdq_next(s, 1700, true, 2000), HOLDQ_ASK);
}

Test(holdq, deadline)
{
    holdq_slot_t *s;

    cr_assert_eq(holdq_add(&s_q, 1000, 300, NULL, &s), 0);
    cr_assert_eq(holdq_next(s, 1299, false, 2000), HOLDQ_WAIT);
    cr_assert_eq(holdq_next(s, 1300, false, 2000), HOLDQ_EXPIRED);
    cr_assert_eq(holdq_next(s, 1300, true, 2000), HOLDQ_EXPIRED,
                 "past the deadline even with a policy up");
}

Test(holdq, answered_exactly_once)
{
    holdq_slot_t *s;

    cr_assert_eq(holdq_add(&s_q, 1000, 300, NULL, &s), 0);
    holdq_asked(s, 1000);                  /* an ask to the old policy */
    holdq_asked(s, 1100);                  /* and one to the new */
    cr_assert(holdq_place(s), "the first answer places it");
    cr_assert_eq(holdq_next(s, 5000, true, 2000), HOLDQ_WAIT,
                 "placed: neither asked nor expired again");
    cr_assert_not(holdq_place(s), "a second answer is dropped");
    holdq_answered(&s_q, s);
    cr_assert_not(holdq_place(s), "an answer after the reply is dropped");
    cr_assert_eq(holdq_waiting(&s_q), 0);
    cr_assert_eq(s_q.used, 0);
    holdq_answered(&s_q, s);               /* twice: no underflow */
    cr_assert_eq(s_q.used, 0);
}

Test(holdq, no_reuse_while_a_callback_is_due)
{
    holdq_slot_t *s, *t;

    cr_assert_eq(holdq_add(&s_q, 1000, 300, NULL, &s), 0);
    holdq_asked(s, 1000);                  /* its answer will come late */
    cr_assert(holdq_place(s));             /* placed by the deadline */
    holdq_answered(&s_q, s);
    cr_assert_eq(holdq_add(&s_q, 1400, 300, NULL, &t), 0);
    cr_assert_neq(t, s, "a slot with a callback due is not reused");
    holdq_returned(s);                     /* the late answer came */
    cr_assert_not(holdq_place(s));
    holdq_slot_t *u;
    cr_assert_eq(holdq_add(&s_q, 1500, 300, NULL, &u), 0);
    cr_assert_eq(u, s, "reused once nothing is due");
}
