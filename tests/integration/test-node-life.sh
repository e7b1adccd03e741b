#!/bin/bash
# test-node-life - a node's life on a local cluster, end to end (issue 15),
# as root: node remove is prompt and kills nothing; a node that left can be
# added again under its id, and a left node can be removed; a node whose
# clusterd (or every daemon) was kill -9ed comes back with `node restart`
# and rejoins with a higher incarnation; restart of a healthy node is a
# no-op; `cluster up` with another size is refused; `cluster down` of the
# last cluster of a run base that up made removes the run base too.
# Skips (77) without root or netns.
. "$(dirname "$0")/lib.sh"

t_require_netns
"$CLUSTERD" --help 2>&1 | grep -q -- --node-id || { echo "SKIP: clusterd has no --node-id"; exit 77; }

name="l$(( $$ % 100000 ))"
base="$T_TMP/base/run"   # does not exist yet: up makes it
export CAIRN_RUN_BASE="$base" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT

# wait_reborn S ID INC NODES...: every listed node sees node ID alive with
# an incarnation above INC within S seconds.
wait_reborn() {
    local limit=$1 id=$2 inc=$3; shift 3
    [[ $inc =~ ^[0-9]+$ ]] || return 1
    t_wait_member "$limit" "$id" ".state == \"alive\" and .incarnation > $inc" "$@"
}

# expect_error RC CODE PATTERN CMD...: CMD fails with exit RC, error code
# CODE and a message matching PATTERN (an ERE).
expect_error() {
    local rc=$1 code=$2 pat=$3 out got; shift 3
    out=$("$@" 2>&1 >/dev/null); got=$?
    [ "$got" -eq "$rc" ] && jq -e --arg c "$code" --arg p "$pat" \
        '.error.code == $c and (.error.message | test($p))' <<<"$out" >/dev/null ||
        { echo "  got exit $got: $out" >&2; return 1; }
}

# pids_of ID [SERVICE]: the recorded pids of node ID's daemons (or of one).
pids_of() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "${2:-}" \
        '.nodes[] | select(.id == $id) | .services[] | select($s == "" or .name == $s) | .pid'
}

# incarnation ID OBSERVER: node ID's incarnation as OBSERVER sees it.
incarnation() {
    "$CAIRN" nodes --node "$2" | jq --argjson id "$1" '.nodes[] | select(.id == $id) | .incarnation'
}

