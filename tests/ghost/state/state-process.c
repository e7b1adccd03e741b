/* state-process.c - the process cases of ghost-state (state.h):
 * process-wide and per-thread state outside memory and fds: POSIX timers,
 * prctl settings (THP disable, timer slack, ...), oom_score_adj,
 * membarrier registrations, scheduling, and two real programs (a thread
 * pool on condition variables, a gzip | sha256sum pipeline).
 * Each case sets one piece of state, and checks it after the restore, or
 * must be refused with its reason.
 *
 * Per-thread state is set and checked by the thread it belongs to: a
 * worker thread (s_worker_t) runs jobs handed to it over a condition
 * variable, so a case asks "set this in thread 2" and later "check it in
 * thread 2" -- which also puts a thread asleep in a futex across the
 * checkpoint in every such case.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "state.h"

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif
#define S_MB_PRIVATE_EXPEDITED (1 << 3)
#define S_MB_REGISTER_GLOBAL_EXPEDITED (1 << 2)
#define S_MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)
#define S_MB_REGISTER_SYNC_CORE (1 << 6)
#define S_MB_REGISTER_RSEQ (1 << 8)

/* ---- helpers ------------------------------------------------------------ */

static pid_t s_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Sleeps ms milliseconds of CLOCK_MONOTONIC, whatever signals arrive. */
static void s_sleep_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000)
        ts.tv_sec++, ts.tv_nsec -= 1000000000;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* The whole of a small /proc/self file into buf ("" when unreadable). */
static void s_read_proc(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
}

/* A thread that runs jobs for the case, one at a time. */
typedef struct s_worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int (*job)(void *);    /* the job to run, NULL when idle */
    void *arg;
    int result;            /* the last job's return */
    pid_t tid;
} s_worker_t;

static void *s_worker_main(void *p)
{
    s_worker_t *w = p;
    pthread_mutex_lock(&w->mu);
    w->tid = s_gettid();
    pthread_cond_broadcast(&w->cv);
    for (;;) {
        while (!w->job)
            pthread_cond_wait(&w->cv, &w->mu);
        w->result = w->job(w->arg);
        w->job = NULL;
        pthread_cond_broadcast(&w->cv);
    }
    return NULL;
}

/* A started worker (lives until the process ends), or NULL. */
static s_worker_t *s_worker_start(void)
{
    s_worker_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->th, NULL, s_worker_main, w) != 0)
        return NULL;
    pthread_mutex_lock(&w->mu);
    while (!w->tid)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return w;
}

/* Runs job(arg) in the worker and returns its result. */
static int s_worker_run(s_worker_t *w, int (*job)(void *), void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->job = job, w->arg = arg;
    pthread_cond_broadcast(&w->cv);
    while (w->job)
        pthread_cond_wait(&w->cv, &w->mu);
    int r = w->result;
    pthread_mutex_unlock(&w->mu);
    return r;
}

/* ---- POSIX timers ------------------------------------------------------- */

#define S_NTIMERS 7

/* A timer case's state: the timers, what /proc said, the ticks seen. */
typedef struct s_timers {
    timer_t id[S_NTIMERS];
    bool live[S_NTIMERS];
    struct itimerspec before[S_NTIMERS];
    char proc[4096];           /* /proc/self/timers at the end of setup */
    s_worker_t *w;
    bool quiet;                /* no signal comes: the check looks at the
                                  running timers only */
} s_timers_t;

static atomic_int s_ticks;           /* periodic timer signals handled */
static atomic_int s_ticks_wrong;     /* ... by a thread they were not for */
static _Atomic pid_t s_tick_tid;     /* the thread they must reach, 0: any */
static atomic_int s_thread_ticks;    /* SIGEV_THREAD callbacks */

static void s_on_tick(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    pid_t want = atomic_load(&s_tick_tid);
    if (si->si_code != SI_TIMER || (want && s_gettid() != want))
        atomic_fetch_add(&s_ticks_wrong, 1);
    atomic_fetch_add(&s_ticks, 1);
}

static int s_handle(int sig)
{
    struct sigaction sa = { .sa_sigaction = s_on_tick, .sa_flags = SA_SIGINFO | SA_RESTART };
    if (sigaction(sig, &sa, NULL) < 0)
        return state_fail("sigaction(%d): %s", sig, strerror(errno));
    return 0;
}

static int s_timer(s_timers_t *t, int i, clockid_t clock, struct sigevent *ev, long value_ms,
                   long interval_ms)
{
    if (timer_create(clock, ev, &t->id[i]) < 0)
        return state_fail("timer_create(%d): %s", (int)clock, strerror(errno));
    struct itimerspec its = {
        .it_interval = { interval_ms / 1000, (interval_ms % 1000) * 1000000 },
        .it_value = { value_ms / 1000, (value_ms % 1000) * 1000000 } };
    if (timer_settime(t->id[i], 0, &its, NULL) < 0)
        return state_fail("timer_settime: %s", strerror(errno));
    t->live[i] = true;
    return 0;
}

/* What setup saw last: /proc/self/timers and each timer's time left. */
static int s_timers_seal(s_timers_t *t)
{
    for (int i = 0; i < S_NTIMERS; i++)
        if (t->live[i] && timer_gettime(t->id[i], &t->before[i]) < 0)
            return state_fail("timer_gettime: %s", strerror(errno));
    s_read_proc("/proc/self/timers", t->proc, sizeof(t->proc));
    if (!t->proc[0])
        return state_fail("/proc/self/timers is empty");
    return 0;
}

