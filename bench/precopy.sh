#!/bin/bash
# bench/precopy.sh - how long a dump stops a large, mostly idle process:
# stop-and-copy against pre-copy (ghost-dump --precopy), one JSON line.
#
#   sudo bench/precopy.sh [--build DIR] [--mib N] [--rate KIB_S] [--dir DIR]
#
# The victim is tests/ghost/precopy-case N KIB_S (512 MiB written at about
# 1 MiB/s by default: the issue's case, whose target is a pre-copy freeze
# of 50 ms or less). Each kind of dump runs three times with
# --leave-running into DIR (a tmpfs by default, /dev/shm, so a disk's
# fsync does not weigh on either); the best is kept.
#
#   stop_copy_frozen_ms, precopy_frozen_ms   ghost-dump's frozen_us: the
#                          tree stopped for the image, first seize until
#                          let go (best of 3; *_runs_ms: all three)
#   precopy_rounds, precopy_round_bytes, precopy_track_ms  of the best
#                          pre-copy run: its rounds, the bytes each copied
#                          while the victim ran, the stop that gave it its
#                          userfaultfd
#   precopy_frozen_pages   pages the freeze itself copied (pages - kept)
#   frozen_ratio           stop_copy_frozen_ms / precopy_frozen_ms
#   meets_target           precopy_frozen_ms <= 50
#   baseline_process_vm_readv_mib_s, baseline_memcpy_mib_s  bench/ghost-bw
#                          on the victim's region, best of 3, this run
#   stop_copy_vs_pvr       the region's MiB over stop_copy_frozen_ms, as a
#                          fraction of process_vm_readv's bandwidth: what
#                          the freeze of stop-and-copy is made of
#   verified               a last pre-copy dump (killing it) restored, and
#                          the victim's own check said PASS
# Exit codes: 0 a line was printed; 1 a step failed (the line says which);
# 77 not root.
set -u
BUILD=${CAIRN_BUILD:-build-dev}
MIB=512
RATE=1024
DIR=""
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    *) echo "usage: bench/precopy.sh [--build DIR] [--mib N] [--rate KIB_S] [--dir DIR]" >&2
       exit 100 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo '{"bench":"precopy","error":"needs root"}'; exit 77; }
DUMP="$BUILD/services/ghostd/engine/ghost-dump"
RESTORE="$BUILD/services/ghostd/engine/ghost-restore"
VICTIM="$BUILD/tests/ghost/precopy-case"
BW="$BUILD/bench/ghost-bw"
for b in "$DUMP" "$RESTORE" "$VICTIM" "$BW"; do
    [ -x "$b" ] || { echo "{\"bench\":\"precopy\",\"error\":\"no $b\"}"; exit 1; }
done
OWN_DIR=""
if [ -z "$DIR" ]; then
    DIR=$(mktemp -d /dev/shm/cairn-bench-precopy.XXXXXX)
    OWN_DIR=$DIR
fi
OUT=$(mktemp /tmp/cairn-bench-precopy.XXXXXX)
VPID=""
cleanup() {
    [ -n "$VPID" ] && kill -9 "$VPID" 2>/dev/null
    rm -f "$DIR"/sc.img "$DIR"/pc.img "$OUT"
    [ -n "$OWN_DIR" ] && rmdir "$OWN_DIR" 2>/dev/null
}
trap cleanup EXIT

fail() {
    jq -cn --arg step "$1" --arg why "$2" --argjson mib "$MIB" \
        '{bench:"precopy", mib:$mib, failed:$step, error:$why}'
    exit 1
}

