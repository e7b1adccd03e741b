#!/bin/bash
# test-kmod.sh - the kmod suite: builds kmod/cairn.ko against Debian's
# linux-headers-amd64, a static tests/kmod/hooktest, packs them with
# busybox into an initramfs, boots Debian's linux-image-amd64 under qemu
# (KVM when a KVM guest boots here, else TCG), runs `hooktest MODE` there and checks
# the module cannot be unloaded while in use, and parses the serial console:
# every "CAIRN not ok", a missing "CAIRN ok", or an Oops/BUG/WARNING fails.
# In test mode it runs libcairn's own hook tests (tests/hooks/hook-test.c)
# there too, through libcairn's kmod backend (CAIRN_HOOKS=kmod).
#
#   test-kmod.sh [test|fuzz SECONDS|bench]   (default test)
#
# Exits 77 (skipped) with the reason when qemu, busybox-static, the kernel
# image or its headers are missing. Work files go to $CAIRN_BUILD/kmod-test
# (or a temporary directory); the console log is kept there as console.log.
set -uo pipefail
mode=${1:-test}
fuzz_seconds=${2:-20}
case $mode in
test|bench) ;;
fuzz) [[ $fuzz_seconds =~ ^[1-9][0-9]*$ ]] && [ "$fuzz_seconds" -le 600 ] ||
          { echo "FAIL: fuzz SECONDS must be 1..600, not '$fuzz_seconds'"; exit 1; } ;;
*) echo "FAIL: unknown mode '$mode' (test, fuzz SECONDS or bench)"; exit 1 ;;
esac

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } ||
    skip "no static /bin/busybox (apt-get install busybox-static)"
command -v cpio >/dev/null || skip "no cpio"
kver=
for img in /boot/vmlinuz-*-amd64; do
    v=${img#/boot/vmlinuz-}
    [ -d "/usr/src/linux-headers-$v" ] && kver=$v
done
[ -n "$kver" ] || skip "no Debian kernel with headers (apt-get install linux-image-amd64 linux-headers-amd64)"
[ -r "/boot/vmlinuz-$kver" ] || skip "/boot/vmlinuz-$kver is not readable"
{ command -v make && command -v cc; } >/dev/null || skip "no make or cc"

# only now: a skipped run leaves no temporary directory behind
src=${CAIRN_SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)}
work=${CAIRN_BUILD:+$CAIRN_BUILD/kmod-test-$mode}
work=${work:-$(mktemp -d /tmp/cairn-kmod.XXXXXX)}

# The module and hooktest are built once per build dir (kmod-build) and
# rebuilt when their sources change: a Kbuild run is 30-50 s on a loaded
# machine, and every mode would otherwise pay it. Sources are copied only
# when they differ, so make sees the old timestamps of unchanged files; a
# build that warns leaves nothing behind, so the next run cannot reuse it.
kb=${CAIRN_BUILD:+$CAIRN_BUILD/kmod-build}
kb=${kb:-$work/kmod-build}
rm -rf "$work" && mkdir -p "$work/root" "$kb" || fail "cannot create $work"
(cd "$src/kmod" && find . -type f) | while read -r f; do
    cmp -s "$src/kmod/$f" "$kb/$f" || install -D -m 644 "$src/kmod/$f" "$kb/$f" || exit 1
done || fail "cannot copy kmod/ to $kb"
make -s -C "$kb" KDIR="/usr/src/linux-headers-$kver" >"$work/kbuild.log" 2>&1 ||
    { cat "$work/kbuild.log"; rm -f "$kb/cairn.ko"; fail "the module does not build against $kver"; }
if grep -E "warning:|error:" "$work/kbuild.log"; then
    rm -f "$kb/cairn.ko" "$kb/cairn.o"
    fail "the module builds with warnings"
fi
if ! [ "$kb/hooktest" -nt "$src/tests/kmod/hooktest.c" ] ||
   ! [ "$kb/hooktest" -nt "$src/kmod/include/uapi/linux/cairn.h" ]; then
    cc -static -O2 -Wall -Wextra -Werror -pthread -I"$src/kmod/include/uapi" \
        -o "$kb/hooktest" "$src/tests/kmod/hooktest.c" ||
        { rm -f "$kb/hooktest"; fail "hooktest does not build"; }
fi
cp "$kb/hooktest" "$work/root/hooktest" || fail "cannot copy hooktest"
# libcairn's hook tests (tests/hooks/hook-test.c), the program the user
# backend passes on the host (the unit test `hooks`), here through
# libcairn's kmod backend: the same tests, both backends. Built here, as
# hooktest is, since a sanitizer build's cannot be linked statically.
hook_src=(tests/hooks/hook-test.c libclient/error.c libclient/hooks.c
          libclient/hooks-uffd.c libclient/hooks-cnproc.c libclient/hooks-kmod.c
          lib/util/array.c lib/util/clock.c lib/util/fileio.c lib/util/options.c)
newest=$(cd "$src" && ls -t "${hook_src[@]}" libclient/include/cairn/hooks.h \
             libclient/hooks-private.h kmod/include/uapi/linux/cairn.h | head -1)
if ! [ "$kb/cairn-hook-test" -nt "$src/$newest" ]; then
    (cd "$src" && cc -static -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
        -Wno-missing-field-initializers -pthread -D_GNU_SOURCE -Ilibclient/include \
        -Ilibclient -Ilib -Ikmod/include/uapi -o "$kb/cairn-hook-test" "${hook_src[@]}") ||
        { rm -f "$kb/cairn-hook-test"; fail "cairn-hook-test does not build"; }
