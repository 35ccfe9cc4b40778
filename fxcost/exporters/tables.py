"""Format-neutral tables, one builder per kind of result; the renderers lay them out.

:func:`table_of` picks the builder by the type of what it is given (a Report, Sweep,
Comparison, Review or CrossCheck). Builders read the object's ``to_dict()`` (``schema_version``
1) and never compute costs: shares are the row's integer over the dict's integer total, and the
size block is the dict's ``memory``. A new kind of result registers its builder with
``@table_of.register``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from fxcost.report.compare import Comparison
from fxcost.report.crosscheck import CrossCheck
from fxcost.report.explain import Explanation, noteworthy
from fxcost.report.kinds import Method
from fxcost.report.llm import LLMReport
from fxcost.report.report import OpTrace, Report, Sweep
from fxcost.report.review import Review

MB = 1024**2  # torchsummary's "MB" is a mebibyte; fxcost follows it so the figures compare


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    #: columns to right-align (numbers)
    numeric: set[str] = field(default_factory=set)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines under the table
    warnings: list[str] = field(default_factory=list)
    #: columns and note labels whose text is an expression of a symbolic report's letters (sympy's
    #: syntax, ``~`` before a leading term): LaTeX typesets them as mathematics
    math: set[str] = field(default_factory=set)
    #: the last row is a totals row, drawn apart
    total_last: bool = False


def count(n: int) -> str:
    return f"{n:,}"


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def mb(nbytes: int) -> str:
    return f"{nbytes / MB:.2f}"


def dims(shape: list[int] | None) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def header_line(d: dict[str, Any]) -> str:
    ins = ", ".join(f"{i['name']}: {dims(i['shape'])} {i['dtype']}" for i in d["inputs"])
    view = d.get("view", {})
    grouped = {"module": f", rolled up to depth {view.get('depth')}", "type": ", grouped by layer type"}.get(
        view.get("group_by", "layer"), ""
    )
    trace = d["trace"]
    if trace.get("method") == Method.ONNX:
        how = f"counted from {trace.get('file')} (ONNX opset {trace.get('opset')})"
    else:
        how = f"{d['mode']} tensors  ·  traced by {trace.get('method', '?')}"
    return f"{d['model']}  ·  inputs {ins}  ·  convention {d['convention']}  ·  {how}{grouped}"


LAYER_COLUMNS = ["id", "layer", "type", "kernel", "stride", "output", "activations", "params", "% params", "MACs", "% MACs"]


@functools.singledispatch
def table_of(obj: Any) -> Table:
    """The table that shows ``obj``, by its type."""
    raise TypeError(f"fxcost has no table for a {type(obj).__name__}")


def exact(x: Any) -> str:
    """A symbolic report's figure whole: a number with its thousands marked, else the expression."""
    return f"{int(x):,}" if isinstance(x, int) or getattr(x, "is_number", False) else str(x)


def _shown(x: Any) -> str:
    """A total in the table: whole, unless it runs past three lines (an adaptive pool's exact
    windows): then its leading term, the JSON having it whole."""
    from fxcost.report.formulas import leading

    text = exact(x)
    return text if len(text) <= 300 else f"{leading(x)} (the whole expression, {len(text):,} characters: -f json)"


