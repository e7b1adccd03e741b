/* unit.h - whether a daemon runs as a systemd service.
 *
 * Two facts, both needed: $SYSTEMD_EXEC_PID equals our pid (systemd >= 248
 * sets it for the process it executes; a daemon the local cluster harness
 * forks from a CLI that itself runs under a unit inherits a foreign value),
 * and sd_pid_get_unit names a .service (a shell's session scope is not
 * one). ghostd decides from them where restored jobs live; a policy daemon
 * whether Request{swap} can ask systemd.
 */
#ifndef CAIRN_UNIT_H
#define CAIRN_UNIT_H

#include <stdbool.h>
#include <stddef.h>

/* systemd executed this very process. */
bool cairn_executed_by_systemd(void);

/* True when this process belongs to a .service of a booted systemd; its
 * name into out (size bytes). False without libsystemd. */
bool cairn_systemd_service_unit(char *out, size_t size);

#endif
