"""Exporters: render a Report (or a Sweep, Comparison, Review or CrossCheck) as text, Markdown,
CSV or JSON.

Each reads the object's ``to_dict()`` only.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Protocol

from fxcost.exporters.tables import Table, compare_table, crosscheck_table, layer_table, review_table, sweep_table

FORMATS = ("table", "markdown", "csv", "json")


class HasDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def _table_for(d: dict[str, Any]) -> Table:
    if "sweep" in d:
        return sweep_table(d)
    if "compare" in d:
        return compare_table(d)
    if "review" in d:
        return review_table(d)
    if "crosscheck" in d:
        return crosscheck_table(d)
    return layer_table(d)


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2) + "\n"


def to_markdown(t: Table) -> str:
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


def to_csv(d: dict[str, Any]) -> str:
    """Exact integers, one row per layer (or sweep point, or comparison line)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if "sweep" in d:
        w.writerow(["input", "params", "macs", "flops", "activation_elements", "activation_bytes"])
        for r in d["sweep"]:
            t = r["totals"]
            w.writerow([",".join("x".join(map(str, i["shape"])) for i in r["inputs"]), t["params"], t["macs"], t["flops"], t["activation_elements"], t["activation_bytes"]])
    elif "review" in d:
        w.writerow(["kind", "metric", "value", "limit", "baseline", "ok"])
        for c in d["review"]["checks"]:
            w.writerow([c["kind"], c["metric"], c["value"], c["limit"], "" if c["baseline"] is None else c["baseline"], c["ok"]])
    elif "crosscheck" in d:
        w.writerow(["metric", "group", "torch", "onnx", "diff"])
        for r in d["crosscheck"]["rows"]:
            w.writerow([r["metric"], r["group"], r["torch"], r["onnx"], r["diff"]])
    elif "compare" in d:
        w.writerow(["metric", "group", "a", "b", "ratio"])
        for r in d["compare"]["rows"]:
            w.writerow([r["metric"], r["group"], r["a"], r["b"], "" if r["ratio"] is None else repr(r["ratio"])])
    else:
        cols = ["id", "name", "type", "kind", "module_path", "kernel_size", "stride", "output_shape", "H", "W", "C",
                "activation_elements", "activation_bytes", "params", "weight_params", "bias_params",
                "trainable_params", "buffers", "macs", "flops"]
        w.writerow(cols)
        for r in d["layers"]:
            shape = r["output_shape"]
            hwc = [shape[2], shape[3], shape[1]] if len(shape) == 4 else ["", "", ""]
            w.writerow(
                [r["id"], r["name"], r["type"], r["kind"], r["module_path"],
                 "x".join(map(str, r["kernel_size"] or [])), "x".join(map(str, r["stride"] or [])),
                 "x".join(map(str, shape)), *hwc, r["activation_elements"], r["activation_bytes"], r["params"],
                 r["weight_params"], r["bias_params"], r["trainable_params"], r["buffers"], r["macs"], r["flops"]]
            )
    return buf.getvalue()


def to_text(t: Table, width: int = 160, color: bool = False) -> str:
    """A terminal table drawn by rich; plain characters unless ``color``."""
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

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


def render(obj: HasDict | dict[str, Any], fmt: str = "table", *, width: int = 160, color: bool = False) -> str:
    d = obj if isinstance(obj, dict) else obj.to_dict()
    if fmt == "json":
        return to_json(d)
    if fmt == "csv":
        return to_csv(d)
    if fmt == "markdown":
        return to_markdown(_table_for(d))
    if fmt == "table":
        return to_text(_table_for(d), width=width, color=color)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "render", "to_csv", "to_json", "to_markdown", "to_text"]
