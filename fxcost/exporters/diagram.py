"""Architecture diagrams: a Report's rows and data flow as Graphviz DOT, modules as nested boxes.
It reads the typed Report (its rows, edges and module types) and counts nothing.

The DOT text is built here in pure Python (no Graphviz needed); :func:`render` hands it to
Graphviz's ``dot`` for SVG, PNG or PDF. Output is deterministic: node ids are row ids, and
nothing is iterated in set or hash order, so the same model gives byte-identical DOT.

Levels: a module is one level below its parent, except a module list or dict (never called,
so not a level of the call hierarchy: GPT-2's ``transformer.h``) and a module that is its
parent's only child (a wrapper such as d2l's ``net``). ``depth=N`` draws each module at level N
as one node; ``roll`` draws a run of structurally identical sibling modules once, labelled
"x12". Structure is compared with networkx's Weisfeiler-Lehman graph hash of each module's rows
and confirmed with an isomorphism check, never by class name.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fxcost.errors import OutputError, printable
from fxcost.exporters.tables import dims, human
from fxcost.report.kinds import RowKind, View
from fxcost.report.records import Row, within
from fxcost.report.report import Report

COLOR_METRICS = {"flops": "flops", "params": "params", "memory": "activation_bytes", "none": ""}
RANKDIRS = ("TB", "LR")
FORMATS = ("svg", "png", "pdf", "dot")
_CONTAINERS = ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict")
# fill colours by share of the chosen metric: (lower bound of the share, colour, legend text)
_SHADES = (
    (0.20, "#d7301f", ">= 20%"),
    (0.05, "#fc8d59", "5-20%"),
    (0.01, "#fdcc8a", "1-5%"),
    (1e-12, "#fef0d9", "< 1%"),
    (0.0, "#ffffff", "0"),
)


@dataclass
class Hierarchy:
    """The module tree of a report: levels, and which modules are drawn as boxes."""

    types: dict[str, str]
    children: dict[str, list[str]] = field(default_factory=dict)
    level: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, report: Report) -> Hierarchy:
        h = cls(dict(report.module_types))
        for path in h.types:
            h.children.setdefault(_parent(path), []).append(path)
        h.level[""] = 0
        for path in h.types:  # named_modules order: parents before children
            parent = _parent(path)
            h.level[path] = h.level.get(parent, 0) + (0 if h.transparent(path) else 1)
        return h

    def transparent(self, path: str) -> bool:
        """Not a level: a container that is never called, or its parent's only child (a wrapper;
        the one element of a module list is still a level)."""
        if self.types.get(path) in _CONTAINERS:
            return True
        parent = _parent(path)
        return len(self.children.get(parent, [])) == 1 and self.types.get(parent) not in _CONTAINERS

    def ancestors(self, path: str) -> list[str]:
        """The modules containing ``path`` (and it, when it is a module), outermost first."""
        parts = path.split(".") if path else []
        return [p for p in (".".join(parts[: i + 1]) for i in range(len(parts))) if p in self.types]

    def boxed(self, path: str) -> bool:
        return path in self.types and not self.transparent(path) and bool(self.children.get(path))


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def collapse_paths(h: Hierarchy, depth: int) -> list[str]:
    """The modules drawn as single nodes at ``depth``: those at that level that have children."""
    return [p for p in h.types if h.level.get(p) == depth and not h.transparent(p) and h.children.get(p)]


@dataclass
class Roll:
    """A run of identical sibling modules drawn once: ``first`` stands for ``members``."""

    first: str
    members: list[str]


def _structure(report: Report, rows: list[Row]) -> Any:
    """The rows of one module as a graph whose nodes are labelled with everything that counts."""
    import networkx as nx

    g = nx.DiGraph()
    ids = {r.id for r in rows}
    for r in rows:
        ops = ",".join(f"{o.op}:{o.count}" for o in r.ops)
        g.add_node(r.id, label=f"{r.type}|{r.kind}|{dims(list(r.output_shape))}|{r.params}|{r.macs}|{r.flops}|{r.hparams}|{ops}")
    g.add_edges_from((e.src, e.dst) for e in report.edges if e.src in ids and e.dst in ids)
    return g


def _same_structure(a: Any, b: Any) -> bool:
    import networkx as nx

    with warnings.catch_warnings():  # networkx 3.5 notes that directed hashes changed; both sides use one version
        warnings.simplefilter("ignore", UserWarning)
        if nx.weisfeiler_lehman_graph_hash(a, node_attr="label") != nx.weisfeiler_lehman_graph_hash(b, node_attr="label"):
            return False
    return bool(nx.is_isomorphic(a, b, node_match=lambda x, y: x["label"] == y["label"]))


def find_rolls(report: Report, h: Hierarchy) -> list[Roll]:
    """Runs of consecutive sibling modules whose rows form isomorphic graphs (2 or more), each
    module reading what the one before it made (a chain, not parallel branches)."""
    rows_in: dict[str, list[Row]] = {}
    for r in report.layers:
        if r.kind in (RowKind.INPUT, RowKind.UNUSED):
            continue
        for a in h.ancestors(r.name if r.kind in (RowKind.MODULE, RowKind.GROUP) else r.module_path):
            rows_in.setdefault(a, []).append(r)

    def feeds(a: str, b: str) -> bool:
        ia, ib = {r.id for r in rows_in.get(a, [])}, {r.id for r in rows_in.get(b, [])}
        return any(e.src in ia and e.dst in ib for e in report.edges)

    rolls: list[Roll] = []
    for parent in ["", *h.types]:
        run: list[str] = []
        run_graph: Any = None
        # every sibling in order: a different one in between (a ReLU) ends a run
        for path in [*h.children.get(parent, []), None]:
            g = _structure(report, rows_in[path]) if path in rows_in and path is not None and h.children.get(path) else None
            if g is not None and path is not None and run and _same_structure(g, run_graph) and feeds(run[-1], path):
                run.append(path)
                continue
            if len(run) > 1:
                rolls.append(Roll(run[0], run))
            run, run_graph = ([path], g) if g is not None and path is not None else ([], None)
    return rolls


def to_dot(
    report: Report,
    depth: int | None = None,
    roll: bool = False,
    color: str = "flops",
    rankdir: str = "TB",
) -> str:
    """The report (layer view) as DOT: nodes are rows, edges the tensors between them, boxes
    the modules. See the module docstring for ``depth`` and ``roll``."""
    if report.view != View.LAYER:
        raise ValueError("to_dot draws a layer view; call it before by_module() or by_type()")
    if color not in COLOR_METRICS:
        raise ValueError(f"color must be one of {', '.join(COLOR_METRICS)}")
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}")
    drawing = _Drawing(report, depth, roll, COLOR_METRICS[color])
    out = [
        f"digraph {_q(report.model)} {{",
        f"  graph [rankdir={rankdir}, fontname=Helvetica, fontsize=11, labelloc=t, label={_q(_title(report))}];",
        "  node [shape=box, style=\"rounded,filled\", fontname=Helvetica, fontsize=10, fillcolor=\"#ffffff\"];",
        "  edge [fontname=Helvetica, fontsize=8, color=\"#555555\"];",
        *drawing.contents("", "  "),
        *drawing.edges(),
        *(_legend(color) if drawing.metric else []),
        "}",
    ]
    return "\n".join(out) + "\n"


class _Drawing:
    """What one diagram shows: the rows drawn as nodes (rolled-away and unused ones left out),
    the module boxes they sit in, and the edges between them."""

    def __init__(self, report: Report, depth: int | None, roll: bool, metric: str) -> None:
        self.h = h = Hierarchy.of(report)
        self.rolls = find_rolls(report, h) if roll else []
        self.view = report.collapse(collapse_paths(h, depth)) if depth is not None else report
        self.hidden = {m for r in self.rolls for m in r.members[1:]}
        self.times = {r.first: len(r.members) for r in self.rolls}
        self.metric = metric
        self.total = getattr(report.total(), metric) if metric else 0
        self.unsupported = {u.where for u in report.unsupported}
        self.opaque = {o.module: o.reason for o in report.trace.opaque}
        nodes = [r for r in self.view.layers
                 if r.kind != RowKind.UNUSED and not any(within(r.name, m) for m in self.hidden)]
        self.shown = {r.id for r in nodes}
        self.tree: dict[str, list[Row]] = {}  # the rows in each module box ("" for none)
        for r in nodes:
            self.tree.setdefault(_box_of(r, h), []).append(r)

    def contents(self, box: str, indent: str) -> list[str]:
        """The nodes in ``box``, then its child modules' boxes."""
        out = []
        for r in self.tree.get(box, []):
            flagged = any(within(u, r.name) for u in self.unsupported)  # the row, or a module holding it
            dashed = r.kind == RowKind.GROUP and any(within(o, r.name) or within(r.name, o) for o in self.opaque)
            out.append(f"{indent}{_node(r, self.metric, self.total, self.times, flagged, dashed)}")
        for child in self.h.children.get(box, []):
            out += self.module(child, indent)
        return out

    def module(self, path: str, indent: str) -> list[str]:
        """A module's box with its contents; only its contents when it is not drawn as a box."""
        if not any(within(b, path) for b in self.tree):
            return []
        if not self.h.boxed(path) or path in self.hidden:
            return self.contents(path, indent)
        label = f"{path}: {self.h.types[path]}" + (f"  x{self.times[path]}" if path in self.times else "")
        if path in self.opaque:
            label += "  (opaque: ran op by op)"
        style = "rounded,dashed" if path in self.opaque else "rounded"
        return [f"{indent}subgraph {_q('cluster_' + path)} {{",
                f"{indent}  label={_q(label)}; style={_q(style)}; color=\"#888888\"; fontsize=10;",
                *self.contents(path, indent + "  "),
                f"{indent}}}"]

    def edges(self) -> list[str]:
        """One edge per pair of shown nodes; a rolled-away module's outgoing tensors leave from the
        first module of its run."""
        stand_in = {m: rl.first for rl in self.rolls for m in rl.members[1:]}
        rows = {r.id: r for r in self.view.layers}
        exit_of = {}  # the node in a run's first module that feeds the second: where the run's output leaves
        for rl in self.rolls:
            exit_of[rl.first] = next((e.src for e in self.view.edges if e.src in self.shown
                                      and within(rows[e.src].name, rl.first)
                                      and within(rows[e.dst].name, rl.members[1])), None)
        out: list[str] = []
        seen: set[tuple[int, int]] = set()
        for e in self.view.edges:
            src: int | None = e.src
            if e.dst not in self.shown:
                continue
            if src not in self.shown:  # from a rolled-away module: from its run's exit, if the edge leaves the run
                owner = next((m for m in stand_in if within(rows[e.src].name, m)), None)
                inside = any(within(rows[e.dst].name, m) for m in stand_in)
                src = exit_of.get(stand_in[owner]) if owner is not None and not inside else None
            if src is None or src not in self.shown or (src, e.dst) in seen or src == e.dst:
                continue
            seen.add((src, e.dst))
            label = f" [label={_q(dims(list(e.shape)))}]" if e.shape else ""
            out.append(f"  n{src} -> n{e.dst}{label};")
        return out


