/* placement.c - the mode ghostd restores in, and the scopes' names
 * (placement.h).
 *
 * Design. "systemd started us as a service" is read from two facts, both
 * needed: $SYSTEMD_EXEC_PID equals our pid (systemd >= 248 sets it for the
 * process it executes; a daemon the harness forks from a CLI that itself
 * runs under a unit inherits a foreign value), and sd_pid_get_unit names a
 * .service (a shell's session scope is not one). Everything else keeps the
 * tree where ghostd is.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cairn-config.h"
#include "place.h"
#include "placement.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#endif

/* systemd executed this very process. */
static bool s_executed_by_systemd(void)
{
    const char *v = getenv("SYSTEMD_EXEC_PID");

    return v && atol(v) == (long)getpid();
}

/* Our unit when it is a .service of a booted systemd, into p->unit. */
static bool s_our_service(ghostd_placement_t *p)
{
#if CAIRN_HAVE_SYSTEMD
    char *unit = NULL;
    size_t len;
    bool ok = sd_booted() > 0 && sd_pid_get_unit(0, &unit) >= 0 &&
              (len = strlen(unit)) > 8 &&
              strcmp(unit + len - 8, ".service") == 0;

    if (ok)
        snprintf(p->unit, sizeof p->unit, "%s", unit);
    free(unit);
    return ok;
#else
    (void)p;
    return false;
#endif
}

void ghostd_placement_init(ghostd_placement_t *p)
{
    bool by_systemd = s_executed_by_systemd();

    memset(p, 0, sizeof *p);
    if (ghost_place_cgroup_of(getpid(), p->cgroup, sizeof p->cgroup) < 0)
        snprintf(p->cgroup, sizeof p->cgroup, "(unknown)");
    if (by_systemd && s_our_service(p)) {
        p->mode = GHOSTD_PLACE_SCOPE;
        p->why = "a systemd service: each restore gets its own scope "
                 "in " GHOSTD_JOB_SLICE;
    } else if (by_systemd) {
        p->mode = GHOSTD_PLACE_INHERIT;
        p->why = CAIRN_HAVE_SYSTEMD
                     ? "started by systemd but not as a .service: restored "
                       "processes stay in ghostd's cgroup"
                     : "a systemd service built without libsystemd: restored "
                       "processes stay in ghostd's cgroup and die with it";
    } else {
        p->mode = GHOSTD_PLACE_INHERIT;
        p->why = "not a systemd service: restored processes stay in ghostd's "
                 "cgroup (on a local cluster, the node's)";
    }
}

int ghostd_placement_next_scope(ghostd_placement_t *p, char *out, size_t size)
{
    struct timespec ts;
    uint64_t id;

    clock_gettime(CLOCK_BOOTTIME, &ts);
    id = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    if (id <= p->last_id)
        id = p->last_id + 1;
    if (snprintf(out, size, "cairn-job-%llu.scope", (unsigned long long)id) >=
        (int)size)
        return -ENAMETOOLONG;
    p->last_id = id;
    return 0;
}
