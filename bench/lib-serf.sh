# bench/lib-serf.sh - Serf beside clusterd, measured the same way (sourced
# by cluster.sh, not run).
#
# Both systems are measured from their own logs, not by polling: clusterd's
# node-up / node-down / node-suspect lines carry time_ms (the wall clock
# when it changed its table), and every line a Serf agent writes is stamped
# with the wall clock (bash's EPOCHREALTIME, by a reader outside the node's
# cgroup) as it is written. Traffic is counted per port by an nftables table
# in every node's namespace, so the two daemons' packets are told apart
# while both run.
#
# Globals: cluster.sh's NAME, UP, CAIRN_RUN_BASE, BG.

SERF_PORT=7946

node_ns() { echo "cairn-$NAME-$1"; }
node_addr() { jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .address' <<<"$UP"; }
node_pid() { jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .services[] | select(.name == "clusterd") | .pid' <<<"$UP"; }
cairn_log() { echo "$CAIRN_RUN_BASE/$NAME/$1/clusterd.log"; }
serf_log() { echo "$CAIRN_RUN_BASE/$NAME/serf-$1.log"; }
clusterd_port() {
    sed -n 's/.*<service name="clusterd" port="\([0-9]*\)".*/\1/p' "$CAIRN_RUN_BASE/$NAME/cluster.xml"
}

# stamp: every line of stdin with the wall clock in µs in front.
stamp() {
    local l
    while IFS= read -r l; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$l"; done
}

# counters_add N: the nftables table counting both daemons' packets in every
# node's namespace (received from other nodes: input hook, loopback left
# out -- the node's other services query their clusterd over TCP at its
# own address, which is no membership traffic).
counters_add() {
    local n=$1 k cp
    cp=$(clusterd_port)
    for k in $(seq 1 "$n"); do
        ip netns exec "$(node_ns "$k")" nft -f - <<EOF || return 1
table inet cbench {
    counter cairn_tcp { }
    counter cairn_udp { }
    counter serf_tcp { }
    counter serf_udp { }
    chain in {
        type filter hook input priority 0; policy accept;
        iif "lo" accept
        tcp dport $cp tcp flags & psh == psh counter name cairn_tcp
        tcp sport $cp tcp flags & psh == psh counter name cairn_tcp
        udp dport $cp counter name cairn_udp
        tcp dport $SERF_PORT tcp flags & psh == psh counter name serf_tcp
        tcp sport $SERF_PORT tcp flags & psh == psh counter name serf_tcp
        udp dport $SERF_PORT counter name serf_udp
    }
}
EOF
    done
}

# counters N: "cairn_tcp cairn_udp serf_tcp serf_udp", summed over nodes.
counters() {
    local n=$1 k
    for k in $(seq 1 "$n"); do
        ip netns exec "$(node_ns "$k")" nft list counters table inet cbench
    done | awk '/counter / { c = $2 } /packets/ { for (i = 1; i < NF; i++) if ($i == "packets") v[c] += $(i + 1) }
                END { printf "%.0f %.0f %.0f %.0f\n", v["cairn_tcp"], v["cairn_udp"], v["serf_tcp"], v["serf_udp"] }'
}

# serf_start N: one Serf agent per node, in the node's namespace and cgroups
# (default LAN profile; nodes 2..N join node 1). Sets SERF_PID[k].
declare -A SERF_PID
serf_start() {
    local n=$1 k addr a1 cgs pidf
    SERF_KEY=$(head -c 32 /dev/urandom | base64)
    a1=$(node_addr 1)
    for k in $(seq 1 "$n"); do
        addr=$(node_addr "$k")
        cgs=$(jq -r --argjson k "$k" '.nodes[] | select(.id == $k) | .cgroup_paths[]' <<<"$UP" | tr '\n' ' ')
        pidf="$CAIRN_RUN_BASE/$NAME/serf-$k.pid"
        local join=()
        [ "$k" -gt 1 ] && join=("-retry-join=$a1:$SERF_PORT" -retry-interval=1s)
        # clusterd runs CURVE: Serf encrypts too (AES-GCM, one key)
        [ "$SECURITY" = curve ] && join+=("-encrypt=$SERF_KEY")
        # shellcheck disable=SC2016
        # into the cgroups first: `ip netns exec` mounts a /sys without them
        sh -c 'echo $$ >"$0"; for c in $1; do echo $$ >"$c/cgroup.procs" || exit 1; done; shift; exec "$@"' \
            "$pidf" "$cgs" ip netns exec "$(node_ns "$k")" serf agent \
            "-node=n$k" "-bind=$addr:$SERF_PORT" "-advertise=$addr" \
            "-rpc-addr=$addr:7373" -profile=lan -log-level=info "${join[@]}" 2>&1 |
            stamp >"$(serf_log "$k")" &
        BG+=($!)
        local i
        for i in $(seq 1 100); do [ -s "$pidf" ] && break; sleep 0.01; done
        SERF_PID[$k]=$(cat "$pidf")
        BG+=("${SERF_PID[$k]}")
    done
}

# first_times N: for each node "k start_ms conv_ms" for SYS (cairn|serf):
# start is when the daemon logged itself up, conv when it had logged every
# other node up (-1 not yet).
first_times() {
    local sys=$1 n=$2 k
    for k in $(seq 1 "$n"); do
        if [ "$sys" = cairn ]; then
            awk -v self="$k" -v n="$n" -v k="$k" '
                / node-up id=/ { match($0, / id=[0-9]+/); id = substr($0, RSTART + 4, RLENGTH - 4)
                                 match($0, /time_ms=[0-9]+/); t = substr($0, RSTART + 8, RLENGTH - 8) + 0
                                 if (!(id in f)) f[id] = t }
                END { c = 0; mx = 0; for (i in f) if (i != self) { c++; if (f[i] > mx) mx = f[i] }
                      printf "%.0f %.0f %.0f\n", k, (self in f) ? f[self] : -1, c == n - 1 ? mx : -1 }' "$(cairn_log "$k")"
        else
            awk -v self="n$k" -v n="$n" -v k="$k" '
                / EventMemberJoin: / { for (i = 1; i < NF; i++) if ($i == "EventMemberJoin:") id = $(i + 1)
                                       t = int($1 / 1000); if (!(id in f)) f[id] = t }
                END { c = 0; mx = 0; for (i in f) if (i != self) { c++; if (f[i] > mx) mx = f[i] }
                      printf "%.0f %.0f %.0f\n", k, (self in f) ? f[self] : -1, c == n - 1 ? mx : -1 }' "$(serf_log "$k")"
        fi
    done
}

# converged SYS N: "all_alive_ms after_last_start_ms" (from the first and
# the last daemon's start), or nothing when some node has not seen all.
converged() {
    first_times "$1" "$2" | awk '$2 < 0 || $3 < 0 { bad = 1 }
        { if (!s0 || $2 < s0) s0 = $2; if ($2 > s1) s1 = $2; if ($3 > c) c = $3 }
        END { if (!bad) printf "%.0f %.0f\n", c - s0, c - s1 }'
}

# wait_converged N: polls both systems' logs for up to 30 s; sets
# CONV_CAIRN and CONV_SERF ("all_alive after_last_start", "-1 -1" when not).
wait_converged() {
    local n=$1 t0 a b
    t0=$(now_ms)
    CONV_CAIRN="" CONV_SERF=""
    while [ $(( $(now_ms) - t0 )) -lt 30000 ]; do
        [ -n "$CONV_CAIRN" ] || CONV_CAIRN=$(converged cairn "$n")
        [ -n "$CONV_SERF" ] || CONV_SERF=$(converged serf "$n")
        [ -n "$CONV_CAIRN" ] && [ -n "$CONV_SERF" ] && break
        sleep 0.2
    done
    : "${CONV_CAIRN:=-1 -1}" "${CONV_SERF:=-1 -1}"
}

# down_times SYS VICTIM N T0: the ms after T0 at which each other node
# logged VICTIM dead (-1 not yet), space separated.
down_times() {
    local sys=$1 v=$2 n=$3 t0=$4 k out=()
    for k in $(seq 1 "$n"); do
        [ "$k" -eq "$v" ] && continue
        if [ "$sys" = cairn ]; then
            out+=("$(awk -v t0="$t0" -v v="$v" '
                $0 ~ " node-down id=" v " " { match($0, /time_ms=[0-9]+/); t = substr($0, RSTART + 8, RLENGTH - 8) + 0
                                              if (t >= t0) { print t - t0; found = 1; exit } }
                END { if (!found) print -1 }' "$(cairn_log "$k")")")
        else
            out+=("$(awk -v t0="$t0" -v v="n$v" '
                / EventMemberFailed: / { for (i = 1; i < NF; i++) if ($i == "EventMemberFailed:" && $(i + 1) == v) {
                                           t = int($1 / 1000); if (t >= t0) { print t - t0; found = 1; exit } } }
                END { if (!found) print -1 }' "$(serf_log "$k")")")
        fi
    done
    echo "${out[*]}"
}

# count_lines SYS N RE: lines matching RE in all N nodes' logs of SYS.
count_lines() {
    local sys=$1 n=$2 re=$3 k f=()
    for k in $(seq 1 "$n"); do
        if [ "$sys" = cairn ]; then f+=("$(cairn_log "$k")"); else f+=("$(serf_log "$k")"); fi
    done
    cat "${f[@]}" | grep -cE "$re"
}
