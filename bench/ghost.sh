#!/bin/bash
# bench/ghost.sh - checkpoint and restore throughput of the ghost engine
# (ghost-dump / ghost-restore) for resident processes of 64 MiB, 256 MiB and
# 1 GiB, one JSON line per size and image filesystem:
#
#   freeze_ms, dump_ms     ghost-dump's freeze_us and dump_us (seize until
#                          every thread stopped; then until the image is
#                          written and fsync'ed); dump_ms is the best of
#                          dump_runs_ms: new images (FILE.part renamed),
#                          two dumps that leave the victim running and the
#                          one that kills it (the baselines are best of 3
#                          as well)
#   in_place_dump_ms       the best of in_place_dump_runs_ms: three dumps
#                          written over the last image (--in-place: its
#                          pages are reused, none allocated), before those
#   copy_threads           ghost-dump's: 0 the pages were streamed, N copied
#                          in place into the image by N threads
#   cold_dump_ms           dump_ms of a first, unmeasured dump of the same
#                          victim (--leave-running) into the same fs (the
#                          image the in-place dumps write over): on a VM
#                          the first touch of guest memory the host has not
#                          backed yet costs several times the copy itself;
#                          the measured dump is the engine's, this one the
#                          engine's plus the hypervisor's
#   restore_ms             ghost-restore's restore_us (first image byte read
#                          until the process runs)
#   stream_restore_ms      the same image restored again from a pipe
#                          (cat IMAGE | ghost-restore --image -), as a
#                          migration's is: its pages read straight into
#                          place (restore-inplace.c); stream_restore_mib_s,
#                          stream_placed_mib (what was read into place)
#   dump_mib_s, restore_mib_s  image_bytes over dump_ms, restore_ms
#   total_ms               freeze, dump and restore of the killing dump
#   wall_ms                the same steps as seen from here (exec, image
#                          open/close and JSON included)
#   baseline_process_vm_readv_mib_s  bench/ghost-bw: the victim's memory
#                          read with process_vm_readv into one reused 8 MiB
#                          buffer (reading alone, the buffer stays in the
#                          cache), best of 3, measured before the dumps
#                          and again before the killing one: the better
#   baseline_process_vm_readv_runs_mib_s  those two, before and after
#   baseline_process_vm_readv_resident_mib_s  the same reads into one
#                          resident buffer as large as the region (the
#                          bytes land in memory, as an image's must), the
#                          better of before and after
#   baseline_memcpy_mib_s  the same bytes copied by memcpy in this process
#   baseline_write_new_file_mib_s  the same bytes written (write(2), 8 MiB
#                          calls, fsync) from a resident buffer into a new
#                          file on the image's fs: what filling a new image
#                          costs there, whoever fills it
#   baseline_write_over_file_mib_s  the same into that file again, whose
#                          pages exist
#   dump_vs_pvr            dump_mib_s / baseline_process_vm_readv_mib_s
#   in_place_dump_vs_pvr   in_place_dump_mib_s / the same
#   dump_vs_pvr_resident   dump_mib_s / baseline_process_vm_readv_resident_mib_s
#   dump_vs_write_new      dump_mib_s / baseline_write_new_file_mib_s
#   in_place_dump_vs_write_over  in_place_dump_mib_s / baseline_write_over_file_mib_s
#   verified               the restored victim checked every word of its
#                          memory on SIGUSR2 and wrote PASS (both restores)
#   page_reporting_order   the guest kernel's free page reporting order
#                          during the run (null: no page_reporting module):
#                          free blocks of that order or more are handed
#                          back to the hypervisor, whose next touch by the
#                          guest faults in the host; at 9 every freed huge
#                          page is, so each huge folio of a new image costs
#                          a host fault per page (bench/README.md)
#
# The victim (bench/ghost-victim) maps N MiB, writes a pattern into every
# word, then sleeps in sigsuspend. Each size is dumped to a file on tmpfs,
# the victim killed by ghost-dump, restored with ghost-restore, verified,
# killed, restored again from a pipe, verified, killed; the image is
# removed. --fs picks the tmpfs: "shm" is /dev/shm
# (the machine's tmpfs: 4 KiB pages), "huge" a tmpfs mounted for the run
# under a mktemp dir with huge=always (2 MiB folios: the kind ghostd
# mounts as its default image directory, services/ghostd/spool.h); both
# by default.
#
# Usage (root: ptrace, clone3 set_tid; from the source root):
#   bench/ghost.sh [--build DIR] [--sizes "64 256 1024"] [--fs "shm huge"]
#                  [--page-reporting keep|off]
# --build defaults to $CAIRN_BUILD, else ./build. --page-reporting off
# raises page_reporting_order above any block's order for the run (none is
# reported; the old value is put back on exit): the engine measured
# without the hypervisor's first touch of returned memory.
# `ninja -C BUILD bench-ghost` runs the defaults.
# Exit codes: 0 every size verified; 1 a step failed (its line says which);
# 2 not built; 77 not root; 100 wrong usage.
set -u
BUILD=${CAIRN_BUILD:-./build}
SIZES="64 256 1024"
FSES="shm huge"
REPORTING=keep
REPORTING_PARAM=/sys/module/page_reporting/parameters/page_reporting_order
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --fs) FSES=$2; shift 2 ;;
    --page-reporting)
        case ${2:-} in keep|off) REPORTING=$2 ;; *)
            echo "{\"error\":{\"code\":\"usage\",\"message\":\"--page-reporting takes keep or off\"}}" >&2; exit 100 ;;
        esac
        shift 2 ;;
    *) echo "{\"error\":{\"code\":\"usage\",\"message\":\"unknown argument '$1'\"}}" >&2; exit 100 ;;
    esac
