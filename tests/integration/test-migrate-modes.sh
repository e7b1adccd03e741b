#!/bin/bash
# test-migrate-modes.sh - cairn migrate GPID --mode (issue 19, item 4;
# docs/jobs.md, "Migration"): a job moved by pre-copy and by auto on a
# 2-node local cluster, its count and its memory checked after each move.
#
#   The job (python3) holds 80 MiB of random bytes (the hash of which it
#   took at its start) and a 4 MiB hot region it writes a page of every
#   20 ms (so pre-copy's rounds have something to copy again), and prints
#   "count getpid() getppid()" each time; on SIGUSR1 it hashes the 80 MiB
#   again, checks every hot page holds what it last wrote there, and prints
#   "mem ok" or "mem BAD ...".
#   - --mode pre-copy 1 -> 2: the reply says pre-copy, rounds >= 1,
#     precopy_bytes >= the 80 MiB; the count never goes back nor skips,
#     pid 2 under the reaper throughout; "mem ok" after the move;
#   - --mode auto 2 -> 1 of the same job (resident >= 64 MiB): pre-copy;
#     of a small job: stop-copy;
#   - --mode post-copy 1 -> 2 -> 1 of the same job: the copy runs with
#     its memory to come (lazy_pages), ps right after, one copy, the count
#     never back nor skipped, "mem ok" once its pages came; --check;
#   - post-copy failures: the target's ghost-restore killed before its
#     first line (the job runs on at the source, one copy, memory whole);
#     the source's ghost-dump killed while serving a 192 MiB job (lost:
#     ps, wait and the target's log say so, no copy runs anywhere);
#   - refusals: --mode bogus (the CLI), and the daemon's own check.
# Needs root, netns, python3 (skips with 77).
. "$(dirname "$0")/lib.sh"

t_require_netns
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }

name="mm$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name" CAIRN
s_cleanup() {
    [ -n "${KEEP_LOGS:-}" ] && cp -r "$CAIRN_RUN_BASE/$name" "$KEEP_LOGS" 2>/dev/null
    "$CAIRN" cluster down --name "$name" >/dev/null 2>&1
    t_cleanup
}
trap s_cleanup EXIT
chmod 755 "$T_TMP"

"$CAIRN" cluster up --nodes 2 --mem 1G >"$T_TMP/up.json" || { t_fail "cluster up"; t_done; }
for k in 1 2; do t_check "node $k alive" t_wait_state 15 "$k" alive 1 2; done

c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
t_ghostds_see 2

# migrate GPID TO ARGS...: asked at node 1; JSON (or the error) in $out.
migrate() {
    local g=$1 to=$2; shift 2
    out=$(c 1 migrate "$g" --to "$to" "$@" 2>"$T_TMP/err"); rc=$?
    [ "$rc" -eq 0 ] || out=$(cat "$T_TMP/err")
}
counts() { c 1 logs "$1" | grep -v '^mem'; }
lines() { counts "$1" | wc -l; }
grows() {
    local n0 i
    n0=$(lines "$1")
    for i in $(seq 1 60); do [ "$(lines "$1")" -gt "$n0" ] && return 0; sleep 0.05; done
    return 1
}
counts_ok() {
    counts "$1" | awk 'NR != $1 || $2 != 2 || $3 != 1 { bad = 1; print "  line " NR ": " $0 > "/dev/stderr"; exit }
                       END { exit bad || NR == 0 }'
}
copies() { pgrep -fc -- "ghost-init --job [^ ]*/$name/jobs/$1 --gpid $1 "; }
# copies_are GPID N: N copies now (a function, so t_wait_for counts again each time)
copies_are() { [ "$(copies "$1")" -eq "$2" ]; }
# mem_ok GPID N: after SIGUSR1, the job's N-th "mem" line says ok.
mem_lines_ge() { [ "$(c 1 logs "$1" | grep -c '^mem')" -ge "$2" ]; }
mem_ok() {
    local g=$1 n=$2
    c 1 signal "$g" --signal USR1 >/dev/null || return 1
    t_wait_for 20 mem_lines_ge "$g" "$n" || return 1
    c 1 logs "$g" | grep '^mem' | sed -n "${n}p" | tee "$T_TMP/mem" | grep -qx 'mem ok'
}

