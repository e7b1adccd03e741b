#!/bin/bash
# test-ghost-users.sh - who may checkpoint and restart what (docs/ghost.md,
# "Who may checkpoint and restart what"), through a real ghostd and the
# real CLI, run by users who are not root.
#
# Two throwaway users, A and B, are made here (useradd) and removed at the
# end, pass or fail. A checkpoints and restarts their own processes -- into
# a --dir of theirs and into ghostd's spool by default; a tree, files,
# threads, seccomp, inotify -- and each restored process runs as A and
# passes its own checks. A is refused, with permission-denied (exit 1), on
# root's process and on B's (--check too), on a tree of theirs holding a
# setuid child, on a process of theirs that is not dumpable; on restarting
# root's image, B's image, a root image copied into a file of A's (a
# crafted image, which root refuses too), and an image others may write.
# B cannot read A's checkpoint in the spool. Root still checkpoints and
# restarts A's process and A's own image. ghostd tells its helper who
# asked, makes no directory for a user and, after a helper crashed, removes
# what it left only in a directory of the user's (a fake helper). Over tcp
# in security mode none,
# ghostd answers nobody: permission-denied, naming mode curve. The CLI
# finds the cluster as a user both with --config and with --run-base.
# Needs root (useradd, ptrace, clone3 set_tid): skips with 77 otherwise.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
for tool in useradd userdel runuser setpriv; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
GHOSTD="$CAIRN_BUILD/services/ghostd/ghostd"
CASE="$CAIRN_BUILD/tests/ghost/ghost-case"

# ---- users, made here and removed at the end -----------------------------

T_USERS=()
s_cleanup_users() {
    local u uid p
    for u in "${T_USERS[@]}"; do
        uid=$(id -u "$u" 2>/dev/null) || continue
        # every process of a user this test made, found by its uid
        for p in $(pgrep -u "$uid"; pgrep -U "$uid"); do kill -9 "$p" 2>/dev/null; done
    done
    for u in "${T_USERS[@]}"; do
        for p in 1 2 3 4 5; do userdel "$u" 2>/dev/null && break; sleep 0.1; done
        getent group "$u" >/dev/null && groupdel "$u" 2>/dev/null
    done
}
trap 's_cleanup_users; t_cleanup' EXIT

# new_user NAME: a user with a group of their own, no home, no login.
new_user() {
    useradd --no-create-home --user-group --shell /usr/sbin/nologin "$1" 2>"$T_TMP/useradd.err" ||
        { echo "SKIP: useradd $1: $(cat "$T_TMP/useradd.err")"; exit 77; }
    T_USERS+=("$1")
}
UA="cairnga$$"; UB="cairngb$$"
new_user "$UA"; new_user "$UB"
UIDA=$(id -u "$UA"); UIDB=$(id -u "$UB")

# Users pass through the test's directory (mktemp made it 0700) to the run
# dir and the description; each has a directory of their own.
chmod 0711 "$T_TMP"
WA="$T_TMP/home-a"; WB="$T_TMP/home-b"
install -d -o "$UA" -g "$UA" -m 0700 "$WA"
install -d -o "$UB" -g "$UB" -m 0700 "$WB"


# ---- ghostd's side, against a fake ghost-dump -----------------------------

