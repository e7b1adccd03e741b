# services.sh - the Cairn units the systemd suite drives, and how each one
# shows that it serves (sourced by test-lifecycle.sh; README.md here).
#
# Adding a service is one line below and its function(s):
#
#   sd_service NAME
#       NAME.service is started, in the order of these lines, with
#       `systemctl start`, and must reach active (running) through
#       Type=notify, answer, reload, come back from a watchdog kill and
#       stop leaving nothing behind (test-lifecycle.sh does all of it).
#   sd_service NAME --replaces OTHER
#       NAME is an alternative to OTHER (a scheduler policy): not started
#       in the sequence; instead `systemctl start NAME` must stop OTHER
#       through Conflicts= (declared both ways), then `systemctl start
#       OTHER` must stop NAME, a job running on untouched.
#   sd_service NAME --service SERVICE
#       NAME.service runs the description's service SERVICE (its sockets
#       are SERVICE.sock): the policies sched-rr, sched-mosix, sched-mem
#       are each the node's `sched`. Default: NAME.
#
#   serves_NAME     (required) runs once NAME is up (after its start, a
#                   reload, a restart by the watchdog, a swap): 0 when it
#                   answers, else non-zero with one line on stdout saying
#                   what it answered. Called at once, no retry: READY=1
#                   must mean serving.
#   stopped_NAME    (optional) runs after `systemctl stop NAME`, after the
#                   generic checks (no process in its cgroup, no socket or
#                   pid file): what else must hold, same convention.
#
# Every unit the build installs must have a line here, and every line an
# installed unit: a new unit without its checks fails the suite, by name.
# In these functions, in_ct runs a command in the container, $SD_MACHINE
# is the node's name and $SD_JOB the gpid of a job started after the
# sequence (empty before).

sd_service clusterd
sd_service ghostd
sd_service syncd
sd_service dsmd
sd_service probed
sd_service sched-rr --service sched
sd_service sched-mosix --service sched --replaces sched-rr
sd_service sched-mem --service sched --replaces sched-rr

# clusterd: this node alive in its membership.
serves_clusterd() {
    local out
    out=$(in_ct cairn nodes 2>&1) &&
        jq -e --arg n "$SD_MACHINE" '.nodes[] | select(.name == $n and .state == "alive")' \
            <<<"$out" >/dev/null || { echo "cairn nodes: $out"; return 1; }
}

# ghostd: `cairn ps` reaches this node's ghostd, and lists the job once
# there is one, running.
serves_ghostd() {
    local out
    out=$(in_ct cairn ps 2>&1) &&
        jq -e '.nodes[] | select(.node == 1 and .reachable)' <<<"$out" >/dev/null ||
        { echo "cairn ps: $out"; return 1; }
    [ -z "$SD_JOB" ] ||
        jq -e --arg g "$SD_JOB" '.jobs[] | select(.gpid == $g and .state == "running")' \
            <<<"$out" >/dev/null || { echo "cairn ps has no running $SD_JOB: $out"; return 1; }
}

# ghostd stopped: the job's scope and processes live on (placement.h), and
# the spool's tmpfs is unmounted.
stopped_ghostd() {
    local out
    [ -z "$SD_JOB" ] || sd_job_alive ||
        { echo "job $SD_JOB did not survive: $SD_JOB_WHY"; return 1; }
    out=$(in_ct awk '$5 ~ "^/run/cairn" {print $5}' /proc/self/mountinfo)
    [ -z "$out" ] || { echo "still mounted: $out"; return 1; }
}

# syncd: a cluster mutex taken and given back around a command.
serves_syncd() {
    local out
    out=$(in_ct cairn lock --timeout 10000 sd-lifecycle -- true 2>&1) ||
        { echo "cairn lock: $out"; return 1; }
}

# dsmd: the cluster's segments listed (a home asked: membership known).
serves_dsmd() {
    local out
    out=$(in_ct cairn dsm ls 2>&1) && jq -e '.segments | type == "array"' <<<"$out" >/dev/null ||
        { echo "cairn dsm ls: $out"; return 1; }
}

# probed: the node's own load vector, sampled by the description's probes.
serves_probed() {
    local out
    out=$(in_ct cairn load 2>&1) &&
        jq -e '.local.node == 1 and .config_error == null and
               ([.probes[].name] | index("cpu") != null)' <<<"$out" >/dev/null ||
        { echo "cairn load: $out"; return 1; }
}

# sched-POLICY: `cairn sched show` answered by that policy.
serves_policy() {
    local out
    out=$(in_ct cairn sched show 2>&1) &&
        jq -e --arg p "$1" '.policy == $p' <<<"$out" >/dev/null ||
        { echo "cairn sched show (want policy $1): $out"; return 1; }
}
serves_sched-rr() { serves_policy rr; }
serves_sched-mosix() { serves_policy mosix; }
serves_sched-mem() { serves_policy mem; }
