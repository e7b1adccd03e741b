/* harness/harness-private.h - what the files of lib/harness share.
 *
 * Not an API (harness.h is): the pieces up, down and hotplug are made of.
 * Each file holds one kind of object in both directions, CRIU's way --
 * netns.c makes, finds and removes namespaces and links, cgroup.c cgroups,
 * procs.c processes, daemons.c starts the daemons -- and up.c, sweep.c and
 * hotplug.c only orchestrate. tests/unit/test-harness.c includes this
 * header to test the pure pieces (plan, batches, state, description)
 * without root.
 *
 * The state document (a jansson object, its fields in
 * docs/local-cluster.md) is the plan every piece reads: names, addresses,
 * cgroup paths and run dirs are computed once, in plan.c, and nowhere
 * else. Functions returning int return 0 or a negative errno with err
 * filled (err may be NULL); JSON handed out is the caller's.
 */
#ifndef CAIRN_HARNESS_PRIVATE_H
#define CAIRN_HARNESS_PRIVATE_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "cairn/description.h"
#include "harness/harness.h"

#define HX_NETNS_DIR     "/run/netns"
#define HX_CG_ROOT       "/sys/fs/cgroup"
#define HX_CPU_PERIOD_US 100000
#define HX_MIN_MEM       (16ull << 20)
#define HX_TERM_GRACE_MS 2000 /* SIGTERM to SIGKILL */
#define HX_KILL_GRACE_MS 2000 /* SIGKILL to giving up */
#define HX_DAEMON_OOM_ADJ "-900" /* a daemon's oom_score_adj (the units' OOMScoreAdjust) */
#define HX_CHECK_MS      1000 /* the traffic check's deadline */
#define HX_CG_BUSY_MS    1000 /* a cgroup's last processes leaving */
#define HX_SUN_PATH_MAX  108
#define HX_HOST_LOCK     "/run/lock/cairn-cluster.lock"
#define HX_BASE_MAX      257 /* a description's run-base is at most 256 bytes */
#define HX_BASE_MARK     ".cairn-harness-made" /* in a run base up created */
#define HX_RELOAD_MS     5000 /* for every daemon to reload the description */

typedef enum { HX_CG_NONE = 0, HX_CG_V1 = 1, HX_CG_V2 = 2 } hx_cg_t;

/* A growable set of pids (no duplicates). */
typedef struct hx_pids {
    pid_t *v;   /* the pids */
    size_t n;   /* used */
    size_t cap; /* allocated */
} hx_pids_t;

/* Growable text (ip batches). */
typedef struct hx_buf {
    char *s;    /* NUL-terminated text, NULL while empty */
    size_t len; /* length */
    size_t cap; /* allocated */
} hx_buf_t;

/* What a plan is made for: found on the host by plan.c, given by tests. */
typedef struct hx_site {
    bool netns; /* namespace mode (root, no --loopback) */
    bool root;  /* euid 0: says which loopback warning applies */
    hx_cg_t cg; /* cgroup hierarchy, HX_CG_NONE in loopback */
    int subnet; /* c of 10.77.c.0/24, -1 in loopback */
} hx_site_t;

/* Everything of one cluster that exists now (sweep.c). */
typedef struct hx_inventory {
    json_t *netns;   /* array of namespace names */
    json_t *links;   /* array of link names (veths, then the bridge) */
    json_t *cgroups; /* array of cgroup dirs, leaves before parents */
    hx_pids_t pids;  /* processes belonging to the cluster */
    bool dir;        /* the cluster directory exists */
} hx_inventory_t;

/* ---- files.c: files, names, text --------------------------------------- */

void hx_sleep_ms(int ms);
bool hx_valid_name(const char *s); /* [a-z0-9]{1,8} */
bool hx_exists(const char *path);
int hx_mkdir_p(const char *path, cairn_error_t *err);
/* Writes value to an existing cgroup or /proc file. */
int hx_write_knob(const char *path, const char *value, cairn_error_t *err);
/* rm -rf, mounts inside detached first; 0 or -errno (errno set too). */
int hx_rm_rf(const char *path);
/* Marks run base `base` as made by the harness (up created it). */
int hx_base_mark(const char *base, cairn_error_t *err);
/* Removes run base `base` if the harness made it (its mark is there) and
 * nothing else is left in it; true if it did. */
