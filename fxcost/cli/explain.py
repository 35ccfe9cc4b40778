"""``fxcost explain``: why another tool's figure for a model differs from fxcost's."""

from __future__ import annotations

import argparse
import sys

from fxcost.cli import options

NAME = "explain"
ORDER = 9
SUMMARY = "another tool's MACs for the model reproduced, and every difference from fxcost's named"
DESCRIPTION = ("Reproduce what fvcore, ptflops, thop, torchinfo, calflops, DeepSpeed's profiler or PyTorch's "
               "FlopCounterMode reports for the model (on fxcost's data-free copy, blind spots included), set it "
               "beside fxcost's count per layer type, and name the reason for every difference: ops the tool does "
               "not count, ops it counts differently, bias and activation conventions. The named differences add "
               "up to the gap exactly. Where the tool is installed it also runs, on a real copy of the model, and "
               "its own figure is shown beside the reproduction.")
EPILOG = """\
examples:
  fxcost explain examples/vgg.py:vgg19 --input 1x3x224x224 --vs ptflops
      why ptflops' VGG-19 is not fxcost's: ReLU and pooling counted as MACs, bias adds
  fxcost explain hf:GPT2LMHeadModel --input 1x1024:int64 --vs thop
      thop sees GPT-2's Conv1D layers and nothing of its attention
  fxcost explain examples/resnet.py:resnet50 --input 1x3x224x224 --vs torchinfo -f json -o why.json
      the same as JSON: by type, the differences, the installed tool's own figure
  fxcost explain examples/vit.py:vit_b_16 --input 1x3x224x224 --vs fvcore --no-run
      the reproduction only (no real weights built, fvcore not run)

tools: fvcore, ptflops, thop, torchinfo, calflops, deepspeed, flop_counter (docs/conventions.md:
each one's rule per op family, with the source line it comes from, and the versions reproduced).
exit codes: 0 explained (and, where installed, the tool gave the reproduced figures), 1 the installed
tool reported other figures than the reproduction or failed where it counted, 2 bad input or the tool is not installed (the
reproduction is still shown; the message says how to install it), 3 internal error.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fxcost.counting.conventions import TOOL_PRESETS

    options.add_model(p, spec_help=options.TORCH_SPEC_HELP)
    options.add_inputs(p)
    g = p.add_argument_group("the other tool")
    g.add_argument("--vs", required=True, metavar="TOOL", help=f"the tool to explain: {', '.join(TOOL_PRESETS)}")
    g.add_argument("--no-run", action="store_true",
                   help="do not run the installed tool (its run needs real weights, built on the CPU)")
    options.add_tracing(p, real=False)
    options.add_output(p)


def run(args: argparse.Namespace) -> int:
    import fxcost
    from fxcost.errors import InputSpecError
    from fxcost.peers import peer
    from fxcost.peers.apply import installed

    options.torch_spec(args)
    options.check_output(args.output, args)
    tool = peer(args.vs)
    if getattr(args, "dtype", None):
        raise InputSpecError(f"fxcost explain counts the model as built, as {tool.name} runs it: --dtype has no "
                             "counterpart there", hint="drop --dtype (the counts of MACs do not depend on it)")
    calls = options.inputs(args)
    if len(calls) != 1:
        raise InputSpecError("fxcost explain takes one input size", hint="give one --input")
    have = installed(tool)
    live = have and not args.no_run and tool.run_tool is not None
    model, name = options.load(args.spec, args, meta=not live)
    inputs, kwargs = calls[0]
    doing = f"counting {name} as fxcost and as {tool.name} do" + (f", then running {tool.name} itself" if live else "")
    with options.progress(doing + " ..."):
        explained = fxcost.explain(model, example_inputs=inputs, example_kwargs=kwargs, vs=tool.name,
                                   run=live or not have, name=name, tracer=args.tracer, leaves=args.leaf)
    options.emit(explained, args)
    if not have:
        print(f"fxcost: error: {tool.package} is not installed, so only its reproduction is shown above\n"
              f"  hint: {tool.install} (the release reproduced), then run this again", file=sys.stderr)
        return 2
    if explained.measured_failed:
        print(f"fxcost: {tool.name} itself failed on the model, where its reproduction counted "
              f"({explained.measured_note}): please file an issue", file=sys.stderr)
    return 1 if explained.reproduced is False or explained.measured_failed else 0
