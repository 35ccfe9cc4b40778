"""Cost passes: turn node records into report rows under a convention.

- params: each distinct parameter tensor is counted once, at the first node that uses it (a
  leaf module's call, or a ``get_attr``); weights and biases apart (a bias is a parameter whose
  name ends in ``bias``); parameters no node uses get an ``unused`` row so totals still equal
  the model's unique parameter count.
- MACs/FLOPs: the sum of the node's aten op costs (see formulas.py).
- activations: per the convention's rule (conventions.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from fxcost.conventions import LEAF_OUTPUTS, Convention
from fxcost.model import (
    FATE_UNSUPPORTED,
    Edge,
    InputSpec,
    MemorySummary,
    NodeCost,
    OpCost,
    TensorSpec,
    UnsupportedOp,
    merge_ops,
    within,
)
from fxcost.propagate import NodeRecord, Segment
from fxcost.trace import META_KEY


def dtype_bytes(dtype: str) -> int:
    return int(getattr(torch, dtype).itemsize)


def is_bias(name: str) -> bool:
    """A parameter named ``...bias`` (``fc.bias``, ``in_proj_bias``) is a bias."""
    return name.rpartition(".")[2].endswith("bias")


class _ParamLedger:
    """Hands out each distinct parameter/buffer once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def claim(self, named: Iterable[tuple[str, torch.Tensor]], is_param: bool) -> dict[str, int]:
        c = dict.fromkeys(("params", "weight_params", "bias_params", "trainable_params", "buffers", "param_bytes", "buffer_bytes"), 0)
        for name, t in named:
            if id(t) in self.seen:
                continue
            self.seen.add(id(t))
            n, nbytes = t.numel(), t.numel() * t.element_size()
            if is_param:
                c["params"] += n
                c["bias_params" if is_bias(name) else "weight_params"] += n
                c["trainable_params"] += n if t.requires_grad else 0
                c["param_bytes"] += nbytes
            else:
                c["buffers"] += n
                c["buffer_bytes"] += nbytes
        return c

    def claim_module(self, m: nn.Module, recurse: bool) -> dict[str, Any]:
        p = self.claim(m.named_parameters(recurse=recurse), True)
        b = self.claim(m.named_buffers(recurse=recurse), False)
        return {k: p[k] + b[k] for k in p}


def _node_type(root: nn.Module, n: fx.Node) -> str:
    if n.op == "call_module":
        return type(root.get_submodule(str(n.target))).__name__
    if n.op == "call_function":
        return getattr(n.target, "__name__", str(n.target))
    if n.op == "call_method":
        return str(n.target)
    if n.op == "placeholder":
        return "Input"
    return "Parameter"


_KIND = {"placeholder": "input", "call_module": "module", "call_function": "function", "call_method": "method", "get_attr": "attribute"}


def _row_name(n: fx.Node) -> str:
    if n.op in ("call_module", "get_attr", "placeholder"):
        return str(n.target).lstrip("*")
    path = n.meta.get(META_KEY, {}).get("module_path", "")
    return f"{path}.{n.name}" if path else n.name


# hyperparameters a diagram shows and that tell two layers of one type apart
_HPARAMS = ("in_channels", "out_channels", "in_features", "out_features", "num_embeddings", "embedding_dim",
            "padding", "dilation", "groups", "output_padding", "num_heads", "embed_dim", "hidden_size",
            "num_layers", "bidirectional", "normalized_shape", "num_groups", "num_features", "p", "scale_factor",
            "mode", "negative_slope", "approximate", "dim")


def _hparams(m: nn.Module | None) -> tuple[tuple[str, str], ...]:
    if m is None:
        return ()
    out = []
    for k in _HPARAMS:
        v = getattr(m, k, None)
        if isinstance(v, (bool, int, float, str)) or (isinstance(v, tuple) and all(isinstance(x, (int, float)) for x in v)):
            out.append((k, str(v)))
    return tuple(out)


def _tuple_attr(m: nn.Module, attr: str) -> tuple[int, ...] | None:
    v = getattr(m, attr, None)
    if isinstance(v, int):
        return (v,)
    if isinstance(v, tuple) and all(isinstance(x, int) for x in v):
        return v
    return None


def _elements(spec: TensorSpec, per_sample: bool) -> int:
    if per_sample and spec.shape:
        return spec.numel // spec.shape[0] if spec.shape[0] else 0
    return spec.numel


