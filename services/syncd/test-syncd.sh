#!/bin/bash
# test-syncd - syncd on a 4-node local cluster (issue 18), as root, with
# sync-tool run inside each node's namespace against its node's syncd:
#   - bad input: a kind mismatch, an unknown mode, an unlock by a
#     non-holder, a barrier's parties mismatch, a 10 MB name (a clear
#     error, answered at once), malformed frames (every one answered);
#     syncd keeps serving;
#   - a barrier across the nodes for many generations: exactly one serial
#     party per generation; a condvar ping-pong between two nodes (no
#     lost signal: the turn counter ends exact); a semaphore bounding
#     concurrency (observed maximum == its value);
#   - kill -9 of a remote, uncached holder: the next acquirer gets
#     owner-died; a holder's node cut off (veth down): owner-died after
#     failure detection;
#   - a home's syncd restarted alone (the view unchanged): the holders of
#     its objects announce again (a trylock is busy, the holder's death
#     after is owner-died);
#   - the home of a name killed (its syncd and clusterd) during contention
#     from the other nodes: every grant's token strictly increases across
#     the failover and no two grant intervals overlap (from the --log).
# Skips (77) without root, netns or the binaries.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
SYNCD="$CAIRN_BUILD/services/syncd/syncd"
TOOL="$CAIRN_BUILD/tests/sync-tool"
RAW="$CAIRN_BUILD/services/syncd/syncd-request"
FUZZ="$CAIRN_BUILD/tests/fuzz-frames"
for b in "$SYNCD" "$TOOL" "$RAW"; do
    [ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done

name="s$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT
W="$T_TMP/work"
mkdir -p "$W"

up=$("$CAIRN" cluster up --nodes 4) || { t_fail "cluster up exit $?"; t_done; }
rundir() { jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .rundir' <<<"$up"; }
for k in 1 2 3 4; do RD[$k]=$(rundir "$k"); done

# st K ARGS...: sync-tool inside node K's namespace, at node K's syncd.
st() {
    local k=$1; shift
    ip netns exec "cairn-$name-$k" env CAIRN_SYNCD_ENDPOINT="ipc://${RD[$k]}/syncd.sock" \
        CAIRN_NODE_ID="$k" "$TOOL" "$@"
}

# pids_of K SERVICE: the pid of node K's SERVICE daemon.
pid_of() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}

# expect_err CODE PATTERN CMD...: CMD exits 1 with the JSON error CODE and a
# message matching PATTERN (ERE) on stderr.
expect_err() {
    local code=$1 pat=$2 out got; shift 2
    out=$("$@" 2>&1 >/dev/null); got=$?
    [ "$got" -eq 1 ] && jq -e --arg c "$code" --arg p "$pat" \
        '.error.code == $c and (.error.message | test($p))' <<<"$out" >/dev/null ||
        { echo "  got exit $got: ${out:0:300}" >&2; return 1; }
}

jq_ok() { local in=$1; shift; [ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null; }

# log_check tokens|overlap FILE: on sync-tool's --log lines "<token>
# <start_ns> <end_ns> <node> <pid> <owner_died>" sorted by token: tokens
# all distinct; each grant starts after the one before it ended (so
# tokens also increase in time). Prints the first offenders.
log_check() {
    python3 - "$@" <<'PY'
import sys
what, path = sys.argv[1], sys.argv[2]
rows = sorted(tuple(int(x) for x in l.split()[:3]) + tuple(l.split()[3:5])
              for l in open(path) if l.strip())
bad = []
for a, b in zip(rows, rows[1:]):
    if what == "tokens" and b[0] <= a[0]:
        bad.append((a, b))
    if what == "overlap" and b[1] < a[2]:
        bad.append((a, b))
for a, b in bad[:3]:
    print("  ", a, b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# hold_bg K NAME FILE: sync-tool hold in the background, its JSON line in
# FILE once held (5 s at most); HOLD_PID is the tool's own pid (st runs in
# a subshell, whose $! is not the holder).
hold_bg() {
    local i
    st "$1" hold "$2" >"$3" 2>&1 &
    HOLD_PID=""
    for i in $(seq 1 50); do grep -q held "$3" 2>/dev/null && break; sleep 0.1; done
    HOLD_PID=$(jq -r '.pid // empty' "$3" 2>/dev/null)
    [ -n "$HOLD_PID" ]
}

# serving K: node K's syncd grants a lock (quorum, homes ready).
serving() { st "$1" lock "ready-$1-$RANDOM" --timeout 2000 >/dev/null 2>&1; }
wait_serving() {
    local k i
    for k in "$@"; do
        for i in $(seq 1 60); do serving "$k" && break; sleep 0.25; done
        serving "$k" || return 1
    done
}

for k in 1 2 3 4; do t_check "node $k alive on all" t_wait_state 15 "$k" alive 1 2 3 4; done
t_check "every syncd serves" wait_serving 1 2 3 4
t0=$SECONDS

# --- bad input -----------------------------------------------------------------
st 1 declare bi-sem --kind sem --value 2 >/dev/null || t_fail "declare bi-sem exit $?"
t_check "lock of a semaphore: failed-precondition naming both kinds" \
    expect_err failed-precondition "sem|mutex" st 2 lock bi-sem --timeout 1000
out=$("$RAW" "ipc://${RD[1]}/syncd.sock" acquire-mode 9)
t_check "unknown mode: invalid-argument" jq_ok "$out" '.code == "invalid-argument"'
t_check "unlock by a non-holder: failed-precondition, not the holder" \
    expect_err failed-precondition "not the holder" st 3 unlock bi-never-held
st 2 lock bi-held --count 1 >/dev/null || t_fail "lock bi-held exit $?"
t_check "unlock of a mutex held by nobody now: not the holder" \
    expect_err failed-precondition "not the holder" st 2 unlock bi-held
st 1 declare bi-bar --kind barrier --value 2 >/dev/null || t_fail "declare bi-bar exit $?"
t_check "barrier with other parties: failed-precondition" \
    expect_err failed-precondition "part" st 4 barrier bi-bar --parties 3 --timeout 1000
out=$("$RAW" "ipc://${RD[2]}/syncd.sock" acquire-name-bytes $((10 * 1024 * 1024)))
echo "10 MB name: ${out:0:200}"
t_check "10 MB name: invalid-argument saying the length" \
    jq_ok "$out" '.code == "invalid-argument" and (.message | test("10485760 bytes"))'
t_check "10 MB name answered within 2 s" jq_ok "$out" '.ms < 2000'
out=$("$RAW" "ipc://${RD[2]}/syncd.sock" acquire-name-bytes 0)
t_check "empty name: invalid-argument" jq_ok "$out" '.code == "invalid-argument"'
if [ -x "$FUZZ" ]; then
    out=$("$FUZZ" "ipc://${RD[3]}/syncd.sock" syncd 500 "${CAIRN_FUZZ_SEED:-$RANDOM}")
    echo "fuzz: $out"
    t_check "malformed frames: every one answered" jq_ok "$out" '.unanswered == 0'
fi
for k in 1 2 3 4; do
    t_check "node $k's syncd still serves after bad input" serving "$k"
done
echo "bad input done at $((SECONDS - t0)) s"

# --- barrier, condvar, semaphore -------------------------------------------------
G=25
for k in 1 2 3 4; do st "$k" barrier bar --parties 4 --generations $G --timeout 30000 >"$W/bar.$k" 2>&1 & done
wait
serial=0
for k in 1 2 3 4; do
    s=$(jq -r '.serial // empty' "$W/bar.$k" 2>/dev/null)
    [ -n "$s" ] || { t_fail "barrier on node $k: $(cat "$W/bar.$k")"; s=0; }
    serial=$((serial + s))
done
t_check "barrier: exactly one serial party in each of $G generations ($serial)" test "$serial" -eq "$G"
t_check "barrier: every party saw the last generation" \
    bash -c "cat $W/bar.* | jq -s -e 'map(.last_generation) | unique | length == 1'"

R=20
echo 0 > "$W/turn"
st 1 cond cv --mutex cvm --role ping --rounds $R --file "$W/turn" --timeout 30000 >"$W/cond.1" 2>&1 &
st 3 cond cv --mutex cvm --role pong --rounds $R --file "$W/turn" --timeout 30000 >"$W/cond.3" 2>&1 &
wait
t_check "condvar ping-pong between nodes 1 and 3: both ended" \
    bash -c "jq -e '.rounds == $R' $W/cond.1 >/dev/null && jq -e '.rounds == $R' $W/cond.3 >/dev/null"
t_check "condvar ping-pong: the turn counter is exact ($(cat "$W/turn"))" test "$(cat "$W/turn")" -eq $((2 * R))

st 2 declare sem3 --kind sem --value 3 >/dev/null || t_fail "declare sem3 exit $?"
: > "$W/track"
for k in 1 2 3 4; do
    for j in 1 2; do st "$k" sem sem3 --value 3 --count 5 --hold 20 --track "$W/track" >"$W/sem.$k.$j" 2>&1 & done
done
wait
max=$(sort -k3,3n "$W/track" | awk '{c += $1; if (c > m) m = c} END {print m + 0}')
t_check "semaphore of 3: observed maximum is 3 ($max)" test "$max" -eq 3
t_check "semaphore: every wait was posted ($(wc -l < "$W/track") lines)" test "$(wc -l < "$W/track")" -eq 80
echo "primitives done at $((SECONDS - t0)) s"

# --- owner died: kill -9 of a remote holder, then a cut link ----------------------
# a holder on node 2 of a mutex homed neither there nor at node 3, not
# cached (--no-cache): its home learns of the kill from node 2's relay
od=""
for i in $(seq 1 20); do
    st 2 declare "od-$i" --kind mutex --no-cache >/dev/null || { t_fail "declare od-$i exit $?"; break; }
    hold_bg 2 "od-$i" "$W/hold.od" || continue
    if jq -e '.home != 2 and .home != 3 and .cached == false' "$W/hold.od" >/dev/null 2>&1; then od="od-$i"; break; fi
    kill -9 "$HOLD_PID" 2>/dev/null
done
echo "remote holder: $od $(cat "$W/hold.od")"
if [ -n "$od" ]; then
    kill -9 "$HOLD_PID"
    out=$(st 3 lock "$od" --consistent --timeout 10000) || t_fail "lock $od after kill exit $?"
    t_check "kill -9 of a remote uncached holder: the next acquirer gets owner-died" \
        jq_ok "$out" '.owner_died == 1'
    out=$(st 4 lock "$od" --timeout 5000)
    t_check "after consistent, the next grant is clean" jq_ok "$out" '.owner_died == 0'
else
    t_fail "no name homed away from nodes 2 and 3 in 20 tries"
fi

# a name whose home is not node 4, held by node 4, then node 4 cut off
cut=""
for i in $(seq 1 20); do
    hold_bg 4 "cut-$i" "$W/hold.cut" || continue
    if jq -e '.home != 4 and .home > 0' "$W/hold.cut" >/dev/null 2>&1; then cut="cut-$i"; break; fi
    kill -9 "$HOLD_PID" 2>/dev/null
done
echo "cut name: $cut ($(cat "$W/hold.cut"))"
if [ -n "$cut" ]; then
    ip link set "cv-$name-4" down || t_fail "link cv-$name-4 down"
    out=$(st 1 lock "$cut" --consistent --timeout 30000) || t_fail "lock $cut after the cut exit $?"
    t_check "a holder's node cut off: owner-died after detection" jq_ok "$out" '.owner_died == 1'
    kill -9 "$HOLD_PID" 2>/dev/null
    ip link set "cv-$name-4" up || t_fail "link cv-$name-4 up"
    t_check "node 4 alive again after the link is back" t_wait_state 30 4 alive 1 2 3
else
    t_fail "no name homed away from node 4 in 20 tries"
fi
echo "owner-died checks done at $((SECONDS - t0)) s"

# --- a home's syncd restarted (its clusterd alive: the view does not change) --
rs=""
for i in $(seq 1 20); do
    st 1 declare "rs-$i" --kind mutex --no-cache >/dev/null || break
    hold_bg 1 "rs-$i" "$W/hold.rs" || continue
    if jq -e '.home == 2' "$W/hold.rs" >/dev/null 2>&1; then rs="rs-$i"; break; fi
    kill -9 "$HOLD_PID" 2>/dev/null
done
if [ -n "$rs" ]; then
    kill -9 "$(pid_of 2 syncd)" || t_fail "kill of node 2's syncd"
    "$CAIRN" node restart 2 >/dev/null || t_fail "node restart 2 exit $?"
    t_check "node 2's syncd serves again" wait_serving 2
    t_check "a restarted home learns its holders again: a trylock is busy" \
        expect_err busy "" st 3 lock "$rs" --timeout 0
    kill -9 "$HOLD_PID"
    out=$(st 3 lock "$rs" --consistent --timeout 10000) || t_fail "lock $rs after the restart exit $?"
    t_check "...and the holder's death after it is owner-died" jq_ok "$out" '.owner_died == 1'
else
    t_fail "no name homed at node 2 in 20 tries"
fi
echo "restart checks done at $((SECONDS - t0)) s"

# --- the home killed during contention ---------------------------------------------
# a name whose home is not node 1 (node 1 keeps contending)
fo="" H=0
for i in $(seq 1 20); do
    hold_bg 1 "fo-$i" "$W/hold.fo" || continue
    kill -9 "$HOLD_PID" 2>/dev/null
    H=$(jq -r '.home // 0' "$W/hold.fo" 2>/dev/null)
    if [ "${H:-0}" -gt 1 ]; then fo="fo-$i"; break; fi
done
echo "failover name $fo, home $H"
if [ -n "$fo" ]; then
    : > "$W/log"
    N=40
    others=()
    for k in 1 2 3 4; do [ "$k" -ne "$H" ] && others+=("$k"); done
    for k in "${others[@]}"; do
        for j in 1 2; do
            st "$k" lock "$fo" --count $N --hold 5 --log "$W/log" --consistent \
                --timeout 60000 >"$W/fo.$k.$j" 2>&1 &
        done
    done
    # the kill once a few grants are logged (slow machines, sanitizers)
    for i in $(seq 1 200); do [ "$(wc -l < "$W/log")" -ge 20 ] && break; sleep 0.05; done
    kill_ns=$(date +%s%N)
    kill -9 "$(pid_of "$H" syncd)" "$(pid_of "$H" clusterd)" 2>/dev/null ||
        t_fail "kill of node $H's syncd and clusterd"
    wait
    # tokens (~2^54) and times (~2^61) are past a double's 53 bits: no awk
    before=$(python3 -c 'import sys; print(sum(int(l.split()[1]) < int(sys.argv[2]) for l in open(sys.argv[1])))' "$W/log" "$kill_ns")
    after=$(python3 -c 'import sys; print(sum(int(l.split()[1]) > int(sys.argv[2]) for l in open(sys.argv[1])))' "$W/log" "$kill_ns")
    echo "grants before the kill: $before, after: $after"
    t_check "the kill came during the contention" test "$before" -gt 0 -a "$after" -gt 0
    bad=0
    for f in "$W"/fo.*; do jq -e ".count == $N" "$f" >/dev/null 2>&1 || { bad=1; echo "  $f: $(head -c 300 "$f")" >&2; }; done
    t_check "every contender got its $N grants across the failover" test "$bad" -eq 0
    lines=$(wc -l < "$W/log")
    t_check "one log line per grant ($lines)" test "$lines" -eq $(( ${#others[@]} * 2 * N ))
    t_check "tokens strictly increase across the failover, in grant order" \
        log_check tokens "$W/log"
    t_check "no two grants overlap (sorted by token)" log_check overlap "$W/log"
    t_check "the failover was logged by a survivor" \
        bash -c "grep -q 'failover node=$H' ${RD[${others[0]}]}/syncd.log"
    for k in "${others[@]}"; do
        t_check "node $k's syncd serves after the failover" serving "$k"
    done
else
    t_fail "no name homed away from node 1 in 20 tries"
fi
echo "took $((SECONDS - t0)) s after the cluster was up"
t_done
