"""The library's entry points: :func:`analyze`, :func:`sweep` and :func:`compare`."""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_any, tree_flatten, tree_map

from fxcost.conventions import Convention, get_convention
from fxcost.costs import (
    build_rows,
    build_segment_rows,
    class_name,
    memory_summary,
    segments_from_records,
    unsupported_ops,
)
from fxcost.errors import FxcostError, InputSpecError, ShapeError, TraceError, UnsupportedOpError
from fxcost.model import Comparison, ComparisonRow, Edge, InputSpec, NodeCost, Report, Sweep, TensorSpec
from fxcost.propagate import (
    ModuleRunError,
    ModuleStack,
    OpRecorder,
    RecordingInterpreter,
    failure_message,
    hint_for,
    is_data_dependent,
    output_specs,
    run_eager,
)
from fxcost.shadow import fakeify, has_lazy_modules, has_meta_weights, meta_copy
from fxcost.spec import dtype_name
from fxcost.trace import TRACERS, export, symbolic

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


def meta_tensor(x: Any) -> Any:
    """``x`` as a meta tensor of the same shape, stride and dtype (anything else as it is)."""
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta") if isinstance(x, torch.Tensor) else x


def _fake(x: Any, fake_mode: FakeTensorMode) -> Any:
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


def _has_tensor(value: Any) -> bool:
    return tree_any(lambda x: isinstance(x, torch.Tensor), value)


