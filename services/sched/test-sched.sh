#!/bin/bash
# test-sched.sh - the scheduler policies on a local cluster of 4 nodes of
# 0.5 CPU (issue 20; docs/scheduler.md, "sched-<policy>"). Asserts on the
# placements, migrations and decisions observed, never on wall time:
#
#   - sched-rr: `cairn run` without --node lands round robin, and the
#     count goes on across a swap to mosix and back (the decision log);
#   - sched-mosix balancing: 16 CPU-bound jobs of mixed lengths forced onto
#     node 1 end up spread over every node: the balance decisions in the
#     nodes' logs match `cairn ps`'s moves of every job, every job ends
#     with all its work done, and no job moved again within its hold (no
#     ping-pong);
#   - an idle node is fed: nodes busy with long jobs, node 4's short jobs
#     end, and a balance decision sends node 4 work within two probe
#     periods (gossip periods) of its last job's end;
#   - ushering: on a node of 256 MiB with a 100 MiB job, a job growing
#     toward 150 MiB is moved away before the node's limit is hit -- both
#     survive, the decision names the memory figures;
#   - sched-mem places on the node with the most free memory, and moves
#     one of two jobs off a node short of memory (and only one).
# Policies are swapped with `cairn sched swap` and the decisions read with
# `cairn sched log` (lib-sched.sh). The bad input -- a second policy on a
# node, a swap to a policy that does not exist -- is test-sched-place's,
# an unknown probe test-probed's.
# Needs root and netns (skips with 77), and a harness that runs sched.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
command -v jq >/dev/null || { echo "SKIP: no jq"; exit 77; }

name="sc$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name" CAIRN
WORK="$CAIRN_BUILD/services/sched/sched-work"
s_cleanup() {
    [ -n "${KEEP_LOGS:-}" ] && cp -r "$CAIRN_RUN_BASE/$name" "$KEEP_LOGS" 2>/dev/null
    "$CAIRN" cluster down --name "$name" >/dev/null 2>&1
    t_cleanup
}
trap s_cleanup EXIT
chmod 755 "$T_TMP"

# Under ASan each daemon may keep quarantine_size_mb of freed memory (32 in
# the test environment): six daemons a node then grow by up to 190 MiB
# after their start, inside the node's 256 MiB meant for jobs (seen: 60 ->
# 250 MiB, memory.failcnt 64 000, jobs OOM-killed). 4 MiB each here.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=4"
"$CAIRN" cluster up --nodes 4 --cpus 0.5 --mem 256M --start-timeout 30000 >"$T_TMP/up.json" || { t_fail "cluster up"; t_done; }
STATE="$CAIRN_RUN_BASE/$name/state.json"
CONFIG=$(jq -r .config "$STATE")
grep -q '<service name="sched"' "$CONFIG" ||
    { echo "SKIP: the description runs no service sched (harness defaults)"; exit 77; }
for k in 1 2 3 4; do t_check "node $k alive" t_wait_state 15 "$k" alive 1 2 3 4; done
# ghostd's view lags clusterd's by up to its 2 s ask: a run rr placed on
# node 2 was refused "node 2 is unknown" by node 1's ghostd
t_ghostds_see 4

. "$CAIRN_SOURCE/services/sched/lib-sched.sh"
t_check "clusterd's suspect timeout raised (lib-sched.sh: slow_membership)" slow_membership
t_check "every node has 256 MiB for its jobs beside its daemons (lib-sched.sh: room_for_daemons)" room_for_daemons 256

for k in 1 2 3 4; do t_check "node $k runs sched-rr (sched show)" wait_for 15 serves "$k" rr; done

# ---- sched-rr: round robin -------------------------------------------------------------

rr_nodes=()
for i in $(seq 1 8); do
    j=$(c 1 run -- sleep 120) || { t_fail "run $i without --node"; break; }
    rr_nodes+=("$(jq -r '"\(.node) \(.placed_by)"' <<<"$j")")
