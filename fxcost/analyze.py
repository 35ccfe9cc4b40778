"""The library's entry points: :func:`analyze`, :func:`sweep` and :func:`compare`."""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_map

from fxcost.conventions import Convention, get_convention
from fxcost.costs import build_rows, memory_summary, unsupported_ops
from fxcost.errors import FxcostError, InputSpecError, ShapeError, UnsupportedOpError
from fxcost.model import Comparison, ComparisonRow, InputSpec, Report, Sweep
from fxcost.propagate import NodeRecord, OpRecorder, RecordingInterpreter, hint_for
from fxcost.shadow import fakeify, has_lazy_modules, meta_copy
from fxcost.spec import dtype_name
from fxcost.trace import trace

Shape = Sequence[int]


def _is_shape(x: Any) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and len(x) > 0 and all(isinstance(d, int) for d in x)


def _normalize_inputs(input_size: Any, example_inputs: Any) -> tuple[Any, ...]:
    """Positional inputs as a tuple of tensors (meta placeholders for bare shapes) and values."""
    if input_size is not None and example_inputs is not None:
        raise InputSpecError("give input_size or example_inputs, not both", hint="input_size for bare shapes, example_inputs for tensors")
    if input_size is not None:
        shapes = [input_size] if _is_shape(input_size) else list(input_size)
        if not shapes or not all(_is_shape(s) for s in shapes):
            raise InputSpecError(
                f"input_size must be a shape like (1, 3, 224, 224) or a list of shapes, got {input_size!r}"
            )
        if any(d <= 0 for s in shapes for d in s):
            raise InputSpecError(f"every dimension of input_size must be positive, got {input_size!r}", hint="e.g. input_size=(1, 3, 224, 224)")
        return tuple(torch.empty(tuple(s), device="meta") for s in shapes)
    if example_inputs is None:
        return ()
    return tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def _meta(x: Any) -> Any:
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta") if isinstance(x, torch.Tensor) else x


def _fake(x: Any, fake_mode: FakeTensorMode) -> Any:
    if not isinstance(x, torch.Tensor):
        return x
    with fake_mode:
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="cpu")


def _realize(x: Any) -> Any:
    """A real tensor for ``--real``: the user's own if it has data, else random of that shape."""
    if not isinstance(x, torch.Tensor):
        return x
    if x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor):
        return x
    if x.dtype.is_floating_point or x.dtype.is_complex:
        return torch.randn(x.shape, dtype=x.dtype)
    return torch.zeros(x.shape, dtype=x.dtype)


def _has_tensor(value: Any) -> bool:
    found = False

    def visit(x: Any) -> Any:
        nonlocal found
        found = found or isinstance(x, torch.Tensor)
        return x

    tree_map(visit, value)
    return found


def _bind(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], list[str], dict[str, Any]]:
    """Order the inputs as forward's parameters (and so the graph's placeholders); arguments with
    no tensor in them (flags, ``mask=None`` defaults) become concrete values for the tracer."""
    sig = inspect.signature(forward)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise InputSpecError(
            f"the inputs do not fit forward{sig}: {e}",
            hint="give one --input shape per positional argument of forward, joined by commas",
        ) from None
    bound.apply_defaults()
    values, names, concrete = [], [], {}
    for name, p in sig.parameters.items():
        value = bound.arguments.get(name)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InputSpecError(
                f"forward{sig} takes *{name}: fxcost's tracer needs named arguments",
                hint="wrap the model in a module whose forward names each input",
            )
        if not _has_tensor(value):
            concrete[name] = value
        values.append(value)
        names.append(name)
    return values, names, concrete


