#!/bin/bash
# demo.sh - the README's main command: installs what is missing, builds,
# brings up a local 4-node Cairn cluster (network namespaces + cgroups as
# root, loopback otherwise; see docs/local-cluster.md) and prints
# `cairn nodes` once every node sees every other alive.
# Running it again is harmless: `cluster up` reports a running cluster
# instead of touching it.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
cairn_install_deps

[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

cairn=./build/cli/cairn
cluster=${CAIRN_CLUSTER:-cairn}
nodes=${CAIRN_DEMO_NODES:-4}
$cairn cluster up --nodes "$nodes" --name "$cluster" \
    | jq -c '{cluster, mode, cgroup, already_running, nodes: [.nodes[] | {id, address}]}'
for _ in $(seq 1 50); do
    alive=$($cairn nodes --cluster "$cluster" | jq '[.nodes[] | select(.state == "alive")] | length')
    [ "$alive" -ge "$nodes" ] && break
    sleep 0.1
done
$cairn nodes --cluster "$cluster"
echo "# cluster '$cluster' is up; try: $cairn nodes --watch --cluster $cluster, $cairn cluster down --name $cluster" >&2
