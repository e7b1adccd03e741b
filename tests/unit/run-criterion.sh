#!/bin/bash
# run-criterion.sh TEST-BINARY ARGS... - runs a criterion test binary and
# fails it when a test's worker printed a sanitizer report: criterion runs
# each test in a worker process and, once the test passed, counts a worker
# that LeakSanitizer aborts at exit only as a warning ("crashed during its
# setup or teardown"), so a leak would otherwise pass. The worker's stderr
# is kept and shown as it was.
set -u
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>"$log"
rc=$?
cat "$log" >&2
if grep -qE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:|crashed during its setup or teardown' "$log"; then
    echo "run-criterion: a sanitizer report or a crash after a test (above): failed" >&2
    exit 1
fi
exit "$rc"
