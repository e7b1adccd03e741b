/* test-policy.c - the policies' decision functions over hand-made vectors
 * and job lists (policy.h): round robin, least loaded placement, the
 * stability margin, no ping-pong, one move at a time, stale vectors and
 * dead nodes ignored, ushering before the limit, sched-mem's rules, and a
 * whole spread of 16 jobs simulated to its end.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

#define MIB (1024ull * 1024ull)

static sched_params_t P;

static void s_setup(void)
{
    sched_params_default(&P);
}

TestSuite(policy, .init = s_setup);

/* A node of 0.5 CPU and 512 MiB running `jobs` CPU-bound jobs. */
static sched_node_t s_node(uint32_t id, unsigned jobs)
{
    return (sched_node_t){ .node = id, .cpus = 0.5,
                           .cpu_load = jobs ? 0.5 : 0.0, .runnable = jobs,
                           .mem_limit = 512 * MIB, .mem_used = 16 * MIB,
                           .mem_free = 496 * MIB, .jobs = jobs };
}

/* n CPU-bound jobs sharing a 0.5-CPU node: "1.<k>". */
static void s_jobs(sched_job_t *jobs, unsigned n, unsigned base)
{
    for (unsigned k = 0; k < n; k++) {
        jobs[k] = (sched_job_t){ .cpu = 0.5 / n, .rss_bytes = 2 * MIB,
                                 .cost_ms = 100, .since_move_ms = SCHED_NEVER };
        snprintf(jobs[k].gpid, sizeof(jobs[k].gpid), "1.%u", base + k);
    }
}

static sched_input_t s_input(sched_node_t self, const sched_node_t *peers,
                             size_t n_peers)
{
    return (sched_input_t){ .params = &P, .self = self, .peers = peers,
                            .n_peers = n_peers };
}

/* ---- sched-rr ------------------------------------------------------- */

Test(policy, rr_goes_round_in_id_order)
{
    const uint32_t members[] = { 1, 2, 4, 7 };
    sched_input_t in = s_input(s_node(2, 0), NULL, 0);
    sched_verdict_t v;
    uint32_t got[6];

    in.members = members;
    in.n_members = 4;
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(sched_policy_rr.place(&in, &v), 0);
        got[i] = v.node;
        in.last_placed = v.node;
    }
    const uint32_t want[] = { 1, 2, 4, 7, 1, 2 };
    cr_assert_arr_eq(got, want, sizeof(want));
    cr_assert(strstr(v.reason, "round robin"), "%s", v.reason);
}

Test(policy, rr_resumes_after_the_last_and_skips_a_dead_one)
{
    const uint32_t members[] = { 1, 3, 4 }; /* node 2 died */
    sched_input_t in = s_input(s_node(1, 0), NULL, 0);
    sched_verdict_t v;

    in.members = members;
    in.n_members = 3;
    in.last_placed = 1;
    sched_policy_rr.place(&in, &v);
    cr_assert_eq(v.node, 3);
    in.last_placed = 9; /* a node that left: wraps to the first */
    sched_policy_rr.place(&in, &v);
    cr_assert_eq(v.node, 1);
}

Test(policy, rr_without_membership_places_here_and_never_balances)
{
    sched_input_t in = s_input(s_node(3, 0), NULL, 0);
    sched_verdict_t v;

    sched_policy_rr.place(&in, &v);
    cr_assert_eq(v.node, 3);
    cr_assert(strstr(v.reason, "no membership"), "%s", v.reason);
    cr_assert_null(sched_policy_rr.balance);
    cr_assert(!sched_policy_rr.ushers);
}

/* ---- sched-mosix: placement ------------------------------------------ */

Test(policy, mosix_places_on_the_least_loaded)
{
    sched_node_t peers[] = { s_node(2, 3), s_node(3, 1), s_node(4, 2) };
    sched_input_t in = s_input(s_node(1, 4), peers, 3);
    sched_verdict_t v;

    sched_policy_mosix.place(&in, &v);
    cr_assert_eq(v.node, 3, "%s", v.reason);
    cr_assert(strstr(v.reason, "least loaded of 4 known nodes"), "%s", v.reason);
}

