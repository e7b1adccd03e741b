/* room.c - whether this node has the memory an image needs (room.h).
 *
 * The memory cgroup is found in /proc/self/cgroup: the v1 line whose
 * controllers name memory (under /sys/fs/cgroup/memory), else the v2 line
 * "0::PATH" when the unified hierarchy at /sys/fs/cgroup has the memory
 * controller (a hybrid machine's /sys/fs/cgroup/unified never has it).
 * Each level from there up to the root that has a limit is read; a knob
 * that cannot be read is skipped (a level we cannot see limits nothing we
 * could tell).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "room.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#define S_CG_ROOT "/sys/fs/cgroup"
#define S_V1_UNLIMITED (1ull << 62)   /* v1 says "no limit" with ~2^63 */

/* The number after `key` at the start of a line of text, 0 if none. */
static uint64_t s_field(const char *text, const char *key)
{
    size_t k = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, key, k) == 0 && (l[k] == ' ' || l[k] == ':' || l[k] == '\t'))
            return strtoull(l + k + 1 + strspn(l + k + 1, " :\t"), NULL, 10);
    return 0;
}

/* One knob's number; "max" is UINT64_MAX. -errno if unreadable. */
static int s_knob(const char *dir, const char *name, uint64_t *ret)
{
    char path[PATH_MAX + 64];
    _cleanup_free_ char *s = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int r = cairn_read_file(path, 4096, &s, NULL);
    if (r < 0)
        return r;
    *ret = strncmp(s, "max", 3) == 0 ? UINT64_MAX : strtoull(s, NULL, 10);
    return 0;
}

/* Whether the level at dir has a limit: its limit and its use (less the
 * inactive page cache) into *ret_limit, *ret_used. */
static bool s_level(const char *dir, bool v2, uint64_t *ret_limit, uint64_t *ret_used)
{
    uint64_t limit = 0, usage = 0;
    if (s_knob(dir, v2 ? "memory.max" : "memory.limit_in_bytes", &limit) < 0 ||
        limit == UINT64_MAX || (!v2 && limit >= S_V1_UNLIMITED) ||
        s_knob(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &usage) < 0)
        return false;
    char path[PATH_MAX + 64];
    _cleanup_free_ char *stat = NULL;
    snprintf(path, sizeof(path), "%s/memory.stat", dir);
    if (cairn_read_file(path, 1 << 16, &stat, NULL) == 0) {
        uint64_t inactive = s_field(stat, v2 ? "inactive_file" : "total_inactive_file");
        usage -= inactive < usage ? inactive : usage;
    }
    *ret_limit = limit;
    *ret_used = usage;
    return true;
}

/* Our memory cgroup: its path into path and whether it is v2. -ENOENT
 * when no memory controller is to be found. */
static int s_self_cgroup(char *path, size_t size, bool *ret_v2)
{
    _cleanup_free_ char *text = NULL, *ctl = NULL;
    int r = cairn_read_file("/proc/self/cgroup", 1 << 16, &text, NULL);
    if (r < 0)
        return r;
    bool v2_memory = cairn_read_file(S_CG_ROOT "/cgroup.controllers", 4096, &ctl, NULL) == 0 &&
                     strstr(ctl, "memory");
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        char *ctrl = strchr(l, ':'), *p = ctrl ? strchr(ctrl + 1, ':') : NULL;
        if (!p)
            continue;
        *p++ = '\0';
        ctrl++;
        bool memory = false;
        for (char *c = ctrl; *c; c += strcspn(c, ","), c += *c == ',')
            memory |= strncmp(c, "memory", 6) == 0 && (c[6] == ',' || c[6] == '\0');
        if (memory || (v2_memory && *ctrl == '\0' && strcmp(l, "0") == 0)) {
            snprintf(path, size, "%s", p);
            *ret_v2 = !memory;
            return 0;
        }
    }
    return -ENOENT;
}

/* The tightest level of our memory cgroup, up to its root, into *room. */
static void s_read_cgroups(ghost_room_t *room)
{
    char rel[PATH_MAX], dir[PATH_MAX + 32];
    bool v2 = false;
    if (s_self_cgroup(rel, sizeof(rel), &v2) < 0)
        return;
    for (;;) {
        uint64_t limit, used;
        snprintf(dir, sizeof(dir), "%s%s%s", S_CG_ROOT, v2 ? "" : "/memory",
                 strcmp(rel, "/") == 0 ? "" : rel);
        if (s_level(dir, v2, &limit, &used) &&
            (limit > used ? limit - used : 0) < room->cg_room) {
            room->cg_room = limit > used ? limit - used : 0;
            room->cg_limit = limit;
            room->cg_used = used;
            room->knob = v2 ? "memory.max" : "memory.limit_in_bytes";
            snprintf(room->cgroup, sizeof(room->cgroup), "%s", rel);
        }
        char *slash = strrchr(rel, '/');
        if (!slash || strcmp(rel, "/") == 0)
            return;
        if (slash == rel)
            rel[1] = '\0';
        else
            *slash = '\0';
    }
}

int ghost_room_read(ghost_room_t *ret, cairn_error_t *err)
{
    _cleanup_free_ char *meminfo = NULL;
    int r = cairn_read_file("/proc/meminfo", 1 << 16, &meminfo, NULL);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "cannot read /proc/meminfo: %s",
                               strerror(-r));
    ghost_room_t room = { .cg_room = UINT64_MAX, .knob = "" };
    room.mem_available = s_field(meminfo, "MemAvailable") * 1024;
    s_read_cgroups(&room);
    *ret = room;
    return 0;
}

static double s_mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

int ghost_room_check(uint64_t need, cairn_error_t *err)
{
    ghost_room_t room;
    int r = ghost_room_read(&room, err);
    if (r < 0)
        return r;
    if (room.cg_room < room.mem_available && need > room.cg_room)
        return cairn_error_set(err, -ENOMEM, CAIRN_FAILED_PRECONDITION,
                               "no room here: the image needs %" PRIu64 " bytes (%.1f MiB) "
                               "of memory, and the cgroup %s leaves %" PRIu64 " bytes "
                               "(%.1f MiB): %s %" PRIu64 ", %" PRIu64 " in use",
                               need, s_mib(need), room.cgroup, room.cg_room,
                               s_mib(room.cg_room), room.knob, room.cg_limit, room.cg_used);
    if (need > room.mem_available)
        return cairn_error_set(err, -ENOMEM, CAIRN_FAILED_PRECONDITION,
                               "no room here: the image needs %" PRIu64 " bytes (%.1f MiB) "
                               "of memory, and this node has %" PRIu64 " bytes (%.1f MiB) "
                               "available (MemAvailable)",
                               need, s_mib(need), room.mem_available,
                               s_mib(room.mem_available));
    return 0;
}
