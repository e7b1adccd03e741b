#!/bin/bash
# bench/cluster.sh - membership figures of a real local cluster (clusterd's
# SWIM in network namespaces, `cairn cluster up`), one JSON line per size:
#
#   all_alive_ms       `cluster up` start -> every node sees every node alive
#   detect_*_ms        kill -9 of one clusterd -> each other node reports it
#                      dead (median, max over the observers; also in periods)
#   msgs_per_node_per_s  TCP segments with data received per node per
#                      second over MEASURE seconds of steady state (the
#                      namespace's InSegs - TCPPureAcks: one per protocol
#                      message, request or reply, at these sizes and rates)
#   link_pkts_per_node_per_s  all packets on the node's host-side veth
#                      (rx + tx, TCP ACKs included); link_pkts / 2 is the
#                      cruder "request + reply" figure
#   baseline_zmq_rtt_us  raw libzmq REQ/REP round trip between the namespaces
#                      of nodes 2 and 1, measured in the same run (bench/zmq-rtt)
#
# Times are polled with `cairn nodes`, so they are upper bounds by at most
# one polling round (poll_round_ms: one `cairn nodes` per node still
# waiting).
#
# Usage (root; from the source root):
#   bench/cluster.sh [--build DIR] [--nodes "2 4 8 16"] [--measure S] [--soak S]
#                    [--security curve|none]
# --security is `cluster up`'s (default curve, as there); every line says
# which mode it ran ("security"), so the two can be compared run by run.
# --build defaults to $CAIRN_BUILD, else ./build. --soak S runs, instead of
# the sizes, 8 nodes for S seconds with every core saturated by busy loops
# outside the nodes' cgroups and counts node-suspect / node-down lines in all
# clusterd logs: {"bench":"cluster-soak",...}.
# `ninja -C BUILD bench-cluster` runs the default sizes.
set -u
BUILD=${CAIRN_BUILD:-./build}
SIZES="2 4 8 16"
MEASURE=5
SOAK=0
SECURITY=curve
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --nodes) SIZES=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    --soak) SOAK=$2; shift 2 ;;
    --security) SECURITY=$2; shift 2 ;;
    *) echo "{\"error\":{\"code\":\"usage\",\"message\":\"unknown argument '$1'\"}}" >&2; exit 100 ;;
    esac
done
CAIRN="$BUILD/cli/cairn"
ZMQRTT="$BUILD/bench/zmq-rtt"
for b in "$CAIRN" "$ZMQRTT" "$BUILD/services/clusterd/clusterd"; do
    [ -x "$b" ] || { echo "{\"error\":{\"code\":\"not-found\",\"message\":\"$b: not built (--build DIR or CAIRN_BUILD)\"}}" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo '{"error":{"code":"unsupported","message":"needs root (network namespaces)"}}' >&2; exit 77; }

