/* test-probes.c - every probe's parsing, over fixture trees
 * (services/probed/fixtures): a node cgroup on cgroup v1 with cpuacct
 * mounted apart (this build machine; v1-left: a job left between the
 * samples), one on v2 with probed in a leaf
 * below the node's limits, and a host without a node cgroup. Each tree
 * has a t0 and a t1 taken one second later, so the rates are checked
 * too. Then the jobs probe over ghostd's job lists, migration-cost, and
 * the configuration's refusals.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

#define S_FIX PROBED_FIXTURES   /* the fixtures' directory, from meson */

typedef struct s_run {
    char root[2][PATH_MAX];     /* t0, t1 */
    nodecg_t cg;
    probe_env_t env;
    void *state;
    loadvec_t v;
} s_run_t;

static void s_setup(s_run_t *r, const char *tree)
{
    *r = (s_run_t){ 0 };
    snprintf(r->root[0], PATH_MAX, "%s/%s/t0", S_FIX, tree);
    snprintf(r->root[1], PATH_MAX, "%s/%s/t1", S_FIX, tree);
    nodecg_find(r->root[0], &r->cg);
    r->env = (probe_env_t){ .root = r->root[0], .cg = &r->cg, .now_ns = 5000000000ull,
                            .wall_ms = 1700000000000ull, .clk_tck = 100 };
}

/* Samples probe p at t (0 or 1; t1 one second after t0). */
static void s_sample(s_run_t *r, const probe_ops_t *p, int t)
{
    cairn_error_t err;

    if (!r->state)
        r->state = calloc(1, p->state_size ? p->state_size : 1);
    r->env.root = r->root[t];
    r->env.now_ns = 5000000000ull + (uint64_t)t * 1000000000ull;
    r->env.wall_ms = 1700000000000ull + (uint64_t)t * 1000;
    int rc = p->sample(r->state, &r->env, &r->v, &err);
    cr_assert_eq(rc, 0, "%s at t%d: %s", p->name, t, err.message);
}

static void s_teardown(s_run_t *r, const probe_ops_t *p)
{
    if (p->fini)
        p->fini(r->state);
    free(r->state);
    loadvec_clear(&r->v);
}

/* ---- finding the node's cgroup ------------------------------------------ */

Test(probes, v1_node_cgroup_is_found)
{
    s_run_t r;
    s_setup(&r, "v1");
    cr_assert_eq(r.cg.version, NODECG_V1);
    cr_assert_str_eq(r.cg.cpu, "/sys/fs/cgroup/cpu/cairn/x/2");
    cr_assert_str_eq(r.cg.cpuacct, "", "cpuacct is mounted apart, at its root");
    cr_assert_str_eq(r.cg.mem, "/sys/fs/cgroup/memory/cairn/x/2");
}

Test(probes, v2_limits_found_above_our_leaf)
{
    s_run_t r;
    s_setup(&r, "v2");
    cr_assert_eq(r.cg.version, NODECG_V2);
    cr_assert_str_eq(r.cg.cpu, "/sys/fs/cgroup/cairn/x/2");
    cr_assert_str_eq(r.cg.mem, "/sys/fs/cgroup/cairn/x/2");
}

Test(probes, host_without_node_cgroup)
{
    s_run_t r;
    s_setup(&r, "host");
    cr_assert_str_eq(r.cg.cpu, "");
    cr_assert_str_eq(r.cg.mem, "");
    nodecg_t none;
    nodecg_find("/nonexistent-root", &none);
    cr_assert_eq(none.version, NODECG_NONE);
}

/* ---- cpu ------------------------------------------------------------------ */

Test(probes, cpu_v1_sums_the_processes)
{
    s_run_t r;
    s_setup(&r, "v1");
    s_sample(&r, &probe_cpu, 0);
    cr_assert_float_eq(r.v.cpus, 0.5, 1e-9);
    cr_assert_float_eq(r.v.cpu_load, 0.0, 1e-9, "nothing to compare with yet");
    s_sample(&r, &probe_cpu, 1);
    /* 45 ticks of 10 ms in 1 s (pids 101 and 200 in a job's sub-cgroup) */
    cr_assert_float_eq(r.v.cpu_load, 0.45, 1e-9, "got %g", r.v.cpu_load);
    s_teardown(&r, &probe_cpu);
}