# wait_down ID [SERVICE]: waits (5 s at most) until cluster status shows
# none of node ID's daemons (or SERVICE) running.
wait_down() {
    local i
    for i in $(seq 1 50); do
        "$CAIRN" cluster status | jq -e --argjson id "$1" --arg s "${2:-}" \
            '[.nodes[] | select(.id == $id) | .services[] | select($s == "" or .name == $s) | .running] | any | not' \
            >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# netns_empty ID: nothing runs in node ID's namespace.
netns_empty() { [ -z "$(ip netns pids "cairn-$name-$1" 2>/dev/null)" ]; }

# jq_ok JSON ARGS...: jq -e ARGS on JSON, which must not be empty (a
# command that failed printed nothing, and jq -e passes on no input).
jq_ok() {
    local in=$1; shift
    [ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

up=$("$CAIRN" cluster up --nodes 3) || { t_fail "cluster up exit $?"; t_done; }
services=$(jq -c '[.nodes[0].services[].name]' <<<"$up")
for id in 1 2 3; do
    t_check "node $id alive on all" t_wait_state 10 "$id" alive 1 2 3
done

# --- node remove: prompt, nothing killed --------------------------------------
"$CAIRN" node add --id 4 >/dev/null || t_fail "node add 4 exit $?"
t_check "node 4 alive on all" t_wait_state 10 4 alive 1 2 3 4
t0=$(now_ms)
rm_out=$("$CAIRN" node remove 4) || t_fail "node remove 4 exit $?"
took=$(( $(now_ms) - t0 ))
echo "node remove took $took ms: $(jq -c '{processes_exited, processes_killed}' <<<"$rm_out")"
# Prompt: under the 3 s its daemons are given to stop (cli/cmd-node.c
# S_REMOVE_WAIT_MS), which a remove that waited them out would reach;
# 1.5 s failed under sanitizers at load 18 (the daemons exit slowly there).
t_check "node remove within 3 s" test "$took" -lt 3000
t_check "node remove killed nothing, every daemon exited" jq_ok "$rm_out" --argjson s "$services" \
    '.deprovisioned == true and .processes_killed == 0 and .processes_exited >= ($s | length)'

# --- leave, then add the id again -------------------------------------------------
lv=$("$CAIRN" node leave --node 3) || t_fail "node leave 3 exit $?"
t_check "node leave stops the node's other daemons" jq_ok "$lv" \
    '.left == true and .stopped == true and .processes_killed == 0'
t_check "nothing runs in node 3's namespace after leave" netns_empty 3
t_check "others see 3 left" t_wait_state 5 3 left 1 2
add=$("$CAIRN" node add --id 3) || t_fail "node add --id 3 after leave exit $?"
t_check "node add of a left id provisions it again" jq_ok "$add" '.provisioned == true and .node.id == 3'
t_check "node 3 alive again everywhere" t_wait_state 10 3 alive 1 2 3

# --- leave, then remove ----------------------------------------------------------
"$CAIRN" node add --id 5 >/dev/null || t_fail "node add 5 exit $?"
t_check "node 5 alive on all" t_wait_state 10 5 alive 1 2 3 5
"$CAIRN" node remove 5 >/dev/null || t_fail "node remove 5 exit $?"
"$CAIRN" node add --id 5 >/dev/null || t_fail "node add 5 again exit $?"
t_check "node 5 alive again" t_wait_state 10 5 alive 1 2 3 5
"$CAIRN" node leave --node 2 >/dev/null || t_fail "node leave 2 exit $?"
t_check "others see 2 left" t_wait_state 5 2 left 1 3
rm2=$("$CAIRN" node remove 2) || t_fail "node remove of a left node exit $?"
t_check "node remove of a left node deprovisions it" jq_ok "$rm2" \
    '.node.state == "left" and .deprovisioned == true and .processes_killed == 0'
t_check "node 2's namespace is gone" bash -c "! ip netns list | grep -q '^cairn-$name-2 '"
t_check "node 2 dropped from the state" bash -c \
    "'$CAIRN' cluster status | jq -e '[.nodes[] | select(.id == 2)] | length == 0' >/dev/null"

# --- kill -9 of clusterd, then node restart ------------------------------------
inc=$(incarnation 3 1)
kill -9 "$(pids_of 3 clusterd)"
wait_down 3 clusterd
t_check "node add of a half-crashed node points to node restart" \
    expect_error 1 already-exists "node restart 3" "$CAIRN" node add --id 3
rs=$("$CAIRN" node restart 3) || t_fail "node restart 3 exit $?"
t_check "restart restarted clusterd only, the rest already running" jq_ok "$rs" --argjson s "$services" \
    '.restarted == ["clusterd"] and .already_running == ($s - ["clusterd"]) and ([.node.services[].running] | all)'
t_check "node 3 alive again with a higher incarnation" wait_reborn 10 3 "$inc" 1 3 5

# --- kill -9 of every daemon, then node restart ----------------------------------
inc=$(incarnation 3 1)
for p in $(pids_of 3); do kill -9 "$p"; done
wait_down 3
t_check "node add of a crashed node points to node restart" \
    expect_error 1 already-exists "node restart 3" "$CAIRN" node add --id 3
rs=$("$CAIRN" node restart 3) || t_fail "node restart 3 (all dead) exit $?"
t_check "restart restarted every daemon" jq_ok "$rs" --argjson s "$services" \
    '.restarted == $s and .already_running == []'
t_check "node 3 alive again after a full crash" wait_reborn 10 3 "$inc" 1 3 5

# --- restart of a healthy node: a no-op ----------------------------------------
before=$(pids_of 3 | tr '\n' ' ')
rs=$("$CAIRN" node restart 3) || t_fail "node restart of a running node exit $?"
t_check "restart of a running node restarts nothing" jq_ok "$rs" --argjson s "$services" \
    '.restarted == [] and .already_running == $s'
t_check "restart of a running node kept its pids" test "$(pids_of 3 | tr '\n' ' ')" = "$before"
t_check "restart of an unknown node: not-found" expect_error 1 not-found "node 9" "$CAIRN" node restart 9

# --- cluster up of another size --------------------------------------------------
n=$("$CAIRN" cluster status | jq '.nodes | length')
t_check "up with another size: already-exists naming both" \
    expect_error 1 already-exists "$n node.*--nodes 7" "$CAIRN" cluster up --nodes 7
t_check "up with another --mem: already-exists" \
    expect_error 1 already-exists "--mem" "$CAIRN" cluster up --mem 64M
again=$("$CAIRN" cluster up) || t_fail "plain up of a running cluster exit $?"
t_check "plain up reports the running cluster" jq_ok "$again" '.already_running == true'
again=$("$CAIRN" cluster up --nodes "$n") || t_fail "up with the same size exit $?"
t_check "up with the same size reports it" jq_ok "$again" '.already_running == true'

# --- down removes the run base it made -------------------------------------------
down=$("$CAIRN" cluster down) || t_fail "cluster down exit $?"
t_check "down says the run base went" jq_ok "$down" '.removed == true and .run_base_removed == true'
t_check "the run base is gone" test ! -e "$base"
t_check "its parent stays" test -d "$T_TMP/base"
t_done
