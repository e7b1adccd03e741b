#!/bin/bash
# test-probed.sh - probed on a 4-node local cluster of 0.5 CPU each
# (issue 20, item 1; docs/scheduler.md "probed").
#
# - `cairn load` on each node shows its own vector (cpus 0.5: the node
#   cgroup's quota) and, within a few gossip periods, vectors of other
#   nodes -- never its own, never more than the window.
# - A CPU-busy job on node 2 shows in node 2's cpu_load and in its job
#   list (with its cpu), and in node 2's vector as other nodes know it.
# - SIGHUP with a changed probe period and window: applied without a
#   restart (same pid), the new period and window shown, the window never
#   larger than the new size.
# - An unknown probe: probed refuses to start with the reason (exit 1);
#   on a reload the running probes stay, the reason is logged and shown in
#   `cairn load`'s config_error, and probed keeps serving and sampling.
# - No sanitizer report in any probed's log.
# Skips (77) without root, netns or a probed binary.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
PROBED="$CAIRN_BUILD/services/probed/probed"
[ -x "$PROBED" ] || { echo "SKIP: no probed built"; exit 77; }

name="p$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
unset CAIRN_NODE CAIRN_CONFIG
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT
XML="$CAIRN_RUN_BASE/$name/cluster.xml"

# wait_for S CMD...: CMD succeeds within S seconds (a deadline, not a count
# of tries: on a loaded machine one `cairn load` may take its whole timeout).
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# load_ok K FILTER: node K's `cairn load` matches the jq FILTER.
load_ok() {
    local k=$1 out; shift
    out=$("$CAIRN" --node "$k" load 2>/dev/null) && [ -n "$out" ] && jq -e "$@" <<<"$out" >/dev/null
}

# probed_pid K: the pid of node K's probed, from this cluster's status.
probed_pid() {
    "$CAIRN" cluster status --name "$name" |
        jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .services[] | select(.name == "probed") | .pid'
}

up=$("$CAIRN" cluster up --nodes 4 --cpus 0.5) || { t_fail "cluster up exit $?"; t_done; }
jq -e '[.nodes[0].services[] | .name] | index("probed")' <<<"$up" >/dev/null ||
    { echo "SKIP: the cluster runs no probed"; exit 77; }
for id in 1 2 3 4; do
    t_check "node $id alive on all" t_wait_state 15 "$id" alive 1 2 3 4
done

# ---- each node's view ------------------------------------------------------

for k in 1 2 3 4; do
    t_check "node $k: its own vector, 0.5 CPU, every probe sampled without error" \
        wait_for 10 load_ok "$k" --argjson k "$k" \
        '.local.node == $k and .local.cpus == 0.5 and .local.mem_limit_bytes > 0 and
         .local.missing == [] and (.probes | length) == 5 and
         all(.probes[]; .samples > 0 and .error == null) and .config_error == null'
    t_check "node $k: vectors of other nodes, never its own, at most the window" \
        wait_for 15 load_ok "$k" --argjson k "$k" \
        '(.known | length) >= 2 and (.known | length) <= .gossip.window and
         all(.known[]; .node != $k and .node >= 1 and .node <= 4 and .cpus == 0.5 and
                       (has("job") | not)) and
         .gossip.sent > 0 and .gossip.received > 0'
done

# ---- a CPU-busy job on node 2 -------------------------------------------------

job=$("$CAIRN" --node 2 run -- sh -c 'while :; do :; done' | jq -r .gpid)
[ -n "$job" ] && [ "$job" != null ] || t_fail "cairn run --node 2 gave no gpid"
t_check "node 2's cpu_load and job list show the busy job ($job)" \
    wait_for 20 load_ok 2 --arg g "$job" \
    '.local.cpu_load >= 0.05 and .local.jobs >= 1 and
     any(.local.job[]; .gpid == $g and .cpu >= 0.05 and .rss_bytes > 0 and
                       .migration_cost_ms > 0)'
t_check "another node knows node 2 is busy" \
    wait_for 20 eval 'load_ok 1 "any(.known[]; .node == 2 and .jobs >= 1 and .cpu_load >= 0.05)" ||
                      load_ok 3 "any(.known[]; .node == 2 and .jobs >= 1 and .cpu_load >= 0.05)" ||
                      load_ok 4 "any(.known[]; .node == 2 and .jobs >= 1 and .cpu_load >= 0.05)"'
