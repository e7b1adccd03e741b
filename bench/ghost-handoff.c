/* ghost-handoff - the scheduling baseline of a freeze (bench/incr.sh): how
 * long one process waits for another to run, on this machine, now.
 *
 *   ghost-handoff [--trips N] [--gap-us US] [--nice N] [--ptrace [--mib M]]
 *
 * A dump's freeze is a string of hand-offs between the dumper and the
 * frozen threads: each injected syscall wakes the thread twice (its entry
 * and exit stops) and the dumper waits for each. When the CPUs are busy,
 * what such a hand-off costs is how long the woken side waits for a CPU,
 * which no dumper controls. This measures it the plainest way: N round
 * trips of one byte over two pipes between this process (at nice N, as
 * the dumper runs while a tree is frozen: -20 by default) and a child at
 * nice 0 (as the frozen threads), each after GAP-US microseconds of sleep
 * (the child sleeping in between, as a frozen thread does). --ptrace
 * makes each round trip the dumper's own: the child, traced, calls
 * getppid() in a loop and each trip is a PTRACE_SYSCALL and the wait for
 * its next syscall stop, as an injected syscall's entry or exit is;
 * --mib M first has the child write M MiB of its own memory in 4 KiB
 * pages (a frozen job's size: on a virtual machine whose hypervisor
 * shadows page tables, switching to a large address space may cost in
 * proportion). One line:
 *   {"bench":"handoff","ptrace":B,"trips":N,"nice":N,"p50_us":X,"p99_us":Y,
 *    "max_us":Z,"over_1ms":K}
 * (over_1ms: round trips that took more than a millisecond).
 * Exit codes: 100 wrong usage, 111 a system call failed.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/options.h"

enum { S_OPT_TRIPS, S_OPT_GAP, S_OPT_NICE, S_OPT_MIB, S_OPT_PTRACE };

static const cairn_option_t s_options[] = {
    [S_OPT_TRIPS] = { "--trips", "N", "round trips (default 1000)" },
    [S_OPT_GAP] = { "--gap-us", "US", "sleep before each (default 500)" },
    [S_OPT_NICE] = { "--nice", "N", "this side's nice value (default -20)" },
    [S_OPT_MIB] = { "--mib", "M", "--ptrace: the child's memory written first" },
    [S_OPT_PTRACE] = { "--ptrace", NULL, "trips to syscall stops of a traced child" },
    { NULL, NULL, NULL },
};

static int s_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The child: echoes every byte until the end of in. */
static void s_echo(int in, int out)
{
    char c;
    while (read(in, &c, 1) == 1)
        if (write(out, &c, 1) != 1)
            _exit(111);
    _exit(0);
}

/* The traced child: writes mib MiB, stops for its tracer, then calls
 * getppid for ever. */
static void s_traced(long mib)
{
    size_t len = (size_t)mib << 20;
    uint8_t *m = len ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0)
                     : NULL;
    if (m == MAP_FAILED || (m && madvise(m, len, MADV_NOHUGEPAGE) < 0))
        _exit(111);
    for (size_t i = 0; i < len; i += 4096)
        m[i] = 1;
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 || raise(SIGSTOP) < 0)
        _exit(111);
    for (;;)
        (void)getppid();
}

/* One trip to the traced child's next syscall stop; 0 or -1. */
static int s_ptrace_trip(pid_t child)
{
    int st;
    if (ptrace(PTRACE_SYSCALL, child, 0, 0) < 0 || waitpid(child, &st, __WALL) != child ||
        !WIFSTOPPED(st))
        return -1;
    return 0;
}

static int s_parse(int argc, char **argv, long *trips, long *gap, long *nice_v, long *mib,
                   bool *ptr)
{
    cairn_args_t args;
    cairn_error_t err;
    long *out[] = { trips, gap, nice_v, mib };

    if (cairn_args_parse("ghost-handoff", s_options, argc > 0 ? argc - 1 : 0, argv + 1, 0,
                         &args, &err) < 0)
        return -EINVAL;
    *ptr = args.values[S_OPT_PTRACE] != NULL;
    for (int i = 0; i <= S_OPT_MIB; i++) {
        char *end = NULL;
        if (!args.values[i])
            continue;
        *out[i] = strtol(args.values[i], &end, 10);
        if (!*args.values[i] || *end)
            return -EINVAL;
    }
    return *trips > 0 && *trips <= 1000000 && *gap >= 0 && *gap <= 1000000 &&
                   *nice_v >= -20 && *nice_v <= 19 && *mib >= 0 && *mib <= (1l << 20) &&
                   (*ptr || *mib == 0)
               ? 0
               : -EINVAL;
}

int main(int argc, char **argv)
{
    long trips = 1000, gap = 500, nice_v = -20, mib = 0;
    bool ptr = false;
    if (s_parse(argc, argv, &trips, &gap, &nice_v, &mib, &ptr) < 0) {
        fprintf(stderr, "usage: ghost-handoff [--trips N] [--gap-us US] [--nice N] "
                        "[--ptrace [--mib M]]\n");
        return 100;
    }
    int to[2], from[2], st;
    if (pipe(to) < 0 || pipe(from) < 0)
        return 111;
    pid_t child = fork();
    if (child < 0)
        return 111;
    if (child == 0 && ptr)
        s_traced(mib);
    if (child == 0) {
        close(to[1]);
        close(from[0]);
        s_echo(to[0], from[1]);
    }
    close(to[0]);
    close(from[1]);
    if (ptr && (waitpid(child, &st, 0) != child || !WIFSTOPPED(st) ||
                ptrace(PTRACE_SETOPTIONS, child, 0, (void *)(long)(PTRACE_O_TRACESYSGOOD |
                                                                   PTRACE_O_EXITKILL)) < 0))
        return 111;
    /* Without the right to (no CAP_SYS_NICE) it stays as it is: say so. */
    if (setpriority(PRIO_PROCESS, 0, (int)nice_v) < 0)
        nice_v = getpriority(PRIO_PROCESS, 0);
    uint64_t *v = calloc((size_t)trips, sizeof(*v));
    if (!v)
        return 111;
    char c = 0;
    long over = 0;
    for (long i = 0; i < trips; i++) {
        if (gap)
            nanosleep(&(struct timespec){ 0, gap * 1000 }, NULL);
        uint64_t t0 = cairn_now_ns();
        if (ptr ? s_ptrace_trip(child) < 0
                : write(to[1], &c, 1) != 1 || read(from[0], &c, 1) != 1)
            return 111;
        v[i] = cairn_now_ns() - t0;
        over += v[i] > 1000000;
    }
    close(to[1]);
    if (ptr)
        kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    qsort(v, (size_t)trips, sizeof(*v), s_cmp);
    printf("{\"bench\":\"handoff\",\"ptrace\":%s,\"mib\":%ld,\"trips\":%ld,\"nice\":%ld,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"over_1ms\":%ld}\n",
           ptr ? "true" : "false", mib, trips, nice_v, (double)v[trips / 2] / 1e3, (double)v[trips * 99 / 100] / 1e3,
           (double)v[trips - 1] / 1e3, over);
    free(v);
    return 0;
}
