#!/bin/bash
# test-ghostd-races.sh - ghostd's table changing under requests that wait
# (the heap corruption seen under issue 20's scheduler test):
#   - a cluster ps answered from the loop after a job it listed left this
#     node's table (moved away meanwhile, new jobs launched in its place):
#     every job listed is whole -- its gpid, node and argv as they were --
#     and no ghostd reports a use after free;
#   - a job's OOM score is above its ghostd's: the node's memory running
#     out kills the job that outgrew it, not ghostd (which died so, with
#     nothing logged).
# Run it under build-asan too: a sanitizer report in a ghostd's log fails it.
# Needs root and netns (skips with 77).
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
command -v jq >/dev/null || { echo "SKIP: no jq"; exit 77; }

name="gr$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name" CAIRN
stopped=""
s_cleanup() {
    [ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null
    [ -n "${KEEP_LOGS:-}" ] && cp -r "$CAIRN_RUN_BASE/$name" "$KEEP_LOGS" 2>/dev/null
    "$CAIRN" cluster down --name "$name" >/dev/null 2>&1
    t_cleanup
}
trap s_cleanup EXIT
chmod 755 "$T_TMP"

"$CAIRN" cluster up --nodes 3 --mem 1G --start-timeout 180000 >"$T_TMP/up.json" ||
    { t_fail "cluster up"; t_done; }
for k in 1 2 3; do t_check "node $k alive" t_wait_state 30 "$k" alive 1 2 3; done
c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
pid_of() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}
t_ghostds_see 3

# ---- ps answered after a job it listed left the table --------------------------------
j=$(c 1 run --node 1 --name mover -- sleep 1000)
g=$(jq -r .gpid <<<"$j"); hp=$(jq -r .host_pid <<<"$j")
t_check "a job runs on node 1 ($g)" test -n "$g" -a "$g" != null
# the node's memory running out kills the job, not a daemon (no log then)
adj_job=$(cat "/proc/$hp/oom_score_adj"); adj_gd=$(cat "/proc/$(pid_of 1 ghostd)/oom_score_adj")
t_check "the job's oom_score_adj ($adj_job) is above its ghostd's ($adj_gd), at least 0" \
    test "$adj_job" -gt "$adj_gd" -a "$adj_job" -ge 0
# node 3's ghostd stopped: node 1's ps waits for it, this node's part made already
stopped=$(pid_of 3 ghostd)
kill -STOP "$stopped"
c 1 ps --timeout 240000 >"$T_TMP/ps.json" 2>"$T_TMP/ps.err" &
ps_pid=$!
t0=$SECONDS
sleep 2   # the ps reaches node 1 (its local part made) before the move
out=$(c 1 migrate "$g" --to 2 --timeout 120000 2>&1)
if t_jq '.to == 2 and .gpid == "'"$g"'"' "$out"; then
    t_ok "meanwhile the job moved to node 2"
else
    t_fail "meanwhile the job moved to node 2: ${out:0:400}"
fi
# the job's memory in the table goes to new jobs
for i in 1 2 3 4; do c 1 run --node 1 --name "filler-$i" -- sleep 1000 >/dev/null; done
kill -CONT "$stopped"; stopped=""
echo "node 3's ghostd stopped for $((SECONDS - t0)) s"
wait "$ps_pid"
t_check "the ps answered (exit 0)" test $? -eq 0
ps=$(cat "$T_TMP/ps.json")
t_json_check "every job listed is whole: a gpid, a node, sleep 1000" "$ps" \
    '(.jobs | length) >= 1 and all(.jobs[]; (.gpid | test("^[0-9]+\\.[0-9]+$")) and
     (.node >= 1 and .node <= 3) and .argv == ["sleep", "1000"])'
t_json_check "the moved job is listed as node 1 had it when asked" "$ps" \
    'any(.jobs[]; .gpid == "'"$g"'" and .node == 1 and .name == "mover")'
if t_jq '[.nodes[] | select(.reachable)] | length == 3' "$ps"; then
    t_ok "every node answered, node 3 once its ghostd went on (the caller's --timeout, not 3 s)"
else
    t_fail "every node answered: $(jq -c .nodes <<<"$ps")"
fi

# ---- the daemons' logs: no sanitizer report ---------------------------------------------
for k in 1 2 3; do
    log="$CAIRN_RUN_BASE/$name/$k/ghostd.log"
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|double free' "$log" 2>/dev/null; then
        t_fail "ghostd $k: sanitizer report in its log"
        grep -A30 -E 'ERROR: AddressSanitizer|runtime error:|double free' "$log" >&2
    fi
    t_check "ghostd $k still runs" kill -0 "$(pid_of "$k" ghostd)"
done
t_done
