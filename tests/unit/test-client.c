/* test-client.c - unit tests of the lazy-pirate client (libclient/client.c).
 *
 * Each test binds a ROUTER on ipc://<mkdtemp dir>/clusterd.sock in its own
 * zmq context and runs a fake server on a thread. The server's behaviour is
 * a mode (answer, drop the first request, never answer, send a wrong id
 * first, answer with an error, answer garbage); it records every request
 * header it saw so the tests can check what went over the wire: the same
 * request id on every retry, the service, the type, the deadline. The
 * liveness probe (cairn_endpoint_probe) is tested against a live ROUTER, a
 * socket file left with no listener, a missing one and a closed tcp port.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/client.h"
#include "cairn/wire.h"
#include "clusterd.pb-c.h"
#include "util/clock.h"

enum fake_mode {
    FAKE_ANSWER,        /* answer every request with node_id 7 */
    FAKE_DROP_FIRST,    /* ignore the first request, answer the others */
    FAKE_NEVER,         /* never answer */
    FAKE_WRONG_FIRST,   /* send a wrong-id and a non-reply first, then the answer */
    FAKE_ERROR,         /* answer ErrorReply{NOT_FOUND, "no such node"} */
    FAKE_GARBAGE,       /* answer a body that does not decode */
};

#define FAKE_MAX_SEEN 16

typedef struct fake {
    enum fake_mode mode;
    char dir[64];                   /* mkdtemp run directory */
    char endpoint[128];             /* ipc://<dir>/clusterd.sock */
    void *zctx;
    void *router;
    pthread_t thread;
    atomic_bool stop;
    atomic_int n_seen;              /* requests received */
    atomic_int errors;              /* failed checks on the server thread */
    Cairn__Header seen[FAKE_MAX_SEEN]; /* their headers (service not kept) */
    char rid[FAKE_MAX_SEEN][32];    /* their routing ids: which connection */
    size_t rid_len[FAKE_MAX_SEEN];
    char service[64];               /* service of the first request */
} fake_t;

static fake_t fk;

/* Criterion asserts belong to the test's thread; the server thread counts
 * its failures instead, and teardown asserts there were none. */
#define FAKE_CHECK(cond) ((cond) ? true : (atomic_fetch_add(&fk.errors, 1), false))

/* Sends [rid][hdr][body] on the router. */
static void fake_send(const void *rid, size_t rid_len, const Cairn__Header *hdr,
                      const ProtobufCMessage *body)
{
    FAKE_CHECK(zmq_send(fk.router, rid, rid_len, ZMQ_SNDMORE) >= 0);
    FAKE_CHECK(cairn_wire_send(fk.router, hdr, body, 0) == 0);
}

static void fake_answer(const void *rid, size_t rid_len, const Cairn__Header *req,
                        uint32_t node_id)
{
    Cairn__Header hdr;
    Cairn__Status st = CAIRN__STATUS__INIT;
    Cairn__Clusterd__StatusReply sr = CAIRN__CLUSTERD__STATUS_REPLY__INIT;
    Cairn__Clusterd__Reply rep = CAIRN__CLUSTERD__REPLY__INIT;

    cairn_wire_reply_header(req, 3, &hdr);
    sr.node_id = node_id;
    sr.node_name = "n7";
    rep.status = &st;
    rep.msg_case = CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY;
    rep.status_reply = &sr;
    fake_send(rid, rid_len, &hdr, &rep.base);
}

static void fake_wrong_first(const void *rid, size_t rid_len,
                             const Cairn__Header *req)
{
    Cairn__Clusterd__Reply empty = CAIRN__CLUSTERD__REPLY__INIT;
    Cairn__Header bad = *req;

    bad.request_id = req->request_id + 1;
    bad.is_reply = 1;
    fake_answer(rid, rid_len, &bad, 99);   /* another request's reply */
    bad = *req;
    bad.is_reply = 0;                      /* right id, but not a reply */
    fake_send(rid, rid_len, &bad, &empty.base);
    fake_answer(rid, rid_len, req, 7);
}

