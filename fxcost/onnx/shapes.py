"""Shapes in an ONNX graph: the user's inputs pinned, onnx's shape inference run on a weightless
copy, and the shape arithmetic that onnx's data propagation does not follow evaluated here
(``Shape -> Squeeze -> Concat -> Reshape``, as torch.onnx writes for a dynamic batch)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fxcost.errors import InputSpecError, OnnxFileError
from fxcost.onnx.load import FLOAT_TYPES, KEEP_DATA_ELEMENTS, Dims, attrs_of, dtype_of, without_data

Types = dict[str, tuple[Dims, str]]


def dims_of(vi: Any) -> list[int | str | None]:
    """A value's dimensions: ints, a symbolic name, or None when unknown."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def show(dims: Sequence[int | str | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in dims) or "scalar"


def pin(path: str | Path, user: list[Any], positional: list[Dims], named: dict[str, Dims]) -> dict[str, Dims]:
    """Each user input's static shape: the file's, or the --input that pins its dynamic dims."""
    listing = ", ".join(f"{i.name} [{show(dims_of(i))}]" for i in user)
    unknown = [k for k in named if k not in {i.name for i in user}]
    if unknown or len(positional) > len(user):
        raise InputSpecError(
            f"{path} has {len(user)} input(s): {listing}; got {len(positional)} positional"
            + (f" and unknown name(s) {', '.join(unknown)}" if unknown else ""),
            hint="give one --input per graph input, in order, or name=SHAPE by input name",
        )
    given = dict(zip((i.name for i in user), positional, strict=False))
    given.update(named)
    out: dict[str, Dims] = {}
    for i in user:
        if not i.type.HasField("tensor_type"):
            raise OnnxFileError(
                f"input {i.name!r} of {path} is a {i.type.WhichOneof('value') or 'untyped'} value, not a tensor",
                hint="fxcost analyzes graphs whose inputs are tensors (sequence and optional inputs are not supported)")
        dims = dims_of(i)
        shaped = i.type.tensor_type.HasField("shape")
        shape = given.get(i.name)
        if shape is None:
            if not shaped:
                raise OnnxFileError(f"input {i.name!r} of {path} has no shape", hint=f"pin it: --input {i.name}=SHAPE")
            if any(not isinstance(d, int) for d in dims):
                raise OnnxFileError(
                    f"input {i.name!r} of {path} has dynamic dimensions [{show(dims)}] that no --input pins",
                    hint=f"give its size, e.g. --input {i.name}={show([d if isinstance(d, int) else 1 for d in dims])}",
                )
            out[i.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
            continue
        if shaped and (len(dims) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape, strict=False))):
            raise InputSpecError(
                f"--input {show(list(shape))} does not fit input {i.name!r} of {path}, which is [{show(dims)}]",
                hint="keep the file's fixed dimensions; only its named (dynamic) ones can change",
            )
        out[i.name] = tuple(shape)
    return out


def skeleton(model: Any, pinned: dict[str, Dims]) -> Any:
    """The weightless copy shape inference runs on, with the user inputs pinned. When a pin
    changed a dynamic dimension, the file's own intermediate shapes (symbolic) are dropped so
    inference recomputes them."""
    m = without_data(model)
    changed = False
    for i in m.graph.input:
        if i.name in pinned:
            shape = pinned[i.name]
            if dims_of(i) != list(shape):
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


def infer(skeleton: Any, rounds: int = 4) -> Any:
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
        folded = [(name, v) for name, v in _fold_shapes(model.graph, value_types(model.graph)).items()
                  if name not in known]
        if not folded:
            break
        for name, value in folded:
            model.graph.initializer.append(numpy_helper.from_array(value, name))
    return model


def _constant(op: str, names: Sequence[str], ins: list[Any], a: dict[str, Any], types: Types, np: Any) -> Any:
    from onnx import numpy_helper

    if "value" in a:
        return numpy_helper.to_array(a["value"])
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    return np.array(a["value_ints"], dtype=np.int64) if "value_ints" in a else None


def _shape(op: str, names: Sequence[str], ins: list[Any], a: dict[str, Any], types: Types, np: Any) -> Any:
    if names[0] not in types:
        return None
    shape = types[names[0]][0]
    if op == "Size":
        return np.array(math.prod(shape), dtype=np.int64)
    return np.array(shape[a.get("start", 0):a.get("end", len(shape))], dtype=np.int64)


# ops computed from their inputs' values: fn(x, ins, attributes, numpy)
def _cast(x: Any, ins: list[Any], a: dict[str, Any], np: Any) -> Any:
    import onnx

    return x.astype(np.int64) if a.get("to") == onnx.TensorProto.INT64 else None


def _squeeze(x: Any, ins: list[Any], a: dict[str, Any], np: Any) -> Any:
    axes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("axes")
    return np.squeeze(x, axis=tuple(int(i) for i in axes) if axes is not None else None)


def _unsqueeze(x: Any, ins: list[Any], a: dict[str, Any], np: Any) -> Any:
    axes = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("axes")
    if axes is None:
        return None
    for ax in sorted(int(i) % (x.ndim + len(axes)) for i in axes):
        x = np.expand_dims(x, ax)
    return x


def _slice(x: Any, ins: list[Any], a: dict[str, Any], np: Any) -> Any:
    starts, ends = ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
    steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s0, e0, ax, st in zip(starts, ends, axes, steps, strict=True):
        idx[int(ax)] = slice(int(s0), int(e0), int(st))
    return x[tuple(idx)]


