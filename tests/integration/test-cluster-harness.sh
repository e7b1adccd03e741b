#!/bin/bash
# test-cluster-harness - `cairn cluster up|status|down` as root: a 4-node
# cluster in network namespaces and cgroups, every clusterd reachable, a
# second up reports already_running, down leaves nothing; then a kill -9 of
# the CLI in the middle of up (at each phase) and down still cleans up.
# Skips (77) without root or without permission to create namespaces.
. "$(dirname "$0")/lib.sh"

t_require_netns

name="t$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run"
cfg="$CAIRN_RUN_BASE/$name/cluster.xml"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT

# no_procs: no process runs with the cluster's description (a function, not
# bash -c, so pgrep does not find the checking shell's own command line).
no_procs() { ! pgrep -f -- "$cfg" >/dev/null; }

# assert_gone: nothing of the cluster is left on the host.
assert_gone() {
    local what=$1
    t_check "$what: no netns" bash -c "! ip netns list | grep -q 'cairn-$name-'"
    t_check "$what: no links" bash -c "! ip -o link | grep -Eq ' (cv-$name-[0-9]+|cb-$name)[@:]'"
    t_check "$what: no cgroups" bash -c "! ls -d /sys/fs/cgroup/{cpu,memory,}/cairn/$name 2>/dev/null | grep -q ."
    t_check "$what: no processes" no_procs
    t_check "$what: no run dir" test ! -e "$CAIRN_RUN_BASE/$name"
    t_check "$what: nothing mounted under it" test -z "$(t_mounts_under "$CAIRN_RUN_BASE/$name")"
}

# --- up: 4 nodes -----------------------------------------------------------
out=$("$CAIRN" cluster up --nodes 4 --cpus 0.5 --mem 256M --name "$name") || t_fail "up exit $?"
t_check "up is one JSON document" jq -e . <<<"$out" >/dev/null
t_check "up mode netns, fresh" jq -e --arg n "$name" \
    '.cluster == $n and .mode == "netns" and .already_running == false and (.cgroup == "v1" or .cgroup == "v2")' <<<"$out"
t_check "up 4 nodes, every daemon running" jq -e \
    '(.nodes | length == 4) and ([.nodes[].services[] | .running and .pid > 0] | all)' <<<"$out"
t_check "up names and limits" jq -e --arg n "$name" \
    '[.nodes[] | .netns == "cairn-\($n)-\(.id)" and .name == "n\(.id)" and .cpus == 0.5 and .mem_bytes == 268435456] | all' <<<"$out"
t_check "up bridge and subnet" jq -e --arg n "$name" \
    '.bridge == "cb-\($n)" and (.subnet | test("^10\\.77\\.[0-9]+\\.0/24$"))' <<<"$out"
t_check "up traffic between namespaces" jq -e '.traffic_ok == true' <<<"$out"
# How fast `up` is belongs to bench/cluster.sh (all_alive_ms, target 3 s):
# a loaded CI machine failed a 3 s bound here. The field is checked only
# for being there.
t_check "up reports its elapsed time" jq -e '.elapsed_ms | type == "number" and . >= 0' <<<"$out"
t_check "config file exists and validates" "$CAIRN" config check "$cfg" >/dev/null
if jq -e '[.nodes[].services[].name] | index("ghostd")' <<<"$out" >/dev/null; then
    for k in 1 2 3 4; do
        t_check "node $k: ghostd's image spool is a tmpfs" \
            test "$(findmnt -n -o FSTYPE --mountpoint "$CAIRN_RUN_BASE/$name/$k/ghost")" = tmpfs
    done
fi

net=$(jq -r '.subnet | sub("\\.0/24$"; "")' <<<"$out")
for k in 1 2 3 4; do
    addr="$net.$k"
    t_check "node $k address" jq -e --argjson k "$k" --arg a "$addr" '.nodes[$k - 1].address == $a' <<<"$out"
    st=$("$CAIRN" status --cluster "$name" --node "$k") || t_fail "status node $k exit $?"
    t_check "node $k clusterd answers as itself" jq -e --argjson k "$k" --arg a "$addr" \
        '.node.id == $k and .node.address == $a' <<<"$st"
    pid=$(jq -r --argjson k "$k" '.nodes[$k - 1].services[0].pid' <<<"$out")
    t_check "node $k daemon in its netns" bash -c "ip netns pids cairn-$name-$k | grep -qx $pid"
    cg=$(jq -r --argjson k "$k" '.nodes[$k - 1].cgroup' <<<"$out")
    t_check "node $k daemon in its cgroup" grep -qx "$pid" "$cg/cgroup.procs"
