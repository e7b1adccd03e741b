#!/bin/bash
# test-cluster-curve - a local cluster is secure by default (issue 17), as
# root: `cluster up` makes a keypair per node (0600 files beside
# cluster.xml, mode curve and every node's <key> in it) and `status` says
# curve with the node's key; `keys generate` prints the key and the <key>
# element and never overwrites a key without --force; `keys list` checks
# the key files; over tcp from node 1's namespace, a client key that is
# not in the description gets no answer while node 1's works, and a
# client without any readable key is refused at once (permission-denied);
# `nodes --watch` subscribes over CURVE; `node add` on a curve cluster
# makes the node's key, writes it into cluster.xml, and the node joins;
# `node remove` drops it, and its old key is refused from then on.
# Skips (77) without root or netns.
. "$(dirname "$0")/lib.sh"

t_require_netns
"$CLUSTERD" --help 2>&1 | grep -q -- --node-id || { echo "SKIP: clusterd has no --node-id"; exit 77; }

name="k$(( $$ % 100000 ))"
export CAIRN_RUN_BASE="$T_TMP/run" CAIRN_CLUSTER="$name"
dir="$CAIRN_RUN_BASE/$name"
cfg="$dir/cluster.xml"
trap '"$CAIRN" cluster down --name "$name" >/dev/null 2>&1; t_cleanup' EXIT


# jq_ok JSON ARGS...: jq -e ARGS on JSON, which must not be empty.
jq_ok() {
    local in=$1; shift
    [ -n "$in" ] && jq -e "$@" <<<"$in" >/dev/null
}

# in_node1 CMD...: CMD inside node 1's network namespace.
in_node1() { ip netns exec "cairn-$name-1" "$@"; }

# xml_public ELEMENT: the public attribute of a <key> element, unescaped.
xml_public() {
    python3 -c 'import sys, xml.etree.ElementTree as E; print(E.fromstring(sys.argv[1]).get("public"))' "$1"
}

up=$("$CAIRN" cluster up --nodes 3) || { t_fail "cluster up exit $?"; t_done; }
net=$(jq -r '.subnet | sub("\\.0/24$"; "")' <<<"$up")
port=$(jq -r '.nodes[0].services[] | select(.name == "clusterd") | .port' <<<"$up")
for id in 1 2 3; do
    t_check "node $id alive on all" t_wait_state 10 "$id" alive 1 2 3
done

# --- up: curve by default ---------------------------------------------------
t_check "up says security mode curve, keys beside cluster.xml" jq_ok "$up" --arg d "$dir" \
    '.security.mode == "curve" and .security.keys_dir == "\($d)/keys"'
t_check "up gives every node a key" jq_ok "$up" --arg d "$dir" \
    '[.nodes[] | (.key.public | length) == 40 and (.key.fingerprint | test("^[0-9a-f]{16}$"))
       and .key.secret_path == "\($d)/keys/node-\(.id).key"] | all and length == 3'
for id in 1 2 3; do
    t_check "key file of node $id is 0600" test "$(stat -c %a "$dir/keys/node-$id.key")" = 600
done
t_check "keys directory is 0700" test "$(stat -c %a "$dir/keys")" = 700
t_check "cluster.xml says mode curve" grep -q '<security mode="curve">' "$cfg"
t_check "cluster.xml has 3 keys" test "$(grep -c '<key node=' "$cfg")" -eq 3
t_check "cluster.xml is valid" "$CAIRN" config check "$cfg"
st=$("$CAIRN" status) || t_fail "status exit $?"
t_check "status says curve and node 1's key" jq_ok "$st" \
    --arg fp "$(jq -r '.nodes[0].key.fingerprint' <<<"$up")" \
    '.security.mode == "curve" and .security.key == $fp'
t_check "status --table shows the mode" bash -c \
    "'$CAIRN' --table status | grep -Eq '^security.mode +curve$'"
cs=$("$CAIRN" cluster status) || t_fail "cluster status exit $?"
t_check "cluster status says curve" jq_ok "$cs" '.security.mode == "curve"'

# --- keys list --------------------------------------------------------------
kl=$("$CAIRN" keys list) || t_fail "keys list exit $?"
t_check "keys list: every key ok here" jq_ok "$kl" \
    '.ok == true and .security == "curve" and .here == 3 and .problems == 0 and .client_node == 1
     and ([.keys[] | .state == "ok" and .exists and .readable and .safe_mode and .matches and .mode == "0600"] | all)'
