"""The ``fxcost`` command: parses arguments, calls the library, maps errors to exit codes.

Exit codes: 0 success; 2 bad input (a spec that does not load, a malformed or unfitting
``--input``, a model fxcost cannot trace); 1 an internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  fxcost analyze examples/vgg.py:vgg19_paper --input 1x3x224x224
      per-layer table of the paper's VGG-19: params, MACs, activations, sizes
  fxcost analyze examples/vgg.py:d2l_vgg11 --input 1x3x224x224 --depth 2
      roll layers up into their blocks (5 conv blocks + the classifier layers)
  fxcost analyze examples/vgg.py:d2l_vgg11 --input 1x3x224x224 --group-by type
      conv vs linear vs the rest
  fxcost analyze examples/vgg.py:d2l_vgg11 --input 1x3x224x224 --convention torchsummary
      the totals block exactly as torchsummary computes it
  fxcost analyze examples/vgg.py:vgg11 --input 1x3x32x32 --input 1x3x64x64 --input 1x3x224x224
      one table: how params, MACs and activations change with input size
  fxcost analyze my_model.py:Net --arg num_classes=10 --input 8x3x64x64:float16 -o cost.json
      a class or factory from a file, constructor arguments as Python literals, JSON to a file
  fxcost compare examples/vgg.py:d2l_vgg11 examples/alexnet.py:alexnet --input 1x3x224x224
      two models side by side, split by layer type, with ratios

conventions (docs/conventions.md): MACs count multiply-accumulates of conv/matmul ops; FLOPs are
2 per MAC plus bias adds and per-element costs of other ops; activations are the tensors each
layer newly allocates (in-place ops and views are free), the input included.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", "-i", action="append", default=[], metavar="SHAPE",
        help="input shape, e.g. 1x3x224x224 or 1x128:int64; several positional inputs joined by "
        "commas (1x3x32x32,1x10); repeat --input to sweep input sizes",
    )
    p.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument for the model, as a Python literal (repeatable)")
    from fxcost.exporters import FORMATS

    p.add_argument("--format", "-f", choices=FORMATS,
                   help="output format (default: from -o's extension, else table)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p.add_argument("--convention", "-c", default="fxcost", metavar="NAME",
                   help="counting convention: fxcost (default) or torchsummary")
    p.add_argument("--real", action="store_true",
                   help="run real tensors on a copy of the model instead of fake ones (slow; needs weights)")
    p.add_argument("--strict", action="store_true", help="fail when an op has no cost formula")
    p.add_argument("--width", type=int, default=None, help="terminal table width (default: terminal's)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def build_parser() -> argparse.ArgumentParser:
    from fxcost import __version__

    parser = argparse.ArgumentParser(
        prog="fxcost",
        description="Static cost analysis of PyTorch models: params, MACs, FLOPs and activation "
        "memory per layer, on fake tensors (no weights, no GPU, no real compute).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fxcost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser(
        "analyze", help="per-layer cost table of one model",
        description="Trace a model, propagate shapes on fake tensors and count its costs.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("spec", metavar="SPEC", help="path/to/file.py:name or package.module:name (a class, factory or instance)")
    _add_common(a)
    a.add_argument("--depth", "-d", type=int, metavar="N", help="roll layers up into their modules N levels below the root")
    a.add_argument("--group-by", "-g", choices=("layer", "module", "type"), default=None,
                   help="rows per layer (default), per module (with --depth, default 1) or per layer type")

    c = sub.add_parser(
        "compare", help="two models (or one at two input sizes) side by side",
        description="Compare params, MACs, FLOPs and activations, in total and by layer type, with A/B ratios. "
        "With one SPEC, give two --input sizes; with two, one --input for both or one each.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("spec", metavar="SPEC_A")
    c.add_argument("spec_b", metavar="SPEC_B", nargs="?")
    _add_common(c)
    return parser


@contextlib.contextmanager
def _progress(message: str) -> Iterator[None]:
    """A spinner on stderr while long work runs, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def _format_for(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.output).suffix.lower() if args.output else ""
    return {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown"}.get(suffix, "table")


def _emit(obj: Any, args: argparse.Namespace) -> None:
    from fxcost.exporters import render
    from fxcost.io import write_atomic

    fmt = _format_for(args)
    to_terminal = not args.output and sys.stdout.isatty()
    width = args.width or max(shutil.get_terminal_size((160, 24)).columns, 100)
    text = render(obj, fmt, width=width, color=to_terminal)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)


def _inputs(args: argparse.Namespace) -> list[tuple[Any, ...]]:
    import torch

    from fxcost.errors import InputSpecError
    from fxcost.spec import parse_input

    if not args.input:
        raise InputSpecError("no --input given", hint="e.g. --input 1x3x224x224 (batch x channels x height x width)")
    return [tuple(torch.empty(shape, dtype=dtype, device="meta") for shape, dtype in parse_input(text)) for text in args.input]


def _analyze_one(model: Any, name: str, inputs: tuple[Any, ...], args: argparse.Namespace) -> Any:
    import fxcost

    shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs)
    with _progress(f"analyzing {name} at {shapes} ..."):
        return fxcost.analyze(
            model, example_inputs=inputs, convention=args.convention, real=args.real, strict=args.strict, name=name
        )


def _view(report: Any, args: argparse.Namespace) -> Any:
    group = args.group_by or ("module" if args.depth else "layer")
    if group == "type":
        return report.by_type()
    if group == "module":
        return report.by_module(args.depth or 1)
    return report


def cmd_analyze(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError
    from fxcost.model import Sweep
    from fxcost.spec import load_model, parse_kv

    if args.depth is not None and args.depth < 1:
        raise InputSpecError(f"--depth must be at least 1, got {args.depth}", hint="--depth 1 shows the root's children, --depth 2 their children")
    inputs = _inputs(args)
    model, name = load_model(args.spec, parse_kv(args.arg))
    reports = [_view(_analyze_one(model, name, i, args), args) for i in inputs]
    _emit(reports[0] if len(reports) == 1 else Sweep(tuple(reports)), args)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fxcost import compare
    from fxcost.errors import InputSpecError
    from fxcost.spec import load_model, parse_kv

    inputs = _inputs(args)
    ctor = parse_kv(args.arg)
    if args.spec_b is None:
        if len(inputs) != 2:
            raise InputSpecError("compare with one model needs two --input sizes", hint="e.g. --input 1x3x224x224 --input 1x3x112x112")
        model, name = load_model(args.spec, ctor)
        a, b = (_analyze_one(model, name, i, args) for i in inputs)
    else:
        if len(inputs) > 2:
            raise InputSpecError("compare takes one --input for both models, or one for each", hint="e.g. --input 1x3x224x224, or --input 1x3x224x224 --input 1x3x112x112")
        ia, ib = inputs[0], inputs[-1]
        ma, na = load_model(args.spec, ctor)
        mb, nb = load_model(args.spec_b, ctor)
        a, b = _analyze_one(ma, na, ia, args), _analyze_one(mb, nb, ib, args)
    _emit(compare(a, b), args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from fxcost.errors import FxcostError

    try:
        return {"analyze": cmd_analyze, "compare": cmd_compare}[args.command](args)
    except FxcostError as e:
        if args.debug:
            traceback.print_exc()
        print(f"fxcost: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxcost: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        print(
            f"fxcost: internal error: {type(e).__name__}: {e}\n  this is a bug in fxcost; rerun with --debug "
            "for the traceback and report it with the model",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
