/* test-harness.c - the local cluster harness (lib/harness), linked
 * directly: its pure pieces, without root or namespaces.
 *
 * The plan (names, addresses, cgroup paths, run dirs) for both modes and
 * both cgroup versions, the subnet choice, a hotplugged node's address,
 * the exact ip batches, the state file's round trip, the description it
 * writes for N nodes (loaded back by libcairn's loader), the option
 * parsers, and down/status of a cluster that does not exist; for a
 * node's life (issue 15): the shape a running cluster is compared with,
 * the split of a node's daemons into running and gone, the hotplug check
 * of an idle or half-running id, stopping processes together, and the
 * run base mark. Building a real cluster is
 * tests/integration/test-cluster-harness.sh, a node's life
 * tests/integration/test-node-life.sh. Security (issue 17): the plan's
 * mode, the keys written 0600 where the description looks for them and
 * their <key>s, mode none without any, the shape check of --security, and
 * the reload of cluster.xml awaited from each daemon's log (children that
 * answer SIGHUP as daemons do, refuse, or ignore it); the CURVE cluster
 * itself is tests/integration/test-cluster-curve.sh.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cairn/description.h"
#include "cairn/security.h"
#include "harness/harness-private.h"
#include "harness/harness.h"

/* ---- helpers ----------------------------------------------------------- */

static json_t *s_services(void)
{
    return json_pack("[{s:s, s:s}, {s:s, s:s}]", "name", "clusterd", "binary",
                     "/sbin/clusterd", "name", "ghostd", "binary",
                     "/sbin/ghostd");
}

/* The plan of n nodes of cluster x under /run/t on site, in security mode
 * `security` (NULL: the default). */
static json_t *s_plan_mode(unsigned n, const hx_site_t *site,
                           const char *security)
{
    harness_opts_t o;
    harness_opts_init(&o);
    o.nodes = n;
    o.security = security;
    json_t *services = s_services();
    json_t *st = hx_plan_state(&o, "x", "/run/t", site, services);
    json_decref(services);
    cr_assert_not_null(st);
    return st;
}

static json_t *s_plan(unsigned n, const hx_site_t *site)
{
    return s_plan_mode(n, site, NULL);
}

/* Gives every node of st a public key (no file written). */
static void s_give_keys(json_t *st)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        cairn_keypair_t kp;
        cr_assert_eq(cairn_keypair_generate(&kp, NULL), 0);
        json_object_set_new(node, "key",
                            json_pack("{s:s}", "public", kp.public_key));
    }
}

static const hx_site_t s_netns_v1 = {
    .netns = true, .root = true, .cg = HX_CG_V1, .subnet = 5
};
static const hx_site_t s_loopback = {
    .netns = false, .root = false, .cg = HX_CG_NONE, .subnet = -1
};

