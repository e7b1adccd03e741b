#!/bin/bash
# test-syncd-cli.sh - syncd through the real CLI on a 4-node local cluster
# (issue 18, item 6; docs/sync.md, docs/cli.md).
#
# - Mutual exclusion: `cairn lock counter -- sh -c 'read; sleep; write'`
#   from all 4 nodes' namespaces at once, many rounds: the count is exact,
#   the commands' start/end marks never interleave and their
#   CAIRN_LOCK_TOKENs strictly increase; then the same with --no-cache.
# - `cairn lock` exits with the command's status (128+N for a signal, 127
#   for a command that is not there); with another holder, --timeout ends
#   in the timeout error (exit 3) and --try in busy (exit 1), and the
#   command never ran; --print-token prints the grant the command sees.
# - A holder killed with -9 takes its command with it, and the next
#   `cairn lock` runs with CAIRN_LOCK_OWNER_DIED=1: a failed repair passes
#   owner-died on, a successful one (exit 0) makes the lock consistent.
# - `cairn barrier` from 4 nodes, several generations: one serial party
#   per generation, all with the same generation.
# - `cairn sync ls` / `show` (and --table) while node 2 holds a lock and a
#   process of node 3 waits for it: home, holder node and pid, waiter node
#   and pid, tokens, cached_at; destroy.
# - Bad input: a 10 MB name (through `cairn batch`: one argv string is at
#   most 128 KiB, so a 100 KB one goes through argv), an empty name,
#   --parties 0, a barrier on a mutex's name, a parties mismatch, unknown
#   options, lock without a command, lock over tcp, lock inside a batch:
#   clear JSON errors, and every syncd still answers after, same pid.
# Skips (77) without root, netns or a syncd binary.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
SYNCD="$CAIRN_BUILD/services/syncd/syncd"
[ -x "$SYNCD" ] || { echo "SKIP: no syncd built"; exit 77; }

name="y$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
unset CAIRN_NODE CAIRN_CONFIG CAIRN_LOCK_TOKEN CAIRN_LOCK_OWNER_DIED
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT
W="$T_TMP/work"
mkdir -p "$W"
# Locks that should be granted soon get a deadline anyway, so that a lock
# never granted is a failure of this test, not a hang until meson kills it.
WAIT=(--timeout 30000)

# on K CMD...: CMD inside node K's network namespace. (ip netns exec execs
# CMD in place: `ip netns exec NS cairn ... &` gives $! = cairn's pid, which
# `on ... &`, a subshell, would not.)
on() { local k=$1; shift; ip netns exec "cairn-$name-$k" "$@"; }