Test(policy, mosix_placements_spread_with_pending_commitments)
{
    /* Four idle nodes; the core counts each placement as one CPU until a
     * vector shows it: four placements in a period land on four nodes. */
    sched_node_t peers[] = { s_node(2, 0), s_node(3, 0), s_node(4, 0) };
    sched_input_t in = s_input(s_node(1, 0), peers, 3);
    sched_verdict_t v;
    bool used[5] = { false };

    for (int i = 0; i < 4; i++) {
        sched_policy_mosix.place(&in, &v);
        cr_assert(!used[v.node], "node %u chosen twice", v.node);
        used[v.node] = true;
        sched_node_t *n = v.node == 1 ? &in.self : &peers[v.node - 2];
        n->pending_cpu += 1.0;
    }
}

Test(policy, a_daemon_in_an_idle_nodes_run_queue_is_no_job)
{
    sched_node_t idle = s_node(2, 0), busy = s_node(3, 2);

    idle.runnable = 2;
    idle.cpu_load = 0.02;
    cr_assert_float_eq(sched_node_demand(&idle), 0.02, 1e-9);
    cr_assert_float_eq(sched_node_demand(&busy), 2.0, 1e-9);
    cr_assert_float_eq(sched_node_load(&busy), 4.0, 1e-9);
}

Test(policy, a_node_short_of_its_quota_is_as_loaded_as_its_run_queue)
{
    /* 16 jobs on a host other work shares: 0.3 of the 0.5 CPU. */
    sched_node_t n = s_node(1, 16);
    sched_job_t j = { .cpu = 0.3 / 16 };

    n.cpu_load = 0.3;
    n.runnable = 18; /* and two daemons passing through */
    cr_assert_float_eq(sched_node_demand(&n), 16.0, 1e-9);
    cr_assert_float_eq(sched_job_demand(&n, &j), 1.0, 1e-9);
}

Test(policy, mosix_ignores_stale_vectors_and_dead_nodes)
{
    const uint32_t members[] = { 1, 2, 4 };
    sched_node_t peers[] = { s_node(2, 3), s_node(3, 0), s_node(4, 0) };
    sched_input_t in = s_input(s_node(1, 2), peers, 3);
    sched_verdict_t v;

    peers[2].age_ms = (uint64_t)P.stale_periods * P.gossip_period_ms + 1;
    in.members = members; /* node 3 is not alive */
    in.n_members = 3;
    sched_policy_mosix.place(&in, &v);
    cr_assert_eq(v.node, 1, "%s", v.reason);
    peers[2].age_ms = 0; /* fresh again */
    sched_policy_mosix.place(&in, &v);
    cr_assert_eq(v.node, 4, "%s", v.reason);
}

Test(policy, mosix_without_any_vector_places_here)
{
    sched_node_t self = { .node = 2 };
    sched_input_t in = s_input(self, NULL, 0);
    sched_verdict_t v;

    sched_policy_mosix.place(&in, &v);
    cr_assert_eq(v.node, 2);
    cr_assert(strstr(v.reason, "no load known"), "%s", v.reason);
}

/* ---- sched-mosix: balancing ------------------------------------------ */

Test(policy, mosix_moves_one_job_to_the_idlest)
{
    sched_job_t jobs[16];
    sched_node_t peers[] = { s_node(2, 1), s_node(3, 0), s_node(4, 0) };
    sched_input_t in = s_input(s_node(1, 16), peers, 3);
    sched_verdict_t v;

    s_jobs(jobs, 16, 1);
    in.jobs = jobs;
    in.n_jobs = 16;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 1);
    cr_assert_eq(v.node, 3, "ties go to the lower id: %s", v.reason);
    cr_assert(v.gpid[0]);
    cr_assert(strstr(v.reason, "exceeds node 3"), "%s", v.reason);
}