static void s_tmpdir(char *dir)
{
    strcpy(dir, "/tmp/cairn-harness-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

/* ---- the plan ---------------------------------------------------------- */

Test(plan, netns_names_addresses_and_cgroups)
{
    json_t *st = s_plan(3, &s_netns_v1);
    cr_assert_str_eq(hx_jstr(st, "mode"), "netns");
    cr_assert_str_eq(hx_jstr(st, "cgroup"), "v1");
    cr_assert_str_eq(hx_jstr(st, "bridge"), "cb-x");
    cr_assert_str_eq(hx_jstr(st, "subnet"), "10.77.5.0/24");
    cr_assert_str_eq(hx_jstr(st, "config"), "/run/t/x/cluster.xml");
    cr_assert_str_eq(hx_jstr(st, "run_dir"), "/run/t/x");
    cr_assert_str_eq(hx_jstr(st, "phase"), "creating");
    cr_assert_null(json_object_get(st, "warning"));
    /* secure by default: curve, the keys beside cluster.xml */
    cr_assert(hx_curve(st));
    json_t *sec = json_object_get(st, "security");
    cr_assert_str_eq(hx_jstr(sec, "mode"), "curve");
    cr_assert_str_eq(hx_jstr(sec, "keys_dir"), "/run/t/x/keys");
    cr_assert(json_is_null(json_object_get(hx_state_node(st, 1, NULL), "key")));
    cr_assert_eq(hx_subnet_c(st), 5);
    cr_assert_eq(json_array_size(json_object_get(st, "nodes")), 3);
    json_t *n3 = hx_state_node(st, 3, NULL);
    cr_assert_str_eq(hx_jstr(n3, "name"), "n3");
    cr_assert_str_eq(hx_jstr(n3, "address"), "10.77.5.3");
    cr_assert_str_eq(hx_jstr(n3, "netns"), "cairn-x-3");
    cr_assert_str_eq(hx_jstr(n3, "veth"), "cv-x-3");
    cr_assert_str_eq(hx_jstr(n3, "rundir"), "/run/t/x/3");
    cr_assert_str_eq(hx_jstr(n3, "cgroup"), "/sys/fs/cgroup/cpu/cairn/x/3");
    json_t *paths = json_object_get(n3, "cgroup_paths");
    cr_assert_eq(json_array_size(paths), 2);
    cr_assert_str_eq(json_string_value(json_array_get(paths, 1)),
                     "/sys/fs/cgroup/memory/cairn/x/3");
    cr_assert_float_eq(json_real_value(json_object_get(n3, "cpus")), 0.5, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(n3, "mem_bytes")),
                 512 << 20);
    json_t *svc = json_array_get(json_object_get(n3, "services"), 1);
    cr_assert_str_eq(hx_jstr(svc, "name"), "ghostd");
    cr_assert_eq(json_integer_value(json_object_get(svc, "pid")), 0);
    cr_assert(json_is_false(json_object_get(svc, "running")));
    json_decref(st);
}

Test(plan, cgroup_v2_is_one_directory)
{
    hx_site_t v2 = s_netns_v1;
    v2.cg = HX_CG_V2;
    json_t *st = s_plan(1, &v2);
    json_t *n1 = hx_state_node(st, 1, NULL);
    cr_assert_str_eq(hx_jstr(st, "cgroup"), "v2");
    cr_assert_str_eq(hx_jstr(n1, "cgroup"), "/sys/fs/cgroup/cairn/x/1");
    cr_assert_eq(json_array_size(json_object_get(n1, "cgroup_paths")), 1);
    cr_assert_eq(hx_cg_of(st), HX_CG_V2);
    json_decref(st);
}

Test(plan, loopback_has_no_network_and_says_why)
{
    json_t *st = s_plan(2, &s_loopback);
    json_t *n2 = hx_state_node(st, 2, NULL);
    cr_assert_str_eq(hx_jstr(st, "mode"), "loopback");
    cr_assert(json_is_null(json_object_get(st, "cgroup")));
    cr_assert(json_is_null(json_object_get(st, "bridge")));
    cr_assert(json_is_null(json_object_get(st, "subnet")));
    cr_assert_eq(hx_subnet_c(st), -1);
    cr_assert_eq(hx_cg_of(st), HX_CG_NONE);
    cr_assert_str_eq(hx_jstr(n2, "address"), "127.0.0.2");
    cr_assert(json_is_null(json_object_get(n2, "netns")));
    cr_assert(json_is_null(json_object_get(n2, "cpus")));
    cr_assert_eq(json_array_size(json_object_get(n2, "cgroup_paths")), 0);
    cr_assert(strstr(hx_jstr(st, "warning"), "not root: loopback mode"));
    json_decref(st);
    hx_site_t forced = s_loopback;
    forced.root = true;
    st = s_plan(1, &forced);
    cr_assert(strstr(hx_jstr(st, "warning"), "(--loopback)"));
    json_decref(st);
}

Test(plan, the_first_free_subnet)
{
    bool used[256] = { false };
    cairn_error_t err;
    int c = -1;
    used[0] = used[1] = used[3] = true;
    cr_assert_eq(hx_subnet_pick(used, &c, &err), 0);
    cr_assert_eq(c, 2);
    memset(used, 1, sizeof(used));
    cr_assert_eq(hx_subnet_pick(used, &c, &err), -EADDRINUSE);
    cr_assert_eq(err.code, CAIRN_UNAVAILABLE);
    cr_assert_eq(c, 2);
}

Test(plan, run_dirs_must_fit_a_socket_path)
{
    cairn_error_t err;
    char longdir[128];
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    cr_assert_eq(hx_check_rundir("/run/cairn/x/1", "", &err), 0);
    cr_assert_eq(hx_check_rundir(longdir, "; use a shorter run base", &err),
                 -ENAMETOOLONG);
    cr_assert(strstr(err.message, "use a shorter run base"), "%s", err.message);
}

/* A hotplugged node's address: `given` (NULL for the default) gives
 * `want`, or fails with code usage and `what` in the message. */
static void s_address(const json_t *st, unsigned id, const char *given,
                      const char *want, const char *what)
{
    char out[64] = "";
    cairn_error_t err;
    int r = hx_node_address(st, id, given, out, sizeof(out), &err);
    if (want) {
        cr_assert_eq(r, 0, "%s", err.message);
        cr_assert_str_eq(out, want);
        return;
    }
    cr_assert_eq(r, -EINVAL, "expected a refusal of %s",
                 given ? given : "(default)");
    cr_assert_eq(err.code, CAIRN_USAGE);
    cr_assert(strstr(err.message, what), "'%s' not in '%s'", what, err.message);
}

Test(plan, hotplug_addresses)
{
    json_t *st = s_plan(3, &s_netns_v1), *lo = s_plan(3, &s_loopback);
    s_address(st, 9, NULL, "10.77.5.9", NULL);
    s_address(st, 9, "10.77.5.42", "10.77.5.42", NULL);
    s_address(st, 254, NULL, NULL, "exists only for ids 1..253");
    s_address(st, 9, "10.77.5.254", NULL, "bridge");
    s_address(st, 9, "10.77.5.0", NULL, "network");
    s_address(st, 9, "10.77.5.255", NULL, "broadcast");
    s_address(st, 9, "10.77.6.9", NULL,
              "outside local cluster x's subnet 10.77.5.0/24");
    s_address(st, 9, "fd00::9", NULL, "not an IPv4 address");
    s_address(lo, 9, NULL, "127.0.0.9", NULL);
    s_address(lo, 254, NULL, "127.0.0.254", NULL);
    s_address(lo, 9, "10.0.0.9", NULL, "not a loopback address");
    json_decref(st);
    json_decref(lo);
}

/* ---- ip batches -------------------------------------------------------- */

Test(ipbatch, the_host_side_of_a_cluster)
{
    json_t *st = s_plan(2, &s_netns_v1);
    hx_buf_t b = { 0 };
    cr_assert_eq(hx_batch_cluster(st, &b), 0);
    cr_assert_str_eq(
        b.s, "link add cb-x type bridge\n"
             "addr add 10.77.5.254/24 dev cb-x\n"
             "link set cb-x up\n"
             "netns add cairn-x-1\n"
             "link add cv-x-1 type veth peer name eth0 netns cairn-x-1\n"
             "link set cv-x-1 master cb-x up\n"
             "netns add cairn-x-2\n"
             "link add cv-x-2 type veth peer name eth0 netns cairn-x-2\n"
             "link set cv-x-2 master cb-x up\n");
    cr_assert_eq(b.len, strlen(b.s));
    free(b.s);
    json_decref(st);
}

Test(ipbatch, inside_a_namespace_and_removal)
{
    hx_buf_t b = { 0 };
    cr_assert_eq(hx_batch_node_inside(&b, "10.77.5.3"), 0);
    cr_assert_str_eq(b.s, "link set lo up\naddr add 10.77.5.3/24 dev eth0\n"
                          "link set eth0 up\n");
    free(b.s);
    b = (hx_buf_t){ 0 };
    cr_assert_eq(hx_batch_del_link(&b, "cv-x-1"), 0);
    cr_assert_eq(hx_batch_del_link(&b, "cb-x"), 0);
    cr_assert_eq(hx_batch_del_netns(&b, "cairn-x-1"), 0);
    cr_assert_str_eq(b.s,
                     "link del cv-x-1\nlink del cb-x\nnetns del cairn-x-1\n");
    free(b.s);
}

Test(ipbatch, a_long_batch_grows)
{
    hx_buf_t b = { 0 };
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(hx_batch_del_netns(&b, "cairn-x-100"), 0);
    cr_assert_eq(b.len, 1000 * strlen("netns del cairn-x-100\n"));
    cr_assert_geq(b.cap, b.len + 1);
    free(b.s);
}

/* ---- the state file ---------------------------------------------------- */

Test(state, round_trip)
{
    char dir[64], tmp[128];
    cairn_error_t err;
    s_tmpdir(dir);
    json_t *st = s_plan(4, &s_netns_v1);
    json_object_set_new(st, "run_dir", json_string(dir));
    cr_assert_eq(hx_state_save(st, dir, &err), 0, "%s", err.message);
    snprintf(tmp, sizeof(tmp), "%s/.state.json.tmp", dir);
    cr_assert_neq(access(tmp, F_OK), 0, "the temp file stays behind");
    json_t *back = hx_state_load(dir);
    cr_assert_not_null(back);
    cr_assert(json_equal(st, back));
    /* dropping a node saves the smaller state */
    cr_assert_eq(hx_state_drop(back, 2, &err), 0, "%s", err.message);
    json_t *again = hx_state_load(dir);
    cr_assert_eq(json_array_size(json_object_get(again, "nodes")), 3);
    cr_assert_null(hx_state_node(again, 2, NULL));
    json_decref(again);
    json_decref(back);
    json_decref(st);
    /* a state file that is not an object is no state */
    char path[128];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    FILE *f = fopen(path, "w");
    fputs("[1, 2]", f);
    fclose(f);
    cr_assert_null(hx_state_load(dir));
    cr_assert_eq(hx_rm_rf(dir), 0);
    cr_assert_neq(access(dir, F_OK), 0);
    cr_assert_null(hx_state_load(dir));
}

Test(state, running_means_same_pid_and_start_time)
{
    json_t *st = s_plan(2, &s_loopback);
    json_t *svc = json_array_get(
        json_object_get(hx_state_node(st, 1, NULL), "services"), 0);
    char state;
    unsigned long long start;
    size_t total = 0;
    cr_assert_eq(hx_proc_stat(getpid(), &state, &start), 0);
    json_object_set_new(svc, "pid", json_integer(getpid()));
    json_object_set_new(svc, "start_time", json_integer((json_int_t)start));
    cr_assert_eq(hx_state_refresh(st, &total), 1);
    cr_assert_eq(total, 4);
    cr_assert(json_is_true(json_object_get(svc, "running")));
    cr_assert_eq(hx_node_running(hx_state_node(st, 1, NULL)), getpid());
    cr_assert_eq(hx_node_running(hx_state_node(st, 2, NULL)), 0);
    /* another start time: a reused pid, not the daemon */
    json_object_set_new(svc, "start_time", json_integer((json_int_t)start + 1));
    cr_assert_eq(hx_state_refresh(st, NULL), 0);
    json_decref(st);
}

/* ---- the description --------------------------------------------------- */

Test(describe, n_nodes_through_the_builder)
{
    json_t *st = s_plan(5, &s_netns_v1);
    s_give_keys(st);
    cairn_description_builder_t *b = NULL;
    cairn_description_t *d = NULL;
    cairn_error_t err;
    char *xml = NULL;
    cr_assert_eq(hx_desc_build(st, "/run/t", &b, &err), 0, "%s", err.message);
    cr_assert_eq(cairn_description_builder_to_string(b, &xml, &err), 0, "%s",
                 err.message);
    cr_assert_not_null(
        strstr(xml, "<!-- generated by `cairn cluster up`; removed by "
                    "`cairn cluster down` -->\n<cluster name=\"x\" "
                    "run-base=\"/run/t\">"),
        "%s", xml);
    cr_assert_eq(
        cairn_description_load_memory(xml, strlen(xml), "x.xml", &d, &err), 0,
        "%s", err.message);
    cr_assert_eq(cairn_description_n_services(d), 7);
    const char *const *names;
    size_t n;
    cr_assert_eq(cairn_description_appliance_services(d, "compute", &names, &n),
                 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(names[0], "clusterd");
    cr_assert_str_eq(names[1], "ghostd");
    cr_assert_eq(
        cairn_description_appliance_services(d, "frontend", &names, &n),
        -ENOENT);
    cr_assert_eq(cairn_description_n_nodes(d), 5);
    for (size_t i = 0; i < 5; i++) {
        const cairn_node_desc_t *node = cairn_description_node(d, i);
        char addr[32];
        snprintf(addr, sizeof(addr), "10.77.5.%zu", i + 1);
        cr_assert_eq(node->id, i + 1);
        cr_assert_str_eq(node->address, addr);
        cr_assert_eq(node->seed, i == 0);
    }
    cr_assert_eq(cairn_description_membership(d)->protocol_period_ms, 600);
    cr_assert_str_eq(cairn_description_policy(d), CAIRN_SCHED_DEFAULT_POLICY);
    /* every node's key, inline, its secret where keys.c writes it */
    cr_assert(cairn_description_curve(d));
    cr_assert_eq(cairn_description_n_keys(d), 5);
    for (unsigned id = 1; id <= 5; id++) {
        const cairn_key_desc_t *k = cairn_description_find_key(d, id);
        char secret[64];
        snprintf(secret, sizeof(secret), "/keys/node-%u.key", id);
        cr_assert_not_null(k);
        cr_assert_str_eq(k->public_key,
                         hx_jstr(json_object_get(hx_state_node(st, id, NULL),
                                                 "key"),
                                 "public"));
        cr_assert(strstr(k->secret_path, secret), "%s", k->secret_path);
    }
    cairn_description_free(d);
    free(xml);
    cairn_description_builder_free(b);
    json_decref(st);
}

Test(describe, mode_none_has_no_keys_and_curve_needs_them)
{
    json_t *st = s_plan_mode(2, &s_netns_v1, "none");
    cairn_description_builder_t *b = NULL;
    cairn_error_t err;
    char *xml = NULL;
    cr_assert_not(hx_curve(st));
    cr_assert(json_is_null(
        json_object_get(json_object_get(st, "security"), "keys_dir")));
    cr_assert_eq(hx_desc_build(st, "/run/t", &b, &err), 0, "%s", err.message);
    cr_assert_eq(cairn_description_builder_to_string(b, &xml, &err), 0);
    cr_assert_null(strstr(xml, "<security"), "%s", xml);
    free(xml);
    cairn_description_builder_free(b);
    json_decref(st);
    /* a curve plan whose keys were not made is refused, not written */
    st = s_plan(2, &s_netns_v1);
    b = NULL;
    cr_assert_eq(hx_desc_build(st, "/run/t", &b, &err), -ENOKEY);
    cr_assert(strstr(err.message, "node 1 of local cluster x has no key"), "%s",
              err.message);
    cr_assert_null(b);
    json_decref(st);
}

Test(describe, written_and_ports_copied_into_the_state)
{
    char dir[64], cfg[128], keys[128];
    cairn_error_t err;
    s_tmpdir(dir);
    snprintf(cfg, sizeof(cfg), "%s/cluster.xml", dir);
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    json_t *st = s_plan(2, &s_loopback);
    json_object_set_new(st, "config", json_string(cfg));
    json_object_set_new(json_object_get(st, "security"), "keys_dir",
                        json_string(keys));
    cr_assert_eq(hx_keys_make_all(st, &err), 0, "%s", err.message);
    cr_assert_eq(hx_desc_write(st, dir, &err), 0, "%s", err.message);
    /* the key files are where the loaded description looks, 0600, and
     * hold the keys it lists */
    cairn_description_t *d = NULL;
    cr_assert_eq(cairn_description_load(cfg, &d, &err), 0, "%s", err.message);
    for (unsigned id = 1; id <= 2; id++) {
        const cairn_key_desc_t *k = cairn_description_find_key(d, id);
        const json_t *key = json_object_get(hx_state_node(st, id, NULL), "key");
        cairn_keypair_t kp;
        struct stat sb;
        cr_assert_not_null(k);
        cr_assert_str_eq(k->secret_path, hx_jstr(key, "secret_path"));
        cr_assert_eq(stat(k->secret_path, &sb), 0);
        cr_assert_eq(sb.st_mode & 0777, 0600);
        cr_assert_eq(cairn_keypair_read(k->secret_path, &kp, &err), 0, "%s",
                     err.message);
        cr_assert_str_eq(kp.public_key, k->public_key);
        cr_assert_eq(strlen(hx_jstr(key, "fingerprint")),
                     CAIRN_KEY_FINGERPRINT_LEN);
    }
    cairn_description_free(d);
    /* a node added again gets a new key; a removed one's file goes */
    json_t *n2 = hx_state_node(st, 2, NULL);
    char old_pub[CAIRN_KEY_LEN + 1];
    snprintf(old_pub, sizeof(old_pub), "%s",
             hx_jstr(json_object_get(n2, "key"), "public"));
    cr_assert_eq(hx_key_make(st, n2, &err), 0, "%s", err.message);
    cr_assert_str_neq(hx_jstr(json_object_get(n2, "key"), "public"), old_pub);
    cr_assert(hx_key_remove(n2));
    cr_assert_not(hx_key_remove(n2));
    cr_assert_neq(access(hx_jstr(json_object_get(n2, "key"), "secret_path"),
                         F_OK), 0);
    json_t *svcs = json_object_get(hx_state_node(st, 2, NULL), "services");
    cr_assert_eq(
        json_integer_value(json_object_get(json_array_get(svcs, 0), "port")),
        7100);
    cr_assert_eq(
        json_integer_value(json_object_get(json_array_get(svcs, 1), "port")),
        7110);
    cr_assert_eq(hx_rm_rf(dir), 0);
    json_decref(st);
}

/* ---- small pieces ------------------------------------------------------ */

Test(pieces, option_values)
{
    uint64_t size = 0;
    double cpus = 0;
    cairn_error_t err;
    cr_assert_eq(harness_parse_size("--mem", "512M", &size, &err), 0);
    cr_assert_eq(size, 512ull << 20);
    cr_assert_eq(harness_parse_size("--mem", "64k", &size, &err), 0);
    cr_assert_eq(size, 64ull << 10);
    cr_assert_eq(harness_parse_size("--mem", "65536", &size, &err), 0);
    cr_assert_eq(size, 65536);
    const char *bad_sizes[] = {
        "", "-1", "1T", "1MB", "M", "99999999999999999G"
    };
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        cr_assert_eq(harness_parse_size("--mem", bad_sizes[i], &size, &err),
                     -EINVAL, "%s", bad_sizes[i]);
        cr_assert_eq(err.code, CAIRN_USAGE);
    }
    cr_assert_eq(harness_parse_cpus("--cpus", "0.5", &cpus, &err), 0);
    cr_assert_float_eq(cpus, 0.5, 1e-9);
    cr_assert_eq(harness_parse_cpus("--cpus", "0.001", &cpus, &err), -EINVAL);
    cr_assert_eq(harness_parse_cpus("--cpus", "2x", &cpus, &err), -EINVAL);
    cr_assert(strstr(err.message, "--cpus: '2x'"), "%s", err.message);
}

Test(pieces, options_checked_before_anything)
{
    harness_opts_t o;
    json_t *res = (json_t *)0x1;
    cairn_error_t err;
    harness_opts_init(&o);
    o.nodes = 0;
    cr_assert_eq(harness_up(&o, &res, &err), -EINVAL);
    cr_assert_str_eq(err.message, "--nodes must be 1..253, got 0");
    o.nodes = 1;
    o.mem_bytes = 1 << 20;
    cr_assert_eq(harness_up(&o, &res, &err), -EINVAL);
    cr_assert(strstr(err.message, "--mem must be at least 16M"));
    o.mem_bytes = HARNESS_DEFAULT_MEM;
    o.name = "Bad_Name";
    cr_assert_eq(harness_up(&o, &res, &err), -EINVAL);
    cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "[a-z0-9]{1,8}"));
    cr_assert_eq(res, (json_t *)0x1);
}

