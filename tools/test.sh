#!/bin/bash
# test.sh - the README's test command: installs what is missing, builds with
# ASan/UBSan in build-test/, runs every meson test suite, then builds the
# libFuzzer targets with clang in build-fuzz/ and runs the `fuzz` suite
# (each target fuzzed for a few seconds from its seeds, tests/fuzz), and
# ends with one line `N passed, N failed, N skipped` over both builds, or
# `0 passed, 1 failed` when the dependencies, the setup or the build of
# build-test fail (CI reads that line, not meson's summary). A fuzz build
# that cannot be set up or built counts as one failed test.
#
# Arguments go to build-test's `meson test`. CAIRN_TEST_FUZZ=0 skips the
# fuzz part, CAIRN_TEST_FUZZ=only runs nothing else; CAIRN_TEST_BUILDDIR
# and CAIRN_FUZZ_BUILDDIR name other build dirs.
set -uo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
CAIRN_PACKAGES+=("${CAIRN_TEST_PACKAGES[@]}")
cairn_install_deps || { echo "0 passed, 1 failed"; exit 1; }
cairn_install_npm_deps || echo "test.sh: the dashboard test will skip (no puppeteer-core)" >&2

fuzz=${CAIRN_TEST_FUZZ:-1}
logs=()          # the testlog.json of each build that ran its tests
extra_failed=0   # failures no testlog counts (a fuzz build that failed)
rc=0             # non-zero when a `meson test` failed

# take_log BUILDDIR: counts BUILDDIR's tests, or one failure without a log.
take_log() {
    if [ -f "$1/meson-logs/testlog.json" ]; then
        logs+=("$1/meson-logs/testlog.json")
    else
        echo "test.sh: no test ran in $1" >&2
        extra_failed=$((extra_failed + 1))
    fi
}

# run_main: build-test and every suite of it; 1 when it cannot be built.
run_main() {
    local builddir=${CAIRN_TEST_BUILDDIR:-build-test}
    if [ ! -d "$builddir" ]; then
        meson setup "$builddir" -Dsanitize=true -Dtests=enabled >/dev/null || return 1
    fi
    ninja -C "$builddir" || return 1
    rm -f "$builddir/meson-logs/testlog.json"
    meson test -C "$builddir" --print-errorlogs "$@" || rc=1
    take_log "$builddir"
}

# run_fuzz: build-fuzz (clang, -Dfuzzing=true) and its fuzz suite; meson
# builds only what the suite needs. A setup or build failure is counted.
run_fuzz() {
    local builddir=${CAIRN_FUZZ_BUILDDIR:-build-fuzz}
    if [ ! -d "$builddir" ]; then
        CC=clang meson setup "$builddir" -Dfuzzing=true -Dtests=disabled >/dev/null ||
            { echo "test.sh: cannot set up $builddir (clang, -Dfuzzing=true)" >&2
              rm -rf "$builddir"; extra_failed=$((extra_failed + 1)); rc=1; return; }
    fi
    rm -f "$builddir/meson-logs/testlog.json"
    meson test -C "$builddir" --suite fuzz --print-errorlogs || rc=1
    take_log "$builddir"
}

if [ "$fuzz" != only ]; then
    run_main "$@" || { echo "0 passed, 1 failed"; exit 1; }
fi
[ "$fuzz" != 0 ] && run_fuzz

results=$(cat "${logs[@]}" /dev/null | jq -s '{
    passed: [.[] | select(.result == "OK" or .result == "EXPECTEDFAIL")] | length,
    failed: [.[] | select(.result == "FAIL" or .result == "TIMEOUT" or .result == "ERROR" or .result == "UNEXPECTEDPASS")] | length,
    skipped: [.[] | select(.result == "SKIP")] | length}')
passed=$(jq .passed <<<"$results")
failed=$(( $(jq .failed <<<"$results") + extra_failed ))
skipped=$(jq .skipped <<<"$results")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