done
if [ -e /sys/fs/cgroup/cpu/cairn/"$name"/1/cpu.cfs_quota_us ]; then
    t_check "v1 cpu quota" grep -qx 50000 /sys/fs/cgroup/cpu/cairn/"$name"/1/cpu.cfs_quota_us
    t_check "v1 memory limit" grep -qx 268435456 /sys/fs/cgroup/memory/cairn/"$name"/1/memory.limit_in_bytes
else
    t_check "v2 cpu.max" grep -qx "50000 100000" /sys/fs/cgroup/cairn/"$name"/1/cpu.max
    t_check "v2 memory.max" grep -qx 268435456 /sys/fs/cgroup/cairn/"$name"/1/memory.max
fi
t_check "node 1 reaches node 2 over the bridge (tcp)" \
    ip netns exec "cairn-$name-1" bash -c "exec 3<>/dev/tcp/$net.2/7100"

# --- a second up changes nothing -------------------------------------------
pids1=$(jq -c '[.nodes[].services[].pid]' <<<"$out")
again=$("$CAIRN" cluster up --nodes 4 --name "$name") || t_fail "second up exit $?"
t_check "second up reports already_running" jq -e '.already_running == true' <<<"$again"
t_check "second up kept the daemons" jq -e --argjson p "$pids1" '[.nodes[].services[].pid] == $p' <<<"$again"
st=$("$CAIRN" cluster status --name "$name") || t_fail "cluster status exit $?"
# Every daemon of every node: the nodes' appliance lists them (clusterd,
# and every other service whose binary is built).
ndaemons=$(jq '[.nodes[].services[]] | length' <<<"$st")
t_check "cluster status: all $ndaemons daemons running (>= 4)" \
    jq -e --argjson n "$ndaemons" '.services_running == $n and .services_total == $n and $n >= 4' <<<"$st"

# --- down --------------------------------------------------------------------
down=$("$CAIRN" cluster down --name "$name") || t_fail "down exit $?"
t_check "down report" jq -e --argjson n "$ndaemons" '.removed == true and .processes_killed == $n and (.netns | length == 4) and (.links | length == 5)' <<<"$down"
assert_gone "after down"
again=$("$CAIRN" cluster down --name "$name") || t_fail "second down exit $?"
t_check "down of nothing says removed false" jq -e '.removed == false' <<<"$again"
"$CAIRN" cluster status --name "$name" >/dev/null 2>&1
t_check "status of a removed cluster fails" test $? -ne 0

# --- kill -9 of the CLI in the middle of up ----------------------------------
for phase in plan net cgroups spawn; do
    CAIRN_CLUSTER_TEST_PAUSE="$phase:5000" "$CAIRN" cluster up --nodes 3 --name "$name" >/dev/null 2>&1 &
    cli=$!
    sleep 0.5
    kill -9 "$cli" 2>/dev/null
    wait "$cli" 2>/dev/null
    t_check "killed at $phase: something was left to clean" test -e "$CAIRN_RUN_BASE/$name/state.json"
    down=$("$CAIRN" cluster down --name "$name") || t_fail "down after kill at $phase exit $?"
    t_check "killed at $phase: down removed it" jq -e '.removed == true' <<<"$down"
    assert_gone "killed at $phase"
done

# --- a killed up is recovered by the next up ----------------------------------
CAIRN_CLUSTER_TEST_PAUSE="spawn:5000" "$CAIRN" cluster up --nodes 2 --name "$name" >/dev/null 2>&1 &
cli=$!
sleep 0.5
kill -9 "$cli" 2>/dev/null
wait "$cli" 2>/dev/null
out=$("$CAIRN" cluster up --nodes 2 --name "$name") || t_fail "up after kill exit $?"
t_check "up after a killed up recovers" jq -e '.recovered_stale == true and ([.nodes[].services[].running] | all)' <<<"$out"
"$CAIRN" cluster down --name "$name" >/dev/null || t_fail "final down"
assert_gone "final"

t_done
