"""The memory of a training step, from the lifetimes of the tensors it makes.

A training step runs for real, on tensors without data: the working copy's parameters as fake
CPU tensors (one ``FakeTensorMode``; on the caller's real tensors where the analysis had to run
on values), a PyTorch optimizer built on them, and the step written as a function -- forward,
the default loss, ``backward()``, ``optimizer.step()``, ``zero_grad()`` -- so its locals (the
output, the loss) die when it returns. It runs twice: the first step allocates the optimizer's
states; the second, the steady state, is the one measured.

:class:`StepTracker` is a dispatch mode that sees every op's outputs: a storage is allocated when
an op first returns it and freed when its last reference dies (a weak reference's callback), and
each storage is counted once, in one category: the parameters, buffers and inputs that live
throughout; a parameter's gradient (from the moment it is accumulated); the optimizer's states
(and, while ``step()`` runs, the working tensors it makes: they are the optimizer's too);
activations (made by the forward and the loss, alive until the backward frees them) and
temporaries (made by the backward: the gradients of activations, the buffers of backward
kernels). After each op the live bytes are summed; their peak, with its breakdown, the phase and
the innermost module running then (:class:`Modules`, also in the backward), is the
step's peak memory. PyTorch's ``MemTracker`` categorizes the same way (issue 12's reference); the
tests also check a real CPU step.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fxcost.errors import MAX_DIGITS, InputSpecError, quoted
from fxcost.pytorch.backward import WHERE, loss_of, metadata
from fxcost.pytorch.eager import ModuleStack
from fxcost.pytorch.memory import storage_bytes
from fxcost.pytorch.recorder import DispatchMode, run_tagged
from fxcost.pytorch.tensors import tensors_in
from fxcost.report.records import Fit, PeakMemory, Shard

PARAMS, BUFFERS, INPUTS, GRADS, OPTIMIZER, ACTIVATIONS, TEMPORARIES = (
    "params", "buffers", "inputs", "grads", "optimizer", "activations", "temporaries")
CATEGORIES = (PARAMS, BUFFERS, INPUTS, GRADS, OPTIMIZER, ACTIVATIONS, TEMPORARIES)
PHASES = ("forward", "backward", "optimizer", "zero_grad")


def _sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1)


def _sgd_momentum(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _adam(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params)


def _adamw(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params)


def _adafactor(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.Adafactor(params)


#: the optimizers a step can take, as PyTorch builds them with its defaults (their states are
#: what PyTorch allocates: SGD with momentum one buffer per parameter, Adam and AdamW two and a
#: step counter, Adafactor factored row and column statistics); ``none``: no step at all
OPTIMIZERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None] = {
    "sgd": _sgd,
    "sgd-momentum": _sgd_momentum,
    "adam": _adam,
    "adamw": _adamw,
    "adafactor": _adafactor,
    "none": None,
}
DEFAULT_OPTIMIZER = "adamw"
AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def optimizer_for(name: str) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None:
    if name not in OPTIMIZERS:
        raise InputSpecError(f"unknown optimizer {name!r}", hint=f"one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


_INDEX = {c: i for i, c in enumerate(CATEGORIES)}


@dataclass
class _Storage:
    nbytes: int
    category: int  # an index into CATEGORIES
    ref: Any
    made_in: str | None = None  # the innermost module running when the forward made it ("" the root)


@dataclass
class StepPeak:
    """The most bytes alive at once in the measured step, what they were, and when."""

    peak_bytes: int
    bytes: dict[str, int]  # by category, at the peak
    phase: str
    at: str  # the innermost module running then ("" outside any)
    timeline: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # (phase index, bytes by category) per op
    own_bytes: int = 0  # of the activations at the peak, those the module running then (``at``) made


class Modules(ModuleStack):
    """Which module is running, in the forward (fxcost's one module tracker,
    :class:`~fxcost.pytorch.eager.ModuleStack`, on the step's copy) and in the backward (each
    module's autograd nodes are tagged with its path as its forward returns, innermost first, and
    the backward reads the node it is running). It keeps no tensor and no autograd node alive: a
    tag is the node's own metadata. (PyTorch's ModuleTracker registers gradient hooks on every
    module's outputs, which keeps recomputed activations of a checkpointed module alive for as
    long as the loss is.)"""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, include_self=True)
        self.on_exit = self._tag

    @staticmethod
    def _tag(path: str, module: nn.Module, out: Any) -> None:
        todo: list[Any] = [t.grad_fn for t in tensors_in(out) if t.grad_fn is not None]
        while todo:
            fn = todo.pop()
            if fn is None or WHERE in metadata(fn):
                continue
            metadata(fn)[WHERE] = path
            todo.extend(f for f, _ in fn.next_functions)

    def innermost(self) -> str:
        if torch._C._current_graph_task_id() != -1:  # in the backward
            fn = torch._C._current_autograd_node()
            return str(metadata(fn).get(WHERE, "")) if fn is not None else ""
        return self.running[-1][0] if self.running else ""


class StepTracker(DispatchMode):
    """Live bytes by category over the ops of a step, and their peak. ``phase`` is set by the
    step as it goes; what an op allocates is the phase's category (see the module's docs)."""

    def __init__(self, modules: Modules) -> None:
        super().__init__()
        self._live: dict[int, _Storage] = {}
        self._bytes = [0] * len(CATEGORIES)  # by category index
        self.total = 0
        self._phase = 0
        self._made = _INDEX[ACTIVATIONS]  # what the ops of the phase allocate
        self.peak = StepPeak(0, self.bytes, PHASES[0], "")
        self.record = False  # keep a timeline (the measured step)
        self._modules = modules
        self._made_in: dict[str, int] = {}  # the forward's live bytes by the module that made them
        #: sizes are symbols (:mod:`fxcost.pytorch.sizes`): which op's live bytes are the most depends
        #: on the sizes, so every distinct total is a candidate (:attr:`candidates`), none compared
        self.symbolic = False
        self.candidates: dict[Any, StepPeak] = {}

    @property
    def phase(self) -> str:
        return PHASES[self._phase]

    @phase.setter
    def phase(self, name: str) -> None:
        self._phase = PHASES.index(name)
        self._made = _INDEX[{"forward": ACTIVATIONS, "optimizer": OPTIMIZER}.get(name, TEMPORARIES)]

    @property
    def bytes(self) -> dict[str, int]:
        return dict(zip(CATEGORIES, self._bytes, strict=True))

    def track(self, t: torch.Tensor, category: str, force: bool = False) -> None:
        """Count ``t``'s storage in ``category`` if it is new; ``force``: move it there if not."""
        self._track(t, _INDEX[category], force)

    def _track(self, t: torch.Tensor, category: int, force: bool = False) -> None:
        if t.layout != torch.strided:
            return
        st = t.untyped_storage()
        key = id(st)
        entry = self._live.get(key)
        if entry is not None and entry.ref() is st:
            if force and entry.category != category:
                self._bytes[entry.category] -= entry.nbytes
                self._bytes[category] += entry.nbytes
                entry.category = category
            return
        n = st.nbytes()
        where = self._modules.innermost() if category == _INDEX[ACTIVATIONS] else None
        self._live[key] = _Storage(n, category, weakref.ref(st, functools.partial(self._freed, key)), where)
        self._bytes[category] += n
        self.total += n
        if where is not None:
            self._made_in[where] = self._made_in.get(where, 0) + n

    def _freed(self, key: int, ref: Any) -> None:
        entry = self._live.get(key)
        if entry is not None and entry.ref is ref:
            del self._live[key]
            self._bytes[entry.category] -= entry.nbytes
            self.total -= entry.nbytes
            if entry.made_in is not None:
                self._made_in[entry.made_in] -= entry.nbytes

    def sample(self) -> None:
        if self.symbolic:
            self._candidate()
            return
        if self.record:
            self.peak.timeline.append((self._phase, tuple(self._bytes)))
        if self.total > self.peak.peak_bytes:
            at = self._modules.innermost()
            self.peak = StepPeak(self.total, self.bytes, self.phase, at, self.peak.timeline, own_bytes=self._made_in.get(at, 0))

    def reset_peak(self) -> None:
        self.peak = StepPeak(self.total, self.bytes, self.phase, self._modules.innermost())
        self.record = True
        if self.symbolic:
            self.candidates = {}
            self._candidate()

    def _candidate(self) -> None:
        """The live bytes now, a candidate for the peak (the first op at each distinct total)."""
        key = self.total.node.expr if isinstance(self.total, torch.SymInt) else self.total
        if key not in self.candidates:
            at = self._modules.innermost()
            self.candidates[key] = StepPeak(self.total, self.bytes, self.phase, at, own_bytes=self._made_in.get(at, 0))

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        out = run_tagged(func, args, kwargs or {})  # _grouped_mm's data-free stand-in included
        if isinstance(out, torch.Tensor):
            self._track(out, self._made)
        else:
            for t in tensors_in(out):
                self._track(t, self._made)
        self.sample()
        return out


