#!/bin/bash
# test.sh - the README's test command: installs what is missing, builds with
# ASan/UBSan in build-test/, runs every meson test suite and ends with one
# line `N passed, N failed, N skipped`, or `0 passed, 1 failed` when the
# dependencies, the setup or the build fail (CI reads that line, not meson's
# summary).
set -uo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
CAIRN_PACKAGES+=("${CAIRN_TEST_PACKAGES[@]}")
cairn_install_deps || { echo "0 passed, 1 failed"; exit 1; }

builddir=${CAIRN_TEST_BUILDDIR:-build-test}
if [ ! -d "$builddir" ]; then
    meson setup "$builddir" -Dsanitize=true -Dtests=enabled >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$builddir" || { echo "0 passed, 1 failed"; exit 1; }

meson test -C "$builddir" --print-errorlogs "$@"
rc=$?
log="$builddir/meson-logs/testlog.json"
passed=$(jq -s '[.[] | select(.result == "OK" or .result == "EXPECTEDFAIL")] | length' "$log")
failed=$(jq -s '[.[] | select(.result == "FAIL" or .result == "TIMEOUT" or .result == "ERROR" or .result == "UNEXPECTEDPASS")] | length' "$log")
skipped=$(jq -s '[.[] | select(.result == "SKIP")] | length' "$log")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