# jq_ok JSON ARGS...: jq -e ARGS on JSON, which must not be empty.
jq_ok() {
    local in=$1; shift
    [ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null
}

# wait_for S CMD...: CMD succeeds within S seconds.
wait_for() {
    local limit=$1 i; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    return 1
}

# show_ok NAME FILTER: `sync show NAME` matches the jq FILTER.
show_ok() { local n=$1; shift; jq_ok "$("$CAIRN" sync show "$n" 2>/dev/null)" "$@"; }

# syncd_pids: "node pid" of every node's syncd, from cluster status.
syncd_pids() {
    "$CAIRN" cluster status --name "$name" |
        jq -r '.nodes[] | "\(.id) \(.services[] | select(.name == "syncd") | "\(.pid) \(.running)")"' 
}

up=$("$CAIRN" cluster up --nodes 4) || { t_fail "cluster up exit $?"; t_done; }
jq_ok "$up" '[.nodes[0].services[] | .name] | index("syncd")' ||
    { echo "SKIP: the cluster runs no syncd"; exit 77; }
for id in 1 2 3 4; do
    t_check "node $id alive on all" t_wait_state 15 "$id" alive 1 2 3 4
done
for id in 1 2 3 4; do
    t_check "syncd of node $id answers sync ls" wait_for 15 \
        eval "\"$CAIRN\" --node $id sync ls >/dev/null 2>&1"
done
pids_before=$(syncd_pids)

# ---- mutual exclusion from 4 nodes --------------------------------------

# A read-modify-write of a shared file with a sleep between read and write,
# start and end marked with the grant's token in a log.
cat > "$W/incr.sh" <<'EOF'
#!/bin/sh
f=$1
echo "S $CAIRN_LOCK_TOKEN" >> "$f.log"
n=$(cat "$f")
sleep 0.02
echo $((n + 1)) > "$f"
echo "E $CAIRN_LOCK_TOKEN" >> "$f.log"
EOF
chmod +x "$W/incr.sh"

# contend LOCK FILE ROUNDS [lock options]: ROUNDS increments of FILE from
# each of the 4 nodes at once; failures counted in FILE.fail.
contend() {
    local lock=$1 file=$2 rounds=$3 k; shift 3
    echo 0 > "$file"; : > "$file.log"; : > "$file.fail"
    for k in 1 2 3 4; do
        (
            for ((i = 0; i < rounds; i++)); do
                on "$k" "$CAIRN" --node "$k" "${WAIT[@]}" lock "$lock" "$@" -- "$W/incr.sh" "$file" \
                    2>>"$file.err" || echo "node $k round $i exit $?" >> "$file.fail"
            done
        ) &
    done
    wait
}

# marks_ok FILE: S/E marks strictly alternate, each pair with one token,
# tokens strictly increasing (bash integers are 64-bit: tokens fit).
marks_ok() {
    local tag tok open="" last=0 n=0
    while read -r tag tok; do
        case $tag in
        S) [ -z "$open" ] || { echo "  overlap: S $tok inside $open" >&2; return 1; }
           [[ $tok =~ ^[0-9]+$ ]] || { echo "  token '$tok' is not a number" >&2; return 1; }
           [ "$tok" -gt "$last" ] || { echo "  token $tok after $last" >&2; return 1; }
           open=$tok; last=$tok ;;
        E) [ "$open" = "$tok" ] || { echo "  E $tok does not close '$open'" >&2; return 1; }
           open=""; n=$((n + 1)) ;;
        esac
    done < "$1"
    [ -z "$open" ] && [ "$n" -gt 0 ]
}

R=10
contend counter "$W/count" "$R"
t_check "lock from 4 nodes: every cairn lock exited 0" test ! -s "$W/count.fail"
t_check "lock from 4 nodes: count exact ($(cat "$W/count") of $((4 * R)))" \
    test "$(cat "$W/count")" -eq $((4 * R))
t_check "lock from 4 nodes: critical sections never overlap, tokens increase" \
    marks_ok "$W/count.log"
[ -s "$W/count.fail" ] && { cat "$W/count.fail" "$W/count.err" >&2; }

contend counter-nc "$W/countnc" "$R" --no-cache
t_check "lock --no-cache from 4 nodes: every cairn lock exited 0" test ! -s "$W/countnc.fail"
t_check "lock --no-cache from 4 nodes: count exact ($(cat "$W/countnc") of $((4 * R)))" \
    test "$(cat "$W/countnc")" -eq $((4 * R))
t_check "lock --no-cache: sections never overlap, tokens increase" marks_ok "$W/countnc.log"
t_check "a --no-cache lock is never cached" show_ok counter-nc '.cached_at == null and .state == "free"'

# The same increments with no lock lose some: the check above can fail.
echo 0 > "$W/race"
for k in 1 2 3 4; do
    ( for ((i = 0; i < 5; i++)); do CAIRN_LOCK_TOKEN=0 "$W/incr.sh" "$W/race"; done ) &
done
wait
echo "info: without the lock, 20 increments gave $(cat "$W/race")"

# A lock only node 1 uses stays cached there once released.
"$CAIRN" --node 1 "${WAIT[@]}" lock solo -- true
"$CAIRN" --node 1 "${WAIT[@]}" lock solo -- true
t_check "a lock only node 1 used is cached at node 1" show_ok solo \
    '.cached_at == 1 and .kind == "mutex" and (.holders | length) == 0'