Test(pieces, names_and_command_lines)
{
    cr_assert(hx_valid_name("abc123"));
    cr_assert_not(hx_valid_name("toolong12"));
    cr_assert_not(hx_valid_name("a-b"));
    cr_assert(hx_match_k("cairn-x-12", "cairn-x-"));
    cr_assert_not(hx_match_k("cairn-x-", "cairn-x-"));
    cr_assert_not(hx_match_k("cairn-x-1a", "cairn-x-"));
    json_t *names =
        json_pack("[s, s, s]", "cairn-x-10", "cairn-x-2", "cairn-x-1");
    hx_sort_names(names);
    cr_assert_str_eq(json_string_value(json_array_get(names, 0)), "cairn-x-1");
    cr_assert_str_eq(json_string_value(json_array_get(names, 2)), "cairn-x-10");
    json_decref(names);
    const char a1[] = "clusterd\0--config\0/run/c/x/cluster.xml\0--node\0001";
    const char a2[] = "clusterd\0--config=/run/c/x/cluster.xml";
    const char a3[] = "clusterd\0--config\0/run/c/y/cluster.xml";
    cr_assert(hx_cmdline_has_config(a1, sizeof(a1), "/run/c/x/cluster.xml"));
    cr_assert(hx_cmdline_has_config(a2, sizeof(a2), "/run/c/x/cluster.xml"));
    cr_assert_not(
        hx_cmdline_has_config(a3, sizeof(a3), "/run/c/x/cluster.xml"));
}

