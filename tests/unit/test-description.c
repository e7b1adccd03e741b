/* test-description.c - the cluster description loader and generator.
 *
 * Valid samples in tests/data/desc/valid-*.xml are checked through every
 * accessor; each invalid sample (bad-*.xml) is one row of a table giving the
 * line, element and a piece of the reason the loader must report. Hostile
 * inputs (garbage, entity bombs, external DTDs) go through load_memory, and
 * the generator's output is loaded back for 1, 4 and 16 hosts. The builder
 * (the one writer) is tested for escaping, a round trip of every element,
 * refusal of invalid documents and atomic files; and the run base rule.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <criterion/redirect.h>

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/description.h"
#include "cairn/security.h"
#include "util/clock.h"
#include "util/fileio.h"

static const cairn_description_t *const s_untouched = (const cairn_description_t *) 0x1;

/* snprintf that fails the test instead of truncating. */
__attribute__((format(printf, 3, 4)))
static void s_fmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    cr_assert(r >= 0 && (size_t) r < n, "path too long");
}

/* Absolute path of tests/data/desc: $CAIRN_TESTDATA (set by meson), else
 * found from __FILE__, which is relative to the build root (the parent of
 * this executable's folder) or to the current directory. */
static void s_desc_dir(char *out, size_t n)
{
    char cwd[PATH_MAX], exe[PATH_MAX] = "", here[PATH_MAX], data[PATH_MAX * 2];
    const char *env = getenv("CAIRN_TESTDATA");
    if (env && *env) {
        s_fmt(data, sizeof(data), "%s", env);
    } else {
        s_fmt(here, sizeof(here), "%s", __FILE__);
        ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[k > 0 ? k : 0] = '\0';
        s_fmt(data, sizeof(data), "%s/../%s/../data", dirname(exe), dirname(here));
        if (here[0] == '/' || access(data, R_OK) != 0)
            s_fmt(data, sizeof(data), "%s/../data", here);
    }
    if (data[0] == '/')
        s_fmt(out, n, "%s/desc", data);
    else
        s_fmt(out, n, "%s/%s/desc", getcwd(cwd, sizeof(cwd)) ? cwd : ".", data);
}

static void s_path(const char *file, char *out, size_t n)
{
    char dir[PATH_MAX];
    s_desc_dir(dir, sizeof(dir));
    s_fmt(out, n, "%s/%s", dir, file);
}

static cairn_description_t *s_load_ok(const char *file)
{
    char path[PATH_MAX];
    cairn_error_t err;
    cairn_description_t *d = NULL;
    s_path(file, path, sizeof(path));
    int r = cairn_description_load(path, &d, &err);
    cr_assert_eq(r, 0, "%s: %s", file, err.message);
    cr_assert_not_null(d);
    cr_assert_eq(err.code, CAIRN_OK);
    return d;
}

static char *s_read_all(const char *file, size_t *len)
{
    char path[PATH_MAX], *buf = NULL;
    s_path(file, path, sizeof(path));
    int r = cairn_read_file(path, 0, &buf, len);
    cr_assert_eq(r, 0, "%s: %s", path, strerror(-r));
    return buf;
}

/* Expects load_memory to fail with INVALID_CONFIG and reason containing what. */
static void s_memory_fails(const char *xml, size_t len, const char *what)
{
    cairn_error_t err;
    cairn_description_t *d = (cairn_description_t *) s_untouched;
    int r = cairn_description_load_memory(xml, len, "mem.xml", &d, &err);
    cr_assert_eq(r, -EINVAL, "expected failure, got %d", r);
    cr_assert_eq(d, s_untouched, "ret changed on failure");
    cr_assert_eq(err.code, CAIRN_INVALID_CONFIG, "code %d: %s", err.code, err.message);
    cr_assert_str_eq(err.file, "mem.xml");
    cr_assert(strncmp(err.message, "mem.xml", 7) == 0, "%s", err.message);
    cr_assert(strstr(err.message, what), "'%s' not in '%s'", what, err.message);
    cr_assert_null(strchr(err.message, '\n'));
}

static void s_assert_services(const cairn_description_t *d, const char *appliance,
                              const char *const *want, size_t n_want)
{
    const char *const *names = NULL;
    size_t n = 99;
    cr_assert_eq(cairn_description_appliance_services(d, appliance, &names, &n), 0);
    cr_assert_eq(n, n_want, "%s: %zu services, want %zu", appliance, n, n_want);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(names[i], want[i], "%s[%zu]", appliance, i);
}

/* ---- valid samples ----------------------------------------------------- */

Test(description, full_nodes)
{
    cairn_description_t *d = s_load_ok("valid-full.xml");
    cr_assert_str_eq(cairn_description_cluster(d), "demo");
    cr_assert_str_eq(cairn_description_run_base(d), "/tmp/cairn-run");
    cr_assert_eq(cairn_description_n_nodes(d), 3);
    const cairn_node_desc_t *n1 = cairn_description_node(d, 0);
    cr_assert_eq(n1->id, 1);
    cr_assert_str_eq(n1->name, "n1");
    cr_assert_str_eq(n1->address, "10.77.0.1");
    cr_assert_str_eq(n1->appliance, "frontend");
    cr_assert_str_eq(n1->rundir, "/tmp/cairn-run/demo/1");
    cr_assert(n1->seed);
    cr_assert_eq(n1->line, 26);
    const cairn_node_desc_t *n2 = cairn_description_node(d, 1);
    cr_assert_not(n2->seed);
    cr_assert_str_eq(n2->rundir, "/tmp/cairn-run/demo/2");
    const cairn_node_desc_t *v6 = cairn_description_node(d, 2);
    cr_assert_eq(v6->id, 7);
    cr_assert_str_eq(v6->address, "fd00::7");
    cr_assert_str_eq(v6->rundir, "/srv/cairn/v6");
    cr_assert_null(cairn_description_node(d, 3));
    cr_assert_eq(cairn_description_find_node(d, 7), v6);
    cr_assert_null(cairn_description_find_node(d, 3));
    cr_assert_eq(cairn_description_find_node_by_name(d, "n2"), n2);
    cr_assert_null(cairn_description_find_node_by_name(d, "n3"));
    cairn_description_free(d);
}

Test(description, lookup_node)
{
    cairn_description_t *d = s_load_ok("valid-full.xml");
    cr_assert_eq(cairn_description_lookup_node(d, "1"), cairn_description_node(d, 0));
    cr_assert_eq(cairn_description_lookup_node(d, "7"), cairn_description_node(d, 2));
    cr_assert_eq(cairn_description_lookup_node(d, "n2"), cairn_description_node(d, 1));
    cr_assert_eq(cairn_description_lookup_node(d, "v6"), cairn_description_node(d, 2));
    cr_assert_null(cairn_description_lookup_node(d, "2x"));
    cr_assert_null(cairn_description_lookup_node(d, "99"));
    cr_assert_null(cairn_description_lookup_node(d, "4294967297"));
    cr_assert_null(cairn_description_lookup_node(d, ""));
    cr_assert_null(cairn_description_lookup_node(d, NULL));
    cairn_description_free(d);
}

