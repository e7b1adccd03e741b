#!/bin/bash
# test-lifecycle.sh - every Cairn unit's life under a booted systemd
# (suite `systemd`; the booted tree: lib-nspawn.sh; the units and their
# checks: services.sh).
#
# What an operator does and sees, one unit at a time, in services.sh's
# order:
#   0. A description that does not parse (a drop-in pointing the unit at
#      it): `systemctl start` fails, the journal names the file and line,
#      Restart= gives up at systemd's start limit, nothing is left.
#   1. `systemctl start NAME`: active (running) through Type=notify with
#      NotifyAccess=main, its main process the installed daemon, and it
#      answers at once (serves_NAME, no retry: READY=1 means serving);
#      `cairn nodes` shows the node alive.
#   2. A job (`cairn run -- sleep`) lands in cairn-job-<gpid>.scope in
#      cairn.slice, outside every daemon's unit.
#   3. `systemctl reload NAME`: the same process, still serving.
#   4. The watchdog: NAME's main process stopped with SIGSTOP is killed by
#      systemd's watchdog ("Watchdog timeout" in its journal) and started
#      again by Restart=on-failure: NRestarts grew, a new main process,
#      serving again; the job runs on through all of it.
#   5. An alternative (`--replaces OTHER`): `systemctl start NAME` stops
#      OTHER through Conflicts=, and back.
#   6. `systemctl stop NAME`, in reverse order: inactive with Result=success
#      and exit status 0 (SIGTERM drains, exits 0), no process left in its
#      cgroup nor anywhere running its binary, no socket or pid file of it
#      in the node's run dir (stopped_NAME: more, e.g. ghostd's job scope
#      lives on). Right after ghostd's stop, ghostd started again takes
#      the job back, and `cairn kill` ends it and its scope.
# Exit 77 where the machine cannot (lib-nspawn.sh says when).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib-nspawn.sh"

SD_SEQ=()            # units started in sequence, in order
SD_ALTS=()           # units that replace another (--replaces)
declare -A SD_REPLACES=()
declare -A SD_SERVICE=()   # unit -> the description's service it runs
SD_JOB=              # the gpid of the job started after the sequence
SD_JOB_WHY=          # why sd_job_alive said no
RUNDIR=/run/cairn/sd/1

# The table's one verb (services.sh).
sd_service() {
    local u=$1 alt=
    shift
    SD_SERVICE[$u]=$u
    while [ $# -gt 0 ]; do
        case "$1" in
            --replaces) alt=$2; shift 2 ;;
            --service) SD_SERVICE[$u]=$2; shift 2 ;;
            *) die "services.sh: sd_service $u: unknown option $1" ;;
        esac
    done
    if [ -n "$alt" ]; then SD_ALTS+=("$u"); SD_REPLACES[$u]=$alt; else SD_SEQ+=("$u"); fi
}
. "$HERE/services.sh"

# prop UNIT PROPERTY: one property's value.
prop() { in_ct systemctl show -P "$2" "$1"; }

