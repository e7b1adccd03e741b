/* sched - a scheduler policy daemon: sched-rr, sched-mosix or sched-mem.
 *
 * The three executables are this file built three times, each with its
 * policy (SCHED_POLICY, set by meson.build); everything else is the core
 * (sched-core.c) and the policy's decision functions (policy-*.c).
 */
#include "sched.h"

int main(int argc, char **argv)
{
    return sched_main(&SCHED_POLICY, argc, argv);
}