Test(description, full_services_and_appliances)
{
    cairn_description_t *d = s_load_ok("valid-full.xml");
    cr_assert_eq(cairn_description_n_services(d), 4);
    const cairn_service_desc_t *s = cairn_description_service_at(d, 0);
    cr_assert_str_eq(s->name, "clusterd");
    cr_assert_eq(s->port, 7100);
    cr_assert_eq(s->pub_port, 7101);
    cr_assert_eq(s->metrics_port, 9100);
    cr_assert_eq(cairn_description_service(d, "dsmd")->port, 7120);
    cr_assert_eq(cairn_description_service(d, "dsmd")->pub_port, 0);
    cr_assert_eq(cairn_description_service(d, "dsmd")->metrics_port, 0);
    cr_assert_null(cairn_description_service(d, "syncd"));
    cr_assert_null(cairn_description_service_at(d, 4));

    s_assert_services(d, "base", (const char *[]){ "clusterd" }, 1);
    s_assert_services(d, "compute", (const char *[]){ "clusterd", "ghostd", "dsmd" }, 3);
    s_assert_services(d, "frontend",
                      (const char *[]){ "clusterd", "ghostd", "dsmd", "sched" }, 4);
    s_assert_services(d, "empty", NULL, 0);
    const char *const *names = (const char *const *) 0x1;
    size_t n = 42;
    cr_assert_eq(cairn_description_appliance_services(d, "login", &names, &n), -ENOENT);
    cr_assert_eq(n, 42);
    cr_assert_eq(names, (const char *const *) 0x1);

    const cairn_node_desc_t *n1 = cairn_description_node(d, 0);
    const cairn_node_desc_t *v6 = cairn_description_node(d, 2);
    cr_assert(cairn_description_node_runs(d, n1, "sched"));
    cr_assert(cairn_description_node_runs(d, n1, "clusterd"));
    cr_assert(cairn_description_node_runs(d, v6, "clusterd"));
    cr_assert_not(cairn_description_node_runs(d, v6, "ghostd"));
    cr_assert_not(cairn_description_node_runs(d, v6, "nosuch"));
    cairn_description_free(d);
}

/* d's scheduler parameters are want's, field by field (a failure names it). */
static void s_assert_sched(const cairn_description_t *d, cairn_sched_desc_t want)
{
    const cairn_sched_desc_t *p = cairn_description_sched(d);
    cr_assert_eq(p->balance_period_ms, want.balance_period_ms);
    cr_assert_eq(p->stability_margin_pct, want.stability_margin_pct);
    cr_assert_eq(p->hold_periods, want.hold_periods);
    cr_assert_eq(p->high_water_pct, want.high_water_pct);
    cr_assert_eq(p->mem_margin_pct, want.mem_margin_pct);
    cr_assert_eq(p->placement_hold_ms, want.placement_hold_ms);
    cr_assert_eq(p->ghost_file_max, want.ghost_file_max);
}

Test(description, full_membership_scheduler)
{
    cairn_description_t *d = s_load_ok("valid-full.xml");
    const cairn_membership_desc_t *m = cairn_description_membership(d);
    cr_assert_eq(m->protocol_period_ms, 500);
    cr_assert_eq(m->ping_timeout_ms, 250);
    cr_assert_eq(m->indirect_checks, 0);
    cr_assert_eq(m->suspect_timeout_ms, 3000);
    cr_assert_eq(m->gossip_fanout, 4);
    cr_assert_str_eq(cairn_description_policy(d), "balance");
    cr_assert_eq(cairn_description_n_probes(d), 2);
    cr_assert_str_eq(cairn_description_probe(d, 0)->name, "load");
    cr_assert_eq(cairn_description_probe(d, 0)->period_ms, 1000);
    cr_assert_str_eq(cairn_description_probe(d, 1)->name, "memory");
    cr_assert_eq(cairn_description_probe(d, 1)->period_ms, 2000);
    cr_assert_null(cairn_description_probe(d, 2));
    const cairn_gossip_desc_t *g = cairn_description_gossip(d);
    cr_assert_eq(g->period_ms, 500);
    cr_assert_eq(g->fanout, 3);
    cr_assert_eq(g->window, 4);
    s_assert_sched(d, (cairn_sched_desc_t){ 2000, 40, 3, 80, 15, 4000, 65536 });
    cairn_description_free(d);
}

Test(description, full_keys_relative_to_file)
{
    char dir[PATH_MAX], want[PATH_MAX + 32];
    cairn_description_t *d = s_load_ok("valid-full.xml");
    s_desc_dir(dir, sizeof(dir));
    cr_assert_str_eq(cairn_description_security_mode(d), "curve");
    cr_assert_eq(cairn_description_n_keys(d), 3);
    const cairn_key_desc_t *k = cairn_description_key(d, 0);
    cr_assert_eq(k->node, 1);
    cr_assert_str_eq(k->public_key, "9:8)ijjnU}[QJfK-!J4Wh41gfCl736{5K0)7NY%#");
    snprintf(want, sizeof(want), "%s/keys/n1.key", dir);
    cr_assert_str_eq(k->secret_path, want);
    k = cairn_description_key(d, 1);
    cr_assert_str_eq(k->public_key, "nD-SA5*4!*-%b/?13Co:.DMhSn]ya%h@R.w1gI+Y");
    cr_assert_str_eq(k->secret_path, "/etc/cairn/n2.key");
    /* no secret given: keys/node-<id>.key beside the file */
    snprintf(want, sizeof(want), "%s/keys/node-7.key", dir);
    cr_assert_str_eq(cairn_description_key(d, 2)->secret_path, want);
    cr_assert_eq(cairn_description_key_owner(d, "]u7[a24MF7OO+ua@+p#c8Vu/@+Mz$xqMmbQ*JVWr"), 7);
    cr_assert_eq(cairn_description_key_owner(d, "-Ea9USMYy+WDrzMWm]V7xnBP$uC[q@kdeorHXTb-"), 0);
    cr_assert_eq(cairn_description_find_key(d, 2), cairn_description_key(d, 1));
    cr_assert_null(cairn_description_find_key(d, 3));
    cr_assert_null(cairn_description_key(d, 3));
    char path[PATH_MAX];
    s_path("valid-full.xml", path, sizeof(path));
    cr_assert_str_eq(cairn_description_path(d), path);
    cairn_description_free(d);
}

Test(description, memory_keys_relative_to_cwd)
{
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    size_t len;
    char *xml = s_read_all("valid-full.xml", &len);
    cairn_description_t *d = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_description_load_memory(xml, len, "inline", &d, &err), 0, "%s",
                 err.message);
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/keys/n1.key", cwd);
    cr_assert_str_eq(cairn_description_key(d, 0)->secret_path, want);
    cr_assert_str_eq(cairn_description_path(d), "inline");
    cairn_description_free(d);
    free(xml);
}

