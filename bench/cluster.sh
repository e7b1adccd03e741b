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
#                    [--security curve|none] [--peer serf] [--starve S]
# --security is `cluster up`'s (default curve, as there); every line says
# which mode it ran ("security"), so the two can be compared run by run.
# --build defaults to $CAIRN_BUILD, else ./build. --soak S runs, instead of
# the sizes, 8 nodes for S seconds with every core saturated by busy loops
# outside the nodes' cgroups and counts node-suspect / node-down lines in all
# clusterd logs: {"bench":"cluster-soak",...}.
# `ninja -C BUILD bench-cluster` runs the default sizes.
#
# --peer serf runs HashiCorp Serf (Debian's `serf`, installed with apt-get
# when missing) beside clusterd: one agent per node, in the node's network
# namespace and cgroups, default LAN profile, and adds its figures to the
# same line under "serf", measured the same way as clusterd's under "cairn":
#   all_alive_ms       first daemon's start -> every node has logged every
#                      other node alive (clusterd: node-up lines, which carry
#                      time_ms; Serf: "EventMemberJoin" lines, stamped as the
#                      agent writes them); after_last_start_ms from the last
#                      daemon's start
#   detect_*_ms        kill -9 of node N's clusterd and Serf agent at once ->
#                      each other node logs it dead (node-down /
#                      EventMemberFailed), from the logs, not polled
#   pkts_per_node_per_s  packets received per node per second in steady
#                      state, counted by an nftables table in every node's
#                      namespace per port: UDP datagrams, and TCP segments
#                      with PSH (one per message written; pure ACKs have no
#                      PSH), for each daemon's port
# --starve S (with --soak) cuts node N's cgroup to 3 % of a CPU for S seconds
# of the soak: the slow node must not get healthy nodes suspected or
# declared dead (with --peer serf, Serf's counts are beside).
set -u
BUILD=${CAIRN_BUILD:-./build}
SIZES="2 4 8 16"
MEASURE=5
SOAK=0
SECURITY=curve
PEER=""
STARVE=0
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --nodes) SIZES=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    --soak) SOAK=$2; shift 2 ;;
    --security) SECURITY=$2; shift 2 ;;
    --peer) PEER=$2; shift 2 ;;
    --starve) STARVE=$2; shift 2 ;;
    *) echo "{\"error\":{\"code\":\"usage\",\"message\":\"unknown argument '$1'\"}}" >&2; exit 100 ;;
    esac
done
case $PEER in
"" | serf) ;;
*) echo "{\"error\":{\"code\":\"usage\",\"message\":\"--peer: only 'serf' is known, not '$PEER'\"}}" >&2; exit 100 ;;
esac
. "$(dirname "$0")/lib-cluster.sh"
bench_setup "$BUILD/services/clusterd/clusterd"
if [ "$PEER" = serf ] && ! command -v serf >/dev/null; then
    apt-get install -y serf >/dev/null 2>&1 ||
        { echo '{"error":{"code":"not-found","message":"serf is not installed and apt-get install -y serf failed"}}' >&2; exit 2; }
fi
. "$(dirname "$0")/lib-serf.sh"

