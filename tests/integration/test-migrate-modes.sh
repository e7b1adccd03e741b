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
wait_for() {
    local limit=$1 i; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    return 1
}
all_reachable() { c "$1" ps | jq -e '[.nodes[] | select(.reachable)] | length == 2' >/dev/null; }
for k in 1 2; do t_check "ghostd $k sees two ghostds" wait_for 15 all_reachable "$k"; done

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
# mem_ok GPID N: after SIGUSR1, the job's N-th "mem" line says ok.
mem_lines_ge() { [ "$(c 1 logs "$1" | grep -c '^mem')" -ge "$2" ]; }
mem_ok() {
    local g=$1 n=$2
    c 1 signal "$g" --signal USR1 >/dev/null || return 1
    wait_for 20 mem_lines_ge "$g" "$n" || return 1
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

job=$(c 1 run --name big -- python3 "$memjob" 80)
g=$(jq -r .gpid <<<"$job")
t_check "the job counts" grows "$g"
t_check "its memory checks before any move" mem_ok "$g" 1
migrate "$g" 2 --mode pre-copy
echo "$out" | jq -c '{mode, rounds, precopy_bytes, resident_bytes, image_bytes, freeze_ms, total_ms}' 2>/dev/null || echo "$out"
t_json_check "pre-copy 1 -> 2: pre-copy, rounds, the memory copied while it ran" "$out" \
    ".mode == \"pre-copy\" and .rounds >= 1 and .precopy_bytes >= 80 * 1048576 and
     .resident_bytes >= 80 * 1048576 and .job.node == 2 and .job.pid == 2 and
     .job.moves == 1 and .freeze_ms > 0"
t_check "pre-copy: one copy" wait_for 5 test "$(copies "$g")" -eq 1
t_check "pre-copy: counts on" grows "$g"
t_check "pre-copy: its memory is whole" mem_ok "$g" 2
t_check "pre-copy: never back, repeated or skipped, pid 2 under the reaper" counts_ok "$g"

# ---- auto -------------------------------------------------------------------------

migrate "$g" 1 --mode auto
t_json_check "auto, 80 MiB resident: pre-copy" "$out" \
    '.mode == "pre-copy" and .rounds >= 1 and .job.node == 1 and .job.moves == 2'
t_check "auto: its memory is whole" mem_ok "$g" 3
t_check "auto: counts on, never back or skipped" counts_ok "$g"

small=$(c 1 run --name small -- python3 "$memjob" 1)
gs=$(jq -r .gpid <<<"$small")
t_check "the small job counts" grows "$gs"
migrate "$gs" 2 --mode auto
t_json_check "auto, a small job: stop-copy" "$out" \
    '.mode == "stop-copy" and .rounds == 0 and .resident_bytes < 64 * 1048576 and .job.node == 2'
migrate "$gs" 1
t_json_check "no --mode: stop-copy" "$out" '.mode == "stop-copy" and .job.node == 1'

# ---- refusals ---------------------------------------------------------------------

out=$(c 1 migrate "$gs" --to 2 --mode bogus 2>&1); rc=$?
t_check "--mode bogus: a usage error" test "$rc" -ne 0
t_check "--mode bogus: says which" grep -q "one of stop-copy, pre-copy, post-copy, auto" <<<"$out"
t_check "after the refusal the small job still counts on node 1" grows "$gs"

c 1 signal "$g" --signal KILL >/dev/null
c 1 signal "$gs" --signal KILL >/dev/null
t_done
