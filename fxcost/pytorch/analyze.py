"""The PyTorch route's entry point: :func:`analyze` a model, and :func:`sweep` it over input sizes.

A weightless working copy of the model (:mod:`fxcost.pytorch.working_copy`) becomes a graph by
the first tracer that can follow it (:mod:`fxcost.pytorch.tracers`); the graph runs on meta
tensors under the op recorder, and its records become the report's rows
(:mod:`fxcost.pytorch.rows`).
"""

from __future__ import annotations

import contextlib
import inspect
import random
import sys
import threading
import types
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_flatten, tree_map

from fxcost.counting.arithmetic import Shape
from fxcost.counting.conventions import Convention, get_convention
from fxcost.counting.registry import FormulaRegistry
from fxcost.counting.rows import memory_summary, unsupported_ops
from fxcost.errors import (
    FxcostError,
    InputSpecError,
    InternalError,
    ShapeError,
    TraceError,
    UnsupportedOpError,
    first_line,
)
from fxcost.pytorch.aten import default_registry
from fxcost.pytorch.backward import run_backward
from fxcost.pytorch.diagnosis import (
    Cause,
    all_failed,
    classify,
    failed_op,
    naming_module,
    needs_fake,
    raised_in,
    user_line,
    values_read,
)
from fxcost.pytorch.eager import ModuleCall, ModuleStack, run_eager
from fxcost.pytorch.inputs import (
    cast,
    float_dtypes,
    graph_inputs,
    input_specs,
    leaf_paths,
    normalize_inputs,
    prepare_meta,
    prepare_real,
    signature,
)
from fxcost.pytorch.interpreter import NodeRecord, RecordingInterpreter
from fxcost.pytorch.known import buffer_values, given_values, knowing, real_buffers
from fxcost.pytorch.memory import LiveBytes, storage_bytes
from fxcost.pytorch.oplog import OpLog
from fxcost.pytorch.recorder import DispatchMode, OpRecorder, OpTagger, run_tagged
from fxcost.pytorch.rows import call_graph_rows, calls_from_export, class_name, graph_rows
from fxcost.pytorch.sizes import (
    Dims,
    Lookups,
    Symbols,
    has_letters,
    lettered_sizes,
    lettered_text,
    other_sides,
    parse_hints,
    parse_ranges,
    peak_candidates,
    sized_inputs,
    symbolic_report,
)
from fxcost.pytorch.step import (
    AMP_DTYPES,
    DEFAULT_OPTIMIZER,
    StepRunner,
    checkpoint_paths,
    fit_batch,
    optimizer_for,
    parse_shard,
    parse_size,
    peak_memory,
    shard,
    wrap_checkpoints,
)
from fxcost.pytorch.tensors import dtype_name, fake_tensor, output_specs, parse_dtype, tensors_in, with_tensors
from fxcost.pytorch.tracers import META_KEY, HierarchyTracer, Traced, export, quiet_logs, symbolic
from fxcost.pytorch.working_copy import Hook, dense_encoders, fakeify, has_meta_weights, hook_in, hooks_of, users_hooks
from fxcost.report.formulas import largest_of, mapped
from fxcost.report.kinds import AUTO, TRACERS, Analysis, Method, Mode
from fxcost.report.records import (
    Edge,
    Fallback,
    InputSpec,
    OpaqueModule,
    OpCost,
    PeakMemory,
    Row,
    SizeFit,
    TensorSpec,
    TraceInfo,
    merge_ops,
)
from fxcost.report.report import Report, Sweep


@dataclass
class _Job:
    """One tracer's attempt: the working copy, its inputs, and how to count."""

    shadow: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    recorder: OpRecorder
    convention: Convention
    inputs: list[InputSpec]
    leaves: set[str]
    real: bool
    train: bool = False
    recompute: tuple[str, ...] = ()  # modules under activation checkpointing: their forward runs again in the backward
    #: the inputs whose values fxcost knows, as ``(input as held, value)`` (:func:`given_values`)
    known: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    #: the caller's model's buffers that have values, by name (:func:`real_buffers`)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the letters of a symbolic analysis: its inputs' sizes (:mod:`fxcost.pytorch.sizes`)
    dims: Dims | None = None

    @property
    def mode(self) -> Mode:
        return Mode.REAL if self.real else Mode.META

    def grad(self) -> Any:
        """Gradients on for a training step's forward, off for inference."""
        return torch.enable_grad() if self.train else torch.no_grad()

    def with_backward(self, records: list[NodeRecord], output: Any) -> list[NodeRecord]:
        """The records, each with the backward ops of the autograd nodes it made (``train``)."""
        if not self.train:
            return records
        found = self._backward(output)
        out = []
        for rec in records:
            path = rec.node.meta.get(META_KEY, {}).get("module_path", "")
            ops = self._backward_of(found, rec.node.name, path, (*rec.ops, *(o for c in rec.calls for o in c.ops)))
            if ops and rec.calls:  # an opaque module: its first call carries them
                first = rec.calls[0]
                rec = replace(rec, calls=(replace(first, ops=merge_ops((*first.ops, *ops))), *rec.calls[1:]))
            elif ops:
                rec = replace(rec, ops=merge_ops((*rec.ops, *ops)))
            out.append(rec)
        _none_left(found, "the graph")
        return out

    def calls_with_backward(self, calls: list[ModuleCall], output: Any) -> list[ModuleCall]:
        """The fake run's calls, each with the backward ops of the autograd nodes it made (tagged
        with its key)."""
        found = self._backward(output)
        out = []
        for call in calls:
            ops = self._backward_of(found, str(call.key), call.module_path, call.ops)
            out.append(replace(call, ops=merge_ops((*call.ops, *ops))) if ops else call)
        _none_left(found, "the model's calls")
        return out

    def _backward(self, output: Any) -> dict[str, tuple[OpCost, ...]]:
        with torch.enable_grad():
            return run_backward(output, self.recorder)

    def _backward_of(self, found: dict[str, tuple[OpCost, ...]], tag: str, path: str,
                     forward: tuple[OpCost, ...]) -> tuple[OpCost, ...]:
        """The backward ops tagged ``tag`` (taken out of ``found``), and where the module at ``path``
        is under activation checkpointing, its ``forward`` ops again: they run again in the backward."""
        ops = found.pop(tag, ())
        if self.recompute and _inside_any(path, self.recompute):
            ops = (*(replace(o, backward=True) for o in forward if not o.backward), *ops)
        return ops


def _none_left(found: dict[str, tuple[OpCost, ...]], where: str) -> None:
    """Backward ops of an output nothing in ``where`` made (a loss of an input returned as it is)."""
    if found:
        raise TraceError(f"backward ops outside {where}: {', '.join(sorted(found))}")


def _inside_any(path: str, modules: Sequence[str]) -> bool:
    return any(path == m or path.startswith(m + ".") for m in modules)