done
VICTIM="$BUILD/bench/ghost-victim"
BW="$BUILD/bench/ghost-bw"
DUMP="$BUILD/services/ghostd/engine/ghost-dump"
RESTORE="$BUILD/services/ghostd/engine/ghost-restore"
for b in "$VICTIM" "$BW" "$DUMP" "$RESTORE"; do
    [ -x "$b" ] || { echo "{\"error\":{\"code\":\"not-found\",\"message\":\"$b: not built (--build DIR or CAIRN_BUILD)\"}}" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo '{"error":{"code":"unsupported","message":"needs root (ptrace, clone3 set_tid)"}}' >&2; exit 77; }

WORK=$(mktemp -d /tmp/cairn-bench-ghost.XXXXXX)
SHMDIR=$(mktemp -d /dev/shm/cairn-bench-ghost.XXXXXX)
HUGEDIR="$WORK/huge"
MOUNTED=0
PIDS=()
OLD_ORDER=
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ "$MOUNTED" -eq 1 ] && umount "$HUGEDIR"
    [ -n "$OLD_ORDER" ] && echo "$OLD_ORDER" > "$REPORTING_PARAM"
    rm -rf "$SHMDIR" "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$REPORTING" = off ]; then
    [ -w "$REPORTING_PARAM" ] || {
        echo "{\"error\":{\"code\":\"unsupported\",\"message\":\"--page-reporting off: $REPORTING_PARAM is not there (no free page reporting to hold off)\"}}" >&2
        exit 2
    }
    OLD_ORDER=$(cat "$REPORTING_PARAM")
    echo 11 > "$REPORTING_PARAM"   # above MAX_PAGE_ORDER (10): no block qualifies
    sleep 3                        # blocks already queued are reported meanwhile
fi
ORDER=$(cat "$REPORTING_PARAM" 2>/dev/null || echo null)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_status FILE WORD SECONDS: until FILE's first word is WORD (0) or
# SECONDS pass (1).
wait_status() {
    local i line
    for ((i = 0; i < $3 * 50; i++)); do
        read -r line 2>/dev/null < "$1" && [ "${line%% *}" = "$2" ] && return 0
        [ -n "${line:-}" ] && [ "${line%% *}" = FAIL ] && return 1
        sleep 0.02
    done
    return 1
}

# start_victim MIB STATUS: the victim with fds 0-2 on /dev/null and no
# other fd (whatever this shell inherited stays out of the image).
start_victim() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            n=${fd##*/}
            [ "$n" -gt 2 ] && eval "exec $n>&-"
        done
        exec "$VICTIM" "$1" "$2" </dev/null >/dev/null 2>&1
    ) &
    VPID=$!
    PIDS+=("$VPID")
}

