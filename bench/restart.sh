#!/bin/bash
# bench/restart.sh - what a periodic checkpoint of restart on failure costs
# an idle job (issue 19's target: 1 GiB idle, freeze <= 10 ms), one JSON
# line.
#
#   sudo bench/restart.sh [--build DIR] [--mib N] [--every SEC] [--count K]
#
# A 2-node local cluster; on node 1, `cairn run --checkpoint-every SEC
# --restart-on-failure -- ghost-victim MIB` (every page of MIB MiB
# written once, then idle); K checkpoints are taken by the job's tracker
# (ghost-dump --serve-fd: the first a full image, the next ones deltas)
# and only the new file of each is replicated to node 2. From ghostd's
# log lines:
#   frozen_ms, frozen_runs_ms   the job stopped for each checkpoint (best, all)
#   frozen_full_ms              the first (full) one
#   frozen_delta_ms             the best of the later ones (deltas)
#   frozen_delta_ms_median      their median
#   took_ms_runs                tick to replica complete, each
#   full_runs                   whether each was full
#   sent_bytes_runs             bytes replicated for each
#   image_bytes                 the last image sent to the replica
#   meets_target                every delta (all but the first) frozen <= 10 ms
#   baseline_dd_mib_s           dd of 2 GiB /dev/zero -> /dev/null, this run
#   frozen_vs_copy              the first (full) one's freeze against the time
#                               the baseline takes to copy its image
# Exit codes: 0 a line was printed; 1 a step failed; 77 not root.
set -u
BUILD=${CAIRN_BUILD:-build-dev}
MIB=1024 EVERY=3 COUNT=5
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --every) EVERY=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    *) echo "usage: bench/restart.sh [--build DIR] [--mib N] [--every SEC] [--count K]" >&2
       exit 100 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo '{"bench":"restart","error":"needs root"}'; exit 77; }
CAIRN="$(cd "$BUILD" && pwd)/cli/cairn"
VICTIM="$(cd "$BUILD" && pwd)/bench/ghost-victim"
[ -x "$VICTIM" ] || { echo "{\"bench\":\"restart\",\"error\":\"no $VICTIM\"}"; exit 1; }
BASE=$(mktemp -d /tmp/cairn-bench-restart.XXXXXX)
export CAIRN_RUN_BASE="$BASE/run" CAIRN_CLUSTER="br$$"
cleanup() {
    "$CAIRN" cluster down --name "$CAIRN_CLUSTER" >/dev/null 2>&1
    rm -rf "$BASE"
}
trap cleanup EXIT
fail() {
    jq -cn --arg step "$1" --arg why "$2" --argjson mib "$MIB" \
        '{bench:"restart", mib:$mib, failed:$step, error:$why}'
    exit 1
}

"$CAIRN" cluster up --nodes 2 --mem $((MIB * 3))M >/dev/null || fail up "cluster up"
for i in $(seq 1 150); do
    "$CAIRN" ps 2>/dev/null | jq -e '[.nodes[] | select(.reachable)] | length == 2' \
        >/dev/null && break
    sleep 0.1
done
j=$(cd / && "$CAIRN" --node 1 run --checkpoint-every "$EVERY" --restart-on-failure -- \
    "$VICTIM" "$MIB" "$BASE/status") || fail run "$j"
gpid=$(jq -r .gpid <<<"$j")
for i in $(seq 1 600); do grep -q READY "$BASE/status" 2>/dev/null && break; sleep 0.05; done
grep -q READY "$BASE/status" || fail start "the victim did not get ready"
LOG="$CAIRN_RUN_BASE/$CAIRN_CLUSTER/1/ghostd.log"
limit=$(( (EVERY * (COUNT + 2) + 60) * 10 ))
for i in $(seq 1 "$limit"); do
    [ "$(grep -c "checkpoint gpid=$gpid " "$LOG")" -ge "$COUNT" ] && break
    sleep 0.1
done
lines=$(grep "checkpoint gpid=$gpid " "$LOG" | head -n "$COUNT")
[ "$(wc -l <<<"$lines")" -ge "$COUNT" ] && [ -n "$lines" ] ||
    fail checkpoints "$(grep -E "checkpoint" "$LOG" | tail -3)"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$lines"; }
frozen=$(field frozen_us | jq -sc 'map(. / 1000)')
took=$(field took_ms | jq -sc '.')
sent=$(field sent_bytes | jq -sc '.')
full=$(sed -n "s/.* full=\([a-z]*\) .*/\1/p" <<<"$lines" | jq -Rsc 'split("\n") | map(select(. != "") | . == "yes")')
bytes=$(field image_bytes | tail -n1)
dd_mib_s=$(dd if=/dev/zero of=/dev/null bs=1M count=2048 2>&1 |
    sed -n 's/.* s, \([0-9.]*\) \([GM]\)B\/s/\1 \2/p' |
    awk '{ print ($2 == "G" ? $1 * 1000 : $1) * 1000000 / 1048576 }')
jq -cn --argjson mib "$MIB" --argjson every "$EVERY" --argjson frozen "$frozen" \
    --argjson took "$took" --argjson bytes "${bytes:-0}" --argjson dd "${dd_mib_s:-0}" \
    --argjson sent "${sent:-[]}" --argjson full "${full:-[]}" '
    ($frozen | min) as $f |
    {bench: "restart", mib: $mib, every_s: $every, frozen_ms: $f, frozen_runs_ms: $frozen,
     frozen_full_ms: $frozen[0], frozen_delta_ms: ($frozen[1:] | min),
     frozen_delta_ms_median: ($frozen[1:] | sort | if length == 0 then null
                              else .[length / 2 | floor] end),
     took_ms_runs: $took, full_runs: $full, sent_bytes_runs: $sent,
     image_bytes: $bytes,
     meets_target: (($frozen | length) > 1 and ($frozen[1:] | all(. <= 10))),
     baseline_dd_mib_s: ($dd | floor),
     frozen_vs_copy: (if $dd > 0 and ($sent | length) > 0
                      then ($frozen[0] / (($sent[0] / 1048576) / $dd * 1000) * 100 | round) / 100
                      else null end)}'