@dataclass
class _Counted:
    """What one tracer produced."""

    rows: list[Row]
    edges: list[Edge]
    outputs: tuple[TensorSpec, ...]
    trace: TraceInfo
    mode: Mode
    peak: PeakMemory | None = None
    #: where the forward read a value known from the inputs alone (:class:`KnownValues`)
    reads: tuple[str, ...] = ()
    #: the letters of a symbolic run (:mod:`fxcost.pytorch.sizes`), whose sizes its figures are expressions of
    symbols: Symbols | None = None
    #: a symbolic run's lookups at positions made from a size: conditions of its domain (:class:`Lookups`)
    lookups: tuple[str, ...] = ()


class _Measure:
    """The live bytes of the inference forward run inside ``with`` (a training step's peak is
    measured on a step of its own: :func:`_step_peak`): :attr:`peak` after the block, None for a
    training step."""

    def __init__(self, job: _Job, inputs: Any, recorder: OpRecorder) -> None:
        self.train, self.recorder = job.train, recorder
        weights = {id(t): t for t in [*job.shadow.parameters(), *job.shadow.buffers()]}
        self.params = [t for t in weights.values() if isinstance(t, nn.Parameter)]
        self.buffers = [t for t in weights.values() if not isinstance(t, nn.Parameter)]
        self.inputs = [t for t in tree_flatten(list(inputs))[0] if isinstance(t, torch.Tensor)]
        self.live: LiveBytes | None = None
        self.peak: PeakMemory | None = None

    def __enter__(self) -> _Measure:
        if not self.train:
            self.live = self.recorder.memory = LiveBytes([*self.params, *self.buffers, *self.inputs])
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.memory = None
        live = self.live
        if live is None or exc[0] is not None:
            return
        resident = storage_bytes([*self.params, *self.buffers, *self.inputs])
        p, b = storage_bytes(self.params), storage_bytes(self.buffers)
        self.peak = PeakMemory("inference", resident + live.peak, p, b, resident - p - b,
                               live.peak - live.peak_temporaries, live.peak_temporaries, live.peak_at)


def analyze(model: nn.Module, input_size: Shape | Sequence[Shape] | None = None, example_inputs: Any = None,
            example_kwargs: dict[str, Any] | None = None, convention: str | Convention = "fxcost", **options: Any) -> Report:
    """The PyTorch route's analysis of ``model``: :meth:`Request.of` checks the arguments
    (:func:`fxcost.api.analyze` documents each), :func:`run` does the work."""
    return run(model, Request.of(input_size, example_inputs, example_kwargs, convention, **options))


@dataclass(frozen=True)
class Request:
    """One analysis as asked, validated once, before any copy of the model is made: what every
    stage reads (:func:`run` documents the stages)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: the inputs were given as bare shapes (``input_size``): nothing to run for real
    shapes_only: bool
    convention: Convention
    real: bool
    strict: bool
    name: str | None
    methods: tuple[Method, ...]  # the tracers to try, in order
    leaves: tuple[str, ...]
    registry: FormulaRegistry
    dtype: torch.dtype | None
    train: bool
    step: _Step
    traffic: bool
    profile: Any  # a counting.devices.Device, the roofline's (``device``)
    #: measure the peak memory (the memory stage); fxcost llm skips it where it reads only counts
    memory: bool = True
    #: keep every op of the trace, in order (the report's ``trace.ops``)
    ops: bool = False
    #: run the user's forward hooks on the working copy (torch's own always run)
    hooks: bool = False
    #: the letters of a symbolic analysis (inputs sized ``B``, ``S``...): figures are expressions of them
    dims: Dims | None = None
    #: this analysis is another piece of a symbolic one (the other side of a size branch): no pieces of its own
    piece: bool = False

    @classmethod
    def of(cls, input_size: Shape | Sequence[Shape] | None, example_inputs: Any, example_kwargs: dict[str, Any] | None,
           convention: str | Convention, *, real: bool = False, strict: bool = False, name: str | None = None,
           tracer: str | Method = "auto", leaves: Sequence[str] = (), registry: FormulaRegistry | None = None,
           dtype: torch.dtype | str | None = None, train: bool = False, optimizer: str | None = None, amp: str | None = None,
           checkpoint: Sequence[str] = (), shard: str | None = None, fit: int | str | None = None, traffic: bool = False,
           device: str | None = None, ops: bool = False, hooks: bool = False, hint: Any = None,
           dims: Any = None) -> Request:
        """:func:`analyze`'s arguments, checked: :class:`InputSpecError` for any that does not fit."""
        from fxcost.counting.devices import device as device_profile

        profile = device_profile(device) if device else None
        step = _Step.of(train, optimizer, amp, checkpoint, shard, fit)
        if tracer != "auto" and tracer not in TRACERS:
            raise InputSpecError(f"unknown tracer {tracer!r}", hint=f"one of: {', '.join(['auto', *TRACERS])}")
        rules = get_convention(convention)
        lettered = None if isinstance(dims, Dims) else lettered_sizes(input_size, parse_hints(hint), parse_ranges(dims))
        if lettered is not None:
            input_size, dims = lettered
        if isinstance(dims, Dims):
            tracer = _symbolic_tracer(tracer, real)
        elif hint or dims:
            raise InputSpecError("--hint and dims name letters, and no input size has one",
                                 hint="write a letter for a size that varies: --input BxS:int64, input_size=('B', 3, 224, 224)")
        args = normalize_inputs(input_size, example_inputs)
        kwargs = dict(example_kwargs or {})
        if not args and not kwargs:
            raise InputSpecError("no inputs given", hint="pass input_size=(1, 3, 224, 224) or --input 1x3x224x224")
        return cls(args, kwargs, input_size is not None, rules, real, strict, name,
                   AUTO if tracer == "auto" else (Method(tracer),), (leaves,) if isinstance(leaves, str) else tuple(leaves),
                   registry or default_registry(), _dtype(dtype), train, step, traffic or profile is not None, profile,
                   ops=ops, hooks=hooks, dims=dims if isinstance(dims, Dims) else None)


def _symbolic_tracer(tracer: str | Method, real: bool) -> Method:
    """A symbolic analysis runs on fake tensors op by op (the fake run): torch.fx's and
    torch.export's graphs are of one size."""
    if real:
        raise InputSpecError("a size written as a letter has no real tensor to run", hint="give numbers with --real")
    if tracer not in ("auto", Method.EAGER, "eager"):
        raise InputSpecError(f"sizes written as letters are followed by the fake run (--tracer eager), not {tracer}",
                             hint="drop --tracer, or give numbers")
    return Method.EAGER


