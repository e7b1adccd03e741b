/* zmq-rtt - raw libzmq round trip and throughput, plain and with CURVE.
 *
 * The baseline of bench/cluster.sh, two processes, any endpoint:
 *   zmq-rtt server ENDPOINT [--curve]       echo every request (until
 *                                           killed); --curve: a CURVE server
 *                                           with a fresh keypair, which first
 *                                           prints its public key as one
 *                                           JSON line on stdout
 *   zmq-rtt client ENDPOINT COUNT [--curve KEY]
 *                                           COUNT round trips of a 64-byte
 *                                           REQ/REP message after 100 of
 *                                           warm-up; prints one JSON line
 *                                           with the median, p99 and min RTT
 *                                           in µs; --curve pins the server's
 *                                           public key (Z85)
 * What CURVE costs on the wire (issue 17), self-contained:
 *   zmq-rtt compare [--transport tcp|ipc] [--count N] [--size BYTES]
 *                   [--msgs M] [--runs R] [--io-threads T] [--pin]
 *     R runs, each against a server process of its own (its own context,
 *     like another node) over 127.0.0.1 or an ipc socket. The server has
 *     two sockets, one plain and one CURVE, and so has the client: the
 *     same threads carry both modes, which take turns, so both see the same
 *     moments of this noisy machine. A run: N round trips of 64 bytes
 *     (REQ/REP) per mode in blocks of 100, then M messages of BYTES per
 *     mode (PUSH/PULL, a full pipe in flight; M rounded down to whole
 *     tenths) in 10 blocks, each timed from its first send until the
 *     receiver acknowledges its last message. Prints one JSON line: the
 *     medians over the runs, the ratios curve/plain (medians of each
 *     run's) against issue 17's targets, the CPU time per streamed message, what libsodium's
 *     crypto_box alone costs per message of those sizes, and the load
 *     average (this machine is shared). --pin keeps this process on CPU 0
 *     and the servers on CPU 1: two "nodes" of one CPU each.
 * Exits 1 with a message on stderr on any error (a client gives up after
 * 5 s without an answer), 2 on a usage error.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>
#ifdef ZMQ_RTT_SODIUM
#include <sodium.h>
#endif

#include "util/clock.h"

/* The request size cluster.sh's baseline has always used. */
#define RTT_SIZE 64
#define RTT_WARMUP 100
/* compare's round trips take turns between the modes this often. */
#define RTT_BLOCK 100
/* compare's streams: this many timed blocks per run and mode. */
#define STREAM_BLOCKS 10
/* A client waits this long for an answer before it calls the server gone. */
#define CLIENT_TIMEOUT_MS 5000
/* compare's servers give up on a silent client after this long, and leave
 * this long for their last reply to go out when they close. */
#define SERVER_TIMEOUT_MS 10000
#define SERVER_LINGER_MS 1000
/* At most this many runs. */
#define MAX_RUNS 101
/* Issue 17's targets. */
#define TARGET_RTT_RATIO 1.2
#define TARGET_THROUGHPUT_RATIO 0.5

/* A CURVE identity as zmq_curve_keypair writes it: Z85 text. */
struct keypair {
    char pub[41], sec[41];
};

struct rtt_stats {
    double median_us, p99_us, min_us;
};

/* compare's settings. */
struct cfg {
    const char *transport;    /* "tcp" or "ipc" */
    long count;               /* round trips per run and mode */
    long size;                /* bytes per stream message */
    long msgs;                /* stream messages per run and mode */
    long runs;
    long io_threads;          /* ZMQ_IO_THREADS of every context */
    int pin;                  /* the client on CPU 0, every server on CPU 1 */
};

/* One measurement of compare: round trips or a stream, in one run. Mode
 * 0 is plain, 1 CURVE, everywhere. */
struct trial {
    int stream;
    long run;
    const struct cfg *cfg;
    const struct keypair *server_keys, *client_keys;
};

/* One block of a trial's schedule, which both ends follow. */
struct block {
    int mode;
    long n;                   /* round trips or messages */
    int timed;
};

/* A compare server process: its endpoints (one per mode) and the pipe
 * it reports through. */
struct server {
    pid_t pid;
    int fd;
    char endpoint[2][256];
};

/* What a stream measurement yields, per mode. */
struct stream_figures {
    double mb_s, msgs_s;
    double cpu_us_per_msg;    /* CPU time of both processes, all threads */
    double cores;             /* cpu_us_per_msg over the wall time per message */
};

