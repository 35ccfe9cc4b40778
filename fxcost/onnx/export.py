"""Export a model to ONNX through ``torch.onnx``'s dynamo exporter, with or without its weights.

:func:`export_onnx` wraps ``torch.onnx.export(..., dynamo=True)`` and adds what fxcost's ONNX
route needs from the file:

- **Structure only.** A weightless meta copy of the model (:func:`fxcost.pytorch.working_copy.meta_copy`) is
  exported and saved with ``include_initializers=False, keep_initializers_as_inputs=True``: every
  weight becomes a named graph input with its shape and dtype and no data, so a 7B-parameter
  model fits in a few MB (``LlamaForCausalLM(LlamaConfig())`` at 1x2048: 18 s, 9.1 MB).
  The model carries ``metadata_props["fxcost.structure_only"] = "true"``.
- **Weight kinds.** Each weight, as a graph input (structure only) or an initializer (real
  weights), carries ``metadata_props["pkg.torch.export.graph_signature.InputSpec.kind"]`` =
  ``PARAMETER`` or ``BUFFER``, so a reader can count parameters without guessing. torch.onnx
  writes it on graph inputs only; for initializers fxcost copies it from the exported program's
  graph signature (``InputSpec.target``, the FQN, is the initializer's name). A weight tied
  between two modules is one initializer, named by the FQN torch.export keeps.
- **Silence and progress.** Nothing reaches stdout or stderr: the exporter's ``verbose`` stage
  lines (``Obtain model graph ...``, ``Run decompositions...``, ``Translate the graph into
  ONNX...``, ``Optimize the ONNX graph...``) are captured and passed to ``on_stage`` as short
  texts; its log records and Python warnings are silenced for the duration of the export only.
- **Atomic files.** The file (and ``<name>.data`` beside it when the weights exceed
  :data:`EXTERNAL_DATA_BYTES`, since one protobuf cannot exceed 2 GiB) is written in a temporary
  folder beside ``path`` under its final name (the file refers to its data file by name), then
  renamed into place, data file first; a failure leaves neither.

Opsets, as measured with torch 2.13, onnx 1.23 and onnxscript 0.7: torch.onnx never refuses an
opset. Its operator library is written for opset 18 (:data:`NATIVE_OPSET`):

- 18 to 28 (onnx 1.23's newest) are written as asked. Which of them onnxruntime loads depends on
  its release (1.31 loads up to 26, 1.32 up to 28): :func:`fxcost.onnx.runtime.onnxruntime_opsets` asks the installed
  one, and the messages that name the range use it.
- Above 28 (29, 30, 100) and below 1 the version converter fails, torch.onnx logs it and writes
  opset 18 anyway. fxcost refuses these before exporting.
- Below 18 it translates at 18 and converts down with onnx's C API, which works or not by op: a
  Linear/ReLU/Conv net converts down to 14, one with LayerNormalization (new in 17) only to 17,
  BatchNormalization (changed in 15) not to 14; where it fails the graph silently stays at 18.
  A converted graph loses torch's per-node metadata (``namespace``, stack traces) and the kinds
  on the graph inputs (fxcost writes ``USER_INPUT`` back). The converter serializes the graph,
  which needs weight values, so a structure-only export below 18 always fails: fxcost refuses it
  up front.

fxcost checks the opset of the graph it is about to write and raises
:class:`~fxcost.errors.ExportError` when it is not the one asked for.

Dynamic batch: dim 0 of every tensor input gets one shared ``torch.export.Dim("batch")``, which
the file shows as ``dim_param: "batch"``. torch.export specializes a dimension whose example size
is 1: GPT-2 exported from a batch-1 example with ``Dim("batch")`` comes out with a static 1, and
with ``Dim.DYNAMIC`` it gets a symbolic input but internal reshapes fixed to 1 (onnxruntime fails
at batch 3). So an example batch of 1 is widened to 2 (the tensor repeated) before export; the
file then runs at batch 1 and any other. fxcost checks that every tensor input of the written
graph has a symbolic dim 0.

``import fxcost`` stays fast: torch.onnx, onnx and onnxscript are imported inside the function.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from fxcost.errors import ExportError, FxcostError, OutputError, first_line
from fxcost.io import check_output
from fxcost.onnx.load import KIND_KEY, STRUCTURE_ONLY_KEY
from fxcost.onnx.runtime import NATIVE_OPSET, newest_opset, onnxruntime_opsets
from fxcost.pytorch.inputs import prepare_meta
from fxcost.pytorch.tensors import realize
from fxcost.pytorch.working_copy import has_lazy_modules, has_meta_weights

# One protobuf holds at most 2 GiB. torch.onnx itself switches to external data above 1.5 GiB of
# initializers (_LARGE_MODEL_THRESHOLD in torch/onnx/_internal/exporter/_onnx_program.py, and it
# does so whatever ``external_data`` says); fxcost uses the same bound so that it decides, and
# knows, which layout the file has.
EXTERNAL_DATA_BYTES = 1536 * 1024 * 1024

def opset_hint() -> str:
    """What --opset takes, from the installed onnx and onnxruntime."""
    ort = onnxruntime_opsets()
    runs = f"onnxruntime {ort[0]} runs up to {ort[1]}" if ort else "onnxruntime is not installed"
    return (f"--opset {NATIVE_OPSET} (torch.onnx's own) up to {newest_opset()} (onnx {_onnx_version()}'s newest; {runs}); "
            f"below {NATIVE_OPSET} only graphs whose ops all exist at that opset convert")


# Loggers whose records would reach stderr during an export: torch's own (the ``torch`` logger
# has a stderr handler, and its children inherit its level), onnxscript's version converter and
# onnx_ir's passes. Their levels are raised for the export and put back afterwards.
_NOISY_LOGGERS = ("torch", "onnxscript", "onnx_ir", "onnx")


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: str
    opset: int
    seconds: float
    file_bytes: int  # on disk, the external data file included
    nodes: int  # nodes of the written graph
    params: int  # numel summed over the PARAMETER weights written in the file, each tensor once
    structure_only: bool
    dynamic_batch: bool
    optimized: bool
    inputs: tuple[str, ...]  # graph inputs the user feeds (not weights)
    external_data: bool = False  # True when the weights are in ``path + ".data"``


def export_onnx(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    path: str | Path,
    *,
    opset: int = NATIVE_OPSET,
    dynamic_batch: bool = False,
    structure_only: bool = False,
    optimize: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> OnnxExport:
    """Export ``model(*args, **kwargs)`` to an ONNX file at ``path``.

    ``structure_only`` exports a weightless meta copy (the model is never run and may itself live
    on meta); otherwise the model is exported with its weights, in eval mode (each module's
    training flag is put back afterwards), and lazy layers are materialized by one forward.
    Input tensors without data (meta, fake) are replaced by random ones of their shape for a real
    export. ``optimize`` runs onnxscript's graph optimizer, which folds constants and may drop
    weights that fold away (a zero bias): ``params`` counts what is in the file. The optimizer
    cannot run on meta weights, so a structure-only export is never optimized.

    Raises :class:`OutputError` when the folder of ``path`` does not exist or the file cannot be
    written, and :class:`ExportError` when torch.onnx cannot export the model as asked (the
    original exception is its ``__cause__``). On any failure nothing is left at ``path``.
    """
    import importlib.util

    if importlib.util.find_spec("onnxscript") is None:
        raise ExportError("exporting to ONNX needs onnxscript (torch.onnx's exporter is built on it), which is not installed",
                          hint="pip install 'fxcost[onnx]' (onnxscript and onnxruntime)")
    target = Path(path)
    folder = check_output(target)
    check_output(target.with_name(f"{target.name}.data"))  # a data file may go beside it
    kwargs = dict(kwargs or {})
    name = type(model).__name__
    newest = newest_opset()
    if not 1 <= opset <= newest:  # torch.onnx would silently write opset 18 instead
        raise ExportError(
            f"cannot export {name} at opset {opset}: onnx {_onnx_version()} knows opsets 1 to {newest}",
            hint=opset_hint(),
        )
    if structure_only and opset < NATIVE_OPSET:
        raise ExportError(
            f"cannot export {name} structure only at opset {opset}: below {NATIVE_OPSET} onnx's version converter "
            "serializes the graph with its weights, and a structure-only graph has none",
            hint=f"--opset {NATIVE_OPSET} or newer, or drop --structure-only to convert a graph with its weights",
        )
    start = time.perf_counter()
    if structure_only:
        optimize = False  # onnx_ir's optimizer passes read weight values, which meta tensors lack
        try:
            model, args, kwargs = prepare_meta(model, args, kwargs)
        except FxcostError as e:  # lazy layers that cannot materialize on meta
            raise ExportError(f"cannot export {name} structure only: {e.message}",
                              hint="drop --structure-only to export with real weights") from e
    else:
        _check_real(model, name)
        args, kwargs = tree_map(realize, (args, kwargs))
    shapes = _describe_inputs(model, args, kwargs)
    dynamic_shapes = None
    if dynamic_batch:
        args, kwargs = tree_map(lambda x: _widen_batch(x, structure_only), (args, kwargs))
        dynamic_shapes = _batch_shapes(model, args, kwargs, name, shapes)

    program = _run_exporter(model, args, kwargs, opset, dynamic_shapes, optimize, structure_only, name, shapes, on_stage)

    ir_model = program.model
    written_opset = ir_model.opset_imports.get("", None)
    if written_opset != opset:
        raise ExportError(
            f"torch.onnx could not export {name} ({shapes}) at opset {opset}: it translates at opset "
            f"{NATIVE_OPSET} or newer and onnx's version converter could not take this graph to {opset} "
            f"(the graph stayed at {written_opset})",
            hint=opset_hint(),
        )
    inputs = tuple(v.name for v in ir_model.graph.inputs)
    if dynamic_batch:
        _check_batch_dynamic(ir_model, name, shapes)
    if structure_only:
        ir_model.metadata_props[STRUCTURE_ONLY_KEY] = "true"
    else:
        _tag_initializers(program)
    params = sum(_numel(v) for v in ir_model.graph.initializers.values() if v.metadata_props.get(KIND_KEY) == "PARAMETER")
    nodes = len(ir_model.graph)
    weight_bytes = 0 if structure_only else sum(
        v.const_value.nbytes for v in ir_model.graph.initializers.values() if v.const_value is not None
    )
    external = weight_bytes > EXTERNAL_DATA_BYTES

    _emit(on_stage, f"writing {target.name}")
    file_bytes = _save_atomic(program, target, folder, structure_only=structure_only, external=external)
    return OnnxExport(
        path=str(target),
        opset=opset,
        seconds=time.perf_counter() - start,
        file_bytes=file_bytes,
        nodes=nodes,
        params=params,
        structure_only=structure_only,
        dynamic_batch=dynamic_batch,
        optimized=optimize,
        inputs=inputs,
        external_data=external,
    )


# --- inputs -------------------------------------------------------------------------------


def _check_real(model: nn.Module, name: str) -> None:
    if has_meta_weights(model):
        raise ExportError(
            f"{name} has weights on the meta device: there are no values to write",
            hint="use --structure-only to export the graph with weights as shape-only inputs",
        )


def _widen_batch(x: Any, on_meta: bool) -> Any:
    """An example batch of 1 becomes 2: torch.export specializes size-1 dimensions."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != 1:
        return x
    if on_meta:
        return torch.empty((2, *x.shape[1:]), dtype=x.dtype, device="meta")
    return torch.cat([x, x])