def run(model: nn.Module, request: Request) -> Report:
    """The analysis of ``model`` as ``request`` asks, in stages, each a function of the last one's
    product: the working copy and its trace, priced and made rows by the first tracer that follows
    the forward (:func:`_traced` -> :class:`_Done`), the memory (:func:`_peak`), the report
    (:func:`_report`). Where the data-free run fails for want of values and the caller gave real
    inputs and weights, it runs again on them, and says so."""
    with _ONE_AT_A_TIME, isolated(), _callers_rng_kept(request.real), _warnings_kept() as kept:
        try:
            try:
                return kept(_run(model, request))
            except FxcostError as e:
                if request.real or not _values_decide(e) or not _real_data(model, request):
                    raise
                op = failed_op(e)
                why = f"{op.name} on data-free tensors" if op is not None else (f"at {user_line(e)}" if user_line(e) else first_line(e))
                try:
                    with _callers_rng_kept(True):
                        report = _run(model, replace(request, real=True))
                except Exception:
                    raise e from None  # the real run failed too: the data-free failure is the one to show
            note = (f"ran on real tensors: the path depends on tensor values ({why}), and the inputs and "
                    f"weights given are real, so the given values decided it; other values may take another path")
            return kept(replace(report, trace=replace(report.trace, notes=(*report.trace.notes, note))))
        except RecursionError as e:  # a model nested deeper than Python lets fxcost (or torch) follow
            raise FxcostError(
                f"{type(model).__name__} nests deeper than Python's recursion limit ({sys.getrecursionlimit()}) lets the "
                f"analysis follow: {first_line(e)}",
                hint="raise the limit (sys.setrecursionlimit(10_000)) before analyzing, or analyze a part of the model",
            ) from None


@contextlib.contextmanager
def _warnings_kept() -> Iterator[Callable[[Report], Report]]:
    """The warnings raised while the model is analyzed (torch.export's about attributes it saw
    assigned, a deprecation in the model's own code) are kept in the report's trace, each once,
    instead of reaching the caller's terminal about a copy the caller never sees: the yielded
    function puts them in. (``warnings.catch_warnings`` is process-wide: analyses take turns.)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def kept(report: Report) -> Report:
            found = dict.fromkeys(f"{w.category.__name__}: {first_line(w.message)}" for w in caught)  # type: ignore[arg-type]
            return replace(report, trace=replace(report.trace, warnings=(*report.trace.warnings, *found))) if found else report
        yield kept


def _run(model: nn.Module, request: Request) -> Report:
    _refuse_model(model)
    done = _traced(model, request)
    if done.run.symbols is not None:
        peaks, guards, notes = _symbolic_peaks(model, request, done)
        report = _report(model, request, done, None, [*_notes(done, request.dtype), *notes])
        report = symbolic_report(report, done.run.symbols, peaks, guards, done.run.lookups)
        return _fitted(model, request, _with_pieces(model, request, report))
    peak, notes = _peak(model, request, done)
    return _report(model, request, done, peak, [*_notes(done, request.dtype), *notes])


def _with_pieces(model: nn.Module, request: Request, report: Report) -> Report:
    """A symbolic report with its other pieces: for each branch the forward took on one letter
    (a condition of its domain on that letter alone), the analysis run again at that letter's
    nearest size on the other side; where that run fails or fixes the letter, a note says why."""
    dims = request.dims
    if dims is None or report.sizes is None or request.piece:
        return report
    pieces: list[Report] = []
    notes: list[str] = []
    for letter, size, condition in other_sides(report.sizes, dims):
        other = replace(request, dims=replace(dims, hints={**dims.hints, letter: size}), piece=True)
        try:
            pieces.append(_run(model, other))
        except FxcostError as e:
            notes.append(f"where {condition} fails ({letter} = {size}, run at): {e.message.splitlines()[0]}; each size "
                         f"there is its own analysis")
    trace = replace(report.trace, notes=(*report.trace.notes, *notes))
    return replace(report, pieces=tuple(p for i, p in enumerate(pieces) if p.sizes not in [q.sizes for q in pieces[:i]]),
                   trace=trace)


def _fitted(model: nn.Module, request: Request, report: Report) -> Report:
    """``--fit`` with letters: for each letter, the largest size whose peak fits (the others at
    their hints), solved on the peak's expressions (:func:`largest`), then confirmed by analyses
    at that size and the next."""
    limit, sizes, dims = request.step.fit, report.sizes, request.dims
    if limit is None or sizes is None or dims is None or request.piece or not report.peaks:
        return report
    hints = dict(zip(sizes.letters, sizes.hints, strict=True))
    fits = []
    for letter in sizes.letters:
        n = largest_of(report, letter, hints, limit)
        if n is None:
            fits.append(SizeFit(letter, 0, limit, 0, 0, 0, 0, tuple(hints.items())))
            continue
        formula, measured = [], []
        for size in (n, n + 1):
            values = {**hints, letter: size}
            try:
                formula.append(int(report.at(**values).peak_memory.peak_bytes))  # type: ignore[union-attr]
            except ValueError:  # the next size is outside every piece's domain
                formula.append(0)
            a, kw = sized_inputs(dims, request.args, request.kwargs, values)
            concrete = replace(request, args=a, kwargs=kw, dims=None, piece=True, methods=(Method.EAGER,),
                               step=replace(request.step, fit=None))
            try:
                peak = _run(model, concrete).peak_memory
                measured.append(peak.peak_bytes if peak is not None else 0)
            except FxcostError:
                measured.append(0)
        fits.append(SizeFit(letter, n, limit, formula[0], formula[1], measured[0], measured[1],
                            tuple((k, v) for k, v in hints.items() if k != letter)))
    return replace(report, sizes=replace(sizes, fits=tuple(fits)))


def _symbolic_peaks(model: nn.Module, request: Request, done: _Done) -> tuple[tuple[PeakMemory, ...], list[str], list[str]]:
    """A symbolic analysis's peak memory: the step (or the forward) run once more on fake tensors
    sized by the letters, each distinct total of live bytes a candidate, those no other is proved
    to reach first kept (:func:`peak_candidates`); the peak at a size is the first largest of them
    there (:meth:`Report.at`). Also the guards that run recorded, and notes. Where the step cannot
    run, no peak, and a note says why."""
    if not request.memory:
        return (), [], ["no peak memory: not asked for"]
    assert request.dims is not None
    step, train = request.step, request.train
    symbols = Symbols(request.dims)
    shadow, a, kw = cast(prepare_meta(model, request.args, request.kwargs, done.skipped), request.dtype)
    if train:
        shadow.train()
        _drop_backward_hooks(shadow)
        wrap_checkpoints(shadow, done.job.recompute)
    mode, a, kw = _faked(shadow, a, kw, "cpu", symbols)
    runner = StepRunner(shadow, optimizer=step.optimizer, amp=step.amp, context=mode, train=train)
    runner.symbolic = True
    try:
        with naming_module("measuring the memory on symbolic sizes"), quiet_logs("torch._subclasses.fake_tensor"):
            runner.peak(a, kw)
    except (FxcostError, InternalError):
        raise
    except Exception as e:
        return (), [], [f"no peak memory: the step does not run on symbolic sizes ({lettered_text(first_line(e), symbols)})"]
    found = [peak_memory(p, train=train, optimizer=step.optimizer, amp=step.amp, checkpointed=done.job.recompute)
             for p in runner.candidates]
    found = [mapped(p, symbols.expr) for p in found]
    kept = peak_candidates([p.peak_bytes for p in found])
    note = (f"peak memory: the first largest of {len(kept)} totals of live bytes (of {len(found)} the run reached), "
            "which is the largest depending on the sizes; report.at() picks it at a size"
            + ("; a training step's second step, no timeline" if train else ""))
    return tuple(found[i] for i in kept), symbols.guards(), [note]


def _drop_backward_hooks(model: nn.Module) -> list[str]:
    """Take the caller's backward hooks off the working copy (they would see data-free gradients,
    and could record them where the caller looks): the modules that had some."""
    found = []
    for path, m in model.named_modules():
        if m._backward_hooks or m._backward_pre_hooks:
            m._backward_hooks.clear()
            m._backward_pre_hooks.clear()
            found.append(path or type(model).__name__)
    return found


def _values_decide(e: FxcostError) -> bool:
    """The analysis failed for want of values: the forward reads them, runs an op whose output
    shape depends on them (``nonzero``, ``torch.where(mask)``), or packs a sequence by its
    lengths (``pack_padded_sequence`` wants them on the CPU). Any other failure, a shape error
    above all, real tensors would meet again: it is not worth a copy of the weights and a real run."""
    if isinstance(e, (InputSpecError, UnsupportedOpError)):
        return False
    return classify(e) in (Cause.DATA_DEPENDENT, Cause.NEEDS_VALUES) or _in_packing(e)


def _in_packing(e: BaseException) -> bool:
    """The failure came from torch's sequence packing (torch/nn/utils/rnn.py), which reads lengths."""
    return raised_in(e, "torch/nn/utils/rnn.py")


