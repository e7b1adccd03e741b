/* dashboard.c - clusterd's dashboard: the page at / and its JSON at
 * /api/cluster (dashboard.h, docs/metrics.md).
 *
 * Design. The dashboard is a client of this node's services, over their
 * ordinary protocol and the skeleton's asynchronous peers (peer.h): it
 * never reaches into membership.c, and it never blocks the loop. Every
 * DASH_PERIOD_MS it asks clusterd (itself, over tcp like any member) for
 * the members and probed for its load window; while the JSON was read in
 * the last DASH_WATCHED_MS it also asks ghostd for the cluster's jobs,
 * which ghostd gathers from every ghostd -- no page open, no fan-out.
 * Each answer updates what the dashboard keeps (per node a ring of load
 * samples, the jobs, the last migrations) and the JSON is made anew and
 * handed to the HTTP server (cairn_metrics_page), whose thread serves the
 * latest copy. A service that does not answer leaves its part as it was
 * and its error in "errors", shown by the page.
 *
 * A migration is a job whose node differs from the one of the previous
 * answer (or whose `moves` grew): from, to and when it was seen.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn-config.h"
#include "clusterd.pb-c.h"
#include "dashboard.h"
#include "ghostd.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "probed.pb-c.h"
#include "util/clock.h"
#include "util/fileio.h"

#define DASH_PERIOD_MS 1000     /* one round of questions */
#define DASH_WATCHED_MS 30000   /* ghostd is asked while the JSON was read since */
#define DASH_TIMEOUT_MS 900     /* a question's deadline: within the period */
#define DASH_HISTORY 120        /* load samples kept per node */
#define DASH_MIGRATIONS 20      /* migrations listed */
#define DASH_MAX_NODE 255       /* node ids 1..255 */
#define DASH_PAGE_MAX (1 << 20) /* the page's file, at most */

typedef struct dash_sample {
    uint64_t t_ms;              /* unix ms of the sample, at its node */
    double load;                /* CPUs busy */
} dash_sample_t;

typedef struct dash_node {
    uint64_t seq;               /* newest vector's seq seen */
    double cpus;                /* capacity */
    double load;                /* newest cpu_load */
    uint64_t mem_used;          /* bytes */
    uint64_t mem_limit;         /* bytes */
    uint32_t jobs;              /* jobs running there */
    dash_sample_t hist[DASH_HISTORY]; /* ring of samples */
    size_t n_hist, next;        /* how many, where the next goes */
} dash_node_t;

enum { ASK_CLUSTERD, ASK_PROBED, ASK_GHOSTD, ASK_N };
static const char *const s_ask_names[ASK_N] = { "clusterd", "probed", "ghostd" };

struct dashboard {
    cairn_service_t *svc;       /* clusterd */
    cairn_metrics_t *reg;       /* its registry, where the pages go */
    cairn_peers_t *peers[ASK_N];/* to this node's clusterd, probed, ghostd */
    bool asking[ASK_N];         /* a question is out */
    char errors[ASK_N][160];    /* the last question's failure, "" if none */
    int64_t timer;              /* the period, 0 before start */
    dash_node_t *nodes[DASH_MAX_NODE + 1]; /* by id, made on first sample */
    json_t *members;            /* the last members, an array (owned) */
    json_t *jobs;               /* the last jobs, an array (owned) */
    json_t *where;              /* gpid -> [node, moves] of the last jobs (owned) */
    json_t *migrations;         /* the last migrations, oldest first (owned) */
};

/* ---- the JSON ---------------------------------------------------------- */

static json_t *s_node_load(const dash_node_t *n)
{
    json_t *hist = json_array();

    for (size_t i = 0; hist && i < n->n_hist; i++) {
        const dash_sample_t *s =
            &n->hist[(n->next + DASH_HISTORY - n->n_hist + i) % DASH_HISTORY];
        json_array_append_new(hist, json_pack("[I,f]", (json_int_t)s->t_ms, s->load));
    }
    return json_pack("{s:f,s:f,s:I,s:I,s:i,s:o}", "cpus", n->cpus, "cpu_load", n->load,
                     "mem_used_bytes", (json_int_t)n->mem_used, "mem_limit_bytes",
                     (json_int_t)n->mem_limit, "jobs", (int)n->jobs, "history",
                     hist ? hist : json_null());
}