/* Everything compare measured, per mode and run. */
struct results {
    double rtt_med[2][MAX_RUNS], rtt_p99[2][MAX_RUNS], rtt_min[2][MAX_RUNS];
    double mb_s[2][MAX_RUNS], msgs_s[2][MAX_RUNS];
    double cpu_us_per_msg[2][MAX_RUNS], cores[2][MAX_RUNS];
};

static int die(const char *what)
{
    fprintf(stderr, "zmq-rtt: %s: %s\n", what, zmq_strerror(zmq_errno()));
    return -1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of 1 <= n <= MAX_RUNS values (the upper one of an even
 * count). */
static double median(const double *v, long n)
{
    double s[MAX_RUNS];
    memcpy(s, v, (size_t)n * sizeof(*v));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return s[n / 2];
}

static int set_int(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof(v));
}

/* A context with io_threads I/O threads: every message of a connection is
 * framed (and, with CURVE, boxed and unboxed) on one of them. */
static void *ctx_new(long io_threads)
{
    void *ctx = zmq_ctx_new();
    if (!ctx)
        return NULL;
    if (zmq_ctx_set(ctx, ZMQ_IO_THREADS, (int)io_threads) != 0) {
        zmq_ctx_term(ctx);
        return NULL;
    }
    return ctx;
}

/* A socket that waits at most timeout_ms in the direction that can block
 * (opt) and lingers linger_ms at close. */
static void *sock_new(void *ctx, int type, int opt, int timeout_ms, int linger_ms)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        return NULL;
    if (set_int(s, ZMQ_LINGER, linger_ms) != 0 || set_int(s, opt, timeout_ms) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int curve_server(void *s, const struct keypair *server)
{
    if (set_int(s, ZMQ_CURVE_SERVER, 1) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, server->sec, sizeof(server->sec)) != 0)
        return die("CURVE server options");
    return 0;
}

/* The client pins the server's public key: a server without the matching
 * secret key cannot complete the handshake. */
static int curve_client(void *s, const char *server_pub, const struct keypair *client)
{
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 41) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client->pub, sizeof(client->pub)) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client->sec, sizeof(client->sec)) != 0)
        return die("CURVE client options");
    return 0;
}

static int keypair_new(struct keypair *k)
{
    if (!zmq_has("curve")) {
        fprintf(stderr, "zmq-rtt: this libzmq was built without CURVE\n");
        return -1;
    }
    if (zmq_curve_keypair(k->pub, k->sec) != 0)
        return die("zmq_curve_keypair");
    return 0;
}

/* A server's public key from the command line: 40 Z85 characters. */
static int key_valid(const char *z85)
{
    uint8_t raw[32];
    return strlen(z85) == 40 && zmq_z85_decode(raw, z85) != NULL;
}

/* Answer n requests (n < 0: until an error) with their first 256 bytes. */
static int echo_n(void *s, long n)
{
    char buf[256];
    long done = 0;
    while (n < 0 || done < n) {
        int got = zmq_recv(s, buf, sizeof(buf), 0);
        if (got < 0 && zmq_errno() == EINTR)
            continue;
        if (got < 0)
            return die("recv");
        if (zmq_send(s, buf, got > (int)sizeof(buf) ? sizeof(buf) : (size_t)got, 0) < 0)
            return die("send");
        done++;
    }
    return 0;
}

/* n round trips of RTT_SIZE bytes on s, their times in ns into rtt (NULL:
 * untimed, a warm-up; the first round trip also waits for the connection
 * and, with CURVE, its handshake). */
static int round_trips(void *s, long n, uint64_t *rtt)
{
    char msg[RTT_SIZE], buf[256];
    memset(msg, 'x', sizeof(msg));
    for (long i = 0; i < n; i++) {
        uint64_t t0 = cairn_now_ns();
        if (zmq_send(s, msg, sizeof(msg), 0) < 0)
            return die("send");
        int got = zmq_recv(s, buf, sizeof(buf), 0);
        if (got < 0)
            return die("recv (is the server running?)");
        if (got != RTT_SIZE) {
            fprintf(stderr, "zmq-rtt: a reply of %d bytes, not %d\n", got, RTT_SIZE);
            return -1;
        }
        if (rtt)
            rtt[i] = cairn_now_ns() - t0;
    }
    return 0;
}

/* Median, p99 and min of n >= 1 samples in ns (sorts them). */
static void rtt_stats_of(uint64_t *rtt, long n, struct rtt_stats *out)
{
    qsort(rtt, (size_t)n, sizeof(*rtt), cmp_u64);
    out->median_us = rtt[n / 2] / 1000.0;
    out->p99_us = rtt[(n * 99) / 100] / 1000.0;
    out->min_us = rtt[0] / 1000.0;
}

