#!/bin/bash
# test-clusterd-cli - a real clusterd driven by the real CLI: status and
# nodes over ipc and tcp, JSON fields checked with jq.
. "$(dirname "$0")/lib.sh"

port=$(t_free_port)
cfg="$T_TMP/cluster.xml"
t_description "$cfg" itest 3 "$port"
t_start_clusterd "$cfg" 1 "$T_TMP/clusterd.log" || exit 1
export CAIRN_CONFIG="$cfg"

out=$("$CAIRN" status) || t_fail "cairn status exit $?"
t_check "status is one JSON document" jq -e . <<<"$out" >/dev/null
t_check "status node id" jq -e '.node.id == 1 and .node.name == "n1" and .node.address == "127.0.0.1"' <<<"$out"
t_check "status cluster and appliance" jq -e '.cluster == "itest" and .appliance == "compute"' <<<"$out"
t_check "status services" jq -e '.services == ["clusterd"]' <<<"$out"
t_check "status version/uptime/pid" jq -e --arg pid "$T_LAST_PID" '(.version | length > 0) and .uptime_ms >= 0 and (.pid | tostring) == $pid' <<<"$out"

out=$("$CAIRN" nodes) || t_fail "cairn nodes exit $?"
t_check "nodes lists 3" jq -e '.nodes | length == 3' <<<"$out"
t_check "nodes self alive" jq -e '.nodes[] | select(.id == 1) | .state == "alive" and .last_heard_ms == 0' <<<"$out"
t_check "nodes others unknown" jq -e '[.nodes[] | select(.id != 1) | .state] == ["unknown", "unknown"]' <<<"$out"
t_check "nodes addresses" jq -e '[.nodes[].address] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]' <<<"$out"

out=$("$CAIRN" status --endpoint "tcp://127.0.0.1:$port") || t_fail "status over tcp exit $?"
t_check "status over tcp" jq -e '.node.id == 1' <<<"$out"

out=$("$CAIRN" nodes --table) || t_fail "nodes --table exit $?"
t_check "nodes --table is text with the names" grep -q "n3" <<<"$out"

# Hotplug admission is checked by clusterd itself (not a local cluster here,
# so the CLI does no checks of its own).
out=$("$CAIRN" node add --id 2 --address 127.0.0.9 2>&1 >/dev/null); rc=$?
t_check "node add with a taken id: exit 1 ($rc)" test "$rc" -eq 1
t_check "... already-exists naming the holder" jq -e '.error.code == "already-exists" and (.error.message | test("n2"))' <<<"$out"
out=$("$CAIRN" node add --id 7 --address 127.0.0.3 2>&1 >/dev/null); rc=$?
t_check "node add with a taken address: already-exists" jq -e '.error.code == "already-exists" and (.error.message | test("127.0.0.3"))' <<<"$out"
out=$("$CAIRN" node add --id 7 --address 127.0.0.7 --name seven) || t_fail "node add 7 exit $?"
t_check "node add admits node 7 as unknown" jq -e '.node.id == 7 and .node.name == "seven" and .node.state == "unknown"' <<<"$out"
out=$("$CAIRN" node add --id 8 --address 127.0.0.8 --name seven 2>&1 >/dev/null)
t_check "node add with a taken name: already-exists" jq -e '.error.code == "already-exists"' <<<"$out"

# A node that is neither described nor admitted is refused when it joins,
# and says why; one whose id is described at another address is refused
# before it starts.
"$CLUSTERD" --config "$cfg" --node-id 9 --address 127.0.0.9 2>"$T_TMP/n9.log"; rc=$?
t_check "unadmitted node 9 exits 1 ($rc)" test "$rc" -eq 1
t_check "... its log says join-refused with the reason" grep -q 'join-refused.*neither in the cluster description' "$T_TMP/n9.log"
t_check "... the seed logged the refusal" grep -q "join-refused id=9" "$T_TMP/clusterd.log"
"$CLUSTERD" --config "$cfg" --node-id 2 --address 127.0.0.9 2>"$T_TMP/n2.log"; rc=$?
t_check "node id 2 at another address refused at start ($rc)" test "$rc" -eq 1
t_check "... saying where the description has it" grep -q "has node 2 as n2 at 127.0.0.2" "$T_TMP/n2.log"

t_done
