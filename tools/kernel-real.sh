#!/bin/bash
# kernel-real.sh NAME CMD... - one real program, inside kernel-test.sh's VM:
# runs CMD in its own session (output to a file), checkpoints it with
# ghost-dump (which kills it), restores it with ghost-restore, and exits 0
# if it runs on and its output keeps growing. Prints what it saw. Its
# output and image live in directories of its own (mktemp), removed at
# exit, so two runs never share a file.
set -u
E=$CAIRN_BUILD/services/ghostd/engine
n=$1
shift
work=$(mktemp -d "/tmp/real-$n.XXXXXX") && shm=$(mktemp -d "/dev/shm/real-$n.XXXXXX") || exit 1
trap 'rm -rf "$work" "$shm"' EXIT
out=$work/out
img=$shm/image
setsid "$@" </dev/null >"$out" 2>&1 &
p=$!
sleep 3
d=$("$E/ghost-dump" --pid "$p" --out "$img" 2>&1) || { echo "dump: $d"; kill -9 "$p"; exit 1; }
echo "dump: $d"
wait "$p" 2>/dev/null
r=$("$E/ghost-restore" --image "$img" 2>&1) || { echo "restore: $r"; exit 1; }
echo "restore: $r"
a=$(wc -l <"$out")
sleep 3
b=$(wc -l <"$out")
alive=0
kill -0 "$p" 2>/dev/null && alive=1
kill -9 "$p" 2>/dev/null
echo "alive=$alive, output lines $a -> $b"
[ "$alive" = 1 ] && [ "$b" -gt "$a" ]