static int64_t s_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Single-threaded, no timer signal may come (a handled signal ends
 * ghost-state's wait for SIGUSR2 early, and that wait unblocks every
 * other): the periodic SIGEV_NONE timer must still run, its time left
 * moving within its interval. */
static int s_timers_running(s_timers_t *t)
{
    struct itimerspec a, b;
    if (timer_gettime(t->id[4], &a) < 0)
        return state_fail("timer_gettime: %s", strerror(errno));
    s_sleep_ms(30);
    if (timer_gettime(t->id[4], &b) < 0)
        return state_fail("timer_gettime: %s", strerror(errno));
    if (s_ns(&a.it_value) == s_ns(&b.it_value) || s_ns(&b.it_value) <= 0 ||
        s_ns(&b.it_value) > s_ns(&b.it_interval))
        return state_fail("the periodic timer is not running: %lld then %lld ns left "
                          "(interval %lld)", (long long)s_ns(&a.it_value),
                          (long long)s_ns(&b.it_value), (long long)s_ns(&b.it_interval));
    return 0;
}

/* The same timers with the same ids, clocks, signals, values and targets
 * (/proc/self/timers, byte for byte), each armed as before with no more
 * time left than at the checkpoint (a one-shot that was far off is still
 * armed), and ticks still coming (to the right thread). */
static int s_timers_check(s_timers_t *t)
{
    char now[4096];
    s_read_proc("/proc/self/timers", now, sizeof(now));
    if (strcmp(now, t->proc) != 0)
        return state_fail("/proc/self/timers was\n%s\nand is\n%s", t->proc, now);
    for (int i = 0; i < S_NTIMERS; i++) {
        struct itimerspec its;
        if (!t->live[i])
            continue;
        if (timer_gettime(t->id[i], &its) < 0)
            return state_fail("timer %d: timer_gettime: %s", i, strerror(errno));
        if (s_ns(&its.it_interval) != s_ns(&t->before[i].it_interval))
            return state_fail("timer %d: interval %lld ns, was %lld", i,
                              (long long)s_ns(&its.it_interval),
                              (long long)s_ns(&t->before[i].it_interval));
        if (s_ns(&t->before[i].it_interval) == 0 &&
            (s_ns(&its.it_value) == 0 || s_ns(&its.it_value) > s_ns(&t->before[i].it_value)))
            return state_fail("timer %d: %lld ns left, %lld at the checkpoint", i,
                              (long long)s_ns(&its.it_value),
                              (long long)s_ns(&t->before[i].it_value));
    }
    if (t->quiet)
        return s_timers_running(t);
    int ticks = atomic_load(&s_ticks), thread_ticks = atomic_load(&s_thread_ticks);
    s_sleep_ms(400);
    if (atomic_load(&s_ticks) - ticks < 3 && atomic_load(&s_thread_ticks) - thread_ticks < 3)
        return state_fail("the periodic timer does not tick after the restore (%d then %d)",
                          ticks, atomic_load(&s_ticks));
    if (atomic_load(&s_ticks_wrong))
        return state_fail("%d timer signals reached the wrong thread or were not SI_TIMER",
                          atomic_load(&s_ticks_wrong));
    return 0;
}

/* Single-threaded: ids with holes (1 and 3 deleted), five clocks, signals
 * with a value, none, a periodic one. */
static int s_timers_setup(void **ctx)
{
    s_timers_t *t = calloc(1, sizeof(*t));
    if (!t)
        return state_fail("setup");
    t->quiet = true;
    struct sigevent sig = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 1,
                            .sigev_value.sival_ptr = (void *)0x1234abcd };
    struct sigevent far = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 3,
                            .sigev_value.sival_int = 77 };
    struct sigevent none = { .sigev_notify = SIGEV_NONE };
    if (s_timer(t, 0, CLOCK_REALTIME, &far, 100000, 0) < 0 ||
        s_timer(t, 1, CLOCK_MONOTONIC, &none, 1000, 0) < 0 ||
        s_timer(t, 2, CLOCK_MONOTONIC, &sig, 400000, 0) < 0 ||
        s_timer(t, 3, CLOCK_BOOTTIME, &none, 1000, 0) < 0 ||
        s_timer(t, 4, CLOCK_BOOTTIME, &none, 20, 20) < 0 ||
        s_timer(t, 5, CLOCK_PROCESS_CPUTIME_ID, &far, 900000, 0) < 0 ||
        s_timer(t, 6, CLOCK_THREAD_CPUTIME_ID, &none, 800000, 0) < 0)
        return -1;
    for (int i = 1; i <= 3; i += 2) {
        timer_delete(t->id[i]);
        t->live[i] = false;
    }
    *ctx = t;
    return s_timers_seal(t);
}

static int s_timers_check_cb(void *ctx)
{
    return s_timers_check(ctx);
}

/* Multi-threaded: the periodic timer's signal goes to the worker thread
 * (SIGEV_THREAD_ID); the main thread blocks it. */
static int s_timers_tid_setup(void **ctx)
{
    s_timers_t *t = calloc(1, sizeof(*t));
    if (!t || s_handle(SIGRTMIN + 2) < 0 || !(t->w = s_worker_start()))
        return state_fail("setup");
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    atomic_store(&s_tick_tid, t->w->tid);
    struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 2,
                           .sigev_value.sival_int = 42 };
    ev._sigev_un._tid = t->w->tid;
    struct sigevent far = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 3 };
    if (s_timer(t, 0, CLOCK_MONOTONIC, &far, 300000, 0) < 0 ||
        s_timer(t, 1, CLOCK_MONOTONIC, &ev, 15, 15) < 0 ||
        s_timer(t, 2, CLOCK_REALTIME, &far, 500000, 0) < 0)
        return -1;
    *ctx = t;
    return s_timers_seal(t);
}

