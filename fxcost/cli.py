"""The ``fxcost`` command: parses arguments, calls the library, maps errors to exit codes.

Exit codes: 0 success; 2 bad input (a spec that does not load, a malformed or unfitting
``--input``, a model fxcost cannot trace); 1 an internal error (a bug: please report it), except
for ``review``, where 1 means over budget and an internal error is 3.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
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
  fxcost analyze hf:GPT2LMHeadModel --input 1x1024:int64 --depth 3
      a transformers model from its config class: random weights on meta, nothing downloaded
  fxcost analyze hf:BertModel --config num_hidden_layers=4 --input 2x128:int64 --input attention_mask=2x128:int64
      config fields with --config; keyword tensors with name=SHAPE
  fxcost analyze my_model.py:Net --input 1x3x64x64 --kwarg return_features=True --leaf Backbone
      a non-tensor keyword for forward; keep a module whole (its ops are still counted)
  fxcost compare examples/vgg.py:d2l_vgg11 examples/alexnet.py:alexnet --input 1x3x224x224
      two models side by side, split by layer type, with ratios

conventions (docs/conventions.md): MACs count multiply-accumulates of conv/matmul ops; FLOPs are
2 per MAC plus bias adds and per-element costs of other ops; activations are the tensors each
layer newly allocates (in-place ops and views are free), the input included.
"""


SPEC_HELP = ("path/to/file.py:name or package.module:name (a class, factory or instance), hf:ClassName / "
             "hf:path/to/config.json for a transformers model from its config, or model.onnx (any ONNX file)")
TORCH_SPEC_HELP = ("path/to/file.py:name or package.module:name (a class, factory or instance), or hf:ClassName / "
                   "hf:path/to/config.json for a transformers model from its config")

ONNX_EXAMPLES = """\
examples:
  fxcost onnx examples/vgg.py:vgg19 --input 1x3x224x224 -o vgg19.onnx
      export through torch.onnx (dynamo exporter, opset 18), weights included, op for op (no optimizer)
  fxcost onnx examples/vgg.py:vgg19 --input 1x3x224x224 -o vgg19.onnx --verify
      then recount the file and cross-check it against PyTorch, and run it with onnxruntime
  fxcost onnx hf:LlamaForCausalLM --input 1x2048:int64 --structure-only -o llama7b.onnx
      every weight's name, shape and dtype, no weight data: a 7B model in about 20 s, 9 MB
  fxcost onnx examples/resnet.py:resnet50 --input 2x3x224x224 --dynamic-batch --opset 20 -o r50.onnx
  fxcost analyze vgg19.onnx
      the same per-layer table, counted from the ONNX graph (any ONNX file; --input pins dynamic dims)

--structure-only exports a weightless copy of the model on the meta device with the graph
optimizer off (it cannot fold meta tensors); weights become graph inputs carrying their
names, shapes, dtypes and kind (PARAMETER/BUFFER). Such a file analyzes but does not run.
"""

CROSSCHECK_EXAMPLES = """\
examples:
  fxcost crosscheck examples/vgg.py:vgg19 --input 1x3x224x224
      params and MACs by layer type from both routes, differences named, onnxruntime's max abs diff
  fxcost crosscheck hf:BertModel --input 1x128:int64 --random-weights -f markdown
      BERT-base with random weights: exported with them and run in onnxruntime too
  fxcost crosscheck hf:LlamaForCausalLM --input 1x2048:int64
      a 7B model on meta: exported structure only, counted twice, not run
  fxcost crosscheck examples/resnet.py:resnet18 --input 1x3x224x224 --optimize --onnx-file r18.onnx
      check the optimized graph (BatchNorms folded into convs: named as differences) and keep the file

exit codes: 0 params and MACs agree exactly, 1 they differ, 2 bad input, 3 internal error.
Exports (here and in fxcost onnx) skip the graph optimizer unless --optimize: it folds
constants and BatchNorms and drops zero biases, so its graph describes the computation, not the model.
"""

