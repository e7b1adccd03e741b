#!/bin/bash
# test-metrics.sh - every daemon's Prometheus metrics (docs/metrics.md) on
# a 3-node `cairn cluster up`: each service of each node answers
# /metrics on its node's address and metrics-port, in a text format
# prom-check.py accepts (HELP and TYPE per family, escaped labels,
# cumulative histograms), with the skeleton's families and the service's
# own (probed's: the node's load); the counters move with what is done: `cairn status` and a refused
# `cairn node remove` in clusterd's requests and latency, the members by
# state, a job migrated 1 -> 2 in ghostd's migrations and image bytes, a
# lock waited for in syncd's waits. HTTP: HEAD works, POST is 405, an
# unknown path 404. A description without metrics-port opens no HTTP
# listener; a metrics-port already taken stops the daemon at startup with
# the reason in its log. Needs root and netns (skips with 77).
. "$(dirname "$0")/lib.sh"

t_require_netns
command -v curl >/dev/null || { echo "SKIP: no curl"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
CHECK="$CAIRN_SOURCE/tests/integration/prom-check.py"

name="mt$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT

"$CAIRN" cluster up --nodes 3 --name "$name" >"$T_TMP/up.json" || { t_fail "cluster up"; t_done; }
for id in 1 2 3; do t_check "node $id alive" t_wait_state 15 "$id" alive 1 2 3; done
config=$(jq -r .config "$T_TMP/up.json")

# port SERVICE: its metrics-port in the cluster's description.
port() { sed -n "s/.*<service name=\"$1\"[^>]*metrics-port=\"\([0-9]*\)\".*/\1/p" "$config"; }
# addr K: node K's address.
addr() { jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .address' "$T_TMP/up.json"; }
# scrape K SERVICE [FAMILY...]: node K's SERVICE's /metrics, checked; the
# parsed families as JSON in $T_TMP/K-SERVICE.json.
scrape() {
    local k=$1 s=$2; shift 2
    curl -sf -m 5 "http://$(addr "$k"):$(port "$s")/metrics" >"$T_TMP/$k-$s.txt" &&
        python3 "$CHECK" "$T_TMP/$k-$s.txt" "$@" >"$T_TMP/$k-$s.json"
}
# value K SERVICE SAMPLE: a sample's value from the last scrape, 0 if none.
value() {
    jq -r --arg s "$3" '[.[].samples[$s] // empty] | first // 0' "$T_TMP/$1-$2.json"
}

# ---- every service of every node ------------------------------------------
common=(cairn_requests_total cairn_request_duration_seconds cairn_service_info
        cairn_service_start_time_seconds)
declare -A own=(
    [clusterd]="cairn_members cairn_member_changes_total"
    [ghostd]="cairn_ghost_operations_total cairn_ghost_image_bytes_total"
    [syncd]="cairn_sync_waits_total cairn_sync_wait_seconds"
    [probed]="cairn_node_cpus cairn_node_cpu_load cairn_node_memory_used_bytes"
)
for k in 1 2 3; do
    for s in $(jq -r --argjson k "$k" '.nodes[] | select(.id == $k) | .services[].name' "$T_TMP/up.json"); do
        t_check "node $k $s has a metrics-port" test -n "$(port "$s")"
        # shellcheck disable=SC2086
        # (probed's gauges come with its first sample)
        t_check "node $k $s: /metrics parses, has its families" \
            t_wait_for 10 scrape "$k" "$s" "${common[@]}" ${own[$s]:-}
        t_check "node $k $s: cairn_service_info names it" jq -e --arg s "$s" --arg k "$k" \
            '.cairn_service_info.samples | to_entries | map(select(.key | contains("service=\"" + $s + "\",node=\"" + $k + "\"")) | .value) == [1]' \
            "$T_TMP/$k-$s.json"
    done
done

t_check "probed 1's gauges hold its capacity (0.5 CPU)" \
    test "$(value 1 probed cairn_node_cpus)" = 0.5

# ---- clusterd: members, requests, latency -----------------------------------
# failed K SERVICE TYPE: its requests of TYPE answered with an error.
failed() {
    jq --arg t "$3" '[.cairn_requests_total.samples | to_entries[] | select(.key |
        startswith("cairn_requests_total{type=\"" + $t + "\",") and (endswith(",status=\"ok\"}") | not)) | .value] | add // 0' \
        "$T_TMP/$1-$2.json"
}
alive3() { scrape 1 clusterd && [ "$(value 1 clusterd 'cairn_members{state="alive"}')" = 3 ]; }
t_check "clusterd 1 counts 3 members alive" t_wait_for 10 alive3
scrape 2 clusterd
ok0=$(value 2 clusterd 'cairn_requests_total{type="status",status="ok"}')
bad0=$(failed 2 clusterd node-remove)
n0=$(value 2 clusterd 'cairn_request_duration_seconds_count{type="status"}')
for i in 1 2 3; do "$CAIRN" --node 2 status >/dev/null || t_fail "cairn status $i"; done
"$CAIRN" --node 2 node remove 99 >/dev/null 2>"$T_TMP/remove.err" && t_fail "node remove 99 succeeded"
scrape 2 clusterd
ok1=$(value 2 clusterd 'cairn_requests_total{type="status",status="ok"}')
bad1=$(failed 2 clusterd node-remove)
n1=$(value 2 clusterd 'cairn_request_duration_seconds_count{type="status"}')
t_check "3 x cairn status: requests{status,ok} $ok0 -> $ok1" test "$((ok1 - ok0))" -eq 3
t_check "... and 3 more latencies observed ($n0 -> $n1)" test "$((n1 - n0))" -eq 3
t_check "a refused node remove: requests{node-remove,$(jq -r .error.code "$T_TMP/remove.err")} $bad0 -> $bad1" \
    test "$((bad1 - bad0))" -eq 1

