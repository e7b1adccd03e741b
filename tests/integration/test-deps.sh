#!/bin/bash
# test-deps.sh - tools/deps.sh, the install step of the README's demo and
# test commands, against stub dpkg-query / apt-get / sudo programs put
# first on PATH: nothing missing means no apt-get call and no output;
# something missing means one line naming it, apt-get update and
# `install --no-upgrade` of the missing packages only (never `upgrade`),
# apt's output in a log file rather than on stderr, and the installed
# packages the install would upgrade named from apt-get's simulation; a
# failed install returns non-zero, and tools/test.sh still ends with the
# `N passed, N failed` line CI reads.
set -uo pipefail
. "$CAIRN_SOURCE/tests/integration/lib.sh"

STUBS="$T_TMP/stubs"
CALLS="$T_TMP/apt-calls"
mkdir -p "$STUBS"
# dpkg-query -W -f=... PKG: installed unless PKG is in $STUB_MISSING.
cat > "$STUBS/dpkg-query" <<'EOF'
#!/bin/bash
pkg=${!#}
for m in $STUB_MISSING; do [ "$m" = "$pkg" ] && exit 1; done
printf 'install ok installed'
EOF
# apt-get: records its arguments, says a lot, fails `install` when asked.
cat > "$STUBS/apt-get" <<'EOF'
#!/bin/bash
echo "$*" >> "$STUB_CALLS"
for i in $(seq 1 40); do echo "apt-noise line $i"; echo "apt-noise err $i" >&2; done
if [ "$1" = -s ]; then
    echo "Inst libsystemd0 [252.17-1~deb12u1] (252.22-1~deb12u1 Debian:12.8/stable [amd64]) []"
    echo "Inst libsystemd-dev (252.22-1~deb12u1 Debian:12.8/stable [amd64])"
    echo "Conf libsystemd0 (252.22-1~deb12u1 Debian:12.8/stable [amd64])"
fi
[ "$1" = install ] && [ -n "${STUB_FAIL:-}" ] && exit 100
exit 0
EOF
printf '#!/bin/bash\nexec "$@"\n' > "$STUBS/sudo"
chmod +x "$STUBS"/*

# deps [MISSING] [FAIL]: runs cairn_install_deps in a fresh shell with the
# stubs; sets RC, ERR (its stderr) and LOG (the apt log it was told).
deps() {
    : > "$CALLS"
    LOG="$T_TMP/apt.log"
    rm -f "$LOG"
    PATH="$STUBS:$PATH" STUB_MISSING="${1:-}" STUB_FAIL="${2:-}" STUB_CALLS="$CALLS" \
        CAIRN_APT_LOG="$LOG" bash -c '. "$CAIRN_SOURCE/tools/deps.sh"; cairn_install_deps' \
        >"$T_TMP/out" 2>"$T_TMP/err"
    RC=$?
    ERR=$(cat "$T_TMP/err")
}
lines() { [ -z "$1" ] && echo 0 || printf '%s\n' "$1" | wc -l; }

# --- nothing missing: no apt-get at all, no output ---------------------------
deps ""
t_check "nothing missing: returns 0 ($RC)" test "$RC" -eq 0
t_check "nothing missing: no apt-get call ($(cat "$CALLS"))" test ! -s "$CALLS"
t_check "nothing missing: at most one line on stderr ($ERR)" test "$(lines "$ERR")" -le 1
t_check "nothing missing: nothing on stdout" test ! -s "$T_TMP/out"

# --- two missing: named first, installed alone, quietly, upgrades said -------
deps "libsystemd-dev jq"
t_check "missing: returns 0 ($RC)" test "$RC" -eq 0
t_check "missing: the first line names them ($ERR)" \
    grep -q "libsystemd-dev jq" <<<"$(head -n 1 <<<"$ERR")"
t_check "missing: apt-get update, a simulation and one install ($(tr '\n' '|' <"$CALLS"))" \
    test "$(grep -c . "$CALLS")" -eq 3
t_check "missing: install --no-upgrade of the missing packages only" \
    grep -qE '^install .*--no-upgrade.* libsystemd-dev jq$' "$CALLS"
t_check "missing: never apt-get upgrade" test "$(grep -cE '(^| )(upgrade|dist-upgrade|full-upgrade)( |$)' "$CALLS")" -eq 0
t_check "missing: apt output not on stderr" test "$(grep -c apt-noise <<<"$ERR")" -eq 0
t_check "missing: at most 3 lines on stderr ($(lines "$ERR"))" test "$(lines "$ERR")" -le 3
t_check "missing: apt output in the log" grep -q "apt-noise line 40" "$LOG"
t_check "missing: the stderr lines name the log" grep -qF "$LOG" <<<"$ERR"
t_check "missing: the forced upgrade of libsystemd0 is named, and only it" \
    grep -qE "upgrades installed packages: libsystemd0$" <<<"$ERR"
t_check "missing: nothing on stdout" test ! -s "$T_TMP/out"

# --- a failing install: non-zero, and the log named --------------------------
deps "jq" fail
t_check "failed install: non-zero ($RC)" test "$RC" -ne 0
t_check "failed install: stderr names the log" grep -qF "$LOG" <<<"$ERR"

# --- tools/test.sh keeps CI's last line when the install fails ---------------
last=$(PATH="$STUBS:$PATH" STUB_MISSING="jq" STUB_FAIL=1 STUB_CALLS="$CALLS" \
    CAIRN_APT_LOG="$LOG" CAIRN_TEST_BUILDDIR="$T_TMP/never-built" \
    "$CAIRN_SOURCE/tools/test.sh" 2>/dev/null | tail -n 1)
t_check "test.sh after a failed install ends with '0 passed, 1 failed' ($last)" \
    test "$last" = "0 passed, 1 failed"
t_check "test.sh after a failed install built nothing" test ! -e "$T_TMP/never-built"

t_done
