/* cmd-top.c - `cairn top`: nodes and jobs at a glance, kept current by the
 * cluster's events (mosmon's idea, for Cairn).
 *
 * Design. A snapshot first, by the requests the other commands send:
 * `nodes` (clusterd's view of the members), `load` at every node running
 * probed, `ps` (ghostd's fan-out). Then the view follows events, never
 * polling every node each tick:
 *   - clusterd's PUB (topic "node-"): a member's state as it changes;
 *   - each node's probed PUB (topic "load"): the node's load vector at
 *     every sample, with its jobs' cpu and rss;
 *   - jobs: ghostd publishes nothing, so their placement, moves and
 *     arrivals come from one `ps` (one request; ghostd fans it out) every
 *     --interval MS (default 5 s), with one `nodes` request beside it that
 *     repairs a membership event lost before the subscription was up, and
 *     at once after a membership event (a node's death moves or loses
 *     jobs). Their cpu and rss between two of them come from the load
 *     events, which carry each job's share (JobLoad).
 * One SUB socket per endpoint, so each can be a CURVE client of its own
 * node in mode curve (cli_target_secure_socket).
 *
 * Output. On a terminal, a full-screen plain-ANSI view (the alternate
 * screen, redrawn at most S_REDRAW_MS apart, and every second for the
 * ages); q quits; the terminal's mode and screen are restored on q, on
 * SIGINT/SIGTERM and on any error. --json prints one JSON line per refresh
 * instead, --once one snapshot (JSON with --json, else the text frame),
 * without a terminal. The JSON document is in docs/cli.md, "cairn top".
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/wire.h"
#include "cli.h"
#include "output.h"
#include "probed.pb-c.h"
#include "target.h"

#define S_INTERVAL_MS 5000     /* the slow `ps` + `nodes` refresh */
#define S_REDRAW_MS 250        /* at most four frames a second */
#define S_TICK_MS 1000         /* a frame at least this often (ages) */
#define S_MAX_SUBS 257         /* clusterd + one probed per node */

const cairn_option_t cli_top_options[] = {
    { "--once", NULL, "print one snapshot and exit (the text view, or JSON "
      "with --json); needs no terminal" },
    { "--json", NULL, "JSON instead of the screen: one document per refresh "
      "(one in all with --once)" },
    { "--interval", "MS", "how often the jobs (one ps) and the members are "
      "asked again, 500..600000 (default 5000); loads and membership changes "
      "come as events in between" },
    { NULL, NULL, NULL },
};
enum { O_ONCE, O_JSON, O_INTERVAL };

typedef struct s_top {
    cli_ctx *ctx;
    cairn_description_t *d;       /* owned */
    json_t *members;              /* "<id>" -> member object (nodes, events) */
    json_t *loads;                /* "<id>" -> load vector, with "job" */
    json_t *jobs;                 /* ps's jobs */
    json_t *errors;               /* "<what>" -> the last failure's message */
    void *zctx;
    void *subs[S_MAX_SUBS];       /* SUB sockets, owned */
    size_t n_subs;
    uint64_t events;              /* events applied since start */
    bool jobs_due;                /* a membership event: ask ps soon */
    bool load_sub[256];           /* by node id: subscribed to its probed */
} s_top_t;

static volatile sig_atomic_t s_signal;
static volatile sig_atomic_t s_resized;

static void s_on_signal(int sig)
{
    if (sig == SIGWINCH)
        s_resized = 1;
    else
        s_signal = sig;
}

/* ---- the state: snapshot requests ---------------------------------------- */

static void s_note(s_top_t *top, const char *what, const cairn_error_t *err)
{
    if (err)
        json_object_set_new(top->errors, what, json_string(err->message));
    else
        json_object_del(top->errors, what);
}

