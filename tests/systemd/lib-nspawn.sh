# lib-nspawn.sh - a booted Debian 12 systemd with this build installed, for
# the `systemd` suite's scripts (sourced; README.md in this folder).
#
# Three pieces, each a function the scripts call in this order:
#
#   sd_rootfs    the Debian 12 tree: `debootstrap --variant=minbase` of
#                systemd, dbus and the Debian packages of every shared
#                library the installed programs load, from the Debian
#                mirror this machine's apt sources name. Cached outside the
#                build and clone dirs, in $SD_CACHE/bookworm/<key>/rootfs,
#                the key a hash of the suite, variant and package list, so
#                a build that needs another library gets a tree of its own
#                and every build dir and clone shares the same one. Made
#                in a temp dir and renamed into place under an exclusive
#                lock (two runs racing: one builds, the other waits and
#                uses it); each run then holds a shared lock on it, so the
#                pruning of trees unused for SD_PRUNE_DAYS never removes a
#                tree a run has booted.
#   sd_stage     `meson install --destdir` into a per-run dir, plus the
#                cluster description the daemons read (/etc/cairn).
#   sd_boot      `systemd-nspawn --boot` of the cached tree with
#                --volatile=overlay (every write goes to a tmpfs: the cache
#                is never dirtied) and the run's install bind-mounted
#                read-only on /usr/local; waits for multi-user.
#
# Then `in_ct CMD...` runs CMD inside the container. It is nsenter into all
# the namespaces of the container's init, not `systemd-run --machine` or
# `machinectl shell`: those need systemd-machined on the host (and the
# host's own bus), and this machine's init is not systemd (nor need a CI
# host's be). nsenter needs nothing but the init's pid, which nspawn's
# child is; the command runs as root of the container, in its cgroup
# namespace and its private network, with the container's PATH.
#
# nspawn runs with --keep-unit --register=no (no host bus, no machined)
# and --private-network (a loopback only: the container's ports never meet
# those of the tests running on the host), and without its seccomp filter
# (SYSTEMD_SECCOMP=0): every process of the container would inherit it,
# and a tracer that has a filter gets EACCES from PTRACE_SECCOMP_GET_FILTER,
# so ghost-dump would refuse to checkpoint anything there. nspawn's default
# capabilities suffice: CAP_SYS_PTRACE, and CAP_SYS_ADMIN for clone3's
# set_tid (the container shares the host's user namespace).
#
# Exit 77 (skip) with the reason when the machine cannot: no root, no
# systemd-nspawn, no debootstrap with a cold cache, the archive unreachable.
# Everything else that goes wrong is a failure (exit 1).

SD_SUITE=bookworm
# The packages every tree has: an init, its bus, and the runtime libraries
# the brief of this suite names, with gcc 12's sanitizer runtimes, so that
# build-dev and a -Dsanitize=true build share one tree. sd_rootfs adds the
# package of any other library the installed programs load.
SD_BASE_PACKAGES="systemd systemd-sysv dbus libzmq5 libprotobuf-c1 libxml2
    libjansson4 libsystemd0 libasan8 libubsan1"
SD_CACHE=${CAIRN_SYSTEMD_CACHE:-/var/cache/cairn-test}
SD_PRUNE_DAYS=14
SD_BOOT_TIMEOUT=${CAIRN_SYSTEMD_BOOT_TIMEOUT:-180} # s to reach multi-user (10 s idle, 60 s+ at a load of 40)

B=${CAIRN_BUILD:?CAIRN_BUILD names the build dir}
SD_RUN=             # this run's dir (install, description, logs)
SD_NSPAWN_PID=      # systemd-nspawn, our child
SD_INIT=            # the container's init, as a host pid
SD_MACHINE=         # the machine's name, also its hostname and node name
SD_ROOT=            # the cached tree booted
FAILS=0

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
die() { echo "ERROR: $*"; exit 1; }

# sd_finish: the script's last line; exit 1 when a check failed.
sd_finish() {
    [ "$FAILS" = 0 ] || { echo "$FAILS failed (this run's logs: $SD_RUN)"; exit 1; }
    echo "all passed"
}

