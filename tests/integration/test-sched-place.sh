#!/bin/bash
# test-sched-place - cairn run without --node on 4 nodes of 0.5 CPU, asked
# of each node's scheduler policy (docs/scheduler.md, issue 20 items 3-4):
#   - sched-rr places round robin: 8 runs from node 1 go to every node
#     twice, in the same order each round, placed_by "rr";
#   - a run asked while node 1 has no policy is held, and served (by rr)
#     once one starts again (held_ms says how long); one asked with a
#     short deadline is placed on node 1 at its hold deadline, with the
#     reason;
#   - swap to a policy that does not exist: not-found naming the installed
#     ones, the running policy keeps serving (same pid);
#   - a second policy started by hand on a node exits 1 naming the running
#     one, which keeps serving;
#   - the <scheduler>'s parameters (balance period, stability margin, hold
#     periods, high-water mark, mem margin, ghostd's placement-hold-ms)
#     taken on SIGHUP without a restart and shown by sched show; a held run
#     placed here at the new, shorter hold; a reload with an out-of-range
#     value refused with the reason, the running figures kept;
#   - 50 launches from a script while node 1's policy is swapped to mosix
#     and back: all 50 run, none twice (gpids and the marker each job
#     writes), the swap recorded in the cluster state and shown by sched
#     show; sched log --follow sees decisions across the swaps.
# Skips (77) without root, netns, or the sched-rr and sched-mosix programs.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
INIT="$CAIRN_BUILD/services/ghostd/engine/ghost-init"
RR="$CAIRN_BUILD/services/sched/sched-rr"
MOSIX="$CAIRN_BUILD/services/sched/sched-mosix"
t_require_built "$INIT" "$RR" "$MOSIX"

name="sp$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name" CAIRN
s_cleanup() {
    "$CAIRN" cluster down --name "$name" >/dev/null 2>&1
    t_cleanup
}
trap s_cleanup EXIT

up=$("$CAIRN" cluster up --nodes 4 --cpus 0.5 --start-timeout 30000) || { t_fail "cluster up exit $?"; t_done; }
for k in 1 2 3 4; do t_check "node $k alive on all" t_wait_state 15 "$k" alive 1 2 3 4; done

# c K ARGS...: the CLI at node K's ghostd (and sched).
c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
# svc_pid K [SERVICE]: the pid of node K's SERVICE (sched), as the
# cluster state has it.
svc_pid() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "${2:-sched}" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}
sched_pid() { svc_pid "$1" sched; }
t_ghostds_see 4
t_check "every node runs sched-rr (sched show --all)" t_wait_for 10 bash -c \
    '"$CAIRN" sched show --all | jq -e "[.nodes[] | select(.policy == \"rr\")] | length == 4" >/dev/null'

# --- round robin ------------------------------------------------------------
: >"$T_TMP/rr"
for i in 1 2 3 4 5 6 7 8; do
    c 1 run -- sleep 1000 >>"$T_TMP/rr" || t_fail "run $i without --node exit $?"
done
nodes=$(jq -s -c '[.[].node]' "$T_TMP/rr")
t_json_check "8 runs placed by rr, each with a reason, none held" "$(jq -s . "$T_TMP/rr")" \
    'length == 8 and all(.[]; .placed_by == "rr" and (.placement | length > 0) and .held_ms < 1000)'
t_json_check "round robin: every node twice, the same order each round ($nodes)" "$nodes" \
    '(sort == [1,1,2,2,3,3,4,4]) and (.[0:4] == .[4:8])'
for g in $(jq -r .gpid "$T_TMP/rr"); do c 1 kill "$g" >/dev/null; done