Test(policy, mosix_stability_margin)
{
    sched_job_t jobs[6];
    sched_node_t peers[] = { s_node(2, 4) };
    sched_input_t in = s_input(s_node(1, 5), peers, 1);
    sched_verdict_t v;

    /* 5 against 4 jobs: a move would only swap the imbalance. */
    s_jobs(jobs, 5, 1);
    in.jobs = jobs;
    in.n_jobs = 5;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 0, "%s", v.gpid);
    cr_assert(strstr(v.reason, "margin"), "%s", v.reason);
    /* 6 against 4: one moves. */
    in.self = s_node(1, 6);
    s_jobs(jobs, 6, 1);
    in.n_jobs = 6;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 1);
    cr_assert_eq(v.node, 2);
    /* One job against an idle node: moving it gains nothing. */
    in.self = s_node(1, 1);
    peers[0] = s_node(2, 0);
    s_jobs(jobs, 1, 1);
    in.n_jobs = 1;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 0, "%s", v.reason);
}

Test(policy, mosix_no_ping_pong)
{
    /* After any move the test passes, the reverse move must fail it. */
    for (unsigned a = 1; a <= 16; a++)
        for (unsigned b = 0; b < a; b++) {
            sched_job_t ja[16], jb[17];
            sched_node_t pb[] = { s_node(2, b) };
            sched_input_t in = s_input(s_node(1, a), pb, 1);
            sched_verdict_t v;
            s_jobs(ja, a, 1);
            in.jobs = ja;
            in.n_jobs = a;
            if (sched_policy_mosix.balance(&in, &v) == 0)
                continue;
            /* Node 2 now runs b + 1, node 1 a - 1; the moved job is no
             * longer held, to test the margin alone. */
            sched_node_t pa[] = { s_node(1, a - 1) };
            sched_input_t back = s_input(s_node(2, b + 1), pa, 1);
            s_jobs(jb, b + 1, 100);
            back.jobs = jb;
            back.n_jobs = b + 1;
            cr_assert_eq(sched_policy_mosix.balance(&back, &v), 0,
                         "%u/%u: moved back: %s", a, b, v.reason);
        }
}

Test(policy, mosix_holds_a_job_that_moved_lately)
{
    sched_job_t jobs[4];
    sched_node_t peers[] = { s_node(2, 0) };
    sched_input_t in = s_input(s_node(1, 4), peers, 1);
    sched_verdict_t v;
    uint64_t hold = P.hold_periods * sched_balance_period(&P);

    s_jobs(jobs, 4, 1);
    for (int k = 0; k < 4; k++)
        jobs[k].since_move_ms = hold - 1;
    in.jobs = jobs;
    in.n_jobs = 4;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 0);
    cr_assert(strstr(v.reason, "moved too recently"), "%s", v.reason);
    jobs[2].since_move_ms = hold;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 1);
    cr_assert_str_eq(v.gpid, "1.3");
}

Test(policy, mosix_picks_the_most_gain_per_migration_cost)
{
    sched_job_t jobs[3];
    sched_node_t peers[] = { s_node(2, 0) };
    sched_input_t in = s_input(s_node(1, 3), peers, 1);
    sched_verdict_t v;

    s_jobs(jobs, 3, 1);
    jobs[0].cost_ms = 5000;
    jobs[1].cost_ms = 50;
    jobs[2].cost_ms = 900;
    in.jobs = jobs;
    in.n_jobs = 3;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 1);
    cr_assert_str_eq(v.gpid, "1.2");
    /* A sleeping job gains nothing wherever it runs. */
    jobs[1].cpu = 0;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 1);
    cr_assert_str_eq(v.gpid, "1.3");
}

Test(policy, mosix_never_moves_to_a_stale_node)
{
    sched_job_t jobs[8];
    sched_node_t peers[] = { s_node(2, 0) };
    sched_input_t in = s_input(s_node(1, 8), peers, 1);
    sched_verdict_t v;

    peers[0].age_ms = (uint64_t)P.stale_periods * P.gossip_period_ms + 1;
    s_jobs(jobs, 8, 1);
    in.jobs = jobs;
    in.n_jobs = 8;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 0);
    cr_assert(strstr(v.reason, "no other node known"), "%s", v.reason);
}

