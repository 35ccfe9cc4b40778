"""Exporters: render a Report (or a Sweep, Comparison, Review or CrossCheck) as text, Markdown,
CSV or JSON, chosen by the type of what they render.

The tables and the CSV read the object's ``to_dict()``; none computes a cost. To add a format: a function
here taking the object (or its :func:`~fxcost.exporters.tables.table_of` table) and one line in
:func:`render` and :data:`FORMATS`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fxcost.errors import printable
from fxcost.exporters.tables import Table, table_of
from fxcost.report.compare import Comparison
from fxcost.report.crosscheck import CrossCheck
from fxcost.report.explain import Explanation
from fxcost.report.llm import LLMReport
from fxcost.report.report import NOTEBOOK as _NOTEBOOK
from fxcost.report.report import OpTrace, Report, Sweep
from fxcost.report.review import Review

FORMATS = ("table", "markdown", "csv", "json", "latex", "html")


def to_json(obj: Any) -> str:
    """The object's JSON (``schema_version`` 1), as ``fxcost analyze -f json`` writes it."""
    return json.dumps(obj.to_dict(), indent=2, default=_expression) + "\n"


def _expression(x: Any) -> str:
    """A symbolic report's figure (a sympy expression of its letters) as JSON: its text, which
    ``sympy.sympify`` reads back (``2*B*S**2 + 768*B*S``)."""
    import sympy

    if isinstance(x, sympy.Basic):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON data")


def _printable(t: Table) -> Table:
    """The table with every control character in its text escaped: a model's names are data."""
    cell = functools.partial(printable, lines=False)
    return replace(t, title=cell(t.title), rows=[[cell(c) for c in row] for row in t.rows],
                   notes=[(cell(k), cell(v)) for k, v in t.notes], warnings=[cell(w) for w in t.warnings])


def to_markdown(t: Table) -> str:
    t = _printable(t)
    out = [f"**{t.title}**", ""]
    out.append("| " + " | ".join(t.columns) + " |")
    out.append("| " + " | ".join("---:" if c in t.numeric else "---" for c in t.columns) + " |")
    for row in t.rows:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    if t.notes:
        out += ["", "| | |", "| --- | ---: |"] + [f"| {k} | {v} |" for k, v in t.notes]
    if t.warnings:
        out += [""] + [f"> warning: {w}" for w in t.warnings]
    return "\n".join(out) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def _math(text: str) -> str:
    """A symbolic report's expression (sympy's syntax; ``~`` before a leading term, ``1,234`` for a
    number) typeset as TeX mathematics; text that is no expression, escaped as text."""
    import sympy

    lead, body = ("\\sim ", text[1:]) if text.startswith("~") else ("", text)
    try:
        expr = sympy.sympify(body.replace(",", ""), locals={c: sympy.Symbol(c) for c in "BSHWLNTCDE"})
    except (sympy.SympifyError, SyntaxError, TypeError, ValueError):
        return _tex(text)
    return f"${lead}{sympy.latex(expr)}$"


