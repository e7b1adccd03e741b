#!/bin/bash
# bench/sync.sh - syncd's figures (issue 18's targets) against raw ZeroMQ,
# Redis 7 and etcd 3.4, all measured in one run on one local cluster, as
# ONE JSON line (bench/README.md, "syncd", says what each field means).
#
# The cluster: `cairn cluster up --nodes N` (network namespaces, one veth
# each), every node's CPU quota the whole machine (--cpus = nproc: Redis and
# etcd run outside the nodes' cgroups, so syncd gets no smaller share than
# they do). Node 1 is the "server" node: the homes of the measured locks,
# and where the bench starts redis-server and etcd (bound to node 1's
# address). The "remote" clients run in node 2's namespace and cross the
# same veths as the zmq-rtt baseline (node 2 -> node 1); the "local"
# clients run in node 1's.
#
#   cached      ns per lock + unlock of a cached mutex by a process of node
#               1 (and system calls per pair), baseline a robust pthread
#               mutex in the same process; Redis and etcd: their local
#               latency (the best they can do on a node)
#   remote      lock + unlock, no_cache mutex homed at node 1, client on
#               node 2; / raw ZeroMQ RTT node 2 -> node 1 (the security
#               mode of the cluster: CURVE by default, as syncd's traffic)
#   local_home  the same with the client on node 1 (its syncd is the home)
#   handoff     release on node 1 or 2 -> the waiter on the other runs;
#               / RTT/2 (one one-way message)
# Each latency line also gives transport_floor_us, what ZeroMQ alone costs
# on its path, from the RTTs of this run: a call is one ipc round trip to
# the node's syncd, plus one tcp round trip when the home is elsewhere; a
# pair is one such call, as libcairn sends the unlock of a mutex it holds
# through syncd without waiting for its answer (the next lock queues
# behind it on the same connection); a hand-off is two ipc one-ways
# (release in, grant out) and one tcp one-way.
#   throughput  P processes x L locks each, no contention, on node 1, homes
#               node 1, no_cache and cached; Redis and etcd the same; and
#               the transport's ceiling: the same clients making each call
#               one raw ZeroMQ REQ/REP round trip over ipc (bench-sync raw)
#
# Usage (root; from the source root, with a built tree):
#   bench/sync.sh [--build DIR] [--nodes N] [--count PAIRS] [--seconds S]
#                 [--procs P] [--locks L] [--handoffs H]
# Defaults: 4 nodes, 2000 pairs per latency line (etcd: a quarter), 3 s per
# throughput line, 8 processes x 1000 locks, 400 hand-offs. The cluster
# runs CURVE (`cluster up`'s default): a home believes the user a relay
# vouches for only over CURVE, so in mode none syncd refuses every request
# from another node, and there is no syncd figure without it.
# `ninja -C BUILD bench-sync` runs the defaults. Missing bench packages
# (tools/deps.sh, CAIRN_BENCH_PACKAGES) are installed with apt-get and the
# build is reconfigured to build the baselines' clients.
set -u
cd "$(dirname "$0")/.."
BUILD=${CAIRN_BUILD:-./build}
NODES=4
COUNT=2000
SECONDS_T=3
PROCS=8
LOCKS=1000
HANDOFFS=400
SECURITY=curve
die() { echo "{\"error\":{\"code\":\"$1\",\"message\":\"$2\"}}" >&2; exit "${3:-1}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --seconds) SECONDS_T=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --locks) LOCKS=$2; shift 2 ;;
    --handoffs) HANDOFFS=$2; shift 2 ;;
    *) die usage "unknown argument '$1'" 100 ;;
    esac
done
for v in NODES COUNT SECONDS_T PROCS LOCKS HANDOFFS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die usage "$v must be a positive integer" 100
done
[ "$NODES" -ge 2 ] || die usage "--nodes must be at least 2" 100
[ "$COUNT" -ge 4 ] || die usage "--count must be at least 4" 100
[ "$HANDOFFS" -ge 3 ] || die usage "--handoffs must be at least 3" 100
[ "$(id -u)" -eq 0 ] || die unsupported "needs root (network namespaces)" 77

