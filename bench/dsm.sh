#!/bin/bash
# bench/dsm.sh - dsmd's figures (issue 23's targets) against the baselines
# measured in the same run on the same local cluster, as ONE JSON line
# (bench/README.md, "dsmd", says what each field means).
#
#   zmq_rtt_us        raw ZeroMQ REQ/REP RTT, node 2 -> node 1 (64 bytes),
#                     CURVE as dsmd's traffic (the cluster's default mode)
#   uffd_fault_us     a userfaultfd round trip on this host: a missing
#                     fault answered by UFFDIO_COPY from a handler thread
#                     (tests/hooks/cairn-hook-test bench)
#   zmq_4k_mb_s       raw ZeroMQ PUSH/PULL throughput of 4 KiB messages
#                     with CURVE (zmq-rtt compare, loopback in this
#                     namespace: a full pipe, where a scan asks page by page)
#   read_fault_us     median first read of a page owned by node 1, from a
#                     process of node 2 (every other page of PAGES: no
#                     read-ahead); target <= 1.3 x
#                     (zmq_rtt_us + uffd_fault_us): read_fault_ratio
#   upgrade_us        median first store to a page owned by node 1 and
#                     read by K other nodes and by node 4, from a process
#                     of node 4: its read copy upgraded (the grant, then K
#                     invalidations in parallel);
#                     target <= 1.3 x (2 x zmq_rtt_us): one RTT for the
#                     grant, one for the invalidations: upgrade_ratio
#   scan_mb_s         a process of node 2 reads every page of a SCAN_MB
#                     segment written by node 1; target >= 0.5 x
#                     zmq_4k_mb_s: scan_ratio
#   litmus            store buffering and message passing across nodes
#                     1 and 2, RUNS runs each: forbidden outcomes (must be 0)
#   jacobi            on a second cluster of 4 nodes x 0.5 CPU: ITERS
#                     Jacobi sweeps of a JN x JN grid (`dsm-tool jacobi`,
#                     a syncd barrier per sweep) as jobs: 1 rank on node 1,
#                     2 ranks on nodes 1-2, 4 on nodes 1-4, and 4 on node 1
#                     (the "threads on one node" line); speed-ups over the
#                     1-rank line; target: 4 nodes beat one (speedup_4 > 1);
#                     sums_agree: every line computed the same grid
#
# Usage (root; from the source root, with a built tree, ideally
# debugoptimized without sanitizers):
#   bench/dsm.sh [--build DIR] [--pages N] [--scan-mb M] [--runs R]
#                [--jacobi JN] [--iters ITERS]
# Defaults: 2000 pages, 256 MiB, 100000 litmus runs (R 0 skips them), a
# 2048 x 2048 grid for 40 sweeps (JN 0 skips the Jacobi part).
set -u
cd "$(dirname "$0")/.."
BUILD=${CAIRN_BUILD:-./build}
PAGES=2000
SCAN_MB=256
RUNS=100000
K=2
JN=2048
ITERS=40
die() { echo "{\"error\":{\"code\":\"$1\",\"message\":\"$2\"}}" >&2; exit "${3:-1}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --pages) PAGES=$2; shift 2 ;;
        --scan-mb) SCAN_MB=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --jacobi) JN=$2; shift 2 ;;
        --iters) ITERS=$2; shift 2 ;;
        *) die usage "unknown argument $1" 2 ;;
    esac
done
. bench/lib-cluster.sh
TOOL="$BUILD/tests/dsm-tool"
HOOKT="$BUILD/tests/hooks/cairn-hook-test"
bench_setup "$BUILD/services/dsmd/dsmd" "$TOOL" "$HOOKT"

NAME="dm$(( $$ % 100000 ))"
export CAIRN_CLUSTER=$NAME
UP=$("$CAIRN" cluster up --nodes 4 --mem $(( SCAN_MB + 512 ))M --cpus "$(nproc)" \
     --start-timeout 60000) || die failed "cluster up"
declare -A RD
for k in 1 2 3 4; do RD[$k]=$(jq -r --argjson k "$k" '.nodes[] | select(.id == $k) | .rundir' <<<"$UP"); done
on() { local k=$1; shift; ip netns exec "cairn-$NAME-$k" env CAIRN_NODE_RUNDIR="${RD[$k]}" "$@"; }
sleep 2

RTT=$(zmq_rtt --curve)
UFFD=$("$HOOKT" bench 1 2>/dev/null | jq -r '.uffd_fault_us')
ZMQ4K=$("$ZMQRTT" compare --transport tcp --size 4096 --msgs 20000 --count 200 --runs 1 |
        jq -r '.curve.mb_s')