static uint64_t *samples_new(long n)
{
    uint64_t *v = calloc((size_t)n, sizeof(*v));
    if (!v)
        fprintf(stderr, "zmq-rtt: out of memory\n");
    return v;
}

/* ---- server and client: the two-process baseline of cluster.sh ---- */

static int cmd_server(const char *ep, int curve)
{
    void *ctx = ctx_new(1);
    if (!ctx)
        return die("zmq_ctx_new");
    void *s = zmq_socket(ctx, ZMQ_REP);
    struct keypair keys;
    int r = s ? 0 : die("zmq_socket");
    if (r == 0 && curve)
        r = keypair_new(&keys) != 0 || curve_server(s, &keys) != 0 ? -1 : 0;
    if (r == 0 && zmq_bind(s, ep) != 0)
        r = die(ep);
    if (r == 0 && curve) {
        /* Announce the key only once bound, so a reader of this line can
         * connect at once. */
        printf("{\"bench\":\"zmq-rtt-server\",\"endpoint\":\"%s\",\"curve_server_key\":\"%s\"}\n",
               ep, keys.pub);
        if (fflush(stdout) != 0)
            r = die("stdout");
    }
    if (r == 0)
        r = echo_n(s, -1);
    if (s)
        zmq_close(s);
    zmq_ctx_term(ctx);
    return r;
}

/* RTT_WARMUP untimed round trips, then count timed ones. */
static int cmd_client(const char *ep, long count, const char *server_key)
{
    void *ctx = ctx_new(1);
    if (!ctx)
        return die("zmq_ctx_new");
    void *s = sock_new(ctx, ZMQ_REQ, ZMQ_RCVTIMEO, CLIENT_TIMEOUT_MS, 0);
    uint64_t *rtt = samples_new(count);
    struct keypair keys;
    struct rtt_stats st;
    int r = s ? 0 : die("zmq_socket");
    if (!rtt)
        r = -1;
    if (r == 0 && server_key)
        r = keypair_new(&keys) != 0 || curve_client(s, server_key, &keys) != 0 ? -1 : 0;
    if (r == 0 && zmq_connect(s, ep) != 0)
        r = die(ep);
    if (r == 0)
        r = round_trips(s, RTT_WARMUP, NULL);
    if (r == 0)
        r = round_trips(s, count, rtt);
    if (r == 0) {
        rtt_stats_of(rtt, count, &st);
        /* The plain line is the one cluster.sh has always parsed. */
        printf("{\"bench\":\"zmq-rtt\",\"endpoint\":\"%s\",\"count\":%ld,"
               "\"median_us\":%.1f,\"p99_us\":%.1f,\"min_us\":%.1f%s}\n",
               ep, count, st.median_us, st.p99_us, st.min_us, server_key ? ",\"curve\":true" : "");
    }
    free(rtt);
    if (s)
        zmq_close(s);
    zmq_ctx_term(ctx);
    return r;
}

/* ---- compare: the schedule both ends follow ---- */

/* Blocks in a trial: two untimed ones, one per mode (the connection, the
 * handshake, a warm-up), then the timed ones, two at a time. */
static long schedule_len(const struct trial *t)
{
    long pairs = t->stream ? STREAM_BLOCKS : (t->cfg->count + RTT_BLOCK - 1) / RTT_BLOCK;
    return 2 + 2 * pairs;
}

/* Block i of a trial: the modes take turns, and which one starts
 * alternates with the run, so neither always follows the other. */
static struct block schedule_block(const struct trial *t, long i)
{
    struct block b = {(int)((t->run + i) % 2), 0, i >= 2};
    if (t->stream)
        b.n = t->cfg->msgs / STREAM_BLOCKS;
    else if (!b.timed)
        b.n = RTT_WARMUP;
    else {
        long left = t->cfg->count - (i - 2) / 2 * RTT_BLOCK;
        b.n = left < RTT_BLOCK ? left : RTT_BLOCK;
    }
    return b;
}

/* ---- compare: the server process ---- */

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return die("write to the client");
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 0 once n bytes are read, -1 on an error or an early end (the server
 * process failed and said why on stderr). */
static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* This process's CPU time so far, every thread (a context's I/O threads
 * too), in µs. */
static int cpu_now(double *us)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return die("getrusage");
    *us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
          ru.ru_stime.tv_usec;
    return 0;
}

