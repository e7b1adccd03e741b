#!/bin/bash
# test-migrate-jobs.sh - cairn migrate GPID on a 4-node local cluster
# (issue 19, items 3 and 5; docs/jobs.md, "Migration"): jobs started with
# cairn run, moved by gpid, asked from any node.
#
#   - a counter job (python3 printing "count getpid() getppid()" to its
#     stdout every 20 ms) moved 1 -> 2 -> 3 -> 1 while it counts, each move
#     asked from another node: the gpid stays, the job's pids inside never
#     change (2, its parent the reaper, 1), its count never goes back nor
#     skips (read through cairn logs, which reads the job's directory
#     wherever it runs), `cairn ps` right after each answer lists it on the
#     target with moves + 1 and the new reaper, one copy runs;
#   - a multi-threaded job and a `sh -c 'producer | consumer'` job, each
#     moved as one, counting on;
#   - cairn signal, cairn wait and cairn logs after the moves: the exit
#     record the reaper writes on the last node answers wait from
#     another node; waits started before the moves, at the job's node and
#     at another, follow the job and answer its end;
#   - a user who is not root migrates their own job (and --check lists
#     nothing against it) and is refused root's;
#   - the target's ghostd killed (a) after the restored copy ran but before
#     it heard so, (b) right after it recorded the copy running: one copy
#     after the restarted ghostd answers (docs/jobs.md, "Migration");
#   - the source's ghostd stopped and killed (c) before it heard the copy
#     runs (ghost-dump resumes the source: the next ghostd aborts the
#     target's copy), (d) the moment it runs (killed for the move: the next
#     ghostd commits the target's; or (c) again): one copy, listed once;
#   - refusals: an unknown gpid, a job that has exited, a job on the node
#     it is asked to go to.
# Needs root, netns, python3, useradd/runuser (skips with 77).
. "$(dirname "$0")/lib.sh"

t_require_netns
for tool in python3 useradd userdel runuser; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done

name="mj$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name" CAIRN
UA="cairnmj$$"
s_cleanup() {
    [ -n "${KEEP_LOGS:-}" ] && cp -r "$CAIRN_RUN_BASE/$name" "$KEEP_LOGS" 2>/dev/null
    "$CAIRN" cluster down --name "$name" >/dev/null 2>&1
    if id -u "$UA" >/dev/null 2>&1; then
        pkill -9 -u "$(id -u "$UA")" 2>/dev/null
        for p in 1 2 3 4 5; do userdel "$UA" 2>/dev/null && break; sleep 0.1; done
        getent group "$UA" >/dev/null && groupdel "$UA" 2>/dev/null
    fi
    t_cleanup
}
trap s_cleanup EXIT
chmod 755 "$T_TMP"   # the user passes through to the run base

"$CAIRN" cluster up --nodes 4 --mem 1G >"$T_TMP/up.json" || { t_fail "cluster up"; t_done; }
for k in 1 2 3 4; do t_check "node $k alive" t_wait_state 15 "$k" alive 1 2 3 4; done

# c K ARGS...: the CLI at node K's ghostd.
c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
t_ghostds_see 4

