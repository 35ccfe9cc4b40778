"""PyTorch's own counter, ``torch.utils.flop_counter.FlopCounterMode``, reproduced.

FlopCounterMode prices the aten ops it has a formula for (matmuls, convolutions, attention
kernels; torch/utils/flop_counter.py ``flop_registry``) and nothing else: pointwise ops, norms,
softmax and pooling cost zero there. It counts FLOPs as 2 x MACs, so the preset's headline is its
total divided by 2. The counter needs no values, so the reproduction is the counter itself run
over fxcost's meta copy: the same registry, the same modules (its ModuleTracker names them
``<RootClass>.<path>``; each op is charged here to the innermost module it ran in).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fxcost.peers.base import Charge, PeerTool, Reproduction, ToolFigures, run_static

_RULE = "FLOPs / 2 of its registered formula (torch/utils/flop_counter.py flop_registry); ops without one cost 0"


def _unique_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


#: the fused kernels that do a layer's matmuls in one op: where FlopCounterMode has no formula for
#: one, the layer's work is not counted, and the reproduction names it
_FUSED = ("attention", "lstm", "gru", "rnn_", "mkldnn_rnn", "_transformer_encoder_layer")


class _Unpriced(TorchDispatchMode):
    """Notes each fused kernel that ran without a formula in FlopCounterMode's registry."""

    def __init__(self) -> None:
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.priced = set(flop_registry)
        self.seen: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        packet = func.overloadpacket
        if packet not in self.priced and any(k in packet.__name__ for k in _FUSED):
            name = f"aten::{packet.__name__}"
            self.seen[name] = self.seen.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _counted(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
             grad: bool = False, unpriced: _Unpriced | None = None) -> tuple[int, dict[str, dict[str, int]]]:
    """FlopCounterMode over one forward. Its docs run it without no_grad, which matters: with
    gradients on, nn.MultiheadAttention and nn.TransformerEncoderLayer skip their fused fast paths."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.set_grad_enabled(grad), unpriced or contextlib.nullcontext(), FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    per_module = {name: {str(op): int(n) for op, n in ops.items()} for name, ops in counter.get_flop_counts().items()}
    return int(counter.get_total_flops()), per_module


def _own_ops(per_module: dict[str, dict[str, int]], root: str) -> dict[str, dict[str, int]]:
    """Each module's FLOPs less those of the modules tracked inside it (keys as named_modules()
    names): what ran in the module itself. A container that is never called (ModuleList) is not
    tracked, so a module is subtracted from its nearest tracked ancestor."""
    tracked = {name: ops for name, ops in per_module.items() if name == root or name.startswith(root + ".")}
    own = {name: dict(ops) for name, ops in tracked.items()}
    for name, ops in tracked.items():
        parent = name
        while "." in parent:
            parent = parent.rsplit(".", 1)[0]
            if parent in tracked:
                for op, n in ops.items():
                    own[parent][op] = own[parent].get(op, 0) - n
                break
    return {(name[len(root) + 1:] if name != root else ""): {op: n for op, n in ops.items() if n}
            for name, ops in own.items()}


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    unpriced = _Unpriced()

    def watch(shadow: nn.Module, margs: tuple[Any, ...], mkwargs: dict[str, Any]) -> tuple[nn.Module, int, Any]:
        unpriced.seen.clear()
        return (shadow, *_counted(shadow, margs, mkwargs, grad=True, unpriced=unpriced))

    shadow, total, per_module = run_static(model, args, kwargs, watch, cpu=True)
    types = {name: type(m).__name__ for name, m in shadow.named_modules()}
    charges = tuple(
        Charge(path, types.get(path, type(shadow).__name__), op.replace("aten.", "aten::"), n // 2, _RULE, n)
        for path, ops in _own_ops(per_module, type(shadow).__name__).items()
        for op, n in sorted(ops.items())
    )
    return Reproduction(
        tool="flop_counter", version=torch.__version__.split("+")[0], headline="FLOPs / 2",
        macs=total // 2, params=_unique_params(shadow), charges=charges, flops=total,
        unseen=tuple(f"{op} x{n} (no formula in flop_registry)" for op, n in sorted(unpriced.seen.items())),
    )


def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """FlopCounterMode over a real forward (the counter ships with torch: always installed)."""
    total, _ = _counted(model.eval(), args, kwargs, grad=True)
    return ToolFigures(macs=total // 2, params=_unique_params(model), flops=total)


TOOL = PeerTool(
    name="flop_counter",
    package="torch",
    version=torch.__version__.split("+")[0],
    headline="FLOPs / 2",
    reproduce=reproduce,
    run_tool=run_tool,
    misses=(
        "attention on the CPU: SDPA runs aten::_scaled_dot_product_flash_attention_for_cpu, which has no "
        "formula (flop_counter.py:742 registers the CUDA kernels), 0; on CUDA it is counted",
        "nn.MultiheadAttention / TransformerEncoderLayer fast path under no_grad: one fused kernel, 0",
        "pointwise ops, activations, norms, softmax, pooling, embedding lookups: no formula, 0",
        "RNN/LSTM/GRU on CPU: aten::lstm and friends have no formula, 0 (their matmuls run inside one kernel)",
        "bias adds fused in addmm are not counted (addmm's formula is the mm's)",
    ),
    params_rule='FlopCounterMode counts none; the preset reports model.parameters(), each tensor once',
)