def checkpoint_paths(model: nn.Module, names: Sequence[str]) -> tuple[str, ...]:
    """The modules ``names`` names (paths, or class names: every module of that class), the
    outermost of each nest: the ones ``--checkpoint`` recomputes."""
    modules = dict(model.named_modules())
    found: list[str] = []
    for name in names:
        matched = [p for p, m in modules.items() if p and (p == name or type(m).__name__ == name)]
        if not matched:
            classes = sorted({type(m).__name__ for p, m in modules.items() if p})
            raise InputSpecError(f"--checkpoint {name!r} names no module of {type(model).__name__}",
                                 hint="give a module path (as in the table's layer column) or a class name: "
                                      + ", ".join(classes[:12]) + (" ..." if len(classes) > 12 else ""))
        found += [p for p in matched if p not in found]
    return tuple(p for p in found if not any(p.startswith(q + ".") for q in found))


def wrap_checkpoints(model: nn.Module, paths: Sequence[str]) -> None:
    """Run the modules at ``paths`` under activation checkpointing (``torch.utils.checkpoint``,
    non-reentrant): their forward saves only its inputs and runs again in the backward. ``model``
    is fxcost's copy: the wrapper is set on its modules' instances."""
    from torch.utils.checkpoint import checkpoint as recompute

    for p in paths:
        m = model.get_submodule(p)
        m.forward = functools.partial(recompute, m.forward, use_reentrant=False)