# For a user, ghostd tells the helper who asked (--as UID:GID), makes no
# directory (the helper makes it, with the user's file rights), and after
# a helper that crashed removes what it left only in a directory the user
# owns: not through a link A planted to a directory of root's.
FAKE="$T_TMP/fake"
mkdir -p "$FAKE/libexec" "$FAKE/bin"
cp "$GHOSTD" "$FAKE/bin/ghostd"
cat > "$FAKE/libexec/ghost-dump" <<HELPER
#!/bin/bash
echo "\$*" > "$FAKE/args"
case \$(cat "$FAKE/mode") in
ok) echo '{"pid":'\$2',"image":"'\$4'","image_bytes":8192,"pages":2,"processes":1,"threads":1,"freeze_us":1,"dump_us":1,"left_running":true}'; exit 0;;
crash) echo partial > "\$4.part"; kill -SEGV \$\$;;
crash-quiet) kill -SEGV \$\$;;
esac
HELPER
cp "$FAKE/libexec/ghost-dump" "$FAKE/libexec/ghost-restore"
chmod +x "$FAKE/libexec/"*
fport=$(t_free_port); fgport=$(t_free_port)
t_description_ghostd "$T_TMP/fake.xml" ufake "$fport" "$fgport"
CAIRN_LIBEXEC="$FAKE/libexec" t_start_service ghostd "$FAKE/bin/ghostd" \
    "$T_TMP/fake.xml" 1 "$T_TMP/fake-ghostd.log" || exit 1
(cd "$WA" && exec setsid setpriv --reuid "$UA" --regid "$UA" --init-groups sleep 1000) &
AP=$!
T_PIDS+=("$AP")
sleep 0.1
# fake MODE CMD...: A runs the CLI against the fake; sets out, err, rc.
fake() {
    echo "$1" > "$FAKE/mode"; shift
    out=$(runuser -u "$UA" -- "$CAIRN" --config "$T_TMP/fake.xml" "$@" 2>"$T_TMP/err"); rc=$?
    err=$(cat "$T_TMP/err")
}
GIDA=$(id -g "$UA")
fake ok checkpoint "$AP" --dir "$WA/f1"
t_check "fake: A's checkpoint (rc=$rc $err)" [ "$rc" -eq 0 ]
# (and the description's limit for unlinked files: the default here)
t_check "fake: the helper is told who asked ($(cat "$FAKE/args"))" \
    [ "$(cat "$FAKE/args")" = "--pid $AP --out $WA/f1/image.ghost --as $UIDA:$GIDA --ghost-file-max 1048576" ]
t_check "fake: ghostd made no directory of A's" [ ! -e "$WA/f1" ]
fake ok restart "$WA/f1"
t_check "fake: A's restart: the helper is told who asked ($(cat "$FAKE/args"))" \
    [ "$(cat "$FAKE/args")" = "--image $WA/f1/image.ghost --as $UIDA:$GIDA" ]
install -d -o "$UA" -m 0700 "$WA/f2"
fake crash checkpoint "$AP" --dir "$WA/f2"
t_check "fake crash: refused (rc=$rc)" [ "$rc" -eq 1 ]
t_check "fake crash: its leftover in A's directory removed" [ ! -e "$WA/f2/image.ghost.part" ]
mkdir -p "$T_TMP/roots"
echo precious > "$T_TMP/roots/image.ghost.part"
ln -s "$T_TMP/roots" "$WA/link"
fake crash-quiet checkpoint "$AP" --dir "$WA/link"
t_check "fake crash through A's link: refused (rc=$rc)" [ "$rc" -eq 1 ]
t_check "fake crash through A's link: root's file of that name kept" \
    grep -qx precious "$T_TMP/roots/image.ghost.part"
fake ok checkpoint "$AP"
t_json_check "fake: A's default directory is theirs in the spool" "$out" \
    ".dir | startswith(\"$T_TMP/run/ufake/1/ghost/uid-$UIDA/$AP-\")"
t_stop_services

# ---- the real engine ------------------------------------------------------

port=$(t_free_port); gport=$(t_free_port)
t_description_ghostd "$T_TMP/c.xml" users "$port" "$gport"
t_start_service ghostd "$GHOSTD" "$T_TMP/c.xml" 1 "$T_TMP/ghostd.log" || exit 1
GHOSTD_PID=$T_LAST_PID
RUNDIR="$T_TMP/run/users/1"
SPOOL="$RUNDIR/ghost"