bool hx_base_tidy(const char *base);
/* Takes the up/down lock; the fd to close, or -errno. */
int hx_lock(const char *run_base, cairn_error_t *err);
int hx_buf_add(hx_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Newlines as " | ", trailing separators trimmed, into out. */
void hx_one_line(const char *in, char *out, size_t size);
/* True if s is "<prefix><digits>". */
bool hx_match_k(const char *s, const char *prefix);
/* Sorts an array of strings: shorter first, then by bytes. */
void hx_sort_names(json_t *arr);

/* ---- procs.c: processes ------------------------------------------------ */

int hx_proc_stat(pid_t pid, char *ret_state, unsigned long long *ret_start);
/* Runs (not a zombie) and, when start != 0, has that start time. */
bool hx_pid_alive(pid_t pid, unsigned long long start);
int hx_pids_add(hx_pids_t *s, pid_t pid);
void hx_pids_free(hx_pids_t *s);
/* Waits until none of s runs, up to ms; how many still run. */
size_t hx_wait_gone(const hx_pids_t *s, int ms);
/* SIGTERM to all of s at once, up to term_ms for all to exit, SIGKILL to
 * the rest, a grace; how many had to be SIGKILLed. *ret_running (may be
 * NULL): how many ran (got the SIGTERM). */
size_t hx_stop_all(const hx_pids_t *s, int term_ms, size_t *ret_running);
/* hx_stop_all with HX_TERM_GRACE_MS; how many were signalled. */
size_t hx_kill_all(const hx_pids_t *s);
/* argv (NUL-separated) holds --config/-c <config> or --config=<config>. */
bool hx_cmdline_has_config(const char *argv, size_t len, const char *config);
/* Processes in one of the namespaces or (config not NULL) started with
 * the cluster's config, added to pids. */
void hx_find_procs(const json_t *netns, const char *config, hx_pids_t *pids);

/* ---- ipbatch.c: ip(8) and the batches it runs -------------------------- */

/* A running `ip` child: its pid, the read end of its output, its batch. */
typedef struct hx_ip_job {
    pid_t pid;         /* 0 if not started */
    int err_fd;        /* read end of stderr+stdout, -1 if none */
    const char *where; /* "host" or the namespace name, for messages */
    const char *batch; /* the commands it runs (borrowed) */
} hx_ip_job_t;

int hx_ip_start(const char *netns, hx_ip_job_t *job, cairn_error_t *err);
int hx_ip_finish(hx_ip_job_t *job, cairn_error_t *err);
int hx_ip_run(const char *netns, const char *where, const char *batch,
              cairn_error_t *err);
/* The bridge, with its .254 address, up. */
int hx_batch_bridge(hx_buf_t *b, const char *bridge, int subnet);
/* A node's namespace and its veth on the bridge (host side). */
int hx_batch_node_host(hx_buf_t *b, const char *netns, const char *veth,
                       const char *bridge);
/* Inside a node's namespace: lo and eth0 up, its address on eth0. */
int hx_batch_node_inside(hx_buf_t *b, const char *address);
int hx_batch_del_link(hx_buf_t *b, const char *link);
int hx_batch_del_netns(hx_buf_t *b, const char *netns);
/* Runs batch b on the host when it holds anything, or reports `built`, the
 * failure (< 0, out of memory) that stopped its building; frees b's text
 * either way. */
int hx_batch_run_host(hx_buf_t *b, int built, cairn_error_t *err);

/* ---- netns.c: namespaces, links, the subnet ---------------------------- */

/* First c in 0..254 not marked used; -EADDRINUSE when all are. */
int hx_subnet_pick(const bool used[256], int *ret, cairn_error_t *err);
/* hx_subnet_pick over the host's IPv4 addresses in 10.77.0.0/16. */
int hx_subnet_find(int *ret, cairn_error_t *err);
/* c of st's "subnet", -1 in loopback mode. */
int hx_subnet_c(const json_t *st);
/* The host batch of a whole planned cluster (bridge, then every node). */
int hx_batch_cluster(const json_t *st, hx_buf_t *b);
/* Host side in one batch, then every namespace's inside in parallel. */
int hx_net_create(const json_t *st, cairn_error_t *err);
/* One node's namespace, veth and address (hotplug). */
int hx_net_add_node(const json_t *st, const json_t *node, cairn_error_t *err);
void hx_find_netns(const char *name, json_t *out);
void hx_find_links(const char *name, json_t *out);

/* ---- traffic.c --------------------------------------------------------- */

/* TCP from node 1 to every other node: sets "traffic_ok", and "warning"
 * when it failed. */
void hx_check_traffic(json_t *st);

/* ---- cgroup.c ---------------------------------------------------------- */

int hx_cg_detect(hx_cg_t *ret, cairn_error_t *err);
/* The hierarchy st records ("cgroup": "v1", "v2" or null). */
hx_cg_t hx_cg_of(const json_t *st);
/* The directories of node k's cgroup (1 for v2, 2 for v1, 0 for none). */
size_t hx_cg_dirs(hx_cg_t cg, const char *name, unsigned k,
                  char dirs[2][PATH_MAX]);
int hx_cg_create(hx_cg_t cg, const char *name, unsigned k, double cpus,
                 uint64_t mem, cairn_error_t *err);
int hx_cg_create_all(const json_t *st, const harness_opts_t *o,
                     cairn_error_t *err);
/* Cgroup dirs of the cluster (leaves, then the cluster dir) and their
 * processes. */
void hx_find_cgroups(const char *name, json_t *out, hx_pids_t *pids);
/* rmdir, retried while the cgroup's last processes leave. */
int hx_cg_remove(const char *dir, cairn_error_t *err);
/* Removes every dir of cgroups, then the shared "cairn" parents if no
 * other cluster uses them. */
int hx_cg_sweep(const json_t *cgroups, cairn_error_t *err);

/* ---- state.c: the state document --------------------------------------- */

const char *hx_jstr(const json_t *o, const char *key);
int hx_state_save(json_t *st, const char *dir, cairn_error_t *err);
/* <dir>/state.json, NULL if missing or not an object. */
json_t *hx_state_load(const char *dir);
/* Refreshes every service's "running"; how many run. */
size_t hx_state_refresh(json_t *st, size_t *ret_total);
json_t *hx_state_node(const json_t *st, unsigned id, size_t *ret_index);
/* Drops node id from st's nodes and saves st. */
int hx_state_drop(json_t *st, unsigned id, cairn_error_t *err);
/* The pids of node's services still running as started. */
void hx_node_pids(const json_t *node, hx_pids_t *pids);
void hx_state_pids(const json_t *st, hx_pids_t *pids);
/* The pid of a service entry whose process still runs (the same start
 * time: not a reused pid), else 0. */
pid_t hx_svc_running(const json_t *svc);
/* The first running daemon pid of node, 0 if none runs. */
pid_t hx_node_running(const json_t *node);
/* Appends node's service entries (references) to running or gone. */
void hx_node_split(const json_t *node, json_t *running, json_t *gone);
/* The "name" of every service entry of svcs, a new array. */
json_t *hx_svc_names(const json_t *svcs);

/* ---- plan.c: the plan -------------------------------------------------- */

/* The whole state document for o on site (nothing is created); NULL if
 * out of memory. services: [{name, binary}], copied into every node. */
json_t *hx_plan_state(const harness_opts_t *o, const char *name,
                      const char *run_base, const hx_site_t *site,
                      const json_t *services);
/* One node of the plan. */
json_t *hx_plan_node(const json_t *st, const harness_opts_t *o, unsigned k,
                     hx_cg_t cg, int subnet, const json_t *services);
/* hx_plan_state on this host (cgroups, subnet, daemons found). */
int hx_plan(const harness_opts_t *o, const char *name, const char *run_base,
            json_t **ret, cairn_error_t *err);
/* Refuses a run dir whose socket paths would not fit a sockaddr_un;
 * advice ("" or "; ...") ends the message. */
int hx_check_rundir(const char *rundir, const char *advice, cairn_error_t *err);
/* hx_check_rundir for every node of st. */
int hx_check_rundirs(const json_t *st, cairn_error_t *err);
/* The address node id gets in the cluster of st: given, checked against
 * the cluster's network, else the subnet's .<id> (127.0.0.<id>). */
int hx_node_address(const json_t *st, unsigned id, const char *given, char *out,
                    size_t size, cairn_error_t *err);

/* ---- daemons.c --------------------------------------------------------- */

/* [{name, binary}] of every known service whose daemon is installed
 * ("sched" with "policy": the default policy's program). */
int hx_find_services(json_t **ret, cairn_error_t *err);
/* The program of scheduler policy `policy` (sched-<policy>) in out, or
 * false when it is not installed. */
bool hx_find_policy(const char *policy, char *out, size_t size);
/* The policies installed (every sched-<policy> found), sorted; a new
 * array, NULL on ENOMEM. */
json_t *hx_policies(void);
/* Starts service entry svc of node in the node's namespace and cgroups;
 * its "pid" and "start_time" set. */
int hx_spawn_service(const json_t *node, json_t *svc, const char *config,
                     cairn_error_t *err);
int hx_spawn_node(json_t *node, const char *config, cairn_error_t *err);
int hx_spawn_all(json_t *st, cairn_error_t *err);
/* Polls every daemon of nodes until all serve, one dies, or timeout. */
int hx_wait_ready(const json_t *nodes, int timeout_ms, cairn_error_t *err);

/* ---- keys.c: the nodes' CURVE keys -------------------------------------- */

/* st runs security mode curve (a state without "security" ran none). */
bool hx_curve(const json_t *st);
/* A new keypair for node of st: its secret written to
 * <keys_dir>/node-<id>.key (0600; an older file replaced: a node added
 * again gets a new key), node's "key" set to {"public", "fingerprint",
 * "secret_path"}. Nothing in mode none. */
int hx_key_make(const json_t *st, json_t *node, cairn_error_t *err);
/* hx_key_make for every node of st. */
int hx_keys_make_all(json_t *st, cairn_error_t *err);
/* Removes node's secret key file; true if there was one. */
bool hx_key_remove(const json_t *node);

/* ---- reload.c: the daemons reload cluster.xml --------------------------- */

/* SIGHUP to every running daemon of st's nodes but node `skip` (0: none),
 * then waits up to timeout_ms until each has logged that it reloaded the
 * description (its `reloaded` event, in <rundir>/<svc>.log after the
 * signal). A daemon that refuses the file (its `keeping the previous
 * description` line) is an error quoting its log, code
 * failed-precondition; one that does not answer in time is timeout; one
 * that exits meanwhile is skipped (it reads the file when restarted).
 * *ret_count (may be NULL): how many reloaded. */
int hx_reload(const json_t *st, unsigned skip, int timeout_ms,
              size_t *ret_count, cairn_error_t *err);

/* ---- describe.c: cluster.xml ------------------------------------------- */

/* The description of st: default services and timings, one appliance
 * "compute" with the services of node 1, every node of st (the first one
 * the seed) and, in mode curve, <security mode="curve"> with each node's
 * <key> (public key inline, secret at the default path). *ret is the
 * caller's (cairn_description_builder_free). */
int hx_desc_build(const json_t *st, const char *run_base,
                  cairn_description_builder_t **ret, cairn_error_t *err);
/* Writes st's "config" through the builder, loads it back and copies
 * each service's port into st. */
int hx_desc_write(json_t *st, const char *run_base, cairn_error_t *err);
/* hx_desc_write of a cluster made earlier (its run base from st's
 * run_dir): its nodes changed (hotplug). */
int hx_desc_rewrite(json_t *st, cairn_error_t *err);

/* ---- sweep.c: down ----------------------------------------------------- */

int hx_inventory(const char *name, const char *dir, const json_t *st,
                 hx_inventory_t *inv, cairn_error_t *err);
void hx_inventory_free(hx_inventory_t *inv);
bool hx_inventory_empty(const hx_inventory_t *inv);
/* The whole of down, the lock held; ret_result may be NULL. */
int hx_down_locked(const char *name, const char *dir, json_t **ret_result,
                   cairn_error_t *err);

/* ---- up.c -------------------------------------------------------------- */

int hx_check_opts(const harness_opts_t *o, cairn_error_t *err);
/* Refuses (already-exists) the running cluster of st when it differs from
 * what o gives (its *_given fields, loopback): up must not report a
 * cluster of another shape as if it were the one asked for. */
int hx_check_shape(const json_t *st, const harness_opts_t *o,
                   cairn_error_t *err);
int hx_up_locked(const harness_opts_t *o, const char *name,
                 const char *run_base, json_t **ret_result, cairn_error_t *err);

/* ---- hotplug.c --------------------------------------------------------- */

/* Refuses (failed-precondition) a cluster whose up did not finish. */
int hx_check_running(const json_t *st, cairn_error_t *err);
/* Waits for the daemons of the one node (timeout_ms <= 0: the default). */
int hx_wait_node(json_t *node, int timeout_ms, cairn_error_t *err);

/* Address and conflicts of a node to add to the running cluster of st:
 * 0, or 1 when node id is provisioned and none of its daemons runs (a
 * node that left, or crashed: clusterd tells which). */
int hx_hotplug_check(const json_t *st, unsigned id, const char *given,
                     char *out, size_t size, cairn_error_t *err);
int hx_node_add_locked(const char *dir, const harness_node_t *spec,
                       json_t **ret_result, cairn_error_t *err);
int hx_node_remove_locked(const char *dir, unsigned id, int wait_ms,
                          json_t **ret_result, cairn_error_t *err);
int hx_node_stop_locked(const char *dir, unsigned id, int wait_ms,
                        json_t **ret_result, cairn_error_t *err);
int hx_node_restart_locked(const char *dir, unsigned id, int timeout_ms,
                           json_t **ret_result, cairn_error_t *err);

/* ---- sched.c: swapping the scheduler policy ----------------------------- */

int hx_sched_swap_locked(const char *dir, unsigned id, const char *policy,
                         int timeout_ms, json_t **ret_result,
                         cairn_error_t *err);

#endif
