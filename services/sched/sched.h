/* sched.h - the scheduler policy daemon: the core every policy runs
 * (docs/scheduler.md, "sched-<policy>").
 *
 * sched-rr, sched-mosix and sched-mem are one core and one policy each
 * (policy.h): main() hands its policy to sched_main, which runs the daemon
 * skeleton as service "sched" -- the same ports and ipc socket whichever
 * policy serves the node.
 */
#ifndef SCHED_H
#define SCHED_H

#include "policy.h"

/* Runs the daemon with policy: the skeleton's exit code (0 after SIGTERM,
 * 1 when it could not start -- another policy serves the node --, 100 on
 * wrong usage). */
int sched_main(const sched_policy_t *policy, int argc, char **argv);

#endif