# migrate ASKED GPID TO: `cairn migrate` asked at node ASKED; JSON in $out.
migrate() {
    out=$(c "$1" migrate "$2" --to "$3" 2>"$T_TMP/err"); rc=$?
    [ "$rc" -eq 0 ] || out=$(cat "$T_TMP/err")
}
# lines GPID: how many lines the job has printed.
lines() { c 1 logs "$1" | wc -l; }
# grows GPID: its output gets longer within 3 s (it runs).
grows() {
    local n0 i
    n0=$(lines "$1")
    for i in $(seq 1 60); do [ "$(lines "$1")" -gt "$n0" ] && return 0; sleep 0.05; done
    return 1
}
# counts_ok GPID: its output is "1 2 1", "2 2 1", ... "N 2 1", N > 0:
# never back, never repeated, never skipped, pid 2 and parent 1 always.
counts_ok() {
    c 1 logs "$1" | awk 'NR != $1 || $2 != 2 || $3 != 1 { bad = 1; print "  line " NR ": " $0 > "/dev/stderr"; exit }
                         END { exit bad || NR == 0 }'
}
# copies GPID: how many copies of the job run -- reapers (ghost-init,
# whose command line names the gpid) on this machine, whatever node.
copies() { pgrep -fc -- "ghost-init --job [^ ]*/$name/jobs/$1 --gpid $1 "; }
# reapers_are GPID N: N copies of it run (a killed copy takes a moment
# to go: use with t_wait_for).
reapers_are() {
    [ "$(copies "$1")" -eq "$2" ] && return 0
    local p
    for p in $(pgrep -f -- "ghost-init --job [^ ]*/$name/jobs/$1 --gpid $1 "); do
        echo "  $(ps -o pid=,ppid=,stat=,wchan:16= -p "$p") $(grep -E ':(memory|cpu,cpuacct):' /proc/$p/cgroup | tr '\n' ' ')"
    done >"$T_TMP/reapers"
    return 1
}
# ps_is GPID FILTER: cairn ps (from node 4) lists GPID and FILTER holds.
ps_is() { c 4 ps | jq -e --arg g "$1" ".jobs[] | select(.gpid == \$g) | $2" >/dev/null; }

# ---- a counter job moved 1 -> 2 -> 3 -> 1 ---------------------------------------

counter="$T_TMP/counter.py"
cat >"$counter" <<'EOF'
import os, sys, time
i = 0
while True:
    i += 1
    print(i, os.getpid(), os.getppid(), flush=True)
    time.sleep(0.02)
EOF
chmod 644 "$counter"
job=$(c 1 run --node 1 --name counter -- python3 "$counter")
g=$(jq -r .gpid <<<"$job")
t_json_check "counter runs on node 1 as pid 2" "$job" '.node == 1 and .pid == 2 and .moves == 0'
t_check "counter counts" grows "$g"
# Two waits started before the moves follow the job: one asked at its
# node (the job leaves that ghostd), one at node 4 (forwarded).
c 1 --timeout 300000 wait "$g" >"$T_TMP/wait1.out" 2>&1 &
wait1=$!
c 4 --timeout 300000 wait "$g" >"$T_TMP/wait4.out" 2>&1 &
wait4=$!
from=1; moves=0
for hop in "2 2" "3 4" "1 1"; do   # "TO ASKED": each move asked at another node
    set -- $hop; to=$1; asked=$2
    migrate "$asked" "$g" "$to"
    [ "$rc" -eq 0 ] || { t_fail "counter $from -> $to: $out"; break; }
    moves=$((moves + 1))
    npid=$(jq -r .pid <<<"$out")
    t_json_check "counter $from -> $to (asked at $asked): same gpid, the target's job" "$out" \
        ".gpid == \"$g\" and .from == $from and .to == $to and .job.gpid == \"$g\" and
         .job.node == $to and .job.moves == $moves and .job.pid == 2 and
         .job.host_pid == .pid and .image_bytes > 0 and .freeze_ms > 0"
    t_check "counter $from -> $to: ps right after lists it on node $to, moves $moves" \
        ps_is "$g" ".node == $to and .moves == $moves and .host_pid == $npid and .state == \"running\""
    t_check "counter $from -> $to: one copy (the source's killed one gone)" \
        t_wait_for 5 reapers_are "$g" 1
    reapers_are "$g" 1 || cat "$T_TMP/reapers" >&2
    t_check "counter $from -> $to: the new reaper runs" test -d "/proc/$npid/task"
    t_check "counter $from -> $to: counts on" grows "$g"
    from=$to
done
# The nodes it left keep no sub-cgroup of it (each ghostd's sweep removes
# it once the killed copy is gone); node 1, where it runs, has its own.
left_cgroups() {
    local k d n=0
    for k in 2 3; do
        for d in /sys/fs/cgroup/cpu/cairn/$name/$k /sys/fs/cgroup/cairn/$name/$k; do
            [ -d "$d/job-$g" ] && n=$((n + 1))
        done
    done
    [ "$n" -eq 0 ]
}
t_check "counter: nodes 2 and 3 keep no cgroup of it" t_wait_for 10 left_cgroups
t_check "counter: never back, repeated or skipped, pid 2 under the reaper throughout" \
    counts_ok "$g"