# --- held while no policy runs ------------------------------------------------
p1=$(sched_pid 1)
kill -TERM "$p1"
t_check "node 1's policy stopped" t_wait_for 10 bash -c "! kill -0 $p1 2>/dev/null"
(c 1 run --name held -- sleep 1000 >"$T_TMP/held"; echo $? >"$T_TMP/held.rc") &
held=$!
sleep 1.5
t_check "the run is held while no policy runs" kill -0 "$held"
"$CAIRN" node restart 1 >/dev/null || t_fail "node restart 1 (its sched again) exit $?"
wait "$held"
t_json_check "held, then placed by the policy that came up" "$(cat "$T_TMP/held")" \
    '.placed_by == "rr" and .held_ms >= 1000 and .held_ms < 10000 and .name == "held"'
c 1 kill "$(jq -r .gpid "$T_TMP/held")" >/dev/null

p1=$(sched_pid 1)
kill -TERM "$p1"
t_check "node 1's policy stopped again" t_wait_for 10 bash -c "! kill -0 $p1 2>/dev/null"
late=$(c 1 run --timeout 4000 --name late -- sleep 1000)
t_json_check "at the hold deadline: placed on node 1 by ghostd, with the reason" "$late" \
    '.placed_by == "local" and .node == 1 and .held_ms >= 1500 and (.placement | test("no scheduler policy answered within [0-9]+ ms"))'
c 1 kill "$(jq -r .gpid <<<"$late")" >/dev/null
"$CAIRN" node restart 1 >/dev/null || t_fail "node restart 1 exit $?"

# --- bad input: a policy that does not exist; two policies at once ---------------
p2=$(sched_pid 2)
out=$("$CAIRN" sched swap nosuch --node 2 2>&1 >/dev/null); rc=$?
t_check "swap to nosuch: exit 1" test "$rc" -eq 1
t_json_check "swap to nosuch: not-found naming the installed policies" "$out" \
    '.error.code == "not-found" and (.error.message | test("sched-nosuch")) and (.error.message | test("installed: .*rr"))'
t_json_check "the running policy keeps serving (same pid $p2)" \
    "$("$CAIRN" --node 2 sched show)" ".policy == \"rr\" and .pid == $p2"
out=$(timeout 20 ip netns exec "cairn-$name-2" "$MOSIX" --config "$T_TMP/run/$name/cluster.xml" --node 2 2>&1); rc=$?
t_check "a second policy on node 2 exits 1 (got $rc)" test "$rc" -eq 1
t_check "and says which one serves the node" grep -q "sched-rr already serves node 2" <<<"$out"
t_json_check "the first keeps serving" "$("$CAIRN" --node 2 sched show)" ".policy == \"rr\" and .pid == $p2"

# --- parameters from the description, taken on SIGHUP ----------------------------
XML="$T_TMP/run/$name/cluster.xml"
cp "$XML" "$T_TMP/cluster.orig.xml"
sed -i 's|<scheduler policy="\([a-z-]*\)"|<scheduler policy="\1" balance-period-ms="3000" stability-margin-pct="50" hold-periods="2" high-water-pct="90" mem-margin-pct="20" placement-hold-ms="1500"|' "$XML"
grep -q 'placement-hold-ms="1500"' "$XML" || t_fail "could not edit $XML"
p1=$(sched_pid 1) g1=$(svc_pid 1 ghostd)
kill -HUP "$p1" "$g1"
params_are() {
    "$CAIRN" --node 1 sched show | jq -e --argjson pid "$p1" ".pid == \$pid and (.params | $1)" >/dev/null
}
t_check "sched show: the description's parameters after SIGHUP, same pid" t_wait_for 10 params_are \
    '.balance_period_ms == 3000 and .margin_cpu == 0.5 and .hold_periods == 2 and .high_water == 0.9 and .mem_margin == 0.2 and .placement_hold_ms == 1500'
cp "$XML" "$T_TMP/cluster.good.xml"
sed -i 's|high-water-pct="90"|high-water-pct="100"|' "$XML"
kill -HUP "$p1"
t_check "a reload with high-water-pct 100 is refused with the reason" t_wait_for 10 \
    grep -q "high-water-pct must be 10..99, not 100" "$T_TMP/run/$name/1/sched.log"
