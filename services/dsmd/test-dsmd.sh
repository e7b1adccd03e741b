#!/bin/bash
# test-dsmd - dsmd on a 4-node local cluster (issue 23), as root, with
# dsm-tool run inside each node's namespace against its node's dsmd:
#   - a word written on one node is read on the others; a write elsewhere
#     is seen everywhere after (the read copies were invalidated);
#   - counters: processes on 4 nodes (two on node 1: one segment shared
#     by several processes of a node) increment their own slots (one
#     page: false sharing) and a shared counter under a syncd mutex:
#     exact totals;
#   - false sharing: two nodes write different words of one page, each
#     checks every write it made stuck; both finals exact;
#   - sequential consistency across nodes: store buffering (the outcome
#     where both read the old value never appears) and message passing
#     (data written before the flag is seen with the flag), 2000 runs each
#     under ASan here (bench/dsm.sh runs 100 000);
#   - unmodified programs (tests/shm-demo: shm_open+mmap, shmget+shmat)
#     as jobs with `cairn run --dsm` on different nodes share their
#     segments, a polling reader sees a write made on another node (and
#     its migration is refused: not carried yet), and shm_unlink removes
#     the segment;
#   - ls / show / rm: the segments, per node its pages and processes; rm
#     refused while a process maps one, then done;
#   - bad input: a size other than the segment's, a segment larger than
#     the node's memory, a bad name, EXCL on an existing one, a read-only
#     segment opened for writing by another user, a malformed packet on
#     the socket: clear errors, dsmd keeps serving;
#   - a node killed: a page it owned with a read copy on a survivor is
#     recovered from that copy (read, then written, elsewhere); the pages
#     only it held are lost (SIGBUS to a toucher, named by `cairn dsm
#     show`, a log line); pages owned elsewhere unaffected.
# Skips (77) without root, netns or the binaries.
. "$CAIRN_SOURCE/tests/integration/lib.sh"

t_require_netns
TOOL="$CAIRN_BUILD/tests/dsm-tool"
[ -x "$TOOL" ] && [ -x "$CAIRN_BUILD/services/dsmd/dsmd" ] || { echo "SKIP: not built"; exit 77; }
t_cluster_up dsm 4
declare -A RD
for k in 1 2 3 4; do
    RD[$k]=$(jq -r --argjson k "$k" '.nodes[] | select(.id == $k) | .rundir' "$T_TMP/up.json")
done

# on K CMD...: CMD inside node K's namespace, at node K's dsmd and syncd.
on() {
    local k=$1; shift
    ip netns exec "cairn-$T_CLUSTER-$k" env CAIRN_NODE_RUNDIR="${RD[$k]}" \
        CAIRN_SYNCD_ENDPOINT="ipc://${RD[$k]}/syncd.sock" "$@"
}
dt() { local k=$1; shift; on "$k" timeout 120 "$TOOL" "$@"; }

# expect_err CODE PATTERN CMD...: CMD exits 1 with the JSON error CODE.
expect_err() {
    local code=$1 pat=$2 out got; shift 2
    out=$("$@" 2>&1 >/dev/null); got=$?
    [ "$got" -eq 1 ] && jq -e --arg c "$code" --arg p "$pat" \
        '.error.code == $c and (.error.message | test($p))' <<<"$out" >/dev/null ||
        { echo "  got exit $got: ${out:0:300}" >&2; return 1; }
}

# ---- a page seen everywhere ------------------------------------------------
t_check "node 1 writes 41" dt 1 put w 16384 0 41
for k in 2 3 4; do t_check "node $k reads 41" [ "$(dt $k get w 0)" = 41 ]; done
t_check "node 3 writes 42 (the read copies invalidated)" dt 3 put w 16384 0 42
for k in 1 2 4; do t_check "node $k reads 42" [ "$(dt $k get w 0)" = 42 ]; done
out=$("$CAIRN" dsm show w)
t_json_check "show w: one owner of page 0, 4 nodes" "$out" \
    '(.node_pages | length) == 4 and ([.node_pages[].owned] | add) == 4 and .lost_pages == 0'

# ---- counters ---------------------------------------------------------------
pids=()
for k in 1 2 3 4; do dt $k counter cnt $k 150 cnt-lock & pids+=($!); done
dt 1 counter cnt 5 150 cnt-lock & pids+=($!)
ok=1; for p in "${pids[@]}"; do wait "$p" || ok=0; done
t_check "counters: every process ran" [ "$ok" = 1 ]
t_check "counters: shared counter 750 exactly" [ "$(dt 2 get cnt 0)" = 750 ]
for s in 1 2 3 4 5; do
    t_check "counters: slot $s is 150" [ "$(dt 4 get cnt $((4096 + 8 * s)))" = 150 ]