/* ---- a cluster that is not there --------------------------------------- */

Test(missing, status_is_not_found_and_down_removes_nothing)
{
    char dir[64];
    json_t *res = NULL;
    cairn_error_t err;
    s_tmpdir(dir);
    cr_assert_eq(harness_status("hxut", dir, &res, &err), -ENOENT);
    cr_assert_eq(err.code, CAIRN_NOT_FOUND);
    cr_assert_not(harness_exists("hxut", dir));
    char out[32];
    cr_assert_eq(
        harness_node_prepare("hxut", dir, 4, NULL, out, sizeof(out), &err), 0);
    cr_assert_eq(harness_node_remove("hxut", dir, 4, 0, &res, &err), -ENOENT);
    cr_assert_eq(harness_down("hxut", dir, &res, &err), 0, "%s", err.message);
    cr_assert(json_is_false(json_object_get(res, "removed")));
    cr_assert_eq(json_array_size(json_object_get(res, "netns")), 0);
    cr_assert(json_is_false(json_object_get(res, "run_dir_removed")));
    json_decref(res);
    char lock[96];
    snprintf(lock, sizeof(lock), "%s/.lock", dir);
    unlink(lock); /* the lock of a run base stays, as documented */
    cr_assert_eq(rmdir(dir), 0);
}

