#!/bin/bash
# test-ghost-postcopy.sh - post-copy moves on one node (the engine alone:
# ghostd bridging the page source between nodes is migrate.c's):
# ghost-dump --postcopy and ghost-restore --pages-fd wired together by
# tests/ghost/postcopy-pair, the image streamed through a pipe, the page
# source a socketpair (or two, through a relay that can cut it).
#
#  - memory: precopy-case with 256 MiB of patterned memory, writing as
#    fast as it can (it unmaps, maps and frees while its pages come): the
#    copy (--new-pid: the frozen original still holds its pid) runs at
#    once without waiting for any page (the restorer's own pages came in
#    the image), the page server ends (every lazy page in, the untouched
#    ones as ZERO frames), the copy checks
#    every word (PASS) and counts on; the original was killed, never ran
#    again; the figures (pages asked for by faults, pushed) are reported;
#  - a tree (bash and two cases): both copies pass;
#  - the page source dies mid-way (the relay cut after 8 MiB): the copy is
#    killed, never left with holes, the second line says why, exit 1;
#  - ghost-restore killed while pages are missing: the kernel kills the
#    copy (it was traced with PTRACE_O_EXITKILL);
#  - a job (ghost-init's reaper, ghost-job's body): restored post-copy in
#    a fresh pid namespace with every pid inside as it was, counting on
#    from where the image stopped;
#  - a job forking all the time (python3: 256 MiB of a known pattern,
#    a child forked in a loop samples it and exits): children forked
#    while pages are missing get theirs too (the server's fork events),
#    parent and children find every sample right;
#  - refusals: a post-copy image restored without its page source (the
#    original resumed by `resume`, passes); usage errors.
# Needs root (ptrace, userfaultfd for kernel faults, namespaces): 77
# otherwise.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-precopy-case.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
ENGINE="$CAIRN_BUILD/services/ghostd/engine"
PAIR="$CAIRN_BUILD/tests/ghost/postcopy-pair"
JOB="$CAIRN_BUILD/tests/ghost/ghost-job"

# pair OUT PID ARGS...: one post-copy move of PID, the driver's lines into
# OUT (60 s at most); the helpers' stderr (a sanitizer's report) with them.
pair() {
    local out=$1 pid=$2; shift 2
    timeout 60 "$PAIR" "$ENGINE" "$pid" "$@" >"$out" 2>&1
    t_check "$(basename "$out" .out): no sanitizer report" \
        bash -c "! grep -q 'Sanitizer' '$out'"
}

# line OUT KIND: the JSON of the driver's line KIND.
line() { awk -v k="$2" '$1 == k { $1 = ""; print; exit }' "$1"; }

gone() { [ "$(t_proc_state "$1")" = gone ]; }

wait_gone() {
    local i
    for i in $(seq 1 100); do gone "$1" && return 0; sleep 0.05; done
    return 1
}

# ---- memory: 256 MiB, busy -----------------------------------------------