nodes_of() { "$CAIRN" nodes --cluster "$NAME" --node "$1" --timeout 1000 --retries 0 2>/dev/null; }

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
    UP=$("$CAIRN" cluster up --nodes "$n" --cpus 0.5 --mem "${MEM:-64M}" --name "$NAME" \
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

# starve K ON: cuts node K's cgroup to 3 % of one CPU (ON=1) or gives
# back its quota (ON=0).
STARVE_OLD=""
starve() {
    local cg
    cg=$(jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .cgroup' <<<"$UP")
    if [ -f "$cg/cpu.cfs_quota_us" ]; then
        if [ "$2" = 1 ]; then
            STARVE_OLD=$(cat "$cg/cpu.cfs_quota_us")
            echo 100000 >"$cg/cpu.cfs_period_us"
            echo 3000 >"$cg/cpu.cfs_quota_us"
        else
            echo "$STARVE_OLD" >"$cg/cpu.cfs_quota_us"
        fi
    elif [ -f "$cg/cpu.max" ]; then
        if [ "$2" = 1 ]; then STARVE_OLD=$(cat "$cg/cpu.max"); echo "3000 100000" >"$cg/cpu.max"
        else echo "$STARVE_OLD" >"$cg/cpu.max"; fi
    else
        echo "{\"error\":{\"code\":\"unsupported\",\"message\":\"no cpu quota file in $cg\"}}" >&2
        exit 3
    fi
}

soak() {
    local s=$1 n=8 k i cores sus downs rtt
    if [ "$PEER" = serf ]; then MEM=128M up "$n"; else up "$n"; fi
    [ "$ALL_ALIVE_MS" -ge 0 ] || { echo '{"error":{"code":"timeout","message":"soak: cluster did not converge"}}' >&2; exit 3; }
    if [ "$PEER" = serf ]; then
        serf_start "$n"
        wait_converged "$n"
        [ "${CONV_SERF%% *}" -ge 0 ] || { echo '{"error":{"code":"timeout","message":"soak: serf did not converge"}}' >&2; exit 3; }
        sleep 2
    fi
    rtt=$(zmq_rtt)
    local c_sus0 c_down0 c_ep0 s_sus0 s_down0 t_start
    c_sus0=$(count_lines cairn "$n" ' node-suspect ')
    c_down0=$(count_lines cairn "$n" ' node-down ')
    if [ "$PEER" = serf ]; then
        s_sus0=$(count_lines serf "$n" 'Suspect n[0-9]+ has failed')
        s_down0=$(count_lines serf "$n" 'EventMemberFailed')
    fi
    t_start=$(now_ms)
    cores=$(nproc)
    for i in $(seq 1 "$cores"); do
        sh -c 'while :; do :; done' &
        BG+=($!)
    done
    local starved=0 thr=null
    if [ "$STARVE" -gt 0 ]; then
        local cg t0s
        cg=$(jq -r --argjson k "$n" '.nodes[] | select(.id == $k) | .cgroup' <<<"$UP")
        t0s=$(awk '$1 == "throttled_time" {print $2}' "$cg/cpu.stat" 2>/dev/null)
        starve "$n" 1
        starved=$n
        sleep "$(( STARVE < s ? STARVE : s ))"
        # how long the starved node's cgroup was held back, in s
        thr=$(awk -v t0="${t0s:-0}" '$1 == "throttled_time" {printf "%.1f", ($2 - t0) / 1e9}' "$cg/cpu.stat" 2>/dev/null)
        : "${thr:=null}"
        starve "$n" 0
        [ "$STARVE" -lt "$s" ] && sleep $(( s - STARVE ))
    else
        sleep "$s"
    fi
    for i in $(seq 1 "$cores"); do kill "${BG[-1]}" 2>/dev/null; unset 'BG[-1]'; done
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    sleep 3   # what was under way settles (a suspicion refuted, or not)
    sus=$(( $(count_lines cairn "$n" ' node-suspect ') - c_sus0 ))
    downs=$(( $(count_lines cairn "$n" ' node-down ') - c_down0 ))
    # who was suspected: distinct (member, incarnation) since the start
    local who
    who=$(for k in $(seq 1 "$n"); do
              awk -v t0="$t_start" '/ node-suspect / { match($0, /time_ms=[0-9]+/)
                  if (substr($0, RSTART + 8, RLENGTH - 8) + 0 >= t0 + 0) { match($0, / id=[0-9]+/); id = substr($0, RSTART + 4, RLENGTH - 4)
                  match($0, /incarnation=[0-9]+/); print id, substr($0, RSTART + 12, RLENGTH - 12) } }' "$(cairn_log "$k")"
          done | sort -u | awk '{print $1}' | sort | uniq -c | awk '{printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $2, $1}')
    local alive=0
    for k in $(seq 1 "$n"); do
        [ "$(count_alive "$(nodes_of "$k")")" -eq "$n" ] && alive=$((alive + 1))
    done
    local serf_json=null
    if [ "$PEER" = serf ]; then
        local ss sd sw
        ss=$(( $(count_lines serf "$n" 'Suspect n[0-9]+ has failed') - s_sus0 ))
        sd=$(( $(count_lines serf "$n" 'EventMemberFailed') - s_down0 ))
        sw=$(for k in $(seq 1 "$n"); do grep -oE 'Suspect n[0-9]+ has failed' "$(serf_log "$k")"; done |
             awk '{print $2}' | sort | uniq -c | awk '{printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $2, $1}')
        serf_json=$(jq -cn --argjson ss "$ss" --argjson sd "$sd" --argjson sw "{$sw}" \
            '{suspicions_raised: $ss, false_deaths: $sd, suspected: $sw, version: "'"$(serf version | head -1)"'"}')
    fi
    down
    jq -cn --argjson s "$s" --argjson n "$n" --argjson c "$cores" --argjson sus "$sus" \
        --argjson d "$downs" --argjson a "$alive" --argjson rtt "$rtt" --argjson aa "$ALL_ALIVE_MS" \
        --arg sec "$SECURITY" --argjson starved "$starved" --argjson starve_s "$STARVE" \
        --argjson who "{$who}" --argjson serf "$serf_json" --argjson load "$load" --argjson thr "$thr" \
        '{bench: "cluster-soak", seconds: $s, nodes: $n, security: $sec, busy_loops: $c,
          starved_node: $starved, starved_s: $starve_s, starved_quota_pct: 3, throttled_s: $thr,
          loadavg_1m: $load,
          false_suspicions: $sus, false_deaths: $d, suspected: $who, nodes_all_alive_after: $a,
          all_alive_ms: $aa, baseline_zmq_rtt_us: $rtt}
         + (if $serf == null then {} else {serf: $serf} end)'
}

