#!/bin/bash
# test-restart - restart on failure on a 4-node local cluster (issue 19,
# item 6; docs/jobs.md "Restart on failure"):
#   - a counter job (one process, its count in memory) run on node 2 with
#     --checkpoint-every 1 --restart-on-failure: ps shows its checkpoints
#     replicated to another node (last_checkpoint_ms, replica), the
#     replica holds the image; the checkpoints are incremental (a tracker:
#     the first full, the next ones deltas): the replica holds the chain
#     image.ghost.N with image.ghost naming the newest, and a delta sends
#     a small part of what the full image sent;
#   - a second job on node 2 without --restart-on-failure;
#   - node 2 dies: its daemons SIGKILLed, its veth cut, and the job's
#     processes there frozen (cgroup freezer: a dead machine runs nothing;
#     they stay as the stale copy the node finds when it comes back --
#     SIGSTOP would not do: a stopped member of an orphaned process group
#     gets SIGHUP when another member exits, and the job would end);
#   - the counter resumes on another node from its last checkpoint (a
#     chain with deltas) within
#     detection + restore time: same gpid, restarts 1, lost_ms > 0, its
#     count resumes from the checkpoint (may repeat what was lost since,
#     never skips);
#   - the other job is reported lost (ps: state "lost" and why), never
#     silently gone; wait answers it ended;
#   - node 2 comes back (veth up, node restart): its ghostd kills the
#     stale copies (the counter's and the lost job's), and the restarted
#     counter runs on, one copy;
#   - bad input: --restart-on-failure without --checkpoint-every, a period
#     out of range: usage errors.
# Skips (77) without root, netns or the binaries.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
FREEZER=/sys/fs/cgroup/freezer
[ -w "$FREEZER/cgroup.procs" ] || { echo "SKIP: no cgroup v1 freezer at $FREEZER"; exit 77; }
for h in ghost-init ghost-dump ghost-restore; do
    [ -x "$CAIRN_BUILD/services/ghostd/engine/$h" ] || { echo "SKIP: $h not built"; exit 77; }
done

name="r$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
ICE="$FREEZER/cairn-test-$name"
thaw() { [ -d "$ICE" ] && echo THAWED >"$ICE/freezer.state"; }
trap 'thaw; "$CAIRN" cluster down --name "$name" >/dev/null 2>&1; rmdir "$ICE" 2>/dev/null; t_cleanup' EXIT

"$CAIRN" cluster up --nodes 4 >"$T_TMP/up.json" || { t_fail "cluster up"; t_done; }
for k in 1 2 3 4; do t_check "node $k alive on all" t_wait_state 15 "$k" alive 1 2 3 4; done

c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
t_ghostds_see 4
# job K GPID: the job as node K's ps lists it ("" if not listed).
job() { c "$1" ps | jq -c --arg g "$2" '.jobs[] | select(.gpid == $g)'; }
job_has() { job "$1" "$2" | jq -e "$3" >/dev/null 2>&1; }
# tree PID: PID and its descendants.
tree() {
    local p=$1 k
    echo "$p"
    for k in $(pgrep -P "$p"); do tree "$k"; done
}
# freeze PID...: each tree, parents first (what they fork next is born
# frozen), into the test's freezer cgroup, frozen.
freeze() {
    local p
    mkdir -p "$ICE" && echo FROZEN >"$ICE/freezer.state" || return 1
    for p in "$@"; do
        for q in $(tree "$p"); do echo "$q" >"$ICE/cgroup.procs" 2>/dev/null; done
    done
    for q in 1 2 3 4 5 6 7 8 9 10; do
        grep -q FROZEN "$ICE/freezer.state" && return 0; sleep 0.05
    done
    return 1
}
pids_of() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" \
        '.nodes[] | select(.id == $id) | .services[] | select(.pid != null) | .pid'
}
# count_ok LOG: every line at most one more than the one before (a restart
# may repeat what was lost, never skip), starting at 1, increasing at least once.
count_ok() {
    awk 'NR == 1 && $1 != 1 { bad = 1 } NR > 1 && $1 > prev + 1 { bad = 1 }
         { prev = $1 } END { exit bad || NR < 2 }' "$1"
}
grows() {
    local n0 n i
    n0=$(wc -l <"$1")
    for i in $(seq 1 50); do n=$(wc -l <"$1"); [ "$n" -gt "$n0" ] && return 0; sleep 0.1; done
    return 1
}

# --- bad input ----------------------------------------------------------------
t_check "--restart-on-failure alone is a usage error" \
    t_expect_error 100 usage c 1 run --restart-on-failure -- true
t_check "--checkpoint-every 0 is a usage error" \
    t_expect_error 100 usage c 1 run --checkpoint-every 0 -- true

# --- a counter checkpointed every second on node 2 --------------------------------
log="$T_TMP/count.log"; : >"$log"
# one process that never forks (a shell's sleep would be a new process at
# each checkpoint: a tree that changed, a full image every time)
count='open(my $f, ">>", $ARGV[0]) or die; $f->autoflush(1); my $i = 0;
       while (1) { $i++; print $f "$i\n"; select(undef, undef, undef, 0.05); }'
j=$(c 1 run --node 2 --checkpoint-every 1 --restart-on-failure --name counter -- \
    perl -e "$count" "$log") ||
    { t_fail "run the counter"; t_done; }
g=$(jq -r .gpid <<<"$j"); reaper=$(jq -r .host_pid <<<"$j")
t_json_check "counter runs on node 2 with its checkpoint settings" "$j" \
    '.node == 2 and .checkpoint_every_s == 1 and .restart_on_failure == true and .restarts == 0'
