"""``fxcost report``: one self-contained HTML page with the diagram, the table, totals and charts."""

from __future__ import annotations

import argparse

from fxcost.cli import options

NAME = "report"
ORDER = 4
SUMMARY = "one self-contained HTML page: diagram, sortable table, totals, charts"
DESCRIPTION = ("Write an HTML report that opens without network access: the diagram (click a node to find its "
               "row), the per-layer table (click a header to sort), the totals, bar charts of where the params "
               "and MACs sit, and with several --input sizes a plot of params, MACs and activation memory against "
               "input size.")
EPILOG = """\
examples:
  fxcost report examples/vgg.py:d2l_vgg11 --input 1x3x224x224 -o vgg11.html
  fxcost report examples/vgg.py:vgg11 -i 1x3x64x64 -i 1x3x128x128 -i 1x3x224x224 --depth 1 -o sweep.html
      with a plot of params, MACs and activation memory against input size
  fxcost report hf:GPT2LMHeadModel --input 1x1024:int64 --depth 2 --roll -o gpt2.html
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_analysis(p)
    options.add_device(p)
    options.add_drawing(p)
    p.add_argument("--output", "-o", metavar="FILE", required=True, help="the .html file to write (atomically)")


def run(args: argparse.Namespace) -> int:
    from fxcost.errors import OutputError
    from fxcost.exporters.diagram import dot_available, render, to_dot
    from fxcost.exporters.html import to_html
    from fxcost.io import write_atomic
    from fxcost.report.report import Sweep

    options.check_depth(args.depth, "--depth 1 draws the top-level blocks as nodes")
    if not args.output.lower().endswith((".html", ".htm")):
        raise OutputError(f"fxcost report writes HTML, not {args.output!r}", hint="give -o a file ending in .html")
    if not dot_available():
        raise OutputError(
            "Graphviz's `dot` is not installed, and the report's diagram needs it",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz); "
            "`fxcost diagram ... -o model.dot` and `fxcost analyze ... -f markdown` work without it",
        )
    options.check_output(args.output, args)
    calls = options.inputs(args)
    model, name = options.load(args.spec, args)
    reports = [options.analyze_one(model, name, c, args) for c in calls]
    dot_text = to_dot(reports[0], depth=args.depth, roll=args.roll, color=args.color, rankdir=args.rankdir)
    with options.progress(f"rendering the diagram of {name} ..."):
        svg = render(dot_text, "svg").decode()
    write_atomic(args.output, to_html(reports[0], svg, Sweep(tuple(reports)) if len(reports) > 1 else None))
    return 0