/* A good reply header, then a body that claims a 127-byte field 1 and ends. */
static void fake_garbage(const void *rid, size_t rid_len, const Cairn__Header *req)
{
    static const uint8_t junk[] = { 0x0a, 0x7f };
    Cairn__Header hdr;
    uint8_t *buf = NULL;
    size_t len = 0;

    cairn_wire_reply_header(req, 3, &hdr);
    if (!FAKE_CHECK(cairn_wire_pack(&hdr.base, &buf, &len) == 0))
        return;
    FAKE_CHECK(zmq_send(fk.router, rid, rid_len, ZMQ_SNDMORE) >= 0);
    FAKE_CHECK(zmq_send(fk.router, buf, len, ZMQ_SNDMORE) >= 0);
    FAKE_CHECK(zmq_send(fk.router, junk, sizeof junk, 0) >= 0);
    free(buf);
}

static void fake_respond(const void *rid, size_t rid_len, const Cairn__Header *req,
                         int n)
{
    switch (fk.mode) {
    case FAKE_ANSWER: fake_answer(rid, rid_len, req, 7); break;
    case FAKE_DROP_FIRST: if (n > 1) fake_answer(rid, rid_len, req, 7); break;
    case FAKE_NEVER: break;
    case FAKE_WRONG_FIRST: fake_wrong_first(rid, rid_len, req); break;
    case FAKE_ERROR:
        FAKE_CHECK(zmq_send(fk.router, rid, rid_len, ZMQ_SNDMORE) >= 0);
        FAKE_CHECK(cairn_wire_send_error(fk.router, req, 3, CAIRN_NOT_FOUND,
                                         "no such node", 0) == 0);
        break;
    case FAKE_GARBAGE: fake_garbage(rid, rid_len, req); break;
    }
}

/* Records one request [rid][hdr][body] and answers it per the mode. */
static void fake_handle(const cairn_frames_t *f)
{
    Cairn__Header *req = NULL;
    int n;

    if (!FAKE_CHECK(f->n == 3) ||
        !FAKE_CHECK(cairn_wire_decode_header(cairn_frames_data(f, 1),
                                             cairn_frames_size(f, 1), &req,
                                             NULL) == 0))
        return;
    n = atomic_load(&fk.n_seen);
    if (n < FAKE_MAX_SEEN) {
        fk.seen[n] = *req;
        fk.seen[n].service = NULL;
        fk.rid_len[n] = cairn_frames_size(f, 0) < sizeof fk.rid[n]
                            ? cairn_frames_size(f, 0) : sizeof fk.rid[n];
        memcpy(fk.rid[n], cairn_frames_data(f, 0), fk.rid_len[n]);
    }
    if (n == 0)
        snprintf(fk.service, sizeof fk.service, "%s", req->service);
    atomic_store(&fk.n_seen, n + 1);
    fake_respond(cairn_frames_data(f, 0), cairn_frames_size(f, 0), req, n + 1);
    cairn__header__free_unpacked(req, NULL);
}

static void *fake_main(void *arg)
{
    zmq_pollitem_t item = { .socket = fk.router, .events = ZMQ_POLLIN };

    (void)arg;
    while (!atomic_load(&fk.stop)) {
        cairn_frames_t f = { 0 };

        if (zmq_poll(&item, 1, 20) <= 0)
            continue;
        if (cairn_wire_recv(fk.router, &f, ZMQ_DONTWAIT) == 0)
            fake_handle(&f);
        cairn_frames_free(&f);
    }
    return NULL;
}

static void fake_start(enum fake_mode mode)
{
    int linger = 0;

    fk.mode = mode;
    fk.zctx = zmq_ctx_new();
    cr_assert_not_null(fk.zctx);
    fk.router = zmq_socket(fk.zctx, ZMQ_ROUTER);
    cr_assert_not_null(fk.router);
    zmq_setsockopt(fk.router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(fk.router, fk.endpoint), 0, "bind %s: %s",
                 fk.endpoint, zmq_strerror(errno));
    cr_assert_eq(pthread_create(&fk.thread, NULL, fake_main, NULL), 0);
}