/* A handler of another command at node id (0: the default target). */
static int s_ask(s_top_t *top, uint32_t id, cli_cmd_fn fn, json_t **ret,
                 cairn_error_t *err)
{
    cli_ctx at = *top->ctx;
    char arg[16];

    at.error_extra = NULL;
    if (id) {
        snprintf(arg, sizeof arg, "%u", id);
        at.node = arg;
    }
    int r = fn(&at, 0, NULL, ret, err);
    json_decref(at.error_extra);
    return r;
}

/* Asks the members again (clusterd's view); err says why not. */
static int s_refresh_members(s_top_t *top, cairn_error_t *err)
{
    _cleanup_json_ json_t *res = NULL;
    json_t *m;
    size_t i;

    int r = s_ask(top, 0, cli_cmd_nodes, &res, err);
    s_note(top, "nodes", r < 0 ? err : NULL);
    if (r < 0)
        return r;
    json_array_foreach(json_object_get(res, "nodes"), i, m) {
        char key[16];
        snprintf(key, sizeof key, "%lld",
                 (long long)json_integer_value(json_object_get(m, "id")));
        json_object_set(top->members, key, m);
    }
    return 0;
}

static void s_refresh_jobs(s_top_t *top)
{
    _cleanup_json_ json_t *res = NULL;
    cairn_error_t err = { 0 };

    top->jobs_due = false;
    if (s_ask(top, 0, cli_cmd_ps, &res, &err) < 0) {
        s_note(top, "ps", &err);
        return;
    }
    s_note(top, "ps", NULL);
    json_decref(top->jobs);
    top->jobs = json_incref(json_object_get(res, "jobs"));
}

static void s_refresh_loads(s_top_t *top)
{
    for (size_t i = 0; i < cairn_description_n_nodes(top->d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(top->d, i);
        _cleanup_json_ json_t *res = NULL;
        cairn_error_t err = { 0 };
        char key[16];

        if (!cairn_description_node_runs(top->d, n, "probed"))
            continue;
        snprintf(key, sizeof key, "%u", n->id);
        if (s_ask(top, n->id, cli_cmd_load, &res, &err) == 0 &&
            json_is_object(json_object_get(res, "local")))
            json_object_set(top->loads, key, json_object_get(res, "local"));
    }
}

/* ---- events ----------------------------------------------------------- */

/* Subscribes to `service`'s PUB at node id (0: the default target). */
static int s_subscribe(s_top_t *top, uint32_t id, const char *service,
                       const char *topic, cairn_error_t *err)
{
    cli_target_t t = { 0 };
    cli_ctx at = *top->ctx;
    char arg[16];
    int linger = 0;

    if (id) {
        snprintf(arg, sizeof arg, "%u", id);
        at.node = arg;
    }
    int r = cli_target_resolve(&at, service, &t, err);
    if (r == 0 && !t.pub_endpoint)
        r = cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE, "%s of node %u "
                            "publishes no events (no pub-port)", service, id);
    void *sub = r == 0 && top->n_subs < S_MAX_SUBS ? zmq_socket(top->zctx, ZMQ_SUB) : NULL;
    if (r == 0 && !sub)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "zmq_socket: %s",
                            zmq_strerror(errno));
    if (r == 0)
        r = cli_target_secure_socket(&t, sub, err);
    if (r == 0) {
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
        if (zmq_connect(sub, t.pub_endpoint) < 0)
            r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "subscribing to %s: %s",
                                t.pub_endpoint, zmq_strerror(errno));
    }
    cli_target_clear(&t);
    if (r < 0) {
        if (sub)
            zmq_close(sub);
        return r;
    }
    top->subs[top->n_subs++] = sub;
    return 0;
}

/* Subscribes to the load events of every node running probed that has no
 * subscription yet; one that cannot be reached now is noted and tried
 * again at the next slow refresh (a restarted probed on the same endpoint
 * is reconnected by libzmq itself). */