chmod 0644 "$dir/keys/node-3.key"
kl=$("$CAIRN" keys list)
t_check "keys list: a key others may read is a problem" jq_ok "$kl" \
    '.ok == false and .problems == 1 and (.keys[] | select(.node == 3) | .state == "unsafe-mode" and .safe_mode == false and (.problem | test("chmod 600")))'
chmod 0600 "$dir/keys/node-3.key"
t_check "keys list --table names the states" bash -c \
    "'$CAIRN' --table keys list | grep -Eq '^3 +n3 +[0-9a-f]{16} +ok +0600 '"

# --- keys generate ------------------------------------------------------------
rogue="$T_TMP/rogue.key"
kg=$("$CAIRN" keys generate --node 9 --out "$rogue") || t_fail "keys generate exit $?"
t_check "keys generate JSON" jq_ok "$kg" --arg p "$rogue" --arg c "$cfg" \
    '.node == 9 and (.public_key | length) == 40 and (.fingerprint | test("^[0-9a-f]{16}$"))
     and .secret_path == $p and .described == false and .description == $c and (.hint | test("not in"))'
t_check "keys generate: key_element holds the public key, escaped" test \
    "$(xml_public "$(jq -r .key_element <<<"$kg")")" = "$(jq -r .public_key <<<"$kg")"
t_check "keys generate: key_element names the secret (not the default path)" jq_ok "$kg" \
    --arg p "$rogue" '.key_element | contains("secret=\"\($p)\"")'
t_check "keys generate: file 0600" test "$(stat -c %a "$rogue")" = 600
fp_rogue=$(jq -r .fingerprint <<<"$kg")
before=$(md5sum <"$rogue")
t_check "keys generate refuses to overwrite" t_expect_error 1 already-exists \
    "$CAIRN" keys generate --node 9 --out "$rogue"
t_check "... and leaves the file as it was" test "$(md5sum <"$rogue")" = "$before"
before=$(md5sum <"$dir/keys/node-2.key")
t_check "keys generate of a node with a key: already-exists" t_expect_error 1 already-exists \
    "$CAIRN" keys generate --node 2
t_check "... node 2's key untouched" test "$(md5sum <"$dir/keys/node-2.key")" = "$before"
kg2=$("$CAIRN" keys generate --node 9 --out "$rogue" --force) || t_fail "keys generate --force exit $?"
t_check "--force makes a new key" jq_ok "$kg2" --arg old "$fp_rogue" '.fingerprint != $old'
fp_rogue=$(jq -r .fingerprint <<<"$kg2")
t_check "keys generate without --node: usage" t_expect_error 100 usage "$CAIRN" keys generate

# --- tcp clients: a key not in the description gets nothing -------------------
ep="tcp://$net.2:$port"
t0=$(date +%s%N)
t_check "a key that is no node's is refused: permission-denied, exit 1" \
    t_expect_error 1 permission-denied \
    in_node1 "$CAIRN" --key "$rogue" --endpoint "$ep" --timeout 3000 status
took=$(( ($(date +%s%N) - t0) / 1000000 ))
t_check "... at once, not at the deadline ($took ms)" test "$took" -lt 1000
t_check "... node 2 logged it, with the key's fingerprint" \
    grep -q "peer-refused .*key=$fp_rogue" "$dir/2/clusterd.log"
out=$(in_node1 "$CAIRN" --key "$dir/keys/node-1.key" --endpoint "$ep" status) || t_fail "status with node 1's key exit $?"
t_check "node 1's key gets node 2's answer over tcp" jq_ok "$out" \
    '.node.id == 2 and .security.mode == "curve"'
out=$(in_node1 "$CAIRN" --endpoint "$ep" status) || t_fail "status without --key exit $?"
t_check "root without --key uses a node key it reads" jq_ok "$out" '.node.id == 2'
t_check "an endpoint that is no node of the description: usage" t_expect_error 100 usage \
    in_node1 "$CAIRN" --endpoint "tcp://$net.99:$port" status

# A description whose run dirs are not here: every node is asked over tcp.
remote=$(mktemp -d "$T_TMP/remote.XXXXXX")
chmod 0755 "$T_TMP" "$remote"
sed "s|run-base=\"[^\"]*\"|run-base=\"$remote/run\"|" "$cfg" >"$remote/cluster.xml"
chmod 0644 "$remote/cluster.xml"
out=$(in_node1 "$CAIRN" --config "$remote/cluster.xml" --key "$dir/keys/node-1.key" --node 3 status) ||
    t_fail "tcp status through the description exit $?"
