#!/bin/bash
# test-readme.sh - the README's "Using it" sequence, command by command, on
# a machine where another cluster already runs, as it does where the demo
# ran: config generate --output into directories that do not exist yet,
# config check, clusterd started from the file, status and nodes answered
# by that cluster. The one running first is named `cairn`, as the demo's
# is; the README's cluster is `prod`, under the same run base. Also: the
# refusal a same-named second cluster meets names what it collides with
# (pid, run dir) and how to part them; and `meson install` into a DESTDIR
# gives binaries that find each other (ghostd its ghost-dump helper).
#
# The README's paths and addresses are moved under the test's directory
# and to 127.0.0.k, and its ports to free ones; nothing else changes.
set -uo pipefail
. "$CAIRN_SOURCE/tests/integration/lib.sh"
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
unset CAIRN_CONFIG CAIRN_CLUSTER CAIRN_NODE
export CAIRN_RUN_BASE="$T_TMP/run"   # the demo's /run/cairn, here

# free_ports FILE: moves the ports of a generated description away from
# the defaults (7100..., maybe taken on a shared machine): clusterd's, the
# first, to a free pair (and its metrics port after them), the others after it.
free_ports() {
    local file=$1 p
    p=$(t_free_port)
    awk -v base="$p" '
        /<service / { q = base + 3 * n++; sub(/ port="[0-9]+"/, " port=\"" q "\"");
                      sub(/ pub-port="[0-9]+"/, " pub-port=\"" q + 1 "\"");
                      sub(/ metrics-port="[0-9]+"/, " metrics-port=\"" q + 2 "\"") }
        { print }' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
}

# gen ARGS...: cairn config generate with the test's run base written in
# (the README's file has none: the default, /run/cairn, the demo's).
gen() { "$CAIRN" --run-base "$T_TMP/run" config generate "$@"; }

# --- a cluster named cairn already runs (the demo's name and run base) -------
DEMO="$T_TMP/run/cairn/cluster.xml"   # where `cairn cluster up` puts it
mkdir -p "$T_TMP/run/cairn"
gen --hosts n1=127.0.0.1 --output "$DEMO" >/dev/null
free_ports "$DEMO"
t_start_service clusterd "$CLUSTERD" "$DEMO" 1 "$T_TMP/demo.log" || exit 1
DEMO_PID=$T_LAST_PID

# --- README: generate into /etc/cairn, which does not exist -----------------
ETC="$T_TMP/etc/cairn"
out=$(gen --name prod --hosts n1=127.0.0.1,n2=127.0.0.2 --output "$ETC/cluster.xml")
rc=$?
t_check "generate --output into a missing directory: exit 0 ($rc, $out)" test "$rc" -eq 0
t_check "generate made the file" test -s "$ETC/cluster.xml"
t_check "generate made the directories, mode 0755 ($(stat -c %a "$T_TMP/etc" "$ETC" 2>/dev/null | tr '\n' ' '))" \
    test "$(stat -c %a "$T_TMP/etc" "$ETC" 2>/dev/null | tr '\n' ' ')" = "755 755 "
out=$(gen --hosts n1=127.0.0.1 --output "$T_TMP/deep/er/still/c.xml")
t_check "generate --output DIR/new/sub/cluster.xml ($out)" test -s "$T_TMP/deep/er/still/c.xml"
: >"$T_TMP/plain"
gen --hosts n1=127.0.0.1 --output "$T_TMP/plain/x/c.xml" >/dev/null 2>"$T_TMP/err"
rc=$?
t_check "a file in the way: system error, exit 111, names the directory ($rc: $(cat "$T_TMP/err"))" \
    test "$rc" -eq 111 -a "$(jq -r .error.code "$T_TMP/err")" = system \
    -a "$(jq -r '.error.message | contains("plain/x")' "$T_TMP/err")" = true
free_ports "$ETC/cluster.xml"

# --- README: check, start clusterd, status, nodes ----------------------------
out=$("$CAIRN" config check "$ETC/cluster.xml")
t_check "config check: valid, cluster prod ($out)" \
    test "$(jq -r '"\(.valid) \(.cluster)"' <<<"$out")" = "true prod"
