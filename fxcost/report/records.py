"""The records a report is made of: frozen, exact integers, no formatting.

This module (with the rest of :mod:`fxcost.report`'s data model) imports nothing else from
fxcost. :class:`Counts` is the one list of the metrics that add up: totals, roll-ups, review
budgets and comparisons iterate its fields, so a new metric is added there and nowhere else.

Serialization is generic: a :class:`Record` writes the keys its ``JSON`` names, in that order
(fields or properties), and reads back the fields among them, converting by the fields' types.
Records whose JSON is shaped differently from their fields (:class:`Row`, the report itself)
say so in their own ``to_dict``/``from_dict``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, ClassVar, TypeVar

from fxcost.report.kinds import Fate, Method, RowKind

#: 2 (fxcost 0.2): rows carry param_bytes and buffer_bytes, the report its module_types, and the
#: tracer is named as --tracer spells it; 1 (fxcost 0.1) files still serve as review baselines
SCHEMA_VERSION = 2

R = TypeVar("R", bound="Record")


def within(path: str, module: str) -> bool:
    """Whether ``path`` is the module ``module`` or lies inside it (``features.3`` in ``features``;
    ``features10`` is not)."""
    return path == module or path.startswith(module + ".")


def plain(value: Any) -> Any:
    """``value`` as JSON data: records as dicts, tuples as lists, enum members as their values."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _convert(value: Any, hint: Any) -> Any:
    """JSON data back into the type ``hint`` names (the inverse of :func:`plain`)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(value, options[0]) if len(options) == 1 else value
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is not None:
            return tuple(_convert(v, item) for v in value)
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    return value


class Record:
    """A frozen dataclass written as the keys ``JSON`` names, in that order (default: its fields)."""

    JSON: ClassVar[tuple[str, ...] | None] = None
    #: fields left out of the JSON when they hold their default (``OpCost.reason``)
    OMIT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        keys = self.JSON if self.JSON is not None else tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        out = {}
        defaults = {f.name: f.default for f in fields(self)}  # type: ignore[arg-type]
        for k in keys:
            v = getattr(self, k)
            if k in self.OMIT_DEFAULT and v == defaults[k]:
                continue
            out[k] = plain(v)
        return out

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        hints = typing.get_type_hints(cls)
        given = {f.name: _convert(d[f.name], hints[f.name]) for f in fields(cls) if f.name in d}  # type: ignore[arg-type]
        return cls(**given)


@dataclass(frozen=True)
class TensorSpec(Record):
    """Shape and dtype of one tensor, without data."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class InputSpec(Record):
    """One model input as the analysis saw it."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class OpCost(Record):
    """The ops of one kind that one row dispatched, and what they cost."""

    op: str
    count: int
    macs: int
    flops: int
    fate: Fate
    reason: str = ""
    #: dispatched by the backward of a training step (``train=True``), not the forward
    backward: bool = False
    #: bytes the ops read and wrote, each reading its tensor arguments and writing its outputs
    #: (views move nothing), where a roofline asked for them (``fxcost llm``, ``--device``)
    bytes_moved: int = 0

    OMIT_DEFAULT = ("reason", "backward", "bytes_moved")


def merge_ops(ops: Iterable[OpCost]) -> tuple[OpCost, ...]:
    """Ops of the same name (and phase, forward or backward) added together, in the order each
    first appears."""
    merged: dict[tuple[str, bool], OpCost] = {}
    for o in ops:
        prev = merged.get((o.op, o.backward))
        merged[o.op, o.backward] = (
            o
            if prev is None
            else dataclasses.replace(prev, count=prev.count + o.count, macs=prev.macs + o.macs, flops=prev.flops + o.flops,
                                     bytes_moved=prev.bytes_moved + o.bytes_moved)
        )
    return tuple(merged.values())


#: the metrics every fxcost report has had since 0.1 (a report's totals without one is no report);
#: an inference report without a roofline has exactly these
ORIGINAL_METRICS = ("params", "weight_params", "bias_params", "trainable_params", "buffers", "param_bytes", "buffer_bytes",
                    "macs", "flops", "activation_elements", "activation_bytes")


@dataclass(frozen=True)
class Counts(Record):
    """Every metric that adds up across rows, as exact integers: the one list of them.

    Parameters are counted once per distinct tensor (tied weights once); ``weight_params`` and
    ``bias_params`` split ``params`` by name (a parameter named ``...bias`` or ``bias_...`` is a bias).
    ``backward_macs`` and ``backward_flops`` are the backward of a training step (``train=True``),
    attributed to the forward node whose output the gradient flows through, ``saved_bytes`` what
    its forward saves for that backward; the JSON leaves the three out where the backward's
    counts are 0 (every row of a forward-only report).
    """

    params: int = 0
    weight_params: int = 0
    bias_params: int = 0
    trainable_params: int = 0
    buffers: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    macs: int = 0
    flops: int = 0
    backward_macs: int = 0
    backward_flops: int = 0
    activation_elements: int = 0
    activation_bytes: int = 0
    #: bytes of the tensors the row's ops save for the backward (each storage once, in the first
    #: row that saves it; parameters and buffers aside): a training step's
    saved_bytes: int = 0
    #: bytes the forward's ops read and wrote (see :class:`OpCost`), where a roofline asked for them
    bytes_moved: int = 0

    #: present only in training reports (and absent from fxcost 0.1's JSON)
    BACKWARD: ClassVar[tuple[str, ...]] = ("backward_macs", "backward_flops", "saved_bytes")
    #: present only where a roofline asked for them
    TRAFFIC: ClassVar[tuple[str, ...]] = ("bytes_moved",)

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(astuple_counts(self), astuple_counts(other), strict=True)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The metrics, in order."""
        return _COUNT_NAMES

    @classmethod
    def total(cls, items: Iterable[Counts]) -> Counts:
        sums = dict.fromkeys(cls.names(), 0)
        for c in items:
            for n in sums:
                sums[n] += getattr(c, n)
        return cls(**sums)

    def present(self, train: bool, traffic: bool) -> tuple[str, ...]:
        """The metrics a report of that kind has: the backward's in a training report (``train``),
        the bytes moved where a roofline asked for them (``traffic``)."""
        return tuple(n for n in self.names() if (train or n not in self.BACKWARD) and (traffic or n not in self.TRAFFIC))

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    def to_dict(self, metrics: Iterable[str] = ORIGINAL_METRICS) -> dict[str, int]:
        """The totals' layout (of ``metrics``, a report's :meth:`~fxcost.Report.metrics`): torchinfo's
        order, trainable and non-trainable right after params."""
        d = {n: getattr(self, n) for n in self.names() if n in metrics}
        head = {"params": d.pop("params"), "trainable_params": d.pop("trainable_params"),
                "non_trainable_params": self.non_trainable_params}
        return {**head, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        """Counts read back; a metric added after fxcost 0.1 (:data:`ORIGINAL` lists the first ones)
        reads as 0 where an older file has none, so a new metric never breaks an older report."""
        missing = [n for n in ORIGINAL_METRICS if n not in d]
        if missing:
            raise ValueError(f"no {', '.join(missing)} among the counts")
        return cls(**{n: int(d.get(n, 0)) for n in cls.names()})




#: the metrics, in order (read once: dataclasses.fields() is slow, and sums of Counts are many)
_COUNT_NAMES = tuple(f.name for f in fields(Counts))


def astuple_counts(c: Counts) -> tuple[int, ...]:
    """``c``'s metrics in :meth:`Counts.names` order."""
    return tuple(getattr(c, n) for n in _COUNT_NAMES)


assert set(ORIGINAL_METRICS) <= set(Counts.names())

#: the Counts names, for delegation from rows
_METRICS = frozenset(Counts.names()) | {"non_trainable_params"}


@dataclass(frozen=True)
class Row:
    """One row of the report: a graph node, or a roll-up of several.

    ``name`` is the row's qualified name: the module path for a module call
    (``features.3.0``), the enclosing module path plus the FX node name for a function
    (``features.3.add``), the input's name for an input. Its metrics are ``counts``, also
    readable as attributes (``row.macs``).
    """

    id: int
    name: str
    type: str
    kind: RowKind
    module_path: str
    output: tuple[TensorSpec, ...] = ()
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    counts: Counts = Counts()
    ops: tuple[OpCost, ...] = ()
    members: int = 1  # how many graph nodes this row stands for
    #: a module call's hyperparameters as built (out_channels, dilation, groups...), as text
    hparams: tuple[tuple[str, str], ...] = ()

    def __getattr__(self, name: str) -> int:
        # only reached when normal lookup fails: the metrics live in ``counts``
        if name in _METRICS:
            return getattr(self.counts, name)  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.output[0].shape if self.output else ()

    def to_dict(self, metrics: Iterable[str] = ORIGINAL_METRICS) -> dict[str, Any]:
        """The row's JSON, with ``metrics`` (its report's :meth:`~fxcost.Report.metrics`)."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "kind": self.kind.value,
            "module_path": self.module_path,
            "output_shape": list(self.output_shape),
            "outputs": plain(self.output),
            "kernel_size": plain(self.kernel_size),
            "stride": plain(self.stride),
            **{n: getattr(self.counts, n) for n in self.counts.names() if n in metrics},
            "members": self.members,
            "hparams": dict(self.hparams),
            "ops": plain(self.ops),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        return cls(
            id=int(d["id"]), name=d["name"], type=d["type"], kind=RowKind(d["kind"]), module_path=d["module_path"],
            output=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            kernel_size=None if d["kernel_size"] is None else tuple(d["kernel_size"]),
            stride=None if d["stride"] is None else tuple(d["stride"]),
            counts=Counts.from_dict(d), ops=tuple(OpCost.from_dict(o) for o in d["ops"]),
            members=int(d["members"]), hparams=tuple((str(k), str(v)) for k, v in d["hparams"].items()),
        )


@dataclass(frozen=True)
class MemorySummary(Record):
    """The torchsummary-style size block, in bytes, as the report's convention defines it."""

    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Fit(Record):
    """``--fit``: the largest batch whose peak fits ``limit_bytes``, its peak and the next batch's."""

    limit_bytes: int
    batch: int
    peak_bytes: int
    next_peak_bytes: int


@dataclass(frozen=True)
class Shard(Record):
    """A training step's memory per rank under data-parallel sharding (``--shard``): the peak's
    parameters, gradients and optimizer states divided among ``ranks`` as the scheme divides them
    (ZeRO stage 1: optimizer states; 2: and gradients; 3 and FSDP: and parameters)."""

    scheme: str
    ranks: int
    peak_bytes: int
    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int


@dataclass(frozen=True)
class PeakMemory(Record):
    """The most bytes alive at once during the run, from the lifetimes of its tensors.

    ``inference``: the forward without gradients. The parameters, buffers and inputs live
    throughout; ``activations_bytes`` are the outputs of earlier layers still to be read at the
    peak, ``temporaries_bytes`` what the layer running then (``at``) has made so far.

    ``train``: the second of two training steps (forward, loss, backward, ``optimizer`` step,
    ``zero_grad``), at its peak: ``grads_bytes`` the parameters' gradients alive then,
    ``optimizer_bytes`` the optimizer's states (and, in its step, its working tensors),
    ``activations_bytes`` what the forward made that is still alive (saved for the backward),
    ``temporaries_bytes`` what the backward made (activations' gradients, kernel buffers);
    ``phase`` the part of the step and ``at`` the innermost module running then. ``timeline``:
    the live bytes by category (``TIMELINE`` names the columns) over the ops of that step,
    at most a few hundred points, each the largest of the ops it stands for.
    """

    JSON = ("mode", "peak_bytes", "params_bytes", "buffers_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes",
            "temporaries_bytes", "inputs_bytes", "at", "phase", "optimizer", "amp", "checkpointed", "fit", "shard", "timeline")
    OMIT_DEFAULT = ("phase", "optimizer", "amp", "checkpointed", "fit", "shard", "timeline")
    TIMELINE: ClassVar[tuple[str, ...]] = ("phase", "params", "buffers", "inputs", "grads", "optimizer", "activations",
                                           "temporaries")

    mode: str
    peak_bytes: int
    params_bytes: int
    buffers_bytes: int
    inputs_bytes: int
    activations_bytes: int
    temporaries_bytes: int
    at: str
    grads_bytes: int = 0
    optimizer_bytes: int = 0
    phase: str = ""
    optimizer: str = ""
    amp: str = ""
    checkpointed: tuple[str, ...] = ()
    fit: Fit | None = None
    shard: Shard | None = None
    timeline: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class Roof(Record):
    """One layer on a device's roofline: ``max(FLOPs / peak, bytes moved / bandwidth)``."""

    id: int  # the row's
    seconds: float
    bound: str  # "compute" or "memory"
    intensity: float  # FLOPs per byte moved


@dataclass(frozen=True)
class Hardware(Record):
    """The device a report's roofline is drawn for (``--device``): its peak FLOP/s at the
    report's dtype and its memory bandwidth, from ``source``."""

    device: str
    dtype: str
    peak_flops: float
    bandwidth_bytes_s: float
    source: str = ""

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (FLOPs per byte) where compute becomes the bound."""
        return self.peak_flops / self.bandwidth_bytes_s

    def roof(self, row_id: int, flops: int, bytes_moved: int) -> Roof:
        compute, memory = flops / self.peak_flops, bytes_moved / self.bandwidth_bytes_s
        return Roof(row_id, max(compute, memory), "compute" if compute >= memory else "memory",
                    flops / bytes_moved if bytes_moved else 0.0)


@dataclass(frozen=True)
class SizeFit(Record):
    """``--fit`` with letters: the largest size of ``letter`` (the other letters at ``at``) whose
    peak, by the formula, fits ``limit_bytes`` (``size`` 0: not even the smallest), the formula's
    peak there and at the next size, and the same two peaks measured by analyses at those sizes."""

    letter: str
    size: int
    limit_bytes: int
    peak_bytes: int
    next_peak_bytes: int
    measured_peak_bytes: int
    measured_next_peak_bytes: int
    at: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Sizes(Record):
    """The letters of a symbolic analysis (``--input BxS:int64``): every figure of its report is an
    exact expression of them (a sympy expression), valid where ``domain`` holds: each letter's
    range, then each condition on the sizes the forward's branches recorded (``S <= 1024``).
    ``hints``: the size of each letter the forward's branches were taken at. ``equal``: letters
    the forward found to be one size (``W = H``). ``branches``: the conditions of ``domain`` that
    the forward's branches recorded (the rest are the letters' ranges)."""

    letters: tuple[str, ...]
    hints: tuple[int, ...]
    domain: tuple[str, ...]
    equal: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()
    #: ``--fit`` with letters: for each letter, the largest size whose peak fits, the others at their hints
    fits: tuple[SizeFit, ...] = ()


@dataclass(frozen=True)
class Edge(Record):
    """A tensor that flows from one row to another (row ids of the same view)."""

    src: int
    dst: int
    shape: tuple[int, ...] = ()
    dtype: str = ""


@dataclass(frozen=True)
class UnsupportedOp(Record):
    """An op with no formula and no reviewed zero-cost reason, and where it ran."""

    op: str
    where: str
    count: int
    #: why it has no price, where more is known than "no formula" (a formula that needs values)
    reason: str = ""

    OMIT_DEFAULT = ("reason",)


@dataclass(frozen=True)
class OpaqueModule(Record):
    """A module symbolic tracing could not enter: it ran op by op, and why."""

    module: str
    type: str
    reason: str


@dataclass(frozen=True)
class Fallback(Record):
    """A tracer that failed before the one that ran, and its error."""

    tracer: Method
    error: str


@dataclass(frozen=True)
class OnnxSource(Record):
    """The ONNX file a report was counted from."""

    file: str
    opset: int | None
    producer: str
    structure_only: bool
    constants: int  # initializers that are neither parameters nor buffers


@dataclass(frozen=True)
class OpRecord(Record):
    """One aten op of the trace, in the order it was dispatched (``analyze(ops=True)``, ``--ops``):
    where it ran, the op that made each of its tensor operands, its outputs, and its price."""

    op: str
    module: str  # the innermost module call that ran it ("" for the model's own code)
    #: for each tensor operand, in order: the index of the op of this trace that made it, or -1
    #: (a model input, a parameter, a buffer, a tensor made outside the trace)
    inputs: tuple[int, ...]
    outputs: tuple[TensorSpec, ...]
    strides: tuple[tuple[int, ...], ...]  # each output's strides, in elements
    macs: int
    flops: int
    backward: bool = False
    OMIT_DEFAULT: ClassVar[tuple[str, ...]] = ("backward",)


@dataclass(frozen=True)
class TraceInfo:
    """How the graph was obtained: the method, its size, and what did not go as planned."""

    method: Method
    graph_nodes: int | None = None  # symbolic and export: nodes of the graph
    segments: int | None = None  # eager: module calls that did work
    onnx: OnnxSource | None = None
    notes: tuple[str, ...] = ()
    opaque: tuple[OpaqueModule, ...] = ()
    fallbacks: tuple[Fallback, ...] = ()
    ops: tuple[OpRecord, ...] = ()  # every op in order, where asked for (``ops=True``)
    #: warnings raised while the model was analyzed (torch's, the model's own code's), each once:
    #: kept here (``--verbose`` shows them), not sent to the terminal
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method.value}
        for k in ("graph_nodes", "segments"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.onnx is not None:
            d.update(self.onnx.to_dict())
        for k in ("notes", "opaque", "fallbacks", "warnings", "ops"):
            if getattr(self, k):
                d[k] = plain(getattr(self, k))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceInfo:
        onnx = OnnxSource.from_dict(d) if "file" in d else None
        return cls(
            method=Method(d["method"]), graph_nodes=d.get("graph_nodes"), segments=d.get("segments"), onnx=onnx,
            notes=tuple(d.get("notes", ())), opaque=tuple(OpaqueModule.from_dict(o) for o in d.get("opaque", ())),
            fallbacks=tuple(Fallback.from_dict(f) for f in d.get("fallbacks", ())),
            ops=tuple(OpRecord.from_dict(o) for o in d.get("ops", ())), warnings=tuple(d.get("warnings", ())),
        )
