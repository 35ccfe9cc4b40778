"""Analysis of an ONNX file: the same :class:`~fxcost.model.Report` as the PyTorch route, from
ONNX shape inference and fxcost's own formulas for ONNX ops (:mod:`fxcost.onnx_formulas`).

The file is read without its weight data: weights only need their shapes. Which initializers
(or weight inputs of a ``--structure-only`` file) are parameters:

- the kind the PyTorch exporter recorded on them (``pkg.torch.export.graph_signature.InputSpec.kind``:
  PARAMETER, BUFFER), which fxcost's exports always carry;
- otherwise, for files other tools wrote: a floating-point initializer with more than one
  element is a parameter, except BatchNormalization's running mean and variance (buffers);
  integer, boolean and one-element initializers are constants (shapes, indices, scalars) and are
  counted as neither (``trace.constants`` says how many).

Rows: a file the PyTorch exporter wrote records each node's module (``pkg.torch.onnx.name_scopes``
and ``class_hierarchy``), so consecutive nodes of one module become one row named and typed like
the PyTorch route's (``features.0``, ``Conv2d``); any other file gets one row per node, typed by
its op (``Conv``). ONNX has no views: the outputs of ops that are views in PyTorch (Reshape,
Transpose, Squeeze, ...) are not counted as activations, so the two routes count alike.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fxcost.conventions import LEAF_OUTPUTS, Convention, get_convention
from fxcost.costs import dtype_bytes, input_rows, is_bias, memory_summary, sizes, unsupported_ops
from fxcost.errors import InputSpecError, OnnxFileError, UnsupportedOpError
from fxcost.model import (
    FATE_FORMULA,
    FATE_FREE,
    FATE_UNSUPPORTED,
    Edge,
    InputSpec,
    NodeCost,
    OpCost,
    Report,
    TensorSpec,
    merge_ops,
)
from fxcost.trace import first_line

Shape = tuple[int, ...]

KIND_KEY = "pkg.torch.export.graph_signature.InputSpec.kind"  # torch.export's own key; fxcost's exports add it to initializers
STRUCTURE_ONLY_KEY = "fxcost.structure_only"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"

#: ONNX element types by number, as torch dtype names (TensorSpec.dtype)
_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
    16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
}
_FLOAT_TYPES = {1, 10, 11, 16, 17, 18, 19, 20}

#: ops that PyTorch computes as views of their input (or, for Dropout at inference, the input
#: itself): their outputs are not new activations, as in the FX route
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Expand", "Slice",
                       "Split", "Dropout"})
#: ops whose outputs are constants, not activations
CONSTANT_OPS = frozenset({"Constant", "Shape", "Size"})

#: small integer initializers keep their data through shape inference: they are the shapes that
#: Reshape, Expand and friends read
_KEEP_DATA_ELEMENTS = 1024


@dataclass
class _Weight:
    name: str
    shape: Shape
    dtype: str
    kind: str  # PARAMETER, BUFFER or CONSTANT

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class _Row:
    key: str  # the row's name: a module path, "(root)", or the node's own name
    type: str
    nodes: list[Any] = field(default_factory=list)
    path: str | None = None  # the module path, when the exporter recorded it


def analyze_onnx(
    path: str | Path,
    inputs: Sequence[Shape] = (),
    named_inputs: dict[str, Shape] | None = None,
    convention: str | Convention = "fxcost",
    *,
    strict: bool = False,
    name: str | None = None,
    model: Any = None,
) -> Report:
    """Analyze an ONNX file. ``inputs`` pin the graph's inputs in order (weights excluded) and
    ``named_inputs`` by name; they are needed only where the file has dynamic dimensions. Each
    input keeps the file's dtype. ``strict=True`` raises :class:`UnsupportedOpError` when an op
    has no formula. ``model``: the file as :func:`load` returned it, when the caller has it
    already (a file is read once)."""

    conv = get_convention(convention) if isinstance(convention, str) else convention
    model = model if model is not None else load(path)
    graph = model.graph
    weights = _weights(graph)
    user = [i for i in graph.input if i.name not in weights]
    pinned = _pin(path, user, list(inputs), dict(named_inputs or {}))
    skeleton = _skeleton(model, weights, pinned)
    try:
        inferred = _infer(skeleton)
    except Exception as e:  # onnx raises its own InferenceError and plain RuntimeErrors
        raise OnnxFileError(f"ONNX shape inference failed on {path}: {first_line(e)}",
                            hint="check the file with onnx.checker; pin every input with --input") from e
    types = _value_types(inferred.graph)
    types.update({w.name: (w.shape, w.dtype) for w in weights.values()})

    specs = [InputSpec(i.name, pinned[i.name], _dtype(i.type.tensor_type.elem_type)) for i in user]
    rows = input_rows(specs, conv)
    producer: dict[str, int] = {s.name: r.id for s, r in zip(specs, rows, strict=True)}
    claimed: set[str] = set()
    edges: dict[tuple[int, int], Edge] = {}
    module_types = _module_types(graph)
    leaves = _leaves(module_types)
    for group in _rows(graph):
        rid = len(rows)
        ops = merge_ops(_op_cost(n, types, weights) for n in group.nodes)
        counts = _claim(group.nodes, weights, claimed)
        kind = "function" if group.path is None else "module" if group.path in leaves else "code"
        elements, nbytes = sizes(_outputs(group, kind, types, conv), conv)
        last = [TensorSpec(*types[o]) for o in group.nodes[-1].output if o in types]
        rows.append(NodeCost(
            id=rid, name=group.key, type=group.type, kind=kind, module_path=group.path or "",
            output=tuple(last), kernel_size=_attr_tuple(group.nodes, "kernel_shape"),
            stride=_attr_tuple(group.nodes, "strides"), hparams=_hparams(group.nodes, types),
            macs=sum(o.macs for o in ops), flops=sum(o.flops for o in ops),
            activation_elements=elements, activation_bytes=nbytes, ops=ops, **counts,
        ))
        for n in group.nodes:
            for i in n.input:
                src = producer.get(i)
                if src is not None and src != rid and i in types:
                    shape, dtype = types[i]
                    edges.setdefault((src, rid), Edge(src, rid, shape, dtype))
            for o in n.output:
                producer[o] = rid
    rows.extend(_unused(weights, claimed, len(rows)))
    unsupported = unsupported_ops(rows)
    if strict and unsupported:
        listed = "; ".join(f"{u.op} in {u.where!r} (x{u.count})" for u in unsupported[:10])
        raise UnsupportedOpError(f"{len(unsupported)} unsupported ONNX op use(s): {listed}",
                                 hint="drop --strict to get a report that lists them")
    opsets = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    meta = _metadata(model)
    trace: dict[str, Any] = {
        "method": "onnx", "file": str(path), "opset": opsets.get("ai.onnx"),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "structure_only": meta.get(STRUCTURE_ONLY_KEY) == "true",
        "constants": sum(1 for w in weights.values() if w.kind == "CONSTANT"),
    }
    odd = _unsized_types(inferred.graph)
    if odd:
        trace["notes"] = [f"ONNX element type {t} has no PyTorch dtype: its tensors are counted as 1 byte per element "
                          "(sub-byte types are smaller, strings have no fixed size)" for t in odd]
    return Report(
        model=name or Path(path).stem,
        convention=conv.name,
        inputs=tuple(specs),
        layers=tuple(rows),
        memory=memory_summary(rows, specs, conv),
        unsupported=tuple(unsupported),
        trace=trace,
        module_types=module_types,
        mode="onnx",
        outputs=tuple(TensorSpec(*types[o.name]) for o in graph.output if o.name in types),
        edges=tuple(edges.values()),
    )


def load(path: str | Path) -> Any:
    """The file's ModelProto without external weight data, checked; :class:`OnnxFileError`
    for anything that is not a complete ONNX model."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise OnnxFileError(f"no such ONNX file: {str(p)!r}", hint="check the path")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise OnnxFileError(
            f"{p} is not a readable ONNX file ({type(e).__name__}: {first_line(e)}); it may be truncated or corrupt",
            hint="export it again (fxcost onnx SPEC --input ... -o model.onnx) or check the download",
        ) from e
    if not model.graph.node:
        raise OnnxFileError(f"{p} holds no ONNX graph (no nodes); it may be truncated or not an ONNX model",
                            hint="export it again, or check that it is the .onnx file and not its .data")
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    try:
        onnx.checker.check_model(_without_data(model))
    except Exception as e:
        # the checker also refuses files runtimes accept (a graph input without a shape); only a
        # broken graph is an error here: a name no node, input or initializer defines
        broken = _undefined(model.graph)
        if broken or not model.graph.output:
            raise OnnxFileError(f"{p} is not a valid ONNX model: {first_line(e)}",
                                hint="it may be truncated or written by a broken tool; export it again") from e
    return model