static void setup(void)
{
    memset(&fk, 0, sizeof fk);
    snprintf(fk.dir, sizeof fk.dir, "/tmp/cairn-test-client-XXXXXX");
    cr_assert_not_null(mkdtemp(fk.dir));
    snprintf(fk.endpoint, sizeof fk.endpoint, "ipc://%s/clusterd.sock", fk.dir);
}

/* Stops the fake server (its socket file stays, as a killed daemon's). */
static void fake_stop(void)
{
    if (!fk.router)
        return;
    atomic_store(&fk.stop, true);
    pthread_join(fk.thread, NULL);
    zmq_close(fk.router);
    zmq_ctx_term(fk.zctx);
    fk.router = fk.zctx = NULL;
    atomic_store(&fk.stop, false);
    cr_expect_eq(atomic_load(&fk.errors), 0, "fake server checks failed");
}

static void teardown(void)
{
    char path[128];

    fake_stop();
    snprintf(path, sizeof path, "%s/clusterd.sock", fk.dir);
    unlink(path);
    rmdir(fk.dir);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 30);

/* Calls Request{status} with the given timeout/retries. */
static int call_status(cairn_client_t *c, Cairn__Clusterd__Reply **ret,
                       cairn_error_t *err)
{
    Cairn__Clusterd__StatusRequest sreq = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;

    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
    req.status = &sreq;
    return cairn_client_call(c, &req.base, &cairn__clusterd__reply__descriptor,
                             (ProtobufCMessage **)ret, err);
}

static cairn_client_t *new_client(int timeout_ms, int retries)
{
    cairn_client_t *c = cairn_client_new(fk.endpoint, "clusterd");

    cr_assert_not_null(c);
    cairn_client_set_timeout(c, timeout_ms);
    cairn_client_set_retries(c, retries);
    return c;
}

Test(client, ok_reply_is_decoded)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(2000, 2);
    cairn_client_set_source_node(c, 5);
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    cr_assert_not_null(rep);
    cr_assert_eq(rep->msg_case, CAIRN__CLUSTERD__REPLY__MSG_STATUS_REPLY);
    cr_assert_eq(rep->status_reply->node_id, 7);
    cr_assert_str_eq(rep->status_reply->node_name, "n7");
    cr_assert_eq(cairn_client_last_attempts(c), 1);
    cr_assert_eq(atomic_load(&fk.n_seen), 1);
    cr_assert_eq(fk.seen[0].version, CAIRN_WIRE_VERSION);
    cr_assert_eq(fk.seen[0].type, CAIRN__CLUSTERD__REQUEST__MSG_STATUS);
    cr_assert_eq(fk.seen[0].source_node, 5);
    cr_assert_eq(fk.seen[0].is_reply, 0);
    cr_assert(fk.seen[0].deadline_ms > 1000 && fk.seen[0].deadline_ms <= 2000,
              "deadline_ms %llu", (unsigned long long)fk.seen[0].deadline_ms);
    cr_assert_str_eq(fk.service, "clusterd");
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    cairn_client_free(c);
}

Test(client, second_call_uses_a_new_request_id)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(2000, 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(call_status(c, &rep, NULL), 0);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    cr_assert_eq(atomic_load(&fk.n_seen), 2);
    cr_assert_neq(fk.seen[0].request_id, fk.seen[1].request_id);
    cr_assert_null(cairn_client_free(c));
}

Test(client, dropped_request_is_retried_with_the_same_id)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_DROP_FIRST);
    c = new_client(900, 2);
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    cr_assert_eq(rep->status_reply->node_id, 7);
    cr_assert_eq(cairn_client_last_attempts(c), 2);
    cr_assert_eq(atomic_load(&fk.n_seen), 2);
    cr_assert_eq(fk.seen[0].request_id, fk.seen[1].request_id);
    cr_assert(fk.seen[1].deadline_ms < fk.seen[0].deadline_ms);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    cairn_client_free(c);
}

