"""``fxcost diagram``: the model's graph drawn with Graphviz, modules as nested boxes."""

from __future__ import annotations

import argparse
from pathlib import Path

from fxcost.cli import options

NAME = "diagram"
ORDER = 3
SUMMARY = "architecture diagram: modules as nested boxes, with shapes and costs"
DESCRIPTION = ("Draw the model's graph with Graphviz: modules as nested boxes, nodes labelled with type, "
               "kernel, stride, output shape, MACs and params, edges with tensor shapes, coloured by share of a "
               "cost. DOT is written without Graphviz; SVG, PNG and PDF need its `dot` program.")
EPILOG = """\
examples:
  fxcost diagram examples/vgg.py:d2l_vgg11 --input 1x3x224x224 -o vgg11.svg
      every layer, inside a box per VGG block, coloured by share of FLOPs
  fxcost diagram examples/vgg.py:d2l_vgg11 --input 1x3x224x224 --depth 1 -o blocks.png
      each block as one node
  fxcost diagram hf:GPT2LMHeadModel --input 1x1024:int64 --depth 2 --roll -o gpt2.svg
      the 12 identical transformer blocks drawn once, labelled x12
  fxcost diagram examples/resnet.py:resnet50 --input 1x3x224x224 --color params --rankdir LR -o r50.pdf
  fxcost diagram examples/vgg.py:vgg11 --input 1x3x224x224 > vgg11.dot
      DOT text on stdout: no Graphviz needed
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_analysis(p)
    options.add_drawing(p)
    p.add_argument("--output", "-o", metavar="FILE",
                   help="model.svg, .png, .pdf or .dot (written atomically); without -o the DOT text goes to stdout")


def run(args: argparse.Namespace) -> int:
    from fxcost.errors import OutputError
    from fxcost.exporters.diagram import dot_available, format_for, render, to_dot
    from fxcost.io import write_atomic

    options.check_depth(args.depth, "--depth 1 draws the top-level blocks as nodes")
    fmt = format_for(args.output) if args.output else "dot"
    options.check_output(args.output, args)
    report = options.one_report(args, "diagram")
    dot_text = to_dot(report, depth=args.depth, roll=args.roll, color=args.color, rankdir=args.rankdir)
    if not args.output:
        options.write_stdout(options.results(), dot_text)
    elif fmt == "dot":
        write_atomic(args.output, dot_text)
    elif not dot_available():
        offered = Path(args.output + ".dot")  # beside it, never over a .dot of the user's
        write_atomic(offered, dot_text)
        raise OutputError(
            f"Graphviz's `dot` is not installed, so {args.output} cannot be rendered; the DOT text is in {offered}",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz) and run "
            f"`dot -T{fmt} {offered} -o {args.output}`, or paste the DOT into any Graphviz viewer",
        )
    else:
        with options.progress(f"rendering {args.output} with Graphviz ..."):
            write_atomic(args.output, render(dot_text, fmt))
    return 0
