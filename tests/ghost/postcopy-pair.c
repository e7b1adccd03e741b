/* postcopy-pair - one post-copy move on one node: ghost-dump and
 * ghost-restore wired together as ghostd would wire them between nodes.
 *
 *   postcopy-pair ENGINE_DIR PID [--relay] [--cut-after BYTES] [--kill-restore]
 *                 [--stop-copy] [--restore-arg ARG]... [--dump-arg ARG]...
 *
 * ghost-dump --pid PID --postcopy --out-fd 3 --hold-fd 4 --pages-fd 5
 * streams the image through a pipe into ghost-restore --image-fd 3
 * --pages-fd 4; their page source is one socketpair, or with --relay two,
 * this program copying bytes between them as ghostd bridges P over
 * ZeroMQ. Once the dump says it holds the tree this program says `serve`;
 * if the restore fails before its tree runs, `resume`. --cut-after BYTES
 * (implies --relay): once the restored tree runs and that many bytes went
 * from the source to the target, both relay sockets are closed -- the
 * page source dies mid-way -- and the dump is told `kill` (its target
 * ran). --kill-restore: ghost-restore is SIGKILLed as soon as it says
 * its tree runs (ghostd killing it, a crash), and the dump told `kill`.
 * --stop-copy: the same move without post-copy, for comparison: the
 * image holds every page, no page source; the dump is told `kill` once
 * the restore's tree runs (as ghostd's migrate.c does). Output, one line
 * each as it happens (the helpers' lines as they
 * are):
 *   dump <its first line>         restore <its first line>
 *   frozen_us N                   the source frozen until the target ran
 *   restore_end <second line>     dump_end <second line>
 *   exits dump=N restore=N
 * Exit 0 when both helpers ended, 1 otherwise, 100 wrong usage. A test
 * tool, plain libc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_ARGS 32

static uint64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Runs argv with fds[i] as fd 3 + i (n of them) and stdout into *ret_out. */
static pid_t s_spawn(char **argv, const int *fds, int n, int *ret_out)
{
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        int hi[8];
        for (int i = 0; i < n; i++)   /* above 3 + n first: no clash */
            hi[i] = fcntl(fds[i], F_DUPFD, 3 + n);
        for (int i = 0; i < n; i++)
            dup2(hi[i], 3 + i);
        dup2(out[1], 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    *ret_out = out[0];
    return pid;
}

/* A line reader on a pipe. */
typedef struct s_lines {
    int fd;
    char buf[65536];
    size_t n;
    int seen;              /* lines so far */
} s_lines_t;

/* Reads what is there; calls on(line) for every whole line. false at EOF. */
static bool s_read_lines(s_lines_t *l, void (*on)(s_lines_t *, char *))
{
    ssize_t k = read(l->fd, l->buf + l->n, sizeof(l->buf) - 1 - l->n);
    if (k <= 0)
        return k < 0 && errno == EINTR;
    l->n += (size_t)k;
    char *nl;
    while ((nl = memchr(l->buf, '\n', l->n))) {
        *nl = '\0';
        l->seen++;
        on(l, l->buf);
        size_t used = (size_t)(nl - l->buf) + 1;
        memmove(l->buf, nl + 1, l->n - used);
        l->n -= used;
    }
    return true;
}

static s_lines_t s_dump, s_rest;
static int s_hold = -1;
static uint64_t s_held_at, s_frozen_before;
static bool s_running;
static bool s_kill_restore;
static bool s_stop_copy;
static pid_t s_rpid;

static uint64_t s_field(const char *line, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(line, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void s_say(const char *word)
{
    if (s_hold >= 0 && write(s_hold, word, strlen(word)) < 0 && errno != EPIPE)
        fprintf(stderr, "postcopy-pair: hold: %s\n", strerror(errno));
}

static void s_on_dump(s_lines_t *l, char *line)
{
    printf("%s %s\n", l->seen == 1 ? "dump" : "dump_end", line);
    fflush(stdout);
    if (l->seen == 1 && strstr(line, "\"held\":true")) {
        s_held_at = s_now_us();
        s_frozen_before = s_field(line, "freeze_us") + s_field(line, "dump_us");
        if (!s_stop_copy)
            s_say("serve\n");
    }
}

static void s_on_rest(s_lines_t *l, char *line)
{
    uint64_t now = s_now_us();
    printf("%s %s\n", l->seen == 1 ? "restore" : "restore_end", line);
    if (l->seen == 1 && strstr(line, "\"error\"")) {
        s_say("resume\n");   /* the target never ran */
    } else if (l->seen == 1 && s_held_at) {
        s_running = true;
        printf("frozen_us %llu\n", (unsigned long long)(now - s_held_at + s_frozen_before));
        if (s_stop_copy)
            s_say("kill\n");   /* the copy runs: the original goes */
        if (s_kill_restore) {
            kill(s_rpid, SIGKILL);
            printf("killed restore\n");
            s_say("kill\n");
        }
    } else if (l->seen == 2) {
        s_say("kill\n");   /* the target is done with its source, or gone */
    }
    fflush(stdout);
}

/* Copies what is there from `from` to `to`: bytes copied, -1 at EOF. */
static ssize_t s_relay(int from, int to)
{
    static char buf[1 << 16];
    ssize_t k = read(from, buf, sizeof(buf));
    if (k <= 0)
        return k < 0 && errno == EINTR ? 0 : -1;
    for (ssize_t off = 0; off < k;) {
        ssize_t w = write(to, buf + off, (size_t)(k - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        off += w;
    }
    return k;
}

static int s_usage(void)
{
    fprintf(stderr, "usage: postcopy-pair ENGINE_DIR PID [--relay] [--cut-after BYTES] "
                    "[--kill-restore] [--stop-copy] [--restore-arg ARG]... "
                    "[--dump-arg ARG]...\n");
    return 100;
}

int main(int argc, char **argv)
{
    char dump_bin[4096], rest_bin[4096];
    char *dargv[S_MAX_ARGS + 16], *rargv[S_MAX_ARGS + 8];
    int nd = 0, nr = 0;
    bool relay = false;
    long long cut = -1;

    if (argc < 3)
        return s_usage();
    snprintf(dump_bin, sizeof(dump_bin), "%s/ghost-dump", argv[1]);
    snprintf(rest_bin, sizeof(rest_bin), "%s/ghost-restore", argv[1]);
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--relay") == 0)
            relay = true;
        else if (strcmp(argv[i], "--stop-copy") == 0)
            s_stop_copy = true;
        else if (strcmp(argv[i], "--kill-restore") == 0)
            s_kill_restore = true;
        else if (strcmp(argv[i], "--cut-after") == 0 && i + 1 < argc)
            cut = atoll(argv[++i]), relay = true;
        else if (strcmp(argv[i], "--restore-arg") == 0 && i + 1 < argc && nr < S_MAX_ARGS)
            rargv[nr++] = argv[++i];
        else if (strcmp(argv[i], "--dump-arg") == 0 && i + 1 < argc && nd < S_MAX_ARGS)
            dargv[nd++] = argv[++i];
        else
            return s_usage();
    }
    char *dhead[] = { dump_bin, "--pid", argv[2], "--out-fd", "3", "--hold-fd", "4",
                      "--postcopy", "--pages-fd", "5" };
    char *rhead[] = { rest_bin, "--image-fd", "3", "--pages-fd", "4" };
    int ndh = s_stop_copy ? 7 : 10, nrh = s_stop_copy ? 3 : 5;
    memmove(dargv + ndh, dargv, (size_t)nd * sizeof(*dargv));
    memcpy(dargv, dhead, (size_t)ndh * sizeof(*dargv));
    memmove(rargv + nrh, rargv, (size_t)nr * sizeof(*rargv));
    memcpy(rargv, rhead, (size_t)nrh * sizeof(*rargv));
    nd += ndh;
    nr += nrh;
    dargv[nd] = NULL;
    rargv[nr] = NULL;
    signal(SIGPIPE, SIG_IGN);

    int img[2], hold[2], sd[2], sr[2] = { -1, -1 };
    if (pipe2(img, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sd) < 0 ||
        (relay && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sr) < 0)) {
        perror("postcopy-pair: setup");
        return 1;
    }
    /* A 1 MiB image pipe, as ghostd's (migrate.c): a small post-copy
     * image never waits inside the freeze for its reader. */
    fcntl(img[0], F_SETPIPE_SZ, 1 << 20);
    /* Without a relay the two helpers hold the two ends of sd. */
    int dfds[3] = { img[1], hold[0], sd[0] };
    int rfds[2] = { img[0], relay ? sr[0] : sd[1] };
    pid_t dpid = s_spawn(dargv, dfds, 3, &s_dump.fd);
    pid_t rpid = s_rpid = s_spawn(rargv, rfds, 2, &s_rest.fd);
    if (dpid < 0 || rpid < 0) {
        perror("postcopy-pair: spawn");
        return 1;
    }
    close(img[0]);
    close(img[1]);
    close(hold[0]);
    close(sd[0]);
    close(relay ? sr[0] : sd[1]);
    s_hold = hold[1];
    int ra = relay ? sd[1] : -1, rb = relay ? sr[1] : -1;   /* source side, target side */
    long long to_target = 0;
    bool dump_open = true, rest_open = true;

    while (dump_open || rest_open) {
        struct pollfd pf[4] = { { dump_open ? s_dump.fd : -1, POLLIN, 0 },
                                { rest_open ? s_rest.fd : -1, POLLIN, 0 },
                                { ra, POLLIN, 0 }, { rb, POLLIN, 0 } };
        if (poll(pf, 4, -1) < 0 && errno != EINTR)
            break;
        if (pf[0].revents && !s_read_lines(&s_dump, s_on_dump))
            dump_open = false;
        if (pf[1].revents && !s_read_lines(&s_rest, s_on_rest))
            rest_open = false;
        ssize_t k = 0;
        if (ra >= 0 && pf[2].revents && (k = s_relay(ra, rb)) > 0)
            to_target += k;
        bool broken = k < 0 || (rb >= 0 && pf[3].revents && s_relay(rb, ra) < 0);
        bool cutting = cut >= 0 && s_running && to_target >= cut;
        if (ra >= 0 && (broken || cutting)) {
            close(ra);
            close(rb);
            ra = rb = -1;
            if (cutting) {
                printf("cut %lld\n", to_target);
                fflush(stdout);
                s_say("kill\n");   /* the target ran: the source must never */
            }
        }
    }
    close(s_hold);
    int ds = 0, rs = 0;
    waitpid(dpid, &ds, 0);
    waitpid(rpid, &rs, 0);
    printf("exits dump=%d restore=%d\n", WIFEXITED(ds) ? WEXITSTATUS(ds) : 128 + WTERMSIG(ds),
           WIFEXITED(rs) ? WEXITSTATUS(rs) : 128 + WTERMSIG(rs));
    return 0;
}
