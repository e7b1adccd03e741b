#!/bin/bash
# bench/sched.sh - the global scheduler's figures (issue 20), each part a
# function printing one JSON line, all in the same run:
#
#   traffic   probed's dissemination cost per node at 4, 8 and 16 nodes
#             (--nodes): the messages and bytes each node's probed
#             receives per second -- gossip requests on its port and the
#             replies to its own -- counted by the kernel on those TCP
#             connections (ss's data_segs_in and bytes_received inside
#             each node's namespace, per connection, over MEASURE seconds
#             of steady state: bench/cluster.sh's method, narrowed to
#             probed's port); the vectors probed itself counts
#             (`cairn load` gossip.received); how many peers' vectors a
#             node knows (the window, not the cluster). Flat means the
#             figure at the largest size over the one at the smallest
#             ("flat_ratio") stays near 1 while the node count grows.
#             Baseline, same run: the namespace's TCP data segments of all
#             daemons per node per second (clusterd's SWIM, also flat by
#             design) and raw libzmq REQ/REP RTT between two namespaces.
#
#   makespan  16 CPU-bound jobs of 1-8 s of CPU (72 s in all; sched-work
#             cpu) submitted with --node 1 to 4 nodes of 0.5 CPU, run
#             twice on one cluster: under sched-rr (no balancing: node 1
#             runs them all) and swapped to sched-mosix (`cairn sched swap
#             mosix --all` right after the submission), against the ideal
#             (72 s over the 2 CPUs = 36 s, or the longest job alone, 16 s,
#             if larger); target mosix <= 1.15 x ideal. Also, for nodes
#             2-4 (idle when mosix starts), the ms from the swap to the
#             first balance decision sending each work (`cairn sched log`),
#             and the machine's load average at start and end (a shared
#             host's other work takes CPU the nodes' quotas promise).
#             clusterd's suspect timeout is raised to 15 s first
#             (lib-sched.sh's slow_membership): node 1 saturated by 16
#             jobs on a loaded host was otherwise declared dead.
#             Baselines in the same run: norebalance_ms and the ideal.
#
# Usage (root; from the source root):
#   bench/sched.sh [--build DIR] [--part traffic|makespan|all] [--nodes "4 8 16"] [--measure S]
# --build defaults to $CAIRN_BUILD, else ./build. `ninja -C BUILD bench-sched`.
set -u
BUILD=${CAIRN_BUILD:-./build}
PART=all
SIZES="4 8 16"
MEASURE=10
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --part) PART=$2; shift 2 ;;
    --nodes) SIZES=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    *) echo "{\"error\":{\"code\":\"usage\",\"message\":\"unknown argument '$1'\"}}" >&2; exit 100 ;;
    esac
done
case $PART in
traffic|makespan|all) ;;
*) echo "{\"error\":{\"code\":\"usage\",\"message\":\"--part '$PART': traffic, makespan or all\"}}" >&2; exit 100 ;;
esac
. "$(dirname "$0")/lib-cluster.sh"
bench_setup "$BUILD/services/probed/probed" "$BUILD/services/sched/sched-rr" \
    "$BUILD/services/sched/sched-mosix" "$BUILD/services/sched/sched-work"
UP=""

# fail CODE MESSAGE: the error on stderr, this size's cluster down (a size
# runs in a subshell, whose NAME the EXIT trap of the script never sees).
fail() {
    echo "{\"error\":{\"code\":\"$1\",\"message\":\"$2\"}}" >&2
    [ -n "$NAME" ] && "$CAIRN" cluster down --name "$NAME" >/dev/null 2>&1
    exit 3
}

# up N: a cluster of N nodes of 0.5 CPU whose members all see each other
# alive within 30 s; sets NAME and UP.
up() {
    local n=$1 k t0
    NAME="s$n$(( $$ % 10000 ))"
    # a loaded machine may miss the start deadline once: one more try
    UP=$("$CAIRN" cluster up --nodes "$n" --cpus 0.5 --mem 128M --name "$NAME") ||
        { "$CAIRN" cluster down --name "$NAME" >/dev/null 2>&1
          UP=$("$CAIRN" cluster up --nodes "$n" --cpus 0.5 --mem 128M --name "$NAME"); } ||
        fail cluster-up "cluster up --nodes $n failed twice"
    t0=$(now_ms)
    for k in $(seq 1 "$n"); do
        until [ "$(count_alive "$("$CAIRN" nodes --cluster "$NAME" --node "$k" --timeout 1000 \
                                   --retries 0 2>/dev/null)")" -eq "$n" ]; do
            [ $(( $(now_ms) - t0 )) -lt 30000 ] || fail timeout "$n nodes not all alive in 30 s"
            sleep 0.2
        done
    done
}

down() { "$CAIRN" cluster down --name "$NAME" >/dev/null; NAME=""; }

