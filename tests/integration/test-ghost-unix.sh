#!/bin/bash
# test-ghost-unix.sh - unix sockets of a job (docs/ghost.md "Sockets" and
# "Jobs: a pid namespace each"): ghost-state's unix cases that hold names,
# pairs across processes and passed credentials, each run as a job's
# program (ghost-init's reaper pid 1, the case pid 2), dumped whole from
# the reaper and restored into a fresh pid namespace by the engine's
# helpers; the case checks its sockets after SIGUSR2 (the reaper forwards
# it) and says PASS. unix-creds is the one that needs the job's pids: its
# queued messages carry the credentials of pid 2 and of its child inside
# the namespace, which must come back as those pids inside. The cases
# outside a job are test-ghost-state.sh's. Needs root: skips with 77.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
ENGINE="$CAIRN_BUILD/services/ghostd/engine"
STATE="$CAIRN_BUILD/tests/ghost/ghost-state"
t_require_built "$STATE" || exit 1

# wait_line FILE REGEX: up to 10 s for a line of FILE to match.
wait_line() {
    local i
    for i in $(seq 1 200); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# is_gone PID: no such process.
is_gone() { [ "$(t_proc_state "$1")" = gone ]; }

n=0
for name in unix-creds unix-pair-tree unix-accepted unix-listen-abstract unix-shutdown; do
    n=$((n + 1))
    d="$T_TMP/$name" work="$T_TMP/$name/work"
    mkdir -p "$work"
    out=$(ASAN_OPTIONS=detect_leaks=0 "$ENGINE/ghost-init" --job "$d" --gpid "1.$n" -- \
        "$STATE" "$name" "$work" </dev/null); rc=$?
    if [ "$rc" -ne 0 ]; then
        t_fail "$name: ghost-init: $out"; continue
    fi
    H=$(jq -r .host_pid <<<"$out")
    T_PIDS+=("$H")
    if ! wait_line "$d/stdout" '^ready 2$'; then
        t_fail "$name: not ready as pid 2 of its job: $(cat "$d/stdout")"; kill -9 "$H"; continue
    fi
    out=$("$ENGINE/ghost-dump" --pid "$H" --out "$d/image.ghost"); rc=$?
    t_check "$name: the job dumped ($out)" [ "$rc" -eq 0 ]
    t_json_check "$name: dumped as a job" "$out" ".job == true"
    t_check "$name: the job is gone after the dump" t_wait_for 5 is_gone "$H"
    out=$("$ENGINE/ghost-restore" --image "$d/image.ghost"); rc=$?
    t_check "$name: restored ($out)" [ "$rc" -eq 0 ]
    [ "$rc" -eq 0 ] || continue
    R=$(jq -r .host_pid <<<"$out")
    T_PIDS+=("$R")
    t_json_check "$name: restored as a job, the case pid 2 inside" "$out" \
        '.job == true and ([.members[] | .pid] | index(2) != null)'
    kill -USR2 "$R"
    if wait_line "$d/stdout" "^(PASS|FAIL) $name"; then
        t_check "$name: PASS inside the restored job ($(grep -E '^(PASS|FAIL)' "$d/stdout"))" \
            grep -qx "PASS $name" "$d/stdout"
    else
        t_fail "$name: no verdict: $(cat "$d/stdout")"
    fi
    kill -9 "$R" 2>/dev/null
done
t_done
