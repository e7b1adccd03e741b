/* test-service.c - the daemon skeleton, end to end.
 *
 * Each test forks a child running cairn_service_main() with a tiny service
 * that reuses clusterd.proto's Request/Reply but has test handlers: "status"
 * answers with a per-process call counter (so a retry answered from the
 * reply cache is observable), "nodes" defers its reply and answers from a
 * 50 ms loop timer, and a 20 ms timer publishes "tick" events. The parent
 * talks to it with a raw DEALER through cairn_wire_* and checks replies,
 * error statuses, the event, SIGHUP and SIGTERM behaviour and the log.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "cairn/wire.h"
#include "clusterd.pb-c.h"
#include "loop.h"
#include "service.h"

/* ---- the test service (runs in the child) ------------------------------ */

typedef struct {
    cairn_service_t *svc;      /* set by start */
    int status_calls;          /* handler runs of "status" */
    int nodes_calls;           /* handler runs of "nodes" */
    int reloads;               /* accepted reloads */
    cairn_deferred_t *pending; /* the deferred "nodes" request */
} tsvc_t;

static int h_status(void *ctx, cairn_request_t *req)
{
    tsvc_t *t = ctx;
    Cairn__Clusterd__Reply *r = (Cairn__Clusterd__Reply *)cairn_request_reply(req);
    Cairn__Clusterd__StatusReply *s = cairn_request_alloc(req, sizeof(*s));
    char buf[64];

    if (!s)
        return -ENOMEM;
    cairn__clusterd__status_reply__init(s);
    snprintf(buf, sizeof(buf), "calls=%d reloads=%d", ++t->status_calls,
             t->reloads);
    s->version = cairn_request_strdup(req, buf);
    s->node_id = cairn_service_node(t->svc)->id;
    s->pid = (uint32_t)getpid();
    r->status_reply = s;
    r->msg_case = CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY;
    return CAIRN_REPLY_NOW;
}

static int answer_nodes(cairn_loop_t *loop, int64_t id, void *userdata)
{
    tsvc_t *t = userdata;
    Cairn__Clusterd__Reply r = CAIRN__CLUSTERD__REPLY__INIT;
    Cairn__Clusterd__NodesReply nr = CAIRN__CLUSTERD__NODES_REPLY__INIT;
    Cairn__Clusterd__NodeInfo ni = CAIRN__CLUSTERD__NODE_INFO__INIT, *list[1] = { &ni };
    char calls[32];

    snprintf(calls, sizeof(calls), "calls=%d", t->nodes_calls);
    ni.id = cairn_service_node(t->svc)->id;
    ni.name = (char *)cairn_service_node(t->svc)->name;
    ni.state = calls;
    nr.n_nodes = 1;
    nr.nodes = list;
    r.nodes_reply = &nr;
    r.msg_case = CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY;
    cairn_deferred_t *d = t->pending;
    t->pending = NULL;
    cairn_deferred_reply(t->svc, d, &r.base); /* a peer that left is not our error */
    return 0;
}

static int h_nodes(void *ctx, cairn_request_t *req)
{
    tsvc_t *t = ctx;

    t->nodes_calls++;
    if (t->pending)
        return cairn_request_fail(req, CAIRN_BUSY, "one nodes request at a time");
    t->pending = cairn_request_defer(req);
    if (!t->pending)
        return -ENOMEM;
    if (cairn_loop_add_timer(cairn_service_loop(t->svc), 50, 0, answer_nodes, t) < 0)
        return -ENOMEM;
    return CAIRN_REPLY_DEFERRED;
}

static int tick(cairn_loop_t *loop, int64_t id, void *userdata)
{
    tsvc_t *t = userdata;
    Cairn__Clusterd__StatusReply s = CAIRN__CLUSTERD__STATUS_REPLY__INIT;

    s.version = "tick";
    s.uptime_ms = cairn_service_uptime_ms(t->svc);
    return cairn_service_publish(t->svc, "tick", 1, &s.base);
}

static int t_start(cairn_service_t *svc, void *ctx)
{
    ((tsvc_t *)ctx)->svc = svc;
    return 0;
}

