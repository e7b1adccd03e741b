# bench/lib-cluster.sh - what the benchmarks of a local cluster share
# (sourced by cluster.sh and sched.sh, not run).
#
# Globals: BUILD (the caller's), then bench_setup's CAIRN (the cli),
# ZMQRTT (bench/zmq-rtt), CAIRN_RUN_BASE, NAME (the cluster, "" when none
# is up) and BG (background pids), and the caller's UP (`cluster up`'s
# JSON).

# bench_setup DAEMON...: the binaries (the cli, zmq-rtt and DAEMON...)
# built, root, a run base of the bench's own; on exit the background
# pids are killed, NAME's cluster taken down and the run base removed.
bench_setup() {
    CAIRN="$BUILD/cli/cairn"
    ZMQRTT="$BUILD/bench/zmq-rtt"
    local b
    for b in "$CAIRN" "$ZMQRTT" "$@"; do
        [ -x "$b" ] || { echo "{\"error\":{\"code\":\"not-found\",\"message\":\"$b: not built (--build DIR or CAIRN_BUILD)\"}}" >&2; exit 2; }
    done
    [ "$(id -u)" -eq 0 ] || { echo '{"error":{"code":"unsupported","message":"needs root (network namespaces)"}}' >&2; exit 77; }
    CAIRN_RUN_BASE=$(mktemp -d /tmp/cairn-bench.XXXXXX)
    export CAIRN_RUN_BASE
    NAME=""
    BG=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local p
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$NAME" ] && "$CAIRN" cluster down --name "$NAME" >/dev/null 2>&1
    rm -rf "$CAIRN_RUN_BASE"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# count_alive JSON: how many members a `cairn nodes` reply lists as alive
# (pure bash).
count_alive() {
    local s=$1 pat='"state":"alive"'
    local t=${s//$pat/}
    echo $(( (${#s} - ${#t}) / ${#pat} ))
}

# tcp_in_data N: the sum over nodes of TCP segments received that carry
# data (InSegs - TCPPureAcks of each node's namespace): one per protocol
# message, request or reply, at these sizes and rates.
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

# zmq_rtt [--curve]: median REQ/REP RTT (µs) from node 2's namespace to
# node 1's; --curve with a CURVE server (what the daemons' traffic runs in
# security mode curve).
zmq_rtt() {
    local a1 out key="" args=()
    a1=$(jq -r '.nodes[0].address' <<<"$UP")
    if [ "${1:-}" = --curve ]; then
        coproc ZS { ip netns exec "cairn-$NAME-1" "$ZMQRTT" server "tcp://$a1:7999" --curve; }
        BG+=("$ZS_PID")
        read -r key <&"${ZS[0]}"
        args=(--curve "$(jq -r '.curve_server_key' <<<"$key")")
    else
        ip netns exec "cairn-$NAME-1" "$ZMQRTT" server "tcp://$a1:7999" >/dev/null 2>&1 &
        BG+=($!)
        sleep 0.1
    fi
    out=$(ip netns exec "cairn-$NAME-2" "$ZMQRTT" client "tcp://$a1:7999" 2000 "${args[@]}")
    kill "${BG[-1]}" 2>/dev/null; wait "${BG[-1]}" 2>/dev/null
    unset 'BG[-1]'
    jq -r '.median_us' <<<"$out"
}