# ---- signal, wait and logs after the moves ----------------------------------------

t_json_check "signal TERM at node 2 reaches it on node 1" "$(c 2 signal "$g" --signal TERM)" \
    ".gpid == \"$g\" and .node == 1"
w=$(c 3 wait "$g")
t_json_check "wait from node 3: ended on node 1 by TERM, after 3 moves" "$w" \
    '.exited and .exit_signal == 15 and .node == 1 and .moves == 3'
t_check "its exit record was written on the last node" test -s "$CAIRN_RUN_BASE/$name/jobs/$g/exit"
for k in 1 4; do
    pid_var=wait$k
    wait "${!pid_var}"; rc=$?
    t_json_check "the wait started at node $k before the moves followed them (exit $rc)" \
        "$(cat "$T_TMP/wait$k.out")" '.exited and .exit_signal == 15 and .node == 1 and .moves == 3'
done
t_check "logs after the end: still whole" counts_ok "$g"
t_check "no copy left" t_wait_for 5 reapers_are "$g" 0
reapers_are "$g" 0 || cat "$T_TMP/reapers" >&2

# ---- a multi-threaded job -----------------------------------------------------------

threaded="$T_TMP/threaded.py"
cat >"$threaded" <<'EOF'
import os, threading, time
def count():
    i = 0
    while True:
        i += 1
        print(i, os.getpid(), os.getppid(), flush=True)
        time.sleep(0.02)
threading.Thread(target=count, daemon=True).start()
while True:
    time.sleep(1)
EOF
chmod 644 "$threaded"
gt=$(c 1 run --node 1 -- python3 "$threaded" | jq -r .gpid)
t_check "threaded job counts" grows "$gt"
migrate 1 "$gt" 3
t_json_check "threaded job moved 1 -> 3, both threads" "$out" \
    ".to == 3 and .job.node == 3 and .threads >= 3"
t_check "threaded: counts on" grows "$gt"
t_check "threaded: one copy" t_wait_for 5 reapers_are "$gt" 1
migrate 2 "$gt" 1
t_json_check "threaded job moved back 3 -> 1 (asked at 2)" "$out" '.job.node == 1 and .job.moves == 2'
t_check "threaded: counts on again" grows "$gt"
t_check "threaded: never back, repeated or skipped" counts_ok "$gt"
c 1 kill "$gt" >/dev/null

# ---- sh -c 'producer | consumer' ------------------------------------------------------