static int t_ready(cairn_service_t *svc, void *ctx)
{
    int64_t id = cairn_loop_add_timer(cairn_service_loop(svc), 20, 20, tick, ctx);
    return id < 0 ? (int)id : 0;
}

static int t_reload(cairn_service_t *svc, void *ctx,
                    const cairn_description_t *newd, cairn_error_t *err)
{
    ((tsvc_t *)ctx)->reloads++;
    return 0;
}

static void t_stop(cairn_service_t *svc, void *ctx)
{
    tsvc_t *t = ctx;

    if (t->pending)
        cairn_deferred_fail(svc, t->pending, CAIRN_UNAVAILABLE, "stopping");
    t->pending = NULL;
}

static const cairn_handler_t handlers[] = {
    { CAIRN__CLUSTERD__REQUEST__MSG_STATUS, "status", h_status },
    { CAIRN__CLUSTERD__REQUEST__MSG_NODES, "nodes", h_nodes },
};

static const cairn_service_ops_t ops = {
    .name = "clusterd",
    .request_desc = &cairn__clusterd__request__descriptor,
    .reply_desc = &cairn__clusterd__reply__descriptor,
    .handlers = handlers,
    .n_handlers = 2,
    .start = t_start,
    .ready = t_ready,
    .reload = t_reload,
    .stop = t_stop,
};

/* ---- fixture (parent) -------------------------------------------------- */

static char dir[64];
static char config[128], logpath[128], sock[160], pubsock[160], notifypath[128];
static int notify_fd = -1;  /* datagram socket standing in for systemd's NOTIFY_SOCKET */
static int port;
static pid_t child = -1;
static void *zctx, *dealer;
static void *extra_socks[4];      /* more sockets a test opened; closed in teardown */
static int n_extra;

/* A socket of `type` that teardown closes even if the test fails. */
static void *new_socket(int type)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0;

    cr_assert_not_null(s);
    cr_assert_lt(n_extra, 4);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    extra_socks[n_extra++] = s;
    return s;
}

static void write_config(const char *path, int p)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f);
    fprintf(f,
            "<cluster name=\"t\" run-base=\"%s\">\n"
            "  <services><service name=\"clusterd\" port=\"%d\" pub-port=\"%d\"/></services>\n"
            "  <appliances><appliance name=\"compute\"><use service=\"clusterd\"/></appliance></appliances>\n"
            "  <nodes><node id=\"1\" name=\"n1\" address=\"127.0.0.1\" appliance=\"compute\"/></nodes>\n"
            "</cluster>\n", dir, p, p + 1);
    fclose(f);
}

/* The daemon side: the test binary re-executed with CAIRN_TEST_DAEMON set
 * runs the test service instead of criterion. Re-executing (rather than
 * running in the forked child) gives the daemon a fresh single-threaded
 * process even when the test already has zmq I/O threads. */
__attribute__((constructor)) static void daemon_mode(void)
{
    static tsvc_t t;
    char *config_path = getenv("CAIRN_TEST_DAEMON");
    char *argv[] = { "clusterd", "--config", config_path, "--node", "n1", NULL };

    if (!config_path)
        return;
    int code = cairn_service_main(&ops, &t, 5, argv);
#ifdef __SANITIZE_ADDRESS__
    __lsan_do_leak_check();   /* _exit skips the atexit check; a leak exits 23 */
#endif
    _exit(code);
}

/* Starts a daemon; returns its pid. stderr goes to logpath. */
static pid_t spawn(void)
{
    extern char **environ;
    char var[160], nvar[160], *argv[] = { "clusterd", NULL }, *envp[256];
    char wvar[] = "WATCHDOG_USEC=100000";
    size_t n = 0;
    pid_t pid;

    snprintf(var, sizeof(var), "CAIRN_TEST_DAEMON=%s", config);
    snprintf(nvar, sizeof(nvar), "NOTIFY_SOCKET=%s", notifypath);
    for (char **e = environ; *e && n < 252; e++)
        if (strncmp(*e, "NOTIFY_SOCKET=", 14) && strncmp(*e, "WATCHDOG_", 9))
            envp[n++] = *e;
    envp[n++] = var;
    if (notify_fd >= 0) {   /* only when the test reads it: a full queue blocks */
        envp[n++] = nvar;
        envp[n++] = wvar;
    }
    envp[n] = NULL;
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_WRONLY);
        /* Never outlive the test, never hold the runner's stdout. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    return pid;
}

static bool wait_file(const char *path, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (access(path, F_OK) == 0)
            return true;
        usleep(5000);
    }
    return false;
}

/* waitpid with a deadline; -1 on timeout. */
static int wait_exit(pid_t pid, int ms, int *status)
{
    for (int i = 0; i < ms; i++) {
        if (waitpid(pid, status, WNOHANG) == pid)
            return 0;
        usleep(1000);
    }
    return -1;
}