# The baselines' packages, and their clients built.
. tools/deps.sh
CAIRN_PACKAGES=("${CAIRN_BENCH_PACKAGES[@]}")
cairn_install_deps || die deps "could not install ${CAIRN_BENCH_PACKAGES[*]}"
B="$BUILD/bench"
if [ ! -x "$B/bench-sync-redis" ] || [ ! -x "$B/bench-sync-etcd" ]; then
    echo "sync.sh: reconfiguring $BUILD to build the Redis and etcd clients" >&2
    meson setup --reconfigure "$BUILD" >/dev/null || die build "meson setup --reconfigure $BUILD failed"
fi
ninja -C "$BUILD" bench/bench-sync bench/bench-sync-redis bench/bench-sync-etcd \
    bench/zmq-rtt cli/cairn services/syncd/syncd services/clusterd/clusterd >/dev/null ||
    die build "ninja -C $BUILD failed to build the bench"
CAIRN="$BUILD/cli/cairn"

CAIRN_RUN_BASE=$(mktemp -d /tmp/cairn-bench.XXXXXX)
export CAIRN_RUN_BASE
ETCD_DIR=$(mktemp -d /dev/shm/cairn-bench-etcd.XXXXXX)
NAME="s$(( $$ % 100000 ))"
UP_DONE=0
BG=()
cleanup() {
    local p
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${BG[@]}"; do wait "$p" 2>/dev/null; done
    [ "$UP_DONE" = 1 ] && "$CAIRN" cluster down --name "$NAME" >/dev/null 2>&1
    rm -rf "$CAIRN_RUN_BASE" "$ETCD_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { local k=$1; shift; ip netns exec "cairn-$NAME-$k" "$@"; }
ep() { echo "ipc://$CAIRN_RUN_BASE/$NAME/$1/syncd.sock"; }
# cpu_ticks PID: utime + stime of PID (clock ticks).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
TCK=$(getconf CLK_TCK)
# run WHAT CMD...: CMD's one JSON line, or an error naming WHAT on stderr
# and status 1 (callers in $(...) then `|| exit 1`).
run() {
    local what=$1 out; shift
    out=$("$@") && jq -e . >/dev/null 2>&1 <<<"$out" ||
        { echo "{\"error\":{\"code\":\"failed\",\"message\":\"$what failed\"}}" >&2; return 1; }
    echo "$out"
}

# The machine is shared: its load before the bench starts (at the end the
# 1-minute average mostly counts the bench's own throughput clients).
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
UP=$("$CAIRN" cluster up --nodes "$NODES" --cpus "$(nproc)" --name "$NAME" \
     --security "$SECURITY") || die cluster "cluster up failed"
UP_DONE=1
A1=$(jq -r '.nodes[0].address' <<<"$UP")
SYNCD1=$(jq -r '.nodes[0].services[] | select(.name == "syncd") | .pid' <<<"$UP")
[ -n "$SYNCD1" ] || die cluster "no syncd in the cluster (is it built?)"
# syncd answers once clusterd told it the members: wait until a lock works.
for i in $(seq 1 100); do
    ns 1 "$B/bench-sync" latency "$(ep 1)" 1 --no-cache >/dev/null 2>&1 && break
    sleep 0.2
done

# ---- raw ZeroMQ RTT, node 2 -> node 1, with CURVE as syncd's traffic ----
zmq_rtt() {
    local key out
    coproc ZS { ns 1 "$B/zmq-rtt" server "tcp://$A1:7999" --curve; }
    BG+=($ZS_PID)
    read -r key <&"${ZS[0]}"
    key=$(jq -r '.curve_server_key' <<<"$key")
    out=$(ns 2 "$B/zmq-rtt" client "tcp://$A1:7999" "$COUNT" --curve "$key")
    kill "${BG[-1]}" 2>/dev/null; wait "${BG[-1]}" 2>/dev/null; unset 'BG[-1]'
    jq -e . >/dev/null 2>&1 <<<"$out" || die failed "zmq-rtt failed"
    echo "$out"
}
RTT=$(zmq_rtt) || exit 1
# And the ipc round trip inside node 1 (a process to its own syncd is one):
# what the relay leg of every request costs, for reading the lines.
ns 1 "$B/zmq-rtt" server "ipc://$CAIRN_RUN_BASE/rtt.sock" >/dev/null 2>&1 &
BG+=($!)
sleep 0.1
IPC_RTT=$(run "zmq-rtt ipc" ns 1 "$B/zmq-rtt" client "ipc://$CAIRN_RUN_BASE/rtt.sock" "$COUNT") || exit 1
kill "${BG[-1]}" 2>/dev/null; wait "${BG[-1]}" 2>/dev/null; unset 'BG[-1]'

# ---- Redis and etcd in node 1's namespace --------------------------------
# Redis: no persistence at all (--save "" --appendonly no), like syncd,
# which keeps its state in memory. etcd: its data dir on tmpfs, so each
# write's fsync costs a memory copy, not a disk flush (the best etcd can
# do); one member, as syncd's home is one node.
RPORT=7380 EPORT=7381
# (Started with ip netns exec itself, not through ns(), so $! is the server.)
ip netns exec "cairn-$NAME-1" redis-server --bind "$A1" --port "$RPORT" --save "" --appendonly no \
    --protected-mode no --daemonize no --logfile "$CAIRN_RUN_BASE/redis.log" &
BG+=($!); REDIS_PID=$!
ip netns exec "cairn-$NAME-1" etcd --name bench --data-dir "$ETCD_DIR" --metrics extensive --log-level error \
    --listen-client-urls "http://$A1:$EPORT" --advertise-client-urls "http://$A1:$EPORT" \
    --listen-peer-urls "http://$A1:$((EPORT + 1))" \
    --initial-advertise-peer-urls "http://$A1:$((EPORT + 1))" \
    --initial-cluster "bench=http://$A1:$((EPORT + 1))" >"$CAIRN_RUN_BASE/etcd.log" 2>&1 &
BG+=($!); ETCD_PID=$!
for i in $(seq 1 100); do
    ns 1 "$B/bench-sync-redis" latency "$A1:$RPORT" 1 >/dev/null 2>&1 &&
        ns 1 "$B/bench-sync-etcd" latency "$A1:$EPORT" 1 >/dev/null 2>&1 && break
    [ "$i" = 100 ] && die failed "redis or etcd did not start (logs in $CAIRN_RUN_BASE)"
    sleep 0.2
done
REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# etcd_server_us METHOD: etcd's own sum of time handling METHOD's gRPC calls
# (µs) and their count, from its metrics.
etcd_metric() {
    ns 1 curl -s "http://$A1:$EPORT/metrics" |
        awk -v m="$1" -v f="$2" '$1 ~ "^grpc_server_handling_seconds_" f "\\{" && $1 ~ "grpc_method=\"" m "\"" { s += $2 } END { printf "%.6f\n", s }'
}
etcd_server_snapshot() { echo "$(etcd_metric Lock sum) $(etcd_metric Unlock sum) $(etcd_metric Lock count)"; }
# etcd_server_us_per_pair BEFORE AFTER: etcd's own handling time of a Lock +
# Unlock pair (mean, µs) between two snapshots: what no client can beat.
etcd_server_us_per_pair() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        n = y[3] - x[3]; if (n <= 0) { print "null"; exit }
        printf "%.1f\n", ((y[1] - x[1]) + (y[2] - x[2])) / n * 1e6 }'
}
ECOUNT=$(( COUNT / 4 > 0 ? COUNT / 4 : 1 ))
etcd_latency() {
    local k=$1 s0 s1 out
    s0=$(etcd_server_snapshot)
    out=$(run "etcd latency on node $k" ns "$k" "$B/bench-sync-etcd" latency "$A1:$EPORT" "$ECOUNT") || return 1
    s1=$(etcd_server_snapshot)
    jq -c --argjson srv "$(etcd_server_us_per_pair "$s0" "$s1")" '. + {server_us_per_pair: $srv}' <<<"$out"
}
# throughput WHAT PID CMD...: CMD's line plus the CPU (cores) PID used.
throughput() {
    local what=$1 pid=$2 t0 c0 c1 out; shift 2
    c0=$(cpu_ticks "$pid"); t0=$(date +%s%N)
    out=$(run "$what" "$@") || return 1
    c1=$(cpu_ticks "$pid")
    jq -c --argjson c "$(awk -v d=$((c1 - c0)) -v t="$TCK" -v ns=$(( $(date +%s%N) - t0 )) \
        'BEGIN { printf "%.2f", d / t / (ns / 1e9) }')" '. + {server_cores: $c}' <<<"$out"
}