def sizes(specs: Iterable[TensorSpec], conv: Convention) -> tuple[int, int]:
    """Elements and bytes of ``specs`` as ``conv`` counts them (per sample or not, its element size)."""
    elements = nbytes = 0
    for s in specs:
        e = _elements(s, conv.per_sample)
        elements += e
        nbytes += e * (conv.bytes_per_element or dtype_bytes(s.dtype))
    return elements, nbytes


def _activation(rec: NodeRecord, conv: Convention) -> tuple[int, int]:
    op = rec.node.op
    if op == "get_attr" or (op == "placeholder" and not conv.inputs_are_activations):
        return 0, 0
    if conv.activation_rule == LEAF_OUTPUTS:
        counted = list(rec.outputs) if op in ("call_module", "placeholder") else []
    else:
        counted = [s for s, fresh in zip(rec.outputs, rec.allocated, strict=True) if fresh]
    return sizes(counted, conv)


def build_rows(
    root: nn.Module, records: list[NodeRecord], conv: Convention, folded: tuple[OpCost, ...] = ()
) -> tuple[list[NodeCost], list[Edge]]:
    """One row per node (the output node aside), then one per module owning unused parameters,
    and the edges between rows. ``root`` is the traced model, whose paths the graph's targets
    name. ``folded`` are the ops that ran while tracing (on parameters, buffers or constants
    alone): FX folded their results into constants, so they get a row of their own rather than
    vanish."""
    ledger = _ParamLedger()
    flow = _Flow()
    registered = {id(t) for t in [*root.parameters(), *root.buffers()]}
    rows: list[NodeCost] = []
    if folded:
        rows.append(NodeCost(id=0, name="(folded at trace time)", type="Constant", kind="constant", module_path="",
                             macs=sum(o.macs for o in folded), flops=sum(o.flops for o in folded), ops=folded))
    for rec in records:
        n = rec.node
        spec = rec.outputs[0] if rec.outputs else None
        if n.op == "output" or (not rec.outputs and not rec.ops and n.op != "call_module"):
            flow.pass_through(n)  # Python-level bookkeeping (asserts on concrete arguments, None inputs)
            continue
        if rec.segments:  # an opaque module: one row per module call inside it
            inner = segment_rows(root, rec.segments, conv, ledger, start=len(rows))
            rows.extend(inner)
            flow.node(n, inner[0].id, inner[-1].id, spec)
            by_key = {seg.key: row.id for seg, row in zip(rec.segments, inner, strict=True)}
            flow.inner(by_key, rec.segment_edges)
            continue
        counts: dict[str, Any] = {}
        kernel = stride = None
        hparams: tuple[tuple[str, str], ...] = ()
        if n.op == "call_module":
            m = root.get_submodule(str(n.target))
            counts = ledger.claim_module(m, recurse=True)
            kernel, stride, hparams = _tuple_attr(m, "kernel_size"), _tuple_attr(m, "stride"), _hparams(m)
        elif n.op == "get_attr":
            t = _resolve(root, str(n.target))
            if isinstance(t, torch.Tensor) and id(t) in registered:  # not an FX-made constant
                counts = ledger.claim([(str(n.target), t)], isinstance(t, nn.Parameter))
            if not any(counts.values()):
                flow.pass_through(n)
                continue  # a constant or an already-counted tensor: nothing to show
        elements, nbytes = _activation(rec, conv)
        flow.node(n, len(rows), len(rows), spec)
        rows.append(
            NodeCost(
                id=len(rows),
                name=_row_name(n),
                type=_node_type(root, n) if not (n.op == "get_attr" and counts.get("buffers")) else "Buffer",
                kind=_KIND[n.op],
                module_path=n.meta.get(META_KEY, {}).get("module_path", ""),
                output=rec.outputs,
                kernel_size=kernel,
                stride=stride,
                hparams=hparams,
                macs=sum(o.macs for o in rec.ops),
                flops=sum(o.flops for o in rec.ops),
                activation_elements=elements,
                activation_bytes=nbytes,
                ops=rec.ops,
                **counts,
            )
        )
    rows.extend(_unused_rows(root, ledger, start=len(rows)))
    return rows, flow.edges()


