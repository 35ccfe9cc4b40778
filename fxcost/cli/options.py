"""The option groups the commands share, and what every command does with them: load the model,
make its inputs, analyze it, write the result.

A command attaches only the groups that apply to it (``fxcost onnx`` has no ``--real``, a
diagram no ``--format``); each group is an ``argparse`` argument group, so ``--help`` lists the
options under their headings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

SPEC_HELP = ("path/to/file.py:name or package.module:name (a class, factory or instance), hf:ClassName / "
             "hf:path/to/config.json for a transformers model from its config, or model.onnx (any ONNX file)")
TORCH_SPEC_HELP = ("path/to/file.py:name or package.module:name (a class, factory or instance), or hf:ClassName / "
                   "hf:path/to/config.json for a transformers model from its config")

CONVENTIONS_NOTE = """\
conventions (docs/conventions.md): MACs count multiply-accumulates of conv/matmul ops; FLOPs are
2 per MAC plus bias adds and per-element costs of other ops; activations are the tensors each
layer newly allocates (in-place ops and views are free), the input included.
--convention fvcore|ptflops|thop|torchinfo|calflops|deepspeed|flop_counter gives that tool's MACs
and params exactly, blind spots included; fxcost explain --vs TOOL names each difference.
"""

#: a model's inputs for one call: positional tensors and keyword values
Call = tuple[tuple[Any, ...], dict[str, Any]]


def add_analysis(p: argparse.ArgumentParser, two: bool = False) -> None:
    """What every command that analyzes a model (or an ONNX file) takes: the model, its inputs,
    how to trace it and how to count."""
    add_model(p, two=two)
    add_inputs(p)
    add_tracing(p)
    add_counting(p)
    add_memory(p)


def add_model(p: argparse.ArgumentParser, spec_help: str = SPEC_HELP, two: bool = False) -> None:
    """SPEC (or SPEC_A [SPEC_B]) and what builds it."""
    if two:
        p.add_argument("spec", metavar="SPEC_A")
        p.add_argument("spec_b", metavar="SPEC_B", nargs="?")
    else:
        p.add_argument("spec", metavar="SPEC", help=spec_help)
    g = p.add_argument_group("the model")
    g.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument for the model, as a Python literal (repeatable)")
    g.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="for hf: models, a config field, as a Python literal (--config n_layer=6; dtype=bfloat16 is honored)")
    g.add_argument("--dtype", metavar="DTYPE", default=None,
                   help="analyze the model as cast to DTYPE (bfloat16, float16...): its float weights, buffers and inputs")


def add_inputs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("its inputs")
    g.add_argument(
        "--input", "-i", action="append", default=[], metavar="SHAPE",
        help="input shape, e.g. 1x3x224x224 or 1x128:int64; several positional inputs joined by "
        "commas (1x3x32x32,1x10); name=SHAPE for a keyword tensor (attention_mask=1x128:int64); "
        "values after '=' where the forward reads them: one fills the tensor (1x576:int64=32000), or "
        "one per element joined by ';' (image_grid_thw=1x3:int64=1;16;16); integer inputs without "
        "values are zeros; repeat --input to sweep input sizes (analyze, compare, report; a diagram takes one); "
        "a letter for a size that varies (Bx3xHxW, BxS:int64) makes every figure an exact formula of the letters "
        "(analyze), valid where its printed domain holds",
    )
    g.add_argument("--hint", metavar="L=N,...", default=None,
                   help="the size each letter of --input is run at, for the branches the forward takes on sizes "
                        "(default: 2 for a batch, 224 for an image's height and width, else 128), e.g. B=8,S=2048")
    g.add_argument("--kwarg", "-k", action="append", default=[], metavar="NAME=VALUE",
                   help="a non-tensor keyword argument of forward, as a Python literal (return_dict=False)")


def add_tracing(p: argparse.ArgumentParser, real: bool = True, group: Any = None) -> None:
    """--tracer, --leaf and (where a model is analyzed for real) --real; into ``group`` when given."""
    g = group if group is not None else p.add_argument_group("tracing")
    from fxcost.report.kinds import TRACERS

    g.add_argument("--tracer", choices=("auto", *TRACERS), default="auto",
                   help="how the model becomes a graph: auto (default) tries symbolic tracing with untraceable "
                   "submodules kept opaque, then the fake run (the forward once on fake tensors, op by op); "
                   "export runs torch.export, only when asked for")
    g.add_argument("--leaf", action="append", default=[], metavar="MODULE",
                   help="keep a module (a path like encoder.layer.0, or a class name) as one node whose ops "
                   "are still counted (repeatable)")
    g.add_argument("--hooks", action="store_true",
                   help="run the model's own forward hooks too (torch's, weight_norm's and spectral_norm's, always "
                        "run); an analysis runs the forward several times on fake tensors")
    if real:
        g.add_argument("--real", action="store_true",
                       help="run real tensors on a copy of the model instead of fake ones (slow; needs weights)")


def add_counting(p: argparse.ArgumentParser, group: Any = None) -> None:
    """--convention and --strict; into ``group`` when given."""
    from fxcost.counting.conventions import CONVENTIONS, TOOL_PRESETS

    g = group if group is not None else p.add_argument_group("counting")
    g.add_argument("--convention", "-c", default="fxcost", metavar="NAME",
                   help=f"counting convention: {', '.join(CONVENTIONS)} (default fxcost), or another tool's count "
                        f"reproduced exactly: {', '.join(TOOL_PRESETS)} (docs/conventions.md)")
    g.add_argument("--strict", action="store_true", help="fail when an op has no cost formula")
    g.add_argument("--formulas", action="append", default=[], metavar="FILE.py",
                   help="a Python file that prices your own ops with fxcost.register_formula(\"mylib::op\", fn); "
                        "repeatable (docs/api.md)")
    g.add_argument("--train", action="store_true",
                   help="count a training step: the forward in train mode, then the backward of the first float output "
                        "summed (backward MACs and FLOPs per layer; frozen parameters get no gradient), and measure its "
                        "peak memory (params, grads, optimizer states, activations, temporaries)")


#: fxcost.pytorch.step's optimizers, autocast dtypes and default, named here so that building the
#: parser imports no torch (``--help`` is instant; tests/test_cli.py holds the two lists equal)
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "adafactor", "none")
AMP_DTYPES = ("bfloat16", "float16")
DEFAULT_OPTIMIZER = "adamw"


def integer(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``lo`` to ``hi``, else a short error (exit 2) that does
    not echo a long value back."""
    def parse(text: str) -> int:
        from fxcost.errors import quoted

        t = text.strip()
        if not t.lstrip("+-").isdigit() or len(t) > 18 or not lo <= int(t) <= hi:
            raise argparse.ArgumentTypeError(f"{quoted(text)} is not a whole number from {lo:,} to {hi:,}")
        return int(t)
    return parse


