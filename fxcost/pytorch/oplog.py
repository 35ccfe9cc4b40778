"""The trace op by op (``analyze(ops=True)``, ``fxcost analyze --ops``): every aten op the
recorder prices, in dispatch order, with the module call it ran in, the op that made each of its
tensor operands (linked by tensor identity, as the module calls' data flow is), its outputs'
shapes, dtypes and strides, and its price. The rows are the same ops summed per module call; this
is the list they were summed from, for whoever wants to read or draw the trace itself.

Off by default: it keeps one small record per op, where the analysis keeps one per module call.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from fxcost.pytorch.tensors import spec_of, tensors_in
from fxcost.report.records import OpRecord


class OpLog:
    """The op records of one run. A tensor's producer is kept weakly (the run frees its
    tensors) and checked by identity, so a tensor id reused by a later allocation is not linked
    to the op that made the freed one."""

    def __init__(self) -> None:
        self.records: list[OpRecord] = []
        self._made: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}

    def add(self, name: str, where: str, args: Any, out: Any, macs: int, flops: int, backward: bool) -> None:
        inputs = []
        for t in tensors_in(args):
            made = self._made.get(id(t))
            inputs.append(made[1] if made is not None and made[0]() is t else -1)
        index = len(self.records)
        outs = tensors_in(out)
        for t in outs:
            self._made[id(t)] = (weakref.ref(t), index)
        self.records.append(OpRecord(name, where, tuple(inputs), tuple(map(spec_of, outs)),
                                     tuple(tuple(t.stride()) if t.layout == torch.strided else () for t in outs),
                                     macs, flops, backward))

    def take(self) -> tuple[OpRecord, ...]:
        records, self.records = tuple(self.records), []
        self._made.clear()
        return records