class StepRunner:
    """Training steps (or inference forwards) of one model copy and optimizer, on inputs of any
    batch: the first call runs a step to allocate the optimizer's states, every call measures one
    step. ``context``: the fake mode the copy's tensors belong to (``None`` for real ones)."""

    def __init__(self, model: nn.Module, *, optimizer: str = DEFAULT_OPTIMIZER, amp: str | None = None,
                 context: Any = None, train: bool = True) -> None:
        make = optimizer_for(optimizer) if train else None
        self.model, self.amp, self.train = model, amp, train
        self.context_mode = context
        self.context = context or contextlib.nullcontext()
        self.params: list[torch.Tensor] = list(model.parameters())  # each tensor once, a tied one too
        self.buffers: list[torch.Tensor] = list(model.buffers())
        self.trainable = [p for p in self.params if p.requires_grad]
        with self.context:
            self.optimizer = make(self.trainable) if make is not None and self.trainable else None
        self._warm = False
        #: sizes are symbols: :meth:`peak` leaves every candidate in :attr:`candidates`
        self.symbolic = False
        self.candidates: list[StepPeak] = []

    def peak(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepPeak:
        """The peak of one step on ``args``/``kwargs`` (after a first one, if none ran yet)."""
        modules = Modules(self.model)
        tracker = StepTracker(modules)
        tracker.symbolic = self.symbolic
        with self.context:
            for t in self.params:
                tracker.track(t, PARAMS)
            for t in self.buffers:
                tracker.track(t, BUFFERS)
            for t in tensors_in((args, kwargs)):
                tracker.track(t, INPUTS)
            if self.optimizer is not None:
                for t in _states(self.optimizer):
                    tracker.track(t, OPTIMIZER)
            hooks = [p.register_post_accumulate_grad_hook(lambda p: tracker.track(p.grad, GRADS, force=True))
                     for p in self.trainable]
            try:
                with modules, tracker:
                    if not self.train:
                        tracker.reset_peak()
                        with torch.no_grad():
                            _forward(self.model, args, kwargs, self.amp)
                        self.candidates = list(tracker.candidates.values())
                        return tracker.peak
                    if not self._warm:
                        _step(self.model, args, kwargs, self.optimizer, self.amp, tracker)
                        self._warm = True
                    tracker.reset_peak()
                    _step(self.model, args, kwargs, self.optimizer, self.amp, tracker)
            finally:
                for h in hooks:
                    h.remove()
        self.candidates = list(tracker.candidates.values())
        return tracker.peak


def _states(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


@contextlib.contextmanager
def _autocast(amp: str | None, device: str) -> Iterator[None]:
    if amp is None:
        yield
        return
    with torch.autocast(device_type=device, dtype=AMP_DTYPES[amp]):
        yield


def _device(args: tuple[Any, ...], kwargs: dict[str, Any], model: nn.Module) -> str:
    for t in [*tensors_in((args, kwargs)), *model.parameters()]:
        return t.device.type
    return "cpu"


def _forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], amp: str | None) -> Any:
    with _autocast(amp, _device(args, kwargs, model)):
        return model(*args, **kwargs)