# fail MIB FS CODE MESSAGE: the line of a size that could not be measured.
fail() {
    jq -cn --argjson mib "$1" --arg fs "$2" --arg code "$3" --arg msg "$4" \
        '{bench:"ghost",resident_mib:$mib,fs:$fs,error:{code:$code,message:$msg}}'
    FAILED=1
}

# gone PID: waits (up to 5 s) until PID no longer exists.
gone() {
    local i
    for ((i = 0; i < 250; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.02; done
    return 1
}

# one MIB FS DIR: one measured checkpoint/restore cycle, one JSON line.
one() {
    local mib=$1 fs=$2 dir=$3 st="$WORK/status" img="$3/ghost-$1.img"
    local addr bytes bw bw2 cj dj lj rj t0 t1 t2 rpid verified=false
    rm -f "$st"
    start_victim "$mib" "$st"
    wait_status "$st" READY 120 || { fail "$mib" "$fs" victim "victim not ready"; return; }
    read -r _ addr bytes < "$st"
    bw=$("$BW" --pid "$VPID" --addr "$addr" --bytes "$bytes" --dir "$3") ||
        { fail "$mib" "$fs" baseline "ghost-bw failed"; return; }
    cj=$("$DUMP" --pid "$VPID" --out "$img" --leave-running) ||
        { fail "$mib" "$fs" dump "$cj"; return; }
    # Three dumps written over the last image (--in-place), then two more
    # new images that leave it running and the new one that kills it: the
    # best of each three is in_place_dump_ms and dump_ms (the baselines are
    # best of 3 too).
    local runs=() inplace=() k
    for k in 1 2 3; do
        lj=$("$DUMP" --pid "$VPID" --out "$img" --leave-running --in-place) ||
            { fail "$mib" "$fs" dump "$lj"; return; }
        inplace+=("$(jq .dump_us <<<"$lj")")
    done
    rm -f "$img"
    for k in 1 2; do
        lj=$("$DUMP" --pid "$VPID" --out "$img" --leave-running) ||
            { fail "$mib" "$fs" dump "$lj"; return; }
        runs+=("$(jq .dump_us <<<"$lj")")
        rm -f "$img"
    done
    # The baselines again, after the dumps: this VM's process_vm_readv
    # drifts by half within a minute; the best of both is the baseline,
    # and both are reported.
    bw2=$("$BW" --pid "$VPID" --addr "$addr" --bytes "$bytes") ||
        { fail "$mib" "$fs" baseline "ghost-bw failed"; return; }
    t0=$(now_ms)
    dj=$("$DUMP" --pid "$VPID" --out "$img") ||
        { fail "$mib" "$fs" dump "$dj"; return; }
    t1=$(now_ms)
    { wait "$VPID"; } 2>/dev/null
    rj=$("$RESTORE" --image "$img") ||
        { fail "$mib" "$fs" restore "$rj"; rm -f "$img"; return; }
    t2=$(now_ms)
    rpid=$(jq -r .pid <<<"$rj")
    PIDS+=("$rpid")
    rm -f "$st"
    kill -USR2 "$rpid" && wait_status "$st" PASS 60 && verified=true
    kill -9 "$rpid" 2>/dev/null
    gone "$rpid"
    # The same image again, read from a pipe (as a migration's is): one
    # process's pages read straight into place (restore-inplace.c).
    local sj spid sverified=false
    sj=$(cat "$img" | "$RESTORE" --image -) && spid=$(jq -r .pid <<<"$sj") ||
        { fail "$mib" "$fs" restore "streamed: $sj"; rm -f "$img"; return; }
    PIDS+=("$spid")
    rm -f "$st"
    kill -USR2 "$spid" && wait_status "$st" PASS 60 && sverified=true
    kill -9 "$spid" 2>/dev/null
    gone "$spid"
    $sverified || verified=false
    rm -f "$img"
    jq -cn --argjson mib "$mib" --arg fs "$fs" --argjson bw "$bw" --argjson bw2 "$bw2" --argjson d "$dj" \
        --argjson r "$rj" --argjson c "$cj" --argjson s "$sj" \
        --argjson runs "[${runs[0]},${runs[1]},$(jq .dump_us <<<"$dj")]" \
        --argjson inplace "[${inplace[0]},${inplace[1]},${inplace[2]}]" \
        --argjson wd $((t1 - t0)) --argjson wr $((t2 - t1)) \
        --argjson verified "$verified" --arg check "$(cat "$st" 2>/dev/null)" \
        --argjson order "$ORDER" '
        def r1: (. * 10 | round) / 10;
        def r2: (. * 100 | round) / 100;
        ($d.image_bytes / 1048576) as $imib
        | ([$bw.process_vm_readv_mib_s, $bw2.process_vm_readv_mib_s] | max) as $pvr
        | ([$bw.process_vm_readv_resident_mib_s, $bw2.process_vm_readv_resident_mib_s] | max) as $pvr_res
        | ($runs | min / 1e6) as $ds | ($inplace | min / 1e6) as $is
        | ($r.restore_us / 1e6) as $rs
        | {bench:"ghost", resident_mib:$mib, fs:$fs, image_bytes:$d.image_bytes,
           pages:$d.pages, freeze_ms:($d.freeze_us / 1000 | r1),
           dump_ms:($ds * 1000 | r1), dump_mib_s:($imib / $ds | round),
           dump_runs_ms:[$runs[] / 1000 | r1],
           in_place_dump_ms:($is * 1000 | r1), in_place_dump_mib_s:($imib / $is | round),
           in_place_dump_runs_ms:[$inplace[] / 1000 | r1],
           cold_dump_ms:($c.dump_us / 1000 | r1), copy_threads:$d.copy_threads,
           restore_ms:($r.restore_us / 1000 | r1), restore_mib_s:($imib / $rs | round),
           stream_restore_ms:($s.restore_us / 1000 | r1),
           stream_restore_mib_s:($imib / ($s.restore_us / 1e6) | round),
           stream_placed_mib:(($s.placed_bytes // 0) / 1048576 | r1),
           total_ms:(($d.freeze_us + $d.dump_us + $r.restore_us) / 1000 | r1),
           wall_ms:{dump:$wd, restore:$wr}, verified:$verified,
           page_reporting_order:$order}
        + (if $verified then {} else {check:$check} end)
        + {baseline_process_vm_readv_mib_s:$pvr,
           baseline_process_vm_readv_runs_mib_s:[$bw.process_vm_readv_mib_s, $bw2.process_vm_readv_mib_s],
           baseline_process_vm_readv_resident_mib_s:$pvr_res,
           baseline_process_vm_readv_dst16_mib_s:$bw.process_vm_readv_dst16_mib_s,
           baseline_memcpy_mib_s:$bw.memcpy_mib_s,
           baseline_write_new_file_mib_s:$bw.write_new_file_mib_s,
           baseline_write_over_file_mib_s:$bw.write_over_file_mib_s,
           dump_vs_pvr:($imib / $ds / $pvr | r2),
           in_place_dump_vs_pvr:($imib / $is / $pvr | r2),
           dump_vs_write_new:($imib / $ds / $bw.write_new_file_mib_s | r2),
           in_place_dump_vs_write_over:($imib / $is / $bw.write_over_file_mib_s | r2),
           dump_vs_pvr_resident:($imib / $ds / $pvr_res | r2),
           restore_vs_pvr:($imib / $rs / $pvr | r2),
           targets:{dump_vs_pvr:1.0, restore_mib_s:1024, total_ms_1gib:2000}}'
    $verified || FAILED=1
}

FAILED=0
for fs in $FSES; do
    case $fs in
    shm) dir=$SHMDIR ;;
    huge)
        mkdir -p "$HUGEDIR"
        mount -t tmpfs -o huge=always,mode=0700 cairn-bench-ghost "$HUGEDIR" ||
            { fail 0 huge mount "cannot mount a huge=always tmpfs"; continue; }
        MOUNTED=1
        dir=$HUGEDIR ;;
    *) echo "{\"error\":{\"code\":\"usage\",\"message\":\"unknown --fs '$fs' (shm, huge)\"}}" >&2; exit 100 ;;
    esac
    for mib in $SIZES; do one "$mib" "$fs" "$dir"; done
done
exit $FAILED