static void setup(void)
{
    char ep[200];
    int linger = 0;

    strcpy(dir, "/tmp/cairn-svc-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(config, sizeof(config), "%s/cluster.xml", dir);
    snprintf(logpath, sizeof(logpath), "%s/daemon.log", dir);
    snprintf(sock, sizeof(sock), "%s/t/1/clusterd.sock", dir);
    snprintf(pubsock, sizeof(pubsock), "%s/t/1/clusterd.pub.sock", dir);
    srand((unsigned)(getpid() ^ time(NULL)));
    port = 20000 + rand() % 30000;
    write_config(config, port);
    child = spawn();
    cr_assert(wait_file(sock, 3000), "daemon bound its ipc socket");
    zctx = zmq_ctx_new();
    dealer = zmq_socket(zctx, ZMQ_DEALER);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger));
    snprintf(ep, sizeof(ep), "ipc://%s", sock);
    cr_assert_eq(zmq_connect(dealer, ep), 0);
}

static void teardown(void)
{
    int status = 0;
    char cmd[256];

    while (n_extra > 0)
        zmq_close(extra_socks[--n_extra]);
    if (dealer)
        zmq_close(dealer);
    if (zctx)
        zmq_ctx_term(zctx);
    dealer = zctx = NULL;
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
    }
    child = -1;
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- client helpers ---------------------------------------------------- */

static size_t pack_header(uint8_t *buf, uint32_t version, uint64_t id,
                          const char *service, uint32_t type)
{
    Cairn__Header h = CAIRN__HEADER__INIT;

    h.version = version;
    h.request_id = id;
    h.service = (char *)service;
    h.type = type;
    return cairn__header__pack(&h, buf);
}

static size_t pack_request(uint8_t *buf, uint32_t which)
{
    Cairn__Clusterd__Request r = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__StatusRequest s = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__NodesRequest n = CAIRN__CLUSTERD__NODES_REQUEST__INIT;

    if (which == 1) {
        r.status = &s;
        r.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
    } else if (which == 2) {
        r.nodes = &n;
        r.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_NODES;
    }
    return cairn__clusterd__request__pack(&r, buf);
}

static void send_parts(void *s, int n, const void *const *data, const size_t *len)
{
    for (int i = 0; i < n; i++)
        cr_assert_geq(zmq_send(s, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0), 0);
}

/* Sends a well-formed request of `type` (body oneof `body`). */
static void send_request(void *s, uint32_t version, uint64_t id,
                         const char *service, uint32_t type, uint32_t body)
{
    uint8_t h[256], b[64];
    const void *data[2] = { h, b };
    size_t len[2] = { pack_header(h, version, id, service, type), pack_request(b, body) };

    send_parts(s, 2, data, len);
}

typedef struct {
    Cairn__Header *hdr;
    Cairn__Clusterd__Reply *reply;
} reply_t;

/* Waits up to ms for one reply; returns false on timeout. */
static bool recv_reply(void *s, int ms, reply_t *ret)
{
    zmq_pollitem_t it = { .socket = s, .events = ZMQ_POLLIN };
    cairn_frames_t f;
    ProtobufCMessage *body = NULL;

    if (zmq_poll(&it, 1, ms) <= 0)
        return false;
    cr_assert_eq(cairn_wire_recv(s, &f, 0), 0);
    cr_assert_eq(f.n, 2, "a reply is [header][body]");
    cr_assert_eq(cairn_wire_decode_header(cairn_frames_data(&f, 0),
                                          cairn_frames_size(&f, 0), &ret->hdr, NULL), 0);
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__reply__descriptor,
                                        cairn_frames_data(&f, 1),
                                        cairn_frames_size(&f, 1), 0, &body, NULL), 0);
    ret->reply = (Cairn__Clusterd__Reply *)body;
    cairn_frames_free(&f);
    cr_assert(ret->hdr->is_reply);
    cr_assert_not_null(ret->reply->status, "every reply has a Status");
    return true;
}