def _step(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opt: torch.optim.Optimizer | None,
          amp: str | None, tracker: StepTracker) -> None:
    """One training step, as a function: the output and the loss live until it returns (as in a
    loop that keeps ``outputs = model(...)`` for its loss and logging)."""
    tracker.phase = "forward"
    with torch.enable_grad(), _autocast(amp, _device(args, kwargs, model)):
        out = model(*args, **kwargs)
        loss = loss_of(out)
    tracker.phase = "backward"
    loss.backward()
    tracker.sample()
    if opt is not None:
        tracker.phase = "optimizer"
        opt.step()
        for v in _states(opt):
            tracker.track(v, OPTIMIZER, force=True)
        tracker.phase = "zero_grad"
        opt.zero_grad(set_to_none=True)
    else:  # no optimizer: the gradients are dropped as zero_grad would
        tracker.phase = "zero_grad"
        for p in model.parameters():
            p.grad = None
    tracker.sample()


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str | int) -> int:
    """``80GiB``, ``8GB``, ``512MiB``, ``1e9``: bytes (GB is 10^9, GiB 2^30)."""
    if isinstance(text, int):
        return text
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    hint = "e.g. --fit 80GiB, 24GB or 512MiB (GB = 10^9 bytes, GiB = 2^30)"
    if m is None or unit not in _UNITS:
        raise InputSpecError(f"cannot read {quoted(str(text))} as a memory size", hint=hint)
    size = float(m.group(1)) * _UNITS[unit] if len(m.group(1)) <= MAX_DIGITS else float("inf")
    if not size < 2**80:  # a yobibyte; infinity too
        raise InputSpecError(f"the memory size {quoted(str(text))} is beyond any machine (at most 2^80 bytes)", hint=hint)
    return int(size)


