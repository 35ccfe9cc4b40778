"""fxcost's data model: frozen records and the Report that holds them.

This module imports nothing else from fxcost. Every number is an exact ``int``; formatting
(k/M/G, MB, percentages) belongs to the exporters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

SCHEMA_VERSION = 1

#: The three fates an aten op can have (docs/conventions.md, "Every op has a fate").
FATE_FORMULA = "formula"
FATE_FREE = "free"
FATE_UNSUPPORTED = "unsupported"


def within(path: str, module: str) -> bool:
    """Whether ``path`` is the module ``module`` or lies inside it (``features.3`` in ``features``;
    ``features10`` is not)."""
    return path == module or path.startswith(module + ".")


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one tensor, without data."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class InputSpec:
    """One model input as the analysis saw it."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class OpCost:
    """The aten ops of one kind that one graph node dispatched, and what they cost."""

    op: str
    count: int
    macs: int
    flops: int
    fate: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "op": self.op,
            "count": self.count,
            "macs": self.macs,
            "flops": self.flops,
            "fate": self.fate,
        }
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass(frozen=True)
class NodeCost:
    """One row of the report: a graph node, or a roll-up of several.

    ``name`` is the row's qualified name: the module path for a module call
    (``features.3.0``), the enclosing module path plus the FX node name for a function
    (``features.3.add``), the input's name for an input.
    """

    id: int
    name: str
    type: str
    kind: str  # "input", "module", "function", "method", "attribute", "unused", "group"
    module_path: str
    output: tuple[TensorSpec, ...] = ()
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    params: int = 0
    weight_params: int = 0
    bias_params: int = 0
    trainable_params: int = 0
    buffers: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    macs: int = 0
    flops: int = 0
    activation_elements: int = 0
    activation_bytes: int = 0
    ops: tuple[OpCost, ...] = ()
    members: int = 1  # how many graph nodes this row stands for
    #: a module call's hyperparameters as built (out_channels, dilation, groups...), as text
    hparams: tuple[tuple[str, str], ...] = ()

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.output[0].shape if self.output else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "module_path": self.module_path,
            "output_shape": list(self.output_shape),
            "outputs": [t.to_dict() for t in self.output],
            "kernel_size": list(self.kernel_size) if self.kernel_size is not None else None,
            "stride": list(self.stride) if self.stride is not None else None,
            "params": self.params,
            "weight_params": self.weight_params,
            "bias_params": self.bias_params,
            "trainable_params": self.trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "flops": self.flops,
            "activation_elements": self.activation_elements,
            "activation_bytes": self.activation_bytes,
            "members": self.members,
            "hparams": dict(self.hparams),
            "ops": [o.to_dict() for o in self.ops],
        }


_SUMMED = (
    "params",
    "weight_params",
    "bias_params",
    "trainable_params",
    "buffers",
    "param_bytes",
    "buffer_bytes",
    "macs",
    "flops",
    "activation_elements",
    "activation_bytes",
)


@dataclass(frozen=True)
class Totals:
    params: int
    trainable_params: int
    weight_params: int
    bias_params: int
    buffers: int
    param_bytes: int
    buffer_bytes: int
    macs: int
    flops: int
    activation_elements: int
    activation_bytes: int

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    @classmethod
    def of(cls, rows: Iterable[NodeCost]) -> Totals:
        sums = dict.fromkeys(_SUMMED, 0)
        for r in rows:
            for k in _SUMMED:
                sums[k] += getattr(r, k)
        return cls(**sums)

    def to_dict(self) -> dict[str, int]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "weight_params": self.weight_params,
            "bias_params": self.bias_params,
            "buffers": self.buffers,
            "param_bytes": self.param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "macs": self.macs,
            "flops": self.flops,
            "activation_elements": self.activation_elements,
            "activation_bytes": self.activation_bytes,
        }


@dataclass(frozen=True)
class MemorySummary:
    """The torchsummary-style size block, in bytes, as the report's convention defines it."""

    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    total_bytes: int

    def to_dict(self) -> dict[str, int]:
        return {
            "input_bytes": self.input_bytes,
            "forward_backward_bytes": self.forward_backward_bytes,
            "params_bytes": self.params_bytes,
            "total_bytes": self.total_bytes,
        }


@dataclass(frozen=True)
class Edge:
    """A tensor that flows from one row to another (row ids of the same view)."""

    src: int
    dst: int
    shape: tuple[int, ...] = ()
    dtype: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class UnsupportedOp:
    """An aten op with no formula and no reviewed zero-cost reason, and where it ran."""

    op: str
    where: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "where": self.where, "count": self.count}