/* Receive a block of n messages on s, check every size, add the CPU time
 * it took to *cpu_us and acknowledge it through fd. zmq_msg_recv hands
 * over libzmq's buffer, as a receiver that reads messages in place would. */
static int sink_block(void *s, const struct cfg *c, long n, int fd, double *cpu_us)
{
    double c0, c1;
    zmq_msg_t m;
    if (cpu_now(&c0) != 0)
        return -1;
    if (zmq_msg_init(&m) != 0)
        return die("zmq_msg_init");
    int r = 0;
    for (long i = 0; i < n && r == 0; i++) {
        if (zmq_msg_recv(&m, s, 0) < 0)
            r = die("stream recv");
        else if (zmq_msg_size(&m) != (size_t)c->size) {
            fprintf(stderr, "zmq-rtt: a stream message of %zu bytes, not %ld\n",
                    zmq_msg_size(&m), c->size);
            r = -1;
        }
    }
    zmq_msg_close(&m);
    if (r != 0 || cpu_now(&c1) != 0)
        return -1;
    *cpu_us += c1 - c0;
    return write_full(fd, "k", 1);
}

/* The server's side of a trial: follow the schedule; a stream's server
 * then reports its CPU time per mode over the timed blocks. */
static int serve(void *s[2], const struct trial *t, int fd)
{
    double cpu[2] = {0, 0}, untimed = 0;
    for (long i = 0; i < schedule_len(t); i++) {
        struct block b = schedule_block(t, i);
        int r = t->stream ? sink_block(s[b.mode], t->cfg, b.n, fd, b.timed ? &cpu[b.mode] : &untimed)
                          : echo_n(s[b.mode], b.n);
        if (r != 0)
            return -1;
    }
    return t->stream ? write_full(fd, cpu, sizeof(cpu)) : 0;
}

/* Where a server binds: a port or socket file the system picks, so runs
 * never collide; ZMQ_LAST_ENDPOINT says which. */
static const char *bind_endpoint(const struct cfg *c)
{
    return strcmp(c->transport, "ipc") == 0 ? "ipc://*" : "tcp://127.0.0.1:*";
}

/* The server's socket of one mode, bound; its endpoint into ep. A REP
 * lingers so that its last reply leaves before the process does. */
static void *server_socket(void *ctx, const struct trial *t, int mode, char ep[256])
{
    void *s = sock_new(ctx, t->stream ? ZMQ_PULL : ZMQ_REP, ZMQ_RCVTIMEO, SERVER_TIMEOUT_MS,
                       SERVER_LINGER_MS);
    size_t len = 255;
    int r = s ? 0 : die("zmq_socket");
    if (r == 0 && mode == 1)
        r = curve_server(s, t->server_keys);
    if (r == 0 && zmq_bind(s, bind_endpoint(t->cfg)) != 0)
        r = die(bind_endpoint(t->cfg));
    memset(ep, 0, 256);
    if (r == 0 && zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
        r = die("ZMQ_LAST_ENDPOINT");
    if (r != 0 && s) {
        zmq_close(s);
        s = NULL;
    }
    return s;
}

/* The server process's life: bind both sockets, tell the client where
 * through fd, serve the trial, exit. */
static int server_main(const struct trial *t, int fd)
{
    void *ctx = ctx_new(t->cfg->io_threads), *s[2] = {NULL, NULL};
    char ep[2][256];
    if (!ctx)
        return die("zmq_ctx_new");
    int r = 0;
    for (int m = 0; m < 2 && r == 0; m++)
        r = (s[m] = server_socket(ctx, t, m, ep[m])) ? 0 : -1;
    if (r == 0)
        r = write_full(fd, ep, sizeof(ep));
    if (r == 0)
        r = serve(s, t, fd);
    for (int m = 0; m < 2; m++) {
        if (s[m])
            zmq_close(s[m]);
    }
    zmq_ctx_term(ctx);
    return r;
}

/* Keep the calling thread, and the threads it creates from now on (a
 * context's I/O threads), on one CPU. */
static int pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        fprintf(stderr, "zmq-rtt: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
        return -1;
    }
    return 0;
}

/* Fork the server of a trial and learn its endpoints. The child creates
 * its context after the fork (a libzmq context must not cross one; ours
 * exists only while no server is being forked) and dies with us. */
