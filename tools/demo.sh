#!/bin/bash
# demo.sh - the README's main command: installs what is missing, builds,
# brings up a local 4-node Cairn cluster (network namespaces + cgroups as
# root, loopback otherwise; see docs/local-cluster.md) and prints
# `cairn nodes` once every node sees every other alive; then the global
# scheduler (docs/scheduler.md): `cairn load` (node 1's load vector and the
# peers' it learned by gossip), `cairn sched show --all` (sched-rr, the
# default), a `cairn run` without --node placed by the policy (with its
# reason), and `cairn sched swap mosix --all` (balancing on).
# Running it again is harmless: `cluster up` reports a running cluster
# instead of touching it, the daemons of a node that crashed are started
# again (`cairn node restart`), and it exits non-zero, saying why, unless
# every node ends up alive (a cluster of another size is refused by up).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
cairn_install_deps

[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

cairn=./build/cli/cairn
cluster=${CAIRN_CLUSTER:-cairn}
nodes=${CAIRN_DEMO_NODES:-4}
up=$($cairn cluster up --nodes "$nodes" --name "$cluster")
jq -c '{cluster, mode, cgroup, already_running, nodes: [.nodes[] | {id, address}]}' <<<"$up"
# `up` leaves a running cluster as it is, crashed daemons included: bring
# back those of every node that lost some (a no-op for a fresh cluster).
for id in $(jq -r '.nodes[] | select([.services[].running] | all | not) | .id' <<<"$up"); do
    echo "# node $id: some of its daemons are not running; cairn node restart $id" >&2
    $cairn node restart --cluster "$cluster" "$id" | jq -c '{id, restarted, already_running}'
done
alive=0
for _ in $(seq 1 50); do
    alive=$($cairn nodes --cluster "$cluster" | jq '[.nodes[] | select(.state == "alive")] | length')
    [ "$alive" -ge "$nodes" ] && break
    sleep 0.1
done
$cairn nodes --cluster "$cluster"
if [ "$alive" -lt "$nodes" ]; then
    echo "# error: only $alive of $nodes nodes of cluster '$cluster' are alive after 5 s;" \
         "see $cairn cluster status --name $cluster, or start afresh with" \
         "$cairn cluster down --name $cluster" >&2
    exit 1
fi

# The scheduler: what node 1 knows of the load, the policies, a job placed
# by the policy (ended at once: the demo leaves no job behind), then
# balancing turned on. A second run finds mosix serving and leaves it.
echo "# cairn load --node 1: node 1's load and the peers' it learned by gossip" >&2
$cairn load --cluster "$cluster" --node 1 |
    jq -c '{node: .local.node, cpus: .local.cpus, cpu_load: .local.cpu_load,
            mem_free_mib: ((.local.mem_free_bytes // 0) / 1048576 | floor),
            known: [.known[]? | {node, cpu_load, age_ms}]}'
echo "# cairn sched show --all: each node's policy" >&2
$cairn sched show --cluster "$cluster" --all | jq -c '[.nodes[] | {node, policy, pid, placements}]'
echo "# cairn run -- true (no --node): the policy places it" >&2
$cairn run --cluster "$cluster" -- true | jq -c '{gpid, node, placed_by, placement}'
if $cairn sched show --cluster "$cluster" --all | jq -e 'all(.nodes[]; .policy == "mosix")' >/dev/null; then
    echo "# every node already runs sched-mosix" >&2
else
    echo "# cairn sched swap mosix --all: balancing on (running jobs untouched)" >&2
    $cairn sched swap --cluster "$cluster" mosix --all | jq -c '[.nodes[] | {id, policy, previous}]'
fi
echo "# cluster '$cluster' is up; try: $cairn nodes --watch --cluster $cluster," \
     "$cairn lock --cluster $cluster --node 2 demo -- hostname (a cluster-wide lock)," \
     "$cairn run --cluster $cluster -- sh -c 'while sleep 1; do date; done' (a job, placed" \
     "by the policy; then $cairn ps --cluster $cluster --table, $cairn migrate --cluster $cluster GPID --to 3)," \
     "$cairn sched log --cluster $cluster --node 1 --follow (the policy's decisions)," \
     "$cairn selftest --cluster $cluster (every service, a lock, a DSM page, a migration)," \
     "$cairn cluster down --name $cluster" >&2