# as USER CMD...: the real CLI as USER, with the description named; sets
# out, err, rc.
as() {
    local u=$1; shift
    out=$(runuser -u "$u" -- "$CAIRN" --config "$T_TMP/c.xml" "$@" 2>"$T_TMP/err"); rc=$?
    err=$(cat "$T_TMP/err")
}
# as_root CMD...: the same as root.
as_root() {
    out=$("$CAIRN" --config "$T_TMP/c.xml" "$@" 2>"$T_TMP/err"); rc=$?
    err=$(cat "$T_TMP/err")
}
# t_ok_run WHAT: the last command succeeded.
t_ok_run() { t_check "$1 (rc=$rc $err)" [ "$rc" -eq 0 ]; }
# t_denied WHAT [TEXT]: the last command was refused: exit 1,
# permission-denied, the message holding TEXT.
t_denied() {
    t_check "$1: exit 1 (rc=$rc)" [ "$rc" -eq 1 ]
    t_json_check "$1: permission-denied ($err)" "$err" '.error.code == "permission-denied"'
    [ $# -lt 2 ] || t_json_check "$1: says \"$2\"" "$err" ".error.message | contains(\"$2\")"
}

# untouched PID: runs or sleeps, not stopped, not traced.
untouched() {
    case $(t_proc_state "$1") in R|S) ;; *) return 1 ;; esac
    grep -q '^TracerPid:[[:space:]]*0$' "/proc/$1/status"
}
# uid_of PID: its real uid.
uid_of() { sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }

# start_case USER MODE RESULT: ghost-case MODE as USER (setpriv: the four
# uids and gids theirs, their groups), in its own session, its cwd and
# workdir USER's directory, stdout appended to RESULT (a file of USER's:
# a restore reopens it with their rights). Root for USER "root". Waits for
# "ready"; sets CASE_PID.
start_case() {
    local u=$1 mode=$2 result=$3 work i
    local wrap=(setpriv --reuid "$u" --regid "$u" --init-groups)
    case $u in "$UA") work=$WA ;; "$UB") work=$WB ;; *) work=$T_TMP; wrap=() ;; esac
    [ -e "$result" ] || install -o "$u" -m 0600 /dev/null "$result"
    (cd "$work" && exec setsid "${wrap[@]}" "$CASE" "$mode" "$work" >>"$result" 2>&1) &
    CASE_PID=$!
    T_PIDS+=("$CASE_PID")
    for i in $(seq 1 100); do
        grep -q "^ready $CASE_PID" "$result" && return 0
        sleep 0.05
    done
    echo "ghost-case $mode as $u did not get ready:" >&2; cat "$result" >&2
    return 1
}

# ---- A on A's own processes ----------------------------------------------

# user_round MODE [DIR]: A starts MODE, checkpoints it (into DIR, else the
# spool), restarts it, and the restored process runs as A and passes.
user_round() {
    local mode=$1 dir=${2:-} result="$WA/result-$1" pid img dir_arg=()
    start_case "$UA" "$mode" "$result" || { t_fail "A $mode: start"; return; }
    pid=$CASE_PID
    [ -n "$dir" ] && dir_arg=(--dir "$dir")
    as "$UA" checkpoint "$pid" "${dir_arg[@]}"
    t_ok_run "A $mode: A checkpoints their process"
    [ "$rc" -eq 0 ] || { kill -9 "$pid"; return; }
    img=$(jq -r .dir <<<"$out")
    t_check "A $mode: the image is A's ($(stat -c '%U %a' "$img/image.ghost"))" \
        [ "$(stat -c %u "$img/image.ghost")" = "$UIDA" ]
    t_check "A $mode: its directory is A's, 0700 ($(stat -c '%U %a' "$img"))" \
        [ "$(stat -c '%u %a' "$img")" = "$UIDA 700" ]
    t_check "A $mode: the process is gone after the checkpoint" t_reap "$pid"
    as "$UA" restart "$img"
    t_ok_run "A $mode: A restarts it"
    [ "$rc" -eq 0 ] || return
    t_json_check "A $mode: same pid" "$out" ".pid == $pid and .same_pid == true"
    T_PIDS+=("$pid")
    t_check "A $mode: restored as A (uid $(uid_of "$pid"))" [ "$(uid_of "$pid")" = "$UIDA" ]
    kill -USR2 "$pid"
    t_check "A $mode: PASS after the restore" t_verdict "$result" "$mode"
    LAST_IMG=$img
}

