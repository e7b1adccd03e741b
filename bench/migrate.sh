#!/bin/bash
# bench/migrate.sh - migration (cairn migrate --mode) against raw TCP
# between the same two nodes' namespaces, one JSON line per size and mode:
#
#   size_mib                the process's resident anonymous memory
#                           (bench/ghost-victim, every page distinct, idle;
#                           with --rate KIB_S tests/ghost/precopy-case
#                           writing that many KiB a second: the issue's
#                           pre-copy case is --sizes 512 --rate 1024)
#   mode                    --modes: stop-copy, pre-copy, post-copy
#                           (the copy runs at once; freeze_ms ends there,
#                           total_ms too: its pages follow, then verified)
#   lazy_pages              post-copy: pages that followed the running copy
#   rounds, precopy_bytes   pre-copy: rounds copied while it ran, bytes
#   image_bytes, chunks     what went over the wire, in how many chunks
#   total_ms                cairn migrate's total (request to answer)
#   freeze_ms               frozen: from the freeze until the target said
#                           its copy runs
#   dump_ms, restore_ms     ghost-dump's and ghost-restore's own times
#   wall_ms                 the CLI's wall clock
#   baseline_tcp_mib_s      raw TCP, node 1's namespace to node 2's (a
#                           python3 sender and receiver, 1 MiB writes, the
#                           bytes discarded), measured in this run
#   baseline_tcp_capped_mib_s  the same with sender and receiver in their
#                           node's cgroup (the CPU quota the daemons get)
#   baseline_engine_ms      the engine alone on the same process: ghost-dump
#                           --leave-running --out-fd into a pipe read by
#                           ghost-restore --image-fd --new-pid, same host,
#                           no ghostd, no network, no CPU quota (the copy
#                           killed after): what no migration can beat
#   ideal_ms                image_bytes / baseline_tcp_mib_s
#   vs_ideal                total_ms / ideal_ms (target <= 1.3)
#   vs_ideal_capped         total_ms / (image_bytes / baseline capped)
#   vs_engine               total_ms / baseline_engine_ms
#   verified                the moved process checked every word: PASS
#   link_mbit               --link-mbit R: both nodes' links shaped to R
#                           Mbit/s (tc tbf on each namespace's interface,
#                           egress), as a real network bounds them; the
#                           baselines are measured through the same shaping.
#                           0: unshaped (veth speed, which on this VM is the
#                           CPU's copy speed, not a network's)
#
# Needs root and netns (cairn cluster up). Usage, from the source root:
#   sudo bench/migrate.sh [--build DIR] [--sizes "64 256"] [--cpus C] [--mem M]
#                         [--modes "stop-copy pre-copy"] [--rate KIB_S]
#                         [--link-mbit R]
set -u
BUILD=build-dev; SIZES="64 256"; CPUS=0.5; MEM=2G; MODES="stop-copy pre-copy"; RATE=0
LINK=0
while [ $# -gt 0 ]; do
    case $1 in
    --modes) MODES=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    --link-mbit) LINK=$2; shift 2;;
    --build) BUILD=$2; shift 2;;
    --sizes) SIZES=$2; shift 2;;
    --cpus) CPUS=$2; shift 2;;
    --mem) MEM=$2; shift 2;;
    *) echo "usage: $0 [--build DIR] [--sizes \"64 256\"] [--cpus C] [--mem M]" \
            "[--modes \"stop-copy pre-copy\"] [--rate KIB_S] [--link-mbit R]" >&2; exit 100;;
    esac
done
CAIRN=$BUILD/cli/cairn; VICTIM=$BUILD/bench/ghost-victim
ENGINE=$BUILD/services/ghostd/engine
[ "$RATE" != 0 ] && VICTIM=$BUILD/tests/ghost/precopy-case
[ -x "$CAIRN" ] && [ -x "$VICTIM" ] || { echo "build $BUILD first" >&2; exit 100; }
TMP=$(mktemp -d /tmp/cairn-bench-migrate.XXXXXX)
name="bm$$"
export CAIRN_RUN_BASE="$TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; pkill -f "$TMP/" ; rm -rf "$TMP"' EXIT

"$CAIRN" cluster up --nodes 2 --name "$name" --cpus "$CPUS" --mem "$MEM" >"$TMP/up.json" || exit 111
for i in $(seq 1 100); do
    "$CAIRN" nodes --node 1 2>/dev/null | jq -e '[.nodes[] | select(.state == "alive")] | length == 2' \
        >/dev/null && break
    sleep 0.1
done
st=$("$CAIRN" cluster status)
ns1=$(jq -r '.nodes[0].netns' <<<"$st"); ns2=$(jq -r '.nodes[1].netns' <<<"$st")
addr2=$(jq -r '.nodes[1].address' <<<"$st")

# shape NS: egress of NS's one interface limited to $LINK Mbit/s (tbf; the
# burst a 1 Gbit NIC's ring would hold, latency bound 50 ms).
shape() {
    local ifc
    ifc=$(ip -n "$1" -o link show | awk -F': ' '$2 != "lo" {sub(/@.*/, "", $2); print $2; exit}')
    tc -n "$1" qdisc replace dev "$ifc" root tbf rate "${LINK}mbit" burst 256kb latency 50ms ||
        { echo "cannot shape $1's $ifc (tc tbf)" >&2; exit 111; }
}
if [ "$LINK" != 0 ]; then shape "$ns1"; shape "$ns2"; fi