gp=$(c 1 run --node 1 -- sh -c 'i=0; while :; do i=$((i + 1)); echo $i; sleep 0.02; done |
      while read -r n; do echo "$n 2 1"; done' | jq -r .gpid)
t_check "pipeline job counts" grows "$gp"
migrate 1 "$gp" 4
t_json_check "pipeline job moved 1 -> 4 as one tree" "$out" \
    '.to == 4 and .job.node == 4 and .processes >= 4'
t_check "pipeline: counts on" grows "$gp"
t_check "pipeline: never back, repeated or skipped" \
    bash -c 'CAIRN_NODE=1 "$CAIRN" logs "$1" | awk "NR != \$1 { bad = 1 } END { exit bad || NR == 0 }"' _ "$gp"
c 4 kill "$gp" >/dev/null

# ---- a user's own job, and root's ------------------------------------------------------

useradd --no-create-home --user-group --shell /usr/sbin/nologin "$UA" 2>/dev/null ||
    { echo "SKIP: useradd"; exit 77; }
UIDA=$(id -u "$UA")
ua() { (cd / && runuser -u "$UA" -- env CAIRN_NODE="$1" CAIRN_RUN_BASE="$CAIRN_RUN_BASE" \
        CAIRN_CLUSTER="$CAIRN_CLUSTER" "$CAIRN" "${@:2}"); }
gu=$(ua 2 run --node 2 -- sleep 1000 | jq -r .gpid)
groot=$(c 2 run --node 2 -- sleep 1001 | jq -r .gpid)
t_json_check "the user's --check of their job: movable" "$(ua 3 migrate "$gu" --to 1 --check)" \
    '.movable and (.reasons | length) == 0'
out=$(ua 3 migrate "$gu" --to 1 2>&1)
t_json_check "the user moves their own job 2 -> 1 (asked at 3): $(head -c 600 <<<"$out")" "$out" \
    '.job.node == 1 and .job.moves == 1 and .from == 2'
t_check "  one copy" t_wait_for 5 reapers_are "$gu" 1
hu=$(jq -r '.pid // 0' <<<"$out")
t_check "it runs as the user on node 1" \
    bash -c 'grep -q "^Uid:[[:space:]]*$2[[:space:]]" /proc/$1/status' _ "$hu" "$UIDA"
t_check "the user's ps lists it on node 1, theirs" \
    bash -c 'runuser -u "$1" -- env CAIRN_NODE=4 CAIRN_RUN_BASE="$CAIRN_RUN_BASE" CAIRN_CLUSTER="$CAIRN_CLUSTER" "$CAIRN" ps | jq -e --arg g "$2" --argjson u "$3" ".jobs[] | select(.gpid == \$g) | .node == 1 and .uid == \$u" >/dev/null' _ "$UA" "$gu" "$UIDA"
out=$(ua 1 migrate "$groot" --to 3 2>&1); rc=$?
t_check "the user is refused root's job" test "$rc" -ne 0
t_json_check "  permission-denied, naming uid 0" "$out" \
    '.error.code == "permission-denied" and (.error.message | test("uid 0"))'
out=$(ua 2 migrate "$groot" --to 3 2>&1); rc=$?
t_json_check "  asked at its own node too" "$out" '.error.code == "permission-denied"'
t_check "root's job still runs on node 2" ps_is "$groot" '.node == 2 and .state == "running" and .moves == 0'
ua 1 kill "$gu" >/dev/null; c 2 kill "$groot" >/dev/null

# ---- the target's ghostd dies around the restore: still one copy ----------------------

node_pid() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}
glog="$CAIRN_RUN_BASE/$name/2/ghostd.log"
# in_log N PATTERN: node 2's log has at least N lines matching PATTERN.
in_log() { [ "$(grep -c -- "$2" "$glog" 2>/dev/null)" -ge "$1" ]; }
# stop_on_log PATTERN PID: in the background (its pid in $stopper), stops
# PID with SIGSTOP the moment node 2's log gets a line matching PATTERN.
stop_on_log() {
    (timeout 120 tail -n0 -F "$glog" 2>/dev/null | grep -m1 -q -- "$1" && kill -STOP "$2") &
    stopper=$!
}
big="$T_TMP/big.py"
cat >"$big" <<'EOF'
import os, time
block = bytearray(os.urandom(1 << 20)) * 96     # 96 MiB to stream
i = 0
while True:
    i += 1
    print(i, os.getpid(), os.getppid(), flush=True)
    time.sleep(0.02)
EOF
chmod 644 "$big"

# (a) stopped once the last chunk is in the restore's pipe, killed once
# the restored copy runs (its end never heard, no "running" recorded): the
# next ghostd kills that copy (its job-<gpid> sub-cgroup), answers failed,
# and the source resumes.
gb=$(c 1 run --node 1 -- python3 "$big" | jq -r .gpid)
t_check "window (a): the job counts" grows "$gb"
pid2=$(node_pid 2 ghostd)
n0=$(grep -c "migrate-in-running" "$glog")
# stop node 2's ghostd the moment the last chunk is in the restore's pipe
stop_on_log migrate-in-restoring "$pid2"
c 1 migrate "$gb" --to 2 >"$T_TMP/wa.out" 2>&1 &
mig=$!
wait "$stopper"
# the restored copy runs (the window), or ghostd 2 answered first (missed)
hit_or_missed() { reapers_are "$gb" 2 || in_log $((n0 + 1)) migrate-in-running; }
t_check "window (a): the restored copy runs, or ghostd 2 answered before it stopped" \
    t_wait_for 90 hit_or_missed