# props UNIT P1,P2,...: "P1=v1 P2=v2 ..." in the order asked.
props() {
    local p out=
    for p in ${2//,/ }; do out="$out $p=$(prop "$1" "$p")"; done
    echo "${out# }"
}

# ct_pids_in TEXT: the container's pids whose /proc/PID/cgroup holds TEXT.
ct_pids_in() {
    in_ct sh -c 'grep -l -F -e "$1" /proc/[0-9]*/cgroup 2>/dev/null' sh "$1" |
        sed 's,/proc/\([0-9]*\)/cgroup,\1,' | tr '\n' ' '
}

# ct_pids_of EXE: the container's pids running the program EXE.
ct_pids_of() {
    in_ct sh -c 'for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"; done' sh "$1" |
        tr '\n' ' '
}

journal_tail() { in_ct journalctl -u "$1.service" --no-pager -n "${2:-15}" -o cat; }

# cursor: the journal's position now; since CURSOR NAME: NAME's lines
# after it (systemd's about the unit, and the daemon's own).
cursor() { in_ct journalctl -n 1 -q --show-cursor --no-pager | sed -n 's/^-- cursor: //p'; }
since() { in_ct journalctl -q --after-cursor="$1" -u "$2.service" --no-pager -o cat; }

# sd_job_alive: the job's scope active in cairn.slice with its processes.
sd_job_alive() {
    local u=cairn-job-$SD_JOB.scope st pids
    st=$(props "$u" ActiveState,SubState,Slice)
    pids=$(ct_pids_in "$u")
    SD_JOB_WHY="$u: $st; processes: ${pids:-none}"
    [ "$st" = "ActiveState=active SubState=running Slice=cairn.slice" ] && [ -n "$pids" ]
}

# serves NAME WHEN: serves_NAME, counted.
serves() {
    local why
    if why=$("serves_$1" 2>&1); then
        ok "$1 serves $2"
    else
        fail "$1 does not serve $2: $why"
        return 1
    fi
}

# ---- the table against the build -----------------------------------------

check_table() {
    local u installed listed missing extra
    installed=$(sd_installed_units | tr '\n' ' ')
    listed=$(printf '%s\n' "${SD_SEQ[@]}" "${SD_ALTS[@]}" | sort | tr '\n' ' ')
    for u in $installed; do
        [[ " $listed " == *" $u "* ]] || extra="${extra:-} $u"
    done
    for u in $listed; do
        [[ " $installed " == *" $u "* ]] || missing="${missing:-} $u"
        declare -F "serves_$u" >/dev/null || fail "services.sh has no serves_$u"
    done
    [ -z "${extra:-}" ] ||
        fail "installed units without a line in tests/systemd/services.sh:$extra"
    [ -z "${missing:-}" ] ||
        fail "services.sh lists units this build does not install:$missing"
    for u in "${SD_ALTS[@]}"; do
        [[ " $listed " == *" ${SD_REPLACES[$u]} "* ]] ||
            fail "services.sh: $u replaces ${SD_REPLACES[$u]}, which has no line"
    done
    [ "$FAILS" = 0 ] && ok "units installed = services.sh: $installed"
}

# ---- 0. a broken description -----------------------------------------------

# NAME pointed at a description that does not parse (a drop-in, as an
# operator would): `systemctl start` fails, the journal says which file and
# line, Restart= gives up at the start limit, nothing is left; then the
# drop-in goes and the unit's failure is reset.
bad_description() {
    local u=$1 d=/run/systemd/system/$1.service.d c out i st
    in_ct mkdir -p "$d" /run/cairn-test
    in_ct sh -c 'printf "<cluster name=\"sd\">\n<nodes>\n" >/run/cairn-test/broken.xml'
    in_ct sh -c "printf '[Service]\nEnvironment=CAIRN_CONFIG=/run/cairn-test/broken.xml\n' >$d/zz-broken.conf"
    in_ct systemctl daemon-reload
    c=$(cursor)
    if out=$(in_ct systemctl start "$u.service" 2>&1); then
        fail "$u started on a broken description"
    else
        ok "systemctl start $u refused a broken description: $(head -n 1 <<<"$out")"
    fi
    for i in $(seq 100); do
        st=$(props "$u" ActiveState,Result)
        [ "$st" = "ActiveState=failed Result=exit-code" ] && break
        sleep 0.2
    done
    [ "$st" = "ActiveState=failed Result=exit-code" ] &&
        ok "$u gave up: $st after $(prop "$u" NRestarts) restarts" ||
        fail "$u on a broken description: $st, NRestarts $(prop "$u" NRestarts)"
    since "$c" "$u" | grep -q "file=/run/cairn-test/broken.xml line=" &&
        ok "$u's journal: $(since "$c" "$u" | grep -m1 'file=/run/cairn-test/broken.xml')" ||
        fail "$u's journal does not name the broken file: $(since "$c" "$u" | head -n 5 | tr '\n' '|')"
    [ -z "$(ct_pids_of "$SD_PREFIX/sbin/$u")$(ct_pids_in "/$u.service")" ] ||
        fail "$u left processes after its failed starts"
    in_ct rm -f "$d/zz-broken.conf"
    in_ct systemctl daemon-reload
    in_ct systemctl reset-failed "$u.service"
}

# ---- 1. start, one by one --------------------------------------------------

# started NAME: NAME's state after a start, a restart or a swap.
started() {
    local u=$1 st pid exe
    st=$(props "$u" ActiveState,SubState,Type,NotifyAccess)
    if [ "$st" = "ActiveState=active SubState=running Type=notify NotifyAccess=main" ]; then
        ok "$u: $st"
    else
        fail "$u: $st (want active running notify main)"; journal_tail "$u"; return 1
    fi
    pid=$(prop "$u" MainPID)
    exe=$(in_ct readlink "/proc/$pid/exe")
    [ "$exe" = "$SD_PREFIX/sbin/$u" ] && ok "$u's main process $pid is $exe" ||
        fail "$u's main process $pid is '$exe', not $SD_PREFIX/sbin/$u"
}

start_one() {
    local u=$1 out
    out=$(in_ct systemctl start "$u.service" 2>&1) ||
        { fail "systemctl start $u: $out"; journal_tail "$u"; return 1; }
    started "$u" && serves "$u" "once started"
}

# ---- 2. a job in its scope -------------------------------------------------

run_job() {
    local out cg
    out=$(in_ct cairn run --name sd-job -- /bin/sleep 100000 2>&1) ||
        { fail "cairn run: $out"; return 1; }
    SD_JOB=$(jq -r .gpid <<<"$out")
    cg=$(jq -r .cgroup <<<"$out")
    [ "$cg" = "/cairn.slice/cairn-job-$SD_JOB.scope" ] &&
        ok "job $SD_JOB runs in $cg" || fail "job $SD_JOB runs in '$cg', not cairn.slice/cairn-job-$SD_JOB.scope"
    sd_job_alive && ok "$SD_JOB_WHY" || fail "job $SD_JOB: $SD_JOB_WHY"
}

# ---- 3. reload -------------------------------------------------------------

# The daemon logs `reloaded` once the description is read again: SIGHUP
# is asynchronous, `systemctl reload` returns when it is sent.
reload_one() {
    local u=$1 p0 p1 out c i
    p0=$(prop "$u" MainPID)
    c=$(cursor)
    out=$(in_ct systemctl reload "$u.service" 2>&1) || { fail "systemctl reload $u: $out"; return 1; }
    for i in $(seq 50); do
        since "$c" "$u" | grep -q "reloaded file=/etc/cairn/cluster.xml" && break
        sleep 0.1
    done
    since "$c" "$u" | grep -q "reloaded file=/etc/cairn/cluster.xml" ||
        fail "$u logged no reload: $(since "$c" "$u" | tr '\n' '|')"
    p1=$(prop "$u" MainPID)
    [ "$p0" = "$p1" ] && started "$u" >/dev/null && ok "$u reloaded in place (pid $p1)" ||
        fail "$u after reload: pid $p0 -> $p1, $(props "$u" ActiveState,SubState)"
    serves "$u" "after a reload"
}

# ---- 4. the watchdog -------------------------------------------------------

watchdog_one() {
    local u=$1 n0 p0 w i st n1 p1 t0 t1 lim
    n0=$(prop "$u" NRestarts)
    p0=$(prop "$u" MainPID)
    w=$(prop "$u" WatchdogUSec)
    case "$w" in ""|0|infinity) fail "$u has no WatchdogSec ($w)"; return 1 ;; esac
    w=$(in_ct systemd-analyze timespan "$w" | awk '/μs:|us:/ {print int($2 / 1000000)}')
    lim=$((w + $(in_ct systemd-analyze timespan "$(prop "$u" RestartUSec)" |
        awk '/μs:|us:/ {print int($2 / 1000000)}') + 20))
    in_ct systemctl kill --kill-who=main -s SIGSTOP "$u.service" ||
        { fail "systemctl kill -s SIGSTOP $u"; return 1; }
    in_ct grep -q '^State:.*T' "/proc/$p0/status" && ok "$u (pid $p0) stopped with SIGSTOP" ||
        fail "$u (pid $p0) not stopped: $(in_ct grep State: /proc/$p0/status)"
    t0=$(date +%s)
    for i in $(seq $((lim * 5))); do
        n1=$(prop "$u" NRestarts)
        p1=$(prop "$u" MainPID)
        st=$(prop "$u" SubState)
        [ "$n1" -gt "$n0" ] && [ "$st" = running ] && [ "$p1" != 0 ] && [ "$p1" != "$p0" ] && break
        sleep 0.2
    done
    t1=$(date +%s)
    if [ "$n1" -gt "$n0" ] && [ "$st" = running ] && [ "$p1" != "$p0" ]; then
        ok "$u: watchdog (${w}s) killed pid $p0, Restart= started pid $p1 after $((t1 - t0)) s, NRestarts $n0 -> $n1"
    else
        fail "$u not restarted within $lim s: NRestarts $n0 -> $n1, pid $p0 -> $p1, $st"
        journal_tail "$u" 20; return 1
    fi
    in_ct journalctl -u "$u.service" --no-pager -o cat | grep -q "Watchdog timeout" &&
        ok "$u's journal: $(in_ct journalctl -u "$u.service" --no-pager -o cat | grep -m1 'Watchdog timeout')" ||
        fail "$u's journal says no watchdog timeout: $(journal_tail "$u" 8 | tr '\n' '|')"
    [ -z "$(in_ct sh -c "test -e /proc/$p0 && readlink /proc/$p0/exe")" ] &&
        ok "$u's old process $p0 is gone" || fail "$u's old process $p0 is still there"
    started "$u" && serves "$u" "after the watchdog's restart"
}

