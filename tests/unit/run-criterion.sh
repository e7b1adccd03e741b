#!/bin/bash
# run-criterion.sh TEST-BINARY ARGS... - runs a criterion test binary and
# fails it when a test's worker printed a sanitizer report: criterion runs
# each test in a worker process and, once the test passed, counts a worker
# that LeakSanitizer aborts at exit only as a warning ("crashed during its
# setup or teardown"), so a leak would otherwise pass. stderr is shown as
# it comes (a test killed at its timeout still shows what it printed) and
# kept for the check.
set -u
log=$(mktemp)
trap 'rm -f "$log"' EXIT
trap 'exit 143' TERM INT
# stdout as is (fd 3); stderr through tee into the log and on to stderr
exec 3>&1
"$@" 2>&1 1>&3 3>&- | tee "$log" >&2
rc=${PIPESTATUS[0]}
exec 3>&-
if grep -qE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:|crashed during its setup or teardown' "$log"; then
    echo "run-criterion: a sanitizer report or a crash after a test (above): failed" >&2
    exit 1
fi
exit "$rc"
