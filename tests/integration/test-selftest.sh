#!/bin/bash
# test-selftest.sh - cairn selftest on a 4-node local cluster (issue 25,
# item 2; docs/cli.md, "cairn selftest"):
#   - green: exit 0, every step passed or skipped; every service of the
#     appliance answers on every node; membership agrees on 4 alive nodes;
#     a lock, a checkpoint/restart and a migration there and back passed on
#     each node; dsm passed on each node (written there, read on the
#     next); stream skipped with "kernetd not running on node N", never
#     passed; --table; --node 2 tests node 2 alone;
#   - clean: no job left running, no lock or segment left, no image left
#     in $TMPDIR;
#   - red: node 2's syncd killed with SIGKILL, selftest --node 2: exit 3
#     (unavailable), nothing on stdout, the error names the failed steps
#     (status syncd@2, lock@2) and carries the report, whose other steps
#     ran; what it started is gone all the same.
# Every run is given --timeout 30000: the default 3 s per request is short
# for ASan daemons on a machine at a load of 50.
# Needs root and netns (skips with 77).
. "$(dirname "$0")/lib.sh"

t_require_netns
t_cluster_up st 4
export TMPDIR="$T_TMP/tmp"
mkdir -p "$TMPDIR"

# nothing_left: no job of the cluster runs, no syncd object, no image dir.
nothing_left() {
    "$CAIRN" ps | jq -e '[.jobs[] | select(.state != "exited")] | length == 0' >/dev/null &&
        "$CAIRN" sync ls | jq -e '.objects == []' >/dev/null &&
        "$CAIRN" dsm ls | jq -e '.segments == []' >/dev/null &&
        [ -z "$(ls -A "$TMPDIR")" ]
}

# ---- green ---------------------------------------------------------------
out=$("$CAIRN" --timeout 30000 selftest 2>"$T_TMP/err"); rc=$?
t_check "selftest: exit 0 (exit $rc: $(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
t_json_check "selftest: ok, nothing failed, nodes 1-4" "$out" \
    '.ok and .failed == 0 and .nodes == [1,2,3,4] and .passed > 0 and (.ms > 0)'
t_json_check "selftest: every step passed or skipped, each with its time" "$out" \
    'all(.steps[]; (.result == "passed" or .result == "skipped") and (.ms | type) == "number")'
for svc in clusterd ghostd dsmd syncd probed sched; do
    t_json_check "status $svc passed on every node" "$out" \
        "[.steps[] | select(.step == \"status\" and .service == \"$svc\" and .result == \"passed\") | .node] == [1,2,3,4]"
done
t_json_check "membership: one step, 4 alive nodes agree" "$out" \
    '[.steps[] | select(.step == "membership")] | length == 1 and .[0].result == "passed" and .[0].detail.alive == [1,2,3,4]'
for step in lock checkpoint migrate; do
    t_json_check "$step passed on every node" "$out" \
        "[.steps[] | select(.step == \"$step\" and .result == \"passed\") | .node] == [1,2,3,4]"
done
t_json_check "migrate: there and back through another node" "$out" \
    'all(.steps[] | select(.step == "migrate"); .detail.via != .node and .detail.there_ms > 0 and .detail.back_ms > 0)'
t_json_check "checkpoint: an image, restored under a new pid" "$out" \
    'all(.steps[] | select(.step == "checkpoint"); .detail.image_bytes > 0 and .detail.pid > 0)'
t_json_check "dsm passed on every node, read back on the next" "$out" \
    '[.steps[] | select(.step == "dsm" and .result == "passed" and .detail.read_on != .node) | .node] == [1,2,3,4]'
t_json_check "stream skipped on every node: kernetd not running" "$out" \
    '[.steps[] | select(.step == "stream")] | length == 4 and all(.result == "skipped" and (.reason | test("^kernetd not running on node [1-4]$")))'
t_check "green: nothing left behind (jobs, locks, images)" t_wait_for 5 nothing_left

out=$("$CAIRN" --timeout 30000 --table selftest --node 2 2>"$T_TMP/err"); rc=$?
t_check "--table --node 2: exit 0 (exit $rc: $(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
t_check "--table: the step rows" grep -qE '^checkpoint +- +2 +passed ' <<<"$out"
t_check "--table: the summary line" grep -qE '^[0-9]+ passed, 0 failed, [0-9]+ skipped in [0-9]+ ms$' <<<"$out"
t_check "--node 2: node 2 alone" bash -c "! grep -qE '^(lock|checkpoint|migrate) +- +[134] ' <<<\"\$1\"" _ "$out"
t_check "--node 9: usage error" t_expect_error 100 usage "$CAIRN" selftest --node 9
t_check "--node 2 --all: usage error" t_expect_error 100 usage "$CAIRN" selftest --node 2 --all

# ---- red: node 2's syncd killed ---------------------------------------------
config="$CAIRN_RUN_BASE/$T_CLUSTER/cluster.xml"
pid=$(pgrep -f -- "syncd --config $config --node 2\$")
t_check "node 2's syncd found" [ -n "$pid" ]
kill -9 "$pid"
t_check "node 2's syncd gone" t_wait_for 5 bash -c "! kill -0 $pid 2>/dev/null"
out=$("$CAIRN" --timeout 30000 selftest --node 2 2>"$T_TMP/err"); rc=$?
err=$(cat "$T_TMP/err")
t_check "red: exit 3 (exit $rc)" [ "$rc" -eq 3 ]
t_check "red: nothing on stdout" [ -z "$out" ]
t_json_check "red: the error names the failed steps ($(jq -r .error.message <<<"$err"))" "$err" \
    '.error.code == "unavailable" and (.error.message | test("steps failed \\(status syncd@2, lock@2\\)"))'
t_json_check "red: the report in the error: the two failed, the rest ran" "$err" \
    '.error.report.ok == false and .error.report.failed == 2 and .error.report.nodes == [2] and ([.error.report.steps[] | select(.result == "failed") | .step] == ["status", "lock"]) and ([.error.report.steps[] | select(.result == "passed") | .step] | index("checkpoint") != null and index("migrate") != null)'
t_check "red: nothing left behind either" t_wait_for 5 nothing_left

t_done