# ---- 5. alternatives -------------------------------------------------------

# swap_to NEW OLD: `systemctl start NEW` stops OLD (Conflicts=).
swap_to() {
    local new=$1 old=$2 out c
    prop "$new" Conflicts | grep -qw "$old.service" &&
        prop "$old" Conflicts | grep -qw "$new.service" &&
        ok "$new and $old conflict both ways" ||
        fail "Conflicts=: $new has '$(prop "$new" Conflicts)', $old has '$(prop "$old" Conflicts)'"
    c=$(cursor)
    out=$(in_ct systemctl start "$new.service" 2>&1) || { fail "systemctl start $new: $out"; return 1; }
    started "$new" && serves "$new" "in place of $old"
    left_nothing "$old" "$c" replaced
}

alternative() {
    local u=$1 other=${SD_REPLACES[$1]}
    swap_to "$u" "$other"
    swap_to "$other" "$u"
    [ -z "$SD_JOB" ] || { sd_job_alive && ok "job $SD_JOB ran on through the swaps" ||
        fail "job $SD_JOB after the swaps: $SD_JOB_WHY"; }
}

# ---- 6. stop ---------------------------------------------------------------

# left_nothing NAME CURSOR [replaced]: NAME stopped cleanly since CURSOR
# and left nothing behind. Clean is systemd's word for it in the journal:
# the unit's exec status is gone with the unit once nothing references
# it. `replaced`: another unit serves the same service now, its sockets
# are that one's.
left_nothing() {
    local u=$1 svc=${SD_SERVICE[$1]} st pids files why log
    st=$(props "$u" ActiveState,MainPID)
    log=$(since "$2" "$u")
    if [ "$st" = "ActiveState=inactive MainPID=0" ] &&
        grep -q "Deactivated successfully" <<<"$log" &&
        ! grep -qE "Failed with result|timed out|Main process exited|Killing" <<<"$log"; then
        ok "$u stopped: $st, $(grep -m1 "Deactivated successfully" <<<"$log")"
    else
        fail "$u stopped: $st; its journal: $(tr '\n' '|' <<<"$log")"
    fi
    pids=$(ct_pids_in "/$u.service")
    [ -z "$pids" ] && ok "no process in $u.service's cgroup" ||
        fail "processes left in $u.service's cgroup: $pids"
    pids=$(ct_pids_of "$SD_PREFIX/sbin/$u")
    [ -z "$pids" ] || fail "$SD_PREFIX/sbin/$u still runs: $pids"
    if [ "${3:-}" != replaced ]; then
        files=$(in_ct find /run/cairn /run -maxdepth 4 \( -name "$svc.sock" -o -name "$svc.pub.sock" \
            -o -name "$u.pid" -o -name "$svc.pid" \) 2>/dev/null | sort -u | tr '\n' ' ')
        [ -z "$files" ] && ok "no socket or pid file of $u left" || fail "$u left: $files"
    fi
    if declare -F "stopped_$u" >/dev/null; then
        why=$("stopped_$u" 2>&1) && ok "stopped_$u" || fail "stopped_$u: $why"
    fi
}