done

# ---- false sharing -------------------------------------------------------------
dt 1 word fs 0 3000 >"$T_TMP/fs0" & a=$!
dt 2 word fs 1 3000 >"$T_TMP/fs1"; b=$?
wait "$a"; a=$?
t_check "false sharing: both writers kept every write ($a, $b)" [ "$a$b" = 00 ]
t_check "false sharing: word 0 is 3000 from node 3" [ "$(dt 3 get fs 0)" = 3000 ]
t_check "false sharing: word 1 is 3000 from node 4" [ "$(dt 4 get fs 8)" = 3000 ]

# ---- litmus ----------------------------------------------------------------------
RUNS=2000
dt 1 sb sb 0 $RUNS >"$T_TMP/sb0" 2>/dev/null & a=$!
dt 2 sb sb 1 $RUNS >"$T_TMP/sb1" 2>/dev/null; wait "$a"
both=$(comm -12 <(sort "$T_TMP/sb0") <(sort "$T_TMP/sb1") | wc -l)
t_check "store buffering across nodes: no run where both read the old value ($both of $RUNS)" \
    [ "$both" -eq 0 ]
dt 3 mp mp 0 $RUNS >/dev/null 2>&1 & a=$!
dt 4 mp mp 1 $RUNS >"$T_TMP/mp1" 2>&1; wait "$a"
t_check "message passing across nodes: no stale data after the flag" \
    grep -q "mp role 1: $RUNS runs, 0 violations" "$T_TMP/mp1"

# ---- unmodified programs: cairn run --dsm ------------------------------------
# shm-demo knows nothing of Cairn: plain shm_open/mmap and shmget/shmat. The
# shim is built with the tree's sanitizer: its runtime is not first in a
# program it is preloaded into, which ASan checks unless told not to.
DEMO="$CAIRN_BUILD/tests/shm-demo"
RUNENV=(--env ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0)
# run_dsm NODE ARGS...: shm-demo ARGS as a job on NODE with --dsm, waited
# for; prints its gpid, and its exit code on stderr when not 0.
run_dsm() {
    local k=$1 out; shift
    out=$("$CAIRN" run --dsm --node "$k" --wait "${RUNENV[@]}" -- "$DEMO" "$@") || return 1
    jq -r '.gpid' <<<"$out"
    jq -e '.exit_code == 0' <<<"$out" >/dev/null || { echo "  job: $(jq -c '{gpid, exit_code}' <<<"$out"), stderr: $("$CAIRN" logs --stderr "$(jq -r .gpid <<<"$out")")" >&2; return 1; }
}
t_check "POSIX: a writer job on node 2 (shm_open, ftruncate, mmap)" run_dsm 2 posix-put /demo 77
g=$(run_dsm 3 posix-get /demo 5)
t_check "POSIX: a reader job on node 3 reads 77" [ "$("$CAIRN" logs "$g")" = 77 ]
t_check "System V: a writer job on node 1 (shmget, shmat)" run_dsm 1 sysv-put 0x1234 88
g=$(run_dsm 4 sysv-get 0x1234 5)
t_check "System V: a reader job on node 4 reads 88" [ "$("$CAIRN" logs "$g")" = 88 ]
t_check "POSIX: the segments are shm.demo and sysv.00001234" \
    t_jq '[.segments[].name] | index("shm.demo") != null and index("sysv.00001234") != null' "$("$CAIRN" dsm ls)"
t_check "POSIX: a zeroed segment (the reader waits on it)" run_dsm 2 posix-put /live 0
live=$("$CAIRN" run --dsm --node 3 "${RUNENV[@]}" -- "$DEMO" posix-get /live 30 | jq -r .gpid)
sleep 1
t_check "a job holding a DSM mapping is not migrated (refused, not split)" \
    expect_err unsupported 'userfaultfd' "$CAIRN" migrate "$live" --to 1
t_check "... and it runs on, on node 3" \
    t_jq '.state == "running" and .node == 3' "$("$CAIRN" ps | jq -c --arg g "$live" '.jobs[] | select(.gpid == $g)')"
t_check "POSIX: a writer on node 4 while the reader on node 3 polls" run_dsm 4 posix-put /live 99
"$CAIRN" wait "$live" >/dev/null
t_check "POSIX: the polling reader saw 99 (its copy invalidated)" [ "$("$CAIRN" logs "$live")" = 99 ]
t_check "POSIX: shm_unlink removes it" run_dsm 1 posix-unlink /demo
t_check "... cairn dsm show: not found" expect_err not-found 'no such segment' "$CAIRN" dsm show shm.demo

