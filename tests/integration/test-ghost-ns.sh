#!/bin/bash
# test-ghost-ns.sh - jobs through the ghost engine: a tree in a pid
# namespace and a mount namespace of its own (its pid 1 a reaper, a proc of
# its own on /proc) checkpointed and restored with every pid inside as it
# was (docs/ghost.md, "Jobs: a pid namespace each").
#
# The job is tests/ghost/ghost-job's: a reaper as pid 1, a counter, a
# process of four threads and `sh -c 'produce | consume'`, each checking
# at every tick that getpid(), getppid(), /proc/self and its children are
# what they were, and logging its progress with the inode of the pid
# namespace it runs in. The engine's helpers are run directly:
#
#  - dumped with --leave-running and restored while the original runs:
#    two jobs with the same pids inside on one node;
#  - the original killed, the copy dumped (a restored job is a job) and
#    restored twice side by side: both have the pids of the first, their
#    /proc lists them, each counts on from where the image stopped, the
#    pipeline loses and repeats nothing, the threads run;
#  - --check plans a job image (pids free); --new-pid is refused for one;
#  - the same for a job as ghostd starts it: ghost-init's reaper as pid 1,
#    `ghost-job body` (the same members) as its program;
#  - refusals, the job left running: a nested pid namespace, a member in a
#    mount namespace of its own, a mount with files only the job has, a job
#    whose /proc is the node's, one without a mount namespace, a member of
#    a job named instead of its pid 1;
#  - a process outside any job still dumps and restores as before (job
#    false, host_pid its pid).
# Needs root (namespaces, ptrace, clone3 set_tid): skips with 77 otherwise.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
ENGINE="$CAIRN_BUILD/services/ghostd/engine"
DUMP="$ENGINE/ghost-dump"
RESTORE="$ENGINE/ghost-restore"
JOB="$CAIRN_BUILD/tests/ghost/ghost-job"
W="$T_TMP/w"
mkdir -p "$W"

# launch DIR [VARIANT]: a job logging into DIR/log; H its pid 1 on the node.
launch() {
    local i
    mkdir -p "$1"
    "$JOB" launch "$1" "${2:-normal}" >"$1/launch.out" 2>&1 &
    T_PIDS+=("$!")
    H=
    for ((i = 0; i < 200; i++)); do
        H=$(awk '$1 == "job" { print $2 }' "$1/launch.out")
        [ -n "$H" ] && break
        kill -0 "$!" 2>/dev/null || break
        sleep 0.02
    done
    if [ -z "$H" ]; then
        wait "$!"
        [ $? -eq 77 ] && { echo "SKIP: $(cat "$1/launch.out")"; exit 77; }
        t_fail "launch $1: $(cat "$1/launch.out")"
        t_done
    fi
    T_PIDS+=("$H")
}

# lines LOG KIND [FROM]: the lines of KIND in LOG after line FROM.
lines() { tail -n +"$((${3:-0} + 1))" "$1" | awk -v k="$2" '$1 == k'; }

# wait_count LOG KIND N [FROM]: until N lines of KIND follow line FROM.
wait_count() {
    local i
    for ((i = 0; i < 500; i++)); do
        [ "$(lines "$1" "$2" "${4:-0}" | wc -l)" -ge "$3" ] && return 0
        sleep 0.02
    done
    return 1
}

# last LOG KIND NS: the last number KIND logged in pid namespace NS.
last() { awk -v k="$2" -v ns="$3" '$1 == k && $2 == ns { n = $4 } END { print n + 0 }' "$1"; }

# groups LOG KIND FROM: per pid namespace after line FROM: "NS FIRST LAST
# GAPS" (GAPS: steps that were not +1).
groups() {
    lines "$1" "$2" "$3" | awk '{
        if ($2 in lastn) { if ($4 != lastn[$2] + 1) gaps[$2]++ } else first[$2] = $4
        lastn[$2] = $4
    } END { for (ns in first) print ns, first[ns], lastn[ns], gaps[ns] + 0 }'
}

# tree_of PID: PID and its descendants.
tree_of() {
    local c
    echo "$1"
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree_of "$c"; done
}