/* A job with 5 s of CPU left between the samples (migrated away): the
 * others' 45 ticks still count -- the sum of totals fell, and read 0. */
Test(probes, cpu_v1_a_job_that_left_takes_only_its_own_time)
{
    s_run_t r;
    s_setup(&r, "v1-left");
    s_sample(&r, &probe_cpu, 0);
    s_sample(&r, &probe_cpu, 1);
    cr_assert_float_eq(r.v.cpu_load, 0.45, 1e-9, "got %g", r.v.cpu_load);
    s_teardown(&r, &probe_cpu);
}

Test(probes, cpu_v2_reads_cpu_stat)
{
    s_run_t r;
    s_setup(&r, "v2");
    s_sample(&r, &probe_cpu, 0);
    cr_assert_float_eq(r.v.cpus, 0.5, 1e-9);
    s_sample(&r, &probe_cpu, 1);
    cr_assert_float_eq(r.v.cpu_load, 0.25, 1e-9, "got %g", r.v.cpu_load);
    s_teardown(&r, &probe_cpu);
}

Test(probes, cpu_host_reads_proc_stat)
{
    s_run_t r;
    s_setup(&r, "host");
    s_sample(&r, &probe_cpu, 0);
    cr_assert_float_eq(r.v.cpus, 2.0, 1e-9);
    s_sample(&r, &probe_cpu, 1);
    /* 100 busy jiffies of 200, on 2 CPUs */
    cr_assert_float_eq(r.v.cpu_load, 1.0, 1e-9, "got %g", r.v.cpu_load);
    s_teardown(&r, &probe_cpu);
}

Test(probes, cpu_counter_going_back_is_no_negative_load)
{
    s_run_t r;
    s_setup(&r, "v2");
    s_sample(&r, &probe_cpu, 1);
    r.env.now_ns += 2000000000ull;
    s_sample(&r, &probe_cpu, 0);   /* usage lower than before: a process left */
    cr_assert_float_eq(r.v.cpu_load, 0.0, 1e-9);
    s_teardown(&r, &probe_cpu);
}

/* ---- runqueue -------------------------------------------------------------- */

Test(probes, runqueue_counts_running_threads_of_the_node)
{
    s_run_t r;
    s_setup(&r, "v1");
    s_sample(&r, &probe_runqueue, 0);
    cr_assert_eq(r.v.runnable, 3, "101, its thread 102 and 200: got %u", r.v.runnable);
    r.env.self_tid = 101;   /* the sampler itself is not load */
    s_sample(&r, &probe_runqueue, 0);
    cr_assert_eq(r.v.runnable, 2);
    s_teardown(&r, &probe_runqueue);

    s_setup(&r, "v2");
    s_sample(&r, &probe_runqueue, 0);
    cr_assert_eq(r.v.runnable, 2, "300 and 400: got %u", r.v.runnable);
    s_teardown(&r, &probe_runqueue);
}

Test(probes, runqueue_host_reads_loadavg)
{
    s_run_t r;
    s_setup(&r, "host");
    s_sample(&r, &probe_runqueue, 0);
    cr_assert_eq(r.v.runnable, 3);
    r.env.self_tid = 1;
    s_sample(&r, &probe_runqueue, 0);
    cr_assert_eq(r.v.runnable, 2, "the reader itself is one of the running");
    s_teardown(&r, &probe_runqueue);
}

/* ---- memory ----------------------------------------------------------------- */

Test(probes, memory_v1_leaves_out_inactive_cache)
{
    s_run_t r;
    s_setup(&r, "v1");
    s_sample(&r, &probe_memory, 0);
    cr_assert_eq(r.v.mem_limit_bytes, 536870912);
    cr_assert_eq(r.v.mem_used_bytes, 200000000);
    cr_assert_eq(r.v.mem_free_bytes, 336870912);
    s_sample(&r, &probe_memory, 1);
    cr_assert_eq(r.v.mem_used_bytes, 220000000);
    s_teardown(&r, &probe_memory);
}

