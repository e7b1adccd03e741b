/* test-lazy.c - post-copy's page source (engine/lazy.c) without a dump:
 * the frames on P read back as written and every frame no side sends is
 * refused (-EPROTO), an end is -EPIPE; lazy_serve, serving the memory of
 * a stopped child with a known pattern, answers requests with the right
 * bytes before it pushes, pushes only after START and then every page
 * once, in address order, ends on the target's END; a request for pages
 * that are not lazy gets an ERROR frame and ends the serving (broken); a
 * holder's `resume` while serving stops it (resumed), `kill` ends it;
 * pages the child never touched are pushed as ZERO frames (no bytes),
 * the touched ones as PAGES, every page of the range exactly once; the
 * runs both sides keep (lazy_runs_*) add, merge and cut right. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lazy.h"

#define PAGES 40u

static void s_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static uint8_t s_byte(uint64_t page, uint64_t i)
{
    return (uint8_t)(page * 7 + i * 13 + 1);
}

/* A stopped child whose PAGES pages at *ret_addr hold s_byte(page, i). */
static pid_t s_child(uint64_t *ret_addr)
{
    uint8_t *m = mmap(NULL, PAGES * LAZY_PAGE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    for (uint64_t p = 0; p < PAGES; p++)
        for (uint64_t i = 0; i < LAZY_PAGE; i++)
            m[p * LAZY_PAGE + i] = s_byte(p, i);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves nothing */
        raise(SIGSTOP);
        _exit(0);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, WUNTRACED), pid);
    *ret_addr = (uint64_t)(uintptr_t)m;
    munmap(m, PAGES * LAZY_PAGE);
    return pid;
}

static void s_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* lazy_serve on its own thread. */
typedef struct s_srv {
    lazy_src_t *src;
    int fd, hold;
    lazy_serve_end_t end;
    lazy_serve_stats_t st;
    cairn_error_t err;
    pthread_t th;
} s_srv_t;

static void *s_serve_main(void *arg)
{
    s_srv_t *s = arg;
    s->end = lazy_serve(s->src, s->fd, s->hold, &s->st, &s->err);
    return NULL;
}

static void s_start(s_srv_t *s)
{
    cr_assert_eq(pthread_create(&s->th, NULL, s_serve_main, s), 0);
}

/* Reads a PAGES frame and checks its bytes against the child's pattern
 * (base: the child's first page); returns the frame. */
static lazy_frame_t s_expect_pages(int fd, uint64_t base)
{
    lazy_frame_t f;
    static uint8_t buf[LAZY_MAX_PAGES * LAZY_PAGE];
    cr_assert_eq(lazy_frame_read(fd, &f), 0);
    cr_assert_eq(f.type, LAZY_PAGES, "type %u", f.type);
    cr_assert_eq(lazy_read_full(fd, buf, f.len), 0);
    for (uint32_t p = 0; p < f.n_pages; p++) {
        uint64_t page = (f.addr - base) / LAZY_PAGE + p;
        for (uint64_t i = 0; i < LAZY_PAGE; i += 511)
            cr_assert_eq(buf[p * LAZY_PAGE + i], s_byte(page, i), "page %llu byte %llu",
                         (unsigned long long)page, (unsigned long long)i);
    }
    return f;
}

