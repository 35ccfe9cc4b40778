"""Tracing that keeps the module hierarchy and does not give up.

Three ways to a graph; ``tracer="auto"`` tries the first, then the fake run (the third):

1. ``symbolic``: torch.fx symbolic tracing. Standard ``torch.nn`` layers are single graph nodes
   (containers such as ``Sequential`` are traced through), and every node knows the path of the
   module it ran in. Where a submodule's code cannot be traced (a data-dependent ``if``, a
   signature FX cannot read), that submodule becomes one *opaque* node and tracing goes on; the
   opaque module still runs op by op on meta tensors, so its costs are counted and attributed to
   its own submodules by forward hooks (see :class:`fxcost.pytorch.eager.CallTracker`).
2. ``export``: ``torch.export`` (non-strict) on meta inputs, only when asked for. Its graph is an
   FX graph of aten ops whose nodes carry the module stack.
3. ``eager`` (the fake run): no graph at all: the whole model runs once on fake tensors and
   forward hooks attribute every op to the module call it ran in
   (:func:`fxcost.pytorch.analyze._eager`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx import config as fx_config

from fxcost.errors import TraceError, first_line
from fxcost.pytorch.diagnosis import user_line
from fxcost.pytorch.inputs import signature
from fxcost.report.kinds import Method

META_KEY = "fxcost"  # the one key fxcost keeps on FX nodes


class HierarchyTracer(fx.Tracer):
    """An FX tracer that keeps the modules at the paths in ``opaque`` and ``leaves`` as single
    nodes, and remembers which module it was in when tracing failed."""

    def __init__(self, opaque: Collection[str] = (), leaves: Collection[str] = ()) -> None:
        super().__init__()
        self.opaque = opaque
        self.leaves = leaves
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.opaque or module_qualified_name in self.leaves:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.path_of_module(m)
            raise


def module_path(node: fx.Node) -> str:
    """The path of the module a node belongs to ('' for the root)."""
    if node.op in ("call_module", "get_attr"):
        target = str(node.target)
        return target if node.op == "call_module" else target.rpartition(".")[0]
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path, _cls = list(stack.values())[-1]
    return _clean_path(str(path))


def _clean_path(path: str) -> str:
    # torch.export names a module "L['self'].h[0].attn" in some versions and "h.0.attn" in others
    path = path.replace("L['self']", "").replace("L__self__", "")
    for a, b in (("['", "."), ("']", ""), ("[", "."), ("]", "")):
        path = path.replace(a, b)
    return path.strip(".")


@dataclass
class Traced:
    """A graph whose targets are paths in ``root``, and how it was made."""

    root: nn.Module
    graph: fx.Graph
    method: Method
    #: module path -> why it could not be traced (its code runs op by op instead)
    opaque: dict[str, str] = field(default_factory=dict)
    #: the module the graph's ``get_attr`` targets resolve in, when not ``root`` (export's own)
    runner: nn.Module | None = None


def symbolic(
    model: nn.Module,
    concrete_args: dict[str, Any] | None = None,
    leaves: Collection[str] = (),
    each_attempt: Callable[[], object] = lambda: None,
    stack_traces: bool = False,
) -> Traced:
    """Symbolically trace ``model`` (a weightless copy), keeping untraceable submodules opaque.

    The root is ``model`` itself, unless ``model`` is a standard layer (``nn.Conv2d`` analyzed on
    its own): FX would trace into its forward, so it becomes the one child of an empty root,
    named by its class, and the graph is a single call of it. No GraphModule is built: an
    Interpreter runs the graph against the root, which saves generating and compiling code.
    ``each_attempt`` runs before each tracing attempt (one more per opaque module found).
    ``stack_traces`` records each node's source line (``node.stack_trace``): it costs as much as
    the tracing itself, so it is asked for only to name the line of a node that failed.
    Raises :class:`TraceError` when the root's own code cannot be traced.
    """
    if HierarchyTracer().is_leaf_module(model, ""):
        return _single_layer(model)
    opaque: dict[str, str] = {}
    paths = {p for p, _ in model.named_modules()}
    while True:
        each_attempt()
        tracer = HierarchyTracer(opaque, leaves)
        tracer.record_stack_traces = stack_traces
        try:
            graph = tracer.trace(model, concrete_args=concrete_args)
            break
        except Exception as e:
            where = tracer.failed_in
            if not where or where not in paths or where in opaque:
                place = f"module {where!r} ({type(model.get_submodule(where)).__name__})" if where else f"{type(model).__name__}.forward"
                raise TraceError(
                    f"torch.fx could not trace {place}: {first_line(e)}", source=user_line(e),
                    hint="fxcost falls back to the fake run, the forward once on fake tensors, op by op "
                    "(--tracer auto, the default); --leaf NAME keeps a module as one node",
                ) from e
            opaque[where] = f"{type(e).__name__}: {first_line(e)}"
    _annotate(graph)
    return Traced(model, graph, Method.SYMBOLIC, opaque)


def _single_layer(layer: nn.Module) -> Traced:
    name = type(layer).__name__
    root = nn.Module()
    root.add_module(name, layer)
    graph = fx.Graph()
    params = signature(layer.forward).parameters.values()
    args = [graph.placeholder(p.name, default_value=p.default) for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out = graph.call_module(name, tuple(args))
    graph.output(out)
    _annotate(graph)
    return Traced(root, graph, Method.SYMBOLIC)


def _annotate(graph: fx.Graph) -> None:
    for node in graph.nodes:
        node.meta[META_KEY] = {"module_path": module_path(node)}


@contextlib.contextmanager
def quiet_logs(*names: str) -> Iterator[None]:
    """torch's loggers ``names`` silenced for the block: fxcost reports a failure itself (fake
    tensors log a traceback for every kernel that raises, before fxcost classifies it)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """torch.export prints its partial graph to stderr when it fails, and logs a warning per
    data-dependent guard; fxcost reports the failure itself (and falls back), so both are kept
    from the user's terminal while export runs."""
    with quiet_logs(*_EXPORT_LOGGERS), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def _stack_traces(record: bool) -> Iterator[None]:
    """torch.fx's switch for recording each node's traceback, set for the block."""
    was = fx_config.do_not_emit_stack_traces
    fx_config.do_not_emit_stack_traces = not record
    try:
        yield
    finally:
        fx_config.do_not_emit_stack_traces = was