done
t_check "8 runs placed by rr" test "$(printf '%s\n' "${rr_nodes[@]}" | grep -c ' rr$')" = 8
rr_ok=1
for ((i = 1; i < ${#rr_nodes[@]}; i++)); do
    a=${rr_nodes[i-1]%% *}; b=${rr_nodes[i]%% *}
    [ "$b" -eq $(( a % 4 + 1 )) ] || rr_ok=0
done
t_check "round robin: $(printf '%s ' "${rr_nodes[@]%% *}")" test "$rr_ok" = 1
last=${rr_nodes[7]%% *}
t_check "node 1 swapped to mosix and back (sched swap)" eval 'swap 1 mosix && serves 1 mosix && swap 1 rr'
n=$(c 1 run -- sleep 120 | jq -r .node)
t_check "rr goes on after a swap (node $n after $last)" test "$n" = $(( last % 4 + 1 ))
for g in $(c 1 ps | jq -r '.jobs[] | select(.state == "running") | .gpid'); do c 1 kill "$g" >/dev/null; done

# ---- sched-mosix: 16 jobs forced onto node 1 spread --------------------------------------

# The jobs start under rr, then every node swaps to mosix: ghostd's own
# runs and migrations are not mixed (a ghostd that launched jobs while it
# migrated others died of a heap corruption here: reported, not ours).
lengths=(1 8 2 7 3 6 4 5 5 4 6 3 7 2 8 1)   # CPU seconds: 72 in all
gpids=() glen=() started=0
for L in "${lengths[@]}"; do
    j=$(c 1 run --node 1 -- "$WORK" cpu "$L") || { echo "  run of a ${L} s job: $j" >&2; continue; }
    gpids+=("$(jq -r .gpid <<<"$j")"); glen+=("$L")
    jq -e '.node == 1 and .placed_by == "request"' <<<"$j" >/dev/null && started=$((started + 1))
done
t_check "16 jobs started on node 1 (--node 1)" test "$started" = 16
t_check "every node swapped to mosix" swap_all mosix
declare -A seen_on
for g in "${gpids[@]}"; do seen_on[$g]=""; done
for ((i = 0; i < 600; i++)); do
    if ps=$(c 4 ps 2>/dev/null); then
        while read -r g nd; do seen_on[$g]+=" $nd"; done < <(jq -r '.jobs[] | select(.state == "running") | "\(.gpid) \(.node)"' <<<"$ps")
        # ended: every node answered (a node busy with 16 jobs may not,
        # and its jobs are then missing from the list) and none runs
        jq -e 'all(.nodes[]; .reachable) and
               ([.jobs[] | select(.state == "running" or .state == "migrating")] | length == 0)' <<<"$ps" >/dev/null && break
    fi
    sleep 0.5
done
t_check "the 16 jobs ended" test "$i" -lt 600
D=$(all_decisions)
moves=$(jq '[.[] | select(.kind == "balance" and (.outcome | startswith("ok")))] | length' <<<"$D")
echo "  balance moves: $moves; nodes per job:$(for g in "${gpids[@]}"; do printf ' %s:[%s]' "$g" "$(tr ' ' '\n' <<<"${seen_on[$g]}" | sort -un | tr '\n' ' ' | sed 's/ $//')"; done)"
t_check "node 1 moved jobs away (>= 6 balance moves)" test "$moves" -ge 6
for k in 2 3 4; do
    t_check "jobs ran on node $k" bash -c "printf '%s\n' \"${seen_on[*]}\" | tr ' ' '\n' | grep -qx $k"
done
bad_moves=0 bad_work=0
for idx in "${!gpids[@]}"; do
    g=${gpids[idx]}
    w=$(c 1 wait "$g")
    # a move ghostd answered after the policy's deadline is "unknown": it
    # may have happened, so it counts as a move or as none
    read -r ok unknown < <(jq -r --arg g "$g" '[.[] | select(.gpid == $g and (.kind == "balance" or .kind == "usher"))]
        | "\([.[] | select(.outcome | startswith("ok"))] | length) \([.[] | select(.outcome | startswith("unknown"))] | length)"' <<<"$D")
    mv=$(jq .moves <<<"$w")
    [ "$mv" -ge "$ok" ] && [ "$mv" -le $((ok + unknown)) ] ||
        { bad_moves=$((bad_moves + 1)); echo "  $g: ps says $mv moves, the logs $ok ok and $unknown unknown" >&2; }
    ms=$(c 1 logs "$g" | sed -n 's/^done cpu_ms=//p')
    [ "$(jq .exit_code <<<"$w")" = 0 ] && [ -n "$ms" ] && [ "$ms" -ge $(( glen[idx] * 900 )) ] ||
        { bad_work=$((bad_work + 1)); echo "  $g: $(jq -c '{exit_code,exit_signal}' <<<"$w") cpu_ms=$ms of ${glen[idx]} s" >&2; }
done
t_check "every job's moves in ps match the decision logs (unknown outcomes either way)" test "$bad_moves" = 0
t_check "every job did all its work and exited 0" test "$bad_work" = 0
# A job moved again within hold_periods x balance period is a ping-pong.
pp=$(jq '[group_by(.gpid)[] | map(select(.kind == "balance" and (.outcome | startswith("ok")))) | sort_by(.time_ms)
          | [range(1; length) as $i | .[$i].time_ms - .[$i - 1].time_ms] | .[] | select(. < 4000)] | length' <<<"$D")
t_check "no job moved again within its hold (4 balance periods)" test "$pp" = 0
failed_moves=$(jq -c '.[] | select(.kind == "balance" and (.outcome | startswith("failed")))' <<<"$D")
t_check "no failed balance move" test -z "$failed_moves" || echo "$failed_moves" >&2

# ---- an idle node is fed -------------------------------------------------------------------

# Every node gets three jobs under sched-rr (no balancing: while they
# start one at a time, mosix would rightly spread the first ones, node
# 4's among them), then mosix again: three each, nothing to move until
# node 4's short jobs end.
t_check "every node swapped to rr for the launch" swap_all rr
for k in 1 2 3; do for i in 1 2 3; do c 1 run --node "$k" -- "$WORK" cpu 30 >/dev/null; done; done
short=()
for i in 1 2 3; do short+=("$(c 1 run --node 4 -- "$WORK" cpu 2 | jq -r .gpid)"); done
# ... and only once every vector every node knows was sampled a period
# after the launch (its CPU figure covers the jobs): one sampled before
# showed node 4 idle to the new mosix daemons, which fed it three jobs at
# once, and node 4 then sent its own away.
launched=$(date +%s%3N)
period=$(c 4 load | jq '.gossip.period_ms // 1000')
fresh_view() {
    local k
    for k in 1 2 3 4; do
        c "$k" load | jq -e --argjson t $(( launched + period )) \
            '[.local] + .known | all(.sampled_ms >= $t)' >/dev/null || return 1
    done
}
t_check "every node's view was sampled after the launch" wait_for 30 fresh_view
t_check "every node swapped back to mosix" swap_all mosix
before=$(all_decisions | jq 'map(.time_ms) | max // 0')
for g in "${short[@]}"; do c 1 wait "$g" >/dev/null || echo "  wait $g failed" >&2; done
t_check "node 4's short jobs ended there" bash -c "$(declare -f c); for g in ${short[*]}; do
    c 1 wait \$g | jq -e '.node == 4 and .exit_code == 0' >/dev/null || exit 1; done"
idle_at=$(for g in "${short[@]}"; do date -r "$CAIRN_RUN_BASE/$name/jobs/$g/exit" +%s%3N; done | sort -n | tail -1)
fed() { all_decisions | jq -e --argjson t "$before" '[.[] | select(.kind == "balance" and .to == 4 and .time_ms > $t)] | length > 0' >/dev/null; }
t_check "node 4, idle, receives a job" wait_for 30 fed
fed_at=$(all_decisions | jq --argjson t "$before" '[.[] | select(.kind == "balance" and .to == 4 and .time_ms > $t) | .time_ms] | min')
# How soon, in probe periods, is bench/sched.sh's figure (idle_fed_ms, a
# target of 2 periods): here it is wall time on a host shared with the
# rest of the suite, printed and not asserted (2.8 s against 2 s failed
# once in CI under ASan, the nodes' daemons starved by their jobs).
echo "  node 4 idle at $idle_at, fed at $fed_at: $(( fed_at - idle_at )) ms, $(( (fed_at - idle_at) * 100 / period ))% of a gossip period of $period ms (load $(cut -d' ' -f1 /proc/loadavg))"
# stopped: every node answers and no job of the cluster runs or moves.
stopped() {
    c 4 ps | jq -e 'all(.nodes[]; .reachable) and
                    ([.jobs[] | select(.state == "running" or .state == "migrating")] | length == 0)' >/dev/null
}
# The earlier parts' jobs, killed until none is left: one migrating when
# listed was not killed and went on loading node 1, and mosix balanced the
# grower below away for CPU before it could be ushered (CI, twice).
kill_all() {
    local g
    for g in $(c 1 ps | jq -r '.jobs[] | select(.state == "running" or .state == "migrating") | .gpid'); do
        c 1 kill "$g" >/dev/null 2>&1
    done
    stopped
}
t_check "every job of the earlier parts is gone" wait_for 30 kill_all
# The daemons grew since room_for_daemons (ASan's allocator keeps what it
# took: 60 -> 107 MiB on node 1 by now in one CI run, whose ballast was
# then killed by the kernel); each part below gets its 256 MiB afresh.
t_check "every node has 256 MiB for its jobs again" room_for_daemons 256

# ---- ushering ---------------------------------------------------------------------------------

# The ballast fills its 100 MiB under sched-rr and only then mosix comes
# back: filling it takes CPU (seconds under ASan), and mosix once balanced
# it, then the grower, to an idle node before either had grown -- nothing
# was left to usher. Held, it takes no CPU; the grower's 3 MiB/s next to
# nothing.
t_check "every node swapped to rr for the ballast" swap_all rr
ballast=$(c 1 run --node 1 -- "$WORK" hold 100 | jq -r .gpid)
t_check "the ballast holds its 100 MiB" wait_for 60 bash -c "CAIRN_NODE=1 '$CAIRN' logs $ballast | grep -q held"
t_check "every node swapped back to mosix" swap_all mosix
grower=$(c 1 run --node 1 -- "$WORK" grow 3 150 | jq -r .gpid)
ushered() { decisions 1 | jq -e --arg g "$grower" '[.[] | select(.kind == "usher" and .gpid == $g and (.outcome | startswith("ok")))] | length > 0' >/dev/null; }
t_check "the growing job is ushered off node 1" wait_for 90 ushered || {
    # why not: node 1's policy as it stands (its last verdicts) and its log
    c 1 sched show | jq -c . >&2
    decisions 1 | jq -c '.[-5:][]' >&2
    oom_report; }
u=$(decisions 1 | jq -c --arg g "$grower" '[.[] | select(.kind == "usher" and .gpid == $g)][0]')
echo "  $(jq -r .reason <<<"$u")"
t_json_check "... by a decision naming its memory figures" "$u" '.reason | test("MiB") and test("grows fastest")'
gw=$(c 1 ps | jq -c --arg g "$grower" '.jobs[] | select(.gpid == $g)')
t_json_check "it runs on another node" "$gw" '.node != 1 and .state == "running"'
grows_to_end() { c 1 logs "$grower" | grep -q 'held 150 MiB'; }
t_check "it grows to its 150 MiB there" wait_for 90 grows_to_end
t_json_check "the ballast still runs on node 1" "$(c 1 ps | jq -c --arg g "$ballast" '.jobs[] | select(.gpid == $g)')" \
    '.node == 1 and .state == "running"' || oom_report
c 1 kill "$ballast" >/dev/null; c 1 kill "$grower" >/dev/null
wait_for 20 stopped
t_check "every node has 256 MiB for its jobs again" room_for_daemons 256

# ---- sched-mem -----------------------------------------------------------------------------

t_check "every node swapped to mem" swap_all mem
big=$(c 1 run --node 2 -- "$WORK" hold 120 | jq -r .gpid)
wait_for 10 bash -c "CAIRN_NODE=1 '$CAIRN' logs $big | grep -q held"
sleep 3   # a vector of node 2 with its 120 MiB reaches node 1
j=$(c 2 run -- sleep 60)
t_json_check "sched-mem does not place on the node short of memory" "$j" '.placed_by == "mem" and .node != 2'
c 1 kill "$big" >/dev/null; c 1 kill "$(jq -r .gpid <<<"$j")" >/dev/null
# balancing: two jobs of 70 MiB on node 2 leave it 140 MiB short of the
# others, more than one job's 70 + 10 % of 256: one moves, then the gap
# (70 against 70) is under the margin and nothing more moves. Both hold
# their 70 MiB before sched-mem balances (launched under rr): a move
# decided on a job still allocating commits only what it had then (32.9
# of 70 MiB in CI), and the node looked full enough to send the other too.
t_check "every node swapped to rr for the 70 MiB jobs" swap_all rr
m1=$(c 1 run --node 2 -- "$WORK" hold 70 | jq -r .gpid)
m2=$(c 1 run --node 2 -- "$WORK" hold 70 | jq -r .gpid)
both_held() { c 1 logs "$m1" | grep -q held && c 1 logs "$m2" | grep -q held; }
t_check "both hold their 70 MiB" wait_for 30 both_held
t_check "every node swapped back to mem" swap_all mem
mem_moved() {
    decisions 2 | jq -e --arg a "$m1" --arg b "$m2" '[.[] | select(.kind == "balance" and .policy == "mem" and (.gpid == $a or .gpid == $b) and (.outcome | startswith("ok")))] | length > 0' >/dev/null
}
t_check "sched-mem moves one of node 2's two 70 MiB jobs away" wait_for 60 mem_moved
echo "  $(decisions 2 | jq -r --arg a "$m1" --arg b "$m2" '[.[] | select(.kind == "balance" and (.gpid == $a or .gpid == $b))][0].reason')"
sleep 5   # several balance periods: a second move would show
ps=$(c 1 ps)
t_json_check "... and only one: they run on two nodes, one of them 2" \
    "$(jq -c --arg a "$m1" --arg b "$m2" '[.jobs[] | select(.gpid == $a or .gpid == $b) | .node]' <<<"$ps")" \
    'length == 2 and (unique | length) == 2 and index(2) != null' || oom_report
# moves that happened (a failed or unknown one is no move), from any node
moved_ok() {
    all_decisions | jq --arg a "$m1" --arg b "$m2" '[.[] | select((.kind == "balance" or .kind == "usher") and
        (.gpid == $a or .gpid == $b) and (.outcome | startswith("ok")))] | length'
}
t_check "... no job moved twice ($(moved_ok) moves)" test "$(moved_ok)" = 1 ||
    all_decisions | jq -c --arg a "$m1" --arg b "$m2" '.[] | select(.gpid == $a or .gpid == $b) |
        {node, time_ms, kind, gpid, from, to, outcome, reason}' >&2
c 1 kill "$m1" >/dev/null; c 1 kill "$m2" >/dev/null

t_done