class _Flow:
    """Edges between rows from the FX graph: a node's row reads its inputs' rows. A node without
    a row of its own passes on the rows its inputs came from."""

    def __init__(self) -> None:
        self.made_by: dict[fx.Node, list[tuple[int, TensorSpec | None]]] = {}
        self._edges: dict[tuple[int, int], TensorSpec | None] = {}

    def _sources(self, n: fx.Node) -> list[tuple[int, TensorSpec | None]]:
        return [src for a in n.all_input_nodes for src in self.made_by.get(a, [])]

    def pass_through(self, n: fx.Node) -> None:
        self.made_by[n] = self._sources(n)

    def node(self, n: fx.Node, first: int, last: int, spec: TensorSpec | None) -> None:
        for src, s in self._sources(n):
            if src != first:
                self._edges.setdefault((src, first), s)
        self.made_by[n] = [(last, spec)]

    def inner(self, by_key: dict[int, int], edges: Iterable[tuple[int, int, TensorSpec]]) -> None:
        for a, b, s in edges:
            if a in by_key and b in by_key and by_key[a] != by_key[b]:
                self._edges.setdefault((by_key[a], by_key[b]), s)

    def edges(self) -> list[Edge]:
        return [Edge(a, b, s.shape if s else (), s.dtype if s else "") for (a, b), s in self._edges.items()]


def segment_rows(root: nn.Module, segments: Iterable[Segment], conv: Convention, ledger: _ParamLedger, start: int) -> list[NodeCost]:
    """One row per segment. A parameter (or buffer) is counted at the first segment that uses
    it, and a module's own parameters at its first segment at the latest; a segment's
    activations are the tensors it newly allocated (torchsummary: a leaf call's outputs)."""
    rows: list[NodeCost] = []
    for seg in segments:
        m = _submodule(root, seg.module_path)
        counts = _add(ledger.claim(_named(root, seg.uses, params=True), True),
                      ledger.claim(_named(root, seg.uses, params=False), False))
        if m is not None:  # a leaf kept whole (--leaf) owns everything below it, as under FX
            counts = _add(counts, ledger.claim_module(m, recurse=seg.leaf))
        if conv.activation_rule == LEAF_OUTPUTS:
            counted = seg.outputs if seg.leaf else ()
        else:
            counted = seg.allocations
        elements, nbytes = sizes(counted, conv)
        rows.append(
            NodeCost(
                id=start + len(rows),
                name=seg.module_path or "(root)",
                type=class_name(m) if m is not None else "Module",
                kind="module" if seg.leaf else "code",
                module_path=seg.module_path,
                output=seg.outputs or seg.allocations[-1:],
                kernel_size=_tuple_attr(m, "kernel_size") if m is not None else None,
                stride=_tuple_attr(m, "stride") if m is not None else None,
                hparams=_hparams(m) if seg.leaf else (),
                macs=sum(o.macs for o in seg.ops),
                flops=sum(o.flops for o in seg.ops),
                activation_elements=elements,
                activation_bytes=nbytes,
                ops=seg.ops,
                **counts,
            )
        )
    return rows


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def _named(root: nn.Module, names: Iterable[str], params: bool) -> list[tuple[str, torch.Tensor]]:
    """The parameters (or the buffers) among ``names``, resolved in ``root``."""
    out = []
    for name in names:
        t = _resolve_or_none(root, name)
        if isinstance(t, torch.Tensor) and isinstance(t, nn.Parameter) == params:
            out.append((name, t))
    return out


def _resolve_or_none(root: nn.Module, name: str) -> Any:
    try:
        return _resolve(root, name)
    except AttributeError:
        return None


def segments_from_records(
    root: nn.Module, records: Iterable[NodeRecord], leaves: Collection[str] = ()
) -> tuple[list[Segment], list[tuple[int, int, TensorSpec]]]:
    """torch.export's graph has a node per aten op; consecutive ones in one module make a segment.
    Nodes inside a module kept whole (``leaves``) belong to that module. Also returns the data
    flow between segments (by key; the i-th tensor input is ``-(i + 1)``)."""
    segments: list[Segment] = []
    made_by: dict[fx.Node, tuple[int, TensorSpec | None]] = {}
    edges: dict[tuple[int, int], TensorSpec] = {}
    tensor_inputs = started = 0
    path: str | None = None
    ops: list[OpCost] = []
    allocations: list[TensorSpec] = []
    uses: list[str] = []
    last: tuple[TensorSpec, ...] = ()

    def flush() -> None:
        if path is not None and (ops or allocations or uses):
            m = _submodule(root, path)
            leaf = path in leaves or (m is not None and not any(True for _ in m.children()))
            segments.append(Segment(path, leaf, merge_ops(ops), tuple(allocations), last if leaf else (),
                                    tuple(dict.fromkeys(uses)), key=started))

    for rec in records:
        n = rec.node
        if n.op == "placeholder" and rec.outputs:
            tensor_inputs += 1
            made_by[n] = (-tensor_inputs, rec.outputs[0])
        if n.op != "call_function":
            continue  # inputs, parameters (get_attr) and the output are not work
        here = _outermost_leaf(n.meta.get(META_KEY, {}).get("module_path", ""), leaves)
        if here != path:
            flush()
            path, ops, allocations, uses = here, [], [], []
            started += 1
        ops.extend(rec.ops)
        allocations.extend(s for s, fresh in zip(rec.outputs, rec.allocated, strict=True) if fresh)
        uses.extend(str(a.target) for a in n.all_input_nodes if a.op == "get_attr")
        last = rec.outputs
        sources = [made_by[a] for a in n.all_input_nodes if a in made_by]
        if not rec.ops and not any(rec.allocated) and sources:
            # it dispatched nothing and made no tensor (eval-mode dropout, x.to(x.dtype), a tuple's
            # item): what it hands on still comes from where its input came from
            made_by[n] = sources[0]
            continue
        for src in sources:
            if src[0] != started and src[1] is not None:
                edges.setdefault((src[0], started), src[1])
        made_by[n] = (started, rec.outputs[0] if rec.outputs else None)
    flush()
    return segments, [(a, b, spec) for (a, b), spec in edges.items()]