# stats VALUES...: "median max" (-1 -1 when any is -1: someone never saw it).
stats() {
    local v
    for v in "$@"; do [ "$v" -lt 0 ] && { echo "-1 -1"; return; }; done
    echo "$(percentile 50 "$@") $(percentile 100 "$@")"
}

# bench_peer_size N: clusterd and Serf side by side on one cluster of N
# nodes; one JSON line with both systems' figures.
bench_peer_size() {
    local n=$1 k c0 c1 t0 ms
    MEM=128M up "$n"
    local period ping susp load
    period=$(attr protocol-period-ms); ping=$(attr ping-timeout-ms); susp=$(attr suspect-timeout-ms)
    counters_add "$n" || { echo '{"error":{"code":"internal","message":"nft counters could not be added"}}' >&2; exit 3; }
    serf_start "$n"
    wait_converged "$n"
    sleep 2   # Serf's join gossip settles
    read -r -a c0 < <(counters "$n"); t0=$(now_ms)
    sleep "$MEASURE"
    read -r -a c1 < <(counters "$n"); ms=$(( $(now_ms) - t0 ))
    load=$(cut -d' ' -f1 /proc/loadavg)
    rate() { awk -v d="$1" -v n="$n" -v ms="$ms" 'BEGIN {printf "%.2f", d / n / (ms / 1000)}'; }
    local ct cu st su
    ct=$(rate $((c1[0] - c0[0]))); cu=$(rate $((c1[1] - c0[1])))
    st=$(rate $((c1[2] - c0[2]))); su=$(rate $((c1[3] - c0[3])))

    # kill -9 both daemons of node N at the same moment
    local victim=$n
    t0=$(now_ms)
    kill -9 "$(node_pid "$victim")" "${SERF_PID[$victim]}"
    local dc ds
    while [ $(( $(now_ms) - t0 )) -lt 40000 ]; do
        dc=$(down_times cairn "$victim" "$n" "$t0"); ds=$(down_times serf "$victim" "$n" "$t0")
        [[ " $dc $ds " == *" -1 "* ]] || break
        sleep 0.5
    done
    local cmed cmax smed smax
    # shellcheck disable=SC2086
    read -r cmed cmax < <(stats $dc)
    # shellcheck disable=SC2086
    read -r smed smax < <(stats $ds)
    local load2
    load2=$(cut -d' ' -f1 /proc/loadavg)
    down
    local ca cl sa sl
    read -r ca cl <<<"$CONV_CAIRN"
    read -r sa sl <<<"$CONV_SERF"
    jq -cn --argjson n "$n" --arg sec "$SECURITY" --argjson measure "$MEASURE" \
        --argjson ca "$ca" --argjson cl "$cl" --argjson sa "$sa" --argjson sl "$sl" \
        --argjson cmed "$cmed" --argjson cmax "$cmax" --argjson smed "$smed" --argjson smax "$smax" \
        --argjson cdt "[$(tr ' ' , <<<"$dc")]" --argjson sdt "[$(tr ' ' , <<<"$ds")]" \
        --argjson ct "$ct" --argjson cu "$cu" --argjson st "$st" --argjson su "$su" \
        --argjson period "$period" --argjson ping "$ping" --argjson susp "$susp" \
        --argjson load "$load" --argjson load2 "$load2" --arg sv "$(serf version | head -1)" \
        '{bench: "cluster-vs-serf", nodes: $n, security: $sec, measure_s: $measure,
          loadavg_1m: {traffic: $load, detect: $load2},
          cairn: {all_alive_ms: $ca, after_last_start_ms: $cl,
                  detect_median_ms: $cmed, detect_max_ms: $cmax, detect_ms: $cdt,
                  pkts_per_node_per_s: (($ct + $cu) * 100 | round / 100), tcp: $ct, udp: $cu,
                  protocol_period_ms: $period, ping_timeout_ms: $ping, suspect_timeout_ms: $susp},
          serf: {all_alive_ms: $sa, after_last_start_ms: $sl,
                 detect_median_ms: $smed, detect_max_ms: $smax, detect_ms: $sdt,
                 pkts_per_node_per_s: (($st + $su) * 100 | round / 100), tcp: $st, udp: $su,
                 version: $sv, profile: "lan"},
          ratio: {detect_median: (if $smed > 0 and $cmed >= 0 then ($cmed / $smed * 100 | round / 100) else null end),
                  pkts: (if ($st + $su) > 0 then (($ct + $cu) / ($st + $su) * 100 | round / 100) else null end),
                  all_alive: (if $sa > 0 and $ca >= 0 then ($ca / $sa * 100 | round / 100) else null end)}}'
}

if [ "$SOAK" -gt 0 ]; then
    soak "$SOAK"
else
    for n in $SIZES; do
        if [ "$PEER" = serf ]; then bench_peer_size "$n"; else bench_size "$n"; fi
    done
fi