@dataclass(frozen=True)
class Report:
    """The result of one analysis: per-row records plus queries over them.

    ``layers`` holds one row per graph node (``view == "layer"``) or one per group after
    :meth:`by_module` / :meth:`by_type`. Totals never change with the view.
    """

    model: str
    convention: str
    inputs: tuple[InputSpec, ...]
    layers: tuple[NodeCost, ...]
    memory: MemorySummary
    unsupported: tuple[UnsupportedOp, ...] = ()
    trace: dict[str, Any] = field(default_factory=dict)
    #: class name of every module in the model, by path: names the rows of :meth:`by_module`
    module_types: dict[str, str] = field(default_factory=dict)
    mode: str = "meta"  # the tensors shapes ran on: "meta", "fake" (FakeTensorMode) or "real"
    #: every tensor the model returned, in order (nested outputs flattened)
    outputs: tuple[TensorSpec, ...] = ()
    #: the data flow between rows: which row's tensor each row reads
    edges: tuple[Edge, ...] = ()
    view: str = "layer"
    depth: int | None = None

    def total(self) -> Totals:
        return Totals.of(self.layers)

    def by_module(self, depth: int) -> Report:
        """Roll rows up into their enclosing modules ``depth`` levels below the root."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")

        def key(row: NodeCost) -> str:
            return ".".join(row.name.split(".")[:depth])

        return self._grouped(key, lambda k, rows: self.module_types.get(k, "Module"), "module", depth)

    def collapse(self, paths: Iterable[str]) -> Report:
        """Each module in ``paths`` becomes one row holding every row inside it (the diagram's
        ``--depth``); other rows stay as they are. Edges follow their rows."""
        ordered = sorted(paths, key=len)

        def key(row: NodeCost) -> str:
            for p in ordered:
                if within(row.name, p):
                    return p
            return f"\0{row.id}"  # a key no module path can equal: the row on its own

        grouped = self._grouped(key, lambda k, rows: self.module_types.get(k, "Module"), "module", self.depth)
        return replace(grouped, view=self.view)

    def by_type(self) -> Report:
        """One row per layer type (``Conv2d``, ``Linear``, ``add``...)."""
        return self._grouped(lambda r: r.type, lambda k, rows: k, "type", None)

    def _grouped(
        self,
        key: Callable[[NodeCost], str],
        type_of: Callable[[str, list[NodeCost]], str],
        view: str,
        depth: int | None,
    ) -> Report:
        groups: dict[str, list[NodeCost]] = {}
        for r in self.layers:
            groups.setdefault(key(r), []).append(r)
        rows = []
        new_id: dict[int, int] = {}
        for k, members in groups.items():
            i = members[0].id  # a group keeps its first member's id: one id names one place in every view
            for m in members:
                new_id[m.id] = i
            if len(members) == 1 and (members[0].name == k or k.startswith("\0")):
                rows.append(members[0])
                continue
            sums = {f: sum(getattr(m, f) for m in members) for f in _SUMMED}
            ops = merge_ops(op for m in members for op in m.ops)
            rows.append(
                NodeCost(
                    id=i,
                    name=k,
                    type=type_of(k, members),
                    kind="group",
                    module_path=k if view == "module" else "",
                    # a block's output (its last row that has one); a type has none
                    output=next((m.output for m in reversed(members) if m.output), ()) if view == "module" else (),
                    ops=ops,
                    members=sum(m.members for m in members),
                    **sums,
                )
            )
        edges: dict[tuple[int, int], Edge] = {}
        if view == "module":  # a type has no place in the data flow
            for e in self.edges:
                src, dst = new_id.get(e.src), new_id.get(e.dst)
                if src is not None and dst is not None and src != dst:
                    edges.setdefault((src, dst), replace(e, src=src, dst=dst))
        return replace(self, layers=tuple(rows), edges=tuple(edges.values()), view=view, depth=depth)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "convention": self.convention,
            "mode": self.mode,
            "view": {"group_by": self.view, "depth": self.depth},
            "trace": dict(self.trace),
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "totals": self.total().to_dict(),
            "memory": self.memory.to_dict(),
            "layers": [r.to_dict() for r in self.layers],
            "unsupported": [u.to_dict() for u in self.unsupported],
            "edges": [e.to_dict() for e in self.edges],
        }


def merge_ops(ops: Iterable[OpCost]) -> tuple[OpCost, ...]:
    merged: dict[str, OpCost] = {}
    for o in ops:
        prev = merged.get(o.op)
        merged[o.op] = (
            o
            if prev is None
            else replace(prev, count=prev.count + o.count, macs=prev.macs + o.macs, flops=prev.flops + o.flops)
        )
    return tuple(merged.values())


@dataclass(frozen=True)
class ComparisonRow:
    """One line of a comparison: a metric for one layer type (or ``all``) in both reports."""

    metric: str
    group: str
    a: int
    b: int

    @property
    def ratio(self) -> float | None:
        return self.a / self.b if self.b else None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "group": self.group, "a": self.a, "b": self.b, "ratio": self.ratio}


@dataclass(frozen=True)
class Comparison:
    a: Report
    b: Report
    rows: tuple[ComparisonRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "compare": {
                "a": {"model": self.a.model, "inputs": [i.to_dict() for i in self.a.inputs]},
                "b": {"model": self.b.model, "inputs": [i.to_dict() for i in self.b.inputs]},
                "rows": [r.to_dict() for r in self.rows],
            },
        }


@dataclass(frozen=True)
class Sweep:
    """One model analyzed at several input sizes (seed Q4)."""

    reports: tuple[Report, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "sweep": [r.to_dict() for r in self.reports]}


@dataclass(frozen=True)
class ReviewCheck:
    """One total against one limit: a budget, or the baseline's total plus the allowed growth."""

    metric: str
    kind: str  # "budget" or "baseline +5%"
    value: int
    limit: int
    ok: bool
    #: the rows that contribute most to this metric, largest first
    top: tuple[tuple[str, int], ...] = ()
    baseline: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "kind": self.kind, "value": self.value, "limit": self.limit,
                "baseline": self.baseline, "growth": self.growth, "ok": self.ok,
                "top": [{"name": n, "value": v} for n, v in self.top]}

    @property
    def growth(self) -> float | None:
        """How much the total grew over the baseline (0.486 for +48.6%)."""
        return (self.value - self.baseline) / self.baseline if self.baseline else None


