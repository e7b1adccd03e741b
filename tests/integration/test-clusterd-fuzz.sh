#!/bin/bash
# test-clusterd-fuzz - 10,000 random and mutated frames at a live clusterd:
# every one answered with a Status, the daemon alive and serving after.
. "$(dirname "$0")/lib.sh"

port=$(t_free_port)
cfg="$T_TMP/cluster.xml"
t_description "$cfg" fuzz 1 "$port"
t_start_clusterd "$cfg" 1 "$T_TMP/clusterd.log" || exit 1
pid=$T_LAST_PID

seed=${CAIRN_FUZZ_SEED:-$RANDOM$RANDOM}
echo "seed $seed"
out=$("$CAIRN_BUILD/tests/fuzz-frames" "ipc://$T_TMP/run/fuzz/1/clusterd.sock" clusterd 10000 "$seed")
echo "$out"
t_check "every frame answered with a Status" jq -e '.pass == true and .unanswered == 0 and .status_errors > 5000' <<<"$out"
out=$("$CAIRN_BUILD/tests/fuzz-frames" "tcp://127.0.0.1:$port" clusterd 2000 "$((seed + 1))")
t_check "tcp: every frame answered" jq -e '.pass == true' <<<"$out"
t_check "daemon still running" kill -0 "$pid"
out=$(CAIRN_CONFIG="$cfg" "$CAIRN" status) || t_fail "status after fuzz exit $?"
t_check "status after fuzz" jq -e '.node.id == 1' <<<"$out"
t_check "bad frames were logged" grep -q "bad-frame" "$T_TMP/clusterd.log"
lines=$(wc -l < "$T_TMP/clusterd.log")
t_check "log is rate-limited ($lines lines)" test "$lines" -lt 2000
t_done