Test(description, endpoints)
{
    cairn_description_t *d = s_load_ok("valid-full.xml");
    const cairn_node_desc_t *n1 = cairn_description_node(d, 0);
    const cairn_node_desc_t *v6 = cairn_description_node(d, 2);
    char *s = cairn_description_ipc_endpoint(d, n1, "clusterd");
    cr_assert_str_eq(s, "ipc:///tmp/cairn-run/demo/1/clusterd.sock");
    free(s);
    s = cairn_description_ipc_endpoint(d, v6, "ghostd");
    cr_assert_str_eq(s, "ipc:///srv/cairn/v6/ghostd.sock");
    free(s);
    s = cairn_description_tcp_endpoint(d, n1, "clusterd", false);
    cr_assert_str_eq(s, "tcp://10.77.0.1:7100");
    free(s);
    s = cairn_description_tcp_endpoint(d, n1, "ghostd", true);
    cr_assert_str_eq(s, "tcp://10.77.0.1:7111");
    free(s);
    s = cairn_description_tcp_endpoint(d, v6, "clusterd", true);
    cr_assert_str_eq(s, "tcp://[fd00::7]:7101");
    free(s);
    errno = 0;
    cr_assert_null(cairn_description_tcp_endpoint(d, n1, "dsmd", true));
    cr_assert_eq(errno, ENOENT);
    errno = 0;
    cr_assert_null(cairn_description_tcp_endpoint(d, n1, "syncd", false));
    cr_assert_eq(errno, ENOENT);
    errno = 0;
    cr_assert_null(cairn_description_ipc_endpoint(d, n1, "syncd"));
    cr_assert_eq(errno, ENOENT);
    cairn_description_free(d);
}

Test(description, minimal_defaults)
{
    cairn_description_t *d = s_load_ok("valid-minimal.xml");
    cr_assert_str_eq(cairn_description_run_base(d), CAIRN_DEFAULT_RUN_BASE);
    const cairn_node_desc_t *n = cairn_description_node(d, 0);
    cr_assert_str_eq(n->rundir, CAIRN_DEFAULT_RUN_BASE "/mini/3");
    cr_assert_not(n->seed);
    const cairn_membership_desc_t *m = cairn_description_membership(d);
    cr_assert_eq(m->protocol_period_ms, 600);
    cr_assert_eq(m->ping_timeout_ms, 100);
    cr_assert_eq(m->indirect_checks, 3);
    cr_assert_eq(m->suspect_timeout_ms, 800);
    cr_assert_eq(m->gossip_fanout, 6);
    cr_assert_str_eq(cairn_description_policy(d), "");
    cr_assert_eq(cairn_description_n_probes(d), 0);
    cr_assert_str_eq(cairn_description_security_mode(d), "none");
    cr_assert_eq(cairn_description_n_keys(d), 0);
    cr_assert_eq(cairn_description_lookup_node(d, "3"), n);
    cr_assert_eq(cairn_description_lookup_node(d, "solo"), n);
    cairn_description_free(d);
}

Test(description, partial_membership_and_v6_loopback)
{
    cairn_description_t *d = s_load_ok("valid-partial-membership.xml");
    const cairn_membership_desc_t *m = cairn_description_membership(d);
    cr_assert_eq(m->protocol_period_ms, 600);
    cr_assert_eq(m->ping_timeout_ms, 150);
    cr_assert_eq(m->gossip_fanout, 6);
    const cairn_node_desc_t *n = cairn_description_node(d, 0);
    cr_assert_eq(n->id, 255);
    cr_assert(n->seed);
    char *s = cairn_description_tcp_endpoint(d, n, "clusterd", false);
    cr_assert_str_eq(s, "tcp://[::1]:7100");
    free(s);
    cr_assert_str_eq(cairn_description_security_mode(d), "none");
    cairn_description_free(d);
}

Test(description, misc_api)
{
    cr_assert_null(cairn_description_free(NULL));
    const char *schema = cairn_description_schema();
    cr_assert_not_null(strstr(schema, "<grammar"));
    cr_assert_eq(cairn_description_n_nodes(NULL), 0);
}

/* ---- invalid samples --------------------------------------------------- */

/* Arrays, not pointers: criterion copies parameters into another process. */
typedef struct bad_case {
    char file[40];         /* in tests/data/desc */
    int line;              /* line the error must name */
    char element[16];      /* element the error must name, "" for none */
    char reason[96];       /* substring of the message */
} bad_case_t;

static bad_case_t s_bad[] = {
    { "bad-dup-node-id.xml", 12, "node", "node id 1 is already used by node 'n1' (line 11)" },
    { "bad-dup-node-name.xml", 12, "node", "node name 'n1' is already used by node 1 (line 11)" },
    { "bad-dup-address.xml", 12, "node", "address fd00:0:0::1 is already used by node 'n1' (line 11)" },
    { "bad-address-not-literal.xml", 12, "node", "'n2.example.org' of node 'n2' is not an IPv4 or IPv6 literal" },
    { "bad-unknown-appliance.xml", 12, "node", "node 'n2' uses unknown appliance 'login'" },
    { "bad-extends-unknown.xml", 8, "appliance", "extends unknown appliance 'computer'" },
    { "bad-extends-cycle.xml", 7, "appliance", "compute -> frontend -> compute" },
    { "bad-dup-appliance.xml", 8, "appliance", "appliance 'compute' is already declared (line 7)" },
    { "bad-use-undeclared.xml", 8, "use", "uses undeclared service 'dsmd'" },
    { "bad-dup-service.xml", 4, "service", "service 'clusterd' is already declared (line 3)" },
    { "bad-port-collision.xml", 4, "service", "port 7101 is already used by service 'clusterd' (line 3)" },
    { "bad-pub-port-collision.xml", 4, "service", "pub-port 7100 is already used by service 'clusterd' (line 3)" },
    { "bad-pub-port-self.xml", 4, "service", "pub-port 7110 of service 'ghostd' is the same as its port" },
    { "bad-metrics-port-self.xml", 4, "service", "metrics-port 7110 of service 'ghostd' is the same as its port" },
    { "bad-metrics-port-collision.xml", 4, "service", "metrics-port 7101 is already used by service 'clusterd' (line 3)" },
    { "bad-ping-timeout.xml", 14, "membership", "ping-timeout-ms (200) must be less than protocol-period-ms (200)" },
    { "bad-membership-zero.xml", 14, "membership", "gossip-fanout must be greater than 0" },
    { "bad-curve-no-key.xml", 16, "security", "node 2 ('n2', line 12) has no <key>" },
    { "bad-key-unknown-node.xml", 16, "key", "key for unknown node 9" },
    { "bad-dup-key.xml", 16, "key", "node 1 already has a key (line 16)" },
    { "bad-probe-period-zero.xml", 15, "probe", "probe 'load' has period-ms 0" },
    { "bad-dup-probe.xml", 15, "probe", "probe 'load' is already declared (line 15)" },
    { "bad-gossip-period.xml", 15, "scheduler", "gossip-period-ms must be at least 10 (or 0: the shortest probe period), not 5" },
    { "bad-gossip-fanout.xml", 15, "scheduler", "gossip-fanout must be 1..255, not 0" },
    { "bad-window.xml", 15, "scheduler", "window must be 1..255, not 300" },
    { "bad-high-water.xml", 15, "scheduler", "high-water-pct must be 10..99, not 100" },
    { "bad-placement-hold.xml", 15, "scheduler", "placement-hold-ms must be 0..60000, not 90000" },
    { "bad-ghost-file-max.xml", 15, "scheduler", "ghost-file-max must be 1..1073741824 (bytes), not 0" },
    { "bad-ghost-file-max-big.xml", 15, "scheduler", "ghost-file-max must be 1..1073741824 (bytes), not 4294967295" },
    { "bad-rundir-relative.xml", 12, "node", "rundir 'run/n2' of node 'n2' is not an absolute path" },
    { "bad-run-base-relative.xml", 1, "cluster", "run-base 'run' is not an absolute path" },
    { "bad-no-nodes.xml", 10, "nodes", "a required child element is missing" },
    { "bad-no-services.xml", 2, "services", "a required child element is missing" },
    { "bad-order.xml", 15, "membership", "Did not expect element membership there" },
    { "bad-port-range.xml", 4, "service", "doesn't allow value '70000'" },
    { "bad-node-id-zero.xml", 12, "node", "an attribute is missing, unknown, malformed or out of range" },
    { "bad-cluster-name.xml", 1, "cluster", "an attribute is missing, unknown, malformed or out of range" },
    { "bad-unknown-attr.xml", 12, "node", "Invalid attribute color for element node" },
    { "bad-security-mode.xml", 16, "security", "Invalid attribute mode for element security" },
    { "bad-unknown-element.xml", 13, "extra", "Did not expect element extra there" },
    { "bad-not-wellformed.xml", 13, "node", "Opening and ending tag mismatch: node line 12 and nodes" },
    { "bad-doctype.xml", 1, "", "DOCTYPE declarations are not allowed" },
};

