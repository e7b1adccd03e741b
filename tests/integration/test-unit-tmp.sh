#!/bin/bash
# test-unit-tmp.sh - the unit tests that write files under /tmp (test-dump,
# test-direct) run twice at once, and leave nothing behind: each run
# makes its own directories (mkdtemp) and removes them. They run in a
# private mount namespace over an empty tmpfs /tmp, so what is left there
# afterwards is theirs alone, whatever else runs on the machine, and the
# machine's /tmp never sees them. Needs root (unshare, mount): 77 without.
set -uo pipefail
. "$CAIRN_SOURCE/tests/integration/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
unshare -m --propagation private true 2>/dev/null || { echo "SKIP: unshare -m not permitted"; exit 77; }

# Inside the namespace: the machine's /tmp stays reachable at /mnt/host-tmp
# (a build or source tree, or this test's $T_TMP, may be under /tmp), an
# empty tmpfs covers /tmp, both binaries run twice, concurrently, and
# whatever /tmp then holds is listed.
[ -d /mnt ] || { echo "SKIP: no /mnt to keep the machine's /tmp reachable"; exit 77; }
mkdir -p "$T_TMP/ns"
unshare -m --propagation private bash -c '
    set -u
    host() { case $1 in /tmp/*) echo "/mnt/host-tmp/${1#/tmp/}" ;; *) echo "$1" ;; esac; }
    mount -t tmpfs cairn-unit-mnt /mnt && mkdir /mnt/host-tmp &&
        mount --bind /tmp /mnt/host-tmp && mount -t tmpfs cairn-unit-tmp /tmp || exit 1
    export CAIRN_BUILD=$(host "$CAIRN_BUILD") CAIRN_SOURCE=$(host "$CAIRN_SOURCE")
    cd "$(host "$1")" || exit 1
    for t in dump direct; do
        for i in 1 2; do
            "$CAIRN_SOURCE/tests/unit/run-criterion.sh" "$CAIRN_BUILD/tests/test-$t" \
                --jobs 1 >"$t-$i.log" 2>&1 &
            echo "$! $t-$i" >>pids
        done
    done
    while read -r pid name; do wait "$pid"; echo "$name $?"; done <pids >status
    find /tmp -mindepth 1 >left
' cairn-unit-tmp "$T_TMP/ns"
t_check "the namespace ran (status: $(tr '\n' ' ' <"$T_TMP/ns/status" 2>/dev/null))" \
    test -s "$T_TMP/ns/status"
while read -r name rc; do
    t_check "$name passed alongside its twin (exit $rc)" test "$rc" -eq 0
    [ "$rc" -eq 0 ] || tail -n 20 "$T_TMP/ns/$name.log" >&2
done <"$T_TMP/ns/status"
t_check "nothing left in /tmp: $(tr '\n' ' ' <"$T_TMP/ns/left" 2>/dev/null)" \
    test -f "$T_TMP/ns/left" -a ! -s "$T_TMP/ns/left"
t_done
