"""fxcost's public functions, in one thin module: each takes what a user has, checks nothing the
route it hands it to does not check, and documents every argument here.

- :func:`analyze`: the PyTorch route (:mod:`fxcost.pytorch.analyze`); a ``convention`` naming
  another tool goes to that tool's preset (:func:`fxcost.peers.preset`, the extension point).
- :func:`sweep`: :func:`analyze` at several input sizes.
- :func:`explain`: another tool's count set beside fxcost's (:mod:`fxcost.peers.apply`).
- :func:`llm`: a causal LM's serving costs (:mod:`fxcost.pytorch.llm`).
- :func:`summary`: torchinfo's call, answered by fxcost (:mod:`fxcost.summarize`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fxcost.counting.arithmetic import Shape
from fxcost.counting.conventions import Convention
from fxcost.counting.registry import FormulaRegistry
from fxcost.peers import preset
from fxcost.peers.apply import explain
from fxcost.pytorch.analyze import analyze as _count
from fxcost.pytorch.analyze import sweep as _at_sizes
from fxcost.pytorch.llm import llm
from fxcost.report.kinds import Method
from fxcost.report.report import Report, Sweep
from fxcost.summarize import summary


def analyze(
    model: nn.Module,
    input_size: Shape | Sequence[Shape] | str | None = None,
    example_inputs: Any = None,
    example_kwargs: dict[str, Any] | None = None,
    convention: str | Convention = "fxcost",
    *,
    real: bool = False,
    strict: bool = False,
    name: str | None = None,
    tracer: str | Method = "auto",
    leaves: Sequence[str] = (),
    registry: FormulaRegistry | None = None,
    dtype: torch.dtype | str | None = None,
    train: bool = False,
    optimizer: str | None = None,
    amp: str | None = None,
    checkpoint: Sequence[str] = (),
    shard: str | None = None,
    fit: int | str | None = None,
    traffic: bool = False,
    device: str | None = None,
    ops: bool = False,
    hooks: bool = False,
    hint: str | dict[str, int] | None = None,
    dims: dict[str, tuple[int, int | None]] | None = None,
) -> Report:
    """Analyze ``model`` without running it for real, and return a :class:`Report`.

    ``input_size`` is one shape or a list of shapes (float32); ``example_inputs`` a tensor or a
    tuple of positional arguments (real, fake or meta tensors, or nested dicts/lists of them:
    only shapes and dtypes are used); ``example_kwargs`` keyword arguments (tensors or plain
    values). ``real=True`` runs real tensors on a copy of the model. ``strict=True`` raises
    :class:`UnsupportedOpError` when an op has no formula. ``registry``: the aten formulas to
    count with (a copy of :data:`fxcost.DEFAULT_REGISTRY`, extended), default that one.
    ``dtype`` (``torch.bfloat16`` or ``"bfloat16"``) analyzes the model as cast to it: its
    floating-point weights and buffers, and the float inputs (integer ones stay).

    ``train=True`` analyzes a training step's forward and backward: the working copy in train
    mode (dropout and batch statistics as in training) with gradients on, then the backward of
    the default loss (the first floating-point output, cast to float32 and summed), whose ops are
    priced by the same registry and attributed to the forward node they differentiate: rows and
    totals gain ``backward_macs`` and ``backward_flops``. Frozen parameters (``requires_grad=False``)
    get no weight gradient. Every tracer trains (the fake run by autograd on its fake tensors). The report's
    ``peak_memory`` is then a training step's (mode ``train``): two steps run on fake tensors,
    forward, loss, backward, ``optimizer`` step and ``zero_grad``, and the second one's peak is
    broken into params, buffers, inputs, grads, optimizer states, activations and temporaries.
    ``optimizer``: ``sgd``, ``sgd-momentum``, ``adam``, ``adamw`` (default), ``adafactor`` or
    ``none``, as PyTorch's own optimizers allocate their states. ``amp`` (``"bfloat16"`` or
    ``"float16"``) runs the step's forward under autocast (CPU autocast's op list; the weights stay
    float32). ``checkpoint`` names modules (paths or class names) to recompute in the backward
    instead of saving their activations (``torch.utils.checkpoint``); their forward's ops are
    counted again in the backward. ``shard`` (``"zero2:8"``): the peak per rank when data-parallel
    ranks shard the model states (ZeRO stages 1-3, ``fsdp`` = stage 3). ``fit`` (``"80GiB"`` or
    bytes): the largest batch (the first dimension of every input) whose peak fits, with or
    without ``train``. ``traffic=True`` also counts the bytes each forward op reads and writes
    (``bytes_moved`` per op, row and in total: each tensor argument read, each output written,
    views free), what a roofline prices; ``device`` (``"h100"``, ``"a100-80g"``... or a profile
    ``.toml``) draws it: the report's ``hardware``, each row's time ``max(FLOPs / peak, bytes /
    bandwidth)`` in ``report.roofline()`` (docs/commands/llm.md). ``ops=True`` keeps the trace op by
    op in ``report.trace.ops``: each aten op in dispatch order (the backward's after the forward's
    with ``train``), the module call it ran in, the op that made each tensor operand (``-1``: an
    input, a parameter or a buffer), its outputs' shapes, dtypes and strides, and its MACs and
    FLOPs; the rows are these ops summed per module call.

    ``tracer`` picks how the model becomes a graph: ``"auto"`` (symbolic tracing, keeping
    untraceable submodules opaque; else the fake run: the forward once on fake tensors, op by
    op), ``"symbolic"``, ``"eager"`` (the fake run) or ``"export"`` (``torch.export``, only
    when asked for). ``leaves`` names modules (paths or class names)
    to keep whole: one row per call, its ops still counted (FX does not trace into them). The
    report's ``trace`` says which method ran, which modules were opaque and why, and why earlier
    methods failed. The model is never modified: analysis runs on a weightless copy (a full
    copy with ``real``). The model's forward hooks are copied with it; torch's own run (the old
    ``weight_norm`` and ``spectral_norm`` compute the weight in one), the user's do not, since an
    analysis runs the forward several times on fake tensors (a hook that logs or writes files would
    do so each time): ``hooks=True`` runs them too (one that fails on data-free tensors is then set
    aside); the notes name the hooks that ran and the ones that did not.

    The result does not depend on where it is called: under ``torch.no_grad()``,
    ``torch.inference_mode()``, ``torch.enable_grad()``, inside a dispatch or fake mode of the
    caller's (set aside while fxcost runs), or from several threads at once (analyses take turns:
    torch.fx's tracing patches ``nn.Module.__call__`` for the whole process while it runs).

    **Sizes as letters.** ``input_size=("B", 3, "H", "W")``, or the ``--input`` text
    ``input_size="BxS:int64,attention_mask=BxS:int64"``: a letter is a size that varies, a number
    one that does not. The forward runs once on fake tensors whose sizes are PyTorch symbols
    (``ShapeEnv``), and every figure of the report is an exact sympy expression of the letters
    (``report.total().macs``: ``24*B*S**2*h + ...``), valid where ``report.sizes.domain`` holds
    (each letter's range, and each condition on the sizes the forward branched on). ``hint``
    (``"B=8,S=2048"``): the size each letter is run at, which decides those branches (default 2 for
    a batch, 224 for an image's height and width, else 128); ``dims`` (``{"S": (2, 4096)}``): a
    letter's range. ``report.at(B=8, S=4096)`` is the ordinary report of that size. A forward that
    fixes a letter (reads a table at that size, takes ``int()`` of it) is refused with the line.
    The peak memory is the first largest of ``report.peaks`` at a size, and ``fit`` gives each
    letter's largest size that fits (``report.sizes.fits``); docs/sizes.md.

    ``convention`` may also name another tool (``fvcore``, ``ptflops``, ``thop``, ``torchinfo``,
    ``calflops``, ``deepspeed``, ``flop_counter``): the report's MACs are then that tool's, per row and
    in total, reproduced on the data-free copy (docs/conventions.md), and its notes name what the tool
    does not count.
    """
    if isinstance(input_size, str):
        from fxcost.loading.specs import lettered_inputs, make_inputs
        from fxcost.pytorch.sizes import parse_ranges

        lettered = lettered_inputs([input_size], example_kwargs, hint, parse_ranges(dims))
        if lettered is None:
            ((example_inputs, example_kwargs),) = make_inputs([input_size], example_kwargs)
        else:
            example_inputs, example_kwargs, dims = lettered  # type: ignore[assignment]
        input_size = None
    options: dict[str, Any] = dict(real=real, strict=strict, name=name, tracer=tracer, leaves=leaves, registry=registry, dtype=dtype,
                   train=train, optimizer=optimizer, amp=amp, checkpoint=checkpoint, shard=shard, fit=fit, traffic=traffic,
                   device=device, ops=ops, hooks=hooks)
    if hint or dims:
        options.update(hint=hint, dims=dims)
    tool = preset(convention)
    if tool is not None:
        return tool(model, input_size, example_inputs, example_kwargs, **options)
    return _count(model, input_size, example_inputs, example_kwargs, convention, **options)


def sweep(model: nn.Module, input_sizes: Sequence[Any], **options: Any) -> Sweep:
    """:func:`analyze` of one model at several input sizes (each item: a shape, an ``--input``
    text, or a tuple of input tensors), with the same ``options`` (another tool's ``convention``
    too). One item with letters (``("B", 3, "H", "W")``) is the formula shown beside the others
    (``Sweep.by_formula()``, docs/sizes.md)."""
    from fxcost.loading.specs import text_has_letters
    from fxcost.pytorch.sizes import has_letters

    def lettered(item: Any) -> bool:  # an --input text is read by its own parser
        return text_has_letters(item) if isinstance(item, str) else has_letters(item)

    return _at_sizes(model, input_sizes, using=analyze, lettered=lettered, **options)


__all__ = ["analyze", "explain", "llm", "summary", "sweep"]