# The victim, with no fd but 0-2 (a pipe of ours would be refused).
setsid bash -c 'for f in /proc/self/fd/*; do n=${f##*/};
                [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$0" "$@"' \
    "$VICTIM" "$MIB" "$RATE" </dev/null >>"$OUT" 2>&1 &
VPID=$!
disown "$VPID"   # no "Killed" from bash when cleanup ends it
for i in $(seq 1 600); do grep -q "^ready $VPID" "$OUT" && break; sleep 0.05; done
grep -q "^ready $VPID" "$OUT" || fail start "the victim did not get ready"
sleep 1

# Its region: the one mapping of MIB MiB.
want=$((MIB * 1048576))
addr=""
while read -r range _; do
    lo=${range%-*} hi=${range#*-}
    [ $((16#$hi - 16#$lo)) -eq "$want" ] && { addr=0x$lo; break; }
done <"/proc/$VPID/maps"
[ -n "$addr" ] || fail baseline "no $MIB MiB mapping in the victim"
bw=$("$BW" --pid "$VPID" --addr "$addr" --bytes "$want") || fail baseline "ghost-bw failed"

# dump KIND: one --leave-running dump; its JSON line.
dump() {
    local extra=()
    [ "$1" = pc ] && extra=(--precopy)
    "$DUMP" --pid "$VPID" --out "$DIR/$1.img" --leave-running "${extra[@]}" 2>&1
}
sc_runs=() pc_runs=() best_pc="" best=""
for run in 1 2 3; do
    s=$(dump sc) || fail stop-and-copy "$s"
    sc_runs+=("$(jq .frozen_us <<<"$s")")
    rm -f "$DIR/sc.img"
    p=$(dump pc) || fail precopy "$p"
    f=$(jq .frozen_us <<<"$p")
    pc_runs+=("$f")
    if [ -z "$best" ] || [ "$f" -lt "$best" ]; then best=$f; best_pc=$p; fi
    rm -f "$DIR/pc.img"
done

# A last pre-copy dump, killing it; restored, it must check itself PASS.
at=$(grep -c "^PASS $VPID" "$OUT")
p=$("$DUMP" --pid "$VPID" --out "$DIR/pc.img" --precopy 2>&1) || fail last-dump "$p"
for i in $(seq 1 100); do [ -e "/proc/$VPID" ] || break; sleep 0.02; done
r=$("$RESTORE" --image "$DIR/pc.img" 2>&1) || fail restore "$r"
sleep 0.3
kill -USR2 "$VPID"
for i in $(seq 1 200); do
    [ "$(grep -c "^PASS $VPID" "$OUT")" -gt "$at" ] && break
    grep -q "^FAIL" "$OUT" && break
    sleep 0.05
done
verified=false
[ "$(grep -c "^PASS $VPID" "$OUT")" -gt "$at" ] && ! grep -q "^FAIL" "$OUT" && verified=true

printf '%s\n' "${sc_runs[@]}" > "$OUT.sc"
printf '%s\n' "${pc_runs[@]}" > "$OUT.pc"
jq -cn --argjson mib "$MIB" --argjson rate "$RATE" --argjson bw "$bw" \
    --argjson pc "$best_pc" --argjson verified "$verified" \
    --argjson sc_runs "$(jq -sc 'map(. / 1000)' "$OUT.sc")" \
    --argjson pc_runs "$(jq -sc 'map(. / 1000)' "$OUT.pc")" \
    --arg fs "$(stat -f -c %T "$DIR")" '
    ($sc_runs | min) as $sc | ($pc_runs | min) as $pcf |
    {bench: "precopy", mib: $mib, write_kib_s: $rate, image_fs: $fs,
     stop_copy_frozen_ms: $sc, stop_copy_frozen_runs_ms: $sc_runs,
     precopy_frozen_ms: $pcf, precopy_frozen_runs_ms: $pc_runs,
     precopy_rounds: $pc.rounds, precopy_round_bytes: $pc.round_bytes,
     precopy_track_ms: ($pc.track_us / 1000),
     precopy_frozen_pages: ($pc.pages - $pc.kept_pages),
     frozen_ratio: (if $pcf > 0 then ($sc / $pcf * 100 | round) / 100 else null end),
     target_precopy_frozen_ms: 50, meets_target: ($pcf <= 50),
     baseline_process_vm_readv_mib_s: $bw.process_vm_readv_mib_s,
     baseline_memcpy_mib_s: $bw.memcpy_mib_s,
     stop_copy_vs_pvr: (if $sc > 0 then (($mib / ($sc / 1000)) / $bw.process_vm_readv_mib_s * 100 | round) / 100 else null end),
     verified: $verified}'
rm -f "$OUT.sc" "$OUT.pc"