static int server_start(const struct trial *t, struct server *srv)
{
    int p[2];
    if (pipe(p) != 0)
        return die("pipe");
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return die("fork");
    }
    if (pid == 0) {
        close(p[0]);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
            (t->cfg->pin && pin_to(1) != 0))
            _exit(1);
        _exit(server_main(t, p[1]) == 0 ? 0 : 1);
    }
    close(p[1]);
    srv->pid = pid;
    srv->fd = p[0];
    if (read_full(srv->fd, srv->endpoint, sizeof(srv->endpoint)) != 0) {
        fprintf(stderr, "zmq-rtt: the server process did not start\n");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(srv->fd);
        return -1;
    }
    srv->endpoint[0][255] = srv->endpoint[1][255] = '\0';
    return 0;
}

/* Reap the server: killed if the trial failed, else it must have
 * finished cleanly for the trial to count. */
static int server_wait(struct server *srv, int failed)
{
    int st;
    if (failed)
        kill(srv->pid, SIGKILL);
    close(srv->fd);
    while (waitpid(srv->pid, &st, 0) < 0) {
        if (errno != EINTR)
            return die("waitpid");
    }
    if (failed)
        return -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "zmq-rtt: the server process failed\n");
        return -1;
    }
    return 0;
}

/* ---- compare: the client ---- */

/* A context of ours and a socket per mode, connected to srv's; on failure
 * whatever was made is left for client_close. */
static int client_open(const struct trial *t, const struct server *srv, void **ctx, void *s[2])
{
    *ctx = ctx_new(t->cfg->io_threads);
    if (!*ctx)
        return die("zmq_ctx_new");
    for (int m = 0; m < 2; m++) {
        s[m] = t->stream ? sock_new(*ctx, ZMQ_PUSH, ZMQ_SNDTIMEO, SERVER_TIMEOUT_MS, 0)
                         : sock_new(*ctx, ZMQ_REQ, ZMQ_RCVTIMEO, CLIENT_TIMEOUT_MS, 0);
        if (!s[m])
            return die("zmq_socket");
        if (m == 1 && curve_client(s[m], t->server_keys->pub, t->client_keys) != 0)
            return -1;
        if (zmq_connect(s[m], srv->endpoint[m]) != 0)
            return die(srv->endpoint[m]);
    }
    return 0;
}

static void client_close(void *ctx, void *s[2])
{
    for (int m = 0; m < 2; m++) {
        if (s[m])
            zmq_close(s[m]);
    }
    if (ctx)
        zmq_ctx_term(ctx);
}

/* The client's side of a round-trip trial. */
static int rtt_client(const struct trial *t, const struct server *srv, struct rtt_stats out[2])
{
    long count = t->cfg->count, filled[2] = {0, 0};
    uint64_t *rtt[2] = {samples_new(count), samples_new(count)};
    void *ctx = NULL, *s[2] = {NULL, NULL};
    int r = rtt[0] && rtt[1] ? client_open(t, srv, &ctx, s) : -1;
    for (long i = 0; i < schedule_len(t) && r == 0; i++) {
        struct block b = schedule_block(t, i);
        r = round_trips(s[b.mode], b.n, b.timed ? rtt[b.mode] + filled[b.mode] : NULL);
        if (b.timed)
            filled[b.mode] += b.n;
    }
    for (int m = 0; m < 2 && r == 0; m++)
        rtt_stats_of(rtt[m], count, &out[m]);
    client_close(ctx, s);
    free(rtt[0]);
    free(rtt[1]);
    return r;
}

/* Send a block of n messages on s (zmq_send copies each into a message of
 * libzmq's, as an application's send does) and wait until the receiver
 * acknowledges the last: a full pipe in flight all along, drained once at
 * the end. */
static int stream_block(void *s, const struct cfg *c, const char *buf, long n, int fd)
{
    for (long i = 0; i < n; i++) {
        if (zmq_send(s, buf, (size_t)c->size, 0) < 0)
            return die("stream send");
    }
    char ack;
    if (read_full(fd, &ack, 1) != 0) {
        fprintf(stderr, "zmq-rtt: the receiver did not acknowledge a block\n");
        return -1;
    }
    return 0;
}

/* A timed block: its wall time added to *ns, our CPU time to *cpu_us. */
static int stream_block_timed(void *s, const struct cfg *c, const char *buf, long n, int fd,
                              uint64_t *ns, double *cpu_us)
{
    double c0, c1;
    if (cpu_now(&c0) != 0)
        return -1;
    uint64_t t0 = cairn_now_ns();
    if (stream_block(s, c, buf, n, fd) != 0)
        return -1;
    *ns += cairn_now_ns() - t0;
    if (cpu_now(&c1) != 0)
        return -1;
    *cpu_us += c1 - c0;
    return 0;
}