ParameterizedTestParameters(description, invalid_file)
{
    return cr_make_param_array(bad_case_t, s_bad, sizeof(s_bad) / sizeof(s_bad[0]));
}

ParameterizedTest(bad_case_t *c, description, invalid_file)
{
    char path[PATH_MAX], prefix[PATH_MAX + 96];
    cairn_error_t err;
    cairn_description_t *d = (cairn_description_t *) s_untouched;
    s_path(c->file, path, sizeof(path));
    int r = cairn_description_load(path, &d, &err);
    cr_assert_eq(r, -EINVAL, "%s: r=%d %s", c->file, r, err.message);
    cr_assert_eq(d, s_untouched, "%s: ret changed", c->file);
    cr_assert_eq(err.code, CAIRN_INVALID_CONFIG, "%s", c->file);
    cr_assert_str_eq(err.file, path);
    cr_assert_eq(err.line, c->line, "%s: line %d, want %d (%s)", c->file, err.line, c->line,
                 err.message);
    cr_assert_str_eq(err.element, c->element, "%s: %s", c->file, err.message);
    if (*c->element)
        snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", path, c->line, c->element);
    else
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, c->line);
    cr_assert(strncmp(err.message, prefix, strlen(prefix)) == 0, "%s: '%s' does not start '%s'",
              c->file, err.message, prefix);
    cr_assert(strstr(err.message, c->reason), "%s: '%s' not in '%s'", c->file, c->reason,
              err.message);
    cr_assert_null(strchr(err.message, '\n'));
}

Test(description, invalid_samples_are_many)
{
    cr_assert_geq(sizeof(s_bad) / sizeof(s_bad[0]), 15);
}

/* No libxml2 message may reach stderr, whatever the input. */
Test(description, nothing_on_stderr, .init = cr_redirect_stderr)
{
    char path[PATH_MAX];
    cairn_error_t err;
    for (size_t i = 0; i < sizeof(s_bad) / sizeof(s_bad[0]); i++) {
        cairn_description_t *d = NULL;
        s_path(s_bad[i].file, path, sizeof(path));
        cr_assert_eq(cairn_description_load(path, &d, &err), -EINVAL);
    }
    cairn_description_t *d = NULL;
    const char junk[] = "<cluster><<&&;;</x>\x01\x02";
    cr_assert_eq(cairn_description_load_memory(junk, sizeof(junk), "j", &d, &err), -EINVAL);
    const char warn[] = "<?xml version='1.0' encoding='bogus-enc'?><cluster/>";
    cr_assert_lt(cairn_description_load_memory(warn, strlen(warn), "w", &d, NULL), 0);
    fflush(stderr);
    cr_assert_stderr_eq_str("");
}

Test(description, null_err_is_accepted)
{
    char path[PATH_MAX];
    cairn_description_t *d = NULL;
    s_path("bad-dup-node-id.xml", path, sizeof(path));
    cr_assert_eq(cairn_description_load(path, &d, NULL), -EINVAL);
    cr_assert_null(d);
}

Test(description, unreadable_files)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    cairn_error_t err;
    cairn_description_t *d = (cairn_description_t *) s_untouched;
    s_desc_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/no-such-file.xml", dir);
    cr_assert_eq(cairn_description_load(path, &d, &err), -ENOENT);
    cr_assert_eq(err.code, CAIRN_SYSTEM);
    cr_assert_str_eq(err.file, path);
    cr_assert(strstr(err.message, "no-such-file.xml"));
    cr_assert_eq(cairn_description_load(dir, &d, &err), -EISDIR);
    cr_assert_eq(err.code, CAIRN_SYSTEM);
    cr_assert_eq(d, s_untouched);
}

Test(description, big_line_numbers)
{
    size_t pad = 70000, len;
    char *full = s_read_all("valid-minimal.xml", &len);
    char *xml = malloc(pad + len + 1);
    memset(xml, '\n', pad);
    memcpy(xml + pad, full, len + 1);
    cairn_error_t err;
    cairn_description_t *d = NULL;
    cr_assert_eq(cairn_description_load_memory(xml, pad + len, "big", &d, &err), 0, "%s",
                 err.message);
    cr_assert_eq(cairn_description_node(d, 0)->line, (int) pad + 4, "%d", cairn_description_node(d, 0)->line);
    d = cairn_description_free(d);
    /* a schema error (unknown attribute) and a semantic one (bad address) */
    char *at = strstr(xml, "address=\"127.0.0.1\"");
    memcpy(at, "adress", 6);
    cr_assert_eq(cairn_description_load_memory(xml, pad + len, "big", &d, &err), -EINVAL);
    cr_assert_eq(err.line, (int) pad + 4, "%s", err.message);
    memcpy(at, "address=\"127.0.0.x", 18);
    cr_assert_eq(cairn_description_load_memory(xml, pad + len, "big", &d, &err), -EINVAL);
    cr_assert_eq(err.line, (int) pad + 4, "%s", err.message);
    cr_assert(strstr(err.message, "not an IPv4 or IPv6 literal"), "%s", err.message);
    free(xml);
    free(full);
}

/* ---- hostile input ----------------------------------------------------- */