/* A thread's cpu-time clock in a multi-threaded process: which thread's
 * it is /proc does not say, so it cannot be made again: refused. */
static int s_timers_thread_clock_setup(void **ctx)
{
    s_timers_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->w = s_worker_start()))
        return state_fail("setup");
    struct sigevent none = { .sigev_notify = SIGEV_NONE };
    *ctx = t;
    return s_timer(t, 0, CLOCK_THREAD_CPUTIME_ID, &none, 100000, 0);
}

static int s_timers_thread_clock_check(void *ctx)
{
    s_timers_t *t = ctx;
    struct itimerspec its;
    if (timer_gettime(t->id[0], &its) < 0 || s_ns(&its.it_value) == 0)
        return state_fail("the timer is gone or disarmed after the refusal");
    return 0;
}

static void s_on_thread_timer(union sigval v)
{
    if (v.sival_int == 99)
        atomic_fetch_add(&s_thread_ticks, 1);
}

/* glibc's SIGEV_THREAD: a helper thread waits for the kernel's signal and
 * runs the callback in a new thread each time. */
static int s_timers_sigev_thread_setup(void **ctx)
{
    s_timers_t *t = calloc(1, sizeof(*t));
    if (!t)
        return state_fail("setup");
    struct sigevent ev = { .sigev_notify = SIGEV_THREAD, .sigev_value.sival_int = 99,
                           .sigev_notify_function = s_on_thread_timer };
    if (s_timer(t, 0, CLOCK_MONOTONIC, &ev, 10, 25) < 0)
        return -1;
    for (int i = 0; i < 100 && atomic_load(&s_thread_ticks) < 2; i++)
        s_sleep_ms(10);
    if (atomic_load(&s_thread_ticks) < 2)
        return state_fail("the SIGEV_THREAD timer did not fire before the checkpoint");
    *ctx = t;
    return s_timers_seal(t);
}

/* ---- process-wide settings ---------------------------------------------- */

static int s_write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return state_fail("%s: %s", path, strerror(errno));
    ssize_t n = write(fd, s, strlen(s));
    int e = errno;
    close(fd);
    if (n != (ssize_t)strlen(s))
        return state_fail("writing %s: %s", path, strerror(e));
    return 0;
}

static int s_oom_setup(void **ctx)
{
    (void)ctx;
    return s_write_str("/proc/self/oom_score_adj", "400");
}

static int s_oom_check(void *ctx)
{
    (void)ctx;
    char buf[32];
    s_read_proc("/proc/self/oom_score_adj", buf, sizeof(buf));
    if (atoi(buf) != 400)
        return state_fail("oom_score_adj is %s, not 400", buf);
    return 0;
}

static int s_thp_setup(void **ctx)
{
    (void)ctx;
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0)
        return state_fail("PR_SET_THP_DISABLE: %s", strerror(errno));
    return 0;
}

static int s_thp_check(void *ctx)
{
    (void)ctx;
    int r = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    if (r != 1)
        return state_fail("PR_GET_THP_DISABLE says %d, not 1", r);
    return 0;
}

static long s_membarrier(int cmd)
{
    return syscall(SYS_membarrier, cmd, 0, 0);
}

#define S_MB_WANT (S_MB_REGISTER_PRIVATE_EXPEDITED | S_MB_REGISTER_SYNC_CORE | \
                   S_MB_REGISTER_RSEQ | S_MB_REGISTER_GLOBAL_EXPEDITED)

static int s_membarrier_setup(void **ctx)
{
    (void)ctx;
    static const int cmds[] = { S_MB_REGISTER_PRIVATE_EXPEDITED, S_MB_REGISTER_SYNC_CORE,
                                S_MB_REGISTER_RSEQ, S_MB_REGISTER_GLOBAL_EXPEDITED };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (s_membarrier(cmds[i]) < 0)
            return state_fail("membarrier(%#x): %s", cmds[i], strerror(errno));
    return 0;
}

static int s_membarrier_check(void *ctx)
{
    (void)ctx;
    long got = s_membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
    if (got < 0 || (got & S_MB_WANT) != S_MB_WANT)
        return state_fail("registrations %#lx, want %#x", got, S_MB_WANT);
    if (s_membarrier(S_MB_PRIVATE_EXPEDITED) < 0)
        return state_fail("membarrier(PRIVATE_EXPEDITED): %s", strerror(errno));
    return 0;
}

/* A /proc/self file set to `value` in setup, read back after: its
 * word-th word must say `expect`. */
typedef struct s_procfile {
    const char *path, *value, *expect;
    int word;
} s_procfile_t;

static const s_procfile_t s_coredump = { "/proc/self/coredump_filter", "0x73", "00000073", 0 };
static const s_procfile_t s_autogroup = { "/proc/self/autogroup", "7", "7", 2 };

/* The word-th word of text into out. */
static void s_word(const char *text, int word, char *out, size_t len)
{
    char copy[256], *save = NULL, *w;
    snprintf(copy, sizeof(copy), "%s", text);
    w = strtok_r(copy, " \n", &save);
    for (int i = 0; w && i < word; i++)
        w = strtok_r(NULL, " \n", &save);
    snprintf(out, len, "%s", w ? w : "");
}

