"""torch.fx tracing that keeps the module hierarchy.

Standard ``torch.nn`` layers are single graph nodes (containers such as ``Sequential`` are traced
through), and every node knows the full path of the module it ran in: a module call's path is its
target (``features.3.0``); a function's is the innermost module on FX's ``nn_module_stack``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.fx as fx
from torch import nn

from fxcost.errors import TraceError

META_KEY = "fxcost"  # the one key fxcost keeps on FX nodes


class HierarchyTracer(fx.Tracer):
    """An FX tracer that remembers which module it was in when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: str | None = None

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
    return str(path)


def trace(model: nn.Module, concrete_args: dict[str, Any] | None = None) -> tuple[nn.Module, fx.Graph]:
    """Symbolically trace ``model`` (a weightless copy) into a graph whose targets are paths in
    the returned root.

    The root is ``model`` itself, unless ``model`` is a standard layer (``nn.Conv2d`` analyzed on
    its own): FX would trace into its forward, so it becomes the one child of an empty root,
    named by its class, and the graph is a single call of it. No GraphModule is built: an
    Interpreter runs the graph against the root, which saves generating and compiling code.
    """
    tracer = HierarchyTracer()
    if tracer.is_leaf_module(model, ""):
        return _single_layer(model)
    try:
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as e:
        where = tracer.failed_in
        place = f"module {where!r} ({type(model.get_submodule(where)).__name__})" if where else type(model).__name__
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TraceError(
            f"torch.fx could not trace {place}: {first}",
            hint="this usually means Python control flow on tensor values; simplify that forward, "
            "or wait for the fallback tracers (see the README's limitations)",
        ) from e
    _annotate(graph)
    return model, graph


def _single_layer(layer: nn.Module) -> tuple[nn.Module, fx.Graph]:
    name = type(layer).__name__
    root = nn.Module()
    root.add_module(name, layer)
    graph = fx.Graph()
    params = inspect.signature(layer.forward).parameters.values()
    args = [graph.placeholder(p.name, default_value=p.default) for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out = graph.call_module(name, tuple(args))
    graph.output(out)
    _annotate(graph)
    return root, graph


def _annotate(graph: fx.Graph) -> None:
    for node in graph.nodes:
        node.meta[META_KEY] = {"module_path": module_path(node)}
