/* ghost-case - a process that checks its own state across checkpoint/restart.
 *
 * Usage: ghost-case MODE [WORKDIR]. The acceptance tests of the ghost engine
 * (tests/integration/test-ghost.sh). Plain libc, no Cairn code: the program
 * must not know it is being checkpointed.
 *
 * Protocol, the same for every mode: set up some state, write
 * "ready <pid>\n" on stdout (the test points stdout at a result file opened
 * O_APPEND), then wait -- each mode waits its own way (pause, sigsuspend,
 * nanosleep, read, a spinning loop, an asm loop) -- for SIGUSR2. The test
 * checkpoints, kills, restores, and sends SIGUSR2; the program then checks
 * that everything it set up is still true and writes "PASS <mode>\n" or
 * "FAIL <mode>: <what>\n", exiting 0 or 1. A setup that fails says
 * "FAIL <mode>: setup: ..." and never says ready.
 *
 * Mode anonfds holds an eventfd (a semaphore, dup'ed), two timerfds (one
 * with time left, one fired and unread), a signalfd with SIGUSR1 pending,
 * an epoll watching the eventfd and a pipe, and an inotify watching a
 * file as its watch 2.
 * Mode fanotify holds a group a user may make (FAN_REPORT_FID) marking
 * workdir/fan-watched; mode fanotify-dropped one only root may make
 * (events with open fds), made before becoming GHOST_CASE_BECOME=UID:GID.
 * Mode pause-threads waits in pause() like pause, with a second thread
 * that blocks SIGUSR2 and waits in pause() too.
 * Mode seccomp installs a filter (getpriority fails with errno 42) that
 * both threads must still have after the restore.
 * Mode undumpable is pause in a process that set PR_SET_DUMPABLE 0.
 * Mode socket holds a netlink socket (a kind never restored) with an
 * answer queued: the checkpoint must be refused and leave it untouched.
 * Mode unmovable holds a socket and a pty master with unread output and is traced from outside
 * its tree: three reasons not to move; it counts (SIGUSR1 prints the
 * count) and its tracer reports every stop it sees.
 * Mode creds records who its two threads are (ids, groups, capabilities,
 * securebits, no_new_privs, dumpable) and prints it after "ready <pid>";
 * the test starts it through setpriv as various users.
 *
 * Each check compares against values recorded before "ready", so a restore
 * that restarts the program, loses a page, a register, an offset, a
 * handler, a mask, a pending signal or a thread makes it fail.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/eventfd.h>
#include <sys/fsuid.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/seccomp.h>

#define S_PAGE 4096

static const char *s_mode;
static const char *s_workdir = "/tmp";
static volatile sig_atomic_t s_go;    /* SIGUSR2 arrived */
static char s_fail[512];              /* first failure, "" if none */

/* ---- reporting --------------------------------------------------------- */

/* One line on stdout in one write(), so lines of concurrent processes
 * appending to the same file never interleave. */
static void s_line(const char *fmt, ...)
{
    char buf[640];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    if (write(1, buf, (size_t)n) < 0)
        _exit(3);
}

/* Records the first failure of a check. Returns false so checks chain. */
static bool s_failf(const char *fmt, ...)
{
    va_list ap;

    if (s_fail[0])
        return false;
    va_start(ap, fmt);
    vsnprintf(s_fail, sizeof s_fail, fmt, ap);
    va_end(ap);
    return false;
}

static void s_setup_fail(const char *what)
{
    s_line("FAIL %s: setup: %s: %s\n", s_mode, what, strerror(errno));
    exit(1);
}

static void s_on_usr2(int sig)
{
    s_go = 1;
}