static int s_procfile_setup(void **ctx, const s_procfile_t *f)
{
    *ctx = (void *)f;
    return s_write_str(f->path, f->value);
}

static int s_procfile_check(void *ctx)
{
    const s_procfile_t *f = ctx;
    char text[256], got[64];
    s_read_proc(f->path, text, sizeof(text));
    s_word(text, f->word, got, sizeof(got));
    if (strcmp(got, f->expect) != 0)
        return state_fail("%s says '%s', not '%s'", f->path, got, f->expect);
    return 0;
}

static int s_coredump_setup(void **ctx) { return s_procfile_setup(ctx, &s_coredump); }
static int s_autogroup_setup(void **ctx) { return s_procfile_setup(ctx, &s_autogroup); }

/* One prctl get/set pair: set `value` in setup, get it back after. */
typedef struct s_prctl {
    int set, get;
    unsigned long value;
    bool by_arg;   /* the get writes into *arg2 instead of returning it */
    int sub;       /* the set's sub-command before the value, 0: none */
} s_prctl_t;

static const s_prctl_t s_subreaper = { PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER, 1, true };
static const s_prctl_t s_keepcaps = { PR_SET_KEEPCAPS, PR_GET_KEEPCAPS, 1, false };
static const s_prctl_t s_tsc = { PR_SET_TSC, PR_GET_TSC, PR_TSC_SIGSEGV, true };

static int s_prctl_set(const s_prctl_t *p)
{
    if ((p->sub ? prctl(p->set, p->sub, p->value, 0, 0) : prctl(p->set, p->value, 0, 0, 0)) < 0)
        return state_fail("prctl(%d, %lu): %s", p->set, p->value, strerror(errno));
    return 0;
}

static int s_prctl_check(const s_prctl_t *p)
{
    int v = 0;
    long r = p->by_arg ? prctl(p->get, &v, 0, 0, 0) : prctl(p->get, 0, 0, 0, 0);
    if (r < 0)
        return state_fail("prctl(%d): %s", p->get, strerror(errno));
    unsigned long got = p->by_arg ? (unsigned long)v : (unsigned long)r;
    if (got != p->value)
        return state_fail("thread %d: prctl(%d) says %lu, not %lu", s_gettid(), p->get, got,
                          p->value);
    return 0;
}

static int s_prctl_setup(void **ctx, const s_prctl_t *p)
{
    *ctx = (void *)p;
    return s_prctl_set(p);
}

static int s_prctl_check_cb(void *ctx)
{
    return s_prctl_check(ctx);
}

/* A per-thread prctl pair: set v (0: left as it is), check v. */
static int s_flag_set(unsigned long v, const s_prctl_t *p)
{
    s_prctl_t q = *p;
    q.value = v;
    return v ? s_prctl_set(&q) : 0;
}

static int s_flag_check(unsigned long v, const s_prctl_t *p)
{
    s_prctl_t q = *p;
    q.value = v;
    return s_prctl_check(&q);
}

static const s_prctl_t s_merge = { 67 /* PR_SET_MEMORY_MERGE */, 68, 1, false };
static const s_prctl_t s_mdwe = { 65 /* PR_SET_MDWE */, 66, 1 /* REFUSE_EXEC_GAIN */, false };

static int s_subreaper_setup(void **ctx) { return s_prctl_setup(ctx, &s_subreaper); }
static int s_merge_setup(void **ctx) { return s_prctl_setup(ctx, &s_merge); }
static int s_mdwe_setup(void **ctx) { return s_prctl_setup(ctx, &s_mdwe); }

/* Syscall user dispatch on in a worker that spins in user space with
 * its selector on "block" (any syscall it made would be SIGSYS): refused
 * up front, before the dump injects a syscall there. The main thread,
 * without dispatch, waits as every case does. */
static volatile char s_sud_selector;   /* 0 ALLOW, 1 BLOCK */
static atomic_int s_sud_on;

static int s_sud_job(void *arg)
{
    (void)arg;
    if (prctl(59 /* PR_SET_SYSCALL_USER_DISPATCH */, 1 /* ON */, 0, 0, &s_sud_selector) < 0)
        return state_fail("PR_SET_SYSCALL_USER_DISPATCH: %s", strerror(errno));
    return 0;
}

static void *s_sud_spin(void *arg)
{
    (void)arg;
    if (s_sud_job(NULL) < 0)
        return NULL;
    s_sud_selector = 1;
    atomic_store(&s_sud_on, 1);
    while (atomic_load(&s_sud_on) != 2)
        __builtin_ia32_pause();
    s_sud_selector = 0;
    return NULL;
}

static int s_sud_setup(void **ctx)
{
    pthread_t th;
    (void)ctx;
    if (pthread_create(&th, NULL, s_sud_spin, NULL) != 0)
        return state_fail("pthread_create");
    for (int i = 0; i < 500 && !atomic_load(&s_sud_on); i++)
        s_sleep_ms(2);
    return atomic_load(&s_sud_on) ? 0 : state_fail("the worker did not turn dispatch on");
}

/* After the refusal: the worker still spins, untouched, and stops. */
static int s_sud_check(void *ctx)
{
    (void)ctx;
    atomic_store(&s_sud_on, 2);
    return 0;
}
static int s_keepcaps_setup(void **ctx) { return s_prctl_setup(ctx, &s_keepcaps); }

/* ---- per-thread settings: the main thread one way, a worker another ----- */