def _real_data(model: nn.Module, request: Request) -> bool:
    """The caller gave values: real (not meta, not fake) input tensors and a model with weights."""
    if request.shapes_only or has_meta_weights(model):
        return False
    tensors = [x for x in tree_flatten((request.args, request.kwargs))[0] if isinstance(x, torch.Tensor)]
    return bool(tensors) and all(x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor)
                                 for x in tensors)


@contextlib.contextmanager
def _callers_rng_kept(real: bool) -> Iterator[None]:
    """A real run draws random inputs (and the model may draw more): the caller's torch and
    Python random streams are put back as they were, so that an analysis does not change what
    their code draws next."""
    if not real:
        yield
        return
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(state)


def _refuse_lazy_forward(model: nn.Module, out: Any = None) -> None:
    """A forward that is a generator or a coroutine runs no code when called: a report of it
    would count nothing and pass any budget."""
    forward = getattr(type(model), "forward", None)
    lazy = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
    if isinstance(out, lazy) or any(f(forward) for f in (inspect.isgeneratorfunction, inspect.iscoroutinefunction,
                                                           inspect.isasyncgenfunction)):
        kind = "an async function" if inspect.iscoroutinefunction(forward) or isinstance(out, types.CoroutineType) else "a generator"
        raise InputSpecError(
            f"{type(model).__name__}.forward is {kind}: calling it computes nothing until it is iterated or awaited, "
            "so there is nothing to count",
            hint="analyze a module whose forward returns its tensors (wrap the loop that consumes it in a module)",
        )


#: torch.fx's symbolic tracing patches torch.nn.Module.__call__ process-wide while it traces, so
#: two analyses at once would trace each other's modules: they take turns
_ONE_AT_A_TIME = threading.RLock()


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """The caller's context set aside: inference mode off (composite ops decompose again), and the
    caller's dispatch and function modes popped (a FakeTensorMode of theirs, a FlopCounterMode),
    all put back on exit."""
    from torch.utils._python_dispatch import _disable_current_modes

    functions = [torch._C._pop_torch_function_stack() for _ in range(torch._C._len_torch_function_stack())]
    try:
        with torch.inference_mode(False), _disable_current_modes():
            yield
    finally:
        for mode in reversed(functions):
            torch._C._push_on_torch_function_stack(mode)


def _report(model: nn.Module, request: Request, done: _Done, peak: PeakMemory | None, notes: list[str]) -> Report:
    """The report stage: the rows, the memory and what the trace says, as one :class:`Report`
    (drawn on the device's roofline where ``device`` asked for one)."""
    run, job = done.run, done.job
    report = Report(
        model=request.name or type(model).__name__,
        convention=request.convention.name,
        inputs=tuple(job.inputs),
        layers=tuple(run.rows),
        memory=memory_summary(run.rows, job.inputs, request.convention),
        unsupported=tuple(unsupported_ops(run.rows, request.strict)),
        trace=replace(run.trace, fallbacks=done.fallbacks, notes=(*run.trace.notes, *notes),
                      ops=job.recorder.log.take() if job.recorder.log is not None else ()),
        module_types={path: class_name(m) for path, m in job.shadow.named_modules() if path},
        mode=run.mode,
        outputs=run.outputs,
        edges=tuple(run.edges),
        peak_memory=peak,
        analysis=Analysis.TRAIN if request.train else Analysis.INFERENCE,
        traffic=request.traffic,
    )
    return _on(request.profile, report) if request.profile is not None else report


def _refuse_model(model: Any) -> None:
    """The load stage's check: what no tracer can analyze, refused before any copy is made."""
    if not isinstance(model, nn.Module):
        raise InputSpecError(f"analyze() needs an nn.Module, got {type(model).__name__}", hint="pass the model object, e.g. fxcost.analyze(MyNet(), input_size=(1, 3, 224, 224))")
    if isinstance(model, torch.jit.ScriptModule):  # its forward runs in TorchScript's interpreter: no module calls to follow
        raise InputSpecError(
            f"{type(model).__name__} is a TorchScript module (torch.jit.script or trace): fxcost follows a Python forward, and "
            f"TorchScript's interpreter runs this one out of its sight",
            hint="analyze the nn.Module it was scripted from; TorchScript functions inside a Python model are counted",
        )
    _refuse_lazy_forward(model)


@dataclass
class _Done:
    """The trace stage's product: the first tracer's count that succeeded, its job, and what was
    set aside on the way (tracers that failed, hooks that fail on data-free tensors)."""

    run: _Counted
    job: _Job
    fallbacks: tuple[Fallback, ...]
    skipped: dict[Hook, str]
    dense: list[str]
    backward_hooks: list[str]


