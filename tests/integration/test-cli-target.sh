#!/bin/bash
# test-cli-target - which node `cairn` asks when one is down (as root): a
# 3-node `cairn cluster up` whose node 1 clusterd is killed with -9 (its
# socket file stays behind). Default `status`, `nodes` and batch lines fall
# over to node 2 at once and say so (`answered_by`); `--node 1`, an
# `--endpoint` on the dead socket and `nodes --watch --node 1` fail at once
# with `unavailable`, exit 3, naming the socket. The same for ghostd:
# `checkpoint --check` falls over, `--node 1` fails at once. Per-command
# help, and checkpoint/restart figures printed with at most 3 decimals (a
# real checkpoint of a `sleep` through the cluster's ghostd). "At once" is
# asserted as under 1 s against a --timeout of 3000 ms: the bug was a wait
# of the whole timeout. Skips (77) without root or netns.
. "$(dirname "$0")/lib.sh"

t_require_netns

name="t$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT

# run CMD...: runs CMD; sets OUT, ERR, RC and MS (its wall time in ms).
run() {
    local t0 t1
    t0=$(date +%s%N)
    OUT=$("$@" 2>"$T_TMP/err"); RC=$?
    t1=$(date +%s%N)
    ERR=$(cat "$T_TMP/err")
    MS=$(( (t1 - t0) / 1000000 ))
}

# fast WHAT: the last run took less than 1 s.
fast() { t_check "$1 took ${MS} ms (< 1000)" [ "$MS" -lt 1000 ]; }

# down WHAT SOCKET: the last run failed at once with unavailable, exit 3,
# naming SOCKET and the missing listener.
down() {
    t_check "$1: exit 3 (got $RC: $ERR)" [ "$RC" -eq 3 ]
    t_check "$1: unavailable, names $2 and the missing listener" jq -e \
        --arg s "$2" '.error.code == "unavailable" and (.error.message |
        contains($s) and contains("no listener (connection refused)"))' <<<"$ERR"
    fast "$1"
}

# decimals_ok JSON FIELD...: each FIELD's number in the raw JSON text has at
# most 3 decimals (jq would reformat it: look at the text itself).
decimals_ok() {
    local json=$1 f v; shift
    for f in "$@"; do
        v=$(grep -oE "\"$f\":[^,}]+" <<<"$json" | head -1 | cut -d: -f2)
        [[ "$v" =~ ^[0-9]+(\.[0-9]{1,3})?$ ]] || { echo "  $f is '$v'" >&2; return 1; }
    done
}

up=$("$CAIRN" cluster up --nodes 3) || { t_fail "cluster up exit $?"; t_done; }
svc_pid() {
    jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid' <<<"$up"
}
run1="$CAIRN_RUN_BASE/$name/1"
C=("$CAIRN" --timeout 3000)

# ---- clusterd of node 1 killed: its socket file stays ---------------------
pid=$(svc_pid 1 clusterd)
kill -9 "$pid"
for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
t_check "node 1 clusterd is gone" bash -c "! kill -0 $pid 2>/dev/null"
t_check "its socket file stays" [ -S "$run1/clusterd.sock" ]

run "${C[@]}" status
t_check "default status succeeds (exit $RC: $ERR)" [ "$RC" -eq 0 ]
t_check "default status names the node that answered" jq -e \
    '.answered_by == {"id": 2, "name": "n2"} and .node.id == 2' <<<"$OUT"
fast "default status"

run "${C[@]}" nodes
t_check "default nodes succeeds (exit $RC: $ERR)" [ "$RC" -eq 0 ]
t_check "default nodes names the node that answered" jq -e \
    '.answered_by == {"id": 2, "name": "n2"} and .self == 2 and (.nodes | length == 3)' <<<"$OUT"
fast "default nodes"

run "${C[@]}" --node 1 status
down "--node 1 status" "$run1/clusterd.sock"
run "${C[@]}" --node n1 nodes
down "--node n1 nodes" "$run1/clusterd.sock"
run "${C[@]}" --endpoint "ipc://$run1/clusterd.sock" status
down "--endpoint on the dead socket" "$run1/clusterd.sock"
run "${C[@]}" --node 1 nodes --watch --count 1
down "--node 1 nodes --watch" "$run1/clusterd.sock"
t_check "nodes --watch printed nothing" [ -z "$OUT" ]

