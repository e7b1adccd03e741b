#!/bin/bash
# test-migrate.sh - cairn migrate on a 4-node local cluster (issue 19, item
# 3): the image streamed from the source ghostd to the target's over the
# CURVE links, the source killed only once the target runs the tree.
#
# The stream itself, on plain process trees (cairn migrate --pid; jobs
# come with the job table): a bash counter appending 1, 2, 3, ... to a log
# moved 1 -> 2 -> 3 -> 1 while it counts (after each move exactly one
# copy runs, and the log never goes back, repeats or skips); a 64 MiB
# process whose every word is checked after the move (ghost-victim:
# PASS); a python3 process counting in a second thread; a `sh -c
# 'producer | consumer'` tree. Then the failures, each leaving the tree
# running at the source, exactly one copy, the JSON saying why: a target
# whose ghostd is dead; a target whose memory cgroup has too little room
# (failed-precondition, "memory"); the target's ghostd killed while the
# stream runs (a 300 MiB process); --check lists the target's reason.
# Bad requests are refused with usage errors.
# Needs root and netns (skips with 77).
. "$(dirname "$0")/lib.sh"

t_require_netns
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
VICTIM="$CAIRN_BUILD/bench/ghost-victim"
[ -x "$VICTIM" ] || { echo "SKIP: $VICTIM not built"; exit 77; }

name="m$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT

"$CAIRN" cluster up --nodes 4 --name "$name" --mem 1G >"$T_TMP/up.json" ||
    { t_fail "cluster up"; t_done; }
for id in 1 2 3 4; do
    t_check "node $id alive" t_wait_state 15 "$id" alive 1 2 3 4
done

# spawn CMD...: starts CMD on node 1 -- in its network namespace, as a
# process of that node is (ghostd refuses one whose namespace is not its
# node's: the restore would change it) -- in a session of its own, every
# fd above 2 closed, stdio /dev/null (the test's own fds would be pipes
# to outside: not migratable); prints its pid. nsenter, not `ip netns
# exec`, which would give it a mount namespace of its own as well.
spawn() {
    nsenter --net="/run/netns/cairn-$name-1" python3 - "$@" <<'PY'
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
print(p.pid)
PY
}

# copies PATTERN: how many processes' command lines hold PATTERN.
copies() { pgrep -fc -- "$1"; }

# migrate FROM PID TO: `cairn migrate` asked on node FROM; the JSON in $out.
migrate() {
    out=$("$CAIRN" --node "$1" migrate --pid "$2" --to "$3" 2>"$T_TMP/err"); rc=$?
    [ "$rc" -eq 0 ] || out=$(cat "$T_TMP/err")
}

# log_ok LOG: the log is 1, 2, 3, ... N with N > 0: never back, never a
# repeat, never a skip.
log_ok() { awk 'NR != $1 { bad = 1 } END { exit bad || NR == 0 }' "$1"; }

# grows LOG: the log gets longer within 2 s (the counter runs).
grows() {
    local n0 n i
    n0=$(cat "$1" 2>/dev/null | wc -l)
    for i in $(seq 1 60); do
        n=$(cat "$1" 2>/dev/null | wc -l); [ "$n" -gt "$n0" ] && return 0; sleep 0.05
    done
    return 1
}

# ---- a counter moved 1 -> 2 -> 3 -> 1 -------------------------------------

counter="$T_TMP/counter.sh"; log="$T_TMP/count.log"
cat >"$counter" <<'EOF'
i=0; while :; do i=$((i + 1)); echo $i >>"$1"; sleep 0.02; done
EOF
pid=$(spawn bash "$counter" "$log")
t_check "counter counts" grows "$log"
from=1
for to in 2 3 1; do
    migrate "$from" "$pid" "$to"
    t_json_check "counter moved $from -> $to" "$out" \
        ".from == $from and .to == $to and .source_pid == $pid and .pid > 0 and
         .image_bytes > 0 and .processes >= 1 and .chunks >= 1 and
         .freeze_ms > 0 and .total_ms >= .freeze_ms"
    [ "$rc" -eq 0 ] || break
    pid=$(jq -r .pid <<<"$out")
    t_check "counter $from -> $to: one copy" test "$(copies "$counter")" -eq 1
    t_check "counter $from -> $to: the new one is pid $pid" kill -0 "$pid"
    t_check "counter $from -> $to: counts on" grows "$log"
    from=$to
