/* policy-rr.c - sched-rr: round robin placement, no balancing.
 *
 * The next alive node running ghostd after the one chosen last, in id
 * order, wrapping around. The core keeps "the one chosen last" in the
 * decision log, so a swap back to rr goes on where it stopped. rr never
 * moves a job by itself, which is why it is the default policy.
 */
#include <stdio.h>
#include <string.h>

#include "policy.h"

static int s_place(const sched_input_t *in, sched_verdict_t *out)
{
    memset(out, 0, sizeof(*out));
    if (in->n_members == 0) {
        out->node = in->self.node;
        sched_reason(out, "round robin: no membership known yet (clusterd "
                     "not answering): placed on this node");
        return 0;
    }
    out->node = in->members[0];
    for (size_t i = 0; i < in->n_members; i++)
        if (in->members[i] > in->last_placed) {
            out->node = in->members[i];
            break;
        }
    if (in->last_placed)
        sched_reason(out, "round robin over %zu alive nodes running ghostd: "
                     "node %u follows node %u", in->n_members, out->node,
                     in->last_placed);
    else
        sched_reason(out, "round robin over %zu alive nodes running ghostd: "
                     "node %u first", in->n_members, out->node);
    return 0;
}

const sched_policy_t sched_policy_rr = {
    .name = "rr",
    .place = s_place,
    .balance = NULL,
    .ushers = false,
};