Test(client, silent_server_times_out_after_all_attempts)
{
    Cairn__Clusterd__Reply *rep = (void *)&fk;   /* must stay untouched */
    cairn_error_t err;
    cairn_client_t *c;
    uint64_t t0, dt;

    fake_start(FAKE_NEVER);
    c = new_client(600, 2);
    t0 = cairn_now_ms();
    cr_assert_eq(call_status(c, &rep, &err), -ETIMEDOUT);
    dt = cairn_now_ms() - t0;
    cr_assert(dt >= 590 && dt < 900, "took %llu ms", (unsigned long long)dt);
    cr_assert_eq(rep, (void *)&fk);
    cr_assert_eq(err.code, CAIRN_TIMEOUT);
    cr_assert_not_null(strstr(err.message, "clusterd"), "%s", err.message);
    cr_assert_eq(cairn_client_last_attempts(c), 3);
    cr_assert_eq(atomic_load(&fk.n_seen), 3);
    cr_assert_eq(fk.seen[0].request_id, fk.seen[2].request_id);
    cairn_client_free(c);
}

Test(client, no_retries_means_one_attempt)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_client_t *c;

    fake_start(FAKE_NEVER);
    c = new_client(200, 0);
    cr_assert_eq(call_status(c, &rep, NULL), -ETIMEDOUT);
    cr_assert_eq(cairn_client_last_attempts(c), 1);
    cr_assert_eq(atomic_load(&fk.n_seen), 1);
    cairn_client_free(c);
}

Test(client, replies_not_ours_are_dropped)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_WRONG_FIRST);
    c = new_client(2000, 2);
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    cr_assert_eq(rep->status_reply->node_id, 7);
    cr_assert_eq(cairn_client_last_attempts(c), 1);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    cairn_client_free(c);
}

Test(client, error_status_reaches_the_caller)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_ERROR);
    c = new_client(2000, 2);
    cr_assert_eq(call_status(c, &rep, &err), -EREMOTEIO);
    cr_assert_null(rep);
    cr_assert_eq(err.code, CAIRN_NOT_FOUND);
    cr_assert_str_eq(err.message, "no such node");
    cr_assert_eq(cairn_client_last_attempts(c), 1);
    cairn_client_free(c);
}

Test(client, undecodable_reply_is_ebadmsg)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_GARBAGE);
    c = new_client(2000, 2);
    cr_assert_eq(call_status(c, &rep, &err), -EBADMSG, "%s", err.message);
    cr_assert_null(rep);
    cr_assert_eq(err.code, CAIRN_DECODE_ERROR);
    cairn_client_free(c);
}

Test(client, missing_ipc_socket_fails_at_once)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;
    uint64_t t0, dt;
    char path[128];

    c = new_client(5000, 2);   /* nothing bound */
    t0 = cairn_now_ms();
    cr_assert_eq(call_status(c, &rep, &err), -ENOENT);
    dt = cairn_now_ms() - t0;
    cr_assert(dt < 100, "took %llu ms", (unsigned long long)dt);
    cr_assert_null(rep);
    cr_assert_eq(err.code, CAIRN_UNAVAILABLE);
    snprintf(path, sizeof path, "%s/clusterd.sock", fk.dir);
    cr_assert_not_null(strstr(err.message, path), "%s", err.message);
    cr_assert_not_null(strstr(err.message, "clusterd is not running"), "%s",
                       err.message);
    cr_assert_eq(cairn_client_last_attempts(c), 0);
    cairn_client_free(c);
}

/* Leaves a socket file at path with nobody listening on it, as a daemon
 * killed with -9 does. */
static void make_stale_socket(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "%s",
                 strerror(errno));
    cr_assert_eq(listen(fd, 1), 0);
    close(fd);
}