done
t_check "counter: log never back, repeated or skipped" log_ok "$log"
kill "$pid" 2>/dev/null; pkill -f -- "$counter"

# ---- 64 MiB, every word checked ---------------------------------------------

status="$T_TMP/victim.status"
pid=$(spawn "$VICTIM" 64 "$status")
for i in $(seq 1 100); do grep -q READY "$status" 2>/dev/null && break; sleep 0.05; done
migrate 1 "$pid" 2
t_json_check "64 MiB moved 1 -> 2" "$out" '.to == 2 and .image_bytes > 67108864 and .chunks >= 64'
npid=$(jq -r '.pid // 0' <<<"$out")
gone() { [ ! -e "/proc/$1" ] || [ "$(t_proc_state "$1")" = Z ]; }
t_check "64 MiB: the source is gone" gone "$pid"
kill -USR2 "$npid" 2>/dev/null
for i in $(seq 1 100); do grep -qE 'PASS|FAIL' "$status" && break; sleep 0.05; done
t_check "64 MiB: every word as it was" grep -q PASS "$status"
kill "$npid" 2>/dev/null

# ---- a second thread counting -------------------------------------------------

tlog="$T_TMP/thread.log"
pid=$(spawn python3 -c "
import threading, time
def count():
    i = 0
    while True:
        i += 1
        with open('$tlog', 'a') as f: f.write('%d\n' % i)
        time.sleep(0.02)
threading.Thread(target=count, daemon=True).start()
while True: time.sleep(1)
")
t_check "threaded counter counts" grows "$tlog"
migrate 1 "$pid" 3
t_json_check "threaded moved 1 -> 3" "$out" '.to == 3 and .threads == 2'
npid=$(jq -r '.pid // 0' <<<"$out")
t_check "threaded: counts on" grows "$tlog"
t_check "threaded: log never back, repeated or skipped" log_ok "$tlog"
t_check "threaded: one copy" test "$(pgrep -fc -- "$tlog")" -eq 1
kill "$npid" 2>/dev/null

# ---- sh -c 'producer | consumer' --------------------------------------------

plog="$T_TMP/pipe.log"
pid=$(spawn sh -c "i=0; while :; do i=\$((i + 1)); echo \$i; sleep 0.02; done | \
while read -r n; do echo \$n >>'$plog'; done")
t_check "pipeline counts" grows "$plog"
migrate 1 "$pid" 4
t_json_check "pipeline moved 1 -> 4" "$out" '.to == 4 and .processes >= 3'
t_check "pipeline: counts on" grows "$plog"
t_check "pipeline: log never back, repeated or skipped" log_ok "$plog"
t_check "pipeline: one tree" test "$(pgrep -fc -- "$plog")" -eq 3
pkill -f -- "$plog"

# ---- failures: the tree runs on at the source ----------------------------------

log="$T_TMP/count2.log"
pid=$(spawn bash "$counter" "$log")
t_check "failures: counter counts" grows "$log"

# node_pid ID SERVICE: the pid of node ID's daemon.
node_pid() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}

# a dead target (its ghostd killed: the node itself stays up)
kill -9 "$(node_pid 4 ghostd)" 2>/dev/null
migrate 1 "$pid" 4
t_check "dead target: refused" test "$rc" -ne 0
t_json_check "dead target: says why and where it runs" "$out" \
    '.error.message | test("node 4 did not answer") and test("runs on at node 1")'
t_check "dead target: one copy, counting" bash -c "[ $(copies "$counter") -eq 1 ] && kill -0 $pid"
t_check "dead target: counts on" grows "$log"
"$CAIRN" node restart 4 >/dev/null

# a target without room: node 3's memory limit lowered under the job's need
# the node's memory cgroup, as the harness made it (v1 or v2)
for cg in $("$CAIRN" cluster status | jq -r '.nodes[] | select(.id == 3) | .cgroup_paths[]'); do
    for knob in "$cg/memory.limit_in_bytes" "$cg/memory.max"; do [ -f "$knob" ] && break 2; done
