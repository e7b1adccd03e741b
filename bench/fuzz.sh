#!/bin/bash
# fuzz.sh - runs the libFuzzer targets (tests/fuzz) for a given time and
# prints one JSON line per target: execs, execs/s, coverage (libFuzzer's
# cov and ft), corpus, crashes. Run from the source root:
#
#   bench/fuzz.sh [--seconds S] [--build DIR] [--jobs N] [TARGET...]
#
# S defaults to 60 per target; DIR to build-fuzz, a build dir set up with
# `CC=clang meson setup DIR -Dfuzzing=true` (the targets are built here if
# they are not); N to the number of cores: targets run side by side, one
# per core; TARGET is a name like fuzz-envelope (default: every target).
# The targets and their seed dirs are read from the build's `fuzz` test
# suite (tests/fuzz/meson.build), each run is tests/fuzz/run-fuzzer.sh on
# a copy of the seeds (tests/fuzz is never written), and a crashing input
# is kept in DIR/fuzz-artifacts. Exit codes: 0 no crash, 1 a crash or a
# failed run, 100 usage. Readings: bench/README.md, "Fuzzing".
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=60
build=build-fuzz
jobs=$(nproc)
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 100 ;;
    *) break ;;
    esac
done
if ! [[ $seconds =~ ^[0-9]+$ && $jobs =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ] || [ "$jobs" -lt 1 ]; then
    echo "fuzz.sh: --seconds and --jobs take a positive number" >&2
    exit 100
fi
if [ ! -f "$build/build.ninja" ]; then
    echo "fuzz.sh: $build is not a build dir; make one with" \
         "CC=clang meson setup $build -Dfuzzing=true" >&2
    exit 100
fi

# name<TAB>fuzzer<TAB>seed dir... for every test of the fuzz suite; its
# command is run-fuzzer.sh --seconds S --artifacts DIR FUZZER SEEDDIR...
tests=$(meson introspect --tests "$build" | jq -r '.[] | select(.suite | index("cairn:fuzz")) |
        [.name, .cmd[5:][]] | @tsv') || exit 1
if [ -z "$tests" ]; then
    echo "fuzz.sh: $build has no fuzz suite: set it up with -Dfuzzing=true" >&2
    exit 100
fi
want=("$@")
[ ${#want[@]} -eq 0 ] && mapfile -t want < <(cut -f1 <<<"$tests")
for t in "${want[@]}"; do
    grep -q "^$t	" <<<"$tests" || { echo "fuzz.sh: no target $t in $build" >&2; exit 100; }
done
ninja -C "$build" $(for t in "${want[@]}"; do echo "tests/fuzz/$t"; done) >&2 || exit 1

work=$(mktemp -d -t cairn-bench-fuzz.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 143' TERM INT

# One run per target, at most $jobs at a time; each leaves its line in
# $work/NAME.json and its status in $work/NAME.rc.
for t in "${want[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n
    done
    IFS=$'\t' read -r -a row < <(grep "^$t	" <<<"$tests")
    fuzzer=${row[1]}
    [[ $fuzzer == /* ]] || fuzzer=$build/$fuzzer   # meson runs tests in DIR
    (tests/fuzz/run-fuzzer.sh --seconds "$seconds" --artifacts "$build/fuzz-artifacts" \
        "$fuzzer" "${row[@]:2}" >"$work/$t.json" 2>"$work/$t.err"; echo $? >"$work/$t.rc") &
done
wait

rc=0
for t in "${want[@]}"; do
    cat "$work/$t.json"
    if [ "$(cat "$work/$t.rc")" != 0 ]; then
        rc=1
        echo "fuzz.sh: $t failed:" >&2
        cat "$work/$t.err" >&2
    fi
done
exit $rc
