"""The op recorder: a ``TorchDispatchMode`` that prices every aten op dispatched while it is
active, after composite ops have been decomposed, so ``nn.Conv2d``, ``F.conv2d`` and a custom
module calling ``torch.conv2d`` all reach ``aten::convolution`` and are counted by one formula.
Costs are computed from shapes as each op runs; no tensor is kept."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from fxcost.counting.registry import FormulaRegistry, ValueDependent
from fxcost.errors import FxcostError, InternalError, first_line
from fxcost.pytorch.diagnosis import OP_ATTRIBUTE, FailedOp, OperandDtypeError
from fxcost.pytorch.memory import storage_key
from fxcost.pytorch.oplog import OpLog
from fxcost.pytorch.tensors import formula_view, tensors_in
from fxcost.report.kinds import Fate
from fxcost.report.records import OpCost

_THROUGH = "custom op: counted through its Python implementation (the ops it runs, listed beside it)"

# matmul and convolution kernels need one dtype for all operands
_SAME_DTYPE = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv",
                         "aten::dot", "aten::convolution", "aten::_convolution"})


_GROUPED_MM = torch.ops.aten._grouped_mm.default

# A tensor subclass's metadata, asked for through the dispatcher: a fake tensor answers ``.device``,
# ``.layout`` and ``.dtype`` by dispatching these, where a plain meta tensor answers in C++ without
# dispatching anything. They are not the model's work: not tallied, so the fake run and a meta
# graph list the same ops.
_METADATA = frozenset({torch.ops.prim.device.default, torch.ops.prim.layout.default, torch.ops.prim.dtype.default})


def _data_free_non_bf16(args: Sequence[Any]) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    a, b = (args + (None, None))[:2] if isinstance(args, tuple) else (list(args) + [None, None])[:2]
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype != torch.bfloat16
            and (a.device.type == "meta" or isinstance(a, FakeTensor)))


def run_tagged(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``func(*args, **kwargs)``; an exception it raises carries the op, as this mode saw it
    dispatched, with its operands' shapes (for the diagnosis). The first op to tag it keeps it."""
    try:
        if func is _GROUPED_MM and _data_free_non_bf16(args):
            # torch's meta kernel for _grouped_mm demands bfloat16 (its CUDA kernel's rule) where the
            # CPU kernel takes any float dtype (transformers' MoE experts on CPU): shape it as bfloat16
            a, b, *rest = args
            out_dtype = kwargs.get("out_dtype") or a.dtype
            shaped = func(a.to(torch.bfloat16), b.to(torch.bfloat16), *rest, **{**kwargs, "out_dtype": None})
            return shaped.to(out_dtype)
        return func(*args, **kwargs)
    except Exception as e:
        if not hasattr(e, OP_ATTRIBUTE):
            with contextlib.suppress(AttributeError, TypeError):  # an exception type that takes no attributes
                setattr(e, OP_ATTRIBUTE, FailedOp.of(func._schema.name, args, kwargs))
        raise


class DispatchMode(TorchDispatchMode):
    """fxcost's dispatch modes. torch wraps a mode's ``__torch_dispatch__`` in
    ``torch._disable_dynamo`` so that a compiled region does not trace into it: a context switch
    on every op, and an import of ``torch._dynamo`` (1.4 s or more) on the first. fxcost's modes
    run in no compiled region (its tracers are torch.fx and non-strict torch.export), so they opt
    out, as torch's own ``_should_skip_dynamo`` allows."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class OpTagger(DispatchMode):
    """Counts nothing: names the op that raised, where a run is not recorded (lazy layers'
    first run)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        return run_tagged(func, args, kwargs or {})