def formula_table(report: Report, d: dict[str, Any]) -> Table:
    """A symbolic report: each row's figures by their leading term (``~`` where lower terms are
    left out), the totals and the domain in full in the notes."""
    from fxcost.report.formulas import leading

    t = d["totals"]
    rows = [[str(r["id"]), r["name"] + (" [unused]" if r["kind"] == "unused" else ""), r["type"], dims(r["output_shape"]),
             leading(r["activation_elements"]), leading(r["params"]), leading(r["macs"])]
            + ([leading(r.get("backward_macs", 0))] if "backward_macs" in t else []) for r in d["layers"]]
    rows.append(["", "total", "", "", leading(t["activation_elements"]), leading(t["params"]), leading(t["macs"])]
                + ([leading(t["backward_macs"])] if "backward_macs" in t else []))
    columns = ["id", "layer", "type", "output", "activations", "params", "MACs"] + (["backward MACs"] if "backward_macs" in t else [])
    table = Table(header_line(d), columns, rows, numeric={"id"}, total_last=True)
    table.math = {"activations", "params", "MACs", "backward MACs", "Total params", "Total MACs", "Total FLOPs",
                  "Total backward MACs", "Total backward FLOPs", "Total activation bytes"}
    sizes = d["sizes"]
    table.notes = [("Symbols", ", ".join(f"{x} (run at {h})" for x, h in zip(sizes["letters"], sizes["hints"], strict=True))),
                   ("Domain", "; ".join(sizes["domain"]))]
    table.notes += [(f"Total {name}", _shown(t[key])) for name, key in
                    (("params", "params"), ("MACs", "macs"), ("FLOPs", "flops"), ("backward MACs", "backward_macs"),
                     ("backward FLOPs", "backward_flops"), ("activation bytes", "activation_bytes")) if key in t]
    peaks = [p["peak_bytes"] for p in d.get("peaks", [])]
    if peaks:
        listed: list[str] = []
        for p in peaks:
            if sum(len(x) + 2 for x in listed) > 400:
                listed.append(f"and {len(peaks) - len(listed)} more (-f json)")
                break
            listed.append(_shown(p))
        shown = listed[0] if len(peaks) == 1 else f"the largest of {len(peaks)}: " + "; ".join(listed)
        at = d["peak_memory"]
        table.notes += [("Peak memory (bytes)", f"{shown} (at the hints: in {at['at'] or '(root)'}, {at.get('phase') or at['mode']})")]
    table.notes += [("Equal sizes", "; ".join(sizes["equal"]))] if sizes.get("equal") else []
    for f in sizes.get("fits", []):
        others = ", ".join(f"{k}={v}" for k, v in f["at"])
        if not f["size"]:
            table.notes += [(f"Fits {_gib(f['limit_bytes'])}", f"no {f['letter']} ({others}): the smallest is over")]
            continue
        same = f["peak_bytes"] == f["measured_peak_bytes"] and f["next_peak_bytes"] == f["measured_next_peak_bytes"]
        table.notes += [(f"Fits {_gib(f['limit_bytes'])}", f"{f['letter']} <= {f['size']:,} ({others}): peak {f['peak_bytes']:,} "
                                                          f"bytes, {f['letter']} = {f['size'] + 1:,} needs {f['next_peak_bytes']:,}; "
                                                          + ("measured the same at both" if same else
                                                             f"measured {f['measured_peak_bytes']:,} and {f['measured_next_peak_bytes']:,}"))]
    table.notes += [("Leading terms", "~ marks a row's highest-degree terms, floor() taken as its argument; the JSON "
                                      "(-f json) and report.at() have every figure exact")]
    table.notes += trace_notes(d.get("trace", {}))
    return table


@table_of.register
def layer_table(report: Report) -> Table:
    d = report.to_dict()
    if d.get("sizes"):
        return formula_table(report, d)
    t = d["totals"]
    rows = []
    for r in d["layers"]:
        rows.append(
            [
                str(r["id"]),
                r["name"] + (" [unused]" if r["kind"] == "unused" else ""),
                r["type"],
                dims(r.get("kernel_size")),
                dims(r.get("stride")),
                dims(r["output_shape"]),
                count(r["activation_elements"]),
                count(r["params"]),
                share(r["params"], t["params"]),
                count(r["macs"]),
                share(r["macs"], t["macs"]),
            ]
        )
    rows.append(
        ["", "total", "", "", "", "", count(t["activation_elements"]), count(t["params"]), share(t["params"], t["params"]), count(t["macs"]), share(t["macs"], t["macs"])]
    )
    columns, numeric = LAYER_COLUMNS, {"id", "activations", "params", "% params", "MACs", "% MACs"}
    if "backward_macs" in t:  # a training step: the backward's columns beside the forward's
        columns = [*columns, "backward MACs", "% backward", "saved (MB)"]
        numeric |= {"backward MACs", "% backward", "saved (MB)"}
        for row, r in zip(rows, [*d["layers"], t], strict=True):
            row += [count(r.get("backward_macs", 0)), share(r.get("backward_macs", 0), t["backward_macs"]),
                    mb(r.get("saved_bytes", 0))]
    if "roofline" in d:  # a device: each layer's time at best, and what bounds it
        roofs = d["roofline"]["layers"]
        columns = [*columns, "time", "bound"]
        numeric |= {"time"}
        for row, r in zip(rows, [*roofs, None], strict=True):
            row += [_seconds(r["seconds"]), r["bound"]] if r is not None else [_seconds(d["roofline"]["seconds"]), ""]
    table = Table(header_line(d), columns, rows, numeric=numeric, total_last=True)
    table.notes = totals_notes(d) + trace_notes(d.get("trace", {}))
    if "roofline" in d:
        hw = d["roofline"]["hardware"]
        table.notes += [("Roofline", f"{hw['device']}: {human(hw['peak_flops'], 'FLOP/s')} ({hw['dtype']}), "
                                     f"{human(hw['bandwidth_bytes_s'], 'B/s')}; time = max(FLOPs / peak, bytes moved / "
                                     f"bandwidth) per layer, no overheads, no fusion: a lower bound on the time")]
    table.warnings = [
        f"unsupported op {u['op']} in {u['where']!r} x{u['count']}: not counted" + (f" ({u['reason']})" if u.get("reason") else "")
        for u in d.get("unsupported", [])
    ]
    return table