/* The members, each with its load when probed has one. */
static json_t *s_nodes_json(const dashboard_t *db)
{
    json_t *out = json_array(), *m;
    size_t i;

    json_array_foreach(db->members, i, m) {
        json_t *copy = json_deep_copy(m);
        json_int_t id = json_integer_value(json_object_get(m, "id"));
        const dash_node_t *n = id > 0 && id <= DASH_MAX_NODE ? db->nodes[id] : NULL;
        json_object_set_new(copy, "load", n ? s_node_load(n) : json_null());
        json_array_append_new(out, copy);
    }
    return out;
}

static void s_publish(dashboard_t *db)
{
    json_t *errors = json_object();
    char *text;
    int r;

    for (int a = 0; a < ASK_N; a++)
        if (db->errors[a][0])
            json_object_set_new(errors, s_ask_names[a], json_string(db->errors[a]));
    json_t *doc = json_pack(
        "{s:s,s:i,s:I,s:b,s:o,s:O,s:O,s:o}", "cluster",
        cairn_description_cluster(cairn_service_description(db->svc)), "node",
        (int)cairn_service_node(db->svc)->id, "updated_ms",
        (json_int_t)cairn_realtime_ms(), "jobs_known", db->jobs != NULL, "nodes",
        s_nodes_json(db), "jobs", db->jobs ? db->jobs : json_null(),
        "migrations", db->migrations, "errors", errors);
    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        cairn_log_warn(-ENOMEM, "dashboard", "msg=\"cannot make the JSON\", ignoring");
        return;
    }
    r = cairn_metrics_page(db->reg, "/api/cluster", "application/json", text, strlen(text));
    if (r < 0)
        cairn_log_warn(r, "dashboard", "msg=\"cannot publish the JSON\", ignoring");
    free(text);
}

/* ---- answers ----------------------------------------------------------- */

static void s_on_members(dashboard_t *db, const Cairn__Clusterd__NodesReply *nr)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < nr->n_nodes; i++) {
        const Cairn__Clusterd__NodeInfo *n = nr->nodes[i];
        json_array_append_new(a, json_pack("{s:i,s:s,s:s,s:s,s:I}", "id", (int)n->id,
                                           "name", n->name, "address", n->address,
                                           "state", n->state, "last_heard_ms",
                                           (json_int_t)n->last_heard_ms));
    }
    if (!a)
        return;
    json_decref(db->members);
    db->members = a;
}

static void s_add_vector(dashboard_t *db, const Cairn__Probed__LoadVector *v)
{
    dash_node_t *n;

    if (!v || v->node == 0 || v->node > DASH_MAX_NODE)
        return;
    if (!(n = db->nodes[v->node]) && !(n = db->nodes[v->node] = calloc(1, sizeof(*n))))
        return;
    if (n->n_hist && v->seq <= n->seq)
        return;   /* not newer than what we have */
    n->seq = v->seq;
    n->cpus = v->cpus;
    n->load = v->cpu_load;
    n->mem_used = v->mem_used_bytes;
    n->mem_limit = v->mem_limit_bytes;
    n->jobs = v->jobs;
    n->hist[n->next] = (dash_sample_t){ v->sampled_ms, v->cpu_load };
    n->next = (n->next + 1) % DASH_HISTORY;
    if (n->n_hist < DASH_HISTORY)
        n->n_hist++;
}

static void s_on_load(dashboard_t *db, const Cairn__Probed__LoadReply *lr)
{
    s_add_vector(db, lr->local);
    for (size_t i = 0; i < lr->n_known; i++)
        s_add_vector(db, lr->known[i] ? lr->known[i]->vector : NULL);
}

/* Notes a migration of gpid when it was elsewhere (or moved since). */
static void s_note_move(dashboard_t *db, const Cairn__Ghostd__Job *j, json_t *where)
{
    json_t *was = json_object_get(db->where, j->gpid);
    json_int_t from = json_integer_value(json_array_get(was, 0));
    json_int_t moves = json_integer_value(json_array_get(was, 1));

    json_object_set_new(where, j->gpid, json_pack("[i,i]", (int)j->node, (int)j->moves));
    if (!was || (from == j->node && moves == j->moves))
        return;
    json_array_append_new(db->migrations,
                          json_pack("{s:s,s:I,s:i,s:I,s:i}", "gpid", j->gpid, "from", from,
                                    "to", (int)j->node, "seen_ms",
                                    (json_int_t)cairn_realtime_ms(), "moves", (int)j->moves));
    while (json_array_size(db->migrations) > DASH_MIGRATIONS)
        json_array_remove(db->migrations, 0);
}