static void stream_figures_of(const struct cfg *c, uint64_t ns, double cpu_us,
                              struct stream_figures *f)
{
    f->msgs_s = c->msgs / (ns / 1e9);
    f->mb_s = f->msgs_s * (double)c->size / 1e6;
    f->cpu_us_per_msg = cpu_us / c->msgs;
    f->cores = f->cpu_us_per_msg * f->msgs_s / 1e6;
}

/* The client's side of a stream trial; the server's CPU time per mode
 * comes last through the pipe. */
static int stream_client(const struct trial *t, const struct server *srv,
                         struct stream_figures out[2])
{
    const struct cfg *c = t->cfg;
    uint64_t ns[2] = {0, 0};
    double cpu[2] = {0, 0}, server_cpu[2];
    char *buf = malloc((size_t)c->size);
    void *ctx = NULL, *s[2] = {NULL, NULL};
    int r = buf ? client_open(t, srv, &ctx, s) : -1;
    if (!buf)
        fprintf(stderr, "zmq-rtt: out of memory\n");
    else
        memset(buf, 'y', (size_t)c->size);
    for (long i = 0; i < schedule_len(t) && r == 0; i++) {
        struct block b = schedule_block(t, i);
        r = b.timed ? stream_block_timed(s[b.mode], c, buf, b.n, srv->fd, &ns[b.mode], &cpu[b.mode])
                    : stream_block(s[b.mode], c, buf, b.n, srv->fd);
    }
    if (r == 0 && read_full(srv->fd, server_cpu, sizeof(server_cpu)) != 0) {
        fprintf(stderr, "zmq-rtt: the receiver did not report its CPU time\n");
        r = -1;
    }
    client_close(ctx, s);
    free(buf);
    for (int m = 0; m < 2 && r == 0; m++)
        stream_figures_of(c, ns[m], cpu[m] + server_cpu[m], &out[m]);
    return r;
}

static int rtt_run(const struct trial *t, struct rtt_stats out[2])
{
    struct server srv;
    if (server_start(t, &srv) != 0)
        return -1;
    int r = rtt_client(t, &srv, out);
    return server_wait(&srv, r != 0);
}

static int stream_run(const struct trial *t, struct stream_figures out[2])
{
    struct server srv;
    if (server_start(t, &srv) != 0)
        return -1;
    int r = stream_client(t, &srv, out);
    return server_wait(&srv, r != 0);
}

/* ---- compare: the baselines and the line ---- */

#ifdef ZMQ_RTT_SODIUM
/* What libzmq's CURVE does to every message, without libzmq: box the
 * flags byte and the payload with the connection's precomputed key
 * (crypto_box_easy_afternm: XSalsa20 + Poly1305), and open it. µs per
 * message, the best of 5 passes of about 16 MiB each. */
static int crypto_cost(long size, double *box_us, double *open_us)
{
    unsigned char pk1[crypto_box_PUBLICKEYBYTES], sk1[crypto_box_SECRETKEYBYTES];
    unsigned char pk2[crypto_box_PUBLICKEYBYTES], sk2[crypto_box_SECRETKEYBYTES];
    unsigned char key[crypto_box_BEFORENMBYTES], nonce[crypto_box_NONCEBYTES] = {0};
    size_t mlen = (size_t)size + 1;
    long n = (16L << 20) / (size + 64) + 16;
    if (sodium_init() < 0 || crypto_box_keypair(pk1, sk1) != 0 ||
        crypto_box_keypair(pk2, sk2) != 0 || crypto_box_beforenm(key, pk2, sk1) != 0) {
        fprintf(stderr, "zmq-rtt: libsodium setup failed\n");
        return -1;
    }
    unsigned char *plain = calloc(1, mlen), *box = malloc(mlen + crypto_box_MACBYTES);
    int r = plain && box ? 0 : -1;
    *box_us = *open_us = 1e9;
    for (int pass = 0; pass < 5 && r == 0; pass++) {
        uint64_t t0 = cairn_now_ns();
        for (long i = 0; i < n && r == 0; i++) {
            memcpy(nonce + 16, &i, sizeof(i));
            r = crypto_box_easy_afternm(box, plain, mlen, nonce, key);
        }
        uint64_t t1 = cairn_now_ns();
        for (long i = 0; i < n && r == 0; i++)
            r = crypto_box_open_easy_afternm(plain, box, mlen + crypto_box_MACBYTES, nonce, key);
        uint64_t t2 = cairn_now_ns();
        if ((t1 - t0) / 1e3 / n < *box_us)
            *box_us = (t1 - t0) / 1e3 / n;
        if ((t2 - t1) / 1e3 / n < *open_us)
            *open_us = (t2 - t1) / 1e3 / n;
    }
    if (r != 0)
        fprintf(stderr, "zmq-rtt: crypto_box failed\n");
    free(plain);
    free(box);
    return r;
}
#endif