Test(policy, mosix_counts_a_move_in_flight)
{
    /* Node 2 just got a job its vector does not show yet (pending). */
    sched_job_t jobs[3];
    sched_node_t peers[] = { s_node(2, 0) };
    sched_input_t in = s_input(s_node(1, 3), peers, 1);
    sched_verdict_t v;

    s_jobs(jobs, 3, 1);
    in.jobs = jobs;
    in.n_jobs = 3;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 1);
    peers[0].pending_cpu = 1.0;
    in.self.pending_cpu = -1.0;
    in.n_jobs = 2;
    cr_assert_eq(sched_policy_mosix.balance(&in, &v), 0, "%s", v.reason);
}

/* Sixteen jobs forced onto node 1 of four: balancing as each node's
 * policy would run it, one move per round per node, each move seen by
 * every node at once. Ends 4/4/4/4; no job moves twice. */
Test(policy, mosix_spreads_sixteen_jobs_and_settles)
{
    unsigned count[5] = { 0, 16, 0, 0, 0 };
    uint32_t where[16], moves[16] = { 0 };
    uint64_t moved_at[16];
    uint64_t period = sched_balance_period(&P);

    for (int k = 0; k < 16; k++) {
        where[k] = 1;
        moved_at[k] = SCHED_NEVER;
    }
    for (uint64_t round = 0; round < 64; round++) {
        uint64_t now = round * period;
        for (uint32_t n = 1; n <= 4; n++) {
            sched_node_t peers[3];
            sched_job_t jobs[16];
            int idx[16];
            size_t np = 0, nj = 0;
            for (uint32_t m = 1; m <= 4; m++)
                if (m != n)
                    peers[np++] = s_node(m, count[m]);
            for (int k = 0; k < 16; k++) {
                if (where[k] != n)
                    continue;
                jobs[nj] = (sched_job_t){
                    .cpu = 0.5 / count[n], .cost_ms = 100,
                    .since_move_ms = moved_at[k] == SCHED_NEVER ? SCHED_NEVER
                                                                : now - moved_at[k] };
                snprintf(jobs[nj].gpid, sizeof(jobs[nj].gpid), "%d", k);
                idx[nj++] = k;
            }
            sched_input_t in = s_input(s_node(n, count[n]), peers, np);
            sched_verdict_t v;
            in.jobs = jobs;
            in.n_jobs = nj;
            if (sched_policy_mosix.balance(&in, &v) != 1)
                continue;
            int k = atoi(v.gpid);
            cr_assert(k >= 0 && k < 16 && where[k] == n);
            (void)idx;
            count[n]--;
            count[v.node]++;
            where[k] = v.node;
            moved_at[k] = now;
            moves[k]++;
        }
    }
    for (uint32_t n = 1; n <= 4; n++)
        cr_assert_eq(count[n], 4, "node %u runs %u", n, count[n]);
    for (int k = 0; k < 16; k++)
        cr_assert_leq(moves[k], 1, "job %d moved %u times", k, moves[k]);
}

/* ---- ushering -------------------------------------------------------- */

static sched_node_t s_mem_node(uint32_t id, uint64_t used_mib)
{
    sched_node_t n = s_node(id, 1);
    n.mem_limit = 256 * MIB;
    n.mem_used = used_mib * MIB;
    n.mem_free = n.mem_limit - n.mem_used;
    return n;
}

Test(policy, usher_moves_the_fastest_grower_before_the_limit)
{
    sched_job_t jobs[2];
    sched_node_t peers[] = { s_mem_node(2, 200), s_mem_node(3, 40), s_mem_node(4, 100) };
    sched_input_t in = s_input(s_mem_node(1, 220), peers, 3);
    sched_verdict_t v;

    s_jobs(jobs, 2, 1);
    jobs[0].rss_bytes = 150 * MIB;
    jobs[0].rss_growth = 4 * MIB;
    jobs[1].rss_bytes = 60 * MIB;
    jobs[1].rss_growth = 0;
    in.jobs = jobs;
    in.n_jobs = 2;
    in.mem_used_before = 216 * MIB;
    cr_assert_eq(sched_usher(&in, &v), 1, "%s", v.reason);
    cr_assert_str_eq(v.gpid, "1.1");
    cr_assert_eq(v.node, 3, "%s", v.reason);
    cr_assert(strstr(v.reason, "grows fastest"), "%s", v.reason);
}

