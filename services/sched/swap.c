/* swap.c - Request{swap}: the running policy asks systemd to start another
 * (sched-private.h; docs/scheduler.md, "Swapping a policy").
 *
 * On a systemd host every policy is a unit, sched-<policy>.service, and
 * the units conflict with one another: starting one stops the running
 * one. Swapping is therefore StartUnit("sched-<policy>.service",
 * "replace") over D-Bus; systemd queues the job and answers at once, this
 * daemon replies, and then systemd stops it (SIGTERM: it drains and exits)
 * and starts the new one, which takes the node's lock.
 *
 * Refusals, each leaving this policy serving: a policy that does not exist
 * (NOT_FOUND, naming those that do), a daemon systemd did not start
 * (FAILED_PRECONDITION: on a local cluster the harness swaps, `cairn
 * sched swap`), a unit systemd does not know (NOT_FOUND: not installed).
 *
 * The D-Bus call is the one blocking call of the daemon: an admin's rare
 * request, answered by systemd within milliseconds once it has queued the
 * job, and bounded by S_BUS_TIMEOUT_US.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cairn-config.h"
#include "log.h"
#include "sched-private.h"
#include "unit.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

#define S_BUS_TIMEOUT_US (5 * 1000 * 1000)

/* "rr, mosix, mem" into out. */
static void s_policy_names(char *out, size_t size)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; sched_policies[i] && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? ", " : "",
                                sched_policies[i]->name);
}

#if CAIRN_HAVE_SYSTEMD
/* Asks systemd to start unit; the request's reply code (OK or the
 * refusal), with the reason in why. */
static int s_start_unit(const char *unit, char *why, size_t size)
{
    sd_bus *bus = NULL;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    int code = CAIRN_OK;
    int r = sd_bus_open_system(&bus);

    if (r >= 0)
        r = sd_bus_set_method_call_timeout(bus, S_BUS_TIMEOUT_US);
    if (r >= 0)
        r = sd_bus_call_method(bus, "org.freedesktop.systemd1",
                               "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "StartUnit",
                               &error, &reply, "ss", unit, "replace");
    if (r < 0 && sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit")) {
        code = CAIRN_NOT_FOUND;
        snprintf(why, size, "%s is not installed on this node: %s", unit,
                 error.message ? error.message : "no such unit");
    } else if (r < 0) {
        code = CAIRN_UNAVAILABLE;
        snprintf(why, size, "systemd did not start %s: %s", unit,
                 error.message ? error.message : strerror(-r));
    }
    sd_bus_message_unref(reply);
    sd_bus_error_free(&error);
    sd_bus_flush_close_unref(bus);
    return code;
}
#else
static int s_start_unit(const char *unit, char *why, size_t size)
{
    snprintf(why, size, "this sched was built without libsystemd: it cannot "
             "ask systemd to start %s", unit);
    return CAIRN_FAILED_PRECONDITION;
}
#endif

int sched_handle_swap(void *ctx, cairn_request_t *req)
{
    sched_t *s = ctx;
    const Cairn__Sched__Request *rq = (const void *)cairn_request_body(req);
    Cairn__Sched__Reply *reply = (void *)cairn_request_reply(req);
    Cairn__Sched__ShowReply *out = cairn_request_alloc(req, sizeof(*out));
    const char *want = rq->swap->policy ? rq->swap->policy : "";
    char names[64], unit[256], why[512];
    int code;

    if (!out)
        return -ENOMEM;
    if (!sched_policy_find(want)) {
        s_policy_names(names, sizeof(names));
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "no policy '%s': the "
                                  "policies are %s", want, names);
    }
    if (!cairn_executed_by_systemd() || !cairn_systemd_service_unit(unit, sizeof(unit)))
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION,
                                  "sched-%s (pid %d) was not started by systemd, "
                                  "so systemd cannot swap it: on a local cluster "
                                  "use cairn sched swap, which the harness "
                                  "carries out", s->policy->name, (int)getpid());
    snprintf(unit, sizeof(unit), "sched-%s.service", want);
    if (strcmp(want, s->policy->name) != 0) {
        code = s_start_unit(unit, why, sizeof(why));
        if (code != CAIRN_OK)
            return cairn_request_fail(req, code, "%s", why);
        cairn_log_info("swap", "to=%s msg=\"systemd starts %s, which stops "
                       "this one\"", want, unit);
    }
    if (sched_fill_show(s, req, out) < 0)
        return -ENOMEM;
    reply->msg_case = CAIRN__SCHED__REPLY__MSG_SHOW_REPLY;
    reply->show_reply = out;
    return CAIRN_REPLY_NOW;
}