Test(probes, memory_v2)
{
    s_run_t r;
    s_setup(&r, "v2");
    s_sample(&r, &probe_memory, 0);
    cr_assert_eq(r.v.mem_limit_bytes, 268435456);
    cr_assert_eq(r.v.mem_used_bytes, 100000000);
    cr_assert_eq(r.v.mem_free_bytes, 168435456);
    s_teardown(&r, &probe_memory);
}

Test(probes, memory_host_meminfo)
{
    s_run_t r;
    s_setup(&r, "host");
    s_sample(&r, &probe_memory, 0);
    cr_assert_eq(r.v.mem_limit_bytes, 4096000000ull);
    cr_assert_eq(r.v.mem_used_bytes, 3072000000ull);
    cr_assert_eq(r.v.mem_free_bytes, 1024000000ull);
    s_teardown(&r, &probe_memory);
}

Test(probes, unreadable_files_are_an_error_not_a_zero)
{
    s_run_t r;
    cairn_error_t err;
    s_setup(&r, "host");
    r.env.root = "/nonexistent-root";
    loadvec_t before = { .cpus = 7, .mem_limit_bytes = 9 };
    r.v = before;
    void *st = calloc(1, probe_cpu.state_size);
    cr_assert_lt(probe_cpu.sample(st, &r.env, &r.v, &err), 0);
    cr_assert(strstr(err.message, "/proc"), "%s", err.message);
    cr_assert_lt(probe_memory.sample(NULL, &r.env, &r.v, &err), 0);
    cr_assert(strstr(err.message, "meminfo"), "%s", err.message);
    cr_assert_float_eq(r.v.cpus, 7, 1e-9, "fields stay as they were");
    cr_assert_eq(r.v.mem_limit_bytes, 9);
    free(st);
}

/* ---- jobs and migration-cost ------------------------------------------------ */

Test(probes, jobs_rates_from_ghostd_figures)
{
    s_run_t r;
    s_setup(&r, "v1");
    uint64_t t0 = 1700000000000ull;
    /* 2.1 launched 10 s before t0 at 50 %: 5000 ms of cpu; at t1 5900 ms */
    probe_psjob_t ps0[] = {
        { "2.1", 1000, "running", 50.0, 100 << 20, t0 - 10000, 0 },
        { "2.2", 0, "exited", 0, 0, t0 - 5000, 0 },
        { "3.4", 1000, "running", 80.0, 10 << 20, t0 - 2000, 1 },
    };
    probe_psjob_t ps1[] = {
        { "2.1", 1000, "running", 5900.0 / 11000.0 * 100.0, 110 << 20, t0 - 10000, 0 },
    };
    r.env.ps_ok = true;
    r.env.ps = ps0;
    r.env.n_ps = 3;
    s_sample(&r, &probe_jobs, 0);
    cr_assert_eq(r.v.jobs, 2, "the exited job is no load");
    cr_assert_str_eq(r.v.job[0].gpid, "2.1");
    cr_assert_float_eq(r.v.job[0].cpu, 0.5, 1e-9, "first sight: its average");
    cr_assert_eq(r.v.job[0].age_ms, 10000);
    cr_assert_eq(r.v.job[1].age_ms, 0, "moved here: its age counts from now");
    r.env.ps = ps1;
    r.env.n_ps = 1;
    s_sample(&r, &probe_jobs, 1);
    cr_assert_eq(r.v.jobs, 1);
    cr_assert_float_eq(r.v.job[0].cpu, 0.9, 1e-6, "900 ms in 1 s: got %g", r.v.job[0].cpu);
    cr_assert_eq(r.v.job[0].rss_growth_bytes_s, 10 << 20);
    cr_assert_eq(r.v.job[0].age_ms, 11000);

    probe_migration_cost.sample(NULL, &r.env, &r.v, NULL);
    /* 150 ms + 110 MiB at 200 MiB/s */
    cr_assert_eq(r.v.job[0].migration_cost_ms, 150 + 550);

    cairn_error_t err;
    r.env.ps_ok = false;
    r.env.ps_error = "timeout";
    cr_assert_lt(probe_jobs.sample(r.state, &r.env, &r.v, &err), 0);
    cr_assert(strstr(err.message, "timeout"), "%s", err.message);
    cr_assert_eq(r.v.jobs, 1, "the last list stays");
    s_teardown(&r, &probe_jobs);
}