def _run_eagerly(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> None:
    """Run ``model`` (fxcost's own copy) once; on failure, name the innermost module that was
    running and the shapes that reached it. Hooks go on the copy only and are removed after."""
    running: list[tuple[str, nn.Module, tuple[tuple[int, ...], ...]]] = []

    def enter(path: str) -> Any:
        def hook(m: nn.Module, inputs: tuple[Any, ...]) -> None:
            running.append((path, m, tuple(tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor))))
        return hook

    def leave(m: nn.Module, inputs: Any, output: Any) -> None:
        running.pop()

    handles = []
    for path, m in model.named_modules():
        if path:
            handles += [m.register_forward_pre_hook(enter(path)), m.register_forward_hook(leave)]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except Exception as e:
        failed = running[-1:]
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if failed:
            path, m, shapes = failed[0]
            place = f"layer {path!r} ({type(m).__name__})"
        else:
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            place = type(model).__name__
        shown = ", ".join("x".join(map(str, s)) for s in shapes) or "no tensors"
        raise ShapeError(
            f"{place} failed on input shape {shown} while {what}: {first}",
            module_path=failed[0][0] if failed else "",
            input_shapes=shapes,
            hint=hint_for(e),
        ) from e
    finally:
        for h in handles:
            h.remove()


def analyze(
    model: nn.Module,
    input_size: Shape | Sequence[Shape] | None = None,
    example_inputs: Any = None,
    example_kwargs: dict[str, Any] | None = None,
    convention: str | Convention = "fxcost",
    *,
    real: bool = False,
    strict: bool = False,
    name: str | None = None,
) -> Report:
    """Analyze ``model`` without running it for real, and return a :class:`Report`.

    ``input_size`` is one shape or a list of shapes (float32); ``example_inputs`` a tensor or a
    tuple of positional arguments (real, fake or meta tensors: only shapes and dtypes are used);
    ``example_kwargs`` keyword arguments. ``real=True`` runs real tensors on a copy of the model.
    ``strict=True`` raises :class:`UnsupportedOpError` when an op has no formula. The model is
    never modified: analysis runs on a weightless copy (a full copy with ``real``).
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(f"analyze() needs an nn.Module, got {type(model).__name__}", hint="pass the model object, e.g. fxcost.analyze(MyNet(), input_size=(1, 3, 224, 224))")
    conv = get_convention(convention) if isinstance(convention, str) else convention
    args = _normalize_inputs(input_size, example_inputs)
    kwargs = dict(example_kwargs or {})
    if not args and not kwargs:
        raise InputSpecError("no inputs given", hint="pass input_size=(1, 3, 224, 224) or --input 1x3x224x224")
    recorder = OpRecorder(conv.registry)
    if real:
        shadow, args, kwargs = _prepare_real(model, args, kwargs)
        root, graph, values, names = _trace_and_bind(shadow, args, kwargs, recorder)
        folded = recorder.take()
        records = _propagate(root, graph, values, recorder, contextlib.nullcontext())
        mode = "real"
    else:
        shadow, args, kwargs = _prepare_meta(model, args, kwargs)
        root, graph, values, names = _trace_and_bind(shadow, args, kwargs, recorder)
        folded = recorder.take()
        try:
            # Meta tensors first: no data, and several times faster than FakeTensorMode.
            records = _propagate(root, graph, values, recorder, contextlib.nullcontext())
            mode = "meta"
        except ShapeError as e:
            if not _needs_fake(e):
                raise
            # A forward that makes CPU tensors of its own (torch.zeros(3)) cannot mix them with
            # meta ones; FakeTensorMode gives every tensor a device without data. A genuine
            # shape error fails here again, with the same message.
            fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
            fakeify(shadow, fake_mode)
            root, graph, values, names = _trace_and_bind(shadow, args, kwargs, recorder)
            folded = recorder.take()
            records = _propagate(root, graph, [tree_map(lambda x: _fake(x, fake_mode), v) for v in values], recorder, fake_mode)
            mode = "fake"
    inputs = [
        InputSpec(n, tuple(int(d) for d in v.shape), dtype_name(v.dtype))
        for n, v in zip(names, values, strict=True)
        if isinstance(v, torch.Tensor)
    ]
    rows = build_rows(root, records, conv, folded=folded)
    unsupported = unsupported_ops(rows)
    if strict and unsupported:
        listed = "; ".join(f"{u.op} in {u.where!r} (x{u.count})" for u in unsupported[:10])
        raise UnsupportedOpError(
            f"{len(unsupported)} unsupported op use(s): {listed}",
            hint="drop --strict to get a report that lists them, or add a formula (docs/conventions.md)",
        )
    return Report(
        model=name or type(model).__name__,
        convention=conv.name,
        inputs=tuple(inputs),
        layers=tuple(rows),
        memory=memory_summary(rows, inputs, conv),
        unsupported=tuple(unsupported),
        trace={"method": "symbolic_trace", "graph_nodes": len(graph.nodes)},
        module_types=_module_types(root),
        mode=mode,
    )


def _module_types(model: nn.Module) -> dict[str, str]:
    """Class names by module path; a lazy module is named by the class it becomes."""
    out = {}
    for path, m in model.named_modules():
        if path:
            out[path] = (getattr(m, "cls_to_become", None) or type(m)).__name__
    return out


def _needs_fake(error: ShapeError) -> bool:
    """A meta run failed because the forward mixed in tensors of another device (or an op has no
    meta kernel): worth a retry on fake tensors. A shape error would only fail again."""
    cause = error.__cause__
    text = str(cause)
    return isinstance(cause, NotImplementedError) or "device" in text or "meta" in text


def _prepare_meta(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    """A weightless meta copy of ``model`` in eval mode, lazy layers materialized, and the
    inputs as meta tensors."""
    shadow = meta_copy(model)
    shadow.eval()
    meta_args, meta_kwargs = tree_map(_meta, (args, kwargs))
    if has_lazy_modules(shadow):  # one unrecorded run lets lazy layers infer their shapes
        _run_eagerly(shadow, meta_args, meta_kwargs, "inferring lazy layer shapes")
    return shadow, meta_args, meta_kwargs


def _prepare_real(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    if any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()]):
        raise InputSpecError(
            f"{type(model).__name__} has parameters on the meta device, which --real cannot run",
            hint="drop --real: fxcost's default analysis needs no weights",
        )
    try:
        shadow = copy.deepcopy(model)
    except Exception as e:
        raise FxcostError(
            f"--real cannot copy {type(model).__name__}: {type(e).__name__}: {e}",
            hint="make the model deep-copyable, or drop --real",
        ) from e
    shadow.eval()
    real_args, real_kwargs = tree_map(_realize, (args, kwargs))
    if has_lazy_modules(shadow):
        _run_eagerly(shadow, real_args, real_kwargs, "inferring lazy layer shapes")
    return shadow, real_args, real_kwargs


def _propagate(root: nn.Module, graph: fx.Graph, values: list[Any], recorder: OpRecorder, context: Any) -> list[NodeRecord]:
    interp = RecordingInterpreter(root, graph, recorder)
    with context, torch.no_grad(), recorder:
        interp.run(*values)
    return interp.records


def _trace_and_bind(
    shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], recorder: OpRecorder
) -> tuple[nn.Module, fx.Graph, list[Any], list[str]]:
    values, names, concrete = _bind(shadow.forward, args, kwargs)
    with recorder:  # ops run while tracing (on buffers or constants alone) are folded into constants
        root, graph = trace(shadow, concrete_args=concrete or None)
    return root, graph, values, names


def sweep(model: nn.Module, input_sizes: Sequence[Any], **kwargs: Any) -> Sweep:
    """Analyze one model at several input sizes (each item: a shape or a tuple of inputs)."""
    reports = []
    for item in input_sizes:
        if isinstance(item, torch.Tensor) or (isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor)):
            reports.append(analyze(model, example_inputs=item, **kwargs))
        else:
            reports.append(analyze(model, input_size=item, **kwargs))
    return Sweep(tuple(reports))


COMPARED_METRICS = ("params", "macs", "flops", "activation_elements")


def compare(a: Report, b: Report, metrics: Sequence[str] = COMPARED_METRICS) -> Comparison:
    """Two reports side by side: each metric in total and split by layer type."""
    ta, tb = a.by_type(), b.by_type()
    types = list(dict.fromkeys([r.type for r in ta.layers] + [r.type for r in tb.layers]))
    rows = []
    for metric in metrics:
        rows.append(ComparisonRow(metric, "all", getattr(a.total(), metric), getattr(b.total(), metric)))
        for t in types:
            va = sum(getattr(r, metric) for r in ta.layers if r.type == t)
            vb = sum(getattr(r, metric) for r in tb.layers if r.type == t)
            if va or vb:
                rows.append(ComparisonRow(metric, t, va, vb))
    return Comparison(a, b, tuple(rows))


__all__ = ["analyze", "compare", "sweep"]
