#!/bin/bash
# test-syncd-cache - the node cache of syncd (README.md, "The node cache")
# on a 4-node local cluster, as root, with sync-tool in each node's
# namespace at its node's syncd:
#   - the fast path: one process of one node looping on a mutex takes it
#     through syncd once, then on the word (grant.cached) every time; an
#     unprotected counter ends exact, tokens go up by one per grant; two
#     processes of the node contending on the word (a futex wait, no
#     message) keep the counter exact too;
#   - alternating nodes: every run on another node revokes the cache from
#     the last one (its first grant comes from syncd, the rest from the
#     word), the counter ends exact and the --log's tokens strictly
#     increase in grant order; the same with all nodes contending at once,
#     with no two grant intervals overlapping;
#   - kill -9 of a holder on a cached word: the kernel marks it owner-died
#     and the next acquirer -- on that node, or on another one after the
#     revoke -- gets owner_died;
#   - the table: <rundir>/syncd/uid-U.tab is 0600 and U's; a process of
#     another user (nobody) can neither read it nor lock the owner's mutex,
#     and gets a table of its own for its own mutexes.
# Skips (77) without root, netns, setpriv or the binaries.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
SYNCD="$CAIRN_BUILD/services/syncd/syncd"
TOOL="$CAIRN_BUILD/tests/sync-tool"
for b in "$SYNCD" "$TOOL"; do
    [ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
command -v setpriv >/dev/null || { echo "SKIP: no setpriv"; exit 77; }

name="c$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT
chmod 0755 "$T_TMP"   # nobody reaches the run dirs and the work dir
W="$T_TMP/work"
mkdir -p "$W"
chmod 0777 "$W"      # nobody writes its counter here too

up=$("$CAIRN" cluster up --nodes 4) || { t_fail "cluster up exit $?"; t_done; }
rundir() { jq -r --argjson k "$1" '.nodes[] | select(.id == $k) | .rundir' <<<"$up"; }
for k in 1 2 3 4; do RD[$k]=$(rundir "$k"); done

# st K ARGS...: sync-tool inside node K's namespace, at node K's syncd;
# stn: the same as user nobody.
st() {
    local k=$1; shift
    ip netns exec "cairn-$name-$k" env CAIRN_SYNCD_ENDPOINT="ipc://${RD[$k]}/syncd.sock" \
        CAIRN_NODE_ID="$k" "$TOOL" "$@"
}
stn() {
    local k=$1; shift
    ip netns exec "cairn-$name-$k" setpriv --reuid=65534 --regid=65534 --clear-groups \
        env CAIRN_SYNCD_ENDPOINT="ipc://${RD[$k]}/syncd.sock" CAIRN_NODE_ID="$k" "$TOOL" "$@"
}

jq_ok() { local in=$1; shift; [ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null; }

serving() { st "$1" lock "ready-$1-$RANDOM" --timeout 2000 >/dev/null 2>&1; }
wait_serving() {
    local k i
    for k in "$@"; do
        for i in $(seq 1 60); do serving "$k" && break; sleep 0.25; done
        serving "$k" || return 1
    done
}

# log_ok LOG: grants in start order have strictly increasing tokens and no
# grant starts before the previous one ended. Prints what it found.
log_ok() {
    python3 - "$1" <<'EOF'
import sys
rows = sorted((list(map(int, l.split())) for l in open(sys.argv[1])), key=lambda r: r[1])
bad = [(a, b) for a, b in zip(rows, rows[1:]) if b[0] <= a[0] or b[1] < a[2]]
print("grants %d, out of order or overlapping %d" % (len(rows), len(bad)))
for a, b in bad[:5]:
    print("  ", a, b)
sys.exit(1 if bad or not rows else 0)
EOF
}

for k in 1 2 3 4; do t_check "node $k alive on all" t_wait_state 15 "$k" alive 1 2 3 4; done
t_check "every syncd serves" wait_serving 1 2 3 4

# --- the fast path -----------------------------------------------------------------
N=300
out=$(st 1 lock fast --count $N --file "$W/fast") || t_fail "lock fast exit $?"
echo "one node looping: $out"
t_check "fast path: the first grant from syncd, the $((N - 1)) others on the word" \
    jq_ok "$out" ".cached == $((N - 1))"
# tokens are above 2^53: read as text (jq would round them), subtracted in bash
tok() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }
first=$(tok first_token "$out") last=$(tok last_token "$out")
t_check "fast path: tokens one apart per grant ($first..$last)" \
    test "$((last - first))" -eq $((N - 1))
t_check "fast path: counter exact ($(cat "$W/fast"))" test "$(cat "$W/fast")" -eq $N

st 1 lock fast2 --count 1 >/dev/null || t_fail "lock fast2 exit $?"
for j in 1 2; do st 1 lock fast2 --count 100 --hold 1 --file "$W/fast2" >"$W/fast2.$j" 2>&1 & done
wait
cat "$W/fast2.1" "$W/fast2.2"
t_check "two processes of one node on the word: counter exact ($(cat "$W/fast2"))" \
    test "$(cat "$W/fast2")" -eq 200
t_check "two processes of one node: all but each one's first grant cached" \
    bash -c "jq -s -e 'map(.cached) | add >= 198' $W/fast2.1 $W/fast2.2 >/dev/null"

# --- alternating nodes: a revoke every time ------------------------------------------
runs_ok=0
for i in $(seq 1 6); do
    for k in 1 2 3 4; do
        out=$(st "$k" lock alt --count 3 --file "$W/alt" --log "$W/alt.log") ||
            t_fail "lock alt on node $k exit $?"
        jq_ok "$out" '.cached == 2' && runs_ok=$((runs_ok + 1))
    done
done
t_check "alternating: each run's first grant came from syncd (revoked elsewhere), the 2 others from the word ($runs_ok of 24)" \
    test "$runs_ok" -eq 24
t_check "alternating: counter exact ($(cat "$W/alt"))" test "$(cat "$W/alt")" -eq 72
t_check "alternating: tokens strictly increase in grant order" log_ok "$W/alt.log"

for k in 1 2 3 4; do
    for j in 1 2; do
        st "$k" lock busy --count 20 --hold 1 --file "$W/busy" --log "$W/busy.log" \
            >"$W/busy.$k.$j" 2>&1 &
    done
done
wait
t_check "all nodes at once: every run ended" \
    bash -c "cat $W/busy.*.* | jq -s -e 'length == 8 and all(.count == 20)' >/dev/null"
t_check "all nodes at once: counter exact ($(cat "$W/busy"))" test "$(cat "$W/busy")" -eq 160
t_check "all nodes at once: tokens increase, no two holders overlap" log_ok "$W/busy.log"

# --- kill -9 of a holder on a cached word ----------------------------------------------
# hold_then_kill K NAME: a process of node K takes NAME (cached at K: the
# run before makes it so) and is killed while holding it.
hold_then_kill() {
    local k=$1 n=$2 pid i
    st "$k" lock "$n" --count 2 >/dev/null || return 1
    st "$k" hold "$n" >"$W/hold.$n" 2>&1 &
    for i in $(seq 1 40); do [ -s "$W/hold.$n" ] && break; sleep 0.1; done
    pid=$(jq -r '.pid // empty' "$W/hold.$n" 2>/dev/null)
    [ -n "$pid" ] || { cat "$W/hold.$n" >&2; return 1; }
    kill -9 "$pid"
    wait 2>/dev/null
    return 0
}
t_check "a holder on node 1's word killed" hold_then_kill 1 died-local
out=$(st 1 lock died-local --timeout 5000 --consistent)
echo "next on node 1: $out"
t_check "kill -9 of a cached holder: the next acquirer on its node gets owner_died" \
    jq_ok "$out" '.owner_died == 1'
out=$(st 1 lock died-local --timeout 5000)
t_check "made consistent: the next grant is clean" jq_ok "$out" '.owner_died == 0'

t_check "a holder on node 3's word killed" hold_then_kill 3 died-remote
out=$(st 2 lock died-remote --timeout 5000 --consistent)
echo "next on node 2: $out"
t_check "kill -9 of a cached holder: the next acquirer on another node gets owner_died" \
    jq_ok "$out" '.owner_died == 1'

# --- the table and another user -----------------------------------------------------------
tab="${RD[1]}/syncd/uid-0.tab"
t_check "root's table is 0600 and root's" test "$(stat -c '%a %u' "$tab" 2>/dev/null)" = "600 0"
t_check "the table directory is 0711" test "$(stat -c '%a' "${RD[1]}/syncd")" = "711"
t_check "nobody cannot read root's table" \
    bash -c "! setpriv --reuid=65534 --regid=65534 --clear-groups cat '$tab' >/dev/null 2>&1"
err=$(stn 1 lock fast --timeout 2000 2>&1 >/dev/null); rc=$?
echo "nobody locks root's mutex: exit $rc $err"
t_check "nobody cannot lock root's mutex: permission-denied" \
    jq_ok "$err" '.error.code == "permission-denied"'
out=$(stn 1 lock mine --count 20 --file "$W/nobody") || t_fail "nobody's lock exit $?"
t_check "nobody's own mutex is cached in a table of its own" jq_ok "$out" '.cached == 19'
t_check "nobody's table is 0600 and nobody's" \
    test "$(stat -c '%a %u' "${RD[1]}/syncd/uid-65534.tab" 2>/dev/null)" = "600 65534"
t_check "root's mutex is still fine after all that" serving 1

t_done