# ---- ls, show, rm --------------------------------------------------------------
out=$("$CAIRN" dsm ls)
t_json_check "ls: the five segments and the programs' three" "$out" \
    '[.segments[].name] == ["cnt","fs","mp","sb","shm.live","sysv.00001234","w"] and .unreachable == []'
dt 2 hold w 30 >"$T_TMP/hold" & holder=$!
t_check "hold: mapped" t_wait_for 10 grep -q mapped "$T_TMP/hold"
out=$("$CAIRN" dsm show w)
t_json_check "show: node 2 has one process" "$out" \
    '.node_pages[] | select(.node == 2) | .processes == 1'
t_check "rm refused while mapped" \
    expect_err failed-precondition 'mapped by 1 processes \(nodes 2\)' "$CAIRN" dsm rm w
pkill -f "dsm-tool hold w" ; wait "$holder" 2>/dev/null
t_check "rm once unmapped" t_wait_for 10 "$CAIRN" dsm rm w
t_check "show after rm: not found" expect_err not-found 'no such segment' "$CAIRN" dsm show w
t_check "a new w is another segment (zeros)" [ "$(dt 4 put w 4096 0 0 && dt 1 get w 0)" = 0 ]

# ---- bad input -------------------------------------------------------------------
t_check "size other than the segment's" \
    expect_err failed-precondition 'has 8192 bytes, not 4096' dt 3 put cnt 4096 0 1
t_check "larger than the node's memory" \
    expect_err invalid-argument "node's memory" dt 2 put big $((64 << 30)) 0 1
t_check "a bad name" expect_err invalid-argument 'without' dt 2 put 'a/b' 4096 0 1
out=$("$CAIRN" dsm show "$(head -c 100000 /dev/zero | tr '\0' x)" 2>&1); rc=$?
t_check "CLI: a 100 kB name (the most one argument may be): usage, exit 100" \
    [ "$rc" = 100 ] && t_jq '.error.code == "usage" and (.error.message | test("1..255 bytes"))' "$out"
python3 - "${RD[2]}/dsmd.fd.sock" <<'PY' >"$T_TMP/raw" 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b"\xff\xff\xff\xff not a protobuf")
print(s.recv(4096))
PY
t_check "malformed packet: a decode error answered" grep -q 'not a dsmd Request' "$T_TMP/raw"
t_check "dsmd still serves after the bad input" [ "$(dt 2 get cnt 0)" = 750 ]

# ---- a node dies -----------------------------------------------------------------
t_check "fail: node 1 makes it" dt 1 put fail 16384 0 7
for p in 0 1 2; do t_check "fail: node 3 writes page $p" dt 3 put fail 16384 $((p * 4096)) $((100 + p)); done
t_check "fail: node 2 holds a read copy of page 0" [ "$(dt 2 get fail 0)" = 100 ]
t_check "fail: node 4 owns page 2" dt 4 put fail 16384 8192 202
pids=$("$CAIRN" cluster status | jq -r '.nodes[] | select(.id == 3) | .services[].pid')
kill -9 $pids
t_check "node 3 dead to node 1" t_wait_state 30 3 dead 1
out=$(dt 1 get fail 4096); rc=$?
t_check "page 1 (only at node 3): SIGBUS on node 1 (exit $rc: $out)" [ "$rc" = 3 ] && [ "$out" = sigbus ]
t_check "page 0: recovered from node 2's read copy: node 1 reads 100" [ "$(dt 1 get fail 0)" = 100 ]
t_check "page 0: node 4 writes 103 (the recovered owner's copyset invalidated)" dt 4 put fail 16384 0 103
t_check "page 0: node 2 reads 103" [ "$(dt 2 get fail 0)" = 103 ]
t_check "page 2: owned by node 4, unaffected" [ "$(dt 1 get fail 8192)" = 202 ]
t_check "page 3: owned by node 1, unaffected" [ "$(dt 1 get fail 12288)" = 0 ]
out=$("$CAIRN" dsm show fail)
t_json_check "show: page 1 lost at node 1" "$out" \
    '.lost_pages >= 1 and (.node_pages[] | select(.node == 1) | .lost_pages | index(1) != null)'
t_check "the logs name the segment and the page" \
    grep -q 'page-lost segment=fail page=1 ' "${RD[1]}/dsmd.log" "${RD[2]}/dsmd.log" "${RD[4]}/dsmd.log"
t_check "a log names the recovery from the read copy" \
    grep -q 'page-recovered segment=fail page=0 from=read-copy' "${RD[2]}/dsmd.log"
t_done