def _traced(model: nn.Module, request: Request) -> _Done:
    """The load and trace stages: each tracer of the request in turn on a fresh working copy,
    until one counts the model; a user's hook that fails on data-free tensors is set aside and the
    same tracer tried again."""
    methods, prepare = request.methods, prepare_real if request.real else prepare_meta
    recorder = OpRecorder(request.registry)
    recorder.traffic = request.traffic
    leaves = leaf_paths(model, request.leaves)
    fallbacks: list[Fallback] = []
    errors: list[FxcostError] = []
    # hooks taken off the copy, and why: the user's (unless asked to run them), and those that fail
    # on data-free tensors
    skipped: dict[Hook, str] = {} if request.hooks else dict.fromkeys(users_hooks(model), _USERS)
    i = 0
    while True:
        try:
            # a fresh copy for each attempt: a failed one may have left state on the last copy
            shadow, margs, mkwargs = cast(prepare(model, request.args, request.kwargs, skipped), request.dtype)
            dense = dense_encoders(shadow)
            backward_hooks = []
            recompute = checkpoint_paths(shadow, request.step.checkpoint) if request.step.checkpoint else ()
            known = () if request.real else tuple(given_values((request.args, request.kwargs), (margs, mkwargs)))
            job = _Job(shadow, margs, mkwargs, recorder, request.convention, input_specs(shadow.forward, margs, mkwargs),
                       leaves, request.real, request.train, recompute, known, {} if request.real else real_buffers(model),
                       request.dims)
            recorder.log, recorder.where = (OpLog() if request.ops else None), ""  # a failed attempt's ops are dropped
            if job.train:
                shadow.train()
                backward_hooks = _drop_backward_hooks(shadow)
            run = _STRATEGIES[methods[i]](job)
            return _Done(run, job, tuple(fallbacks), skipped, dense, backward_hooks)
        except FxcostError as e:
            hook = hook_in(e, model)  # the copy's hooks are the model's, by the same keys
            if hook is not None and hook not in skipped:  # the same tracer again, without that hook
                skipped[hook] = f"it fails on data-free tensors ({first_line(e.__cause__ or e)})"
                continue
            errors.append(e)
            if isinstance(e, TraceError) and i < len(methods) - 1:
                fallbacks.append(Fallback(methods[i], e.message))
                i += 1
                continue
            # the fake run follows the forward as Python runs it: where it fails on the input, that is
            # the failure (the routes tried before it are the report's trace, not the user's problem)
            own = methods[i] is Method.EAGER and not _values_decide(e)
            failure = all_failed(type(model).__name__, methods, errors) if fallbacks and not own else e
            _dtype_hint(failure, model, request.args, request.kwargs, request.dtype)
            _not_the_input(failure, model, request, skipped)
            if failure is e:
                raise
            raise failure from e


_USERS = ("the model's own hooks do not run in an analysis, which runs the forward several times on fake tensors "
          "(hooks=True, --hooks, runs them)")


