#!/bin/bash
# test-ghost-precopy.sh - pre-copy dumps (ghost-dump --precopy) of processes
# that write all the time, restored by ghost-restore (the engine alone:
# ghostd's orchestration of pre-copy comes later).
#
# tests/ghost/precopy-case counts for ever, writing each step into one of
# many pages and recycling small mappings and heap blocks as it goes; each
# step checks the page it is about to overwrite, and SIGUSR2 checks
# everything, so a restored page that is not what it was at the freeze
# (an older round's copy, a page of a mapping unmapped since, a page no
# round copied) makes it say FAIL. Cases:
#   - busy: as fast as it can, 64 MiB: the rounds never shrink, the freeze
#     copies the pages written since the last one; restored, PASS, counting
#     on past where it was;
#   - a tree (bash and two cases): both come back and pass;
#   - streamed (ghost-dump --out-fd piped into ghost-restore --image -, as
#     a migration does): busy and the tree pass, their rounds' pages read
#     into place (placed_bytes); a stream cut after its rounds is refused
#     with nothing left running;
#   - idle: 256 MiB written at 1 MiB/s, dumped stop-and-copy and with
#     pre-copy, both --leave-running: the frozen times are reported (not
#     asserted), the pre-copy image restores and passes, and after each
#     dump the process is not write-protected any more (no "uw" in its
#     smaps) and goes on counting;
#   - refused before tracking (a socket: exit 2, untouched); failed in the
#     middle of the rounds (the image's tmpfs full: exit 1, no file left);
#     ghost-dump SIGKILLed during the rounds: each time the process runs on,
#     not write-protected, and passes its checks;
#   - usage: the round options without --precopy, a bad --rounds.
# Needs root (ptrace, clone3 set_tid): 77 otherwise; on a kernel without
# userfaultfd write-protect async mode or PAGEMAP_SCAN (before 6.7), only
# the refusal is checked, then 77.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-precopy-case.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
ENGINE="$CAIRN_BUILD/services/ghostd/engine"
CASE="$CAIRN_BUILD/tests/ghost/ghost-case"

# restore WHAT IMAGE PID: ghost-restore IMAGE; the process comes back as PID.
restore() {
    local out
    reap_killed "$3"
    out=$("$ENGINE/ghost-restore" --image "$2" 2>&1)
    t_json_check "$1: restored ($out)" "$out" ".pid == $3 and .pages > 0"
}

# ---- a kernel without what pre-copy needs: refused, untouched ------------

R="$T_TMP/result-probe"; : >"$R"
start_pc "$R" 4 || { t_fail "probe: start"; t_done; }
out=$("$ENGINE/ghost-dump" --pid "$PC_PID" --out "$T_TMP/probe.img" --precopy \
      --leave-running 2>&1); rc=$?
if [ "$rc" -eq 2 ] && jq -e '.error.code == "unsupported"' <<<"$out" >/dev/null; then
    t_json_check "no pre-copy here: the reason says stop-and-copy works ($out)" "$out" \
        '.error.message | test("without --precopy")'
    t_check "no pre-copy here: left running" [ "$(t_proc_state "$PC_PID")" != gone ]
    verdict "no pre-copy here" "$PC_PID" "$R"
    echo "SKIP: this kernel cannot track writes ($out)"
    t_stop_services
    [ "$T_FAILS" -eq 0 ] && exit 77
    exit 1
fi
t_json_check "probe: dumped ($out)" "$out" '.rounds >= 1 and .left_running'
t_check "probe: untracked after" untracked "$PC_PID"
kill -9 "$PC_PID"

# ---- busy: writes as fast as it can -------------------------------------

R="$T_TMP/result-busy"; : >"$R"
if start_pc "$R" 64; then
    P=$PC_PID
    sleep 0.3
    at=$(count_of "$P" "$R")
    out=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/busy.img" --precopy 2>&1)
    echo "$out" >"$T_TMP/busy-dump.json"
    t_json_check "busy: dumped ($out)" "$out" ".pid == $P and .left_running == false
        and .rounds >= 2 and (.round_bytes | length) == .rounds
        and .precopy_bytes == (.round_bytes | add)
        and .round_bytes[0] >= 64 * 1048576 and .kept_pages > 0 and .pages > .kept_pages
        and (.frozen_us | type) == \"number\" and (.track_us | type) == \"number\""
    restore "busy" "$T_TMP/busy.img" "$P"
    sleep 0.3
    verdict "busy" "$P" "$R" "$at"
    sleep 0.2
    verdict "busy, later" "$P" "$R" "$at"
    kill -9 "$P"
else
    t_fail "busy: start"
fi

# ---- streamed: the image piped into ghost-restore, as a migration does --

