"""A reproduction applied: a report whose MACs are another tool's (``--convention TOOL``), and
the explanation of a tool's figure against fxcost's (``fxcost explain --vs TOOL``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from fxcost.errors import FxcostError, InputSpecError, first_line
from fxcost.peers import peer
from fxcost.peers.base import Charge, PeerTool, Reproduction
from fxcost.pytorch.diagnosis import is_data_dependent
from fxcost.report import Counts, Report, Row, RowKind
from fxcost.report.explain import Difference, Explanation, TypeLine, noteworthy


class _Rows:
    """Where a charge on a module path goes in a report: the module's own row, else the first row
    of an op that ran directly in it, else the same for its nearest ancestor with one (a module
    kept whole by ``leaves`` takes its descendants' charges), else the first row that is not an input."""

    def __init__(self, report: Report) -> None:
        self.own: dict[str, int] = {}
        self.inside: dict[str, int] = {}
        for i, r in enumerate(report.layers):
            if r.kind == RowKind.MODULE:
                self.own.setdefault(r.name, i)
            if r.kind != RowKind.INPUT:
                self.inside.setdefault(r.module_path, i)
        self.first = next((i for i, r in enumerate(report.layers) if r.kind != RowKind.INPUT), 0)

    def of(self, path: str) -> int:
        while True:
            found = self.own.get(path, self.inside.get(path))
            if found is not None:
                return found
            if not path:
                return self.first
            path = path.rsplit(".", 1)[0] if "." in path else ""


def counted_as(report: Report, repro: Reproduction) -> Report:
    """``report`` with each row's MACs and FLOPs (2 x MACs where the tool reports none) as the
    tool counts them, its totals the tool's, and a note saying so. Where the tool counts params
    per module (``params_by_module``) the rows carry them too; otherwise they stay fxcost's and,
    where the tool's total differs, the note says by how much."""
    rows = _Rows(report)
    macs: dict[int, int] = defaultdict(int)
    flops: dict[int, int] = defaultdict(int)
    for c in repro.charges:
        i = rows.of(c.module_path)
        macs[i] += c.macs
        flops[i] += 2 * c.macs if c.flops is None else c.flops  # 2 x MACs where the tool reports no FLOPs
    fxcost_total = report.total()
    params = {i: r.params for i, r in enumerate(report.layers)}
    if repro.params_by_module:  # the tool counts per module: each row gets what it counts there
        params = defaultdict(int)
        for path, n in repro.params_by_module:
            params[rows.of(path)] += n
    as_tool = sum(params.values()) == repro.params
    layers = tuple(replace(r, counts=_with_params(replace(r.counts, macs=macs.get(i, 0), flops=flops.get(i, 0)),
                                                  params.get(i, 0) if as_tool else r.params))
                   for i, r in enumerate(report.layers))
    notes = [f"MACs as {repro.tool} {repro.version} counts them ({repro.headline}), reproduced on fxcost's data-free "
             f"copy: {repro.macs:,}; fxcost's own count is {fxcost_total.macs:,} (fxcost explain --vs {repro.tool} "
             f"names each difference)"]
    if repro.params != fxcost_total.params:
        where = "; the rows show the tool's" if as_tool else "; the rows and totals show fxcost's"
        notes.append(f"{repro.tool} reports {repro.params:,} params; fxcost counts {fxcost_total.params:,} "
                     f"(each tensor once); {repro.tool} counts {peer(repro.tool).params_rule}{where}")
    worth = noteworthy(repro.unseen)
    if worth:
        more = len(repro.unseen) - len(worth)
        notes.append(f"{repro.tool} does not count: " + "; ".join(worth)
                     + (f" (and {more} cheaper ops: fxcost explain --vs {repro.tool} -f json lists them)" if more else ""))
    return replace(report, layers=layers, convention=repro.tool,
                   trace=replace(report.trace, notes=(*report.trace.notes, *notes)))


def _with_params(counts: Counts, params: int) -> Counts:
    """``counts`` with ``params`` as the tool counts them for the row: the biases first as many as
    fxcost has there, the rest weights; trainable as far as fxcost's row is."""
    if params == counts.params:
        return counts
    bias = min(counts.bias_params, params)
    frozen = counts.params - counts.trainable_params
    return replace(counts, params=params, weight_params=params - bias, bias_params=bias,
                   trainable_params=max(params - frozen, 0))


def _fxcost_ops(rows: Iterable[Row]) -> str:
    ops: dict[str, int] = defaultdict(int)
    for r in rows:
        for o in r.ops:
            if o.macs:
                ops[o.op] += o.count
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(ops.items()))