# ---- exit status, timeout, --try, --print-token ---------------------------

"$CAIRN" --node 2 "${WAIT[@]}" lock st -- sh -c 'exit 7'
t_check "lock exits with the command's status (7)" test $? -eq 7
"$CAIRN" --node 2 "${WAIT[@]}" lock st -- sh -c 'kill -TERM $$'
t_check "lock exits 128+15 when the command dies of SIGTERM" test $? -eq 143
out=$("$CAIRN" --node 2 "${WAIT[@]}" lock st -- "$W/no-such-command" 2>"$W/err"); rc=$?
t_check "a command that does not exist: exit 127, not-found error, nothing on stdout" \
    eval '[ $rc -eq 127 ] && [ -z "$out" ] && jq -e ".error.code == \"not-found\" and (.error.message | test(\"no-such-command\"))" "$W/err" >/dev/null'
t_check "... and the lock was given back" show_ok st '.state != "held" and (.holders | length) == 0'
out=$("$CAIRN" --node 3 "${WAIT[@]}" lock st -- sh -c 'echo "name=$CAIRN_LOCK_NAME token=$CAIRN_LOCK_TOKEN died=${CAIRN_LOCK_OWNER_DIED:-no}"')
t_check "the command sees CAIRN_LOCK_NAME and CAIRN_LOCK_TOKEN, no owner-died" \
    eval '[[ $out =~ ^name=st\ token=[0-9]{10,}\ died=no$ ]]'
out=$("$CAIRN" --node 3 "${WAIT[@]}" lock st --print-token -- sh -c 'echo "$CAIRN_LOCK_TOKEN"')
tok_line=$(head -n1 <<<"$out"); tok_env=$(sed -n 2p <<<"$out")
t_check "--print-token: one JSON line with the grant, then the command's output" \
    jq_ok "$tok_line" --arg t "$tok_env" '.name == "st" and .token == $t and .owner_died == false and (.home | . >= 1 and . <= 4) and (.cached | type) == "boolean"'
"$CAIRN" --node 2 "${WAIT[@]}" lock st -- sh -c 'exit 0' </dev/null
t_check "stdin and an exit 0 pass through" test $? -eq 0
out=$(echo piped | "$CAIRN" --node 2 "${WAIT[@]}" lock st -- cat)
t_check "the command reads lock's stdin" test "$out" = piped
out=$("$CAIRN" --node 2 "${WAIT[@]}" lock st -- sh -c 'cat <&3' 3<<<"fd three")
t_check "the command keeps an fd its caller opened (3)" test "$out" = "fd three"

# node 2 holds "held"; the holder is the parent of the command.
# It holds until the checks below are done (a file says so; 60 s at most):
# a fixed hold was too short for them on a loaded machine under ASan.
rm -f "$W/holder.pid" "$W/ran" "$W/release"
ip netns exec "cairn-$name-2" "$CAIRN" --node 2 lock held --no-cache -- sh -c "echo \$PPID \$CAIRN_LOCK_TOKEN > $W/holder.pid; i=0; while [ ! -e $W/release ] && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i + 1)); done" &
lockbg=$!
t_check "node 2 holds 'held'" wait_for 10 test -s "$W/holder.pid"
read -r holder holder_token < "$W/holder.pid" 2>/dev/null || { holder=0; holder_token=0; }
t_check "the holder is the cairn lock process" test "$holder" = "$lockbg"

t0=$(date +%s%N)
t_check "lock --timeout 300 while another holds it: timeout, exit 3" \
    t_expect_error 3 timeout on 3 "$CAIRN" --node 3 --timeout 300 lock held -- touch "$W/ran"