def to_latex(t: Table) -> str:
    """A booktabs table, ready for a paper (``\\usepackage{booktabs}``): the title as its
    caption, numbers right-aligned, the totals row ruled apart, the size block as a second
    tabular under it. Every character TeX treats as markup is escaped; a symbolic report's
    expressions are typeset as mathematics (``$\\sim 256 B S^{2}$``)."""
    t = _printable(t)
    spec = "".join("r" if c in t.numeric else "l" for c in t.columns)
    out = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{_tex(t.title)}}}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
           " & ".join(_tex(c) for c in t.columns) + r" \\", "\\midrule"]
    for i, row in enumerate(t.rows):
        if t.total_last and i == len(t.rows) - 1:
            out.append("\\midrule")
        out.append(" & ".join(_math(c) if col in t.math and c else _tex(c) for col, c in zip(t.columns, row, strict=True)) + r" \\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if t.notes:
        out += ["", "\\smallskip", "\\begin{tabular}{lr}"] + [
            f"{_tex(k)} & {_math(v) if k in t.math else _tex(v)} \\\\" for k, v in t.notes] + ["\\end{tabular}"]
    if t.warnings:
        out += ["", *(f"\\par\\emph{{warning: {_tex(w)}}}" for w in t.warnings)]
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def to_html(t: Table) -> str:
    """The table alone as an HTML fragment (what a notebook or a page embeds; ``fxcost report``
    writes the whole report): a ``<table class="fxcost">`` with the title as its caption, then
    the size block as a second table. Every cell is escaped."""
    from html import escape

    t = _printable(t)

    def cells(row: list[str], tag: str) -> str:
        return "".join(f'<{tag}{" class=num" if c in t.numeric else ""}>{escape(v)}</{tag}>'
                       for c, v in zip(t.columns, row, strict=True))

    out = ['<table class="fxcost">', f"<caption>{escape(t.title)}</caption>", f"<thead><tr>{cells(t.columns, 'th')}</tr></thead>",
           "<tbody>"]
    for i, row in enumerate(t.rows):
        total = t.total_last and i == len(t.rows) - 1
        out.append(f"<tr{' class=total' if total else ''}>{cells(row, 'td')}</tr>")
    out += ["</tbody>", "</table>"]
    if t.notes:
        out += ['<table class="fxcost-notes">'] + [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in t.notes]
        out += ["</table>"]
    out += [f'<p class="fxcost-warning">warning: {escape(w)}</p>' for w in t.warnings]
    return "\n".join(out) + "\n"


@functools.singledispatch
def to_csv(obj: Any) -> str:
    """Exact integers, one row per layer (or sweep point, or comparison line)."""
    raise TypeError(f"fxcost has no CSV for a {type(obj).__name__}")


def _csv(header: list[str], rows: Any) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([printable(c, lines=False) if isinstance(c, str) else c for c in row] for row in rows)
    return buf.getvalue()


@to_csv.register
def _ops_csv(trace: OpTrace) -> str:
    from fxcost.exporters.tables import OP_COLUMNS, op_rows

    return _csv(OP_COLUMNS, op_rows(trace.report.to_dict()["trace"].get("ops", [])))


@to_csv.register
def _sweep_csv(sweep: Sweep) -> str:
    def line(r: dict[str, Any]) -> list[Any]:
        t = r["totals"]
        return [",".join("x".join(map(str, i["shape"])) for i in r["inputs"]), t["params"], t["macs"], t["flops"],
                t["activation_elements"], t["activation_bytes"]]

    return _csv(["input", "params", "macs", "flops", "activation_elements", "activation_bytes"],
                (line(r) for r in sweep.to_dict()["sweep"]))


@to_csv.register
def _explain_csv(explained: Explanation) -> str:
    x = explained.to_dict()["explain"]
    return _csv(["kind", "module_type", "reason", "modules", "fxcost", x["tool"], "diff"],
                [*(["type", t["module_type"], "", t["modules"], t["fxcost"], t["tool"], t["diff"]] for t in x["by_type"]),
                 *(["difference", d["module_type"], d["reason"], d["modules"], d["fxcost"], d["tool"], d["diff"]]
                   for d in x["differences"]),
                 ["total", "", "", "", x["fxcost"]["macs"], x["reproduced"]["macs"], x["gap"]]])


@to_csv.register
def _review_csv(review: Review) -> str:
    return _csv(["kind", "metric", "value", "limit", "baseline", "ok"],
                ([c["kind"], c["metric"], c["value"], c["limit"], "" if c["baseline"] is None else c["baseline"], c["ok"]]
                 for c in review.to_dict()["review"]["checks"]))


@to_csv.register
def _crosscheck_csv(check: CrossCheck) -> str:
    return _csv(["metric", "group", "torch", "onnx", "diff"],
                ([r["metric"], r["group"], r["torch"], r["onnx"], r["diff"]] for r in check.to_dict()["crosscheck"]["rows"]))


@to_csv.register
def _compare_csv(comparison: Comparison) -> str:
    return _csv(["metric", "group", "a", "b", "ratio"],
                ([r["metric"], r["group"], r["a"], r["b"], "" if r["ratio"] is None else repr(r["ratio"])]
                 for r in comparison.to_dict()["compare"]["rows"]))


#: a layer's identity; every metric of Counts follows, in its order
@to_csv.register
def _llm_csv(report: LLMReport) -> str:
    """One line per step and layer type: exact integers, with the roofline's time where there is one."""
    d = report.to_dict()
    steps = [("prefill", d["prefill"]["by_type"]), ("decode", d["decode"]["by_type"])]
    context = {"prefill": 0, "decode": d["decode"]["first"]["context"]}
    return _csv(["step", "context", "type", "count", "macs", "flops", "bytes_moved", "seconds", "bound"],
                ([step, context[step], t["type"], t["count"], t["macs"], t["flops"], t["bytes_moved"], t["seconds"], t["bound"]]
                 for step, types in steps for t in types))


_LAYER_CSV = ["id", "name", "type", "kind", "module_path", "kernel_size", "stride", "output_shape", "H", "W", "C"]


@to_csv.register
def _report_csv(report: Report) -> str:
    metrics = report.metrics()

    def line(r: dict[str, Any]) -> list[Any]:
        shape = r["output_shape"]
        hwc = [shape[2], shape[3], shape[1]] if len(shape) == 4 else ["", "", ""]
        return [r["id"], r["name"], r["type"], r["kind"], r["module_path"],
                "x".join(map(str, r["kernel_size"] or [])), "x".join(map(str, r["stride"] or [])),
                "x".join(map(str, shape)), *hwc, *(r.get(m, 0) for m in metrics)]

    return _csv([*_LAYER_CSV, *metrics], (line(r) for r in report.to_dict()["layers"]))


def to_text(t: Table, width: int = 160, color: bool = False) -> str:
    """A terminal table drawn by rich; plain characters unless ``color``."""
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    t = _printable(t)
    # cells are plain text: rich would read "[unused]" or a shape like "[1, 3]" as markup and drop it
    rt = RichTable(title=Text(t.title), box=box.SIMPLE_HEAD, title_justify="left", show_edge=False)
    # a column with nothing in it (kernel and stride of a rolled-up view) only takes room
    keep = [i for i, _ in enumerate(t.columns) if any(row[i] not in ("", "-") for row in t.rows)]
    for i in keep:
        c = t.columns[i]
        # only names fold; numbers and shapes never wrap
        rt.add_column(c, justify="right" if c in t.numeric else "left", no_wrap=i != 1, overflow="fold", min_width=12 if i == 1 else None)
    for i, row in enumerate(t.rows):
        rt.add_row(*(Text(row[j]) for j in keep), end_section=t.total_last and i == len(t.rows) - 2)
    # never squeeze a number: if the columns that cannot wrap need more than `width`, use more
    fixed = sum(max(len(t.columns[j]), *(len(r[j]) for r in t.rows)) + 3 for j in keep if j != 1)
    names = max((len(r[1]) for r in t.rows), default=12)
    width = max(width, fixed + min(names, 40) + 3)  # names fold only past 40 characters
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="standard" if color else None, highlight=False, emoji=False)
    console.print(rt)
    if t.notes:
        label_w = max(len(k) for k, _ in t.notes)
        for k, v in t.notes:
            console.print(f"{k + ':':<{label_w + 1}} {v}", markup=False)
    for w in t.warnings:
        console.print(f"warning: {w}", markup=False)
    return buf.getvalue()