static json_t *s_job_json(const Cairn__Ghostd__Job *j)
{
    json_t *argv = json_array();

    for (size_t i = 0; argv && i < j->n_argv; i++)
        json_array_append_new(argv, json_string(j->argv[i]));
    return json_pack("{s:s,s:i,s:s,s:i,s:f,s:I,s:i,s:s,s:o}", "gpid", j->gpid, "node",
                     (int)j->node, "state", j->state, "uid", (int)j->uid, "cpu_percent",
                     j->cpu_percent, "rss_bytes", (json_int_t)j->rss_bytes, "moves",
                     (int)j->moves, "name", j->name, "argv", argv ? argv : json_null());
}

static void s_on_jobs(dashboard_t *db, const Cairn__Ghostd__PsReply *pr)
{
    json_t *jobs = json_array(), *where = json_object();

    if (!jobs || !where) {
        json_decref(jobs);
        json_decref(where);
        return;
    }
    for (size_t i = 0; i < pr->n_jobs; i++) {
        const Cairn__Ghostd__Job *j = pr->jobs[i];
        if (!j->gpid || !j->gpid[0])
            continue;
        json_array_append_new(jobs, s_job_json(j));
        s_note_move(db, j, where);
    }
    json_decref(db->jobs);
    json_decref(db->where);
    db->jobs = jobs;
    db->where = where;
}

static void s_answered(dashboard_t *db, int ask, int code, const char *message,
                       ProtobufCMessage *reply)
{
    db->asking[ask] = false;
    if (code != CAIRN_OK) {
        snprintf(db->errors[ask], sizeof(db->errors[ask]), "%s: %s",
                 cairn_code_name(code), message ? message : "");
        s_publish(db);
        return;
    }
    db->errors[ask][0] = '\0';
    if (ask == ASK_CLUSTERD && ((Cairn__Clusterd__Reply *)reply)->nodes_reply)
        s_on_members(db, ((Cairn__Clusterd__Reply *)reply)->nodes_reply);
    else if (ask == ASK_PROBED && ((Cairn__Probed__Reply *)reply)->load_reply)
        s_on_load(db, ((Cairn__Probed__Reply *)reply)->load_reply);
    else if (ask == ASK_GHOSTD && ((Cairn__Ghostd__Reply *)reply)->ps_reply)
        s_on_jobs(db, ((Cairn__Ghostd__Reply *)reply)->ps_reply);
    protobuf_c_message_free_unpacked(reply, NULL);
    s_publish(db);
}

/* One callback per service: a failure carries no reply to tell them by. */
#define S_ON_REPLY(fname, ask)                                                  \
    static void fname(void *userdata, uint32_t node, int code, const char *msg, \
                      ProtobufCMessage *reply)                                  \
    {                                                                           \
        (void)node;                                                             \
        s_answered(userdata, ask, code, msg, reply);                            \
    }
S_ON_REPLY(s_on_clusterd, ASK_CLUSTERD)
S_ON_REPLY(s_on_probed, ASK_PROBED)
S_ON_REPLY(s_on_ghostd, ASK_GHOSTD)

static const cairn_peer_fn s_callbacks[ASK_N] = { s_on_clusterd, s_on_probed, s_on_ghostd };

/* ---- questions --------------------------------------------------------- */

static void s_ask(dashboard_t *db, int ask, const ProtobufCMessage *req)
{
    const cairn_description_t *d = cairn_service_description(db->svc);
    const cairn_node_desc_t *self = cairn_service_node(db->svc);
    char *ep;
    int r;

    if (db->asking[ask])
        return;   /* the last one is still out: its deadline ends it */
    if (!(ep = cairn_description_tcp_endpoint(d, self, s_ask_names[ask], false))) {
        snprintf(db->errors[ask], sizeof(db->errors[ask]),
                 "the description declares no %s", s_ask_names[ask]);
        return;
    }
    r = cairn_peers_call(db->peers[ask], self->id, ep, req, DASH_TIMEOUT_MS,
                         s_callbacks[ask], db);
    free(ep);
    if (r < 0)
        snprintf(db->errors[ask], sizeof(db->errors[ask]), "cannot ask: %s",
                 strerror(-r));
    else
        db->asking[ask] = true;
}

