#!/bin/bash
# test-ghost-incr.sh - incremental checkpoints (ghost-dump --serve-fd): a
# tracker that stays, writing a full image and then deltas of what changed
# into DIR/image.ghost.N, and ghost-restore following a delta's parent
# chain (docs/ghost.md, "Incremental checkpoints"). The engine alone;
# ghostd's periodic checkpoints are test-restart.sh's.
#
# tests/ghost/precopy-case counts for ever, writing into many pages and
# recycling small mappings and heap blocks; each step checks the page it
# overwrites, SIGUSR2 checks everything: a restored page that is not what
# it was at the last freeze makes it say FAIL. Cases:
#   - chain: 64 MiB written at 2 MiB/s, 6 checkpoints with --compact-every
#     3 while it runs: full, 3 deltas (small, most pages kept), a full one
#     again (compaction; the old chain removed), a delta; image.ghost
#     names the last; restored from it: PASS, counting on past where it
#     was at the last checkpoint;
#   - a broken chain: a parent missing, one cut short, one swapped for
#     another checkpoint's -- ghost-restore (and --check) refuse, naming it;
#     a delta read from a pipe is refused (it needs its file's directory);
#   - the tracker SIGKILLed between checkpoints, and stopped by the end of
#     its command fd: the process runs on, not write-protected, and passes;
#   - a job (ghost-init's reaper, precopy-case as pid 2) tracked, a delta,
#     restored from the chain into a fresh pid namespace: PASS;
#   - usage: a bad command line answered with an error, the tracker goes on;
#     --serve-fd with --out refused;
#   - durability after the thaw: a checkpoint whose fsync fails (the job
#     already running again) is an error, not a checkpoint: image.ghost
#     names the one before, which restores (PASS); the next one is full.
# Needs root; 77 on a kernel without write-protect async userfaultfd.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-precopy-case.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
ENGINE="$CAIRN_BUILD/services/ghostd/engine"

# serve PID FIFO ANSWERS [ARGS...]: a tracker of PID reading commands from
# FIFO (held open on fd 7 of this shell), answering into ANSWERS. Sets TR.
serve() {
    local pid=$1 fifo=$2 ans=$3; shift 3
    rm -f "$fifo"; mkfifo "$fifo"
    "$ENGINE/ghost-dump" --pid "$pid" --serve-fd 3 "$@" 3<"$fifo" >"$ans" 2>&1 &
    TR=$!
    T_PIDS+=("$TR")
    exec 7>"$fifo"
}

# ckpt DIR ANSWERS: one checkpoint; prints its answer line.
ckpt() {
    local n i
    n=$(wc -l <"$2")
    echo "checkpoint $1" >&7
    for i in $(seq 1 300); do
        [ "$(wc -l <"$2")" -gt "$n" ] && { tail -1 "$2"; return; }
        sleep 0.02
    done
    echo '{"error":"no answer"}'
}

# ckpt_is WHAT DIR ANSWERS FILTER: one checkpoint whose answer must pass
# the jq FILTER; the answer is left in $out.
ckpt_is() {
    out=$(ckpt "$2" "$3")
    t_json_check "$1 ($out)" "$out" "$4"
}

# ---- chain: full, deltas, compaction -------------------------------------

R="$T_TMP/result-chain"; : >"$R"
D="$T_TMP/chain"
start_pc "$R" 64 2048 || { t_fail "chain: start"; t_done; }
P=$PC_PID
serve "$P" "$T_TMP/cmd" "$T_TMP/ans" --compact-every 3
out=$(ckpt "$D" "$T_TMP/ans")
if jq -e '.error.code == "unsupported"' <<<"$out" >/dev/null; then
    echo "SKIP: this kernel cannot track writes ($out)"
    exec 7>&-; t_stop_services; exit 77
fi
t_json_check "chain 1: full ($out)" "$out" \
    '.checkpoint == 1 and .full and .why_full == "the first checkpoint" and .kept_pages == 0
     and .pages >= 16384 and .chain == ["image.ghost.1"]'
for n in 2 3 4; do
    sleep 0.3
    out=$(ckpt "$D" "$T_TMP/ans")
    t_json_check "chain $n: a delta, most pages kept ($out)" "$out" \
        ".checkpoint == $n and (.full | not) and .kept_pages > 15000
         and .image_bytes < 8 * 1048576 and (.chain | length) == $n"
done
t_check "chain: image.ghost names the last delta" [ "$(readlink "$D/image.ghost")" = image.ghost.4 ]
# a copy of the chain as it is now, for the broken-chain cases below
mkdir -p "$T_TMP/copy" && cp -a "$D"/image.ghost.[1-4] "$T_TMP/copy/"
sleep 0.3
out=$(ckpt "$D" "$T_TMP/ans")
t_json_check "chain 5: compaction, full ($out)" "$out" \
    '.checkpoint == 5 and .full and (.why_full | test("compaction")) and .chain == ["image.ghost.5"]'