static void reply_free(reply_t *r)
{
    cairn__header__free_unpacked(r->hdr, NULL);
    cairn__clusterd__reply__free_unpacked(r->reply, NULL);
}

/* Asks "status" and returns the call counter it reports. */
static int status_calls(void *s, uint64_t id)
{
    reply_t r;
    int calls = -1;

    send_request(s, 1, id, "clusterd", 1, 1);
    cr_assert(recv_reply(s, 2000, &r), "status answered");
    cr_assert_eq(r.hdr->request_id, id);
    cr_assert_eq(r.reply->status->code, CAIRN__STATUS_CODE__STATUS_OK,
                 "status: %s", r.reply->status->message);
    cr_assert_eq(r.reply->msg_case, CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY);
    cr_assert_eq(r.reply->status_reply->node_id, 1);
    cr_assert_eq(sscanf(r.reply->status_reply->version, "calls=%d", &calls), 1);
    reply_free(&r);
    return calls;
}

/* Expects an ErrorReply with `code` (and request id `id`), then checks the
 * daemon still answers. */
static void expect_error(int code, uint64_t id)
{
    reply_t r;

    cr_assert(recv_reply(dealer, 2000, &r), "error reply arrived");
    cr_assert_eq(r.reply->status->code, code, "got %d (%s), want %d",
                 r.reply->status->code, r.reply->status->message, code);
    cr_assert_gt(strlen(r.reply->status->message), 0, "the status says why");
    cr_assert_eq(r.hdr->request_id, id);
    cr_assert_eq(r.reply->msg_case, 0);
    reply_free(&r);
    cr_assert_gt(status_calls(dealer, cairn_wire_new_request_id()), 0);
}

static bool log_contains(const char *needle)
{
    char buf[65536];
    FILE *f = fopen(logpath, "r");
    size_t n;

    if (!f)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* Ends a test: SIGTERM must make the daemon exit 0 within 1 s (3 s under
 * sanitizers) and remove its socket files. In a sanitizer build this also
 * checks the daemon for leaks on every path the test drove (a leak makes
 * the exit status non-0); the daemon log is shown when it fails. */
static void stop_daemon(void)
{
    int status = -1;
#ifdef __SANITIZE_ADDRESS__
    const int ms = 3000;
#else
    const int ms = 1000;
#endif

    cr_assert_eq(kill(child, SIGTERM), 0);
    cr_assert_eq(wait_exit(child, ms, &status), 0, "exited within %d ms", ms);
    child = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "cat '%s' >&2", logpath);
        cr_assert_eq(system(cmd), 0);
    }
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0);
    cr_assert_neq(access(sock, F_OK), 0, "ipc socket removed");
    cr_assert_neq(access(pubsock, F_OK), 0, "pub socket removed");
}

/* ---- tests ------------------------------------------------------------- */

TestSuite(service, .init = setup, .fini = teardown, .timeout = 30);

Test(service, good_request_ok_and_retry_is_cached)
{
    uint64_t id = cairn_wire_new_request_id();
    int first = status_calls(dealer, id);

    cr_assert_eq(first, 1);
    cr_assert_eq(status_calls(dealer, id), 1, "a retried id is answered from the cache");
    cr_assert_eq(status_calls(dealer, cairn_wire_new_request_id()), 2);
    cr_assert_eq(status_calls(dealer, 0), 3, "id 0 is never cached");
    cr_assert_eq(status_calls(dealer, 0), 4);
    cr_assert(log_contains("clusterd[1] info ready"), "ready logged");
    cr_assert(log_contains("info bind endpoint=tcp://127.0.0.1:"), "tcp bind logged");
    stop_daemon();
}

Test(service, tcp_endpoint_answers)
{
    void *s = new_socket(ZMQ_DEALER);
    char ep[64];

    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port);
    cr_assert_eq(zmq_connect(s, ep), 0);
    cr_assert_eq(status_calls(s, cairn_wire_new_request_id()), 1);
    stop_daemon();
}