static void s_subscribe_loads(s_top_t *top)
{
    for (size_t i = 0; i < cairn_description_n_nodes(top->d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(top->d, i);
        cairn_error_t e = { 0 };
        char what[32];

        if (top->load_sub[n->id] || !cairn_description_node_runs(top->d, n, "probed"))
            continue;
        snprintf(what, sizeof what, "load events of node %u", n->id);
        top->load_sub[n->id] = s_subscribe(top, n->id, "probed", "load", &e) == 0;
        s_note(top, what, top->load_sub[n->id] ? NULL : &e);
    }
}

/* clusterd's events (which top cannot go without), then every probed's. */
static int s_subscribe_all(s_top_t *top, cairn_error_t *err)
{
    int r = s_subscribe(top, 0, "clusterd", "node-", err);

    if (r == 0)
        s_subscribe_loads(top);
    return r;
}

static void s_apply_load(s_top_t *top, zmq_msg_t frames[3])
{
    ProtobufCMessage *body = NULL;
    cairn_error_t e = { 0 };
    char key[16];

    if (cairn_wire_decode_body(&cairn__probed__load_vector__descriptor,
                               zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]), 0,
                               &body, &e) < 0) {
        s_note(top, "load event", &e);
        return;
    }
    const Cairn__Probed__LoadVector *v = (const Cairn__Probed__LoadVector *)body;
    snprintf(key, sizeof key, "%u", v->node);
    json_object_set_new(top->loads, key, cli_load_vector_json(v, true));
    protobuf_c_message_free_unpacked(body, NULL);
}

static void s_apply_member(s_top_t *top, zmq_msg_t frames[3])
{
    _cleanup_json_ json_t *ev = NULL;
    cairn_error_t e = { 0 };
    char key[16];

    if (cli_member_event_json(frames, &ev, &e) < 0) {
        s_note(top, "membership event", &e);
        return;
    }
    json_t *node = json_object_get(ev, "node");
    snprintf(key, sizeof key, "%lld",
             (long long)json_integer_value(json_object_get(node, "id")));
    json_t *m = json_object_get(top->members, key);
    if (m)
        json_object_update(m, node);
    else
        json_object_set(top->members, key, node);
    top->jobs_due = true;
}

/* Applies what sub has now; true when something changed. */
static bool s_drain(s_top_t *top, void *sub)
{
    bool changed = false;
    zmq_msg_t frames[3];
    cairn_error_t e = { 0 };
    int r;

    while ((r = cli_target_recv_event(sub, frames, &e)) != 0) {
        if (r < 0) {
            if (r != -EBADMSG)
                break;
            continue;   /* a malformed event was dropped */
        }
        if (zmq_msg_size(&frames[0]) == 4 && memcmp(zmq_msg_data(&frames[0]), "load", 4) == 0)
            s_apply_load(top, frames);
        else if (zmq_msg_size(&frames[0]) > 5 &&
                 memcmp(zmq_msg_data(&frames[0]), "node-", 5) == 0)
            s_apply_member(top, frames);
        cli_target_close_event(frames);
        top->events++;
        changed = true;
    }
    return changed;
}

/* ---- the snapshot document --------------------------------------------- */

/* o's key, or JSON null: never a missing field (nor a row lost to it). */
static json_t *s_field(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v ? v : json_null();
}

/* o's string key for the text view, "-" when it has none. */
static const char *s_text(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "-";
}

static json_t *s_node_row(const s_top_t *top, const char *key, const json_t *m,
                          uint64_t now)
{
    const json_t *v = json_object_get(top->loads, key);
    json_int_t sampled = json_integer_value(json_object_get(v, "sampled_ms"));
    json_t *row = json_pack("{s:O, s:O, s:O}", "id", s_field(m, "id"),
                            "name", s_field(m, "name"), "state", s_field(m, "state"));

    static const char *const fields[] = { "cpus", "cpu_load", "runnable",
                                          "mem_used_bytes", "mem_limit_bytes", "jobs" };
    for (size_t i = 0; row && i < sizeof fields / sizeof fields[0]; i++) {
        json_t *f = json_object_get(v, fields[i]);
        json_object_set_new(row, fields[i], f ? json_incref(f) : json_null());
    }
    if (row)
        json_object_set_new(row, "load_age_ms", v && sampled
                            ? json_integer((json_int_t)now - sampled) : json_null());
    return row;
}