def _box_of(r: Row, h: Hierarchy) -> str:
    """The innermost drawn box a row's node sits in ('' for none)."""
    chain = h.ancestors(r.module_path if r.kind not in (RowKind.MODULE, RowKind.GROUP) else r.name)
    if r.kind in (RowKind.MODULE, RowKind.GROUP) and chain and chain[-1] == r.name:
        chain = chain[:-1]  # a module call is drawn inside its parents, not inside itself
    boxes = [a for a in chain if h.boxed(a)]
    return boxes[-1] if boxes else ""


def _title(report: Report) -> str:
    ins = ", ".join(f"{i.name} {dims(list(i.shape))}" for i in report.inputs)
    t = report.total()
    return f"{report.model} ({ins}): {human(t.params)} params, {human(t.macs, 'MACs')}, traced by {report.trace.method}"


def _label(r: Row, times: dict[str, int]) -> str:
    """A node's text: name and type, layer count, hyperparameters and shape, MACs and params."""
    what = f"{r.type} code" if r.kind == RowKind.CODE else r.type  # a module's own work between its children
    lines = [f"{r.name}: {what}" + (f"  x{times[r.name]}" if r.name in times else "")]
    if r.kind == RowKind.GROUP:
        lines.append(f"({r.members} layers)")
    hp = dict(r.hparams)
    width = f"{hp['out_channels']} ch" if "out_channels" in hp else f"out {hp['out_features']}" if "out_features" in hp else ""
    detail = [width, f"k{dims(list(r.kernel_size))}" if r.kernel_size else "", f"s{dims(list(r.stride))}" if r.stride else "",
              dims(list(r.output_shape)) if r.output else ""]
    if any(detail):
        lines.append("  ".join(d for d in detail if d))
    numbers = [human(r.macs, "MACs") if r.macs else "", f"{human(r.params)} params" if r.params else ""]
    if any(numbers):
        lines.append(" · ".join(n for n in numbers if n) + (" each" if r.name in times else ""))
    return "\n".join(lines)