# The rounds' pages are read into place as they come (restore-inplace.c):
# a later round's copy of a page is read over the earlier one, and pages
# the frozen part does not name any more are dropped. busy writes all the
# time, so its rounds supersede each other's pages: it must still PASS.
# pc_streamed PID ARGS...: ghost-dump --precopy --leave-running ARGS into a
# pipe read by ghost-restore --image - --new-pid (the stream ends before
# a dump that kills would have killed, so the original pids may still be
# taken: a migration between nodes has its own); DUMP and RST hold their
# lines, NEW the copy's pid.
pc_streamed() {
    local pid=$1; shift
    RST=$( { "$ENGINE/ghost-dump" --pid "$pid" --out-fd 3 --precopy --leave-running "$@" \
               3>&1 >"$T_TMP/streamed-dump.json" 2>&1; } |
           "$ENGINE/ghost-restore" --image - --new-pid 2>&1)
    DUMP=$(cat "$T_TMP/streamed-dump.json")
    NEW=$(jq -r '.pid // 0' <<<"$RST" 2>/dev/null)
    [ "$NEW" -gt 0 ] 2>/dev/null && T_PIDS+=("$NEW")
}
R="$T_TMP/result-busy-streamed"; : >"$R"
if start_pc "$R" 64; then
    P=$PC_PID
    sleep 0.3
    at=$(count_of "$P" "$R")
    pc_streamed "$P"
    t_json_check "busy, streamed: dumped ($DUMP)" "$DUMP" ".rounds >= 2 and .kept_pages > 0"
    t_json_check "busy, streamed: restored, its rounds' pages read into place ($RST)" "$RST" \
        ".pid != $P and .placed_bytes >= 64 * 1048576 and (.tail_us | type) == \"number\""
    sleep 0.3
    verdict "busy, streamed: the copy" "$NEW" "$R" "$at"
    verdict "busy, streamed: the original, left running" "$P" "$R" "$at"
    kill -9 "$P" "$NEW"
else
    t_fail "busy, streamed: start"
fi

# A stream that ends after the rounds (the source died, the link broke):
# refused, and nothing of it is left -- the pages placed so far were
# ghost-restore's own memory, gone with it.
if [ -s "$T_TMP/busy.img" ]; then
    bp=$(jq -r '.pid' "$T_TMP/busy-dump.json")
    reap_killed "$bp"
    cut_at=$(( $(stat -c %s "$T_TMP/busy.img") * 9 / 10 ))
    out=$(head -c "$cut_at" "$T_TMP/busy.img" | "$ENGINE/ghost-restore" --image - 2>&1); rc=$?
    t_check "cut stream: refused, exit 1 ($out)" [ "$rc" -eq 1 ]
    t_json_check "cut stream: the reason" "$out" '.error.code == "invalid-argument"'
    t_check "cut stream: no process $bp left" [ "$(t_proc_state "$bp")" = gone ]
fi

# ---- a tree: bash and two cases ------------------------------------------

R="$T_TMP/result-tree"; : >"$R"
start_pc_tree "$R" 16 "16 2048"
if [ "${#KIDS[@]}" -eq 2 ]; then
    out=$("$ENGINE/ghost-dump" --pid "$ROOT" --out "$T_TMP/tree.img" --precopy --rounds 3 2>&1)
    t_json_check "tree: dumped ($out)" "$out" ".processes == 3 and .rounds >= 1 and .kept_pages > 0"
    for k in "$ROOT" "${KIDS[@]}"; do reap_killed "$k"; done
    out=$("$ENGINE/ghost-restore" --image "$T_TMP/tree.img" 2>&1)
    t_json_check "tree: restored ($out)" "$out" ".pid == $ROOT and .processes == 3"
    sleep 0.3
    for k in "${KIDS[@]}"; do verdict "tree: case $k" "$k" "$R"; done
    kill -9 "$ROOT" "${KIDS[@]}"
else
    t_fail "tree: start ($(cat "$R"))"
fi

# The same tree streamed: one process's pages placed, the others staged.
R="$T_TMP/result-tree-streamed"; : >"$R"
start_pc_tree "$R" 16 "16 2048"
if [ "${#KIDS[@]}" -eq 2 ]; then
    pc_streamed "$ROOT" --rounds 3
    t_json_check "tree, streamed: dumped ($DUMP)" "$DUMP" ".processes == 3 and .rounds >= 1"
    t_json_check "tree, streamed: restored ($RST)" "$RST" \
        ".pid != $ROOT and .processes == 3 and .placed_bytes > 0"
    mapfile -t COPIES < <(jq -r '.members[1:][].pid' <<<"$RST")
    sleep 0.3
    for k in "${COPIES[@]}"; do verdict "tree, streamed: copy $k" "$k" "$R"; done
    kill -9 "$ROOT" "${KIDS[@]}" "${COPIES[@]}" "$NEW"
else
    t_fail "tree, streamed: start ($(cat "$R"))"
fi

