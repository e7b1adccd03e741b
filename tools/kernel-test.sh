#!/bin/bash
# kernel-test.sh - the ghost engine's tests on Debian 12's own kernel.
#
# This machine runs a newer kernel than Debian 12 ships (6.1), and the
# engine reads what the kernel tells it (fdinfo, pagemap, ...), which
# differs between them. This boots Debian 12's kernel (the archive's
# linux-image-amd64) under qemu (software emulation: no KVM here) with a
# busybox initramfs that mounts this machine's root over 9p read-write,
# chroots into it and runs the engine's unit tests and the ghost
# integration test from the build tree, then powers off.
#
#   sudo tools/kernel-test.sh [--build DIR] [--rounds N] [TEST...]
#
# TEST: unit/NAME (tests/test-NAME), integration/ghost, real/NAME (a real
# program checkpointed, killed, restored and still printing:
# tools/kernel-real.sh; python3 with a thread, node, perl, pipeline), or
# cross/image (an image dumped on this machine's kernel must be refused
# there, by ghost-restore --check and by the restore, with the reason), or
# cluster/up (the README's demo cluster: `cairn cluster up --nodes 4` in
# network namespaces with cgroup v2 limits, as a stock Debian 12 has them,
# every node alive, then `cluster down`); default: all of them (real/node
# only where node is installed). --rounds sets
# CAIRN_DAMAGE_ROUNDS for test-restore (default 200: emulation is slow).
# Prints one JSON line per test ({"test","kernel","rc","failed":[...]})
# and ends with `N passed, N failed`. Takes about 10 minutes. Not part of
# the CI suite (tools/test.sh): run by hand after engine changes; what it
# found is in docs/ghost.md. Needs root, Debian's archive (apt-get) and
# about 200 MB under DIR/kernel-test. Exit codes: 0 all passed, 1 a test
# failed or the VM did not report, 2 setup failed, 100 wrong usage.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${CAIRN_BUILD:-./build}
ROUNDS=200
TESTS=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    unit/*|integration/ghost|real/python3|real/node|real/perl|real/pipeline|cross/image|cluster/up)
        TESTS+=("$1"); shift ;;
    *) echo "{\"error\":{\"code\":\"usage\",\"message\":\"unknown argument '$1'\"}}" >&2; exit 100 ;;
    esac
done
if [ ${#TESTS[@]} -eq 0 ]; then
    TESTS=(unit/image unit/dump unit/direct unit/anonfd unit/restore integration/ghost
           real/python3 real/perl real/pipeline cross/image cluster/up)
    command -v node >/dev/null && TESTS+=(real/node)
fi
setup_fail() { echo "{\"error\":{\"code\":\"setup\",\"message\":\"$1\"}}" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || setup_fail "needs root (qemu's 9p export of /, the tests)"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || setup_fail "no build directory"
[ -x "$BUILD/services/ghostd/engine/ghost-dump" ] || setup_fail "$BUILD is not built"

WORK="$BUILD/kernel-test"
mkdir -p "$WORK/debs" "$WORK/out"
rm -f "$WORK/out/"*

# qemu, cpio, the kernel and busybox (the .debs are unpacked, not installed).
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v cpio >/dev/null; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends qemu-system-x86 cpio >/dev/null 2>&1 ||
        setup_fail "cannot install qemu-system-x86 and cpio"
fi
(
    cd "$WORK/debs" || exit 1
    [ -n "$(ls linux-image-6.*.deb 2>/dev/null)" ] && [ -n "$(ls busybox-static_*.deb 2>/dev/null)" ] && exit 0
    apt-get download linux-image-amd64 busybox-static >/dev/null 2>&1 || exit 1
    img=$(dpkg -I linux-image-amd64_*.deb | sed -n 's/^ Depends: \(linux-image-[^ ]*\).*/\1/p')
    [ -n "$img" ] && apt-get download "$img" >/dev/null 2>&1
) || setup_fail "cannot download linux-image-amd64 and busybox-static"
rm -rf "$WORK/root" "$WORK/initrd"
mkdir -p "$WORK/root" "$WORK/initrd/bin" "$WORK/initrd/mods" "$WORK/initrd/proc" \
    "$WORK/initrd/sys" "$WORK/initrd/dev" "$WORK/initrd/host"
for d in "$WORK/debs"/linux-image-6.*.deb "$WORK/debs"/busybox-static_*.deb; do
    dpkg -x "$d" "$WORK/root" || setup_fail "cannot unpack $d"
done
KVER=$(ls "$WORK/root/lib/modules" | head -1)
KERNEL="$WORK/root/boot/vmlinuz-$KVER"
[ -f "$KERNEL" ] || setup_fail "no kernel in the package"
cp "$WORK/root/bin/busybox" "$WORK/initrd/bin/"
# virtio-pci and 9p are modules in Debian's kernel: loaded in this order;
# then the bridge and veth a local cluster needs.
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p llc stp bridge veth"
for m in $MODS; do
    f=$(find "$WORK/root/lib/modules/$KVER" -name "$m.ko*" | head -1)
    [ -n "$f" ] || setup_fail "module $m not in the package"
    case $f in
    *.xz) xz -dc "$f" > "$WORK/initrd/mods/$m.ko" ;;
    *.zst) zstd -dcq "$f" > "$WORK/initrd/mods/$m.ko" ;;
    *) cp "$f" "$WORK/initrd/mods/$m.ko" ;;
    esac
done