R="$T_TMP/result-mem"; : >"$R"
if start_pc "$R" 256; then
    P=$PC_PID
    sleep 0.3
    at=$(count_of "$P" "$R")
    pair "$T_TMP/mem.out" "$P" --restore-arg --new-pid
    cat "$T_TMP/mem.out" | cut -c1-400
    d1=$(line "$T_TMP/mem.out" dump); r1=$(line "$T_TMP/mem.out" restore)
    r2=$(line "$T_TMP/mem.out" restore_end); d2=$(line "$T_TMP/mem.out" dump_end)
    t_json_check "memory: held, 256 MiB listed lazy" "$d1" \
        '.held and .postcopy and .lazy_pages >= 65536 and .image_bytes < 4194304'
    t_json_check "memory: the copy runs, its pages to come" "$r1" \
        ".postcopy and .lazy_pages >= 65536 and .pid != $P and .original_pid == $P"
    t_json_check "memory: the page server ended with every page in" "$r2" \
        '.outcome == "complete" and .received == .lazy_pages and (.error | not)'
    t_json_check "memory: the source served every page and was killed" "$d2" \
        '.outcome == "killed" and .served and .target_done and
         .pages_pushed + .pages_requested + .pages_absent >= .lazy_pages and
         (.serve_error | not)'
    t_json_check "memory: the untouched pages came as ZERO, as many as the copy took" "$d2" \
        ".pages_absent > 0 and .pages_absent == $(jq .absent <<<"$r2")"
    t_json_check "memory: the restore waited for no page before the copy ran" "$r2" \
        '.early_faults == 0'
    t_json_check "memory: the dump says where its freeze went" "$d1" \
        '.steps_us.seize >= 0 and .steps_us.pages >= 0 and .steps_us.end >= 0'
    t_json_check "memory: the restore says where its time went" "$r1" \
        '.steps_us.load >= 0 and .steps_us.spawn >= 0 and .steps_us.release >= 0'
    t_json_check "memory: the dump listed the vmas whole, without walking them" "$d1" \
        '.lazy_pages >= .lazy_resident_pages and .lazy_resident_pages >= 65536 and
         .steps_us.pages < 1000000'
    t_check "memory: both helpers exit 0" grep -q '^exits dump=0 restore=0' "$T_TMP/mem.out"
    echo "memory: frozen $(awk '$1 == "frozen_us" { print $2 }' "$T_TMP/mem.out") us" \
         "(source frozen until the copy ran), $(jq .faults <<<"$r2") faults," \
         "$(jq .pages_requested <<<"$d2") pages asked for, $(jq .pages_pushed <<<"$d2") pushed" \
         "in $(jq .serve_us <<<"$d2") us, $(jq .dropped <<<"$r2") dropped by the copy"
    t_check "memory: the original is gone" wait_gone "$P"
    C=$(jq -r .pid <<<"$r1")
    T_PIDS+=("$C")
    sleep 0.3
    verdict "memory: the copy" "$C" "$R" "$at"
    sleep 0.3
    verdict "memory: the copy, later" "$C" "$R" "$at"
    t_check "memory: no userfaultfd left registered in the copy" \
        bash -c "! grep -q '^VmFlags:.* um' /proc/$C/smaps"
    t_check "memory: the copy is traced by nobody" \
        [ "$(awk '$1 == "TracerPid:" { print $2 }' /proc/"$C"/status)" = 0 ]
    kill -9 "$C"
else
    t_fail "memory: start"
fi

# ---- a tree: bash and two cases -----------------------------------------

R="$T_TMP/result-tree"; : >"$R"
start_pc_tree "$R" 32 "16 2048"
if [ "${#KIDS[@]}" -eq 2 ]; then
    pair "$T_TMP/tree.out" "$ROOT" --restore-arg --new-pid
    r1=$(line "$T_TMP/tree.out" restore); r2=$(line "$T_TMP/tree.out" restore_end)
    t_json_check "tree: three processes restored post-copy ($r1)" "$r1" '.processes == 3'
    t_json_check "tree: every page in ($r2)" "$r2" '.outcome == "complete"'
    T_PIDS+=($(jq -r '.members[].pid' <<<"$r1"))
    sleep 0.3
    for k in "${KIDS[@]}"; do
        c=$(jq -r --argjson o "$k" '.members[] | select(.original_pid == $o) | .pid' <<<"$r1")
        verdict "tree: case $k, now $c" "$c" "$R"
    done
    kill -9 $(jq -r '.members[].pid' <<<"$r1")
    t_check "tree: the originals are gone" wait_gone "$ROOT"
else
    t_fail "tree: start ($(cat "$R"))"
fi

# ---- the page source dies mid-way ---------------------------------------