Test(description, garbage_and_empty)
{
    unsigned char junk[512];
    srand(7);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char) rand();
    s_memory_fails((const char *) junk, sizeof(junk), "mem.xml");
    s_memory_fails("", 0, "mem.xml");
    s_memory_fails(NULL, 0, "mem.xml");
    s_memory_fails("<cluster", 8, "mem.xml:1");
    s_memory_fails("<other/>", 8, "element cluster");
    s_memory_fails("<cluster name='a'/>\0trailing", 28, "mem.xml:1");
}

static const char s_laughs[] =
    "<?xml version='1.0'?>\n"
    "<!DOCTYPE cluster [\n"
    " <!ENTITY l0 'lol'>\n"
    " <!ENTITY l1 '&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;'>\n"
    " <!ENTITY l2 '&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;'>\n"
    " <!ENTITY l3 '&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;'>\n"
    " <!ENTITY l4 '&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;'>\n"
    " <!ENTITY l5 '&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;'>\n"
    " <!ENTITY l6 '&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;'>\n"
    " <!ENTITY l7 '&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;'>\n"
    " <!ENTITY l8 '&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;'>\n"
    " <!ENTITY l9 '&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;'>\n"
    "]>\n";

Test(description, billion_laughs_does_not_expand, .timeout = 10)
{
    char xml[4096];
    uint64_t t0 = cairn_now_ms();
    snprintf(xml, sizeof(xml), "%s<cluster name='&l9;'><x>&l9;</x></cluster>\n", s_laughs);
    s_memory_fails(xml, strlen(xml), "DOCTYPE declarations are not allowed");
    snprintf(xml, sizeof(xml), "%s<cluster name='c'>&l9;&l9;&l9;</cluster>\n", s_laughs);
    s_memory_fails(xml, strlen(xml), "mem.xml:2: DOCTYPE");
    cr_assert_lt(cairn_now_ms() - t0, 2000, "entity expansion took too long");
}

/* A DTD on a local web server and in a local file: neither may be opened. */
Test(description, external_dtd_is_not_fetched, .timeout = 10)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(ls, (struct sockaddr *) &sa, sizeof(sa)), 0);
    cr_assert_eq(listen(ls, 4), 0);
    cr_assert_eq(getsockname(ls, (struct sockaddr *) &sa, &sl), 0);

    char dtd[] = "/tmp/cairn-test-dtd-XXXXXX";
    int fd = mkstemp(dtd);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "<!ENTITY x 'y'>\n", 16), 16);
    close(fd);
    int in = inotify_init1(IN_NONBLOCK);
    cr_assert_geq(in, 0);
    cr_assert_geq(inotify_add_watch(in, dtd, IN_OPEN | IN_ACCESS), 0);

    char xml[1024];
    snprintf(xml, sizeof(xml),
             "<!DOCTYPE cluster SYSTEM 'http://127.0.0.1:%u/c.dtd'>\n<cluster name='&x;'/>",
             ntohs(sa.sin_port));
    s_memory_fails(xml, strlen(xml), "DOCTYPE");
    snprintf(xml, sizeof(xml), "<!DOCTYPE cluster SYSTEM 'file://%s'>\n<cluster name='&x;'/>",
             dtd);
    s_memory_fails(xml, strlen(xml), "DOCTYPE");
    snprintf(xml, sizeof(xml), "<?xml version='1.0'?>\n<cluster name='a'>"
             "<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='%s'/></cluster>",
             dtd);
    s_memory_fails(xml, strlen(xml), "mem.xml:2");

    struct pollfd p = { .fd = ls, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 200), 0, "the loader connected to the DTD's web server");
    char ev[4096];
    cr_assert_lt(read(in, ev, sizeof(ev)), 0, "the loader opened the DTD file");
    cr_assert_eq(errno, EAGAIN);
    close(in);
    close(ls);
    unlink(dtd);
}

/* ---- generation -------------------------------------------------------- */

static cairn_description_t *s_generate_ok(const char *const *hosts, size_t n,
                                          const char *appliance, const char *run_base,
                                          char **ret_xml)
{
    char *xml = NULL;
    cairn_error_t err;
    cairn_description_t *d = NULL;
    int r = cairn_description_generate("gen", hosts, n, appliance, run_base, &xml, &err);
    cr_assert_eq(r, 0, "generate: %s", err.message);
    cr_assert_not_null(xml);
    r = cairn_description_load_memory(xml, strlen(xml), "gen.xml", &d, &err);
    cr_assert_eq(r, 0, "load generated: %s\n%s", err.message, xml);
    if (ret_xml)
        *ret_xml = xml;
    else
        free(xml);
    return d;
}

static void s_check_defaults(const cairn_description_t *d)
{
    static const struct { const char *name; uint16_t port, pub, metrics; } want[] = {
        { "clusterd", 7100, 7101, 7109 }, { "ghostd", 7110, 7111, 7119 },
        { "dsmd", 7120, 7121, 7129 },     { "syncd", 7130, 7131, 7139 },
        { "probed", 7140, 7141, 7149 },   { "sched", 7150, 7151, 7159 },
        { "kernetd", 7160, 7161, 7169 },
    };
    cr_assert_eq(cairn_description_n_services(d), 7);
    for (size_t i = 0; i < 7; i++) {
        const cairn_service_desc_t *s = cairn_description_service_at(d, i);
        cr_assert_str_eq(s->name, want[i].name);
        cr_assert_eq(s->port, want[i].port, "%s", s->name);
        cr_assert_eq(s->pub_port, want[i].pub, "%s", s->name);
        cr_assert_eq(s->metrics_port, want[i].metrics, "%s", s->name);
    }
    s_assert_services(d, "compute", (const char *[]){ "clusterd", "ghostd", "dsmd", "syncd",
                                                      "probed", "sched", "kernetd" }, 7);
    s_assert_services(d, "frontend", (const char *[]){ "clusterd", "ghostd", "dsmd", "syncd",
                                                       "probed", "sched", "kernetd" }, 7);
    const cairn_membership_desc_t *m = cairn_description_membership(d);
    cr_assert_eq(m->protocol_period_ms, 600);
    cr_assert_eq(m->ping_timeout_ms, 100);
    cr_assert_eq(m->indirect_checks, 3);
    cr_assert_eq(m->suspect_timeout_ms, 800);
    cr_assert_eq(m->gossip_fanout, 6);
    cr_assert_str_eq(cairn_description_policy(d), CAIRN_SCHED_DEFAULT_POLICY);
    static const struct { const char *name; uint32_t period; } probes[] = {
        { "cpu", 1000 }, { "runqueue", 1000 }, { "memory", 1000 },
        { "jobs", 2000 }, { "migration-cost", 2000 },
    };
    cr_assert_eq(cairn_description_n_probes(d), 5);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_str_eq(cairn_description_probe(d, i)->name, probes[i].name);
        cr_assert_eq(cairn_description_probe(d, i)->period_ms, probes[i].period);
    }
    const cairn_gossip_desc_t *g = cairn_description_gossip(d);
    cr_assert_eq(g->period_ms, 0);
    cr_assert_eq(g->fanout, 2);
    cr_assert_eq(g->window, 8);
    s_assert_sched(d, (cairn_sched_desc_t){ 0, 25, 4, 85, 10, 10000,
                                            CAIRN_GHOST_FILE_MAX_DEFAULT });
    cr_assert_str_eq(cairn_description_security_mode(d), "none");
}