def size_text(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def with_batch(args: tuple[Any, ...], kwargs: dict[str, Any], batch: int, context: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The inputs with their first dimension (every tensor input's: the batch) set to ``batch``."""
    from torch.utils._pytree import tree_map

    def resized(x: Any) -> Any:
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            return x
        with context or contextlib.nullcontext():
            t = torch.empty((batch, *x.shape[1:]), dtype=x.dtype, device=x.device)
        return t.requires_grad_(x.requires_grad) if x.is_floating_point() else t

    return tree_map(resized, (args, kwargs))  # type: ignore[no-any-return]


def fit_batch(runner: StepRunner, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int,
              largest: int = 2**20) -> Fit:
    """The largest batch whose step peak is at most ``limit`` bytes: doubling from 1 until one does
    not fit, then bisecting (each probe one step: the time grows with the model's ops, not the
    batch)."""
    resident = storage_bytes([*runner.params, *runner.buffers])
    if resident > limit:
        raise InputSpecError(f"the parameters and buffers alone take {size_text(resident)}; nothing fits in {size_text(limit)}",
                             hint="a larger --fit, a lower-precision --dtype, or --shard to divide the states among ranks")
    peaks: dict[int, int] = {}

    def peak(b: int) -> int:
        if b not in peaks:
            peaks[b] = runner.peak(*with_batch(args, kwargs, b, runner.context_mode)).peak_bytes
        return peaks[b]

    if peak(1) > limit:
        raise InputSpecError(f"batch 1 already needs {size_text(peak(1))} at its peak, more than {size_text(limit)}",
                             hint="a larger --fit, a lower-precision --dtype or --amp, --checkpoint on the repeated blocks, or --shard")
    lo, hi = 1, 2
    while hi <= largest and peak(hi) <= limit:
        lo, hi = hi, hi * 2
    if hi > largest:
        return Fit(limit, lo, peak(lo), peak(lo))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if peak(mid) <= limit else (lo, mid)
    return Fit(limit, lo, peak(lo), peak(lo + 1))


SHARDS = ("zero1", "zero2", "zero3", "fsdp")


def parse_shard(text: str) -> tuple[str, int]:
    scheme, _, n = text.partition(":")
    if scheme not in SHARDS or not n.isdigit() or len(n) > 9 or int(n) < 1:
        raise InputSpecError(f"cannot read --shard {quoted(text)}",
                             hint=f"SCHEME:RANKS with SCHEME one of {', '.join(SHARDS)}, e.g. --shard zero2:8 or --shard fsdp:64")
    return scheme, int(n)


def shard(peak: StepPeak, scheme: str, ranks: int) -> Shard:
    """The step's peak per rank when ``ranks`` data-parallel ranks shard the model states (ZeRO,
    Rajbhandari et al. 2020, section 5: stage 1 partitions the optimizer states, stage 2 also the
    gradients, stage 3 also the parameters; FSDP's full sharding is stage 3): each rank keeps
    ceil(bytes / ranks) of what is sharded, activations and temporaries whole (every rank runs its
    own batch). Not modeled: the communication buffers, and stage 3's gathered parameters of the
    layer being computed."""
    def part(n: int, sharded: bool) -> int:
        return -(-n // ranks) if sharded else n

    stage = {"zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}[scheme]
    b = peak.bytes
    params, grads, states = part(b[PARAMS], stage >= 3), part(b[GRADS], stage >= 2), part(b[OPTIMIZER], True)
    total = peak.peak_bytes - (b[PARAMS] - params) - (b[GRADS] - grads) - (b[OPTIMIZER] - states)
    return Shard(scheme, ranks, total, params, grads, states)


def timeline(points: Sequence[tuple[int, tuple[int, ...]]], most: int = 300) -> tuple[tuple[int, ...], ...]:
    """At most ``most`` points of a step's timeline, each the largest (by total) of its run of ops."""
    if not points:
        return ()
    size = -(-len(points) // most)
    out = []
    for i in range(0, len(points), size):
        phase, cats = max(points[i:i + size], key=lambda p: sum(p[1]))
        out.append((phase, *cats))
    return tuple(out)


def peak_memory(peak: StepPeak, *, train: bool, optimizer: str, amp: str | None, checkpointed: Sequence[str],
                fit: Fit | None = None, sharded: Shard | None = None) -> PeakMemory:
    b = peak.bytes
    # an inference's split: earlier layers' outputs still alive, and what the layer running made
    activations, temporaries = (b[ACTIVATIONS], b[TEMPORARIES]) if train else (b[ACTIVATIONS] - peak.own_bytes, peak.own_bytes)
    return PeakMemory("train" if train else "inference", peak.peak_bytes, b[PARAMS], b[BUFFERS], b[INPUTS], activations,
                      temporaries, peak.at, grads_bytes=b[GRADS], optimizer_bytes=b[OPTIMIZER], phase=peak.phase,
                      optimizer=optimizer if train else "", amp=amp or "", checkpointed=tuple(checkpointed), fit=fit,
                      shard=sharded, timeline=timeline(peak.timeline) if train else ())