t_check "chain 5: the old chain removed" [ ! -e "$D/image.ghost.1" -a ! -e "$D/image.ghost.4" ]
sleep 0.3
out=$(ckpt "$D" "$T_TMP/ans")
t_json_check "chain 6: a delta of the new full ($out)" "$out" \
    '.checkpoint == 6 and (.full | not) and .chain == ["image.ghost.5","image.ghost.6"]'
sleep 0.2
at=$(count_of "$P" "$R")
out=$(ckpt "$D" "$T_TMP/ans")
t_json_check "chain 7: a delta ($out)" "$out" '.checkpoint == 7 and (.full | not)'
exec 7>&-
wait "$TR"; rc=$?
t_check "chain: the tracker stops at the end of its commands (exit $rc)" [ "$rc" -eq 0 ]
t_json_check "chain: it says so" "$(tail -1 "$T_TMP/ans")" '.stopped and .checkpoints == 7'
t_check "chain: untracked after" untracked "$P"
verdict "chain: running after the tracker" "$P" "$R"
kill -9 "$P"; reap_killed "$P"
out=$("$ENGINE/ghost-restore" --image "$D/image.ghost" 2>&1)
t_json_check "chain: restored from the delta ($out)" "$out" ".pid == $P and .pages >= 16384"
sleep 0.3
verdict "chain: restored" "$P" "$R" "$at"
kill -9 "$P"; reap_killed "$P"

# ---- a broken chain ------------------------------------------------------

C="$T_TMP/copy"
out=$("$ENGINE/ghost-restore" --image "$C/image.ghost.4" --check 2>&1); rc=$?
t_json_check "broken: the whole copy checks ($out)" "$out" '.pages >= 16384'
mv "$C/image.ghost.2" "$C/saved.2"
out=$("$ENGINE/ghost-restore" --image "$C/image.ghost.4" 2>&1); rc=$?
t_check "broken: a parent missing, exit 1 ($rc)" [ "$rc" -eq 1 ]
t_json_check "broken: names it ($out)" "$out" '.error.message | test("image.ghost.2") and test("broken")'
out=$("$ENGINE/ghost-restore" --image "$C/image.ghost.4" --check 2>&1)
t_json_check "broken: --check too ($out)" "$out" '.error.message | test("image.ghost.2")'
head -c 100000 "$C/saved.2" >"$C/image.ghost.2"
out=$("$ENGINE/ghost-restore" --image "$C/image.ghost.4" 2>&1)
t_json_check "broken: a parent cut short, named ($out)" "$out" \
    '.error.message | test("parent image image.ghost.2")'
cp "$C/image.ghost.3" "$C/image.ghost.2"
out=$("$ENGINE/ghost-restore" --image "$C/image.ghost.4" 2>&1)
t_json_check "broken: another checkpoint in its place, named ($out)" "$out" \
    '.error.message | test("image.ghost.2 is not the one its child names")'
mv "$C/saved.2" "$C/image.ghost.2"
out=$("$ENGINE/ghost-restore" --image - --check <"$C/image.ghost.4" 2>&1)
t_json_check "broken: a delta from a pipe is refused ($out)" "$out" \
    '.error.message | test("delta")'

# ---- the tracker killed; usage -------------------------------------------

R="$T_TMP/result-kill"; : >"$R"
start_pc "$R" 16 512 || t_fail "kill: start"
P=$PC_PID
serve "$P" "$T_TMP/cmd2" "$T_TMP/ans2"
out=$(ckpt "$T_TMP/k" "$T_TMP/ans2")
t_json_check "kill: full ($out)" "$out" '.full'
echo "frobnicate" >&7
sleep 0.2
t_json_check "usage: a bad command answered" "$(tail -1 "$T_TMP/ans2")" '.error.code == "invalid-argument"'
out=$(ckpt "$T_TMP/k" "$T_TMP/ans2")
t_json_check "usage: the tracker goes on, a delta ($out)" "$out" '(.full | not)'
t_check "kill: tracked meanwhile" bash -c "grep -q '^VmFlags:.* uw' /proc/$P/smaps"
kill -9 "$TR"; wait "$TR" 2>/dev/null
exec 7>&-
sleep 0.1
t_check "kill: untracked once the tracker died" untracked "$P"
verdict "kill: runs on" "$P" "$R"
out=$("$ENGINE/ghost-dump" --pid "$P" --serve-fd 3 --out "$T_TMP/x" 3</dev/null 2>&1); rc=$?
t_check "usage: --serve-fd with --out (exit $rc)" [ "$rc" -eq 100 ]
kill -9 "$P"

# ---- durability after the thaw --------------------------------------------