def explanation(report: Report, repro: Reproduction, tool: PeerTool, root_type: str = "") -> Explanation:
    """fxcost's count (``report``) beside the tool's (``repro``), per module, grouped by layer type
    (``root_type``: the model's class) and by the reason the two differ there."""
    inside: dict[str, list[Row]] = defaultdict(list)  # fxcost's rows by the module they ran in
    for r in report.layers:
        if r.kind != RowKind.INPUT:
            inside[r.module_path].append(r)
    truth = {path: sum(r.macs for r in rs) for path, rs in inside.items()}
    rows = _Rows(report)
    charged: dict[str, list[Charge]] = defaultdict(list)
    for c in repro.charges:  # each charge where counted_as puts it: a module kept whole takes its insides'
        charged[report.layers[rows.of(c.module_path)].module_path].append(c)
    types = dict(report.module_types)
    root_type = root_type or types.get("") or next((c.module_type for c in repro.charges if not c.module_path),
                                                   report.model)

    def type_of(path: str) -> str:
        if not path:
            return root_type
        return types.get(path) or next((c.module_type for c in charged.get(path, ()) if c.module_path == path),
                                       path.rsplit(".", 1)[-1])

    lines: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    reasons: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for path in sorted(set(truth) | set(charged)):
        mine, theirs = truth.get(path, 0), sum(c.macs for c in charged.get(path, []))
        t = type_of(path)
        line = lines[t]
        line[0] += mine
        line[1] += theirs
        line[2] += 1
        if mine == theirs:
            continue
        if charged.get(path):
            why = "; ".join(sorted({c.rule if c.what == c.module_type else f"{c.what}: {c.rule}"
                                    for c in charged[path]}, key=lambda r: (":" in r.split(" ", 1)[0], r)))
        else:  # the tool charged nothing here, so fxcost's count is the difference
            ops = _fxcost_ops(inside.get(path, ()))
            why = f"not counted by {repro.tool}" + (f": {ops}" if ops else "")
        key = reasons[(t, why)]
        key[0] += mine
        key[1] += theirs
        key[2] += 1
    total = report.total()
    return Explanation(
        model=report.model,
        inputs=tuple(tuple(i.shape) for i in report.inputs),
        tool=repro.tool, version=repro.version, headline=repro.headline,
        fxcost_macs=total.macs, tool_macs=repro.macs, fxcost_params=total.params, tool_params=repro.params,
        by_type=tuple(TypeLine(t, a, b, n) for t, (a, b, n) in sorted(lines.items(), key=lambda kv: -max(kv[1][:2]))),
        differences=tuple(Difference(t, why, a, b, n) for (t, why), (a, b, n)
                          in sorted(reasons.items(), key=lambda kv: -abs(kv[1][1] - kv[1][0]))),
        params_reason=f"{repro.tool} counts {tool.params_rule}" if repro.params != total.params else "",
        unseen=repro.unseen, misses=tool.misses, install=tool.install,
    )


def installed(tool: PeerTool) -> bool:
    import importlib.util

    return tool.package == "torch" or importlib.util.find_spec(tool.package.replace("-", "_")) is not None