def add_memory(p: argparse.ArgumentParser) -> None:
    """What a training step's memory is measured with (--optimizer, --amp, --checkpoint, --shard) and --fit."""
    g = p.add_argument_group("memory of a training step (with --train) and --fit")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help=f"the optimizer whose states the step allocates, as PyTorch's own does (default {DEFAULT_OPTIMIZER})")
    g.add_argument("--amp", choices=AMP_DTYPES, default=None,
                   help="mixed precision: the forward under autocast (float32 weights, low-precision matmuls and "
                        "the activations they save)")
    g.add_argument("--checkpoint", action="append", default=[], metavar="MODULE",
                   help="recompute a module (path or class name, e.g. LlamaDecoderLayer) in the backward instead of "
                        "saving its activations; its forward ops are counted again (repeatable)")
    g.add_argument("--shard", metavar="SCHEME:RANKS", default=None,
                   help="the peak per rank when data-parallel ranks shard the model states: zero1 (optimizer states), "
                        "zero2 (and gradients), zero3 or fsdp (and parameters), e.g. zero2:8")
    g.add_argument("--fit", metavar="SIZE", default=None,
                   help="find the largest batch (the first dimension of every input) whose peak fits SIZE, e.g. 80GiB "
                        "or 24GB; a training step's peak with --train, the forward's without")