/* A per-thread case: the value each thread sets and checks. */
typedef struct s_pt {
    s_worker_t *w;
    unsigned long main_value, worker_value;
    int (*set)(unsigned long v);
    int (*check)(unsigned long v);
    unsigned long job_value;   /* what the worker's job works on */
} s_pt_t;

static int s_pt_set_job(void *arg)
{
    s_pt_t *p = arg;
    return p->set(p->worker_value);
}

static int s_pt_check_job(void *arg)
{
    s_pt_t *p = arg;
    return p->check(p->worker_value);
}

static int s_pt_setup(void **ctx, int (*set)(unsigned long), int (*check)(unsigned long),
                      unsigned long main_value, unsigned long worker_value)
{
    s_pt_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->w = s_worker_start()))
        return state_fail("setup");
    p->set = set, p->check = check;
    p->main_value = main_value, p->worker_value = worker_value;
    *ctx = p;
    if (set(main_value) < 0)
        return -1;
    return s_worker_run(p->w, s_pt_set_job, p);
}

static int s_pt_check(void *ctx)
{
    s_pt_t *p = ctx;
    if (p->check(p->main_value) < 0)
        return -1;
    return s_worker_run(p->w, s_pt_check_job, p);
}

static const s_prctl_t s_slack = { PR_SET_TIMERSLACK, PR_GET_TIMERSLACK, 0, false, 0 };
static const s_prctl_t s_mce = { PR_MCE_KILL, PR_MCE_KILL_GET, 0, false, PR_MCE_KILL_SET };

static int s_slack_set(unsigned long v) { return s_flag_set(v, &s_slack); }
static int s_slack_check(unsigned long v) { return s_flag_check(v, &s_slack); }

static int s_slack_setup(void **ctx)
{
    return s_pt_setup(ctx, s_slack_set, s_slack_check, 123456, 7777);
}

static int s_name_set(unsigned long v)
{
    char name[16];
    snprintf(name, sizeof(name), "st-name-%lu", v);
    if (prctl(PR_SET_NAME, name, 0, 0, 0) < 0)
        return state_fail("PR_SET_NAME: %s", strerror(errno));
    return 0;
}

static int s_name_check(unsigned long v)
{
    char want[16], path[64], got[64];
    snprintf(want, sizeof(want), "st-name-%lu\n", v);
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", s_gettid());
    s_read_proc(path, got, sizeof(got));
    if (strcmp(got, want) != 0)
        return state_fail("thread %d is named '%s', not '%s'", s_gettid(), got, want);
    return 0;
}

static int s_name_setup(void **ctx)
{
    return s_pt_setup(ctx, s_name_set, s_name_check, 1, 2);
}

/* Scheduling: v is policy << 8 | priority-or-nice. */
struct s_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

static int s_sched_set(unsigned long v)
{
    struct s_sched_attr a = { .size = sizeof(a), .policy = (uint32_t)(v >> 8) };
    if (a.policy == SCHED_FIFO || a.policy == SCHED_RR)
        a.priority = (uint32_t)(v & 0xff), a.flags = 1 /* SCHED_FLAG_RESET_ON_FORK */;
    else
        a.nice = (int32_t)(v & 0xff);
    if (syscall(SYS_sched_setattr, 0, &a, 0) < 0)
        return state_fail("sched_setattr: %s", strerror(errno));
    /* sched_setattr leaves a SCHED_IDLE thread's nice value as it was */
    if (a.policy == SCHED_IDLE && setpriority(PRIO_PROCESS, 0, a.nice) < 0)
        return state_fail("setpriority: %s", strerror(errno));
    return 0;
}

static int s_sched_check(unsigned long v)
{
    struct s_sched_attr a = { 0 };
    if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0)
        return state_fail("sched_getattr: %s", strerror(errno));
    uint32_t policy = (uint32_t)(v >> 8);
    bool rt = policy == SCHED_FIFO || policy == SCHED_RR;
    if (a.policy != policy || (rt ? a.priority : (uint32_t)a.nice) != (v & 0xff) ||
        (rt && !(a.flags & 1)))
        return state_fail("thread %d: policy %u prio %u nice %d flags %#llx, want %lu/%lu",
                          s_gettid(), a.policy, a.priority, a.nice,
                          (unsigned long long)a.flags, v >> 8, v & 0xff);
    return 0;
}

static int s_sched_setup(void **ctx)
{
    return s_pt_setup(ctx, s_sched_set, s_sched_check, SCHED_BATCH << 8 | 5,
                      SCHED_FIFO << 8 | 3);
}

/* A fair thread's own slice (sched_runtime, 6.12+): v in microseconds. */
static int s_slice_set(unsigned long v)
{
    struct s_sched_attr a = { .size = sizeof(a), .policy = SCHED_OTHER, .runtime = v * 1000 };
    if (syscall(SYS_sched_setattr, 0, &a, 0) < 0)
        return state_fail("sched_setattr(runtime %lu us): %s", v, strerror(errno));
    return 0;
}

static int s_slice_check(unsigned long v)
{
    struct s_sched_attr a = { 0 };
    if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0)
        return state_fail("sched_getattr: %s", strerror(errno));
    if (a.runtime != v * 1000)
        return state_fail("thread %d: slice %llu ns, not %lu us", s_gettid(),
                          (unsigned long long)a.runtime, v);
    return 0;
}

static int s_slice_setup(void **ctx)
{
    struct s_sched_attr a = { 0 };
    if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) < 0 || a.runtime == 0)
        return state_fail("this kernel shows no slice in sched_runtime (6.12+)");
    return s_pt_setup(ctx, s_slice_set, s_slice_check, 2000, 5000);
}

