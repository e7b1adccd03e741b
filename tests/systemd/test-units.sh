#!/bin/bash
# test-units.sh - what the units' sandboxes allow, in a booted systemd
# (suite `systemd`; the booted tree: lib-nspawn.sh; each unit's life,
# start to stop: test-lifecycle.sh).
#
# clusterd.service, ghostd.service and syncd.service started together
# answer (`cairn status`; `cairn lock` as root and as nobody through
# syncd's sandbox); a `sleep 1000` checkpointed and restarted lands in its
# own cairn-job-N.scope in cairn.slice (the restart's JSON says so), and
# stays alive across `systemctl restart ghostd` and `systemctl stop
# ghostd`; `systemd-analyze security` rates clusterd.service below
# S_MAX_CLUSTERD. Exit 77 where the machine cannot (lib-nspawn.sh).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib-nspawn.sh"
S_MAX_CLUSTERD=3.0
UNITS="clusterd ghostd syncd"

# ---- the checks ------------------------------------------------------------

start_units() {
    in_ct systemctl start clusterd.service ghostd.service syncd.service ||
        { in_ct journalctl -b --no-pager -n 40; exit 1; }
    for u in clusterd ghostd syncd; do
        [ "$(in_ct systemctl is-active $u)" = active ] && ok "$u active" ||
            fail "$u is $(in_ct systemctl is-active $u)"
    done
    in_ct cairn status | grep -q '"node"' && ok "cairn status answers" ||
        fail "cairn status: $(in_ct cairn status 2>&1)"
    in_ct journalctl -u ghostd --no-pager -o cat | grep placement
}

# Starts sleep 1000 as a unit of the container, checkpoints and restarts it.
checkpoint_restart() {
    # stdout and stderr /dev/null: the journal's socket cannot be checkpointed.
    in_ct systemd-run --unit=cairn-test-sleep -p StandardOutput=null \
        -p StandardError=null /bin/sleep 1000 >/dev/null
    PID=$(in_ct systemctl show -P MainPID cairn-test-sleep)
    in_ct cairn checkpoint "$PID" --dir /var/tmp/job1 >/dev/null ||
        { fail "checkpoint $PID: $(in_ct cairn checkpoint "$PID" --dir /var/tmp/job1 2>&1)"; return 1; }
    REPLY=$(in_ct cairn restart /var/tmp/job1) || { fail "restart: $REPLY"; return 1; }
    echo "restart: $REPLY"
    RPID=$(echo "$REPLY" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    CG=$(echo "$REPLY" | sed -n 's/.*"cgroup":"\([^"]*\)".*/\1/p')
    case "$CG" in
        /cairn.slice/cairn-job-*.scope) ok "restored $RPID into $CG" ;;
        *) fail "restored into '$CG', not a cairn-job scope" ;;
    esac
    in_ct grep -q "cairn-job-.*scope" /proc/"$RPID"/cgroup && ok "/proc/$RPID/cgroup agrees" ||
        fail "/proc/$RPID/cgroup: $(in_ct cat /proc/"$RPID"/cgroup)"
}

alive_after() {
    local what=$1
    in_ct systemctl "$what" ghostd.service
    # (minbase has no kill(1): /proc says whether it lives)
    if in_ct grep -qx sleep /proc/"$RPID"/comm 2>/dev/null &&
        ! in_ct grep -q '^State:.*Z' /proc/"$RPID"/status; then
        ok "restored sleep $RPID alive after systemctl $what ghostd"
    else
        fail "restored sleep $RPID died on systemctl $what ghostd"
    fi
}

# syncd under its sandbox: root's lock (the node cache's table made, a
# process's pidfd watched) and another user's (its table chowned to it).
sync_locks() {
    local out
    out=$(in_ct cairn lock --timeout 10000 --print-token sd-root -- true 2>&1) &&
        ok "cairn lock as root under syncd.service: $out" ||
        fail "cairn lock as root: $out"
    out=$(in_ct setpriv --reuid=65534 --regid=65534 --clear-groups \
        cairn lock --timeout 10000 --print-token sd-nobody -- true 2>&1) &&
        ok "cairn lock as nobody under syncd.service: $out" ||
        fail "cairn lock as nobody: $out"
    out=$(in_ct sh -c 'find /run/cairn -name uid-65534.tab -exec stat -c "%n %u %a" {} +' 2>&1)
    case "$out" in
        *" 65534 600") ok "nobody's table is nobody's, 0600: $out" ;;
        *) fail "nobody's table: '$out' ($(in_ct find /run/cairn 2>&1 | tr '\n' ' '))" ;;
    esac
    out=$(in_ct cairn sync show sd-root 2>&1)
    echo "$out" | grep -q '"kind":"mutex"' && ok "cairn sync show sd-root" ||
        fail "cairn sync show: $out"
}

security_score() {
    local out score
    for u in clusterd ghostd syncd; do
        out=$(in_ct systemd-analyze security $u.service 2>&1 | tail -n 1)
        echo "$out"
        [ $u = clusterd ] || continue
        score=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
        awk -v s="$score" -v m="$S_MAX_CLUSTERD" 'BEGIN { exit !(s != "" && s < m) }' &&
            ok "clusterd exposure $score < $S_MAX_CLUSTERD" ||
            fail "clusterd exposure '$score' is not below $S_MAX_CLUSTERD"
    done
}

sd_require
sd_stage "$UNITS"
sd_rootfs
sd_boot
sd_sanitizer_dropins $UNITS
start_units
checkpoint_restart && { alive_after restart; alive_after stop; }
sync_locks
security_score
[ "$FAILS" = 0 ] || in_ct journalctl -b --no-pager -n 30 -u ghostd
sd_finish