/* ---- a node's life ----------------------------------------------------- */

/* Marks service entry svc of st's node id as this process (running). */
static void s_running_as_me(json_t *st, unsigned id, size_t svc_index)
{
    json_t *svc = json_array_get(
        json_object_get(hx_state_node(st, id, NULL), "services"), svc_index);
    char state;
    unsigned long long start;
    cr_assert_eq(hx_proc_stat(getpid(), &state, &start), 0);
    json_object_set_new(svc, "pid", json_integer(getpid()));
    json_object_set_new(svc, "start_time", json_integer((json_int_t)start));
}

Test(life, a_running_cluster_of_another_shape_is_refused)
{
    json_t *st = s_plan(3, &s_netns_v1);
    harness_opts_t o;
    cairn_error_t err;
    harness_opts_init(&o);
    o.nodes = 8; /* not given: not compared */
    o.cpus = 2;
    cr_assert_eq(hx_check_shape(st, &o, &err), 0);
    o.nodes_given = true;
    cr_assert_eq(hx_check_shape(st, &o, &err), -EEXIST);
    cr_assert_eq(err.code, CAIRN_ALREADY_EXISTS);
    cr_assert(strstr(err.message, "with 3 node(s), --nodes 8 asked"), "%s",
              err.message);
    o.nodes = 3;
    cr_assert_eq(hx_check_shape(st, &o, &err), 0);
    o.cpus_given = true;
    cr_assert_eq(hx_check_shape(st, &o, &err), -EEXIST);
    cr_assert(strstr(err.message, "--cpus 0.5 per node, --cpus 2 asked"), "%s",
              err.message);
    o.cpus = 0.5;
    o.mem_given = true;
    o.mem_bytes = 64ull << 20;
    cr_assert_eq(hx_check_shape(st, &o, &err), -EEXIST);
    cr_assert(strstr(err.message, "--mem"), "%s", err.message);
    o.mem_bytes = HARNESS_DEFAULT_MEM;
    cr_assert_eq(hx_check_shape(st, &o, &err), 0);
    o.loopback = true;
    cr_assert_eq(hx_check_shape(st, &o, &err), -EEXIST);
    cr_assert(strstr(err.message, "in netns mode, --loopback asked"), "%s",
              err.message);
    o.loopback = false;
    o.security = "none"; /* not given: not compared */
    cr_assert_eq(hx_check_shape(st, &o, &err), 0);
    o.security_given = true;
    cr_assert_eq(hx_check_shape(st, &o, &err), -EEXIST);
    cr_assert(strstr(err.message, "in security mode curve, --security none "
                                  "asked"), "%s", err.message);
    o.security = "curve";
    cr_assert_eq(hx_check_shape(st, &o, &err), 0);
    /* a state from before security ran none */
    json_object_del(st, "security");
    cr_assert_eq(hx_check_shape(st, &o, &err), -EEXIST);
    cr_assert(strstr(err.message, "in security mode none"), "%s", err.message);
    json_decref(st);
}

