#!/usr/bin/env python3
"""prom-check.py - checks a Prometheus text exposition (format 0.0.4) the way
a scraper reads it, for test-metrics.sh and test-dashboard.sh.

    prom-check.py FILE [NAME...]

FILE is what /metrics answered. Every line is a HELP, a TYPE or a sample;
each family has exactly one HELP and one TYPE, before its samples, and its
samples are contiguous; names and label names match the format's patterns,
label values are properly quoted and escaped, values parse as floats;
counters are never negative; a histogram's buckets are cumulative, end
with le="+Inf", and that bucket equals its _count. Each NAME must be a
declared family. On success prints one JSON object on stdout:
{"family": {"type": "...", "samples": {"name{l=\"v\"}": value}}} and exits
0; otherwise prints each problem on stderr and exits 1.
"""
import json
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(text, problems, lineno):
    """'{a="x",b="y"}' -> [(a, x), (b, y)]."""
    if not text:
        return []
    inner, out, pos = text[1:-1], [], 0
    while pos < len(inner):
        m = LABEL.match(inner, pos)
        if not m:
            problems.append(f"line {lineno}: bad labels {text}")
            return out
        out.append((m.group(1), m.group(2)))
        pos = m.end()
        if pos < len(inner):
            if inner[pos] != ",":
                problems.append(f"line {lineno}: bad labels {text}")
                return out
            pos += 1
    return out


def family_of(name, families):
    """The declared family a sample name belongs to."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") == "histogram":
            return base
    return None


def check_histogram(fam, samples, problems):
    """Buckets cumulative per series, ending in +Inf == _count."""
    series = {}
    for name, labels, value in samples:
        rest = tuple((k, v) for k, v in labels if k != "le")
        s = series.setdefault(rest, {"buckets": [], "count": None})
        if name.endswith("_bucket"):
            le = dict(labels).get("le")
            if le is None:
                problems.append(f"{fam}: a bucket without le")
                continue
            s["buckets"].append((float(le), value))
        elif name.endswith("_count"):
            s["count"] = value
    for rest, s in series.items():
        b = s["buckets"]
        if not b or not math.isinf(b[-1][0]):
            problems.append(f"{fam}{dict(rest)}: no le=\"+Inf\" bucket last")
            continue
        if any(b[i][0] >= b[i + 1][0] or b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            problems.append(f"{fam}{dict(rest)}: buckets not ascending and cumulative")
        if s["count"] != b[-1][1]:
            problems.append(f"{fam}{dict(rest)}: +Inf bucket {b[-1][1]} != _count {s['count']}")


def check(text, required):
    problems, families, order, current = [], {}, [], None
    for lineno, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not NAME.fullmatch(parts[2]):
                problems.append(f"line {lineno}: bad {parts[1]} line")
                continue
            fam = families.setdefault(parts[2], {"samples": [], "closed": False})
            if fam["closed"] or fam["samples"]:
                problems.append(f"line {lineno}: {parts[1]} of {parts[2]} after its samples")
            key = parts[1].lower()
            if key in fam:
                problems.append(f"line {lineno}: second {parts[1]} for {parts[2]}")
            fam[key] = parts[3]
            if key == "type" and parts[3] not in TYPES:
                problems.append(f"line {lineno}: unknown type {parts[3]}")
            if current and current != parts[2]:
                families[current]["closed"] = True
            current = parts[2]
            if parts[2] not in order:
                order.append(parts[2])
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            problems.append(f"line {lineno}: not a sample: {line!r}")
            continue
        name, labels, value = m.group(1), m.group(2), m.group(3)
        fam = family_of(name, families)
        if fam is None or "type" not in families[fam] or "help" not in families[fam]:
            problems.append(f"line {lineno}: {name} has no HELP and TYPE before it")
            continue
        if families[fam]["closed"]:
            problems.append(f"line {lineno}: {name} apart from its family's other samples")
        try:
            v = float(value)
        except ValueError:
            problems.append(f"line {lineno}: value {value!r} is not a number")
            continue
        if families[fam]["type"] == "counter" and v < 0:
            problems.append(f"line {lineno}: counter {name} is negative")
        families[fam]["samples"].append((name, parse_labels(labels, problems, lineno), v))
    for fam in order:
        if families[fam].get("type") == "histogram":
            check_histogram(fam, families[fam]["samples"], problems)
    for name in required:
        if name not in families:
            problems.append(f"family {name} is missing")
    out = {}
    for fam in order:
        f = families[fam]
        s = {}
        for name, labels, v in f["samples"]:
            key = name + ("{" + ",".join(f'{k}="{val}"' for k, val in labels) + "}" if labels else "")
            s[key] = v
        out[fam] = {"type": f.get("type"), "samples": s}
    return problems, out


def main():
    if len(sys.argv) < 2:
        print("usage: prom-check.py FILE [NAME...]", file=sys.stderr)
        return 100
    with open(sys.argv[1], encoding="utf-8") as f:
        problems, out = check(f.read(), sys.argv[2:])
    for p in problems:
        print(f"prom-check: {sys.argv[1]}: {p}", file=sys.stderr)
    if problems:
        return 1
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