static int s_nice_setup(void **ctx)
{
    return s_pt_setup(ctx, s_sched_set, s_sched_check, SCHED_OTHER << 8 | 4,
                      SCHED_IDLE << 8 | 9);
}

static int s_affinity_set(unsigned long v)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)v, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        return state_fail("sched_setaffinity(cpu %lu): %s", v, strerror(errno));
    return 0;
}

static int s_affinity_check(unsigned long v)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return state_fail("sched_getaffinity: %s", strerror(errno));
    if (CPU_COUNT(&set) != 1 || !CPU_ISSET((int)v, &set))
        return state_fail("thread %d: %d cpus allowed, want only cpu %lu", s_gettid(),
                          CPU_COUNT(&set), v);
    return 0;
}

static int s_affinity_setup(void **ctx)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return state_fail("needs two cpus");
    return s_pt_setup(ctx, s_affinity_set, s_affinity_check, 1, 0);
}

#define S_IOPRIO(cls, data) ((unsigned long)(cls) << 13 | (data))

static int s_ioprio_set(unsigned long v)
{
    if (syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, (int)v) < 0)
        return state_fail("ioprio_set(%#lx): %s", v, strerror(errno));
    return 0;
}

static int s_ioprio_check(unsigned long v)
{
    long got = syscall(SYS_ioprio_get, 1, 0);
    if (got != (long)v)
        return state_fail("thread %d: ioprio %#lx, not %#lx", s_gettid(), got, v);
    return 0;
}

static int s_ioprio_setup(void **ctx)
{
    return s_pt_setup(ctx, s_ioprio_set, s_ioprio_check, S_IOPRIO(2, 6), S_IOPRIO(3, 0));
}

/* PR_MCE_KILL_LATE is 0: set whatever v is */
static int s_mce_set(unsigned long v)
{
    s_prctl_t q = s_mce;
    q.value = v;
    return s_prctl_set(&q);
}
static int s_mce_check(unsigned long v) { return s_flag_check(v, &s_mce); }

static int s_mce_setup(void **ctx)
{
    return s_pt_setup(ctx, s_mce_set, s_mce_check, PR_MCE_KILL_EARLY, PR_MCE_KILL_LATE);
}

static int s_tsc_set(unsigned long v) { return s_flag_set(v, &s_tsc); }
static int s_tsc_check(unsigned long v) { return s_flag_check(v ? v : PR_TSC_ENABLE, &s_tsc); }

static int s_tsc_setup(void **ctx)
{
    return s_pt_setup(ctx, s_tsc_set, s_tsc_check, PR_TSC_SIGSEGV, 0);
}

/* ---- parent-death signal ------------------------------------------------ */

/* A child that answers each byte on `ask` with what PR_GET_PDEATHSIG
 * says and its parent, on `answer`. */
typedef struct s_child {
    pid_t pid;
    int ask, answer;
} s_child_t;

static int s_pdeath_setup(void **ctx)
{
    int a[2], b[2];
    s_child_t *c = calloc(1, sizeof(*c));
    if (!c || pipe(a) < 0 || pipe(b) < 0)
        return state_fail("pipe: %s", strerror(errno));
    pid_t parent = getpid();
    c->pid = fork();
    if (c->pid < 0)
        return state_fail("fork: %s", strerror(errno));
    if (c->pid == 0) {
        char x;
        int v[2] = { 0, 0 };
        prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
        if (getppid() != parent)
            _exit(1);
        while (read(a[0], &x, 1) == 1) {
            prctl(PR_GET_PDEATHSIG, &v[0], 0, 0, 0);
            v[1] = (int)getppid();
            if (write(b[1], v, sizeof(v)) != (ssize_t)sizeof(v))
                _exit(1);
        }
        _exit(0);
    }
    c->ask = a[1], c->answer = b[0];
    close(a[0]), close(b[1]);
    *ctx = c;
    int v[2];
    if (write(c->ask, "?", 1) != 1 || read(c->answer, v, sizeof(v)) != (ssize_t)sizeof(v))
        return state_fail("the child does not answer");
    return v[0] == SIGUSR1 ? 0 : state_fail("the child's pdeathsig is %d", v[0]);
}

static int s_pdeath_check(void *ctx)
{
    s_child_t *c = ctx;
    int v[2];
    if (write(c->ask, "?", 1) != 1 || read(c->answer, v, sizeof(v)) != (ssize_t)sizeof(v))
        return state_fail("the child does not answer after the restore");
    if (v[0] != SIGUSR1 || v[1] != getpid())
        return state_fail("the child's pdeathsig is %d (parent %d), not %d (parent %d)", v[0],
                          v[1], SIGUSR1, (int)getpid());
    return 0;
}

/* ---- real programs ------------------------------------------------------ */

#define S_POOL_THREADS 4
#define S_POOL_QUEUE 64

/* A pool of workers taking jobs from a bounded queue (two condition
 * variables), fed by a producer thread: job i's result is f(i), kept in
 * a ring the check recomputes. */
typedef struct s_pool {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    uint64_t queue[S_POOL_QUEUE];
    size_t head, n;
    uint64_t done;                 /* jobs finished */
    uint64_t bad;                  /* results that were wrong */
    uint64_t results[1024];        /* f(i) at i % 1024, written by workers */
} s_pool_t;

static uint64_t s_pool_f(uint64_t i)
{
    uint64_t h = i * 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < 2000; k++)
        h ^= h >> 29, h *= 0xbf58476d1ce4e5b9ull;
    return h;
}

