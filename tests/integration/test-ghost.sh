#!/bin/bash
# test-ghost.sh - checkpoint/restart through a real ghostd and the real CLI.
#
# Part 1 (the daemon's contract): a copy of ghostd outside the build tree
# runs fake helpers from $CAIRN_LIBEXEC, so every mapping of a helper's exit
# status and JSON line to a reply (ok, refused, garbage, crash, hang,
# pid taken), what is left of an image after each, and every argument check
# is tested without the engine.
#
# Part 2 (the acceptance tests of the engine): each mode of
# tests/ghost/ghost-case is started, checkpointed (and so killed), restored,
# sent SIGUSR2, and must write "PASS <mode>" itself. Then: checkpoint twice
# (--leave-running, then again), restore twice from one image (the second
# with --pid new while the first runs), threads restored under new tids, a
# checkpoint written over the last
# one in place (--in-place), refusals (a socket: the process is
# left running and untouched), a bad DIR, a pid that does not exist, a
# garbage image (an error, and nothing left running). The memory, threads
# and process cases once more with the image on a huge=always tmpfs, where
# the dump copies memory in place with several threads. A private file
# mapping's file touched between checkpoint and restart: refused, then
# restored once its mtime is back. A seccomp filter kept by both threads. The creds case as
# root, as nobody, as a user with groups, and as root with a trimmed
# bounding set, an ambient capability and no_new_privs. A restart whose pid
# a zombie holds. The memory case
# dumped reading pagemap (the path of kernels without PAGEMAP_SCAN) by the
# engine alone, and the anonfds case with its eventfd's mode probed (the
# path of kernels before 6.2). Why won't it move: a refused check lists
# every reason (fakes: how ghostd and the CLI carry them; ghost-case
# unmovable: a socket, a pty master and a tracer, three reasons, and the
# process untouched by the checks; a changed file and no room under a
# small memory cgroup, two). Needs root (ptrace of
# any process, clone3 set_tid): skips with 77 otherwise. A process stopped
# by SIGSTOP comes back stopped and passes once continued.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
GHOSTD="$CAIRN_BUILD/services/ghostd/ghostd"
CASE="$CAIRN_BUILD/tests/ghost/ghost-case"
ENGINE="$CAIRN_BUILD/services/ghostd/engine"
WORK="$T_TMP/work"
mkdir -p "$WORK"


# ---- part 1: ghostd against fake helpers ---------------------------------

FAKE="$T_TMP/fake"
mkdir -p "$FAKE/libexec" "$FAKE/bin"
cp "$GHOSTD" "$FAKE/bin/ghostd"
cat > "$FAKE/libexec/ghost-dump" <<EOF
#!/bin/bash
case \$(cat "$FAKE/mode") in
ok) echo "\$*" > "$FAKE/args"; echo '{"pid":'\$2',"image":"'\$4'","image_bytes":8192,"pages":2,"processes":1,"threads":3,"freeze_us":1500,"dump_us":2500,"left_running":false}'; exit 0;;
refuse) echo '{"error":{"code":"unsupported","message":"fd 3 is a socket: cannot be checkpointed"}}'; exit 2;;
precond) echo '{"error":{"code":"internal","message":"pid is traced"}}'; exit 2;;
garbage) echo 'hello'; exit 0;;
partial) echo '{"pid":1,"pages":2}'; exit 0;;
crash) echo partial > "\$4.part"; kill -SEGV \$\$;;
hang) echo partial > "\$4.part"; sleep 100;;
err) echo '{"error":{"code":"not-found","message":"gone"}}'; exit 1;;
checked) echo "\$*" > "$FAKE/args"; echo '{"pid":'\$2',"checkpointable":true}'; exit 0;;
reasons) echo '{"error":{"code":"failed-precondition","message":"process 9 thread 9 is already traced by 7","reasons":[{"code":"failed-precondition","pid":9,"what":"thread 9","message":"process 9 thread 9 is already traced by 7"},{"code":"unsupported","pid":9,"what":"fd 4","message":"process 9 fd 4 is a socket"},{"code":"bogus","pid":-3,"what":"fd 5","message":"odd"}],"more_reasons":5}}'; exit 2;;
weird) echo '{"error":{"code":"not-found","message":"odd"}}'; exit 111;;
esac
EOF
cat > "$FAKE/libexec/ghost-restore" <<EOF
#!/bin/bash
case \$(cat "$FAKE/mode") in
ok) echo '{"pid":4242,"original_pid":4242,"same_pid":true,"image_bytes":8192,"pages":2,"processes":1,"threads":1,"restore_us":1234}'; exit 0;;
wrongpid) echo '{"pid":4243,"original_pid":4242,"same_pid":false,"image_bytes":8192,"pages":2,"processes":1,"threads":1,"restore_us":1234}'; exit 0;;
taken) echo '{"error":{"code":"already-exists","message":"pid 4242 is taken"}}'; exit 3;;
reasons) echo '{"error":{"code":"failed-precondition","message":"process 9 thread 9 is already traced by 7","reasons":[{"code":"failed-precondition","pid":9,"what":"thread 9","message":"process 9 thread 9 is already traced by 7"},{"code":"unsupported","pid":9,"what":"fd 4","message":"process 9 fd 4 is a socket"},{"code":"bogus","pid":-3,"what":"fd 5","message":"odd"}],"more_reasons":5}}'; exit 1;;
checked) echo "\$*" > "$FAKE/args"; echo '{"check":true,"original_pid":4242,"pids_free":true,"image_bytes":8192,"pages":2,"processes":1,"threads":1,"check_us":777}'; exit 0;;
*) echo junk; exit 1;;
esac
EOF
chmod +x "$FAKE/libexec/"*
fport=$(t_free_port); fgport=$(t_free_port)
t_description_ghostd "$T_TMP/fake.xml" gfake "$fport" "$fgport"
CAIRN_LIBEXEC="$FAKE/libexec" t_start_service ghostd "$FAKE/bin/ghostd" \
    "$T_TMP/fake.xml" 1 "$T_TMP/fake-ghostd.log" || exit 1
F="$CAIRN --config $T_TMP/fake.xml"
sleep 1000 & VICTIM=$!
T_PIDS+=("$VICTIM")