Test(lazy, frames_round_trip_and_bad_ones_refused)
{
    int sv[2];
    s_pair(sv);
    uint8_t bytes[LAZY_PAGE];
    memset(bytes, 0x5a, sizeof(bytes));
    lazy_frame_t out = { LAZY_PAGES, 7, 0x10000, 1, LAZY_PAGE }, in;
    cr_assert_eq(lazy_frame_write(sv[0], &out, bytes), 0);
    cr_assert_eq(lazy_frame_read(sv[1], &in), 0);
    cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0);
    uint8_t got[LAZY_PAGE];
    cr_assert_eq(lazy_read_full(sv[1], got, sizeof(got)), 0);
    cr_assert_eq(memcmp(got, bytes, sizeof(got)), 0);

    const lazy_frame_t bad[] = {
        { 0, 1, 0, 1, 0 },                               /* no such type */
        { 9, 1, 0, 1, 0 },
        { LAZY_REQ, 1, 0x1000, 0, 0 },                   /* no pages */
        { LAZY_REQ, 1, 0x1000, LAZY_MAX_PAGES + 1, 0 },  /* too many */
        { LAZY_REQ, 1, 0x1001, 1, 0 },                   /* not aligned */
        { LAZY_REQ, 1, 0x1000, 1, 8 },                   /* a payload */
        { LAZY_PAGES, 1, 0x1000, 2, LAZY_PAGE },         /* len != pages */
        { LAZY_ERROR, 1, 0, 0, LAZY_MAX_MESSAGE + 1 },   /* message too long */
        { LAZY_END, 0, 0, 0, 4 },
        { LAZY_START, 0, 0, 0, 1 },
        { LAZY_ZERO, 1, 0x1000, 0, 0 },                  /* no pages */
        { LAZY_ZERO, 1, 0x1000, LAZY_MAX_ZERO + 1, 0 },  /* too many */
        { LAZY_ZERO, 1, 0x1008, 1, 0 },                  /* not aligned */
        { LAZY_ZERO, 1, 0x1000, 1, LAZY_PAGE },          /* bytes */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(write(sv[0], &bad[i], sizeof(bad[i])), (ssize_t)sizeof(bad[i]));
        cr_assert_eq(lazy_frame_read(sv[1], &in), -EPROTO, "bad frame %zu", i);
    }
    lazy_frame_t zero = { LAZY_ZERO, 7, 0x200000, LAZY_MAX_ZERO, 0 };   /* 4 TiB, no bytes */
    cr_assert_eq(lazy_frame_write(sv[0], &zero, NULL), 0);
    cr_assert_eq(lazy_frame_read(sv[1], &in), 0);
    cr_assert_eq(memcmp(&in, &zero, sizeof(in)), 0);
    cr_assert_eq(write(sv[0], &out, 10), 10);   /* a header cut short */
    close(sv[0]);
    cr_assert_eq(lazy_frame_read(sv[1], &in), -EPIPE);
    cr_assert_eq(lazy_frame_read(sv[1], &in), -EPIPE);   /* and the end */
    close(sv[1]);
}

Test(lazy, serve_answers_then_pushes_everything_once)
{
    uint64_t base;
    pid_t child = s_child(&base);
    int sv[2];
    s_pair(sv);
    s_srv_t s = { .src = lazy_src_new(), .fd = sv[0], .hold = -1 };
    cr_assert_not_null(s.src);
    /* Two ranges: pages 0-9 and 20-39 (10-19 are not lazy). */
    cr_assert_eq(lazy_src_add(s.src, child, 42, base, 10 * LAZY_PAGE), 0);
    cr_assert_eq(lazy_src_add(s.src, child, 42, base + 20 * LAZY_PAGE, 20 * LAZY_PAGE), 0);
    cr_assert_eq(lazy_src_pages(s.src), 30);
    s_start(&s);

    /* Before START: only answers. */
    lazy_frame_t q = { LAZY_REQ, 42, base + 25 * LAZY_PAGE, 3, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &q, NULL), 0);
    lazy_frame_t f = s_expect_pages(sv[1], base);
    cr_assert_eq(f.addr, q.addr);
    cr_assert_eq(f.n_pages, 3);
    cr_assert_eq(f.pid, 42);

    lazy_frame_t go = { LAZY_START, 0, 0, 0, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &go, NULL), 0);
    uint64_t seen = 0, last = 0;
    for (;;) {
        lazy_frame_t h;
        cr_assert_eq(lazy_frame_read(sv[1], &h), 0);
        if (h.type == LAZY_END)
            break;
        cr_assert_eq(h.type, LAZY_PAGES);
        static uint8_t buf[LAZY_MAX_PAGES * LAZY_PAGE];
        cr_assert_eq(lazy_read_full(sv[1], buf, h.len), 0);
        cr_assert_geq(h.addr, last, "pushed in address order");
        last = h.addr;
        seen += h.n_pages;
        cr_assert(h.addr + h.n_pages * LAZY_PAGE <= base + 25 * LAZY_PAGE ||
                  h.addr >= base + 28 * LAZY_PAGE, "a page already sent pushed again");
    }
    cr_assert_eq(seen, 27, "every page not asked for, pushed once (%llu)",
                 (unsigned long long)seen);
    lazy_frame_t end = { LAZY_END, 0, 0, 0, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &end, NULL), 0);
    pthread_join(s.th, NULL);
    cr_assert_eq(s.end, LAZY_SERVED);
    cr_assert(s.st.target_done);
    cr_assert_eq(s.st.requested, 3);
    cr_assert_eq(s.st.pushed, 27);
    lazy_src_free(s.src);
    close(sv[0]);
    close(sv[1]);
    s_reap(child);
}