Test(description, generate_one_host)
{
    const char *hosts[] = { "solo=10.9.0.1" };
    cairn_description_t *d = s_generate_ok(hosts, 1, NULL, NULL, NULL);
    s_check_defaults(d);
    cr_assert_str_eq(cairn_description_cluster(d), "gen");
    cr_assert_str_eq(cairn_description_run_base(d), CAIRN_DEFAULT_RUN_BASE);
    cr_assert_eq(cairn_description_n_nodes(d), 1);
    const cairn_node_desc_t *n = cairn_description_node(d, 0);
    cr_assert_eq(n->id, 1);
    cr_assert_str_eq(n->name, "solo");
    cr_assert_str_eq(n->address, "10.9.0.1");
    cr_assert_str_eq(n->appliance, "compute");
    cr_assert(n->seed);
    cr_assert_str_eq(n->rundir, CAIRN_DEFAULT_RUN_BASE "/gen/1");
    cairn_description_free(d);
}

Test(description, generate_four_hosts_mixed)
{
    const char *hosts[] = { "a=10.9.0.1", "10.9.0.2", "fd00:0::5", "localhost" };
    cairn_description_t *d = s_generate_ok(hosts, 4, "frontend", "/tmp/g", NULL);
    s_check_defaults(d);
    cr_assert_str_eq(cairn_description_run_base(d), "/tmp/g");
    cr_assert_str_eq(cairn_description_node(d, 0)->name, "a");
    cr_assert_str_eq(cairn_description_node(d, 1)->name, "node2");
    cr_assert_str_eq(cairn_description_node(d, 1)->address, "10.9.0.2");
    cr_assert_str_eq(cairn_description_node(d, 2)->name, "node3");
    cr_assert_str_eq(cairn_description_node(d, 2)->address, "fd00::5");
    const cairn_node_desc_t *lh = cairn_description_node(d, 3);
    cr_assert_str_eq(lh->name, "localhost");
    cr_assert(strcmp(lh->address, "127.0.0.1") == 0 || strcmp(lh->address, "::1") == 0,
              "%s", lh->address);
    for (size_t i = 0; i < 4; i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, i);
        cr_assert_eq(n->id, i + 1);
        cr_assert_str_eq(n->appliance, "frontend");
        cr_assert_eq(n->seed, i == 0);
        cr_assert(cairn_description_node_runs(d, n, "sched"));
    }
    char *s = cairn_description_tcp_endpoint(d, cairn_description_node(d, 2), "kernetd", true);
    cr_assert_str_eq(s, "tcp://[fd00::5]:7161");
    free(s);
    s = cairn_description_ipc_endpoint(d, cairn_description_node(d, 3), "clusterd");
    cr_assert_str_eq(s, "ipc:///tmp/g/gen/4/clusterd.sock");
    free(s);
    cairn_description_free(d);
}

Test(description, generate_sixteen_hosts)
{
    char buf[16][64];
    const char *hosts[16];
    for (int i = 0; i < 16; i++) {
        if (i % 3 == 0)
            snprintf(buf[i], sizeof(buf[i]), "h%02d=10.8.0.%d", i + 1, i + 1);
        else if (i % 3 == 1)
            snprintf(buf[i], sizeof(buf[i]), "10.8.1.%d", i + 1);
        else
            snprintf(buf[i], sizeof(buf[i]), "v6-%d=fd00::%x", i + 1, i + 1);
        hosts[i] = buf[i];
    }
    char *xml = NULL;
    cairn_description_t *d = s_generate_ok(hosts, 16, "compute", NULL, &xml);
    s_check_defaults(d);
    cr_assert_eq(cairn_description_n_nodes(d), 16);
    for (int i = 0; i < 16; i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, (size_t) i);
        char want_name[32], want_addr[32];
        if (i % 3 == 0) {
            snprintf(want_name, sizeof(want_name), "h%02d", i + 1);
            snprintf(want_addr, sizeof(want_addr), "10.8.0.%d", i + 1);
        } else if (i % 3 == 1) {
            snprintf(want_name, sizeof(want_name), "node%d", i + 1);
            snprintf(want_addr, sizeof(want_addr), "10.8.1.%d", i + 1);
        } else {
            snprintf(want_name, sizeof(want_name), "v6-%d", i + 1);
            snprintf(want_addr, sizeof(want_addr), "fd00::%x", i + 1);
        }
        cr_assert_str_eq(n->name, want_name);
        cr_assert_str_eq(n->address, want_addr);
        cr_assert_eq(cairn_description_lookup_node(d, want_name), n);
    }
    /* exactly one seed, written as the attribute */
    cr_assert_not_null(strstr(xml, "seed=\"true\""));
    cr_assert_null(strstr(strstr(xml, "seed=\"true\"") + 1, "seed="));
    free(xml);
    cairn_description_free(d);
}

Test(description, generate_escapes_run_base)
{
    const char *hosts[] = { "10.9.0.1" };
    cairn_description_t *d = s_generate_ok(hosts, 1, NULL, "/tmp/a&b\"c<d>'e", NULL);
    cr_assert_str_eq(cairn_description_run_base(d), "/tmp/a&b\"c<d>'e");
    cairn_description_free(d);
}

static void s_generate_fails(const char *cluster, const char *const *hosts, size_t n,
                             const char *appliance, const char *run_base, const char *what)
{
    char *xml = (char *) 0x1;
    cairn_error_t err;
    int r = cairn_description_generate(cluster, hosts, n, appliance, run_base, &xml, &err);
    cr_assert_eq(r, -EINVAL, "expected failure for '%s'", what);
    cr_assert_eq(xml, (char *) 0x1);
    cr_assert(strstr(err.message, what), "'%s' not in '%s'", what, err.message);
    cr_assert(err.code == CAIRN_INVALID_ARGUMENT || err.code == CAIRN_INVALID_CONFIG);
}

Test(description, generate_rejects_bad_input)
{
    const char *ok[] = { "10.9.0.1" };
    s_generate_fails("gen", (const char *[]){ "n1=10.9.0.1", "no-such-host.invalid" }, 2,
                     NULL, NULL, "no-such-host.invalid");
    s_generate_fails("gen", (const char *[]){ "x=no-such-host.invalid" }, 1, NULL, NULL,
                     "no-such-host.invalid");
    s_generate_fails("gen", (const char *[]){ "=10.9.0.1" }, 1, NULL, NULL, "=10.9.0.1");
    s_generate_fails("gen", (const char *[]){ "n1=" }, 1, NULL, NULL, "n1=");
    s_generate_fails("gen", (const char *[]){ "bad name=10.9.0.1" }, 1, NULL, NULL, "bad name");
    s_generate_fails("gen", (const char *[]){ "a=10.9.0.1", "a=10.9.0.2" }, 2, NULL, NULL,
                     "node name 'a' is already used");
    s_generate_fails("gen", (const char *[]){ "10.9.0.1", "b=10.9.0.1" }, 2, NULL, NULL,
                     "address 10.9.0.1 is already used");
    s_generate_fails("has space", ok, 1, NULL, NULL, "has space");
    s_generate_fails("a<b", ok, 1, NULL, NULL, "a<b");
    s_generate_fails("", ok, 1, NULL, NULL, "cluster name");
    s_generate_fails("this-cluster-name-is-longer-than-32", ok, 1, NULL, NULL, "cluster name");
    s_generate_fails("gen", ok, 0, NULL, NULL, "hosts");
    s_generate_fails("gen", ok, 1, "login", NULL, "unknown appliance 'login'");
    s_generate_fails("gen", ok, 1, NULL, "relative/run", "run-base");
}

