"""Reading an ONNX file for analysis: without its weight data, checked, with every weight's kind.

Which initializers (or weight inputs of a ``--structure-only`` file) are parameters:

- the kind the PyTorch exporter recorded on them (``pkg.torch.export.graph_signature.InputSpec.kind``:
  PARAMETER, BUFFER), which fxcost's exports always carry;
- otherwise, for files other tools wrote: a floating-point initializer with more than one
  element is a parameter, except BatchNormalization's running mean and variance (buffers);
  integer, boolean and one-element initializers are constants (shapes, indices, scalars) and are
  counted as neither (``trace.constants`` says how many); the weight inputs of Conv, Gemm,
  MatMul and the quantized ops are parameters whatever their element type.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fxcost.counting.rows import Weight, dtype_bytes
from fxcost.errors import OnnxFileError, first_line

#: a concrete shape, as shape inference settles it
Dims = tuple[int, ...]

KIND_KEY = "pkg.torch.export.graph_signature.InputSpec.kind"  # torch.export's own key; fxcost's exports add it to initializers
STRUCTURE_ONLY_KEY = "fxcost.structure_only"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"

class WeightKind(StrEnum):
    """What an initializer (or weight input) is, spelled as torch.export's graph signature
    spells it in the file's metadata."""

    PARAMETER = "PARAMETER"
    BUFFER = "BUFFER"
    CONSTANT = "CONSTANT"  # shapes, indices, scalars, folded tensors: counted as neither


#: ONNX element types by number, as torch dtype names (TensorSpec.dtype)
_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
    16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
}
FLOAT_TYPES = {1, 10, 11, 16, 17, 18, 19, 20}

#: small integer initializers keep their data through shape inference: they are the shapes that
#: Reshape, Expand and friends read
KEEP_DATA_ELEMENTS = 1024


@dataclass
class OnnxWeight:
    """An initializer (or a weight input), its shape, element type and kind."""

    name: str
    shape: Dims
    dtype: str
    kind: WeightKind

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def weight(self) -> Weight:
        """As the row builder claims it (by name; ONNX records no ``requires_grad``: all trainable)."""
        return Weight(self.name, self.name, self.numel, self.numel * dtype_bytes(self.dtype),
                      self.kind is WeightKind.PARAMETER)


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
    _confine_external_data(model, p)
    _refuse_negative_dims(model.graph, p)
    _refuse_redefinitions(model.graph, p)
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    try:
        onnx.checker.check_model(without_data(model))
    except Exception as e:
        # the checker also refuses files runtimes accept (a graph input without a shape); only a
        # broken graph is an error here: a name no node, input or initializer defines
        broken = _undefined(model.graph)
        if broken or not model.graph.output:
            raise OnnxFileError(f"{p} is not a valid ONNX model: {first_line(e)}",
                                hint="it may be truncated or written by a broken tool; export it again") from e
    return model


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph stores: initializers, and Constant values and other tensor
    attributes of its nodes (subgraphs included)."""
    yield from graph.initializer
    for n in graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for g in [a.g] if a.HasField("g") else []:
                yield from _tensors(g)
            for g in a.graphs:
                yield from _tensors(g)


def _confine_external_data(model: Any, path: Path) -> None:
    """External data is read only from inside the ONNX file's own folder: a location that is
    absolute, climbs out with ``..`` or through a symbolic link is refused. Weight bytes are never
    read (sizes come from each tensor's dims); only small integer tensors (the shapes Reshape
    reads, :data:`KEEP_DATA_ELEMENTS` at most) are, and put inline."""
    import onnx

    folder = path.resolve().parent
    for t in _tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        where = (folder / location).resolve()
        if not location or Path(location).is_absolute() or ".." in Path(location).parts or not where.is_relative_to(folder):
            raise OnnxFileError(
                f"{path}: tensor {t.name!r} keeps its data at {location!r}, outside the ONNX file's folder",
                hint="external data must sit beside the .onnx file (a plain relative name); fxcost reads nothing else",
            )
        if t.data_type in FLOAT_TYPES or math.prod(t.dims) > KEEP_DATA_ELEMENTS:
            continue  # a weight: counted from its dims, its bytes stay where they are
        _read_inline(t, where, info, path)


def _read_inline(t: Any, where: Path, info: dict[str, str], path: Path) -> None:
    import onnx

    size = math.prod(t.dims) * dtype_bytes(dtype_of(t.data_type))
    offset, length = int(info.get("offset", 0) or 0), int(info.get("length", size) or size)
    if length != size or offset < 0:
        raise OnnxFileError(f"{path}: tensor {t.name!r} of shape {list(t.dims)} says its data is {length} bytes at "
                            f"offset {offset}; its shape needs {size}", hint="the file is damaged; export it again")
    try:
        with where.open("rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError as e:
        raise OnnxFileError(f"{path}: cannot read the data of tensor {t.name!r} from {where.name!r}: {e.strerror or e}",
                            hint="keep the .data file beside the .onnx file") from e
    if len(data) != size:
        raise OnnxFileError(f"{path}: the data of tensor {t.name!r} is cut short in {where.name!r}",
                            hint="the .data file is truncated; export it again")
    del t.external_data[:]
    t.data_location = onnx.TensorProto.DEFAULT
    t.raw_data = data


def _refuse_negative_dims(graph: Any, path: Path) -> None:
    """A declared dimension below zero has no meaning (it would give negative MACs)."""
    values = [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim if d.HasField("dim_value")])
              for v in [*graph.input, *graph.output, *graph.value_info] if v.type.HasField("tensor_type")]
    values += [(t.name, list(t.dims)) for t in graph.initializer]
    for name, dims in values:
        if any(d < 0 for d in dims):
            raise OnnxFileError(f"{path}: {name!r} declares dimensions {dims}: a dimension is never negative",
                                hint="the file is damaged or was written by a broken tool; export it again")


def _refuse_redefinitions(graph: Any, path: Path) -> None:
    """Each name is defined once (ONNX is single-assignment): a node that writes a graph input, an
    initializer or another node's output would make the analysis read the wrong value."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for n in graph.node:
        for o in n.output:
            if o and o in defined:
                raise OnnxFileError(f"{path}: node {n.name or n.op_type!r} ({n.op_type}) redefines {o!r}, which is already "
                                    "defined (a graph input, an initializer or another node's output)",
                                    hint="ONNX names each value once; the file is invalid (onnx.checker refuses it too)")
            defined.add(o)


