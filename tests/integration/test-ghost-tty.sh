#!/bin/bash
# test-ghost-tty.sh - a shell session on a terminal, checkpointed and
# restarted through a real ghostd and the CLI (issue 16 item 6: "cairn
# checkpoint of a shell session's job works").
#
# An interactive bash runs on a pty whose master a driver holds (what a
# terminal emulator or sshd is to it: pty-driver.py), with a job in the
# foreground: cat, echoing each line typed. Then:
#  - the job alone is refused: its session is led by the shell, outside
#    its tree, and a session cannot be joined at restart; it is untouched;
#  - the shell's tree (bash and its job) is checkpointed, killed and
#    restarted with the same pids: the session has its terminal back, the
#    job is in the foreground again, a line typed after the restore comes
#    back from cat, ^D ends the job and the shell, which waited for it,
#    runs the next command typed;
#  - checkpointed again, its terminal closed: the restart is refused
#    naming it, and a new terminal given its name is not taken for it;
#  - a process with its own pty comes back on the same index: refused
#    while another terminal holds it, restored once it is free.
# Needs root (ptrace, clone3 set_tid) and python3: skips with 77 otherwise.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
GHOSTD="$CAIRN_BUILD/services/ghostd/ghostd"
DRIVER="$CAIRN_SOURCE/tests/integration/pty-driver.py"

port=$(t_free_port); gport=$(t_free_port)
t_description_ghostd "$T_TMP/c.xml" gtty "$port" "$gport"
t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd.log" || exit 1
C="$CAIRN --config $T_TMP/c.xml"

CTL="$T_TMP/ctl" LOG="$T_TMP/tty.log"
mkfifo "$CTL"; : >"$LOG"
env -i PATH="$PATH" HOME="$T_TMP" TERM=dumb \
    python3 "$DRIVER" "$CTL" "$LOG" "$T_TMP/bash.pid" -- bash --norc --noprofile -i &
T_PIDS+=("$!")
# type TEXT: into the terminal, as a user would.
type_in() { printf '%b' "$1" >"$CTL"; }
# seen N TEXT: TEXT shows N times or more in what the terminal printed (5 s).
seen() {
    local i
    for i in $(seq 1 100); do
        [ "$(grep -o -F -- "$2" "$LOG" | wc -l)" -ge "$1" ] && return 0
        sleep 0.05
    done
    return 1
}
# hold_pts NAME OUT: another terminal takes /dev/pts/N = NAME if it can
# (ptys are handed out lowest free first: the ones below are held too) and
# holds it 30 s; waits until OUT names what it got; true if NAME. Sets
# HOLDER.
hold_pts() {
    local i
    python3 -c 'import os, sys, time
want, held = sys.argv[1], []
for _ in range(int(want.rsplit("/", 1)[1]) + 1):
    held.append(os.openpty())
    if os.ttyname(held[-1][1]) == want:
        break
print(os.ttyname(held[-1][1]), flush=True)
time.sleep(30)' "$1" >"$2" &
    HOLDER=$!; T_PIDS+=("$HOLDER")
    for i in $(seq 1 100); do [ -s "$2" ] && break; sleep 0.05; done
    [ "$(cat "$2")" = "$1" ]
}
# stat_of PID: "tty_nr tpgid" of /proc/PID/stat.
stat_of() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $5, $6 }'; }

# (quoted apart, so the echo of what is typed is not the prompt)
type_in "PS1='pro''mpt\\$ '\n"
t_check "the shell prompts" seen 1 'prompt# '
BASH_PID=$(cat "$T_TMP/bash.pid")
T_PIDS+=("$BASH_PID")
type_in 'cat\n'
for i in $(seq 1 100); do
    CAT_PID=$(pgrep -P "$BASH_PID" -x cat) && break
    sleep 0.05
done
t_check "the job runs (cat, pid ${CAT_PID:-none})" [ -n "${CAT_PID:-}" ]
T_PIDS+=("${CAT_PID:-}")
type_in 'before\n'
t_check "a line typed before comes back (echo and cat)" seen 2 before
BEFORE_BASH=$(stat_of "$BASH_PID") BEFORE_CAT=$(stat_of "$CAT_PID")
t_check "the job has the foreground ($BEFORE_BASH)" [ "${BEFORE_BASH#* }" = "$CAT_PID" ]

# The job alone: its session is the shell's, outside its tree.
$C checkpoint "$CAT_PID" --dir "$T_TMP/img-job" >/dev/null 2>"$T_TMP/err"; rc=$?
t_check "the job alone is refused ($(cat "$T_TMP/err"))" [ "$rc" -ne 0 ]
t_json_check "it names the session led from outside" "$(cat "$T_TMP/err")" \
    '.error.message | contains("a session cannot be joined")'
t_check "the job is untouched" [ "$(t_proc_state "$CAT_PID")" = S ]
type_in 'still\n'
t_check "and still echoes" seen 2 still

# The shell's tree: bash and its job.
out=$($C checkpoint "$BASH_PID" --dir "$T_TMP/img" 2>"$T_TMP/err"); rc=$?
t_check "the shell's tree is checkpointed ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
for i in $(seq 1 100); do
    [ -d "/proc/$BASH_PID" ] || [ -d "/proc/$CAT_PID" ] || break
    sleep 0.05