# ---- ghostd: a migration ----------------------------------------------------
t_ghostds_see 3
job=$(CAIRN_NODE=1 "$CAIRN" run --node 1 -- sleep 600) || t_fail "run: $job"
g=$(jq -r .gpid <<<"$job")
scrape 1 ghostd
m0=$(value 1 ghostd 'cairn_ghost_operations_total{operation="migration",result="ok"}')
b0=$(value 1 ghostd 'cairn_ghost_image_bytes_total{operation="migration"}')
out=$(CAIRN_NODE=1 "$CAIRN" migrate "$g" --to 2 2>&1) || t_fail "migrate $g to 2: $out"
bytes=$(jq -r '.image_bytes // 0' <<<"$out")
scrape 1 ghostd
m1=$(value 1 ghostd 'cairn_ghost_operations_total{operation="migration",result="ok"}')
b1=$(value 1 ghostd 'cairn_ghost_image_bytes_total{operation="migration"}')
t_check "ghostd 1 counts the migration ($m0 -> $m1)" test "$((m1 - m0))" -eq 1
t_check "... and its $bytes image bytes ($b0 -> $b1)" test "$bytes" -gt 0 -a "$((b1 - b0))" -eq "$bytes"
CAIRN_NODE=2 "$CAIRN" kill "$g" >/dev/null 2>&1

# ---- syncd: a wait ----------------------------------------------------------
# waits K: the answered waits at node K's homes, from a fresh scrape.
waits() { scrape "$1" syncd && value "$1" syncd 'cairn_sync_wait_seconds_count'; }
w0=0; for k in 1 2 3; do w0=$((w0 + $(waits "$k"))); done
ip netns exec "cairn-$name-2" "$CAIRN" --node 2 lock mtlock --no-cache -- sleep 1 &
holder=$!
sleep 0.3
ip netns exec "cairn-$name-3" "$CAIRN" --node 3 --timeout 30000 lock mtlock -- true >/dev/null ||
    t_fail "the waiter's lock"
wait "$holder"
w1=0; for k in 1 2 3; do w1=$((w1 + $(waits "$k"))); done
t_check "syncd: the wait for mtlock is counted at its home ($w0 -> $w1)" test "$w1" -gt "$w0"

# ---- HTTP -------------------------------------------------------------------
url="http://$(addr 1):$(port clusterd)"
t_check "HEAD /metrics: 200" test "$(curl -s -o /dev/null -w '%{http_code}' -m 5 -I "$url/metrics")" = 200
t_check "POST /metrics: 405" test "$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -d x "$url/metrics")" = 405
t_check "GET /nope: 404" test "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$url/nope")" = 404
t_check "content type is the text format 0.0.4" bash -c \
    "curl -s -m 5 -D - -o /dev/null '$url/metrics' | grep -qi '^content-type: text/plain; version=0.0.4'"

# ---- no metrics-port; a taken one ------------------------------------------
p=$(t_free_port)
t_description "$T_TMP/plain.xml" "pl$$" 1 "$p"
t_start_clusterd "$T_TMP/plain.xml" 1 "$T_TMP/plain.log" || t_fail "plain clusterd"
listening=$(ss -Htlnp | grep -c "pid=$T_LAST_PID,")
t_check "without metrics-port: only port and pub-port listen ($listening)" test "$listening" -eq 2
t_stop_services

mp=$(t_free_port)
sed "s|pub-port=\"$((p + 1))\"|pub-port=\"$((p + 1))\" metrics-port=\"$mp\"|" "$T_TMP/plain.xml" >"$T_TMP/taken.xml"
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$mp" &
T_PIDS+=($!)
t_wait_for 5 bash -c "ss -Htln 'sport = :$mp' | grep -q ." || t_fail "the port holder did not listen"
"$CLUSTERD" --config "$T_TMP/taken.xml" --node 1 2>"$T_TMP/taken.log"
rc=$?
t_check "a taken metrics-port: clusterd exits 1 ($rc)" test "$rc" -eq 1
t_check "... saying so" grep -q "metrics-listen.*port=$mp" "$T_TMP/taken.log"

t_done
