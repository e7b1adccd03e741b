#!/bin/bash
# test-package.sh - the Debian packages, built and installed as an operator
# would: `dpkg-buildpackage -us -uc -b` of a clean copy of the tree,
# lintian, libcairn-dev compiled against, then the .debs installed with
# dpkg into the systemd suite's Debian 12 tree booted under
# systemd-nspawn --boot (lib-nspawn.sh), where the units must be there,
# disabled and stopped, start one by one and serve (`cairn status`, and
# each unit's serves_ check of services.sh); an operator's description
# survives a reinstall and a purge, the one the package wrote goes with a
# purge (docs/install.md, debian/cairn-services.postinst).
#
# Skips (77) with the reason without root, systemd-nspawn, the packaging
# tools (dpkg-buildpackage, debhelper, dh-dkms, scdoc, lintian: tools/
# deps.sh installs them for the test suite) or a git checkout to copy.
# CAIRN_PACKAGE_DEBS=DIR uses the .debs (and .changes) already in DIR
# instead of building them (a rerun while working on the checks).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib-nspawn.sh"
S=${CAIRN_SOURCE:?CAIRN_SOURCE names the source dir}

sd_require
for t in dpkg-buildpackage dh dh_dkms scdoc lintian git gcc pkg-config; do
    command -v "$t" >/dev/null ||
        skip "no $t (apt-get install dpkg-dev debhelper dh-dkms scdoc lintian git build-essential pkg-config)"
done
git -C "$S" rev-parse --git-dir >/dev/null 2>&1 || skip "$S is not a git checkout"

VERSION=$(cd "$S" && dpkg-parsechangelog -S Version) || die "debian/changelog does not parse"
DEBS=$SD_RUN/debs
BIN_PKGS="cairn-services cairn-cli libcairn0 libcairn-dev cairn-dkms"

# ---- build ----------------------------------------------------------------

