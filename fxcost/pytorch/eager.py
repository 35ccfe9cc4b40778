"""Running a module op by op, with every op attributed to the innermost module call that ran it.

Forward hooks (on fxcost's working copy only, removed on exit) keep the stack of module calls;
a ``TorchFunctionMode`` sees each top-level torch call and notes which tensors it newly
allocated and which parameters it read. A leaf module's call is one :class:`ModuleCall`; a module
with children gets one more for the work in its own code. This is how an opaque module (one FX
cannot trace) and a whole model run eagerly (``--tracer eager``) are counted.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from fxcost.errors import FxcostError, InternalError
from fxcost.pytorch.backward import tag_autograd
from fxcost.pytorch.diagnosis import ModuleRunError
from fxcost.pytorch.memory import SavedBytes
from fxcost.pytorch.recorder import OpRecorder
from fxcost.pytorch.tensors import output_specs, spec_of, storage_of, tensors_in
from fxcost.report.records import OpCost, TensorSpec, merge_ops


@dataclass(frozen=True)
class ModuleCall:
    """The work of one module call that has no graph node of its own (in an opaque module, a
    model run eagerly, or a torch.export graph of aten ops): its ops, the tensors it allocated,
    the parameters it read. A leaf module's call is one; a module with children gets one more
    for the work in its own code between its children's calls."""

    module_path: str
    leaf: bool
    ops: tuple[OpCost, ...]
    allocations: tuple[TensorSpec, ...]  # tensors it newly allocated: its activations
    outputs: tuple[TensorSpec, ...] = ()  # a leaf call's outputs (torchsummary counts these)
    uses: tuple[str, ...] = ()  # parameters and buffers its ops read, by name, first use first
    key: int = 0  # names the call in the edges of its tracker (inputs are -1, -2, ...)
    saved: int = 0  # bytes its ops saved for the backward (a training step's)


class _AllocationMode(TorchFunctionMode):
    """Sees each top-level torch function call (the mode is popped while one runs, so calls
    nested inside it are not seen) and keeps the outputs whose storage is new: the same
    granularity as the function and method nodes of an FX graph. Views and in-place results
    share a storage already seen, so they allocate nothing. It also notes which of the model's
    parameters and buffers (``names``, by ``id``) each call used."""

    def __init__(self, seen: Iterable[torch.Tensor], names: dict[int, str], train: bool = False) -> None:
        super().__init__()
        self.seen = {s for s in map(storage_of, seen) if s is not None}
        self.names = names
        self.train = train  # tag the autograd nodes each call makes with the running frame's key
        self.new: list[TensorSpec] = []
        self.used: list[str] = []
        # data flow: which frame made each tensor (weakly: a real run frees its tensors), and
        # the (producer, consumer, tensor) edges between frames; ``frame`` is the running one
        self.frame = 0
        self.where = ""  # the running frame's module path
        self.paused = False
        self.producers: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
        self.edges: dict[tuple[int, int], TensorSpec] = {}

    def produced(self, t: torch.Tensor, key: int) -> None:
        self.producers[id(t)] = (weakref.ref(t), key)  # the spec is taken when an edge needs it: few do

    def consume(self, tensors: Iterable[torch.Tensor]) -> None:
        """The running frame reads ``tensors``: an edge from each one's producer."""
        for t in tensors:
            made = self.producers.get(id(t))
            if made is not None and made[0]() is t and made[1] != self.frame and (made[1], self.frame) not in self.edges:
                self.edges[(made[1], self.frame)] = spec_of(t)

    def take(self) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
        new, used, self.new, self.used = self.new, self.used, [], []
        return tuple(new), tuple(used)

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:  # fxcost's own bookkeeping (a hook reading .shape) is not the model's work
            return out
        inputs = tensors_in((args, kwargs))  # flattened once: this runs for every torch call
        for t in inputs:
            name = self.names.get(id(t))
            if name is not None:
                self.used.append(name)
            s = storage_of(t)
            if s is not None:
                self.seen.add(s)
        self.consume(inputs)
        given = {id(t) for t in inputs}
        outs = tensors_in(out)
        if self.train:
            tag_autograd(str(self.frame), outs, self.where)
        for t in outs:
            if id(t) not in given:  # an op that hands back its input (x.to(x.dtype)) made nothing
                self.produced(t, self.frame)
            s = storage_of(t)
            if s is not None and s not in self.seen:
                self.seen.add(s)
                self.new.append(spec_of(t))
        return out


@dataclass
class _Frame:
    path: str
    leaf: bool
    key: int
    ops: list[OpCost]
    allocations: list[TensorSpec]
    uses: list[str]
    saved: int = 0