took=$(( ($(date +%s%N) - t0) / 1000000 ))
t_check "... after about 300 ms ($took ms)" test "$took" -ge 250 -a "$took" -lt 2500
t_check "... and the command did not run" test ! -e "$W/ran"
t_check "lock --try while another holds it: busy, exit 1" \
    t_expect_error 1 busy "$CAIRN" --node 4 lock held --try -- touch "$W/ran"
t_check "... and the command did not run" test ! -e "$W/ran"

# a process of node 3 waits for it
ip netns exec "cairn-$name-3" "$CAIRN" --node 3 "${WAIT[@]}" lock held -- true &
waiter=$!
t_check "sync show: node 3's waiter queued" wait_for 5 show_ok held '(.waiters | length) == 1'
sh=$("$CAIRN" sync show held)
t_check "sync show: kind, home, state held" jq_ok "$sh" \
    '.name == "held" and .kind == "mutex" and (.home | . >= 1 and . <= 4) and .state == "held" and .shared == false and .owner_uid == 0'
t_check "sync show: the holder is node 2, pid of its cairn lock, with its token" \
    jq_ok "$sh" --argjson p "$holder" --arg t "$holder_token" \
    '(.holders | length) == 1 and .holders[0].node == 2 and .holders[0].pid == $p and .holders[0].mode == "lock"
     and .holders[0].token == $t and .token == $t and .cached_at == null'
t_check "sync show: the waiter is node 3, pid of its cairn lock, since_ms" \
    jq_ok "$sh" --argjson p "$waiter" \
    '.waiters[0].node == 3 and .waiters[0].pid == $p and .waiters[0].mode == "lock" and (.waiters[0].since_ms | type) == "number"'
t_check "sync show: value and generation null for a mutex; answered_by" jq_ok "$sh" \
    '.value == null and .generation == null and (.answered_by.id | type) == "number"'
ls=$("$CAIRN" --node 4 sync ls)
t_check "sync ls from node 4: the object with its holder and 1 waiter" jq_ok "$ls" --argjson p "$holder" \
    '(.objects[] | select(.name == "held") | .state == "held" and .waiters == 1 and .holders[0].node == 2 and .holders[0].pid == $p and .kind == "mutex")
     and (.unreachable == []) and .answered_by.id == 4'
t_check "sync ls lists the counters and solo too" jq_ok "$ls" \
    '[.objects[].name] as $n | ["counter", "counter-nc", "solo", "st"] | all(. as $x | $n | index($x))'
t_check "sync ls --table: a row for 'held' with holder n2 and its pid" bash -c \
    "'$CAIRN' --table sync ls | grep -Eq '^held +mutex +[1-4] +held +[0-9]+ +n2 pid $holder .* +1 +- +no +0\$'"
t_check "sync ls --table: the header" bash -c \
    "'$CAIRN' --table sync ls | head -n1 | grep -Eq '^NAME +KIND +HOME +STATE +TOKEN +HOLDERS +WAITERS +CACHED_AT +SHARED +OWNER\$'"
t_check "sync show --table: holder and waiter rows" bash -c \
    "'$CAIRN' --table sync show held | grep -Eq '^holders\\.1 +n2 pid $holder ' &&
     '$CAIRN' --table sync show held | grep -Eq '^waiters\\.1 +n3 pid $waiter .*waiting [0-9]+ ms\$'"
t_check "sync destroy of a held lock: failed-precondition" \
    t_expect_error 1 failed-precondition "$CAIRN" --node 1 sync destroy held
touch "$W/release"
wait "$lockbg"; t_check "the holder's lock exited 0" test $? -eq 0
wait "$waiter"; t_check "the waiter got it after the holder: exit 0" test $? -eq 0
t_check "then nobody holds or waits" show_ok held '(.holders | length) == 0 and (.waiters | length) == 0'

# ---- owner died -------------------------------------------------------------

