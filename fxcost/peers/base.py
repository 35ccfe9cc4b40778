"""What a reproduction of another tool's count is made of.

A peer tool (fvcore, ptflops, thop, torchinfo, calflops, DeepSpeed's profiler, PyTorch's
FlopCounterMode) is reproduced by running its counting *mechanism* on fxcost's weightless meta
copy of the model: the same hooks, the same traced ops, the same per-layer formulas, with their
blind spots. Each priced item is a :class:`Charge` on the module the tool would attribute it to,
so ``fxcost explain`` can set it beside fxcost's own count of the same module.

A reproduction never imports the tool: it works where the tool is not installed. ``run_tool``
(where a tool module has one) calls the installed tool the way its README does, on a real CPU
copy, and is used by the tests and by ``explain --vs`` to show the tool's own figure beside.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

T = TypeVar("T")


@dataclass(frozen=True)
class Charge:
    """One item the tool prices."""

    module_path: str  # the module it is charged to, as named_modules() names it ('' = the root)
    module_type: str  # that module's class name
    what: str  # what the tool priced: a module class ("Conv2d"), a function ("F.linear"), a jit op ("aten::matmul")
    macs: int  # the tool's headline figure for it, as MACs (or the tool's own unit, see Reproduction.headline)
    rule: str  # the tool's formula in words: "output elements x in_features; bias not counted"
    flops: int | None = None  # the tool's FLOPs for it, where the tool reports FLOPs beside MACs


@dataclass(frozen=True)
class Reproduction:
    """A tool's figures for one model and input, reproduced."""

    tool: str  # the preset's name: "fvcore", "thop", ...
    version: str  # the release of the tool whose code this reproduces
    headline: str  # what the tool calls its figure: "flops (MACs)", "Mult-Adds", "MACs"
    macs: int  # the tool's headline figure (MACs; FlopCounterMode's FLOPs / 2)
    params: int  # the parameter count as the tool reports it
    charges: tuple[Charge, ...] = ()
    #: what the tool does not price at all in this model, named (an op it has no handler for, a
    #: function outside every module it hooks), each with how often it was seen
    unseen: tuple[str, ...] = ()
    #: the tool's own second figure where it reports one (calflops' and DeepSpeed's FLOPs)
    flops: int | None = None
    #: where the tool counts params per module (thop): each module path and the params counted
    #: there, adding up to ``params``; empty where it counts the model's parameters as a whole
    params_by_module: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ToolFigures:
    """What the installed tool itself printed or returned."""

    macs: int
    params: int
    flops: int | None = None


@dataclass(frozen=True)
class PeerTool:
    """One reproducible tool."""

    name: str  # the --convention name
    package: str  # the distribution to pip install
    version: str  # the release reproduced and tested
    headline: str
    reproduce: Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], Reproduction]
    #: run the installed tool on a real CPU model the way its README does (None: not runnable here)
    run_tool: Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], ToolFigures] | None = None
    #: a line per op family the tool misses or prices unlike the truth, for the docs and explain
    misses: tuple[str, ...] = field(default=())
    #: how the tool counts params, in a line: why its figure can differ from fxcost's (each tensor once)
    params_rule: str = ""

    @property
    def install(self) -> str:
        return f"pip install {self.package}=={self.version}"


def shape_of(t: Any) -> tuple[int, ...]:
    """A tensor's shape as plain ints (what a tool's hook reads off its input or output)."""
    return tuple(int(d) for d in t.shape)


def run_static(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
               watch: Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], T], *, cpu: bool = False) -> T:
    """``watch(copy, args, kwargs)`` on fxcost's weightless meta copy of ``model`` (eval mode, lazy
    layers materialized, inputs as meta tensors); ``watch`` runs the forward under its hooks or
    modes and takes them off again, and decides whether gradients are on (as the tool has them).

    A forward that reads a value (transformers' mask checks call ``.all()``) or makes CPU tensors
    of its own cannot run on meta tensors, so it runs again on a fresh copy on fake tensors (a
    device, no data; transformers skips its value checks on them), inside the fake mode. A genuine
    error fails there again and is raised from that run.

    ``cpu=True`` goes to fake CPU tensors at once: a tool that ran on the CPU took the CPU's kernels
    (fused attention, MKL-DNN RNNs, nn.MultiheadAttention's fast path), which meta tensors do not
    choose, and a tool whose count depends on which kernel ran is reproduced on the same choice.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    from fxcost.pytorch.inputs import prepare_meta
    from fxcost.pytorch.tensors import fake_tensor
    from fxcost.pytorch.working_copy import fakeify

    if not cpu:
        shadow, margs, mkwargs = prepare_meta(model, args, kwargs)
        try:
            return watch(shadow, margs, mkwargs)
        except (RuntimeError, NotImplementedError):  # a value read, a device mix, an op without a meta kernel
            pass
    shadow, margs, mkwargs = prepare_meta(model, args, kwargs)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    fakeify(shadow, fake_mode)
    fargs, fkwargs = tree_map(lambda x: fake_tensor(x, fake_mode), (margs, mkwargs))
    with fake_mode:
        return watch(shadow, fargs, fkwargs)


class UnseenOps(TorchDispatchMode):
    """Counts the aten ops fxcost prices (a formula in its ATEN table) that run while ``priced()``
    is false: the arithmetic a module-hook tool never sees."""

    def __init__(self, priced: Callable[[], bool]) -> None:
        super().__init__()
        self.priced = priced
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        from fxcost.pytorch.aten import ATEN
        from fxcost.report.kinds import Fate

        name = func._schema.name
        if not self.priced() and ATEN.lookup(name).fate is Fate.FORMULA:
            self.seen[name] += 1
        return func(*args, **(kwargs or {}))

    def named(self, why: str) -> list[str]:
        return [f"{op} x{n} ({why})" for op, n in sorted(self.seen.items())]


@contextlib.contextmanager
def hooked(modules: list[nn.Module], on_enter: Callable[[nn.Module, tuple[Any, ...]], None],
           on_exit: Callable[[nn.Module, tuple[Any, ...], Any], None]) -> Iterator[None]:
    """Forward pre-hooks and hooks on ``modules``, taken off again however the block ends."""
    handles = []
    try:
        for m in modules:
            handles.append(m.register_forward_pre_hook(on_enter))
            handles.append(m.register_forward_hook(on_exit))
        yield
    finally:
        for h in handles:
            h.remove()


def positional_call(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], how: str) -> tuple[Any, ...]:
    """The inputs as the one positional tuple a tool that calls ``model(*inputs)`` takes (thop,
    fvcore): keyword inputs go to their slots, skipped slots get their defaults. ``how`` says how
    the tool calls the model; an input only a keyword can give is an :class:`InputSpecError`
    naming it, in the reproduction as in the tool's own run (the tool cannot be called so)."""
    import inspect

    from fxcost.errors import InputSpecError

    if not kwargs:
        return tuple(args)
    signature = inspect.signature(model.forward)
    bound = signature.bind(*args, **kwargs)
    slots = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for p in signature.parameters.values():
        if p.name in bound.arguments and p not in slots:
            raise InputSpecError(f"{how}: forward's {p.kind.description} parameter {p.name!r} cannot be given positionally",
                                 hint="the tool itself cannot be called on this model; fxcost analyze counts it")
    last = max(i for i, p in enumerate(slots) if p.name in bound.arguments)
    return tuple(bound.arguments.get(p.name, p.default) for p in slots[: last + 1])
