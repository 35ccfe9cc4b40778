"""Tensors as the PyTorch route handles them: their specs, their storages, and the data-free
stand-ins (meta and fake) that the analysis runs on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_flatten

from fxcost.report.records import TensorSpec


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32`` (the name a :class:`TensorSpec` carries)."""
    return str(dtype).removeprefix("torch.")


def spec_of(t: torch.Tensor) -> TensorSpec:
    return TensorSpec(tuple(int(d) for d in t.shape), dtype_name(t.dtype))


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
    """``x`` as a meta tensor of the same shape, stride and dtype (anything else as it is)."""
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta") if isinstance(x, torch.Tensor) else x


def fake_tensor(x: Any, fake_mode: FakeTensorMode) -> Any:
    """``x`` as a fake CPU tensor of ``fake_mode`` (anything else as it is)."""
    if not isinstance(x, torch.Tensor):
        return x
    with fake_mode:
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="cpu")


def realize(x: Any) -> Any:
    """A real tensor for ``--real``: the user's own if it has data, else random of that shape."""
    if not isinstance(x, torch.Tensor):
        return x
    if x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor):
        return x
    if x.dtype.is_floating_point or x.dtype.is_complex:
        return torch.randn(x.shape, dtype=x.dtype)
    return torch.zeros(x.shape, dtype=x.dtype)