def _outermost_leaf(path: str, leaves: Collection[str]) -> str:
    for leaf in leaves:
        if within(path, leaf):
            return leaf
    return path


def input_rows(inputs: Iterable[InputSpec], conv: Convention) -> list[NodeCost]:
    rows = []
    for i, spec in enumerate(inputs):
        t = TensorSpec(spec.shape, spec.dtype)
        e, nbytes = sizes([t], conv) if conv.inputs_are_activations else (0, 0)
        rows.append(NodeCost(id=i, name=spec.name, type="Input", kind="input", module_path="",
                             output=(t,), activation_elements=e, activation_bytes=nbytes))
    return rows


def build_segment_rows(
    root: nn.Module, inputs: list[InputSpec], segments: list[Segment], edges: Iterable[tuple[int, int, TensorSpec]],
    conv: Convention,
) -> tuple[list[NodeCost], list[Edge]]:
    """Rows for a model analyzed without a graph of module calls (export, eager), and the edges
    between them (``edges`` by segment key; input i is key ``-(i + 1)``)."""
    ledger = _ParamLedger()
    rows = input_rows(inputs, conv)
    by_key = {-(i + 1): i for i in range(len(rows))}
    inner = segment_rows(root, segments, conv, ledger, start=len(rows))
    by_key.update({seg.key: row.id for seg, row in zip(segments, inner, strict=True)})
    rows += inner
    rows.extend(_unused_rows(root, ledger, start=len(rows)))
    flow = _Flow()
    flow.inner(by_key, edges)
    return rows, flow.edges()


def class_name(m: nn.Module) -> str:
    """A module's class name; a lazy module is named by the class it becomes."""
    return (getattr(m, "cls_to_become", None) or type(m)).__name__


def _submodule(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path) if path else root
    except AttributeError:
        return None


def _resolve(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _unused_rows(root: nn.Module, ledger: _ParamLedger, start: int) -> list[NodeCost]:
    """Parameters and buffers no node touched, one row per owning module."""
    rows: list[NodeCost] = []
    for path, m in root.named_modules():
        counts = ledger.claim_module(m, recurse=False)
        if any(counts.values()):
            rows.append(
                NodeCost(
                    id=start + len(rows),
                    name=path or "(root)",
                    type=type(m).__name__,
                    kind="unused",
                    module_path=path,
                    **counts,
                )
            )
    return rows


def unsupported_ops(rows: Iterable[NodeCost]) -> list[UnsupportedOp]:
    return [UnsupportedOp(o.op, r.name, o.count) for r in rows for o in r.ops if o.fate == FATE_UNSUPPORTED]


def memory_summary(rows: list[NodeCost], inputs: list[InputSpec], conv: Convention) -> MemorySummary:
    """The torchsummary-style size block under ``conv``."""
    _, input_bytes = sizes((TensorSpec(i.shape, i.dtype) for i in inputs), conv)
    activation_bytes = sum(r.activation_bytes for r in rows if r.kind != "input")
    params = sum(r.params for r in rows)
    params_bytes = params * conv.bytes_per_element if conv.bytes_per_element else sum(r.param_bytes for r in rows)
    buffer_bytes = sum(r.buffer_bytes for r in rows) if conv.buffers_in_total else 0
    fb = conv.backward_factor * activation_bytes
    return MemorySummary(input_bytes, fb, params_bytes, input_bytes + fb + params_bytes + buffer_bytes)