/* A job's live share from its node's newest vector, or NULL. */
static const json_t *s_job_load(const s_top_t *top, const json_t *job)
{
    char key[16];
    const json_t *jl;
    size_t i;

    snprintf(key, sizeof key, "%lld",
             (long long)json_integer_value(json_object_get(job, "node")));
    json_array_foreach(json_object_get(json_object_get(top->loads, key), "job"), i, jl)
        if (json_equal(json_object_get(jl, "gpid"), json_object_get(job, "gpid")))
            return jl;
    return NULL;
}

static json_t *s_job_row(const s_top_t *top, const json_t *job)
{
    const json_t *jl = s_job_load(top, job);
    char cmd[512] = "";
    json_t *a;
    size_t k;

    json_array_foreach(json_object_get(job, "argv"), k, a) {
        size_t len = strlen(cmd);
        snprintf(cmd + len, sizeof cmd - len, "%s%s", k ? " " : "", json_string_value(a));
    }
    return json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:s}",
                     "gpid", s_field(job, "gpid"), "node", s_field(job, "node"),
                     "state", s_field(job, "state"),
                     "cpu_percent", s_field(job, "cpu_percent"),
                     "cpu", jl ? s_field(jl, "cpu") : json_null(),
                     "rss_bytes", s_field(jl ? jl : job, "rss_bytes"),
                     "moves", s_field(job, "moves"), "command", cmd);
}

/* The view: every member with its newest load, the jobs that have not
 * exited (ended ones are `cairn ps`'s). */
static json_t *s_snapshot(const s_top_t *top)
{
    uint64_t now = cairn_realtime_ms();   /* sampled_ms is the nodes' wall clock */
    json_t *nodes = json_array(), *jobs = json_array(), *m, *job;
    const char *key;
    size_t i;

    json_object_foreach(top->members, key, m)
        json_array_append_new(nodes, s_node_row(top, key, m, now));
    json_array_foreach(top->jobs, i, job)
        if (strcmp(s_text(job, "state"), "exited") != 0)
            json_array_append_new(jobs, s_job_row(top, job));
    return json_pack("{s:s, s:I, s:o*, s:o*, s:I, s:O}", "cluster",
                     cairn_description_cluster(top->d), "time_ms", (json_int_t)now,
                     "nodes", nodes, "jobs", jobs, "events", (json_int_t)top->events,
                     "errors", top->errors);
}

/* ---- the text view ------------------------------------------------------ */

static double s_num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

/* Ends a line: clears what an older, longer frame left there. */
#define S_EOL(ansi) ((ansi) ? "\033[K\n" : "\n")

static void s_render_nodes(FILE *out, const json_t *snap, bool ansi)
{
    const json_t *n;
    size_t i;

    fprintf(out, "%s%-4s %-10s %-8s %5s %6s %8s %8s %5s %5s%s%s", ansi ? "\033[7m" : "",
            "NODE", "NAME", "STATE", "CPUS", "LOAD", "MEM", "LIMIT", "MEM%", "JOBS",
            ansi ? "\033[0m" : "", S_EOL(ansi));
    json_array_foreach(json_object_get(snap, "nodes"), i, n) {
        char used[16] = "-", limit[16] = "-", pct[16] = "-", cpus[16] = "-", load[16] = "-",
             jobs[16] = "-";
        if (json_is_number(json_object_get(n, "cpus"))) {
            snprintf(cpus, sizeof cpus, "%.2f", s_num(n, "cpus"));
            snprintf(load, sizeof load, "%.2f", s_num(n, "cpu_load"));
            cli_size_text(used, sizeof used, (json_int_t)s_num(n, "mem_used_bytes"));
            cli_size_text(limit, sizeof limit, (json_int_t)s_num(n, "mem_limit_bytes"));
            if (s_num(n, "mem_limit_bytes") > 0)
                snprintf(pct, sizeof pct, "%.0f", 100.0 * s_num(n, "mem_used_bytes") /
                                                      s_num(n, "mem_limit_bytes"));
            snprintf(jobs, sizeof jobs, "%.0f", s_num(n, "jobs"));
        }
        fprintf(out, "%-4lld %-10.10s %-8.8s %5s %6s %8s %8s %5s %5s%s",
                (long long)json_integer_value(json_object_get(n, "id")),
                s_text(n, "name"), s_text(n, "state"), cpus, load, used, limit,
                pct, jobs, S_EOL(ansi));
    }
}