Test(service, garbage_header)
{
    const void *data[2] = { "\xff\xff\xff\xff", "" };
    size_t len[2] = { 4, 0 };

    send_parts(dealer, 2, data, len);
    expect_error(CAIRN_DECODE_ERROR, 0);
    stop_daemon();
}

Test(service, wrong_version)
{
    send_request(dealer, 2, 77, "clusterd", 1, 1);
    expect_error(CAIRN_BAD_VERSION, 0);
    stop_daemon();
}

Test(service, unknown_type)
{
    send_request(dealer, 1, 78, "clusterd", 9, 1);
    expect_error(CAIRN_UNKNOWN_TYPE, 78);
    stop_daemon();
}

Test(service, type_oneof_mismatch)
{
    send_request(dealer, 1, 79, "clusterd", 2, 1);
    expect_error(CAIRN_DECODE_ERROR, 79);
    send_request(dealer, 1, 80, "clusterd", 1, 0);
    expect_error(CAIRN_DECODE_ERROR, 80);
    stop_daemon();
}

Test(service, wrong_service_name)
{
    send_request(dealer, 1, 81, "ghostd", 1, 1);
    expect_error(CAIRN_INVALID_ARGUMENT, 81);
    stop_daemon();
}

Test(service, wrong_frame_counts)
{
    uint8_t h[256], b[64];
    size_t hl = pack_header(h, 1, 82, "clusterd", 1), bl = pack_request(b, 1);
    const void *one[1] = { h };
    const void *five[5] = { h, b, b, b, b };
    size_t len1[1] = { hl }, len5[5] = { hl, bl, bl, bl, bl };

    send_parts(dealer, 1, one, len1);
    expect_error(CAIRN_DECODE_ERROR, 82);
    send_parts(dealer, 5, five, len5);
    expect_error(CAIRN_DECODE_ERROR, 82);
    const void *many[12];
    size_t lenm[12];
    for (int i = 0; i < 12; i++) {
        many[i] = i ? (const void *)b : (const void *)h;
        lenm[i] = i ? bl : hl;
    }
    send_parts(dealer, 12, many, lenm);
    expect_error(CAIRN_DECODE_ERROR, 82);
    stop_daemon();
}

Test(service, oversized_frame)
{
    uint8_t h[256];
    size_t big = CAIRN_WIRE_MAX_FRAME + 1;
    uint8_t *b = calloc(1, big);
    const void *data[2] = { h, b };
    size_t len[2] = { pack_header(h, 1, 83, "clusterd", 1), big };

    send_parts(dealer, 2, data, len);
    free(b);
    expect_error(CAIRN_TOO_LARGE, 83);
    uint8_t hh[CAIRN_WIRE_MAX_HEADER + 1];
    memset(hh, 0, sizeof(hh));
    const void *d2[2] = { hh, h };
    size_t l2[2] = { sizeof(hh), 1 };
    send_parts(dealer, 2, d2, l2);
    expect_error(CAIRN_TOO_LARGE, 0);
    stop_daemon();
}

Test(service, bad_frames_are_logged_rate_limited)
{
    const void *data[2] = { "\xff", "" };
    size_t len[2] = { 1, 0 };
    reply_t r;

    for (int i = 0; i < 40; i++) {
        send_parts(dealer, 2, data, len);
        cr_assert(recv_reply(dealer, 2000, &r));
        reply_free(&r);
    }
    cr_assert(log_contains("warn bad-frame code=decode-error"));
    usleep(1100 * 1000);
    send_parts(dealer, 2, data, len);
    cr_assert(recv_reply(dealer, 2000, &r));
    reply_free(&r);
    cr_assert(log_contains("bad-frame-suppressed count="), "suppressed lines counted");
    stop_daemon();
}

