/* ghost-state - one case of process state across checkpoint/restart.
 *
 * Usage: ghost-state CASE WORKDIR | ghost-state --list.
 * --list prints one line per case: "NAME restore|refuse FLAGS REASON".
 * A case: setup; "ready <pid>" on stdout (the test points it at a result
 * file opened O_APPEND); wait in sigsuspend() for SIGUSR2; check; then
 * "PASS NAME" or "FAIL NAME: what" and exit 0 or 1. A setup that fails
 * says "FAIL NAME: setup: ..." and never says ready. The cases live in
 * state-*.c, one table per area of state (state.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state.h"

static const state_case_t *const s_tables[] = {
    state_cases_basic, state_cases_process, state_cases_kernel, state_cases_memory,
    state_cases_files, state_cases_unix, state_cases_inet, state_cases_tty,
};

/* The mutable state of this program: the first failure's text, the work
 * directory (and s_usr2 below). */
static char s_why[512];
static const char *s_workdir;

int state_fail(const char *fmt, ...)
{
    if (s_why[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s_why, sizeof s_why, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *state_workdir(void)
{
    return s_workdir;
}

static const state_case_t *s_find(const char *name)
{
    for (size_t t = 0; t < sizeof s_tables / sizeof s_tables[0]; t++)
        for (const state_case_t *c = s_tables[t]; c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

static void s_list(void)
{
    for (size_t t = 0; t < sizeof s_tables / sizeof s_tables[0]; t++)
        for (const state_case_t *c = s_tables[t]; c->name; c++)
            printf("%s %s %s %s\n", c->name,
                   c->expect == STATE_REFUSE ? "refuse" : "restore",
                   c->flags && c->flags[0] ? c->flags : "-",
                   c->reason ? c->reason : "");
}

/* Set by SIGUSR2 alone: sigsuspend() also returns for any other handled
 * signal (a case's ticking timer), which must not end the wait. */
static volatile sig_atomic_t s_usr2;

static void s_on_usr2(int sig)
{
    (void)sig;
    s_usr2 = 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        s_list();
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: ghost-state CASE WORKDIR | ghost-state --list\n");
        return 2;
    }
    const state_case_t *c = s_find(argv[1]);
    if (!c) {
        fprintf(stderr, "ghost-state: no case '%s' (--list)\n", argv[1]);
        return 2;
    }
    s_workdir = argv[2];
    setvbuf(stdout, NULL, _IONBF, 0);

    /* SIGUSR2 blocked from here on, so one sent before the wait is kept;
     * sigsuspend() lets it in. */
    sigset_t usr2, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, &old);
    struct sigaction sa = { .sa_handler = s_on_usr2 };
    sigaction(SIGUSR2, &sa, NULL);

    void *ctx = NULL;
    if (c->setup(&ctx) < 0) {
        printf("FAIL %s: setup: %s\n", c->name, s_why);
        return 1;
    }
    printf("ready %d\n", (int)getpid());
    sigset_t wait_mask = old;
    sigdelset(&wait_mask, SIGUSR2);
    while (!s_usr2)
        sigsuspend(&wait_mask);
    if (c->check && c->check(ctx) < 0) {
        printf("FAIL %s: %s\n", c->name, s_why);
        return 1;
    }
    printf("PASS %s\n", c->name);
    return 0;
}
