"""Analysis of an ONNX file: the same :class:`~fxcost.report.report.Report` as the PyTorch route,
from ONNX shape inference (:mod:`fxcost.onnx.shapes`) and fxcost's formulas for ONNX ops
(:mod:`fxcost.onnx.formulas`), built by the one row builder.

The file is read without its weight data (:mod:`fxcost.onnx.load`): weights only need their
shapes. Rows: a file the PyTorch exporter wrote records each node's module
(``pkg.torch.onnx.name_scopes`` and ``class_hierarchy``), so consecutive nodes of one module
become one row named and typed like the PyTorch route's (``features.0``, ``Conv2d``); any other
file gets one row per node, typed by its op (``Conv``). ONNX has no views: the outputs of ops
that are views in PyTorch (Reshape, Transpose, Squeeze, ...) are not counted as activations, so
the two routes count alike.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fxcost.counting.conventions import Convention, get_convention
from fxcost.counting.registry import FormulaRegistry
from fxcost.counting.rows import RowBuilder, memory_summary, unsupported_ops
from fxcost.errors import OnnxFileError, first_line
from fxcost.onnx.formulas import ONNX_REGISTRY, UnknownShape, op_key
from fxcost.onnx.load import (
    CLASSES_KEY,
    SCOPES_KEY,
    STRUCTURE_ONLY_KEY,
    Dims,
    OnnxWeight,
    WeightKind,
    attrs_of,
    dtype_of,
    load,
    metadata,
    unsized_types,
    weights,
)
from fxcost.onnx.shapes import Types, infer, pin, skeleton, value_types
from fxcost.report.kinds import Fate, Method, Mode, RowKind
from fxcost.report.records import Edge, InputSpec, OnnxSource, OpCost, TensorSpec, TraceInfo, merge_ops
from fxcost.report.report import Report

#: ops that PyTorch computes as views of their input (or, for Dropout at inference, the input
#: itself): their outputs are not new activations, as in the FX route
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Expand", "Slice",
                       "Split", "Dropout"})
#: ops whose outputs are constants, not activations
CONSTANT_OPS = frozenset({"Constant", "Shape", "Size"})


@dataclass
class _Group:
    """Consecutive nodes that become one row."""

    key: str  # the row's name: a module path, "(root)", or the node's own name
    type: str
    nodes: list[Any] = field(default_factory=list)
    path: str | None = None  # the module path, when the exporter recorded it


def analyze_onnx(
    path: str | Path,
    inputs: Sequence[Dims] = (),
    named_inputs: dict[str, Dims] | None = None,
    convention: str | Convention = "fxcost",
    *,
    strict: bool = False,
    name: str | None = None,
    model: Any = None,
    registry: FormulaRegistry | None = None,
) -> Report:
    """Analyze an ONNX file. ``inputs`` pin the graph's inputs in order (weights excluded) and
    ``named_inputs`` by name; they are needed only where the file has dynamic dimensions. Each
    input keeps the file's dtype. ``convention`` applies as on the PyTorch route. ``strict=True``
    raises :class:`UnsupportedOpError` when an op has no formula. ``model``: the file as
    :func:`~fxcost.onnx.load.load` returned it, when the caller has it already (a file is read
    once). ``registry``: the ONNX op formulas to count with (default :data:`ONNX_REGISTRY`)."""
    rules = get_convention(convention)
    model = model if model is not None else load(path)
    graph = model.graph
    known = weights(graph)
    user = [i for i in graph.input if i.name not in known]
    pinned = pin(path, user, list(inputs), dict(named_inputs or {}))
    try:
        inferred = infer(skeleton(model, pinned))
    except Exception as e:  # onnx raises its own InferenceError and plain RuntimeErrors
        raise OnnxFileError(f"ONNX shape inference failed on {path}: {first_line(e)}",
                            hint="check the file with onnx.checker; pin every input with --input") from e
    types = value_types(inferred.graph)
    types.update({w.name: (w.shape, w.dtype) for w in known.values()})

    specs = [InputSpec(i.name, pinned[i.name], dtype_of(i.type.tensor_type.elem_type)) for i in user]
    builder = RowBuilder(rules)
    producer: dict[str, int] = {s.name: builder.input(s).id for s in specs}
    edges: dict[tuple[int, int], Edge] = {}
    module_types = _module_types(graph)
    leaves = _leaves(module_types)
    for group in _groups(graph):
        rid = builder.next_id
        kind = RowKind.FUNCTION if group.path is None else RowKind.MODULE if group.path in leaves else RowKind.CODE
        last = group.nodes[-1]
        builder.add(
            name=group.key, type=group.type, kind=kind, module_path=group.path or "",
            output=tuple(TensorSpec(*types[o]) for o in last.output if o in types),
            allocated=[TensorSpec(*types[o]) for n in group.nodes if n.op_type not in ALIAS_OPS | CONSTANT_OPS
                       for o in n.output if o and o in types],
            leaf_outputs=[] if kind == RowKind.CODE else [TensorSpec(*types[o]) for o in last.output[:1] if o in types],
            weights=[known[i].weight() for n in group.nodes for i in n.input if i in known and known[i].kind is not WeightKind.CONSTANT],
            ops=merge_ops(_op_cost(n, types, known, registry or ONNX_REGISTRY) for n in group.nodes),
            kernel_size=_attr_tuple(group.nodes, "kernel_shape"), stride=_attr_tuple(group.nodes, "strides"),
            hparams=_hparams(group.nodes, types),
        )
        for n in group.nodes:
            for i in n.input:
                src = producer.get(i)
                if src is not None and src != rid and i in types:
                    shape, dtype = types[i]
                    edges.setdefault((src, rid), Edge(src, rid, shape, dtype))
            for o in n.output:
                producer[o] = rid
    for w in known.values():  # parameters and buffers no node reads, one row each
        if w.kind is not WeightKind.CONSTANT:
            builder.unused(w.name, "Weight", "", [w.weight()])
    rows = builder.rows
    unsupported = unsupported_ops(rows, strict)
    opsets = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    source = OnnxSource(
        file=str(path), opset=opsets.get("ai.onnx"), producer=f"{model.producer_name} {model.producer_version}".strip(),
        structure_only=metadata(model).get(STRUCTURE_ONLY_KEY) == "true",
        constants=sum(1 for w in known.values() if w.kind is WeightKind.CONSTANT),
    )
    notes = tuple(f"ONNX element type {t} has no PyTorch dtype: its tensors are counted as 1 byte per element "
                  "(sub-byte types are smaller, strings have no fixed size)" for t in unsized_types(inferred.graph))
    return Report(
        model=name or Path(path).stem,
        convention=rules.name,
        inputs=tuple(specs),
        layers=tuple(rows),
        memory=memory_summary(rows, specs, rules),
        unsupported=tuple(unsupported),
        trace=TraceInfo(Method.ONNX, onnx=source, notes=notes),
        module_types=module_types,
        mode=Mode.ONNX,
        outputs=tuple(TensorSpec(*types[o.name]) for o in graph.output if o.name in types),
        edges=tuple(edges.values()),
    )


def _scopes(node: Any) -> tuple[list[str], list[str]] | None:
    md = metadata(node)
    if SCOPES_KEY not in md or CLASSES_KEY not in md:
        return None
    try:
        scopes, classes = ast.literal_eval(md[SCOPES_KEY]), ast.literal_eval(md[CLASSES_KEY])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or not isinstance(classes, list) or len(scopes) != len(classes) or len(scopes) < 2:
        return None
    return [str(s) for s in scopes], [str(c) for c in classes]


def _module_types(graph: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in graph.node:
        sc = _scopes(n)
        if sc is not None:
            for s, c in zip(sc[0][:-1], sc[1][:-1], strict=True):
                if s:  # the root is the report's model, as on the PyTorch route
                    out.setdefault(s, c.rpartition(".")[2])
    return out


def _leaves(module_types: dict[str, str]) -> set[str]:
    parents = {p.rpartition(".")[0] for p in module_types}
    return {p for p in module_types if p not in parents}


def _groups(graph: Any) -> Iterable[_Group]:
    """Consecutive nodes of one module form one row (exporter metadata); else one per node."""
    current: _Group | None = None
    for i, n in enumerate(graph.node):
        sc = _scopes(n)
        if sc is None:
            if current is not None:
                yield current
                current = None
            yield _Group(n.name or f"{n.op_type}_{i}", n.op_type, [n])
            continue
        path, cls = sc[0][-2], sc[1][-2].rpartition(".")[2]
        key = path or "(root)"
        if current is not None and current.key == key:
            current.nodes.append(n)
            continue
        if current is not None:
            yield current
        current = _Group(key, cls, [n], path)
    if current is not None:
        yield current


#: ops whose third input is a bias
_BIASED = frozenset({"Conv", "ConvTranspose", "Gemm"})
COMPUTED_BIAS = ("its bias input is computed in the graph, not a parameter (torch.onnx gives a bias-free "
                 "convolution a zero bias); its adds are counted")


def _op_cost(node: Any, types: Types, known: dict[str, OnnxWeight], registry: FormulaRegistry) -> OpCost:
    import onnx

    key = op_key(node.domain, node.op_type)
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):  # If, Loop, Scan
        return OpCost(key, 1, 0, 0, Fate.UNSUPPORTED, "control flow: its subgraphs are not counted")
    rule = registry.lookup(key)
    fn = rule.formula
    if fn is None:  # free, or unsupported
        return OpCost(key, 1, 0, 0, rule.fate, rule.reason)
    unknown = [i for i in node.input if i and i not in types]
    if unknown:  # a formula would read it as absent: an optional bias would silently vanish
        return OpCost(key, 1, 0, 0, Fate.UNSUPPORTED, f"shape inference left the shape of {unknown[0]!r} unknown")
    ins = [torch.Size(types[i][0]) if i else None for i in node.input]
    outs = tuple(torch.Size(types[o][0]) if o in types else None for o in node.output)
    try:
        cost = fn(*ins, out=outs, **attrs_of(node))
    except UnknownShape as e:  # and UnsupportedForm: a form no formula counts exactly
        return OpCost(key, 1, 0, 0, Fate.UNSUPPORTED, str(e))
    computed_bias = node.op_type in _BIASED and len(node.input) > 2 and node.input[2] and node.input[2] not in known
    return OpCost(key, 1, int(cost.macs), int(cost.flops), Fate.FORMULA, COMPUTED_BIAS if computed_bias else "")


def _attr_tuple(nodes: list[Any], name: str) -> tuple[int, ...] | None:
    found = [a for n in nodes if n.op_type in ("Conv", "ConvTranspose", "MaxPool", "AveragePool") for a in n.attribute
             if a.name == name]
    return tuple(found[0].ints) if len(found) == 1 else None


def _hparams(nodes: list[Any], types: Types) -> tuple[tuple[str, str], ...]:
    """What a diagram labels a layer with: a Conv's out channels, a Gemm's out features."""
    main = [n for n in nodes if n.op_type in ("Conv", "Gemm")]
    if len(main) != 1 or main[0].output[0] not in types:
        return ()
    out = types[main[0].output[0]][0]
    if main[0].op_type == "Conv" and len(out) > 1:
        return (("out_channels", str(out[1])),)
    return (("out_features", str(out[-1])),) if out else ()