Test(client, stale_ipc_socket_fails_at_once)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;
    uint64_t t0, dt;
    char path[128];

    snprintf(path, sizeof path, "%s/clusterd.sock", fk.dir);
    make_stale_socket(path);
    c = new_client(5000, 2);
    t0 = cairn_now_ms();
    cr_assert_eq(call_status(c, &rep, &err), -ECONNREFUSED);
    dt = cairn_now_ms() - t0;
    cr_assert(dt < 100, "took %llu ms", (unsigned long long)dt);
    cr_assert_null(rep);
    cr_assert_eq(err.code, CAIRN_UNAVAILABLE);
    cr_assert_not_null(strstr(err.message, path), "%s", err.message);
    cr_assert_not_null(strstr(err.message, "no listener (connection refused)"),
                       "%s", err.message);
    cr_assert_eq(cairn_client_last_attempts(c), 0);
    cairn_client_free(c);
}

Test(client, probe_tells_live_missing_and_stale_ipc)
{
    char stale[128], missing[160];
    cairn_error_t err;

    fake_start(FAKE_ANSWER);
    cr_assert_eq(cairn_endpoint_probe(fk.endpoint, "clusterd", 0, &err), 0,
                 "%s", err.message);
    snprintf(stale, sizeof stale, "%s/stale.sock", fk.dir);
    make_stale_socket(stale);
    snprintf(missing, sizeof missing, "ipc://%s", stale);
    cr_assert_eq(cairn_endpoint_probe(missing, "ghostd", 0, &err),
                 -ECONNREFUSED);
    cr_assert_eq(err.code, CAIRN_UNAVAILABLE);
    cr_assert_not_null(strstr(err.message, "ghostd is not running: no "
                                           "listener (connection refused)"),
                       "%s", err.message);
    unlink(stale);
    cr_assert_eq(cairn_endpoint_probe(missing, "ghostd", 0, &err), -ENOENT);
    cr_assert_not_null(strstr(err.message, "no socket at"), "%s", err.message);
    /* a live server still answers after being probed */
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_client_t *c = new_client(2000, 0);

    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    cairn_client_free(c);
}

Test(client, probe_tells_a_closed_tcp_port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    char endpoint[64];
    cairn_error_t err;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* bound, not listening: a connect to it is refused */
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%u",
             ntohs(sa.sin_port));
    cr_assert_eq(cairn_endpoint_probe(endpoint, "clusterd", 200, &err),
                 -ECONNREFUSED);
    cr_assert_eq(err.code, CAIRN_UNAVAILABLE);
    cr_assert_not_null(strstr(err.message, endpoint), "%s", err.message);
    cr_assert_eq(listen(fd, 1), 0);
    cr_assert_eq(cairn_endpoint_probe(endpoint, "clusterd", 200, &err), 0);
    close(fd);
    /* what cannot be probed is left to the request */
    cr_assert_eq(cairn_endpoint_probe("inproc://x", "clusterd", 0, &err), 0);
    cr_assert_eq(cairn_endpoint_probe("tcp://localhost:1", "clusterd", 0, &err),
                 0);
    cr_assert_eq(cairn_endpoint_probe("tcp://nonsense", "clusterd", 0, &err),
                 0);
}

Test(client, request_without_a_message_is_einval)
{
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    ProtobufCMessage *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(2000, 2);
    cr_assert_eq(cairn_client_call(c, &req.base,
                                   &cairn__clusterd__reply__descriptor, &rep,
                                   &err), -EINVAL);
    cr_assert_null(rep);
    cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
    usleep(50 * 1000);
    cr_assert_eq(atomic_load(&fk.n_seen), 0);
    cairn_client_free(c);
}

Test(client, bad_endpoints_are_refused)
{
    static const char *const bad[] = {
        "", "clusterd", "http://127.0.0.1:1", "ipc://", "tcp://", "inproc://",
        "IPC:///run/x.sock",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_null(cairn_client_new(bad[i], "clusterd"), "%s", bad[i]);
        cr_assert_eq(errno, EINVAL, "%s", bad[i]);
    }
    errno = 0;
    cr_assert_null(cairn_client_new(NULL, "clusterd"));
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(cairn_client_new("tcp://127.0.0.1:1", NULL));
    cr_assert_null(cairn_client_free(NULL));
}

