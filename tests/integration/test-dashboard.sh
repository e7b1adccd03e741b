#!/bin/bash
# test-dashboard.sh - clusterd's dashboard (docs/metrics.md, "The
# dashboard") in a real headless browser: Debian's chromium driven by
# puppeteer-core (tests/dashboard/check-dashboard.js) against a 4-node
# `cairn cluster up`. The page at node 1's clusterd loads with no console
# error, exception or failed request, shows the 4 nodes alive with their
# load plots and a job started on node 1; the job is then moved to node 2
# with `cairn migrate`, and the move appears in "Recent migrations". Also
# without the browser: /api/cluster is JSON naming the 4 nodes with a load
# history each.
#
# Needs root and netns, chromium, node and puppeteer-core in
# tests/dashboard/node_modules (tools/deps.sh installs all three: tools/test.sh
# runs it); skips with 77 and the reason when one is missing.
. "$(dirname "$0")/lib.sh"

t_require_netns
DASH="$CAIRN_SOURCE/tests/dashboard"
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -x "$CHROMIUM" ] || { echo "SKIP: no chromium (apt-get install chromium)"; exit 77; }
command -v node >/dev/null || { echo "SKIP: no node (apt-get install nodejs)"; exit 77; }
[ -d "$DASH/node_modules/puppeteer-core" ] ||
    { echo "SKIP: no puppeteer-core in $DASH/node_modules (npm ci --prefix $DASH)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: no curl"; exit 77; }
export CHROMIUM

name="db$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT

"$CAIRN" cluster up --nodes 4 --name "$name" >"$T_TMP/up.json" || { t_fail "cluster up"; t_done; }
for id in 1 2 3 4; do t_check "node $id alive" t_wait_state 15 "$id" alive 1 2 3 4; done
config=$(jq -r .config "$T_TMP/up.json")
port=$(sed -n 's/.*<service name="clusterd"[^>]*metrics-port="\([0-9]*\)".*/\1/p' "$config")
url="http://$(jq -r '.nodes[0].address' "$T_TMP/up.json"):$port"
t_ghostds_see 4

# api_ok: /api/cluster names 4 alive nodes, each with a load history.
api_ok() {
    curl -sf -m 5 "$url/api/cluster" | jq -e '[.nodes[] | select(.state == "alive" and
        (.load.history | length) > 0)] | length == 4' >/dev/null
}
t_check "/api/cluster: 4 alive nodes with a load history" t_wait_for 20 api_ok

job=$(CAIRN_NODE=1 "$CAIRN" run --node 1 -- sleep 600) || t_fail "run: $job"
g=$(jq -r .gpid <<<"$job")

ready="$T_TMP/ready"
node "$DASH/check-dashboard.js" "$url/" 4 "$g" "$ready" 40000 >"$T_TMP/browser.json" 2>"$T_TMP/browser.err" &
browser=$!
T_PIDS+=("$browser")
if t_wait_for 45 test -e "$ready"; then
    out=$(CAIRN_NODE=1 "$CAIRN" migrate "$g" --to 2 2>&1) || t_fail "migrate $g to 2: $out"
fi
wait "$browser"
rc=$?
cat "$T_TMP/browser.json"
[ -s "$T_TMP/browser.err" ] && sed 's/^/  browser: /' "$T_TMP/browser.err" >&2
t_check "the browser saw 4 nodes, the job, then its migration, with no error" test "$rc" -eq 0
t_check "... and said so" jq -e '.ok == true and (.errors | length) == 0' "$T_TMP/browser.json"
CAIRN_NODE=2 "$CAIRN" kill "$g" >/dev/null 2>&1

t_done