Test(lazy, a_request_for_pages_not_lazy_is_an_error_frame)
{
    uint64_t base;
    pid_t child = s_child(&base);
    int sv[2];
    s_pair(sv);
    s_srv_t s = { .src = lazy_src_new(), .fd = sv[0], .hold = -1 };
    cr_assert_eq(lazy_src_add(s.src, child, 42, base, 10 * LAZY_PAGE), 0);
    s_start(&s);
    const lazy_frame_t bad[] = {
        { LAZY_REQ, 42, base + 9 * LAZY_PAGE, 2, 0 },    /* runs past the range */
    };
    cr_assert_eq(lazy_frame_write(sv[1], &bad[0], NULL), 0);
    lazy_frame_t f;
    char msg[LAZY_MAX_MESSAGE + 1] = "";
    cr_assert_eq(lazy_frame_read(sv[1], &f), 0);
    cr_assert_eq(f.type, LAZY_ERROR);
    cr_assert_eq(lazy_read_full(sv[1], msg, f.len), 0);
    cr_assert(strstr(msg, "no lazy pages"), "%s", msg);
    pthread_join(s.th, NULL);
    cr_assert_eq(s.end, LAZY_BROKEN);
    cr_assert_eq(s.err.code, CAIRN_INVALID_ARGUMENT);

    /* Another process, unknown to the source. */
    s_srv_t t = { .src = s.src, .fd = sv[0], .hold = -1 };
    s_start(&t);
    lazy_frame_t other = { LAZY_REQ, 43, base, 1, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &other, NULL), 0);
    cr_assert_eq(lazy_frame_read(sv[1], &f), 0);
    cr_assert_eq(f.type, LAZY_ERROR);
    cr_assert_eq(lazy_read_full(sv[1], msg, f.len), 0);
    pthread_join(t.th, NULL);
    cr_assert_eq(t.end, LAZY_BROKEN);

    /* A frame no target sends. */
    s_srv_t u = { .src = s.src, .fd = sv[0], .hold = -1 };
    s_start(&u);
    lazy_frame_t error = { LAZY_ERROR, 42, base, 1, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &error, NULL), 0);
    pthread_join(u.th, NULL);
    cr_assert_eq(u.end, LAZY_BROKEN);

    /* The target gone before every page was sent. */
    s_srv_t w = { .src = s.src, .fd = sv[0], .hold = -1 };
    s_start(&w);
    close(sv[1]);
    pthread_join(w.th, NULL);
    cr_assert_eq(w.end, LAZY_BROKEN);
    cr_assert_eq(w.err.code, CAIRN_UNAVAILABLE);
    lazy_src_free(s.src);
    close(sv[0]);
    s_reap(child);
}

Test(lazy, the_holder_resumes_or_kills_while_serving)
{
    uint64_t base;
    pid_t child = s_child(&base);
    for (int k = 0; k < 2; k++) {
        int sv[2], hp[2];
        s_pair(sv);
        cr_assert_eq(pipe(hp), 0);
        s_srv_t s = { .src = lazy_src_new(), .fd = sv[0], .hold = hp[0] };
        cr_assert_eq(lazy_src_add(s.src, child, 42, base, 10 * LAZY_PAGE), 0);
        s_start(&s);
        const char *word = k == 0 ? "resume\n" : "kill\n";
        cr_assert_eq(write(hp[1], word, strlen(word)), (ssize_t)strlen(word));
        pthread_join(s.th, NULL);
        cr_assert_eq(s.end, k == 0 ? LAZY_RESUMED : LAZY_SERVED);
        lazy_src_free(s.src);
        close(sv[0]);
        close(sv[1]);
        close(hp[0]);
        close(hp[1]);
    }
    int hp[2];
    cr_assert_eq(pipe(hp), 0);
    cr_assert_eq(write(hp[1], "resume\nkill\n", 12), 12);
    cr_assert(lazy_hold_resumes(hp[0]));
    cr_assert_not(lazy_hold_resumes(hp[0]));
    close(hp[1]);
    cr_assert_not(lazy_hold_resumes(hp[0]), "the end is no resume");
    close(hp[0]);
    s_reap(child);
}