class _Provenance(DispatchMode):
    """Which tensors come from the model's inputs (by identity, through every op), and whether
    the op that raised was given one of them."""

    def __init__(self, inputs: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.derived = {id(t): weakref.ref(t) for t in inputs}
        self.blamed: bool | None = None  # None: no op raised

    def _from_input(self, t: torch.Tensor) -> bool:
        made = self.derived.get(id(t))
        return made is not None and made() is t

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        mine = any(self._from_input(t) for t in tensors_in((args, kwargs)))
        try:
            out = run_tagged(func, args, kwargs)
        except Exception:
            if self.blamed is None:
                self.blamed = mine
            raise
        if mine:
            for t in tensors_in(out):
                self.derived[id(t)] = weakref.ref(t)
        return out


#: causes whose hint sends the user to --input: said only where the op that failed was given a
#: tensor that came from the input
_INPUT_CAUSES = (Cause.FEATURES, Cause.CHANNELS, Cause.TOO_SMALL, Cause.OTHER)


def _not_the_input(failure: FxcostError, model: nn.Module, request: Request, skipped: dict[Hook, str]) -> None:
    """A failure whose hint blames ``--input`` keeps it only if the op that raised was given a
    tensor computed from the inputs: the forward runs once more on fake tensors, following which
    tensors come from them. Where none did (a tensor the model makes with sizes of its own), the
    hint says so instead. A failure that is not an op's, or a run that cannot be repeated, keeps
    its hint."""
    cause = failure.__cause__
    if request.real or request.dims is not None or not isinstance(failure, ShapeError) or cause is None \
            or failed_op(failure) is None or classify(cause) not in _INPUT_CAUSES:  # a symbolic run's failure is its own
        return
    try:
        shadow, a, kw = cast(prepare_meta(model, request.args, request.kwargs, skipped), request.dtype)
        mode, a, kw = _faked(shadow, a, kw, "meta")
        watch = _Provenance(tensors_in((a, kw)))
        with contextlib.suppress(Exception), mode, watch, quiet_logs("torch._subclasses.fake_tensor"):
            shadow(*a, **kw)
    except Exception:  # the copy itself failed: nothing to add
        return
    if watch.blamed is False:
        failure.hint = ("the operand that does not fit was made by the model itself, not computed from --input (a size "
                        "written in its code, a tensor it creates): look at the line above; --debug shows the full traceback")


def _notes(done: _Done, as_dtype: torch.dtype | None) -> list[str]:
    """What the report's trace says about how the count was made."""
    job = done.job
    notes = [f"hooks that ran: {', '.join(map(str, ran))}" for ran in [hooks_of(job.shadow)] if ran]
    users = [str(h) for h, why in done.skipped.items() if why == _USERS]
    if users:
        notes.append(f"hooks not run: {', '.join(users)}: {_USERS}")
    notes += [f"hook not run: {h}: {why}" for h, why in done.skipped.items() if why != _USERS]
    if done.dense:
        notes.append(f"nn.TransformerEncoder {', '.join(done.dense)}: the dense path is counted; with a src_key_padding_mask, "
                     f"inference (eval, no gradients) takes a nested-tensor fast path that computes only the unpadded "
                     f"positions, fewer than counted")
    if done.backward_hooks:
        notes.append(f"backward hooks not run (they expect real gradients): {', '.join(done.backward_hooks)}")
    if job.train:
        notes.append("a training step: the forward in train mode with gradients on, then the backward of the first "
                     "floating-point output cast to float32 and summed (counted in the layer that made that output)")
    if as_dtype is not None:
        notes.append(f"analyzed as {dtype_name(as_dtype)}: the floating-point weights, buffers and inputs cast")
    if done.run.reads:
        notes.append(_READ_NOTE + "; ".join(r or "(a line outside the model's code)" for r in done.run.reads))
    return notes


_READ_NOTE = ("the path depends on values computed from the inputs alone, which fxcost knows (an integer input made "
              "from a shape is zeros, as --real makes it; a given tensor and the model's buffers have their own values), "
              "so it read them: ")


def _peak(model: nn.Module, request: Request, done: _Done) -> tuple[PeakMemory | None, list[str]]:
    """The memory stage: the peak the count measured, or one measured on a run of its own (a
    training step's, a batch that fits, a forward the count did not measure), and its notes."""
    train, job = request.train, done.job
    peak, notes = done.run.peak, []
    if not request.memory:
        return None, ["no peak memory: not asked for"]
    if train or request.step.fit is not None:
        peak = _step_peak(model, request, done, peak)
    elif peak is None:  # measured on its own forward run (the export and eager tracers'); where it cannot run, none
        try:
            peak = _step_peak(model, request, done, None)
        except FxcostError as e:
            notes.append(f"no peak memory: the forward could not run eagerly on fake tensors ({first_line(e)})")
    if train and peak is not None:
        notes.append(f"peak memory: the second of two training steps ({peak.optimizer}"
                     + (f", autocast {peak.amp}" if peak.amp else "") + ") on fake tensors; the step as a function "
                     "whose output and loss live until it returns")
    if job.recompute:
        notes.append(f"activation checkpointing: {', '.join(job.recompute)} recomputed in the backward (their forward "
                     "ops counted again, in the backward columns)")
    return peak, notes


def _on(profile: Any, report: Report) -> Report:
    """The report with its roofline drawn on ``profile`` at the dtype its heaviest layer computes in
    (the dtype of that row's output)."""
    heaviest = max(report.layers, key=lambda r: r.flops, default=None)
    floats = [o.dtype for o in (heaviest.output if heaviest else ()) if o.dtype.startswith(("float", "bfloat"))]
    return replace(report, hardware=profile.at(floats[0] if floats else "float32"))


@dataclass(frozen=True)
class _Step:
    """How a training step's memory is measured (``analyze``'s optimizer, amp, checkpoint, shard
    and fit), checked before any tracing."""

    optimizer: str
    amp: str | None
    checkpoint: tuple[str, ...]
    shard: tuple[str, int] | None
    fit: int | None

    @staticmethod
    def of(train: bool, optimizer: str | None, amp: str | None, checkpoint: Sequence[str], shard: str | None,
           fit: int | str | None) -> _Step:
        if not train:
            given = [f for f, v in (("optimizer", optimizer), ("amp", amp), ("checkpoint", checkpoint), ("shard", shard)) if v]
            if given:
                raise InputSpecError(f"{', '.join(given)} only apply to a training step",
                                     hint="add --train (train=True), or leave them out")
        optimizer_for(optimizer or DEFAULT_OPTIMIZER)
        if amp is not None and amp not in AMP_DTYPES:
            raise InputSpecError(f"unknown --amp {amp!r}", hint=f"one of: {', '.join(AMP_DTYPES)}")
        if isinstance(checkpoint, str):
            checkpoint = (checkpoint,)
        return _Step(optimizer or DEFAULT_OPTIMIZER, amp, tuple(checkpoint), parse_shard(shard) if shard else None,
                     parse_size(fit) if fit is not None else None)


def _step_peak(model: nn.Module, request: Request, done: _Done, inference: PeakMemory | None) -> PeakMemory:
    """A training step's peak memory (``train``), or the forward's where ``inference`` (the
    peak measured while counting) is not given, and the largest batch that fits (``fit``), on a
    fresh working copy whose tensors are fake (real where the analysis ran on values)."""
    prepare = prepare_real if request.real else prepare_meta
    train, step, mode, recompute = request.train, request.step, done.run.mode, done.job.recompute
    shadow, a, kw = cast(prepare(model, request.args, request.kwargs, done.skipped), request.dtype)
    if train:
        shadow.train()
        _drop_backward_hooks(shadow)
        wrap_checkpoints(shadow, recompute)
    context: Any = None
    if mode is not Mode.REAL:
        held = (a, kw)
        context, a, kw = _faked(shadow, a, kw)
        if done.run.reads:  # the count followed known values: so does this run
            context = knowing(context, tuple(given_values((request.args, request.kwargs), held)), held, (a, kw),
                              buffer_values(shadow, done.job.buffers))
    elif step.fit is not None:
        raise InputSpecError("--fit sizes batches on data-free tensors, and this analysis ran on real values",
                             hint="drop --fit, or give input shapes rather than real inputs")
    runner = StepRunner(shadow, optimizer=step.optimizer, amp=step.amp, context=context, train=train)
    doing = "measuring a training step's memory" if train else "measuring the forward's memory"
    try:
        with naming_module(doing):
            found = runner.peak(a, kw) if train or inference is None else None
            fitted = fit_batch(runner, a, kw, step.fit) if step.fit is not None else None
    except (FxcostError, InternalError):
        raise
    except Exception as e:
        raise ShapeError(f"{doing} failed on fake tensors: {first_line(e)}", source=user_line(e),
                         hint="the counts need only shapes, the memory a real step: --real runs it on real tensors") from e
    if found is None and inference is not None:
        return replace(inference, fit=fitted)
    assert found is not None
    sharded = shard(found, *step.shard) if step.shard else None
    return peak_memory(found, train=train, optimizer=step.optimizer, amp=step.amp, checkpointed=recompute, fit=fitted,
                       sharded=sharded)


def _faked(shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
           device: str = "cpu", symbols: Symbols | None = None) -> tuple[FakeTensorMode, tuple[Any, ...], dict[str, Any]]:
    """A FakeTensorMode, ``shadow``'s weights swapped for its fake tensors on ``device``, and the
    inputs as fake tensors too (inside objects that hold them, a KV cache; asking for a gradient
    where the input did); with ``symbols``, the mode of their ShapeEnv and inputs sized by the letters."""
    mode = symbols.mode() if symbols is not None else FakeTensorMode(allow_non_fake_inputs=True)
    fakeify(shadow, mode, device)
    if symbols is not None:
        a, kw = symbols.inputs(mode, args, kwargs, device)
        return mode, a, kw
    a, kw = tree_map(lambda x: with_tensors(x, lambda t: _keep_grad(t, fake_tensor(t, mode, device))), (args, kwargs))
    return mode, a, kw


def _keep_grad(x: Any, fake: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.requires_grad and fake.is_floating_point():
        return fake.requires_grad_(True)
    return fake


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return parse_dtype(dtype)


def _dtype_hint(e: FxcostError, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                dtype: torch.dtype | None) -> None:
    """A failure of a model whose float inputs are not its weights' dtype says how to line them up."""
    weights, inputs = float_dtypes(model, args, kwargs)
    if dtype is not None or len(weights) != 1 or not inputs or inputs == weights:
        return
    (have,) = weights
    e.hint = (f"the inputs are {', '.join(sorted(inputs))} and the weights {have}: --dtype {sorted(inputs)[0]} analyzes "
              f"the model as cast to it, or give the inputs as {have} (--input SHAPE:{have})")


def _with_fake_retry(job: _Job, attempt: Callable[[tuple[Any, ...], dict[str, Any], Any], _Counted], *,
                     meta_fakes: bool = False) -> _Counted:
    """Meta tensors first: no data (plain ones, several times faster than FakeTensorMode; or with
    ``meta_fakes`` fake ones on the meta device: the fake run, :func:`_eager`). A forward that
    makes CPU tensors of its own (``torch.zeros(3)``) cannot mix them with meta ones, so it runs
    again on fake CPU tensors, which have a device but no data. A genuine shape error fails there
    again, with the same message. Real tensors (``real``) run as they are."""
    try:
        if meta_fakes and not job.real:
            return _fake_attempt(job, attempt, "meta")
        return attempt(job.args, job.kwargs, contextlib.nullcontext())
    except ShapeError as e:
        if job.real or not needs_fake(e):  # real tensors have a device already: nothing to retry
            raise
    return _fake_attempt(job, attempt, "cpu")


def _fake_attempt(job: _Job, attempt: Callable[[tuple[Any, ...], dict[str, Any], Any], _Counted], device: str) -> _Counted:
    """The fake run. Where it fails for want of values, it runs again following the values fxcost
    knows (:mod:`fxcost.pytorch.known`: those of the inputs and of what is computed from them
    alone), and fails there only if the value read is not one of them."""
    if job.dims is not None:
        return _symbolic_attempt(job, attempt, device)
    mode, a, kw = _faked(job.shadow, job.args, job.kwargs, device)
    try:
        with quiet_logs("torch._subclasses.fake_tensor"):  # it logs a traceback per kernel that raises: fxcost says why
            run = attempt(a, kw, mode)
        run.mode = Mode.FAKE
        return run
    except ShapeError as e:  # a TraceError sends the analysis to the next tracer, as it did
        if not values_read(e):
            raise
    # again, outside the handler: a failure of this run is its own, not chained to the first one's
    mode, a, kw = _faked(job.shadow, job.args, job.kwargs, device)
    context = knowing(mode, job.known, (job.args, job.kwargs), (a, kw), buffer_values(job.shadow, job.buffers))
    with quiet_logs("torch._subclasses.fake_tensor"):
        run = attempt(a, kw, context)
    run.reads = tuple(dict.fromkeys(context.known.reads))
    run.mode = Mode.FAKE
    return run


def _symbolic_attempt(job: _Job, attempt: Callable[[tuple[Any, ...], dict[str, Any], Any], _Counted],
                      device: str) -> _Counted:
    """The fake run on sizes that are the letters' symbols (:mod:`fxcost.pytorch.sizes`); its
    input rows sized by them. A symbolic size has no values to know: a failure is the run's,
    said in the letters."""
    assert job.dims is not None
    symbols = Symbols(job.dims)
    mode, a, kw = _faked(job.shadow, job.args, job.kwargs, device, symbols)
    job.inputs = input_specs(job.shadow.forward, a, kw)
    lookups = Lookups(symbols)
    try:
        with quiet_logs("torch._subclasses.fake_tensor"):
            run = attempt(a, kw, _within(mode, lookups))
    except FxcostError as e:
        e.message = lettered_text(e.message, symbols)
        e.hint = (f"{e.hint}; " if e.hint else "") + _FIXED_HINT
        raise
    run.mode, run.symbols, run.lookups = Mode.FAKE, symbols, tuple(dict.fromkeys(lookups.conditions))
    return run


class _within:  # noqa: N801 (a context manager, named as contextlib's)
    """``outer`` entered, then ``inner`` inside it (a mode that sees what reaches the fake mode);
    entered as often as the attempt enters its context (the forward, then the backward)."""

    def __init__(self, outer: Any, inner: Any) -> None:
        self.parts, self.stacks = (outer, inner), []  # type: ignore[var-annotated]

    def __enter__(self) -> None:
        stack = contextlib.ExitStack()
        for part in self.parts:
            stack.enter_context(part)
        self.stacks.append(stack)

    def __exit__(self, *exc: Any) -> None:
        self.stacks.pop().__exit__(*exc)


_FIXED_HINT = ("a size given as a letter may be one the model needs fixed (a weight's width, a position table's "
               "length): give that dimension as a number, or another --hint")


def _symbolic(job: _Job) -> _Counted:
    _, concrete = graph_inputs(job.shadow.forward, job.args, job.kwargs)
    recorder = job.recorder

    def attempt(a: tuple[Any, ...], kw: dict[str, Any], context: Any) -> _Counted:
        vals, _ = graph_inputs(job.shadow.forward, a, kw)
        with recorder:  # ops run while tracing (on buffers or constants alone) are folded into constants
            traced = symbolic(job.shadow, concrete_args=concrete or None, leaves=job.leaves, each_attempt=recorder.take)
        folded = recorder.take()
        interp = RecordingInterpreter(traced.root, traced.graph, recorder, opaque=set(traced.opaque), train=job.train)
        with naming_module("propagating shapes"), context, job.grad(), recorder:
            out = interp.run(*vals)
        with naming_module("running the backward"), context:
            records = job.with_backward(interp.records, out)
        with context, job.grad():
            peak = _same_path(job, traced, interp.records, folded, a, kw)
        opaque = tuple(OpaqueModule(p, type(traced.root.get_submodule(p)).__name__, r) for p, r in traced.opaque.items())
        trace = TraceInfo(traced.method, graph_nodes=len(traced.graph.nodes), opaque=opaque)
        rows, edges = graph_rows(traced.root, records, job.convention, folded=folded)
        return _Counted(rows, edges, output_specs(out), trace, job.mode, peak)

    try:
        return _with_fake_retry(job, attempt)
    except ShapeError as e:
        raise _at_its_line(e, lambda: symbolic(job.shadow, concrete_args=concrete or None, leaves=job.leaves,
                                               stack_traces=True)) from e.__cause__


def _same_path(job: _Job, traced: Traced, records: list[NodeRecord], folded: tuple[OpCost, ...],
               args: tuple[Any, ...], kwargs: dict[str, Any]) -> PeakMemory | None:
    """Symbolic tracing follows the branch a Proxy takes, not the one the input takes: a forward
    with ``if isinstance(cond, torch.Tensor):``, a check of ``None``-ness or of an attribute of
    an input, can lose or add work without an error. So the forward runs once more, op by op on
    the same inputs, and the graph must have dispatched the same aten ops (in-place variants as
    their out-of-place ops) and called the same modules as often; else :class:`TraceError`, and
    ``auto`` moves on to a tracer that follows the forward's own path.

    That run is the forward as Python runs it, so it is also where the peak memory is measured
    (returned; None for a training step, measured on a step of its own): a local variable holds its tensor until it is reassigned or its function
    returns, which a graph, freeing each value after its last read, does not see."""
    graph_ops: Counter[str] = Counter()
    for o in (*folded, *(o for r in records for o in (*r.ops, *(o for c in r.calls for o in c.ops)))):
        graph_ops[_plain(o.op)] += o.count  # an opaque module's ops are in its calls
    leaves = Counter(str(r.node.target) for r in records if r.node.op == "call_module")
    counter = OpRecorder(job.recorder.registry, job.recorder.shapes)
    calls: Counter[str] = Counter()
    watched = {path for path, _ in _leaves_of(job.shadow, HierarchyTracer(traced.opaque, job.leaves))}

    def entered(path: str, m: nn.Module, inputs: Any) -> None:
        if path in watched:
            calls[path] += 1
        if counter.memory is not None and path:  # the module the memory's peak is in
            counter.memory.where = path

    try:
        # a training graph runs under saved-tensor hooks (interpreter.py), which spare autograd some
        # detach ops: the forward runs under the same hooks, to dispatch what the graph did
        saving = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t) if job.train else contextlib.nullcontext()
        with ModuleStack(job.shadow, include_self=True) as modules, counter, _Measure(job, (args, kwargs), counter) as measure, saving:
            modules.on_enter = entered
            job.shadow(*args, **kwargs)
    except InternalError:
        raise
    except Exception as e:  # the graph ran where the forward does not: it took another path
        raise TraceError(f"torch.fx's graph ran, but the forward fails on these inputs: {first_line(e)}",
                         hint="the forward's own path is what counts: --tracer eager shows where it fails",
                         source=user_line(e)) from e
    forward_ops: Counter[str] = Counter()
    for o in counter.take():
        forward_ops[_plain(o.op)] += o.count
    if traced.root is not job.shadow:  # a standard layer analyzed alone: its one call is the graph
        leaves = calls
    differ = [f"module {p!r} called {leaves[p]} time(s) in the graph, {calls[p]} in the forward"
              for p in sorted(leaves.keys() | calls.keys()) if leaves[p] != calls[p]]
    differ += [f"{op} x{graph_ops[op]} in the graph, x{forward_ops[op]} in the forward"
               for op in sorted(graph_ops.keys() | forward_ops.keys()) if graph_ops[op] != forward_ops[op]]
    if differ:
        raise TraceError(
            "torch.fx's graph takes another path than the forward does on these inputs (a branch on an input's "
            f"type, None-ness or attributes): {'; '.join(differ[:4])}" + (f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""),
            hint="fxcost moves on to the fake run, the forward once on fake tensors (--tracer auto); "
            "--tracer symbolic insists on the graph",
        )
    return measure.peak


def _leaves_of(model: nn.Module, tracer: HierarchyTracer) -> list[tuple[str, nn.Module]]:
    """The modules the graph calls as single nodes (standard layers, opaque and --leaf modules),
    none inside another."""
    found: list[tuple[str, nn.Module]] = []
    paths: set[str] = set()
    containers = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)  # never called: not nodes
    for path, m in model.named_modules():
        if not path or isinstance(m, containers) or any(a in paths for a in _ancestors(path)):
            continue
        if tracer.is_leaf_module(m, path):
            found.append((path, m))
            paths.add(path)
    return found