user_round memory "$WA/img-memory"
user_round files "$WA/img-files"
user_round process "$WA/img-process"
user_round threads "$WA/img-threads"
user_round seccomp "$WA/img-seccomp"
user_round anonfds "$WA/img-anonfds"
user_round creds "$WA/img-creds"
user_round fanotify "$WA/img-fanotify"
# A fanotify group only root may make (its events carry open fds of the
# files), held by a process that became A afterwards: A's image, and A's
# restore must not make root's group -- the restorer keeps CAP_SYS_ADMIN
# (seccomp) but turns it off while it makes a user's fanotify group.
R="$WA/result-fanotify-dropped"
install -o "$UA" -m 0600 /dev/null "$R"
(cd "$WA" && GHOST_CASE_BECOME="$UIDA:$GIDA" exec setsid "$CASE" fanotify-dropped "$WA" \
    >>"$R" 2>&1) &
P=$!
T_PIDS+=("$P")
for i in $(seq 1 100); do grep -q "^ready $P" "$R" && break; sleep 0.05; done
as "$UA" checkpoint "$P" --dir "$WA/img-fanotify-dropped"
t_ok_run "A checkpoints their process holding a group root made"
if [ "$rc" -eq 0 ]; then
    t_reap "$P"
    as "$UA" restart "$WA/img-fanotify-dropped"
    refused=no
    [ "$rc" -ne 0 ] && grep -q 'fanotify_init.*Operation not permitted' <<<"$err" && refused=yes
    t_check "A's restart does not make root's fanotify group (rc=$rc $err)" [ "$refused" = yes ]
    t_check "nothing of it runs" bash -c "! kill -0 $P 2>/dev/null"
fi
# In place: A writes over their last image.
R="$WA/result-inplace"
if start_case "$UA" memory "$R"; then
    P=$CASE_PID
    as "$UA" checkpoint "$P" --dir "$WA/img-inplace" --leave-running
    t_ok_run "A in place: first checkpoint"
    INO=$(stat -c %i "$WA/img-inplace/image.ghost" 2>/dev/null)
    as "$UA" checkpoint "$P" --dir "$WA/img-inplace" --in-place
    t_ok_run "A in place: written over"
    t_check "A in place: the same file" [ "$(stat -c %i "$WA/img-inplace/image.ghost")" = "$INO" ]
    t_reap "$P"
    as "$UA" restart "$WA/img-inplace"
    t_ok_run "A in place: restart"
    T_PIDS+=("$P")
    kill -USR2 "$P"
    t_check "A in place: PASS" t_verdict "$R" memory
else
    t_fail "A in place: start"
fi
# ghostd's spool by default: A's own directory there.
user_round signals
t_check "spool: A's checkpoint under $SPOOL/uid-$UIDA" \
    bash -c "[[ '$LAST_IMG' == '$SPOOL/uid-$UIDA/'* ]]"
t_check "spool: A's directory there is A's, 0700" \
    [ "$(stat -c '%u %a' "$SPOOL/uid-$UIDA")" = "$UIDA 700" ]
t_check "spool: others pass through, list nothing (mode $(stat -c %a "$SPOOL"))" \
    [ "$(stat -c '%u %a' "$SPOOL")" = "0 711" ]
runuser -u "$UB" -- cat "$LAST_IMG/image.ghost" >/dev/null 2>&1
t_check "spool: B cannot read A's image" [ $? -ne 0 ]
as "$UB" restart "$LAST_IMG"
t_denied "spool: B restarting A's checkpoint"

