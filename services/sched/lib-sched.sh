# lib-sched.sh - the scheduler's helpers for test-sched.sh and bench/sched.sh
# (--part makespan), sourced; needs CAIRN and CAIRN_CLUSTER (the cluster).
# Everything goes through the CLI: `cairn sched show|swap|log`.

# c K ARGS...: the CLI at node K.
c() { local k=$1; shift; CAIRN_NODE=$k "$CAIRN" "$@"; }
# wait_for S CMD...: CMD succeeds within S seconds (a deadline, not a count
# of tries: on a loaded machine one try may take seconds).
wait_for() {
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.2; done
}
# policy K: "POLICY PID" of the policy serving node K (`cairn sched show`;
# nothing if none answers).
policy() { c "$1" sched show 2>/dev/null | jq -r '"\(.policy) \(.pid)"'; }
serves() { [ "$(policy "$1" | cut -d' ' -f1)" = "$2" ]; }
# swap K POLICY: `cairn sched swap` (the harness waits until it serves).
swap() { c "$1" sched swap "$2" --node "$1" >/dev/null; }
swap_all() { "$CAIRN" sched swap "$1" --all >/dev/null; }
# decisions K: node K's decision log (`cairn sched log`: one entry per
# seq, a migration's outcome in it), as a JSON array. A node too busy to
# answer in time is asked again (5 tries): a log read as empty made its
# moves look missing; after the last try, [] and false.
decisions() {
    local out i
    for i in 1 2 3 4 5; do
        out=$(c "$1" sched log --max 10000 2>/dev/null) && { jq -c '.decisions // []' <<<"$out"; return 0; }
        sleep 1
    done
    echo '[]'; return 1
}
all_decisions() { local k; for k in 1 2 3 4; do decisions "$k"; done | jq -cs 'add'; }
# slow_membership: clusterd's suspect timeout raised to 15 s on every node
# (the description, then SIGHUP; clusterd takes new timings on reload). A
# node whose 0.5 CPU sixteen jobs saturate, on a shared host at a load of
# 80-120, answered SWIM's pings so late that it was declared dead and its
# jobs reported lost; the scheduler's tests and bench are about placement
# and balancing, not the failure detector.
slow_membership() {
    local xml pid
    xml=$(jq -r .config "$CAIRN_RUN_BASE/$CAIRN_CLUSTER/state.json") || return 1
    sed -i 's/suspect-timeout-ms="[0-9]*"/suspect-timeout-ms="15000"/' "$xml" || return 1
    grep -q 'suspect-timeout-ms="15000"' "$xml" || return 1
    for pid in $("$CAIRN" cluster status | jq -r '.nodes[].services[] | select(.name == "clusterd") | .pid'); do
        kill -HUP "$pid" || return 1
    done
}

# room_for_daemons MIB: every node's memory limit raised to MIB MiB plus
# what its daemons use now (before any job), so MIB is the room its jobs
# have. Under sanitizers the daemons take ~40-90 MiB each (ghostd most),
# which on a node of 256 MiB left the jobs too little: the kernel killed
# jobs and their helpers mid-test. Plain builds add ~10-20 MiB.
room_for_daemons() {
    local k dir used
    for k in $("$CAIRN" cluster status | jq -r '.nodes[].id'); do
        dir=/sys/fs/cgroup/memory/cairn/$CAIRN_CLUSTER/$k
        if [ -f "$dir/memory.limit_in_bytes" ]; then
            used=$(cat "$dir/memory.usage_in_bytes") &&
                echo $(( $1 * 1048576 + used )) > "$dir/memory.limit_in_bytes" || return 1
        else
            dir=/sys/fs/cgroup/cairn/$CAIRN_CLUSTER/$k
            used=$(cat "$dir/memory.current") &&
                echo $(( $1 * 1048576 + used )) > "$dir/memory.max" || return 1
        fi
    done
}

# oom_report: what the kernel killed for memory lately and each node's
# cgroup figures (stderr): a job gone from a check is told from a move.
oom_report() {
    local k dir
    dmesg 2>/dev/null | grep -iE "out of memory|oom-kill|killed process" | tail -5 >&2
    for k in $("$CAIRN" cluster status | jq -r '.nodes[].id'); do
        dir=/sys/fs/cgroup/memory/cairn/$CAIRN_CLUSTER/$k
        [ -f "$dir/memory.failcnt" ] &&
            echo "  node $k: usage $(( $(cat "$dir/memory.usage_in_bytes") >> 20 )) MiB of $(( $(cat "$dir/memory.limit_in_bytes") >> 20 )), max $(( $(cat "$dir/memory.max_usage_in_bytes") >> 20 )), failcnt $(cat "$dir/memory.failcnt")" >&2
    done
    return 0
}