def _bound_arguments(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return dict(inspect.signature(model.forward).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return None


def _batch_shapes(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], name: str, shapes: str) -> dict[str, Any]:
    """``dynamic_shapes`` for torch.export, keyed by the forward's argument names."""
    bound = _bound_arguments(model, args, kwargs)
    if bound is None:
        raise ExportError(
            f"cannot match the inputs ({shapes}) to the signature of {name}.forward for --dynamic-batch",
            hint="check the inputs against the model's forward, or drop --dynamic-batch",
        )
    batch = torch.export.Dim("batch")

    def spec(x: Any) -> Any:
        return {0: batch} if isinstance(x, torch.Tensor) and x.dim() > 0 else None

    return {k: tree_map(spec, v) for k, v in bound.items()}


def _describe_inputs(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``x: 1x3x32x32 float32, mask: 1x16 bool`` for messages."""
    bound = _bound_arguments(model, args, kwargs)
    items = bound.items() if bound is not None else [*((f"arg{i}", a) for i, a in enumerate(args)), *kwargs.items()]
    parts = []
    for k, v in items:
        leaves = [t for t in tree_flatten(v)[0] if isinstance(t, torch.Tensor)]
        if leaves:
            parts.append(f"{k}: " + ", ".join(f"{'x'.join(map(str, t.shape)) or 'scalar'} {str(t.dtype).removeprefix('torch.')}" for t in leaves))
    return ", ".join(parts) or "no tensor inputs"


# --- running the exporter -------------------------------------------------------------------


def _run_exporter(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opset: int, dynamic_shapes: dict[str, Any] | None,
    optimize: bool, structure_only: bool, name: str, shapes: str, on_stage: Callable[[str], None] | None,
) -> Any:
    stages = _StageWriter(on_stage)
    training = {m: m.training for m in model.modules()}
    try:
        with _quiet(stages):
            if not structure_only:
                model.eval()
                if has_lazy_modules(model):
                    stages.current = "materializing lazy layers"
                    stages.emit(stages.current)
                    with torch.no_grad():
                        model(*args, **kwargs)
            return torch.onnx.export(
                model, args, kwargs=kwargs, dynamo=True, opset_version=opset, verbose=True, optimize=optimize,
                dynamic_shapes=dynamic_shapes,
            )
    except FxcostError:
        raise
    except Exception as e:
        raise _export_error(e, name, shapes, opset, stages.current, structure_only, dynamic_shapes is not None) from e
    finally:
        for m, flag in training.items():
            m.training = flag


_STAGES = (
    (re.compile(r"^Obtain model graph for .* with `torch\.export\.export\(\.\.\., strict=(\w+)\)`"), "torch.export (strict={})"),
    (re.compile(r"^Obtain model graph for .* with `torch\.export\.draft_export"), "torch.export (draft)"),
    (re.compile(r"^Run decompositions"), "decompositions"),
    (re.compile(r"^Translate the graph into ONNX"), "translation to ONNX"),
    (re.compile(r"^Optimize the ONNX graph"), "ONNX graph optimization"),
)


def _short_stage(line: str) -> str:
    for pattern, text in _STAGES:
        m = pattern.match(line)
        if m:
            return text.format(*m.groups())
    return line.removesuffix("...").strip()


class _StageWriter(io.StringIO):
    """Stands in for stdout during the export: each ``[torch.onnx]`` line becomes a stage."""

    def __init__(self, on_stage: Callable[[str], None] | None) -> None:
        super().__init__()
        self.on_stage = on_stage
        self.current = "torch.export"
        self._partial = ""
        self.real_streams: tuple[Any, Any] = (sys.stdout, sys.stderr)

    def write(self, s: str) -> int:
        self._partial += s
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line.strip())
        return len(s)

    def _line(self, line: str) -> None:
        if not line.startswith("[torch.onnx]"):
            return
        text = line.removeprefix("[torch.onnx]").strip()
        if text.endswith("✅"):
            return
        if text.endswith("❌"):
            self.emit(f"{_short_stage(text.removesuffix('❌').strip())} failed")
            return
        self.current = _short_stage(text)
        self.emit(self.current)

    def emit(self, text: str) -> None:
        if self.on_stage is None:
            return
        # the callback may print progress: let it reach the real streams
        captured = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = self.real_streams
        try:
            self.on_stage(text)
        finally:
            sys.stdout, sys.stderr = captured


def _emit(on_stage: Callable[[str], None] | None, text: str) -> None:
    if on_stage is not None:
        on_stage(text)


@contextlib.contextmanager
def _quiet(stages: _StageWriter) -> Iterator[None]:
    """stdout into ``stages``, stderr discarded, warnings off, the noisy loggers raised above
    CRITICAL; all put back on exit."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    loggers += [
        lg for n, lg in list(manager.loggerDict.items())
        if isinstance(lg, logging.Logger) and lg.level != logging.NOTSET and n.split(".")[0] in _NOISY_LOGGERS
    ]
    levels = {lg: lg.level for lg in loggers}
    stages.real_streams = (sys.stdout, sys.stderr)
    try:
        for lg in levels:
            lg.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings(), contextlib.redirect_stdout(stages), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in levels.items():
            lg.setLevel(level)


def _root_cause(e: BaseException) -> BaseException:
    seen = {id(e)}
    while e.__cause__ is not None and id(e.__cause__) not in seen:
        e = e.__cause__
        seen.add(id(e))
    return e


def _export_error(
    e: Exception, name: str, shapes: str, opset: int, stage: str, structure_only: bool, dynamic: bool
) -> ExportError:
    root = _root_cause(e)
    text = f"{type(root).__name__}: {first_line(root)}"
    kind = type(root).__name__
    if structure_only and ("meta" in text.lower() or "device" in text.lower()):
        hint = "the model does not run on meta tensors: drop --structure-only to export it with its weights"
    elif "DataDependent" in kind or "data-dependent" in text or "data dependent" in text:
        hint = "the forward branches on tensor values, which torch.export cannot capture: rewrite the branch with torch.cond, or fix the value"
    elif dynamic:
        hint = ("drop --dynamic-batch: it makes dimension 0 of every tensor input one shared batch dimension, "
                "which this model (a fixed batch, or an input without a batch dimension) does not allow")
    elif "No ONNX function found" in text or "DispatchError" in kind or stage.startswith("translation"):
        hint = f"an op without an ONNX translation at opset {opset}: try a newer --opset, or analyze the model without ONNX (fxcost analyze)"
    elif structure_only:
        hint = "drop --structure-only (some models do not run on meta tensors), or run with --debug for the full error"
    else:
        hint = "run with --debug for the exporter's full error"
    mode = "structure only, " if structure_only else ""
    step = "torch.export" if stage.startswith("torch.export") else stage  # it tries strict=False, then strict=True
    return ExportError(f"torch.onnx could not export {name} ({mode}{shapes}, opset {opset}): {step} failed: {text}", hint=hint)


# --- the file -------------------------------------------------------------------------------


def _tag_initializers(program: Any) -> None:
    """Write each weight's kind on its initializer, where a reader of the TensorProto finds it.

    torch.onnx records the kind on the graph value only; TensorProto metadata is serialized from
    the tensor (``const_value``), so it goes there too. The user's inputs get ``USER_INPUT`` back
    where onnx's version converter dropped it."""
    from torch.export.graph_signature import InputKind

    wanted = {InputKind.PARAMETER: "PARAMETER", InputKind.BUFFER: "BUFFER"}
    kinds = {
        spec.target: wanted[spec.kind]
        for spec in program.exported_program.graph_signature.input_specs
        if spec.kind in wanted and spec.target is not None
    }
    for value in program.model.graph.inputs:  # lost when onnx's converter changed the opset
        value.metadata_props.setdefault(KIND_KEY, "USER_INPUT")
    for init_name, value in program.model.graph.initializers.items():
        # anything else the exporter stored (a lifted tensor constant, a folded shape) is no weight
        kind = kinds.get(init_name, "CONSTANT_TENSOR")
        value.metadata_props[KIND_KEY] = kind
        if value.const_value is not None:
            value.const_value.metadata_props[KIND_KEY] = kind


def _numel(value: Any) -> int:
    n = 1
    for d in value.shape or ():
        n *= int(d)
    return n


def _onnx_version() -> str:
    import onnx

    return str(onnx.__version__)


def _check_batch_dynamic(ir_model: Any, name: str, shapes: str) -> None:
    fixed = [
        v.name for v in ir_model.graph.inputs
        if v.shape is not None and len(v.shape) > 0 and isinstance(v.shape[0], int)
    ]
    if fixed:
        raise ExportError(
            f"torch.onnx exported {name} ({shapes}) with a fixed batch size for {', '.join(fixed)}: "
            "the model specializes dim 0 of these inputs",
            hint="drop --dynamic-batch, or make the model's shapes follow the input's batch",
        )


def _retag_external(program: Any, staged: Path) -> None:
    """onnx_ir replaces each tensor it moves to the data file by a new one without metadata; put
    the kinds back on the saved protobuf (its tensors' data stays in the data file)."""
    import onnx

    kinds = {n: v.metadata_props[KIND_KEY] for n, v in program.model.graph.initializers.items() if KIND_KEY in v.metadata_props}
    proto = onnx.load(str(staged), load_external_data=False)
    for tensor in proto.graph.initializer:
        if tensor.name in kinds and not any(p.key == KIND_KEY for p in tensor.metadata_props):
            tensor.metadata_props.add(key=KIND_KEY, value=kinds[tensor.name])
    onnx.save(proto, str(staged))


def _stage(program: Any, staged: Path, *, structure_only: bool, external: bool) -> None:
    """The exported program written to ``staged`` (and its data file beside it)."""
    with _quiet(_StageWriter(None)):
        if structure_only:
            program.save(staged, include_initializers=False, keep_initializers_as_inputs=True, external_data=False)
        else:
            program.save(staged, external_data=external)
    if external:
        _retag_external(program, staged)


def _save_atomic(program: Any, target: Path, folder: Path, *, structure_only: bool, external: bool) -> int:
    """Save into a temporary folder beside ``target``, then rename the file (and its data file)
    into place. The data file is named after the model file and referenced by that name, so both
    are written under their final names in the temporary folder."""
    data_name = f"{target.name}.data"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder))
    except OSError as e:
        raise OutputError(f"cannot write {str(target)!r}: {e.strerror or e}", hint="check the path and its permissions") from e
    moved_data: list[Path] = []  # the data file once renamed into place: removed again if the model file is not
    try:
        staged = tmp / target.name
        _stage(program, staged, structure_only=structure_only, external=external)
        size = staged.stat().st_size
        if (tmp / data_name).exists():
            size += (tmp / data_name).stat().st_size
            moved_data.append(folder / data_name)
            os.replace(tmp / data_name, moved_data[0])
        os.replace(staged, target)
        return size
    except BaseException as e:  # Ctrl-C, SIGTERM included: nothing stays
        for data in moved_data:
            data.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {str(target)!r}: {e.strerror or e}",
                              hint="check the path, its permissions and the free space") from e
        if isinstance(e, Exception):
            raise ExportError(f"torch.onnx could not save the exported graph to {str(target)!r}: {type(e).__name__}: "
                              f"{first_line(e)}", hint="run with --debug for the full error") from e
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