static void s_render_jobs(FILE *out, const json_t *snap, bool ansi, int rows)
{
    const json_t *j;
    size_t i;

    fprintf(out, "%s%-10s %-4s %-9s %6s %8s %5s  %s%s%s", ansi ? "\033[7m" : "", "GPID",
            "NODE", "STATE", "CPU%", "RSS", "MOVES", "COMMAND", ansi ? "\033[0m" : "",
            S_EOL(ansi));
    json_array_foreach(json_object_get(snap, "jobs"), i, j) {
        char rss[16], cpu[16];
        if (rows >= 0 && (int)i >= rows) {
            fprintf(out, "... %zu more%s", json_array_size(json_object_get(snap, "jobs")) - i,
                    S_EOL(ansi));
            break;
        }
        cli_size_text(rss, sizeof rss, (json_int_t)s_num(j, "rss_bytes"));
        snprintf(cpu, sizeof cpu, "%.1f", json_is_number(json_object_get(j, "cpu"))
                                              ? 100.0 * s_num(j, "cpu") : s_num(j, "cpu_percent"));
        fprintf(out, "%-10.10s %-4lld %-9.9s %6s %8s %5lld  %.60s%s",
                s_text(j, "gpid"),
                (long long)json_integer_value(json_object_get(j, "node")),
                s_text(j, "state"), cpu, rss,
                (long long)json_integer_value(json_object_get(j, "moves")),
                s_text(j, "command"), S_EOL(ansi));
    }
}

/* One frame: a header, the nodes, the jobs (cut to the screen's height
 * when `height` > 0), the last errors. */
static void s_render(FILE *out, const json_t *snap, bool ansi, int height)
{
    time_t now = (time_t)(json_integer_value(json_object_get(snap, "time_ms")) / 1000);
    const char *what;
    json_t *msg;
    char clock[16];
    struct tm tm;

    strftime(clock, sizeof clock, "%H:%M:%S", localtime_r(&now, &tm));
    if (ansi)
        fputs("\033[H", out);
    fprintf(out, "cairn top - %s - %s - %zu nodes, %zu jobs, %lld events%s%s",
            s_text(snap, "cluster"), clock,
            json_array_size(json_object_get(snap, "nodes")),
            json_array_size(json_object_get(snap, "jobs")),
            (long long)json_integer_value(json_object_get(snap, "events")),
            ansi ? "   (q quits)" : "", S_EOL(ansi));
    s_render_nodes(out, snap, ansi);
    fputs(S_EOL(ansi), out);
    int used = 4 + (int)json_array_size(json_object_get(snap, "nodes")) +
               (int)json_object_size(json_object_get(snap, "errors"));
    s_render_jobs(out, snap, ansi, height > 0 ? (height - used > 1 ? height - used - 1 : 1) : -1);
    json_object_foreach(json_object_get(snap, "errors"), what, msg)
        fprintf(out, "! %s: %.100s%s", what, json_string_value(msg) ? json_string_value(msg) : "",
                S_EOL(ansi));
    if (ansi)
        fputs("\033[J", out);
    fflush(out);
}

/* ---- the terminal ------------------------------------------------------- */

typedef struct s_term {
    struct termios saved;
    bool raw;
} s_term_t;