Test(service, deferred_reply_and_pending_retry)
{
    uint64_t id = cairn_wire_new_request_id();
    void *other = new_socket(ZMQ_DEALER);
    char ep[200];
    reply_t r;

    snprintf(ep, sizeof(ep), "ipc://%s", sock);
    cr_assert_eq(zmq_connect(other, ep), 0);
    send_request(dealer, 1, id, "clusterd", 2, 2);
    usleep(10 * 1000);
    /* The retry from a new connection takes over the pending request. */
    send_request(other, 1, id, "clusterd", 2, 2);
    cr_assert(recv_reply(other, 2000, &r), "deferred reply arrived");
    cr_assert_eq(r.hdr->request_id, id);
    cr_assert_eq(r.reply->status->code, 0);
    cr_assert_eq(r.reply->msg_case, CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY);
    cr_assert_eq(r.reply->nodes_reply->n_nodes, 1);
    cr_assert_str_eq(r.reply->nodes_reply->nodes[0]->name, "n1");
    cr_assert_str_eq(r.reply->nodes_reply->nodes[0]->state, "calls=1");
    reply_free(&r);
    /* Once answered, the same id comes from the cache. */
    send_request(other, 1, id, "clusterd", 2, 2);
    cr_assert(recv_reply(other, 2000, &r));
    cr_assert_str_eq(r.reply->nodes_reply->nodes[0]->state, "calls=1");
    reply_free(&r);
    cr_assert_not(recv_reply(dealer, 100, &r), "the old connection gets nothing");
    stop_daemon();
}

Test(service, publish_reaches_ipc_subscriber)
{
    void *sub = new_socket(ZMQ_SUB);
    zmq_pollitem_t it = { .socket = sub, .events = ZMQ_POLLIN };
    char ep[200];
    cairn_frames_t f;
    Cairn__Header *h = NULL;
    ProtobufCMessage *m = NULL;

    cr_assert(wait_file(pubsock, 1000));
    snprintf(ep, sizeof(ep), "ipc://%s", pubsock);
    cr_assert_eq(zmq_connect(sub, ep), 0);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "tick", 4), 0);
    cr_assert_eq(zmq_poll(&it, 1, 2000), 1, "an event arrived");
    cr_assert_eq(cairn_wire_recv(sub, &f, 0), 0);
    cr_assert_eq(f.n, 3);
    cr_assert_eq(cairn_frames_size(&f, 0), 4);
    cr_assert_eq(memcmp(cairn_frames_data(&f, 0), "tick", 4), 0);
    cr_assert_eq(cairn_wire_decode_header(cairn_frames_data(&f, 1),
                                          cairn_frames_size(&f, 1), &h, NULL), 0);
    cr_assert_str_eq(h->service, "clusterd");
    cr_assert_eq(h->source_node, 1);
    cr_assert_eq(cairn_wire_decode_body(&cairn__clusterd__status_reply__descriptor,
                                        cairn_frames_data(&f, 2),
                                        cairn_frames_size(&f, 2), 0, &m, NULL), 0);
    cr_assert_str_eq(((Cairn__Clusterd__StatusReply *)m)->version, "tick");
    protobuf_c_message_free_unpacked(m, NULL);
    cairn__header__free_unpacked(h, NULL);
    cairn_frames_free(&f);
}

/* A subscriber to a sync topic of its own gets one marker on it once the
 * service has taken its subscriptions; one to "tick" only never sees it. */
Test(service, sync_topic_is_answered_once_subscribed)
{
    void *sub = new_socket(ZMQ_SUB), *tick = new_socket(ZMQ_SUB);
    const char *sync = CAIRN_SYNC_TOPIC_PREFIX "test-1";
    zmq_pollitem_t it = { .socket = sub, .events = ZMQ_POLLIN };
    char ep[200];
    cairn_frames_t f;
    Cairn__Header *h = NULL;
    bool marker = false;

    cr_assert(wait_file(pubsock, 1000));
    snprintf(ep, sizeof(ep), "ipc://%s", pubsock);
    cr_assert_eq(zmq_setsockopt(tick, ZMQ_SUBSCRIBE, "tick", 4), 0);
    cr_assert_eq(zmq_connect(tick, ep), 0);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, sync, strlen(sync)), 0);
    cr_assert_eq(zmq_connect(sub, ep), 0);
    while (!marker && zmq_poll(&it, 1, 2000) == 1) {
        cr_assert_eq(cairn_wire_recv(sub, &f, 0), 0);
        cr_assert_eq(f.n, 3, "[topic][Header][empty body]");
        cr_assert_eq(cairn_frames_size(&f, 0), strlen(sync));
        cr_assert_eq(memcmp(cairn_frames_data(&f, 0), sync, strlen(sync)), 0);
        cr_assert_eq(cairn_wire_decode_header(cairn_frames_data(&f, 1),
                                              cairn_frames_size(&f, 1), &h, NULL), 0);
        cr_assert_eq(h->type, 0);
        cr_assert_eq(cairn_frames_size(&f, 2), 0);
        cairn__header__free_unpacked(h, NULL);
        cairn_frames_free(&f);
        marker = true;
    }
    cr_assert(marker, "the sync marker came");
    /* the tick subscriber gets ticks, never the marker */
    zmq_pollitem_t ti = { .socket = tick, .events = ZMQ_POLLIN };
    for (int i = 0; i < 3 && zmq_poll(&ti, 1, 2000) == 1; i++) {
        cr_assert_eq(cairn_wire_recv(tick, &f, 0), 0);
        cr_assert_eq(memcmp(cairn_frames_data(&f, 0), "tick", 4), 0);
        cairn_frames_free(&f);
    }
}

