/* zmq-rtt - raw libzmq REQ/REP round trip, the baseline of bench/cluster.sh.
 *
 *   zmq-rtt server tcp://ADDR:PORT          echo every request (until killed)
 *   zmq-rtt client tcp://ADDR:PORT COUNT    COUNT round trips of a 64-byte
 *                                           message after 100 of warm-up;
 *                                           prints one JSON line with the
 *                                           median, p99 and min RTT in µs
 * Exits 1 with a message on stderr on any error (the client gives up after
 * 5 s without an answer).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "util/clock.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int die(const char *what)
{
    fprintf(stderr, "zmq-rtt: %s: %s\n", what, zmq_strerror(zmq_errno()));
    return 1;
}

static int server(void *ctx, const char *ep)
{
    void *s = zmq_socket(ctx, ZMQ_REP);
    if (!s || zmq_bind(s, ep) != 0)
        return die(ep);
    char buf[256];
    for (;;) {
        int n = zmq_recv(s, buf, sizeof(buf), 0);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return die("recv");
        }
        if (zmq_send(s, buf, (size_t)(n > (int)sizeof(buf) ? (int)sizeof(buf) : n), 0) < 0)
            return die("send");
    }
}

static int client(void *ctx, const char *ep, long count)
{
    void *s = zmq_socket(ctx, ZMQ_REQ);
    int to = 5000, linger = 0;
    if (!s || zmq_setsockopt(s, ZMQ_RCVTIMEO, &to, sizeof(to)) != 0 ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)) != 0 || zmq_connect(s, ep) != 0)
        return die(ep);
    uint64_t *rtt = calloc((size_t)count, sizeof(*rtt));
    if (!rtt)
        return 1;
    char msg[64], buf[256];
    memset(msg, 'x', sizeof(msg));
    for (long i = -100; i < count; i++) {
        uint64_t t0 = cairn_now_ns();
        if (zmq_send(s, msg, sizeof(msg), 0) < 0)
            return die("send");
        if (zmq_recv(s, buf, sizeof(buf), 0) < 0)
            return die("recv (is the server running?)");
        if (i >= 0)
            rtt[i] = cairn_now_ns() - t0;
    }
    qsort(rtt, (size_t)count, sizeof(*rtt), cmp_u64);
    printf("{\"bench\":\"zmq-rtt\",\"endpoint\":\"%s\",\"count\":%ld,"
           "\"median_us\":%.1f,\"p99_us\":%.1f,\"min_us\":%.1f}\n",
           ep, count, rtt[count / 2] / 1000.0, rtt[(count * 99) / 100] / 1000.0,
           rtt[0] / 1000.0);
    free(rtt);
    zmq_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0) {
        void *ctx = zmq_ctx_new();
        return server(ctx, argv[2]);
    }
    if (argc == 4 && strcmp(argv[1], "client") == 0) {
        char *end;
        long count = strtol(argv[3], &end, 10);
        if (*end || count < 1 || count > 10000000) {
            fprintf(stderr, "zmq-rtt: COUNT must be 1..10000000\n");
            return 2;
        }
        void *ctx = zmq_ctx_new();
        int r = client(ctx, argv[2], count);
        zmq_ctx_term(ctx);
        return r;
    }
    fprintf(stderr, "usage: zmq-rtt server tcp://ADDR:PORT | zmq-rtt client tcp://ADDR:PORT COUNT\n");
    return 2;
}