cp "$T_TMP/cluster.good.xml" "$XML"   # the CLI reads it too
t_check "... the running figures kept" params_are '.high_water == 0.9 and .hold_periods == 2'
kill -TERM "$p1"
t_check "node 1's policy stopped" t_wait_for 10 bash -c "! kill -0 $p1 2>/dev/null"
short=$(c 1 run --name short -- sleep 1000)
t_json_check "held at most placement-hold-ms (1500), then placed here" "$short" \
    '.placed_by == "local" and .node == 1 and .held_ms >= 1400 and .held_ms < 5000 and (.placement | test("no scheduler policy answered within 1[0-9]{3} ms"))'
c 1 kill "$(jq -r .gpid <<<"$short")" >/dev/null
cp "$T_TMP/cluster.orig.xml" "$XML"
kill -HUP "$g1"
"$CAIRN" node restart 1 >/dev/null || t_fail "node restart 1 exit $?"
t_check "the defaults again after the restart" t_wait_for 10 bash -c \
    '"$CAIRN" --node 1 sched show | jq -e ".params.placement_hold_ms == 10000 and .params.hold_periods == 4" >/dev/null'

# --- a swap in the middle of 50 launches -----------------------------------------
M="$T_TMP/marks"; mkdir -p "$M"; : >"$T_TMP/runs"
"$CAIRN" --node 1 sched log --follow --duration-ms 900000 >"$T_TMP/follow" 2>"$T_TMP/follow.err" &
follow=$!
launch() {
    local i
    for i in $(seq 1 50); do
        c 1 run --name "m$i" -- sh -c "echo \$\$ >>$M/$i" >>"$T_TMP/runs" ||
            echo "run $i failed" >>"$T_TMP/runs.err"
    done
}
launch &
launcher=$!
t_wait_for 60 bash -c "[ \$(wc -l <'$T_TMP/runs') -ge 12 ]"
sw1=$("$CAIRN" sched swap mosix --node 1) || t_fail "swap to mosix exit $?"
t_json_check "swapped node 1 to mosix" "$sw1" \
    '.nodes[0].id == 1 and .nodes[0].policy == "mosix" and .nodes[0].previous == "rr" and .nodes[0].pid > 0'
t_json_check "the cluster state records it" "$("$CAIRN" cluster status)" \
    '.nodes[0].services[] | select(.name == "sched") | .policy == "mosix" and (.binary | endswith("sched-mosix"))'
t_json_check "sched show says mosix" "$("$CAIRN" --node 1 sched show)" '.policy == "mosix"'
t_wait_for 120 bash -c "[ \$(wc -l <'$T_TMP/runs') -ge 30 ]"
"$CAIRN" sched swap rr --node 1 >/dev/null || t_fail "swap back to rr exit $?"
wait "$launcher"
t_check "no run failed" test ! -s "$T_TMP/runs.err"
t_check "50 runs answered" test "$(wc -l <"$T_TMP/runs")" -eq 50
t_check "50 distinct gpids" test "$(jq -r .gpid "$T_TMP/runs" | sort -u | wc -l)" -eq 50
for g in $(jq -r .gpid "$T_TMP/runs"); do c 1 wait "$g" >/dev/null; done
t_check "every job wrote its marker exactly once" \
    bash -c "for i in \$(seq 1 50); do [ \$(wc -l <'$M/'\$i 2>/dev/null || echo 0) -eq 1 ] || exit 1; done"
by=$(jq -s -c '[.[].placed_by] | unique' "$T_TMP/runs")
t_json_check "placed by both policies ($by)" "$by" 'index("rr") != null and index("mosix") != null'
kill "$follow" 2>/dev/null; wait "$follow" 2>/dev/null
t_check "sched log --follow saw placements of both policies across the swaps" \
    bash -c "jq -s -e '[.[] | select(.kind == \"place\") | .policy] | (index(\"rr\") != null and index(\"mosix\") != null)' '$T_TMP/follow' >/dev/null"
t_check "and printed no decision twice" \
    test "$(jq -r .seq "$T_TMP/follow" | sort | uniq -d | wc -l)" -eq 0

t_done
