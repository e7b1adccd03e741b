#!/bin/bash
# test-jobs - cairn run, ps, signal, kill, wait, logs on a 4-node local
# cluster (issue 19, items 1-2; docs/jobs.md):
#   - a job run on node 1, and one run on node 3 from node 1: each in its
#     own pid namespace (the program is pid 2, /proc shows only the job),
#     in a sub-cgroup of its node's, with its gpid; ps from every node
#     lists both on the right node;
#   - signals: STOP/CONT (ps says stopped, then running), TERM forwarded
#     to a program that traps it (its exit code), kill (signal 9), an exit
#     code and a death by signal inside, each reported by wait from
#     another node; the job's sub-cgroup is gone after;
#   - logs of stdout and stderr, --follow until the job ends;
#   - a user who is not root runs, lists, signals and waits for their own
#     jobs (as themselves), sees no one else's, and is refused root's;
#   - ghostd restarted keeps its job; a node's ghostd stopped is listed
#     unreachable by ps;
#   - bad input: an empty command, a relative cwd, a missing program, an
#     unknown gpid, a malformed gpid, a bad signal: clear JSON errors; a
#     wait past its deadline is a timeout, the job runs on.
# Skips (77) without root, netns, useradd/runuser or the binaries.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
for tool in useradd userdel runuser; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
INIT="$CAIRN_BUILD/services/ghostd/engine/ghost-init"
[ -x "$INIT" ] || { echo "SKIP: $INIT not built"; exit 77; }

name="j$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name" CAIRN
UA="cairnja$$"
s_cleanup() {
    "$CAIRN" cluster down --name "$name" >/dev/null 2>&1
    if id -u "$UA" >/dev/null 2>&1; then
        pkill -9 -u "$(id -u "$UA")" 2>/dev/null
        for p in 1 2 3 4 5; do userdel "$UA" 2>/dev/null && break; sleep 0.1; done
        getent group "$UA" >/dev/null && groupdel "$UA" 2>/dev/null
    fi
    t_cleanup
}
trap s_cleanup EXIT
chmod 755 "$T_TMP"   # the user passes through to the run base

up=$("$CAIRN" cluster up --nodes 4) || { t_fail "cluster up exit $?"; t_done; }
cgroup_mode=$(jq -r .cgroup <<<"$up")
for k in 1 2 3 4; do t_check "node $k alive on all" t_wait_state 15 "$k" alive 1 2 3 4; done

# c K ARGS...: the CLI at node K's ghostd.
c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
# expect_err RC CODE PATTERN CMD...: CMD exits RC with JSON error CODE and
# a message matching PATTERN.
expect_err() {
    local rc=$1 code=$2 pat=$3 out got; shift 3
    out=$("$@" 2>&1 >/dev/null); got=$?
    [ "$got" -eq "$rc" ] && jq -e --arg c "$code" --arg p "$pat" \
        '.error.code == $c and (.error.message | test($p))' <<<"$out" >/dev/null ||
        { echo "  got exit $got: ${out:0:300}" >&2; return 1; }
}
# ps_has K GPID FILTER: node K's ps lists GPID and FILTER holds on it.
ps_has() { c "$1" ps | jq -e --arg g "$2" ".jobs[] | select(.gpid == \$g) | $3" >/dev/null; }
pid_of() {
    "$CAIRN" cluster status | jq -r --argjson id "$1" --arg s "$2" \
        '.nodes[] | select(.id == $id) | .services[] | select(.name == $s) | .pid'
}
t_ghostds_see 4

# --- run here and elsewhere ------------------------------------------------
j1=$(cd / && c 1 run --node 1 --name here -- sh -c 'echo pid=$$; ls /proc | grep -E "^[0-9]+$" | tr "\n" " "; echo; echo to-err >&2; exec sleep 1000')
g1=$(jq -r .gpid <<<"$j1"); h1=$(jq -r .host_pid <<<"$j1")
t_json_check "run on node 1: gpid 1.N, node 1, pid 2, running, root's, placed by the request" "$j1" \
    '(.gpid | test("^1\\.[0-9]+$")) and .node == 1 and .pid == 2 and .state == "running" and .uid == 0 and .name == "here" and .answered_by.id == 1 and .placed_by == "request" and .held_ms == 0'
