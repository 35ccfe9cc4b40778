"""The PyTorch route's rows: what the graph's nodes (or an eager run's module calls) did, handed
to the one row builder (:class:`fxcost.counting.rows.RowBuilder`), with the data flow between
rows.

- A node of an FX graph of module calls (symbolic tracing) is one row: a leaf module's call, a
  torch function, a tensor method, a parameter read, an input. An opaque module's node becomes
  one row per module call inside it.
- A graph of aten ops (torch.export) or an eager run becomes one row per :class:`ModuleCall`: the
  consecutive ops of one call.
- A parameter is claimed at the first row that uses it: a leaf module's call claims everything
  below it; a module call claims what its ops read, and its module's own parameters at the latest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from fxcost.counting.conventions import Convention
from fxcost.counting.rows import RowBuilder, Weight
from fxcost.pytorch.eager import ModuleCall
from fxcost.pytorch.interpreter import NodeRecord
from fxcost.pytorch.tracers import META_KEY
from fxcost.report.kinds import RowKind
from fxcost.report.records import Counts, Edge, InputSpec, OpCost, Row, TensorSpec, merge_ops, within


def weight_of(name: str, t: torch.Tensor, parameter: bool) -> Weight:
    return Weight(id(t), name, t.numel(), t.numel() * t.element_size(), parameter, bool(t.requires_grad))


def module_weights(m: nn.Module, recurse: bool) -> list[Weight]:
    """A module's parameters, then its buffers (each tensor once), then the weights quantized
    modules keep packed (torch.ao's int8 Linear: no parameters, a packed weight and bias)."""
    return [*(weight_of(n, t, True) for n, t in m.named_parameters(recurse=recurse)),
            *(weight_of(n, t, False) for n, t in m.named_buffers(recurse=recurse)),
            *_packed_weights(m, recurse)]


def _packed_weights(m: nn.Module, recurse: bool) -> list[Weight]:
    from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase, RNNCellBase
    from torch.ao.nn.quantized.modules.linear import LinearPackedParams

    found = []
    for path, sub in (m.named_modules() if recurse else [("", m)]):
        if isinstance(sub, LinearPackedParams):
            weight, bias = sub._weight_bias()
            tensors = {"weight": weight, "bias": bias}
        elif isinstance(sub, (RNNBase, RNNCellBase)):  # dynamic int8 LSTM/GRU: per layer and direction
            packed = sub._weight_bias()
            tensors = {**packed["weight"], **packed["bias"]}
        else:
            continue
        for name, t in tensors.items():
            if isinstance(t, torch.Tensor):  # frozen: a quantized weight trains no further
                found.append(Weight((id(sub), name), f"{path}.{name}".strip("."), t.numel(),
                                    t.numel() * t.element_size(), parameter=True, trainable=False))
    return found


def class_name(m: nn.Module) -> str:
    """A module's class name; a lazy module is named by the class it becomes."""
    return (getattr(m, "cls_to_become", None) or type(m)).__name__


_NODE_KINDS = {"placeholder": RowKind.INPUT, "call_module": RowKind.MODULE, "call_function": RowKind.FUNCTION,
               "call_method": RowKind.METHOD, "get_attr": RowKind.ATTRIBUTE}


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
    own, cls = vars(m), type(m)
    for k in _HPARAMS:
        # the instance's attribute, else the class's (a property): never nn.Module's __getattr__, which
        # finds only parameters, buffers and submodules (none of them a hyperparameter) and raises for the rest
        if k in own:
            v = own[k]
        elif hasattr(cls, k):
            v = getattr(m, k, None)
        else:
            continue
        if isinstance(v, (bool, int, float, str)) or (isinstance(v, tuple) and all(isinstance(x, (int, float)) for x in v)):
            out.append((k, str(v)))
    return tuple(out)


def _tuple_attr(m: nn.Module | None, attr: str) -> tuple[int, ...] | None:
    v = getattr(m, attr, None)
    if isinstance(v, int):
        return (v,)
    if isinstance(v, tuple) and all(isinstance(x, int) for x in v):
        return v
    return None


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


def _resolve_or_none(root: nn.Module, name: str) -> Any:
    try:
        return _resolve(root, name)
    except AttributeError:
        return None


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


def _unused_rows(builder: RowBuilder, root: nn.Module) -> None:
    """Parameters and buffers no row claimed, one row per owning module."""
    for path, m in root.named_modules():
        builder.unused(path or "(root)", type(m).__name__, path, module_weights(m, recurse=False))


def graph_rows(
    root: nn.Module, records: list[NodeRecord], convention: Convention, folded: tuple[OpCost, ...] = ()
) -> tuple[list[Row], list[Edge]]:
    """One row per node (the output node aside), then one per module owning unused parameters,
    and the edges between rows. ``root`` is the traced model, whose paths the graph's targets
    name. ``folded`` are the ops that ran while tracing (on parameters, buffers or constants
    alone): FX folded their results into constants, so they get a row of their own rather than
    vanish."""
    builder = RowBuilder(convention)
    flow = _Flow()
    registered = {id(t) for t in [*root.parameters(), *root.buffers()]}
    if folded:
        builder.add(name="(folded at trace time)", type="Constant", kind=RowKind.CONSTANT, ops=folded)
    for rec in records:
        n = rec.node
        spec = rec.outputs[0] if rec.outputs else None
        if n.op == "output" or (not rec.outputs and not rec.ops and n.op != "call_module"):
            flow.pass_through(n)  # Python-level bookkeeping (asserts on concrete arguments, None inputs)
            continue
        if rec.calls:  # an opaque module: one row per module call inside it (its saved bytes in the first)
            inner = call_rows(builder, root, (replace(rec.calls[0], saved=rec.calls[0].saved + rec.saved), *rec.calls[1:]))
            flow.node(n, inner[0].id, inner[-1].id, spec)
            flow.inner({call.key: row.id for call, row in zip(rec.calls, inner, strict=True)}, rec.call_edges)
            continue
        weights: list[Weight] = []
        read = Counts()  # what a parameter read claims
        m: nn.Module | None = None
        if n.op == "call_module":
            m = root.get_submodule(str(n.target))
            weights = module_weights(m, recurse=True)
        elif n.op == "get_attr":
            t = _resolve(root, str(n.target))
            if isinstance(t, torch.Tensor) and id(t) in registered:  # not an FX-made constant
                read = builder.claim([weight_of(str(n.target), t, isinstance(t, nn.Parameter))])
            if read == Counts():
                flow.pass_through(n)
                continue  # a constant or an already-counted tensor: nothing to show
        fresh = [s for s, new in zip(rec.outputs, rec.allocated, strict=True) if new]
        flow.node(n, builder.next_id, builder.next_id, spec)
        builder.add(
            name=_row_name(n),
            type="Buffer" if read.buffers else _node_type(root, n),
            kind=_NODE_KINDS[n.op],
            module_path=n.meta.get(META_KEY, {}).get("module_path", ""),
            output=rec.outputs,
            allocated=() if n.op == "get_attr" else fresh,
            leaf_outputs=rec.outputs if n.op in ("call_module", "placeholder") else (),
            weights=weights,
            claimed=read,
            ops=rec.ops,
            kernel_size=_tuple_attr(m, "kernel_size"),
            stride=_tuple_attr(m, "stride"),
            hparams=_hparams(m),
            saved=rec.saved,
        )
    _unused_rows(builder, root)
    return builder.rows, flow.edges()


def call_rows(builder: RowBuilder, root: nn.Module, calls: Iterable[ModuleCall]) -> list[Row]:
    """One row per module call. A parameter (or buffer) is counted at the first call that uses
    it, and a module's own parameters at its first call at the latest; a call's activations are
    the tensors it newly allocated (torchsummary: a leaf call's outputs)."""
    rows: list[Row] = []
    for call in calls:
        m = _submodule(root, call.module_path)
        used = [(name, t) for name in call.uses if isinstance(t := _resolve_or_none(root, name), torch.Tensor)]
        weights = [*(weight_of(n, t, True) for n, t in used if isinstance(t, nn.Parameter)),
                   *(weight_of(n, t, False) for n, t in used if not isinstance(t, nn.Parameter))]
        if m is not None:  # a leaf kept whole (--leaf) owns everything below it, as under FX
            weights += module_weights(m, recurse=call.leaf)
        rows.append(builder.add(
            name=call.module_path or "(root)",
            type=class_name(m) if m is not None else "Module",
            kind=RowKind.MODULE if call.leaf else RowKind.CODE,
            module_path=call.module_path,
            output=call.outputs or call.allocations[-1:],
            allocated=call.allocations,
            leaf_outputs=call.outputs if call.leaf else (),
            weights=weights,
            ops=call.ops,
            kernel_size=_tuple_attr(m, "kernel_size"),
            stride=_tuple_attr(m, "stride"),
            hparams=_hparams(m) if call.leaf else (),
            saved=call.saved,
        ))
    return rows


def call_graph_rows(
    root: nn.Module, inputs: list[InputSpec], calls: list[ModuleCall], edges: Iterable[tuple[int, int, TensorSpec]],
    convention: Convention,
) -> tuple[list[Row], list[Edge]]:
    """Rows for a model analyzed without a graph of module calls (export, eager), and the edges
    between them (``edges`` by call key; input i is key ``-(i + 1)``)."""
    builder = RowBuilder(convention)
    by_key = {-(i + 1): builder.input(spec).id for i, spec in enumerate(inputs)}
    inner = call_rows(builder, root, calls)
    by_key.update({call.key: row.id for call, row in zip(calls, inner, strict=True)})
    _unused_rows(builder, root)
    flow = _Flow()
    flow.inner(by_key, edges)
    return builder.rows, flow.edges()


def calls_from_export(
    root: nn.Module, records: Iterable[NodeRecord], leaves: Collection[str] = ()
) -> tuple[list[ModuleCall], list[tuple[int, int, TensorSpec]]]:
    """torch.export's graph has a node per aten op; consecutive ones in one module make one call.
    Nodes inside a module kept whole (``leaves``) belong to that module. Also returns the data
    flow between calls (by key; the i-th tensor input is ``-(i + 1)``)."""
    calls = _ExportCalls(root, leaves)
    for rec in records:
        calls.add(rec)
    calls.close()
    return calls.calls, [(a, b, spec) for (a, b), spec in calls.edges.items()]


class _ExportCalls:
    """Groups an export graph's records into module calls, as they come."""

    def __init__(self, root: nn.Module, leaves: Collection[str]) -> None:
        self.root, self.leaves = root, leaves
        self.calls: list[ModuleCall] = []
        self.made_by: dict[fx.Node, tuple[int, TensorSpec | None]] = {}  # each node's call key and tensor
        self.edges: dict[tuple[int, int], TensorSpec] = {}
        self.tensor_inputs = 0
        self.key = 0  # the current call's
        self.path: str | None = None
        self.ops: list[OpCost] = []
        self.allocations: list[TensorSpec] = []
        self.uses: list[str] = []
        self.last: tuple[TensorSpec, ...] = ()
        self.saved = 0

    def close(self) -> None:
        """The current call, if it did anything, becomes a :class:`ModuleCall`."""
        if self.path is not None and (self.ops or self.allocations or self.uses):
            m = _submodule(self.root, self.path)
            leaf = self.path in self.leaves or (m is not None and not any(True for _ in m.children()))
            self.calls.append(ModuleCall(self.path, leaf, merge_ops(self.ops), tuple(self.allocations),
                                         self.last if leaf else (), tuple(dict.fromkeys(self.uses)), key=self.key,
                                         saved=self.saved))

    def add(self, rec: NodeRecord) -> None:
        n = rec.node
        if n.op == "placeholder" and rec.outputs:
            self.tensor_inputs += 1
            self.made_by[n] = (-self.tensor_inputs, rec.outputs[0])
        if n.op != "call_function":
            return  # inputs, parameters (get_attr) and the output are not work
        here = _outermost_leaf(n.meta.get(META_KEY, {}).get("module_path", ""), self.leaves)
        if here != self.path:
            self.close()
            self.path, self.ops, self.allocations, self.uses, self.saved = here, [], [], [], 0
            self.key += 1
        self.ops.extend(rec.ops)
        self.saved += rec.saved
        self.allocations.extend(s for s, fresh in zip(rec.outputs, rec.allocated, strict=True) if fresh)
        self.uses.extend(str(a.target) for a in n.all_input_nodes if a.op == "get_attr")
        self.last = rec.outputs
        sources = [self.made_by[a] for a in n.all_input_nodes if a in self.made_by]
        if not rec.ops and not any(rec.allocated) and sources:
            # it dispatched nothing and made no tensor (eval-mode dropout, x.to(x.dtype), a tuple's
            # item): what it hands on still comes from where its input came from
            self.made_by[n] = sources[0]
            return
        for key, spec in sources:
            if key != self.key and spec is not None:
                self.edges.setdefault((key, self.key), spec)
        self.made_by[n] = (self.key, rec.outputs[0] if rec.outputs else None)


def _outermost_leaf(path: str, leaves: Collection[str]) -> str:
    for leaf in leaves:
        if within(path, leaf):
            return leaf
    return path