# loggers that write to the terminal while torch.export fails (guards, fake-tensor tracebacks)
_EXPORT_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._subclasses.fake_tensor", "torch.export",
                   "torch._export", "torch._dynamo", "torch.fx.experimental.recording")


def export(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], stack_traces: bool = False) -> Traced:
    """``torch.export`` (non-strict) of ``model`` on meta inputs.

    ``stack_traces`` records each node's source line (``node.stack_trace``): capturing and
    symbolizing a traceback per node is a quarter of export's time on a transformer, so it is
    done only to place an error (:func:`fxcost.pytorch.analyze._export`).

    The exported program is unlifted so parameters are ``get_attr`` nodes named by their paths
    in ``model``: the graph then runs against ``model`` itself, and tied weights stay one tensor.
    The graph's placeholders are the flattened user inputs, ``(args, kwargs)`` in pytree order.
    """
    try:
        with torch.no_grad(), _quiet_export(), _stack_traces(stack_traces):
            program = torch.export.export(model, args, kwargs, strict=False)
        program_module = program.module()
        graph = program_module.graph
    except Exception as e:
        raise TraceError(
            f"torch.export could not trace {type(model).__name__}: {type(e).__name__}: {first_line(e)}",
            source=user_line(e),
            hint="--tracer eager runs the model op by op; --tracer auto tries every way",
        ) from e
    _annotate(graph)
    return Traced(model, graph, Method.EXPORT, runner=program_module)
