"""``fxcost onnx``: export a model to ONNX through torch.onnx, optionally structure only, and
optionally verified against the PyTorch route."""

from __future__ import annotations

import argparse
import sys

from fxcost.cli import options

NAME = "onnx"
ORDER = 6
SUMMARY = "export to ONNX through torch.onnx (optionally structure only, and verified)"
DESCRIPTION = ("Export a model to ONNX with torch.onnx's dynamo exporter, atomically, with progress. --structure-only "
               "writes the graph with every weight's name, shape and dtype but no data, from a model on meta; --verify "
               "then recounts the file and cross-checks it against PyTorch.")
EPILOG = """\
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


def epilog() -> str:
    """The examples, and the opsets the installed onnx and onnxruntime take (asked when --help
    is shown, not at every start)."""
    from fxcost.onnx.export import opset_hint

    return EPILOG + f"\nopsets: {opset_hint()}\n"


def internal_error(args: argparse.Namespace) -> int:
    """1 means "the routes disagree" with --verify: an internal error is 3 then."""
    return 3 if args.verify else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_model(p, spec_help=options.TORCH_SPEC_HELP)
    options.add_inputs(p)
    p.add_argument("--output", "-o", metavar="FILE", required=True, help="the .onnx file to write")
    options.add_export(p)
    g = p.add_argument_group("the file")
    g.add_argument("--dynamic-batch", action="store_true", help="make dimension 0 of every input dynamic")
    g.add_argument("--structure-only", action="store_true",
                   help="no weight data: weights become named graph inputs with shapes and dtypes (exported from meta)")
    g.add_argument("--optimize", action="store_true",
                   help="run onnxscript's graph optimizer: folds constants and BatchNorm into convs, drops zero biases "
                   "(the file then has fewer parameters than the model)")
    v = p.add_argument_group("with --verify")
    v.add_argument("--verify", action="store_true",
                   help="cross-check the written file against PyTorch (as fxcost crosscheck; exit 1 when params or MACs differ)")
    options.add_tracing(p, real=False, group=v)
    options.add_counting(p, group=v)
    from fxcost.exporters import FORMATS

    v.add_argument("--format", "-f", choices=FORMATS, default=None, help="format of the --verify output (default: table)")
    v.add_argument("--width", type=options.integer(40, 100_000), default=None, help="terminal table width for --verify (default: terminal's)")


def run(args: argparse.Namespace) -> int:
    from fxcost.counting.conventions import get_convention
    from fxcost.errors import InputSpecError
    from fxcost.onnx.export import export_onnx

    options.torch_spec(args)
    options.check_output(args.output, args)
    unused = [flag for flag, on in (("--convention", args.convention != "fxcost"), ("--strict", args.strict),
                                    ("--tracer", args.tracer != "auto"), ("--leaf", args.leaf), ("--format", args.format),
                                    ("--width", args.width), ("--no-run", args.no_run)) if on]
    if unused and not args.verify:
        raise InputSpecError(f"{', '.join(unused)} only apply with --verify (they shape the cross-check, not the export)",
                             hint="add --verify, or drop them")
    get_convention(args.convention)  # a bad name fails now, not after the file is written
    calls = options.inputs(args)
    if len(calls) != 1:
        raise InputSpecError("fxcost onnx takes one input size", hint="give one --input; --dynamic-batch makes the batch dimension dynamic")
    model, name = options.load(args.spec, args, meta=False)
    inputs, kwargs = calls[0]
    with options.progress(f"exporting {name} to {args.output}") as update:
        result = export_onnx(model, inputs, kwargs, args.output, opset=args.opset, dynamic_batch=args.dynamic_batch,
                             structure_only=args.structure_only, optimize=args.optimize, on_stage=update)
    what = "structure only, no weight data" if result.structure_only else "with weights"
    print(f"wrote {result.path}: {result.nodes:,} nodes, {result.params:,} params ({what}), opset {result.opset}, "
          f"{result.file_bytes / 1024**2:,.1f} MiB, {result.seconds:.1f} s"
          + (", dynamic batch" if result.dynamic_batch else "") + (", optimized" if result.optimized else ""),
          file=sys.stderr if args.verify else options.results())
    if not args.verify:
        return 0
    from fxcost.cli.crosscheck import check

    with options.progress(f"cross-checking {args.output}") as update:
        result_check = check(args, model, name, calls[0], update, args.output, exported=result, optimize=result.optimized)
    options.emit(result_check, argparse.Namespace(format=args.format or "table", output=None, width=args.width))
    return 0 if result_check.passed else 1
