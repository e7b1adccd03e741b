#!/bin/bash
# demo.sh - the README's main command: installs what is missing, builds,
# then brings up a local Cairn node (a generated description, clusterd
# started on its own) and shows `cairn status` and `cairn nodes`.
# Running it again is harmless: a node that already answers is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
cairn_install_deps

[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

if [ "$(id -u)" -eq 0 ]; then base=/run/cairn; else base=${XDG_RUNTIME_DIR:-/tmp}/cairn; fi
cluster=demo
dir="$base/$cluster"
cfg="$dir/cluster.xml"
mkdir -p "$dir"
export CAIRN_CONFIG="$cfg"

if ! ./build/cli/cairn status --timeout 500 >/dev/null 2>&1; then
    ./build/cli/cairn config generate --hosts n1=127.0.0.1 --name "$cluster" \
        --run-base "$base" --appliance compute --output "$cfg" >/dev/null
    setsid ./build/services/clusterd/clusterd --config "$cfg" --node 1 \
        >/dev/null 2>"$dir/clusterd.log" < /dev/null &
    for _ in $(seq 1 100); do
        ./build/cli/cairn status --timeout 200 >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
./build/cli/cairn status
./build/cli/cairn nodes