j3=$(cd / && c 1 run --node 3 --env CAIRN_T=seen -- sh -c 'echo "t=$CAIRN_T cwd=$(pwd)"; exec sleep 1000')
g3=$(jq -r .gpid <<<"$j3"); h3=$(jq -r .host_pid <<<"$j3")
t_json_check "run --node 3 from node 1: gpid 3.N on node 3" "$j3" \
    '(.gpid | test("^3\\.[0-9]+$")) and .node == 3 and .answered_by.id == 1'
t_check "the reaper runs, the program is its child" test -d "/proc/$h1" -a -d "/proc/$h3"
sleep 0.3
out=$(c 2 logs "$g1")
t_check "the program is pid 2 in its namespace" grep -qx 'pid=2' <<<"$out"
procs=$(sed -n 2p <<<"$out")
t_check "its /proc shows only the job ($procs)" \
    bash -c '[[ " $1 " == *" 1 "* && " $1 " == *" 2 "* ]] && for p in $1; do [ "$p" -le 10 ] || exit 1; done' _ "$procs"
t_check "logs --stderr" grep -qx 'to-err' <<<"$(c 3 logs "$g1" --stderr)"
t_check "the environment and the cwd as given (--env over ours, cwd /)" \
    grep -qx 't=seen cwd=/' <<<"$(c 4 logs "$g3")"
if [ "$cgroup_mode" != null ]; then
    t_check "job 1 is in its node's sub-cgroup job-$g1" grep -q "/cairn/$name/1/job-$g1\$" "/proc/$h1/cgroup"
    t_check "job 3 is in its node's sub-cgroup job-$g3" grep -q "/cairn/$name/3/job-$g3\$" "/proc/$h3/cgroup"
    shares=/sys/fs/cgroup/cpu/cairn/$name/1/job-$g1/cpu.shares
    [ -f "$shares" ] && t_check "job 1 weighs an eighth of a daemon on the CPU (cpu.shares $(cat "$shares"))" \
        grep -qx 128 "$shares"
fi
for k in 1 2 3 4; do
    t_check "ps from node $k lists $g1 on node 1 and $g3 on node 3" \
        bash -c 'out=$(CAIRN_NODE=$1 "$CAIRN" ps) && jq -e --arg a "$2" --arg b "$3" \
            "([.jobs[] | select(.gpid == \$a and .node == 1 and .host_pid > 1 and .processes >= 2)] | length == 1) and
             ([.jobs[] | select(.gpid == \$b and .node == 3)] | length == 1) and
             ([.nodes[] | select(.reachable)] | length == 4)" <<<"$out" >/dev/null' _ "$k" "$g1" "$g3"
done
t_check "ps --node 3 lists only node 3's jobs" \
    bash -c '"$CAIRN" ps --node 3 | jq -e "(.jobs | length) >= 1 and all(.jobs[]; .node == 3)" >/dev/null'
t_check "ps --table" bash -c '"$CAIRN" ps --table | grep -q "^GPID"'

# --- signals, exit statuses --------------------------------------------------
t_json_check "signal STOP from node 2 to node 3's job" "$(c 2 signal "$g3" --signal STOP)" '.signal == 19'
t_check "ps says stopped" t_wait_for 5 ps_has 4 "$g3" '.state == "stopped"'
c 4 signal "$g3" --signal SIGCONT >/dev/null || t_fail "signal CONT exit $?"
t_check "ps says running again" t_wait_for 5 ps_has 1 "$g3" '.state == "running"'
t_json_check "kill from node 2" "$(c 2 kill "$g3")" '.gpid == "'"$g3"'"'
t_json_check "wait from node 4: killed by 9" "$(c 4 wait "$g3")" \
    '.exited and .state == "exited" and .exit_signal == 9 and .exit_code == -1 and .node == 3'
t_check "the job's processes are gone" t_wait_for 5 test ! -d "/proc/$h3/task"
[ "$cgroup_mode" != null ] && t_check "its sub-cgroup is removed" \
    t_wait_for 5 bash -c '! ls -d /sys/fs/cgroup/*/cairn/'"$name"'/3/job-'"$g3"' 2>/dev/null | grep -q .'

