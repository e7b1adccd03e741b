#!/bin/bash
# test-units.sh - the systemd units in a booted systemd (suite `systemd`).
#
# Boots Debian 12 under systemd-nspawn (a rootfs made once by debootstrap
# and cached under the build dir, or $CAIRN_SYSTEMD_CACHE; made again only
# when it lacks a package the build's programs need; each boot is
# --volatile=overlay, so the cache stays pristine), installs this build into a staging dir bind-mounted
# on /usr/local, and checks with systemctl what an operator would see:
# clusterd.service, ghostd.service and syncd.service start and answer
# (`cairn status`; `cairn lock` as root and as nobody through syncd); a
# `sleep 1000` checkpointed and restarted lands in its own
# cairn-job-N.scope in cairn.slice (the restart's JSON says so), and stays
# alive across `systemctl restart ghostd` and `systemctl stop ghostd`;
# `systemd-analyze security` rates clusterd.service below S_MAX_CLUSTERD.
# Exit 77 when this machine cannot: no root, no systemd-nspawn, no rootfs
# and no debootstrap or no mirror.
#
# nspawn runs with --keep-unit --register=no (this host's init is not
# systemd: no bus, no machined) and --private-network (the container's
# ports never meet those of tests running on the host), and without its
# seccomp filter (SYSTEMD_SECCOMP=0): every process of the container would
# inherit it, and a tracer that has a filter gets EACCES from
# PTRACE_SECCOMP_GET_FILTER, so ghost-dump refuses to checkpoint anything
# there ("seccomp filter 0 of thread N: Permission denied"). nspawn's
# default capabilities suffice: CAP_SYS_PTRACE, and CAP_SYS_ADMIN for
# clone3's set_tid (the container shares the host's user namespace).
set -u
B=${CAIRN_BUILD:?}
S_MAX_CLUSTERD=3.0
CACHE=${CAIRN_SYSTEMD_CACHE:-$B/tests/systemd}
ROOT=$CACHE/rootfs
STAGE=$B/tests/systemd/stage
NSPAWN_PID=
FAILS=0

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

cleanup() {
    [ -n "$NSPAWN_PID" ] && kill "$NSPAWN_PID" 2>/dev/null && wait "$NSPAWN_PID" 2>/dev/null
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"

# ---- the cached rootfs -----------------------------------------------------

# The Debian packages of the shared libraries the installed programs need.
lib_packages() {
    local l
    for b in "$B"/services/*/ "$B"/services/ghostd/engine/ "$B"/cli/; do
        find "$b" -maxdepth 1 -type f -executable
    done | xargs -r ldd 2>/dev/null | awk '$3 ~ /^\// {print $3}' | sort -u |
        grep -v "^$B" | while read -r l; do
            dpkg -S "$l" 2>/dev/null || dpkg -S "${l#/usr}" 2>/dev/null ||
                dpkg -S "/usr$l" 2>/dev/null
        done | cut -d: -f1 | sort -u | tr '\n' ' '
}

make_rootfs() {
    local pkgs="systemd systemd-sysv dbus $(lib_packages)" p missing=
    for p in $pkgs; do
        grep -qw -- "$p" "$ROOT/.cairn-packages" 2>/dev/null || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    command -v debootstrap >/dev/null || skip "no debootstrap (apt-get install debootstrap)"
    rm -rf "$ROOT" "$ROOT.tmp"
    mkdir -p "$CACHE"
    echo "debootstrap into $ROOT (missing:$missing): $pkgs"
    debootstrap --variant=minbase --include="$(echo $pkgs | tr ' ' ,)" \
        bookworm "$ROOT.tmp" >"$CACHE/debootstrap.log" 2>&1 ||
        skip "debootstrap failed (no mirror?): $(tail -n 3 "$CACHE/debootstrap.log")"
    echo "$pkgs" >"$ROOT.tmp/.cairn-packages"
    mv "$ROOT.tmp" "$ROOT"
}

# ---- the container ---------------------------------------------------------

stage_install() {
    rm -rf "$STAGE"
    meson install -C "$B" --no-rebuild --quiet --destdir "$STAGE" >/dev/null ||
        { echo "meson install failed"; exit 1; }
    mkdir -p "$STAGE/etc"
    cat >"$STAGE/etc/cluster.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<cluster name="sd">
  <services>
    <service name="clusterd" port="7100" pub-port="7101"/>
    <service name="ghostd" port="7110" pub-port="7111"/>
    <service name="syncd" port="7130" pub-port="7131"/>
  </services>
  <appliances>
    <appliance name="compute"><use service="clusterd"/><use service="ghostd"/><use service="syncd"/></appliance>
  </appliances>
  <nodes><node id="1" name="n1" address="127.0.0.1" appliance="compute" seed="true"/></nodes>
</cluster>
XML
}

# Runs a command inside the container (all its namespaces).
in_ct() {
    nsenter -t "$INIT" -a -- /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CAIRN_CONFIG=/etc/cairn/cluster.xml "$@"
}

boot() {
    SYSTEMD_SECCOMP=0 systemd-nspawn --boot -D "$ROOT" --volatile=overlay --keep-unit \
        --register=no --private-network -M "cairn-sd-$$" \
        --bind-ro="$STAGE/usr/local:/usr/local" \
        --bind-ro="$STAGE/etc:/etc/cairn" --console=pipe \
        >"$B/tests/systemd/boot.log" 2>&1 </dev/null &
    NSPAWN_PID=$!
    INIT=
    for _ in $(seq 300); do
        INIT=$(cat /proc/"$NSPAWN_PID"/task/*/children 2>/dev/null | awk '{print $1}')
        [ -n "$INIT" ] && in_ct systemctl is-system-running --wait >/dev/null 2>&1 && break
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    state=$(in_ct systemctl is-system-running 2>&1)
    [ "$state" = running ] || [ "$state" = degraded ] || {
        echo "container did not boot (state '$state'):"; tail -n 20 "$B/tests/systemd/boot.log"; exit 1; }
    in_ct ldconfig
    ok "booted systemd ($state), init pid $INIT"
}