"$CLUSTERD" --config "$ETC/cluster.xml" --node n1 2>"$T_TMP/prod.log" &
T_PIDS+=("$!")
T_SERVICES+=("$! $T_TMP/prod.log")
t_wait_socket "$T_TMP/run/prod/1/clusterd.sock"
rc=$?
t_check "clusterd of prod starts beside the running cairn ($rc; $(tail -n 1 "$T_TMP/prod.log"))" \
    test "$rc" -eq 0
[ "$rc" -eq 0 ] || t_done
export CAIRN_CONFIG="$ETC/cluster.xml"
out=$("$CAIRN" status)
t_check "status answers from prod's node n1 ($out)" \
    test "$(jq -r '"\(.cluster) \(.node.name)"' <<<"$out")" = "prod n1"
out=$("$CAIRN" nodes | jq -c '[.nodes[] | {id, state}]')
t_check "nodes lists prod's two nodes ($out)" test "$(jq length <<<"$out")" -eq 2
unset CAIRN_CONFIG
out=$("$CAIRN" status)
t_check "without CAIRN_CONFIG, status still reaches the first cluster ($out)" \
    test "$(jq -r .cluster <<<"$out")" = cairn

# --- the same sequence without --name: refused, and told why -----------------
gen --hosts n1=127.0.0.1 --output "$T_TMP/same/cluster.xml" >/dev/null
free_ports "$T_TMP/same/cluster.xml"
timeout 10 "$CLUSTERD" --config "$T_TMP/same/cluster.xml" --node n1 2>"$T_TMP/same.log"
rc=$?
t_check "a second cluster named cairn is refused (exit $rc)" test "$rc" -eq 1
msg=$(grep -m1 'err bind' "$T_TMP/same.log")
t_check "the refusal names the running daemon's pid ($msg)" grep -q "pid $DEMO_PID" <<<"$msg"
t_check "the refusal names its --config" grep -qF -- "--config $DEMO" <<<"$msg"
t_check "the refusal names the shared run dir" grep -qF "$T_TMP/run/cairn/1" <<<"$msg"
t_check "the refusal says how to part them" grep -qF -- "--name" <<<"$msg"

# --- meson install: the installed binaries find each other -------------------
if [ "$(id -u)" -ne 0 ]; then
    echo "skip: meson install check (ghostd --check needs root)"
elif command -v meson >/dev/null && [ -f "$CAIRN_BUILD/meson-private/install.dat" ]; then
    DEST="$T_TMP/dest"
    meson install -C "$CAIRN_BUILD" --no-rebuild --quiet --destdir "$DEST" >"$T_TMP/install.log" 2>&1
    rc=$?
    t_check "meson install --destdir: exit 0 ($rc)" test "$rc" -eq 0
    prefix=$(meson introspect "$CAIRN_BUILD" --buildoptions | jq -r '.[] | select(.name == "prefix") | .value')
    for f in bin/cairn sbin/clusterd sbin/ghostd libexec/cairn/ghost-dump libexec/cairn/ghost-restore; do
        t_check "installed $prefix/$f" test -x "$DEST$prefix/$f"
    done
    t_description_ghostd "$T_TMP/inst.xml" inst "$(t_free_port)" "$(t_free_port)"
    t_start_service ghostd "$DEST$prefix/sbin/ghostd" "$T_TMP/inst.xml" 1 "$T_TMP/inst-ghostd.log"
    # A process with no pipe to the outside (the engine refuses those).
    bash -c 'exec sleep 60' </dev/null >/dev/null 2>&1 &
    target=$!
    T_PIDS+=("$target")
    out=$("$DEST$prefix/bin/cairn" --config "$T_TMP/inst.xml" checkpoint "$target" --check 2>&1)
    t_check "installed ghostd runs its installed ghost-dump ($out)" \
        test "$(jq -r .checkpointable <<<"$out" 2>/dev/null)" = true
fi

t_done