DIAGRAM_EXAMPLES = """\
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


REPORT_EXAMPLES = """\
examples:
  fxcost report examples/vgg.py:d2l_vgg11 --input 1x3x224x224 -o vgg11.html
  fxcost report examples/vgg.py:vgg11 -i 1x3x64x64 -i 1x3x128x128 -i 1x3x224x224 --depth 1 -o sweep.html
      with a plot of params, MACs and activation memory against input size
  fxcost report hf:GPT2LMHeadModel --input 1x1024:int64 --depth 2 --roll -o gpt2.html
"""


REVIEW_EXAMPLES = """\
examples:
  fxcost review examples/vgg.py:vgg19 --input 1x3x224x224 --budget params=150M --budget macs=20G
      exit 0: within budget
  fxcost analyze examples/vgg.py:vgg11 --input 1x3x224x224 -f json -o approved.json
  fxcost review examples/vgg.py:vgg13 --input 1x3x224x224 --baseline approved.json --max-growth 5% -f markdown
      exit 1: MACs grew 49% over the approved report; a Markdown table for the job summary
pyproject.toml:
  [tool.fxcost]
  budgets = {params = "150M", macs = "20G", activation_bytes = "1GiB"}
  max_growth = "5%"
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", "-i", action="append", default=[], metavar="SHAPE",
        help="input shape, e.g. 1x3x224x224 or 1x128:int64; several positional inputs joined by "
        "commas (1x3x32x32,1x10); name=SHAPE for a keyword tensor (attention_mask=1x128:int64); "
        "repeat --input to sweep input sizes (analyze, compare, report; a diagram takes one)",
    )
    p.add_argument("--kwarg", "-k", action="append", default=[], metavar="NAME=VALUE",
                   help="a non-tensor keyword argument of forward, as a Python literal (return_dict=False)")
    p.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument for the model, as a Python literal (repeatable)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="for hf: models, a config field, as a Python literal (--config n_layer=6)")
    p.add_argument("--tracer", choices=("auto", "symbolic", "export", "eager"), default="auto",
                   help="how the model becomes a graph: auto (default) tries symbolic tracing with untraceable "
                   "submodules kept opaque, then torch.export, then running op by op")
    p.add_argument("--leaf", action="append", default=[], metavar="MODULE",
                   help="keep a module (a path like encoder.layer.0, or a class name) as one node whose ops "
                   "are still counted (repeatable)")
    p.add_argument("--convention", "-c", default="fxcost", metavar="NAME",
                   help="counting convention: fxcost (default) or torchsummary")
    p.add_argument("--real", action="store_true",
                   help="run real tensors on a copy of the model instead of fake ones (slow; needs weights)")
    p.add_argument("--strict", action="store_true", help="fail when an op has no cost formula")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _add_table_output(p: argparse.ArgumentParser) -> None:
    from fxcost.exporters import FORMATS

    p.add_argument("--format", "-f", choices=FORMATS,
                   help="output format (default: from -o's extension, else table)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p.add_argument("--width", type=int, default=None, help="terminal table width (default: terminal's)")


def _command(sub: Any, name: str, summary: str, description: str, epilog: str, one_spec: bool = True,
             spec_help: str = SPEC_HELP) -> argparse.ArgumentParser:
    """A subcommand taking a model SPEC and the analysis options every command shares."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description, epilog=epilog,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if one_spec:
        p.add_argument("spec", metavar="SPEC", help=spec_help)
    else:
        p.add_argument("spec", metavar="SPEC_A")
        p.add_argument("spec_b", metavar="SPEC_B", nargs="?")
    _add_common(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    from fxcost import __version__
    from fxcost.exporters import FORMATS

    parser = argparse.ArgumentParser(
        prog="fxcost",
        description="Static cost analysis of PyTorch models: params, MACs, FLOPs and activation "
        "memory per layer, on fake tensors (no weights, no GPU, no real compute).",
        epilog=EXAMPLES + "\nmore: fxcost diagram --help, fxcost report --help, fxcost review --help, fxcost onnx --help, "
        "fxcost crosscheck --help\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fxcost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    a = _command(sub, "analyze", "per-layer cost table of one model",
                 "Trace a model, propagate shapes on fake tensors and count its costs.", EXAMPLES)
    _add_table_output(a)
    a.add_argument("--depth", "-d", type=int, metavar="N", help="roll layers up into their modules N levels below the root")
    a.add_argument("--group-by", "-g", choices=("layer", "module", "type"), default=None,
                   help="rows per layer (default), per module (with --depth, default 1) or per layer type")

    c = _command(sub, "compare", "two models (or one at two input sizes) side by side",
                 "Compare params, MACs, FLOPs and activations, in total and by layer type, with A/B ratios. "
                 "With one SPEC, give two --input sizes; with two, one --input for both or one each.",
                 EXAMPLES, one_spec=False)
    _add_table_output(c)

    d = _command(sub, "diagram", "architecture diagram: modules as nested boxes, with shapes and costs",
                 "Draw the model's graph with Graphviz: modules as nested boxes, nodes labelled with type, "
                 "kernel, stride, output shape, MACs and params, edges with tensor shapes, coloured by share of a "
                 "cost. DOT is written without Graphviz; SVG, PNG and PDF need its `dot` program.", DIAGRAM_EXAMPLES)
    _add_drawing(d)
    d.add_argument("--output", "-o", metavar="FILE",
                   help="model.svg, .png, .pdf or .dot (written atomically); without -o the DOT text goes to stdout")

    r = _command(sub, "report", "one self-contained HTML page: diagram, sortable table, totals, charts",
                 "Write an HTML report that opens without network access: the diagram (click a node to find its "
                 "row), the per-layer table (click a header to sort), the totals, bar charts of where the params "
                 "and MACs sit, and with several --input sizes a plot of params, MACs and activation memory against "
                 "input size.", REPORT_EXAMPLES)
    _add_drawing(r)
    r.add_argument("--output", "-o", metavar="FILE", required=True, help="the .html file to write (atomically)")

    v = _command(sub, "review", "the pre-export gate: totals against budgets and an approved baseline (exit 1 when over)",
                 "Check a model's totals against budgets (--budget, or [tool.fxcost] in pyproject.toml) and against "
                 "a previously approved JSON report (--baseline, at most --max-growth larger; same convention and "
                 "input shapes, the model may differ). Exit 0 within budget, 1 over budget, 2 for bad input, 3 for "
                 "an internal error. -f markdown writes a table ready for a CI job summary.", REVIEW_EXAMPLES)
    _add_table_output(v)
    v.add_argument("--budget", "-b", action="append", default=[], metavar="METRIC=AMOUNT",
                   help="a limit on a total: params=150M, macs=20G, flops=40G, activation_bytes=1GiB (repeatable; "
                   "k/M/G/T are powers of 1000, KiB/MiB/GiB powers of 1024)")
    v.add_argument("--baseline", metavar="REPORT.json", help="an approved report (fxcost analyze -f json) to compare with")
    v.add_argument("--max-growth", metavar="PCT", help="how much a total may grow over the baseline (default 5%%)")
    o = _command(sub, "onnx", "export to ONNX through torch.onnx (optionally structure only, and verified)",
                 "Export a model to ONNX with torch.onnx's dynamo exporter, atomically, with progress. --structure-only "
                 "writes the graph with every weight's name, shape and dtype but no data, from a model on meta; --verify "
                 "then recounts the file and cross-checks it against PyTorch.", ONNX_EXAMPLES, spec_help=TORCH_SPEC_HELP)
    o.add_argument("--output", "-o", metavar="FILE", required=True, help="the .onnx file to write")
    _add_export(o)
    o.add_argument("--dynamic-batch", action="store_true", help="make dimension 0 of every input dynamic")
    o.add_argument("--structure-only", action="store_true",
                   help="no weight data: weights become named graph inputs with shapes and dtypes (exported from meta)")
    o.add_argument("--optimize", action="store_true",
                   help="run onnxscript's graph optimizer: folds constants and BatchNorm into convs, drops zero biases "
                   "(the file then has fewer parameters than the model)")
    o.add_argument("--verify", action="store_true",
                   help="cross-check the written file against PyTorch (as fxcost crosscheck; exit 1 when params or MACs differ)")
    o.add_argument("--format", "-f", choices=FORMATS, default=None, help="format of the --verify output (default: table)")
    o.add_argument("--width", type=int, default=None, help="terminal table width for --verify (default: terminal's)")

    x = _command(sub, "crosscheck", "count a model through PyTorch and through its ONNX export, side by side",
                 "Analyze the model via torch.fx/torch.export, export it to ONNX, recount the ONNX graph and print both "
                 "by layer type with the differences named. Params and MACs must agree exactly (exit 1 when not). With "
                 "real weights the ONNX file also runs in onnxruntime on random inputs: the largest absolute "
                 "difference from PyTorch is reported.", CROSSCHECK_EXAMPLES, spec_help=TORCH_SPEC_HELP)
    _add_table_output(x)
    _add_export(x)
    x.add_argument("--optimize", action="store_true", help="check the optimized graph (fxcost onnx --optimize)")
    x.add_argument("--onnx-file", metavar="FILE", help="keep the exported file here (default: a temporary file)")

    v.add_argument("--pyproject", metavar="FILE", default=None,
                   help="where [tool.fxcost] budgets and max_growth are read from (default: ./pyproject.toml when it exists)")
    return parser


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset to export (default 18)")
    p.add_argument("--random-weights", action="store_true",
                   help="build an hf: model with real random weights (seed 0) instead of on meta, so the export "
                   "carries weights and onnxruntime can run it")
    p.add_argument("--no-run", action="store_true", help="do not run the ONNX file in onnxruntime")


def _add_drawing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", "-d", type=int, metavar="N",
                   help="draw each module N levels down as one node (double border); module lists and only-child "
                   "wrappers are not levels here, unlike analyze --depth, which counts path components")
    p.add_argument("--roll", action="store_true",
                   help="draw a run of structurally identical sibling blocks once, labelled xN")
    p.add_argument("--color", choices=("flops", "params", "memory", "none"), default="flops",
                   help="fill nodes by their share of FLOPs (default), params, activation memory, or not at all")
    p.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right")


@contextlib.contextmanager
def _progress(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while long work runs, when stderr is a terminal; yields a function
    that changes its text as the work moves through its stages."""
    if not sys.stderr.isatty():
        yield lambda _text: None
        return
    from rich.console import Console

    with Console(stderr=True).status(message) as status:
        yield lambda text: status.update(f"{text} ...")


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


Call = tuple[tuple[Any, ...], dict[str, Any]]


def _inputs(args: argparse.Namespace) -> list[Call]:
    """One (positional, keyword) pair of meta tensors per input size, plus --kwarg values."""
    import torch

    from fxcost.errors import InputSpecError
    from fxcost.spec import parse_inputs, parse_kv

    if not args.input and _is_onnx(args.spec):
        return [((), {})]  # the file's own input shapes
    if not args.input:
        raise InputSpecError("no --input given", hint="e.g. --input 1x3x224x224 (batch x channels x height x width), or --input 1x128:int64 for token ids")
    plain = parse_kv(args.kwarg, "--kwarg")

    def meta(shape: tuple[int, ...], dtype: Any) -> Any:
        return torch.empty(shape, dtype=dtype, device="meta")

    return [
        (tuple(meta(*s) for s in pos), {**plain, **{k: meta(*s) for k, s in kw.items()}})
        for pos, kw in parse_inputs(args.input, any_name=_is_onnx(args.spec))
    ]


def _is_onnx(spec: str | None) -> bool:
    return bool(spec) and str(spec).lower().endswith(".onnx")


def _load(spec: str, args: argparse.Namespace) -> tuple[Any, str]:
    from fxcost.errors import InputSpecError
    from fxcost.spec import load_model, parse_kv

    if _is_onnx(spec):
        given = [flag for flag, on in (("--arg", args.arg), ("--config", args.config), ("--kwarg", args.kwarg),
                                       ("--leaf", args.leaf), ("--real", args.real), ("--tracer", args.tracer != "auto"))
                 if on]
        if given:
            raise InputSpecError(f"{', '.join(given)} do(es) not apply to an ONNX file ({spec})",
                                 hint="an ONNX file is analyzed from its graph; give only --input to pin dynamic dimensions")
        return Path(spec), Path(spec).stem
    return load_model(spec, parse_kv(args.arg), parse_kv(args.config, "--config"),
                      hf_weights=getattr(args, "random_weights", False))


def _analyze_one(model: Any, name: str, call: Call, args: argparse.Namespace) -> Any:
    import torch

    import fxcost

    inputs, kwargs = call
    shapes = ", ".join("x".join(map(str, t.shape)) for t in [*inputs, *kwargs.values()] if isinstance(t, torch.Tensor))
    if isinstance(model, Path):
        from fxcost.onnx_analyze import analyze_onnx

        with _progress(f"analyzing {model} ..."):
            return analyze_onnx(model, [tuple(t.shape) for t in inputs],
                                {k: tuple(v.shape) for k, v in kwargs.items() if isinstance(v, torch.Tensor)},
                                convention=args.convention, strict=args.strict, name=name)
    with _progress(f"analyzing {name} at {shapes} ..."):
        return fxcost.analyze(
            model, example_inputs=inputs, example_kwargs=kwargs, convention=args.convention, real=args.real,
            strict=args.strict, name=name, tracer=args.tracer, leaves=args.leaf,
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

    if args.depth is not None and args.depth < 1:
        raise InputSpecError(f"--depth must be at least 1, got {args.depth}", hint="--depth 1 shows the root's children, --depth 2 their children")
    _check_folder(args.output)
    inputs = _inputs(args)
    model, name = _load(args.spec, args)
    reports = [_view(_analyze_one(model, name, i, args), args) for i in inputs]
    _emit(reports[0] if len(reports) == 1 else Sweep(tuple(reports)), args)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fxcost import compare
    from fxcost.errors import InputSpecError

    _check_folder(args.output)
    inputs = _inputs(args)
    if args.spec_b is None:
        if len(inputs) != 2:
            raise InputSpecError("compare with one model needs two --input sizes", hint="e.g. --input 1x3x224x224 --input 1x3x112x112")
        model, name = _load(args.spec, args)
        a, b = (_analyze_one(model, name, i, args) for i in inputs)
    else:
        if len(inputs) > 2:
            raise InputSpecError("compare takes one --input for both models, or one for each", hint="e.g. --input 1x3x224x224, or --input 1x3x224x224 --input 1x3x112x112")
        ia, ib = inputs[0], inputs[-1]
        ma, na = _load(args.spec, args)
        mb, nb = _load(args.spec_b, args)
        a, b = _analyze_one(ma, na, ia, args), _analyze_one(mb, nb, ib, args)
    _emit(compare(a, b), args)
    return 0


def _check_folder(output: str | None) -> None:
    """Fail before the analysis, not after it, when the output's folder is missing."""
    from fxcost.io import check_folder

    if output:
        check_folder(Path(output).resolve())


def _one_report(args: argparse.Namespace, what: str) -> Any:
    from fxcost.errors import InputSpecError

    inputs = _inputs(args)
    if len(inputs) != 1:
        raise InputSpecError(f"{what} takes one input size", hint="give one --input (keyword tensors may be added with name=SHAPE)")
    model, name = _load(args.spec, args)
    return _analyze_one(model, name, inputs[0], args)


def cmd_diagram(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError, OutputError
    from fxcost.exporters.diagram import dot_available, format_for, render, to_dot
    from fxcost.io import write_atomic

    if args.depth is not None and args.depth < 1:
        raise InputSpecError(f"--depth must be at least 1, got {args.depth}", hint="--depth 1 draws the top-level blocks as nodes")
    fmt = format_for(args.output) if args.output else "dot"
    _check_folder(args.output)
    report = _one_report(args, "diagram")
    dot_text = to_dot(report, depth=args.depth, roll=args.roll, color=args.color, rankdir=args.rankdir)
    if not args.output:
        sys.stdout.write(dot_text)
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
        with _progress(f"rendering {args.output} with Graphviz ..."):
            write_atomic(args.output, render(dot_text, fmt))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError, OutputError
    from fxcost.exporters.diagram import dot_available, render, to_dot
    from fxcost.exporters.html import to_html
    from fxcost.io import write_atomic
    from fxcost.model import Sweep

    if args.depth is not None and args.depth < 1:
        raise InputSpecError(f"--depth must be at least 1, got {args.depth}", hint="--depth 1 draws the top-level blocks as nodes")
    if not args.output.lower().endswith((".html", ".htm")):
        raise OutputError(f"fxcost report writes HTML, not {args.output!r}", hint="give -o a file ending in .html")
    if not dot_available():
        raise OutputError(
            "Graphviz's `dot` is not installed, and the report's diagram needs it",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz); "
            "`fxcost diagram ... -o model.dot` and `fxcost analyze ... -f markdown` work without it",
        )
    _check_folder(args.output)
    calls = _inputs(args)
    model, name = _load(args.spec, args)
    reports = [_analyze_one(model, name, call, args) for call in calls]
    dot_text = to_dot(reports[0], depth=args.depth, roll=args.roll, color=args.color, rankdir=args.rankdir)
    with _progress(f"rendering the diagram of {name} ..."):
        svg = render(dot_text, "svg").decode()
    write_atomic(args.output, to_html(reports[0], svg, Sweep(tuple(reports)) if len(reports) > 1 else None))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError
    from fxcost.review import load_baseline, parse_budget, parse_growth, pyproject_settings, review

    _check_folder(args.output)
    given = args.pyproject is not None  # the default ./pyproject.toml may be absent; a named one may not
    path = Path(args.pyproject or "pyproject.toml")
    budgets, growth = pyproject_settings(path) if given or path.is_file() else ({}, None)
    budgets.update(dict(parse_budget(b) for b in args.budget))  # the command line wins
    if args.max_growth is not None:
        if not args.baseline:
            raise InputSpecError("--max-growth needs --baseline", hint="give the approved report: --baseline approved.json")
        growth = parse_growth(args.max_growth)
    baseline = load_baseline(args.baseline) if args.baseline else None
    if not budgets and baseline is None:
        raise InputSpecError("nothing to review against", hint="give --budget params=150M, --baseline approved.json, or [tool.fxcost] budgets in pyproject.toml")
    result = review(_one_report(args, "review"), budgets, baseline, growth)
    _emit(result, args)
    return 0 if result.passed else 1


def _torch_spec(args: argparse.Namespace) -> None:
    from fxcost.errors import InputSpecError

    if _is_onnx(args.spec):
        raise InputSpecError(f"fxcost {args.command} needs the PyTorch model, not an ONNX file ({args.spec})",
                             hint=f"give the model's spec (file.py:name, hf:Class); `fxcost analyze {args.spec}` counts the file")


def _crosscheck(args: argparse.Namespace, model: Any, name: str, call: Call, update: Callable[[str], None],
                onnx_file: str | None, exported: Any, optimize: bool) -> Any:
    from fxcost.crosscheck import crosscheck

    inputs, kwargs = call
    return crosscheck(model, inputs, kwargs, convention=args.convention, name=name, tracer=args.tracer, leaves=args.leaf,
                      onnx_file=onnx_file, exported=exported, opset=args.opset, optimize=optimize,
                      run=not args.no_run, strict=args.strict, on_stage=update)


def cmd_onnx(args: argparse.Namespace) -> int:
    from fxcost.conventions import get_convention
    from fxcost.errors import InputSpecError
    from fxcost.onnx_export import export_onnx

    _torch_spec(args)
    _check_folder(args.output)
    if args.real:
        raise InputSpecError("--real does not apply to fxcost onnx", hint="a model with weights is exported with them; --structure-only leaves them out")
    unused = [flag for flag, on in (("--convention", args.convention != "fxcost"), ("--strict", args.strict),
                                    ("--tracer", args.tracer != "auto"), ("--leaf", args.leaf), ("--format", args.format),
                                    ("--width", args.width), ("--no-run", args.no_run)) if on]
    if unused and not args.verify:
        raise InputSpecError(f"{', '.join(unused)} only apply with --verify (they shape the cross-check, not the export)",
                             hint="add --verify, or drop them")
    get_convention(args.convention)  # a bad name fails now, not after the file is written
    calls = _inputs(args)
    if len(calls) != 1:
        raise InputSpecError("fxcost onnx takes one input size", hint="give one --input; --dynamic-batch makes the batch dimension dynamic")
    model, name = _load(args.spec, args)
    inputs, kwargs = calls[0]
    with _progress(f"exporting {name} to {args.output}") as update:
        result = export_onnx(model, inputs, kwargs, args.output, opset=args.opset, dynamic_batch=args.dynamic_batch,
                             structure_only=args.structure_only, optimize=args.optimize, on_stage=update)
    what = "structure only, no weight data" if result.structure_only else "with weights"
    print(f"wrote {result.path}: {result.nodes:,} nodes, {result.params:,} params ({what}), opset {result.opset}, "
          f"{result.file_bytes / 1024**2:,.1f} MiB, {result.seconds:.1f} s"
          + (", dynamic batch" if result.dynamic_batch else "") + (", optimized" if result.optimized else ""),
          file=sys.stderr if args.verify else sys.stdout)
    if not args.verify:
        return 0
    with _progress(f"cross-checking {args.output}") as update:
        check = _crosscheck(args, model, name, calls[0], update, args.output, exported=result, optimize=result.optimized)
    _emit(check, argparse.Namespace(format=args.format or "table", output=None, width=args.width))
    return 0 if check.passed else 1


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError

    _torch_spec(args)
    if args.real:
        raise InputSpecError("--real does not apply to fxcost crosscheck",
                             hint="the PyTorch route counts on meta; a model with weights is also run in onnxruntime")
    _check_folder(args.output)
    _check_folder(args.onnx_file)
    from fxcost.conventions import get_convention

    get_convention(args.convention)
    calls = _inputs(args)
    if len(calls) != 1:
        raise InputSpecError("fxcost crosscheck takes one input size", hint="give one --input")
    model, name = _load(args.spec, args)
    with _progress(f"cross-checking {name}") as update:
        check = _crosscheck(args, model, name, calls[0], update, args.onnx_file, exported=None, optimize=args.optimize)
    _emit(check, args)
    return 0 if check.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from fxcost.errors import FxcostError

    try:
        commands = {"analyze": cmd_analyze, "compare": cmd_compare, "diagram": cmd_diagram, "report": cmd_report,
                    "review": cmd_review, "onnx": cmd_onnx, "crosscheck": cmd_crosscheck}
        return commands[args.command](args)
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
        # for review and cross-checks 1 means "over budget" or "the routes disagree"
        return 3 if args.command in ("review", "crosscheck") or getattr(args, "verify", False) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