# tcp_mib_s CAPPED: MiB/s of 512 MiB sent from ns1 to ns2 (CAPPED: each
# end in its node's cgroups first).
tcp_mib_s() {
    local capped=$1 port=$((20000 + RANDOM % 20000))
    cat >"$TMP/recv.py" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); c, _ = s.accept()
buf = bytearray(1 << 20); v = memoryview(buf)
while c.recv_into(v): pass
PY
    cat >"$TMP/send.py" <<'PY'
import socket, sys, time
for _ in range(600):   # the receiver may not listen yet on a loaded machine
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2]))); break
    except ConnectionRefusedError:
        time.sleep(0.05)
else:
    sys.exit("the receiver never listened")
buf = b"x" * (1 << 20); n = int(sys.argv[3]); t = time.monotonic()
for _ in range(n): c.sendall(buf)
c.shutdown(socket.SHUT_WR); c.recv(1); print(n / (time.monotonic() - t))
PY
    local pre=""
    if [ "$capped" = 1 ]; then
        # enter(K): the shell's pid into node K's cgroups, then exec
        pre='for d in $CG; do echo $$ > "$d/tasks"; done;'
    fi
    # cgroups joined before `ip netns exec`, which mounts a sysfs of the
    # namespace's own: /sys/fs/cgroup is not there inside
    CG=$(jq -r '.nodes[1].cgroup_paths[]' <<<"$st" | tr '\n' ' ') \
        bash -c "$pre exec ip netns exec $ns2 python3 $TMP/recv.py $addr2 $port" &
    local rpid=$!
    sleep 0.5
    CG=$(jq -r '.nodes[0].cgroup_paths[]' <<<"$st" | tr '\n' ' ') \
        bash -c "$pre exec ip netns exec $ns1 python3 $TMP/send.py $addr2 $port 512"
    wait "$rpid"
}
tcp=$(tcp_mib_s 0); tcp_capped=$(tcp_mib_s 1)

for size in $SIZES; do
  for mode in $MODES; do
    status="$TMP/victim-$size-$mode"
    # ghost-victim MIB STATUS; precopy-case MIB RATE, its lines on stdout
    if [ "$RATE" != 0 ]; then args=("$VICTIM" "$size" "$RATE"); else args=("$VICTIM" "$size" "$status"); fi
    # on node 1: in its network namespace, as ghostd refuses a process
    # whose namespace is not its node's (nsenter: no mount namespace of
    # its own, which `ip netns exec` would give)
    pid=$(nsenter --net="/run/netns/$ns1" python3 -c "
import subprocess, sys
out = open(sys.argv[1], 'a') if sys.argv[2] != '0' else subprocess.DEVNULL
print(subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out,
      stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True).pid)" \
        "$status" "$RATE" "${args[@]}")
    for i in $(seq 1 600); do grep -qi ready "$status" 2>/dev/null && break; sleep 0.05; done
    # the engine alone: dump into a pipe, restore a copy from it
    t0=$(date +%s%N)
    nsenter --net="/run/netns/$ns1" "$ENGINE/ghost-dump" --pid "$pid" --leave-running --out-fd 3 \
        3> >(nsenter --net="/run/netns/$ns1" "$ENGINE/ghost-restore" --image-fd 0 --new-pid \
                 >"$TMP/engine.json") >/dev/null
    for i in $(seq 1 600); do [ -s "$TMP/engine.json" ] && break; sleep 0.01; done
    engine=$(( ($(date +%s%N) - t0) / 1000000 ))
    kill -9 "$(jq -r '.pid // 0' "$TMP/engine.json")" 2>/dev/null; rm -f "$TMP/engine.json"
    t0=$(date +%s%N)
    out=$("$CAIRN" --node 1 --timeout 600000 migrate --pid "$pid" --to 2 --mode "$mode") || {
        echo "{\"size_mib\":$size,\"mode\":\"$mode\",\"error\":$(jq -c .error <<<"$out" 2>/dev/null || echo null)}"
        kill "$pid"; continue; }
    wall=$(( ($(date +%s%N) - t0) / 1000000 ))
    npid=$(jq -r .pid <<<"$out")
    kill -USR2 "$npid"
    for i in $(seq 1 200); do grep -qE 'PASS|FAIL' "$status" && break; sleep 0.05; done
    verified=$(grep -oE 'PASS|FAIL' "$status" || echo none)
    kill "$npid"
    jq -c --argjson size "$size" --argjson wall "$wall" --argjson tcp "$tcp" \
        --argjson tcpc "$tcp_capped" --arg v "$verified" --argjson engine "$engine" --argjson rate "$RATE" \
        --argjson link "$LINK" '
        (.image_bytes / 1048576 / $tcp * 1000) as $ideal |
        (.image_bytes / 1048576 / $tcpc * 1000) as $idealc |
        {size_mib: $size, mode, rounds, precopy_bytes, lazy_pages, rate_kib_s: $rate, image_bytes, chunks, total_ms, freeze_ms, dump_ms, restore_ms,
         wall_ms: $wall, baseline_tcp_mib_s: ($tcp | floor),
         baseline_tcp_capped_mib_s: ($tcpc | floor), baseline_engine_ms: $engine,
         ideal_ms: ($ideal | floor),
         vs_ideal: ((.total_ms / $ideal) * 100 | round / 100),
         vs_ideal_capped: ((.total_ms / $idealc) * 100 | round / 100),
         vs_engine: ((.total_ms / $engine) * 100 | round / 100),
         migrate_mib_s: ((.image_bytes / 1048576) / (.total_ms / 1000) | floor),
         link_mbit: $link, verified: $v}' <<<"$out"
  done
done