# read faults: node 1 owns every page, node 2 reads each once
on 1 "$TOOL" fill rf $((PAGES * 4096)) || die failed "fill"
READ=$(on 2 "$TOOL" lat rf read "$((PAGES / 2))" 2)   # every other page: no read-ahead
# write upgrade: node 1 owns, nodes 2..K+1 read, node 4 writes
on 1 "$TOOL" fill up $((PAGES * 4096)) || die failed "fill"
for k in $(seq 2 $((K + 1))) 4; do on "$k" "$TOOL" lat up read "$((PAGES / 2))" 2 >/dev/null; done
UPG=$(on 4 "$TOOL" lat up write "$((PAGES / 2))" 2)
# sequential scan
on 1 "$TOOL" fill scan $((SCAN_MB << 20)) || die failed "fill scan"
SCAN=$(on 2 "$TOOL" scan scan)
# litmus
SB=null MP=null
if [ "$RUNS" -gt 0 ]; then
    on 1 "$TOOL" sb sb 0 "$RUNS" >"$CAIRN_RUN_BASE/sb0" 2>/dev/null & a=$!
    on 2 "$TOOL" sb sb 1 "$RUNS" >"$CAIRN_RUN_BASE/sb1" 2>/dev/null; wait "$a"
    SB=$(comm -12 <(sort "$CAIRN_RUN_BASE/sb0") <(sort "$CAIRN_RUN_BASE/sb1") | wc -l)
    on 1 "$TOOL" mp mp 0 "$RUNS" >/dev/null 2>&1 & a=$!
    MP=$(on 2 "$TOOL" mp mp 1 "$RUNS" 2>/dev/null | grep -c violation); wait "$a"
fi
# ---- Jacobi on 4 nodes x 0.5 CPU, as jobs (in the nodes' cgroups) -----------
JAC=null
if [ "$JN" -gt 0 ]; then
    "$CAIRN" cluster down --name "$NAME" >/dev/null 2>&1
    NAME="dj$(( $$ % 100000 ))"
    export CAIRN_CLUSTER=$NAME
    "$CAIRN" cluster up --nodes 4 --mem 1G --cpus 0.5 --start-timeout 60000 >/dev/null ||
        die failed "cluster up (jacobi)"
    sleep 2
    # jacobi NAME NODE...: one rank per NODE; prints {ms, sum} (slowest rank)
    jacobi() {
        local seg=$1 np=$(( $# - 1 )) r=0 k g gs=(); shift
        for k in "$@"; do
            g=$("$CAIRN" run --node "$k" -- "$TOOL" jacobi "$seg" "$JN" "$ITERS" "$r" "$np" |
                jq -r .gpid) || die failed "run jacobi"
            gs+=("$g"); r=$((r + 1))
        done
        for g in "${gs[@]}"; do "$CAIRN" wait "$g" >/dev/null; done
        for g in "${gs[@]}"; do "$CAIRN" logs "$g"; done |
            jq -sc 'if length == 0 then null else {ms: (map(.ms) | max), sum: (map(.sum) | add)} end'
    }
    J1=$(jacobi j1 1); J2=$(jacobi j2 1 2); J4=$(jacobi j4 1 2 3 4); J41=$(jacobi j41 1 1 1 1)
    JAC=$(jq -nc --argjson a "$J1" --argjson b "$J2" --argjson c "$J4" --argjson d "$J41" \
        --argjson n "$JN" --argjson it "$ITERS" '
        {n:$n, iters:$it, cpus_per_node:0.5, one_node_ms:$a.ms, two_nodes_ms:$b.ms,
         four_nodes_ms:$c.ms, four_ranks_one_node_ms:$d.ms,
         speedup_2:($a.ms / $b.ms), speedup_4:($a.ms / $c.ms),
         speedup_4_one_node:($a.ms / $d.ms),
         sums_agree:([$a.sum, $b.sum, $c.sum, $d.sum] | unique | length == 1)}')
fi
jq -nc --argjson rtt "$RTT" --argjson uffd "${UFFD:-null}" --argjson z4k "${ZMQ4K:-null}" \
    --argjson read "$READ" --argjson upg "$UPG" --argjson scan "$SCAN" --argjson k "$K" \
    --argjson sb "$SB" --argjson mp "$MP" --argjson runs "$RUNS" --argjson jac "$JAC" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" '
  {bench:"dsm", zmq_rtt_us:$rtt, uffd_fault_us:$uffd, zmq_4k_mb_s:$z4k,
   read_fault_us:$read.median_us, read_fault_p99_us:$read.p99_us,
   read_fault_ratio:(if $uffd then ($read.median_us / ($rtt + $uffd)) else null end),
   upgrade_readers:$k, upgrade_us:$upg.median_us,
   upgrade_ratio:($upg.median_us / (2 * $rtt)),
   scan_mb_s:$scan.mb_s, scan_ratio:(if $z4k then ($scan.mb_s / $z4k) else null end),
   litmus:{runs:$runs, store_buffering_forbidden:$sb, message_passing_violations:$mp},
   jacobi:$jac,
   targets:{read_fault_ratio:1.3, upgrade_ratio:1.3, scan_ratio:0.5, jacobi_speedup_4:1},
   load:$load}'
