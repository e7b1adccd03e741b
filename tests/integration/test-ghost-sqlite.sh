#!/bin/bash
# test-ghost-sqlite.sh - issue 16's real program: a sqlite3 shell in the
# middle of a write transaction (BEGIN; INSERT ...: the database's POSIX
# locks held, its rollback journal open, the changed pages only in its
# memory) is checkpointed through a real ghostd and the CLI, which kills
# it, restored with the same pid, and then COMMITs: the rows are there and
# the database passes PRAGMA integrity_check. Its stdin is a named FIFO
# the test keeps open (restored by path), its output a file. Needs root
# and sqlite3 (the Debian package): skips with 77 otherwise.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v sqlite3 >/dev/null || { echo "SKIP: needs sqlite3 (apt-get install sqlite3)"; exit 77; }
GHOSTD="$CAIRN_BUILD/services/ghostd/ghostd"

port=$(t_free_port); gport=$(t_free_port)
t_description_ghostd "$T_TMP/c.xml" gsqlite "$port" "$gport"
t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd.log" || exit 1
C="$CAIRN --config $T_TMP/c.xml"

db="$T_TMP/t.db" in="$T_TMP/in" out="$T_TMP/out"
mkfifo "$in"
exec 7<>"$in"   # the writer the shell reads from, held open across the checkpoint
setsid sqlite3 "$db" <"$in" >"$out" 2>&1 7>&- &
pid=$!
T_PIDS+=("$pid")
echo "CREATE TABLE t(x INTEGER PRIMARY KEY, v TEXT);" >&7
echo "INSERT INTO t(v) VALUES('before');" >&7
echo "BEGIN; INSERT INTO t(v) VALUES('one'),('two'),('three'); UPDATE t SET v='changed' WHERE x=1;" >&7

# in the transaction: the journal exists and the database is write-locked
in_txn() { [ -e "$db-journal" ] && grep -q "POSIX  ADVISORY  WRITE $pid " /proc/locks; }
t_check "sqlite3 holds its write transaction" t_wait_for 10 in_txn
t_check "another connection cannot write meanwhile" \
    bash -c "! sqlite3 '$db' 'INSERT INTO t(v) VALUES(1);' 2>/dev/null"

ckpt=$($C checkpoint "$pid" --dir "$T_TMP/img" 2>"$T_TMP/err"); rc=$?
t_check "checkpoint in the middle of the transaction ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
gone() { case $(t_proc_state "$pid") in Z|gone) wait "$pid" 2>/dev/null; return 0;; esac; return 1; }
t_check "the checkpoint killed sqlite3" t_wait_for 10 gone
t_check "the uncommitted rows are not in the file meanwhile" \
    [ "$(sqlite3 "$db" 'SELECT count(*) FROM t;' 2>/dev/null || echo locked)" != 4 ]

out_json=$($C restart "$T_TMP/img" 2>"$T_TMP/err"); rc=$?
t_check "restart ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
t_json_check "same pid" "$out_json" ".pid == $pid"
t_check "the write lock is held again" in_txn

echo "COMMIT;" >&7
echo "SELECT 'rows', count(*) FROM t; SELECT 'v1', v FROM t WHERE x=1; PRAGMA integrity_check;" >&7
exec 7>&-   # end of input: the shell exits
done_() { case $(t_proc_state "$pid") in Z|gone) return 0;; esac; return 1; }
t_check "sqlite3 exits at the end of its input" t_wait_for 10 done_
t_check "the restored shell saw 4 rows ($(tr '\n' ' ' <"$out"))" grep -qx 'rows|4' "$out"
t_check "the update is in" grep -qx 'v1|changed' "$out"
t_check "its integrity check says ok" grep -qx ok "$out"
t_check "no error from the shell" bash -c "! grep -qi error '$out'"
t_check "a new connection sees the 4 rows" [ "$(sqlite3 "$db" 'SELECT count(*) FROM t;')" = 4 ]
t_check "and the database is whole" [ "$(sqlite3 "$db" 'PRAGMA integrity_check;')" = ok ]
t_check "no journal left" [ ! -e "$db-journal" ]
t_done
