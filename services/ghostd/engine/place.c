/* place.c - the restored tree's cgroup: a transient scope, or where the
 * helper runs (place.h).
 *
 * Design. systemd only moves a process into a scope it creates itself
 * (StartTransientUnit with PIDs = [us]); the method returns once the job is
 * queued, and the move happens when the job runs, so we then poll our own
 * /proc/self/cgroup until one of its lines ends in "/<unit>" (1 ms steps,
 * 5 s at most). The bus is the system bus, else systemd's private socket
 * (root only; what systemctl uses when dbus is not running). Nothing here
 * forks: the caller makes the tree after we return.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cairn-config.h"
#include "place.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

#define S_MOVE_WAIT_MS 5000 /* for systemd to move us into the scope */

/* ---- reading /proc/PID/cgroup ------------------------------------------ */

/* The path of the line "ID:CONTROLLERS:PATH" whose controllers are `want`
 * (exactly, or one of a comma list when `in_list`), else NULL. */
static const char *s_line_path(char *text, const char *want, bool in_list)
{
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (next)
            *next++ = '\0';
        if (!c2)
            continue;
        *c2 = '\0';
        bool hit = strcmp(c1 + 1, want) == 0;
        for (char *t = c1 + 1; in_list && !hit && t;) {
            size_t len = strcspn(t, ",");
            hit = len == strlen(want) && strncmp(t, want, len) == 0;
            t = t[len] ? t + len + 1 : NULL;
        }
        *c2 = ':';
        if (hit)
            return c2 + 1;
    }
    return NULL;
}

int ghost_place_cgroup_of(pid_t pid, char *out, size_t size)
{
    static const struct {
        const char *name;
        bool in_list;
    } order[] = {
        { "", false },
        { "name=systemd", false },
        { "cpu", true },
    };
    char path[64];
    int r;

    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        _cleanup_free_ char *text = NULL;
        if ((r = cairn_read_file(path, 0, &text, NULL)) < 0)
            return r;
        const char *p = s_line_path(text, order[i].name, order[i].in_list);
        if (p && strcmp(p, "/") != 0) {
            snprintf(out, size, "%s", p);
            return 0;
        }
    }
    snprintf(out, size, "/");
    return 0;
}

/* ---- a transient scope ------------------------------------------------- */

#if CAIRN_HAVE_SYSTEMD

/* True when a line of /proc/self/cgroup ends in "/unit". */
static bool s_in_unit(const char *unit)
{
    _cleanup_free_ char *text = NULL;
    char tail[300];

    snprintf(tail, sizeof tail, "/%s\n", unit);
    return cairn_read_file("/proc/self/cgroup", 0, &text, NULL) == 0 &&
           strstr(text, tail) != NULL;
}

/* The system bus, else systemd's private socket. */
static int s_bus_open(sd_bus **ret, bool *ret_private)
{
    sd_bus *bus = NULL;
    int r = sd_bus_open_system(&bus);

    *ret_private = false;
    if (r >= 0) {
        *ret = bus;
        return 0;
    }
    r = sd_bus_new(&bus);
    if (r >= 0)
        r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
    if (r >= 0)
        r = sd_bus_start(bus);
    if (r < 0) {
        sd_bus_unref(bus);
        return r;
    }
    *ret_private = true;
    *ret = bus;
    return 0;
}

/* StartTransientUnit(unit, "fail", {Description, Slice, CollectMode,
 * PIDs=[us]}, {}). */
static int s_start_scope(sd_bus *bus, bool priv, const char *unit,
                         const char *slice, const char *description,
                         sd_bus_error *error)
{
    sd_bus_message *m = NULL, *reply = NULL;
    int r = sd_bus_message_new_method_call(
        bus, &m, priv ? NULL : "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
        "StartTransientUnit");

    if (r >= 0)
        r = sd_bus_message_append(m, "ss", unit, "fail");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'a', "(sv)");
    if (r >= 0)
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)", "Description", "s",
                                  description, "Slice", "s", slice,
                                  "CollectMode", "s", "inactive-or-failed",
                                  "PIDs", "au", 1, (uint32_t)getpid());
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    if (r >= 0)
        r = sd_bus_message_append(m, "a(sa(sv))", 0);
    if (r >= 0)
        r = sd_bus_call(bus, m, 0, error, &reply);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(m);
    return r;
}

/* Polls until systemd has moved us (S_MOVE_WAIT_MS at most). */
static int s_wait_moved(const char *unit)
{
    uint64_t deadline = cairn_now_ms() + S_MOVE_WAIT_MS;
    struct timespec ms = { 0, 1000000 };

    while (!s_in_unit(unit)) {
        if (cairn_ms_left(deadline) == 0)
            return -ETIMEDOUT;
        nanosleep(&ms, NULL);
    }
    return 0;
}

int ghost_place_scope(const char *unit, const char *slice,
                      const char *description, cairn_error_t *err)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus *bus = NULL;
    bool priv;
    int r = s_bus_open(&bus, &priv);

    if (r < 0)
        return cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                               "cannot reach systemd (system bus, then "
                               "/run/systemd/private): %s; nothing was "
                               "restored",
                               strerror(-r));
    r = s_start_scope(bus, priv, unit, slice, description, &error);
    if (r < 0)
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                        "systemd refused the scope %s in %s: %s; nothing "
                        "was restored",
                        unit, slice,
                        error.message ? error.message : strerror(-r));
    else if ((r = s_wait_moved(unit)) < 0)
        cairn_error_set(err, -EHOSTUNREACH, CAIRN_UNAVAILABLE,
                        "systemd made %s but did not move the restore into "
                        "it within %d ms; nothing was restored",
                        unit, S_MOVE_WAIT_MS);
    sd_bus_error_free(&error);
    sd_bus_flush_close_unref(bus);
    return r < 0 ? -EHOSTUNREACH : 0;
}

#else

int ghost_place_scope(const char *unit, const char *slice,
                      const char *description, cairn_error_t *err)
{
    return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                           "ghost-restore was built without libsystemd: it "
                           "cannot make the scope %s in %s",
                           unit, slice);
}

#endif
