#!/bin/bash
# deps.sh - installs, with apt-get, the Debian packages Cairn needs to
# build, test and demo that are missing, and nothing else. Sourced by
# tools/demo.sh and tools/test.sh so the package list lives in one place.
#
# It sets no shell options: they would become its caller's (a `set -e`
# here made tools/test.sh exit with meson's failure before printing the
# `N passed, N failed` line CI reads). cairn_install_deps returns non-zero
# when apt-get fails.
#
# What it promises a newcomer: when every package is there, no apt-get call
# at all (not even `update`) and no output. Otherwise one line naming the
# missing packages before anything is done, `apt-get install --no-upgrade`
# of those only (never `apt-get upgrade`), apt's own output in a log file,
# and one line at the end saying what was installed and where the log is.
# A -dev package may need its installed library at the very same version
# (libsystemd-dev pins libsystemd0, which pins systemd): apt-get -s tells
# which installed packages the install would upgrade, and that list is
# printed before apt runs, so nobody learns it afterwards from a changelog.

CAIRN_PACKAGES=(
    build-essential meson ninja-build pkg-config python3
    libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
    libxml2-dev libjansson-dev libsystemd-dev libcriterion-dev libmicrohttpd-dev
    jq iproute2 procps psmisc util-linux
)
# What only the test suite needs (tools/test.sh adds them): the systemd
# suite boots Debian 12 under systemd-nspawn from a debootstrap'd rootfs;
# security-wire captures the links with tcpdump; the fuzz suite builds
# with clang, whose libFuzzer (and sanitizer runtimes) Debian 12 ships in
# libclang-rt-14-dev, only recommended by clang-14 (and recommendations
# are not installed here). ghost-sqlite checkpoints a sqlite3 shell in
# the middle of a transaction.
CAIRN_TEST_PACKAGES=(debootstrap systemd-container tcpdump clang libclang-rt-14-dev sqlite3)
# The kmod suite (tests/kmod): the Debian kernel it boots in qemu, its
# headers for Kbuild, qemu and a static busybox for the initramfs.
CAIRN_TEST_PACKAGES+=(linux-image-amd64 linux-headers-amd64 qemu-system-x86 busybox-static cpio)
# ghost-programs checkpoints real servers (redis-server, with redis-cli from
# redis-tools; python3's http.server) and the engine's network lock for
# TCP connections runs nft (docs/ghost.md, "Sockets: TCP and UDP").
CAIRN_TEST_PACKAGES+=(nftables redis-server redis-tools)
# The systemd suite's package test (tests/systemd/test-package.sh) builds
# the .debs with dpkg-buildpackage (debian/control's Build-Depends: dh-dkms
# for cairn-dkms, scdoc for the man pages) and runs lintian on them.
CAIRN_TEST_PACKAGES+=(dpkg-dev debhelper dh-dkms scdoc lintian git)
# metrics scrapes every daemon's /metrics with curl; dashboard drives
# chromium with node (puppeteer-core: cairn_install_npm_deps below).
CAIRN_TEST_PACKAGES+=(curl chromium nodejs)
# What only bench/sync.sh needs (it adds them itself): its baselines, Redis 7
# and etcd 3.4 (the servers it starts inside the cluster's namespaces), and
# the libraries of their clients, hiredis and gRPC's C core (etcd's native
# protocol). Installing redis-server on a host that runs systemd also
# enables Debian's own redis service on 127.0.0.1:6379; the bench does not
# use it.
CAIRN_BENCH_PACKAGES=(redis-server etcd-server libhiredis-dev libgrpc-dev)

# cairn_missing_packages: the packages of CAIRN_PACKAGES dpkg does not
# list as installed, space-separated on stdout.
cairn_missing_packages() {
    local p missing=()
    for p in "${CAIRN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    echo "${missing[*]}"
}

# cairn_forced_upgrades LOG PACKAGE...: the installed packages that
# installing PACKAGE... would upgrade, from apt-get's simulation (an
# `Inst NAME [OLD-VERSION] (NEW ...)` line is an upgrade; a new package has
# no [OLD-VERSION]). The simulation's output is appended to LOG.
cairn_forced_upgrades() {
    local log=$1; shift
    apt-get -s install --no-upgrade --no-install-recommends "$@" 2>>"$log" \
        | tee -a "$log" | awk '$1 == "Inst" && $3 ~ /^\[/ { printf "%s%s", sep, $2; sep = " " }'
}

cairn_install_deps() {
    local missing sudo="" log upgrades rc
    missing=$(cairn_missing_packages)
    [ -z "$missing" ] && return 0
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log=${CAIRN_APT_LOG:-$(mktemp -t cairn-apt.XXXXXX)}
    echo "deps: installing missing packages: $missing (apt-get output in $log)" >&2
    # shellcheck disable=SC2086  # $missing is a list of package names
    {
        $sudo apt-get update -qq &&
            upgrades=$(cairn_forced_upgrades "$log" $missing) &&
            { [ -z "$upgrades" ] ||
                echo "deps: installing them also upgrades installed packages: $upgrades" >&3; } &&
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-upgrade \
                --no-install-recommends $missing
    } 3>&2 >>"$log" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "deps: apt-get failed (exit $rc) installing: $missing; last lines of $log:" >&2
        tail -n 5 "$log" >&2
        return 1
    fi
    echo "deps: installed $missing${upgrades:+ (upgraded: $upgrades)}; apt-get output in $log" >&2
}

# cairn_install_npm_deps: test-dashboard's browser driver, puppeteer-core
# as pinned by tests/dashboard/package-lock.json, installed with `npm ci`
# into tests/dashboard/node_modules (kept out of git) when it is not there
# yet; Debian's npm first if there is no npm (nodejs from Debian has none).
# Silent when all is there; otherwise one line, npm's output in a log.
# Returns non-zero when it cannot install (the test then skips, saying so).
cairn_install_npm_deps() {
    local dir log sudo=""
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/dashboard"
    [ -d "$dir/node_modules/puppeteer-core" ] && return 0
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log=${CAIRN_NPM_LOG:-$(mktemp -t cairn-npm.XXXXXX)}
    echo "deps: installing puppeteer-core into $dir/node_modules (npm output in $log)" >&2
    if ! command -v npm >/dev/null; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-upgrade \
            --no-install-recommends npm >>"$log" 2>&1 ||
            { echo "deps: apt-get could not install npm; see $log" >&2; return 1; }
    fi
    npm ci --prefix "$dir" --no-audit --no-fund >>"$log" 2>&1 ||
        { echo "deps: npm ci failed in $dir; see $log" >&2; return 1; }
}