sd_require() {
    [ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn)"
    command -v systemd-nspawn >/dev/null ||
        skip "no systemd-nspawn (apt-get install systemd-container)"
    command -v jq >/dev/null || die "no jq (tools/deps.sh installs it)"
    mkdir -p "$B/tests/systemd" && SD_RUN=$(mktemp -d "$B/tests/systemd/run.XXXXXX") ||
        die "cannot make a run dir in $B/tests/systemd"
    SD_MACHINE=cairn-sd-${SD_RUN##*.}
    SD_MACHINE=${SD_MACHINE,,}
    trap sd_cleanup EXIT
    trap 'exit 143' TERM INT
}

# Halts the container (SIGTERM to nspawn: a clean poweroff; SIGKILL after
# 20 s) and removes this run's dir, or on a failure keeps its logs there
# (boot.log: the container's console; journal.txt: its journal).
sd_cleanup() {
    local rc=$? i
    if [ -n "$SD_INIT" ] && [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        in_ct journalctl -b --no-pager >"$SD_RUN/journal.txt" 2>&1
    fi
    if [ -n "$SD_NSPAWN_PID" ] && kill "$SD_NSPAWN_PID" 2>/dev/null; then
        for i in $(seq 200); do
            kill -0 "$SD_NSPAWN_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SD_NSPAWN_PID" 2>/dev/null
        wait "$SD_NSPAWN_PID" 2>/dev/null
    fi
    [ -n "$SD_RUN" ] || return
    if [ "$rc" = 0 ]; then
        rm -rf "$SD_RUN"
    else
        rm -rf "$SD_RUN/stage"
        echo "logs kept in $SD_RUN"
    fi
}

# ---- the cached tree ------------------------------------------------------

# The first Debian mirror the apt sources name for $SD_SUITE (one-line
# sources.list or deb822 .sources), $CAIRN_DEBIAN_MIRROR when set.
sd_mirror() {
    local f m
    [ -n "${CAIRN_DEBIAN_MIRROR:-}" ] && { echo "$CAIRN_DEBIAN_MIRROR"; return; }
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        m=$(awk -v s="$SD_SUITE" '$1 == "deb" {
                i = 2; if ($2 ~ /^\[/) while (i <= NF && $i !~ /\]$/) i++
                if ($2 ~ /^\[/) i++
                if ($(i + 1) == s) { print $i; exit } }' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        m=$(awk -v s="$SD_SUITE" 'BEGIN { RS = "" } {
                t = u = su = ""; en = "yes"; n = split($0, L, "\n")
                for (i = 1; i <= n; i++) {
                    l = L[i]
                    if (l ~ /^#/) continue
                    if (sub(/^Types:[ \t]*/, "", l)) t = l
                    else if (sub(/^URIs:[ \t]*/, "", l)) u = l
                    else if (sub(/^Suites:[ \t]*/, "", l)) su = l
                    else if (sub(/^Enabled:[ \t]*/, "", l)) en = l
                }
                if ((" " t " ") ~ / deb / && en != "no" && (" " su " ") ~ (" " s " ")) {
                    split(u, U, " "); print U[1]; exit
                } }' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    echo http://deb.debian.org/debian
}

# The Debian packages of the shared libraries the staged programs and
# libraries load (their own libraries, staged, excepted), one per line;
# "?:PATH" for a library no package holds. dpkg knows a file by the path
# its package shipped it at, /lib or /usr/lib (merged /usr), and maybe not
# by ldd's symlink: each library is asked under all three, in one dpkg -S
# (one read of its database, not one per library).
sd_lib_packages() {
    local stage=$1 libs l
    libs=$(find "$stage" -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
        xargs -0 -r ldd 2>/dev/null | awk '$3 ~ /^\// {print $3}' | sort -u)
    [ -n "$libs" ] || return 0
    for l in $libs; do
        echo "$l $(readlink -f "$l") $([ "${l#/usr/}" = "$l" ] && echo "/usr$l" || echo "${l#/usr}")"
    done | awk -v db="$(dpkg -S $(for l in $libs; do
            echo "$l"; readlink -f "$l"; [ "${l#/usr/}" = "$l" ] && echo "/usr$l" || echo "${l#/usr}"
        done | sort -u) 2>/dev/null)" '
        BEGIN { n = split(db, L, "\n")
                for (i = 1; i <= n; i++) { p = index(L[i], ": "); if (p) pkg[substr(L[i], p + 2)] = substr(L[i], 1, p - 1) } }
        { for (i = 1; i <= NF; i++) if ($i in pkg) { print pkg[$i]; next }
          print "?:" $1 }' | sed 's/:[a-z0-9]*$//; s/, /\n/g' | sort -u
}

# Drops the trees no run used for SD_PRUNE_DAYS, unless a run holds them.
sd_prune() {
    local d fd
    for d in "$SD_CACHE/$SD_SUITE"/*/; do
        d=${d%/}
        [ "$d" = "$SD_DIR" ] || [ ! -f "$d/last-used" ] && continue
        [ -n "$(find "$d/last-used" -mtime +"$SD_PRUNE_DAYS")" ] || continue
        exec {fd}>"$d.lock"
        flock -n -x "$fd" && { echo "pruning $d (unused for $SD_PRUNE_DAYS days)"; rm -rf "$d"; }
        exec {fd}>&-
    done
}

# Makes $SD_DIR/rootfs with debootstrap (the exclusive lock held).
sd_debootstrap() {
    local mirror tmp t0 t1
    command -v debootstrap >/dev/null ||
        skip "no debootstrap and no cached tree (apt-get install debootstrap)"
    mirror=$(sd_mirror)
    wget -q -T 20 -t 2 -O /dev/null "$mirror/dists/$SD_SUITE/Release" ||
        skip "the Debian archive is unreachable ($mirror/dists/$SD_SUITE/Release)"
    # A run killed while it made the tree left its temp dir (the lock is
    # ours: nobody else is making this one).
    rm -rf "$SD_DIR".tmp.*
    tmp=$(mktemp -d "$SD_DIR.tmp.XXXXXX") || die "mktemp in $SD_CACHE"
    echo "debootstrap $SD_SUITE from $mirror into $SD_DIR ($SD_PACKAGES)"
    t0=$(date +%s)
    if ! debootstrap --variant=minbase --include="$(echo $SD_PACKAGES | tr ' ' ,)" \
            "$SD_SUITE" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        cp "$tmp/debootstrap.log" "$SD_RUN/debootstrap.log"
        rm -rf "$tmp"
        die "debootstrap failed ($SD_RUN/debootstrap.log): $(tail -n 3 "$SD_RUN/debootstrap.log")"
    fi
    t1=$(date +%s)
    echo "$SD_PACKAGES" >"$tmp/packages"
    echo "$((t1 - t0))" >"$tmp/debootstrap-seconds"
    echo "$mirror" >"$tmp/mirror"
    rm -rf "$SD_DIR"
    mv -T "$tmp" "$SD_DIR" || { rm -rf "$tmp"; die "cannot rename $tmp to $SD_DIR"; }
    echo "debootstrap took $((t1 - t0)) s"
}

# The tree for this build's packages, made when missing; SD_ROOT names it.
# Needs sd_stage first (the packages come from what it installed).
sd_rootfs() {
    local extra key
    extra=$(sd_lib_packages "$SD_RUN/stage")
    case "$extra" in *'?:'*)
        die "no Debian package holds these libraries: $(echo "$extra" | grep '^?' | tr '\n' ' ')" ;;
    esac
    SD_PACKAGES=$(printf '%s\n' $SD_BASE_PACKAGES $extra | sort -u | tr '\n' ' ')
    SD_PACKAGES=${SD_PACKAGES% }
    key=$(echo "$SD_SUITE minbase $SD_PACKAGES" | sha256sum | cut -c1-16)
    SD_DIR=$SD_CACHE/$SD_SUITE/$key
    SD_ROOT=$SD_DIR/rootfs
    mkdir -p "$SD_CACHE/$SD_SUITE" || die "cannot make $SD_CACHE/$SD_SUITE"
    exec {SD_LOCK}>"$SD_DIR.lock"
    flock -s "$SD_LOCK"
    if [ ! -d "$SD_ROOT" ]; then
        flock -u "$SD_LOCK"
        flock -x "$SD_LOCK"
        [ -d "$SD_ROOT" ] || sd_debootstrap
        flock -s "$SD_LOCK"
    fi
    touch "$SD_DIR/last-used"
    echo "tree $SD_ROOT (debootstrap took $(cat "$SD_DIR/debootstrap-seconds" 2>/dev/null || echo ?) s when made)"
    sd_prune
}

# ---- the run's install ----------------------------------------------------

# The description of a one-node cluster named after the machine (the
# daemons pick their node by hostname, as on a real host) running the
# description's SERVICES (a space-separated list: `sched` for whichever
# policy runs), with the scheduler's probes.
sd_description() {
    local name=$1 services=$2 s port=7100 list= uses=
    for s in $services; do
        list="$list    <service name=\"$s\" port=\"$port\" pub-port=\"$((port + 1))\"/>
"
        uses="$uses<use service=\"$s\"/>"
        port=$((port + 10))
    done
    cat <<XML
<?xml version="1.0" encoding="UTF-8"?>
<cluster name="sd">
  <services>
$list  </services>
  <appliances>
    <appliance name="compute">$uses</appliance>
  </appliances>
  <nodes><node id="1" name="$name" address="127.0.0.1" appliance="compute" seed="true"/></nodes>
  <scheduler policy="rr">
    <probe name="cpu" period-ms="1000"/>
    <probe name="memory" period-ms="1000"/>
    <probe name="jobs" period-ms="1000"/>
  </scheduler>
</cluster>
XML
}

# Installs this build into $SD_RUN/stage and writes the description for
# SERVICES (the description's names, space-separated) into
# $SD_RUN/stage/etc/cairn.
sd_stage() {
    local services=$1 prefix
    prefix=$(meson introspect "$B" --buildoptions | jq -r '.[] | select(.name == "prefix") | .value')
    case "$prefix" in
        /usr/local|/usr/local/*|/opt/*) ;;
        *) skip "prefix $prefix: this suite bind-mounts the install on /usr/local or /opt (meson setup --prefix)" ;;
    esac
    SD_PREFIX=$prefix
    meson install -C "$B" --no-rebuild --quiet --destdir "$SD_RUN/stage" >"$SD_RUN/install.log" 2>&1 ||
        die "meson install failed: $(tail -n 5 "$SD_RUN/install.log")"
    mkdir -p "$SD_RUN/stage/etc/cairn"
    sd_description "$SD_MACHINE" "$services" >"$SD_RUN/stage/etc/cairn/cluster.xml"
    "$SD_RUN/stage$prefix/bin/cairn" config check "$SD_RUN/stage/etc/cairn/cluster.xml" >/dev/null 2>&1 ||
        LD_LIBRARY_PATH=$(dirname "$(find "$SD_RUN/stage" -name 'libcairn.so*' | head -n 1)") \
            "$SD_RUN/stage$prefix/bin/cairn" config check "$SD_RUN/stage/etc/cairn/cluster.xml" >/dev/null ||
        die "the test's description does not validate: $SD_RUN/stage/etc/cairn/cluster.xml"
}

# ---- the container --------------------------------------------------------

# Runs a command inside the container (all its namespaces), as its root.
in_ct() {
    nsenter -t "$SD_INIT" -a -- /usr/bin/env -i \
        PATH=$SD_PREFIX/sbin:$SD_PREFIX/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CAIRN_CONFIG=/etc/cairn/cluster.xml "$@"
}

# The container's init among nspawn's children: pid 1 of a pid namespace
# of its own (nspawn's first child, which makes it, is not, and exits).
sd_init_of() {
    local p
    for p in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        awk '$1 == "NSpid:" && NF == 3 && $3 == 1 {found = 1} END {exit !found}' \
            /proc/"$p"/status 2>/dev/null && { echo "$p"; return; }
    done
}

# The container's binds: the run's install on the prefix and its
# description on /etc/cairn, unless the script set SD_BINDS (an array of
# nspawn options: test-package.sh installs .debs instead).
sd_boot() {
    local binds=(--bind-ro="$SD_RUN/stage$SD_PREFIX:$SD_PREFIX"
                 --bind-ro="$SD_RUN/stage/etc/cairn:/etc/cairn")
    [ -n "${SD_BINDS+set}" ] && binds=("${SD_BINDS[@]}")
    SYSTEMD_SECCOMP=0 systemd-nspawn --boot -D "$SD_ROOT" --volatile=overlay \
        --keep-unit --register=no --private-network -M "$SD_MACHINE" \
        "${binds[@]}" --console=pipe \
        >"$SD_RUN/boot.log" 2>&1 </dev/null &
    SD_NSPAWN_PID=$!
    local state= t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$SD_BOOT_TIMEOUT" ]; do
        kill -0 "$SD_NSPAWN_PID" 2>/dev/null || break
        [ -n "$SD_INIT" ] || SD_INIT=$(sd_init_of "$SD_NSPAWN_PID")
        if [ -n "$SD_INIT" ]; then
            state=$(in_ct systemctl is-system-running 2>/dev/null)
            case "$state" in running|degraded) break ;; esac
        fi
        sleep 0.1
    done
    case "$state" in
        running) ;;
        degraded) echo "booted degraded: $(in_ct systemctl --failed --no-legend --plain | tr '\n' ';')" ;;
        *) die "the container did not boot in ${SD_BOOT_TIMEOUT} s (state '$state'): $(tail -n 20 "$SD_RUN/boot.log")" ;;
    esac
    # The install's libraries (libcairn) in the container's ld.so.cache.
    in_ct ldconfig || die "ldconfig in the container failed"
    ok "booted $SD_MACHINE ($state) in $((SECONDS - t0)) s, init pid $SD_INIT, tree $SD_ROOT"
}

# A sanitized build: LeakSanitizer's scan at exit stops the threads with
# ptrace, which the sandboxed units' SystemCallFilter= refuses (the other
# suites check for leaks); a drop-in per unit turns leak checks off only.
sd_sanitizer_dropins() {
    local u
    meson introspect "$B" --buildoptions |
        jq -e '.[] | select(.name == "sanitize") | .value == true' >/dev/null || return 0
    for u in "$@"; do
        in_ct mkdir -p "/run/systemd/system/$u.service.d"
        in_ct sh -c "printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
            >/run/systemd/system/$u.service.d/sanitizer.conf"
    done
    in_ct systemctl daemon-reload
}

# The units this build installed (service names, without .service).
sd_installed_units() {
    find "$SD_RUN/stage$SD_PREFIX/lib/systemd/system" -name '*.service' -printf '%f\n' |
        sed 's/\.service$//' | sort
}
