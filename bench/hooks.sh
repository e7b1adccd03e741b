#!/bin/bash
# hooks.sh - the hooks benchmark (issue 21): one JSON line per half.
#
# Module half (hooks_kmod): boots Debian's kernel in qemu with
# kmod/cairn.ko (tests/kmod/test-kmod.sh bench) and prints the guest's
# JSON line: the fault round trip (fault -> server -> page installed ->
# resume) through the module and, as the baseline in the same boot,
# through userfaultfd (missing fault, UFFDIO_COPY from a handler thread);
# and process events per second delivered to one reader, with the records
# lost.
#
# User half (hooks_user): on this host, tests/hooks/cairn-hook-test bench
# with CAIRN_HOOKS=user (needs root: the proc connector, a cgroup):
#   uffd_fault_us     baseline in the same run: a missing fault on private
#                     anonymous memory answered by UFFDIO_COPY from a
#                     handler thread (4096 pages)
#   hooks_fault_us    the same pages through a hooks region (a memfd,
#                     cairn_region_dispatch + cairn_region_serve)
#   hooks_over_uffd   the ratio (noisy: run it a few times)
#   events_per_s, events, lost
#                     fork+exit events of threads born and joined in a
#                     cgroup for S seconds, to one reader; lost: what the
#                     watch reported lost (LOST records)
#
# Usage: bench/hooks.sh [BUILD_DIR] [--user-only|--kmod-only] [--seconds S]
#        (module work files under BUILD_DIR/kmod-test-bench)
# Exit codes: 0 every half asked for printed its line; 1 one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
build=build-dev
halves="user kmod"
seconds=2
while [ $# -gt 0 ]; do
    case $1 in
    --user-only) halves=user; shift ;;
    --kmod-only) halves=kmod; shift ;;
    --seconds) seconds=$2; shift 2 ;;
    *) build=$1; shift ;;
    esac
done

hooks_user() {
    local prog=$build/tests/hooks/cairn-hook-test
    if [ ! -x "$prog" ]; then
        echo "hooks.sh: no $prog (build first)" >&2
        return 1
    fi
    CAIRN_HOOKS=user timeout 120 "$prog" bench "$seconds"
}

hooks_kmod() {
    mkdir -p "$build" || return 1
    local out rc line
    out=$(CAIRN_BUILD=$(cd "$build" && pwd) CAIRN_SOURCE=$PWD tests/kmod/test-kmod.sh bench)
    rc=$?
    line=$(printf '%s\n' "$out" | grep -o 'CAIRN-BENCH {.*}' | sed 's/^CAIRN-BENCH //')
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        printf '%s\n' "$out" >&2
        echo "hooks.sh: the module bench did not run (exit $rc)" >&2
        return 1
    fi
    printf '%s\n' "$line"
}

rc=0
for h in $halves; do
    "hooks_$h" || rc=1
done
exit $rc