R="$T_TMP/result-cut"; : >"$R"
if start_pc "$R" 256; then
    P=$PC_PID
    sleep 0.2
    pair "$T_TMP/cut.out" "$P" --restore-arg --new-pid --cut-after 8388608
    cut -c1-300 "$T_TMP/cut.out"
    r1=$(line "$T_TMP/cut.out" restore); r2=$(line "$T_TMP/cut.out" restore_end)
    d2=$(line "$T_TMP/cut.out" dump_end)
    t_check "cut: the relay was cut once the copy ran" grep -q '^cut ' "$T_TMP/cut.out"
    t_json_check "cut: the copy was killed, and it says why" "$r2" \
        '.outcome == "killed" and .received < .lazy_pages and
         (.error.message | test("page source")) and (.error.message | test("killed"))'
    t_check "cut: ghost-restore exits 1" grep -q '^exits dump=0 restore=1' "$T_TMP/cut.out"
    C=$(jq -r .pid <<<"$r1")
    t_check "cut: the copy ($C) is gone, not left with holes" wait_gone "$C"
    t_json_check "cut: the source, its page source broken, was killed on the holder's word" \
        "$d2" '.outcome == "killed" and .served and (.serve_error.message | length > 0)'
    t_check "cut: the original is gone" wait_gone "$P"
else
    t_fail "cut: start"
fi

# ---- ghost-restore dies while pages are missing --------------------------

R="$T_TMP/result-killed"; : >"$R"
if start_pc "$R" 512; then
    P=$PC_PID
    sleep 0.2
    pair "$T_TMP/killed.out" "$P" --restore-arg --new-pid --relay --kill-restore
    r1=$(line "$T_TMP/killed.out" restore)
    C=$(jq -r .pid <<<"$r1")
    t_check "killed: ghost-restore was killed once its copy ran ($C)" \
        grep -q '^killed restore' "$T_TMP/killed.out"
    t_check "killed: the kernel killed the copy with it" wait_gone "$C"
    t_check "killed: the original is gone" wait_gone "$P"
else
    t_fail "killed: start"
fi

# ---- a job: ghost-init's reaper, ghost-job's body ------------------------

J="$T_TMP/job"
mkdir -p "$J"
out=$(ASAN_OPTIONS=detect_leaks=0 "$ENGINE/ghost-init" --job "$J" --gpid 1.1 -- \
    "$JOB" body "$J" </dev/null 2>&1)
H=$(jq -r '.host_pid // empty' <<<"$out" 2>/dev/null)
for i in $(seq 1 200); do
    grep -q '^count' "$J/log" 2>/dev/null && break
    sleep 0.05
