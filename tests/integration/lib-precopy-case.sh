# lib-precopy-case.sh - driving tests/ghost/precopy-case, the process that
# writes all the time and checks, after a restore, that its memory is what
# it was at the freeze: start it, ask its count, ask its verdict. Sourced
# by the pre-copy, post-copy and incremental checkpoint tests after lib.sh.

PC="$CAIRN_BUILD/tests/ghost/precopy-case"

# start_pc RESULT ARGS...: precopy-case ARGS in its own session, no fd but
# 0-2 (a pipe held by whoever started us would be refused), stdout
# appended to RESULT; waits for "ready". Sets PC_PID.
start_pc() {
    local result=$1 i; shift
    setsid bash -c 'for f in /proc/self/fd/*; do n=${f##*/};
                    [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$0" "$@"' \
        "$PC" "$@" </dev/null >>"$result" 2>&1 &
    PC_PID=$!
    T_PIDS+=("$PC_PID")
    for i in $(seq 1 200); do
        grep -q "^ready $PC_PID" "$result" && return 0
        sleep 0.05
    done
    echo "precopy-case did not get ready:" >&2; cat "$result" >&2
    return 1
}

# count_of PID RESULT: sends SIGUSR1, prints the count PID says it is at.
count_of() {
    local n before i
    before=$(grep -c "^at $1 " "$2")
    kill -USR1 "$1"
    for i in $(seq 1 100); do
        n=$(grep -c "^at $1 " "$2")
        [ "$n" -gt "$before" ] && { awk -v p="$1" '$1 == "at" && $2 == p { c = $3 } END { print c }' "$2"; return; }
        sleep 0.02
    done
    echo 0
}

# verdict WHAT PID RESULT [AFTER]: SIGUSR2, then PID must say PASS (with a
# count past AFTER) and never FAIL.
verdict() {
    local what=$1 pid=$2 result=$3 after=${4:-0} before i line
    before=$(grep -c "^PASS $pid " "$result")
    kill -USR2 "$pid"
    for i in $(seq 1 200); do
        [ "$(grep -c "^PASS $pid " "$result")" -gt "$before" ] && break
        grep -q "^FAIL $pid " "$result" && break
        sleep 0.05
    done
    line=$(grep -E "^(PASS|FAIL) $pid " "$result" | tail -1)
    t_check "$what: $line" [ "${line%% *}" = PASS ]
    t_check "$what: no FAIL" [ -z "$(grep "^FAIL $pid " "$result")" ]
    t_check "$what: counted on past $after (${line##* })" [ "${line##* }" -gt "$after" ]
}

# untracked PID: none of PID's mappings is registered with a userfaultfd.
untracked() {
    ! grep -q '^VmFlags:.* uw' "/proc/$1/smaps"
}

# reap_killed PID: waits until the pid a dump killed is free again.
reap_killed() {
    local i
    for i in $(seq 1 100); do [ "$(t_proc_state "$1")" = gone ] && return; sleep 0.02; done
}

# start_pc_tree RESULT "ARGS_A" "ARGS_B": a bash (no fd but 0-2, its own
# session) running precopy-case ARGS_A and precopy-case ARGS_B as its
# children, stdout appended to RESULT; waits until both said "ready". Sets
# ROOT (the bash) and KIDS (the two cases; fewer when one did not start).
start_pc_tree() {
    local result=$1 a=$2 b=$3 i
    setsid bash -c 'for f in /proc/self/fd/*; do n=${f##*/};
                    [ "$n" -gt 2 ] && eval "exec $n>&-"; done
                    "$0" $1 & "$0" $2 & wait' "$PC" "$a" "$b" </dev/null >>"$result" 2>&1 &
    ROOT=$!
    T_PIDS+=("$ROOT")
    for i in $(seq 1 200); do [ "$(grep -c '^ready' "$result")" -eq 2 ] && break; sleep 0.05; done
    mapfile -t KIDS < <(awk '/^ready/ { print $2 }' "$result")
    T_PIDS+=("${KIDS[@]}")
}