Test(life, a_nodes_daemons_split_into_running_and_gone)
{
    json_t *st = s_plan(2, &s_loopback);
    json_t *running = json_array(), *gone = json_array();
    s_running_as_me(st, 1, 1); /* ghostd runs, clusterd is gone */
    hx_node_split(hx_state_node(st, 1, NULL), running, gone);
    json_t *r = hx_svc_names(running), *g = hx_svc_names(gone);
    json_t *want_r = json_pack("[s]", "ghostd"),
           *want_g = json_pack("[s]", "clusterd");
    cr_assert(json_equal(r, want_r));
    cr_assert(json_equal(g, want_g));
    json_decref(r);
    json_decref(g);
    json_decref(want_r);
    json_decref(want_g);
    json_decref(running);
    json_decref(gone);
    json_decref(st);
}

Test(life, an_idle_id_is_reported_and_a_half_running_one_refused)
{
    json_t *st = s_plan(3, &s_netns_v1);
    char out[32];
    cairn_error_t err;
    json_object_set_new(st, "phase", json_string("running"));
    /* no daemon of node 2 runs: left or crashed, clusterd tells which */
    cr_assert_eq(hx_hotplug_check(st, 2, NULL, out, sizeof(out), &err), 1);
    cr_assert_eq(hx_hotplug_check(st, 9, NULL, out, sizeof(out), &err), 0);
    s_running_as_me(st, 2, 0); /* its clusterd runs, its ghostd does not */
    cr_assert_eq(hx_hotplug_check(st, 2, NULL, out, sizeof(out), &err),
                 -EEXIST);
    cr_assert_eq(err.code, CAIRN_ALREADY_EXISTS);
    cr_assert(strstr(err.message, "already runs (clusterd, pid"), "%s",
              err.message);
    cr_assert(strstr(err.message, "not running: ghostd (`cairn node restart "
                                  "2` starts it again)"),
              "%s", err.message);
    s_running_as_me(st, 2, 1); /* all run: no hint */
    cr_assert_eq(hx_hotplug_check(st, 2, NULL, out, sizeof(out), &err),
                 -EEXIST);
    cr_assert_null(strstr(err.message, "node restart"), "%s", err.message);
    json_decref(st);
}