# A's --check of their own process, and their own image.
R="$WA/result-check"
if start_case "$UA" pause "$R"; then
    P=$CASE_PID
    as "$UA" checkpoint "$P" --check
    t_ok_run "A: checkpoint --check of their process"
    as "$UA" checkpoint "$P" --dir "$WA/img-check" --leave-running
    t_ok_run "A: checkpoint --leave-running"
    t_check "A: still running, untraced" untouched "$P"
    as "$UA" restart "$WA/img-check" --check
    t_ok_run "A: restart --check of their image"
    t_json_check "A: restorable, pid taken" "$out" '.restorable == true and .pids_free == false'
    # Root restarts A's image (A's file, A's processes): it runs as A.
    as_root restart "$WA/img-check" --pid new
    t_ok_run "root restarts A's image"
    Q=$(jq -r .pid <<<"$out" 2>/dev/null)
    if [ -n "$Q" ] && [ "$Q" != null ]; then
        T_PIDS+=("$Q")
        t_check "root's restart of A's image runs as A" [ "$(uid_of "$Q")" = "$UIDA" ]
        kill -USR2 "$Q"
    fi
    # Root checkpoints and restarts A's process.
    as_root checkpoint "$P" --dir "$T_TMP/root-of-a"
    t_ok_run "root checkpoints A's process"
    t_reap "$P"
    as_root restart "$T_TMP/root-of-a"
    t_ok_run "root restarts it"
    T_PIDS+=("$P")
    t_check "root's restart: the process is A's" [ "$(uid_of "$P")" = "$UIDA" ]
    kill -USR2 "$P"
    t_check "root's checkpoint and restart of A's process: PASS" t_verdict "$R" pause
else
    t_fail "A check: start"
fi

# ---- A refused on what is not theirs --------------------------------------

sleep 1000 & ROOTP=$!
T_PIDS+=("$ROOTP")
RB="$WB/result-b"
start_case "$UB" pause "$RB" || t_fail "B: start"
BP=$CASE_PID
for target in "root:$ROOTP:0" "B:$BP:$UIDB"; do
    IFS=: read -r who pid owner <<<"$target"
    as "$UA" checkpoint "$pid" --dir "$WA/not-$who"
    t_denied "A checkpointing $who's process" "is uid $owner's"
    t_check "A checkpointing $who's process: nothing made" [ ! -e "$WA/not-$who" ]
    as "$UA" checkpoint "$pid"
    t_denied "A checkpointing $who's process into the spool"
    as "$UA" checkpoint "$pid" --check
    t_denied "A: checkpoint --check of $who's process"
    t_check "$who's process untouched" untouched "$pid"
done

# The whole tree must be A's: a setuid child (euid 0) under A's shell.
cp /bin/sleep "$T_TMP/suid-sleep"
chmod 4755 "$T_TMP/suid-sleep"
(cd "$WA" && exec setsid setpriv --reuid "$UA" --regid "$UA" --init-groups \
    bash -c "\"$T_TMP/suid-sleep\" 1000 & echo \$! > \"$WA/child\"; wait") &
TREE=$!
T_PIDS+=("$TREE")
for i in $(seq 1 100); do [ -s "$WA/child" ] && break; sleep 0.05; done
CHILD=$(cat "$WA/child" 2>/dev/null)
T_PIDS+=("$CHILD")
sleep 0.1
as "$UA" checkpoint "$TREE" --dir "$WA/img-tree"
t_denied "A checkpointing a tree of theirs with a setuid child" "process $CHILD runs as uid $UIDA/0/0/0"
t_check "the tree is untouched" untouched "$TREE"
t_check "its setuid child is untouched" untouched "$CHILD"

# A process of A's that is not dumpable (it said so: PR_SET_DUMPABLE 0).
R="$WA/result-undumpable"
if start_case "$UA" undumpable "$R"; then
    as "$UA" checkpoint "$CASE_PID" --dir "$WA/img-undumpable"
    t_denied "A checkpointing their undumpable process" "not dumpable"
    t_check "the undumpable process is untouched" untouched "$CASE_PID"
    as_root checkpoint "$CASE_PID" --dir "$T_TMP/img-undumpable" --leave-running
    t_ok_run "root checkpoints it"