def _moved(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> int:
    """The bytes an op reads and writes, unfused: each tensor argument read once, each output
    written once (an in-place op's too); a view moves nothing."""
    if func.is_view:
        return 0
    written = sum(t.numel() * t.element_size() for t in tensors_in(out))
    if func in _GATHERS:  # reads the rows it picks (as many bytes as it writes) and its indices, not the whole table
        indices = [t for t in tensors_in((args, kwargs)) if not (t.is_floating_point() or t.is_complex())]
        return 2 * written + sum(t.numel() * t.element_size() for t in indices)
    return written + sum(t.numel() * t.element_size() for t in tensors_in((args, kwargs)))


_GATHERS = {torch.ops.aten.embedding.default, torch.ops.aten.index_select.default, torch.ops.aten.gather.default,
            torch.ops.aten.index.Tensor}


class _Uncached(Exception):
    """An argument the shape cache cannot key on: the op runs."""


def _frozen(x: Any, tensors: list[int]) -> Any:
    """A hashable stand-in for an op argument that holds all a meta kernel reads of it: a plain
    meta tensor's dtype, shape, strides and layout (it has no values; each one found is counted
    into ``tensors``), a plain value's type and value (``1``, ``1.0`` and ``True`` hash alike).
    Anything else is not cached."""
    t = type(x)
    if t is torch.Tensor or t is nn.Parameter:
        if x.device.type != "meta":
            raise _Uncached
        tensors.append(1)
        return (x.dtype, x.shape, x.stride(), x.layout, x.is_conj(), x.is_neg())
    if t is tuple or t is list:
        return (t, *(_frozen(v, tensors) for v in x))
    if x is None or t in _PLAIN:
        return (t, x)
    raise _Uncached


_PLAIN = frozenset({int, float, bool, str, torch.dtype, torch.device, torch.layout, torch.memory_format})


@functools.cache
def _cacheable(func: Any) -> bool:
    """An op whose outputs are fresh tensors determined by its arguments' metadata: no argument
    written or aliased, no output a view, every return a tensor or a list of them, no output
    shape that depends on values."""
    schema = func._schema
    if func.is_view or any(a.alias_info is not None for a in schema.arguments):
        return False
    if any(r.alias_info is not None or str(r.type) not in ("Tensor", "Tensor[]") for r in schema.returns):
        return False
    return not ({torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output} & set(func.tags))


def _described(out: Any, args: Any) -> Any:
    """What rebuilds ``out``: each output's shape, strides and dtype, where each is a plain
    strided meta tensor with a storage of its own that is just as large as ``empty_strided``
    makes it. Memory counts storages, so a kernel that returns a slice of a larger buffer, two
    views of one, or its input's storage (``aten::_unsafe_view``, which its schema does not
    mark as a view) is not cached. ``None``: not cached."""
    outs = [out] if type(out) is torch.Tensor else list(out) if type(out) in (tuple, list) and out else []
    storages = {storage_key(t) for t in tensors_in(args)}
    for o in outs:
        if type(o) is not torch.Tensor or o.device.type != "meta" or o.layout != torch.strided or o.storage_offset():
            return None
        extent = 1 + sum((n - 1) * s for n, s in zip(o.shape, o.stride(), strict=True)) if o.numel() else 0
        key = storage_key(o)
        if o.untyped_storage().nbytes() != extent * o.element_size() or key in storages:
            return None
        storages.add(key)
    if not outs:
        return None
    if type(out) is torch.Tensor:
        return (out.shape, out.stride(), out.dtype)
    return (type(out), *((o.shape, o.stride(), o.dtype) for o in outs))


def _rebuilt(described: Any) -> Any:
    if isinstance(described[0], torch.Size):
        shape, stride, dtype = described
        return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    kind, *parts = described
    return kind(_rebuilt(p) for p in parts)


def _priced(name: str, fn: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | str:
    """``(macs, flops)`` of one call by its formula, which sees shapes (the tensors themselves where
    it ``reads_values``), or why it cannot be priced without values. A formula that crashes is a
    bug, never a zero: fxcost's own raises :class:`InternalError`, a user's an :class:`FxcostError`."""
    view = (lambda x: x) if getattr(fn, "reads_values", False) else formula_view
    s_args, s_kwargs, s_out = tree_map(view, (tuple(args), kwargs, out))
    s_kwargs.pop("out", None)
    try:
        cost = fn(*s_args, out=s_out, **s_kwargs)
    except ValueDependent as e:
        return str(e)
    except Exception as e:
        text = f"failed on shapes {s_args}: {type(e).__name__}: {first_line(e)}"
        if getattr(fn, "__module__", "").startswith("fxcost."):
            raise InternalError(f"fxcost's formula for {name} {text}") from e
        raise FxcostError(f"the formula registered for {name} ({getattr(fn, '__qualname__', fn)}) {text}",
                          hint="fix that formula (fxcost.register_formula, --formulas, or your registry's)") from e
    return cost.macs, cost.flops


class OpRecorder(DispatchMode):
    """Counts every aten op dispatched while it is active into the current node's tally.

    On meta tensors an op's outputs and price depend only on its arguments' metadata, so a call
    seen before (the same op on tensors of the same dtype, shape and strides, with the same plain
    arguments: the second of twelve identical transformer blocks) is answered from ``shapes``:
    fresh meta outputs of the recorded shapes and the recorded price, without running the meta
    kernel or the formula again. ``shapes`` may be shared between recorders of one analysis; the
    tests compare every zoo model's report with ``REUSE = False``."""

    REUSE = True  # class-wide switch: False runs every op (the tests' reference run)
    BACKWARD = False  # the ops it sees are a backward's

    def __init__(self, registry: FormulaRegistry, shapes: dict[Any, Any] | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.shapes: dict[Any, Any] = {} if shapes is None else shapes
        self._tally: dict[str, list[Any]] = {}
        self._fates: dict[Any, tuple[str, Fate, Any, str]] = {}
        # custom ops to run through, each with the tally it was dispatched into
        self._pending: list[tuple[str, Any, tuple[Any, ...], dict[str, Any], dict[str, list[Any]]]] = []
        self._in_pending = False  # running one of them: its ops go to its tally
        self.memory: Any = None  # a LiveBytes (fxcost.pytorch.memory) while a run's memory is measured
        self.traffic = False  # tally the bytes each op reads and writes (a roofline's)
        self.log: OpLog | None = None  # every op, in order, where asked for (``ops=True``)
        self.where = ""  # the module call running (its path), set by whoever follows the calls

    def take(self) -> tuple[OpCost, ...]:
        """The ops tallied so far, and a fresh tally."""
        self._run_pending()
        tally, self._tally = self._tally, {}
        return tuple(OpCost(name, n, macs, flops, fate, reason, bytes_moved=moved)
                     for name, (n, macs, flops, fate, reason, moved) in tally.items())

    def _through_implementation(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Fate, str]:
        """A custom op (``torch.library.custom_op``) with no formula is priced through its Python
        implementation: run once more on the same data-free tensors, its ops are tallied beside it
        (its own output came from its fake kernel). The run waits for :meth:`take`, outside this
        dispatch, so that the ops it calls decompose as a model's do."""
        from torch._library.custom_ops import OPDEFS

        op = OPDEFS.get(name)
        if op is None:
            return Fate.UNSUPPORTED, ""
        self._pending.append((name, op._init_fn, tuple(args), dict(kwargs), self._tally))
        return Fate.FREE, _THROUGH

    def _run_pending(self) -> None:
        from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

        current, self._in_pending = self._tally, True
        try:
            while self._pending:
                name, fn, args, kwargs, self._tally = self._pending.pop(0)
                active = any(m is self for m in _get_current_dispatch_mode_stack())
                try:
                    with contextlib.nullcontext() if active else self:  # twice on the stack, it would count twice
                        fn(*args, **kwargs)
                except InternalError:
                    raise
                except Exception as e:  # code that needs values: the op stays unsupported, saying why
                    entry = self._tally[name]
                    entry[3], entry[4] = Fate.UNSUPPORTED, f"custom op: its Python implementation does not run on data-free tensors ({first_line(e)})"
        finally:
            self._tally, self._in_pending = current, False

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _METADATA:
            return func(*args, **kwargs)
        key = self._key(func, args, kwargs)
        if key is not None:
            seen = self.shapes.get(key)
            if seen is not None:
                described, name, macs, flops, fate, reason, moved = seen
                out = _rebuilt(described)
                self._add(name, macs, flops, fate, reason, moved, out, (args, kwargs))
                return out
        out = run_tagged(func, args, kwargs)
        name, fate, fn, reason = self._fate(func)
        if name in _SAME_DTYPE:
            dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
            if len(dtypes) > 1:  # meta kernels do not check this; real CPU/GPU kernels refuse it
                raise OperandDtypeError(f"{name} got operands of different dtype: {', '.join(sorted(map(str, dtypes)))}")
        macs, flops, fate, reason = self._price(name, fate, fn, reason, args, kwargs, out)
        moved = _moved(func, args, kwargs, out) if self.traffic else 0
        if key is not None and fate is not Fate.UNSUPPORTED and reason != _THROUGH:
            described = _described(out, (args, kwargs))
            if described is not None:
                self.shapes[key] = (described, name, macs, flops, fate, reason, moved)
        self._add(name, macs, flops, fate, reason, moved, out, (args, kwargs))
        return out

    def _price(self, name: str, fate: Fate, fn: Any, reason: str, args: Sequence[Any], kwargs: dict[str, Any],
               out: Any) -> tuple[int, int, Fate, str]:
        """MACs, FLOPs, fate and reason of one call: by its formula (unsupported where the formula
        needs values it does not have), or through a custom op's implementation."""
        if fn is not None:  # Fate.FORMULA
            priced = _priced(name, fn, args, kwargs, out)
            if isinstance(priced, str):
                return 0, 0, Fate.UNSUPPORTED, priced
            return priced[0], priced[1], fate, reason
        if fate is Fate.UNSUPPORTED:
            return (0, 0, *self._through_implementation(name, args, kwargs))
        return 0, 0, fate, reason

    def _fate(self, func: Any) -> tuple[str, Fate, Any, str]:
        """The op's name, fate, formula and reason, looked up once per op."""
        found = self._fates.get(func)
        if found is None:
            name = func._schema.name
            rule = self.registry.lookup(name)
            found = self._fates[func] = (name, rule.fate, rule.formula, rule.reason)
        return found

    def _key(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """The shape cache's key for this call, or None where it is not cached. A call with no
        tensor argument (a factory: ``aten::empty``, ``aten::arange``) is not: its output's device
        and dtype may come from the defaults in force (a ``torch.device`` block), not from its
        arguments."""
        if not self.REUSE or not _cacheable(func):
            return None
        tensors: list[int] = []
        try:
            key = (func, self.traffic, _frozen(args, tensors), _frozen(tuple(sorted(kwargs.items())), tensors) if kwargs else ())
        except _Uncached:
            return None
        return key if tensors else None

    def _add(self, name: str, macs: int, flops: int, fate: Fate, reason: str, moved: int, out: Any, operands: Any) -> None:
        entry = self._tally.get(name)
        if entry is None:
            self._tally[name] = [1, macs, flops, fate, reason, moved]
        else:
            entry[0] += 1
            entry[1] += macs
            entry[2] += flops
            entry[5] += moved
        if self.memory is not None:
            self.memory.seen(out)
        if self.log is not None:
            self.log.add(name, self.where, operands, out, macs, flops, self.BACKWARD)