done
t_check "the shell and its job are gone" [ ! -d "/proc/$CAT_PID" ]
out=$($C restart "$T_TMP/img" 2>"$T_TMP/err"); rc=$?
t_check "restarted ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
t_json_check "with the same pid" "$out" ".pid == $BASH_PID"
t_check "the job is back" [ -d "/proc/$CAT_PID" ]
t_check "the shell's terminal and foreground ($(stat_of "$BASH_PID"), was $BEFORE_BASH)" \
    [ "$(stat_of "$BASH_PID")" = "$BEFORE_BASH" ]
t_check "the job's ($(stat_of "$CAT_PID"), was $BEFORE_CAT)" \
    [ "$(stat_of "$CAT_PID")" = "$BEFORE_CAT" ]
type_in 'after-restore\n'
t_check "a line typed after the restore comes back (echo and cat)" seen 2 after-restore
type_in '\004'
type_in 'echo sum=$((6*7))\n'
t_check "^D ends the job; the shell runs the next command" seen 1 sum=42
# Checkpointed again, then its terminal goes (the driver quits, as a
# closed terminal window would): the restart is refused, naming it; a new
# terminal that took the same name is not the one it had.
PTS=$(readlink "/proc/$BASH_PID/fd/0")
$C checkpoint "$BASH_PID" --dir "$T_TMP/img2" >/dev/null 2>"$T_TMP/err"; rc=$?
t_check "checkpointed again ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
type_in '\0quit'
for i in $(seq 1 100); do [ -e "$PTS" ] || break; sleep 0.05; done
$C restart "$T_TMP/img2" --check >/dev/null 2>"$T_TMP/err"; rc=$?
t_check "with its terminal gone, the restart check refuses" [ "$rc" -ne 0 ]
t_json_check "naming $PTS ($(cat "$T_TMP/err"))" "$(cat "$T_TMP/err")" \
    "[.error.reasons[]?.message, .error.message] | any(contains(\"$PTS\"))"
$C restart "$T_TMP/img2" >/dev/null 2>"$T_TMP/err"; rc=$?
t_check "and so does the restart ($(cat "$T_TMP/err"))" [ "$rc" -ne 0 ]
t_check "leaving nothing behind" [ ! -d "/proc/$BASH_PID" ]
if hold_pts "$PTS" "$T_TMP/other"; then
    $C restart "$T_TMP/img2" >/dev/null 2>"$T_TMP/err"; rc=$?
    t_check "another terminal named $PTS is refused" [ "$rc" -ne 0 ]
    t_json_check "as not the one it had ($(cat "$T_TMP/err"))" "$(cat "$T_TMP/err")" \
        '.error.message | contains("is gone (the one of that name now is another")'
else
    echo "  (a new terminal got $(cat "$T_TMP/other"), not $PTS: that check is skipped)"
fi
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null

# The index must match: a process with a pty of its own (ghost-state's
# tty-pty-own), checkpointed; while another terminal holds its index the
# restart is refused naming it, and once that one is gone it comes back
# on its index with its settings (the case checks them: PASS).
STATE="$CAIRN_BUILD/tests/ghost/ghost-state"
R="$T_TMP/own.result"; mkdir -p "$T_TMP/own"; : >"$R"
setsid "$STATE" tty-pty-own "$T_TMP/own" >>"$R" 2>&1 &
OWN=$!; T_PIDS+=("$OWN")
for i in $(seq 1 100); do grep -q "^ready $OWN" "$R" && break; sleep 0.05; done
OWN_PTS=$(readlink "/proc/$OWN/fd/4")
$C checkpoint "$OWN" --dir "$T_TMP/img-own" >/dev/null 2>"$T_TMP/err"; rc=$?
t_check "a process with its own pty ($OWN_PTS) is checkpointed ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
for i in $(seq 1 100); do [ -e "$OWN_PTS" ] || break; sleep 0.05; done
wait "$OWN" 2>/dev/null
if hold_pts "$OWN_PTS" "$T_TMP/holder"; then
    $C restart "$T_TMP/img-own" >/dev/null 2>"$T_TMP/err"; rc=$?
    t_check "while $OWN_PTS is another terminal's, the restart is refused" [ "$rc" -ne 0 ]
    t_json_check "naming it ($(cat "$T_TMP/err"))" "$(cat "$T_TMP/err")" \
        ".error.message | contains(\"$OWN_PTS is taken\")"
    t_check "leaving nothing behind" [ ! -d "/proc/$OWN" ]
else
    echo "  (the holder got $(cat "$T_TMP/holder"), not $OWN_PTS: that check is skipped)"
fi
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null
for i in $(seq 1 100); do [ -e "$OWN_PTS" ] || break; sleep 0.05; done
out=$($C restart "$T_TMP/img-own" 2>"$T_TMP/err"); rc=$?
t_check "once it is free, restarted ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
t_check "on $OWN_PTS again" [ "$(readlink "/proc/$OWN/fd/4")" = "$OWN_PTS" ]
T_PIDS+=("$OWN")
kill -USR2 "$OWN"
for i in $(seq 1 100); do grep -q -E "^(PASS|FAIL)" "$R" && break; sleep 0.05; done
t_check "its pty's settings and the pair check out ($(grep -E '^(PASS|FAIL)' "$R"))" \
    grep -qx "PASS tty-pty-own" "$R"
t_done