OP_COLUMNS = ["#", "pass", "op", "module", "inputs from", "output", "dtype", "strides", "MACs", "FLOPs"]


def op_rows(ops: list[dict[str, Any]]) -> list[list[Any]]:
    """One line per op of a trace (exact integers; ``-`` for an operand no op of the trace made)."""
    return [[i, "backward" if o.get("backward") else "forward", o["op"], o["module"],
             " ".join("-" if j < 0 else str(j) for j in o["inputs"]),
             ", ".join(dims(s["shape"]) or "scalar" for s in o["outputs"]) if o["outputs"] else "-",
             ", ".join(dict.fromkeys(s["dtype"] for s in o["outputs"])) or "-",
             ", ".join("(" + ",".join(map(str, st)) + ")" for st in o["strides"]) or "-", o["macs"], o["flops"]]
            for i, o in enumerate(ops)]


@table_of.register
def op_table(trace: OpTrace) -> Table:
    d = trace.report.to_dict()
    rows = [[c if isinstance(c, str) else count(c) if i >= 8 else str(c) for i, c in enumerate(r)]
            for r in op_rows(d["trace"].get("ops", []))]
    t = d["totals"]
    rows.append(["", "", "total", "", "", "", "", "", count(t["macs"] + t.get("backward_macs", 0)),
                 count(t["flops"] + t.get("backward_flops", 0))])
    table = Table(header_line(d) + "  ·  op by op", OP_COLUMNS, rows, numeric={"#", "MACs", "FLOPs"}, total_last=True)
    table.notes = [("Inputs from", "the # of the op that made each tensor operand, in order; - an input, a parameter or "
                                   "a buffer"),
                   ("Module", "the innermost module call that ran the op (blank: the model's own forward)")]
    return table


def trace_notes(trace: dict[str, Any]) -> list[tuple[str, str]]:
    """What changes how the numbers read (an assumption, a path values chose), each once."""
    return [("Note", n) for n in dict.fromkeys(trace.get("notes", []))]


def how_traced(trace: dict[str, Any]) -> list[tuple[str, str]]:
    """``--verbose``: the routes tried before the one that counted and why each was left, the
    modules that ran op by op (their ops are counted), the warnings raised while analyzing."""
    lines = [(f"Tried {f['tracer']} first", f["error"]) for f in trace.get("fallbacks", [])]
    lines += [(f"Op by op: {o['module']} ({o['type']})", f"{o['reason']}; its ops are counted")
              for o in trace.get("opaque", [])]
    lines += [("Warning", w) for w in trace.get("warnings", [])]
    return lines


