"""``fxcost compare``: two models (or one at two input sizes) side by side, by layer type."""

from __future__ import annotations

import argparse

from fxcost.cli import analyze, options

NAME = "compare"
ORDER = 2
SUMMARY = "two models (or one at two input sizes) side by side"
DESCRIPTION = ("Compare params, MACs, FLOPs and activations, in total and by layer type, with A/B ratios. "
               "With one SPEC, give two --input sizes; with two, one --input for both or one each.")
EPILOG = analyze.EPILOG


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_analysis(p, two=True)
    options.add_output(p)


def run(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError
    from fxcost.report.compare import compare

    options.check_output(args.output, args)
    calls = options.inputs(args)
    if args.spec_b is None:
        if len(calls) != 2:
            raise InputSpecError("compare with one model needs two --input sizes", hint="e.g. --input 1x3x224x224 --input 1x3x112x112")
        model, name = options.load(args.spec, args)
        a, b = (options.analyze_one(model, name, c, args) for c in calls)
    else:
        if len(calls) > 2:
            raise InputSpecError("compare takes one --input for both models, or one for each", hint="e.g. --input 1x3x224x224, or --input 1x3x224x224 --input 1x3x112x112")
        ma, na = options.load(args.spec, args)
        mb, nb = options.load(args.spec_b, args)
        a, b = options.analyze_one(ma, na, calls[0], args), options.analyze_one(mb, nb, calls[-1], args)
    options.emit(compare(a, b), args)
    return 0

