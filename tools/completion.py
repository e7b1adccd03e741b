#!/usr/bin/env python3
"""completion.py - bash completion for `cairn`, generated from `cairn help`.

Usage: completion.py HELP.json OUTPUT

The build runs the `cairn` it just linked (`cairn help`, captured by meson)
and hands the JSON here, so every command, its options and the global
options come from the command table itself: a new command or option is
completed without a hand edit (docs/install.md, "Shell completion").

The generated script holds the table as data (one bash associative array,
command words -> options) and one function. The function skips the
global options and their values, takes the longest run of words that
names a command, and offers the next command word, the command's and the
global options, or an option's value: files for FILE, DIR and D, the
choices of an argument written `a|b`, nothing for a number or a name.
After `--` (run, lock) the rest is a command line of its own.
"""
import json
import sys

# Argument placeholders whose values are paths (the rest are free values).
FILE_ARGS = {"FILE", "DIR", "D"}
DIR_ARGS = {"DIR", "D"}


def shell_words(words):
    """A bash array literal body of single-quoted words."""
    return " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)


def option_spec(opt):
    """--name for a flag, --name=ARG for an option with a value."""
    return opt["option"] + ("=" + opt["arg"] if opt.get("arg") else "")


def generate(help_doc):
    commands = help_doc["commands"]
    globals_ = help_doc["global_options"]
    lines = [
        "# bash completion for cairn -- generated at build time by",
        "# tools/completion.py from `cairn help`; do not edit.",
        "",
        "declare -gA _cairn_opts=(",
    ]
    for c in commands:
        specs = [option_spec(o) for o in c["options"]]
        lines.append("    [%s]=%s" % (shell_words([c["command"]]),
                                      shell_words([" ".join(specs)])))
    lines.append(")")
    lines.append("_cairn_global=(%s)" %
                 shell_words([option_spec(o) for o in globals_]))
    lines.append("")
    lines.append(FUNCTION.replace("@FILE_ARGS@", "|".join(sorted(FILE_ARGS)))
                         .replace("@DIR_ARGS@", "|".join(sorted(DIR_ARGS))))
    return "\n".join(lines)


# The completion function; the table above is all it knows of cairn.
FUNCTION = r'''# _cairn_value ARG: reply with the values of an option's ARG.
_cairn_value() {
    local cur=$1 arg=$2
    case "$arg" in
        @DIR_ARGS@) COMPREPLY=($(compgen -d -- "$cur")) ;;
        @FILE_ARGS@) COMPREPLY=($(compgen -f -- "$cur")) ;;
        *'|'*) COMPREPLY=($(compgen -W "${arg//|/ }" -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
}

# _cairn_arg_of SPECS OPTION: the ARG of OPTION in SPECS ("--x=ARG ..."),
# empty for a flag; status 1 when OPTION is not there.
_cairn_arg_of() {
    local s
    for s in $1; do
        [ "${s%%=*}" = "$2" ] || continue
        [ "$s" = "${s#*=}" ] && echo "" || echo "${s#*=}"
        return 0
    done
    return 1
}

_cairn() {
    # cmd: the command named so far ("." for none yet: a bash associative
    # array has no empty key).
    local cur=${COMP_WORDS[COMP_CWORD]} i w cmd=. try specs arg k
    local -a words=()
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [ "$w" = "--" ]; then
            # run/lock: the rest is a command line of its own.
            if declare -F _command_offset >/dev/null; then
                _command_offset $((i + 1))
            else
                COMPREPLY=($(compgen -c -- "$cur"))
            fi
            return
        fi
        case "$w" in
            --*=*) continue ;;
            -*)
                specs="${_cairn_global[*]} ${_cairn_opts[$cmd]-}"
                arg=$(_cairn_arg_of "$specs" "$w") && [ -n "$arg" ] && ((i++))
                continue ;;
        esac
        words+=("$w")
        try="${words[*]}"
        [ -n "${_cairn_opts[$try]+set}" ] && cmd=$try
    done
    # The value of the option before the cursor.
    w=${COMP_WORDS[COMP_CWORD - 1]}
    if [ "$COMP_CWORD" -gt 1 ] && [[ $w == -* ]]; then
        specs="${_cairn_global[*]} ${_cairn_opts[$cmd]-}"
        if arg=$(_cairn_arg_of "$specs" "$w") && [ -n "$arg" ]; then
            _cairn_value "$cur" "$arg"
            return
        fi
    fi
    if [[ $cur == -* ]]; then
        specs="${_cairn_opts[$cmd]-} ${_cairn_global[*]}"
        COMPREPLY=($(compgen -W "$(for k in $specs; do echo "${k%%=*}"; done)" -- "$cur"))
        return
    fi
    # The next word of a command whose first words were typed.
    try="${words[*]}"
    local -a next=()
    for k in "${!_cairn_opts[@]}"; do
        if [ -z "$try" ]; then
            next+=("${k%% *}")
        elif [[ $k == "$try "* ]]; then
            w=${k#"$try "}
            next+=("${w%% *}")
        fi
    done
    [ "$cmd" = "$try" ] && [ ${#next[@]} = 0 ] && return
    COMPREPLY=($(compgen -W "$(printf '%s\n' "${next[@]}" | sort -u)" -- "$cur"))
}
complete -F _cairn cairn'''


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: completion.py HELP.json OUTPUT\n")
        return 100
    try:
        with open(argv[1], encoding="utf-8") as f:
            doc = json.load(f)
        text = generate(doc)
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.stderr.write("completion.py: %s: %s\n" % (argv[1], e))
        return 1
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
