/* unit.c - whether a daemon runs as a systemd service (unit.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn-config.h"
#include "unit.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#endif

bool cairn_executed_by_systemd(void)
{
    const char *v = getenv("SYSTEMD_EXEC_PID");

    return v && atol(v) == (long)getpid();
}

bool cairn_systemd_service_unit(char *out, size_t size)
{
#if CAIRN_HAVE_SYSTEMD
    char *unit = NULL;
    size_t len;
    bool ok = sd_booted() > 0 && sd_pid_get_unit(0, &unit) >= 0 &&
              (len = strlen(unit)) > 8 &&
              strcmp(unit + len - 8, ".service") == 0;

    if (ok)
        snprintf(out, size, "%s", unit);
    free(unit);
    return ok;
#else
    (void)out;
    (void)size;
    return false;
#endif
}
