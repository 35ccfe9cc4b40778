"""Shape propagation that records, for every FX node, the aten ops it dispatched.

A ``torch.fx.Interpreter`` runs the graph node by node (on fake tensors by default); a
``TorchDispatchMode`` sees every aten op each node dispatches, after composite ops have been
decomposed, so ``nn.Conv2d``, ``F.conv2d`` and a custom module calling ``torch.conv2d`` all reach
``aten::convolution`` and are counted by one formula. Costs are computed from shapes as each op
runs; no tensor is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from fxcost.errors import FxcostError, ShapeError
from fxcost.formulas import FormulaRegistry
from fxcost.model import OpCost, TensorSpec
from fxcost.spec import dtype_name
from fxcost.trace import META_KEY


@dataclass
class NodeRecord:
    """What one node did: its outputs, which of them it newly allocated, and its ops."""

    node: fx.Node
    outputs: tuple[TensorSpec, ...]
    allocated: tuple[bool, ...]
    ops: tuple[OpCost, ...]
    input_shapes: tuple[tuple[int, ...], ...]


def _shape_only(x: Any) -> Any:
    return x.shape if isinstance(x, torch.Tensor) else x


# matmul and convolution kernels need one dtype for all operands
_SAME_DTYPE = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv",
                         "aten::dot", "aten::convolution", "aten::_convolution"})


class OpRecorder(TorchDispatchMode):
    """Counts every aten op dispatched while it is active into the current node's tally."""

    def __init__(self, registry: FormulaRegistry) -> None:
        super().__init__()
        self.registry = registry
        self._tally: dict[str, list[Any]] = {}
        self._fates: dict[Any, tuple[str, str, Any, str]] = {}

    def take(self) -> tuple[OpCost, ...]:
        tally, self._tally = self._tally, {}
        return tuple(OpCost(name, n, macs, flops, fate, reason) for name, (n, macs, flops, fate, reason) in tally.items())

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        fate_entry = self._fates.get(func)
        if fate_entry is None:
            name = func._schema.name
            fate, fn, reason = self.registry.lookup(name)
            fate_entry = self._fates[func] = (name, fate, fn, reason)
        name, fate, fn, reason = fate_entry
        if name in _SAME_DTYPE:
            dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
            if len(dtypes) > 1:  # meta kernels do not check this; real CPU/GPU kernels refuse it
                raise RuntimeError(f"{name} got operands of different dtype: {', '.join(sorted(map(str, dtypes)))}")
        macs = flops = 0
        if fn is not None:  # fate == "formula"
            s_args, s_kwargs, s_out = tree_map(_shape_only, (tuple(args), kwargs, out))
            s_kwargs.pop("out", None)
            try:
                cost = fn(*s_args, out=s_out, **s_kwargs)
            except Exception as e:  # a formula bug must not pass as a zero
                raise FxcostError(
                    f"fxcost's formula for {name} failed on shapes {s_args}: {type(e).__name__}: {e}",
                    hint="this is a bug in fxcost; please report it with the model",
                ) from e
            macs, flops = cost.macs, cost.flops
        entry = self._tally.get(name)
        if entry is None:
            self._tally[name] = [1, macs, flops, fate, reason]
        else:
            entry[0] += 1
            entry[1] += macs
            entry[2] += flops
        return out


def _tensors(value: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(value)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _storage(t: torch.Tensor) -> StorageWeakRef | None:
    try:
        return StorageWeakRef(t.untyped_storage())
    except Exception:  # tensors without storage (sparse, nested) alias nothing we can see
        return None


def hint_for(error: Exception) -> str:
    text = str(error)
    if "too small" in text or "Output size" in text or "non-positive" in text:
        return "the input is too small for this architecture: use a larger --input, or fewer downsampling layers"
    if "channels" in text:
        return "check the channel dimension of --input against the model's first layer"
    if "dtype" in text:
        return "the operands' dtypes differ: give --input the model's dtype (e.g. 1x3x224x224:float16)"
    if any(k in text for k in ("mat1 and mat2", "size mismatch", "shapes cannot be multiplied", "same reduction dim")):
        return "the flattened features do not match a Linear layer: check the spatial size of --input"
    return "check --input against what the model expects; --debug shows the full traceback"


class RecordingInterpreter(fx.Interpreter):
    """Runs a GraphModule and keeps one :class:`NodeRecord` per node."""

    def __init__(self, root: nn.Module, graph: fx.Graph, recorder: OpRecorder) -> None:
        super().__init__(root, graph=graph)
        self.recorder = recorder
        self.records: list[NodeRecord] = []

    def run_node(self, n: fx.Node) -> Any:
        inputs = [self.env[a] for a in n.all_input_nodes]
        input_tensors = [t for v in inputs for t in _tensors(v)]
        self.recorder.take()
        try:
            result = super().run_node(n)
        except FxcostError:
            raise
        except Exception as e:
            shapes = tuple(tuple(t.shape) for t in input_tensors)
            where = n.meta.get(META_KEY, {}).get("module_path") or n.name
            what = str(n.target) if n.op == "call_module" else f"{n.op} {n.name}"
            typ = type(self.module.get_submodule(str(n.target))).__name__ if n.op == "call_module" else ""
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            shown = ", ".join("x".join(map(str, s)) for s in shapes) or "no tensors"
            raise ShapeError(
                f"layer {where!r} ({typ or what}) failed on input shape {shown}: {first}",
                node=n.name,
                module_path=where,
                input_shapes=shapes,
                hint=hint_for(e),
            ) from e
        ops = self.recorder.take()
        seen = {s for s in map(_storage, input_tensors) if s is not None}
        outs = _tensors(result)
        specs = tuple(TensorSpec(tuple(int(d) for d in t.shape), dtype_name(t.dtype)) for t in outs)
        allocated = []
        for t in outs:
            s = _storage(t)
            allocated.append(s is not None and s not in seen)
            if s is not None:
                seen.add(s)  # a tuple that returns one buffer twice allocates it once
        self.records.append(
            NodeRecord(n, specs, tuple(allocated), ops, tuple(tuple(int(d) for d in t.shape) for t in input_tensors))
        )
        return result