def _ancestors(path: str) -> Iterator[str]:
    """``a.b.c`` -> ``a``, ``a.b``: the paths of the modules around it."""
    at = path.find(".")
    while at != -1:
        yield path[:at]
        at = path.find(".", at + 1)


def _plain(op: str) -> str:
    """An in-place op as its out-of-place one (``aten::add_`` -> ``aten::add``): FX may record
    ``x += y`` as an add."""
    return op[:-1] if op.endswith("_") and not op.endswith("__") else op


def _at_its_line(e: ShapeError, retrace: Callable[[], Traced]) -> ShapeError:
    """``e`` with the user's line of the node that failed, when its traceback has none (a
    standard layer's call, an exported node): ``retrace`` traces the graph again, recording each
    node's source line (a second trace, so only for the error the user gets)."""
    if not e.node or e.source or e.__cause__ is None:
        return e
    try:
        traced = retrace()
    except FxcostError:
        return e
    node = next((n for n in traced.graph.nodes if n.name == e.node), None)
    e.source = user_line(e.__cause__, node.stack_trace if node is not None else None)
    return e


def _refuse_data_dependent(traced: Traced) -> None:
    """torch.export traces an op whose output shape depends on values (``nonzero``,
    ``torch.where(mask)``) with an unbacked size; data-free tensors cannot price what follows,
    so the export fails as a trace (``--tracer export`` asked for it: the fake run, ``auto``'s
    second tracer, stops at such an op and names it)."""
    for node in traced.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in val.shape):
            raise TraceError(f"torch.export's graph has a shape that depends on tensor values: {node.target} "
                             f"(node {node.name}) has shape {tuple(val.shape)}",
                             hint="--real runs real tensors on a copy of a model with weights")