# ---- the lines -----------------------------------------------------------
# `ip netns exec` mounts a sysfs of its own, without tracefs: the id of the
# syscall tracepoint (for counting system calls) is read here.
CAIRN_BENCH_SYS_ENTER_ID=$(cat /sys/kernel/tracing/events/raw_syscalls/sys_enter/id 2>/dev/null ||
    cat /sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id 2>/dev/null)
export CAIRN_BENCH_SYS_ENTER_ID
CACHED=$(run "cached" ns 1 "$B/bench-sync" cached "$(ep 1)" 1000000) || exit 1
REMOTE=$(run "remote" ns 2 "$B/bench-sync" latency "$(ep 2)" "$COUNT" --no-cache --home 1) || exit 1
LOCAL=$(run "local home" ns 1 "$B/bench-sync" latency "$(ep 1)" "$COUNT" --no-cache --home 1) || exit 1
R_LOCAL=$(run "redis local" ns 1 "$B/bench-sync-redis" latency "$A1:$RPORT" "$COUNT") || exit 1
R_REMOTE=$(run "redis remote" ns 2 "$B/bench-sync-redis" latency "$A1:$RPORT" "$COUNT") || exit 1
E_LOCAL=$(etcd_latency 1) || exit 1
E_REMOTE=$(etcd_latency 2) || exit 1