Test(description, generate_max_hosts)
{
    static char buf[256][32];
    static const char *hosts[256];
    for (int i = 0; i < 256; i++) {
        snprintf(buf[i], sizeof(buf[i]), "10.7.%d.%d", i / 200, i % 200 + 1);
        hosts[i] = buf[i];
    }
    char *xml = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_description_generate("big", hosts, 255, NULL, NULL, &xml, &err), 0,
                 "%s", err.message);
    free(xml);
    xml = (char *) 0x1;
    cr_assert_eq(cairn_description_generate("big", hosts, 256, NULL, NULL, &xml, &err), -EINVAL);
    cr_assert_eq(xml, (char *) 0x1);
}

/* ---- the builder ------------------------------------------------------- */

#define S_HOSTILE "a\"<&>'b"

static cairn_description_builder_t *s_builder_min(const char *run_base)
{
    cairn_error_t err;
    cairn_description_builder_t *b = cairn_description_builder_new("bld", run_base);
    cr_assert_not_null(b);
    cr_assert_eq(cairn_description_builder_add_service(b, "clusterd", 7100, 7101, &err),
                 0, "%s", err.message);
    cr_assert_eq(cairn_description_builder_add_appliance(
                     b, "compute", (const char *[]){ "clusterd" }, 1, NULL, &err),
                 0, "%s", err.message);
    cr_assert_eq(cairn_description_builder_add_node(b, 1, "n1", "10.9.0.1", "compute",
                                                    true, &err),
                 0, "%s", err.message);
    return b;
}

static char *s_builder_xml(cairn_description_builder_t *b)
{
    char *xml = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_description_builder_to_string(b, &xml, &err), 0, "%s", err.message);
    cr_assert_not_null(xml);
    return xml;
}

/* to_string fails with -EINVAL, code invalid-argument, `what` in the
 * message, and leaves its output alone. */
static void s_builder_refuses(cairn_description_builder_t *b, const char *what)
{
    char *xml = (char *) 0x1;
    cairn_error_t err;
    cr_assert_eq(cairn_description_builder_to_string(b, &xml, &err), -EINVAL,
                 "expected a refusal mentioning '%s'", what);
    cr_assert_eq(xml, (char *) 0x1);
    cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, what), "'%s' not in '%s'", what, err.message);
}

/* A valid CURVE key holding the characters XML must escape. */
#define S_XML_KEY "p<N-fOd*3s9anJ:S1ruwMXj}^9P+kF6I^BH+8NCw"

Test(builder, escapes_hostile_values_and_loads_them_back)
{
    cairn_description_builder_t *b = s_builder_min("/tmp/" S_HOSTILE);
    cairn_error_t err;
    cr_assert_eq(cairn_description_builder_add_key(b, 1, S_XML_KEY,
                                                   "/keys/" S_HOSTILE ".key", &err),
                 0, "%s", err.message);
    char *xml = s_builder_xml(b);
    cr_assert_not_null(strstr(xml, "run-base=\"/tmp/a&quot;&lt;&amp;&gt;'b\""), "%s", xml);
    cr_assert_null(strstr(xml, S_HOSTILE));
    cairn_description_t *d = NULL;
    cr_assert_eq(cairn_description_load_memory(xml, strlen(xml), "b.xml", &d, &err), 0,
                 "%s", err.message);
    cr_assert_str_eq(cairn_description_run_base(d), "/tmp/" S_HOSTILE);
    cr_assert_str_eq(cairn_description_node(d, 0)->rundir, "/tmp/" S_HOSTILE "/bld/1");
    cr_assert_str_eq(cairn_description_key(d, 0)->public_key, S_XML_KEY);
    cr_assert_str_eq(cairn_description_key(d, 0)->secret_path, "/keys/" S_HOSTILE ".key");
    cairn_description_free(d);
    free(xml);
    cairn_description_builder_free(b);
}

Test(builder, round_trips_every_element_through_the_loader)
{
    cairn_error_t err;
    cairn_description_builder_t *b = cairn_description_builder_new("full", "/tmp/full");
    /* sections added out of the schema's order on purpose */
    cr_assert_eq(cairn_description_builder_set_security(b, "curve", &err), 0);
    cr_assert_eq(cairn_description_builder_set_scheduler(b, "spread", &err), 0);
    cr_assert_eq(cairn_description_builder_add_probe(b, "load", 500, &err), 0);
    cairn_membership_desc_t m = { 300, 150, 2, 900, 4 };
    cr_assert_eq(cairn_description_builder_set_membership(b, &m, &err), 0);
    for (uint32_t id = 1; id <= 3; id++) {
        char name[8], addr[16];
        const char *keys[] = { "9:8)ijjnU}[QJfK-!J4Wh41gfCl736{5K0)7NY%#",
                               "nD-SA5*4!*-%b/?13Co:.DMhSn]ya%h@R.w1gI+Y",
                               "]u7[a24MF7OO+ua@+p#c8Vu/@+Mz$xqMmbQ*JVWr" };
        snprintf(name, sizeof(name), "h%u", id);
        snprintf(addr, sizeof(addr), "10.9.1.%u", id);
        cr_assert_eq(cairn_description_builder_add_node(b, id, name, addr,
                                                        id == 3 ? "edge" : "core",
                                                        id == 1, &err), 0);
        cr_assert_eq(cairn_description_builder_add_key(b, id, keys[id - 1], NULL, &err), 0);
    }
    cr_assert_eq(cairn_description_builder_add_appliance(
                     b, "core", (const char *[]){ "clusterd", "ghostd" }, 2, NULL, &err), 0);
    cr_assert_eq(cairn_description_builder_add_appliance(
                     b, "edge", (const char *[]){ "sched-spread" }, 1, "core", &err), 0);
    cr_assert_eq(cairn_description_builder_add_service(b, "clusterd", 7100, 7101, &err), 0);
    cr_assert_eq(cairn_description_builder_add_service(b, "ghostd", 7110, 0, &err), 0);
    cr_assert_eq(cairn_description_builder_add_service(b, "sched-spread", 7150, 0, &err), 0);
    cr_assert_eq(cairn_description_builder_set_metrics_port(b, "ghostd", 9119, &err), 0);
    cr_assert_eq(cairn_description_builder_set_metrics_port(b, "dsmd", 9129, &err), -ENOENT);
    cr_assert(strstr(err.message, "'dsmd'"), "%s", err.message);
    char *xml = s_builder_xml(b);
    cairn_description_t *d = NULL;
    cr_assert_eq(cairn_description_load_memory(xml, strlen(xml), "f.xml", &d, &err), 0,
                 "%s\n%s", err.message, xml);
    cr_assert_eq(cairn_description_n_services(d), 3);
    cr_assert_eq(cairn_description_service(d, "ghostd")->pub_port, 0);
    cr_assert_eq(cairn_description_service(d, "ghostd")->metrics_port, 9119);
    cr_assert_eq(cairn_description_service(d, "clusterd")->metrics_port, 0);
    s_assert_services(d, "edge", (const char *[]){ "clusterd", "ghostd", "sched-spread" }, 3);
    cr_assert_eq(cairn_description_n_nodes(d), 3);
    cr_assert(cairn_description_node(d, 0)->seed);
    cr_assert_not(cairn_description_node(d, 1)->seed);
    cr_assert_str_eq(cairn_description_node(d, 2)->appliance, "edge");
    const cairn_membership_desc_t *got = cairn_description_membership(d);
    cr_assert_eq(got->protocol_period_ms, 300);
    cr_assert_eq(got->gossip_fanout, 4);
    cr_assert_str_eq(cairn_description_policy(d), "spread");
    cr_assert_eq(cairn_description_probe(d, 0)->period_ms, 500);
    cr_assert_str_eq(cairn_description_security_mode(d), "curve");
    cr_assert_eq(cairn_description_n_keys(d), 3);
    /* written twice, the same text */
    char *again = s_builder_xml(b);
    cr_assert_str_eq(xml, again);
    free(again);
    free(xml);
    cairn_description_free(d);
    cairn_description_builder_free(b);
}