static uint64_t s_sum(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void s_fill(void *p, size_t len, unsigned seed)
{
    unsigned char *b = p;

    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
}

static void s_wait_pause(void)
{
    while (!s_go)
        pause();
}

/* ---- memory: every mapping kind ---------------------------------------- */

enum { M_ANON, M_FILE, M_SHARED, M_MEMFD, M_NONE, M_HEAP, M_SPARSE, M_N };
static const char *const s_mem_names[M_N] = { "anonymous private",
    "private file mapping", "shared anonymous", "memfd", "PROT_NONE", "heap",
    "sparse anonymous" };
static unsigned char *s_mem[M_N];
static size_t s_mem_len[M_N];
static uint64_t s_mem_sum[M_N];
static uint64_t s_stack_sum;
static uint64_t s_file_disk_sum;
static int s_memfd = -1;
static char s_mem_file[4096];

static unsigned char *s_map(size_t len, int prot, int flags, int fd)
{
    void *p = mmap(NULL, len, prot, flags, fd, 0);

    if (p == MAP_FAILED)
        s_setup_fail("mmap");
    return p;
}

/* A private mapping of a temp file, some pages written (copy-on-write). */
static void s_mem_file_setup(void)
{
    static unsigned char page[S_PAGE];
    int fd;

    snprintf(s_mem_file, sizeof s_mem_file, "%s/ghost-mem-%d", s_workdir,
             (int)getpid());
    fd = open(s_mem_file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        s_setup_fail("open mem file");
    for (int i = 0; i < 8; i++) {
        s_fill(page, sizeof page, 100u + (unsigned)i);
        if (write(fd, page, sizeof page) != (ssize_t)sizeof page)
            s_setup_fail("write mem file");
    }
    s_mem_len[M_FILE] = 8 * S_PAGE;
    s_mem[M_FILE] = s_map(8 * S_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
    close(fd);
    s_fill(s_mem[M_FILE] + 2 * S_PAGE, 2 * S_PAGE, 7);   /* COW pages */
    s_file_disk_sum = 0;
    for (int i = 0; i < 8; i++) {
        s_fill(page, sizeof page, 100u + (unsigned)i);
        s_file_disk_sum ^= s_sum(page, sizeof page) + (uint64_t)i;
    }
}

static void s_mem_setup(void)
{
    const int rw = PROT_READ | PROT_WRITE;

    s_mem_len[M_ANON] = 16 * S_PAGE;
    s_mem[M_ANON] = s_map(16 * S_PAGE, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    s_mem_file_setup();
    s_mem_len[M_SHARED] = 4 * S_PAGE;
    s_mem[M_SHARED] = s_map(4 * S_PAGE, rw, MAP_SHARED | MAP_ANONYMOUS, -1);
    s_memfd = memfd_create("ghost-case", MFD_CLOEXEC);
    if (s_memfd < 0 || ftruncate(s_memfd, 4 * S_PAGE) < 0)
        s_setup_fail("memfd");
    s_mem_len[M_MEMFD] = 4 * S_PAGE;
    s_mem[M_MEMFD] = s_map(4 * S_PAGE, rw, MAP_SHARED, s_memfd);
    s_mem_len[M_NONE] = 4 * S_PAGE;
    s_mem[M_NONE] = s_map(4 * S_PAGE, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    s_mem_len[M_HEAP] = 1 << 20;
    s_mem[M_HEAP] = malloc(1 << 20);
    s_mem_len[M_SPARSE] = 64u << 20;
    s_mem[M_SPARSE] = s_map(64u << 20, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    if (!s_mem[M_HEAP])
        s_setup_fail("malloc");
    for (int k = 0; k < M_N; k++) {
        if (k == M_FILE)
            s_mem_sum[k] = s_sum(s_mem[k], s_mem_len[k]);
        else if (k == M_SPARSE) {   /* three pages touched, the rest zero */
            for (size_t off = 0; off < s_mem_len[k]; off += 21u << 20)
                s_fill(s_mem[k] + off, S_PAGE, (unsigned)(off >> 20));
        } else
            s_fill(s_mem[k], s_mem_len[k], (unsigned)k);
        s_mem_sum[k] = s_sum(s_mem[k], s_mem_len[k]);
    }
    if (mprotect(s_mem[M_NONE], s_mem_len[M_NONE], PROT_NONE) < 0)
        s_setup_fail("mprotect PROT_NONE");
}

/* The private file mapping's file must be untouched on disk. */
static bool s_mem_check_file(void)
{
    static unsigned char page[S_PAGE];
    uint64_t sum = 0;
    int fd = open(s_mem_file, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return s_failf("reopen %s: %s", s_mem_file, strerror(errno));
    for (int i = 0; i < 8; i++) {
        if (read(fd, page, sizeof page) != (ssize_t)sizeof page) {
            close(fd);
            return s_failf("short read of %s", s_mem_file);
        }
        sum ^= s_sum(page, sizeof page) + (uint64_t)i;
    }
    close(fd);
    unlink(s_mem_file);
    return sum == s_file_disk_sum ||
           s_failf("the private mapping's writes reached %s", s_mem_file);
}

/* The memfd mapping is still shared with the fd. */
static bool s_mem_check_memfd(void)
{
    unsigned char b = 0;

    s_mem[M_MEMFD][5] = 0xEE;
    if (pread(s_memfd, &b, 1, 5) != 1)
        return s_failf("pread memfd: %s", strerror(errno));
    return b == 0xEE ||
           s_failf("memfd mapping no longer shared with its fd (read %#x)", b);
}

static bool s_mem_check(void)
{
    if (mprotect(s_mem[M_NONE], s_mem_len[M_NONE], PROT_READ) < 0)
        return s_failf("mprotect PROT_NONE region: %s", strerror(errno));
    for (int k = 0; k < M_N; k++)
        if (s_sum(s_mem[k], s_mem_len[k]) != s_mem_sum[k])
            return s_failf("%s mapping at %p: checksum differs",
                           s_mem_names[k], (void *)s_mem[k]);
    void *more = malloc(300000);   /* the heap still works */
    if (!more)
        return s_failf("malloc after restore failed");
    memset(more, 1, 300000);
    free(more);
    return s_mem_check_file() && s_mem_check_memfd();
}

static int s_case_memory(void)
{
    unsigned char stack[65536];

    s_mem_setup();
    s_fill(stack, sizeof stack, 99);
    s_stack_sum = s_sum(stack, sizeof stack);
    s_line("ready %d\n", (int)getpid());
    s_wait_pause();
    if (s_sum(stack, sizeof stack) != s_stack_sum)
        s_failf("stack array: checksum differs");
    return s_mem_check();
}

/* ---- counter: a loop that continues where it was ----------------------- */

static volatile uint64_t s_counter;
static volatile uint64_t s_counter_at_usr1;
static volatile sig_atomic_t s_usr1_seen;

static void s_on_usr1_counter(int sig)
{
    s_counter_at_usr1 = s_counter;
    s_usr1_seen = 1;
}

/* The test sends SIGUSR1 just before the checkpoint: the value then is a
 * lower bound of the dumped one. After restore the counter must be past it. */
static int s_case_counter(void)
{
    struct sigaction sa = { .sa_handler = s_on_usr1_counter };
    uint64_t at_go;

    sigaction(SIGUSR1, &sa, NULL);
    s_line("ready %d\n", (int)getpid());
    while (!s_go) {
        s_counter = s_counter + 1;
        if (s_usr1_seen == 1) {
            s_usr1_seen = 2;
            s_line("counter before %llu\n",
                   (unsigned long long)s_counter_at_usr1);
        }
    }
    at_go = s_counter;
    s_line("counter after %llu\n", (unsigned long long)at_go);
    if (s_usr1_seen != 2)
        return s_failf("no SIGUSR1 seen before the checkpoint");
    return at_go > s_counter_at_usr1 ||
           s_failf("counter %llu after restore is not past %llu before "
                   "the dump", (unsigned long long)at_go,
                   (unsigned long long)s_counter_at_usr1);
}

/* ---- fpu: x87, SSE and AVX registers ----------------------------------- */

#define S_NREG 16
static volatile int s_go_int;   /* s_go as a plain int for the asm loop */

static void s_on_usr2_fpu(int sig)
{
    s_go = 1;
    s_go_int = 1;
}

/* Loads ymm0..15 (or xmm0..15) from in, pushes pi and 1 on the x87 stack,
 * spins reading only s_go_int, then stores everything to out. Nothing in
 * the loop touches a vector or x87 register. */
static void s_fpu_spin(bool avx, unsigned char in[S_NREG][32],
                       unsigned char out[S_NREG][32], unsigned char x87[2][16])
{
#define L(n) "vmovdqu " #n "*32(%[in]), %%ymm" #n "\n\t"
#define S(n) "vmovdqu %%ymm" #n ", " #n "*32(%[out])\n\t"
#define LX(n) "movdqu " #n "*32(%[in]), %%xmm" #n "\n\t"
#define SX(n) "movdqu %%xmm" #n ", " #n "*32(%[out])\n\t"
#define SPIN "fldpi\n\tfld1\n\t" \
             "1: pause\n\tcmpl $0, %[go]\n\tje 1b\n\t" \
             "fstpt 0(%[x87])\n\tfstpt 16(%[x87])\n\t"
    if (avx)
        __asm__ volatile(L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9)
                         L(10) L(11) L(12) L(13) L(14) L(15) SPIN
                         S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9)
                         S(10) S(11) S(12) S(13) S(14) S(15) "vzeroupper"
                         : : [in] "r"(in), [out] "r"(out), [x87] "r"(x87),
                           [go] "m"(s_go_int)
                         : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3",
                           "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                           "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    else
        __asm__ volatile(LX(0) LX(1) LX(2) LX(3) LX(4) LX(5) LX(6) LX(7) LX(8)
                         LX(9) LX(10) LX(11) LX(12) LX(13) LX(14) LX(15) SPIN
                         SX(0) SX(1) SX(2) SX(3) SX(4) SX(5) SX(6) SX(7) SX(8)
                         SX(9) SX(10) SX(11) SX(12) SX(13) SX(14) SX(15)
                         : : [in] "r"(in), [out] "r"(out), [x87] "r"(x87),
                           [go] "m"(s_go_int)
                         : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3",
                           "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                           "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

/* What fldpi and fld1 store, as reference. */
static void s_x87_reference(unsigned char ref[2][16])
{
    __asm__ volatile("fldpi\n\tfld1\n\tfstpt 0(%0)\n\tfstpt 16(%0)"
                     : : "r"(ref) : "memory");
}

static int s_case_fpu(void)
{
    static unsigned char in[S_NREG][32], out[S_NREG][32];
    unsigned char x87[2][16] = { { 0 } }, ref[2][16] = { { 0 } };
    struct sigaction sa = { .sa_handler = s_on_usr2_fpu };
    bool avx = __builtin_cpu_supports("avx");
    size_t width = avx ? 32 : 16;
    unsigned mxcsr = 0x7f80, got_mxcsr = 0;   /* round toward zero */
    unsigned short cw = 0x0f7f, got_cw = 0;   /* x87: round toward zero */

    sigaction(SIGUSR2, &sa, NULL);
    for (int r = 0; r < S_NREG; r++)
        for (int b = 0; b < 32; b++)
            in[r][b] = (unsigned char)(0xA5 ^ (r * 37 + b * 11 + 1));
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(mxcsr), "m"(cw));
    s_x87_reference(ref);   /* fldpi rounds by the control word */
    s_line("ready %d avx=%d\n", (int)getpid(), (int)avx);
    s_fpu_spin(avx, in, out, x87);
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(got_mxcsr), "=m"(got_cw));
    for (int r = 0; r < S_NREG; r++)
        if (memcmp(in[r], out[r], width) != 0)
            return s_failf("%s%d differs after restore (%s)",
                           avx ? "ymm" : "xmm", r,
                           memcmp(in[r], out[r], 16) == 0
                               ? "low 128 bits equal: the AVX upper half "
                                 "was lost" : "the low 128 bits differ");
    if (memcmp(x87[0], ref[0], 10) != 0 || memcmp(x87[1], ref[1], 10) != 0)
        return s_failf("x87 st(0)/st(1) differ after restore");
    if (got_mxcsr != mxcsr)
        return s_failf("MXCSR %#x, expected %#x", got_mxcsr, mxcsr);
    return got_cw == cw || s_failf("x87 control word %#x, expected %#x",
                                   got_cw, cw);
}

/* ---- signals: handler, altstack, mask, pending ------------------------- */

static volatile sig_atomic_t s_usr1_count;
static volatile sig_atomic_t s_usr1_on_altstack;
static unsigned char s_altstack[65536];

static void s_on_usr1_count(int sig)
{
    unsigned char here;

    s_usr1_count++;
    s_usr1_on_altstack = &here >= s_altstack &&
                         &here < s_altstack + sizeof s_altstack;
}

static void s_signals_setup(void)
{
    struct sigaction sa = { .sa_handler = s_on_usr1_count,
                            .sa_flags = SA_RESTART | SA_ONSTACK };
    stack_t ss = { .ss_sp = s_altstack, .ss_size = sizeof s_altstack };
    sigset_t block;

    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    if (sigaltstack(&ss, NULL) < 0 || sigaction(SIGUSR1, &sa, NULL) < 0)
        s_setup_fail("sigaltstack/sigaction");
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGWINCH);
    sigaddset(&block, SIGRTMIN + 3);
    if (sigprocmask(SIG_BLOCK, &block, NULL) < 0)
        s_setup_fail("sigprocmask");
    raise(SIGHUP);          /* pending, blocked */
    raise(SIGUSR1);         /* delivered now: count 1 */
}

static bool s_signals_check_action(void)
{
    struct sigaction cur;

    if (sigaction(SIGUSR1, NULL, &cur) < 0)
        return s_failf("sigaction: %s", strerror(errno));
    if (cur.sa_handler != s_on_usr1_count)
        return s_failf("SIGUSR1 handler is %p, not %p", (void *)cur.sa_handler,
                       (void *)s_on_usr1_count);
    if (!(cur.sa_flags & SA_RESTART) || !(cur.sa_flags & SA_ONSTACK))
        return s_failf("SIGUSR1 flags %#x lost SA_RESTART|SA_ONSTACK",
                       cur.sa_flags);
    return sigismember(&cur.sa_mask, SIGTERM) == 1 ||
           s_failf("SIGUSR1 sa_mask lost SIGTERM");
}

static bool s_signals_check_mask(void)
{
    sigset_t cur, pend;

    sigprocmask(SIG_BLOCK, NULL, &cur);
    if (sigismember(&cur, SIGHUP) != 1 || sigismember(&cur, SIGWINCH) != 1 ||
        sigismember(&cur, SIGRTMIN + 3) != 1)
        return s_failf("blocked mask lost SIGHUP, SIGWINCH or SIGRTMIN+3");
    if (sigismember(&cur, SIGUSR2) == 1 || sigismember(&cur, SIGUSR1) == 1)
        return s_failf("blocked mask gained SIGUSR1 or SIGUSR2");
    sigpending(&pend);
    return sigismember(&pend, SIGHUP) == 1 ||
           s_failf("pending SIGHUP was lost");
}

static int s_case_signals(void)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };
    stack_t ss;

    s_signals_setup();
    s_line("ready %d\n", (int)getpid());
    while (!s_go)
        nanosleep(&ts, NULL);
    if (!s_signals_check_action() || !s_signals_check_mask())
        return 0;
    raise(SIGUSR1);         /* the handler must still run: count 2 */
    if (s_usr1_count != 2)
        return s_failf("SIGUSR1 handler ran %d times, expected 2",
                       (int)s_usr1_count);
    if (!s_usr1_on_altstack)
        return s_failf("SIGUSR1 handler did not run on the sigaltstack");
    if (sigaltstack(NULL, &ss) < 0 || ss.ss_sp != s_altstack ||
        ss.ss_size != sizeof s_altstack)
        return s_failf("sigaltstack not preserved");
    return 1;
}

/* sigsuspend: the mask it replaced is back once it returns. */
static int s_case_sigsuspend(void)
{
    sigset_t block, wait_mask, cur;

    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigprocmask(SIG_BLOCK, NULL, &wait_mask);
    sigdelset(&wait_mask, SIGUSR2);
    s_line("ready %d\n", (int)getpid());
    while (!s_go)
        sigsuspend(&wait_mask);
    sigprocmask(SIG_BLOCK, NULL, &cur);
    return (sigismember(&cur, SIGUSR2) == 1 && sigismember(&cur, SIGHUP) == 1) ||
           s_failf("after sigsuspend the mask lost SIGUSR2 or SIGHUP: the "
                   "saved mask was not restored");
}

/* ---- files: offsets, O_APPEND, fd numbers ------------------------------ */

#define S_FD_SHARED 42
#define S_FD_NULL 57
static char s_fpath[2][4096];

static int s_open_tmp(int which, const char *tag, int flags)
{
    snprintf(s_fpath[which], sizeof s_fpath[which], "%s/ghost-%s-%d",
             s_workdir, tag, (int)getpid());
    int fd = open(s_fpath[which], flags | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        s_setup_fail(s_fpath[which]);
    return fd;
}

static bool s_file_is(int which, const char *want)
{
    char buf[256] = "";
    int fd = open(s_fpath[which], O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);

    if (fd >= 0)
        close(fd);
    unlink(s_fpath[which]);
    if (n < 0)
        return s_failf("read %s: %s", s_fpath[which], strerror(errno));
    buf[n] = '\0';
    return strcmp(buf, want) == 0 ||
           s_failf("%s is \"%s\", expected \"%s\"", s_fpath[which], buf, want);
}

static int s_case_files(void)
{
    int rw = s_open_tmp(0, "rw", O_RDWR);
    int ap = s_open_tmp(1, "append", O_WRONLY | O_APPEND);
    int flags;

    if (write(rw, "0123456789", 10) != 10 || lseek(rw, 4, SEEK_SET) != 4 ||
        write(ap, "first\n", 6) != 6 || dup2(rw, S_FD_SHARED) < 0 ||
        dup2(open("/dev/null", O_RDWR), S_FD_NULL) < 0)
        s_setup_fail("files");
    s_line("ready %d\n", (int)getpid());
    s_wait_pause();
    if (lseek(rw, 0, SEEK_CUR) != 4)
        return s_failf("offset of the O_RDWR file is %lld, expected 4",
                       (long long)lseek(rw, 0, SEEK_CUR));
    if (write(rw, "XY", 2) != 2 || lseek(S_FD_SHARED, 0, SEEK_CUR) != 6)
        return s_failf("fd %d no longer shares the open file of fd %d",
                       S_FD_SHARED, rw);
    flags = fcntl(ap, F_GETFL);
    if (flags < 0 || !(flags & O_APPEND))
        return s_failf("fd %d lost O_APPEND (flags %#x)", ap, flags);
    if (lseek(ap, 0, SEEK_SET) != 0 || write(ap, "second\n", 7) != 7)
        return s_failf("write to the O_APPEND file: %s", strerror(errno));
    if (write(S_FD_NULL, "x", 1) != 1)
        return s_failf("fd %d (/dev/null) is gone", S_FD_NULL);
    return s_file_is(0, "0123XY6789") && s_file_is(1, "first\nsecond\n");
}

/* ---- syscalls sleeping across the dump --------------------------------- */

static int s_case_nanosleep(void)
{
    /* the kernel writes the time left into rem when the dump interrupts
     * the sleep; the restore returns EINTR with it */
    struct timespec req = { .tv_sec = 3600 }, rem = { -1, -1 };
    int spurious = 0;

    s_line("ready %d\n", (int)getpid());
    while (!s_go) {
        if (nanosleep(&req, &rem) == 0)
            return s_failf("nanosleep(3600 s) returned 0");
        if (errno != EINTR)
            return s_failf("nanosleep failed with errno %d (%s)", errno,
                           strerror(errno));
        if (rem.tv_sec > 3600 || rem.tv_sec < 0 || rem.tv_nsec < 0)
            return s_failf("nanosleep remaining time %lld s %ld ns is nonsense",
                           (long long)rem.tv_sec, rem.tv_nsec);
        spurious += !s_go;   /* ERESTART_RESTARTBLOCK may come back EINTR */
    }
    return spurious <= 1 ||
           s_failf("nanosleep returned EINTR %d times without a signal",
                   spurious);
}

/* poll is restarted by the kernel after a stop without the program
 * seeing it; only SIGUSR2 (a handler ran) may make it return EINTR. */
static int s_case_poll(void)
{
    int p[2], spurious = 0;

    if (pipe(p) < 0)
        s_setup_fail("pipe");
    struct pollfd pf = { .fd = p[0], .events = POLLIN };
    s_line("ready %d\n", (int)getpid());
    while (!s_go) {
        int n = poll(&pf, 1, 3600 * 1000);
        if (n < 0 && errno != EINTR)
            return s_failf("poll failed: %s", strerror(errno));
        if (n == 0 || n > 0)
            return s_failf("poll returned %d with nothing written", n);
        spurious += !s_go;
    }
    return spurious == 0 ||
           s_failf("poll returned EINTR %d times without a signal", spurious);
}

static int s_case_pause(void)
{
    int r;

    s_line("ready %d\n", (int)getpid());
    r = pause();
    if (!s_go)
        return s_failf("pause() returned %d errno %d before SIGUSR2: not "
                       "restarted", r, errno);
    return (r == -1 && errno == EINTR) ||
           s_failf("pause() returned %d errno %d", r, errno);
}

/* pause, in a process that said it must not be traced (PR_SET_DUMPABLE
 * 0, as ssh-agent does): its user's ghostd requests must be refused. */
static int s_case_undumpable(void)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        s_setup_fail("prctl(PR_SET_DUMPABLE, 0)");
    return s_case_pause();
}

/* Set once the second thread of pause-threads blocks SIGUSR2. */
static volatile sig_atomic_t s_waiter_blocked;

/* pause-threads' second thread: blocks SIGUSR2 and waits in pause(), so
 * a SIGUSR2 sent to the process can only go to the main thread. */
static void *s_blocking_waiter(void *arg)
{
    sigset_t m;

    (void)arg;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    s_waiter_blocked = 1;
    for (;;)
        pause();
    return NULL;
}

/* pause, with a second thread that blocks the signal: a process-wide
 * SIGUSR2 pending in the image is the main thread's to take. */
static int s_case_pause_threads(void)
{
    pthread_t t;

    if (pthread_create(&t, NULL, s_blocking_waiter, NULL))
        s_setup_fail("pthread_create");
    while (!s_waiter_blocked)
        usleep(1000);
    return s_case_pause();
}

static int s_pipe_w = -1;

static void s_on_usr2_pipe(int sig)
{
    s_go = 1;
    if (write(s_pipe_w, "x", 1) != 1)
        _exit(4);
}

/* read() on an empty pipe across the dump (SA_RESTART: restarted after
 * the handler, which writes the byte); a second pipe holds unread data. */
static int s_case_read(void)
{
    struct sigaction sa = { .sa_handler = s_on_usr2_pipe,
                            .sa_flags = SA_RESTART };
    int wake[2], kept[2];
    char c = 0, buf[16] = "";
    ssize_t n;

    if (pipe(wake) < 0 || pipe(kept) < 0 || write(kept[1], "kept data", 9) != 9)
        s_setup_fail("pipe");
    s_pipe_w = wake[1];
    sigaction(SIGUSR2, &sa, NULL);
    s_line("ready %d\n", (int)getpid());
    n = read(wake[0], &c, 1);
    if (n != 1 || c != 'x')
        return s_failf("read on the pipe returned %zd errno %d (%s), byte "
                       "%#x", n, errno, strerror(errno), c);
    fcntl(kept[0], F_SETFL, O_NONBLOCK);
    n = read(kept[0], buf, sizeof buf - 1);
    return (n == 9 && memcmp(buf, "kept data", 9) == 0) ||
           s_failf("the pipe's unread contents were lost (read %zd)", n);
}

/* ---- process: umask, cwd, rlimits, itimer ------------------------------ */

static int s_case_process(void)
{
    struct rlimit nofile = { 123, 4096 }, core = { 0, 1 << 20 }, got;
    struct itimerval it = { .it_value = { .tv_sec = 3600 } }, cur;
    char dir[4096], cwd[4096];

    snprintf(dir, sizeof dir, "%s/ghost-cwd-%d", s_workdir, (int)getpid());
    if (mkdir(dir, 0700) < 0 || chdir(dir) < 0)
        s_setup_fail("chdir");
    umask(027);
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
        setrlimit(RLIMIT_CORE, &core) < 0)
        s_setup_fail("setrlimit");
    signal(SIGALRM, SIG_IGN);
    setitimer(ITIMER_REAL, &it, NULL);
    s_line("ready %d\n", (int)getpid());
    s_wait_pause();
    if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, dir) != 0)
        return s_failf("cwd is %s, expected %s", cwd, dir);
    rmdir(dir);
    if (umask(022) != 027)
        return s_failf("umask not preserved");
    getrlimit(RLIMIT_NOFILE, &got);
    if (got.rlim_cur != 123 || got.rlim_max != 4096)
        return s_failf("RLIMIT_NOFILE is %llu/%llu", (unsigned long long)
                       got.rlim_cur, (unsigned long long)got.rlim_max);
    getrlimit(RLIMIT_CORE, &got);
    if (got.rlim_cur != 0 || got.rlim_max != 1 << 20)
        return s_failf("RLIMIT_CORE not preserved");
    getitimer(ITIMER_REAL, &cur);
    return (cur.it_value.tv_sec > 0 && cur.it_value.tv_sec <= 3600) ||
           s_failf("ITIMER_REAL lost (%lld s left)",
                   (long long)cur.it_value.tv_sec);
}