t_check "a described node over tcp with node 1's key" jq_ok "$out" '.node.id == 3 and .answered_by.id == 3'
in_node1 "$CAIRN" --config "$remote/cluster.xml" --key "$dir/keys/node-1.key" --node 2 \
    nodes --watch --duration-ms 500 >"$T_TMP/watch" 2>"$T_TMP/watch.err"
t_check "nodes --watch subscribes over CURVE (snapshot printed)" \
    jq -se '.[0].event == "snapshot" and (.[0].nodes | length) == 3' "$T_TMP/watch"
t_check "nodes --watch with a key that is no node's: exit 3" t_expect_error 3 unavailable \
    in_node1 "$CAIRN" --config "$remote/cluster.xml" --key "$rogue" --node 2 --timeout 1000 nodes --watch --duration-ms 500
if command -v setpriv >/dev/null; then
    t0=$(date +%s%N)
    out=$(in_node1 setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$CAIRN" --config "$remote/cluster.xml" --node 2 status 2>&1 >/dev/null); rc=$?
    took=$(( ($(date +%s%N) - t0) / 1000000 ))
    t_check "no readable key: permission-denied at once (exit $rc, $took ms)" \
        test "$rc" -eq 1 -a "$took" -lt 1000
    t_check "... saying how to give one" jq_ok "$out" \
        '.error.code == "permission-denied" and (.error.message | test("--key"))'
fi

# --- node add on a curve cluster ------------------------------------------------
add=$("$CAIRN" node add --id 4) || t_fail "node add exit $?"
t_check "node add makes node 4's key" jq_ok "$add" --arg d "$dir" \
    '.provisioned == true and .key.secret_path == "\($d)/keys/node-4.key" and (.key.fingerprint | test("^[0-9a-f]{16}$")) and .reloaded >= 3'
fp4=$(jq -r .key.fingerprint <<<"$add")
t_check "node 4's key file is 0600" test "$(stat -c %a "$dir/keys/node-4.key")" = 600
t_check "cluster.xml names node 4 and its key" bash -c \
    "grep -q '<node id=\"4\"' '$cfg' && test \$(grep -c '<key node=' '$cfg') -eq 4"
t_check "every other daemon reloaded it" bash -c \
    "for k in 1 2 3; do grep -q 'info reloaded' '$dir'/\$k/*.log || exit 1; done"
t_check "node 4 alive everywhere within 10 s" t_wait_state 10 4 alive 1 2 3 4
out=$("$CAIRN" --node 4 status) || t_fail "--node 4 status exit $?"
t_check "--node 4 (hotplugged) resolves, its clusterd serves node 4's key" jq_ok "$out" \
    --arg fp "$fp4" '.node.id == 4 and .security.key == $fp'
cp "$dir/keys/node-4.key" "$T_TMP/old4.key"
out=$(in_node1 "$CAIRN" --key "$T_TMP/old4.key" --endpoint "$ep" --timeout 2000 status) ||
    t_fail "status with node 4's key exit $?"
t_check "node 4's key is admitted while it is a member" jq_ok "$out" '.node.id == 2'

# --- node remove: its key is refused from then on ---------------------------------
rm_out=$("$CAIRN" node remove 4) || t_fail "node remove exit $?"
t_check "node remove drops the key" jq_ok "$rm_out" \
    '.deprovisioned == true and .key_removed == true and .reloaded >= 3'
t_check "node 4's key file is gone" test ! -e "$dir/keys/node-4.key"
t_check "cluster.xml without node 4 and its key" bash -c \
    "! grep -q '<node id=\"4\"' '$cfg' && test \$(grep -c '<key node=' '$cfg') -eq 3"
t_check "node 4's old key is refused (permission-denied)" t_expect_error 1 permission-denied \
    in_node1 "$CAIRN" --key "$T_TMP/old4.key" --endpoint "$ep" --timeout 1000 --retries 0 status
t_check "... node 2 logged the refusal of node 4's key" \
    grep -q "peer-refused .*key=$fp4" "$dir/2/clusterd.log"
t_check "node 4 is left everywhere" t_wait_state 5 4 left 1 2 3

# --- down takes the keys with it --------------------------------------------------
"$CAIRN" cluster down >/dev/null || t_fail "cluster down exit $?"
t_check "down removes the keys" test ! -e "$dir/keys"
t_done