def measured(explained: Explanation, tool: PeerTool, model: nn.Module, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Explanation:
    """``explained`` with the installed tool's own figures beside (run on the real CPU model),
    or the reason it could not run."""
    if tool.run_tool is None:
        return replace(explained, measured_note=f"{tool.name} cannot be run by fxcost")
    if not installed(tool):
        return replace(explained, measured_note=f"{tool.package} is not installed: {tool.install}")
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        return replace(explained, measured_note=f"the model has no weights (meta): {tool.name} runs a real forward")
    try:
        import copy

        with torch.random.fork_rng():  # on a copy: a tool runs the model for real (lazy layers, eval(), stats)
            own = tool.run_tool(copy.deepcopy(model), args, kwargs)
    except Exception as e:  # noqa: BLE001 - the tool's own failure is reported, not raised
        return replace(explained, measured_note=f"{tool.name} itself failed: {type(e).__name__}: {first_line(e)}",
                       measured_failed=True)
    return replace(explained, measured_macs=own.macs, measured_params=own.params,
                   measured_note=f"{tool.name} {tool.version}, installed, run on the real model")


def reproduce(name: str, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """The tool ``name``'s figures for ``model`` at these inputs, reproduced."""
    tool = peer(name)
    try:
        return tool.reproduce(model, args, kwargs)
    except FxcostError:
        raise
    except Exception as e:
        values = is_data_dependent(e)  # by the exception's type and the op that raised it, never its words
        raise FxcostError(f"cannot reproduce {name}'s count of {type(model).__name__}: {type(e).__name__}: {first_line(e)}",
                          hint=("the forward reads tensor values, which the data-free copy has none of; "
                                if values else f"{name} itself may fail on this model too; ")
                          + "fxcost analyze still counts it") from e



def counted_by(convention: str, model: nn.Module, input_size: Any = None, example_inputs: Any = None,
               example_kwargs: dict[str, Any] | None = None, **options: Any) -> Report:
    """The preset of the tool ``convention`` (``"fvcore"``, ``"thop"``...): fxcost's analysis,
    with the MACs and params as that tool counts them, reproduced on the data-free copy."""
    from fxcost.pytorch.analyze import analyze as count
    from fxcost.pytorch.inputs import normalize_inputs

    asked = [k for k in ("train", "device", "traffic", "real", "dtype", "registry", "ops") if options.get(k)]
    if asked:
        raise InputSpecError(f"the {convention} preset reproduces {convention}'s count of one forward of the model as "
                             f"built, on data-free tensors: {', '.join(asked)} has no counterpart there",
                             hint=f"drop {', '.join(asked)} (the command's --{asked[0]}), or use fxcost's own convention")
    report = count(model, input_size, example_inputs, example_kwargs, "fxcost", **options)
    args = normalize_inputs(input_size, example_inputs)
    return counted_as(report, reproduce(convention, model, args, dict(example_kwargs or {})))


def explain(model: nn.Module, input_size: Any = None, example_inputs: Any = None,
            example_kwargs: dict[str, Any] | None = None, *, vs: str, run: bool = True, **options: Any) -> Explanation:
    """Why the tool ``vs`` reports other MACs or params for ``model`` than fxcost: its count
    reproduced, set beside fxcost's by layer type, each difference named with the MACs it moves
    (they add up to the gap). With ``run`` and the tool installed, the tool also runs on the model
    (which then needs real weights) and its own figures are kept beside (``measured_macs``).
    ``options`` are :func:`analyze`'s (tracer, leaves, name)."""
    from fxcost.pytorch.inputs import normalize_inputs
    from fxcost.pytorch.tensors import realize

    tool = peer(vs)
    args = normalize_inputs(input_size, example_inputs)
    kwargs = dict(example_kwargs or {})
    from fxcost.pytorch.analyze import analyze as count

    report = count(model, None, args, kwargs, "fxcost", **options)
    explained = explanation(report, reproduce(vs, model, args, kwargs), tool, type(model).__name__)
    if not run:
        return explained
    real = tree_map(realize, (args, kwargs))
    return measured(explained, tool, model, *real)