def add_device(p: argparse.ArgumentParser) -> None:
    from fxcost.counting.devices import DEVICES

    p.add_argument_group("roofline").add_argument(
        "--device", metavar="NAME", default=None,
        help=f"each layer's time at best on a device, max(FLOPs / peak, bytes moved / bandwidth), and whether compute or "
             f"memory bounds it: {', '.join(DEVICES)}, or a profile.toml (docs/commands/llm.md)")


def add_output(p: argparse.ArgumentParser, output: bool = True) -> None:
    from fxcost.exporters import FORMATS

    g = p.add_argument_group("output")
    g.add_argument("--format", "-f", choices=FORMATS, help="output format (default: from -o's extension, else table)")
    if output:
        g.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    g.add_argument("--width", type=integer(40, 100_000), default=None, help="terminal table width (default: terminal's)")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="also say how the model was traced: the routes tried before the one that counted and why "
                        "each was left, the modules that ran op by op, the warnings raised while analyzing (the "
                        "JSON's trace always has them)")


def add_drawing(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("drawing")
    g.add_argument("--depth", "-d", type=integer(1, 100_000), metavar="N",
                   help="draw each module N levels down as one node (double border); module lists and only-child "
                   "wrappers are not levels here, unlike analyze --depth, which counts path components")
    g.add_argument("--roll", action="store_true",
                   help="draw a run of structurally identical sibling blocks once, labelled xN")
    g.add_argument("--color", choices=("flops", "params", "memory", "none"), default="flops",
                   help="fill nodes by their share of FLOPs (default), params, activation memory, or not at all")
    g.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right")


def add_export(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ONNX export")
    g.add_argument("--opset", type=integer(1, 1_000), default=18, metavar="N", help="ONNX opset to export (default 18)")
    g.add_argument("--random-weights", action="store_true",
                   help="build an hf: model with real random weights (seed 0) instead of on meta, so the export "
                   "carries weights and onnxruntime can run it")
    g.add_argument("--no-run", action="store_true", help="do not run the ONNX file in onnxruntime")


# --- what commands do with the options ----------------------------------------------------


def is_onnx(spec: str | None) -> bool:
    return bool(spec) and str(spec).lower().endswith(".onnx")


def inputs(args: argparse.Namespace) -> list[Call]:
    """One (positional, keyword) pair of meta tensors per input size, plus --kwarg values."""

    from fxcost.errors import InputSpecError
    from fxcost.loading.specs import make_inputs, parse_kv

    if not args.input and is_onnx(args.spec):
        return [((), {})]  # the file's own input shapes
    if not args.input:
        args.input = _zoo_input(args)
    if not args.input:
        raise InputSpecError("no --input given", hint="e.g. --input 1x3x224x224 (batch x channels x height x width), or --input 1x128:int64 for token ids")
    from fxcost.loading.specs import lettered_inputs, text_has_letters

    texts = [t for t in args.input if is_onnx(args.spec) or not text_has_letters(t)]
    lettered = [t for t in args.input if t not in texts]
    if len(lettered) > 1:
        raise InputSpecError("sizes written as letters make one analysis whose figures hold at every size: give one "
                             "--input with letters", hint="e.g. --input BxS:int64; --input with numbers beside it are "
                                                          "measured and shown beside the formula")
    if lettered and getattr(args, "command", "analyze") != "analyze":
        raise InputSpecError(f"sizes written as letters are read by fxcost analyze, not fxcost {args.command}",
                             hint="give numbers here, or run fxcost analyze --input with letters")
    if lettered:
        a, kw, args.dims = lettered_inputs(lettered, parse_kv(args.kwarg, "--kwarg"), getattr(args, "hint", None))  # type: ignore[misc]
        args.formula_call = (a, kw)
        if not texts:
            return [args.formula_call]
    if getattr(args, "hint", None) and not lettered:
        raise InputSpecError("--hint gives sizes to letters, and no --input size has one",
                             hint="write a letter for a size that varies: --input BxS:int64 --hint S=2048")
    return make_inputs(texts, parse_kv(args.kwarg, "--kwarg"), any_name=is_onnx(args.spec))


def _zoo_input(args: argparse.Namespace) -> list[str]:
    """A zoo model's own input (timm, torchvision, diffusers, transformers), where --input is not
    given (said on stderr)."""
    from fxcost.loading.specs import parse_kv
    from fxcost.loading.zoos import default_input, load_zoo, zoo_of

    spec = getattr(args, "spec", "") or ""
    if zoo_of(spec) is None and not spec.startswith("hf:"):
        return []
    with contextlib.redirect_stderr(io.StringIO()):  # its notes are said once, when the model is loaded for the analysis
        if spec.startswith("hf:"):
            from fxcost.loading.hf import load_hf

            model, name = load_hf(spec, parse_kv(getattr(args, "config", None) or [], "--config"))
        else:
            model, name = load_zoo(spec, parse_kv(args.arg))
    shape, why = default_input(spec, model)
    print(printable(f"fxcost: note: --input {shape}, {name}'s own input size ({why})"), file=sys.stderr)
    return [shape]


def without_dynamo() -> None:
    """Spare this process torch._dynamo's import (1.4-2.3 s here): torch wraps its Python meta
    kernels (the elementwise type-promotion wrapper of ``torch._refs``) in ``torch._disable_dynamo``,
    which imports ``torch._dynamo`` on a kernel's first call just to mark it "never compile". The
    ``fxcost`` command owns its process and never compiles (non-strict ``torch.export`` traces
    with make_fx, not with Dynamo's frame evaluation), so each such kernel is marked as its own
    disabled form, exactly what the wrapper looks up before importing. Called by the command's
    entry point alone, not by :func:`fxcost.cli.main` (which another program may call in its own
    process) nor by the library, whose caller may compile. Needs torch's ``__dynamo_disable`` attribute; without it, nothing
    changes."""
    import gc
    import types

    import torch

    if "torch._dynamo" in sys.modules:
        return
    code = torch._disable_dynamo(lambda: None).__code__
    if "fn" not in code.co_freevars:
        return
    cell = code.co_freevars.index("fn")
    for f in gc.get_objects():
        if type(f) is types.FunctionType and f.__code__ is code and f.__closure__ is not None:
            fn = f.__closure__[cell].cell_contents
            if getattr(fn, "__dynamo_disable", None) is None:
                fn.__dynamo_disable = fn


def formulas(args: argparse.Namespace) -> None:
    """Import each ``--formulas`` file once: its ``fxcost.register_formula`` calls price the user's
    ops. A file that does not import, or registers what fxcost refuses, is bad input (exit 2)."""
    from fxcost.errors import FxcostError, InputSpecError
    from fxcost.loading.specs import import_file

    for path in getattr(args, "formulas", None) or []:
        if path in _FORMULAS_READ:
            continue
        if not Path(path).is_file():
            raise InputSpecError(f"--formulas {path}: no such file", hint="give the path of a .py file that calls "
                                 "fxcost.register_formula")
        try:
            import_file(Path(path))  # register_formula's refusals (ValueError) come out as SpecError, exit 2
        except FxcostError as e:
            raise InputSpecError(f"--formulas {e.message}", hint="see fxcost.register_formula in docs/api.md") from e
        _FORMULAS_READ.add(path)


_FORMULAS_READ: set[str] = set()


def load(spec: str, args: argparse.Namespace, meta: bool = True) -> tuple[Any, str]:
    """The model a spec names (an ONNX file stays a path), and its display name. ``meta``: built
    on the meta device (no weight values: a static analysis reads none), unless ``--real``;
    commands that run the model for real (crosscheck, onnx) pass False."""
    from fxcost.errors import InputSpecError
    from fxcost.loading.specs import load_model, parse_kv

    formulas(args)
    if is_onnx(spec):
        given = [flag for flag, on in (("--arg", args.arg), ("--config", args.config), ("--kwarg", args.kwarg),
                                       ("--dtype", getattr(args, "dtype", None)), ("--train", getattr(args, "train", False)),
                                       ("--optimizer", getattr(args, "optimizer", None)), ("--amp", getattr(args, "amp", None)),
                                       ("--checkpoint", getattr(args, "checkpoint", [])), ("--shard", getattr(args, "shard", None)),
                                       ("--fit", getattr(args, "fit", None)), ("--device", getattr(args, "device", None)),
                                       ("--leaf", getattr(args, "leaf", [])), ("--real", getattr(args, "real", False)),
                                       ("--hooks", getattr(args, "hooks", False)),
                                       ("--tracer", getattr(args, "tracer", "auto") != "auto"))
                 if on]
        if given:
            raise InputSpecError(f"{', '.join(given)} do(es) not apply to an ONNX file ({spec})",
                                 hint="an ONNX file is analyzed from its graph; give only --input to pin dynamic dimensions")
        return Path(spec), Path(spec).stem
    return load_model(spec, parse_kv(args.arg), parse_kv(args.config, "--config"),
                      hf_weights=getattr(args, "random_weights", False) or getattr(args, "real", False),
                      meta=meta and not getattr(args, "real", False))


def analyze_one(model: Any, name: str, call: Call, args: argparse.Namespace) -> Any:
    """One report: of an ONNX file, or of a PyTorch model at one input size."""
    import torch

    import fxcost

    tensors, kwargs = call
    shapes = ", ".join("x".join(map(str, t.shape)) for t in [*tensors, *kwargs.values()] if isinstance(t, torch.Tensor))
    if isinstance(model, Path):
        with progress(f"analyzing {model} ..."):
            return fxcost.analyze_onnx(model, [tuple(t.shape) for t in tensors],
                                       {k: tuple(v.shape) for k, v in kwargs.items() if isinstance(v, torch.Tensor)},
                                       convention=args.convention, strict=args.strict, name=name)
    with progress(f"analyzing {name} at {shapes} ..."):
        return fxcost.analyze(
            model, example_inputs=tensors, example_kwargs=kwargs, convention=args.convention, real=args.real,
            strict=args.strict, name=name, tracer=args.tracer, leaves=args.leaf, dtype=getattr(args, "dtype", None),
            train=getattr(args, "train", False), optimizer=getattr(args, "optimizer", None), amp=getattr(args, "amp", None),
            checkpoint=getattr(args, "checkpoint", []), shard=getattr(args, "shard", None), fit=getattr(args, "fit", None),
            device=getattr(args, "device", None), ops=getattr(args, "ops", False), hooks=getattr(args, "hooks", False),
            dims=getattr(args, "dims", None) if call is getattr(args, "formula_call", None) else None,
        )


def one_report(args: argparse.Namespace, what: str) -> Any:
    """The report of a command that takes one input size."""
    from fxcost.errors import InputSpecError

    calls = inputs(args)
    if len(calls) != 1:
        raise InputSpecError(f"{what} takes one input size", hint="give one --input (keyword tensors may be added with name=SHAPE)")
    model, name = load(args.spec, args)
    return analyze_one(model, name, calls[0], args)


def check_depth(depth: int | None, hint: str) -> None:
    from fxcost.errors import InputSpecError

    if depth is not None and depth < 1:
        raise InputSpecError(f"--depth must be at least 1, got {depth}", hint=hint)


def run_inputs(args: argparse.Namespace) -> list[Path]:
    """The files this run reads: the model's file (``file.py:name``, an ONNX file, an ``hf:``
    config), the second model's, the baseline, the pyproject.toml."""
    found = []
    for spec in (getattr(args, "spec", None), getattr(args, "spec_b", None)):
        if spec:
            text = str(spec).removeprefix("hf:")
            for candidate in (text, text.rpartition(":")[0]):
                if candidate and Path(candidate).exists():
                    found.append(Path(candidate))
                    break
    for name in ("baseline", "pyproject"):
        if getattr(args, name, None):
            found.append(Path(getattr(args, name)))
    if getattr(args, "command", None) == "review":
        found.append(Path("pyproject.toml"))
    return found


def check_output(output: str | None, args: argparse.Namespace) -> None:
    """Refuse, before the analysis rather than after it, an output fxcost must not write (an input
    of this run, a link, a device, a missing or unwritable folder: :func:`fxcost.io.check_output`)."""
    from fxcost.io import check_output as check

    if output:
        check(Path(output), run_inputs(args))


def torch_spec(args: argparse.Namespace) -> None:
    """The command needs the PyTorch model, not an ONNX file."""
    from fxcost.errors import InputSpecError

    if is_onnx(args.spec):
        raise InputSpecError(f"fxcost {args.command} needs the PyTorch model, not an ONNX file ({args.spec})",
                             hint=f"give the model's spec (file.py:name, hf:Class); `fxcost analyze {args.spec}` counts the file")


@contextlib.contextmanager
def progress(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while long work runs, when stderr is a terminal; yields a function
    that changes its text as the work moves through its stages."""
    if not sys.stderr.isatty():
        yield lambda _text: None
        return
    from rich.console import Console

    with Console(stderr=True).status(message) as status:
        yield lambda text: status.update(f"{text} ...")


def format_for(args: argparse.Namespace) -> str:
    """The output format: -f, else -o's extension, else table."""
    if args.format:
        return str(args.format)
    output = getattr(args, "output", None)
    suffix = Path(output).suffix.lower() if output else ""
    return {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".tex": "latex",
            ".html": "html", ".htm": "html"}.get(suffix, "table")


#: where results go: the command's standard output, kept apart while the model's own code runs
#: (it may print; that goes to stderr, see :func:`fxcost.cli.main`)
_RESULTS: list[TextIO] = []


@contextlib.contextmanager
def results_to(stream: TextIO) -> Iterator[None]:
    _RESULTS.append(stream)
    try:
        yield
    finally:
        _RESULTS.pop()


def results() -> TextIO:
    """The stream results are written to (the command's standard output)."""
    return _RESULTS[-1] if _RESULTS else sys.stdout


def printable(text: str) -> str:
    from fxcost.errors import printable as escape

    return escape(text)


def emit(obj: Any, args: argparse.Namespace) -> None:
    """Write ``obj`` to ``-o`` (atomically) or stdout, in the format asked or implied by -o."""
    from fxcost.exporters import render
    from fxcost.io import write_atomic

    fmt = format_for(args)
    output = getattr(args, "output", None)
    stdout = results()
    to_terminal = not output and stdout.isatty()
    width = args.width or max(shutil.get_terminal_size((160, 24)).columns, 100)
    text = render(obj, fmt, width=width, color=to_terminal, verbose=getattr(args, "verbose", False))
    if output:
        write_atomic(output, text)
    else:
        write_stdout(stdout, text)


def write_stdout(stdout: TextIO, text: str) -> None:
    """``text`` on standard output; a full disk or a closed pipe is an :class:`OutputError`, and
    what could not be written is dropped (Python would try again at exit, and fail with 120)."""
    from fxcost.errors import OutputError

    try:
        stdout.write(text)
        stdout.flush()
    except OSError as e:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        raise OutputError(f"cannot write to standard output: {e.strerror or e}",
                          hint="check the free space where it goes, or write a file with -o") from e
