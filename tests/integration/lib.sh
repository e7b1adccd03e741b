# lib.sh - shared helpers for Cairn's integration tests (sourced, not run).
#
# Every test gets its own temporary run base, its own free ports, and a trap
# that kills every daemon it started and removes what it made, pass or fail.
# Binaries come from the build tree meson passes in CAIRN_BUILD.

set -u
: "${CAIRN_BUILD:?run through meson test}"
: "${CAIRN_SOURCE:?run through meson test}"
CAIRN="$CAIRN_BUILD/cli/cairn"
CLUSTERD="$CAIRN_BUILD/services/clusterd/clusterd"
T_TMP=$(mktemp -d /tmp/cairn-test.XXXXXX)
T_PIDS=()
T_MOUNTS=()
T_FAILS=0
T_SERVICES=()   # "PID LOG" of every daemon t_start_service started

# t_sanitizer_reports DIR: every sanitizer report in a log under DIR, on
# stderr with its file -- a cluster's daemons log under the test's run
# directory, which the cleanup removes: a daemon that died in CI is then
# seen only here.
t_sanitizer_reports() {
    local f
    grep -rlE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' --include='*.log' "$1" 2>/dev/null |
        while read -r f; do
            echo "---- sanitizer report in ${f#"$1"/} ----" >&2
            grep -m1 -A40 -E 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' "$f" >&2
        done
}

# t_cluster_daemons_alive: every daemon of the local cluster $CAIRN_CLUSTER
# runs, else false with the dead ones named on stderr. For a test whose
# later steps would only wait out their deadlines on a dead daemon.
t_cluster_daemons_alive() {
    local dead
    dead=$("$CAIRN" cluster status 2>/dev/null |
        jq -r '.nodes[] | .id as $k | .services[] | select(.running | not) | "\(.name)@\($k)"' | tr '\n' ' ')
    [ -z "$dead" ] && return 0
    echo "  dead: $dead" >&2
    return 1
}

t_cleanup() {
    [ -n "${T_TMP:-}" ] && [ -d "$T_TMP" ] && t_sanitizer_reports "$T_TMP"
    for p in "${T_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    for m in "${T_MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
    t_umount_under "$T_TMP"
    rm -rf "$T_TMP"
}

# t_mounts_under DIR: the mount points at or under DIR, one a line, the
# last mounted first (ghostd mounts its image spool in its run dir and
# keeps it while images are in it).
t_mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | tac
}

# t_umount_under DIR: detaches every mount at or under DIR.
t_umount_under() {
    local m
    for m in $(t_mounts_under "$1"); do umount -l "$m" 2>/dev/null; done
}
trap t_cleanup EXIT

t_fail() { echo "FAIL: $*" >&2; T_FAILS=$((T_FAILS + 1)); }
t_ok() { echo "ok: $*"; }

# t_check DESCRIPTION COMMAND...: runs COMMAND, counts a failure if it
# fails; COMMAND's success or 1 (`t_check ... || diagnose`).
t_check() {
    local what=$1; shift
    if "$@"; then t_ok "$what"; else t_fail "$what"; return 1; fi
}