/* ---- threads: running, blocked on a futex, joining, signalled ---------- */

#define S_THREADS 4
static volatile uint64_t s_tcount[S_THREADS];
static volatile int s_tstop;
static __thread int s_tls = -1;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_cond = PTHREAD_COND_INITIALIZER;
static int s_released;
static int s_tls_bad;
static volatile sig_atomic_t s_usr1_tls;   /* s_tls of the thread SIGUSR1 hit */

static void s_on_usr1_tls(int sig)
{
    (void)sig;
    s_usr1_tls = s_tls;
}

static void *s_spinner(void *arg)
{
    int i = (int)(intptr_t)arg;

    s_tls = 1000 + i;
    while (!s_tstop)
        s_tcount[i]++;
    if (s_tls != 1000 + i)
        __atomic_add_fetch(&s_tls_bad, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *s_waiter(void *arg)
{
    s_tls = 7;
    pthread_mutex_lock(&s_lock);
    while (!s_released)
        pthread_cond_wait(&s_cond, &s_lock);
    pthread_mutex_unlock(&s_lock);
    return s_tls == 7 ? arg : NULL;
}

static int s_case_threads(void)
{
    pthread_t t[S_THREADS], w;
    uint64_t before[S_THREADS];
    void *wr = NULL;

    s_tls = 5;
    for (int i = 0; i < S_THREADS; i++)
        if (pthread_create(&t[i], NULL, s_spinner, (void *)(intptr_t)i))
            s_setup_fail("pthread_create");
    if (pthread_create(&w, NULL, s_waiter, (void *)&s_released))
        s_setup_fail("pthread_create");
    usleep(50000);
    s_line("ready %d\n", (int)getpid());
    s_wait_pause();
    for (int i = 0; i < S_THREADS; i++)
        before[i] = s_tcount[i];
    usleep(200000);
    for (int i = 0; i < S_THREADS; i++)
        if (s_tcount[i] == before[i])
            s_failf("thread %d is not running after restore", i);
    /* pthread_kill uses the tid glibc keeps: right under a new pid too. */
    struct sigaction sa = { .sa_handler = s_on_usr1_tls };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    int e = pthread_kill(t[1], SIGUSR1);
    for (int i = 0; i < 200 && s_usr1_tls != 1001; i++)
        usleep(1000);
    if (e)
        s_failf("pthread_kill of thread 1 after restore: %s", strerror(e));
    else if (s_usr1_tls != 1001)
        s_failf("pthread_kill of thread 1 hit the thread with TLS %d", (int)s_usr1_tls);
    pthread_mutex_lock(&s_lock);
    s_released = 1;
    pthread_cond_broadcast(&s_cond);
    pthread_mutex_unlock(&s_lock);
    s_tstop = 1;
    for (int i = 0; i < S_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_join(w, &wr);
    if (wr != (void *)&s_released)
        s_failf("the thread blocked in pthread_cond_wait lost its TLS");
    if (s_tls_bad || s_tls != 5)
        s_failf("thread-local storage differs after restore");
    return !s_fail[0];
}

/* ---- anonfds: eventfd, timerfd, signalfd, epoll ------------------------ */

static int s_efd = -1, s_efd2 = -1, s_tlong = -1, s_tfired = -1, s_sfd = -1, s_ep = -1;
static int s_ino = -1, s_ino_wd = -1;
static char s_ino_file[4096];
static int s_epipe[2] = { -1, -1 };

static void s_anonfds_setup(void)
{
    struct itimerspec lng = { { 7, 0 }, { 1000, 0 } }, once = { { 0, 0 }, { 0, 1000000 } };
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    s_efd = eventfd(5, EFD_NONBLOCK | EFD_SEMAPHORE);
    s_efd2 = dup(s_efd);
    s_tlong = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    s_tfired = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    s_sfd = signalfd(-1, &set, SFD_NONBLOCK);
    s_ep = epoll_create1(EPOLL_CLOEXEC);
    if (s_efd < 0 || s_efd2 < 0 || s_tlong < 0 || s_tfired < 0 || s_sfd < 0 || s_ep < 0 ||
        pipe(s_epipe) < 0)
        s_setup_fail("making the fds");
    if (timerfd_settime(s_tlong, 0, &lng, NULL) < 0 ||
        timerfd_settime(s_tfired, 0, &once, NULL) < 0)
        s_setup_fail("timerfd_settime");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xe };
    if (epoll_ctl(s_ep, EPOLL_CTL_ADD, s_efd, &ev) < 0)
        s_setup_fail("epoll_ctl");
    ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 0x9 };
    if (epoll_ctl(s_ep, EPOLL_CTL_ADD, s_epipe[0], &ev) < 0)
        s_setup_fail("epoll_ctl");
    /* inotify: watch 1 on the directory, removed; the file's is watch 2 */
    snprintf(s_ino_file, sizeof s_ino_file, "%s/ghost-inotify-%d", s_workdir, (int)getpid());
    close(open(s_ino_file, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    s_ino = inotify_init1(IN_NONBLOCK);
    int wd1 = s_ino < 0 ? -1 : inotify_add_watch(s_ino, s_workdir, IN_CREATE);
    if (wd1 < 0 || inotify_rm_watch(s_ino, wd1) < 0 ||
        (s_ino_wd = inotify_add_watch(s_ino, s_ino_file, IN_MODIFY)) < 0)
        s_setup_fail("inotify");
    char drop[4096];
    while (read(s_ino, drop, sizeof drop) > 0)   /* the IN_IGNORED of watch 1 */
        ;
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);   /* pending, for the signalfd to read */
    usleep(20000);    /* the 1 ms timer fires, unread */
}

static void s_anonfds_check_eventfd(void)
{
    uint64_t v = 0;
    int reads = 0;
    if (read(s_efd, &v, sizeof(v)) != sizeof(v) || v != 1)
        s_failf("eventfd: semaphore read gave %llu (%s)", (unsigned long long)v, strerror(errno));
    while (read(s_efd2, &v, sizeof(v)) == sizeof(v) && reads < 10)
        reads++;
    if (reads != 4)
        s_failf("eventfd: its dup read %d more times, not 4 (a count of 5 shared)", reads);
}

static void s_anonfds_check_timers(void)
{
    struct itimerspec got;
    uint64_t ticks = 0;
    if (timerfd_gettime(s_tlong, &got) < 0 || got.it_interval.tv_sec != 7 ||
        got.it_value.tv_sec < 900 || got.it_value.tv_sec > 1000)
        s_failf("timerfd: %ld s left every %ld s, not ~1000 every 7",
                (long)got.it_value.tv_sec, (long)got.it_interval.tv_sec);
    if (read(s_tfired, &ticks, sizeof(ticks)) != sizeof(ticks) || ticks != 1)
        s_failf("timerfd: the fired timer read %llu (%s), not 1", (unsigned long long)ticks,
                strerror(errno));
    if (!(fcntl(s_tfired, F_GETFD) & FD_CLOEXEC) || (fcntl(s_tlong, F_GETFD) & FD_CLOEXEC))
        s_failf("timerfd: close-on-exec flags differ");
}

static void s_anonfds_check_epoll(void)
{
    struct epoll_event ev[4];
    int n = epoll_wait(s_ep, ev, 4, 0);
    if (n != 1 || ev[0].data.u64 != 0xe)
        s_failf("epoll: %d ready (first data %#llx), not the eventfd alone", n,
                n > 0 ? (unsigned long long)ev[0].data.u64 : 0ull);
    if (write(s_epipe[1], "x", 1) != 1)
        s_failf("epoll: write into the pipe");
    n = epoll_wait(s_ep, ev, 4, 1000);
    bool pipe_seen = false;
    for (int i = 0; i < n; i++)
        pipe_seen |= ev[i].data.u64 == 0x9;
    if (!pipe_seen)
        s_failf("epoll: the pipe's data did not wake it");
}

static void s_anonfds_check_inotify(void)
{
    char buf[4096] __attribute__((aligned(8)));
    int fd = open(s_ino_file, O_WRONLY | O_APPEND);
    if (fd < 0 || write(fd, "x", 1) != 1)
        s_failf("inotify: cannot write %s", s_ino_file);
    if (fd >= 0)
        close(fd);
    ssize_t n = -1;
    for (int i = 0; i < 100 && n < 0; i++, usleep(10000))
        n = read(s_ino, buf, sizeof buf);
    const struct inotify_event *ev = (const struct inotify_event *)buf;
    if (n < (ssize_t)sizeof(*ev) || ev->wd != s_ino_wd || !(ev->mask & IN_MODIFY))
        s_failf("inotify: no IN_MODIFY on watch %d (read %zd, wd %d)", s_ino_wd, n,
                n >= (ssize_t)sizeof(*ev) ? ev->wd : -1);
    unlink(s_ino_file);
}

/* A fanotify group watching a file of the process's own (an inode mark
 * on workdir/fan-watched), made by fanotify_init(flags): reads the
 * group's flags back from fdinfo after the restore. */
static int s_fanotify_group(unsigned flags)
{
    int fd = fanotify_init(flags, O_RDONLY);
    int f = open("fan-watched", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 || f < 0)
        s_setup_fail("fanotify_init / fan-watched");
    close(f);
    if (fanotify_mark(fd, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, "fan-watched") < 0)
        s_setup_fail("fanotify_mark");
    return fd;
}

/* The group's fdinfo says flags `want` (its "fanotify flags:%x" line). */
static int s_fanotify_check(int fd, unsigned want)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int i = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = i < 0 ? -1 : read(i, buf, sizeof buf - 1);
    if (i >= 0)
        close(i);
    if (n <= 0)
        return s_failf("fanotify fd %d: no fdinfo", fd);
    buf[n] = '\0';
    const char *l = strstr(buf, "fanotify flags:");
    unsigned got = 0;
    if (!l || sscanf(l, "fanotify flags:%x", &got) != 1 || !strstr(buf, "fanotify ino:"))
        return s_failf("fanotify fd %d: no group or no mark after the restore", fd);
    return (got & ~(unsigned)(FAN_CLOEXEC | FAN_NONBLOCK)) == want ||
           s_failf("fanotify fd %d: flags %#x, not %#x", fd, got, want);
}

/* A group as a user makes one (no CAP_SYS_ADMIN: file handles, not fds,
 * in its events): a user's restore makes it again. */
static int s_case_fanotify(void)
{
    unsigned flags = FAN_CLASS_NOTIF | FAN_REPORT_FID;
    int fd = s_fanotify_group(flags);
    s_line("ready %d\n", (int)getpid());
    pause();
    return s_fanotify_check(fd, flags);
}

/* A group root made (events carrying open fds of the files, which only
 * CAP_SYS_ADMIN may have), then the process became the user
 * GHOST_CASE_BECOME ("UID:GID", no groups, no capabilities left) and
 * dumpable again: its image is that user's, and a restore for them must
 * not make the privileged group (test-ghost-users.sh). */
static int s_case_fanotify_dropped(void)
{
    const char *who = getenv("GHOST_CASE_BECOME");
    unsigned uid = 0, gid = 0;
    if (!who || sscanf(who, "%u:%u", &uid, &gid) != 2)
        s_setup_fail("GHOST_CASE_BECOME");
    int fd = s_fanotify_group(FAN_CLASS_NOTIF);
    if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0 ||
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        s_setup_fail("becoming the user");
    s_line("ready %d\n", (int)getpid());
    pause();
    return s_fanotify_check(fd, FAN_CLASS_NOTIF);
}

static int s_case_anonfds(void)
{
    struct signalfd_siginfo si;
    s_anonfds_setup();
    s_line("ready %d\n", (int)getpid());
    s_wait_pause();
    if (read(s_sfd, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR1)
        s_failf("signalfd: no pending SIGUSR1 (%s)", strerror(errno));
    s_anonfds_check_epoll();     /* while the eventfd's count is not 0 */
    s_anonfds_check_eventfd();
    s_anonfds_check_timers();
    s_anonfds_check_inotify();
    return !s_fail[0];
}

/* ---- socket: must be refused, and left untouched ----------------------- */

/* A netlink socket: a kind of socket the engine does not restore (unix
 * ones it does), refused up front, its queued answer still there after. */
static int s_case_socket(void)
{
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    struct {
        struct nlmsghdr h;
        struct rtgenmsg g;
    } req = { .h = { .nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK,
                     .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 7 },
              .g = { .rtgen_family = AF_UNSPEC } };
    char buf[8192];
    struct stat st;
    int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);

    if (nl < 0 || sendto(nl, &req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
        s_setup_fail("netlink socket");
    s_line("ready %d fds=%d\n", (int)getpid(), nl);
    s_wait_pause();
    if (fstat(nl, &st) < 0 || !S_ISSOCK(st.st_mode))
        return s_failf("fd %d is no longer a socket", nl);
    ssize_t n = recv(nl, buf, sizeof buf, MSG_DONTWAIT);
    return (n > (ssize_t)sizeof(struct nlmsghdr) &&
            ((struct nlmsghdr *)buf)->nlmsg_seq == 7) ||
           s_failf("the socket's queued answer was lost");
}

/* ---- unmovable: every reason at once, and a check leaves it alone ------ */

static volatile sig_atomic_t s_count_asked;   /* SIGUSR1: print the count */

static void s_on_usr1_ask(int sig)
{
    s_count_asked = 1;
}

/* The tracer, a grandchild reparented away (so outside the tree): seizes
 * target, says "tracer <pid>", then reports every stop it sees as "stop
 * <signal>" and lets the signal through, until target is gone. */
static void __attribute__((noreturn)) s_tracer(pid_t target)
{
    int st;

    if (ptrace(PTRACE_SEIZE, target, 0, 0) < 0) {
        s_line("FAIL unmovable: setup: PTRACE_SEIZE: %s\n", strerror(errno));
        _exit(1);
    }
    s_line("tracer %d\n", (int)getpid());
    while (waitpid(target, &st, __WALL) == target && WIFSTOPPED(st)) {
        int event = st >> 16, sig = WSTOPSIG(st);
        s_line("stop %d\n", sig);
        ptrace(PTRACE_CONT, target, 0, event ? 0 : sig);
    }
    _exit(0);
}

/* Waits up to 2 s for a tracer to show in our status; its pid, or 0. */
static pid_t s_traced_by(void)
{
    for (int i = 0; i < 200; i++, usleep(10000)) {
        char buf[4096];
        int fd = open("/proc/self/status", O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        buf[n > 0 ? n : 0] = '\0';
        const char *t = strstr(buf, "TracerPid:");
        if (t && atoi(t + 10) > 0)
            return (pid_t)atoi(t + 10);
    }
    return 0;
}

/* Three reasons not to move at once: a socket (a socketpair's end; the
 * other end is the tracer's), a pty master holding output its slave wrote
 * and nobody read (bytes that cannot be taken without loss) and a tracer
 * outside the tree. It counts in a nanosleep loop (SIGUSR1: "count N");
 * SIGUSR2 ends it: the socket still holds its bytes, the pty master its
 * unread output, the tracer is the same and the count went on. Its only
 * fds are 0-2 and these two. */
static int s_case_unmovable(void)
{
    struct sigaction sa = { .sa_handler = s_on_usr1_ask };
    struct timespec tick = { 0, 2000000 };
    struct stat st;
    int sv[2], ptmx, pts;
    pid_t self = getpid(), c, tracer;
    uint64_t count = 0;
    char buf[8] = "";

    syscall(SYS_close_range, 3, ~0u, 0);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || write(sv[0], "sock", 4) != 4)
        s_setup_fail("socketpair");
    if ((ptmx = open("/dev/ptmx", O_RDWR | O_NOCTTY)) < 0 || unlockpt(ptmx) < 0 ||
        (pts = open(ptsname(ptmx), O_RDWR | O_NOCTTY)) < 0 || write(pts, "tty", 3) != 3 ||
        close(pts) < 0)
        s_setup_fail("/dev/ptmx");
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);   /* Yama, if any */
    if ((c = fork()) < 0)
        s_setup_fail("fork");
    if (c == 0) {
        if (fork() == 0)
            s_tracer(self);
        _exit(0);
    }
    waitpid(c, NULL, 0);
    close(sv[0]);
    if (!(tracer = s_traced_by()))
        s_setup_fail("no tracer");
    sigaction(SIGUSR1, &sa, NULL);
    s_line("ready %d socket=%d ptmx=%d tracer=%d\n", (int)self, sv[1], ptmx, (int)tracer);
    while (!s_go) {
        nanosleep(&tick, NULL);
        count++;
        if (s_count_asked) {
            s_count_asked = 0;
            s_line("count %llu\n", (unsigned long long)count);
        }
    }
    if (fstat(sv[1], &st) < 0 || !S_ISSOCK(st.st_mode) || read(sv[1], buf, 4) != 4 ||
        memcmp(buf, "sock", 4) != 0)
        return s_failf("fd %d: the socket or its queued bytes were lost", sv[1]);
    if (fstat(ptmx, &st) < 0 || !S_ISCHR(st.st_mode) || read(ptmx, buf, 3) != 3 ||
        memcmp(buf, "tty", 3) != 0)
        return s_failf("fd %d: the pty master or its unread output was lost", ptmx);
    if (s_traced_by() != tracer)
        return s_failf("traced by %d, no longer by %d", (int)s_traced_by(), (int)tracer);
    return count > 0 || s_failf("it never counted");
}

/* ---- main -------------------------------------------------------------- */


/* ---- creds: who each thread is ----------------------------------------- */

/* The calling thread's credentials in one line: ids (fs ones included),
 * groups, securebits, the dumpable flag, and the capability and
 * no_new_privs lines of /proc/thread-self/status. */
static void s_creds_line(char *buf, size_t size)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, groups[64];
    char status[4096] = "";
    int fd = open("/proc/thread-self/status", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, status, sizeof status - 1) : -1;
    size_t len;

    if (fd >= 0)
        close(fd);
    status[n > 0 ? n : 0] = '\0';
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    int ng = getgroups(64, groups);
    len = (size_t)snprintf(buf, size, "uid %u %u %u fs %d gid %u %u %u fs %d secbits %d "
                           "dumpable %d groups", ru, eu, su, setfsuid((uid_t)-1), rg, eg,
                           sg, setfsgid((gid_t)-1), prctl(PR_GET_SECUREBITS),
                           prctl(PR_GET_DUMPABLE));
    for (int i = 0; i < ng && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, " %u", groups[i]);
    for (char *line = strtok(status, "\n"); line && len < size; line = strtok(NULL, "\n"))
        if (strncmp(line, "Cap", 3) == 0 || strncmp(line, "NoNewPrivs", 10) == 0)
            len += (size_t)snprintf(buf + len, size - len, " | %s", line);
}

static char s_creds_thread_before[1024], s_creds_thread_after[1024];

static void *s_creds_thread(void *arg)
{
    (void)arg;
    s_creds_line(s_creds_thread_before, sizeof s_creds_thread_before);
    while (!s_go)
        usleep(1000);
    s_creds_line(s_creds_thread_after, sizeof s_creds_thread_after);
    return NULL;
}

/* Whatever ids, groups and capabilities the test started us with (as a
 * user, with a trimmed bounding set, ...) must be every thread's again
 * after the restore. */
static int s_case_creds(void)
{
    char before[1024], after[1024];
    pthread_t th;

    s_creds_line(before, sizeof before);
    if (pthread_create(&th, NULL, s_creds_thread, NULL) != 0)
        s_setup_fail("pthread_create");
    while (!s_creds_thread_before[0])
        usleep(1000);
    s_line("ready %d %s\n", (int)getpid(), before);
    s_wait_pause();
    pthread_join(th, NULL);
    s_creds_line(after, sizeof after);
    if (strcmp(before, after) != 0)
        return s_failf("main thread: was [%s] now [%s]", before, after);
    if (strcmp(s_creds_thread_before, s_creds_thread_after) != 0)
        return s_failf("second thread: was [%s] now [%s]", s_creds_thread_before,
                       s_creds_thread_after);
    return 1;
}


/* ---- seccomp: a filter every thread keeps ------------------------------ */

/* Whether getpriority(2) fails with errno 42 (what our filter answers) and
 * /proc/thread-self/status counts one filter in mode 2. */
static bool s_filtered(char *why, size_t size)
{
    char status[4096] = "";
    int fd = open("/proc/thread-self/status", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, status, sizeof status - 1) : -1;

    if (fd >= 0)
        close(fd);
    status[n > 0 ? n : 0] = '\0';
    errno = 0;
    int r = getpriority(PRIO_PROCESS, 0);
    int e = errno;
    bool ok = r == -1 && e == 42 && strstr(status, "Seccomp:\t2\n") &&
              strstr(status, "Seccomp_filters:\t1\n");
    if (!ok)
        snprintf(why, size, "getpriority %d errno %d; status %s %s", r, e,
                 strstr(status, "Seccomp:\t2\n") ? "mode 2" : "not mode 2",
                 strstr(status, "Seccomp_filters:\t1\n") ? "1 filter" : "not 1 filter");
    return ok;
}

static char s_seccomp_thread_why[256];
static volatile int s_seccomp_thread_ok = -1;

static void *s_seccomp_thread(void *arg)
{
    (void)arg;
    while (!s_go)
        usleep(1000);
    s_seccomp_thread_ok = s_filtered(s_seccomp_thread_why, sizeof s_seccomp_thread_why);
    return NULL;
}

/* A filter (getpriority answers errno 42, the rest is allowed) installed
 * before the second thread exists, so both have it; after the restore both
 * must still be filtered. */
static int s_case_seccomp(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 42),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof f / sizeof f[0], f };
    char why[256];
    pthread_t th;

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        s_setup_fail("seccomp");
    if (!s_filtered(why, sizeof why))
        s_setup_fail(why);
    if (pthread_create(&th, NULL, s_seccomp_thread, NULL) != 0)
        s_setup_fail("pthread_create");
    s_line("ready %d\n", (int)getpid());
    s_wait_pause();
    pthread_join(th, NULL);
    if (!s_filtered(why, sizeof why))
        return s_failf("main thread: %s", why);
    if (s_seccomp_thread_ok != 1)
        return s_failf("second thread: %s", s_seccomp_thread_why);
    return 1;
}