/* Garbage on the event socket (an XSUB may send any frames): ignored; the
 * service still answers requests and sync subscriptions. */
Test(service, garbage_on_the_event_socket_is_ignored)
{
    void *x = new_socket(ZMQ_XSUB), *sub = new_socket(ZMQ_SUB);
    const char *sync = CAIRN_SYNC_TOPIC_PREFIX "after-garbage";
    char ep[200], big[1000];
    reply_t r;

    cr_assert(wait_file(pubsock, 1000));
    snprintf(ep, sizeof(ep), "ipc://%s", pubsock);
    cr_assert_eq(zmq_connect(x, ep), 0);
    usleep(100000);
    memset(big, 1, sizeof(big));
    memcpy(big + 1, CAIRN_SYNC_TOPIC_PREFIX, strlen(CAIRN_SYNC_TOPIC_PREFIX));
    zmq_send(x, "", 0, 0);                              /* empty */
    zmq_send(x, "\x05junk", 5, 0);                      /* not (un)subscribe */
    zmq_send(x, big, sizeof(big), 0);                   /* a sync topic too long */
    zmq_send(x, "\x01a", 2, ZMQ_SNDMORE);               /* multipart */
    zmq_send(x, "\x01" CAIRN_SYNC_TOPIC_PREFIX, 1 + strlen(CAIRN_SYNC_TOPIC_PREFIX), 0);
    zmq_send(x, "\x00nothing", 8, 0);                   /* unsubscribe unknown */
    usleep(100000);
    send_request(dealer, 1, cairn_wire_new_request_id(), "clusterd", 1, 1);
    cr_assert(recv_reply(dealer, 2000, &r), "the service still answers");
    reply_free(&r);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, sync, strlen(sync)), 0);
    cr_assert_eq(zmq_connect(sub, ep), 0);
    zmq_pollitem_t it = { .socket = sub, .events = ZMQ_POLLIN };
    cr_assert_eq(zmq_poll(&it, 1, 2000), 1, "sync still answered");
}

static int reloads_reported(void)
{
    reply_t r;
    int calls = 0, reloads = -1;

    send_request(dealer, 1, cairn_wire_new_request_id(), "clusterd", 1, 1);
    cr_assert(recv_reply(dealer, 2000, &r));
    cr_assert_eq(sscanf(r.reply->status_reply->version, "calls=%d reloads=%d",
                        &calls, &reloads), 2);
    reply_free(&r);
    return reloads;
    stop_daemon();
}

Test(service, sighup_reload_good_and_broken)
{
    FILE *f;

    cr_assert_eq(reloads_reported(), 0);
    cr_assert_eq(kill(child, SIGHUP), 0);
    usleep(200 * 1000);
    cr_assert_eq(reloads_reported(), 1, "a valid description is reloaded");
    f = fopen(config, "w");
    fputs("<cluster name=\"t\"><broken", f);
    fclose(f);
    cr_assert_eq(kill(child, SIGHUP), 0);
    usleep(200 * 1000);
    cr_assert_eq(reloads_reported(), 1, "a broken one is refused");
    cr_assert(log_contains("err reload file="), "the reason is logged");
    cr_assert(log_contains("keeping the previous description"));
    stop_daemon();
}