def _peak(p: dict[str, Any]) -> str:
    """The peak and what it is made of (buffers where there are any)."""
    if p["mode"] == "train":
        parts = [("params", p["params_bytes"]), ("grads", p["grads_bytes"]), ("optimizer", p["optimizer_bytes"]),
                 ("activations", p["activations_bytes"]), ("temporaries", p["temporaries_bytes"]),
                 ("inputs", p["inputs_bytes"]), ("buffers", p["buffers_bytes"])]
        shown = ", ".join(f"{k} {mb(v)}" for k, v in parts if v or k != "buffers")
        how = p.get("optimizer", "") + (f", autocast {p['amp']}" if p.get("amp") else "")
        return f"{mb(p['peak_bytes'])} in the {p['phase']} at {p['at'] or '(root)'}, training step ({how}): {shown}"
    parts = [("params", p["params_bytes"]), ("buffers", p["buffers_bytes"]), ("inputs", p["inputs_bytes"]),
             ("activations", p["activations_bytes"]), ("the layer's own", p["temporaries_bytes"])]
    shown = ", ".join(f"{k} {mb(v)}" for k, v in parts if v or k != "buffers")
    return f"{mb(p['peak_bytes'])} at {p['at'] or '(root)'}, inference: {shown}"


def _memory_lines(p: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The peak, and with --shard and --fit their lines."""
    if not p:
        return []
    lines = [("Peak memory (MB)", _peak(p))]
    if s := p.get("shard"):
        lines.append((f"Peak per rank, {s['scheme']} over {s['ranks']} (MB)",
                      f"{mb(s['peak_bytes'])}: params {mb(s['params_bytes'])}, grads {mb(s['grads_bytes'])}, "
                      f"optimizer {mb(s['optimizer_bytes'])}, activations and temporaries whole"))
    if f := p.get("fit"):
        limit = f["limit_bytes"]
        lines.append((f"Largest batch in {limit / 2**30:.2f} GiB" if limit >= 2**30 else f"Largest batch in {limit / 2**20:.2f} MiB",
                      f"{f['batch']:,} (peak {mb(f['peak_bytes'])} MB; batch {f['batch'] + 1:,}: {mb(f['next_peak_bytes'])} MB)"))
    return lines


def totals_notes(d: dict[str, Any]) -> list[tuple[str, str]]:
    t, m = d["totals"], d["memory"]
    return [
        ("Total params", f"{count(t['params'])} (weights {count(t['weight_params'])}, biases {count(t['bias_params'])})"),
        ("Trainable params", count(t["trainable_params"])),
        ("Non-trainable params", count(t["non_trainable_params"])),
        ("Buffers", count(t["buffers"])),
        ("MACs", f"{count(t['macs'])} ({human(t['macs'], 'MACs')})"),
        ("FLOPs", f"{count(t['flops'])} ({human(t['flops'], 'FLOPs')})"),
        *([("Backward MACs", f"{count(t['backward_macs'])} ({human(t['backward_macs'], 'MACs')})"),
           ("Backward FLOPs", f"{count(t['backward_flops'])} ({human(t['backward_flops'], 'FLOPs')})"),
           ("Training step FLOPs", f"{count(t['flops'] + t['backward_flops'])} "
                                   f"({human(t['flops'] + t['backward_flops'], 'FLOPs')}): forward + backward"),
           ("Saved for backward (MB)", f"{mb(t.get('saved_bytes', 0))}: what the forward's ops keep for the backward, "
                                       f"weights aside")]
          if "backward_macs" in t else []),
        ("Activations", f"{count(t['activation_elements'])} elements, {mb(t['activation_bytes'])} MB"),
        ("Input size (MB)", mb(m["input_bytes"])),
        ("Forward/backward pass size (MB)", mb(m["forward_backward_bytes"])),
        ("Params size (MB)", mb(m["params_bytes"])),
        ("Estimated Total Size (MB)", mb(m["total_bytes"])),
        *_memory_lines(d.get("peak_memory")),
    ]


SWEEP_COLUMNS = ["input", "params", "MACs", "FLOPs", "activations", "activations (MB)"]


@table_of.register
def sweep_table(sweep: Sweep) -> Table:
    d = sweep.to_dict()
    reports = d["sweep"]
    rows = []
    for r in reports:
        t = r["totals"]
        ins = ", ".join(dims(i["shape"]) for i in r["inputs"])
        rows.append([ins, count(t["params"]), count(t["macs"]), count(t["flops"]), count(t["activation_elements"]), mb(t["activation_bytes"])])
    title = f"{reports[0]['model']} at {len(reports)} input sizes  ·  convention {reports[0]['convention']}" if reports else "sweep"
    warnings = sorted({f"unsupported op {u['op']} in {u['where']!r}: not counted" for r in reports for u in r.get("unsupported", [])})
    table = Table(title, SWEEP_COLUMNS, rows, numeric=set(SWEEP_COLUMNS) - {"input"}, warnings=warnings)
    if sweep.formula is not None:
        _beside_the_formula(table, sweep, d)
    return table


def _beside_the_formula(table: Table, sweep: Sweep, d: dict[str, Any]) -> None:
    """A sweep's measured points with the formula's figures at each: its MACs, and whether every
    figure (rows, totals, peak) is the measured one."""
    table.columns = [*table.columns, "MACs (formula)", "formula"]
    table.numeric |= {"MACs (formula)"}
    for row, measured, by in zip(table.rows, sweep.reports, sweep.by_formula(), strict=True):
        if isinstance(by, Report):
            # the counts every route agrees on (a route's activations may differ: docs/tracing.md)
            same = all(getattr(by.total(), m) == getattr(measured.total(), m) for m in ("params", "macs", "flops"))
            row += [count(by.total().macs), "same params, MACs, FLOPs" if same else "differs"]
        else:
            row += ["-", "outside its domain"]
    f = d["formula"]
    table.notes = [("Formula", f"{f['model']} at {dims(f['inputs'][0]['shape'])}"),
                   ("MACs", _shown(f["totals"]["macs"])), ("Domain", "; ".join(f["sizes"]["domain"]))]


COMPARE_COLUMNS = ["metric", "layer type", "A", "B", "A / B"]


@table_of.register
def compare_table(comparison: Comparison) -> Table:
    d = comparison.to_dict()
    c = d["compare"]

    def who(side: dict[str, Any]) -> str:
        return f"{side['model']} ({', '.join(dims(i['shape']) for i in side['inputs'])})"

    rows = [
        [r["metric"], r["group"], count(r["a"]), count(r["b"]), f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"]
        for r in c["rows"]
    ]
    return Table(f"A = {who(c['a'])}  vs  B = {who(c['b'])}", COMPARE_COLUMNS, rows, numeric={"A", "B", "A / B"})


REVIEW_COLUMNS = ["check", "metric", "value", "limit", "baseline", "growth", "used", "status"]


@table_of.register
def review_table(review: Review) -> Table:
    """What is over its budget or grew past the baseline, and the layers that contribute most."""
    d = review.to_dict()
    rv = d["review"]
    rows = []
    for c in rv["checks"]:
        used = f"{100 * c['value'] / c['limit']:.1f}%" if c["limit"] else "-"
        base = c["baseline"]
        growth = f"{100 * c['growth']:+.1f}%" if c["growth"] is not None else "-"
        rows.append([c["kind"], c["metric"], count(c["value"]), count(c["limit"]),
                     count(base) if base is not None else "-", growth, used, "ok" if c["ok"] else "OVER"])
    ins = ", ".join(dims(i["shape"]) for i in rv["inputs"])
    verdict = "PASS: within budget" if rv["passed"] else "FAIL: over budget"
    table = Table(f"{verdict}  ·  {rv['model']} ({ins})  ·  convention {rv['convention']}", REVIEW_COLUMNS, rows,
                  numeric={"value", "limit", "baseline", "growth", "used"})
    table.warnings = [f"unsupported op {u['op']} in {u['where']!r} x{u['count']}: not counted in these totals"
                      for u in rv.get("unsupported", [])]
    for c in rv["checks"]:
        if not c["ok"]:
            top = ", ".join(f"{t['name']} {count(t['value'])} ({share(t['value'], c['value'])})" for t in c["top"])
            table.notes.append((f"{c['metric']} ({c['kind']}): largest", top or "-"))
    return table


CROSSCHECK_COLUMNS = ["metric", "layer type", "PyTorch", "ONNX", "ONNX - PyTorch", ""]
_METRIC_NAMES = {"params": "params", "macs": "MACs", "flops": "FLOPs", "activation_elements": "activations"}


@table_of.register
def crosscheck_table(check: CrossCheck) -> Table:
    """Both routes' counts by layer type; the verdict on params and MACs; every difference named."""
    d = check.to_dict()
    x = d["crosscheck"]
    rows = [[_METRIC_NAMES.get(r["metric"], r["metric"]), r["group"], count(r["torch"]), count(r["onnx"]),
             f"{r['diff']:+,}" if r["diff"] else "0", "" if not r["diff"] else "differs"]
            for r in x["rows"]]
    ins = ", ".join(dims(i["shape"]) for i in x["inputs"])
    failed = [m for m, ok in (("params", x["params_equal"]), ("MACs", x["macs_equal"])) if not ok]
    verdict = "PASS: params and MACs agree exactly" if x["passed"] else "FAIL: " + "; ".join(
        ([" and ".join(failed) + " differ"] if failed else [])
        + ([] if x["all_counted"] else ["ops without a formula (see the differences)"]))
    ex = x.get("export") or {}
    how = (f"opset {ex['opset']}, {'optimized' if ex['optimized'] else 'not optimized'}"
           + (", structure only" if ex["structure_only"] else "")) if ex else "a file fxcost did not export"
    table = Table(f"{verdict}  ·  {x['model']} ({ins})", CROSSCHECK_COLUMNS, rows,
                  numeric={"PyTorch", "ONNX", "ONNX - PyTorch"})
    table.notes.append(("PyTorch route", f"traced by {x['torch_trace'].get('method', '?')}, convention {x['convention']}"))
    table.notes.append(("ONNX route", f"{x['onnx_file']}: {how}, written by "
                        f"{x['onnx_trace'].get('producer') or 'an unknown producer'}"))
    ort = x["onnxruntime"]
    diff = ort["max_abs_diff"]
    table.notes.append(("onnxruntime vs PyTorch", (f"max abs diff {diff:.3g}; " if diff is not None else "") + ort["note"]))
    table.notes += [("difference", e) for e in x["explanations"]]
    return table


@table_of.register
def explain_table(explained: Explanation) -> Table:
    """fxcost's MACs and the tool's by layer type, then each named difference with the MACs it
    moves (they add up to the gap), the params, and the installed tool's own figure."""
    x = explained.to_dict()["explain"]
    tool = f"{x['tool']} {x['version']}"
    rows = [[t["module_type"], count(t["modules"]), count(t["fxcost"]), count(t["tool"]),
             f"{t['diff']:+,}" if t["diff"] else "0"] for t in x["by_type"]]
    rows.append(["total", "", count(x["fxcost"]["macs"]), count(x["reproduced"]["macs"]),
                 f"{x['gap']:+,}" if x["gap"] else "0"])
    ins = ", ".join(dims(s) for s in x["inputs"])
    table = Table(f"{x['model']} ({ins}): fxcost vs {tool} ({x['headline']}, reproduced)",
                  ["layer type", "modules", "fxcost MACs", f"{x['tool']} MACs", "difference"], rows,
                  numeric={"modules", "fxcost MACs", f"{x['tool']} MACs", "difference"}, total_last=True)
    for d in x["differences"]:
        n = f"{d['modules']} module{'s' if d['modules'] != 1 else ''}"
        table.notes.append((f"{d['diff']:+,}", f"{d['module_type']} ({n}): {d['reason']}"))
    table.notes.append(("= gap", f"{x['gap']:+,} MACs: {tool} {count(x['reproduced']['macs'])}, fxcost "
                        f"{count(x['fxcost']['macs'])}" + ("" if x["differences"] else ": no differences")))
    params = x["reproduced"]["params"]
    table.notes.append(("params", f"{x['tool']} {count(params)}, fxcost {count(x['fxcost']['params'])}"
                        + (f" ({x['params_reason']})" if x["params_reason"] else "")))
    worth = noteworthy(x["unseen"])
    table.notes += [(f"{x['tool']} does not count", u) for u in worth]
    if len(x["unseen"]) > len(worth):
        table.notes.append((f"{x['tool']} does not count", f"{len(x['unseen']) - len(worth)} cheaper ops "
                            "(pointwise, indexing; -f json lists them)"))
    m = x["measured"]
    if m["macs"] is not None:
        same = "the same as the reproduction" if m["matches"] else "DIFFERENT from the reproduction"
        table.notes.append((f"{x['tool']} itself", f"{count(m['macs'])} MACs, {count(m['params'])} params: {same} "
                            f"({m['note']})"))
    elif m["note"]:
        table.notes.append((f"{x['tool']} itself", m["note"]))
    table.notes += [(f"{x['tool']} in general", miss) for miss in x["misses"]]
    if m["matches"] is False:
        table.warnings.append(f"{x['tool']} reported other figures than its reproduction: please file an issue")
    return table


def _seconds(s: float) -> str:
    for div, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if s >= div:
            return f"{s / div:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


@table_of.register
def llm_table(report: LLMReport) -> Table:
    """One row per layer type and step (prefill, first decode step), then the serving figures."""
    d = report.to_dict()
    roofline = "roofline" in d
    columns = ["step", "layer type", "count", "MACs", "FLOPs", *(["bytes moved", "time", "bound"] if roofline else [])]
    rows = []
    for step, types in (("prefill", d["prefill"]["by_type"]), (f"decode @ {d['decode']['first']['context']:,}", d["decode"]["by_type"])):
        for t in types:
            rows.append([step, t["type"], count(t["count"]), count(t["macs"]), count(t["flops"]),
                         *([count(t["bytes_moved"]), _seconds(t["seconds"]), t["bound"]] if roofline else [])])
    kv, pre, dec, mem = d["kv_cache"], d["prefill"], d["decode"], d["memory"]
    notes = [
        ("Params", f"{count(d['params'])} total, {count(d['active_params'])} active per token"),
        ("Weights", f"{count(d['weights_bytes'])} bytes ({_gib(d['weights_bytes'])}) in {d['dtype']}"),
        ("KV cache", f"{count(kv['bytes_per_token'])} bytes per token per sequence ({kv['dtype']}); "
                     f"{count(kv['bytes'])} bytes ({_gib(kv['bytes'])}) at {d['prompt'] + d['generate']:,} tokens x {d['batch']}"),
        ("Prefill", f"{d['batch']} x {d['prompt']:,} tokens: {count(pre['macs'])} MACs ({human(pre['macs'], 'MACs')}), "
                    f"{count(pre['flops'])} FLOPs; logits of {'the last position' if pre['logits'] == 'last' else 'every position'}"),
        ("Decode, first step", f"context {dec['first']['context']:,}: {count(dec['first']['macs'])} MACs, {count(dec['first']['flops'])} FLOPs"),
        ("Decode, last step", f"context {dec['last']['context']:,}: {count(dec['last']['macs'])} MACs, {count(dec['last']['flops'])} FLOPs"),
        ("Decode, all steps", f"{d['generate']:,} steps: {count(dec['total_macs'])} MACs ({human(dec['total_macs'], 'MACs')}), "
                              f"{count(dec['total_flops'])} FLOPs"),
        ("Memory", f"{_gib(mem['total_bytes'])}: weights {_gib(mem['weights_bytes'])} + KV cache {_gib(mem['kv_cache_bytes'])} + "
                   f"peak activations {_gib(max(mem['prefill_activation_bytes'], mem['decode_activation_bytes']))}"),
    ]
    if f := d.get("fit"):
        notes.append((f"Largest batch in {_gib(f['limit_bytes'])}", f"{f['batch']:,} ({_gib(f['peak_bytes'])}; batch {f['batch'] + 1:,}: "
                                                                    f"{_gib(f['next_peak_bytes'])})"))
    if roofline:
        r = d["roofline"]
        notes += [("Device", f"{r['device']}: {human(r['peak_flops'], 'FLOP/s')} ({d['dtype']}), {human(r['bandwidth_bytes_s'], 'B/s')}"),
                  ("Estimate", f"prefill {_seconds(r['prefill_s'])}, decode {_seconds(r['decode_s_per_token'])} per token, "
                               f"{r['tokens_per_s']:,.1f} tokens/s at batch {d['batch']} (a best case: see Assumes)")]
        notes += [("Assumes", a) for a in d["assumptions"]]
    notes += [("Note", n) for n in d["notes"]]
    title = f"{d['model']}  ·  batch {d['batch']}, prompt {d['prompt']:,}, generate {d['generate']:,}  ·  {d['dtype']}"
    return Table(title, columns, rows, numeric={"count", "MACs", "FLOPs", "bytes moved", "time"}, notes=notes)