# The tree as git sees it (tracked and new files, not the ignored build
# dirs), in a dir of its own: what a clean clone builds.
build_packages() {
    local src=$SD_RUN/build/cairn-$VERSION t0=$SECONDS p
    mkdir -p "$src" "$DEBS" || die "mkdir $src"
    (cd "$S" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        xargs -0 -r cp --parents -t "$src") || die "cannot copy the tree to $src"
    if ! (cd "$src" && nice dpkg-buildpackage -us -uc -b -j2) >"$SD_RUN/build.log" 2>&1; then
        fail "dpkg-buildpackage failed: $(tail -n 15 "$SD_RUN/build.log")"
        return 1
    fi
    mv "$SD_RUN/build"/*.deb "$SD_RUN/build"/*.changes "$SD_RUN/build"/*.buildinfo "$DEBS"/ ||
        die "cannot move the packages"
    rm -rf "$SD_RUN/build"
    ok "dpkg-buildpackage -us -uc -b in $((SECONDS - t0)) s"
}

if [ -n "${CAIRN_PACKAGE_DEBS:-}" ]; then
    mkdir -p "$DEBS" &&
        cp "$CAIRN_PACKAGE_DEBS"/*.deb "$CAIRN_PACKAGE_DEBS"/*.changes \
            "$CAIRN_PACKAGE_DEBS"/*.buildinfo "$DEBS"/ ||
        die "no .debs in $CAIRN_PACKAGE_DEBS"
    ok "packages from $CAIRN_PACKAGE_DEBS"
else
    build_packages || sd_finish
fi
for p in $BIN_PKGS; do
    ls "$DEBS/${p}_${VERSION}_"*.deb >/dev/null 2>&1 || fail "no $p package built"
done
[ "$FAILS" = 0 ] || sd_finish

# ---- lintian: no tag at all, pedantic and informational included -----------

out=$(lintian -I --pedantic "$DEBS"/*.changes 2>&1 | grep -v 'running with root privileges')
if [ -n "$out" ]; then
    fail "lintian: $(head -n 20 <<<"$out" | tr '\n' ';')"
else
    ok "lintian -I --pedantic: no tag"
fi

# ---- libcairn-dev: a program built with pkg-config and run ------------------

check_dev() {
    local d=$SD_RUN/dev pcdir cflags libs
    mkdir -p "$d/root" &&
        dpkg-deb -x "$DEBS/libcairn0_${VERSION}_"*.deb "$d/root" &&
        dpkg-deb -x "$DEBS/libcairn-dev_${VERSION}_"*.deb "$d/root" ||
        { fail "cannot unpack libcairn0/libcairn-dev"; return; }
    pcdir=$(dirname "$(find "$d/root" -name cairn.pc)")
    cflags=$(PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$d/root pkg-config --cflags cairn) &&
        libs=$(PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$d/root pkg-config --libs cairn) ||
        { fail "pkg-config cairn: $cflags"; return; }
    # Every public header, then the description loader on a good and a
    # bad description.
    cat >"$d/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <cairn/client.h>
#include <cairn/description.h>
#include <cairn/error.h>
#include <cairn/hooks.h>
#include <cairn/security.h>
#include <cairn/sync.h>
#include <cairn/wire.h>
#include <cairn/clusterd.pb-c.h>

static const char good[] =
    "<cluster name='dev'><services><service name='clusterd' port='7100'/></services>"
    "<appliances><appliance name='a'><use service='clusterd'/></appliance></appliances>"
    "<nodes><node id='1' name='n1' address='127.0.0.1' appliance='a'/></nodes></cluster>";

int main(void)
{
    cairn_description_t *d = NULL;
    cairn_error_t err = {0};

    if (cairn_description_load_memory(good, strlen(good), "good", &d, &err) < 0) {
        printf("good refused: %s\n", err.message);
        return 1;
    }
    if (cairn_description_n_nodes(d) != 1 || strcmp(cairn_description_cluster(d), "dev")) {
        printf("good loaded wrong\n");
        return 1;
    }
    d = cairn_description_free(d);
    if (cairn_description_load_memory("<cluster/>", 10, "bad", &d, &err) == 0) {
        printf("bad accepted\n");
        return 1;
    }
    printf("ok %s\n", err.message);
    return 0;
}
C
    gcc -Wall -Werror -o "$d/use" "$d/use.c" $cflags $libs >"$d/cc.log" 2>&1 ||
        { fail "a program using libcairn-dev does not build: $(head -n 5 "$d/cc.log")"; return; }
    out=$(LD_LIBRARY_PATH=$(dirname "$(find "$d/root" -name 'libcairn.so.0')") "$d/use" 2>&1) ||
        { fail "the libcairn-dev program failed: $out"; return; }
    ok "libcairn-dev: every header, pkg-config cairn, the loader ($out)"
}
check_dev

# ---- the booted tree ------------------------------------------------------

# The tree holds the packages of every library the .debs' programs load
# (the same tree as the suite's other tests when those are the same).
mkdir -p "$SD_RUN/stage" || die "mkdir stage"
for p in libcairn0 cairn-cli cairn-services; do
    dpkg-deb -x "$DEBS/${p}_${VERSION}_"*.deb "$SD_RUN/stage" || die "dpkg-deb -x $p"
done
SD_PREFIX=/usr
sd_rootfs
SD_BINDS=(--bind-ro="$DEBS:/srv/cairn-debs")
sd_boot

# services.sh's serves_NAME checks, without the lifecycle test's table.
declare -A SD_SERVICE=()
sd_service() { SD_SERVICE[$1]=$1; }
SD_JOB=
. "$here/services.sh"
UNITS="clusterd ghostd dsmd syncd probed sched-rr"

debs() {
    local p out=
    for p in "$@"; do out="$out /srv/cairn-debs/$(basename "$DEBS/${p}_${VERSION}_"*.deb)"; done
    echo "$out"
}
desc_sum() { in_ct sh -c 'sha256sum /etc/cairn/cluster.xml 2>/dev/null | cut -d" " -f1'; }
# The pids of processes running an installed daemon.
daemon_pids() {
    in_ct sh -c 'for p in /proc/[0-9]*; do
        case "$(readlink "$p/exe" 2>/dev/null)" in /usr/sbin/*|/usr/libexec/cairn/*) echo "${p#/proc/}" ;; esac
    done' | tr '\n' ' '
}

# First install: no description on the host yet.
in_ct test ! -e /etc/cairn/cluster.xml || die "the tree has a description before the install"
if out=$(in_ct dpkg -i $(debs libcairn0 cairn-cli cairn-services) 2>&1); then
    ok "dpkg -i libcairn0 cairn-cli cairn-services"
else
    fail "dpkg -i: $(tail -n 10 <<<"$out")"
    sd_finish
fi
echo "$out" >"$SD_RUN/dpkg-install.log"

# What it installed: the description, the units disabled and stopped, a
# man page for each program, the completion.
name=$(in_ct sed -n 's/.*<node id="1" name="\([^"]*\)" address="127.0.0.1".*/\1/p' /etc/cairn/cluster.xml)
if out=$(in_ct cairn config check /etc/cairn/cluster.xml 2>&1) &&
        jq -e '.valid == true and .nodes == 1' <<<"$out" >/dev/null 2>&1 && [ -n "$name" ]; then
    ok "a first description, valid: one node '$name' on 127.0.0.1"
    # The node is named after the container's host name (its /etc/hostname,
    # not nspawn's machine name): what services.sh's checks look for.
    SD_MACHINE=$name
else
    fail "no valid first description: $out"
fi
for u in $UNITS sched-mosix sched-mem; do
    e=$(in_ct systemctl is-enabled "$u.service" 2>&1)
    a=$(in_ct systemctl is-active "$u.service" 2>&1)
    [ "$e" = disabled ] && [ "$a" = inactive ] ||
        fail "$u.service after the install: enabled '$e', active '$a' (want disabled, inactive)"
done
[ -z "$(daemon_pids)" ] || fail "daemons run after the install: $(daemon_pids)"
ok "units installed disabled, nothing started"
progs=$(in_ct dpkg -L cairn-services cairn-cli | grep -E '^/usr/s?bin/.')
[ -n "$progs" ] || fail "dpkg -L lists no program of cairn-services and cairn-cli"
for prog in $progs; do
    case "$prog" in
        /usr/bin/*) page=/usr/share/man/man1/${prog##*/}.1.gz ;;
        *) page=/usr/share/man/man8/${prog##*/}.8.gz ;;
    esac
    in_ct test -s "$page" || fail "no man page $page for $prog"
done
in_ct test -s /usr/share/man/man5/cairn-description.5.gz || fail "no cairn-description(5)"
in_ct bash -c '. /usr/share/bash-completion/completions/cairn &&
    COMP_WORDS=(cairn sta) COMP_CWORD=1 && _cairn && [ "${COMPREPLY[*]}" = status ]' ||
    fail "the installed completion does not complete 'cairn sta' to status"
ok "man pages and the bash completion installed"

# Started one by one, each serves at once.
for u in $UNITS; do
    if ! out=$(in_ct systemctl start "$u.service" 2>&1); then
        fail "systemctl start $u: $out $(in_ct journalctl -u "$u" --no-pager -n 10 2>&1 | tr '\n' ';')"
        continue
    fi
    why=$("serves_$u") && ok "$u.service active and serving" || fail "$u.service: $why"
done
if out=$(in_ct cairn status 2>&1) &&
        jq -e --arg n "$name" '.node.id == 1 and .node.name == $n and .cluster == "cairn"' \
            <<<"$out" >/dev/null; then
    ok "cairn status answers: $(jq -c '{node, cluster, services}' <<<"$out")"
else
    fail "cairn status: $out"
fi

# An operator's edit survives a reinstall; the daemons are back.
in_ct sh -c 'sed -i "s|</cluster>|<!-- the operator was here -->\n</cluster>|" /etc/cairn/cluster.xml'
before=$(desc_sum)
out=$(in_ct dpkg -i $(debs cairn-services) 2>&1) || fail "dpkg -i again: $(tail -n 5 <<<"$out")"
[ "$(desc_sum)" = "$before" ] && ok "reinstall: the edited description untouched" ||
    fail "reinstall changed the edited description"
for u in $UNITS; do
    a=$(in_ct systemctl is-active "$u.service" 2>&1)
    [ "$a" = active ] || fail "$u.service after the reinstall: '$a' (it ran before)"
done
out=$(in_ct cairn status 2>&1) || fail "cairn status after the reinstall: $out"

# Purge: the daemons stop; the edited description is kept, with a note.
out=$(in_ct dpkg --purge cairn-services 2>&1) || fail "dpkg --purge: $(tail -n 5 <<<"$out")"
grep -q "kept" <<<"$out" || fail "the purge did not say the description is kept: $out"
[ "$(desc_sum)" = "$before" ] && ok "purge: stopped, the edited description kept" ||
    fail "the purge removed or changed the edited description"
[ -z "$(daemon_pids)" ] || fail "daemons still run after the purge: $(daemon_pids)"

# Without a description, a reinstall writes one again; a purge takes that
# one (unchanged) with it, and /etc/cairn when it is empty.
in_ct rm -f /etc/cairn/cluster.xml
out=$(in_ct dpkg -i $(debs cairn-services) 2>&1) || fail "dpkg -i after the purge: $(tail -n 5 <<<"$out")"
in_ct test -s /etc/cairn/cluster.xml || fail "no description written by the reinstall"
out=$(in_ct dpkg --purge cairn-services 2>&1) || fail "dpkg --purge: $(tail -n 5 <<<"$out")"
in_ct test ! -e /etc/cairn/cluster.xml && in_ct test ! -e /etc/cairn &&
    ok "purge of an unchanged first description: /etc/cairn gone" ||
    fail "the package's own description or /etc/cairn left after the purge"

sd_finish
