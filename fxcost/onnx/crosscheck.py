"""The cross-check: one model counted through PyTorch (torch.fx / torch.export) and through its
exported ONNX graph, side by side by layer type, every difference named.

Params must agree exactly and MACs must agree exactly under one convention. The ONNX side is
counted by :mod:`fxcost.onnx.analyze` from the exported file alone. A model with real weights
is exported with them and, when it is small enough, run by onnxruntime on random inputs against
PyTorch; a weightless model is exported ``--structure-only`` and not run.

By default the cross-check exports without onnxscript's graph optimizer (``optimize=False``):
the optimizer folds constants and drops inputs it can prove useless (a bias of zeros), so the
optimized graph describes the computation, not the model. ``optimize=True`` checks the file a
plain ``fxcost onnx`` writes, and names what the optimizer removed.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from fxcost.onnx.load import WeightKind
from fxcost.onnx.runtime import run_onnxruntime
from fxcost.pytorch.working_copy import has_meta_weights
from fxcost.report.compare import COMPARED_METRICS
from fxcost.report.crosscheck import CrossCheck, CrossCheckRow, ExportSummary
from fxcost.report.kinds import RowKind
from fxcost.report.records import Counts, Row
from fxcost.report.report import Report

#: compared per layer type (the comparison's metrics); params and MACs must agree, the rest is explained
COMPARED = COMPARED_METRICS

#: onnxruntime runs models up to this many parameters (a float32 copy is made for the session)
RUN_LIMIT_PARAMS = 1_000_000_000


def crosscheck(
    model: nn.Module,
    example_inputs: Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    convention: str = "fxcost",
    name: str | None = None,
    tracer: str = "auto",
    leaves: Sequence[str] = (),
    onnx_file: str | Path | None = None,
    exported: Any = None,
    opset: int = 18,
    optimize: bool = False,
    run: bool = True,
    strict: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> CrossCheck:
    """Count ``model`` through PyTorch and through ONNX and compare.

    ``onnx_file``: where the export is written (kept); a temporary file when ``None``. With
    ``exported`` (the :class:`~fxcost.onnx_export.OnnxExport` that wrote ``onnx_file``, as in
    ``fxcost onnx --verify``) the file is checked as it is.
    ``run``: compare onnxruntime's outputs with PyTorch's when the model has real weights.
    ``strict``: an op without a formula on either route is an error, as in :func:`fxcost.analyze`."""
    from fxcost.onnx.analyze import analyze_onnx
    from fxcost.onnx.load import load, weights_of
    from fxcost.pytorch.analyze import analyze

    stage = on_stage or (lambda _text: None)
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    kwargs = dict(example_kwargs or {})
    name = name or type(model).__name__
    real = _has_real_weights(model)
    if real and model.training:
        model = copy.deepcopy(model).eval()  # the analysis counts inference; so must the export
    stage(f"counting {name} through PyTorch")
    torch_report = analyze(model, example_inputs=args, example_kwargs=kwargs, convention=convention, name=name,
                           tracer=tracer, leaves=leaves, strict=strict)
    if exported is not None:
        onnx_file = exported.path  # the file that export wrote is the one checked
    with tempfile.TemporaryDirectory(prefix="fxcost-") as tmp:
        path = Path(onnx_file) if onnx_file is not None else Path(tmp) / f"{name}.onnx"
        result = exported
        if result is None:
            from fxcost.onnx.export import export_onnx

            result = export_onnx(model, args, kwargs, path, opset=opset, structure_only=not real, optimize=optimize,
                                 on_stage=on_stage)
        export_info = ExportSummary(opset=result.opset, optimized=result.optimized, structure_only=result.structure_only,
                                    seconds=round(result.seconds, 2), file_bytes=result.file_bytes, nodes=result.nodes)
        stage(f"counting {path.name} through ONNX")
        shapes = [tuple(t.shape) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        proto = load(path)  # read once: analysis and the parameters' names
        onnx_report = analyze_onnx(path, shapes, convention=convention, name=name, strict=strict, model=proto)
        rows = _rows(torch_report, onnx_report)
        by_type = bool(onnx_report.module_types)
        explanations = _explain(rows, torch_report, onnx_report, model, weights_of(proto), by_type)
        if not run:
            diff, note = None, "not run (--no-run)"
        elif not real or result.structure_only:
            diff, note = None, "not run: the file has no weight data (exported --structure-only)"
        elif torch_report.total().params > RUN_LIMIT_PARAMS:
            diff, note = None, f"not run: over {RUN_LIMIT_PARAMS:,} parameters"
        else:
            stage("running the ONNX file with onnxruntime")
            diff, note = run_onnxruntime(model, args, kwargs, path)
    return CrossCheck(torch=torch_report, onnx=onnx_report, onnx_file=str(onnx_file) if onnx_file else "(temporary)",
                      rows=tuple(rows), explanations=tuple(explanations), max_abs_diff=diff, run_note=note,
                      export=export_info, by_type=by_type)


def _has_real_weights(model: nn.Module) -> bool:
    return any(True for _ in [*model.parameters(), *model.buffers()]) and not has_meta_weights(model)


def group_of(report: Report, row: Row) -> str:
    """The layer type a row's work belongs to: the class of the innermost module that ran it
    (the same on both routes, whichever ops each route sees)."""
    if row.kind is RowKind.INPUT:
        return "Input"
    return report.module_types.get(row.module_path) or (report.model if not row.module_path else row.type)


def _sums(report: Report) -> dict[str, Counts]:
    """Each layer type's counts."""
    groups: dict[str, list[Counts]] = {}
    for r in report.layers:
        groups.setdefault(group_of(report, r), []).append(r.counts)
    return {g: Counts.total(c) for g, c in groups.items()}


