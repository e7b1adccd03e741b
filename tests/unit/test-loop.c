/* test-loop.c - the shared event loop: timers, fds, zmq sockets, removal
 * inside callbacks, error and quit codes, signals through a signalfd. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

#include "loop.h"

/* A record of which timers fired, in order. */
typedef struct {
    int64_t fired[64];   /* timer ids in firing order */
    uint64_t at[64];     /* cairn_now_ms() of each firing */
    int n;               /* entries used */
    int stop_after;      /* quit the loop after this many firings */
    int64_t victim;      /* timer to cancel from the callback, 0 = none */
    int victim_rc;       /* what cancel returned */
} record_t;

static int on_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    record_t *r = userdata;

    cr_assert_lt(r->n, 64);
    r->at[r->n] = cairn_now_ms();
    r->fired[r->n++] = id;
    if (r->victim) {
        r->victim_rc = cairn_loop_cancel_timer(loop, r->victim);
        r->victim = 0;
    }
    if (r->n == r->stop_after)
        cairn_loop_quit(loop, 7);
    return 0;
}

static int on_quit(cairn_loop_t *loop, int64_t id, void *userdata)
{
    cairn_loop_quit(loop, *(int *)userdata);
    return 0;
}

Test(loop, one_shot_fires_once_after_delay)
{
    cairn_loop_t *loop = cairn_loop_new();
    record_t r = { .stop_after = -1 };
    int code = 3;
    uint64_t t0 = cairn_now_ms();

    int64_t id = cairn_loop_add_timer(loop, 30, 0, on_timer, &r);
    cr_assert_gt(id, 0);
    cr_assert_gt(cairn_loop_add_timer(loop, 120, 0, on_quit, &code), 0);
    cr_assert_eq(cairn_loop_run(loop), 3);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.fired[0], id);
    cr_assert_geq(r.at[0] - t0, 30);
    cr_assert_eq(cairn_loop_cancel_timer(loop, id), -ENOENT, "fired one-shot is gone");
    cairn_loop_free(loop);
}

Test(loop, repeating_timer_and_order)
{
    cairn_loop_t *loop = cairn_loop_new();
    record_t r = { .stop_after = 6 };

    int64_t rep = cairn_loop_add_timer(loop, 10, 10, on_timer, &r);
    int64_t a = cairn_loop_add_timer(loop, 25, 0, on_timer, &r);
    int64_t b = cairn_loop_add_timer(loop, 5, 0, on_timer, &r);
    cr_assert_eq(cairn_loop_run(loop), 7);
    cr_assert_eq(r.n, 6);
    cr_assert_eq(r.fired[0], b, "the 5 ms timer fires first");
    cr_assert_eq(r.fired[1], rep);
    int reps = 0, seen_a = 0;
    for (int i = 0; i < r.n; i++) {
        reps += r.fired[i] == rep;
        seen_a += r.fired[i] == a;
        if (i > 0)
            cr_assert_geq(r.at[i], r.at[i - 1], "firings in time order");
    }
    cr_assert_eq(seen_a, 1);
    cr_assert_eq(reps, 4);
    cr_assert_eq(cairn_loop_cancel_timer(loop, rep), 0, "repeating is still armed");
    cr_assert_eq(cairn_loop_cancel_timer(loop, rep), -ENOENT);
    cairn_loop_free(loop);
}

Test(loop, equal_deadlines_fire_in_creation_order)
{
    cairn_loop_t *loop = cairn_loop_new();
    record_t r = { .stop_after = 3 };
    int64_t ids[3];

    for (int i = 0; i < 3; i++)
        ids[i] = cairn_loop_add_timer(loop, 0, 0, on_timer, &r);
    cr_assert_eq(cairn_loop_run(loop), 7);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r.fired[i], ids[i]);
    cairn_loop_free(loop);
}

static int cancel_self(cairn_loop_t *loop, int64_t id, void *userdata)
{
    int *count = userdata;

    (*count)++;
    cr_assert_eq(cairn_loop_cancel_timer(loop, id), 0);
    cr_assert_eq(cairn_loop_cancel_timer(loop, id), -ENOENT);
    return 0;
}

Test(loop, cancel_inside_own_callback)
{
    cairn_loop_t *loop = cairn_loop_new();
    int count = 0, code = 0;

    cr_assert_gt(cairn_loop_add_timer(loop, 1, 5, cancel_self, &count), 0);
    cr_assert_gt(cairn_loop_add_timer(loop, 60, 0, on_quit, &code), 0);
    cr_assert_eq(cairn_loop_run(loop), 0);
    cr_assert_eq(count, 1, "a repeating timer cancelled by itself fires once");
    cairn_loop_free(loop);
}