@dataclass(frozen=True)
class Review:
    """A report reviewed against budgets and a baseline (``fxcost review``)."""

    report: Report
    checks: tuple[ReviewCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "review": {
                "model": self.report.model,
                "inputs": [i.to_dict() for i in self.report.inputs],
                "convention": self.report.convention,
                "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks],
                "totals": self.report.total().to_dict(),
                "unsupported": [u.to_dict() for u in self.report.unsupported],
            },
        }


@dataclass(frozen=True)
class CrossCheckRow:
    """One metric for one layer type (or ``all``) counted by the PyTorch route and the ONNX route."""

    metric: str
    group: str
    torch: int
    onnx: int

    @property
    def diff(self) -> int:
        return self.onnx - self.torch

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "group": self.group, "torch": self.torch, "onnx": self.onnx, "diff": self.diff}


@dataclass(frozen=True)
class CrossCheck:
    """A model counted twice: through torch.fx/torch.export, and through its exported ONNX graph.

    ``explanations`` name every difference; ``max_abs_diff`` is onnxruntime's largest absolute
    difference from PyTorch on random inputs (``None`` when it was not run, ``run_note`` says why).
    """

    torch: Report
    onnx: Report
    onnx_file: str
    rows: tuple[CrossCheckRow, ...]
    explanations: tuple[str, ...] = ()
    max_abs_diff: float | None = None
    run_note: str = ""
    export: dict[str, Any] = field(default_factory=dict)
    #: the ONNX file records each node's module, so layer types compare (else totals only)
    by_type: bool = True

    def _total(self, metric: str) -> CrossCheckRow:
        return next(r for r in self.rows if r.metric == metric and r.group == "all")

    @property
    def params_equal(self) -> bool:
        return self._total("params").diff == 0

    @property
    def macs_equal(self) -> bool:
        """MACs agree in total and for every layer type (the same work, filed under the same layers);
        in total only when the ONNX file has no module records to type its nodes by."""
        return all(r.diff == 0 for r in self.rows if r.metric == "macs" and (self.by_type or r.group == "all"))

    @property
    def all_counted(self) -> bool:
        """Neither route met an op it could not count (which would hide work from the comparison)."""
        return not self.torch.unsupported and not self.onnx.unsupported

    @property
    def passed(self) -> bool:
        return self.params_equal and self.macs_equal and self.all_counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "crosscheck": {
                "model": self.torch.model,
                "inputs": [i.to_dict() for i in self.torch.inputs],
                "convention": self.torch.convention,
                "onnx_file": self.onnx_file,
                "export": dict(self.export),
                "params_equal": self.params_equal,
                "macs_equal": self.macs_equal,
                "all_counted": self.all_counted,
                "by_type": self.by_type,
                "passed": self.passed,
                "rows": [r.to_dict() for r in self.rows],
                "explanations": list(self.explanations),
                "onnxruntime": {"max_abs_diff": self.max_abs_diff, "note": self.run_note},
                "torch_trace": dict(self.torch.trace),
                "onnx_trace": dict(self.onnx.trace),
                "unsupported": {"torch": [u.to_dict() for u in self.torch.unsupported],
                                "onnx": [u.to_dict() for u in self.onnx.unsupported]},
            },
        }