def _exported(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], stack_traces: bool = False) -> Traced:
    """torch.export's graph; the forward it runs to trace is not counted, only an op that fails
    in it is named."""
    with OpTagger():
        return export(model, args, kwargs, stack_traces=stack_traces)


def _export(job: _Job) -> _Counted:
    shadow, recorder = job.shadow, job.recorder
    # export flattens keyword arguments in forward's order
    order = list(signature(shadow.forward).parameters)
    kwargs = {k: job.kwargs[k] for k in sorted(job.kwargs, key=lambda k: order.index(k) if k in order else len(order))}
    traced = _exported(shadow, job.args, kwargs)
    _refuse_data_dependent(traced)
    flat = tree_flatten((job.args, kwargs))[0]
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(flat) != len(placeholders):
        raise TraceError(f"torch.export's graph takes {len(placeholders)} inputs where fxcost has {len(flat)}")
    interp = RecordingInterpreter(traced.runner or shadow, traced.graph, recorder, train=job.train)
    try:
        with naming_module("propagating shapes"), job.grad(), recorder:
            out = interp.run(*flat)
    except ShapeError as e:
        raise _at_its_line(e, lambda: _exported(job.shadow, job.args, kwargs, stack_traces=True)) from e.__cause__
    with naming_module("running the backward"):
        records = job.with_backward(interp.records, out)
    calls, flow = calls_from_export(shadow, records, job.leaves)
    rows, edges = call_graph_rows(shadow, job.inputs, calls, flow, job.convention)
    # its peak memory is measured on the forward run eagerly on fake tensors (_step_peak): the
    # graph frees values Python would still hold, and on meta tensors attention takes its math path
    return _Counted(rows, edges, output_specs(out), TraceInfo(Method.EXPORT, graph_nodes=len(traced.graph.nodes)), job.mode)


def _eager(job: _Job) -> _Counted:
    def attempt(a: tuple[Any, ...], kw: dict[str, Any], context: Any) -> _Counted:
        with naming_module("running the model op by op"), context, job.grad(), job.recorder:
            calls, flow, out = run_eager(job.shadow, a, kw, job.recorder, job.leaves, train=job.train)
        _refuse_lazy_forward(job.shadow, out)
        if job.train:
            with naming_module("running the backward"), context:
                calls = job.calls_with_backward(calls, out)
        rows, edges = call_graph_rows(job.shadow, job.inputs, calls, flow, job.convention)
        return _Counted(rows, edges, output_specs(out), TraceInfo(Method.EAGER, segments=len(calls)), job.mode)

    # the fake run: fake tensors on the meta device run the meta kernels (no data, attention's math
    # path, as a meta graph does), and code that asks (transformers' masks and packed-sequence
    # checks) sees fake tensors and takes its tracing branch instead of reading values
    return _with_fake_retry(job, attempt, meta_fakes=True)


_STRATEGIES: dict[Method, Callable[[_Job], _Counted]] = {Method.SYMBOLIC: _symbolic, Method.EXPORT: _export, Method.EAGER: _eager}
assert set(_STRATEGIES) == set(TRACERS)


def sweep(model: nn.Module, input_sizes: Sequence[Any], *, using: Callable[..., Report] | None = None,
          lettered: Callable[[Any], bool] = has_letters, **kwargs: Any) -> Sweep:
    """Analyze one model at several input sizes (each item: a shape or a tuple of inputs) with
    ``using`` (default :func:`analyze`; ``fxcost.sweep`` passes the one that knows other tools'
    presets, so ``convention="thop"`` sweeps too)."""
    count = using or analyze
    reports = []
    formulas = [item for item in input_sizes if lettered(item)]
    if len(formulas) > 1:
        raise InputSpecError("a sweep takes one input size with letters (its formula) beside the measured ones",
                             hint="e.g. fxcost.sweep(model, [('B', 3, 'H', 'W'), (2, 3, 224, 224), (8, 3, 512, 512)])")
    formula = count(model, input_size=formulas[0], **kwargs) if formulas else None
    for item in input_sizes:
        if lettered(item):
            continue
        if isinstance(item, torch.Tensor) or (isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor)):
            reports.append(count(model, example_inputs=item, **kwargs))
        else:
            reports.append(count(model, input_size=item, **kwargs))
    return Sweep(tuple(reports), formula)
