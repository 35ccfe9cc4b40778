"""A self-contained HTML report: the diagram, a sortable per-layer table, the totals, and charts
of where the params and MACs sit (by layer and by type); with several input sizes, a plot of
params, MACs and activation memory against input size.

Everything is inline (the SVG diagram, the CSS, a few lines of JavaScript, charts drawn as SVG
here): the file opens without network access. Clicking a node in the diagram highlights its
table row, and clicking a row highlights its node. Like every exporter it reads the report's
``to_dict()`` (and its ``by_type()`` roll-up) and computes no costs.
"""

from __future__ import annotations

import html
from typing import Any

from fxcost.errors import printable
from fxcost.exporters.tables import count, dims, header_line, how_traced, human, mb, share, totals_notes, trace_notes
from fxcost.report.report import Report, Sweep

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; white-space: nowrap; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; }
th.num, td.num { text-align: right; }
tr.hl td { background: #ffe9a8; }
.diagram { overflow: auto; border: 1px solid #ddd; max-height: 80vh; }
.diagram g.node { cursor: pointer; }
.diagram g.node.hl polygon, .diagram g.node.hl path, .diagram g.node.hl ellipse { stroke: #e6550d; stroke-width: 4; }
.charts { display: flex; flex-wrap: wrap; gap: 2em; }
.warn { color: #a00; }
.totals td:first-child { color: #555; }
"""

_JS = """
(function () {
  function byId(id) { return document.getElementById(id); }
  function highlight(rowId) {
    document.querySelectorAll('.hl').forEach(function (e) { e.classList.remove('hl'); });
    var tr = byId('tr-' + rowId), node = byId('row-' + rowId);
    if (tr) { tr.classList.add('hl'); tr.scrollIntoView({block: 'center'}); }
    if (node) { node.classList.add('hl'); }
  }
  document.querySelectorAll('.diagram g.node').forEach(function (g) {
    if (g.id && g.id.indexOf('row-') === 0) {
      g.addEventListener('click', function () { highlight(g.id.slice(4)); });
    }
  });
  document.querySelectorAll('#layers tbody tr').forEach(function (tr) {
    tr.addEventListener('click', function () { highlight(tr.dataset.row); });
  });
  document.querySelectorAll('#layers th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = document.querySelector('#layers tbody');
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.dataset.dir !== 'asc';
      th.dataset.dir = asc ? 'asc' : 'desc';
      var numeric = th.classList.contains('num');
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        // numbers by value; names and shapes part by part (net.2 before net.10, 1x64 before 1x128)
        var c = numeric ? parseFloat(x) - parseFloat(y) : String(x).localeCompare(String(y), undefined, {numeric: true});
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""

_COLUMNS = [  # header, key in the layer dict, numeric
    ("id", "id", True), ("layer", "name", False), ("type", "type", False), ("kernel", "kernel_size", False),
    ("stride", "stride", False), ("output", "output_shape", False), ("activations", "activation_elements", True),
    ("params", "params", True), ("% params", "params%", True), ("MACs", "macs", True), ("% MACs", "macs%", True),
    ("FLOPs", "flops", True),
]


def _e(text: Any) -> str:
    return html.escape(printable(str(text)), quote=True)  # XML has no escape for a control character


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG without its XML prolog and doctype, ready to sit inside HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _table(d: dict[str, Any]) -> str:
    t = d["totals"]
    head = "".join(f'<th class="{"num" if num else ""}">{_e(h)}</th>' for h, _, num in _COLUMNS)
    body = []
    for r in d["layers"]:
        cells = []
        for _, key, num in _COLUMNS:
            if key == "params%":
                v, shown = r["params"], share(r["params"], t["params"])
            elif key == "macs%":
                v, shown = r["macs"], share(r["macs"], t["macs"])
            elif key in ("kernel_size", "stride", "output_shape"):
                v = shown = dims(r[key])
            elif num:
                v, shown = r[key], count(r[key])
            else:
                v = shown = r[key] + (" [unused]" if key == "name" and r["kind"] == "unused" else "")
            cells.append(f'<td class="{"num" if num else ""}" data-v="{_e(v)}">{_e(shown)}</td>')
        body.append(f'<tr id="tr-{r["id"]}" data-row="{r["id"]}">{"".join(cells)}</tr>')
    return f'<table id="layers"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def bar_chart(title: str, items: list[tuple[str, int]], unit: str, width: int = 460) -> str:
    """Horizontal bars, one per item, scaled to the largest; labels carry the exact number."""
    items = [(k, v) for k, v in items if v > 0]
    if not items:
        return f'<svg class="chart" width="{width}" height="40"><text x="0" y="24" font-size="12">{_e(title)}: none</text></svg>'
    top = max(v for _, v in items)
    row_h, label_w = 18, 150
    height = 28 + row_h * len(items)
    out = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
           f'<text x="0" y="14" font-size="12" font-weight="bold">{_e(title)}</text>']
    for i, (name, v) in enumerate(items):
        y = 24 + i * row_h
        w = max(1, int((width - label_w - 90) * v / top))
        out.append(f'<text x="{label_w - 4}" y="{y + 12}" font-size="10" text-anchor="end">{_e(name[-24:])}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{w}" height="{row_h - 5}" fill="#fc8d59"><title>{_e(name)}: {count(v)} {unit}</title></rect>')
        out.append(f'<text x="{label_w + w + 4}" y="{y + 12}" font-size="10">{_e(human(v))}</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart(title: str, xs: list[str], ys: list[int], unit: str, width: int = 300, height: int = 180) -> str:
    """One metric against the sweep's input sizes, with each point's exact value as a tooltip."""
    # the input sizes sit at equal steps, in the order given (they need not be numbers)
    left, right, bottom, top_pad = 50, 45, 40, 24
    top = max(ys) or 1
    n = max(len(xs) - 1, 1)
    pts = [(left + (width - left - right) * i / n, top_pad + (height - top_pad - bottom) * (1 - v / top)) for i, v in enumerate(ys)]
    out = [f'<svg class="chart sweep" width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
           f'<text x="0" y="14" font-size="12" font-weight="bold">{_e(title)}</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"/>',
           f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
           f'<text x="{left - 4}" y="{top_pad + 4}" font-size="9" text-anchor="end">{_e(human(top))}</text>',
           f'<text x="{left - 4}" y="{height - bottom + 3}" font-size="9" text-anchor="end">0</text>',
           f'<polyline fill="none" stroke="#d7301f" stroke-width="2" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>']
    for (x, y), label, v in zip(pts, xs, ys, strict=True):
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#d7301f"><title>{_e(label)}: {count(v)} {unit}</title></circle>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="9" text-anchor="middle">{_e(label)}</text>')
    out.append("</svg>")
    return "".join(out)


_STACK = (("params", "#4575b4"), ("buffers", "#91bfdb"), ("inputs", "#e0f3f8"), ("grads", "#fee090"),
          ("optimizer", "#fc8d59"), ("activations", "#d73027"), ("temporaries", "#a50026"))
_PHASES = ("forward", "backward", "optimizer", "zero_grad")


def memory_timeline(p: dict[str, Any], width: int = 900, height: int = 260) -> str:
    """A training step's live bytes over its ops, stacked by category, the phases marked along
    the bottom and the peak with a line and its figure."""
    columns = ("phase", *(k for k, _ in _STACK))
    points = [dict(zip(columns, pt, strict=True)) for pt in p["timeline"]]
    left, right, bottom, top_pad = 60, 150, 36, 24
    top = max(sum(pt[k] for k, _ in _STACK) for pt in points) or 1
    n = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * i / n

    def y(v: int) -> float:
        return top_pad + (height - top_pad - bottom) * (1 - v / top)

    out = [f'<svg class="chart timeline" width="{width}" height="{height}" role="img" aria-label="memory timeline">',
           '<text x="0" y="14" font-size="12" font-weight="bold">Live memory over the training step (bytes)</text>',
           f'<text x="{left - 4}" y="{top_pad + 4}" font-size="9" text-anchor="end">{_e(human(top))}</text>',
           f'<text x="{left - 4}" y="{height - bottom + 3}" font-size="9" text-anchor="end">0</text>']
    below = [0] * len(points)
    for key, color in _STACK:
        above = [b + pt[key] for b, pt in zip(below, points, strict=True)]
        if any(pt[key] for pt in points):
            poly = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(above)]
            poly += [f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(below)))]
            out.append(f'<polygon points="{" ".join(poly)}" fill="{color}" stroke="none"><title>{key}</title></polygon>')
        below = above
    for j, (key, color) in enumerate(_STACK):  # the legend
        out.append(f'<rect x="{width - right + 10}" y="{top_pad + 14 * j}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{width - right + 24}" y="{top_pad + 9 + 14 * j}" font-size="10">{key}</text>')
    start = 0
    for i in range(1, len(points) + 1):  # the phases, as runs of points
        if i == len(points) or points[i]["phase"] != points[start]["phase"]:
            mid = (x(start) + x(i - 1)) / 2
            out.append(f'<line x1="{x(start):.1f}" y1="{height - bottom}" x2="{x(start):.1f}" y2="{height - bottom + 6}" stroke="#666"/>'
                       f'<text x="{mid:.1f}" y="{height - bottom + 18}" font-size="9" text-anchor="middle">'
                       f'{_e(_PHASES[points[start]["phase"]])}</text>')
            start = i
    peak_i = max(range(len(points)), key=lambda i: below[i])
    out.append(f'<line x1="{x(peak_i):.1f}" y1="{top_pad}" x2="{x(peak_i):.1f}" y2="{height - bottom}" stroke="#000" '
               f'stroke-dasharray="3,2"/><text x="{x(peak_i) + 4:.1f}" y="{top_pad - 4}" font-size="10">peak '
               f'{_e(count(p["peak_bytes"]))} bytes, {_e(p["phase"])} at {_e(p["at"] or "(root)")}</text>')
    out.append("</svg>")
    return "".join(out)


def roofline_plot(d: dict[str, Any], width: int = 560, height: int = 340) -> str:
    """Arithmetic intensity (FLOPs per byte moved) against attainable FLOP/s, both on log
    scales: the device's roof (bandwidth x intensity up to the ridge, the peak after it) and one
    dot per layer at the rate its estimate gives it."""
    import math

    hw, roofs = d["roofline"]["hardware"], d["roofline"]["layers"]
    names = {r["id"]: r["name"] for r in d["layers"]}
    dots = [(r["intensity"], (next(x["flops"] for x in d["layers"] if x["id"] == r["id"]) / r["seconds"]), r)
            for r in roofs if r["seconds"] > 0 and r["intensity"] > 0]
    peak, bw = hw["peak_flops"], hw["bandwidth_bytes_s"]
    ridge = peak / bw
    xs = [x for x, _, _ in dots] + [ridge]
    x_lo, x_hi = math.floor(math.log10(min(xs))) - 0.5, math.ceil(math.log10(max(xs))) + 0.5
    y_hi = math.log10(peak) + 0.3
    y_lo = min([math.log10(bw * 10**x_lo)] + [math.log10(y) for _, y, _ in dots if y > 0]) - 0.3
    left, right, bottom, top = 60, 20, 40, 24

    def px(x: float) -> float:
        return left + (width - left - right) * (math.log10(x) - x_lo) / (x_hi - x_lo)

    def py(y: float) -> float:
        return top + (height - top - bottom) * (1 - (math.log10(y) - y_lo) / (y_hi - y_lo))

    out = [f'<svg class="chart roofline" width="{width}" height="{height}" role="img" aria-label="roofline">',
           f'<text x="0" y="14" font-size="12" font-weight="bold">Roofline on {_e(hw["device"])} ({_e(hw["dtype"])}): '
           f'FLOP/s against FLOPs per byte</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>']
    lo_x = 10**x_lo
    out.append(f'<polyline fill="none" stroke="#000" stroke-width="2" points="{px(lo_x):.1f},{py(bw * lo_x):.1f} '
               f'{px(ridge):.1f},{py(peak):.1f} {px(10**x_hi):.1f},{py(peak):.1f}"/>')
    out.append(f'<line x1="{px(ridge):.1f}" y1="{py(peak):.1f}" x2="{px(ridge):.1f}" y2="{height - bottom}" stroke="#666" '
               f'stroke-dasharray="3,2"/><text x="{px(ridge) + 4:.1f}" y="{height - bottom - 6}" font-size="9">ridge '
               f'{ridge:.0f} FLOPs/byte</text>')
    for e in range(math.ceil(x_lo), math.floor(x_hi) + 1):
        out.append(f'<text x="{px(10**e):.1f}" y="{height - bottom + 14}" font-size="9" text-anchor="middle">1e{e}</text>')
    for e in range(math.ceil(y_lo), math.floor(y_hi) + 1):
        out.append(f'<text x="{left - 4}" y="{py(10**e) + 3:.1f}" font-size="9" text-anchor="end">1e{e}</text>')
    for x, y, r in dots:
        color = "#d7301f" if r["bound"] == "compute" else "#4575b4"
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}" fill-opacity="0.7"><title>'
                   f'{_e(names.get(r["id"], ""))}: {x:.3g} FLOPs/byte, {human(y, "FLOP/s")}, {r["bound"]}-bound</title></circle>')
    out.append(f'<text x="{width / 2:.0f}" y="{height - 6}" font-size="10" text-anchor="middle">FLOPs per byte moved '
               f'(red: compute-bound, blue: memory-bound)</text></svg>')
    return "".join(out)


def _charts(report: Report, d: dict[str, Any]) -> str:
    layers = [r for r in d["layers"] if r["kind"] not in ("input",)]
    by_type = report.by_type().to_dict()["layers"]
    top_macs = sorted(layers, key=lambda r: -r["macs"])[:15]
    top_params = sorted(layers, key=lambda r: -r["params"])[:15]
    return '<div class="charts">' + "".join([
        bar_chart("MACs by layer type", [(r["type"], r["macs"]) for r in by_type], "MACs"),
        bar_chart("params by layer type", [(r["type"], r["params"]) for r in by_type], "params"),
        bar_chart("MACs: the 15 largest layers", [(r["name"], r["macs"]) for r in top_macs], "MACs"),
        bar_chart("params: the 15 largest layers", [(r["name"], r["params"]) for r in top_params], "params"),
    ]) + "</div>"


def _sweep(sweep: Sweep) -> str:
    xs = [",".join(dims(list(i.shape)) for i in r.inputs) for r in sweep.reports]
    totals = [r.total() for r in sweep.reports]
    return '<div class="charts">' + "".join([
        line_chart("params", xs, [t.params for t in totals], "params"),
        line_chart("MACs", xs, [t.macs for t in totals], "MACs"),
        line_chart("activation memory (bytes)", xs, [t.activation_bytes for t in totals], "bytes"),
    ]) + "</div>"


def to_html(report: Report, svg: str | None, sweep: Sweep | None = None) -> str:
    """The report as one HTML page. ``svg``: the diagram as Graphviz rendered it (nodes with ids
    ``row-N``); ``sweep``: the same model at several input sizes, for the sweep plot."""
    d = report.to_dict()
    notes = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in totals_notes(d) + trace_notes(d.get("trace", {}))
                    + how_traced(d.get("trace", {})))
    warnings = "".join(f'<li class="warn">unsupported op {_e(u["op"])} in {_e(u["where"])} x{u["count"]}: not counted</li>'
                       for u in d["unsupported"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>fxcost: {_e(report.model)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(report.model)}</h1>",
        f'<p class="meta">{_e(header_line(d))}</p>',
        f'<table class="totals">{notes}</table>',
        f"<ul>{warnings}</ul>" if warnings else "",
    ]
    if sweep is not None and len(sweep.reports) > 1:
        parts += ["<h2>Against input size</h2>", _sweep(sweep),
                  f'<p class="meta">Below: the first input size ({_e(", ".join(dims(list(i.shape)) for i in report.inputs))}).</p>']
    parts += ["<h2>Where the params and MACs sit</h2>", _charts(report, d)]
    if "roofline" in d:
        parts += ["<h2>Roofline</h2>", f'<p class="meta">Each layer at the rate its estimate gives it, '
                  f'max(FLOPs / peak, bytes moved / bandwidth): a bound, not a measurement. '
                  f'{_e(d["roofline"]["hardware"].get("source", ""))}</p>', f'<div class="charts">{roofline_plot(d)}</div>']
    if (p := d.get("peak_memory")) and p.get("timeline"):
        parts += ["<h2>Memory of a training step</h2>",
                  f'<p class="meta">The second of two steps ({_e(p.get("optimizer", ""))}), op by op: what is alive, '
                  'by what it is. Each point is the largest of the ops it stands for.</p>',
                  f'<div class="charts">{memory_timeline(p)}</div>']
    if svg is not None:
        parts += ["<h2>Diagram</h2>", '<p class="meta">Click a node to find its row; click a row to find its node.</p>',
                  f'<div class="diagram">{_inline_svg(svg)}</div>']
    parts += ["<h2>Layers</h2>", '<p class="meta">Click a column header to sort.</p>', _table(d),
              f'<p class="meta">Activations: {count(d["totals"]["activation_elements"])} elements, '
              f'{mb(d["totals"]["activation_bytes"])} MB. Conventions: docs/conventions.md.</p>',
              f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"