# The image is fsync'ed once the tree runs again, and a checkpoint is only
# answered once it is durable: here fsync fails (ext4 on a loop device
# whose backing file's tmpfs is full, so writeback gets ENOSPC). The answer
# is an error, the process runs, image.ghost still names the last good
# delta and the chain restores from it; the next checkpoint is full.
R="$T_TMP/result-sync"; : >"$R"
L="$T_TMP/sync-lo" M="$T_TMP/sync-fs"
mkdir -p "$L" "$M"
if mount -t tmpfs -o size=40m tmpfs "$L" && truncate -s 32M "$L/disk" &&
   mkfs.ext4 -q "$L/disk" && mount -o loop "$L/disk" "$M"; then
    T_MOUNTS+=("$M" "$L")
    start_pc "$R" 8 256 || t_fail "sync: start"
    P=$PC_PID
    serve "$P" "$T_TMP/cmd4" "$T_TMP/ans4"
    ckpt_is "sync: full, durable after the thaw" "$M/ck" "$T_TMP/ans4" \
        '.full and .durable_us > 0 and .steps_us.sync == 0 and .frozen_us > 0'
    sleep 0.2
    at=$(count_of "$P" "$R")
    ckpt_is "sync: a delta" "$M/ck" "$T_TMP/ans4" '(.full | not) and .checkpoint == 2'
    dd if=/dev/zero of="$L/fill" bs=1M 2>/dev/null
    sleep 0.2
    ckpt_is "sync: fsync fails, not reported taken" "$M/ck" "$T_TMP/ans4" \
        '.error.message | test("fsync") and test("left running")'
    t_check "sync: image.ghost still names the last good one" \
        [ "$(readlink "$M/ck/image.ghost")" = image.ghost.2 ]
    t_check "sync: nothing of the failed one left" \
        [ ! -e "$M/ck/image.ghost.3" -a ! -e "$M/ck/image.ghost.3.part" ]
    t_check "sync: the process runs (state $(t_proc_state "$P"))" \
        [ "$(t_proc_state "$P")" != t ]
    c1=$(count_of "$P" "$R"); sleep 0.2; c2=$(count_of "$P" "$R")
    t_check "sync: and counts on ($c1 -> $c2)" [ "$c2" -gt "$c1" ]
    ckpt_is "sync: the next one is full" "$T_TMP/sync-ck" "$T_TMP/ans4" \
        '.full and .checkpoint == 1'
    exec 7>&-
    wait "$TR"
    kill -9 "$P"; reap_killed "$P"
    out=$("$ENGINE/ghost-restore" --image "$M/ck/image.ghost" 2>&1)
    t_json_check "sync: restored from the chain before the failure ($out)" "$out" ".pid == $P"
    sleep 0.3
    verdict "sync: restored" "$P" "$R" "$at"
    kill -9 "$P"
else
    echo "note: no loop-mounted ext4 here, the fsync failure case is not run"
fi

# ---- a job ---------------------------------------------------------------

GI="$T_TMP/job"
mkdir -p "$GI"
out=$(ASAN_OPTIONS=detect_leaks=0 "$ENGINE/ghost-init" --job "$GI" --gpid 1.1 -- \
    "$PC" 16 512 </dev/null); rc=$?
t_check "job: ghost-init starts it ($out)" [ "$rc" -eq 0 ]
G=$(jq -r .host_pid <<<"$out")
T_PIDS+=("$G")
for i in $(seq 1 100); do grep -q '^ready 2' "$GI/stdout" 2>/dev/null && break; sleep 0.05; done
serve "$G" "$T_TMP/cmd3" "$T_TMP/ans3"
out=$(ckpt "$GI/ck" "$T_TMP/ans3")
t_json_check "job: full ($out)" "$out" '.full and .job and .processes == 2'
sleep 0.3
out=$(ckpt "$GI/ck" "$T_TMP/ans3")
t_json_check "job: a delta ($out)" "$out" '(.full | not) and .job and .kept_pages > 3000'
exec 7>&-
wait "$TR"
kill -9 "$G"; reap_killed "$G"
out=$("$ENGINE/ghost-restore" --image "$GI/ck/image.ghost" 2>&1)
t_json_check "job: restored from the chain ($out)" "$out" '.job and .processes == 2'
H=$(jq -r '.members[] | select(.original_pid == 2) | .host_pid' <<<"$out")
T_PIDS+=("$(jq -r .host_pid <<<"$out")")
sleep 0.3
# inside its namespace it says its pid is 2
before=$(grep -c '^PASS 2 ' "$GI/stdout")
kill -USR2 "$H"
for i in $(seq 1 100); do [ "$(grep -c '^PASS 2 ' "$GI/stdout")" -gt "$before" ] && break; sleep 0.05; done
t_check "job: restored, PASS" [ "$(grep -c '^PASS 2 ' "$GI/stdout")" -gt "$before" ]
t_check "job: restored, no FAIL" [ -z "$(grep '^FAIL' "$GI/stdout")" ]
kill -9 "$(jq -r .host_pid <<<"$out")"

t_stop_services
t_done