done
if [ -n "$H" ] && [ -d "/proc/$H" ]; then
    T_PIDS+=("$H")
    sleep 0.5
    inside() {
        local p c
        tree() { echo "$1"; for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$c"; done; }
        for p in $(tree "$1"); do
            awk '$1 == "NSpid:" { print $NF }' /proc/"$p"/task/*/status 2>/dev/null
        done | sort -n | tr '\n' ' '
    }
    BEFORE=$(inside "$H")
    ONS=$(stat -L -c %i /proc/"$H"/ns/pid)
    pair "$T_TMP/job.out" "$H"
    cut -c1-300 "$T_TMP/job.out"
    r1=$(line "$T_TMP/job.out" restore); r2=$(line "$T_TMP/job.out" restore_end)
    t_json_check "job: restored post-copy, pid 1 inside" "$r1" \
        '.job == true and .pid == 1 and .postcopy and ([.members[] | .pid == .original_pid] | all)'
    t_json_check "job: every page in" "$r2" '.outcome == "complete"'
    A=$(jq -r .host_pid <<<"$r1")
    T_PIDS+=("$A")
    t_check "job: the same pids and tids inside ($(inside "$A") / $BEFORE)" \
        [ "$(inside "$A")" = "$BEFORE" ]
    ANS=$(stat -L -c %i /proc/"$A"/ns/pid)
    MARK=$(wc -l <"$J/log")
    sleep 1
    t_check "job: it counts on in its new namespace" \
        [ -n "$(tail -n +"$((MARK + 1))" "$J/log" | awk -v ns="$ANS" '$1 == "count" && $2 == ns')" ]
    t_check "job: no member found its pids changed" bash -c "! grep -q FAIL '$J/log'"
    t_check "job: the original is gone" wait_gone "$H"
    kill -9 "$A"
else
    t_fail "job: ghost-init did not start ($out)"
fi

# ---- a job forking while its pages come -----------------------------------

F="$T_TMP/fork"
mkdir -p "$F/job"
cat >"$F/f.py" <<'PY'
import os, sys
chunk = os.urandom(1 << 20)
buf = bytearray(chunk) * 256
out = open(sys.argv[1], "a", buffering=1)
out.write("ready %d\n" % os.getpid())
def check():
    for k in range(0, 256, 37):
        off = k << 20
        if buf[off:off + 4096] != chunk[:4096] or buf[off + 777777:off + 777877] != chunk[777777:777877]:
            return False
    return True
i = 0
while True:
    i += 1
    pid = os.fork()
    if pid == 0:
        os._exit(0 if check() else 1)
    _, st = os.waitpid(pid, 0)
    good = check()
    if i % 20 == 0 or st != 0 or not good:
        out.write("%s %d %d\n" % ("ok" if st == 0 and good else "FAIL", i, st))
PY
if command -v python3 >/dev/null; then
    out=$(ASAN_OPTIONS=detect_leaks=0 bash -c 'for f in /proc/self/fd/*; do n=${f##*/};
                   [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$0" "$@"' \
          "$ENGINE/ghost-init" --job "$F/job" --gpid 1.2 -- "$(command -v python3)" \
          "$F/f.py" "$F/log" </dev/null 2>"$F/init.err")
    H=$(jq -r '.host_pid // empty' <<<"$out" 2>/dev/null)
    [ -n "$H" ] && T_PIDS+=("$H")
    for i in $(seq 1 400); do grep -q '^ok' "$F/log" 2>/dev/null && break; sleep 0.05; done
    if [ -n "$H" ] && grep -q '^ok' "$F/log"; then
        pair "$T_TMP/fork.out" "$H"
        r1=$(line "$T_TMP/fork.out" restore); r2=$(line "$T_TMP/fork.out" restore_end)
        t_json_check "fork: every page in ($r2)" "$r2" '.outcome == "complete"'
        A=$(jq -r .host_pid <<<"$r1")
        T_PIDS+=("$A")
        n=$(grep -c '^ok' "$F/log")
        for i in $(seq 1 200); do [ "$(grep -c '^ok' "$F/log")" -gt "$((n + 1))" ] && break; sleep 0.05; done
        t_check "fork: it forks and checks on after the move" [ "$(grep -c '^ok' "$F/log")" -gt "$((n + 1))" ]
        t_check "fork: no child nor parent found a sample wrong" bash -c "! grep -q FAIL '$F/log'"
        echo "fork: $(jq .forks <<<"$r2") forks while pages came"
        kill -9 "$A"
    else
        t_fail "fork: the job did not start ($out $(cat "$F/init.err"))"
    fi
else
    echo "fork: no python3 here, skipped"
fi

# ---- refusals and usage ---------------------------------------------------

R="$T_TMP/result-ref"; : >"$R"
if start_pc "$R" 16; then
    P=$PC_PID
    out=$("$ENGINE/ghost-dump" --pid "$P" --postcopy --out-fd 3 --hold-fd 4 --pages-fd 5 \
          3>"$T_TMP/lazy.img" 4<<<resume 5</dev/null | head -1)
    t_json_check "refusal: a post-copy image written ($out)" "$out" '.postcopy and .lazy_pages > 0'
    chmod 600 "$T_TMP/lazy.img"
    t_check "refusal: restored without its page source" t_expect_error 1 failed-precondition \
        "$ENGINE/ghost-restore" --image "$T_TMP/lazy.img" --new-pid
    t_check "refusal: the original, resumed, runs on" [ "$(t_proc_state "$P")" != gone ]
    verdict "refusal: the original" "$P" "$R"
    kill -9 "$P"
else
    t_fail "refusal: start"
fi
t_check "usage: --postcopy without --pages-fd" t_expect_error 100 usage \
    "$ENGINE/ghost-dump" --pid 1 --postcopy --out-fd 1 --hold-fd 0
t_check "usage: --postcopy with --precopy" t_expect_error 100 usage \
    "$ENGINE/ghost-dump" --pid 1 --postcopy --precopy --out-fd 1 --hold-fd 0 --pages-fd 2
t_check "usage: --pages-fd with --check" t_expect_error 100 usage \
    "$ENGINE/ghost-restore" --image "$T_TMP/lazy.img" --check --pages-fd 5 5</dev/null

t_done