jt=$(c 3 run --node 3 -- sh -c 'trap "echo got-term; exit 3" TERM; while :; do sleep 0.1; done' | jq -r .gpid)
sleep 0.3
c 1 signal "$jt" >/dev/null || t_fail "signal TERM exit $?"
t_json_check "TERM forwarded to the program: its trap's exit 3" "$(c 2 wait "$jt")" \
    '.exit_code == 3 and .exit_signal == 0'
t_check "its trap printed" grep -qx got-term <<<"$(c 1 logs "$jt")"
t_json_check "an exit code (7)" "$(c 2 run --node 4 --wait -- sh -c 'exit 7')" \
    '.exited and .exit_code == 7 and .node == 4'
t_json_check "a death by signal inside (SEGV)" "$(c 1 run --node 1 --wait -- sh -c 'kill -SEGV $$')" \
    '.exited and .exit_signal == 11 and .exit_code == -1'
t_json_check "wait on an ended job answers at once" "$(c 3 wait "$jt")" '.exit_code == 3'
t_check "a signal to an ended job: failed-precondition" \
    expect_err 1 failed-precondition 'has exited' c 1 signal "$jt"
jf=$(c 2 run --node 2 -- sh -c 'for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done' | jq -r .gpid)
t_check "logs --follow prints until the job ends" \
    bash -c '[ "$(CAIRN_NODE=1 "$CAIRN" logs "$1" --follow | grep -c "^line-")" -eq 5 ]' _ "$jf"

# --- a user who is not root --------------------------------------------------------
useradd --no-create-home --user-group --shell /usr/sbin/nologin "$UA" 2>/dev/null ||
    { echo "SKIP: useradd"; exit 77; }
UIDA=$(id -u "$UA")
ua() { (cd / && runuser -u "$UA" -- env CAIRN_NODE="$1" CAIRN_RUN_BASE="$CAIRN_RUN_BASE" \
        CAIRN_CLUSTER="$CAIRN_CLUSTER" "$CAIRN" "${@:2}"); }
ja=$(ua 2 run --node 4 -- sleep 1000)
ga=$(jq -r .gpid <<<"$ja"); ha=$(jq -r .host_pid <<<"$ja")
t_json_check "the user runs a job on node 4 from node 2: theirs" "$ja" ".uid == $UIDA and .node == 4"
t_check "its processes run as the user" \
    bash -c 'for p in $1 $(cat /proc/$1/task/*/children); do grep -q "^Uid:[[:space:]]*$2[[:space:]]" /proc/$p/status || exit 1; done' _ "$ha" "$UIDA"
t_check "the user's ps lists their job and no one else's" \
    bash -c 'out=$1; jq -e --arg g "$2" --argjson u "$3" "(.jobs | length) >= 1 and all(.jobs[]; .uid == \$u) and any(.jobs[]; .gpid == \$g)" <<<"$out" >/dev/null' _ "$(ua 1 ps)" "$ga" "$UIDA"
t_check "root's ps lists it too, and --user narrows to it" \
    bash -c '"$CAIRN" ps --user "$1" | jq -e --arg g "$2" "(.jobs | length) >= 1 and all(.jobs[]; .user == \"$1\") and any(.jobs[]; .gpid == \$g)" >/dev/null' _ "$UA" "$ga"
t_json_check "the user signals their own job (STOP) from node 1" "$(ua 1 signal "$ga" --signal STOP)" '.signal == 19'
t_check "it stopped" t_wait_for 5 ps_has 1 "$ga" '.state == "stopped"'
t_check "the user is refused a signal to root's job" \
    expect_err 1 permission-denied "uid 0's" ua 3 signal "$g1" --signal KILL
t_check "and a wait for it" expect_err 1 permission-denied "uid 0's" ua 2 wait "$g1"
t_check "and its logs" expect_err 1 permission-denied "" ua 2 logs "$g1"
t_check "root's job still runs" test -d "/proc/$h1/task"
jw=$(ua 3 run --node 1 --wait -- sh -c 'echo "mine $(id -u)"; exit 4')
t_json_check "the user's job ran to its end on node 1 (run --wait)" "$jw" \
    ".uid == $UIDA and .exit_code == 4 and .node == 1"
t_check "the user reads its logs" \
    test "$(ua 2 logs "$(jq -r .gpid <<<"$jw")")" = "mine $UIDA"