/* "crypto_us":{...} or null without libsodium at build time. */
static int print_crypto(long size)
{
#ifdef ZMQ_RTT_SODIUM
    double b64, o64, bn, on;
    if (crypto_cost(RTT_SIZE, &b64, &o64) != 0 || crypto_cost(size, &bn, &on) != 0)
        return -1;
    printf("\"crypto_us\":{\"box_%d\":%.2f,\"open_%d\":%.2f,\"box_%ld\":%.2f,\"open_%ld\":%.2f},",
           RTT_SIZE, b64, RTT_SIZE, o64, size, bn, size, on);
#else
    (void)size;
    printf("\"crypto_us\":null,");
#endif
    return 0;
}

/* The 1-minute load average, -1 if unknown: other work on this shared
 * machine shows in every figure, so the line says how busy it was. */
static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static void print_list(const char *name, const double *v, long n, int decimals)
{
    printf("\"%s\":[", name);
    for (long i = 0; i < n; i++)
        printf("%s%.*f", i ? "," : "", decimals, v[i]);
    printf("]");
}

static void print_mode(const char *name, const struct results *res, int m, long runs)
{
    printf("\"%s\":{\"rtt_median_us\":%.1f,\"rtt_p99_us\":%.1f,\"rtt_min_us\":%.1f,"
           "\"mb_s\":%.0f,\"msgs_s\":%.0f,\"cpu_us_per_msg\":%.1f,\"cores_busy\":%.2f,",
           name, median(res->rtt_med[m], runs), median(res->rtt_p99[m], runs),
           median(res->rtt_min[m], runs), median(res->mb_s[m], runs), median(res->msgs_s[m], runs),
           median(res->cpu_us_per_msg[m], runs), median(res->cores[m], runs));
    print_list("runs_rtt_median_us", res->rtt_med[m], runs, 1);
    printf(",");
    print_list("runs_mb_s", res->mb_s[m], runs, 0);
    printf("}");
}

/* The ratios are medians of each run's curve/plain: the two modes of a run
 * were measured moments apart by the same threads, so each run's ratio
 * is a fair pair, while the best plain and the best CURVE run may have
 * seen different machines. */
static void print_compare(const struct cfg *c, const struct results *res)
{
    double rr[MAX_RUNS], tr[MAX_RUNS];
    for (long i = 0; i < c->runs; i++) {
        rr[i] = res->rtt_med[1][i] / res->rtt_med[0][i];
        tr[i] = res->mb_s[1][i] / res->mb_s[0][i];
    }
    double rtt_ratio = median(rr, c->runs), thr_ratio = median(tr, c->runs);
    print_mode("plain", res, 0, c->runs);
    printf(",");
    print_mode("curve", res, 1, c->runs);
    printf(",");
    print_list("runs_rtt_ratio", rr, c->runs, 2);
    printf(",");
    print_list("runs_throughput_ratio", tr, c->runs, 2);
    printf(",\"rtt_ratio\":%.2f,\"throughput_ratio\":%.2f,"
           "\"targets\":{\"rtt_ratio_max\":%.1f,\"throughput_ratio_min\":%.1f},"
           "\"met\":{\"rtt\":%s,\"throughput\":%s}}\n",
           rtt_ratio, thr_ratio, TARGET_RTT_RATIO, TARGET_THROUGHPUT_RATIO,
           rtt_ratio <= TARGET_RTT_RATIO ? "true" : "false",
           thr_ratio >= TARGET_THROUGHPUT_RATIO ? "true" : "false");
}

