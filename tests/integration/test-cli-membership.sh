#!/bin/bash
# test-cli-membership - the CLI half of hotplug on a local cluster (as root):
# `cairn node add|remove|leave` and `cairn nodes --watch` against a 3-node
# `cairn cluster up`: a watcher sees node 4 come up, node 4 is provisioned
# (netns, daemons) and alive everywhere, taken ids and addresses are refused,
# node remove tears node 4 down, node leave makes node 3 "left" everywhere,
# bad arguments are usage errors. Skips (77) without root or netns.
. "$(dirname "$0")/lib.sh"

t_require_netns
"$CLUSTERD" --help 2>&1 | grep -q -- --node-id || { echo "SKIP: clusterd has no --node-id"; exit 77; }

name="m$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT


up=$("$CAIRN" cluster up --nodes 3) || { t_fail "cluster up exit $?"; t_done; }
net=$(jq -r '.subnet | sub("\\.0/24$"; "")' <<<"$up")
for id in 1 2 3; do
    t_check "node $id alive on all" t_wait_state 10 "$id" alive 1 2 3
done

# --- node add with a watcher ------------------------------------------------
"$CAIRN" nodes --watch --count 1 --duration-ms 10000 >"$T_TMP/watch" 2>"$T_TMP/watch.err" &
watcher=$!
T_PIDS+=("$watcher")
for i in $(seq 1 50); do [ -s "$T_TMP/watch" ] && break; sleep 0.1; done
t_check "watch prints the snapshot first" jq -e 'select(.event == "snapshot") | (.nodes | length == 3)' "$T_TMP/watch"
add=$("$CAIRN" node add --id 4) || t_fail "node add exit $?"
t_check "node add result" jq -e --arg a "$net.4" \
    '.node.id == 4 and .node.address == $a and .node.name == "n4" and .provisioned == true and (.pids | length >= 1)' <<<"$add"
t_check "node 4 netns exists" bash -c "ip netns list | grep -q '^cairn-$name-4 '"
wait "$watcher"
t_check "watcher exits 0 after one event" test $? -eq 0
t_check "watcher printed node-up for 4" jq -se \
    '.[1].event == "node-up" and .[1].node.id == 4 and .[1].node.state == "alive" and (.[1].observer > 0) and (.[1].time_ms > 0) and length == 2' "$T_TMP/watch"
t_check "node 4 alive everywhere within 5 s" t_wait_state 5 4 alive 1 2 3 4
t_check "cluster status includes node 4" bash -c \
    "'$CAIRN' cluster status | jq -e '[.nodes[] | select(.id == 4) | .services[].running] | all and length > 0' >/dev/null"

# --- refusals ----------------------------------------------------------------
t_check "add a taken id: already-exists" t_expect_error 1 already-exists "$CAIRN" node add --id 2
t_check "add a used address: already-exists" t_expect_error 1 already-exists "$CAIRN" node add --id 5 --address "$net.3"
t_check "add without --id: usage" t_expect_error 100 usage "$CAIRN" node add --address "$net.5"
t_check "add a bad --address: usage" t_expect_error 100 usage "$CAIRN" node add --id 5 --address not-an-ip
t_check "add outside the subnet: usage" t_expect_error 100 usage "$CAIRN" node add --id 5 --address 192.0.2.5
t_check "remove without an id: usage" t_expect_error 100 usage "$CAIRN" node remove
t_check "watch with --table: usage" t_expect_error 100 usage "$CAIRN" --table nodes --watch
t_check "--count without --watch: usage" t_expect_error 100 usage "$CAIRN" nodes --count 1

# --- node remove ---------------------------------------------------------------
rm_out=$("$CAIRN" node remove 4) || t_fail "node remove exit $?"
t_check "node remove result" jq -e '.node.id == 4 and .node.state == "left" and .deprovisioned == true' <<<"$rm_out"
t_check "node 4 left everywhere within 5 s" t_wait_state 5 4 left 1 2 3
t_check "node 4 netns gone" bash -c "! ip netns list | grep -q '^cairn-$name-4 '"
t_check "node 4 dropped from state" bash -c \
    "'$CAIRN' cluster status | jq -e '[.nodes[] | select(.id == 4)] | length == 0' >/dev/null"

# --- node leave --------------------------------------------------------------------
lv=$("$CAIRN" node leave --node 3) || t_fail "node leave exit $?"
t_check "node leave result" jq -e '.node == 3 and .left == true' <<<"$lv"
t_check "others see 3 left within 5 s" t_wait_state 5 3 left 1 2
t_check "node 3 netns stays until down" bash -c "ip netns list | grep -q '^cairn-$name-3 '"

down=$("$CAIRN" cluster down) || t_fail "cluster down exit $?"
t_check "down removes every namespace" bash -c "! ip netns list | grep -q 'cairn-$name-'"
t_done