# fake MODE CMD...: runs the CLI with the fakes in MODE; sets out, err, rc.
fake() {
    echo "$1" > "$FAKE/mode"; shift
    out=$($F "$@" 2>"$T_TMP/err"); rc=$?; err=$(cat "$T_TMP/err")
}
# t_err WHAT CODE [TEXT]: the last command failed with exit 1 and CODE.
t_err() {
    t_check "$1: exit 1 (rc=$rc)" [ "$rc" -eq 1 ]
    t_json_check "$1: code $2 ($err)" "$err" ".error.code == \"$2\""
    [ $# -lt 3 ] || t_json_check "$1: message" "$err" \
        ".error.message | contains(\"$3\")"
}

fake ok checkpoint "$VICTIM" --dir "$T_TMP/f1"
t_check "fake ok: exit 0 ($err)" [ "$rc" -eq 0 ]
t_json_check "fake ok: fields" "$out" ".pid == $VICTIM and .dir == \"$T_TMP/f1\"
    and .image == \"$T_TMP/f1/image.ghost\" and .image_bytes == 8192
    and .pages == 2 and .processes == 1 and .threads == 3
    and .freeze_ms == 1.5 and .dump_ms == 2.5 and .left_running == false"
t_check "fake ok: DIR made 0700" [ "$(stat -c %a "$T_TMP/f1")" = 700 ]
fake ok checkpoint "$VICTIM"
t_json_check "default dir under the node's rundir" "$out" \
    ".dir | startswith(\"$T_TMP/run/gfake/1/ghost/$VICTIM-\")"
fake ok checkpoint "$VICTIM" --dir rel
t_json_check "relative --dir made absolute" "$out" ".dir == \"$PWD/rel\""
rm -rf rel
fake refuse checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "refused" unsupported "fd 3"
fake precond checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "exit 2" failed-precondition "traced"
fake garbage checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "garbage" internal "JSON"
fake partial checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "fields missing" internal "image_bytes"
fake crash checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "crash" internal "signal 11"
t_check "crash: ghostd removed the helper's partial image" [ ! -e "$T_TMP/f2/image.ghost.part" ]
mkdir -p "$T_TMP/f6"; echo old > "$T_TMP/f6/image.ghost"
fake ok checkpoint "$VICTIM" --dir "$T_TMP/f6" --in-place --leave-running
t_check "in place: the helper is told ($(cat "$FAKE/args"))" \
    [ "$(cat "$FAKE/args")" = "--pid $VICTIM --out $T_TMP/f6/image.ghost --leave-running --in-place --ghost-file-max 1048576" ]
fake refuse checkpoint "$VICTIM" --dir "$T_TMP/f6" --in-place; t_err "in place, refused" unsupported
t_check "in place, refused: the image is kept" grep -qx old "$T_TMP/f6/image.ghost"
fake crash checkpoint "$VICTIM" --dir "$T_TMP/f6" --in-place; t_err "in place, crash" internal "signal 11"
t_check "in place, crash: ghostd removed the half-written image" [ ! -e "$T_TMP/f6/image.ghost" ]
fake ok checkpoint "$VICTIM" --in-place
t_check "--in-place without --dir is a usage error" [ "$rc" -eq 100 ]
t_json_check "--in-place without --dir: says so" "$err" '.error.message | contains("--in-place needs --dir")'
fake err checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "exit 1" not-found "gone"
fake weird checkpoint "$VICTIM" --dir "$T_TMP/f2"; t_err "exit 111" internal "status 111"
echo hang > "$FAKE/mode"
$F --timeout 3000 checkpoint "$VICTIM" --dir "$T_TMP/f3" >/dev/null 2>"$T_TMP/hang.err" &
HANG=$!
sleep 0.5
fake hang checkpoint "$VICTIM" --dir "$T_TMP/f4"; t_err "same pid twice" busy "already being checkpointed"
wait "$HANG"; rc=$?; err=$(cat "$T_TMP/hang.err")
t_err "hung helper" timeout "killed"
sleep 0.3
t_check "hung helper: its partial image removed" [ ! -e "$T_TMP/f3/image.ghost.part" ]
t_check "hung helper reaped" [ -z "$(pgrep -f "$FAKE/libexec/ghost-dump")" ]
fake ok checkpoint 99999999; t_err "no such pid" not-found "99999999"
fake ok checkpoint 1; t_err "pid 1" invalid-argument
touch "$T_TMP/afile"
fake ok checkpoint "$VICTIM" --dir "$T_TMP/afile/x"; t_err "DIR under a file" invalid-argument
fake ok restart "$T_TMP/nothing"; t_err "restart: no image" not-found "image.ghost"
mkdir -p "$T_TMP/f5"; : > "$T_TMP/f5/image.ghost"
fake ok restart "$T_TMP/f5"
t_check "fake restart ok: exit 0 ($err)" [ "$rc" -eq 0 ]
t_json_check "fake restart: fields" "$out" ".pid == 4242 and
    .original_pid == 4242 and .same_pid == true and .image_bytes == 8192 and
    .pages == 2 and .processes == 1 and .threads == 1 and .restore_ms == 1.234"
fake wrongpid restart "$T_TMP/f5"; t_err "--pid same answered another pid" internal "original"
fake wrongpid restart "$T_TMP/f5" --pid new
t_json_check "--pid new" "$out" ".pid == 4243 and .same_pid == false"
fake taken restart "$T_TMP/f5"; t_err "pid taken" already-exists "taken"
fake junk restart "$T_TMP/f5"; t_err "restore garbage" internal "no JSON"
$F restart "$T_TMP/f5" --pid maybe >/dev/null 2>&1
t_check "--pid maybe is a usage error" [ $? -eq 100 ]
# --check: the helpers' checks, nothing written or made.
fake checked checkpoint "$VICTIM" --check --leave-running
t_check "checkpoint --check: exit 0 ($err)" [ "$rc" -eq 0 ]
t_json_check "checkpoint --check: answer" "$out" ".pid == $VICTIM and .checkpointable == true"
t_check "checkpoint --check: the helper is told ($(cat "$FAKE/args"))" \
    [ "$(cat "$FAKE/args")" = "--pid $VICTIM --check --leave-running --ghost-file-max 1048576" ]
fake checked checkpoint "$VICTIM" --check --dir "$T_TMP/f7"
t_check "checkpoint --check --dir is a usage error" [ "$rc" -eq 100 ]
t_check "checkpoint --check --dir: nothing made" [ ! -e "$T_TMP/f7" ]
fake refuse checkpoint "$VICTIM" --check; t_err "checkpoint --check, refused" unsupported "fd 3"
fake checked restart "$T_TMP/f5" --check
t_check "restart --check: exit 0 ($err)" [ "$rc" -eq 0 ]
t_json_check "restart --check: answer" "$out" ".dir == \"$T_TMP/f5\" and
    .restorable == true and .original_pid == 4242 and .pids_free == true and
    .image_bytes == 8192 and .pages == 2 and .check_ms == 0.777 and (has(\"pid\") | not)"
t_check "restart --check: the helper is told ($(cat "$FAKE/args"))" \
    [ "$(cat "$FAKE/args")" = "--image $T_TMP/f5/image.ghost --check" ]
fake checked restart "$T_TMP/f5" --check --pid new
t_check "restart --check --pid is a usage error" [ "$rc" -eq 100 ]
fake ok restart "$T_TMP/f5" --check; t_err "restart --check answered a restore" internal "lacks"
# Every reason of a refused check travels (Reason in ghostd.proto): the
# error is the first, error.reasons lists them all with their code, pid
# and what; a code that is no refusal's is failed-precondition; a request
# refused for several reasons says --check lists them.
# t_reasons WHAT: the last command's error carries the fake's reasons.
t_reasons() {
    t_err "$1" failed-precondition "already traced by 7"
    t_json_check "$1: every reason, in order" "$err" '[.error.reasons[] | [.code, .pid, .what]] ==
        [["failed-precondition", 9, "thread 9"], ["unsupported", 9, "fd 4"],
         ["failed-precondition", 0, "fd 5"]] and .error.more_reasons == 5 and
        .error.reasons[1].message == "process 9 fd 4 is a socket"'
    t_json_check "$1: the error is the first reason" "$err" \
        '.error.message == .error.reasons[0].message and .error.code == .error.reasons[0].code'
}
fake reasons checkpoint "$VICTIM" --check; t_reasons "checkpoint --check, refused for three reasons"
fake reasons restart "$T_TMP/f5" --check; t_reasons "restart --check, refused for three reasons"
echo reasons > "$FAKE/mode"
out=$(printf '["checkpoint", "%s", "--check"]\n' "$VICTIM" | $F batch 2>"$T_TMP/err")
t_json_check "batch: a refused check's reasons in its answer ($out)" "$out" \
    '.ok == false and .exit == 1 and (.error.reasons | length) == 3 and .error.more_reasons == 5'
fake reasons checkpoint "$VICTIM" --dir "$T_TMP/f8"
t_err "checkpoint refused for three reasons" failed-precondition "--check lists them all"
t_json_check "checkpoint refused: no list outside a check" "$err" '.error | has("reasons") | not'
kill -0 "$VICTIM" 2>/dev/null
t_check "the victim was never touched by ghostd" [ $? -eq 0 ]
# The spool: mounted at start; its checkpoint directories empty (the fake
# helper wrote no image), so ghostd removes them and unmounts it at stop.
FSPOOL="$T_TMP/run/gfake/1/ghost"
t_check "fake: spool mounted on $FSPOOL" [ "$(findmnt -n -o FSTYPE --mountpoint "$FSPOOL")" = tmpfs ]
t_stop_services
t_check "fake: spool unmounted at stop ($(t_mounts_under "$FSPOOL"))" [ -z "$(t_mounts_under "$FSPOOL")" ]
t_check "fake: its empty checkpoint directories removed" [ -z "$(ls -A "$FSPOOL")" ]

# ---- part 2: the engine, end to end --------------------------------------

port=$(t_free_port); gport=$(t_free_port)
t_description_ghostd "$T_TMP/c.xml" ghost "$port" "$gport"
t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd.log" || exit 1
GHOSTD_PID=$T_LAST_PID
C="$CAIRN --config $T_TMP/c.xml"

# Any local user may connect to ghostd's ipc socket: who may ask what is
# decided per request, from the kernel's word on the caller (users who are
# not root: test-ghost-users.sh). Over tcp, in security mode none, nobody
# vouches for a caller: refused, naming mode curve.
t_check "ghostd: ipc socket mode 0666" [ "$(stat -c %a "$T_TMP/run/ghost/1/ghostd.sock")" = 666 ]
sleep 1000 & S=$!
T_PIDS+=("$S")
$CAIRN --endpoint "tcp://127.0.0.1:$gport" checkpoint "$S" --check >/dev/null 2>"$T_TMP/err"
rc=$?; err=$(cat "$T_TMP/err")
t_err "ghostd over tcp in mode none: refused" permission-denied 'mode=\"curve\"'

# start_case MODE RESULT: starts ghost-case MODE in its own session with
# stdout appended to RESULT (through "${CASE_WRAP[@]}", e.g. setpriv, when
# set); waits for "ready". Sets CASE_PID.
CASE_WRAP=()
start_case() {
    local mode=$1 result=$2 i
    setsid "${CASE_WRAP[@]}" "$CASE" "$mode" "$WORK" >>"$result" 2>&1 &
    CASE_PID=$!
    T_PIDS+=("$CASE_PID")
    for i in $(seq 1 100); do
        grep -q "^ready $CASE_PID" "$result" && return 0
        sleep 0.05
    done
    echo "ghost-case $mode did not get ready:" >&2; cat "$result" >&2
    return 1
}


# wait_stopped PID: waits up to 2 s for PID to be stopped (state T).
wait_stopped() {
    local i
    for i in $(seq 1 100); do [ "$(t_proc_state "$1")" = T ] && return 0; sleep 0.02; done
    return 1
}

# restart_verdict WHAT DIR PID RESULT MODE: restarts DIR with its pid,
# sends SIGUSR2, and the case must say PASS.
restart_verdict() {
    out=$($C restart "$2" 2>"$T_TMP/err"); rc=$?
    t_check "$1: restart ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    T_PIDS+=("$3")
    kill -USR2 "$3" 2>/dev/null
    t_check "$1: PASS" wait_verdict "$4" "$5"
}

# running_or_asleep PID: PID runs or sleeps (R or S): not stopped ("R"
# too: under load it may be on its way back into its sleep).
running_or_asleep() {
    case $(t_proc_state "$1") in R|S) ;; *) return 1 ;; esac
}

# running_free PID: running_or_asleep and not traced.
running_free() {
    running_or_asleep "$1" && grep -q '^TracerPid:[[:space:]]*0$' "/proc/$1/status"
}

# wait_verdict RESULT MODE [COUNT]: waits up to 10 s for COUNT (default 1)
# PASS/FAIL lines of MODE; true if all are PASS.
wait_verdict() {
    local result=$1 mode=$2 count=${3:-1} i
    for i in $(seq 1 200); do
        [ "$(grep -c -E "^(PASS|FAIL) $mode" "$result")" -ge "$count" ] && break
        sleep 0.05
    done
    [ "$(grep -c "^PASS $mode\$" "$result")" -ge "$count" ] && \
        ! grep -q "^FAIL $mode" "$result"
}

# run_case MODE [BASE]: start, checkpoint (killing it) into BASE/img-MODE
# (BASE defaults to $T_TMP; "-": no --dir, ghostd's default directory),
# restore, SIGUSR2, verdict.
run_case() {
    local mode=$1 result="$T_TMP/result-$1" img="${2:-$T_TMP}/img-$1" out rc pid
    local dir_arg=(--dir "$img")
    : >"$result"
    start_case "$mode" "$result" || { t_fail "$mode: start"; return; }
    pid=$CASE_PID
    if [ "$mode" = counter ]; then
        kill -USR1 "$pid"
        for i in $(seq 1 40); do grep -q '^counter before' "$result" && break; sleep 0.05; done
    fi
    [ "${2:-}" = - ] && dir_arg=()
    out=$($C checkpoint "$pid" "${dir_arg[@]}" 2>"$T_TMP/err"); rc=$?
    t_check "$mode: checkpoint exit 0 ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    [ "$rc" -eq 0 ] || { kill -9 "$pid"; return; }
    [ "${2:-}" = - ] && img=$(jq -r .dir <<<"$out")
    t_json_check "$mode: checkpoint JSON" "$out" ".pid == $pid and
        .image == \"$img/image.ghost\" and .image_bytes > 0 and .pages > 0
        and .processes == 1 and .threads >= 1 and .left_running == false
        and .stopped == 0
        and (.freeze_ms | type) == \"number\" and (.dump_ms | type) == \"number\""
    t_check "$mode: image file is image_bytes long" \
        [ "$(stat -c %s "$img/image.ghost")" = "$(jq .image_bytes <<<"$out")" ]
    COPY_THREADS=$(jq .copy_threads <<<"$out")
    t_check "$mode: the process is gone after the checkpoint" t_reap "$pid"
    out=$($C restart "$img" 2>"$T_TMP/err"); rc=$?
    t_check "$mode: restart exit 0 ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    [ "$rc" -eq 0 ] || return
    t_json_check "$mode: restart JSON" "$out" ".pid == $pid and .stopped == 0 and
        .original_pid == $pid and .same_pid == true and .image_bytes > 0 and
        .pages > 0 and .processes == 1 and (.restore_ms | type) == \"number\""
    T_PIDS+=("$pid")
    # its real uid now, before the verdict lets it exit (and be reaped)
    RESTORED_UID=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
    sleep 0.2   # let it run a little after the restore
    kill -USR2 "$pid"
    if wait_verdict "$result" "$mode"; then t_ok "$mode: PASS after restore"
    else t_fail "$mode: verdict: $(grep -E '^(PASS|FAIL)' "$result" || echo none)"; fi
}

for mode in memory counter fpu signals sigsuspend files nanosleep pause poll \
            read process threads anonfds; do
    run_case "$mode"
    if [ "$mode" = memory ]; then
        : >"$T_TMP/blk"
        [ "$(stat -c %o "$T_TMP/blk")" -lt 2097152 ] &&
            t_check "memory: an image on a small-page fs is streamed" [ "$COPY_THREADS" = 0 ]
    fi
done

# ghostd's default image directory (its spool) is a tmpfs with huge pages
# that it mounted: there ghost-dump copies anonymous memory in place into
# the image file with several threads (engine/direct.c).
SPOOL="$T_TMP/run/ghost/1/ghost"
t_check "spool: a tmpfs mounted on $SPOOL ($(findmnt -n -o FSTYPE,OPTIONS --mountpoint "$SPOOL"))" \
    [ "$(findmnt -n -o FSTYPE --mountpoint "$SPOOL")" = tmpfs ]
if grep -q always /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null; then
    t_check "spool: with huge pages" bash -c "findmnt -n -o OPTIONS --mountpoint '$SPOOL' | grep -q huge=always"
    for mode in memory threads process; do
        run_case "$mode" -
        t_check "$mode in the spool: copied in place (copy_threads $COPY_THREADS)" \
            [ "${COPY_THREADS:-0}" -ge 1 ]
    done
fi

# mem_cgroup_dir PID: the directory of PID's memory cgroup (v1: the
# memory hierarchy's, else the unified one's).
mem_cgroup_dir() {
    local v1
    v1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' "/proc/$1/cgroup")
    if [ -n "$v1" ]; then echo "/sys/fs/cgroup/memory${v1%/}"
    else echo "/sys/fs/cgroup$(awk -F: '$1 == 0 { print $3 }' "/proc/$1/cgroup" | sed 's|/$||')"; fi
}

# mem_cgroup_make NAME BYTES: a memory cgroup limited to BYTES beside
# ours (v1) or at the unified hierarchy's root (v2), into MEMCG; false
# when this machine lets us make none.
mem_cgroup_make() {
    local knob=memory.max
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || return 1
        MEMCG=/sys/fs/cgroup/$1
    else
        MEMCG="$(mem_cgroup_dir $$)/$1"; knob=memory.limit_in_bytes
    fi
    mkdir -p "$MEMCG" 2>/dev/null && echo "$2" > "$MEMCG/$knob"
}

# A private file mapping keeps only its written pages in the image: the
# file must be the one the dump saw. Touched: the restart is refused and
# nothing is left running; its mtime put back: the restart works. With
# ghostd (so its helper, where a restored tree is born) in a memory cgroup
# limited to half the image: no room, a reason of its own beside the
# changed file in --check, and the restart refused before anything is made.
R="$T_TMP/result-memory"; : >"$R"
if start_case memory "$R"; then
    P=$CASE_PID
    MEMFILE="$WORK/ghost-mem-$P"
    out=$($C checkpoint "$P" --dir "$T_TMP/mapped" 2>"$T_TMP/err"); rc=$?
    t_check "mapped file: checkpoint ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_reap "$P"
    touch -r "$MEMFILE" "$T_TMP/mtime-ref"
    touch -d '2001-01-01' "$MEMFILE"
    $C restart "$T_TMP/mapped" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "mapped file changed: restart refused" failed-precondition "changed since the dump"
    t_check "mapped file changed: nothing left running" [ "$(t_proc_state "$P")" = gone ]
    $C restart "$T_TMP/mapped" --check >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "mapped file changed: restart --check says why" failed-precondition "changed since the dump"
    NEED=$(( $(jq .pages <<<"$out") * 4096 ))
    LIMIT=$(( NEED / 8192 * 4096 ))   # half, in whole pages (the kernel rounds)
    if mem_cgroup_make "cairn-ghost-room-$$" "$LIMIT"; then
        HOME_CG=$(mem_cgroup_dir "$GHOSTD_PID")
        echo "$GHOSTD_PID" > "$MEMCG/cgroup.procs"
        $C restart "$T_TMP/mapped" --check >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
        t_err "no room + file changed: --check refused" failed-precondition "changed since the dump"
        t_json_check "no room + file changed: both reasons ($err)" "$err" \
            "(.error.reasons | length) == 2 and
             (.error.reasons[0].message | contains(\"changed since the dump\")) and
             (.error.reasons[0].what | startswith(\"memory at 0x\")) and .error.reasons[0].pid == $P and
             .error.reasons[1].what == \"room\" and .error.reasons[1].code == \"failed-precondition\" and
             (.error.reasons[1].message | contains(\"needs $NEED bytes\") and (contains(\"limit_in_bytes $LIMIT\") or contains(\"memory.max $LIMIT\")))"
        $C restart "$T_TMP/mapped" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
        t_err "no room: the restart refused" failed-precondition "no room here"
        t_check "no room: nothing left running" [ "$(t_proc_state "$P")" = gone ]
        out=$(sh -c "echo \$\$ > '$MEMCG/cgroup.procs'; exec '$ENGINE/ghost-restore' --image '$T_TMP/mapped/image.ghost' --check")
        t_json_check "no room: ghost-restore --check alone, both reasons" "$out" \
            '[.error.reasons[] | .what][1:] == ["room"] and (.error.reasons | length) == 2'
        echo "$GHOSTD_PID" > "$HOME_CG/cgroup.procs"
        rmdir "$MEMCG" 2>/dev/null
    else
        t_ok "no room: skipped (no memory cgroup can be made here)"
    fi
    touch -r "$T_TMP/mtime-ref" "$MEMFILE"
    out=$($C restart "$T_TMP/mapped" --check 2>"$T_TMP/err"); rc=$?
    t_check "mapped file back: restart --check ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_json_check "mapped file back: restorable, pid free" "$out" \
        ".restorable == true and .original_pid == $P and .pids_free == true"
    t_check "mapped file back: --check made nothing" [ "$(t_proc_state "$P")" = gone ]
    restart_verdict "mapped file back" "$T_TMP/mapped" "$P" "$R" memory
else
    t_fail "mapped file: start"
fi

# A seccomp filter (getpriority answers errno 42) in both threads of
# ghost-case seccomp is there again after the restore.
run_case seccomp

# Credentials: ids, groups, capability sets, no_new_privs and the dumpable
# flag of both threads of ghost-case creds come back as they were, for
# root, for nobody, for a user with groups, and for root with a trimmed
# bounding set, an ambient capability and no_new_privs (setpriv, exec'ed
# after setsid so the case itself is the checkpointed process).
run_case creds
for wrap in "--reuid=65534 --regid=65534 --clear-groups" \
            "--reuid=1000 --regid=1000 --groups=27,100" \
            "--bounding-set=-net_raw,-sys_time --inh-caps=+net_bind_service --ambient-caps=+net_bind_service --no-new-privs"; do
    read -r -a CASE_WRAP <<<"setpriv $wrap"
    run_case creds
    t_check "creds ($wrap): the restored process is not root-as-restorer (uid ${RESTORED_UID:-?})" \
        grep -q "^ready [0-9]* uid ${RESTORED_UID:-none} " "$T_TMP/result-creds"
done
CASE_WRAP=()

# Checkpoint twice, then restore twice from one image.
R="$T_TMP/result-twice"; : >"$R"
if start_case signals "$R"; then
    P=$CASE_PID
    out=$($C checkpoint "$P" --check 2>"$T_TMP/err"); rc=$?
    t_check "twice: checkpoint --check ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_json_check "twice: checkpointable" "$out" ".pid == $P and .checkpointable == true"
    t_check "twice: running on, untraced, after --check" running_free "$P"
    out=$($C checkpoint "$P" --dir "$T_TMP/tw1" --leave-running 2>"$T_TMP/err"); rc=$?
    t_check "twice: first checkpoint, --leave-running ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_json_check "twice: left_running" "$out" ".left_running == true"
    t_check "twice: still running after --leave-running" running_free "$P"
    out=$($C checkpoint "$P" --dir "$T_TMP/tw2" 2>"$T_TMP/err"); rc=$?
    t_check "twice: second checkpoint ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_check "twice: gone after the second" t_reap "$P"
    out=$($C restart "$T_TMP/tw1" 2>"$T_TMP/err"); rc=$?
    t_check "twice: restore 1 from the first image ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_json_check "twice: restore 1 has the original pid" "$out" ".pid == $P"
    T_PIDS+=("$P")
    $C restart "$T_TMP/tw1" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "twice: same pid while it runs" already-exists
    out=$($C restart "$T_TMP/tw1" --check 2>"$T_TMP/err"); rc=$?
    t_check "twice: restart --check while it runs ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_json_check "twice: restorable, but not with its pid" "$out" \
        ".restorable == true and .original_pid == $P and .pids_free == false"

    out=$($C restart "$T_TMP/tw1" --pid new 2>"$T_TMP/err"); rc=$?
    t_check "twice: restore 2 with --pid new ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    Q=$(jq -r .pid <<<"$out" 2>/dev/null)
    t_json_check "twice: restore 2 has a new pid" "$out" \
        ".pid != $P and .original_pid == $P and .same_pid == false"
    [ -n "$Q" ] && [ "$Q" != null ] && T_PIDS+=("$Q")
    kill -USR2 "$P" 2>/dev/null
    [ -n "$Q" ] && [ "$Q" != null ] && kill -USR2 "$Q" 2>/dev/null
    t_check "twice: both restored copies PASS" wait_verdict "$R" signals 2
else
    t_fail "twice: start"
fi

# A stopped process (job control: SIGSTOP) is checkpointed and comes back
# stopped; SIGCONT lets it go on, and it passes.
R="$T_TMP/result-stopped"; : >"$R"
if start_case pause "$R"; then
    P=$CASE_PID
    kill -STOP "$P"
    wait_stopped "$P"
    out=$($C checkpoint "$P" --dir "$T_TMP/stopped" 2>"$T_TMP/err")
    t_check "stopped: checkpoint ($(cat "$T_TMP/err"))" [ $? -eq 0 ]
    t_json_check "stopped: checkpoint says so" "$out" '.stopped == 1'
    t_check "stopped: the process is gone after the checkpoint" t_reap "$P"
    out=$($C restart "$T_TMP/stopped" 2>"$T_TMP/err")
    t_check "stopped: restart ($(cat "$T_TMP/err"))" [ $? -eq 0 ]
    t_json_check "stopped: restart says so" "$out" '.stopped == 1'
    out=$("$ENGINE/ghost-restore" --image "$T_TMP/stopped/image.ghost" --check)
    t_json_check "stopped: the image restores" "$out" '.check == true and .processes == 1' 
    T_PIDS+=("$P")
    t_check "stopped: restored stopped" wait_stopped "$P"
    t_check "stopped: not traced" grep -q '^TracerPid:[[:space:]]*0$' "/proc/$P/status"
    # SIGUSR2 while it is stopped: once continued, its handler must
    # interrupt the pause() it was stopped in (it is taken back into the
    # call before it is stopped again), as it would have.
    kill -USR2 "$P"
    sleep 0.2
    t_check "stopped: stays stopped" [ "$(t_proc_state "$P")" = T ]
    t_check "stopped: no verdict while stopped" bash -c "! grep -q '^PASS\|^FAIL' '$R'"
    kill -CONT "$P"
    t_check "stopped: PASS once continued" wait_verdict "$R" pause
    # The same with another pid and tid (--pid new): the thread is found
    # by its registers, not its tid.
    out=$($C restart "$T_TMP/stopped" --pid new 2>"$T_TMP/err")
    t_check "stopped: restart --pid new ($(cat "$T_TMP/err"))" [ $? -eq 0 ]
    Q=$(jq -r .pid <<<"$out")
    T_PIDS+=("$Q")
    t_check "stopped: --pid new restored stopped" wait_stopped "$Q"
    kill -USR2 "$Q"
    sleep 0.2
    kill -CONT "$Q"
    t_check "stopped: --pid new PASS once continued" wait_verdict "$R" pause 2
else
    t_fail "stopped: start"
fi

# A signal sent while it was stopped, before the checkpoint, is pending in
# the image: once restored and continued, its handler runs and the
# pause() the process was stopped in returns EINTR, as it would have
# (not entered again after the handler, waiting for a signal already
# taken). pause-threads: a second thread blocks the signal, so the
# process-wide signal is the main thread's.
for mode in pause pause-threads; do
    R="$T_TMP/result-stopped-pending-$mode"; : >"$R"
    W="stopped+pending ($mode)"
    if ! start_case "$mode" "$R"; then
        t_fail "$W: start"
        continue
    fi
    P=$CASE_PID
    kill -STOP "$P"
    wait_stopped "$P"
    kill -USR2 "$P"
    t_check "$W: SIGUSR2 pending while stopped" \
        awk '/^(SigPnd|ShdPnd):/ { if ($2 != "0000000000000000") f = 1 } END { exit !f }' "/proc/$P/status"
    out=$($C checkpoint "$P" --dir "$T_TMP/stopped-pending-$mode" 2>"$T_TMP/err")
    t_check "$W: checkpoint ($(cat "$T_TMP/err"))" [ $? -eq 0 ]
    t_check "$W: the process is gone after the checkpoint" t_reap "$P"
    out=$($C restart "$T_TMP/stopped-pending-$mode" 2>"$T_TMP/err")
    t_check "$W: restart ($(cat "$T_TMP/err"))" [ $? -eq 0 ]
    T_PIDS+=("$P")
    t_check "$W: restored stopped" wait_stopped "$P"
    t_check "$W: no verdict while stopped" bash -c "! grep -q '^PASS\|^FAIL' '$R'"
    kill -CONT "$P"
    t_check "$W: PASS once continued (pause ended by the pending signal)" \
        wait_verdict "$R" "$mode"
done

# The original pid held by a process that exited but is not reaped yet (a
# tree just killed by its checkpoint, reaped a moment later): the restart
# waits a little, then says who holds it; once reaped, it works. The case
# runs under a parent that never reaps (exec sleep).
R="$T_TMP/result-zombie"; : >"$R"
setsid bash -c "\"$CASE\" pause \"$WORK\" >>\"$R\" 2>&1 & exec sleep 1000" &
HOLDER=$!
T_PIDS+=("$HOLDER")
for i in $(seq 1 100); do grep -q '^ready' "$R" && break; sleep 0.05; done
P=$(awk '/^ready/ { print $2; exit }' "$R")
if [ -n "$P" ]; then
    $C checkpoint "$P" --dir "$T_TMP/zombie" --leave-running >/dev/null 2>"$T_TMP/err"
    t_check "zombie: checkpoint ($(cat "$T_TMP/err"))" [ $? -eq 0 ]
    kill -9 "$P"
    sleep 0.2
    t_check "zombie: the case is a zombie of its parent" [ "$(t_proc_state "$P")" = Z ]
    $C restart "$T_TMP/zombie" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "zombie: restart refused" already-exists "has not reaped"
    kill -9 "$HOLDER"
    for i in $(seq 1 100); do [ "$(t_proc_state "$P")" = gone ] && break; sleep 0.05; done
    restart_verdict "zombie reaped" "$T_TMP/zombie" "$P" "$R" pause
else
    t_fail "zombie: start"
fi

# engine_restore_verdict WHAT IMAGE PID RESULT MODE [FLAG...]: PID (killed
# by its dump) reaped, IMAGE restored by ghost-restore alone (with the
# FLAGs), SIGUSR2, PASS.
engine_restore_verdict() {
    local out
    t_reap "$3"
    out=$("$ENGINE/ghost-restore" --image "$2" "${@:6}" 2>&1)
    t_json_check "$1: restored ($out)" "$out" ".pid == $3"
    T_PIDS+=("$3")
    kill -USR2 "$3" 2>/dev/null
    t_check "$1: PASS" wait_verdict "$4" "$5"
}

# Kernels before 6.7 (Debian 12's own) have no PAGEMAP_SCAN: the dump
# reads pagemap instead. Forced here (ghost-dump --pagemap-read, the engine
# alone): it must pick the same pages, and the memory case must pass.
R="$T_TMP/result-pagemap"; : >"$R"
if start_case memory "$R"; then
    P=$CASE_PID
    a=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/pm-scan.img" --leave-running 2>&1)
    b=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/pm-read.img" --pagemap-read 2>&1)
    t_json_check "pagemap read: dumped ($b)" "$b" ".pages > 0"
    t_check "pagemap read: the same pages as PAGEMAP_SCAN ($(jq .pages <<<"$a") / $(jq .pages <<<"$b"))" \
        [ "$(jq .pages <<<"$a")" = "$(jq .pages <<<"$b")" ]
    engine_restore_verdict "pagemap read" "$T_TMP/pm-read.img" "$P" "$R" memory
else
    t_fail "pagemap read: start"
fi

# The restorer fills pages through process_vm_writev; where the kernel
# refuses it, it preads them straight into place. Forced here
# (ghost-restore --pread-pages): the memory case must pass.
R="$T_TMP/result-pread"; : >"$R"
if start_case memory "$R"; then
    P=$CASE_PID
    b=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/pread.img" 2>&1)
    t_json_check "pread pages: dumped ($b)" "$b" ".pages > 0"
    engine_restore_verdict "pread pages" "$T_TMP/pread.img" "$P" "$R" memory --pread-pages
else
    t_fail "pread pages: start"
fi

# An image read from a pipe (what a migration gives ghost-restore): the
# private anonymous pages of one process go straight to where they will
# live, in ghost-restore's own memory, which the restored process inherits
# (restore-inplace.c); the rest is staged. For each case: placed bytes
# reported, its mappings exactly as before the dump (/proc/PID/maps: the
# placed vmas must be one mapping each, of their range and protection),
# and PASS. (Not for threads: two adjacent anonymous vmas of the same
# protection -- a thread's stack beside another mapping -- come back as
# one, from a file as from a stream, since each restore maps them afresh
# and the kernel merges them; known, docs/ghost.md.)
# maps_coarsened BEFORE AFTER: AFTER's mappings are BEFORE's, except that
# adjacent ones of the same protection may have come back as one (the
# known merge above, which a sanitizer build's own mappings show in every
# case): the same ranges once neighbours of equal protection are joined,
# and no boundary in AFTER that BEFORE lacks (a placed vma split in two).
maps_coarsened() {
    python3 - "$1" "$2" <<'PY'
import sys
def read(p):
    return [(int(a, 16), int(b, 16), perm) for a, b, perm in
            (l.split()[0].split('-') + [l.split()[1]] for l in open(p))]
def joined(m):
    out = []
    for a, b, perm in m:
        if out and out[-1][1] == a and out[-1][2] == perm:
            out[-1] = (out[-1][0], b, perm)
        else:
            out.append((a, b, perm))
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
edges = {x for a, b, _ in before for x in (a, b)}
ok = joined(before) == joined(after) and all(a in edges and b in edges for a, b, _ in after)
sys.exit(0 if ok else 1)
PY
}

for mode in memory threads files process; do
    R="$T_TMP/result-stream-$mode"; : >"$R"
    start_case "$mode" "$R" || { t_fail "streamed $mode: start"; continue; }
    P=$CASE_PID
    sleep 0.1
    cut -d' ' -f1-2 "/proc/$P/maps" >"$T_TMP/stream-maps-before"
    b=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/stream.img" 2>&1)
    t_json_check "streamed $mode: dumped ($b)" "$b" ".pages > 0"
    t_reap "$P"
    out=$(cat "$T_TMP/stream.img" | "$ENGINE/ghost-restore" --image - 2>&1)
    t_json_check "streamed $mode: restored from a pipe ($out)" "$out" \
        ".pid == $P and .placed_bytes > 0 and .placed_bytes <= .pages * 4096
         and (.tail_us | type) == \"number\""
    T_PIDS+=("$P")
    cut -d' ' -f1-2 "/proc/$P/maps" >"$T_TMP/stream-maps-after"
    [ "$mode" = threads ] ||
        t_check "streamed $mode: /proc/PID/maps as before the dump, no mapping split
$(diff "$T_TMP/stream-maps-before" "$T_TMP/stream-maps-after")" \
            maps_coarsened "$T_TMP/stream-maps-before" "$T_TMP/stream-maps-after"
    kill -USR2 "$P" 2>/dev/null
    t_check "streamed $mode: PASS" wait_verdict "$R" "$mode"
    kill -9 "$P" 2>/dev/null
    rm -f "$T_TMP/stream.img"
done

# Kernels before 6.2 do not say in fdinfo whether an eventfd is a
# semaphore: the dump probes it while the tree is frozen. Forced here
# (ghost-dump --probe-eventfds): ghost-case anonfds (a semaphore eventfd
# with a count) must pass after the restore (test-anonfd probes counters
# and every count).
R="$T_TMP/result-anonprobe"; : >"$R"
if start_case anonfds "$R"; then
    P=$CASE_PID
    b=$("$ENGINE/ghost-dump" --pid "$P" --out "$T_TMP/probe.img" --probe-eventfds 2>&1)
    t_json_check "eventfd probe: dumped ($b)" "$b" ".pages > 0"
    engine_restore_verdict "eventfd probe" "$T_TMP/probe.img" "$P" "$R" anonfds
else
    t_fail "eventfd probe: start"
fi

# --pid new: the threads come back under new tids, and the tids glibc
# keeps for them follow (pthread_kill in ghost-case threads reaches the
# thread it names).
R="$T_TMP/result-newpid"; : >"$R"
if start_case threads "$R"; then
    P=$CASE_PID
    out=$($C checkpoint "$P" --dir "$T_TMP/newpid" 2>"$T_TMP/err"); rc=$?
    t_check "new pid: checkpoint ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_reap "$P"
    out=$($C restart "$T_TMP/newpid" --pid new 2>"$T_TMP/err"); rc=$?
    t_check "new pid: restart ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    Q=$(jq -r .pid <<<"$out" 2>/dev/null)
    t_json_check "new pid: another pid" "$out" ".pid != $P and .original_pid == $P"
    if [ -n "$Q" ] && [ "$Q" != null ]; then
        T_PIDS+=("$Q")
        kill -USR2 "$Q"
        if wait_verdict "$R" threads; then t_ok "new pid: threads PASS"
        else t_fail "new pid: verdict: $(grep -E '^(PASS|FAIL)' "$R" || echo none)"; fi
    fi
else
    t_fail "new pid: start"
fi

# In place: a periodic checkpoint into the same --dir writes over the last
# image (--in-place) instead of making a new file; the file ends with the
# new image, which restores.
R="$T_TMP/result-inplace"; : >"$R"
if start_case memory "$R"; then
    P=$CASE_PID
    out=$($C checkpoint "$P" --dir "$T_TMP/inplace" --leave-running 2>"$T_TMP/err"); rc=$?
    t_check "in place: first checkpoint ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    INO=$(stat -c %i "$T_TMP/inplace/image.ghost" 2>/dev/null)
    out=$($C checkpoint "$P" --dir "$T_TMP/inplace" --in-place 2>"$T_TMP/err"); rc=$?
    t_check "in place: second checkpoint ($(cat "$T_TMP/err"))" [ "$rc" -eq 0 ]
    t_check "in place: the same file was written over" \
        [ "$(stat -c %i "$T_TMP/inplace/image.ghost" 2>/dev/null)" = "$INO" ]
    t_check "in place: the file is image_bytes long" \
        [ "$(stat -c %s "$T_TMP/inplace/image.ghost")" = "$(jq .image_bytes <<<"$out")" ]
    t_check "in place: no .part" [ ! -e "$T_TMP/inplace/image.ghost.part" ]
    t_check "in place: gone after the checkpoint" t_reap "$P"
    restart_verdict "in place" "$T_TMP/inplace" "$P" "$R" memory
else
    t_fail "in place: start"
fi

# Refusal: a socket fd of a kind never restored (netlink; unix sockets
# are). Exit 1, the fd named, the process untouched.
R="$T_TMP/result-socket"; : >"$R"
if start_case socket "$R"; then
    P=$CASE_PID
    FDS=$(sed -n "s/^ready $P fds=\([0-9]*\)/\1/p" "$R")
    mkdir -p "$T_TMP/sock"   # an earlier image there must survive the refusal
    head -c 100000 /dev/urandom >"$T_TMP/sock/image.ghost"
    SUM=$(md5sum <"$T_TMP/sock/image.ghost")
    $C checkpoint "$P" --dir "$T_TMP/sock" >/dev/null 2>"$T_TMP/err"; rc=$?
    err=$(cat "$T_TMP/err")
    t_check "socket: refused with exit 1 ($err)" [ "$rc" -eq 1 ]
    t_json_check "socket: failed-precondition or unsupported" "$err" \
        '.error.code == "failed-precondition" or .error.code == "unsupported"'
    t_json_check "socket: the message names fd $FDS" "$err" \
        ".error.message | test(\"fd ($FDS)\\\\b\")"
    t_check "socket: the earlier image is intact" \
        [ "$(md5sum <"$T_TMP/sock/image.ghost")" = "$SUM" ]
    t_check "socket: no partial image left" [ ! -e "$T_TMP/sock/image.ghost.part" ]
    $C checkpoint "$P" --dir "$T_TMP/sock" --in-place >/dev/null 2>"$T_TMP/err"; rc=$?
    t_check "socket, in place: refused ($(cat "$T_TMP/err"))" [ "$rc" -eq 1 ]
    t_check "socket, in place: the image it would write over is intact" \
        [ "$(md5sum <"$T_TMP/sock/image.ghost")" = "$SUM" ]
    t_check "socket: still running, not stopped" running_free "$P"
    t_check "socket: not traced" grep -q '^TracerPid:[[:space:]]*0$' "/proc/$P/status"
    kill -USR2 "$P"
    t_check "socket: untouched (PASS)" wait_verdict "$R" socket
else
    t_fail "socket: start"
fi

# Why won't it move: a socket, a pty master holding output nobody read
# (ptys move, but not bytes that cannot be taken without loss) and a
# tracer outside the tree,
# all at once, are three reasons, all listed (cairn checkpoint --check,
# ghost-dump --check, cairn batch); the checkpoint itself is refused for
# them. None of it touches the process: it counts on, is neither stopped
# nor traced by anyone else, its tracer saw no stop but the test's
# SIGUSR1s, and it passes.
R="$T_TMP/result-unmovable"; : >"$R"
# count_now: asks the case for its count (SIGUSR1) and prints it.
count_now() {
    local n i
    n=$(grep -c '^count' "$R")
    kill -USR1 "$P"
    for i in $(seq 1 100); do
        [ "$(grep -c '^count' "$R")" -gt "$n" ] && break
        sleep 0.02
    done
    sed -n 's/^count //p' "$R" | tail -n 1
}
if start_case unmovable "$R"; then
    P=$CASE_PID
    read -r SOCK PTMX TRACER < <(sed -n "s/^ready $P socket=\([0-9]*\) ptmx=\([0-9]*\) tracer=\([0-9]*\)$/\1 \2 \3/p" "$R")
    # the socket's reason comes from the whole tree's check (its peer is the
    # tracer's), after the per-fd ones: the order is not the point
    WHATS="([\"thread $P\", \"fd $SOCK\", \"fd $PTMX\"] | sort)"
    C1=$(count_now)
    $C checkpoint "$P" --check >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "unmovable: --check refused" failed-precondition "already traced by $TRACER"
    t_json_check "unmovable: three reasons: traced, the socket, the pty ($err)" "$err" \
        "([.error.reasons[] | .what] | sort) == $WHATS and ([.error.reasons[] | .pid] | unique) == [$P]
         and (.error.reasons | map(.code)) == [\"failed-precondition\", \"unsupported\", \"unsupported\"]
         and any(.error.reasons[]; .what == \"fd $SOCK\" and (.message | contains(\"socket\")))
         and any(.error.reasons[]; .what == \"fd $PTMX\" and (.message | contains(\"/dev/ptmx\"))
                                  and (.message | contains(\"3 unread bytes\")))
         and .error.message == .error.reasons[0].message and (has(\"more_reasons\") | not)"
    out=$("$ENGINE/ghost-dump" --pid "$P" --check); rc=$?
    t_check "unmovable: ghost-dump --check exits 2 (refused, untouched) ($rc)" [ "$rc" -eq 2 ]
    t_json_check "unmovable: ghost-dump --check lists the same three" "$out" \
        "([.error.reasons[] | .what] | sort) == $WHATS"
    out=$(printf '["checkpoint", "%s", "--check"]\n' "$P" | $C batch 2>/dev/null)
    t_json_check "unmovable: batch lists the same three" "$out" \
        "([.error.reasons[] | .what] | sort) == $WHATS"
    $C checkpoint "$P" --dir "$T_TMP/unmovable" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "unmovable: the checkpoint refused, saying there is more" failed-precondition \
        "--check lists them all"
    t_check "unmovable: no image" [ ! -e "$T_TMP/unmovable/image.ghost" ]
    t_check "unmovable: no partial image" [ ! -e "$T_TMP/unmovable/image.ghost.part" ]
    C2=$(count_now)
    t_check "unmovable: it counted on through the checks ($C1 -> $C2)" [ "${C2:-0}" -gt "${C1:-0}" ]
    t_check "unmovable: running, not stopped ($(t_proc_state "$P"))" running_or_asleep "$P"
    t_check "unmovable: traced by its own tracer only" \
        grep -q "^TracerPid:[[:space:]]*$TRACER\$" "/proc/$P/status"
    # (its setup's SIGCHLD, a stop before "ready", is not the checks')
    STOPS=$(sed -n '/^ready/,$p' "$R" | grep '^stop' | tr '\n' ' ')
    t_check "unmovable: since ready its tracer saw no stop but the two SIGUSR1 ($STOPS)" \
        [ "$STOPS" = "stop 10 stop 10 " ]
    kill -USR2 "$P"
    t_check "unmovable: untouched (PASS)" wait_verdict "$R" unmovable
else
    t_fail "unmovable: start"
fi

# Memory shared with a process outside the tree: a child writing into
# shared anonymous memory its parent (outside) maps too. A restored copy
# would write into a copy of its own, so the dump refuses, naming both.
python3 -c '
import mmap, os, sys, time
m = mmap.mmap(-1, 4096, flags=mmap.MAP_SHARED)
pid = os.fork()
if pid == 0:
    while True:
        m[0] = (m[0] + 1) % 256
        time.sleep(0.02)
print(pid, flush=True)
time.sleep(300)
' </dev/null >"$T_TMP/shared.pid" 2>"$T_TMP/shared.err" & SHP=$!
T_PIDS+=("$SHP")
for _ in $(seq 1 100); do [ -s "$T_TMP/shared.pid" ] && break; sleep 0.05; done
t_check "shared: the child is up" test -s "$T_TMP/shared.pid"
SHC=$(cat "$T_TMP/shared.pid" 2>/dev/null || echo 0)
T_PIDS+=("$SHC")
out=$("$ENGINE/ghost-dump" --pid "$SHC" --check); rc=$?
t_check "shared: ghost-dump --check refuses (exit 2: $rc)" [ "$rc" -eq 2 ]
t_json_check "shared: the reason names the memory and the parent outside ($out)" "$out" \
    ".error.code == \"unsupported\" and (.error.reasons | length) == 1
     and (.error.reasons[0].what | startswith(\"memory at 0x\"))
     and (.error.message | contains(\"shared anonymous memory\") and contains(\"process $SHP outside the tree\"))"
$C checkpoint "$SHC" --dir "$T_TMP/shared" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
t_err "shared: the checkpoint refused" unsupported "outside the tree maps too"
t_check "shared: no image" [ ! -e "$T_TMP/shared/image.ghost" ]
t_check "shared: the child runs on" running_or_asleep "$SHC"
kill "$SHC" "$SHP" 2>/dev/null

# Bad arguments and a garbage image against the real helpers.
sleep 1000 & S=$!
T_PIDS+=("$S")
$C checkpoint "$S" --dir "$T_TMP/afile/x" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
t_err "real: DIR under a file" invalid-argument
$C checkpoint 99999999 >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
t_err "real: no such pid" not-found
# A thread's id names its process in the refusal; a zombie is refused.
R="$T_TMP/result-tid"; : >"$R"
if start_case threads "$R"; then
    TID=$(ls "/proc/$CASE_PID/task" | grep -vx "$CASE_PID" | head -n 1)
    $C checkpoint "$TID" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_err "real: a thread id" invalid-argument "is a thread of process $CASE_PID"
    kill -9 "$CASE_PID"; wait "$CASE_PID" 2>/dev/null
else
    t_fail "real: a thread id: start"
fi
read -r ZP ZPARENT < <(setsid sh -c 'sleep 0.01 >/dev/null 2>&1 & echo $! $$; exec sleep 30 >/dev/null 2>&1' </dev/null)
T_PIDS+=("$ZPARENT")
for i in $(seq 1 100); do [ "$(t_proc_state "$ZP")" = Z ] && break; sleep 0.02; done
$C checkpoint "$ZP" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
t_err "real: a zombie" failed-precondition "has exited (zombie)"
kill -9 "$ZPARENT" 2>/dev/null
t_check "real: bad requests left the process alone" [ "$(t_proc_state "$S")" = S ]
mkdir -p "$T_TMP/garbage" "$T_TMP/empty"
head -c 200000 /dev/urandom > "$T_TMP/garbage/image.ghost"
: > "$T_TMP/empty/image.ghost"
for g in garbage empty; do
    $C restart "$T_TMP/$g" >/dev/null 2>"$T_TMP/err"; rc=$?; err=$(cat "$T_TMP/err")
    t_check "real: $g image refused with exit 1 ($err)" [ "$rc" -eq 1 ]
    t_json_check "real: $g image error has a message" "$err" \
        '.error.message | length > 0'
done
sleep 0.3
t_check "real: no helper left under ghostd" [ -z "$(pgrep -P "$GHOSTD_PID")" ]
t_check "real: nothing of the engine left running" \
    [ -z "$(pgrep -f "$CAIRN_BUILD/services/ghostd/engine/")" ]

# A ghostd that stops with images in its spool keeps it mounted (they
# would be lost); the next ghostd finds it and uses it as it is.
if [ -n "$(ls -A "$SPOOL" 2>/dev/null)" ]; then
    t_stop_services
    t_check "spool with images: kept mounted at stop" [ -n "$(t_mounts_under "$SPOOL")" ]
    t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd2.log" || exit 1
    t_check "spool with images: the next ghostd adopts it" grep -q "mounted=adopted" "$T_TMP/ghostd2.log"
fi

# A ghostd ended by SIGKILL (systemd's watchdog, a crash) leaves its spool
# mounted; the next one adopts it, and unmounts it at stop once it is empty
# (one stacked mount more per crash otherwise).
t_stop_services
rm -rf "${SPOOL:?}"/*
t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd3.log" || exit 1
kill -KILL "$T_LAST_PID"
wait "$T_LAST_PID" 2>/dev/null
t_check "killed ghostd: its spool left mounted" [ -n "$(t_mounts_under "$SPOOL")" ]
t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd4.log" || exit 1
# (waited for: the killed one's ipc socket is still there, so the start
# returns before the new ghostd has come as far as its spool)
t_check "killed ghostd: the next one adopts its spool" \
    t_wait_for 20 grep -q "mounted=adopted" "$T_TMP/ghostd4.log"
t_check "killed ghostd: one mount on the spool ($(t_mounts_under "$SPOOL" | wc -l))" \
    [ "$(t_mounts_under "$SPOOL" | wc -l)" = 1 ]
t_stop_services
t_check "killed ghostd: the adopted spool unmounted at stop ($(t_mounts_under "$SPOOL"))" \
    [ -z "$(t_mounts_under "$SPOOL")" ]
t_done