hit=1; in_log $((n0 + 1)) migrate-in-running && hit=0
kill -KILL "$pid2"
"$CAIRN" node restart 2 >/dev/null || t_fail "node restart 2"
wait "$mig"; rc=$?; out=$(cat "$T_TMP/wa.out"); echo "  answer (exit $rc, window hit: $hit): ${out:0:300}"
where=1
if [ "$hit" = 1 ]; then
    t_check "window (a): the move failed" test "$rc" -ne 0
    t_json_check "  saying the target restarted, the job runs on at node 1" "$out" \
        '.error.message | test("restarted during the migration") and test("runs on at node 1")'
else
    echo "  (window (a) missed: ghostd 2 had answered; the move completed)"
    where=$([ "$rc" -eq 0 ] && echo 2 || echo 1)
fi
t_check "window (a): one copy" t_wait_for 10 reapers_are "$gb" 1
reapers_are "$gb" 1 || cat "$T_TMP/reapers" >&2
t_check "window (a): ps lists it on node $where, running" \
    t_wait_for 10 ps_is "$gb" ".node == $where and .state == \"running\""
t_check "window (a): counts on" grows "$gb"
# Not checked here: its output never going back. The restored copy ran
# from the freeze until the new ghostd killed it, and what it printed
# stays; the resumed source then prints again from where it froze
# (docs/jobs.md, "Migration": a copy restored but not yet committed runs).
c 1 kill "$gb" >/dev/null

# (b) killed as soon as the restored copy runs (recorded "running", the
# answer sent or not): the next ghostd knows it runs; the source kills
# its own copy and commits, or resumes if it heard nothing definite --
# either way one copy, listed once, where it runs.
t_ghostds_see 4   # window (b) starts with every ghostd seeing the others
gb=$(c 1 run --node 1 -- python3 "$counter" | jq -r .gpid)
t_check "window (b): the job counts" grows "$gb"
n0=$(grep -c "migrate-in-running" "$glog")
c 1 migrate "$gb" --to 2 >"$T_TMP/wb.out" 2>&1 &
mig=$!
t_check "window (b): the restored copy runs" t_wait_for 60 in_log $((n0 + 1)) migrate-in-running
kill -KILL "$(node_pid 2 ghostd)"
"$CAIRN" node restart 2 >/dev/null || t_fail "node restart 2"
wait "$mig"; rc=$?; out=$(cat "$T_TMP/wb.out"); echo "  answer (exit $rc): ${out:0:300}"
where=$([ "$rc" -eq 0 ] && echo 2 || echo 1)
t_check "window (b): one copy" t_wait_for 10 reapers_are "$gb" 1
listed_once() {
    c 4 ps | jq -e --arg g "$1" --argjson n "$2" \
        '[.jobs[] | select(.gpid == $g)] | length == 1 and .[0].node == $n' >/dev/null
}
t_check "window (b): ps lists it once, on node $where" t_wait_for 10 listed_once "$gb" "$where"
t_check "window (b): counts on" grows "$gb"
t_check "window (b): never back, repeated or skipped" counts_ok "$gb"
c 1 kill "$gb" >/dev/null

# (c) the SOURCE's ghostd stopped the moment node 2 starts restoring (the
# answer that the copy runs never reaches it), then killed once node 2's
# copy runs: ghost-dump lets the held tree run again on node 1, and node
# 2's copy runs uncommitted -- two copies. The next ghostd on node 1 finds
# the move in job.json (migrating_to, migration) and, its reaper running,
# has node 2 abort its copy (jobs-settle.c): one copy, on node 1.
t_ghostds_see 4
gc=$(c 1 run --node 1 -- python3 "$big" | jq -r .gpid)
t_check "window (c): the job counts" grows "$gc"
t_check "window (c): job.json has no move recorded" \
    bash -c "! grep -q migrating_to '$CAIRN_RUN_BASE/$name/jobs/$gc/job.json'"
pid1=$(node_pid 1 ghostd)
n0=$(grep -c "migrate-in-running" "$glog")
stop_on_log migrate-in-restoring "$pid1"
c 3 --timeout 20000 migrate "$gc" --to 2 >"$T_TMP/wc.out" 2>&1 &
mig=$!
wait "$stopper"
t_check "window (c): the move is recorded in job.json while under way" \
    jq -e '.migrating_to == 2 and (.migration | length > 0)' "$CAIRN_RUN_BASE/$name/jobs/$gc/job.json"
