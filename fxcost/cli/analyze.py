"""``fxcost analyze``: the per-layer cost table of one model (or one ONNX file), at one or more
input sizes."""

from __future__ import annotations

import argparse
from typing import Any

from fxcost.cli import options

NAME = "analyze"
ORDER = 1
SUMMARY = "per-layer cost table of one model"
DESCRIPTION = "Trace a model, propagate shapes on fake tensors and count its costs."
EPILOG = """\
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
  fxcost analyze tv:resnet50
      torchvision's ResNet-50 by name, at its own input size (timm:convnext_tiny for timm's); no weights
  fxcost analyze hf:BertModel --config num_hidden_layers=4 --input 2x128:int64 --input attention_mask=2x128:int64
      config fields with --config; keyword tensors with name=SHAPE
  fxcost analyze my_model.py:Net --input 1x3x64x64 --kwarg return_features=True --leaf Backbone
      a non-tensor keyword for forward; keep a module whole (its ops are still counted)
  fxcost compare examples/vgg.py:d2l_vgg11 examples/alexnet.py:alexnet --input 1x3x224x224
      two models side by side, split by layer type, with ratios

""" + options.CONVENTIONS_NOTE


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_analysis(p)
    options.add_device(p)
    options.add_output(p)
    g = p.add_argument_group("view")
    g.add_argument("--depth", "-d", type=options.integer(1, 100_000), metavar="N", help="roll layers up into their modules N levels below the root")
    from fxcost.report.kinds import View

    g.add_argument("--group-by", "-g", choices=tuple(View), default=None,
                   help="rows per layer (default), per module (with --depth, default 1) or per layer type")
    g.add_argument("--ops", action="store_true",
                   help="the trace op by op instead of the layer table: each aten op in the order it ran (the backward's "
                        "too with --train), the module call it ran in, the ops its operands came from, its outputs' "
                        "shapes, dtypes and strides, its MACs and FLOPs (the JSON's trace.ops)")


def view(report: Any, args: argparse.Namespace) -> Any:
    from fxcost.report.kinds import View

    group = View(args.group_by) if args.group_by else View.MODULE if args.depth else View.LAYER
    if group is View.TYPE:
        return report.by_type()
    if group is View.MODULE:
        return report.by_module(args.depth or 1)
    return report


def run(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError
    from fxcost.report.report import OpTrace, Sweep

    options.check_depth(args.depth, "--depth 1 shows the root's children, --depth 2 their children")
    options.check_output(args.output, args)
    calls = options.inputs(args)
    if args.ops and (len(calls) > 1 or args.depth or args.group_by):
        given = "several --input" if len(calls) > 1 else "--depth/--group-by"
        raise InputSpecError(f"--ops lists one trace op by op: {given} does not apply to it",
                             hint="give one --input and no --depth or --group-by with --ops")
    model, name = options.load(args.spec, args)
    if args.ops:
        options.emit(OpTrace(options.analyze_one(model, name, calls[0], args)), args)
        return 0
    formula_call = getattr(args, "formula_call", None)
    reports = [view(options.analyze_one(model, name, c, args), args) for c in calls if c is not formula_call]
    if formula_call is not None and reports:  # measured sizes beside the formula
        formula = options.analyze_one(model, name, formula_call, args)
        options.emit(Sweep(tuple(reports), formula), args)
        return 0
    if formula_call is not None:
        reports = [view(options.analyze_one(model, name, formula_call, args), args)]
    options.emit(reports[0] if len(reports) == 1 else Sweep(tuple(reports)), args)
    return 0