def _bind(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    sig = inspect.signature(forward)
    try:
        return sig.bind(*args, **kwargs)
    except TypeError as e:
        raise InputSpecError(
            f"the inputs do not fit forward{sig}: {e}",
            hint="give one --input shape per positional argument of forward (joined by commas), "
            "--input name=SHAPE for a keyword tensor and --kwarg name=VALUE for other keywords",
        ) from None


def _graph_inputs(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Order the inputs as forward's parameters (and so the graph's placeholders); arguments with
    no tensor in them (flags, ``mask=None`` defaults) become concrete values for the tracer."""
    bound = _bind(forward, args, kwargs)
    bound.apply_defaults()
    values, concrete = [], {}
    for name, p in bound.signature.parameters.items():
        value = bound.arguments.get(name)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "*" if p.kind == p.VAR_POSITIONAL else "**"
            owner = getattr(forward, "__qualname__", "forward")
            raise TraceError(f"{owner} takes {stars}{name}, which torch.fx cannot trace as inputs")
        if not _has_tensor(value):
            concrete[name] = value
        values.append(value)
    return values, concrete


def _input_specs(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[InputSpec]:
    """Every tensor among the inputs, named by its parameter and its place in a nested input
    (``batch.image``, ``xs.1``)."""
    specs: list[InputSpec] = []

    def walk(name: str, v: Any) -> None:
        if isinstance(v, torch.Tensor):
            specs.append(InputSpec(name, tuple(int(d) for d in v.shape), dtype_name(v.dtype)))
        elif isinstance(v, dict):
            for k, item in v.items():
                walk(f"{name}.{k}", item)
        elif isinstance(v, (tuple, list)):
            for i, item in enumerate(v):
                walk(f"{name}.{i}", item)

    for name, value in _bind(forward, args, kwargs).arguments.items():
        walk(name, value)
    return specs


def _shape_error(e: ModuleRunError, what: str) -> ShapeError:
    place = f"layer {e.path!r} ({type(e.module).__name__})" if e.path else f"{type(e.module).__name__}.forward"
    return ShapeError(
        failure_message(place, e.shapes, e.cause, what),
        module_path=e.path,
        input_shapes=e.shapes,
        hint=hint_for(e.cause),
    )


@contextlib.contextmanager
def _naming_module(what: str) -> Iterator[None]:
    try:
        yield
    except ModuleRunError as e:
        raise _shape_error(e, what) from e.cause


def _run_eagerly(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> None:
    """Run ``model`` (fxcost's own copy) once; on failure, name the innermost module that was
    running and the shapes that reached it."""
    with _naming_module(what), ModuleStack(model, include_self=True) as stack, stack.naming_failures(), torch.no_grad():
        model(*args, **kwargs)


@dataclass
class _Run:
    """What one tracing method produced."""

    rows: list[NodeCost]
    edges: list[Edge]
    outputs: tuple[TensorSpec, ...]
    trace: dict[str, Any]
    mode: str


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
    tracer: str = "auto",
    leaves: Sequence[str] = (),
) -> Report:
    """Analyze ``model`` without running it for real, and return a :class:`Report`.

    ``input_size`` is one shape or a list of shapes (float32); ``example_inputs`` a tensor or a
    tuple of positional arguments (real, fake or meta tensors, or nested dicts/lists of them:
    only shapes and dtypes are used); ``example_kwargs`` keyword arguments (tensors or plain
    values). ``real=True`` runs real tensors on a copy of the model. ``strict=True`` raises
    :class:`UnsupportedOpError` when an op has no formula.

    ``tracer`` picks how the model becomes a graph: ``"auto"`` (symbolic tracing, keeping
    untraceable submodules opaque; else ``torch.export``; else running op by op),
    ``"symbolic"``, ``"export"`` or ``"eager"``. ``leaves`` names modules (paths or class names)
    to keep whole: one row per call, its ops still counted (FX does not trace into them). The report's ``trace`` says which method ran, which modules
    were opaque and why, and why earlier methods failed. The model is never modified: analysis
    runs on a weightless copy (a full copy with ``real``).
    """
    if not isinstance(model, nn.Module):
        raise InputSpecError(f"analyze() needs an nn.Module, got {type(model).__name__}", hint="pass the model object, e.g. fxcost.analyze(MyNet(), input_size=(1, 3, 224, 224))")
    if tracer not in TRACERS:
        raise InputSpecError(f"unknown tracer {tracer!r}", hint=f"one of: {', '.join(TRACERS)}")
    conv = get_convention(convention) if isinstance(convention, str) else convention
    args = _normalize_inputs(input_size, example_inputs)
    kwargs = dict(example_kwargs or {})
    if not args and not kwargs:
        raise InputSpecError("no inputs given", hint="pass input_size=(1, 3, 224, 224) or --input 1x3x224x224")
    prepare = _prepare_real if real else prepare_meta
    leaf_paths = _leaf_paths(model, leaves)
    recorder = OpRecorder(conv.registry)
    methods = ("symbolic", "export", "eager") if tracer == "auto" else (tracer,)
    fallbacks: list[dict[str, str]] = []
    errors: list[FxcostError] = []
    for i, method in enumerate(methods):
        # a fresh copy for each method: a failed attempt may have left state on the last one
        shadow, margs, mkwargs = prepare(model, args, kwargs)
        inputs = _input_specs(shadow.forward, margs, mkwargs)
        try:
            run = _METHODS[method](shadow, margs, mkwargs, recorder, conv, inputs, leaf_paths, real)
            break
        except FxcostError as e:
            errors.append(e)
            if isinstance(e, TraceError) and i < len(methods) - 1:
                fallbacks.append({"tracer": method, "error": e.message})
                continue
            if fallbacks:
                raise _all_failed(type(model).__name__, methods, errors) from e
            raise
    if fallbacks:
        run.trace["fallbacks"] = fallbacks
    unsupported = unsupported_ops(run.rows)
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
        layers=tuple(run.rows),
        memory=memory_summary(run.rows, inputs, conv),
        unsupported=tuple(unsupported),
        trace=run.trace,
        module_types=_module_types(shadow),
        mode=run.mode,
        outputs=run.outputs,
        edges=tuple(run.edges),
    )


def _with_fake_retry(
    shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], real: bool,
    attempt: Callable[[tuple[Any, ...], dict[str, Any], Any], _Run],
) -> _Run:
    """Meta tensors first: no data, and several times faster than FakeTensorMode. A forward that
    makes CPU tensors of its own (``torch.zeros(3)``) cannot mix them with meta ones, so it runs
    again on fake tensors, which have a device but no data. A genuine shape error fails there
    again, with the same message."""
    try:
        return attempt(args, kwargs, contextlib.nullcontext())
    except ShapeError as e:
        if real or not _needs_fake(e):  # real tensors have a device already: nothing to retry
            raise
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    fakeify(shadow, fake_mode)
    fake_args, fake_kwargs = tree_map(lambda x: _fake(x, fake_mode), (args, kwargs))
    run = attempt(fake_args, fake_kwargs, fake_mode)
    run.mode = "fake"
    return run


def _symbolic(shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], recorder: OpRecorder,
              conv: Convention, inputs: list[InputSpec], leaves: set[str], real: bool) -> _Run:
    _, concrete = _graph_inputs(shadow.forward, args, kwargs)

    def attempt(a: tuple[Any, ...], kw: dict[str, Any], context: Any) -> _Run:
        vals, _ = _graph_inputs(shadow.forward, a, kw)
        with recorder:  # ops run while tracing (on buffers or constants alone) are folded into constants
            traced = symbolic(shadow, concrete_args=concrete or None, leaves=leaves, each_attempt=recorder.take)
        folded = recorder.take()
        interp = RecordingInterpreter(traced.root, traced.graph, recorder, opaque=set(traced.opaque))
        with _naming_module("propagating shapes"), context, torch.no_grad(), recorder:
            out = interp.run(*vals)
        trace: dict[str, Any] = {"method": traced.method, "graph_nodes": len(traced.graph.nodes)}
        if traced.opaque:
            trace["opaque"] = [{"module": p, "type": type(traced.root.get_submodule(p)).__name__, "reason": r}
                               for p, r in traced.opaque.items()]
        rows, edges = build_rows(traced.root, interp.records, conv, folded=folded)
        return _Run(rows, edges, output_specs(out), trace, "real" if real else "meta")

    return _with_fake_retry(shadow, args, kwargs, real, attempt)


def _leaf_paths(model: nn.Module, leaves: Sequence[str]) -> set[str]:
    """The paths of the modules the user asked to keep whole, by path or class name."""
    paths = set()
    for name in leaves:
        found = {p for p, m in model.named_modules() if p and (p == name or type(m).__name__ == name)}
        if not found:
            some = ", ".join(dict.fromkeys(type(m).__name__ for _, m in model.named_modules()).keys() - {type(model).__name__})
            raise InputSpecError(f"--leaf {name!r} matches no submodule of {type(model).__name__}",
                                 hint=f"give a module path (layer1.0) or a class name: {some[:200]}")
        paths |= found
    # a leaf inside another leaf is already whole
    return {p for p in paths if not any(p.startswith(q + ".") for q in paths)}


def _all_failed(model: str, methods: Sequence[str], errors: list[FxcostError]) -> FxcostError:
    """Every tracer failed: say why each did. When the last one failed for want of tensor values
    (transformers' mask code, run eagerly on meta), export's reason is usually the real one."""
    lines = "\n".join(f"  {m}: {e.message}" for m, e in zip(methods, errors, strict=False))
    hint = errors[-1].hint
    exported = [e for m, e in zip(methods, errors, strict=False) if m == "export"]
    if exported and errors[-1].__cause__ is not None and is_data_dependent(errors[-1].__cause__) and exported[0].__cause__:
        hint = hint_for(exported[0].__cause__)
    return ShapeError(f"no tracer could analyze {model}:\n{lines}", hint=hint)


def _export(shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], recorder: OpRecorder,
            conv: Convention, inputs: list[InputSpec], leaves: set[str], real: bool) -> _Run:
    # export flattens keyword arguments in forward's order
    order = list(inspect.signature(shadow.forward).parameters)
    kwargs = {k: kwargs[k] for k in sorted(kwargs, key=lambda k: order.index(k) if k in order else len(order))}
    with recorder:
        traced = export(shadow, args, kwargs)
    recorder.take()  # export runs the forward once to trace it; that run is not the analysis
    flat = tree_flatten((args, kwargs))[0]
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(flat) != len(placeholders):
        raise TraceError(f"torch.export's graph takes {len(placeholders)} inputs where fxcost has {len(flat)}")
    interp = RecordingInterpreter(traced.runner or shadow, traced.graph, recorder)
    with _naming_module("propagating shapes"), torch.no_grad(), recorder:
        out = interp.run(*flat)
    segments, flow = segments_from_records(shadow, interp.records, leaves)
    trace = {"method": "export", "graph_nodes": len(traced.graph.nodes)}
    rows, edges = build_segment_rows(shadow, inputs, segments, flow, conv)
    return _Run(rows, edges, output_specs(out), trace, "real" if real else "meta")


def _eager(shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], recorder: OpRecorder,
           conv: Convention, inputs: list[InputSpec], leaves: set[str], real: bool) -> _Run:
    def attempt(a: tuple[Any, ...], kw: dict[str, Any], context: Any) -> _Run:
        with _naming_module("running the model op by op"), context, torch.no_grad(), recorder:
            segments, flow, out = run_eager(shadow, a, kw, recorder, leaves)
        trace = {"method": "eager", "segments": len(segments)}
        rows, edges = build_segment_rows(shadow, inputs, segments, flow, conv)
        return _Run(rows, edges, output_specs(out), trace, "real" if real else "meta")

    return _with_fake_retry(shadow, args, kwargs, real, attempt)


_METHODS: dict[str, Callable[..., _Run]] = {"symbolic": _symbolic, "export": _export, "eager": _eager}


def _module_types(model: nn.Module) -> dict[str, str]:
    """Class names by module path (a lazy module by the class it becomes)."""
    return {path: class_name(m) for path, m in model.named_modules() if path}


def _needs_fake(error: ShapeError) -> bool:
    """A meta run failed because the forward mixed in tensors of another device (or an op has no
    meta kernel): worth a retry on fake tensors. A shape error would only fail again."""
    cause = error.__cause__
    if cause is None or is_data_dependent(cause):
        return False
    text = str(cause)
    return isinstance(cause, NotImplementedError) or "device" in text or "meta" in text


def prepare_meta(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    """A weightless meta copy of ``model`` in eval mode, lazy layers materialized, and the
    inputs as meta tensors."""
    shadow = meta_copy(model)
    shadow.eval()
    meta_args, meta_kwargs = tree_map(meta_tensor, (args, kwargs))
    if has_lazy_modules(shadow):  # one unrecorded run lets lazy layers infer their shapes
        _run_eagerly(shadow, meta_args, meta_kwargs, "inferring lazy layer shapes")
    return shadow, meta_args, meta_kwargs


def _prepare_real(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    if has_meta_weights(model):
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
    real_args, real_kwargs = tree_map(realize, (args, kwargs))
    if has_lazy_modules(shadow):
        _run_eagerly(shadow, real_args, real_kwargs, "inferring lazy layer shapes")
    return shadow, real_args, real_kwargs


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
