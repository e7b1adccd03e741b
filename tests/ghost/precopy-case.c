/* precopy-case - a process that keeps writing while it is dumped with
 * pre-copy, and checks after its restore that its memory is exactly what
 * it was at the freeze.
 *
 *   precopy-case MIB [RATE_KIB_S]
 *
 * Plain libc, no Cairn code (the program must not know it is dumped).
 * It maps MIB MiB of private anonymous memory with a pattern in every
 * word, then counts for ever: step n writes n into both ends of one of H
 * "hot" pages spread over the region (page n mod H), each step first
 * checking that the page still holds what the step H before wrote there
 * (and the same at both ends) -- so a page a restore brought back from
 * an older copy is caught the moment the count comes back to it. Every
 * few steps it also recycles one slot of a ring of small mappings
 * (munmap, then mmap: the kernel tends to hand the same address back),
 * stamping one page of the new one and leaving the others empty, and one
 * of a ring of 64 KiB heap blocks (malloc: the heap grows and shrinks);
 * what it throws away is checked first. The counter lives in .data (a
 * private file mapping), the rings' tables in .bss. RATE_KIB_S: write
 * about that many KiB a second (one page a step, nanosleep between);
 * without it, as fast as it can.
 *
 * Protocol (stdout: a file opened O_APPEND, one line per write):
 * "ready <pid>" once set up; on SIGUSR1 "at <pid> <count>"; on SIGUSR2 a
 * full check -- every hot page against the count, every other word of the
 * region against the pattern, every live slot and block -- then "PASS
 * <pid> <count>" or "FAIL <pid> <what>", and it goes on counting (a FAIL
 * stops the writes). A failure of a step check says FAIL at once. SIGTERM ends it.
 * Exit codes: 100 wrong usage, 111 setup failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define S_PAGE 4096u
#define S_WORDS (S_PAGE / 8)
#define S_HOT_MAX 4096u
#define S_SLOTS 8u
#define S_SLOT_PAGES 4u
#define S_BLOCKS 8u
#define S_BLOCK (64u * 1024u)
#define S_GOLDEN 0x9e3779b97f4a7c15ull
#define S_BARRIER() __asm__ __volatile__("" ::: "memory")

static volatile uint64_t s_count = 1;      /* .data: a private file mapping */
static volatile sig_atomic_t s_usr1, s_usr2;
static uint64_t *s_mem;                    /* the region */
static size_t s_npages;
static size_t s_hot, s_stride;             /* hot pages, every s_stride-th */
static char s_fail[256];                   /* first failure, "" if none */

/* The ring of small mappings: slot k holds the mapping of generation gen,
 * stamped in its page gen % S_SLOT_PAGES; addr 0 while it is recycled. */
static struct {
    volatile uint64_t *addr;
    uint64_t gen;
} s_slot[S_SLOTS];
/* The ring of heap blocks, stamped with their generation at both ends. */
static struct {
    volatile uint64_t *p;
    uint64_t gen;
} s_block[S_BLOCKS];