run "${C[@]}" batch <<<'["status"]
{"id":"one","args":["--node","1","status"]}'
t_check "batch: default line answered by node 2" jq -se \
    '.[0].ok and .[0].result.answered_by.id == 2' <<<"$OUT"
t_check "batch: --node 1 line unavailable, exit 3" jq -se \
    '.[1].id == "one" and (.[1].ok | not) and .[1].exit == 3 and .[1].error.code == "unavailable"' <<<"$OUT"
fast "batch of both"

# ---- help -----------------------------------------------------------------
run "$CAIRN" help checkpoint
t_check "help checkpoint: exit 0" [ "$RC" -eq 0 ]
t_check "help checkpoint: the one command" jq -e \
    '.command == "checkpoint" and .args == "PID" and (.options | length > 0) and .table == true and (has("commands") | not)' <<<"$OUT"
run "$CAIRN" checkpoint --help
t_check "checkpoint --help: the one command" jq -e '.command == "checkpoint" and (has("commands") | not)' <<<"$OUT"
run "$CAIRN" help node add
t_check "help node add: the one command" jq -e '.command == "node add" and .table == false' <<<"$OUT"
run "$CAIRN" help frob nodes
t_check "help frob nodes: exit 100 (got $RC)" [ "$RC" -eq 100 ]
t_check "help frob nodes: usage naming the words" jq -e \
    '.error.code == "usage" and (.error.message | contains("frob nodes"))' <<<"$ERR"
run "$CAIRN" help
t_check "help: every command" jq -e '(.commands | length > 10) and (.commands | map(select(.table)) | map(.command)) == ["status","nodes","config check","keys generate","keys list","checkpoint","restart","migrate","run","ps","signal","kill","wait","sched show","barrier","sync ls","sync show","sync destroy","dsm ls","dsm show","dsm rm","selftest"]' <<<"$OUT"

# ---- ghostd: real checkpoint figures, then node 1's ghostd killed ----------
# sleep_on N: a sleep in node N's network namespace, where that node's ghostd
# would restore it (one in the host's is refused: its own net namespace);
# sets V.
sleep_on() {
    ip netns exec "cairn-$name-$1" sleep 1000 </dev/null >/dev/null 2>&1 &
    V=$!
    T_PIDS+=("$V")
}
sleep_on 1
run "${C[@]}" checkpoint "$V" --leave-running --dir "$T_TMP/ck"
t_check "checkpoint of a sleep (exit $RC: $ERR)" [ "$RC" -eq 0 ]
t_check "checkpoint: freeze_ms, dump_ms with at most 3 decimals ($OUT)" decimals_ok "$OUT" freeze_ms dump_ms
t_check "checkpoint: answered by node 1" jq -e '.answered_by == {"id": 1, "name": "n1"}' <<<"$OUT"
run "${C[@]}" restart "$T_TMP/ck" --check
t_check "restart --check (exit $RC: $ERR)" [ "$RC" -eq 0 ]
t_check "restart --check: check_ms with at most 3 decimals ($OUT)" decimals_ok "$OUT" check_ms
run "${C[@]}" --table checkpoint "$V" --check
t_check "checkpoint --table (exit $RC: $ERR)" [ "$RC" -eq 0 ]
t_check "checkpoint --table: the KEY/VALUE view" grep -qE '^checkpointable +true$' <<<"$OUT"

pid=$(svc_pid 1 ghostd)
kill -9 "$pid"
for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
V1=$V
sleep_on 2
run "${C[@]}" checkpoint "$V" --check
t_check "default checkpoint --check falls over (exit $RC: $ERR)" [ "$RC" -eq 0 ]
t_check "default checkpoint --check answered by node 2" jq -e \
    '.checkpointable and .answered_by.id == 2' <<<"$OUT"
fast "default checkpoint --check"
run "${C[@]}" --node 1 checkpoint "$V1" --check
down "--node 1 checkpoint" "$run1/ghostd.sock"
kill "$V" "$V1"

t_done