def hookable_modules(module: nn.Module, prefix: str = "", stop_at: Collection[str] = ()) -> Iterator[tuple[str, nn.Module]]:
    """``(path, module)`` for ``module`` and its submodules that accept forward hooks: not inside
    a TorchScript module (which refuses hooks; its ops count in the module that called it), nor
    below a path in ``stop_at`` (kept whole by ``--leaf``)."""
    skip: list[str] = []
    for name, m in module.named_modules():
        path = f"{prefix}.{name}".strip(".") if name else prefix
        if any(path.startswith(p + ".") for p in skip):
            continue
        if isinstance(m, torch.jit.ScriptModule):
            skip.append(path)
            continue
        if path in stop_at:
            skip.append(path)
        yield path, m


_APPLY = nn.Module._apply


def _apply_unless_unchanged(self: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
    with torch.no_grad():
        tensors = [*self.parameters(recurse=recurse), *self.buffers(recurse=recurse)]
        if tensors and all(fn(t) is t for t in tensors) and all(t.grad is None or fn(t.grad) is t.grad for t in tensors):
            return self
    return _APPLY(self, fn, recurse)


@contextlib.contextmanager
def unchanged_conversions() -> Iterator[None]:
    """A forward that converts one of its modules to what it already is
    (SwitchTransformers' router: ``self.classifier = self.classifier.to(self.dtype)``) gets the
    module back as it is. torch would swap each fake weight with a new parameter over that same
    weight, which fails on the weak references the fake mode keeps to it; a real conversion (a
    new dtype or device) still goes to torch, and fails as it did."""
    nn.Module._apply = _apply_unless_unchanged  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module._apply = _APPLY  # type: ignore[method-assign]


class ModuleStack:
    """fxcost's one module tracker: forward hooks on ``module`` and its submodules that keep the
    stack of module calls running, so a failure names the innermost one. Hooks go on fxcost's
    copy only and are removed on exit. ``on_enter``/``on_exit`` run at each call's start and end,
    the end of a call that raises too (``always_call``: a checkpointed module's recomputation is
    stopped by an exception once it has what the backward needs, and its calls must still end)."""

    def __init__(self, module: nn.Module, prefix: str = "", include_self: bool = False, stop_at: Collection[str] = ()) -> None:
        self.module, self.prefix, self.include_self, self.stop_at = module, prefix, include_self, stop_at
        # each call: its path, module, input shapes and the exception being handled when it began
        self.running: list[tuple[str, nn.Module, tuple[tuple[int, ...], ...], BaseException | None]] = []
        self.failed: tuple[str, nn.Module, tuple[tuple[int, ...], ...], BaseException | None] | None = None
        self.on_enter: Callable[[str, nn.Module, Any], None] = lambda path, m, inputs: None
        self.on_exit: Callable[[str, nn.Module, Any], None] = lambda path, m, output: None
        self._handles: list[Any] = []

    def __enter__(self) -> ModuleStack:
        for path, m in hookable_modules(self.module, self.prefix, self.stop_at):
            if m is not self.module or self.include_self:
                self._handles += [m.register_forward_pre_hook(self._enter(path), with_kwargs=True),
                                  m.register_forward_hook(self._exit, always_call=True)]
        return self

    def _enter(self, path: str) -> Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], None]:
        def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            with self.bookkeeping():
                self.failed = None  # a call begins: a failure before it was caught by the model
                self.on_enter(path, m, (args, kwargs))
                self.running.append((path, m, tuple(tuple(t.shape) for t in tensors_in((args, kwargs))),
                                     sys.exc_info()[1]))
        return hook

    def _exit(self, m: nn.Module, inputs: Any, output: Any) -> None:
        with self.bookkeeping():
            entry = self.running.pop()
            # torch calls an always_call hook from its except block: an exception other than the one
            # being handled when the call began is this call's failure (the innermost keeps it)
            if sys.exc_info()[1] is not entry[3]:
                self.failed = self.failed or entry
            else:
                self.failed = None  # a failure the model caught and went on from is not the one
            self.on_exit(entry[0], m, output)

    @contextlib.contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """Where the hooks' own work runs (reading shapes): hidden from what watches the model."""
        yield

    @contextlib.contextmanager
    def naming_failures(self) -> Iterator[None]:
        """While the model runs: a failure names the module call it happened in (the innermost);
        and a conversion of a module that changes nothing is left undone (:func:`unchanged_conversions`)."""
        try:
            with unchanged_conversions():
                yield
        except (FxcostError, InternalError, ModuleRunError):
            raise
        except Exception as e:
            where = self.failed or (self.running[-1] if self.running else None)
            if where is None:
                raise
            path, m, shapes, _ = where
            raise ModuleRunError(path, m, shapes, e) from e

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class CallTracker(ModuleStack):
    """Attributes the ops that ``module`` (at ``prefix``) dispatches, the tensors it allocates and
    the parameters it uses to the innermost module call that ran them (see :class:`ModuleCall`).
    Modules at the paths in ``leaves`` count as leaves: their submodules are not told apart."""

    def __init__(self, module: nn.Module, prefix: str, recorder: OpRecorder, seen: Sequence[torch.Tensor] = (),
                 leaves: Collection[str] = (), train: bool = False) -> None:
        """``seen``: the tensors it is given; the i-th is edge key ``-(i + 1)``. ``train``: tag the
        autograd nodes each call makes with its key (:func:`fxcost.pytorch.backward.run_backward`
        then names the call each backward op belongs to), and count the bytes its ops save for
        the backward."""
        super().__init__(module, prefix, include_self=True, stop_at=leaves)
        self.recorder = recorder
        names: dict[int, str] = {}
        for name, t in [*module.named_parameters(prefix=prefix, remove_duplicate=False),
                        *module.named_buffers(prefix=prefix, remove_duplicate=False)]:
            names.setdefault(id(t), name)
        self.alloc = _AllocationMode(seen, names, train)
        self.train = train
        self._saves = SavedBytes([*module.parameters(), *module.buffers()])
        self._saving: Any = None
        for i, t in enumerate(seen):
            self.alloc.produced(t, -(i + 1))
        self.leaves = leaves
        self.calls: list[ModuleCall] = []
        self.frames: list[_Frame] = []
        self._keys = 0
        self.on_enter = self._push
        self.on_exit = self._pop

    def _flush(self) -> None:
        ops, (allocs, uses) = self.recorder.take(), self.alloc.take()
        if not self.frames:
            return
        frame = self.frames[-1]
        frame.ops += ops
        frame.allocations += allocs
        frame.uses += uses

    def _push(self, path: str, m: nn.Module, inputs: Any) -> None:
        self._flush()
        if self.frames and self._has_work(self.frames[-1]):
            # the parent's work so far becomes a record of its own: its code before and after a
            # child are two rows, so the data flow parent -> child -> parent has no cycle
            self._emit(self.frames[-1], None)
            parent = self.frames[-1]
            self._keys += 1
            self.frames[-1] = _Frame(parent.path, parent.leaf, self._keys, [], [], [])
        leaf = path in self.leaves or not any(True for _ in m.children())
        self._keys += 1
        self.frames.append(_Frame(path, leaf, self._keys, [], [], []))
        self.alloc.frame = self._keys
        self.alloc.where = self.recorder.where = path
        if leaf:  # a leaf reads its inputs even when it calls no torch function (nn.Identity)
            self.alloc.consume(tensors_in(inputs))

    @staticmethod
    def _has_work(f: _Frame) -> bool:
        return bool(f.ops or f.allocations or f.uses)

    def _emit(self, f: _Frame, output: Any) -> None:
        ops = merge_ops(f.ops)
        outputs = output_specs(output) if f.leaf else ()
        self.calls.append(ModuleCall(f.path, f.leaf, ops, tuple(f.allocations), outputs, tuple(dict.fromkeys(f.uses)), f.key,
                                     f.saved))

    def _pop(self, path: str, m: nn.Module, output: Any) -> None:
        self._flush()
        f = self.frames.pop()
        self.alloc.frame = self.frames[-1].key if self.frames else 0
        self.alloc.where = self.recorder.where = self.frames[-1].path if self.frames else self.prefix
        if f.leaf:  # what a leaf returns comes from the leaf, whatever op inside made it
            for t in tensors_in(output):
                self.alloc.produced(t, f.key)
        if f.leaf or self._has_work(f):
            self._emit(f, output)

    @contextlib.contextmanager
    def bookkeeping(self) -> Iterator[None]:
        self.alloc.paused = True
        try:
            yield
        finally:
            self.alloc.paused = False

    @property
    def edges(self) -> list[tuple[int, int, TensorSpec]]:
        """Data flow between calls (by key; the i-th given tensor is ``-(i + 1)``)."""
        return [(a, b, spec) for (a, b), spec in self.alloc.edges.items()]

    def _pack(self, t: torch.Tensor) -> None:
        """A tensor an op saves for the backward: its storage's bytes, if new, go to the running call."""
        if self.frames:
            self.frames[-1].saved += self._saves.new(t)

    def __enter__(self) -> CallTracker:
        super().__enter__()
        self.recorder.take()
        if self.train:
            self._saving = SavedBytes.saving(self._pack)
            self._saving.__enter__()
        self.alloc.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.alloc.__exit__(None, None, None)
        if self._saving is not None:
            self._saving.__exit__(None, None, None)
            self._saving = None
        super().__exit__(*exc)


def run_eager(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], recorder: OpRecorder,
              leaves: Collection[str] = (), train: bool = False) -> tuple[list[ModuleCall], list[tuple[int, int, TensorSpec]], Any]:
    """Run ``model`` once (with ``recorder`` active), attributing every op to its module call.
    Returns the calls, the data flow between them (input tensor i is key ``-(i + 1)``, in
    the order of the tensors in ``(args, kwargs)``) and the model's output. ``train``: see
    :class:`CallTracker` (the caller turns gradients on)."""
    with CallTracker(model, "", recorder, seen=tensors_in((args, kwargs)), leaves=leaves, train=train) as tracker, \
            tracker.naming_failures():
        out = model(*args, **kwargs)
    return tracker.calls, tracker.edges, out
