"""Shape propagation that records, for every FX node, the aten ops it dispatched.

A ``torch.fx.Interpreter`` runs the graph node by node (on fake tensors by default); a
``TorchDispatchMode`` sees every aten op each node dispatches, after composite ops have been
decomposed, so ``nn.Conv2d``, ``F.conv2d`` and a custom module calling ``torch.conv2d`` all reach
``aten::convolution`` and are counted by one formula. Costs are computed from shapes as each op
runs; no tensor is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from fxcost.errors import FxcostError, ShapeError
from fxcost.formulas import FormulaRegistry
from fxcost.model import OpCost, TensorSpec, merge_ops
from fxcost.spec import dtype_name
from fxcost.trace import META_KEY, first_line


@dataclass(frozen=True)
class Segment:
    """Ops that ran in one module call outside any graph node of their own: in an opaque module,
    or in a model run eagerly. A leaf module's call is one segment; a module with children gets
    one more for the work in its own code (emitted after its children's)."""

    module_path: str
    leaf: bool
    ops: tuple[OpCost, ...]
    allocations: tuple[TensorSpec, ...]  # tensors it newly allocated: its activations
    outputs: tuple[TensorSpec, ...] = ()  # a leaf call's outputs (torchsummary counts these)
    uses: tuple[str, ...] = ()  # parameters and buffers its ops read, by name, first use first
    key: int = 0  # names the segment in the edges of its tracker (inputs are -1, -2, ...)


@dataclass
class NodeRecord:
    """What one node did: its outputs, which of them it newly allocated, and its ops; for an
    opaque module's node, the segments its ops ran in."""

    node: fx.Node
    outputs: tuple[TensorSpec, ...]
    allocated: tuple[bool, ...]
    ops: tuple[OpCost, ...]
    segments: tuple[Segment, ...] = ()
    segment_edges: tuple[tuple[int, int, TensorSpec], ...] = ()  # data flow between the segments


def _shape_only(x: Any) -> Any:
    return x.shape if isinstance(x, torch.Tensor) else x


# matmul and convolution kernels need one dtype for all operands
_SAME_DTYPE = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv",
                         "aten::dot", "aten::convolution", "aten::_convolution"})


class OpRecorder(TorchDispatchMode):
    """Counts every aten op dispatched while it is active into the current node's tally."""

    def __init__(self, registry: FormulaRegistry) -> None:
        super().__init__()
        self.registry = registry
        self._tally: dict[str, list[Any]] = {}
        self._fates: dict[Any, tuple[str, str, Any, str]] = {}

    def take(self) -> tuple[OpCost, ...]:
        """The ops tallied so far, and a fresh tally."""
        tally, self._tally = self._tally, {}
        return tuple(OpCost(name, n, macs, flops, fate, reason) for name, (n, macs, flops, fate, reason) in tally.items())

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        fate_entry = self._fates.get(func)
        if fate_entry is None:
            name = func._schema.name
            fate, fn, reason = self.registry.lookup(name)
            fate_entry = self._fates[func] = (name, fate, fn, reason)
        name, fate, fn, reason = fate_entry
        if name in _SAME_DTYPE:
            dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
            if len(dtypes) > 1:  # meta kernels do not check this; real CPU/GPU kernels refuse it
                raise RuntimeError(f"{name} got operands of different dtype: {', '.join(sorted(map(str, dtypes)))}")
        macs = flops = 0
        if fn is not None:  # fate == "formula"
            s_args, s_kwargs, s_out = tree_map(_shape_only, (tuple(args), kwargs, out))
            s_kwargs.pop("out", None)
            try:
                cost = fn(*s_args, out=s_out, **s_kwargs)
            except Exception as e:  # a formula bug must not pass as a zero
                raise FxcostError(
                    f"fxcost's formula for {name} failed on shapes {s_args}: {type(e).__name__}: {e}",
                    hint="this is a bug in fxcost; please report it with the model",
                ) from e
            macs, flops = cost.macs, cost.flops
        entry = self._tally.get(name)
        if entry is None:
            self._tally[name] = [1, macs, flops, fate, reason]
        else:
            entry[0] += 1
            entry[1] += macs
            entry[2] += flops
        return out


