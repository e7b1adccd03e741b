#!/bin/bash
# bench/incr.sh - what an incremental periodic checkpoint costs an idle job
# (issue 19's target: 1 GiB idle, freeze <= 10 ms), the engine alone
# (ghost-dump --serve-fd, as ghostd runs it per job), one JSON line.
#
#   sudo bench/incr.sh [--build DIR] [--mib N] [--count K] [--dir D] [--thp]
#
# ghost-victim MIB (every page written once, then idle; --thp: in
# transparent huge pages) is tracked by one ghost-dump --serve-fd and
# checkpointed K+1 times, 1 s apart, into D (a tmpfs, /dev/shm by default,
# as ghostd's spool): the first is the full image, the others deltas. Then
# it is killed and restored from the last delta's chain and checks its
# whole pattern (PASS). Figures:
#   full_frozen_ms          the job stopped for the full one
#   delta_frozen_ms_runs    the job stopped for each delta (first seize
#                           until let go: what the job feels)
#   delta_frozen_ms_best, delta_frozen_ms_median
#   delta_steps_ms_median   where a delta's stop went, step by step
#                           (ghost-dump's steps_us, median of each)
#   delta_dumper_ms_median  the same stop from the dumper's thread: on a
#                           CPU, waiting on a runqueue, and asleep (waiting
#                           for the frozen threads to run): cpu + runqueue
#                           is what the dumper alone would cost
#   delta_durable_ms_runs   each delta's fsync, after the job runs again
#   delta_bytes_runs        each delta file: what a replica would be sent
#   full_bytes              the full image
#   meets_target            every delta frozen <= 10 ms
#   restore_ms, pass        the restore from the chain and the check after
#   baseline_handoff        ghost-handoff --ptrace in the same run: a
#                           tracer at nice -20 resuming a traced child to
#                           its next syscall stop, 500 times -- how long
#                           one of a freeze's hand-offs takes here now (a
#                           delta's freeze is ~25: its seize, two per
#                           injected syscall), p50/p99/max in us
#   baseline_handoff_mib    the same with a child that wrote MIB MiB in
#                           4 KiB pages first, as the victim did
#   loadavg                 the 1-minute load average at the start
# Exit codes: 0 a line was printed; 1 a step failed; 77 not root.
set -u
BUILD=${CAIRN_BUILD:-build-dev}
MIB=1024 COUNT=5 DIR=/dev/shm THP=""
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --thp) THP=--thp; shift ;;
    *) echo "usage: bench/incr.sh [--build DIR] [--mib N] [--count K] [--dir D] [--thp]" >&2
       exit 100 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo '{"bench":"incr","error":"needs root"}'; exit 77; }
B="$(cd "$BUILD" && pwd)"
BASE=$(mktemp -d "$DIR/cairn-bench-incr.XXXXXX")
VP="" TR=""
cleanup() {
    [ -n "$TR" ] && kill -9 "$TR" 2>/dev/null
    [ -n "$VP" ] && kill -9 "$VP" 2>/dev/null
    rm -rf "$BASE"
}
trap cleanup EXIT
fail() { echo "{\"bench\":\"incr\",\"error\":\"$1: $2\"}"; exit 1; }
for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done
load=$(cut -d' ' -f1 /proc/loadavg)
handoff=$("$B/bench/ghost-handoff" --trips 500 --ptrace) || fail baseline "ghost-handoff"
handoff_big=$("$B/bench/ghost-handoff" --trips 500 --ptrace --mib "$MIB") ||
    fail baseline "ghost-handoff --mib $MIB"
setsid "$B/bench/ghost-victim" "$MIB" "$BASE/status" $THP </dev/null >/dev/null 2>&1 &
VP=$!
for i in $(seq 1 600); do grep -q READY "$BASE/status" 2>/dev/null && break; sleep 0.05; done
grep -q READY "$BASE/status" || fail start "the victim did not get ready"
mkfifo "$BASE/cmd"
"$B/services/ghostd/engine/ghost-dump" --pid "$VP" --serve-fd 3 3<"$BASE/cmd" >"$BASE/ans" 2>&1 &
TR=$!
exec 7>"$BASE/cmd"
for k in $(seq 0 "$COUNT"); do
    n=$(wc -l <"$BASE/ans")
    echo "checkpoint $BASE/ck" >&7
    for i in $(seq 1 1500); do [ "$(wc -l <"$BASE/ans")" -gt "$n" ] && break; sleep 0.02; done
    tail -1 "$BASE/ans" | jq -e '.checkpoint' >/dev/null || fail checkpoint "$(tail -1 "$BASE/ans")"
    sleep 1
done
exec 7>&-
wait "$TR"; TR=""
kill -9 "$VP"; sleep 0.2
rm -f "$BASE/status"
out=$("$B/services/ghostd/engine/ghost-restore" --image "$BASE/ck/image.ghost" 2>&1) ||
    fail restore "$out"
sleep 0.2
kill -USR2 "$VP"
for i in $(seq 1 200); do grep -qE 'PASS|FAIL' "$BASE/status" 2>/dev/null && break; sleep 0.05; done
pass=false; grep -q PASS "$BASE/status" 2>/dev/null && pass=true
jq -sc --argjson restore "$out" --argjson pass "$pass" --argjson mib "$MIB" \
      --argjson handoff "$handoff" --argjson handoff_big "$handoff_big" \
      --argjson load "$load" --arg thp "$THP" '
    def median: sort | if length == 0 then null else .[length / 2 | floor] end;
    def ms: . / 10 | round / 100;
    map(select(.checkpoint)) as $c | ($c | map(select(.full | not))) as $d |
    { bench: "incr", mib: $mib, thp: ($thp != ""),
      full_frozen_ms: ($c[0].frozen_us | ms),
      full_bytes: $c[0].image_bytes,
      delta_frozen_ms_runs: ($d | map(.frozen_us | ms)),
      delta_frozen_ms_best: ($d | map(.frozen_us) | min | ms),
      delta_frozen_ms_median: ($d | map(.frozen_us) | median | ms),
      delta_steps_ms_median: ($d | map(.steps_us) | if length == 0 then null else
          (.[0] | keys_unsorted) as $k | . as $s |
          reduce $k[] as $key ({}; .[$key] = ($s | map(.[$key]) | median | ms)) end),
      delta_dumper_ms_median: ($d | map(.dumper_us) | if length == 0 then null else
          . as $s | reduce ("cpu", "runqueue", "asleep") as $key
          ({}; .[$key] = ($s | map(.[$key]) | median | ms)) end),
      delta_freeze_ms_runs: ($d | map(.freeze_us | ms)),
      delta_durable_ms_runs: ($d | map(.durable_us | ms)),
      delta_bytes_runs: ($d | map(.image_bytes)),
      delta_kept_pages: ($d | map(.kept_pages)),
      meets_target: ($d | all(.frozen_us <= 10000)),
      restore_ms: ($restore.restore_us | ms), pass: $pass,
      baseline_handoff: ($handoff | del(.bench)),
      baseline_handoff_mib: ($handoff_big | del(.bench)), loadavg: $load }' "$BASE/ans"
