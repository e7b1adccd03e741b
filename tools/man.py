#!/usr/bin/env python3
"""man.py - Cairn's man pages: an scdoc source, expanded, through scdoc.

Usage: man.py --scdoc SCDOC --in SRC.scd --out PAGE [--help-json FILE]
              [--daemon-help FILE] [--set KEY=VALUE ...]

The sources live in docs/man/ (docs/man/README.md). Before scdoc sees
one, this expands the lines that name what the programs themselves
know, so that a page cannot drift from its program:

  %include FILE            FILE (beside SRC), expanded the same way
  %cairn-global-options    `cairn help`'s global_options  (--help-json)
  %cairn-commands          `cairn help`'s commands, each with its options
  %cairn-exit-codes        `cairn help`'s exit_codes
  %daemon-options          a daemon's `--help` option lines (--daemon-help)

and replaces @KEY@ with VALUE for each --set (one source, several pages:
the three sched-* policies). Exit 1 with the reason on stderr when a
source, a JSON or scdoc fails; the build stops there.
"""
import argparse
import json
import os
import re
import subprocess
import sys


class ManError(Exception):
    """A source or input this script cannot use; the message says why."""


def esc(text):
    """Text from a program, safe in scdoc: its markup characters escaped."""
    return re.sub(r"([\\*_])", r"\\\1", text)


def option_head(opt, arg, short=None):
    head = ("*%s*, " % esc(short) if short else "") + "*%s*" % esc(opt)
    return head + (" _%s_" % esc(arg) if arg else "")


def term(head, text):
    """One term of a definition list: its head, its indented text."""
    return [head, "\t" + esc(text), ""]


def options(rows):
    return [line for o in rows
            for line in term(option_head(o["option"], o.get("arg")), o["description"])]


def global_options(doc):
    return options(doc["global_options"])


def commands(doc):
    out = []
    for c in doc["commands"]:
        head = "*cairn %s*" % esc(c["command"])
        if c.get("args"):
            head += " _%s_" % esc(c["args"])
        out += ["## " + c["command"].upper(), "", head, "", esc(c["description"]), ""]
        if c.get("table"):
            out += ["Also as a table with *--table*.", ""]
        out += options(c["options"])
    return out


def exit_codes(doc):
    return [line for e in doc["exit_codes"]
            for line in term("*%d*" % e["code"], e["meaning"])]


# "  -c, --config FILE        text" / "      --node-id N          text"
DAEMON_OPT = re.compile(r"^\s+(?:(-\w), )?\s*(--[\w-]+)(?: (\S+))?\s{2,}(\S.*)$")


def daemon_options(text):
    out = []
    for line in text.splitlines():
        m = DAEMON_OPT.match(line)
        if m:
            short, opt, arg, desc = m.groups()
            out += term(option_head(opt, arg, short), desc)
    if not out:
        raise ManError("no option line in the daemon's --help output")
    return out


def expand(path, args, depth=0):
    if depth > 4:
        raise ManError("%s: %%include nested too deep" % path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ManError(str(e))
    out = []
    for line in lines:
        word = line.split()
        if word and word[0] == "%include":
            if len(word) != 2:
                raise ManError("%s: %%include takes one file" % path)
            out += expand(os.path.join(os.path.dirname(path), word[1]), args, depth + 1)
        elif word and word[0] in GENERATORS:
            gen, need = GENERATORS[word[0]]
            if getattr(args, need) is None:
                raise ManError("%s: %s needs --%s" % (path, word[0], need.replace("_", "-")))
            out += gen(getattr(args, need))
        elif word and word[0].startswith("%"):
            raise ManError("%s: unknown directive %s" % (path, word[0]))
        else:
            out.append(line)
    return out


GENERATORS = {
    "%cairn-global-options": (global_options, "help_json"),
    "%cairn-commands": (commands, "help_json"),
    "%cairn-exit-codes": (exit_codes, "help_json"),
    "%daemon-options": (daemon_options, "daemon_help"),
}


def load_inputs(args):
    if args.help_json:
        try:
            with open(args.help_json, encoding="utf-8") as f:
                args.help_json = json.load(f)
        except (OSError, ValueError) as e:
            raise ManError("%s: %s" % (args.help_json, e))
    if args.daemon_help:
        try:
            with open(args.daemon_help, encoding="utf-8") as f:
                args.daemon_help = f.read()
        except OSError as e:
            raise ManError(str(e))


def main():
    p = argparse.ArgumentParser(description="expand a Cairn scdoc source and run scdoc")
    p.add_argument("--scdoc", required=True)
    p.add_argument("--in", dest="src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--help-json")
    p.add_argument("--daemon-help")
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    try:
        load_inputs(args)
        text = "\n".join(expand(args.src, args)) + "\n"
        for kv in args.set:
            key, sep, value = kv.partition("=")
            if not sep:
                raise ManError("--set %s: not KEY=VALUE" % kv)
            text = text.replace("@%s@" % key, value)
        left = re.search(r"@[A-Z_]+@", text)
        if left:
            raise ManError("%s: %s has no --set" % (args.src, left.group(0)))
        r = subprocess.run([args.scdoc], input=text.encode(), capture_output=True)
        if r.returncode != 0:
            raise ManError("scdoc on %s: %s" % (args.src, r.stderr.decode().strip()))
        with open(args.out, "wb") as f:
            f.write(r.stdout)
    except (ManError, KeyError, TypeError) as e:
        sys.stderr.write("man.py: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