# inside PID: the pids (and tids) inside of PID's tree, sorted, one line.
inside() {
    local p
    for p in $(tree_of "$1"); do
        awk '$1 == "NSpid:" { print $NF }' /proc/"$p"/task/*/status 2>/dev/null
    done | sort -n | tr '\n' ' '
}

# procs_seen PID: what the job's own /proc lists, sorted, one line.
procs_seen() { ls /proc/"$1"/root/proc | grep -E '^[0-9]+$' | sort -n | tr '\n' ' '; }

# ns_of PID: the inode of PID's pid namespace.
ns_of() { stat -L -c %i /proc/"$1"/ns/pid; }

# no_fail LOG WHAT: the job's members found nothing wrong.
no_fail() {
    t_check "$2: no member found its pids changed ($(grep -m3 FAIL "$1" | tr '\n' '|'))" \
        bash -c "! grep -q FAIL '$1'"
}

# side_by_side LOG IMAGE N P INSIDE PROCS PARENT: IMAGE (its job killed
# at the dump, after its counter logged N and its consumer P) restored
# twice: both copies have the pids and tids INSIDE, their /proc lists PROCS,
# each counts on from N + 1 and reads on from P + 1 with no gap, its
# threads and PARENT (reaper, body) run, no member finds a pid changed;
# then both are killed.
side_by_side() {
    local log=$1 img=$2 n=$3 p=$4 want=$5 procs=$6 parent=$7 mark outb outc rcb rcc
    local b c bns cns ns first gaps ran
    mark=$(wc -l <"$log")
    outb=$("$RESTORE" --image "$img"); rcb=$?
    outc=$("$RESTORE" --image "$img"); rcc=$?
    t_check "two restores of one job image side by side: exit 0 and 0 ($outb / $outc)" \
        [ "$rcb" -eq 0 ] && [ "$rcc" -eq 0 ]
    b=$(jq -r .host_pid <<<"$outb"); c=$(jq -r .host_pid <<<"$outc")
    T_PIDS+=("$b" "$c")
    t_json_check "copy B: every member under its pid inside" "$outb" \
        ".job == true and .pid == 1 and ([.members[] | .pid == .original_pid] | all)"
    t_check "copies B and C: the pids and tids inside of the first job ($(inside "$b") / $(inside "$c"))" \
        [ "$(inside "$b")" = "$want" ] && [ "$(inside "$c")" = "$want" ]
    t_check "copies B and C: each /proc lists those pids" \
        [ "$(procs_seen "$b")" = "$procs" ] && [ "$(procs_seen "$c")" = "$procs" ]
    bns=$(ns_of "$b"); cns=$(ns_of "$c")
    t_check "copies B and C: two pid namespaces" [ "$bns" != "$cns" ]
    t_check "both count" wait_count "$log" count 60 "$mark"
    wait_count "$log" pipe 60 "$mark"
    wait_count "$log" threads 20 "$mark"
    for ns in "$bns" "$cns"; do
        read -r _ first _ gaps < <(groups "$log" count "$mark" | awk -v ns="$ns" '$1 == ns')
        t_check "copy in $ns: the count continues at $((n + 1)) ($first), no gap ($gaps)" \
            [ "${first:-0}" -eq "$((n + 1))" ] && [ "${gaps:-1}" -eq 0 ]
        read -r _ first _ gaps < <(groups "$log" pipe "$mark" | awk -v ns="$ns" '$1 == ns')
        t_check "copy in $ns: the pipeline flows on at $((p + 1)) ($first), nothing lost ($gaps)" \
            [ "${first:-0}" -eq "$((p + 1))" ] && [ "${gaps:-1}" -eq 0 ]
        ran=$(lines "$log" threads "$mark" |
            awk -v ns="$ns" '$2 == ns { if (f == "") f = $5; l = $5 } END { print l - f }')
        t_check "copy in $ns: its threads run (each worker counted $ran more)" [ "${ran:-0}" -gt 3 ]
        t_check "copy in $ns: its $parent runs" [ -n "$(lines "$log" "$parent" "$mark" |
            awk -v ns="$ns" '$2 == ns')" ]
    done
    no_fail "$log" "copies B and C"
    kill -9 "$b" "$c"
}

# ---- a job, dumped leaving it running, restored beside itself ------------

J="$W/job"
launch "$J"
ORIG=$H
t_check "job launched: counting" wait_count "$J/log" count 20
wait_count "$J/log" pipe 20 && wait_count "$J/log" threads 5
BEFORE=$(inside "$ORIG")
t_check "job: pid 1 inside ($BEFORE)" [ "${BEFORE%% *}" = 1 ]
PROCS=$(for p in $(tree_of "$ORIG"); do awk '$1 == "NSpid:" { print $NF }' /proc/"$p"/status; done |
    sort -n | tr '\n' ' ')
t_check "job: its /proc lists its pids ($PROCS)" [ "$(procs_seen "$ORIG")" = "$PROCS" ]
ONS=$(ns_of "$ORIG")
L0=$(last "$J/log" count "$ONS")
mkdir -p "$W/img1"
out=$("$DUMP" --pid "$ORIG" --out "$W/img1/image.ghost" --leave-running); rc=$?
L1=$(last "$J/log" count "$ONS")
t_check "dump of a job, left running: exit 0 ($out)" [ "$rc" -eq 0 ]
t_json_check "dump: a job of 6 processes and 9 threads" "$out" \
    ".job == true and .pid == $ORIG and .processes == 6 and .threads == 9 and .left_running == true"

MARK=$(wc -l <"$J/log")
out=$("$RESTORE" --image "$W/img1/image.ghost"); rc=$?
t_check "restore beside the original: exit 0 ($out)" [ "$rc" -eq 0 ]
t_json_check "restore: a job, pid 1 inside as before, another pid on the node" "$out" \
    ".job == true and .pid == 1 and .original_pid == 1 and .same_pid == true
     and .host_pid > 0 and .host_pid != $ORIG and .processes == 6 and .threads == 9"
t_json_check "restore: every member under its pid inside, on a new node pid" "$out" \
    "[.members[] | .pid == .original_pid and .host_pid != .pid] | all"
A=$(jq -r .host_pid <<<"$out")
T_PIDS+=("$A")
ANS=$(ns_of "$A")
t_check "copy A: a pid namespace of its own" [ "$ANS" != "$ONS" ]
t_check "copy A: the same pids and tids inside as the original, both running ($(inside "$A"))" \
    [ "$(inside "$A")" = "$BEFORE" ] && [ "$(inside "$ORIG")" = "$BEFORE" ]
t_check "copy A: its /proc lists its own pids" [ "$(procs_seen "$A")" = "$PROCS" ]
wait_count "$J/log" count 40 "$MARK"
read -r _ first _ gaps < <(groups "$J/log" count "$MARK" | awk -v ns="$ANS" '$1 == ns')
t_check "copy A counts on from the image ($L0 < $first <= $L1 + 1), no gap ($gaps)" \
    [ "${first:-0}" -gt "$L0" ] && [ "${first:-0}" -le "$((L1 + 1))" ] && [ "${gaps:-1}" -eq 0 ]
read -r _ _ _ gaps < <(groups "$J/log" count 0 | awk -v ns="$ONS" '$1 == ns')
t_check "the original counted on untouched (gaps: ${gaps:-?})" [ "${gaps:-1}" -eq 0 ]
no_fail "$J/log" "original and copy A"

# ---- the copy dumped (killed) and restored twice side by side -----------

kill -9 "$ORIG"
mkdir -p "$W/img2"
out=$("$DUMP" --pid "$A" --out "$W/img2/image.ghost"); rc=$?
t_check "dump of a restored job: exit 0 ($out)" [ "$rc" -eq 0 ]
t_json_check "dump of the copy: a job, killed" "$out" ".job == true and .left_running == false"
for ((i = 0; i < 100; i++)); do [ "$(t_proc_state "$A")" = gone ] && break; sleep 0.02; done
t_check "copy A is gone after its dump" [ "$(t_proc_state "$A")" = gone ]
N2=$(last "$J/log" count "$ANS")
P2=$(last "$J/log" pipe "$ANS")

out=$("$RESTORE" --image "$W/img2/image.ghost" --check); rc=$?
t_check "restore --check of a job image: exit 0 ($out)" [ "$rc" -eq 0 ]
t_json_check "--check: a job, its pids free" "$out" \
    ".check == true and .job == true and .pids_free == true and .original_pid == 1"
out=$("$RESTORE" --image "$W/img2/image.ghost" --new-pid); rc=$?
t_check "--new-pid on a job image: exit 1 ($out)" [ "$rc" -eq 1 ]
t_json_check "--new-pid on a job image: says it does not apply" "$out" \
    '.error.code == "invalid-argument" and (.error.message | contains("--new-pid does not apply"))'

side_by_side "$J/log" "$W/img2/image.ghost" "$N2" "$P2" "$BEFORE" "$PROCS" reaper

# ---- a job as ghostd runs it: ghost-init's reaper, the program pid 2 ------

GI="$W/init"
mkdir -p "$GI/img"
# Without LeakSanitizer: built with ASan, the launcher's exit check clones
# its tracer after unshare(CLONE_NEWPID), into the job's namespace, from
# where it cannot see the launcher's threads, and the launcher spins there.
out=$(ASAN_OPTIONS=detect_leaks=0 "$ENGINE/ghost-init" --job "$GI" --gpid 1.1 -- \
    "$JOB" body "$GI" </dev/null); rc=$?
t_check "ghost-init starts a job ($out)" [ "$rc" -eq 0 ]
G=$(jq -r .host_pid <<<"$out")
T_PIDS+=("$G")
t_check "ghost-init's job: counting" wait_count "$GI/log" count 20
wait_count "$GI/log" pipe 20 && wait_count "$GI/log" threads 5
GBEFORE=$(inside "$G")
GPROCS=$(for p in $(tree_of "$G"); do awk '$1 == "NSpid:" { print $NF }' /proc/"$p"/status; done |
    sort -n | tr '\n' ' ')
out=$("$DUMP" --pid "$G" --out "$GI/img/image.ghost"); rc=$?
t_check "dump of ghost-init's job: exit 0 ($out)" [ "$rc" -eq 0 ]
t_json_check "dump: a job of 7 processes (the reaper, the program and its 5)" "$out" \
    ".job == true and .processes == 7 and .left_running == false"
for ((i = 0; i < 100; i++)); do [ "$(t_proc_state "$G")" = gone ] && break; sleep 0.02; done
GNS=$(awk '$1 == "count" { ns = $2 } END { print ns }' "$GI/log")
side_by_side "$GI/log" "$GI/img/image.ghost" "$(last "$GI/log" count "$GNS")" \
    "$(last "$GI/log" pipe "$GNS")" "$GBEFORE" "$GPROCS" body

# ---- refusals: the job runs on untouched ---------------------------------

# refused VARIANT PID-OF TEXT: dumping PID-OF ("root" or "member") of a job
# of VARIANT exits 2 with TEXT, writes nothing, and the job counts on.
refused() {
    local d="$W/$1-$2" pid out rc n
    launch "$d" "$1"
    wait_count "$d/log" count 5
    pid=$H
    [ "$2" = member ] && pid=$(cut -d' ' -f1 /proc/"$H"/task/"$H"/children)
    out=$("$DUMP" --pid "$pid" --out "$d/image.ghost"); rc=$?
    t_check "$1 ($2): refused, exit 2 ($out)" [ "$rc" -eq 2 ]
    t_json_check "$1 ($2): says why" "$out" \
        ".error.code == \"unsupported\" and (.error.message | contains(\"$3\"))"
    t_check "$1 ($2): no image left" test ! -e "$d/image.ghost" -a ! -e "$d/image.ghost.part"
    n=$(lines "$d/log" count | wc -l)
    t_check "$1 ($2): the job runs on" wait_count "$d/log" count "$((n + 5))"
    t_check "$1 ($2): untraced" [ "$(awk '$1 == "TracerPid:" { print $2 }' /proc/"$pid"/status)" = 0 ]
    kill -9 "$H"
}
refused nested root "nested pid namespaces are not supported"
refused mountns root "is in another mount namespace than the job's pid 1"
refused extramount root "is mounted in its mount namespace, with files, but not on this node"
refused hostproc root "the proc on its /proc is another pid namespace's"
refused noproc root "shares this node's mount namespace"
refused normal member "not its pid 1: a job is checkpointed whole"

# ---- outside any job, as before -------------------------------------------

sleep 1000 </dev/null >/dev/null 2>&1 &
S=$!
T_PIDS+=("$S")
mkdir -p "$W/plain"
out=$("$DUMP" --pid "$S" --out "$W/plain/image.ghost") || kill -9 "$S"
t_json_check "a process outside any job: dumped, not a job ($out)" "$out" ".job == false"
wait "$S" 2>/dev/null
out=$("$RESTORE" --image "$W/plain/image.ghost")
t_json_check "and restored under its node pid ($out)" "$out" \
    ".job == false and .pid == $S and .host_pid == $S and .members[0].host_pid == $S"
kill -9 "$S" 2>/dev/null

t_done