/* A child that exits on SIGTERM, or (stubborn) ignores it. */
static pid_t s_child(bool stubborn)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (stubborn)
            signal(SIGTERM, SIG_IGN);
        for (;;)
            pause();
    }
    return pid;
}

Test(life, processes_stop_together_and_only_the_stubborn_are_killed)
{
    hx_pids_t pids = { 0 };
    size_t running = 0;
    pid_t polite = s_child(false), stubborn = s_child(true);
    hx_sleep_ms(50); /* the stubborn one ignores SIGTERM by now */
    cr_assert_eq(hx_pids_add(&pids, polite), 0);
    cr_assert_eq(hx_pids_add(&pids, stubborn), 0);
    cr_assert_eq(hx_stop_all(&pids, 300, &running), 1);
    cr_assert_eq(running, 2);
    cr_assert_eq(hx_wait_gone(&pids, 0), 0);
    /* nothing left running: nothing signalled, nothing killed */
    cr_assert_eq(hx_stop_all(&pids, 300, &running), 0);
    cr_assert_eq(running, 0);
    hx_pids_free(&pids);
}

/* ---- reloading cluster.xml --------------------------------------------- */

/* A child that on SIGHUP logs, into log, what a daemon logs: the line of a
 * reload that took, of one it refused, or (deaf) nothing at all. */