static void s_line(const char *fmt, ...)
{
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0 && write(1, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
        _exit(111);
}

static void s_failf(const char *fmt, ...)
{
    if (s_fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_fail, sizeof(s_fail), fmt, ap);
    va_end(ap);
    s_line("FAIL %d %s\n", (int)getpid(), s_fail);
}

static void s_on_signal(int sig)
{
    if (sig == SIGUSR1)
        s_usr1 = 1;
    else
        s_usr2 = 1;
}

static uint64_t s_word(size_t k)
{
    return (uint64_t)k * S_GOLDEN + 1u;
}

static volatile uint64_t *s_hot_page(size_t j)
{
    return s_mem + j * s_stride * S_WORDS;
}

/* What hot page j holds once step `count` is done: the last step n <=
 * count with n mod s_hot == j, or 0 (none yet). */
static uint64_t s_hot_value(uint64_t count, size_t j)
{
    if (count < j)
        return 0;
    uint64_t v = count - (count - j) % s_hot;
    return v >= 2 ? v : 0;   /* the first step is 2 (s_count starts at 1) */
}

static void s_check_hot(size_t j, uint64_t want)
{
    volatile uint64_t *p = s_hot_page(j);
    if (p[0] != want || p[S_WORDS - 1] != want)
        s_failf("hot page %zu holds %llu/%llu, expected %llu", j, (unsigned long long)p[0],
                (unsigned long long)p[S_WORDS - 1], (unsigned long long)want);
}

/* ---- the rings --------------------------------------------------------- */

static void s_check_slot(size_t k)
{
    volatile uint64_t *a = s_slot[k].addr;
    if (!a)
        return;
    for (size_t pg = 0; pg < S_SLOT_PAGES; pg++) {
        bool stamped = pg == s_slot[k].gen % S_SLOT_PAGES;
        volatile uint64_t *p = a + pg * S_WORDS;
        uint64_t want0 = stamped ? s_slot[k].gen : 0, want1 = stamped ? ~s_slot[k].gen : 0;
        if (p[0] != want0 || p[S_WORDS - 1] != want1)
            s_failf("slot %zu (generation %llu) page %zu holds %llx, expected %llx", k,
                    (unsigned long long)s_slot[k].gen, pg, (unsigned long long)p[0],
                    (unsigned long long)want0);
    }
}

/* Slot gen % S_SLOTS: checked, unmapped, mapped again, stamped. The table
 * says "empty" before the unmap and names the new mapping only once it
 * is stamped, so it is right at every instruction. */
static void s_recycle_slot(uint64_t gen)
{
    size_t k = gen % S_SLOTS;
    s_check_slot(k);
    volatile uint64_t *old = s_slot[k].addr;
    s_slot[k].addr = NULL;
    S_BARRIER();
    if (old)
        munmap((void *)old, S_SLOT_PAGES * S_PAGE);
    uint64_t *a = mmap(NULL, S_SLOT_PAGES * S_PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
        s_failf("mmap of slot %zu failed", k);
        return;
    }
    uint64_t *p = a + (gen % S_SLOT_PAGES) * S_WORDS;
    p[0] = gen;
    p[S_WORDS - 1] = ~gen;
    s_slot[k].gen = gen;
    S_BARRIER();
    s_slot[k].addr = a;
}

static void s_check_block(size_t k)
{
    volatile uint64_t *b = s_block[k].p;
    if (b && (b[0] != s_block[k].gen || b[S_BLOCK / 8 - 1] != s_block[k].gen))
        s_failf("heap block %zu holds %llu, expected %llu", k, (unsigned long long)b[0],
                (unsigned long long)s_block[k].gen);
}

static void s_recycle_block(uint64_t gen)
{
    size_t k = gen % S_BLOCKS;
    s_check_block(k);
    volatile uint64_t *old = s_block[k].p;
    s_block[k].p = NULL;
    S_BARRIER();
    free((void *)old);
    uint64_t *b = malloc(S_BLOCK);
    if (!b) {
        s_failf("malloc of block %zu failed", k);
        return;
    }
    b[0] = b[S_BLOCK / 8 - 1] = gen;
    s_block[k].gen = gen;
    S_BARRIER();
    s_block[k].p = b;
}

/* ---- the full check ---------------------------------------------------- */

static void s_check_all(uint64_t count)
{
    for (size_t j = 0; j < s_hot; j++)
        s_check_hot(j, s_hot_value(count, j));
    for (size_t pg = 0; pg < s_npages && !s_fail[0]; pg++) {
        bool hot = pg % s_stride == 0 && pg / s_stride < s_hot;
        for (size_t w = hot ? 1 : 0; w < (hot ? S_WORDS - 1 : S_WORDS); w++)
            if (s_mem[pg * S_WORDS + w] != s_word(pg * S_WORDS + w)) {
                s_failf("word %zu of page %zu differs from the pattern", w, pg);
                break;
            }
    }
    for (size_t k = 0; k < S_SLOTS; k++)
        s_check_slot(k);
    for (size_t k = 0; k < S_BLOCKS; k++)
        s_check_block(k);
}

/* ---- the loop ---------------------------------------------------------- */

static void s_step(uint64_t n)
{
    size_t j = n % s_hot;
    volatile uint64_t *p = s_hot_page(j);
    s_check_hot(j, s_hot_value(n - 1, j));
    p[0] = n;
    p[S_WORDS - 1] = n;
    S_BARRIER();
    s_count = n;
}

static void s_run(long rate_kib)
{
    struct timespec gap = { 0, 0 };
    if (rate_kib > 0) {
        long ns = (long)(4e9 / (double)rate_kib);   /* a 4 KiB page a step */
        gap.tv_sec = ns / 1000000000l, gap.tv_nsec = ns % 1000000000l;
    }
    uint64_t every = rate_kib > 0 ? 16 : 4096;   /* steps between recycles */
    for (;;) {
        if (!s_fail[0]) {
            uint64_t n = s_count + 1;
            s_step(n);
            if (n % every == 0) {
                s_recycle_slot(n / every);
                s_recycle_block(n / every);
            }
        }
        if (s_usr1) {
            s_usr1 = 0;
            s_line("at %d %llu\n", (int)getpid(), (unsigned long long)s_count);
        }
        if (s_usr2) {
            s_usr2 = 0;
            s_check_all(s_count);
            if (!s_fail[0])
                s_line("PASS %d %llu\n", (int)getpid(), (unsigned long long)s_count);
        }
        if (gap.tv_sec || gap.tv_nsec || s_fail[0])
            nanosleep(s_fail[0] ? &(struct timespec){ 0, 10000000 } : &gap, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: precopy-case MIB [RATE_KIB_S]\n");
        return 100;
    }
    long mib = strtol(argv[1], NULL, 10), rate = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
    if (mib < 1 || mib > (1l << 20) || rate < 0) {
        fprintf(stderr, "precopy-case: bad MIB or RATE_KIB_S\n");
        return 100;
    }
    s_npages = (size_t)mib * (1u << 20) / S_PAGE;
    s_hot = s_npages < S_HOT_MAX ? s_npages : S_HOT_MAX;
    s_stride = s_npages / s_hot;
    s_mem = mmap(NULL, s_npages * S_PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s_mem == MAP_FAILED)
        return 111;
    for (size_t k = 0; k < s_npages * S_WORDS; k++)
        s_mem[k] = s_word(k);
    for (size_t j = 0; j < s_hot; j++)
        s_hot_page(j)[0] = s_hot_page(j)[S_WORDS - 1] = 0;
    struct sigaction sa = { .sa_handler = s_on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    s_line("ready %d\n", (int)getpid());
    s_run(rate);
    return 0;
}