memjob="$T_TMP/memjob.py"
cat >"$memjob" <<'EOF2'
import hashlib, os, signal, sys, time
big = bytearray(os.urandom(int(sys.argv[1]) << 20))
want = hashlib.sha1(big).hexdigest()
hot = bytearray(4 << 20)
last = [0] * (len(hot) // 4096)
ask = [False]
signal.signal(signal.SIGUSR1, lambda s, f: ask.__setitem__(0, True))
i = 0
while True:
    i += 1
    p = (i * 7) % len(last)
    hot[p * 4096] = i & 0xff
    last[p] = i & 0xff
    if ask[0]:
        ask[0] = False
        got = hashlib.sha1(big).hexdigest()
        bad = [q for q in range(len(last)) if hot[q * 4096] != last[q]]
        print("mem ok" if got == want and not bad else
              "mem BAD %s %s %d hot pages" % (want, got, len(bad)), flush=True)
    print(i, os.getpid(), os.getppid(), flush=True)
    time.sleep(0.02)
EOF2
chmod 644 "$memjob"

# ---- pre-copy ---------------------------------------------------------------------

job=$(c 1 run --node 1 --name big -- python3 "$memjob" 80)
g=$(jq -r .gpid <<<"$job")
t_check "the job counts" grows "$g"
t_check "its memory checks before any move" mem_ok "$g" 1
migrate "$g" 2 --mode pre-copy
echo "$out" | jq -c '{mode, rounds, precopy_bytes, resident_bytes, image_bytes, freeze_ms, total_ms}' 2>/dev/null || echo "$out"
t_json_check "pre-copy 1 -> 2: pre-copy, rounds, the memory copied while it ran" "$out" \
    ".mode == \"pre-copy\" and .rounds >= 1 and .precopy_bytes >= 80 * 1048576 and
     .resident_bytes >= 80 * 1048576 and .job.node == 2 and .job.pid == 2 and
     .job.moves == 1 and .freeze_ms > 0"
t_check "pre-copy: one copy" t_wait_for 5 copies_are "$g" 1
t_check "pre-copy: counts on" grows "$g"
t_check "pre-copy: its memory is whole" mem_ok "$g" 2
t_check "pre-copy: never back, repeated or skipped, pid 2 under the reaper" counts_ok "$g"

# ---- auto -------------------------------------------------------------------------

migrate "$g" 1 --mode auto
t_json_check "auto, 80 MiB resident: pre-copy" "$out" \
    '.mode == "pre-copy" and .rounds >= 1 and .job.node == 1 and .job.moves == 2'
t_check "auto: its memory is whole" mem_ok "$g" 3
t_check "auto: counts on, never back or skipped" counts_ok "$g"

small=$(c 1 run --node 1 --name small -- python3 "$memjob" 1)
gs=$(jq -r .gpid <<<"$small")
t_check "the small job counts" grows "$gs"
migrate "$gs" 2 --mode auto
t_json_check "auto, a small job: stop-copy" "$out" \
    '.mode == "stop-copy" and .rounds == 0 and .resident_bytes < 64 * 1048576 and .job.node == 2'
migrate "$gs" 1
t_json_check "no --mode: stop-copy" "$out" '.mode == "stop-copy" and .job.node == 1'

# ---- post-copy --------------------------------------------------------------------

node_pid() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}
glog() { echo "$CAIRN_RUN_BASE/$name/$1/ghostd.log"; }
# on_log K PATTERN CMD...: in the background, CMD once node K's ghostd logs
# PATTERN once more than now (polled every 5 ms: tail -F may poll once a
# second, longer than a restore); its pid in $watcher.
on_log() {
    local k=$1 pat=$2 n0 i; shift 2
    n0=$(grep -c -- "$pat" "$(glog "$k")")
    (for ((i = 0; i < 24000; i++)); do
         [ "$(grep -c -- "$pat" "$(glog "$k")")" -gt "$n0" ] && { "$@"; exit; }
         sleep 0.005
     done) &
    watcher=$!
}
# ps_is K GPID JQ: node K's ps lists GPID and JQ holds of it.
ps_is() { c "$1" ps | jq -e --arg g "$2" ".jobs[] | select(.gpid == \$g) | $3" >/dev/null; }

