"""Tensors as the PyTorch route handles them: their specs, their storages, and the data-free
stand-ins (meta and fake) that the analysis runs on."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_flatten

from fxcost.counting.arithmetic import whole
from fxcost.errors import InputSpecError
from fxcost.report.records import TensorSpec


class SparseSize(tuple):  # type: ignore[type-arg]  # torch.Size cannot be subclassed
    """A sparse COO tensor's shape, with its number of stored elements, as a formula sees it."""

    nnz: int

    def __new__(cls, shape: torch.Size, nnz: int) -> SparseSize:
        size = super().__new__(cls, (int(d) for d in shape))
        size.nnz = int(nnz)
        return size


#: what a formula receives for a tensor
SHAPES = (torch.Size, SparseSize)


def formula_view(x: Any) -> Any:
    """What a formula sees of an argument: a tensor's shape (a sparse one's with its nonzeros)."""
    if not isinstance(x, torch.Tensor):
        return x
    if x.layout == torch.sparse_coo and x.device.type != "meta":  # a meta sparse tensor stores nothing
        return SparseSize(x.shape, x._nnz())
    return x.shape


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32`` (the name a :class:`TensorSpec` carries)."""
    return str(dtype).removeprefix("torch.")


def spec_of(t: torch.Tensor) -> TensorSpec:
    return TensorSpec(tuple(whole(d) for d in t.shape), dtype_name(t.dtype))


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) value, in pytree order."""
    leaves, _ = tree_flatten(value)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def storage_of(t: torch.Tensor) -> StorageWeakRef | None:
    try:
        return StorageWeakRef(t.untyped_storage())
    except Exception:  # tensors without storage (sparse, nested) alias nothing we can see
        return None


def output_specs(value: Any) -> tuple[TensorSpec, ...]:
    """Shapes of every tensor in a model's output: tensors, (nested) tuples, lists, dicts
    (transformers' ``ModelOutput`` is one), dataclasses; other values carry no tensor."""
    if isinstance(value, torch.Tensor):
        return (spec_of(value),)
    if isinstance(value, Mapping):
        return tuple(s for v in value.values() for s in output_specs(v))
    if isinstance(value, (tuple, list)):
        return tuple(s for v in value for s in output_specs(v))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(s for f in dataclasses.fields(value) for s in output_specs(getattr(value, f.name)))
    return ()


def meta_tensor(x: Any) -> Any:
    """``x`` as a meta tensor of the same shape, stride, dtype and ``requires_grad`` (a training
    step computes the gradient of an input that asks for one); anything else as it is."""
    if not isinstance(x, torch.Tensor):
        return x
    meta = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    return meta.requires_grad_() if x.requires_grad and (x.is_floating_point() or x.is_complex()) else meta


def fake_tensor(x: Any, fake_mode: FakeTensorMode, device: str = "cpu") -> Any:
    """``x`` as a fake tensor of ``fake_mode`` on ``device`` (anything else as it is). A fake
    tensor on ``meta`` runs the meta kernels a plain meta tensor runs (attention's math path),
    and reads as a fake tensor to code that asks (transformers takes its tracing branches, as
    under torch.export, instead of reading values)."""
    if not isinstance(x, torch.Tensor):
        return x
    with fake_mode:
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=device)


def tensors_within(obj: Any, depth: int = 6) -> list[torch.Tensor]:
    """The tensors an object holds (a KV cache's keys and values): in its attributes, lists,
    tuples and dicts, ``depth`` levels down, each once."""
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(x: Any, d: int) -> None:
        if isinstance(x, torch.Tensor):
            found.setdefault(id(x), x)
            return
        if d == 0 or id(x) in seen or x is None or isinstance(x, (str, bytes, int, float, bool, type)):
            return
        seen.add(id(x))
        if isinstance(x, dict):
            items: Any = x.values()
        elif isinstance(x, (list, tuple, set)):
            items = x
        elif hasattr(x, "__dict__") and not callable(x):
            items = vars(x).values()
        else:
            return
        for v in items:
            walk(v, d - 1)

    walk(obj, depth)
    return list(found.values())


def with_tensors(obj: Any, convert: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``obj`` (a tensor, or an object holding tensors) copied with each tensor converted."""
    if isinstance(obj, torch.Tensor):
        return convert(obj)
    inner = tensors_within(obj)
    if not inner:
        return obj
    import copy

    return copy.deepcopy(obj, {id(t): convert(t) for t in inner})


def realize(x: Any) -> Any:
    """A real tensor for ``--real``: the user's own if it has data, else random of that shape."""
    if not isinstance(x, torch.Tensor):
        return x
    if x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor):
        # the caller's data, cut from the caller's autograd graph (a training step's backward must
        # not reach into it), asking for a gradient only if the caller's did
        return x.detach().requires_grad_(x.requires_grad) if x.is_leaf or x.requires_grad else x
    if x.dtype.is_floating_point or x.dtype.is_complex:
        return torch.randn(x.shape, dtype=x.dtype)
    return torch.zeros(x.shape, dtype=x.dtype)


_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "double": torch.float64, "fp64": torch.float64,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


def parse_dtype(text: str) -> torch.dtype:
    """A dtype by name: ``float16``, ``fp16``, ``half``, ``bf16``, ``int64``, ... (:data:`_DTYPES`)."""
    try:
        return _DTYPES[text.strip().lower()]
    except KeyError:
        raise InputSpecError(
            f"unknown dtype {text!r}", hint=f"one of: {', '.join(sorted(set(_DTYPES)))}"
        ) from None


#: the largest input fxcost takes: 1 PiB (no machine holds one; and every tensor computed from it
#: must still fit torch's 2^63-byte storage size)
MAX_INPUT_BYTES = 2**50


def check_input_size(shape: tuple[int, ...], dtype: torch.dtype, what: str) -> None:
    """:class:`InputSpecError` for an input past :data:`MAX_INPUT_BYTES`."""
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_INPUT_BYTES:
        raise InputSpecError(
            f"{what} {'x'.join(map(str, shape))} ({dtype_name(dtype)}) is {size:.2e} bytes: fxcost takes inputs up to "
            f"{MAX_INPUT_BYTES:.2e} bytes (1 PiB)",
            hint="check the dimensions (a cost at a smaller size scales: MACs grow with the batch)",
        )


@contextlib.contextmanager
def quiet_fake_mode() -> Iterator[None]:
    """Failures of a trial run on fake tensors unlogged: the fake mode logs each kernel that fails
    on its shapes (with its traceback, on the stderr torch's logging holds, which redirecting
    sys.stderr does not reach), and a trial that fails is an answer, not a fault."""
    import logging

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)
