#!/bin/bash
# test-clusterd-signals - the daemon lifecycle: a second instance refused,
# SIGHUP with a broken description keeps the old one (and says why), SIGHUP
# with a good one takes it, SIGTERM exits 0 within 1 s and cleans up.
. "$(dirname "$0")/lib.sh"

port=$(t_free_port)
cfg="$T_TMP/cluster.xml"
t_description "$cfg" sig 2 "$port"
log="$T_TMP/clusterd.log"
t_start_clusterd "$cfg" 1 "$log" || exit 1
pid=$T_LAST_PID
export CAIRN_CONFIG="$cfg"
sock="$T_TMP/run/sig/1/clusterd.sock"

# A second clusterd for the same node must refuse and leave the first alone.
"$CLUSTERD" --config "$cfg" --node 1 2>"$T_TMP/second.log"
rc=$?
t_check "second instance refused (rc=$rc)" test "$rc" -ne 0
t_check "first still serving" bash -c '"$0" status >/dev/null' "$CAIRN"

# Broken description: old one kept, reason logged.
cp "$cfg" "$T_TMP/good.xml"
echo '<cluster name="sig"><nodes>' > "$cfg"
kill -HUP "$pid"
sleep 0.5
t_check "alive after bad reload" kill -0 "$pid"
out=$(CAIRN_CONFIG="$T_TMP/good.xml" "$CAIRN" nodes)
t_check "old description kept" jq -e '.nodes | length == 2' <<<"$out"
t_check "reload refusal logged with the reason" grep -Eq "reload.*(line|invalid)" "$log"

# Good description with a third node: taken.
t_description "$cfg" sig 3 "$port"
kill -HUP "$pid"
sleep 0.5
out=$("$CAIRN" nodes)
t_check "new description taken" jq -e '.nodes | length == 3' <<<"$out"

# SIGTERM: exit 0 within 1 s, socket removed.
start=$(date +%s%N)
kill -TERM "$pid"
wait "$pid"
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
t_check "SIGTERM exit 0 (rc=$rc)" test "$rc" -eq 0
t_check "SIGTERM within 1 s (${ms} ms)" test "$ms" -lt 1000
t_check "ipc socket removed" test ! -e "$sock"
t_done