stop_one() {
    local u=$1 out c
    c=$(cursor)
    out=$(in_ct systemctl stop "$u.service" 2>&1) || { fail "systemctl stop $u: $out"; return 1; }
    left_nothing "$u" "$c"
}

# ghostd alone again: it takes the job back; cairn kill ends it and its scope.
adopt_and_kill() {
    local out i st
    start_one ghostd || return 1
    out=$(in_ct cairn kill "$SD_JOB" 2>&1) || { fail "cairn kill $SD_JOB: $out"; return 1; }
    out=$(in_ct cairn wait --timeout 10000 "$SD_JOB" 2>&1)
    jq -e '.exited and .exit_signal == 9' <<<"$out" >/dev/null &&
        ok "job $SD_JOB taken back by the new ghostd and killed" || fail "cairn wait $SD_JOB: $out"
    local job=$SD_JOB
    SD_JOB=   # none to outlive ghostd's next stop
    for i in $(seq 50); do
        st=$(prop "cairn-job-$job.scope" ActiveState)
        [ "$st" = inactive ] && break
        sleep 0.2
    done
    [ "$st" = inactive ] && [ -z "$(ct_pids_in "cairn-job-$job.scope")" ] &&
        ok "cairn-job-$job.scope gone with its job" ||
        fail "cairn-job-$job.scope after the kill: $st, processes $(ct_pids_in "cairn-job-$job.scope")"
    stop_one ghostd
}

