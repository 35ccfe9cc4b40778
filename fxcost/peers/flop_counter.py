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
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fxcost.peers.base import Charge, PeerTool, Reproduction, ToolFigures, hooked, run_static

#: the torch release whose counter this is (the one installed: it ships with torch)
VERSION = torch.__version__.split("+")[0]
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
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        packet = func.overloadpacket
        if packet not in self.priced and any(k in packet.__name__ for k in _FUSED):
            name = f"aten::{packet.__name__}"
            self.seen[name] += 1
        return func(*args, **(kwargs or {}))


class _Attributed(TorchDispatchMode):
    """Entered inside FlopCounterMode, so it sees each op first and the counter's total after the
    op is priced: the difference is the op's FLOPs, charged to the innermost module running it
    (``running``, kept by forward hooks) under the op's name."""

    def __init__(self, counter: Any, running: list[str]) -> None:
        super().__init__()
        self.counter, self.running = counter, running
        self.own: dict[tuple[str, str], int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        before = self.counter.get_total_flops()
        out = func(*args, **(kwargs or {}))
        priced = self.counter.get_total_flops() - before
        if priced:
            key = (self.running[-1] if self.running else "", f"aten::{func.overloadpacket.__name__}")
            self.own[key] = self.own.get(key, 0) + int(priced)
        return out


def _counted(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
             unpriced: _Unpriced | None = None) -> tuple[int, dict[tuple[str, str], int]]:
    """FlopCounterMode over one forward, and its FLOPs by (innermost module, op). Its docs run it
    without no_grad, which matters: with gradients on, nn.MultiheadAttention and
    nn.TransformerEncoderLayer skip their fused fast paths."""
    from torch.utils.flop_counter import FlopCounterMode

    paths: dict[int, str] = {}
    for path, m in model.named_modules():
        paths.setdefault(id(m), path)  # a module registered twice is charged under its first name
    running: list[str] = []

    def enter(m: nn.Module, x: Any) -> None:
        running.append(paths[id(m)])

    def leave(m: nn.Module, x: Any, y: Any) -> None:  # returns None: a forward hook's value would replace the output
        running.pop()

    counter = FlopCounterMode(display=False)
    attributed = _Attributed(counter, running)
    with (torch.enable_grad(), unpriced or contextlib.nullcontext(),
          hooked(list(dict.fromkeys(model.modules())), enter, leave), counter, attributed):
        model(*args, **kwargs)
    return int(counter.get_total_flops()), attributed.own


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    unpriced = _Unpriced()

    def watch(shadow: nn.Module, margs: tuple[Any, ...], mkwargs: dict[str, Any]) -> tuple[nn.Module, int, Any]:
        unpriced.seen.clear()
        return (shadow, *_counted(shadow, margs, mkwargs, unpriced=unpriced))

    shadow, total, own = run_static(model, args, kwargs, watch, cpu=True)
    types = {name: type(m).__name__ for name, m in shadow.named_modules()}
    charges = tuple(Charge(path, types[path], op, n // 2, _RULE, n) for (path, op), n in sorted(own.items()))
    return Reproduction(
        tool="flop_counter", version=VERSION, headline="FLOPs / 2",
        macs=total // 2, params=_unique_params(shadow), charges=charges, flops=total,
        unseen=tuple(f"{op} x{n} (no formula in flop_registry)" for op, n in sorted(unpriced.seen.items())),
    )


def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """FlopCounterMode over a real forward (the counter ships with torch: always installed)."""
    total, _ = _counted(model.eval(), args, kwargs)  # the caller's copy: eval() is on it
    return ToolFigures(macs=total // 2, params=_unique_params(model), flops=total)


TOOL = PeerTool(
    name="flop_counter",
    package="torch",
    version=VERSION,
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