/* ---- configuration ----------------------------------------------------------- */

static int s_config(const char *probes, const char *attrs, probe_config_t *cfg,
                    cairn_error_t *err)
{
    char xml[2048];
    cairn_description_t *d = NULL;
    snprintf(xml, sizeof(xml),
             "<cluster name=\"t\"><services><service name=\"probed\" port=\"7140\"/>"
             "</services><appliances><appliance name=\"compute\"><use service=\"probed\"/>"
             "</appliance></appliances><nodes><node id=\"1\" name=\"n1\" address=\"10.0.0.1\" "
             "appliance=\"compute\"/></nodes><scheduler policy=\"rr\" %s>%s</scheduler>"
             "</cluster>", attrs, probes);
    int r = cairn_description_load_memory(xml, strlen(xml), "t.xml", &d, err);
    cr_assert_eq(r, 0, "%s", err->message);
    r = probe_config_from(d, cfg, err);
    cairn_description_free(d);
    return r;
}

Test(probes, config_reads_probes_and_gossip)
{
    probe_config_t cfg;
    cairn_error_t err;
    cr_assert_eq(s_config("<probe name=\"memory\" period-ms=\"700\"/>"
                          "<probe name=\"cpu\" period-ms=\"300\"/>", "", &cfg, &err), 0);
    cr_assert_eq(cfg.n_probes, 2);
    cr_assert_eq(cfg.probes[0].index, probe_index("memory"));
    cr_assert_eq(cfg.gossip_period_ms, 300, "the shortest probe period");
    cr_assert_eq(cfg.gossip_fanout, 2);
    cr_assert_eq(cfg.window, 8);
    cr_assert_eq(probe_config_missing(&cfg),
                 1u << probe_index("runqueue") | 1u << probe_index("jobs") |
                 1u << probe_index("migration-cost"));
    cr_assert_eq(s_config("<probe name=\"cpu\" period-ms=\"300\"/>",
                          "gossip-period-ms=\"2000\" gossip-fanout=\"3\" window=\"5\"",
                          &cfg, &err), 0);
    cr_assert_eq(cfg.gossip_period_ms, 2000);
    cr_assert_eq(cfg.gossip_fanout, 3);
    cr_assert_eq(cfg.window, 5);
}

Test(probes, config_refusals_say_why)
{
    probe_config_t cfg = { .n_probes = 77 };
    cairn_error_t err;
    cr_assert_eq(s_config("<probe name=\"cpu\" period-ms=\"300\"/>"
                          "<probe name=\"load\" period-ms=\"300\"/>", "", &cfg, &err), -EINVAL);
    cr_assert(strstr(err.message, "unknown probe 'load'"), "%s", err.message);
    cr_assert(strstr(err.message, "cpu, runqueue, memory, jobs, migration-cost"), "%s",
              err.message);
    cr_assert_eq(cfg.n_probes, 77, "untouched");
    cr_assert_eq(s_config("<probe name=\"migration-cost\" period-ms=\"300\"/>", "", &cfg,
                          &err), -EINVAL);
    cr_assert(strstr(err.message, "needs probe 'jobs'"), "%s", err.message);
    cr_assert_eq(s_config("<probe name=\"cpu\" period-ms=\"5\"/>", "", &cfg, &err), -EINVAL);
    cr_assert(strstr(err.message, "below 50"), "%s", err.message);
}
