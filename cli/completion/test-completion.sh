#!/bin/bash
# test-completion.sh - the generated bash completion, driven as bash's
# programmable completion drives it (COMP_WORDS, COMP_CWORD, _cairn), and
# checked against `cairn help` itself: every command is offered, word by
# word, and every option of every command after it; then the cases of the
# function's own logic (global options and their values skipped, option
# values completed, nothing offered where a free value goes).
# Usage: test-completion.sh COMPLETION-FILE CAIRN
set -uo pipefail
comp=${1:?completion file} cairn=${2:?cairn binary}
command -v jq >/dev/null || { echo "SKIP: no jq"; exit 77; }
help=$(ASAN_OPTIONS=detect_leaks=0 "$cairn" help) || { echo "FAIL: cairn help"; exit 1; }
# shellcheck source=/dev/null
. "$comp" || { echo "FAIL: sourcing $comp"; exit 1; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# complete WORD...: the reply for the last word (the one being typed).
complete_words() {
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
    _cairn
    printf '%s\n' "${COMPREPLY[@]}"
}
# expect WANT WORD...: WANT is among the replies.
expect() {
    local want=$1 got; shift
    got=$(complete_words "$@")
    grep -qxF -- "$want" <<<"$got" || fail "[$*] does not offer '$want': $(tr '\n' ' ' <<<"$got")"
}
# expect_only "A B" WORD...: the replies are exactly A B (sorted).
expect_only() {
    local want=$1 got; shift
    got=$(complete_words "$@" | sort | tr '\n' ' ')
    [ "$got" = "$want " ] || [ "$got" = "$want" ] || fail "[$*] offers '$got', not '$want'"
}

n=0
while IFS= read -r c; do
    read -ra w <<<"$c"
    # Each word of the command, offered after the words before it.
    for ((i = 0; i < ${#w[@]}; i++)); do
        expect "${w[i]}" cairn "${w[@]:0:i}" "${w[i]:0:1}"
    done
    while IFS= read -r o; do
        expect "$o" cairn "${w[@]}" --
        n=$((n + 1))
    done < <(jq -r --arg c "$c" '.commands[] | select(.command == $c) | .options[].option' <<<"$help")
done < <(jq -r '.commands[].command' <<<"$help")
[ "$n" -gt 0 ] || fail "no option checked (cairn help lists none?)"
while IFS= read -r o; do
    expect "$o" cairn status --
done < <(jq -r '.global_options[].option' <<<"$help")

expect_only "log show swap" cairn --config /etc/cairn/cluster.xml --timeout 50 sched ""
expect_only "add leave remove restart" cairn node ""
expect_only "curve none" cairn cluster up --security ""
expect_only "" cairn node add --id ""
expect_only "" cairn status ""
expect_only "--watch" cairn nodes --wa
tmp=$(mktemp -d) && touch "$tmp/desc.xml"
expect "$tmp/desc.xml" cairn --config "$tmp/d"
expect "$tmp" cairn checkpoint 1 --dir "${tmp%?}"
rm -rf "$tmp"

[ "$fails" = 0 ] || { echo "$fails failed"; exit 1; }
echo "ok: every command and its $n options offered, values and positions right"