rm -f "$W/od.pid"
ip netns exec "cairn-$name-2" "$CAIRN" --node 2 lock od -- sh -c "echo \$\$ > $W/od.pid; exec sleep 30" &
odbg=$!
t_check "node 2 holds 'od'" wait_for 10 test -s "$W/od.pid"
cmdpid=$(cat "$W/od.pid" 2>/dev/null || echo 0)
kill -9 "$odbg"; wait "$odbg" 2>/dev/null
t_check "the holder killed with -9 takes its command with it" wait_for 5 \
    eval 'case $(t_proc_state "$cmdpid") in gone|Z) true ;; *) false ;; esac'
out=$("$CAIRN" --node 3 --timeout 10000 lock od -- sh -c 'echo "died=${CAIRN_LOCK_OWNER_DIED:-no}"; exit 1')
t_check "the next holder runs with CAIRN_LOCK_OWNER_DIED=1" test "$out" = "died=1"
out=$("$CAIRN" --node 4 --timeout 10000 lock od --print-token -- sh -c 'echo "died=${CAIRN_LOCK_OWNER_DIED:-no}"')
t_check "a failed repair (exit 1) passes owner-died on" \
    eval '[ "$(sed -n 2p <<<"$out")" = died=1 ] && jq_ok "$(head -n1 <<<"$out")" ".owner_died == true"'
out=$("$CAIRN" --node 1 --timeout 10000 lock od -- sh -c 'echo "died=${CAIRN_LOCK_OWNER_DIED:-no}"')
t_check "after a repair that exited 0 the lock is consistent again" test "$out" = "died=no"

# ---- barrier from 4 nodes ---------------------------------------------------

G=3
for ((gen = 1; gen <= G; gen++)); do
    for k in 1 2 3 4; do
        on "$k" "$CAIRN" --node "$k" --timeout 20000 barrier bar --parties 4 > "$W/bar.$k" 2>&1 &
    done
    wait
    all=$(cat "$W"/bar.[1-4] | jq -s .)
    t_check "barrier generation $gen: 4 answers, one serial, one generation" jq_ok "$all" \
        'length == 4 and ([.[] | select(.serial)] | length) == 1 and ([.[].generation] | unique | length) == 1
         and all(.[]; .name == "bar" and .parties == 4)'
    gens+=("$(jq '.[0].generation' <<<"$all")")
done
t_check "barrier generations increase (${gens[*]})" \
    eval '[ "${gens[0]}" -lt "${gens[1]}" ] && [ "${gens[1]}" -lt "${gens[2]}" ]'
t_check "barrier --table" bash -c "'$CAIRN' --table barrier one --parties 1 | grep -Eq '^serial +true\$'"
t_check "sync show of a barrier: parties as value, generation" show_ok bar \
    --argjson g "${gens[2]}" '.kind == "barrier" and .value == 4 and .generation >= $g'

# ---- destroy -------------------------------------------------------------------

d=$("$CAIRN" --node 1 sync destroy solo) || t_fail "sync destroy solo exit $?"
t_check "sync destroy of a free lock" jq_ok "$d" '.name == "solo" and .destroyed == true and .answered_by.id == 1'
t_check "... then it is not found" t_expect_error 1 not-found "$CAIRN" sync show solo

# ---- bad input -------------------------------------------------------------------

python3 -c 'import json, sys; sys.stdout.write(json.dumps(["--node", "1", "barrier", "n" * (10 << 20), "--parties", "2"]) + "\n")' > "$W/huge.jsonl"
echo '["--node","1","sync","ls"]' >> "$W/huge.jsonl"
out=$("$CAIRN" batch < "$W/huge.jsonl")
t_check "a 10 MB name (through batch): usage, exit 100, a short message" jq_ok "$(head -n1 <<<"$out")" \
    '.ok == false and .error.code == "usage" and .exit == 100 and (.error.message | test("NAME is 10485760 bytes")) and (.error.message | length) < 200'