t_check "node 1 shows no job of its own" load_ok 1 '.local.jobs == 0 and .local.job == []'
"$CAIRN" kill "$job" >/dev/null || t_fail "cairn kill $job"
t_check "node 2's job list empties once the job is gone" \
    wait_for 15 load_ok 2 '.local.jobs == 0'

# ---- SIGHUP: a new period and window without a restart ----------------------------

pid1=$(probed_pid 1)
cp "$XML" "$T_TMP/cluster.orig.xml"
sed -i -e 's|<probe name="cpu" period-ms="1000"/>|<probe name="cpu" period-ms="400"/>|' \
       -e 's|<scheduler policy="\([a-z-]*\)"|<scheduler policy="\1" window="2"|' "$XML"
grep -q 'period-ms="400"' "$XML" && grep -q 'window="2"' "$XML" ||
    t_fail "could not edit $XML"
kill -HUP "$pid1"
t_check "node 1 runs cpu every 400 ms, gossips every 400 ms, keeps 2 vectors" \
    wait_for 10 load_ok 1 \
    'any(.probes[]; .name == "cpu" and .period_ms == 400) and .gossip.period_ms == 400 and
     .gossip.window == 2 and .config_error == null'
t_check "node 1's probed was not restarted (pid $pid1)" \
    eval '[ "$(probed_pid 1)" = "$pid1" ] && kill -0 "$pid1"'
over=0
for i in $(seq 1 10); do
    load_ok 1 '(.known | length) <= 2' || over=$((over + 1))
    sleep 0.3
done
t_check "node 1's window never above 2 after the reload" [ "$over" -eq 0 ]
t_check "the other nodes keep their period (they were not signalled)" \
    load_ok 2 'any(.probes[]; .name == "cpu" and .period_ms == 1000)'

# ---- an unknown probe -------------------------------------------------------------

cp "$XML" "$T_TMP/cluster.good.xml"
sed -i 's|<probe name="memory" period-ms="1000"/>|&<probe name="bogus" period-ms="1000"/>|' "$XML"
grep -q 'name="bogus"' "$XML" || t_fail "could not add the bogus probe to $XML"

out=$("$PROBED" --config "$XML" --node 3 2>&1); rc=$?
t_check "probed refuses to start with an unknown probe (exit 1)" [ "$rc" -eq 1 ]
t_check "and says why: $(grep -m1 'unknown probe' <<<"$out")" \
    grep -q "unknown probe 'bogus' (probed knows: cpu, runqueue, memory, jobs, migration-cost)" <<<"$out"

samples() { "$CAIRN" --node 1 load | jq '.probes[] | select(.name == "memory") | .samples'; }
log1="$CAIRN_RUN_BASE/$name/1/probed.log"
kill -HUP "$pid1"
t_check "on reload: the refusal is shown by cairn load" \
    wait_for 10 load_ok 1 '.config_error | test("unknown probe .bogus.")'
t_check "on reload: the refusal is logged" \
    wait_for 5 grep -q "refused by probed: unknown probe 'bogus'" "$log1"
t_check "the running probes stay (cpu every 400 ms, no bogus)" \
    load_ok 1 'any(.probes[]; .name == "cpu" and .period_ms == 400) and
               all(.probes[]; .name != "bogus") and (.probes | length) == 5'
s0=$(samples); sleep 2.5; s1=$(samples)
t_check "probed keeps sampling after the refused reload ($s0 -> $s1)" [ "$s1" -gt "$s0" ]
t_check "and is the same process (pid $pid1)" eval '[ "$(probed_pid 1)" = "$pid1" ] && kill -0 "$pid1"'

cp "$T_TMP/cluster.good.xml" "$XML"
kill -HUP "$pid1"
t_check "a good reload clears config_error" wait_for 10 load_ok 1 '.config_error == null'

# ---- bad input ---------------------------------------------------------------------

err=$("$CAIRN" --node 9 load 2>&1 >/dev/null); rc=$?
t_check "cairn load --node 9 (no such node): a JSON error, exit $rc" \
    eval '[ "$rc" -ne 0 ] && jq -e ".error.code" <<<"$err" >/dev/null'
err=$("$CAIRN" load extra 2>&1 >/dev/null); rc=$?
t_check "cairn load with an argument: usage error" \
    eval '[ "$rc" -eq 100 ] && jq -e ".error.code == \"usage\"" <<<"$err" >/dev/null'

for k in 1 2 3 4; do
    log="$CAIRN_RUN_BASE/$name/$k/probed.log"
    t_check "node $k: no sanitizer report in probed's log" \
        eval '! grep -qE "ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:" "$log"'
done
t_done
