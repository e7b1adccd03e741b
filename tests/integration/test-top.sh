#!/bin/bash
# test-top.sh - cairn top on a 4-node local cluster (issue 25, item 3;
# docs/cli.md, "cairn top"):
#   - --once --json: every node with its state, cpus, load, memory and
#     jobs, and a running job with its node, cpu, rss and moves;
#   - --once: the text frame, without a terminal;
#   - --json: one document per refresh, fed by events (probed's load
#     vectors: the events count grows) and a job's move shows up;
#   - the live view in a pty (python3's pty module): it draws every node
#     and the job, quits on q with exit 0, and leaves the terminal as it
#     found it (termios, cursor, main screen); the same on SIGTERM;
#   - without a terminal and without --once/--json: a usage error.
# Needs root, netns and python3 (skips with 77).
. "$(dirname "$0")/lib.sh"

t_require_netns
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
t_cluster_up tp 4

gpid=$("$CAIRN" run --node 3 --name toptest -- sleep 300 | jq -r .gpid)
t_check "a job on node 3 ($gpid)" test -n "$gpid" -a "$gpid" != null

# ---- --once --json ---------------------------------------------------------
out=$("$CAIRN" top --once --json 2>"$T_TMP/err"); rc=$?
t_check "top --once --json: exit 0 (exit $rc: $(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
t_json_check "every node, alive, with its load and memory" "$out" \
    '([.nodes[].id] == [1,2,3,4]) and all(.nodes[]; .state == "alive" and .cpus > 0 and (.cpu_load | type) == "number" and .mem_limit_bytes > 0 and (.mem_used_bytes | type) == "number" and (.jobs | type) == "number")'
t_json_check "the running job: node 3, rss, moves, command" "$out" \
    "[.jobs[] | select(.gpid == \"$gpid\")] | length == 1 and .[0].node == 3 and .[0].state == \"running\" and .[0].rss_bytes > 0 and .[0].moves == 0 and .[0].command == \"sleep 300\" and (.[0] | has(\"cpu\") and has(\"cpu_percent\"))"
t_json_check "no error" "$out" '.errors == {}'

out=$("$CAIRN" top --once 2>&1); rc=$?
t_check "top --once: the text frame (exit $rc)" [ "$rc" -eq 0 ]
for k in 1 2 3 4; do t_check "text frame: node n$k" grep -qE "^$k +n$k +alive " <<<"$out"; done
t_check "text frame: the job" grep -qE "^$gpid +3 +running .* sleep 300\$" <<<"$out"
t_check "text frame: no escape sequence" bash -c "! grep -q $'\\e' <<<\"\$1\"" _ "$out"
t_check "no terminal, no --once/--json: usage error" t_expect_error 100 usage "$CAIRN" top

# ---- --json: refreshed from events ------------------------------------------
"$CAIRN" top --json --interval 1000 >"$T_TMP/lines" 2>"$T_TMP/top-err" &
top_pid=$!
T_PIDS+=("$top_pid")
events_grow() { tail -n1 "$T_TMP/lines" | jq -e '.events >= 4' >/dev/null 2>&1; }
t_check "top --json: load events arrive" t_wait_for 15 events_grow
c_out=$("$CAIRN" migrate "$gpid" --to 1 2>&1)
t_json_check "job moved to node 1 ($c_out)" "$c_out" '.to == 1'
moved() {
    tail -n1 "$T_TMP/lines" | jq -e --arg g "$gpid" \
        '.jobs[] | select(.gpid == $g) | .node == 1 and .moves == 1' >/dev/null 2>&1
}
t_check "top --json: the move shows up" t_wait_for 10 moved
kill -TERM "$top_pid"
wait "$top_pid"; rc=$?
t_check "top --json: exit 0 on SIGTERM (exit $rc: $(cat "$T_TMP/top-err"))" [ "$rc" -eq 0 ]

# ---- the live view in a pty -------------------------------------------------
cat >"$T_TMP/pty.py" <<'PY'
# pty.py HOW CAIRN ARGS...: runs the command on a new pty whose slave
# stays open here too, waits until the screen shows what argv[2] (a list
# of words, comma-separated) names, ends it by HOW (q or TERM), checks it
# exits 0 within 5 s and the slave's termios is what it was before.
import os, select, signal, subprocess, sys, termios, time
how, words, cmd = sys.argv[1], sys.argv[2].encode().split(b","), sys.argv[3:]
master, slave = os.openpty()
before = termios.tcgetattr(slave)
p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
buf, end = b"", time.time() + 20
def pump(t):
    global buf
    r, _, _ = select.select([master], [], [], t)
    if r:
        buf += os.read(master, 65536)
while time.time() < end and not all(w in buf for w in words):
    pump(0.2)
if not all(w in buf for w in words):
    sys.exit("the screen never showed %r: %r" % (words, buf[-600:]))
if how == "q":
    os.write(master, b"q")
else:
    p.send_signal(signal.SIGTERM)
try:
    rc = p.wait(timeout=5)
except subprocess.TimeoutExpired:
    p.kill()
    sys.exit("still running 5 s after %s" % how)
pump(0.2)
if rc != 0:
    sys.exit("exit %d: %r" % (rc, buf[-600:]))
if termios.tcgetattr(slave) != before:
    sys.exit("the terminal's mode was not restored")
tail = buf[buf.rfind(b"\x1b[J"):]
if b"\x1b[?25h" not in tail or b"\x1b[?1049l" not in tail:
    sys.exit("cursor or main screen not restored: %r" % tail)
if b"\x1b[?1049h" not in buf:
    sys.exit("no alternate screen")
print("ok")
PY
words="n1,n2,n3,n4,$gpid,sleep 300"
out=$(python3 "$T_TMP/pty.py" q "$words" "$CAIRN" top 2>&1)
t_check "pty: top draws every node and the job, quits on q, restores the terminal ($out)" [ "$out" = ok ]
out=$(python3 "$T_TMP/pty.py" TERM "$words" "$CAIRN" top 2>&1)
t_check "pty: the same on SIGTERM ($out)" [ "$out" = ok ]

"$CAIRN" kill "$gpid" >/dev/null 2>&1
t_done