def _node(r: Row, metric: str, total: int, times: dict[str, int], flagged: bool, opaque: bool) -> str:
    attrs = [f"label={_q(_label(r, times))}", f"id={_q(f'row-{r.id}')}", f"tooltip={_q(r.name)}"]
    if r.kind == RowKind.INPUT:
        attrs.append("shape=ellipse")
    if r.kind == RowKind.GROUP:  # a module drawn as one node: a double border tells it from a layer
        attrs.append("peripheries=2")
    if opaque:
        attrs += ["style=\"rounded,filled,dashed\"", f"xlabel={_q('opaque: ran op by op')}"]
    if metric and total:
        share = getattr(r, metric) / total
        attrs.append(f"fillcolor={_q(next(c for lo, c, _ in _SHADES if share >= lo))}")
    if flagged:
        attrs += ["color=\"#cc0000\"", "penwidth=2", "style=\"rounded,filled,dashed\"",
                  f"xlabel={_q('unsupported ops: not counted')}"]
    return f"n{r.id} [{', '.join(attrs)}];"


def _legend(color: str) -> list[str]:
    out = ["  subgraph cluster_legend {", f"    label={_q(f'share of {color}')}; style=rounded; color=\"#bbbbbb\"; fontsize=9;"]
    for i, (_, c, text) in enumerate(_SHADES):
        out.append(f"    legend{i} [label={_q(text)}, fillcolor={_q(c)}, fontsize=8, width=0.6, height=0.25];")
    out.append("    " + " -> ".join(f"legend{i}" for i in range(len(_SHADES))) + " [style=invis];")
    out.append("  }")
    return out


def _q(text: str) -> str:
    """A DOT string: control characters escaped (the SVG is XML, which cannot hold them), quoted."""
    return '"' + printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text rendered by Graphviz's ``dot`` as ``fmt`` (svg, png or pdf)."""
    if not dot_available():
        raise OutputError(
            "Graphviz's `dot` is not installed, so the diagram cannot be rendered",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz), "
            "or write the DOT text with -o model.dot and render it elsewhere",
        )
    done = subprocess.run(["dot", f"-T{fmt}"], input=dot_text.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise OutputError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()[:300]}",
                          hint="this is a bug in fxcost's DOT output; please report it with -o model.dot")
    return done.stdout


def format_for(path: str | Path) -> str:
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise OutputError(f"cannot draw a diagram as {str(path)!r}", hint=f"give -o a file ending in .{', .'.join(FORMATS)}")
    return fmt