static pid_t s_hup_child(const char *log, const char *line)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        sigset_t hup;
        int sig;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        sigprocmask(SIG_BLOCK, &hup, NULL);
        for (;;) {
            sigwait(&hup, &sig);
            FILE *f = line ? fopen(log, "a") : NULL;
            if (f) {
                fputs(line, f);
                fclose(f);
            }
        }
    }
    return pid;
}

/* A one-node state in dir whose clusterd is pid (node 1) and whose node 2
 * runs nothing. */
static json_t *s_hup_state(const char *dir, pid_t pid)
{
    char rundir[96];
    unsigned long long start;
    char state;
    json_t *st = s_plan(2, &s_loopback);
    json_t *n1 = hx_state_node(st, 1, NULL);
    json_t *svc = json_array_get(json_object_get(n1, "services"), 0);
    snprintf(rundir, sizeof(rundir), "%s/1", dir);
    cr_assert_eq(mkdir(rundir, 0755), 0);
    json_object_set_new(n1, "rundir", json_string(rundir));
    hx_sleep_ms(20); /* the child's start time is there */
    cr_assert_eq(hx_proc_stat(pid, &state, &start), 0);
    json_object_set_new(svc, "pid", json_integer(pid));
    json_object_set_new(svc, "start_time", json_integer((json_int_t)start));
    return st;
}

/* hx_reload of a daemon answering SIGHUP with line: its result. */
static int s_reload_with(const char *line, size_t *count, cairn_error_t *err)
{
    char dir[64], log[128];
    s_tmpdir(dir);
    snprintf(log, sizeof(log), "%s/1/clusterd.log", dir);
    pid_t pid = s_hup_child(log, line);
    json_t *st = s_hup_state(dir, pid);
    /* an older reload in the log does not count for this one */
    FILE *f = fopen(log, "w");
    fputs("clusterd[1] info reloaded file=old\n", f);
    fclose(f);
    int r = hx_reload(st, 0, 300, count, err);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    json_decref(st);
    cr_assert_eq(hx_rm_rf(dir), 0);
    return r;
}

Test(reload, every_daemon_is_awaited_and_a_refusal_is_an_error)
{
    cairn_error_t err;
    size_t count = 9;
    cr_assert_eq(s_reload_with("clusterd[1] info reload file=x\n"
                               "clusterd[1] info reloaded file=x\n",
                               &count, &err),
                 0, "%s", err.message);
    cr_assert_eq(count, 1);
    cr_assert_eq(s_reload_with("clusterd[1] err reload msg=\"bad\"\n"
                               "clusterd[1] warn reload msg=\"keeping the "
                               "previous description\"\n",
                               &count, &err),
                 -EINVAL);
    cr_assert_eq(err.code, CAIRN_FAILED_PRECONDITION);
    cr_assert(strstr(err.message, "clusterd of node 1"), "%s", err.message);
    cr_assert(strstr(err.message, "msg=\"bad\""), "%s", err.message);
    cr_assert_eq(s_reload_with(NULL, &count, &err), -ETIMEDOUT);
    cr_assert_eq(err.code, CAIRN_TIMEOUT);
    cr_assert(strstr(err.message, "did not reload the cluster description "
                                  "within 300 ms"), "%s", err.message);
}

Test(reload, a_skipped_node_is_not_signalled)
{
    char dir[64], log[128];
    cairn_error_t err;
    size_t count = 9;
    s_tmpdir(dir);
    snprintf(log, sizeof(log), "%s/1/clusterd.log", dir);
    pid_t pid = s_hup_child(log, NULL); /* deaf: would time out */
    json_t *st = s_hup_state(dir, pid);
    cr_assert_eq(hx_reload(st, 1, 300, &count, &err), 0, "%s", err.message);
    cr_assert_eq(count, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    json_decref(st);
    cr_assert_eq(hx_rm_rf(dir), 0);
}

Test(life, the_run_base_goes_only_when_made_and_empty)
{
    char base[64], path[96];
    s_tmpdir(base);
    cr_assert_not(hx_base_tidy(base)); /* not ours: no mark */
    cr_assert_eq(hx_base_mark(base, NULL), 0);
    snprintf(path, sizeof(path), "%s/other", base);
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_assert_not(hx_base_tidy(base)); /* not empty */
    cr_assert(hx_exists(base));
    cr_assert_eq(rmdir(path), 0);
    cr_assert(hx_base_tidy(base));
    cr_assert_not(hx_exists(base));
}
