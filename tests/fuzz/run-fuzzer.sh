#!/bin/bash
# run-fuzzer.sh - runs one libFuzzer target for a while on a copy of its
# seeds and prints one JSON line of what it did. The `fuzz` suite runs it
# for a few seconds per target (tests/fuzz/meson.build); bench/fuzz.sh for
# as long as asked.
#
#   run-fuzzer.sh [--seconds S] [--artifacts DIR] [--name NAME] FUZZER SEEDDIR...
#
# libFuzzer writes the inputs it finds into its first corpus dir: that is
# a temporary dir here, never a SEEDDIR (tests/fuzz is only read). A
# crashing input (NAME-crash-*, -leak-*, -timeout-*, -oom-*) goes to DIR
# (default ./fuzz-artifacts), is named on stderr with its bytes in base64 (so a CI
# log is enough to turn it into a regression case) and fails the run.
#
# The line: {"bench":"fuzz","target":NAME,"seconds":S,"execs":N,
# "execs_per_s":N,"coverage":{"cov":N,"ft":N},"corpus":N,"crashes":N},
# plus "artifacts":[paths] when it crashed; cov and ft are libFuzzer's
# (edges and features covered), corpus the inputs it holds at the end.
# Exit codes: 0 no crash, 1 a crash or a libFuzzer failure, 100 usage.
set -uo pipefail

seconds=60
artifacts=$PWD/fuzz-artifacts
name=
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --artifacts) artifacts=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    -h|--help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "run-fuzzer: unknown option $1" >&2; exit 100 ;;
    *) break ;;
    esac
done
if [ $# -lt 2 ] || ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: run-fuzzer.sh [--seconds S] [--artifacts DIR] [--name NAME] FUZZER SEEDDIR..." >&2
    exit 100
fi
fuzzer=$1; shift
name=${name:-$(basename "$fuzzer")}

work=$(mktemp -d -t "cairn-$name.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
mkdir -p "$work/corpus" "$artifacts" || exit 1
# A marker older than anything this run writes: artifacts newer than it
# are this run's (DIR may hold older ones).
touch "$work/start"

# ASan's quarantine of freed memory, 256 MiB by default, makes every
# allocation touch fresh pages once it is full: a quarter of the speed of
# the loader and the image reader, for use-after-free detection that 64 MiB
# (many inputs' worth of frees) still gives. The caller's options win.
export ASAN_OPTIONS="quarantine_size_mb=64${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# -error_exitcode: libFuzzer's default, 77, is what meson reads as skipped.
"$fuzzer" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 \
    -artifact_prefix="$artifacts/$name-" "$work/corpus" "$@" >"$work/log" 2>&1
rc=$?

# The figures: the final stats and the last status line (#N ... cov: C
# ft: F corp: K/...).
final_stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$work/log" | tail -n 1; }
field() { grep -E '^#[0-9]+' "$work/log" | tail -n 1 |
          awk -v k="$1:" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' |
          cut -d/ -f1; }
execs=$(final_stat number_of_executed_units)
rate=$(final_stat average_exec_per_sec)
mapfile -t found < <(find "$artifacts" -maxdepth 1 -type f -newer "$work/start" \
    \( -name "$name-crash-*" -o -name "$name-leak-*" -o -name "$name-timeout-*" \
       -o -name "$name-oom-*" \) | sort)

jq -nc --arg target "$name" --argjson seconds "$seconds" \
    --argjson execs "${execs:-0}" --argjson rate "${rate:-0}" --argjson cov "$(field cov)" \
    --argjson ft "$(field ft)" --argjson corpus "$(field corp)" \
    --argjson crashes "${#found[@]}" \
    '{bench: "fuzz", target: $target, seconds: $seconds, execs: $execs,
      execs_per_s: $rate, coverage: {cov: $cov, ft: $ft},
      corpus: $corpus, crashes: $crashes}
     + (if $crashes > 0 then {artifacts: $ARGS.positional} else {} end)' \
    --args "${found[@]}" 2>/dev/null ||
    echo "{\"bench\":\"fuzz\",\"target\":\"$name\",\"error\":\"no figures in the log\"}"

if [ "$rc" -ne 0 ] || [ "${#found[@]}" -gt 0 ] || [ -z "$execs" ]; then
    echo "run-fuzzer: $name failed (libFuzzer exit $rc); last lines of its log:" >&2
    tail -n 60 "$work/log" >&2
    for f in "${found[@]}"; do
        echo "run-fuzzer: input kept in $f; base64:" >&2
        base64 -w 76 "$f" | head -n 200 >&2
    done
    exit 1
fi
exit 0