Test(loop, cancel_another_inside_callback)
{
    cairn_loop_t *loop = cairn_loop_new();
    record_t r = { .stop_after = -1 };
    int code = 5;

    int64_t first = cairn_loop_add_timer(loop, 5, 0, on_timer, &r);
    /* Same deadline as `first` plus one: due in the same pass or the next. */
    int64_t victim = cairn_loop_add_timer(loop, 5, 0, on_timer, &r);
    r.victim = victim;
    cr_assert_gt(cairn_loop_add_timer(loop, 50, 0, on_quit, &code), 0);
    cr_assert_eq(cairn_loop_run(loop), 5);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.fired[0], first);
    cr_assert_eq(r.victim_rc, 0);
    cairn_loop_free(loop);
}

Test(loop, cancel_and_remove_unknown)
{
    cairn_loop_t *loop = cairn_loop_new();

    cr_assert_eq(cairn_loop_cancel_timer(loop, 12345), -ENOENT);
    cr_assert_eq(cairn_loop_remove(loop, 12345), -ENOENT);
    cr_assert_eq(cairn_loop_add_fd(loop, -1, ZMQ_POLLIN, NULL, NULL), -EBADF);
    cairn_loop_free(loop);
    cr_assert_null(cairn_loop_free(NULL));
}

typedef struct {
    int fd;              /* read end */
    char buf[16];        /* what was read */
    ssize_t got;         /* bytes read */
    short revents;       /* revents seen */
    int64_t watch;       /* own watch id */
    int calls;           /* callback count */
} pipe_ctx_t;

static int on_pipe(cairn_loop_t *loop, int fd, void *zsock, short revents,
                   void *userdata)
{
    pipe_ctx_t *p = userdata;

    cr_assert_eq(fd, p->fd);
    cr_assert_null(zsock);
    p->calls++;
    p->revents = revents;
    p->got = read(fd, p->buf, sizeof(p->buf));
    cairn_loop_quit(loop, 11);
    return 0;
}

Test(loop, fd_readiness)
{
    cairn_loop_t *loop = cairn_loop_new();
    pipe_ctx_t p = { 0 };
    int fds[2];

    cr_assert_eq(pipe(fds), 0);
    p.fd = fds[0];
    cr_assert_gt(cairn_loop_add_fd(loop, fds[0], ZMQ_POLLIN, on_pipe, &p), 0);
    cr_assert_eq(write(fds[1], "hello", 5), 5);
    cr_assert_eq(cairn_loop_run(loop), 11);
    cr_assert_eq(p.calls, 1);
    cr_assert(p.revents & ZMQ_POLLIN);
    cr_assert_eq(p.got, 5);
    cr_assert_eq(memcmp(p.buf, "hello", 5), 0);
    close(fds[0]);
    close(fds[1]);
    cairn_loop_free(loop);
}

static int on_zsock(cairn_loop_t *loop, int fd, void *zsock, short revents,
                    void *userdata)
{
    char buf[16] = { 0 };
    int *count = userdata;

    cr_assert_not_null(zsock);
    cr_assert(revents & ZMQ_POLLIN);
    cr_assert_eq(zmq_recv(zsock, buf, sizeof(buf) - 1, ZMQ_DONTWAIT), 4);
    cr_assert_str_eq(buf, "ping");
    if (++*count == 2)
        cairn_loop_quit(loop, 0);
    return 0;
}

static int send_ping(cairn_loop_t *loop, int64_t id, void *userdata)
{
    return zmq_send(userdata, "ping", 4, 0) == 4 ? 0 : -errno;
}

Test(loop, zmq_socket_readiness)
{
    void *ctx = zmq_ctx_new();
    void *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    cairn_loop_t *loop = cairn_loop_new();
    int count = 0;

    cr_assert_eq(zmq_bind(a, "inproc://loop-test"), 0);
    cr_assert_eq(zmq_connect(b, "inproc://loop-test"), 0);
    cr_assert_gt(cairn_loop_add_socket(loop, a, ZMQ_POLLIN, on_zsock, &count), 0);
    cr_assert_gt(cairn_loop_add_timer(loop, 5, 5, send_ping, b), 0);
    cr_assert_eq(cairn_loop_run(loop), 0);
    cr_assert_eq(count, 2);
    cairn_loop_free(loop);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}