static void *s_pool_worker(void *arg)
{
    s_pool_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->n == 0)
            pthread_cond_wait(&p->not_empty, &p->mu);
        uint64_t i = p->queue[p->head];
        p->head = (p->head + 1) % S_POOL_QUEUE;
        p->n--;
        pthread_cond_signal(&p->not_full);
        pthread_mutex_unlock(&p->mu);
        uint64_t f = s_pool_f(i);
        pthread_mutex_lock(&p->mu);
        p->results[i % 1024] = f;
        if (f != s_pool_f(i))
            p->bad++;
        p->done++;
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

static void *s_pool_producer(void *arg)
{
    s_pool_t *p = arg;
    for (uint64_t i = 0;; i++) {
        pthread_mutex_lock(&p->mu);
        while (p->n == S_POOL_QUEUE)
            pthread_cond_wait(&p->not_full, &p->mu);
        p->queue[(p->head + p->n) % S_POOL_QUEUE] = i;
        p->n++;
        pthread_cond_signal(&p->not_empty);
        pthread_mutex_unlock(&p->mu);
        if (i % 256 == 0)
            s_sleep_ms(1);   /* leave the cpu to the others on this machine */
    }
    return NULL;
}

static int s_pool_setup(void **ctx)
{
    s_pool_t *p = calloc(1, sizeof(*p));
    pthread_t th;
    if (!p)
        return state_fail("out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->not_empty, NULL);
    pthread_cond_init(&p->not_full, NULL);
    for (int i = 0; i < S_POOL_THREADS; i++)
        if (pthread_create(&th, NULL, s_pool_worker, p) != 0)
            return state_fail("pthread_create");
    if (pthread_create(&th, NULL, s_pool_producer, p) != 0)
        return state_fail("pthread_create");
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&p->mu);
        uint64_t done = p->done;
        pthread_mutex_unlock(&p->mu);
        if (done >= 2000)
            break;
        s_sleep_ms(10);
    }
    *ctx = p;
    return 0;
}

static int s_pool_check(void *ctx)
{
    s_pool_t *p = ctx;
    pthread_mutex_lock(&p->mu);
    uint64_t before = p->done;
    pthread_mutex_unlock(&p->mu);
    uint64_t after = before;
    for (int i = 0; i < 1000 && after < before + 5000; i++) {
        s_sleep_ms(10);
        pthread_mutex_lock(&p->mu);
        after = p->done;
        pthread_mutex_unlock(&p->mu);
    }
    if (after < before + 5000)
        return state_fail("the pool did %llu jobs in 10 s after the restore",
                          (unsigned long long)(after - before));
    pthread_mutex_lock(&p->mu);
    uint64_t bad = p->bad;
    pthread_mutex_unlock(&p->mu);
    if (bad)
        return state_fail("%llu wrong results", (unsigned long long)bad);
    return 0;
}

/* gzip -c big | sha256sum, as a shell runs it, checkpointed mid-stream:
 * the hash the restored pipeline prints must be the one a run of the
 * same pipeline printed before (in setup: the check has 10 s). */
typedef struct s_pipeline {
    pid_t sh;
    char big[512], out[512], ref[512];
} s_pipeline_t;

static int s_make_big(const char *path, size_t mib)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return state_fail("%s: %s", path, strerror(errno));
    static const char *const words[] = { "cairn ", "ghost ", "restore ", "pipe ",
                                         "timer ", "thread ", "stone ", "node " };
    uint64_t x = 88172645463325252ull;
    for (size_t n = 0; n < mib << 20;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *w = words[x & 7];
        if (x & 0x100) {
            n += (size_t)fprintf(f, "%llu ", (unsigned long long)(x >> 40));
        } else {
            fputs(w, f);
            n += strlen(w);
        }
    }
    return fclose(f) == 0 ? 0 : state_fail("%s: %s", path, strerror(errno));
}

static int s_pipeline_setup(void **ctx)
{
    s_pipeline_t *p = calloc(1, sizeof(*p));
    if (!p)
        return state_fail("out of memory");
    snprintf(p->big, sizeof(p->big), "%s/big", state_workdir());
    snprintf(p->out, sizeof(p->out), "%s/out", state_workdir());
    snprintf(p->ref, sizeof(p->ref), "%s/ref", state_workdir());
    if (s_make_big(p->big, 24) < 0)
        return -1;
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "gzip -c '%s' | sha256sum > '%s'", p->big, p->ref);
    if (system(cmd) != 0)
        return state_fail("the reference pipeline failed");
    snprintf(cmd, sizeof(cmd), "gzip -c '%s' | sha256sum > '%s'", p->big, p->out);
    p->sh = fork();
    if (p->sh < 0)
        return state_fail("fork: %s", strerror(errno));
    if (p->sh == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    s_sleep_ms(200);   /* gzip into the file */
    if (waitpid(p->sh, NULL, WNOHANG) != 0)
        return state_fail("the pipeline ended before the checkpoint");
    *ctx = p;
    return 0;
}