# Nothing of Cairn runs or listens any more, and every unit is inactive.
all_gone() {
    local u pids socks
    pids=$(for u in "${SD_SEQ[@]}" "${SD_ALTS[@]}"; do ct_pids_of "$SD_PREFIX/sbin/$u"; done)
    pids="$pids$(ct_pids_in cairn-job-)"
    socks=$(in_ct find /run/cairn -type s 2>/dev/null | tr '\n' ' ')
    [ -z "${pids// /}" ] && [ -z "$socks" ] && ok "nothing of Cairn left running or listening" ||
        fail "left after every stop: processes '$pids', sockets '$socks'"
}

sd_require
sd_stage "$(printf '%s\n' "${SD_SERVICE[@]}" | awk '!seen[$0]++' | tr '\n' ' ')"
check_table
sd_rootfs
sd_boot
sd_sanitizer_dropins "${SD_SEQ[@]}" "${SD_ALTS[@]}"

for u in "${SD_SEQ[@]}" "${SD_ALTS[@]}"; do bad_description "$u"; done
for u in "${SD_SEQ[@]}"; do
    start_one "$u" || { sd_finish; }
done
serves clusterd "the whole node (after every start)"
run_job
for u in "${SD_SEQ[@]}"; do reload_one "$u"; done
for u in "${SD_SEQ[@]}"; do watchdog_one "$u"; done
[ -z "$SD_JOB" ] || { sd_job_alive && ok "job $SD_JOB ran on through the watchdog restarts" ||
    fail "job $SD_JOB after the watchdog restarts: $SD_JOB_WHY"; }
for u in "${SD_ALTS[@]}"; do alternative "$u"; done
for ((i = ${#SD_SEQ[@]} - 1; i >= 0; i--)); do
    stop_one "${SD_SEQ[i]}"
    # with clusterd still up, as an operator restarting ghostd would
    [ "${SD_SEQ[i]}" = ghostd ] && [ -n "$SD_JOB" ] && adopt_and_kill
done
all_gone
sd_finish
