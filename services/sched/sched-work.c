/* sched-work - the work the scheduler's tests and bench/sched.sh run as
 * jobs: CPU-bound jobs of a given length, and a job whose memory grows.
 *
 *   sched-work cpu SECONDS        burns SECONDS of CPU time, then prints
 *                                 "done cpu_ms=N" and exits 0
 *   sched-work grow MIB_S MAX_MIB touches MIB_S MiB a second (in steps
 *                                 of 1 MiB) up to MAX_MIB, then holds it,
 *                                 printing "held N MiB" once
 *   sched-work hold MIB           touches MIB MiB at once and holds it
 *
 * A job migrates while it runs, and a restored process's CPU clock
 * starts again from 0: the work is counted in slices of CLOCK_PROCESS_
 * CPUTIME_ID, each added only when the clock went forward, so a move
 * costs at most one slice (10 ms) of the count and never doubles it.
 * Exit codes: 0 done, 100 wrong usage, 111 out of memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024ul * 1024ul)

static uint64_t s_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int s_cpu(double seconds)
{
    uint64_t want = (uint64_t)(seconds * 1e9), done = 0, prev = s_cpu_ns();
    volatile uint64_t sink = 0;

    while (done < want) {
        for (int i = 0; i < 200000; i++)
            sink += (uint64_t)i * 2654435761u;
        uint64_t now = s_cpu_ns();
        if (now > prev && now - prev < 50000000ull)
            done += now - prev;
        prev = now;
    }
    printf("done cpu_ms=%llu\n", (unsigned long long)(done / 1000000));
    return sink == 1 ? 0 : 0;   /* read once: the loop's work is not dead */
}

/* Touches n more MiB; 111 when memory runs out. */
static int s_touch(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = malloc(MIB);
        if (!p)
            return 111;
        memset(p, (int)(i & 0x7f) + 1, MIB);
    }
    return 0;
}

static int s_grow(double mib_s, size_t max)
{
    struct timespec step = { 0, (long)(1e9 / mib_s) };
    int r;

    for (size_t have = 0; have < max; have++) {
        if ((r = s_touch(1)) != 0)
            return r;
        nanosleep(&step, NULL);
    }
    printf("held %zu MiB\n", max);
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "cpu") == 0 && atof(argv[2]) > 0)
        return s_cpu(atof(argv[2]));
    if (argc == 4 && strcmp(argv[1], "grow") == 0 && atof(argv[2]) > 0 &&
        atol(argv[3]) > 0)
        return s_grow(atof(argv[2]), (size_t)atol(argv[3]));
    if (argc == 3 && strcmp(argv[1], "hold") == 0 && atol(argv[2]) > 0) {
        int r = s_touch((size_t)atol(argv[2]));
        if (r)
            return r;
        printf("held %ld MiB\n", atol(argv[2]));
        fflush(stdout);
        for (;;)
            pause();
    }
    fprintf(stderr, "usage: sched-work cpu SECONDS | grow MIB_S MAX_MIB | "
            "hold MIB\n");
    return 100;
}