static int s_on_period(cairn_loop_t *loop, int64_t id, void *userdata)
{
    dashboard_t *db = userdata;
    Cairn__Clusterd__NodesRequest nq = CAIRN__CLUSTERD__NODES_REQUEST__INIT;
    Cairn__Clusterd__Request cq = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Probed__LoadRequest lq = CAIRN__PROBED__LOAD_REQUEST__INIT;
    Cairn__Probed__Request pq = CAIRN__PROBED__REQUEST__INIT;
    Cairn__Ghostd__PsRequest sq = CAIRN__GHOSTD__PS_REQUEST__INIT;
    Cairn__Ghostd__Request gq = CAIRN__GHOSTD__REQUEST__INIT;
    uint64_t read = cairn_metrics_page_read_ms(db->reg, "/api/cluster");

    (void)loop;
    (void)id;
    cq.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    cq.nodes = &nq;
    s_ask(db, ASK_CLUSTERD, &cq.base);
    pq.msg_case = CAIRN__PROBED__REQUEST__MSG_LOAD;
    pq.load = &lq;
    s_ask(db, ASK_PROBED, &pq.base);
    if (read && cairn_now_ms() - read < DASH_WATCHED_MS) {
        gq.msg_case = CAIRN__GHOSTD__REQUEST__MSG_PS;
        gq.ps = &sq;
        s_ask(db, ASK_GHOSTD, &gq.base);
    }
    return 0;
}

/* ---- the page ---------------------------------------------------------- */

/* index.html from $CAIRN_DASHBOARD_DIR, the installed data, or the
 * source tree of this build, the first that has one. */
static int s_load_page(dashboard_t *db)
{
    const char *dirs[] = { getenv("CAIRN_DASHBOARD_DIR"), CAIRN_DASHBOARD_DIR,
                           CAIRN_DASHBOARD_SOURCE_DIR };
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char *text = NULL;
        size_t len = 0;
        if (!dirs[i] || !dirs[i][0])
            continue;
        snprintf(path, sizeof(path), "%s/index.html", dirs[i]);
        if (cairn_read_file(path, DASH_PAGE_MAX, &text, &len) < 0)
            continue;
        int r = cairn_metrics_page(db->reg, "/", "text/html; charset=utf-8", text, len);
        free(text);
        if (r == 0)
            cairn_log_info("dashboard", "page=%s", path);
        return r;
    }
    cairn_log_warn(-ENOENT, "dashboard", "msg=\"no index.html in $CAIRN_DASHBOARD_DIR, %s "
                   "or %s: / answers 404, /api/cluster still works\"",
                   CAIRN_DASHBOARD_DIR, CAIRN_DASHBOARD_SOURCE_DIR);
    return 0;
}

/* ---- life -------------------------------------------------------------- */

dashboard_t *dashboard_new(cairn_service_t *svc, int *ret_r)
{
    static const ProtobufCMessageDescriptor *const replies[ASK_N] = {
        &cairn__clusterd__reply__descriptor, &cairn__probed__reply__descriptor,
        &cairn__ghostd__reply__descriptor,
    };
    const cairn_service_desc_t *sd =
        cairn_description_service(cairn_service_description(svc), "clusterd");
    dashboard_t *db;

    *ret_r = 0;
    if (!sd || sd->metrics_port == 0)
        return NULL;
    if (!(db = calloc(1, sizeof(*db))))
        return *ret_r = -ENOMEM, NULL;
    db->svc = svc;
    db->reg = cairn_service_metrics(svc);
    db->migrations = json_array();
    for (int a = 0; a < ASK_N; a++)
        if (!(db->peers[a] = cairn_peers_new(svc, s_ask_names[a], replies[a])))
            *ret_r = -ENOMEM;
    if (!db->migrations)
        *ret_r = -ENOMEM;
    if (*ret_r == 0)
        *ret_r = s_load_page(db);
    if (*ret_r < 0)
        return dashboard_free(db);
    s_publish(db);
    return db;
}

int dashboard_start(dashboard_t *db)
{
    int64_t t;

    if (!db)
        return 0;
    t = cairn_loop_add_timer(cairn_service_loop(db->svc), 1, DASH_PERIOD_MS,
                             s_on_period, db);
    if (t < 0)
        return (int)t;
    db->timer = t;
    return 0;
}

dashboard_t *dashboard_free(dashboard_t *db)
{
    if (!db)
        return NULL;
    if (db->timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(db->svc), db->timer);
    for (int a = 0; a < ASK_N; a++)
        cairn_peers_free(db->peers[a]);
    for (size_t i = 0; i <= DASH_MAX_NODE; i++)
        free(db->nodes[i]);
    json_decref(db->members);
    json_decref(db->jobs);
    json_decref(db->where);
    json_decref(db->migrations);
    free(db);
    return NULL;
}