# t_stop_services: SIGTERM to every daemon t_start_service started that
# still runs, then its log must hold no sanitizer report: a daemon built
# with ASan reports leaks only when it exits on its own, and an error
# (abort_on_error) only in its log. A daemon that does not stop in 5 s is a
# failure too.
t_stop_services() {
    local entry pid log i
    for entry in "${T_SERVICES[@]}"; do
        read -r pid log <<<"$entry"
        kill -TERM "$pid" 2>/dev/null
    done
    for entry in "${T_SERVICES[@]}"; do
        read -r pid log <<<"$entry"
        for ((i = 0; i < 250; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
        kill -0 "$pid" 2>/dev/null && t_fail "daemon $pid did not stop on SIGTERM within 5 s"
        if grep -qE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' "$log" 2>/dev/null; then
            t_fail "daemon $pid: sanitizer report in $log"
            grep -A30 -E 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' "$log" >&2
        fi
    done
    T_SERVICES=()
}

# t_expect_error RC CODE CMD...: CMD fails with exit RC and JSON error code
# CODE on stderr (what it printed is shown when not).
t_expect_error() {
    local rc=$1 code=$2 out got; shift 2
    out=$("$@" 2>&1 >/dev/null); got=$?
    [ "$got" -eq "$rc" ] && jq -e --arg c "$code" '.error.code == $c' <<<"$out" >/dev/null ||
        { echo "  got exit $got: $out" >&2; return 1; }
}

# t_json_check WHAT JSON FILTER: a jq -e check on a JSON document.
t_json_check() { t_check "$1" t_jq "$3" "$2"; }
t_jq() { jq -e "$1" <<<"$2" >/dev/null; }

# t_proc_state PID: the state letter of /proc/PID/stat, "gone" if none.
t_proc_state() {
    local s
    s=$(sed -n 's/^[0-9]* (.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)
    echo "${s:-gone}"
}

t_done() {
    t_stop_services
    if [ "$T_FAILS" -eq 0 ]; then echo "PASS"; exit 0; fi
    echo "$T_FAILS check(s) failed" >&2; exit 1
}

# t_reap PID: waits up to 3 s for PID (killed by its checkpoint) to be
# gone or a zombie, and reaps it if it is our child, so its pid is free for
# the restore; after 3 s SIGKILLs and reaps it, and is false.
t_reap() {
    local i
    for i in $(seq 1 60); do
        case $(t_proc_state "$1") in Z|gone) wait "$1" 2>/dev/null; return 0;; esac
        sleep 0.05
    done
    kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
    return 1
}

# t_verdict RESULT NAME: waits up to 10 s for a "PASS NAME" or "FAIL NAME"
# line in RESULT (a ghost-case or ghost-state program's verdict); true on
# PASS.
t_verdict() {
    local i
    for i in $(seq 1 200); do
        grep -qE "^(PASS|FAIL) $2" "$1" && break
        sleep 0.05
    done
    grep -qx "PASS $2" "$1"
}

# t_free_port: a TCP port nobody listens on, with the next one free too.
t_free_port() {
    local p
    while :; do
        p=$(( (RANDOM % 20000) + 30000 ))
        if ! ss -Htln "sport = :$p or sport = :$((p + 1))" | grep -q .; then
            echo "$p"; return
        fi
    done
}

# t_description FILE CLUSTER NNODES PORT: a clusterd-only description whose
# node k has address 127.0.0.k and run dir under $T_TMP/run.
t_description() {
    local file=$1 cluster=$2 n=$3 port=$4 k
    {
        echo "<cluster name=\"$cluster\" run-base=\"$T_TMP/run\">"
        echo "  <services><service name=\"clusterd\" port=\"$port\" pub-port=\"$((port + 1))\"/></services>"
        echo "  <appliances><appliance name=\"compute\"><use service=\"clusterd\"/></appliance></appliances>"
        echo "  <nodes>"
        for k in $(seq 1 "$n"); do
            echo "    <node id=\"$k\" name=\"n$k\" address=\"127.0.0.$k\" appliance=\"compute\"/>"
        done
        echo "  </nodes>"
        echo "</cluster>"
    } > "$file"
}

# t_wait_socket PATH [TIMEOUT_S]: waits for a unix socket file.
t_wait_socket() {
    local path=$1 limit=${2:-10} i
    for i in $(seq 1 $((limit * 20))); do
        [ -S "$path" ] && return 0
        sleep 0.05
    done
    return 1
}

# t_start_clusterd CONFIG NODE LOG: starts clusterd, waits until it serves.
# Sets T_LAST_PID.
t_start_clusterd() {
    t_start_service clusterd "$CLUSTERD" "$@"
}

# t_require_netns: skips the test (77) unless we are root and may create
# network namespaces (the local cluster harness needs both).
t_require_netns() {
    [ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
    local probe="cairnprobe$$"
    ip netns add "$probe" 2>/dev/null || { echo "SKIP: ip netns add not permitted"; exit 77; }
    ip netns del "$probe"
}

# t_require_built PATH...: skips the test (77) unless every PATH is an
# executable (a binary of the build tree the test needs).
t_require_built() {
    local p
    for p in "$@"; do [ -x "$p" ] || { echo "SKIP: $p not built"; exit 77; }; done
}

# t_description_ghostd FILE CLUSTER PORT GHOST_PORT: a one-node description
# (node 1 at 127.0.0.1, run dir under $T_TMP/run) running clusterd and
# ghostd.
t_description_ghostd() {
    local file=$1 cluster=$2 port=$3 gport=$4
    cat > "$file" <<XML
<cluster name="$cluster" run-base="$T_TMP/run">
  <services>
    <service name="clusterd" port="$port" pub-port="$((port + 1))"/>
    <service name="ghostd" port="$gport"/>
  </services>
  <appliances><appliance name="compute"><use service="clusterd"/><use service="ghostd"/></appliance></appliances>
  <nodes>
    <node id="1" name="n1" address="127.0.0.1" appliance="compute"/>
  </nodes>
</cluster>
XML
}

# t_start_service NAME BINARY CONFIG NODE LOG: starts a service daemon,
# waits until its socket exists. Sets T_LAST_PID.
t_start_service() {
    local name=$1 bin=$2 config=$3 node=$4 log=$5 cluster
    "$bin" --config "$config" --node "$node" 2>"$log" &
    T_LAST_PID=$!
    T_PIDS+=("$T_LAST_PID")
    T_SERVICES+=("$T_LAST_PID $log")
    cluster=$(sed -n 's/.*<cluster name="\([^"]*\)".*/\1/p' "$config")
    if ! t_wait_socket "$T_TMP/run/$cluster/$node/$name.sock"; then
        echo "$name did not come up; log:" >&2; cat "$log" >&2
        return 1
    fi
}

# t_wait_member S ID FILTER NODES...: every listed node's `cairn nodes`
# holds member ID matching the jq FILTER (on the member object) within S
# seconds.
t_wait_member() {
    local limit=$1 id=$2 filter=$3 i k ok; shift 3
    for i in $(seq 1 $((limit * 10))); do
        ok=1
        for k in "$@"; do
            "$CAIRN" nodes --node "$k" 2>/dev/null | jq -e --argjson id "$id" \
                ".nodes[] | select(.id == \$id) | $filter" >/dev/null || { ok=0; break; }
        done
        [ "$ok" -eq 1 ] && return 0
        sleep 0.1
    done
    return 1
}

# t_wait_state S ID STATE NODES...: every listed node sees node ID in STATE
# within S seconds.
t_wait_state() {
    local limit=$1 id=$2 state=$3; shift 3
    t_wait_member "$limit" "$id" ".state == \"$state\"" "$@"
}

# t_wait_for S CMD...: CMD succeeds within S seconds (tried every 100 ms).
t_wait_for() {
    local limit=$1 i; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    return 1
}

# t_ghostds_see N: each of nodes 1..N's ghostd lists N reachable ghostds
# (ps) within 15 s -- a local cluster's jobs can go anywhere from then on.
t_ghostds_see() {
    local n=$1 k
    for ((k = 1; k <= n; k++)); do
        t_check "ghostd $k sees $n ghostds" t_wait_for 15 s_t_all_reachable "$k" "$n"
    done
}
s_t_all_reachable() {
    CAIRN_NODE=$1 "$CAIRN" ps | jq -e --argjson n "$2" \
        '[.nodes[] | select(.reachable)] | length == $n' >/dev/null
}

# t_cluster_up PREFIX N: a local cluster of N nodes, 1 GiB each, named
# PREFIX<pid> ($T_CLUSTER; CAIRN_RUN_BASE and CAIRN_CLUSTER exported so
# the CLI finds it), torn down on exit; every node alive to every node
# and every ghostd seeing all N. A cluster that does not come up ends the
# test (failed).
t_cluster_up() {
    local k ids
    T_CLUSTER="$1$(( $$ % 100000 ))"
    export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$T_CLUSTER"
    trap 't_cluster_down; t_cleanup' EXIT
    "$CAIRN" cluster up --nodes "$2" --mem 1G --start-timeout 60000 >"$T_TMP/up.json" ||
        { t_fail "cluster up: $(cat "$T_TMP/up.json")"; t_done; }
    ids=$(seq 1 "$2")
    # shellcheck disable=SC2086 # the ids are words
    for k in $ids; do t_check "node $k alive" t_wait_state 15 "$k" alive $ids; done
    t_ghostds_see "$2"
}
t_cluster_down() { "$CAIRN" cluster down --name "$T_CLUSTER" >/dev/null 2>&1; }
