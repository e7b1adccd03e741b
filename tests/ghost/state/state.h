/* state.h - one piece of process state, set up before a checkpoint and
 * checked after the restore: the cases of ghost-state (issue 16's "large
 * set of small programs", tests/integration/test-ghost-state.sh).
 *
 * Plain libc, no Cairn code: the program must not know it is being
 * checkpointed. Each area of state has a file of its own (state-*.c)
 * holding a table of cases, listed in ghost-state.c. A case either must
 * come back whole (expect STATE_RESTORE: its check passes after the
 * restore) or must be refused up front (STATE_REFUSE: the checkpoint
 * fails, its error naming `reason`, and the process is left running and
 * untouched). There is no third outcome: a case that is restored and
 * then finds its state gone is the bug this suite exists to catch.
 */
#ifndef GHOST_STATE_H
#define GHOST_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef enum {
    STATE_RESTORE = 0,   /* checkpoint, kill, restore: check must pass */
    STATE_REFUSE,        /* checkpoint must be refused naming reason */
} state_expect_t;

typedef struct state_case {
    const char *name;            /* unique over all tables: [a-z0-9-]+ */
    state_expect_t expect;
    const char *reason;          /* STATE_REFUSE: a piece of the error
                                    message, e.g. "is a socket" */
    /* Sets the state up in this process (it may fork children, which are
     * part of the tree: they must stay alive until check returns, and
     * each must check what is theirs itself or through the parent).
     * *ctx is the case's to fill (it lives until the process ends).
     * 0, or -1 after state_fail() said why. */
    int (*setup)(void **ctx);
    /* After the restore (or, for STATE_REFUSE, after the refusal): 0 if
     * every piece of state is as setup left it, or -1 after state_fail()
     * said what differs. NULL: nothing to check (refusals only). */
    int (*check)(void *ctx);
    /* Optional: what test-ghost-state.sh should know beyond the name
     * (one word: "tree" = the case forks, checkpoint it as a tree; "lost"
     * = state the image records and no restorer puts back yet: the
     * restart must fail, the verifier naming `reason`, and with
     * --no-verify the check must fail; ""). */
    const char *flags;
} state_case_t;

/* Records why the case fails ("FAIL name: <message>"); the first call
 * wins. Always returns -1, so `return state_fail(...)` reads well. */
int state_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The directory the case may make files in (argv[2]; exists, private to
 * this run of this case). */
const char *state_workdir(void);

/* Each table ends with an entry whose name is NULL. */
extern const state_case_t state_cases_basic[];    /* state-basic.c: the harness itself */
extern const state_case_t state_cases_process[];  /* state-process.c: timers, prctl, oom, membarrier, ... */
extern const state_case_t state_cases_kernel[];   /* state-kernel.c: keyrings, sem undo, NUMA, exit signal, futex hash */
extern const state_case_t state_cases_memory[];   /* state-memory.c: vma flags, mappings, memfd mode */
extern const state_case_t state_cases_files[];    /* state-files.c: unlinked files, fifos, epoll, inotify, locks */
extern const state_case_t state_cases_unix[];     /* state-unix.c: unix sockets */
extern const state_case_t state_cases_inet[];     /* state-inet.c: tcp, udp */
extern const state_case_t state_cases_tty[];      /* state-tty.c: ptys, terminals */

#endif