def _undefined(graph: Any) -> list[str]:
    """Names the graph reads that nothing defines (a truncated or damaged file)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {
        t.values.name for t in graph.sparse_initializer}
    missing = []
    for n in graph.node:
        missing += [i for i in n.input if i and i not in defined]
        defined.update(n.output)
    return missing + [o.name for o in graph.output if o.name not in defined]


def _without_data(model: Any) -> Any:
    """A copy whose initializers are graph inputs with their shapes: what checks and shape
    inference need, without copying gigabytes of weights (small integer initializers, the
    shapes Reshape reads, keep their data)."""
    import onnx

    m = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name,
                        producer_version=model.producer_version, domain=model.domain,
                        model_version=model.model_version)
    m.opset_import.extend(model.opset_import)
    m.metadata_props.extend(model.metadata_props)
    m.functions.extend(model.functions)
    src, g = model.graph, m.graph
    g.name = src.name
    g.node.extend(src.node)
    g.initializer.extend(t for t in src.initializer if _keeps_data(t))
    g.sparse_initializer.extend(src.sparse_initializer)
    g.input.extend(src.input)
    listed = {i.name for i in src.input}
    g.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in src.initializer if not _keeps_data(t) and t.name not in listed)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    return m


def _keeps_data(t: Any) -> bool:
    return t.data_type not in _FLOAT_TYPES and math.prod(t.dims) <= _KEEP_DATA_ELEMENTS


def _dtype(elem_type: int) -> str:
    return _DTYPES.get(elem_type, "uint8")  # sized as one byte; the report says so (_unsized_types)


def _unsized_types(graph: Any) -> list[str]:
    """Names of the element types in ``graph`` that :func:`_dtype` can only size as one byte."""
    import onnx

    types = {t.data_type for t in graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]
              if v.type.HasField("tensor_type")}
    return sorted(onnx.TensorProto.DataType.Name(t) for t in types if t and t not in _DTYPES)


def _metadata(x: Any) -> dict[str, str]:
    return {p.key: p.value for p in getattr(x, "metadata_props", ())}


#: the inputs of quantized (or plain) ops that hold weights, whatever their element type
_WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "ConvInteger": (1,),
                  "MatMulInteger": (1,), "QLinearConv": (3, 8), "QLinearMatMul": (3,), "DequantizeLinear": (0,)}


def _weights(graph: Any) -> dict[str, _Weight]:
    """Every initializer, and every graph input the exporter marked as a weight, with its kind;
    in a file without the exporter's kinds, also the tensors of Constant nodes."""
    import onnx

    bn_stats = {n.input[i] for n in graph.node if n.op_type == "BatchNormalization" for i in (3, 4) if i < len(n.input)}
    weight_inputs = {n.input[i] for n in graph.node for i in _WEIGHT_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    tagged = any(KIND_KEY in _metadata(x) for x in [*graph.initializer, *graph.input])
    out: dict[str, _Weight] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    if not tagged:
        tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" and n.output
                    for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR]
    for name, t in tensors:
        kind = _metadata(t).get(KIND_KEY) or _guess_kind(name, t.data_type, tuple(t.dims), bn_stats, weight_inputs)
        out[name] = _Weight(name, tuple(int(d) for d in t.dims), _dtype(t.data_type), _normal_kind(kind))
    for i in graph.input:
        kind = _metadata(i).get(KIND_KEY, "")
        if i.name in out or kind not in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            continue
        tt = i.type.tensor_type
        shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        out[i.name] = _Weight(i.name, shape, _dtype(tt.elem_type), _normal_kind(kind))
    return out