o=$(c 1 run --node 2 --name plain -- sleep 1000) || t_fail "run the plain job"
gp=$(jq -r .gpid <<<"$o"); preaper=$(jq -r .host_pid <<<"$o")
t_check "counter counts" grows "$log"
t_check "a checkpoint replicated within 5 s" t_wait_for 5 job_has 1 "$g" \
    '.last_checkpoint_ms != null and .replica != null and .replica != 2'
replica=$(job 1 "$g" | jq -r .replica)
t_check "the replica node $replica holds the image" \
    test -s "$T_TMP/run/$name/$replica/ghost/replicas/$g/image.ghost"
t_check "job.json names the replica" \
    jq -e --argjson r "$replica" '.replica == $r' "$T_TMP/run/$name/jobs/$g/job.json"
n0=$(job 1 "$g" | jq .last_checkpoint_ms)
newer() { job_has 1 "$g" ".last_checkpoint_ms > $n0"; }
t_check "checkpoints go on, each over the last" t_wait_for 5 newer
# node 2's log: "checkpoint gpid=G replica=R file=image.ghost.N full=yes|no ...
# sent_bytes=B ..." per checkpoint replicated
ckpts() { grep -h "checkpoint gpid=$g " "$T_TMP/run/$name/2/ghostd.log"; }
deltas() { [ "$(ckpts | grep -c 'full=no')" -ge 3 ]; }
t_check "later checkpoints are deltas (3 within 8 s)" t_wait_for 8 deltas
rdir="$T_TMP/run/$name/$replica/ghost/replicas/$g"
t_check "the replica's image.ghost is a symlink into its chain" \
    bash -c "test -L '$rdir/image.ghost' && test -s '$rdir/image.ghost' && ls '$rdir'/image.ghost.[0-9]* >/dev/null"
full_sent=$(ckpts | grep 'full=yes' | head -1 | sed -E 's/.* sent_bytes=([0-9]+).*/\1/')
delta_sent=$(ckpts | grep 'full=no' | tail -1 | sed -E 's/.* sent_bytes=([0-9]+).*/\1/')
echo "first full checkpoint sent $full_sent bytes, the last delta $delta_sent"
t_check "a delta sends less than a quarter of the full image" \
    test "${delta_sent:-0}" -gt 0 -a "${delta_sent:-0}" -lt "$(( ${full_sent:-0} / 4 ))"

# --- node 2 dies ------------------------------------------------------------------
t0=$(date +%s%N)
for p in $(pids_of 2); do kill -9 "$p"; done
t_check "node 2's jobs frozen" freeze "$reaper" "$preaper"
# what the replica holds now is what the restart reads: a chain with deltas
held=$(cd "$rdir" && ls image.ghost.[0-9]* 2>/dev/null | wc -l)
echo "the replica holds $held files of the chain, image.ghost -> $(readlink "$rdir/image.ghost")"
t_check "the replica holds a chain with deltas (a full image and at least one delta)" \
    test "$held" -ge 2
ip link set "cv-$name-2" down || t_fail "cut node 2's link"
stale=$(cat "$ICE/cgroup.procs")
t_check "node 2 declared dead" t_wait_state 30 2 dead 1 3 4
t_check "the counter runs again on another node, restarts 1" t_wait_for 30 job_has 1 "$g" \
    '.state == "running" and .node != 2 and .restarts == 1 and .lost_ms > 0'
t1=$(date +%s%N)
echo "restarted $(( (t1 - t0) / 1000000 )) ms after the kill"
nj=$(job 1 "$g"); echo "$nj"
t_json_check "same gpid, its checkpoint settings kept" "$nj" \
    '.checkpoint_every_s == 1 and .restart_on_failure == true'
t_check "the count goes on" grows "$log"
t_check "the count resumed from the checkpoint: never skipped" count_ok "$log"
t_check "the plain job is reported lost, with why" t_wait_for 10 job_has 1 "$gp" \
    '.state == "lost" and (.lost | test("node 2 died")) and .exited == true'
w=$(c 3 --timeout 5000 wait "$gp") || t_fail "wait for the lost job exit $?"
t_json_check "wait from another node says the lost job ended, lost" "$w" \
    '.exited == true and .exit_code == -1 and .state == "lost"'
t_check "a new checkpoint of the restarted counter replicated elsewhere" t_wait_for 10 job_has 1 "$g" \
    '.replica != null and .replica != .node'

# --- node 2 comes back ------------------------------------------------------------
ip link set "cv-$name-2" up || t_fail "link of node 2 up"
"$CAIRN" node restart 2 >/dev/null || t_fail "node restart 2"
t_check "node 2 alive again" t_wait_state 30 2 alive 1 3 4
thaw   # the machine's processes run again, unless its ghostd killed them
gone() { local p; for p in $stale; do [ -e "/proc/$p" ] && [ "$(t_proc_state "$p")" != Z ] && return 1; done; return 0; }
t_check "node 2's stale copies were killed" t_wait_for 10 gone
t_check "the restarted counter still counts" grows "$log"
t_check "one copy of the counter (its reaper and perl)" test "$(pgrep -fc -- "$log")" -le 2
t_check "count never skipped" count_ok "$log"
c 1 kill "$g" >/dev/null || t_fail "kill the counter"
if [ "$T_FAILS" -gt 0 ]; then   # what the ghostds said, for the failure
    grep -hE "checkpoint|replica|job-|lost|supersed" "$T_TMP/run/$name"/*/ghostd.log | tail -40 >&2
fi
t_done