def _tensors(value: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(value)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _storage(t: torch.Tensor) -> StorageWeakRef | None:
    try:
        return StorageWeakRef(t.untyped_storage())
    except Exception:  # tensors without storage (sparse, nested) alias nothing we can see
        return None


def is_data_dependent(error: BaseException) -> bool:
    """The forward read a tensor's value (``.item()``, ``if tensor:``), which meta and fake
    tensors do not have."""
    text = f"{type(error).__name__} {error}"
    return any(k in text for k in ("_local_scalar_dense", "item() cannot be called", "DataDependent", "data-dependent"))


def needs_values(error: BaseException) -> bool:
    """An op whose output shape depends on values (``nonzero``, ``unique``, ``masked_select``)
    or a library op with no meta/fake kernel: only real tensors can run it."""
    text = f"{type(error).__name__} {error}"
    return any(k in text for k in ("DynamicOutputShape", "nonzero", "fake impl", "Meta kernel", "meta kernel",
                                   "could not run", "Could not run"))


def failure_message(place: str, shapes: Sequence[Sequence[int]], cause: BaseException, doing: str = "") -> str:
    """``layer 'x' (Conv2d) failed on input shape 1x3x8x8[ while ...]: why``, one wording for
    every way a model runs (a graph node, an opaque module, an eager run, lazy initialization)."""
    shown = ", ".join("x".join(map(str, s)) for s in shapes) or "no tensors"
    why = first_line(cause)
    if is_data_dependent(cause):
        why = f"it reads a tensor's value (aten::_local_scalar_dense, from .item() or `if tensor:`): {why}"
    return f"{place} failed on input shape {shown}{f' while {doing}' if doing else ''}: {why}"


def hint_for(error: BaseException) -> str:
    text = str(error)
    if is_data_dependent(error):
        return ("the forward reads tensor values (.item(), `if tensor:`), which fxcost's data-free tensors "
                "do not have: --real runs real tensors on a copy of a model with weights; or make that branch "
                "depend on shapes")
    if needs_values(error):
        return ("this op needs real values (its output shape depends on them, or it has no meta kernel): --real "
                "runs real tensors on a copy of a model with weights; or --leaf the module around it and give "
                "the op a fake kernel (torch.library.register_fake)")
    if "too small" in text or "Output size" in text or "non-positive" in text:
        return "the input is too small for this architecture: use a larger --input, or fewer downsampling layers"
    if "channels" in text:
        return "check the channel dimension of --input against the model's first layer"
    if "dtype" in text:
        return "the operands' dtypes differ: give --input the model's dtype (e.g. 1x3x224x224:float16)"
    if any(k in text for k in ("mat1 and mat2", "size mismatch", "shapes cannot be multiplied", "same reduction dim")):
        return "the flattened features do not match a Linear layer: check the spatial size of --input"
    return "check --input against what the model expects; --debug shows the full traceback"


class RecordingInterpreter(fx.Interpreter):
    """Runs a GraphModule and keeps one :class:`NodeRecord` per node."""

    def __init__(self, root: nn.Module, graph: fx.Graph, recorder: OpRecorder, opaque: Collection[str] = ()) -> None:
        """``opaque``: paths of module calls to run op by op (see :class:`SegmentTracker`)."""
        super().__init__(root, graph=graph)
        self.recorder = recorder
        self.opaque = opaque
        self.records: list[NodeRecord] = []
        self._segments: tuple[Segment, ...] = ()
        self._edges: tuple[tuple[int, int, TensorSpec], ...] = ()

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target not in self.opaque:
            return super().call_module(target, args, kwargs)
        module = self.fetch_attr(target)
        with SegmentTracker(module, target, self.recorder, seen=_tensors((args, kwargs))) as tracker, tracker.naming_failures():
            result = module(*args, **kwargs)
        self._segments, self._edges = tuple(tracker.segments), tuple(tracker.edges)
        return result

    def run_node(self, n: fx.Node) -> Any:
        inputs = [self.env[a] for a in n.all_input_nodes]
        input_tensors = [t for v in inputs for t in _tensors(v)]
        self.recorder.take()
        try:
            result = super().run_node(n)
        except (FxcostError, ModuleRunError):
            raise
        except Exception as e:
            shapes = tuple(tuple(t.shape) for t in input_tensors)
            where = n.meta.get(META_KEY, {}).get("module_path") or n.name
            what = str(n.target) if n.op == "call_module" else f"{n.op} {n.name}"
            typ = type(self.module.get_submodule(str(n.target))).__name__ if n.op == "call_module" else ""
            raise ShapeError(
                failure_message(f"layer {where!r} ({typ or what})", shapes, e),
                node=n.name,
                module_path=where,
                input_shapes=shapes,
                hint=hint_for(e),
            ) from e
        ops = self.recorder.take()
        seen = {s for s in map(_storage, input_tensors) if s is not None}
        outs = _tensors(result)
        specs = tuple(map(_spec, outs))
        allocated = []
        for t in outs:
            s = _storage(t)
            allocated.append(s is not None and s not in seen)
            if s is not None:
                seen.add(s)  # a tuple that returns one buffer twice allocates it once
        segments, self._segments = self._segments, ()
        edges, self._edges = self._edges, ()
        self.records.append(
            NodeRecord(n, specs, tuple(allocated), ops, segments, edges)
        )
        return result


def _spec(t: torch.Tensor) -> TensorSpec:
    return TensorSpec(tuple(int(d) for d in t.shape), dtype_name(t.dtype))


class _AllocationMode(TorchFunctionMode):
    """Sees each top-level torch function call (the mode is popped while one runs, so calls
    nested inside it are not seen) and keeps the outputs whose storage is new: the same
    granularity as the function and method nodes of an FX graph. Views and in-place results
    share a storage already seen, so they allocate nothing. It also notes which of the model's
    parameters and buffers (``names``, by ``id``) each call used."""

    def __init__(self, seen: Iterable[torch.Tensor], names: dict[int, str]) -> None:
        super().__init__()
        self.seen = {s for s in map(_storage, seen) if s is not None}
        self.names = names
        self.new: list[TensorSpec] = []
        self.used: list[str] = []
        # data flow: which frame made each tensor (weakly: a real run frees its tensors), and
        # the (producer, consumer, tensor) edges between frames; ``frame`` is the running one
        self.frame = 0
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
                self.edges[(made[1], self.frame)] = _spec(t)

    def take(self) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
        new, used, self.new, self.used = self.new, self.used, [], []
        return tuple(new), tuple(used)

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:  # fxcost's own bookkeeping (a hook reading .shape) is not the model's work
            return out
        inputs = _tensors((args, kwargs))  # flattened once: this runs for every torch call
        for t in inputs:
            name = self.names.get(id(t))
            if name is not None:
                self.used.append(name)
            s = _storage(t)
            if s is not None:
                self.seen.add(s)
        self.consume(inputs)
        given = {id(t) for t in inputs}
        for t in _tensors(out):
            if id(t) not in given:  # an op that hands back its input (x.to(x.dtype)) made nothing
                self.produced(t, self.frame)
            s = _storage(t)
            if s is not None and s not in self.seen:
                self.seen.add(s)
                self.new.append(_spec(t))
        return out


class ModuleRunError(Exception):
    """A module failed while running op by op; names the innermost module that was running."""

    def __init__(self, path: str, module: nn.Module, shapes: tuple[tuple[int, ...], ...], cause: BaseException) -> None:
        super().__init__(first_line(cause))
        self.path, self.module, self.shapes, self.cause = path, module, shapes, cause


@dataclass
class _Frame:
    path: str
    leaf: bool
    key: int
    ops: list[OpCost]
    allocations: list[TensorSpec]
    uses: list[str]


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


class ModuleStack:
    """Forward hooks on ``module`` and its submodules that keep the stack of module calls
    running, so a failure names the innermost one. Hooks go on fxcost's copy only and are
    removed on exit. ``on_enter``/``on_exit`` run at each call's start and end."""

    def __init__(self, module: nn.Module, prefix: str = "", include_self: bool = False, stop_at: Collection[str] = ()) -> None:
        self.module, self.prefix, self.include_self, self.stop_at = module, prefix, include_self, stop_at
        self.running: list[tuple[str, nn.Module, tuple[tuple[int, ...], ...]]] = []
        self.on_enter: Callable[[str, nn.Module, Any], None] = lambda path, m, inputs: None
        self.on_exit: Callable[[str, nn.Module, Any], None] = lambda path, m, output: None
        self._handles: list[Any] = []

    def __enter__(self) -> ModuleStack:
        for path, m in hookable_modules(self.module, self.prefix, self.stop_at):
            if m is not self.module or self.include_self:
                self._handles += [m.register_forward_pre_hook(self._enter(path), with_kwargs=True),
                                  m.register_forward_hook(self._exit)]
        return self

    def _enter(self, path: str) -> Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], None]:
        def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            with self.bookkeeping():
                self.on_enter(path, m, (args, kwargs))
                self.running.append((path, m, tuple(tuple(int(d) for d in t.shape) for t in _tensors((args, kwargs)))))
        return hook

    def _exit(self, m: nn.Module, inputs: Any, output: Any) -> None:
        with self.bookkeeping():
            path = self.running.pop()[0]
            self.on_exit(path, m, output)

    @contextlib.contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """Where the hooks' own work runs (reading shapes): hidden from what watches the model."""
        yield

    @contextlib.contextmanager
    def naming_failures(self) -> Iterator[None]:
        try:
            yield
        except (FxcostError, ModuleRunError):
            raise
        except Exception as e:
            if not self.running:
                raise
            path, m, shapes = self.running[-1]
            raise ModuleRunError(path, m, shapes, e) from e

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class SegmentTracker(ModuleStack):
    """Attributes the ops that ``module`` (at ``prefix``) dispatches, the tensors it allocates and
    the parameters it uses to the innermost module call that ran them (see :class:`Segment`).
    Modules at the paths in ``leaves`` count as leaves: their submodules are not told apart."""

    def __init__(self, module: nn.Module, prefix: str, recorder: OpRecorder, seen: Sequence[torch.Tensor] = (),
                 leaves: Collection[str] = ()) -> None:
        """``seen``: the tensors it is given; the i-th is edge key ``-(i + 1)``."""
        super().__init__(module, prefix, include_self=True, stop_at=leaves)
        self.recorder = recorder
        names: dict[int, str] = {}
        for name, t in [*module.named_parameters(prefix=prefix, remove_duplicate=False),
                        *module.named_buffers(prefix=prefix, remove_duplicate=False)]:
            names.setdefault(id(t), name)
        self.alloc = _AllocationMode(seen, names)
        for i, t in enumerate(seen):
            self.alloc.produced(t, -(i + 1))
        self.leaves = leaves
        self.segments: list[Segment] = []
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
            # the parent's work so far becomes a segment of its own: its code before and after a
            # child are two rows, so the data flow parent -> child -> parent has no cycle
            self._emit(self.frames[-1], None)
            parent = self.frames[-1]
            self._keys += 1
            self.frames[-1] = _Frame(parent.path, parent.leaf, self._keys, [], [], [])
        leaf = path in self.leaves or not any(True for _ in m.children())
        self._keys += 1
        self.frames.append(_Frame(path, leaf, self._keys, [], [], []))
        self.alloc.frame = self._keys
        if leaf:  # a leaf reads its inputs even when it calls no torch function (nn.Identity)
            self.alloc.consume(_tensors(inputs))

    @staticmethod
    def _has_work(f: _Frame) -> bool:
        return bool(f.ops or f.allocations or f.uses)

    def _emit(self, f: _Frame, output: Any) -> None:
        ops = merge_ops(f.ops)
        outputs = output_specs(output) if f.leaf else ()
        self.segments.append(Segment(f.path, f.leaf, ops, tuple(f.allocations), outputs, tuple(dict.fromkeys(f.uses)), f.key))

    def _pop(self, path: str, m: nn.Module, output: Any) -> None:
        self._flush()
        f = self.frames.pop()
        self.alloc.frame = self.frames[-1].key if self.frames else 0
        if f.leaf:  # what a leaf returns comes from the leaf, whatever op inside made it
            for t in _tensors(output):
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
        """Data flow between segments (by key; the i-th given tensor is ``-(i + 1)``)."""
        return [(a, b, spec) for (a, b), spec in self.alloc.edges.items()]

    def __enter__(self) -> SegmentTracker:
        super().__enter__()
        self.recorder.take()
        self.alloc.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.alloc.__exit__(None, None, None)
        super().__exit__(*exc)


def output_specs(value: Any) -> tuple[TensorSpec, ...]:
    """Shapes of every tensor in a model's output: tensors, (nested) tuples, lists, dicts
    (transformers' ``ModelOutput`` is one), dataclasses; other values carry no tensor."""
    if isinstance(value, torch.Tensor):
        return (_spec(value),)
    if isinstance(value, Mapping):
        return tuple(s for v in value.values() for s in output_specs(v))
    if isinstance(value, (tuple, list)):
        return tuple(s for v in value for s in output_specs(v))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(s for f in dataclasses.fields(value) for s in output_specs(getattr(value, f.name)))
    return ()


def run_eager(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], recorder: OpRecorder,
              leaves: Collection[str] = ()) -> tuple[list[Segment], list[tuple[int, int, TensorSpec]], Any]:
    """Run ``model`` once (with ``recorder`` active), attributing every op to its module call.
    Returns the segments, the data flow between them (input tensor i is key ``-(i + 1)``, in
    the order of the tensors in ``(args, kwargs)``) and the model's output."""
    with SegmentTracker(model, "", recorder, seen=_tensors((args, kwargs)), leaves=leaves) as tracker, tracker.naming_failures():
        out = model(*args, **kwargs)
    return tracker.segments, tracker.edges, out
