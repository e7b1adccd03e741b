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

MARK=$(wc -l <"$J/log")
outb=$("$RESTORE" --image "$W/img2/image.ghost"); rcb=$?
outc=$("$RESTORE" --image "$W/img2/image.ghost"); rcc=$?
t_check "two restores of one job image side by side: exit 0 and 0 ($outb / $outc)" \
    [ "$rcb" -eq 0 ] && [ "$rcc" -eq 0 ]
B=$(jq -r .host_pid <<<"$outb"); C=$(jq -r .host_pid <<<"$outc")
T_PIDS+=("$B" "$C")
t_check "copies B and C: the pids and tids inside of the first job ($(inside "$B") / $(inside "$C"))" \
    [ "$(inside "$B")" = "$BEFORE" ] && [ "$(inside "$C")" = "$BEFORE" ]
t_check "copies B and C: each /proc lists those pids" \
    [ "$(procs_seen "$B")" = "$PROCS" ] && [ "$(procs_seen "$C")" = "$PROCS" ]
BNS=$(ns_of "$B"); CNS=$(ns_of "$C")
t_check "copies B and C: two pid namespaces" [ "$BNS" != "$CNS" ]
t_check "both count" wait_count "$J/log" count 60 "$MARK"
wait_count "$J/log" pipe 60 "$MARK"
wait_count "$J/log" threads 20 "$MARK"
for ns in "$BNS" "$CNS"; do
    read -r _ first _ gaps < <(groups "$J/log" count "$MARK" | awk -v ns="$ns" '$1 == ns')
    t_check "copy in $ns: the count continues at $((N2 + 1)) ($first), no gap ($gaps)" \
        [ "${first:-0}" -eq "$((N2 + 1))" ] && [ "${gaps:-1}" -eq 0 ]
    read -r _ first _ gaps < <(groups "$J/log" pipe "$MARK" | awk -v ns="$ns" '$1 == ns')
    t_check "copy in $ns: the pipeline flows on at $((P2 + 1)) ($first), nothing lost ($gaps)" \
        [ "${first:-0}" -eq "$((P2 + 1))" ] && [ "${gaps:-1}" -eq 0 ]
    ran=$(lines "$J/log" threads "$MARK" |
        awk -v ns="$ns" '$2 == ns { if (f == "") f = $5; l = $5 } END { print l - f }')
    t_check "copy in $ns: its threads run (each worker counted $ran more)" [ "${ran:-0}" -gt 3 ]
    t_check "copy in $ns: its reaper runs" [ -n "$(lines "$J/log" reaper "$MARK" |
        awk -v ns="$ns" '$2 == ns && $3 == 1')" ]
done
no_fail "$J/log" "copies B and C"
kill -9 "$B" "$C"

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
    t_check "$1 ($2): no image left" [ ! -e "$d/image.ghost" ] && [ ! -e "$d/image.ghost.part" ]
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