static const struct {
    const char *mode;
    int (*run)(void);   /* setup, ready, wait, check; 0 on failure */
} s_cases[] = {
    { "creds", s_case_creds },
    { "seccomp", s_case_seccomp },
    { "memory", s_case_memory },
    { "counter", s_case_counter },
    { "fpu", s_case_fpu },
    { "signals", s_case_signals },
    { "sigsuspend", s_case_sigsuspend },
    { "files", s_case_files },
    { "nanosleep", s_case_nanosleep },
    { "pause", s_case_pause },
    { "pause-threads", s_case_pause_threads },
    { "undumpable", s_case_undumpable },
    { "poll", s_case_poll },
    { "read", s_case_read },
    { "process", s_case_process },
    { "threads", s_case_threads },
    { "anonfds", s_case_anonfds },
    { "fanotify", s_case_fanotify },
    { "fanotify-dropped", s_case_fanotify_dropped },
    { "socket", s_case_socket },
    { "unmovable", s_case_unmovable },
};

int main(int argc, char **argv)
{
    struct sigaction sa = { .sa_handler = s_on_usr2 };

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: ghost-case MODE [WORKDIR]\n");
        return 100;
    }
    s_mode = argv[1];
    if (argc == 3)
        s_workdir = argv[2];
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        if (strcmp(s_cases[i].mode, s_mode) != 0)
            continue;
        if (s_cases[i].run() && !s_fail[0]) {
            s_line("PASS %s\n", s_mode);
            return 0;
        }
        s_line("FAIL %s: %s\n", s_mode, s_fail[0] ? s_fail : "check failed");
        return 1;
    }
    fprintf(stderr, "ghost-case: unknown mode '%s'\n", s_mode);
    return 100;
}