t_check "... and the next batch line is answered" jq_ok "$(sed -n 2p <<<"$out")" '.ok == true'
big=$(head -c 100000 /dev/zero | tr '\0' n)
t_check "a 100 KB name (argv): usage, exit 100" t_expect_error 100 usage "$CAIRN" lock "$big" -- true
t_check "a 100 KB name to sync show: usage" t_expect_error 100 usage "$CAIRN" sync show "$big"
t_check "an empty name: usage" t_expect_error 100 usage "$CAIRN" lock "" -- true
t_check "an empty barrier name: usage" t_expect_error 100 usage "$CAIRN" barrier "" --parties 2
t_check "--parties 0: usage" t_expect_error 100 usage "$CAIRN" barrier b0 --parties 0
t_check "--parties missing: usage" t_expect_error 100 usage "$CAIRN" barrier b0
t_check "--parties x: usage" t_expect_error 100 usage "$CAIRN" barrier b0 --parties x
t_check "a barrier on a mutex's name: failed-precondition, exit 1" \
    t_expect_error 1 failed-precondition "$CAIRN" --timeout 2000 barrier counter --parties 2
t_check "a parties mismatch: failed-precondition, exit 1" \
    t_expect_error 1 failed-precondition "$CAIRN" --timeout 2000 barrier bar --parties 3
t_check "lock on a barrier's name: failed-precondition" \
    t_expect_error 1 failed-precondition "$CAIRN" --timeout 2000 lock bar -- true
t_check "lock: unknown option" t_expect_error 100 usage "$CAIRN" lock x --frob -- true
t_check "barrier: unknown option" t_expect_error 100 usage "$CAIRN" barrier x --parties 2 --frob
t_check "sync ls: unknown option" t_expect_error 100 usage "$CAIRN" sync ls --frob
t_check "sync ls: an argument" t_expect_error 100 usage "$CAIRN" sync ls extra
t_check "sync show: no name" t_expect_error 100 usage "$CAIRN" sync show
t_check "sync: no verb" t_expect_error 100 usage "$CAIRN" sync
t_check "lock: no '--'" t_expect_error 100 usage "$CAIRN" lock x true
t_check "lock: nothing after '--'" t_expect_error 100 usage "$CAIRN" lock x --
t_check "lock: two names" t_expect_error 100 usage "$CAIRN" lock x y -- true
t_check "lock: --try with --timeout" t_expect_error 100 usage "$CAIRN" --timeout 5 lock x --try -- true
t_check "lock --table: usage" t_expect_error 100 usage "$CAIRN" --table lock x -- true
port=$(jq -r '.nodes[0].services[] | select(.name == "syncd") | .port' <<<"$up")
net=$(jq -r '.subnet | sub("\\.0/24$"; "")' <<<"$up")
t_check "lock over tcp: usage, saying ipc" bash -c \
    "'$CAIRN' --endpoint tcp://$net.1:$port lock x -- true 2>&1 >/dev/null | jq -e '.error.code == \"usage\" and (.error.message | test(\"ipc\"))' >/dev/null"
out=$(echo '["lock","x","--","true"]' | "$CAIRN" batch)
t_check "lock inside a batch: usage" jq_ok "$out" '.ok == false and .error.code == "usage" and .exit == 100'
t_check "sync show of an unknown name: not-found, exit 1" \
    t_expect_error 1 not-found "$CAIRN" sync show no-such-object
t_check "cairn help lock: its object, not a table" jq_ok "$("$CAIRN" help lock)" \
    '.command == "lock" and .table == false and ([.options[].option] | index("--print-token"))'
t_check "cairn help lists barrier and sync ls|show|destroy" jq_ok "$("$CAIRN" help)" \
    '[.commands[].command] as $c | ["barrier", "sync ls", "sync show", "sync destroy"] | all(. as $x | $c | index($x))'

for id in 1 2 3 4; do
    t_check "syncd of node $id still answers" eval "\"$CAIRN\" --node $id sync ls >/dev/null"
done
t_check "no syncd restarted (same pids)" test "$(syncd_pids)" = "$pids_before"
t_check "a lock still works after all that" "$CAIRN" --node 3 "${WAIT[@]}" lock counter -- true

t_done