/* Waits up to ms for a notify datagram containing `needle`. */
static bool notified(const char *needle, int ms)
{
    uint64_t end = cairn_now_ms() + (uint64_t)ms;
    char buf[1024];

    while (cairn_now_ms() < end) {
        struct timeval tv = { .tv_usec = 10000 };
        setsockopt(notify_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(notify_fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        if (strstr(buf, needle))
            return true;
    }
    return false;
}

/* Restarts the daemon with NOTIFY_SOCKET and WATCHDOG_USEC=100000. */
static void restart_with_notify(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    stop_daemon();
    snprintf(notifypath, sizeof(notifypath), "%s/notify", dir);
    strcpy(sa.sun_path, notifypath);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(notify_fd, 0);
    cr_assert_eq(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    child = spawn();
    cr_assert(wait_file(sock, 3000));
}

Test(service, sd_notify_ready_watchdog_reload_stopping)
{
    restart_with_notify();
    cr_assert(notified("READY=1", 1000), "READY after bind");
    cr_assert(notified("WATCHDOG=1", 500), "watchdog pinged at half of 100 ms");
    cr_assert(notified("WATCHDOG=1", 500), "and again");
    cr_assert_eq(kill(child, SIGHUP), 0);
    cr_assert(notified("RELOADING=1", 1000));
    cr_assert(notified("READY=1", 1000), "READY again after the reload");
    cr_assert(log_contains("info watchdog interval-ms=50"));
    cr_assert_eq(kill(child, SIGTERM), 0);
    cr_assert(notified("STOPPING=1", 1000));
    stop_daemon();
}

Test(service, sigterm_exits_zero_and_cleans_up)
{
    cr_assert_gt(status_calls(dealer, cairn_wire_new_request_id()), 0);
    stop_daemon();
    cr_assert(log_contains("info stopping"));
    cr_assert(log_contains("info stopped"));
}

Test(service, second_daemon_refuses_to_start)
{
    int status = -1;
    pid_t second = spawn();

    int waited = wait_exit(second, 3000, &status);
    if (waited < 0)
        kill(second, SIGKILL), waitpid(second, &status, 0);
    cr_assert_eq(waited, 0, "the second daemon gave up within 3 s");
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 1);
    cr_assert(log_contains("another clusterd is running"));
    /* The refusal says who holds the socket and how to part the two. */
    char holder[64];
    snprintf(holder, sizeof(holder), "another clusterd is running: pid %d", (int)child);
    cr_assert(log_contains(holder), "the refusal names pid %d", (int)child);
    cr_assert(log_contains("cairn config generate --name NAME"));
    cr_assert(access(sock, F_OK) == 0, "the first daemon's socket stays");
    cr_assert_eq(status_calls(dealer, cairn_wire_new_request_id()), 1);
    stop_daemon();
}

Test(service, stale_socket_is_replaced)
{
    int status = -1;

    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    child = -1;
    cr_assert_eq(access(sock, F_OK), 0, "a killed daemon leaves its socket file");
    child = spawn();
    usleep(300 * 1000);
    cr_assert_eq(waitpid(child, &status, WNOHANG), 0, "the new daemon runs");
    cr_assert_eq(status_calls(dealer, cairn_wire_new_request_id()), 1);
    stop_daemon();
}

/* Usage errors do not need a running daemon. */
Test(usage, bad_option_is_100_help_is_0)
{
    static tsvc_t t;
    char *bad[] = { "clusterd", "--bogus", NULL };
    char *positional[] = { "clusterd", "extra", NULL };
    char *help[] = { "clusterd", "--help", NULL };
    char *version[] = { "clusterd", "--version", NULL };
    char *missing[] = { "clusterd", "--config", "/nonexistent/cluster.xml", NULL };

    cr_assert_eq(cairn_service_main(&ops, &t, 2, bad), 100);
    cr_assert_eq(cairn_service_main(&ops, &t, 2, positional), 100);
    cr_assert_eq(cairn_service_main(&ops, &t, 2, help), 0);
    cr_assert_eq(cairn_service_main(&ops, &t, 2, version), 0);
    cr_assert_eq(cairn_service_main(&ops, &t, 3, missing), 1);
}