Test(lazy, runs_add_merge_and_cut)
{
    lazy_runs_t r = { 0 };
    const uint64_t P = LAZY_PAGE;
    uint64_t none = 1;
    cr_assert_eq(lazy_runs_cut(&r, 0, 8 * P, &none), 0);   /* an empty set: no array yet */
    cr_assert_eq(none, 0);
    cr_assert_eq(lazy_runs_put(&r, 10 * P, 20 * P), 0);
    cr_assert_eq(lazy_runs_put(&r, 30 * P, 40 * P), 0);
    cr_assert_eq(lazy_runs_put(&r, 20 * P, 25 * P), 0);   /* merged with the first */
    cr_assert_eq(lazy_runs_put(&r, 5 * P, 10 * P), 0);    /* and before it */
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.v[0].a, 5 * P);
    cr_assert_eq(r.v[0].b, 25 * P);
    cr_assert_eq(r.bytes, 30 * P);
    cr_assert_eq(lazy_runs_put(&r, 25 * P, 30 * P), 0);   /* joins both */
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.bytes, 35 * P);
    uint64_t cut = 0;
    cr_assert_eq(lazy_runs_cut(&r, 12 * P, 14 * P, &cut), 0);   /* a hole */
    cr_assert_eq(cut, 2 * P);
    cr_assert_eq(r.n, 2);
    cr_assert_null(lazy_runs_at(&r, 13 * P));
    cr_assert_not_null(lazy_runs_at(&r, 14 * P));
    cr_assert_eq(lazy_runs_next(&r, 12 * P)->a, 14 * P);
    cr_assert_eq(lazy_runs_cut(&r, 0, 6 * P, &cut), 0);         /* a head */
    cr_assert_eq(cut, P);
    cr_assert_eq(lazy_runs_cut(&r, 11 * P, 20 * P, &cut), 0);   /* a tail, a run's head */
    cr_assert_eq(cut, 7 * P);
    cr_assert_eq(lazy_runs_cut(&r, 11 * P, 20 * P, &cut), 0);   /* nothing left there */
    cr_assert_eq(cut, 0);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.bytes, 25 * P);
    cr_assert_eq(lazy_runs_cut(&r, 0, 100 * P, &cut), 0);       /* everything */
    cr_assert_eq(cut, 25 * P);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.bytes, 0);
    cr_assert_null(lazy_runs_next(&r, 0));
    lazy_runs_free(&r);
}

Test(lazy, pages_never_touched_are_pushed_as_zero)
{
    /* A child holding only every fourth page of a 64-page range. */
    const uint64_t n = 64;
    uint8_t *m = mmap(NULL, n * LAZY_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    for (uint64_t p = 0; p < n; p += 4)
        memset(m + p * LAZY_PAGE, (int)(p + 1), LAZY_PAGE);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        raise(SIGSTOP);
        _exit(0);
    }
    int st;
    cr_assert_eq(waitpid(child, &st, WUNTRACED), child);
    uint64_t base = (uint64_t)(uintptr_t)m;
    munmap(m, n * LAZY_PAGE);
    int sv[2];
    s_pair(sv);
    s_srv_t s = { .src = lazy_src_new(), .fd = sv[0], .hold = -1 };
    cr_assert_eq(lazy_src_add(s.src, child, 9, base, n * LAZY_PAGE), 0);
    s_start(&s);
    lazy_frame_t go = { LAZY_START, 0, 0, 0, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &go, NULL), 0);
    uint64_t next = base, bytes = 0, zero = 0;
    static uint8_t buf[LAZY_MAX_PAGES * LAZY_PAGE];
    for (;;) {
        lazy_frame_t h;
        cr_assert_eq(lazy_frame_read(sv[1], &h), 0);
        if (h.type == LAZY_END)
            break;
        cr_assert_eq(h.addr, next, "every page once, in order");
        next += (uint64_t)h.n_pages * LAZY_PAGE;
        if (h.type == LAZY_ZERO) {
            for (uint32_t k = 0; k < h.n_pages; k++)
                cr_assert_neq(((h.addr - base) / LAZY_PAGE + k) % 4, 0, "a held page sent as ZERO");
            zero += h.n_pages;
            continue;
        }
        cr_assert_eq(h.type, LAZY_PAGES);
        cr_assert_eq(lazy_read_full(sv[1], buf, h.len), 0);
        for (uint32_t k = 0; k < h.n_pages; k++) {
            uint64_t p = (h.addr - base) / LAZY_PAGE + k;
            cr_assert_eq(buf[k * LAZY_PAGE + 100], p % 4 ? 0 : (uint8_t)(p + 1), "page %llu",
                         (unsigned long long)p);
        }
        bytes += h.n_pages;
    }
    cr_assert_eq(next, base + n * LAZY_PAGE);
    cr_assert_eq(bytes + zero, n);
    cr_assert_geq(zero, n / 2, "the untouched pages went as ZERO (%llu)",
                  (unsigned long long)zero);
    lazy_frame_t end = { LAZY_END, 0, 0, 0, 0 };
    cr_assert_eq(lazy_frame_write(sv[1], &end, NULL), 0);
    pthread_join(s.th, NULL);
    cr_assert_eq(s.end, LAZY_SERVED);
    cr_assert_eq(s.st.absent, zero);
    cr_assert_eq(s.st.pushed, bytes);
    lazy_src_free(s.src);
    close(sv[0]);
    close(sv[1]);
    s_reap(child);
}
