#!/bin/bash
# test-security-wire - CURVE on the wire between real nodes (as root, in
# network namespaces; docs/security.md):
#   - a marker string sent inside a request from node 1 to node 2's ghostd
#     never appears in clear on the wire with CURVE on (tcpdump on every
#     link of the host namespace: the nodes' veths to the bridge), and does in a cluster made with --security none, so the
#     check can fail; with CURVE the remote ghostd answers the request
#     (remote requests are on), in mode none it refuses it with
#     permission-denied naming mode curve;
#   - a rogue clusterd whose key is not in the description cannot join:
#     the seed logs it once (peer-refused, its address and key fingerprint)
#     and `cairn nodes` on the members never shows it;
#   - garbage and truncated frames at the CURVE handshake on clusterd's and
#     ghostd's ports: no crash, the daemons keep serving members.
# Skips (77) without root, netns or tcpdump.
. "$(dirname "$0")/lib.sh"

t_require_netns
command -v tcpdump >/dev/null || { echo "SKIP: no tcpdump"; exit 77; }

base="t$(( $$ % 10000 ))"
export CAIRN_RUN_BASE="$T_TMP/run"
NAMES=()
CAPTURE_PID=""
trap 'for n in "${NAMES[@]}"; do "$CAIRN" cluster down --name "$n" >/dev/null 2>&1; done
      [ -n "$CAPTURE_PID" ] && kill "$CAPTURE_PID" 2>/dev/null; t_cleanup' EXIT

# up NAME [ARGS...]: a 2-node cluster; sets UP (its JSON), CFG, NS1, NS2,
# A1, A2.
up() {
    local name=$1; shift
    NAMES+=("$name")
    UP=$("$CAIRN" cluster up --name "$name" --nodes 2 "$@") || { t_fail "cluster up $name $*"; t_done; }
    CFG=$(jq -r '.config' <<<"$UP")
    NS1=$(jq -r '.nodes[0].netns' <<<"$UP"); NS2=$(jq -r '.nodes[1].netns' <<<"$UP")
    A1=$(jq -r '.nodes[0].address' <<<"$UP"); A2=$(jq -r '.nodes[1].address' <<<"$UP")
}

# port SERVICE: its request port from the description's <service>.
port() { grep -oE "<service name=\"$1\" port=\"[0-9]+\"" "$CFG" | grep -oE '[0-9]+"$' | tr -d '"'; }

# capture_start FILE / capture_stop: tcpdump of ghostd's port on every
# link of the host (each packet shows on both nodes' veths).
capture_start() {
    tcpdump -i any --immediate-mode -U -w "$1" "tcp port $(port ghostd)" 2>"$1.log" &
    CAPTURE_PID=$!
    # "listening on" may come before every link is watched: a second more
    for _ in $(seq 1 100); do grep -q "listening on" "$1.log" 2>/dev/null && sleep 1 && return; sleep 0.05; done
    t_fail "tcpdump did not start: $(cat "$1.log")"
}
# --immediate-mode and a second before SIGTERM: tcpdump drops what the
# kernel handed it but it has not written yet ("received by filter").
capture_stop() { sleep 1; kill "$CAPTURE_PID"; wait "$CAPTURE_PID" 2>/dev/null; CAPTURE_PID=""; }

# in_clear FILE MARKER: how many captured packets carry MARKER in clear.
in_clear() { tcpdump -r "$1" -A 2>/dev/null | grep -c "$2"; }

# remote_checkpoint: from node 1's namespace, node 2's ghostd over tcp,
# a checkpoint request whose dir holds the marker; sets OUT, ERR, RC.
remote_checkpoint() {
    OUT=$(ip netns exec "$NS1" "$CAIRN" --config "$CFG" --timeout 3000 \
          --endpoint "tcp://$A2:$(port ghostd)" checkpoint 999999 --dir "/tmp/$MARKER" 2>"$T_TMP/err")
    RC=$?
    ERR=$(cat "$T_TMP/err")
}

# ---- CURVE on (the default) ------------------------------------------------
MARKER="cairn-marker-$RANDOM$RANDOM"
up "${base}c"
t_check "cluster up runs curve by default" grep -q 'mode="curve"' "$CFG"
cap="$T_TMP/curve.pcap"
capture_start "$cap"
remote_checkpoint
capture_stop
t_check "curve: remote ghostd answers (not-found for pid 999999, exit $RC: $ERR)" \
    jq -e '.error.code == "not-found"' <<<"$ERR"
t_check "curve: traffic to ghostd was captured" \
    [ "$(tcpdump -r "$cap" -nn 2>/dev/null | wc -l)" -gt 4 ]
t_check "curve: the marker never appears in clear" [ "$(in_clear "$cap" "$MARKER")" -eq 0 ]