def _rows(a: Report, b: Report) -> list[CrossCheckRow]:
    sa, sb = _sums(a), _sums(b)
    none = Counts()
    # the largest MACs first; equal ones by name (a set's order changes from run to run)
    groups = sorted(set(sa) | set(sb), key=lambda g: (-max(sa.get(g, none).macs, sb.get(g, none).macs), g))
    ta, tb = a.total(), b.total()
    rows = []
    for m in COMPARED:
        rows.append(CrossCheckRow(m, "all", getattr(ta, m), getattr(tb, m)))
        for g in groups:
            x, y = getattr(sa.get(g, none), m), getattr(sb.get(g, none), m)
            if x or y:
                rows.append(CrossCheckRow(m, g, x, y))
    return rows


def _explain(rows: list[CrossCheckRow], a: Report, b: Report, model: nn.Module,
             onnx_weights: dict[str, tuple[WeightKind, int]], by_type: bool) -> list[str]:
    """One sentence per difference, naming the parameters or ops behind it."""
    out: list[str] = []
    if not by_type:
        out.append("layer types: the ONNX file records no modules (onnx's version converter drops them when it "
                   "changes the opset), so its nodes are typed by op and only the totals compare")
    total = {r.metric: r for r in rows if r.group == "all"}
    if total["params"].diff:
        out += _explain_params(model, onnx_weights)
    for metric in ("macs", "flops"):
        for r in rows:
            if r.metric == metric and r.group != "all" and r.diff:
                out.append(f"{'MACs' if metric == 'macs' else 'FLOPs'} of {r.group}: PyTorch {r.torch:,} vs ONNX "
                           f"{r.onnx:,} ({r.diff:+,}): PyTorch counts {_ops(a, r.group, metric)}; ONNX counts "
                           f"{_ops(b, r.group, metric)}")
    for side, report in (("PyTorch", a), ("ONNX", b)):
        for u in report.unsupported:
            out.append(f"{side}: {u.op} in {u.where!r} (x{u.count}) has no formula and is not counted")
    if total["activation_elements"].diff:
        out.append("activations: ONNX has no in-place ops, so a tensor PyTorch overwrites in place (ReLU(inplace=True), "
                   "+=) is a new tensor there; ops that are views in PyTorch (Reshape, Transpose, Slice...) count as "
                   "aliases on both routes; the exporter's decompositions add or remove intermediate tensors")
    return out


def _ops(report: Report, group: str, metric: str) -> str:
    found: dict[str, tuple[int, int]] = {}
    notes: dict[str, str] = {}
    for r in report.layers:
        if group_of(report, r) != group:
            continue
        for o in r.ops:
            v = getattr(o, metric)
            if v:
                n, s = found.get(o.op, (0, 0))
                found[o.op] = (n + o.count, s + v)
                if o.reason:
                    notes.setdefault(o.op, o.reason)
    if not found:
        return "nothing"
    parts = sorted(found.items(), key=lambda kv: -kv[1][1])  # all of them: together they make the group's figure
    return ", ".join(f"{op} x{n} = {v:,}" + (f" ({notes[op]})" if op in notes else "") for op, (n, v) in parts)


def _explain_params(model: nn.Module, onnx_weights: dict[str, tuple[WeightKind, int]]) -> list[str]:
    """Which parameters one side has and the other lacks, by name (tied names count as one)."""
    aliases: dict[int, list[str]] = {}
    tensors: dict[int, torch.Tensor] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(n)
        tensors[id(p)] = p
    onnx_params = {n: numel for n, (kind, numel) in onnx_weights.items() if kind is WeightKind.PARAMETER}
    owners = dict(model.named_modules())
    out = []
    for key, names in aliases.items():
        if any(n in onnx_params for n in names):
            continue
        t = tensors[key]
        why = "not in the ONNX file"
        owner = owners.get(names[0].rpartition(".")[0])
        if isinstance(owner, nn.modules.batchnorm._BatchNorm):
            why += (": the exporter's optimizer folded this BatchNorm into the convolution before it (its scale "
                    "and shift are now part of the conv's weight and bias)")
        elif not t.is_meta and t.device.type != "meta" and not bool(t.count_nonzero()):
            why += ": it is all zeros, and the exporter's optimizer dropped the add or multiply it fed"
        else:
            why += ": the exporter's optimizer folded it into a constant, or the exported graph does not read it"
        out.append(f"params: {names[0]} ({t.numel():,}) {why}")
    known = {n for names in aliases.values() for n in names}
    for n, numel in onnx_params.items():
        if n not in known:
            out.append(f"params: the ONNX file's {n!r} ({numel:,}) is no parameter of the model: a constant the "
                       "exporter folded (or a buffer), counted as a parameter there")
    return out