# cross/image: an image of this machine's kernel for the guest to refuse
# (a sleep started with no fd but 0-2, which ghost-dump then kills).
if [[ " ${TESTS[*]} " == *" cross/image "* ]]; then
    rm -f "$WORK/host.img"
    (
        for fd in /proc/$BASHPID/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
        exec setsid sleep 1000 </dev/null >/dev/null 2>&1
    ) &
    sp=$!
    sleep 0.3
    "$BUILD/services/ghostd/engine/ghost-dump" --pid "$sp" --out "$WORK/host.img" >/dev/null 2>&1 ||
        { kill -9 "$sp" 2>/dev/null; setup_fail "cannot dump a sleep for cross/image"; }
    wait "$sp" 2>/dev/null
fi

# The guest's /init: modules, 9p root, fresh /proc /sys /dev /tmp /run in
# the chroot (the guest's own, so nothing of this machine's is touched),
# then the tests.
cat > "$WORK/initrd/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $MODS; do insmod /mods/\$m.ko || echo "insmod \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 host /host || poweroff -f
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts; mount -t tmpfs tmpfs /host/dev/shm
mount -t tmpfs tmpfs /host/run; mount -t tmpfs tmpfs /host/tmp
mount -t cgroup2 none /host/sys/fs/cgroup   # as systemd mounts it on Debian 12
chroot /host /bin/bash "$WORK/inner.sh"
poweroff -f
EOF
chmod +x "$WORK/initrd/init"
cat > "$WORK/inner.sh" <<EOF
export CAIRN_BUILD="$BUILD" CAIRN_SOURCE="$PWD" CAIRN_TESTDATA="$PWD/tests/data"
export CAIRN_DAMAGE_ROUNDS=$ROUNDS
uname -r > "$WORK/out/kernel"
cd "$BUILD"
for t in ${TESTS[*]}; do
    n=\${t//\//-}
    case \$t in
    unit/*) ./tests/test-\${t#unit/} --jobs 1 > "$WORK/out/\$n.log" 2>&1 ;;
    integration/ghost) bash "$PWD/tests/integration/test-ghost.sh" > "$WORK/out/\$n.log" 2>&1 ;;
    real/python3) bash "$PWD/tools/kernel-real.sh" python3 python3 -c "
import threading, time
n = [0]
def w():
    while True: n[0] += 1; time.sleep(0.01)
threading.Thread(target=w, daemon=True).start()
while True: print(n[0], flush=True); time.sleep(0.2)" > "$WORK/out/\$n.log" 2>&1 ;;
    real/node) bash "$PWD/tools/kernel-real.sh" node node -e \
        'let i = 0; setInterval(() => console.log(i++), 200)' > "$WORK/out/\$n.log" 2>&1 ;;
    real/perl) bash "$PWD/tools/kernel-real.sh" perl perl -e \
        '\$|=1; for (\$i = 0;; \$i++) { print "\$i\n"; select(undef, undef, undef, 0.2) }' \
        > "$WORK/out/\$n.log" 2>&1 ;;
    real/pipeline) bash "$PWD/tools/kernel-real.sh" pipeline bash -c \
        'while :; do echo x; sleep 0.2; done | while read l; do echo "got \$l"; done' \
        > "$WORK/out/\$n.log" 2>&1 ;;
    cross/image)
        { "$BUILD/services/ghostd/engine/ghost-restore" --image "$WORK/host.img" --check
          c=\$?
          "$BUILD/services/ghostd/engine/ghost-restore" --image "$WORK/host.img"
          r=\$?
          [ "\$(uname -r)" != "$(uname -r)" ] && [ \$c = 1 ] && [ \$r = 1 ]
        } > "$WORK/out/\$n.log" 2>&1 && grep -q "dumped on kernel" "$WORK/out/\$n.log" ;;
    cluster/up)
        { ip link set lo up
          ./cli/cairn cluster up --nodes 4 --name kt && up=1
          for i in \$(seq 1 60); do
              a=\$(./cli/cairn nodes --cluster kt | jq '[.nodes[] | select(.state == "alive")] | length')
              [ "\$a" = 4 ] && break
              sleep 1
          done
          echo "alive: \$a"
          m=\$(cat /sys/fs/cgroup/cairn/kt/1/cpu.max /sys/fs/cgroup/cairn/kt/1/memory.max | tr '\n' ' ')
          echo "node 1 cpu.max, memory.max: \$m"
          ./cli/cairn cluster down --name kt && down=1
          [ "\${up:-}" = 1 ] && [ "\$a" = 4 ] && [ "\$m" = "50000 100000 536870912 " ] && [ "\${down:-}" = 1 ]
        } > "$WORK/out/\$n.log" 2>&1 ;;
    esac
    echo \$? > "$WORK/out/\$n.rc"
done
EOF
(cd "$WORK/initrd" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initrd.gz") ||
    setup_fail "cannot pack the initramfs"

timeout 3600 qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 4G -cpu max \
    -kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1" -nographic -no-reboot \
    -virtfs "local,path=/,mount_tag=host,security_model=passthrough,id=host,multidevs=remap" \
    > "$WORK/out/console.log" 2>&1

kernel=$(cat "$WORK/out/kernel" 2>/dev/null || echo unknown)
passed=0 failed=0
for t in "${TESTS[@]}"; do
    n=${t//\//-}
    rc=$(cat "$WORK/out/$n.rc" 2>/dev/null || echo none)
    # what failed: criterion's [FAIL] lines, the integration test's FAIL: lines
    fails=$(grep -aE '^\[FAIL\]|^FAIL: ' "$WORK/out/$n.log" 2>/dev/null | cut -c1-300 | jq -R . | jq -sc .)
    jq -cn --arg t "$t" --arg k "$kernel" --arg rc "$rc" --argjson f "${fails:-[]}" \
        '{test:$t, kernel:$k, rc:($rc | tonumber? // $rc), failed:$f}'
    if [ "$rc" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