Test(builder, is_the_generator)
{
    const char *hosts[] = { "a=10.9.0.1", "10.9.0.2" };
    char *gen = NULL, *built = NULL;
    cairn_description_builder_t *b = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_description_generate("gen", hosts, 2, NULL, "/tmp/g", &gen, &err), 0);
    cr_assert_eq(cairn_description_generate_builder("gen", hosts, 2, NULL, "/tmp/g", &b,
                                                    &err), 0);
    cr_assert_eq(cairn_description_builder_to_string(b, &built, &err), 0);
    cr_assert_str_eq(gen, built);
    free(gen);
    free(built);
    cairn_description_builder_free(b);
}

Test(builder, refuses_invalid_documents_with_the_loaders_reason)
{
    cairn_description_builder_t *b = s_builder_min(NULL);
    cairn_error_t err;
    cr_assert_eq(cairn_description_builder_add_node(b, 2, S_HOSTILE, "10.9.0.2",
                                                    "compute", false, &err), 0);
    s_builder_refuses(b, "node");
    cairn_description_builder_free(b);

    b = s_builder_min(NULL);
    cairn_description_builder_add_node(b, 1, "n2", "10.9.0.2", "compute", false, &err);
    s_builder_refuses(b, "node id 1 is already used");
    cairn_description_builder_free(b);

    b = s_builder_min(NULL);
    cairn_description_builder_add_appliance(b, "web", (const char *[]){ "httpd" }, 1,
                                            NULL, &err);
    s_builder_refuses(b, "httpd");
    cairn_description_builder_free(b);

    b = cairn_description_builder_new(S_HOSTILE, NULL);   /* and no sections */
    s_builder_refuses(b, "cluster");
    cairn_description_builder_free(b);
}

Test(builder, refuses_bad_calls_at_once)
{
    cairn_description_builder_t *b = s_builder_min(NULL);
    cairn_error_t err;
    cr_assert_null(cairn_description_builder_new(NULL, NULL));
    cr_assert_eq(cairn_description_builder_add_probe(b, "load", 1000, &err), -EINVAL);
    cr_assert(strstr(err.message, "set_scheduler"), "%s", err.message);
    cr_assert_eq(cairn_description_builder_add_node(b, 2, NULL, "10.9.0.2", "compute",
                                                    false, &err), -EINVAL);
    cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(cairn_description_builder_add_service(b, NULL, 1, 0, &err), -EINVAL);
    cr_assert_eq(cairn_description_builder_add_appliance(
                     b, "x", (const char *[]){ NULL }, 1, NULL, &err), -EINVAL);
    /* nothing of the refused calls went in */
    char *xml = s_builder_xml(b);
    cr_assert_null(strstr(xml, "probe"));
    free(xml);
    cr_assert_null(cairn_description_builder_free(b));
    cr_assert_null(cairn_description_builder_free(NULL));
}

Test(builder, writes_files_atomically)
{
    char dir[] = "/tmp/cairn-builder-XXXXXX", path[PATH_MAX], bad[PATH_MAX];
    cr_assert_not_null(mkdtemp(dir));
    s_fmt(path, sizeof(path), "%s/cluster.xml", dir);
    s_fmt(bad, sizeof(bad), "%s/missing/cluster.xml", dir);
    cairn_description_builder_t *b = s_builder_min(dir);
    cairn_description_t *d = NULL;
    cairn_error_t err;
    struct stat st;
    cr_assert_eq(cairn_description_builder_write_file(b, path, &err), 0, "%s", err.message);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    cr_assert_eq(cairn_description_load(path, &d, &err), 0, "%s", err.message);
    cr_assert_str_eq(cairn_description_cluster(d), "bld");
    cairn_description_free(d);
    cr_assert_lt(cairn_description_builder_write_file(b, bad, &err), 0);
    cr_assert_eq(err.code, CAIRN_SYSTEM);
    cr_assert_str_eq(err.file, bad);
    /* an invalid document is not written at all */
    cairn_description_builder_add_node(b, 1, "dup", "10.9.0.9", "compute", false, &err);
    unlink(path);
    cr_assert_eq(cairn_description_builder_write_file(b, path, &err), -EINVAL);
    cr_assert_neq(access(path, F_OK), 0);
    cairn_description_builder_free(b);
    cr_assert_eq(rmdir(dir), 0);
}

Test(run_base, the_one_rule)
{
    char out[64];
    cairn_error_t err;
    setenv("CAIRN_RUN_BASE", "/env/base//", 1);
    cr_assert_eq(cairn_run_base("/given/", out, sizeof(out), &err), 0);
    cr_assert_str_eq(out, "/given");
    cr_assert_eq(cairn_run_base(NULL, out, sizeof(out), &err), 0);
    cr_assert_str_eq(out, "/env/base");
    cr_assert_eq(cairn_run_base("relative", out, sizeof(out), &err), -EINVAL);
    cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
    cr_assert_eq(cairn_run_base("/a/very/long/run/base", out, 8, &err), -ENAMETOOLONG);
    unsetenv("CAIRN_RUN_BASE");
    setenv("XDG_RUNTIME_DIR", "/xdg", 1);
    cr_assert_eq(cairn_run_base("", out, sizeof(out), &err), 0);
    cr_assert_str_eq(out, geteuid() == 0 ? CAIRN_DEFAULT_RUN_BASE : "/xdg/cairn");
}