Test(client, good_endpoints_are_accepted)
{
    static const char *const good[] = {
        "ipc:///run/cairn/c/1/clusterd.sock", "tcp://10.0.0.1:7001",
        "inproc://clusterd",
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cairn_client_t *c = cairn_client_new(good[i], "clusterd");

        cr_assert_not_null(c, "%s", good[i]);
        cr_assert_eq(cairn_client_last_attempts(c), 0);
        cairn_client_free(c);
    }
}

Test(error, append_keeps_the_code_and_cuts_to_fit)
{
    cairn_error_t err;
    cr_assert_eq(cairn_error_set(&err, -EIO, CAIRN_SYSTEM, "first"), -EIO);
    cr_assert_eq(cairn_error_append(&err, -EPIPE, "; then %d\nmore", 2), -EPIPE);
    cr_assert_str_eq(err.message, "first; then 2 more");
    cr_assert_eq(err.code, CAIRN_SYSTEM);
    char big[2 * CAIRN_ERROR_MESSAGE_MAX];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cairn_error_append(&err, 0, "%s", big);
    cr_assert_eq(strlen(err.message), CAIRN_ERROR_MESSAGE_MAX - 1);
    cr_assert_eq(cairn_error_append(NULL, -1, "x"), -1);
}

/* ---- the kept connection ------------------------------------------------ */

static bool same_rid(int a, int b)
{
    return fk.rid_len[a] == fk.rid_len[b] &&
           memcmp(fk.rid[a], fk.rid[b], fk.rid_len[a]) == 0;
}

Test(client, calls_share_one_connection)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(2000, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(call_status(c, &rep, NULL), 0);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    cr_assert_eq(atomic_load(&fk.n_seen), 3);
    cr_assert(same_rid(0, 1) && same_rid(1, 2), "one connection for all calls");
    cairn_client_free(c);
}

Test(client, send_goes_before_the_next_call_on_its_connection)
{
    Cairn__Clusterd__StatusRequest sreq = CAIRN__CLUSTERD__STATUS_REQUEST__INIT;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(2000, 0);
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_STATUS;
    req.status = &sreq;
    cr_assert_eq(cairn_client_send(c, &req.base, &err), 0, "%s", err.message);
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    cr_assert_eq(atomic_load(&fk.n_seen), 2, "the sent request and the call's");
    cr_assert(same_rid(0, 1), "both on one connection, so in order");
    cr_assert_neq(fk.seen[0].request_id, fk.seen[1].request_id);
    cr_assert(fk.seen[0].no_reply, "the sent request asks for no reply");
    cr_assert_not(fk.seen[1].no_reply, "the call's does");
    req.msg_case = 0;
    cr_assert_eq(cairn_client_send(c, &req.base, &err), -EINVAL);
    cairn_client_free(c);
}

Test(client, a_server_that_restarted_is_reached_again)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(3000, 2);
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    fake_stop();
    fake_start(FAKE_ANSWER);
    uint64_t t0 = cairn_now_ms();
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    cr_assert_lt(cairn_now_ms() - t0, 1000, "not a retry after a timeout");
    cairn_client_free(c);
}

Test(client, a_server_that_died_fails_at_once_on_the_kept_connection)
{
    Cairn__Clusterd__Reply *rep = NULL;
    cairn_error_t err;
    cairn_client_t *c;

    fake_start(FAKE_ANSWER);
    c = new_client(3000, 2);
    cr_assert_eq(call_status(c, &rep, &err), 0, "%s", err.message);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    fake_stop();   /* its socket file stays: nobody listens on it */
    uint64_t t0 = cairn_now_ms();
    int r = call_status(c, &rep, &err);
    cr_assert(r == -ECONNREFUSED || r == -ENOENT, "%d: %s", r, err.message);
    cr_assert_eq(err.code, CAIRN_UNAVAILABLE);
    cr_assert_lt(cairn_now_ms() - t0, 1000, "at once, not at the deadline");
    cairn_client_free(c);
}
