"""Shape propagation that records, for every FX node, the aten ops it dispatched.

A ``torch.fx.Interpreter`` runs the graph node by node (on meta or fake tensors) under the
:class:`~fxcost.pytorch.recorder.OpRecorder`, and keeps one :class:`NodeRecord` per node: its
outputs, which of them it newly allocated (views and in-place results share a storage already
seen), and its ops. An opaque module's node runs op by op (:mod:`fxcost.pytorch.eager`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from fxcost.errors import FxcostError, InternalError, ShapeError, TraceError, first_line
from fxcost.pytorch.backward import tag_autograd
from fxcost.pytorch.diagnosis import PROXY, ModuleRunError, failure_message, hint_for, raised_in, readable, user_line
from fxcost.pytorch.eager import CallTracker, ModuleCall
from fxcost.pytorch.memory import SavedBytes
from fxcost.pytorch.recorder import OpRecorder
from fxcost.pytorch.tensors import spec_of, storage_of, tensors_in
from fxcost.pytorch.tracers import META_KEY
from fxcost.report.records import OpCost, TensorSpec


@dataclass
class NodeRecord:
    """What one node did: its outputs, which of them it newly allocated, and its ops; for an
    opaque module's node, the calls its ops ran in."""

    node: fx.Node
    outputs: tuple[TensorSpec, ...]
    allocated: tuple[bool, ...]
    ops: tuple[OpCost, ...]
    calls: tuple[ModuleCall, ...] = ()
    call_edges: tuple[tuple[int, int, TensorSpec], ...] = ()  # data flow between the calls
    saved: int = 0  # bytes of the tensors its ops saved for the backward, not saved before (``train``)


class RecordingInterpreter(fx.Interpreter):
    """Runs a GraphModule and keeps one :class:`NodeRecord` per node."""

    def __init__(self, root: nn.Module, graph: fx.Graph, recorder: OpRecorder, opaque: Collection[str] = (),
                 train: bool = False) -> None:
        """``opaque``: paths of module calls to run op by op (see :class:`CallTracker`); ``train``:
        tag the autograd nodes each node makes, for :func:`fxcost.pytorch.backward.run_backward`."""
        super().__init__(root, graph=graph)
        self.recorder = recorder
        self.opaque = opaque
        self.train = train
        self.records: list[NodeRecord] = []
        self._calls: tuple[ModuleCall, ...] = ()
        self._edges: tuple[tuple[int, int, TensorSpec], ...] = ()
        self._saves: SavedBytes | None = None  # storages saved for the backward so far (``train``)
        self._saved_now = 0

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target not in self.opaque:
            return super().call_module(target, args, kwargs)
        module = self.fetch_attr(target)
        with CallTracker(module, target, self.recorder, seen=tensors_in((args, kwargs))) as tracker, tracker.naming_failures():
            result = module(*args, **kwargs)
        self._calls, self._edges = tuple(tracker.calls), tuple(tracker.edges)
        return result

    def run_node(self, n: fx.Node) -> Any:
        inputs = [self.env[a] for a in n.all_input_nodes]
        input_tensors = [t for v in inputs for t in tensors_in(v)]
        self.recorder.take()
        where = self.recorder.where = n.meta.get(META_KEY, {}).get("module_path") or ""
        try:
            if self.train:
                with SavedBytes.saving(self._pack):
                    result = super().run_node(n)
            else:
                result = super().run_node(n)
        except (FxcostError, InternalError, ModuleRunError):
            raise
        except Exception as e:
            raise self._failed(n, where, input_tensors, e) from e
        ops = self.recorder.take()
        seen = {s for s in map(storage_of, input_tensors) if s is not None}
        outs = tensors_in(result)
        if self.train:
            tag_autograd(n.name, outs, where)
        specs = tuple(map(spec_of, outs))
        allocated = []
        for t in outs:
            s = storage_of(t)
            allocated.append(s is not None and s not in seen)
            if s is not None:
                seen.add(s)  # a tuple that returns one buffer twice allocates it once
        calls, self._calls = self._calls, ()
        edges, self._edges = self._edges, ()
        saved, self._saved_now = self._saved_now, 0
        self.records.append(
            NodeRecord(n, specs, tuple(allocated), ops, calls, edges, saved)
        )
        return result

    def _failed(self, n: fx.Node, where: str, input_tensors: list[torch.Tensor], e: Exception) -> FxcostError:
        """Node ``n``'s failure as the user sees it: the layer (or the function, and the module whose
        forward calls it), the input shapes, why, the line. A message that holds a ``Proxy(...)`` was
        written while tracing, from a traced value (``f"height ({H})"``): the graph cannot say what
        the forward would, so it is a :class:`TraceError` and ``auto`` moves on to the fake run."""
        shapes = tuple(tuple(t.shape) for t in input_tensors)
        if n.op == "call_module":
            place = f"layer {n.target!r} ({type(self.module.get_submodule(str(n.target))).__name__})"
        else:
            name = getattr(n.target, "__name__", str(n.target))
            place = f"{name}() in " + (f"layer {where!r}" if where else f"{type(self.module).__name__}.forward")
        source = user_line(e, n.stack_trace)  # torch.export's nodes carry their line; traced ones may not
        if raised_in(e, "torch/fx/immutable_collections.py"):
            return TraceError(f"torch.fx's graph fails at {place}: the function changes a list it is given in place, "
                              "and torch.fx's graph hands it an immutable one (a torch.fx.wrap'ped helper that mutates "
                              "its argument)", hint="--tracer eager runs the forward itself, where the list is the "
                              "function's to change", source=source)
        if PROXY.search(str(e)):
            return TraceError(f"torch.fx's graph fails at {place}, with a message written while tracing: "
                              f"{readable(first_line(e))}", hint="--tracer eager runs the forward itself and says what it "
                              "says on these inputs", source=source)
        return ShapeError(failure_message(place, shapes, e), node=n.name, module_path=where or n.name, input_shapes=shapes,
                          hint=hint_for(e), source=source)

    def _pack(self, t: torch.Tensor) -> None:
        """A tensor an op saves for the backward: its storage's bytes, if new, go to the running node."""
        if self._saves is None:
            self._saves = SavedBytes([*self.module.parameters(), *self.module.buffers()])
        self._saved_now += self._saves.new(t)