t_json_check "the user kills their job" "$(ua 3 kill "$ga")" '.gpid == "'"$ga"'"'
t_json_check "and waits for it: killed" "$(ua 1 wait "$ga")" '.exit_signal == 9'

# --- ghostd restarted, ghostd stopped -------------------------------------------
gp=$(pid_of 1 ghostd)
kill -TERM "$gp"
for i in $(seq 50); do kill -0 "$gp" 2>/dev/null || break; sleep 0.1; done
t_check "node 1's job runs while its ghostd is down" test -d "/proc/$h1/task"
"$CAIRN" node restart 1 >/dev/null || t_fail "node restart 1 exit $?"
t_check "a restarted ghostd keeps its job (same reaper)" \
    t_wait_for 10 ps_has 2 "$g1" '.state == "running" and .host_pid == '"$h1"
t_json_check "and signals it" "$(c 3 signal "$g1" --signal CONT)" '.node == 1'
gp=$(pid_of 4 ghostd)
kill -TERM "$gp"
for i in $(seq 50); do kill -0 "$gp" 2>/dev/null || break; sleep 0.1; done
out=$(c 1 ps --timeout 2000)
t_json_check "ps lists node 4's stopped ghostd unreachable, the others reachable" "$out" \
    '([.nodes[] | select(.node == 4 and (.reachable | not) and (.error | length > 0))] | length == 1) and ([.nodes[] | select(.reachable)] | length == 3)'
"$CAIRN" node restart 4 >/dev/null || t_fail "node restart 4 exit $?"

# --- bad input ---------------------------------------------------------------------
t_check "an empty command: usage" expect_err 100 usage "no command" c 1 run --
t_check "no '--': usage" expect_err 100 usage "after '--'" c 1 run sleep 1
t_check "a relative cwd: usage" expect_err 100 usage "not an absolute" c 1 run --cwd rel -- true
jobs_before=$(ls "$T_TMP/run/$name/jobs" | wc -l)
t_check "a missing program: not-found" \
    expect_err 1 not-found "cannot execute /no/such" c 2 run --node 2 -- /no/such
t_check "nothing left of it: no job directory, no job in ps" \
    bash -c '[ "$(ls "$1" | wc -l)" -eq "$2" ] && CAIRN_NODE=2 "$CAIRN" ps | jq -e "all(.jobs[]; .argv[0] != \"/no/such\")" >/dev/null' \
    _ "$T_TMP/run/$name/jobs" "$jobs_before"
t_check "a missing cwd: not-found" expect_err 1 not-found "/no/dir" c 2 run --node 2 --cwd /no/dir -- true
t_check "an unknown gpid: not-found" expect_err 1 not-found "no job 9\\.99" c 1 signal 9.99
t_check "an unknown gpid's wait: not-found" expect_err 1 not-found "no job 2\\.999" c 3 wait 2.999
t_check "a malformed gpid: invalid-argument" expect_err 1 invalid-argument "not a gpid" c 1 kill 01.x
t_check "a bad signal name: usage" expect_err 100 usage "not a signal" c 1 signal "$g1" --signal NOPE
t_check "a bad signal number: usage" expect_err 100 usage "not a signal" c 1 signal "$g1" --signal 99
t_check "logs of an unknown job: not-found" expect_err 1 not-found "" c 1 logs 4.999
t_check "wait past its deadline: timeout, answered by ghostd (exit 1)" \
    expect_err 1 timeout "still runs" c 2 wait "$g1" --timeout 1500
t_check "root's job survived all that" test -d "/proc/$h1/task"

# the daemons' logs (the harness's, appended across restarts): no
# sanitizer report, from the ghostds stopped above (leaks) or running
for k in 1 2 3 4; do
    log="$T_TMP/run/$name/$k/ghostd.log"
    if grep -qE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' "$log" 2>/dev/null; then
        t_fail "ghostd $k: sanitizer report in its log"
        grep -A30 -E 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' "$log" >&2
    fi
done
"$CAIRN" cluster down --name "$name" >/dev/null || t_fail "cluster down exit $?"
t_check "cluster down ends the jobs" t_wait_for 5 test ! -d "/proc/$h1/task"
t_done