# ---- idle: 256 MiB written at 1 MiB/s ------------------------------------

R="$T_TMP/result-idle"; : >"$R"
if start_pc "$R" 256 1024; then
    P=$PC_PID
    sleep 0.3
    sc=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/idle-sc.img" --leave-running 2>&1)
    t_json_check "idle: stop-and-copy dump ($sc)" "$sc" '.left_running and .pages > 65536'
    a=$(count_of "$P" "$R")
    pc=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/idle-pc.img" --precopy --leave-running 2>&1)
    t_json_check "idle: pre-copy dump ($pc)" "$pc" '.left_running and .kept_pages > 60000'
    echo "idle 256 MiB at 1 MiB/s: frozen $(jq .frozen_us <<<"$sc") us stop-and-copy," \
         "$(jq .frozen_us <<<"$pc") us pre-copy ($(jq -c .round_bytes <<<"$pc") bytes in" \
         "rounds, $(jq '.pages - .kept_pages' <<<"$pc") pages at the freeze)"
    t_check "idle: not write-protected after the pre-copy dump" untracked "$P"
    b=$(count_of "$P" "$R")
    sleep 0.2
    c=$(count_of "$P" "$R")
    t_check "idle: counts on after the dump ($a, $b, $c)" [ "$c" -gt "$b" -a "$b" -ge "$a" ]
    verdict "idle: left running" "$P" "$R"
    kill -9 "$P"
    restore "idle: pre-copy image" "$T_TMP/idle-pc.img" "$P"
    sleep 0.3
    verdict "idle: restored" "$P" "$R" "$a"
    kill -9 "$P"
else
    t_fail "idle: start"
fi

# ---- refusals and failures: the process runs on, untracked ---------------

# A socket: refused by the check, before any tracking.
R="$T_TMP/result-socket"; : >"$R"
setsid "$CASE" socket "$T_TMP" >>"$R" 2>&1 &
S=$!
T_PIDS+=("$S")
for i in $(seq 1 100); do grep -q "^ready $S" "$R" && break; sleep 0.05; done
t_check "socket: refused, exit 2" t_expect_error 2 unsupported \
    "$ENGINE/ghost-dump" --pid "$S" --out "$T_TMP/socket.img" --precopy
t_check "socket: untouched" untracked "$S"
t_check "socket: no image" [ ! -e "$T_TMP/socket.img" -a ! -e "$T_TMP/socket.img.part" ]
kill -9 "$S"

# The image's filesystem fills up during round 0.
R="$T_TMP/result-full"; : >"$R"
mkdir -p "$T_TMP/small"
if mount -t tmpfs -o size=8m tmpfs "$T_TMP/small" && start_pc "$R" 64; then
    T_MOUNTS+=("$T_TMP/small")
    P=$PC_PID
    t_check "full: fails, exit 1" t_expect_error 1 system \
        "$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/small/full.img" --precopy
    t_check "full: left running" [ "$(t_proc_state "$P")" != gone ]
    t_check "full: not write-protected" untracked "$P"
    t_check "full: no file left" [ -z "$(ls -A "$T_TMP/small")" ]
    verdict "full: left running" "$P" "$R"
    kill -9 "$P"
else
    t_fail "full: setup"
fi

# ghost-dump killed while it copies rounds: the kernel drops the tracking
# with its userfaultfds.
R="$T_TMP/result-killed"; : >"$R"
if start_pc "$R" 256; then
    P=$PC_PID
    "$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/killed.img" --precopy --rounds 64 \
        --round-until 0 >/dev/null 2>&1 &
    D=$!
    for i in $(seq 1 200); do ! untracked "$P" && break; sleep 0.01; done
    t_check "killed: tracked during the rounds" [ "$(untracked "$P"; echo $?)" = 1 ]
    kill -9 "$D"; wait "$D" 2>/dev/null
    t_check "killed: not write-protected once ghost-dump is gone" untracked "$P"
    a=$(count_of "$P" "$R"); sleep 0.1; b=$(count_of "$P" "$R")
    t_check "killed: counts on ($a, $b)" [ "$b" -gt "$a" ]
    verdict "killed: left running" "$P" "$R"
    kill -9 "$P"
else
    t_fail "killed: start"
fi

# ---- usage ---------------------------------------------------------------

t_check "usage: --rounds without --precopy" t_expect_error 100 usage \
    "$ENGINE/ghost-dump" --pid 1 --out "$T_TMP/u.img" --rounds 3
t_check "usage: --rounds 0" t_expect_error 100 usage \
    "$ENGINE/ghost-dump" --pid 1 --out "$T_TMP/u.img" --precopy --rounds 0
t_check "usage: --precopy with --pagemap-read" t_expect_error 2 invalid-argument \
    "$ENGINE/ghost-dump" --pid "$$" --out "$T_TMP/u.img" --precopy --pagemap-read

t_done
