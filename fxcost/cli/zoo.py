"""``fxcost zoo``: every model of a zoo analyzed at its own input size, one line each."""

from __future__ import annotations

import argparse
from typing import Any

from fxcost.cli import options
from fxcost.zoo_sweep import ZOOS, names, sweep

NAME = "zoo"
ORDER = 10
SUMMARY = "analyze every model of timm, torchvision, transformers or diffusers, one line each"
DESCRIPTION = ("Analyze every model of a zoo (timm, torchvision: tv, transformers: hf, diffusers) at its own input size, "
               "without weights, each in a "
               "worker process with a time limit, and write one table: name, input, params, MACs, FLOPs, activations, "
               "peak memory, time, and what was refused or unsupported, and why.")
EPILOG = """\
examples:
  fxcost zoo tv --filter 'resnet*'
      torchvision's ResNets, a line each, on the machine's cores
  fxcost zoo timm --filter 'convnext_*' --jobs 2 --timeout 120 -o convnext.csv
      timm's ConvNeXts into a CSV (exact integers)
  fxcost zoo tv --check --filter 'vit_*'
      torchvision's ViTs, each checked against FlopCounterMode and its own parameters()
  fxcost zoo tv --real -f json -o tv.json
      every torchvision model; the detection models, which read values, on real tensors
"""

COLUMNS = ["model", "input", "params", "MACs", "FLOPs", "activations", "peak bytes", "time", "status", "why"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("zoo", choices=tuple(ZOOS), help="which zoo: timm, torchvision (tv), transformers (hf: the base "
                   "model of every model type in its auto mapping, default config) or diffusers")
    p.add_argument("--filter", default="*", metavar="PATTERN", help="only names matching this shell pattern (default *)")
    p.add_argument("--jobs", "-j", type=options.integer(1, 256), default=None, metavar="N",
                   help="worker processes (default: the machine's cores)")
    p.add_argument("--timeout", type=options.integer(1, 86_400), default=300, metavar="S",
                   help="seconds one model may take before it is stopped and reported as a timeout (default 300)")
    p.add_argument("--real", action="store_true",
                   help="analyze a model refused on data-free tensors (it reads values: detection models filter boxes "
                        "by score) again on real tensors, built on the CPU with random weights; its figures are then "
                        "those of that run (how many boxes survive depends on the values)")
    p.add_argument("--check", action="store_true",
                   help="check each model against references that are not fxcost: its params against its own "
                        "parameters(), 2 x its MACs against PyTorch's FlopCounterMode over the same forward (a "
                        "'check' column: exact, or what differs); for a refused model, whether PyTorch's own forward "
                        "runs on the same inputs on fake tensors ('PyTorch fails too ...': the refusal is not fxcost's)")
    g = p.add_argument_group("output")
    g.add_argument("--format", "-f", choices=("table", "markdown", "csv", "json"), default=None,
                   help="output format (default: from -o's extension, else table)")
    g.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically) instead of stdout")


def render(rows: list[dict[str, Any]], fmt: str, title: str) -> str:
    import csv
    import io
    import json

    keys = ["model", "input", "params", "macs", "flops", "activations", "peak_bytes", "seconds", "status", "why"]
    if any("check" in r for r in rows):
        keys.insert(-1, "check")
    if fmt == "json":
        return json.dumps({"zoo": title, "models": [{k: r.get(k) for k in keys} for r in rows]}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        writer.writerows([[r.get(k, "") if r.get(k) is not None else "" for k in keys] for r in rows])
        return buf.getvalue()
    from fxcost.exporters import to_markdown, to_text
    from fxcost.exporters.tables import Table

    def cell(v: Any) -> str:
        return "-" if v is None or v == "" else f"{v:,}" if isinstance(v, int) else str(v)

    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "unsupported", "refused", "timeout", "error")}
    lines = [[cell(r.get(k)) if k != "seconds" else f"{r['seconds']:.2f} s" for k in keys] for r in rows]
    columns = COLUMNS[:-1] + (["check"] if "check" in keys else []) + COLUMNS[-1:]
    if "check" in keys:
        counts["exact"] = sum(str(r.get("check")).startswith("exact") for r in rows)
        counts["refused where PyTorch fails too"] = sum(str(r.get("check")).startswith("PyTorch fails too") for r in rows)
    table = Table(f"{title}: {len(rows)} models  ·  " + ", ".join(f"{k} {v}" for k, v in counts.items() if v), columns,
                  lines, numeric={"params", "MACs", "FLOPs", "activations", "peak bytes", "time"})
    return to_markdown(table) if fmt == "markdown" else to_text(table, width=220)


def run(args: argparse.Namespace) -> int:
    import os

    from fxcost.errors import InputSpecError
    from fxcost.io import write_atomic

    options.check_output(args.output, args)
    prefix = ZOOS[args.zoo]
    found = names(args.zoo, args.filter)
    if not found:
        raise InputSpecError(f"no {args.zoo} model matches {args.filter!r}", hint="a shell pattern, e.g. --filter 'resnet*'")
    fmt = options.format_for(args)
    if fmt not in ("table", "markdown", "csv", "json"):
        raise InputSpecError(f"fxcost zoo writes a table, Markdown, CSV or JSON, not {fmt}", hint="-o sweep.csv, or -f csv")
    jobs = args.jobs or os.cpu_count() or 1
    with options.progress(f"{args.zoo}: {len(found)} models on {jobs} worker(s)") as say:
        rows = sweep([prefix + n for n in found], jobs, args.timeout, say, real=args.real, check=args.check)
    text = render(rows, fmt, f"fxcost zoo {args.zoo}" + (f" --filter {args.filter}" if args.filter != "*" else ""))
    if args.output:
        write_atomic(args.output, text)
    else:
        options.write_stdout(options.results(), text)
    return 0