# ---- a rogue node whose key is not in the description -------------------
rogue="$T_TMP/rogue"
mkdir -p "$rogue"
R3=${A2%.*}.3
keyjson=$("$CAIRN" --config "$CFG" keys generate --node 3 --out "$rogue/node-3.key") ||
    t_fail "keys generate for the rogue: $keyjson"
rogue_pub=$(jq -r '.public_key' <<<"$keyjson")
rogue_fp=$(jq -r '.fingerprint' <<<"$keyjson")
element=$(jq -r '.key_element' <<<"$keyjson")   # names the --out file
# The rogue's own view: the real description plus itself, run dirs apart.
sed -e "s|run-base=\"[^\"]*\"|run-base=\"$rogue/run\"|" \
    -e "s|</nodes>|<node id=\"3\" name=\"rogue\" address=\"$R3\" appliance=\"compute\"/></nodes>|" \
    -e "s|</security>|$(sed 's/[&|]/\\&/g' <<<"$element")</security>|" "$CFG" >"$rogue/cluster.xml"
t_check "the rogue's description validates" "$CAIRN" config check "$rogue/cluster.xml"
ip netns exec "$NS2" ip addr add "$R3/24" dev eth0
ip netns exec "$NS2" "$CLUSTERD" --config "$rogue/cluster.xml" --node 3 2>"$rogue/clusterd.log" &
T_PIDS+=($!)
seed_log="$(jq -r '.nodes[0].rundir' <<<"$UP")/clusterd.log"
# It listens on its own address but connects from node 2's (eth0's first).
refused="peer-refused address=$A2 key=$rogue_fp"
for _ in $(seq 1 60); do grep -q "$refused" "$seed_log" 2>/dev/null && break; sleep 0.1; done
t_check "the seed refuses the rogue and logs its address and key" grep -q "$refused" "$seed_log"
sleep 2   # a few protocol periods for it to try again
t_check "... once" [ "$(grep -c "$refused" "$seed_log")" -eq 1 ]
for n in 1 2; do
    nodes=$("$CAIRN" --config "$CFG" --node "$n" nodes)
    t_check "node $n never lists the rogue" jq -e '[.nodes[] | select(.id == 3)] | length == 0' <<<"$nodes"
done
[ -n "$rogue_pub" ] || t_fail "no rogue public key"

# ---- garbage at the CURVE handshake ------------------------------------------
# junk HOST PORT BYTES: connects from node 1's namespace, writes BYTES, closes.
junk() {
    ip netns exec "$NS1" bash -c "exec 3<>/dev/tcp/$1/$2 && printf '$3' >&3; sleep 0.1" 2>/dev/null
}
for p in "$(port clusterd)" "$(port ghostd)"; do
    junk "$A2" "$p" '\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03\x00CURVE'    # greeting cut short
    junk "$A2" "$p" '\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03\x00CURVE\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\xc8HELLO-but-noise'
    junk "$A2" "$p" 'GET / HTTP/1.0\r\n\r\n'
    junk "$A2" "$p" "$(head -c 600 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')"
done
for s in clusterd ghostd; do
    pid=$(jq -r --arg s "$s" '.nodes[1].services[] | select(.name == $s) | .pid' <<<"$UP")
    t_check "node 2 $s survived the garbage" kill -0 "$pid"
done
st=$(ip netns exec "$NS1" "$CAIRN" --config "$CFG" --endpoint "tcp://$A2:$(port clusterd)" status) 
t_check "node 2 clusterd still serves a member over CURVE" jq -e '.node.id == 2' <<<"$st"
remote_checkpoint
t_check "node 2 ghostd still serves a member over CURVE" jq -e '.error.code == "not-found"' <<<"$ERR"
nodes=$("$CAIRN" --config "$CFG" --node 1 nodes)
t_check "both members still alive" jq -e '[.nodes[] | select(.state == "alive")] | length == 2' <<<"$nodes"
"$CAIRN" cluster down --name "${base}c" >/dev/null

# ---- CURVE off: the same request in clear, and refused ------------------
MARKER="cairn-marker-$RANDOM$RANDOM"
up "${base}n" --security none
t_check "--security none writes mode none" bash -c "! grep -q 'mode=\"curve\"' '$CFG'"
cap="$T_TMP/none.pcap"
capture_start "$cap"
remote_checkpoint
capture_stop
t_check "none: the marker is in clear on the wire (so the check above can fail;
    $(tcpdump -r "$cap" -nn 2>/dev/null | wc -l) packets captured; $(tr "\n" " " <"$cap.log"))" [ "$(in_clear "$cap" "$MARKER")" -gt 0 ]
t_check "none: remote ghostd refuses, saying mode curve is needed (exit $RC: $ERR)" \
    jq -e '.error.code == "permission-denied" and (.error.message | contains("curve"))' <<<"$ERR"
t_check "none: exit code 1 (a remote refusal)" [ "$RC" -eq 1 ]

t_done