# A sanitized build: LeakSanitizer's scan at exit stops the threads with
# ptrace, which clusterd's SystemCallFilter= refuses (a leak check runs in
# the other suites); the drop-in says so and only turns leak checks off.
sanitizer_dropins() {
    for u in clusterd ghostd syncd; do
        in_ct mkdir -p /run/systemd/system/$u.service.d
        in_ct sh -c "printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
            >/run/systemd/system/$u.service.d/test.conf"
    done
    in_ct systemctl daemon-reload
}

# ---- the checks ------------------------------------------------------------

start_units() {
    in_ct systemctl start clusterd.service ghostd.service syncd.service ||
        { in_ct journalctl -b --no-pager -n 40; exit 1; }
    for u in clusterd ghostd syncd; do
        [ "$(in_ct systemctl is-active $u)" = active ] && ok "$u active" ||
            fail "$u is $(in_ct systemctl is-active $u)"
    done
    in_ct cairn status | grep -q '"node"' && ok "cairn status answers" ||
        fail "cairn status: $(in_ct cairn status 2>&1)"
    in_ct journalctl -u ghostd --no-pager -o cat | grep placement
}

# Starts sleep 1000 as a unit of the container, checkpoints and restarts it.
checkpoint_restart() {
    # stdout and stderr /dev/null: the journal's socket cannot be checkpointed.
    in_ct systemd-run --unit=cairn-test-sleep -p StandardOutput=null \
        -p StandardError=null /bin/sleep 1000 >/dev/null
    PID=$(in_ct systemctl show -P MainPID cairn-test-sleep)
    in_ct cairn checkpoint "$PID" --dir /var/tmp/job1 >/dev/null ||
        { fail "checkpoint $PID: $(in_ct cairn checkpoint "$PID" --dir /var/tmp/job1 2>&1)"; return 1; }
    REPLY=$(in_ct cairn restart /var/tmp/job1) || { fail "restart: $REPLY"; return 1; }
    echo "restart: $REPLY"
    RPID=$(echo "$REPLY" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
    CG=$(echo "$REPLY" | sed -n 's/.*"cgroup":"\([^"]*\)".*/\1/p')
    case "$CG" in
        /cairn.slice/cairn-job-*.scope) ok "restored $RPID into $CG" ;;
        *) fail "restored into '$CG', not a cairn-job scope" ;;
    esac
    in_ct grep -q "cairn-job-.*scope" /proc/"$RPID"/cgroup && ok "/proc/$RPID/cgroup agrees" ||
        fail "/proc/$RPID/cgroup: $(in_ct cat /proc/"$RPID"/cgroup)"
}

alive_after() {
    local what=$1
    in_ct systemctl "$what" ghostd.service
    # (minbase has no kill(1): /proc says whether it lives)
    if in_ct grep -qx sleep /proc/"$RPID"/comm 2>/dev/null &&
        ! in_ct grep -q '^State:.*Z' /proc/"$RPID"/status; then
        ok "restored sleep $RPID alive after systemctl $what ghostd"
    else
        fail "restored sleep $RPID died on systemctl $what ghostd"
    fi
}

# syncd under its sandbox: root's lock (the node cache's table made, a
# process's pidfd watched) and another user's (its table chowned to it).
sync_locks() {
    local out
    out=$(in_ct cairn lock --timeout 10000 --print-token sd-root -- true 2>&1) &&
        ok "cairn lock as root under syncd.service: $out" ||
        fail "cairn lock as root: $out"
    out=$(in_ct setpriv --reuid=65534 --regid=65534 --clear-groups \
        cairn lock --timeout 10000 --print-token sd-nobody -- true 2>&1) &&
        ok "cairn lock as nobody under syncd.service: $out" ||
        fail "cairn lock as nobody: $out"
    out=$(in_ct sh -c 'find /run/cairn -name uid-65534.tab -exec stat -c "%n %u %a" {} +' 2>&1)
    case "$out" in
        *" 65534 600") ok "nobody's table is nobody's, 0600: $out" ;;
        *) fail "nobody's table: '$out' ($(in_ct find /run/cairn 2>&1 | tr '\n' ' '))" ;;
    esac
    out=$(in_ct cairn sync show sd-root 2>&1)
    echo "$out" | grep -q '"kind":"mutex"' && ok "cairn sync show sd-root" ||
        fail "cairn sync show: $out"
}

security_score() {
    local out score
    for u in clusterd ghostd syncd; do
        out=$(in_ct systemd-analyze security $u.service 2>&1 | tail -n 1)
        echo "$out"
        [ $u = clusterd ] || continue
        score=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
        awk -v s="$score" -v m="$S_MAX_CLUSTERD" 'BEGIN { exit !(s != "" && s < m) }' &&
            ok "clusterd exposure $score < $S_MAX_CLUSTERD" ||
            fail "clusterd exposure '$score' is not below $S_MAX_CLUSTERD"
    done
}

make_rootfs
stage_install
boot
sanitizer_dropins
start_units
checkpoint_restart && { alive_after restart; alive_after stop; }
sync_locks
security_score
[ "$FAILS" = 0 ] || { in_ct journalctl -b --no-pager -n 30 -u ghostd; echo "$FAILS failed"; exit 1; }
echo "all passed"