out=$(c 1 migrate "$g" --to 2 --mode post-copy --check 2>&1)
t_json_check "post-copy --check: movable (node 2 has userfaultfd)" "$out" \
    '.movable and (.reasons | length) == 0 and .to == 2'
m0=$(c 1 ps | jq --arg g "$g" '.jobs[] | select(.gpid == $g) | .moves')
migrate "$g" 2 --mode post-copy
echo "$out" | jq -c '{mode, lazy_pages, image_bytes, freeze_ms, restore_ms, total_ms}' 2>/dev/null || echo "$out"
t_json_check "post-copy 1 -> 2: the copy ran with its memory to come" "$out" \
    '.mode == "post-copy" and .lazy_pages >= 80 * 256 and .image_bytes < 16 * 1048576 and
     .rounds == 0 and .job.node == 2 and .job.pid == 2 and .job.moves == '"$((m0 + 1))"' and
     .freeze_ms > 0'
t_check "post-copy: ps right after lists it on node 2, running" \
    ps_is 1 "$g" ".node == 2 and .state == \"running\" and .moves == $((m0 + 1))"
# the source's copy stays, frozen, until it has served every page
t_check "post-copy: one copy once the pages came" t_wait_for 60 copies_are "$g" 1
t_check "post-copy: counts on" grows "$g"
t_check "post-copy: its memory is whole once its pages came" mem_ok "$g" 4
migrate "$g" 1 --mode post-copy
t_json_check "post-copy 2 -> 1" "$out" \
    ".mode == \"post-copy\" and .lazy_pages > 0 and .job.node == 1 and .job.pid == 2 and
     .job.moves == $((m0 + 2))"
t_check "post-copy back: one copy once the pages came" t_wait_for 60 copies_are "$g" 1
t_check "post-copy back: its memory is whole" mem_ok "$g" 5
t_check "post-copy: never back, repeated or skipped, pid 2 under the reaper" counts_ok "$g"
t_check "post-copy: no page relay broke" bash -c "! grep -h migrate-relay-broken $(glog 1) $(glog 2)"
# the steps below would wait out their deadlines on a dead daemon (600 s)
t_check "every daemon still runs" t_cluster_daemons_alive || t_done

# The target's ghost-restore killed before its first line: stopped as
# soon as it is spawned (at begin, long before the image can be in), so
# it cannot print; once the source holds the tree and serves its pages,
# it is killed. The source resumes; nothing is lost.
pid1=$(node_pid 1 ghostd); pid2=$(node_pid 2 ghostd)
u0=$(grep -c migrate-in-running "$(glog 2)")
relay0=$(grep -c "migrate-relay .*to_target=1" "$(glog 1)")
serving() { [ "$(grep -c "migrate-relay .*to_target=1" "$(glog 1)")" -gt "$relay0" ]; }
(for ((i = 0; i < 10000; i++)); do
     r=$(pgrep -P "$pid2" -f ghost-restore) && { kill -STOP $r; echo $r; exit 0; }
     sleep 0.002
 done; exit 1) >"$T_TMP/rst.pid" &