SHM="$CAIRN_RUN_BASE/handoff.shm"
ns 2 "$B/bench-sync" handoff "$(ep 2)" --role b --shm "$SHM" --count "$HANDOFFS" \
    >/dev/null 2>"$CAIRN_RUN_BASE/handoff-b.err" &
HB=$!
HANDOFF=$(run "handoff" ns 1 "$B/bench-sync" handoff "$(ep 1)" --role a --shm "$SHM" \
          --count "$HANDOFFS" --nodes 1,2) || exit 1
wait "$HB" || die failed "handoff side b: $(tr '"\n' "' " <"$CAIRN_RUN_BASE/handoff-b.err")"

TP=(--procs "$PROCS" --locks "$LOCKS" --seconds "$SECONDS_T")
T_NOCACHE=$(throughput "throughput no_cache" "$SYNCD1" ns 1 "$B/bench-sync" throughput "$(ep 1)" "${TP[@]}" --no-cache --home 1) || exit 1
# Cached: the home does not matter (no message), so no names are probed.
# A user's table has SYNCTAB_SLOTS (16384) words and a cached mutex keeps
# its word, so first P processes with the locks that fit twice over, then
# P x L, which past the table is partly uncached.
FIT=$(( 8192 / PROCS > 0 ? 8192 / PROCS : 1 ))
[ "$FIT" -gt "$LOCKS" ] && FIT=$LOCKS
T_CACHED_FIT=$(throughput "throughput cached, fitting" "$SYNCD1" ns 1 "$B/bench-sync" throughput "$(ep 1)" \
    --procs "$PROCS" --locks "$FIT" --seconds "$SECONDS_T") || exit 1