Test(policy, usher_waits_below_high_water_or_when_not_growing)
{
    sched_job_t jobs[1];
    sched_node_t peers[] = { s_mem_node(2, 10) };
    sched_input_t in = s_input(s_mem_node(1, 200), peers, 1); /* 78 % */
    sched_verdict_t v;

    s_jobs(jobs, 1, 1);
    jobs[0].rss_bytes = 180 * MIB;
    jobs[0].rss_growth = 2 * MIB;
    in.jobs = jobs;
    in.n_jobs = 1;
    cr_assert_eq(sched_usher(&in, &v), 0);
    cr_assert(strstr(v.reason, "below"), "%s", v.reason);
    in.self = s_mem_node(1, 230);
    in.mem_used_before = 230 * MIB;
    jobs[0].rss_growth = 0;
    cr_assert_eq(sched_usher(&in, &v), 0);
    cr_assert(strstr(v.reason, "not growing"), "%s", v.reason);
}

Test(policy, usher_needs_a_node_with_room)
{
    sched_job_t jobs[1];
    sched_node_t peers[] = { s_mem_node(2, 150), s_mem_node(3, 100) };
    sched_input_t in = s_input(s_mem_node(1, 230), peers, 2);
    sched_verdict_t v;

    s_jobs(jobs, 1, 1);
    jobs[0].rss_bytes = 200 * MIB; /* fits nowhere below 85 % */
    jobs[0].rss_growth = MIB;
    in.jobs = jobs;
    in.n_jobs = 1;
    cr_assert_eq(sched_usher(&in, &v), 0);
    cr_assert(strstr(v.reason, "no known node has room"), "%s", v.reason);
    peers[1] = s_mem_node(3, 5);
    cr_assert_eq(sched_usher(&in, &v), 1);
    cr_assert_eq(v.node, 3);
}

/* ---- sched-mem ------------------------------------------------------- */

Test(policy, mem_places_on_the_most_free_memory)
{
    sched_node_t peers[] = { s_mem_node(2, 100), s_mem_node(3, 20), s_mem_node(4, 20) };
    sched_input_t in = s_input(s_mem_node(1, 150), peers, 3);
    sched_verdict_t v;

    sched_policy_mem.place(&in, &v);
    cr_assert_eq(v.node, 3, "%s", v.reason);
    peers[1].pending_mem = (int64_t)P.job_mem_bytes; /* the job just placed */
    sched_policy_mem.place(&in, &v);
    cr_assert_eq(v.node, 4, "%s", v.reason);
}

Test(policy, mem_balances_by_free_memory_with_a_margin)
{
    sched_job_t jobs[2];
    sched_node_t peers[] = { s_mem_node(2, 20) };
    sched_input_t in = s_input(s_mem_node(1, 200), peers, 1);
    sched_verdict_t v;

    s_jobs(jobs, 2, 1);
    jobs[0].rss_bytes = 100 * MIB;
    jobs[1].rss_bytes = 80 * MIB;
    in.jobs = jobs;
    in.n_jobs = 2;
    /* 236 - 56 = 180 MiB more free there > 25.6 + 100. */
    cr_assert_eq(sched_policy_mem.balance(&in, &v), 1);
    cr_assert_eq(v.node, 2);
    cr_assert_str_eq(v.gpid, "1.1");
    /* Then 136 vs 156 free: no move back. */
    sched_node_t back_peer[] = { s_mem_node(1, 100) };
    sched_job_t moved[1] = { jobs[0] };
    sched_input_t back = s_input(s_mem_node(2, 120), back_peer, 1);
    back.jobs = moved;
    back.n_jobs = 1;
    cr_assert_eq(sched_policy_mem.balance(&back, &v), 0, "%s", v.reason);
}

Test(policy, policies_are_found_by_name)
{
    cr_assert_eq(sched_policy_find("rr"), &sched_policy_rr);
    cr_assert_eq(sched_policy_find("mosix"), &sched_policy_mosix);
    cr_assert_eq(sched_policy_find("mem"), &sched_policy_mem);
    cr_assert_null(sched_policy_find("balance"));
    cr_assert_null(sched_policy_find(NULL));
}