def _divide(x: Any, ins: list[Any], a: dict[str, Any], np: Any) -> Any:
    # ONNX's integer division truncates toward zero, numpy's // floors
    return np.trunc(np.true_divide(x, ins[1])).astype(np.result_type(x, ins[1]))


def _binary(name: str) -> Callable[[Any, list[Any], dict[str, Any], Any], Any]:
    return lambda x, ins, a, np: getattr(np, name)(x, ins[1])


def _constant_of_shape(x: Any, ins: list[Any], a: dict[str, Any], np: Any) -> Any:
    from onnx import numpy_helper

    fill = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, dtype=np.float32)
    return np.full(tuple(int(d) for d in x), fill.reshape(-1)[0], dtype=fill.dtype)


_FROM_METADATA: dict[str, Callable[..., Any]] = {"Constant": _constant, "Shape": _shape, "Size": _shape}
_FROM_VALUES: dict[str, Callable[[Any, list[Any], dict[str, Any], Any], Any]] = {
    "Identity": lambda x, ins, a, np: x,
    "Cast": _cast,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda x, ins, a, np: np.concatenate(ins, axis=a.get("axis", 0)),
    "Gather": lambda x, ins, a, np: np.take(x, ins[1], axis=a.get("axis", 0)),
    "Slice": _slice,
    "Reshape": lambda x, ins, a, np: x.reshape([d if d != 0 else x.shape[i] for i, d in enumerate(ins[1].tolist())]),
    "Add": _binary("add"), "Sub": _binary("subtract"), "Mul": _binary("multiply"), "Div": _divide,
    "Max": _binary("maximum"), "Min": _binary("minimum"), "Equal": _binary("equal"),
    "Neg": lambda x, ins, a, np: -x,
    "Where": lambda x, ins, a, np: np.where(x, ins[1], ins[2]),
    "Range": lambda x, ins, a, np: np.arange(x, ins[1], ins[2]),
    "Expand": lambda x, ins, a, np: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(d) for d in ins[1]))).copy(),
    "ConstantOfShape": _constant_of_shape,
}
#: shape arithmetic :func:`_fold_shapes` evaluates: small integer tensors only
SHAPE_OPS = frozenset(_FROM_METADATA) | frozenset(_FROM_VALUES)


def _range_size(x: Any, ins: list[Any], np: Any) -> int:
    start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in (x, ins[1], ins[2]))
    return KEEP_DATA_ELEMENTS + 1 if delta == 0 else max(math.ceil((limit - start) / delta), 0)


#: the number of elements an op that makes a tensor from values would make, computed before it is
#: made: a shape nobody reads must not allocate gigabytes (a dimension below zero: too large)
_SIZE_BEFORE: dict[str, Callable[[Any, list[Any], Any], int]] = {
    "ConstantOfShape": lambda x, ins, np: math.prod(int(d) if int(d) >= 0 else KEEP_DATA_ELEMENTS + 1 for d in x.reshape(-1)),
    "Range": _range_size,
    "Expand": lambda x, ins, np: math.prod(np.broadcast_shapes(x.shape, tuple(int(d) for d in ins[1].reshape(-1)))),
}


def _eval_shape_op(op: str, names: Sequence[str], ins: list[Any], a: dict[str, Any], types: Types, np: Any) -> Any:
    """One shape op's value, or None when it does not follow from what is known or would hold more
    than :data:`KEEP_DATA_ELEMENTS` elements (the size checked before anything is allocated)."""
    if op in _FROM_METADATA:
        return _FROM_METADATA[op](op, names, ins, a, types, np)
    if any(v is None for v in ins[:1]) or any(v is None for i, v in zip(names, ins, strict=True) if i):
        return None
    if op in _SIZE_BEFORE and _SIZE_BEFORE[op](np.asarray(ins[0]), ins, np) > KEEP_DATA_ELEMENTS:
        return None
    fn = _FROM_VALUES.get(op)
    return fn(ins[0], ins, a, np) if fn is not None else None


def _fold_shapes(graph: Any, types: Types) -> dict[str, Any]:
    """The values of the graph's small integer tensors that follow from constants and known
    shapes alone (the shapes torch.onnx computes at run time for a dynamic batch)."""
    import numpy as np
    from onnx import numpy_helper

    values: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                              if t.data_type not in FLOAT_TYPES and math.prod(t.dims) <= KEEP_DATA_ELEMENTS}
    out: dict[str, Any] = {}
    for n in graph.node:
        if n.op_type not in SHAPE_OPS or n.domain not in ("", "ai.onnx") or len(n.output) != 1:
            continue
        a = attrs_of(n)
        ins = [values.get(i) if i else None for i in n.input]
        try:
            v = _eval_shape_op(n.op_type, n.input, ins, a, types, np)
        except (ValueError, IndexError, TypeError, OverflowError):
            v = None
        if v is None:
            continue
        v = np.asarray(v)
        if v.dtype.kind not in "iub" or v.size > KEEP_DATA_ELEMENTS:
            continue
        values[n.output[0]] = v
        out[n.output[0]] = v
    return out


def value_types(graph: Any) -> Types:
    """Static shape and dtype of every value shape inference could settle."""
    out: Types = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = dims_of(vi)
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            out[vi.name] = (tuple(int(d) for d in dims), dtype_of(vi.type.tensor_type.elem_type))  # type: ignore[arg-type]
    for t in graph.initializer:
        out[t.name] = (tuple(int(d) for d in t.dims), dtype_of(t.data_type))
    return out