else
    t_fail "undumpable: start"
fi

# Images that are not A's. Root's: root checkpoints a root process; the
# image is made readable to all, so only the rule refuses it.
R="$T_TMP/result-root"
if start_case root pause "$R"; then
    RP=$CASE_PID
    as_root checkpoint "$RP" --dir "$T_TMP/img-root" --leave-running
    t_ok_run "root checkpoints a root process"
    chmod 0755 "$T_TMP/img-root"; chmod 0644 "$T_TMP/img-root/image.ghost"
    as "$UA" restart "$T_TMP/img-root" --pid new
    t_denied "A restarting root's image" "belongs to uid 0"
    as "$UA" restart "$T_TMP/img-root" --check
    t_denied "A: restart --check of root's image" "belongs to uid 0"
    # The same bytes in a file of A's: a crafted image holding uid 0.
    install -d -o "$UA" -m 0700 "$WA/crafted"
    install -o "$UA" -m 0600 "$T_TMP/img-root/image.ghost" "$WA/crafted/image.ghost"
    as "$UA" restart "$WA/crafted" --pid new
    t_denied "A restarting a crafted image of uid 0 processes" "is uid $UIDA's, and process $RP of the image runs as uid 0/0/0/0"
    as "$UA" restart "$WA/crafted" --check
    t_denied "A: restart --check of the crafted image" "runs as uid 0/0/0/0"
    as_root restart "$WA/crafted" --pid new
    t_denied "root restarting A's crafted image" "runs as uid 0/0/0/0"
else
    t_fail "root image: start"
fi
# B's image, readable to all.
as "$UB" checkpoint "$BP" --dir "$WB/img-b" --leave-running
t_ok_run "B checkpoints their process"
chmod 0711 "$WB"; chmod 0755 "$WB/img-b"; chmod 0644 "$WB/img-b/image.ghost"
as "$UA" restart "$WB/img-b" --pid new
t_denied "A restarting B's image" "belongs to uid $UIDB"
# A's own image, but one that others may write.
cp -a "$WA/img-check" "$WA/img-writable"
chmod 0666 "$WA/img-writable/image.ghost"
as "$UA" restart "$WA/img-writable" --pid new
t_denied "A restarting their image that others may write" "writable by others"
# A's image in a directory A cannot read (root's, 0700).
as "$UA" restart "$T_TMP/root-of-a"
t_denied "A restarting an image in a directory they cannot enter" "as uid $UIDA: Permission denied"

# ---- the CLI as a user: --run-base; tcp in mode none ----------------------

cp "$T_TMP/c.xml" "$T_TMP/run/users/cluster.xml"
R="$WA/result-runbase"
if start_case "$UA" pause "$R"; then
    out=$(runuser -u "$UA" -- "$CAIRN" --run-base "$T_TMP/run" --cluster users \
          checkpoint "$CASE_PID" --check 2>"$T_TMP/err"); rc=$?; err=$(cat "$T_TMP/err")
    t_ok_run "A: --run-base and --cluster find the cluster"
    kill -9 "$CASE_PID"
fi
for who in "$UA" root; do
    if [ "$who" = root ]; then
        out=$("$CAIRN" --endpoint "tcp://127.0.0.1:$gport" checkpoint "$BP" --check 2>"$T_TMP/err")
    else
        out=$(runuser -u "$who" -- "$CAIRN" --endpoint "tcp://127.0.0.1:$gport" \
              checkpoint "$BP" --check 2>"$T_TMP/err")
    fi
    rc=$?; err=$(cat "$T_TMP/err")
    t_denied "tcp in mode none ($who)" 'mode=\"curve\"'
done
t_check "B's process untouched through it all" untouched "$BP"

# ---- from another node, over CURVE -----------------------------------------