/* Every run: the round trips, then the stream. */
static int compare_all(const struct cfg *c, struct results *res)
{
    struct keypair server_keys, client_keys;
    if (keypair_new(&server_keys) != 0 || keypair_new(&client_keys) != 0)
        return -1;
    for (long run = 0; run < c->runs; run++) {
        struct trial rt = {0, run, c, &server_keys, &client_keys};
        struct trial st = {1, run, c, &server_keys, &client_keys};
        struct rtt_stats r[2];
        struct stream_figures f[2];
        if (rtt_run(&rt, r) != 0 || stream_run(&st, f) != 0)
            return -1;
        for (int m = 0; m < 2; m++) {
            res->rtt_med[m][run] = r[m].median_us;
            res->rtt_p99[m][run] = r[m].p99_us;
            res->rtt_min[m][run] = r[m].min_us;
            res->mb_s[m][run] = f[m].mb_s;
            res->msgs_s[m][run] = f[m].msgs_s;
            res->cpu_us_per_msg[m][run] = f[m].cpu_us_per_msg;
            res->cores[m][run] = f[m].cores;
        }
    }
    return 0;
}

static int cmd_compare(const struct cfg *c)
{
    static struct results res;
    double load0 = loadavg();
    if (c->pin && pin_to(0) != 0)
        return -1;
    if (compare_all(c, &res) != 0)
        return -1;
    printf("{\"bench\":\"zmq-curve\",\"transport\":\"%s\",\"runs\":%ld,\"io_threads\":%ld,"
           "\"pinned\":%s,\"rtt_size\":%d,\"rtt_count\":%ld,\"size\":%ld,\"msgs\":%ld,"
           "\"loadavg_1m\":[%.2f,%.2f],",
           c->transport, c->runs, c->io_threads, c->pin ? "true" : "false", RTT_SIZE, c->count,
           c->size, c->msgs, load0, loadavg());
    if (print_crypto(c->size) != 0)
        return -1;
    print_compare(c, &res);
    return fflush(stdout) == 0 ? 0 : die("stdout");
}

/* ---- command line ---- */

static int parse_long(const char *s, long min, long max, const char *what, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "zmq-rtt: %s must be %ld..%ld\n", what, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_compare(int argc, char **argv, struct cfg *c)
{
    *c = (struct cfg){"tcp", 5000, 4096, 100000, 5, 1, 0};
    for (int i = 0; i < argc; i += 2) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r;
        if (strcmp(o, "--pin") == 0) {
            c->pin = 1;
            i--;    /* a flag: no value to skip */
            continue;
        }
        if (!v)
            r = -1;
        else if (strcmp(o, "--transport") == 0) {
            c->transport = v;
            r = strcmp(v, "tcp") == 0 || strcmp(v, "ipc") == 0 ? 0 : -1;
        } else if (strcmp(o, "--count") == 0)
            r = parse_long(v, 1, 10000000, "--count", &c->count);
        else if (strcmp(o, "--size") == 0)
            r = parse_long(v, 1, 64L << 20, "--size", &c->size);
        else if (strcmp(o, "--msgs") == 0)
            r = parse_long(v, STREAM_BLOCKS, 100000000, "--msgs", &c->msgs);
        else if (strcmp(o, "--runs") == 0)
            r = parse_long(v, 1, MAX_RUNS, "--runs", &c->runs);
        else if (strcmp(o, "--io-threads") == 0)
            r = parse_long(v, 1, 64, "--io-threads", &c->io_threads);
        else
            r = -1;
        if (r != 0)
            return -1;
    }
    c->msgs -= c->msgs % STREAM_BLOCKS;    /* whole blocks */
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: zmq-rtt server ENDPOINT [--curve]\n"
            "       zmq-rtt client ENDPOINT COUNT [--curve SERVER_PUBLIC_KEY]\n"
            "       zmq-rtt compare [--transport tcp|ipc] [--count N] [--size BYTES]\n"
            "                       [--msgs M] [--runs R] [--io-threads T] [--pin]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "compare") == 0) {
        struct cfg c;
        if (parse_compare(argc - 2, argv + 2, &c) != 0)
            return usage();
        return cmd_compare(&c) == 0 ? 0 : 1;
    }
    if ((argc == 3 || (argc == 4 && strcmp(argv[3], "--curve") == 0)) &&
        strcmp(argv[1], "server") == 0)
        return cmd_server(argv[2], argc == 4) == 0 ? 0 : 1;
    if ((argc == 4 || (argc == 6 && strcmp(argv[4], "--curve") == 0)) &&
        strcmp(argv[1], "client") == 0) {
        long count;
        if (parse_long(argv[3], 1, 10000000, "COUNT", &count) != 0)
            return 2;
        if (argc == 6 && !key_valid(argv[5])) {
            fprintf(stderr, "zmq-rtt: --curve wants the server's public key, 40 Z85 characters\n");
            return 2;
        }
        return cmd_client(argv[2], count, argc == 6 ? argv[5] : NULL) == 0 ? 0 : 1;
    }
    return usage();
}
