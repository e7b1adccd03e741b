/* ghost-victim - the process bench/ghost.sh checkpoints and restores.
 *
 *   ghost-victim MIB STATUSFILE [--thp]
 *
 * Maps MIB MiB of private anonymous memory (--thp: asks for transparent
 * huge pages, MADV_HUGEPAGE, and aligns it on 2 MiB), writes a pattern into every
 * 64-bit word of it (so every page is resident and distinct), then writes
 * "READY <hex address> <bytes>" to STATUSFILE and waits in sigsuspend with
 * SIGUSR2 blocked otherwise. Each SIGUSR2 makes it check the whole pattern
 * and write "PASS" or "FAIL <first bad offset>" to STATUSFILE. Status
 * lines are written to STATUSFILE.tmp and renamed, so a reader never sees
 * a partial line, and no file stays open between them (nothing for the
 * checkpoint to carry but memory, the handler, the mask and fds 0-2).
 * Exit codes: 100 wrong usage, 111 a system call failed.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define S_GOLDEN 0x9e3779b97f4a7c15ull

static volatile sig_atomic_t s_check_requested;

static void s_on_usr2(int sig)
{
    (void)sig;
    s_check_requested = 1;
}

static uint64_t s_word(size_t k)
{
    return (uint64_t)k * S_GOLDEN + 1u;
}

static void s_fill(uint64_t *w, size_t n)
{
    for (size_t k = 0; k < n; k++)
        w[k] = s_word(k);
}

/* Index of the first word that differs from the pattern, or n. */
static size_t s_verify(const uint64_t *w, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (w[k] != s_word(k))
            return k;
    return n;
}

static int s_status(const char *path, const char *line)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int bad = fprintf(f, "%s\n", line) < 0;
    bad |= fclose(f) != 0;
    return bad ? -1 : rename(tmp, path);
}

int main(int argc, char **argv)
{
    char *end = NULL;
    bool thp = argc == 4 && strcmp(argv[3], "--thp") == 0;
    long mib = argc == 3 || thp ? strtol(argv[1], &end, 10) : 0;
    if ((argc != 3 && !thp) || *end || mib <= 0 || mib > (1l << 20)) {
        fprintf(stderr, "usage: ghost-victim MIB STATUSFILE [--thp]\n");
        return 100;
    }
    size_t bytes = (size_t)mib << 20, huge = (size_t)2 << 20;
    uint8_t *at = mmap(NULL, bytes + (thp ? huge : 0), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at == MAP_FAILED)
        return 111;
    if (thp) {   /* a huge page needs a 2 MiB aligned start */
        at = (uint8_t *)(((uintptr_t)at + huge - 1) & ~(uintptr_t)(huge - 1));
        if (madvise(at, bytes, MADV_HUGEPAGE) < 0)
            return 111;
    }
    uint64_t *mem = (uint64_t *)at;
    s_fill(mem, bytes / 8);

    sigset_t usr2, waiting;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    struct sigaction sa = { .sa_handler = s_on_usr2 };
    if (sigprocmask(SIG_BLOCK, &usr2, &waiting) < 0 || sigaction(SIGUSR2, &sa, NULL) < 0)
        return 111;
    sigdelset(&waiting, SIGUSR2);

    char line[128];
    snprintf(line, sizeof(line), "READY %#lx %zu", (unsigned long)(uintptr_t)mem, bytes);
    if (s_status(argv[2], line) < 0)
        return 111;
    for (;;) {
        while (!s_check_requested)
            sigsuspend(&waiting);
        s_check_requested = 0;
        size_t bad = s_verify(mem, bytes / 8);
        if (bad == bytes / 8)
            snprintf(line, sizeof(line), "PASS");
        else
            snprintf(line, sizeof(line), "FAIL %zu", bad * 8);
        if (s_status(argv[2], line) < 0)
            return 111;
    }
}