def _undefined(graph: Any) -> list[str]:
    """Names the graph reads that nothing defines (a truncated or damaged file)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {
        t.values.name for t in graph.sparse_initializer}
    missing = []
    for n in graph.node:
        missing += [i for i in n.input if i and i not in defined]
        defined.update(n.output)
    return missing + [o.name for o in graph.output if o.name not in defined]


def without_data(model: Any) -> Any:
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
    return t.data_type not in FLOAT_TYPES and math.prod(t.dims) <= KEEP_DATA_ELEMENTS


def dtype_of(elem_type: int) -> str:
    return _DTYPES.get(elem_type, "uint8")  # sized as one byte; the report says so (unsized_types)


def unsized_types(graph: Any) -> list[str]:
    """Names of the element types in ``graph`` that :func:`dtype_of` can only size as one byte."""
    import onnx

    types = {t.data_type for t in graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]
              if v.type.HasField("tensor_type")}
    return sorted(onnx.TensorProto.DataType.Name(t) for t in types if t and t not in _DTYPES)


def metadata(x: Any) -> dict[str, str]:
    return {p.key: p.value for p in getattr(x, "metadata_props", ())}


#: the inputs of quantized (or plain) ops that hold weights, whatever their element type
_WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "ConvInteger": (1,),
                  "MatMulInteger": (1,), "QLinearConv": (3, 8), "QLinearMatMul": (3,), "DequantizeLinear": (0,)}


def weights(graph: Any) -> dict[str, OnnxWeight]:
    """Every initializer, and every graph input the exporter marked as a weight, with its kind;
    in a file without the exporter's kinds, also the tensors of Constant nodes."""
    import onnx

    bn_stats = {n.input[i] for n in graph.node if n.op_type == "BatchNormalization" for i in (3, 4) if i < len(n.input)}
    weight_inputs = {n.input[i] for n in graph.node for i in _WEIGHT_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    tagged = any(KIND_KEY in metadata(x) for x in [*graph.initializer, *graph.input])
    out: dict[str, OnnxWeight] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    if not tagged:
        tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" and n.output
                    for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR]
    for name, t in tensors:
        recorded = metadata(t).get(KIND_KEY)
        kind = _normal_kind(recorded) if recorded else _guess_kind(name, t.data_type, tuple(t.dims), bn_stats, weight_inputs)
        out[name] = OnnxWeight(name, tuple(int(d) for d in t.dims), dtype_of(t.data_type), kind)
    for i in graph.input:  # a structure-only file's weights are inputs carrying their kind
        given = metadata(i).get(KIND_KEY, "")
        if i.name in out or given not in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            continue
        tt = i.type.tensor_type
        shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        out[i.name] = OnnxWeight(i.name, shape, dtype_of(tt.elem_type), _normal_kind(given))
    return out


def _normal_kind(kind: str) -> WeightKind:
    """The file's own kind (torch.export also writes CONSTANT_TENSOR and USER_INPUT)."""
    return WeightKind(kind) if kind in (WeightKind.PARAMETER, WeightKind.BUFFER) else WeightKind.CONSTANT


def _guess_kind(name: str, elem_type: int, dims: Dims, bn_stats: set[str], weight_inputs: set[str]) -> WeightKind:
    if math.prod(dims) <= 1:
        return WeightKind.CONSTANT
    if name in weight_inputs:  # int8 weights of a quantized conv or matmul are parameters too
        return WeightKind.PARAMETER
    if elem_type not in FLOAT_TYPES:
        return WeightKind.CONSTANT
    return WeightKind.BUFFER if name in bn_stats else WeightKind.PARAMETER


def weights_of(model: Any) -> dict[str, tuple[WeightKind, int]]:
    """Every weight of a loaded ONNX model (:func:`load`) by name: its kind (PARAMETER, BUFFER,
    CONSTANT) and size."""
    return {w.name: (w.kind, w.numel) for w in weights(model.graph).values()}


def attrs_of(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    import onnx

    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out