static int s_term_enter(s_term_t *t, FILE *out, cairn_error_t *err)
{
    struct termios raw;

    if (tcgetattr(STDIN_FILENO, &t->saved) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "tcgetattr: %s", strerror(errno));
    raw = t->saved;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);   /* keys one by one, unseen; ^C stays a signal */
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "tcsetattr: %s", strerror(errno));
    t->raw = true;
    fputs("\033[?1049h\033[?25l\033[H\033[2J", out);   /* alternate screen, no cursor */
    fflush(out);
    return 0;
}

static void s_term_leave(s_term_t *t, FILE *out)
{
    if (!t->raw)
        return;
    fputs("\033[?25h\033[?1049l", out);
    fflush(out);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &t->saved);
    t->raw = false;
}

static int s_height(int fd)
{
    struct winsize ws;

    return ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 ? ws.ws_row : 24;
}

/* Reads the keys typed; true when one was q. */
static bool s_quit_key(void)
{
    char buf[64];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);

    return n > 0 && (memchr(buf, 'q', (size_t)n) || memchr(buf, 'Q', (size_t)n));
}

/* ---- the loop ----------------------------------------------------------- */

/* Prints the current frame (or JSON line); an exit code on a write error,
 * else -1. */
static int s_show(const s_top_t *top, FILE *out, bool json, int height)
{
    _cleanup_json_ json_t *snap = s_snapshot(top);
    cairn_error_t e = { 0 };

    if (!snap) {
        cli_oom(&e);
        cli_print_error(stderr, &e);
        return CLI_EXIT_SYSTEM;
    }
    if (!json) {
        s_render(out, snap, height != 0, height);
        return ferror(out) ? CLI_EXIT_SYSTEM : -1;
    }
    int r = cli_print_json_line(out, snap);
    return r < 0 ? CLI_EXIT_SYSTEM : -1;
}

/* Waits for events, keys and the slow refresh until q, a signal or an
 * output error; the exit code. */
static int s_loop(s_top_t *top, FILE *out, bool json, bool term, long interval)
{
    zmq_pollitem_t items[S_MAX_SUBS + 1];
    uint64_t next_slow = cairn_now_ms() + (uint64_t)interval, last_show = 0, last_ps = 0;
    bool dirty = true;

    while (!s_signal) {
        uint64_t now = cairn_now_ms();
        bool due = dirty && now >= last_show + S_REDRAW_MS;
        if (due || s_resized || (term && now >= last_show + S_TICK_MS)) {
            if (s_resized && term)
                fputs("\033[2J", out);
            s_resized = 0;
            int code = s_show(top, out, json, term ? s_height(STDOUT_FILENO) : 0);
            if (code >= 0)
                return code;
            last_show = now;
            dirty = false;
        }
        uint64_t wake = next_slow;
        if (dirty && last_show + S_REDRAW_MS < wake)
            wake = last_show + S_REDRAW_MS;
        if (term && last_show + S_TICK_MS < wake)
            wake = last_show + S_TICK_MS;
        if (top->jobs_due && last_ps + S_TICK_MS < wake)
            wake = last_ps + S_TICK_MS;
        size_t n = 0;
        for (; n < top->n_subs; n++)
            items[n] = (zmq_pollitem_t){ .socket = top->subs[n], .events = ZMQ_POLLIN };
        if (term)
            items[n++] = (zmq_pollitem_t){ .fd = STDIN_FILENO, .events = ZMQ_POLLIN };
        if (zmq_poll(items, (int)n, wake > now ? (long)(wake - now) : 0) < 0 &&
            errno != EINTR)
            return CLI_EXIT_SYSTEM;
        for (size_t i = 0; i < top->n_subs; i++)
            if (items[i].revents & ZMQ_POLLIN)
                dirty |= s_drain(top, top->subs[i]);
        if (term && (items[n - 1].revents & ZMQ_POLLIN) && s_quit_key())
            return CLI_EXIT_OK;
        now = cairn_now_ms();
        if (now >= next_slow) {   /* members, missing subscriptions, jobs */
            cairn_error_t e = { 0 };
            s_refresh_members(top, &e);   /* noted in the view */
            s_subscribe_loads(top);
            next_slow = now + (uint64_t)interval;
            top->jobs_due = true;
        }
        if (top->jobs_due && now >= last_ps + S_TICK_MS) {   /* at most 1/s */
            s_refresh_jobs(top);
            last_ps = now;
            dirty = true;
        }
    }
    return CLI_EXIT_OK;
}