def render(obj: Any, fmt: str = "table", *, width: int = 160, color: bool = False, verbose: bool = False) -> str:
    """``obj`` (a Report, Sweep, Comparison, Review or CrossCheck) in the format ``fmt``;
    ``verbose``: a table also says how each report was traced (:func:`traced_lines`)."""
    if fmt == "json":
        return to_json(obj)
    if fmt == "csv":
        return to_csv(obj)
    if fmt in _TABLES:
        table = table_of(obj)
        if verbose:
            table.notes += traced_lines(obj)
        return _TABLES[fmt](table, width, color)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


#: the formats that lay out a :class:`Table`: (table, width, color) -> text
_TABLES: dict[str, Callable[[Table, int, bool], str]] = {
    "markdown": lambda t, width, color: to_markdown(t),
    "table": lambda t, width, color: to_text(t, width=width, color=color),
    "latex": lambda t, width, color: to_latex(t),
    "html": lambda t, width, color: to_html(t),
}


def traced_lines(obj: Any) -> list[tuple[str, str]]:
    """How each report in ``obj`` was traced (``--verbose``), named by its model where there are several."""
    from fxcost.exporters.tables import how_traced

    reports = [obj] if isinstance(obj, Report) else [obj.report] if isinstance(obj, OpTrace) else \
        list(obj.reports) if isinstance(obj, Sweep) else [r for r in (getattr(obj, "a", None), getattr(obj, "b", None))
                                                            if isinstance(r, Report)]
    lines = []
    for r in reports:
        prefix = f"{r.model}: " if len(reports) > 1 else ""
        trace = r.trace.to_dict()
        found = how_traced(trace) or [("Traced", f"by {trace['method']} at the first try, no warnings")]
        lines += [(prefix + k, v) for k, v in found]
    return lines


if not _NOTEBOOK:  # a notebook shows a Report through these
    _NOTEBOOK.append(render)

__all__ = ["FORMATS", "Table", "render", "table_of", "to_csv", "to_html", "to_json", "to_latex", "to_markdown", "to_text"]
