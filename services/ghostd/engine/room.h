/* room.h - whether this node has the memory an image needs.
 *
 * A restore makes every page of the image anew: its present anonymous
 * pages and the contents of its shared memory. The tree is born where the
 * helper is (place.h: ghostd's cgroup, the node's on a local cluster, or
 * the scope the helper moved into), so what it may get is the smallest of
 * MemAvailable (/proc/meminfo) and, at every level of the helper's memory
 * cgroup up to the root, the limit less what is in use there (v2:
 * memory.max and memory.current; v1: memory.limit_in_bytes and
 * memory.usage_in_bytes; the inactive page cache of memory.stat counted
 * as free, the kernel takes it back before it refuses a page). An image
 * that needs more is refused before anything is made: a tree half made
 * and then killed by the OOM killer, or a node pushed into reclaim, is
 * worse than a clear "no room" that names both numbers.
 */
#ifndef GHOST_ROOM_H
#define GHOST_ROOM_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

/* What this node can give a tree restored by the calling process. */
typedef struct ghost_room {
    uint64_t mem_available;   /* MemAvailable, bytes */
    uint64_t cg_room;         /* the tightest cgroup level's limit less its
                                 use; UINT64_MAX when no level has a limit */
    uint64_t cg_limit;        /* that level's limit */
    uint64_t cg_used;         /* and its use (inactive page cache left out) */
    char cgroup[PATH_MAX];    /* that level's path, "" when none */
    const char *knob;         /* its limit's file: "memory.max" (v2) or
                                 "memory.limit_in_bytes" (v1) */
} ghost_room_t;

/* Reads what the calling process's restored tree could get. 0, or -errno
 * with err set (no /proc/meminfo). */
int ghost_room_read(ghost_room_t *ret, cairn_error_t *err);

/* Whether `need` bytes fit: 0, or -ENOMEM, FAILED_PRECONDITION, with a
 * message naming what is needed and what is left and where. */
int ghost_room_check(uint64_t need, cairn_error_t *err);

#endif