static int s_pipeline_check(void *ctx)
{
    s_pipeline_t *p = ctx;
    int st;
    if (waitpid(p->sh, &st, 0) != p->sh)
        return state_fail("waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return state_fail("the restored pipeline ended with status %#x", st);
    char got[256], want[256];
    s_read_proc(p->out, got, sizeof(got));
    s_read_proc(p->ref, want, sizeof(want));
    if (!want[0] || strcmp(got, want) != 0)
        return state_fail("the restored pipeline printed '%s', a fresh one '%s'", got, want);
    return 0;
}

/* ---- namespaces and the root: refused, never restored into the node's -- */

/* unshare(flags): a namespace of its own, which the restore would trade
 * for the node's without a word (a hostname, SysV IPC objects...). */
static int s_unshare_setup(int flags, const char *what)
{
    if (unshare(flags) < 0)
        return state_fail("unshare(%s): %s", what, strerror(errno));
    return 0;
}

static int s_uts_ns_setup(void **ctx)
{
    (void)ctx;
    if (s_unshare_setup(CLONE_NEWUTS, "CLONE_NEWUTS") < 0)
        return -1;
    return sethostname("ghost-state", 11) < 0 ? state_fail("sethostname: %s", strerror(errno)) : 0;
}

static int s_uts_ns_check(void *ctx)
{
    char name[64] = "";
    (void)ctx;
    gethostname(name, sizeof(name));
    return strcmp(name, "ghost-state") == 0 ? 0 : state_fail("hostname is '%s'", name);
}

static int s_ipc_ns_setup(void **ctx)
{
    (void)ctx;
    return s_unshare_setup(CLONE_NEWIPC, "CLONE_NEWIPC");
}

static int s_net_ns_setup(void **ctx)
{
    (void)ctx;
    return s_unshare_setup(CLONE_NEWNET, "CLONE_NEWNET");
}

/* chroot into the work directory, holding what the check needs. */
static int s_chroot_setup(void **ctx)
{
    (void)ctx;
    if (chroot(state_workdir()) < 0 || chdir("/") < 0)
        return state_fail("chroot %s: %s", state_workdir(), strerror(errno));
    return 0;
}

static int s_chroot_check(void *ctx)
{
    (void)ctx;
    /* the work directory holds no /proc: a process still chrooted cannot see it */
    return access("/proc/self", F_OK) < 0 ? 0 : state_fail("no longer chrooted");
}

const state_case_t state_cases_process[] = {
    { .name = "process-uts-namespace", .expect = STATE_REFUSE, .reason = "own uts namespace",
      .setup = s_uts_ns_setup, .check = s_uts_ns_check },
    { .name = "process-ipc-namespace", .expect = STATE_REFUSE, .reason = "own ipc namespace",
      .setup = s_ipc_ns_setup },
    { .name = "process-net-namespace", .expect = STATE_REFUSE, .reason = "own net namespace",
      .setup = s_net_ns_setup },
    { .name = "process-chroot", .expect = STATE_REFUSE, .reason = "chrooted",
      .setup = s_chroot_setup, .check = s_chroot_check },
    { .name = "process-posix-timers", .setup = s_timers_setup, .check = s_timers_check_cb },
    { .name = "process-posix-timers-thread-id", .setup = s_timers_tid_setup,
      .check = s_timers_check_cb },
    { .name = "process-posix-timers-sigev-thread", .setup = s_timers_sigev_thread_setup,
      .check = s_timers_check_cb },
    { .name = "process-posix-timers-thread-clock", .expect = STATE_REFUSE,
      .reason = "a thread's cpu clock", .setup = s_timers_thread_clock_setup,
      .check = s_timers_thread_clock_check },
    { .name = "process-oom-score-adj", .setup = s_oom_setup, .check = s_oom_check },
    { .name = "process-thp-disable", .setup = s_thp_setup, .check = s_thp_check },
    { .name = "process-membarrier", .setup = s_membarrier_setup, .check = s_membarrier_check },
    { .name = "process-child-subreaper", .setup = s_subreaper_setup, .check = s_prctl_check_cb },
    { .name = "process-keepcaps", .setup = s_keepcaps_setup, .check = s_prctl_check_cb },
    { .name = "process-memory-merge", .setup = s_merge_setup, .check = s_prctl_check_cb },
    { .name = "process-mdwe", .setup = s_mdwe_setup, .check = s_prctl_check_cb },
    { .name = "process-coredump-filter", .setup = s_coredump_setup, .check = s_procfile_check },
    { .name = "process-autogroup-nice", .setup = s_autogroup_setup, .check = s_procfile_check },
    { .name = "process-syscall-user-dispatch", .expect = STATE_REFUSE,
      .reason = "syscall user dispatch", .setup = s_sud_setup, .check = s_sud_check },
    { .name = "process-timer-slack", .setup = s_slack_setup, .check = s_pt_check },
    { .name = "process-thread-names", .setup = s_name_setup, .check = s_pt_check },
    { .name = "process-sched-policy", .setup = s_sched_setup, .check = s_pt_check },
    { .name = "process-nice", .setup = s_nice_setup, .check = s_pt_check },
    { .name = "process-sched-slice", .setup = s_slice_setup, .check = s_pt_check },
    { .name = "process-affinity", .setup = s_affinity_setup, .check = s_pt_check },
    { .name = "process-ioprio", .setup = s_ioprio_setup, .check = s_pt_check },
    { .name = "process-mce-kill", .setup = s_mce_setup, .check = s_pt_check },
    { .name = "process-tsc", .setup = s_tsc_setup, .check = s_pt_check },
    { .name = "process-pdeathsig", .setup = s_pdeath_setup, .check = s_pdeath_check,
      .flags = "tree" },
    { .name = "process-thread-pool", .setup = s_pool_setup, .check = s_pool_check },
    { .name = "process-gzip-pipeline", .setup = s_pipeline_setup, .check = s_pipeline_check,
      .flags = "tree" },
    { .name = NULL },
};