CAIRN_RUN_BASE=$(mktemp -d /tmp/cairn-bench.XXXXXX)
export CAIRN_RUN_BASE
NAME=""
BG=()
cleanup() {
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$NAME" ] && "$CAIRN" cluster down --name "$NAME" >/dev/null 2>&1
    rm -rf "$CAIRN_RUN_BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
nodes_of() { "$CAIRN" nodes --cluster "$NAME" --node "$1" --timeout 1000 --retries 0 2>/dev/null; }

# count_alive JSON: how many members the reply lists as alive (pure bash).
count_alive() {
    local s=$1 pat='"state":"alive"'
    local t=${s//$pat/}
    echo $(( (${#s} - ${#t}) / ${#pat} ))
}

# state_in JSON ID: the state of member ID in a `cairn nodes` reply.
state_in() {
    local re="\{\"id\":$2,[^}]*\"state\":\"([a-z]+)\""
    [[ $1 =~ $re ]] && echo "${BASH_REMATCH[1]}"
}

attr() { sed -n "s/.*<membership[^>]* $1=\"\([0-9]*\)\".*/\1/p" "$CAIRN_RUN_BASE/$NAME/cluster.xml"; }

# up N: builds the cluster; sets UP (its JSON), T_UP (ms when up started),
# ALL_ALIVE_MS (-1 when not within 20 s), POLL_ROUND_MS.
up() {
    local n=$1 k t out rounds=0 left
    NAME="b$n$(( $$ % 10000 ))"
    T_UP=$(now_ms)
    UP=$("$CAIRN" cluster up --nodes "$n" --cpus 0.5 --mem 64M --name "$NAME" \
         --security "$SECURITY") || exit 3
    declare -A done_at=()
    ALL_ALIVE_MS=-1
    while [ $(( $(now_ms) - T_UP )) -lt 20000 ]; do
        left=0
        rounds=$((rounds + 1))
        for k in $(seq 1 "$n"); do
            [ -n "${done_at[$k]:-}" ] && continue
            out=$(nodes_of "$k")
            if [ "$(count_alive "$out")" -eq "$n" ]; then done_at[$k]=1; else left=$((left + 1)); fi
        done
        if [ "$left" -eq 0 ]; then ALL_ALIVE_MS=$(( $(now_ms) - T_UP )); break; fi
    done
    POLL_ROUND_MS=$(( ($(now_ms) - T_UP) / rounds ))
}

down() { "$CAIRN" cluster down --name "$NAME" >/dev/null; NAME=""; }

# link_pkts N: the sum over nodes of rx + tx packets on their host-side veth.
link_pkts() {
    local n=$1 k sum=0 rx tx
    for k in $(seq 1 "$n"); do
        read -r rx tx < <(ip -s -j link show "cv-$NAME-$k" | jq -r '.[0].stats64 | "\(.rx.packets) \(.tx.packets)"')
        sum=$((sum + rx + tx))
    done
    echo "$sum"
}

# tcp_in_data N: the sum over nodes of TCP segments received that carry
# data (InSegs - TCPPureAcks of each node's namespace).
tcp_in_data() {
    local n=$1 k sum=0 v
    for k in $(seq 1 "$n"); do
        v=$(ip netns exec "cairn-$NAME-$k" awk '
            $1 == "Tcp:" { if ($2 == "RtoAlgorithm") for (i = 2; i <= NF; i++) th[i] = $i;
                           else for (i = 2; i <= NF; i++) if (th[i] == "InSegs") in_segs = $i }
            $1 == "TcpExt:" { if ($2 ~ /^[A-Za-z]/) for (i = 2; i <= NF; i++) eh[i] = $i;
                              else for (i = 2; i <= NF; i++) if (eh[i] == "TCPPureAcks") pure = $i }
            END { print in_segs - pure }' /proc/net/snmp /proc/net/netstat)
        sum=$((sum + v))
    done
    echo "$sum"
}

# zmq_rtt: median REQ/REP RTT (µs) from node 2's namespace to node 1's.
zmq_rtt() {
    local a1 out
    a1=$(jq -r '.nodes[0].address' <<<"$UP")
    ip netns exec "cairn-$NAME-1" "$ZMQRTT" server "tcp://$a1:7999" >/dev/null 2>&1 &
    BG+=($!)
    sleep 0.1
    out=$(ip netns exec "cairn-$NAME-2" "$ZMQRTT" client "tcp://$a1:7999" 2000)
    kill "${BG[-1]}" 2>/dev/null; wait "${BG[-1]}" 2>/dev/null
    unset 'BG[-1]'
    jq -r '.median_us' <<<"$out"
}

percentile() {   # percentile P VALUES...: nearest-rank
    local p=$1; shift
    printf '%s\n' "$@" | sort -n | awk -v p="$p" '{v[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print v[i]}'
}

bench_size() {
    local n=$1 k victim pid t0 out s left rtt p0 p1 mps pps
    up "$n"
    local period ping susp
    period=$(attr protocol-period-ms); ping=$(attr ping-timeout-ms); susp=$(attr suspect-timeout-ms)

    # steady-state traffic
    sleep 1
    local d0 d1
    p0=$(link_pkts "$n"); d0=$(tcp_in_data "$n"); t0=$(now_ms)
    sleep "$MEASURE"
    p1=$(link_pkts "$n"); d1=$(tcp_in_data "$n"); t0=$(( $(now_ms) - t0 ))
    pps=$(awk -v d=$((p1 - p0)) -v n="$n" -v ms="$t0" 'BEGIN {printf "%.1f", d / n / (ms / 1000)}')
    mps=$(awk -v d=$((d1 - d0)) -v n="$n" -v ms="$t0" 'BEGIN {printf "%.1f", d / n / (ms / 1000)}')

    rtt=$(zmq_rtt)

    # failure detection: kill -9 the last node, poll every other node
    victim=$n
    pid=$(jq -r --argjson k "$victim" '.nodes[] | select(.id == $k) | .services[] | select(.name == "clusterd") | .pid' <<<"$UP")
    declare -A at=()
    local rounds=0
    kill -9 "$pid"
    t0=$(now_ms)
    while [ $(( $(now_ms) - t0 )) -lt 20000 ]; do
        left=0
        rounds=$((rounds + 1))
        for k in $(seq 1 $((n - 1))); do
            [ -n "${at[$k]:-}" ] && continue
            out=$(nodes_of "$k")
            s=$(state_in "$out" "$victim")
            if [ "$s" = dead ]; then at[$k]=$(( $(now_ms) - t0 )); else left=$((left + 1)); fi
        done
        [ "$left" -eq 0 ] && break
    done
    local dround=$(( ($(now_ms) - t0) / rounds ))
    local times=() med=-1 max=-1
    for k in $(seq 1 $((n - 1))); do times+=("${at[$k]:--1}"); done
    if [ "$left" -eq 0 ]; then
        med=$(percentile 50 "${times[@]}")
        max=$(percentile 100 "${times[@]}")
    fi
    down
    jq -cn --argjson n "$n" --argjson aa "$ALL_ALIVE_MS" --argjson med "$med" --argjson max "$max" \
        --argjson mps "$mps" --argjson pps "$pps" --argjson rtt "$rtt" \
        --argjson period "$period" --argjson ping "$ping" --argjson susp "$susp" \
        --argjson pr "$POLL_ROUND_MS" --argjson dr "$dround" --argjson measure "$MEASURE" \
        --argjson times "[$(IFS=,; echo "${times[*]}")]" --arg sec "$SECURITY" \
        '{bench: "cluster", nodes: $n, security: $sec, all_alive_ms: $aa,
          detect_median_ms: $med, detect_max_ms: $max,
          detect_median_periods: (if $med < 0 then null else ($med / $period * 10 | round / 10) end),
          detect_max_periods: (if $max < 0 then null else ($max / $period * 10 | round / 10) end),
          detect_ms: $times,
          msgs_per_node_per_s: $mps, link_pkts_per_node_per_s: $pps, measure_s: $measure,
          baseline_zmq_rtt_us: $rtt,
          protocol_period_ms: $period, ping_timeout_ms: $ping, suspect_timeout_ms: $susp,
          poll_round_ms: {all_alive: $pr, detect: $dr},
          targets: {all_alive_ms: 3000, detect_max_ms: 2000}}'
}

soak() {
    local s=$1 n=8 k i cores sus downs rtt
    up "$n"
    [ "$ALL_ALIVE_MS" -ge 0 ] || { echo '{"error":{"code":"timeout","message":"soak: cluster did not converge"}}' >&2; exit 3; }
    rtt=$(zmq_rtt)
    local logs=()
    for k in $(seq 1 "$n"); do logs+=("$CAIRN_RUN_BASE/$NAME/$k/clusterd.log"); done
    local s0 d0
    s0=$(cat "${logs[@]}" | grep -c ' node-suspect ')
    d0=$(cat "${logs[@]}" | grep -c ' node-down ')
    cores=$(nproc)
    for i in $(seq 1 "$cores"); do
        sh -c 'while :; do :; done' &
        BG+=($!)
    done
    sleep "$s"
    for i in $(seq 1 "$cores"); do kill "${BG[-1]}" 2>/dev/null; unset 'BG[-1]'; done
    wait 2>/dev/null
    sus=$(( $(cat "${logs[@]}" | grep -c ' node-suspect ') - s0 ))
    downs=$(( $(cat "${logs[@]}" | grep -c ' node-down ') - d0 ))
    local alive=0
    for k in $(seq 1 "$n"); do
        [ "$(count_alive "$(nodes_of "$k")")" -eq "$n" ] && alive=$((alive + 1))
    done
    down
    jq -cn --argjson s "$s" --argjson n "$n" --argjson c "$cores" --argjson sus "$sus" \
        --argjson d "$downs" --argjson a "$alive" --argjson rtt "$rtt" --argjson aa "$ALL_ALIVE_MS" \
        --arg sec "$SECURITY" \
        '{bench: "cluster-soak", seconds: $s, nodes: $n, security: $sec, busy_loops: $c,
          false_suspicions: $sus, false_deaths: $d, nodes_all_alive_after: $a,
          all_alive_ms: $aa, baseline_zmq_rtt_us: $rtt}'
}

if [ "$SOAK" -gt 0 ]; then
    soak "$SOAK"
else
    for n in $SIZES; do bench_size "$n"; done
fi
