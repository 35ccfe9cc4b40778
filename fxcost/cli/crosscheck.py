"""``fxcost crosscheck``: one model counted through PyTorch and through its ONNX export."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from fxcost.cli import options

NAME = "crosscheck"
ORDER = 7
SUMMARY = "count a model through PyTorch and through its ONNX export, side by side"
DESCRIPTION = ("Analyze the model via torch.fx/torch.export, export it to ONNX, recount the ONNX graph and print both "
               "by layer type with the differences named. Params and MACs must agree exactly (exit 1 when not). With "
               "real weights the ONNX file also runs in onnxruntime on random inputs: the largest absolute "
               "difference from PyTorch is reported.")
EPILOG = """\
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


def internal_error(args: argparse.Namespace) -> int:
    """1 means "the routes disagree": an internal error is 3."""
    return 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_model(p, spec_help=options.TORCH_SPEC_HELP)
    options.add_inputs(p)
    options.add_tracing(p, real=False)
    options.add_counting(p)
    options.add_output(p)
    options.add_export(p)
    g = p.add_argument_group("the file")
    g.add_argument("--optimize", action="store_true", help="check the optimized graph (fxcost onnx --optimize)")
    g.add_argument("--onnx-file", metavar="FILE", help="keep the exported file here (default: a temporary file)")


def check(args: argparse.Namespace, model: Any, name: str, call: options.Call, update: Callable[[str], None],
          onnx_file: str | None, exported: Any, optimize: bool) -> Any:
    from fxcost.onnx.crosscheck import crosscheck

    inputs, kwargs = call
    return crosscheck(model, inputs, kwargs, convention=args.convention, name=name, tracer=args.tracer, leaves=args.leaf,
                      onnx_file=onnx_file, exported=exported, opset=args.opset, optimize=optimize,
                      run=not args.no_run, strict=args.strict, on_stage=update)


def run(args: argparse.Namespace) -> int:
    from fxcost.counting.conventions import get_convention
    from fxcost.errors import InputSpecError

    options.torch_spec(args)
    options.check_output(args.output, args)
    options.check_output(args.onnx_file, args)
    get_convention(args.convention)
    calls = options.inputs(args)
    if len(calls) != 1:
        raise InputSpecError("fxcost crosscheck takes one input size", hint="give one --input")
    model, name = options.load(args.spec, args, meta=False)
    with options.progress(f"cross-checking {name}") as update:
        result = check(args, model, name, calls[0], update, args.onnx_file, exported=None, optimize=args.optimize)
    options.emit(result, args)
    return 0 if result.passed else 1
