"""The backward of a training step, counted on the same data-free tensors as the forward.

While the graph runs forward (with gradients on), every autograd node a graph node creates is
tagged with that graph node (:func:`tag_autograd`). Then a loss is made of the outputs and its
backward runs under :class:`BackwardRecorder`, which reads the autograd node being executed
(``torch._C._current_autograd_node``) and tallies each aten op into the graph node that made it,
priced by the same registry as the forward. The ops come back as :class:`OpCost` with
``backward=True`` on the graph node's record, so they reach the row that node became, whatever
the tracer made of it. Gradient accumulation into a parameter (``AccumulateGrad``) belongs to the
node whose gradient it accumulates, the last tagged one to run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

from fxcost.errors import InputSpecError
from fxcost.pytorch.recorder import OpRecorder

#: the autograd node's metadata key that names the graph node that created it
TAG = "fxcost.node"
#: the autograd node's metadata key that names the module call that created it
WHERE = "fxcost.module"
#: the pseudo-node for the loss (the outputs' sum) and its backward seed
LOSS = "(loss)"


def metadata(fn: Any) -> dict[str, Any]:
    """An autograd node's metadata (a dict property; torch's stubs call it a method)."""
    return fn.metadata  # type: ignore[no-any-return]


def tag_autograd(node: str, outputs: Iterable[torch.Tensor], where: str = "") -> None:
    """Tag the autograd nodes behind ``outputs`` that no earlier graph node tagged with ``node``
    (the graph node's ops may have made several: linear is a transpose and an addmm), and with
    ``where``, the path of the module call that ran it (for the op log's backward records)."""
    stack: list[Any] = [t.grad_fn for t in outputs if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or TAG in metadata(fn) or type(fn).__name__ == "AccumulateGrad":
            continue
        metadata(fn)[TAG] = node
        metadata(fn)[WHERE] = where
        stack.extend(next_fn for next_fn, _ in fn.next_functions)


def loss_of(output: Any) -> torch.Tensor:
    """The default loss: the first floating-point output, cast to float32 and summed (its
    gradient is ones: every output element's backward is counted once)."""
    leaves, _ = tree_flatten(output)
    if hasattr(output, "to_tuple"):  # transformers' ModelOutput
        leaves = [t for v in output.to_tuple() for t in tree_flatten(v)[0]]
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        leaves = [t for f in dataclasses.fields(output) for t in tree_flatten(getattr(output, f.name))[0]]
    for t in leaves:
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()) and t.requires_grad:
            return t.float().sum() if not t.is_complex() else t.abs().float().sum()
    raise InputSpecError("the model returns no floating-point output that depends on a parameter: no loss to train",
                         hint="train needs an output with a gradient; check that the parameters require grad")


class BackwardRecorder(OpRecorder):
    """Tallies each op of a backward into the graph node whose autograd node runs it."""

    BACKWARD = True

    def __init__(self, recorder: OpRecorder, first: str) -> None:
        """``first``: the node the ops before any autograd node runs belong to (the loss's seed)."""
        super().__init__(recorder.registry, recorder.shapes)
        self.log = recorder.log
        self.tallies: dict[str, dict[str, list[Any]]] = {}
        self._last = first

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        if not self._in_pending:  # a custom op's implementation tallies into the node it ran in
            fn = torch._C._current_autograd_node()
            tag = metadata(fn).get(TAG) if fn is not None else None
            if tag is not None:
                self._last = tag
                self.where = metadata(fn).get(WHERE, "")
            self._tally = self.tallies.setdefault(tag or self._last, {})
        return super().__torch_dispatch__(func, types, args, kwargs)

    def ops(self) -> dict[str, tuple[Any, ...]]:
        """Each graph node's backward ops (by node name), as OpCost with ``backward=True``."""
        self._run_pending()
        found = {}
        for node, tally in self.tallies.items():
            self._tally = tally
            found[node] = tuple(dataclasses.replace(o, backward=True) for o in self.take())
        return found


def _producer(loss: torch.Tensor) -> tuple[str, str]:
    """Tag the loss's own autograd nodes (a cast, a sum) with the graph node whose output it sums:
    the loss is counted in the layer that produced that output."""
    untagged: list[Any] = []
    stack: list[Any] = [loss.grad_fn]
    producer: Any = LOSS
    where = ""
    while stack:
        fn = stack.pop()
        if fn is None or type(fn).__name__ == "AccumulateGrad":
            continue
        if TAG in metadata(fn):
            producer, where = metadata(fn)[TAG], metadata(fn).get(WHERE, "")
            break
        untagged.append(fn)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    for fn in untagged:
        metadata(fn)[TAG] = producer
        metadata(fn)[WHERE] = where
    return str(producer), where


def run_backward(output: Any, recorder: OpRecorder) -> dict[str, tuple[Any, ...]]:
    """Backward of the default loss of ``output``: the ops by the graph node that made them. The
    loss's own forward ops (the cast and the sum) and their backward go to the node whose output
    it sums."""
    logged = len(recorder.log.records) if recorder.log is not None else 0
    with recorder:
        loss = loss_of(output)
    forward_of_loss = recorder.take()
    producer, where = _producer(loss)
    if recorder.log is not None:  # the loss's ops are the producer's, in the op log as in the rows
        recorder.log.records[logged:] = [dataclasses.replace(r, module=where) for r in recorder.log.records[logged:]]
    counter = BackwardRecorder(recorder, producer)
    counter.where = where
    with counter:
        loss.backward()
    found = counter.ops()
    found[producer] = forward_of_loss + found.get(producer, ())
    return found