fi
cp "$kb/cairn-hook-test" "$work/root/cairn-hook-test" || fail "cannot copy cairn-hook-test"

root=$work/root
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$kb/cairn.ko" "$root/cairn.ko"
cat >"$root/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
echo
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t cgroup2 none /sys/fs/cgroup
echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
say() { echo "CAIRN $*"; }
if insmod /cairn.ko; then say ok insmod; else say not ok insmod; fi
case "$cairn_mode" in
bench) /hooktest bench ;;
fuzz) /hooktest fuzz "$cairn_fuzz" ;;
*)  /hooktest test
    # libcairn's kmod backend: TAP lines kept as they are, prefixed
    (CAIRN_HOOKS=kmod /cairn-hook-test; echo $? >/tmp/rc) 2>&1 | sed 's/^/CAIRN-TAP /'
    rc=$(cat /tmp/rc)
    if [ "$rc" = 0 ]; then say ok libcairn-kmod; else say not ok libcairn-kmod: exit $rc; fi
    exec 3</dev/cairn
    if rmmod cairn 2>/dev/null; then say not ok unload-busy: unloaded while open
    else say ok unload-busy; fi
    exec 3<&- ;;
esac
if rmmod cairn; then say ok unload; else say not ok unload; fi
echo CAIRN-DONE
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz") ||
    fail "cannot pack the initramfs"

# boot and insmod take ~30 s under TCG on a loaded machine; the bench's
# fault part stops itself after 40 s and its event part after ~10 s
case $mode in
fuzz)  limit=$((130 + fuzz_seconds)) ;;
bench) limit=240 ;;
*)     limit=300 ;;   # libcairn's hook tests too
esac
# no_timer_check: on a loaded host a TCG guest can miss the IO-APIC timer
# check and panic ("IO-APIC + timer doesn't work"); KVM guests skip it too
# kvm_boots: whether a KVM guest boots Debian's kernel here -- its banner
# on the console within 20 s, the kernel alone (it panics without a root
# and exits). /dev/kvm is not enough: a host whose KVM is kvm-pvm (a
# paravirtual one, for guest kernels built for it) has /dev/kvm, and a
# stock kernel hangs there before its first line. The answer is kept in
# $CAIRN_BUILD/kmod-accel for the other modes of the same build;
# CAIRN_KMOD_ACCEL=kvm|tcg decides instead.
kvm_boots() {
    local cache=${CAIRN_BUILD:+$CAIRN_BUILD/kmod-accel} out
    case ${CAIRN_KMOD_ACCEL:-} in kvm) return 0 ;; tcg) return 1 ;; esac
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    if [ -n "$cache" ] && [ -f "$cache" ]; then [ "$(cat "$cache")" = kvm ]; return; fi
    out=$(timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic -no-reboot \
              -kernel "/boot/vmlinuz-$kver" -append "console=ttyS0 panic=-1" </dev/null 2>&1)
    if grep -q "Linux version" <<<"$out"; then
        [ -n "$cache" ] && echo kvm >"$cache"
        return 0
    fi
    echo "kvm: no kernel banner in 20 s under KVM here ($(ls /sys/module 2>/dev/null | grep -m1 '^kvm_' || echo kvm)): TCG"
    [ -n "$cache" ] && echo tcg >"$cache"
    return 1
}
accel=(-accel tcg)
kvm_boots && accel=(-accel kvm -cpu host)
t0=$SECONDS
timeout $limit qemu-system-x86_64 "${accel[@]}" -m 512 -smp 2 -nographic -no-reboot \
    -kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 no_timer_check quiet loglevel=4 cairn_mode=$mode cairn_fuzz=$fuzz_seconds" \
    </dev/null >"$work/console.log" 2>&1
qrc=$?
echo "qemu ran $((SECONDS - t0)) s"
tr -d '\r' <"$work/console.log" >"$work/console.txt"
grep -E "CAIRN" "$work/console.txt"
[ $qrc -eq 0 ] || fail "qemu exited $qrc (console: $work/console.log)"
grep -q "^CAIRN-DONE" "$work/console.txt" || fail "the guest did not finish (console: $work/console.log)"
if grep -nE "Oops|BUG:|WARNING:|Call Trace|general protection|kernel panic" "$work/console.txt"; then
    fail "the kernel complained (console: $work/console.log)"
fi
grep -q "^CAIRN not ok" "$work/console.txt" && fail "hook tests failed"
case $mode in
test) want=(insmod version bad-ioctls fault-roundtrip sigbus-deadline sigbus-dead-server
            fail write-fault events-pid events-cgroup overflow libcairn-kmod unload-busy
            unload) ;;
fuzz) want=(insmod fuzz unload)
      ran=$(sed -n 's/^CAIRN fuzz-seconds \([0-9]*\)$/\1/p' "$work/console.txt")
      [ -n "$ran" ] && [ "$ran" -ge "$fuzz_seconds" ] ||
          fail "the fuzz pass ran ${ran:-no} s, not the $fuzz_seconds s asked for" ;;
*)    want=(insmod unload)
      grep -q "^CAIRN-BENCH {" "$work/console.txt" || fail "no bench line" ;;
esac
for t in "${want[@]}"; do
    grep -q "CAIRN ok $t\$" "$work/console.txt" || fail "no result for $t"
done
echo "kmod $mode: ${#want[@]} checks passed on Debian $kver (${accel[1]})"