watcher=$!
c 1 migrate "$g" --to 2 --mode post-copy >"$T_TMP/pc-rst.out" 2>&1 &
mig=$!
wait "$watcher"
rpid=$(cat "$T_TMP/rst.pid")
t_check "restore killed before it ran: caught, stopped" test -n "$rpid"
t_check "restore killed before it ran: the source holds the tree and serves" t_wait_for 30 serving
sleep 0.5
t_check "restore killed before it ran: it had not run (no first line)" \
    test "$(grep -c migrate-in-running "$(glog 2)")" -eq "$u0"
kill -KILL $rpid
wait "$mig"; rc=$?
out=$(cat "$T_TMP/pc-rst.out")
echo "$out" | head -c 400; echo
t_check "restore killed before it ran: the migration failed" test "$rc" -ne 0
t_check "restore killed before it ran: says why, and that it runs at node 1" \
    grep -q "restore on node 2 failed.*runs on at node 1" <<<"$out"
t_check "restore killed before it ran: ps lists it on node 1, running" \
    ps_is 2 "$g" ".node == 1 and .state == \"running\" and .moves == $((m0 + 2))"
t_check "restore killed before it ran: exactly one copy" t_wait_for 10 copies_are "$g" 1
t_check "restore killed before it ran: counts on" grows "$g"
t_check "restore killed before it ran: its memory is whole" mem_ok "$g" 6
t_check "restore killed before it ran: never back, repeated or skipped" counts_ok "$g"
t_check "every daemon still runs" t_cluster_daemons_alive || t_done

# The source's ghost-dump killed while it serves the pages (the copy ran):
# the job is lost, said loudly (ps, wait, the target's log), and no copy
# of it runs on either node -- neither the one with holes nor the source's.
lj=$(c 1 run --node 1 --name doomed -- python3 "$memjob" 192)
gl=$(jq -r .gpid <<<"$lj")
# (its 192 MiB of random bytes take seconds to make before its first line)
t_check "the doomed job counts" t_wait_for 30 grows "$gl"
t_check "the doomed job has its 192 MiB" t_wait_for 30 ps_is 1 "$gl" '.rss_bytes >= 192 * 1048576'
# ghost-dump stopped once its image is all sent (node 2 restoring: the
# restorer's own pages travel in the image), so that it serves nothing
# more, then killed once the copy runs: a kill on "migrate-serving" alone
# came after the last page under ASan (the move succeeded, and `wait`
# below then waited for the job's end)
dpid=$(node_pid 1 ghostd)
on_log 2 migrate-in-restoring pkill -STOP -P "$dpid" -f ghost-dump
stopper=$watcher
on_log 1 migrate-serving pkill -KILL -P "$dpid" -f ghost-dump
migrate "$gl" 2 --mode post-copy
wait "$stopper" "$watcher"
echo "$out" | head -c 400; echo
t_check "source killed while serving: ps says lost" t_wait_for 20 ps_is 1 "$gl" \
    '.state == "lost" and (.lost | test("post-copy"))'
out=$(c 1 --timeout 30000 wait "$gl" 2>&1)
t_json_check "source killed while serving: wait answers lost" "$out" \
    '.state == "lost" and .exited and (.lost | length) > 0'
t_check "source killed while serving: no copy runs anywhere" t_wait_for 10 copies_are "$gl" 0
t_check "source killed while serving: the target said so" grep -q "migrate-lost.*gpid=$gl" "$(glog 2)"
t_check "source killed while serving: the other job still counts" grows "$g"

# ---- refusals ---------------------------------------------------------------------

out=$(c 1 migrate "$gs" --to 2 --mode bogus 2>&1); rc=$?
t_check "--mode bogus: a usage error" test "$rc" -ne 0
t_check "--mode bogus: says which" grep -q "one of stop-copy, pre-copy, post-copy, auto" <<<"$out"
t_check "after the refusal the small job still counts on node 1" grows "$gs"

c 1 signal "$g" --signal KILL >/dev/null
c 1 signal "$gs" --signal KILL >/dev/null
t_check "no sanitizer report in the daemons' logs" \
    bash -c "! grep -l Sanitizer $(glog 1) $(glog 2)"
t_done