static int s_args(const cli_ctx *ctx, int argc, char **argv, bool *once, bool *json,
                  long *interval, cairn_error_t *err)
{
    cairn_args_t a;
    int r = cairn_args_parse("top", cli_top_options, argc, argv, 0, &a, err);

    *interval = S_INTERVAL_MS;
    if (r == 0 && a.values[O_INTERVAL])
        r = cairn_parse_long("--interval", a.values[O_INTERVAL], 500, 600000, interval, err);
    if (r == 0 && ctx->table)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "top draws its own view; "
                            "--table cannot be used with it");
    *once = a.values[O_ONCE] != NULL;
    *json = a.values[O_JSON] != NULL;
    if (r == 0 && !*once && !*json && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)))
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "top: the live view needs a "
                            "terminal on stdin and stdout; use --once or --json");
    return r;
}

static s_top_t *s_top_free(s_top_t *top)
{
    for (size_t i = 0; i < top->n_subs; i++)
        zmq_close(top->subs[i]);
    if (top->zctx)
        zmq_ctx_term(top->zctx);
    json_decref(top->members);
    json_decref(top->loads);
    json_decref(top->jobs);
    json_decref(top->errors);
    cairn_description_free(top->d);
    return NULL;
}

/* The snapshot every mode starts from; the subscriptions first (unless
 * once), so what changes while it is taken is heard. */
static int s_start(s_top_t *top, bool once, cairn_error_t *err)
{
    int r = cli_target_load_description(top->ctx, &top->d, err);

    top->members = json_object();
    top->loads = json_object();
    top->jobs = json_array();
    top->errors = json_object();
    if (r == 0 && (!top->members || !top->loads || !top->jobs || !top->errors))
        r = cli_oom(err);
    if (r == 0 && !once && !(top->zctx = zmq_ctx_new()))
        r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "zmq_ctx_new: %s", zmq_strerror(errno));
    if (r == 0 && !once)
        r = s_subscribe_all(top, err);
    if (r < 0)
        return r;
    /* the members are the one thing top cannot show without */
    if ((r = s_refresh_members(top, err)) < 0)
        return r;
    s_refresh_loads(top);
    s_refresh_jobs(top);
    return 0;
}

int cli_cmd_top(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                cairn_error_t *err)
{
    struct sigaction sa = { .sa_handler = s_on_signal }, old[3];
    static const int sigs[3] = { SIGINT, SIGTERM, SIGWINCH };
    s_top_t top = { .ctx = ctx };
    s_term_t term = { 0 };
    bool once, json;
    long interval;

    (void)in;
    int r = s_args(ctx, argc, argv, &once, &json, &interval, err);
    if (r == 0)
        r = s_start(&top, once, err);
    if (r < 0) {
        s_top_free(&top);
        return r;
    }
    if (once) {
        r = s_show(&top, out, json, 0);
        s_top_free(&top);
        return r >= 0 ? r : CLI_EXIT_OK;
    }
    s_signal = s_resized = 0;
    sigemptyset(&sa.sa_mask);   /* no SA_RESTART: a signal ends the poll */
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, &old[i]);
    bool live = !json;
    r = live ? s_term_enter(&term, out, err) : 0;
    if (r == 0)
        r = s_loop(&top, out, json, live, interval);
    s_term_leave(&term, out);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    s_top_free(&top);
    return r;
}