def _normal_kind(kind: str) -> str:
    return kind if kind in ("PARAMETER", "BUFFER") else "CONSTANT"


def _guess_kind(name: str, elem_type: int, dims: Shape, bn_stats: set[str], weight_inputs: set[str]) -> str:
    if math.prod(dims) <= 1:
        return "CONSTANT"
    if name in weight_inputs:  # int8 weights of a quantized conv or matmul are parameters too
        return "PARAMETER"
    if elem_type not in _FLOAT_TYPES:
        return "CONSTANT"
    return "BUFFER" if name in bn_stats else "PARAMETER"


def _dims(vi: Any) -> list[int | str | None]:
    """A value's dimensions: ints, a symbolic name, or None when unknown."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _show(dims: Sequence[int | str | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in dims) or "scalar"


def _pin(path: str | Path, user: list[Any], positional: list[Shape], named: dict[str, Shape]) -> dict[str, Shape]:
    """Each user input's static shape: the file's, or the --input that pins its dynamic dims."""
    listing = ", ".join(f"{i.name} [{_show(_dims(i))}]" for i in user)
    unknown = [k for k in named if k not in {i.name for i in user}]
    if unknown or len(positional) > len(user):
        raise InputSpecError(
            f"{path} has {len(user)} input(s): {listing}; got {len(positional)} positional"
            + (f" and unknown name(s) {', '.join(unknown)}" if unknown else ""),
            hint="give one --input per graph input, in order, or name=SHAPE by input name",
        )
    given = dict(zip((i.name for i in user), positional, strict=False))
    given.update(named)
    out: dict[str, Shape] = {}
    for i in user:
        if not i.type.HasField("tensor_type"):
            raise OnnxFileError(
                f"input {i.name!r} of {path} is a {i.type.WhichOneof('value') or 'untyped'} value, not a tensor",
                hint="fxcost analyzes graphs whose inputs are tensors (sequence and optional inputs are not supported)")
        dims = _dims(i)
        shaped = i.type.tensor_type.HasField("shape")
        shape = given.get(i.name)
        if shape is None:
            if not shaped:
                raise OnnxFileError(f"input {i.name!r} of {path} has no shape", hint=f"pin it: --input {i.name}=SHAPE")
            if any(not isinstance(d, int) for d in dims):
                raise OnnxFileError(
                    f"input {i.name!r} of {path} has dynamic dimensions [{_show(dims)}] that no --input pins",
                    hint=f"give its size, e.g. --input {i.name}={_show([d if isinstance(d, int) else 1 for d in dims])}",
                )
            out[i.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
            continue
        if shaped and (len(dims) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape, strict=False))):
            raise InputSpecError(
                f"--input {_show(list(shape))} does not fit input {i.name!r} of {path}, which is [{_show(dims)}]",
                hint="keep the file's fixed dimensions; only its named (dynamic) ones can change",
            )
        out[i.name] = tuple(shape)
    return out


def _skeleton(model: Any, weights: dict[str, _Weight], pinned: dict[str, Shape]) -> Any:
    """The weightless copy shape inference runs on, with the user inputs pinned. When a pin
    changed a dynamic dimension, the file's own intermediate shapes (symbolic) are dropped so
    inference recomputes them."""
    m = _without_data(model)
    changed = False
    for i in m.graph.input:
        if i.name in pinned:
            shape = pinned[i.name]
            if _dims(i) != list(shape):
                changed = True
            dims = i.type.tensor_type.shape.dim
            del dims[:]
            for s in shape:
                dims.add().dim_value = s
    if changed:
        del m.graph.value_info[:]
        for o in m.graph.output:
            if o.type.tensor_type.HasField("shape"):
                o.type.tensor_type.ClearField("shape")
    return m


def _infer(skeleton: Any, rounds: int = 4) -> Any:
    """ONNX shape inference, helped along: shape arithmetic that onnx's data propagation does
    not follow (``Shape -> Squeeze -> Concat -> Reshape``, as torch.onnx writes for a dynamic
    batch) is evaluated here on the pinned shapes, its results become constants, and inference
    runs again, until nothing new is settled."""
    import onnx
    from onnx import numpy_helper

    model = skeleton
    for _ in range(rounds):
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        known = {t.name for t in model.graph.initializer}
        folded = [(name, v) for name, v in _fold_shapes(model.graph, _value_types(model.graph)).items()
                  if name not in known]
        if not folded:
            break
        for name, value in folded:
            model.graph.initializer.append(numpy_helper.from_array(value, name))
    return model


#: shape arithmetic :func:`_fold_shapes` evaluates: small integer tensors only
_SHAPE_OPS = frozenset({"Constant", "Shape", "Size", "Identity", "Cast", "Squeeze", "Unsqueeze", "Concat", "Gather",
                        "Slice", "Reshape", "Add", "Sub", "Mul", "Div", "Neg", "Max", "Min", "Equal", "Where", "Range",
                        "Expand", "ConstantOfShape"})


def _fold_shapes(graph: Any, types: dict[str, tuple[Shape, str]]) -> dict[str, Any]:
    """The values of the graph's small integer tensors that follow from constants and known
    shapes alone (the shapes torch.onnx computes at run time for a dynamic batch)."""
    import numpy as np
    from onnx import numpy_helper

    values: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                              if t.data_type not in _FLOAT_TYPES and math.prod(t.dims) <= _KEEP_DATA_ELEMENTS}
    out: dict[str, Any] = {}
    for n in graph.node:
        if n.op_type not in _SHAPE_OPS or n.domain not in ("", "ai.onnx") or len(n.output) != 1:
            continue
        a = _attrs(n)
        ins = [values.get(i) if i else None for i in n.input]
        try:
            v = _eval_shape_op(n.op_type, n.input, ins, a, types, np)
        except (ValueError, IndexError, TypeError):
            v = None
        if v is None:
            continue
        v = np.asarray(v)
        if v.dtype.kind not in "iub" or v.size > _KEEP_DATA_ELEMENTS:
            continue
        values[n.output[0]] = v
        out[n.output[0]] = v
    return out


def _eval_shape_op(op: str, names: Sequence[str], ins: list[Any], a: dict[str, Any],
                   types: dict[str, tuple[Shape, str]], np: Any) -> Any:
    import onnx

    if op == "Constant":
        from onnx import numpy_helper

        if "value" in a:
            return numpy_helper.to_array(a["value"])
        if "value_int" in a:
            return np.array(a["value_int"], dtype=np.int64)
        return np.array(a["value_ints"], dtype=np.int64) if "value_ints" in a else None
    if op in ("Shape", "Size"):
        if names[0] not in types:
            return None
        shape = types[names[0]][0]
        if op == "Size":
            return np.array(math.prod(shape), dtype=np.int64)
        return np.array(shape[a.get("start", 0):a.get("end", len(shape))], dtype=np.int64)
    if any(v is None for v in ins[:1]) or any(v is None for i, v in zip(names, ins, strict=True) if i):
        return None
    x = ins[0]
    if op in ("Identity", "Cast"):
        return x if op == "Identity" else x.astype(np.int64) if a.get("to") == onnx.TensorProto.INT64 else None
    if op in ("Squeeze", "Unsqueeze"):
        axes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("axes")
        if op == "Squeeze":
            return np.squeeze(x, axis=tuple(int(i) for i in axes) if axes is not None else None)
        if axes is None:
            return None
        for ax in sorted(int(i) % (x.ndim + len(axes)) for i in axes):
            x = np.expand_dims(x, ax)
        return x
    if op == "Concat":
        return np.concatenate(ins, axis=a.get("axis", 0))
    if op == "Gather":
        return np.take(x, ins[1], axis=a.get("axis", 0))
    if op == "Slice":
        starts, ends = ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        idx = [slice(None)] * x.ndim
        for s0, e0, ax, st in zip(starts, ends, axes, steps, strict=True):
            idx[int(ax)] = slice(int(s0), int(e0), int(st))
        return x[tuple(idx)]
    if op == "Reshape":
        return x.reshape([d if d != 0 else x.shape[i] for i, d in enumerate(ins[1].tolist())])
    if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal"):
        if op == "Div":  # ONNX's integer division truncates toward zero, numpy's // floors
            return np.trunc(np.true_divide(x, ins[1])).astype(np.result_type(x, ins[1]))
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum, "Min": np.minimum,
             "Equal": np.equal}[op]
        return f(x, ins[1])
    if op == "Neg":
        return -x
    if op == "Where":
        return np.where(x, ins[1], ins[2])
    if op == "Range":
        return np.arange(x, ins[1], ins[2])
    if op == "Expand":
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(d) for d in ins[1]))).copy()
    if op == "ConstantOfShape":
        from onnx import numpy_helper

        fill = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, dtype=np.float32)
        return np.full(tuple(int(d) for d in x), fill.reshape(-1)[0], dtype=fill.dtype)
    return None


def _value_types(graph: Any) -> dict[str, tuple[Shape, str]]:
    """Static shape and dtype of every value shape inference could settle."""
    out: dict[str, tuple[Shape, str]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = _dims(vi)
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            out[vi.name] = (tuple(int(d) for d in dims), _dtype(vi.type.tensor_type.elem_type))  # type: ignore[arg-type]
    for t in graph.initializer:
        out[t.name] = (tuple(int(d) for d in t.dims), _dtype(t.data_type))
    return out


def _scopes(node: Any) -> tuple[list[str], list[str]] | None:
    md = _metadata(node)
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


def _rows(graph: Any) -> Iterable[_Row]:
    """Consecutive nodes of one module form one row (exporter metadata); else one per node."""
    current: _Row | None = None
    for i, n in enumerate(graph.node):
        sc = _scopes(n)
        if sc is None:
            if current is not None:
                yield current
                current = None
            yield _Row(n.name or f"{n.op_type}_{i}", n.op_type, [n])
            continue
        path, cls = sc[0][-2], sc[1][-2].rpartition(".")[2]
        key = path or "(root)"
        if current is not None and current.key == key:
            current.nodes.append(n)
            continue
        if current is not None:
            yield current
        current = _Row(key, cls, [n], path)
    if current is not None:
        yield current


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


#: ops whose third input is a bias
_BIASED = frozenset({"Conv", "ConvTranspose", "Gemm"})
COMPUTED_BIAS = ("its bias input is computed in the graph, not a parameter (torch.onnx gives a bias-free "
                 "convolution a zero bias); its adds are counted")


def _op_cost(node: Any, types: dict[str, tuple[Shape, str]], weights: dict[str, _Weight]) -> OpCost:
    import onnx

    from fxcost.onnx_formulas import ONNX_REGISTRY, UnknownShape, op_key

    key = op_key(node.domain, node.op_type)
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):  # If, Loop, Scan
        return OpCost(key, 1, 0, 0, FATE_UNSUPPORTED, "control flow: its subgraphs are not counted")
    fate, fn, reason = ONNX_REGISTRY.lookup(key)
    if fate == FATE_FREE or fn is None:
        return OpCost(key, 1, 0, 0, fate, reason)
    unknown = [i for i in node.input if i and i not in types]
    if unknown:  # a formula would read it as absent: an optional bias would silently vanish
        return OpCost(key, 1, 0, 0, FATE_UNSUPPORTED, f"shape inference left the shape of {unknown[0]!r} unknown")
    ins = [torch.Size(types[i][0]) if i else None for i in node.input]
    outs = tuple(torch.Size(types[o][0]) if o in types else None for o in node.output)
    try:
        cost = fn(*ins, out=outs, **_attrs(node))
    except UnknownShape as e:  # and UnsupportedForm: a form no formula counts exactly
        return OpCost(key, 1, 0, 0, FATE_UNSUPPORTED, str(e))
    computed_bias = node.op_type in _BIASED and len(node.input) > 2 and node.input[2] and node.input[2] not in weights
    return OpCost(key, 1, int(cost.macs), int(cost.flops), FATE_FORMULA, COMPUTED_BIAS if computed_bias else "")


def _counts(w: _Weight) -> dict[str, int]:
    """One weight's contribution to a row: a parameter (all trainable: ONNX records no
    ``requires_grad``) or a buffer; constants count as neither."""
    c = dict.fromkeys(("params", "weight_params", "bias_params", "trainable_params", "buffers", "param_bytes", "buffer_bytes"), 0)
    nbytes = w.numel * dtype_bytes(w.dtype)
    if w.kind == "PARAMETER":
        c["params"] = c["trainable_params"] = w.numel
        c["bias_params" if is_bias(w.name) else "weight_params"] = w.numel
        c["param_bytes"] = nbytes
    elif w.kind == "BUFFER":
        c["buffers"], c["buffer_bytes"] = w.numel, nbytes
    return c


def _claim(nodes: list[Any], weights: dict[str, _Weight], claimed: set[str]) -> dict[str, int]:
    """The weights these nodes read first: each counted once, at its first reader."""
    total = _counts(_Weight("", (0,), "uint8", "CONSTANT"))
    for n in nodes:
        for i in n.input:
            w = weights.get(i)
            if w is None or i in claimed or w.kind == "CONSTANT":
                continue
            claimed.add(i)
            for k, v in _counts(w).items():
                total[k] += v
    return total


def _outputs(group: _Row, kind: str, types: dict[str, tuple[Shape, str]], conv: Convention) -> list[TensorSpec]:
    """The tensors a row counts as activations under ``conv``: torchsummary counts a leaf
    module's output (a node's, in a file without modules), fxcost what each node allocates."""
    if conv.activation_rule == LEAF_OUTPUTS:
        if kind == "code":
            return []
        return [TensorSpec(*types[o]) for o in group.nodes[-1].output[:1] if o in types]
    return [TensorSpec(*types[o]) for n in group.nodes if n.op_type not in ALIAS_OPS | CONSTANT_OPS
            for o in n.output if o and o in types]


def _attr_tuple(nodes: list[Any], name: str) -> tuple[int, ...] | None:
    found = [a for n in nodes if n.op_type in ("Conv", "ConvTranspose", "MaxPool", "AveragePool") for a in n.attribute
             if a.name == name]
    return tuple(found[0].ints) if len(found) == 1 else None


def _hparams(nodes: list[Any], types: dict[str, tuple[Shape, str]]) -> tuple[tuple[str, str], ...]:
    """What a diagram labels a layer with: a Conv's out channels, a Gemm's out features."""
    main = [n for n in nodes if n.op_type in ("Conv", "Gemm")]
    if len(main) != 1 or main[0].output[0] not in types:
        return ()
    out = types[main[0].output[0]][0]
    if main[0].op_type == "Conv" and len(out) > 1:
        return (("out_channels", str(out[1])),)
    return (("out_features", str(out[-1])),) if out else ()


def _unused(weights: dict[str, _Weight], claimed: set[str], start: int) -> list[NodeCost]:
    """Parameters and buffers no node reads, one row each."""
    unread = [w for w in weights.values() if w.name not in claimed and w.kind != "CONSTANT"]
    return [NodeCost(id=start + i, name=w.name, type="Weight", kind="unused", module_path="", output=(),
                     kernel_size=None, stride=None, ops=(), hparams=(), **_counts(w))
            for i, w in enumerate(unread)]


def weights_of(model: Any) -> dict[str, tuple[str, int]]:
    """Every weight of a loaded ONNX model (:func:`load`) by name: its kind (PARAMETER, BUFFER,
    CONSTANT) and size."""
    return {w.name: (w.kind, w.numel) for w in _weights(model.graph).values()}
