/* probe-migration-cost.c - the "migration-cost" probe: what moving each
 * job of the node would take, estimated in ms.
 *
 * cost = a fixed part (freezing, the image's metadata, the restore's
 * set-up) + rss over the bandwidth an image moves at. The node measures
 * no link bandwidth yet, so the default stands for it; both constants are
 * named here and in docs/scheduler.md. It reads the job list the "jobs"
 * probe made (it needs it) and runs after every sample of that probe.
 */
#include "probe.h"

#define S_FIXED_MS 150                      /* freeze + metadata + set-up */
#define S_BYTES_PER_S (200ull << 20)        /* 200 MiB/s between nodes */

static int s_sample(void *state, const probe_env_t *env, loadvec_t *v,
                    cairn_error_t *err)
{
    (void)state, (void)env, (void)err;
    for (size_t i = 0; i < v->n_job; i++)
        v->job[i].migration_cost_ms = S_FIXED_MS +
            (uint64_t)((double)v->job[i].rss_bytes * 1000.0 / (double)S_BYTES_PER_S);
    return 0;
}

const probe_ops_t probe_migration_cost = {
    .name = "migration-cost",
    .needs = "jobs",
    .sample = s_sample,
};