T_CACHED=$(throughput "throughput cached" "$SYNCD1" ns 1 "$B/bench-sync" throughput "$(ep 1)" "${TP[@]}") || exit 1
T_REDIS=$(throughput "redis throughput" "$REDIS_PID" ns 1 "$B/bench-sync-redis" throughput "$A1:$RPORT" "${TP[@]}") || exit 1
# The transport's ceiling for the throughput line: the same clients, each
# call one REQ/REP round trip over ipc to one zmq-rtt server in node 1.
ns 1 "$B/zmq-rtt" server "ipc://$CAIRN_RUN_BASE/raw.sock" >/dev/null 2>&1 &
BG+=($!)
sleep 0.1
T_RAW=$(run "zmq throughput" ns 1 "$B/bench-sync" raw throughput "ipc://$CAIRN_RUN_BASE/raw.sock" "${TP[@]}") || exit 1
kill "${BG[-1]}" 2>/dev/null; wait "${BG[-1]}" 2>/dev/null; unset 'BG[-1]'
T_ETCD=$(throughput "etcd throughput" "$ETCD_PID" ns 1 "$B/bench-sync-etcd" throughput "$A1:$EPORT" "${TP[@]}") || exit 1

jq -cn --argjson nodes "$NODES" --arg sec "$SECURITY" --argjson ncpu "$(nproc)" \
    --argjson rtt "$RTT" --argjson ipc "$IPC_RTT" --argjson cached "$CACHED" --argjson remote "$REMOTE" \
    --argjson local "$LOCAL" --argjson rl "$R_LOCAL" --argjson rr "$R_REMOTE" \
    --argjson el "$E_LOCAL" --argjson er "$E_REMOTE" --argjson ho "$HANDOFF" \
    --argjson tn "$T_NOCACHE" --argjson tc "$T_CACHED" --argjson tcf "$T_CACHED_FIT" --argjson tr "$T_REDIS" \
    --argjson te "$T_ETCD" --argjson traw "$T_RAW" --arg rv "$REDIS_VERSION" --arg ev "$ETCD_VERSION" \
    --argjson load "$LOAD_BEFORE" '
  def r2: . * 100 | round / 100;
  def us(x): x / 1000;
  ($rtt.median_us) as $rtt_us |
  ($cached.ns_per_pair / 1000) as $c_us |
  ({bench: "sync", nodes: $nodes, security: $sec, cpus: $ncpu, loadavg_1m_before: $load,
    baseline_zmq_rtt_us: {median: $rtt.median_us, p99: $rtt.p99_us, min: $rtt.min_us,
                          from: "node 2", to: "node 1", curve: ($sec == "curve")},
    baseline_zmq_ipc_rtt_us: {median: $ipc.median_us, p99: $ipc.p99_us, min: $ipc.min_us},
    cached: {ns_per_pair: $cached.ns_per_pair, ns_per_pair_min: $cached.ns_per_pair_min,
             cached: $cached.cached, syscalls_per_pair: $cached.syscalls_per_pair,
             pthread_robust_ns_per_pair: $cached.baseline_pthread_robust_ns_per_pair,
             x_pthread: $cached.ratio_to_pthread,
             redis_local_us: $rl.median_us, etcd_local_us: $el.median_us,
             redis_over_syncd: ($rl.median_us / $c_us | r2),
             etcd_over_syncd: ($el.median_us / $c_us | r2)},
    remote: {median_us: $remote.median_us, p99_us: $remote.p99_us, home: $remote.home,
             client_node: 2, x_rtt: ($remote.median_us / $rtt_us | r2),
             transport_floor_us: ($ipc.median_us + $rtt_us | r2),
             redis_us: $rr.median_us, etcd_us: $er.median_us,
             etcd_server_us: $er.server_us_per_pair,
             redis_over_syncd: ($rr.median_us / $remote.median_us | r2),
             etcd_over_syncd: ($er.median_us / $remote.median_us | r2)},
    local_home: {median_us: $local.median_us, p99_us: $local.p99_us, home: $local.home,
                 client_node: 1, transport_floor_us: ($ipc.median_us | r2),
                 redis_us: $rl.median_us, etcd_us: $el.median_us,
                 etcd_server_us: $el.server_us_per_pair,
                 redis_over_syncd: ($rl.median_us / $local.median_us | r2),
                 etcd_over_syncd: ($el.median_us / $local.median_us | r2)},
    handoff: {median_us: $ho.median_us, p99_us: $ho.p99_us, min_us: $ho.min_us,
              home: $ho.home, nodes: [1, 2], handoffs: $ho.handoffs,
              x_one_way: ($ho.median_us / ($rtt_us / 2) | r2),
              transport_floor_us: ($ipc.median_us + $rtt_us / 2 | r2)},
    throughput: {procs: $tn.procs, locks_per_proc: $tn.locks_per_proc, seconds: $tn.seconds,
                 no_cache: {pairs_per_s: $tn.pairs_per_s, calls_per_s: $tn.calls_per_s,
                            syncd_cores: $tn.server_cores, clients_cpu_s: $tn.clients_cpu_s},
                 cached: {pairs_per_s: $tc.pairs_per_s, calls_per_s: $tc.calls_per_s,
                          syncd_cores: $tc.server_cores, clients_cpu_s: $tc.clients_cpu_s},
                 cached_fitting: {locks_per_proc: $tcf.locks_per_proc, pairs_per_s: $tcf.pairs_per_s,
                                  calls_per_s: $tcf.calls_per_s, syncd_cores: $tcf.server_cores,
                                  clients_cpu_s: $tcf.clients_cpu_s},
                 redis: {pairs_per_s: $tr.pairs_per_s, calls_per_s: $tr.calls_per_s,
                         server_cores: $tr.server_cores, clients_cpu_s: $tr.clients_cpu_s},
                 etcd: {pairs_per_s: $te.pairs_per_s, calls_per_s: $te.calls_per_s,
                        server_cores: $te.server_cores, clients_cpu_s: $te.clients_cpu_s},
                 zmq_ipc_reqrep: {calls_per_s: $traw.calls_per_s, clients_cpu_s: $traw.clients_cpu_s},
                 no_cache_over_zmq: ($tn.calls_per_s / $traw.calls_per_s | r2),
                 no_cache_over_redis: ($tn.pairs_per_s / $tr.pairs_per_s | r2),
                 no_cache_over_etcd: ($tn.pairs_per_s / $te.pairs_per_s | r2)},
    versions: {redis: $rv, etcd: $ev}}) as $o |
  $o + {targets: {
      cached_us: 1, remote_x_rtt: 2.5, handoff_x_one_way: 1, x_etcd: 10,
      throughput_calls_per_s: 100000},
    met: {
      cached: ($c_us <= 1 and $o.cached.cached and (($o.cached.syscalls_per_pair // 0) < 0.01)),
      remote: ($o.remote.x_rtt <= 2.5),
      handoff: ($o.handoff.x_one_way <= 1),
      x_etcd: ([$o.cached.etcd_over_syncd, $o.remote.etcd_over_syncd,
                $o.local_home.etcd_over_syncd, $o.throughput.no_cache_over_etcd] | min >= 10),
      faster_than_redis_cached_and_local: ($o.cached.redis_over_syncd > 1 and
                                           $o.local_home.redis_over_syncd > 1),
      throughput: ($tn.calls_per_s >= 100000)}}'
