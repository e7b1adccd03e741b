#!/bin/bash
# test-cli-errors.sh - the `cairn` command's contract (docs/cli.md).
#
# Asserts what scripts rely on: stdout holds exactly one JSON document or
# nothing; every failure is one {"error":{...}} JSON line on stderr with the
# documented code and exit status; usage errors name the bad argument;
# config check locates errors; config generate round-trips; a node that is
# not running is "unavailable" at once; and, against a real clusterd started
# here, status / nodes / --table / batch / target resolution.
#
# Environment (set by meson): CAIRN_BUILD (build root), CAIRN_TESTDATA
# (tests/data). Exit 0 pass, 1 fail, 77 skip (no jq or python3).
set -u

CAIRN="${CAIRN_BUILD:?CAIRN_BUILD not set}/cli/cairn"
CLUSTERD="$CAIRN_BUILD/services/clusterd/clusterd"
TESTDATA="${CAIRN_TESTDATA:-}"
command -v jq >/dev/null || { echo "skip: jq not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
[ -x "$CAIRN" ] || { echo "FAIL: $CAIRN not built"; exit 1; }

unset CAIRN_CONFIG CAIRN_CLUSTER CAIRN_RUN_BASE CAIRN_NODE
TMP=$(mktemp -d)
DAEMON_PID=
FAILS=0
CHECKS=0

cleanup() {
    if [ -n "$DAEMON_PID" ]; then
        kill "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

ok()   { CHECKS=$((CHECKS + 1)); }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "not ok - $*"; }
check() { # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
    local what="$1"; shift
    if "$@"; then ok; else fail "$what"; fi
}

now_ms() { date +%s%3N; }

# run ARGS...: runs cairn with stdin from /dev/null; sets RC, OUT, ERR, MS.
run() {
    local t0
    t0=$(now_ms)
    "$CAIRN" "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
    RC=$?
    MS=$(( $(now_ms) - t0 ))
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}

# The stream is exactly one JSON value.
one_json() { [ "$(printf '%s' "$1" | jq -s 'length' 2>/dev/null)" = 1 ]; }
# jq -e -s FILTER FILE: the file's JSON values as one array.
jqs() { jq -e -s "$1" "$2" >/dev/null 2>&1; }
# jq -e FILTER on a JSON text.
jqe() { printf '%s' "$1" | jq -e "$2" >/dev/null 2>&1; }

# expect_error EXIT CODE ARGS...: fails with that exit status and error code,
# nothing on stdout, one JSON error object on stderr.
expect_error() {
    local rc="$1" code="$2"; shift 2
    run "$@"
    check "cairn $*: exit $RC, want $rc (stderr: $ERR)" [ "$RC" = "$rc" ]
    check "cairn $*: stdout not empty: $OUT" [ -z "$OUT" ]
    check "cairn $*: stderr is not one JSON document: $ERR" one_json "$ERR"
    check "cairn $*: error code, want $code: $ERR" \
        jqe "$ERR" ".error.code == \"$code\" and (.error.message | length > 0)"
}

# expect_usage NEEDLE ARGS...: usage error whose message names NEEDLE.
expect_usage() {
    local needle="$1"; shift
    expect_error 100 usage "$@"
    check "cairn $*: message does not name '$needle': $ERR" \
        jqe "$ERR" ".error.message | contains(\"$needle\")"
}

# expect_ok ARGS...: exit 0, one JSON document on stdout, empty stderr.
expect_ok() {
    run "$@"
    check "cairn $*: exit $RC, want 0 (stderr: $ERR)" [ "$RC" = 0 ]
    check "cairn $*: stdout is not one JSON document: $OUT" one_json "$OUT"
    check "cairn $*: stderr not empty: $ERR" [ -z "$ERR" ]
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- usage errors ------------------------------------------------------------
expect_usage frobnicate frobnicate
expect_usage frobnicate config frobnicate
expect_usage config config
expect_usage "no command" --timeout 100
expect_usage --bogus status --bogus
expect_usage --bogus --bogus version
expect_usage --watch status --watch
expect_usage --timeout status --timeout
expect_usage --node --node
expect_usage abc --timeout abc status
expect_usage 0 status --timeout 0
expect_usage -3 --retries -3 status
expect_usage --table --table version
expect_usage FILE config check
expect_usage extra.xml config check a.xml extra.xml
expect_usage --hosts config generate
expect_usage "empty host" config generate --hosts a,,b
expect_usage --table= status --table=yes

# --- help and version --------------------------------------------------------
for h in --help help "-h"; do
    # shellcheck disable=SC2086
    expect_ok $h
    check "cairn $h: no command list" \
        jqe "$OUT" '[.commands[].command] | index("config check") != null and index("batch") != null'
    check "cairn $h: no global options" \
        jqe "$OUT" '[.global_options[].option] | index("--timeout") != null'
done
# A command's --help is that command's object alone (docs/cli.md, help).
expect_ok status --help
check "cairn status --help: the status command alone" \
    jqe "$OUT" '.command == "status" and .table == true and (has("commands") | not)'
expect_ok help status
check "cairn help status: the same object" \
    jqe "$OUT" '.command == "status" and .table == true and (has("commands") | not)'
expect_usage "'stat'" help stat
expect_ok version
VERSION=$(printf '%s' "$OUT" | jq -r .version)
check "version: $OUT" jqe "$OUT" '(.version | test("^[0-9]+\\.[0-9]+")) and .protocol == 1'

# --- config check ------------------------------------------------------------
# An invalid file of our own, with the error on a known line.
"$CAIRN" config generate --hosts 127.0.0.1,127.0.0.2 --output "$TMP/two.xml" \
    >/dev/null || fail "config generate --output two.xml"
line=$(grep -n 'id="2"' "$TMP/two.xml" | cut -d: -f1)
sed 's/id="2"/id="1"/' "$TMP/two.xml" > "$TMP/dup-id.xml"
expect_error 2 invalid-config config check "$TMP/dup-id.xml"
check "dup id: want file and line $line, element node: $ERR" \
    jqe "$ERR" ".error.file == \"$TMP/dup-id.xml\" and .error.line == $line and .error.element == \"node\""
printf '<cluster name="x">\n  <services>\n' > "$TMP/truncated.xml"
expect_error 2 invalid-config config check "$TMP/truncated.xml"
check "truncated: want a line > 0: $ERR" jqe "$ERR" '.error.line > 0'
expect_error 2 invalid-config config check "$TMP/does-not-exist.xml"
check "missing file: want file named: $ERR" \
    jqe "$ERR" ".error.file == \"$TMP/does-not-exist.xml\""
# The shared invalid descriptions, when present: each is located.
if [ -n "$TESTDATA" ] && [ -d "$TESTDATA/desc" ]; then
    for f in "$TESTDATA"/desc/bad-*.xml; do
        [ -e "$f" ] || continue
        expect_error 2 invalid-config config check "$f"
        check "$(basename "$f"): want file and line > 0: $ERR" \
            jqe "$ERR" "(.error.line > 0) and (.error.file | length > 0)"
    done
    for f in "$TESTDATA"/desc/valid-*.xml; do
        [ -e "$f" ] || continue
        expect_ok config check "$f"
        check "$(basename "$f"): $OUT" jqe "$OUT" '.valid == true and .nodes >= 1'
    done
fi
run config check --table "$TMP/two.xml"
check "config check --table: exit $RC" [ "$RC" = 0 ]
check "config check --table: not a table: $OUT" grep -Eq '^nodes +2$' "$TMP/out"
check "config check --table: printed JSON" \
    bash -c '! jq -e . "$1" >/dev/null 2>&1' _ "$TMP/out"

# --- config generate round trip ---------------------------------------------
expect_ok config generate --hosts a=127.0.0.1,b=127.0.0.2,127.0.0.3 \
    --name rt --appliance frontend --output "$TMP/rt.xml"
check "generate --output: $OUT" \
    jqe "$OUT" ".file == \"$TMP/rt.xml\" and .cluster == \"rt\" and .nodes == 3"
check "generate left a temp file" [ "$(ls "$TMP" | grep -c '^rt\.xml\.')" = 0 ]
expect_ok config check "$TMP/rt.xml"
check "round trip: $OUT" \
    jqe "$OUT" '.valid and .cluster == "rt" and .nodes == 3 and .appliances == ["frontend"]'
expect_ok config generate --name rt --hosts a=127.0.0.1,b=127.0.0.2,127.0.0.3 \
    --appliance=frontend
check "generate without --output: $OUT" jqe "$OUT" '.cluster == "rt" and .nodes == 3'
printf '%s' "$OUT" | jq -j .xml > "$TMP/rt-stdout.xml"
check "generate: --output and xml differ" cmp -s "$TMP/rt.xml" "$TMP/rt-stdout.xml"
# A missing directory is made (README: --output /etc/cairn/cluster.xml);
# one that cannot be made, a file being in the way, is a system error.
expect_ok config generate --hosts 127.0.0.1 --output "$TMP/no/such/dir/c.xml"
check "generate made no/such/dir/c.xml" test -s "$TMP/no/such/dir/c.xml"
: > "$TMP/afile"
expect_error 111 system config generate --hosts 127.0.0.1 \
    --output "$TMP/afile/dir/c.xml"

# --- a node that is not running ----------------------------------------------
P1=$(free_port); P2=$(free_port)
while [ "$P2" = "$P1" ]; do P2=$(free_port); done
"$CAIRN" config generate --hosts 127.0.0.1 --name cli --run-base "$TMP/run" \
    --output "$TMP/gen.xml" >/dev/null || fail "config generate gen.xml"
sed -e "s/<service name=\"clusterd\" port=\"[0-9]*\" pub-port=\"[0-9]*\"/<service name=\"clusterd\" port=\"$P1\" pub-port=\"$P2\"/" \
    "$TMP/gen.xml" > "$TMP/cluster.xml"
check "could not set the clusterd ports" grep -q "port=\"$P1\"" "$TMP/cluster.xml"
expect_error 3 unavailable --timeout 3000 status --config "$TMP/cluster.xml"
check "unavailable took ${MS} ms, want well under the 3000 ms timeout" [ "$MS" -lt 1000 ]
expect_error 3 unavailable nodes --config "$TMP/cluster.xml"
# No description anywhere: unavailable, naming the paths tried.
if [ ! -e /etc/cairn/cluster.xml ]; then
    expect_error 3 unavailable --run-base "$TMP/nowhere" status
    check "no description: paths not named: $ERR" \
        jqe "$ERR" ".error.message | contains(\"$TMP/nowhere/cairn/cluster.xml\") and contains(\"--config\")"
fi
expect_error 3 unavailable status --config "$TMP/absent.xml"
expect_error 2 invalid-config status --config "$TMP/dup-id.xml"
expect_usage "'7'" status --config "$TMP/cluster.xml" --node 7
# An endpoint nobody answers: a timeout, within the deadline. (A tcp
# endpoint reads the description found for its CURVE keys: this one's, mode
# none, not a local cluster's that may run on this machine.)
expect_error 3 timeout --endpoint "tcp://127.0.0.1:$P1" --config "$TMP/cluster.xml" \
    --timeout 400 --retries 1 status
check "timeout took ${MS} ms for --timeout 400" [ "$MS" -ge 350 -a "$MS" -lt 2000 ]
# A socket file nobody listens on, as a daemon killed with -9 leaves behind:
# unavailable at once (one connect() is refused), not a wait of --timeout.
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TMP/stale.sock"
expect_error 3 unavailable --endpoint "ipc://$TMP/stale.sock" --timeout 3000 status
check "stale socket: message names it and the missing listener: $ERR" \
    jqe "$ERR" ".error.message | contains(\"$TMP/stale.sock\") and contains(\"no listener (connection refused)\")"
check "stale socket: took ${MS} ms, not the 3000 ms timeout" [ "$MS" -lt 1000 ]

# --- a real clusterd ---------------------------------------------------------
[ -x "$CLUSTERD" ] || { fail "$CLUSTERD not built"; exit 1; }
"$CLUSTERD" --config "$TMP/cluster.xml" --node 1 2>"$TMP/clusterd.log" &
DAEMON_PID=$!
SOCK="$TMP/run/cli/1/clusterd.sock"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
if [ ! -S "$SOCK" ]; then
    fail "clusterd did not bind $SOCK within 5 s"; cat "$TMP/clusterd.log"; exit 1
fi

expect_ok status --config "$TMP/cluster.xml"
check "status fields: $OUT" jqe "$OUT" "
    .node.id == 1 and .node.name == \"node1\" and .node.address == \"127.0.0.1\"
    and .cluster == \"cli\" and .appliance == \"compute\"
    and (.services | index(\"clusterd\") != null)
    and .version == \"$VERSION\" and .pid == $DAEMON_PID and .uptime_ms >= 0"
expect_ok --config "$TMP/cluster.xml" nodes --timeout 2000
check "nodes fields: $OUT" jqe "$OUT" '
    .cluster == "cli" and .self == 1 and (.nodes | length) == 1
    and .nodes[0].id == 1 and .nodes[0].name == "node1"
    and .nodes[0].address == "127.0.0.1" and .nodes[0].appliance == "compute"
    and .nodes[0].state == "alive" and .nodes[0].last_heard_ms == 0
    and (.nodes[0].incarnation | type) == "number"'
# Target resolution without --config: env, then <run-base>/<cluster>/cluster.xml.
CAIRN_CONFIG="$TMP/cluster.xml" expect_ok nodes
check "CAIRN_CONFIG: $OUT" jqe "$OUT" '.self == 1'
cp "$TMP/cluster.xml" "$TMP/run/cli/cluster.xml"
CAIRN_RUN_BASE="$TMP/run" expect_ok --cluster cli status
check "run-base/cluster: $OUT" jqe "$OUT" ".pid == $DAEMON_PID"
expect_ok --run-base "$TMP/run" status --cluster cli --node node1
check "--node by name: $OUT" jqe "$OUT" '.node.id == 1'
expect_ok nodes --endpoint "ipc://$SOCK"
check "--endpoint: $OUT" jqe "$OUT" '.self == 1 and .cluster == null'

# --table views are plain aligned text, not JSON.
run status --table --config "$TMP/cluster.xml"
check "status --table: exit $RC ($ERR)" [ "$RC" = 0 ]
check "status --table: $OUT" grep -Eq '^node\.id +1$' "$TMP/out"
check "status --table: $OUT" grep -Eq "^pid +$DAEMON_PID$" "$TMP/out"
run nodes --table --config "$TMP/cluster.xml"
check "nodes --table: exit $RC ($ERR)" [ "$RC" = 0 ]
check "nodes --table header: $OUT" grep -Eq '^ +ID +NAME +ADDRESS +APPLIANCE +STATE' "$TMP/out"
check "nodes --table row: $OUT" grep -Eq '^\* +1 +node1 +127\.0\.0\.1 +compute +alive ' "$TMP/out"

# batch: one answer line per non-blank input line, in order.
printf '%s\n' '["status"]' '{"id": "bad", "args": [' '' '["frobnicate"]' \
    '{"id": "n", "args": ["nodes"]}' > "$TMP/batch.in"
"$CAIRN" --config "$TMP/cluster.xml" batch <"$TMP/batch.in" >"$TMP/out" 2>"$TMP/err"
RC=$?
check "batch: exit $RC, want 1" [ "$RC" = 1 ]
check "batch: stderr not empty: $(cat "$TMP/err")" [ ! -s "$TMP/err" ]
check "batch: want 4 lines: $(cat "$TMP/out")" [ "$(wc -l <"$TMP/out")" = 4 ]
check "batch: a line is not one JSON object" \
    bash -c 'while IFS= read -r l; do printf "%s" "$l" | jq -e "type == \"object\"" >/dev/null || exit 1; done <"$1"' _ "$TMP/out"
check "batch ok values: $(cat "$TMP/out")" \
    [ "$(jq -c -s '[.[].ok]' "$TMP/out")" = '[true,false,false,true]' ]
check "batch ids: $(cat "$TMP/out")" \
    [ "$(jq -c -s '[.[].id]' "$TMP/out")" = '[1,2,4,"n"]' ]
check "batch results: $(cat "$TMP/out")" jqs "
    .[0].result.pid == $DAEMON_PID and .[3].result.self == 1
    and .[1].error.code == \"usage\" and .[1].exit == 100
    and .[2].error.code == \"usage\" and (.[2].error.message | contains(\"frobnicate\"))" "$TMP/out"
printf '%s\n' '["version"]' '["--timeout", "5000", "nodes"]' '["batch"]' \
    | "$CAIRN" --config "$TMP/cluster.xml" batch >"$TMP/out" 2>"$TMP/err"
RC=$?
check "nested batch: exit $RC, want 1" [ "$RC" = 1 ]
check "nested batch: $(cat "$TMP/out")" \
    [ "$(jq -c -s '[.[].ok]' "$TMP/out")" = '[true,true,false]' ]
printf '["version"]\n["nodes"]\n' \
    | "$CAIRN" --config "$TMP/cluster.xml" batch >"$TMP/out" 2>"$TMP/err"
RC=$?
check "all-good batch: exit $RC, want 0" [ "$RC" = 0 ]

# A named cluster must be the one the description found describes
# (two.xml is cluster "cairn"): CAIRN_CONFIG with --cluster of another is a
# usage error naming both; a --config on the command line beats a
# CAIRN_CLUSTER from the environment.
CAIRN_CONFIG="$TMP/two.xml" expect_usage "describes cluster 'cairn'" --cluster beta status
CAIRN_CLUSTER=beta run --config "$TMP/two.xml" --timeout 500 status
check "CAIRN_CLUSTER=beta --config two.xml: not a usage error (exit $RC): $ERR" \
    [ "$RC" != 100 ]
CAIRN_CLUSTER=beta expect_usage "describes cluster 'cairn'" \
    --run-base "$TMP/no-such-base" --config "$TMP/two.xml" --cluster beta status
run --config "$TMP/two.xml" --cluster cairn --timeout 500 status
check "--cluster cairn --config two.xml: not a usage error (exit $RC): $ERR" \
    [ "$RC" != 100 ]

# Stopped: the node is unavailable again, quickly.
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
expect_error 3 unavailable --timeout 3000 status --config "$TMP/cluster.xml"
check "unavailable after stop took ${MS} ms" [ "$MS" -lt 1000 ]

echo "$CHECKS checks, $FAILS failed"
[ "$FAILS" = 0 ]