t_check "window (c): node 2's copy runs (uncommitted)" t_wait_for 90 in_log $((n0 + 1)) migrate-in-running
kill -KILL "$pid1"
"$CAIRN" node restart 1 >/dev/null || t_fail "node restart 1"
wait "$mig"
echo "  answer: $(head -c 300 "$T_TMP/wc.out")"
settled() { grep -q "job-settled.*gpid=$gc" "$CAIRN_RUN_BASE/$name/1/ghostd.log"; }
t_check "window (c): node 1's next ghostd settled the move" t_wait_for 30 settled
grep -h "job-settle.*gpid=$gc" "$CAIRN_RUN_BASE/$name/1/ghostd.log" | head -3 | cut -c1-300
t_check "window (c): one copy" t_wait_for 15 reapers_are "$gc" 1
reapers_are "$gc" 1 || cat "$T_TMP/reapers" >&2
t_check "window (c): ps lists it once, on node 1, running" \
    t_wait_for 10 ps_is "$gc" '.node == 1 and .state == "running"'
t_check "window (c): the mark is gone from job.json" \
    bash -c "! grep -q migrating_to '$CAIRN_RUN_BASE/$name/jobs/$gc/job.json'"
t_check "window (c): counts on" grows "$gc"

# (d) the source's ghostd stopped the moment node 2's copy runs, then
# killed: either it had told ghost-dump to kill the held tree (the copy
# here is gone: the next ghostd asks node 2, finds its copy running and
# commits it -- the job is node 2's), or the answer had not reached it
# (as (c): node 2's copy is aborted). Either way one copy, listed once,
# where it runs.
pid1=$(node_pid 1 ghostd)
n0=$(grep -c "migrate-in-running" "$glog")
stop_on_log migrate-in-running "$pid1"
c 3 --timeout 20000 migrate "$gc" --to 2 >"$T_TMP/wd.out" 2>&1 &
mig=$!
wait "$stopper"
sleep 0.5
kill -KILL "$pid1"
"$CAIRN" node restart 1 >/dev/null || t_fail "node restart 1"
wait "$mig"
# (or, under load, the move had ended before the stop: nothing to settle)
unmarked() { ! grep -q migrating_to "$CAIRN_RUN_BASE/$name/jobs/$gc/job.json"; }
t_check "window (d): the move settled (no mark left in job.json)" t_wait_for 30 unmarked
echo "  $(grep -h "job-settled.*gpid=$gc" "$CAIRN_RUN_BASE/$name/1/ghostd.log" | tail -1 | cut -c1-300)"
t_check "window (d): one copy" t_wait_for 15 reapers_are "$gc" 1
where=$(jq -r .node "$CAIRN_RUN_BASE/$name/jobs/$gc/job.json")
t_check "window (d): ps lists it once, on node $where (its job.json's), running" \
    t_wait_for 10 listed_once "$gc" "$where"
t_check "window (d): counts on" grows "$gc"
c 1 kill "$gc" >/dev/null

# ---- refusals -------------------------------------------------------------------------

err_is() {
    local code=$1 pat=$2 o; shift 2
    o=$("$@" 2>&1 >/dev/null) && return 1
    jq -e --arg c "$code" --arg p "$pat" '.error.code == $c and (.error.message | test($p))' \
        <<<"$o" >/dev/null || { echo "  got: $o" >&2; return 1; }
}
t_check "an unknown gpid" err_is not-found "no job 3.999" c 1 migrate 3.999 --to 2
t_check "a job that has exited" err_is failed-precondition "has exited" c 2 migrate "$g" --to 3
gh=$(c 2 run --node 2 -- sleep 1002 | jq -r .gpid)
t_check "to the node it runs on" err_is invalid-argument "on node 2 already" c 4 migrate "$gh" --to 2
c 2 kill "$gh" >/dev/null

# under ASan a daemon's error lands in its log (and kills it)
t_check "no sanitizer report in the daemons' logs" \
    bash -c '! grep -l "Sanitizer" "$1"/*/*.log' _ "$CAIRN_RUN_BASE/$name"

t_done