# A member node's request vouches for its user (Header.user, believed only
# over CURVE from a member's key); ghostd judges that user as a local one.
# Node 2 runs nothing: ghost-remote holds its key, as its daemon would.
REMOTE="$CAIRN_BUILD/tests/ghost/ghost-remote"
mkdir -p "$T_TMP/keys"
# xml TEXT: TEXT escaped for an attribute (Z85 keys hold & < > ").
xml() { sed -e 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g; s/"/\&quot;/g' <<<"$1"; }
K1=$(xml "$("$REMOTE" keygen "$T_TMP/keys/n1.key")")
K2=$(xml "$("$REMOTE" keygen "$T_TMP/keys/n2.key")")
rport=$(t_free_port); rgport=$(t_free_port)
cat > "$T_TMP/remote.xml" <<XML
<cluster name="remote" run-base="$T_TMP/run">
  <services>
    <service name="clusterd" port="$rport" pub-port="$((rport + 1))"/>
    <service name="ghostd" port="$rgport"/>
  </services>
  <appliances><appliance name="compute"><use service="clusterd"/><use service="ghostd"/></appliance></appliances>
  <nodes>
    <node id="1" name="n1" address="127.0.0.1" appliance="compute"/>
    <node id="2" name="n2" address="127.0.0.2" appliance="compute"/>
  </nodes>
  <security mode="curve">
    <key node="1" public="$K1" secret="keys/n1.key"/>
    <key node="2" public="$K2" secret="keys/n2.key"/>
  </security>
</cluster>
XML
t_start_service ghostd "$GHOSTD" "$T_TMP/remote.xml" 1 "$T_TMP/ghostd-remote.log" || exit 1
# remote USER VERB ARGS...: node 2 asks node 1's ghostd for USER; sets out, rc.
remote() {
    out=$("$REMOTE" "$T_TMP/remote.xml" 1 "$T_TMP/keys/n2.key" "$@" 2>&1); rc=$?
}
# refused_like PATTERN: the last remote request failed (exit 1) with output
# matching the glob PATTERN.
refused_like() { [ "$rc" -eq 1 ] && [[ "$out" == $1 ]]; }
R="$WA/result-remote"
if start_case "$UA" signals "$R"; then
    P=$CASE_PID
    remote "$UIDA:$(id -g "$UA")" checkpoint "$P" "$WA/img-remote"
    t_check "node 2 for A: A's process checkpointed ($out)" [ "$rc" -eq 0 ]
    t_check "node 2 for A: the image is A's" \
        [ "$(stat -c %u "$WA/img-remote/image.ghost" 2>/dev/null)" = "$UIDA" ]
    remote "$UIDA:$(id -g "$UA")" restart "$WA/img-remote"
    t_check "node 2 for A: A's image restarted ($out)" [ "$rc" -eq 0 ]
    Q=$(sed -n 's/^ok pid=\([0-9]*\).*/\1/p' <<<"$out")
    if [ -n "$Q" ]; then
        T_PIDS+=("$Q")
        t_check "node 2 for A: the restored process is A's" [ "$(uid_of "$Q")" = "$UIDA" ]
    fi
    remote "$UIDA:$(id -g "$UA")" checkpoint "$ROOTP" - check
    t_check "node 2 for A: root's process refused ($out)" \
        refused_like "error permission-denied checkpoint: process $ROOTP is uid 0's*"
    remote "$UIDA:$(id -g "$UA")" restart "$T_TMP/img-root" check
    t_check "node 2 for A: root's image refused ($out)" \
        refused_like "error permission-denied *belongs to uid 0,*"
    remote root checkpoint "$P" - check
    t_check "node 2 for root: A's process may be checkpointed ($out)" [ "$rc" -eq 0 ]
    kill -USR2 "$P"
    t_check "node 2: A's process, left running, PASS" t_verdict "$R" signals
else
    t_fail "remote: start"
fi

t_check "no helper left under ghostd" [ -z "$(pgrep -P "$GHOSTD_PID")" ]
t_done
