/* placement.c - the mode ghostd restores in, and the scopes' names
 * (placement.h).
 *
 * Design. "systemd started us as a service" is services/common/unit.h's
 * test; everything else keeps the tree where ghostd is.
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
#include "unit.h"

void ghostd_placement_init(ghostd_placement_t *p)
{
    bool by_systemd = cairn_executed_by_systemd();

    memset(p, 0, sizeof *p);
    if (ghost_place_cgroup_of(getpid(), p->cgroup, sizeof p->cgroup) < 0)
        snprintf(p->cgroup, sizeof p->cgroup, "(unknown)");
    if (by_systemd && cairn_systemd_service_unit(p->unit, sizeof p->unit)) {
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