typedef struct {
    int64_t watches[2];  /* both watch the same pipe */
    int calls[2];        /* callbacks per watch */
} two_ctx_t;

static int on_first(cairn_loop_t *loop, int fd, void *zsock, short revents,
                    void *userdata)
{
    two_ctx_t *t = userdata;

    t->calls[0]++;
    cr_assert_eq(cairn_loop_remove(loop, t->watches[1]), 0);
    cr_assert_eq(cairn_loop_remove(loop, t->watches[0]), 0);
    cr_assert_eq(cairn_loop_remove(loop, t->watches[0]), -ENOENT);
    return 0;
}

static int on_second(cairn_loop_t *loop, int fd, void *zsock, short revents,
                     void *userdata)
{
    ((two_ctx_t *)userdata)->calls[1]++;
    return 0;
}

Test(loop, remove_inside_callback)
{
    cairn_loop_t *loop = cairn_loop_new();
    two_ctx_t t = { 0 };
    int fds[2], code = 4;

    cr_assert_eq(pipe(fds), 0);
    t.watches[0] = cairn_loop_add_fd(loop, fds[0], ZMQ_POLLIN, on_first, &t);
    t.watches[1] = cairn_loop_add_fd(loop, fds[0], ZMQ_POLLIN, on_second, &t);
    cr_assert_eq(write(fds[1], "x", 1), 1);
    /* The pipe stays readable: without removal both would fire every pass. */
    cr_assert_gt(cairn_loop_add_timer(loop, 40, 0, on_quit, &code), 0);
    cr_assert_eq(cairn_loop_run(loop), 4);
    cr_assert_eq(t.calls[0], 1);
    cr_assert_eq(t.calls[1], 0, "removed in the same pass, never called");
    close(fds[0]);
    close(fds[1]);
    cairn_loop_free(loop);
}

static int fail_timer(cairn_loop_t *loop, int64_t id, void *userdata)
{
    (*(int *)userdata)++;
    return -EPIPE;
}

Test(loop, callback_error_stops_loop)
{
    cairn_loop_t *loop = cairn_loop_new();
    int calls = 0, later = 0;

    cr_assert_gt(cairn_loop_add_timer(loop, 1, 1, fail_timer, &calls), 0);
    cr_assert_gt(cairn_loop_add_timer(loop, 1000, 0, fail_timer, &later), 0);
    cr_assert_eq(cairn_loop_run(loop), -EPIPE);
    cr_assert_eq(calls, 1);
    cr_assert_eq(later, 0);
    cairn_loop_free(loop);
}

Test(loop, quit_code_and_rerun)
{
    cairn_loop_t *loop = cairn_loop_new();
    int code = 42, code2 = 0;

    cr_assert_gt(cairn_loop_add_timer(loop, 1, 0, on_quit, &code), 0);
    cr_assert_eq(cairn_loop_run(loop), 42);
    cr_assert_gt(cairn_loop_add_timer(loop, 1, 0, on_quit, &code2), 0);
    cr_assert_eq(cairn_loop_run(loop), 0, "the loop can run again after quit");
    cairn_loop_free(loop);
}

static int on_signal(cairn_loop_t *loop, int fd, void *zsock, short revents,
                     void *userdata)
{
    struct signalfd_siginfo si;

    cr_assert_eq(read(fd, &si, sizeof(si)), (ssize_t)sizeof(si));
    *(uint32_t *)userdata = si.ssi_signo;
    cairn_loop_quit(loop, 0);
    return 0;
}

static int raise_usr1(cairn_loop_t *loop, int64_t id, void *userdata)
{
    return kill(getpid(), SIGUSR1) < 0 ? -errno : 0;
}

Test(loop, signal_through_signalfd)
{
    cairn_loop_t *loop = cairn_loop_new();
    sigset_t set, old;
    uint32_t signo = 0;
    int sfd;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    cr_assert_eq(sigprocmask(SIG_BLOCK, &set, &old), 0);
    sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    cr_assert_geq(sfd, 0);
    cr_assert_gt(cairn_loop_add_fd(loop, sfd, ZMQ_POLLIN, on_signal, &signo), 0);
    cr_assert_gt(cairn_loop_add_timer(loop, 10, 0, raise_usr1, NULL), 0);
    cr_assert_eq(cairn_loop_run(loop), 0);
    cr_assert_eq(signo, SIGUSR1);
    close(sfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    cairn_loop_free(loop);
}
