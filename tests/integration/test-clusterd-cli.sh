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

t_done