done
old=$(cat "$knob")
vstatus="$T_TMP/room.status"
vpid=$(spawn "$VICTIM" 96 "$vstatus")
for i in $(seq 1 100); do grep -q READY "$vstatus" 2>/dev/null && break; sleep 0.05; done
# room of 64 MiB beside what the node uses: under the 96 MiB job itself
used=$(cat "$(dirname "$knob")/memory.usage_in_bytes" "$(dirname "$knob")/memory.current" 2>/dev/null | head -1)
echo $(( used + (64 << 20) )) >"$knob"
out=$("$CAIRN" --node 1 migrate --pid "$vpid" --to 3 --check 2>&1)
t_json_check "no room: --check lists the memory reason" "$out" \
    '.movable == false and (.reasons | any(test("memory")))'
migrate 1 "$vpid" 3
t_json_check "no room: failed-precondition, memory, runs on at 1" "$out" \
    '.error.code == "failed-precondition" and (.error.message | test("memory") and test("runs on at node 1"))'
echo "$old" >"$knob"
t_check "no room: one copy" test "$(copies "$VICTIM 96")" -eq 1
kill -USR2 "$vpid"
for i in $(seq 1 100); do grep -qE 'PASS|FAIL' "$vstatus" && break; sleep 0.05; done
t_check "no room: the tree untouched" grep -q PASS "$vstatus"
kill "$vpid"

# the target's ghostd killed mid-stream
bstatus="$T_TMP/big.status"
bpid=$(spawn "$VICTIM" 300 "$bstatus")
for i in $(seq 1 200); do grep -q READY "$bstatus" 2>/dev/null && break; sleep 0.05; done
glog="$CAIRN_RUN_BASE/$name/2/ghostd.log"
"$CAIRN" --node 1 migrate --pid "$bpid" --to 2 >"$T_TMP/mid.out" 2>&1 &
mig=$!
for i in $(seq 1 200); do grep -q "migrate-in id=" "$glog" 2>/dev/null && break; sleep 0.01; done
sleep 0.1
kill -9 "$(node_pid 2 ghostd)"
wait "$mig"; rc=$?
out=$(cat "$T_TMP/mid.out"); echo "  answer: $out"
t_check "killed mid-stream: refused" test "$rc" -ne 0
t_json_check "killed mid-stream: says why and where it runs" "$out" \
    '.error.message | test("runs on at node 1")'
sleep 0.5
t_check "killed mid-stream: one copy" test "$(copies "$VICTIM 300")" -eq 1
t_check "killed mid-stream: the source runs" kill -0 "$bpid"
kill -USR2 "$bpid"
for i in $(seq 1 200); do grep -qE 'PASS|FAIL' "$bstatus" && break; sleep 0.05; done
t_check "killed mid-stream: every word as it was" grep -q PASS "$bstatus"
kill "$bpid"
"$CAIRN" node restart 2 >/dev/null

t_check "failures: counter one copy at the end" test "$(copies "$counter")" -eq 1
t_check "failures: log never back, repeated or skipped" log_ok "$log"
pkill -f -- "$counter"

# ---- bad requests ----------------------------------------------------------------

# err_is CODE PATTERN CMD...: CMD fails with error CODE, message matching.
err_is() {
    local code=$1 pat=$2 o; shift 2
    o=$("$@" 2>&1 >/dev/null) && return 1
    jq -e --arg c "$code" --arg p "$pat" '.error.code == $c and (.error.message | test($p))' \
        <<<"$o" >/dev/null || { echo "  got: $o" >&2; return 1; }
}
t_check "no --to" err_is usage "--to NODE is required" "$CAIRN" migrate --pid 1
t_check "to itself" err_is invalid-argument "on node 1 already" \
    "$CAIRN" --node 1 migrate --pid "$$" --to 1
t_check "no such node" err_is usage "no such node" "$CAIRN" migrate --pid "$$" --to nowhere
t_check "no such pid" err_is not-found "no process" "$CAIRN" --node 1 migrate --pid 999999 --to 2
t_check "not a gpid" err_is usage "not a gpid" "$CAIRN" migrate xyz --to 2

t_done