# probed_conns N: one line per TCP connection of any node's probed --
# "node local peer segs bytes" -- the connections on port 7140 (requests
# to it, replies to its requests), as the kernel counts what they received.
probed_conns() {
    local n=$1 k
    for k in $(seq 1 "$n"); do
        ip netns exec "cairn-$NAME-$k" ss -tinH state established '( sport = :7140 or dport = :7140 )' |
            awk -v k="$k" '
                /^[0-9]/ || /^[A-Za-z]/ { local = $(NF-1); peer = $NF; next }
                { segs = 0; bytes = 0
                  for (i = 1; i <= NF; i++) {
                      if ($i ~ /^data_segs_in:/) { split($i, a, ":"); segs = a[2] }
                      if ($i ~ /^bytes_received:/) { split($i, a, ":"); bytes = a[2] } }
                  print k, local, peer, segs, bytes }'
    done
}

# load_sum N FILTER: FILTER (a number) of every node's `cairn load`, summed.
load_sum() {
    local n=$1 k sum=0 v
    for k in $(seq 1 "$n"); do
        v=$("$CAIRN" --cluster "$NAME" --node "$k" load 2>/dev/null | jq "$2 // 0")
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# traffic_size N: one size's figures as a JSON object.
traffic_size() {
    local n=$1 before after ms d0 d1 g0 g1 rtt known
    up "$n"
    sleep 3          # every probed has sampled and picked peers a few times
    before=$(probed_conns "$n"); d0=$(tcp_in_data "$n"); g0=$(load_sum "$n" .gossip.received); ms=$(now_ms)
    sleep "$MEASURE"
    after=$(probed_conns "$n"); d1=$(tcp_in_data "$n"); g1=$(load_sum "$n" .gossip.received)
    ms=$(( $(now_ms) - ms ))
    known=$(awk -v s="$(load_sum "$n" '.known | length')" -v n="$n" 'BEGIN { printf "%.1f", s / n }')
    rtt=$(zmq_rtt)
    local period fanout window
    read -r period fanout window < <("$CAIRN" --cluster "$NAME" --node 1 load |
        jq -r '"\(.gossip.period_ms) \(.gossip.fanout) \(.gossip.window)"')
    down
    # per connection: after - before (a connection made meanwhile started at 0)
    awk -v n="$n" -v ms="$ms" -v d="$((d1 - d0))" -v g="$((g1 - g0))" -v known="$known" \
        -v rtt="$rtt" -v period="$period" -v fanout="$fanout" -v window="$window" '
        FNR == NR { s0[$1" "$2" "$3] = $4; b0[$1" "$2" "$3] = $5; next }
        { segs += $4 - s0[$1" "$2" "$3]; bytes += $5 - b0[$1" "$2" "$3] }
        END { t = n * ms / 1000
              printf "{\"nodes\":%d,\"probed_msgs_per_node_per_s\":%.2f,", n, segs / t
              printf "\"probed_bytes_per_node_per_s\":%.0f,", bytes / t
              printf "\"gossip_vectors_per_node_per_s\":%.2f,\"known_avg\":%s,", g / t, known
              printf "\"gossip_period_ms\":%d,\"fanout\":%d,\"window\":%d,", period, fanout, window
              printf "\"baseline_all_daemons_msgs_per_node_per_s\":%.1f,", d / t
              printf "\"baseline_zmq_rtt_us\":%s}\n", rtt }' \
        <(printf '%s\n' "$before") <(printf '%s\n' "$after")
}

# probe_traffic: the traffic part's one line.
probe_traffic() {
    local n rows=()
    for n in $SIZES; do
        rows+=("$(traffic_size "$n")") || exit 3   # the size's error is on stderr
    done
    printf '%s\n' "${rows[@]}" | jq -cs --argjson m "$MEASURE" '
        {bench: "sched-probe-traffic", measure_s: $m, sizes: .,
         flat_ratio: {msgs: ((.[-1].probed_msgs_per_node_per_s / .[0].probed_msgs_per_node_per_s) * 100 | round / 100),
                      bytes: ((.[-1].probed_bytes_per_node_per_s / .[0].probed_bytes_per_node_per_s) * 100 | round / 100)},
         target: "probe traffic per node flat from the smallest to the largest size"}'
}

# makespan_run WORK SWAP...: the 16 jobs submitted to node 1, then SWAP
# (a command: true, or the swap to mosix), then every job waited for; the
# makespan in ms on stdout, the ms SWAP ended at in $SWAPPED_AT_FILE.
MAKESPAN_LENGTHS=(1 8 2 7 3 6 4 5 5 4 6 3 7 2 8 1)   # CPU seconds: 72 in all
makespan_run() {
    local work=$1 t0 g L gs=(); shift
    t0=$(now_ms)
    for L in "${MAKESPAN_LENGTHS[@]}"; do
        g=$(c 1 run --node 1 -- "$work" cpu "$L" | jq -r .gpid)
        [ -n "$g" ] && [ "$g" != null ] || fail run "cairn run --node 1 failed"
        gs+=("$g")
    done
    "$@" || fail swap "$* failed"
    now_ms >"$SWAPPED_AT_FILE"
    local w end=0
    for g in "${gs[@]}"; do
        # wait answers once the job ends; a node busy with 16 jobs may miss
        # a deadline: ask again
        until w=$(c 1 wait "$g" 2>/dev/null) && jq -e '.exit_code != null' >/dev/null <<<"$w"; do sleep 0.5; done
        # a job lost or killed did not do its work: no figure at all
        jq -e '.exit_code == 0' >/dev/null <<<"$w" ||
            fail job-failed "job $g did not finish its work: $(jq -c '{exit_code, exit_signal, lost}' <<<"$w")"
        # the makespan ends at the last exit record, not at our polling
        local e
        e=$(jq -r '.end_ms // 0' <<<"$w")
        [ "$e" -gt "$end" ] && end=$e
    done
    [ "$end" -gt 0 ] || end=$(now_ms)
    echo $(( end - t0 ))
}

# makespan: the makespan part's one line.
makespan() {
    local work="$BUILD/services/sched/sched-work" rr_ms mosix_ms swap_at D fed moves failed load0 load1
    NAME="m$(( $$ % 10000 ))"
    export CAIRN_CLUSTER=$NAME
    . "$(dirname "$0")/../services/sched/lib-sched.sh"
    "$CAIRN" cluster up --nodes 4 --cpus 0.5 --mem 512M --name "$NAME" --start-timeout 30000 >/dev/null ||
        fail cluster-up "cluster up --nodes 4 failed"
    wait_for 30 serves 1 rr || fail timeout "no sched-rr serves node 1 in 30 s"
    # and every ghostd sees the others (their views lag clusterd's)
    ghostds_see_all() { local k; for k in 1 2 3 4; do
        c "$k" ps | jq -e '[.nodes[] | select(.reachable)] | length == 4' >/dev/null || return 1; done; }
    wait_for 30 ghostds_see_all || fail timeout "the ghostds do not see each other in 30 s"
    slow_membership || fail config "could not raise clusterd's suspect timeout"
    load0=$(cut -d' ' -f1 /proc/loadavg)
    SWAPPED_AT_FILE=/dev/null
    rr_ms=$(makespan_run "$work" true) || exit 3
    echo "# norebalance (rr) makespan: $rr_ms ms" >&2
    SWAPPED_AT_FILE=$(mktemp)
    mosix_ms=$(makespan_run "$work" swap_all mosix) || exit 3
    swap_at=$(cat "$SWAPPED_AT_FILE"); rm -f "$SWAPPED_AT_FILE"
    echo "# mosix makespan: $mosix_ms ms" >&2
    load1=$(cut -d' ' -f1 /proc/loadavg)
    D=$(all_decisions)
    # SCHED_BENCH_DECISIONS=FILE keeps every node's decision log there
    [ -n "${SCHED_BENCH_DECISIONS:-}" ] && printf '%s\n' "$D" >"$SCHED_BENCH_DECISIONS"
    fed=$(jq -c --argjson t "$swap_at" '[range(2; 5) as $n | [.[] | select(.kind == "balance" and .to == $n and .time_ms >= $t) | .time_ms] | (min // null) | if . then . - $t else null end]' <<<"$D")
    moves=$(jq '[.[] | select(.kind == "balance" and (.outcome | startswith("ok")))] | length' <<<"$D")
    failed=$(jq '[.[] | select(.kind == "balance" and ((.outcome | startswith("failed")) or (.outcome | startswith("unknown"))))] | length' <<<"$D")
    local period
    period=$("$CAIRN" --node 1 load | jq .gossip.period_ms)
    down
    jq -cn --argjson rr "$rr_ms" --argjson mosix "$mosix_ms" --argjson fed "$fed" \
        --argjson moves "$moves" --argjson failed "$failed" --argjson period "${period:-1000}" \
        --argjson load0 "$load0" --argjson load1 "$load1" '
        (72000 / 2) as $work | (8000 / 0.5) as $longest |
        ([$work, $longest] | max) as $ideal |
        { bench: "sched-makespan", nodes: 4, cpus: 0.5, jobs: 16, cpu_s: 72,
          ideal_ms: $ideal, mosix_ms: $mosix, norebalance_ms: $rr,
          mosix_vs_ideal: (($mosix / $ideal * 100 | round) / 100),
          norebalance_vs_ideal: (($rr / $ideal * 100 | round) / 100),
          target_vs_ideal: 1.15, met: ($mosix <= 1.15 * $ideal),
          balance_moves: $moves, balance_failed_or_unknown: $failed,
          idle_fed_ms: $fed, gossip_period_ms: $period,
          idle_fed_within_2_periods: ($fed | all(. != null and . <= 2 * $period)),
          loadavg_1m: [$load0, $load1]}'
}

case $PART in
traffic) probe_traffic ;;
makespan) makespan ;;
all) probe_traffic && makespan ;;
esac
