"""The result of one analysis, and its queries: totals, roll-ups by module, groups by type."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fxcost.report.kinds import Analysis, Mode, RowKind, View
from fxcost.report.records import (
    SCHEMA_VERSION,
    Counts,
    Edge,
    Hardware,
    InputSpec,
    MemorySummary,
    PeakMemory,
    Roof,
    Row,
    Sizes,
    TensorSpec,
    TraceInfo,
    UnsupportedOp,
    merge_ops,
    within,
)

#: how a notebook shows a report: ``fxcost.exporters`` puts its renderer here when imported (the
#: data model does not import the code that draws it)
NOTEBOOK: list[Callable[[Any, str], str]] = []


@dataclass(frozen=True, kw_only=True)
class Report:
    """The result of one analysis: per-row records plus queries over them.

    ``layers`` holds one row per graph node (``view == View.LAYER``) or one per group after
    :meth:`by_module` / :meth:`by_type`. Totals never change with the view.
    """

    model: str
    convention: str
    inputs: tuple[InputSpec, ...]
    layers: tuple[Row, ...]
    memory: MemorySummary
    trace: TraceInfo  # how the graph was obtained: no default, a report always says
    unsupported: tuple[UnsupportedOp, ...] = ()
    #: class name of every module in the model, by path: names the rows of :meth:`by_module`
    module_types: dict[str, str] = field(default_factory=dict)
    mode: Mode = Mode.META
    #: every tensor the model returned, in order (nested outputs flattened)
    outputs: tuple[TensorSpec, ...] = ()
    #: the data flow between rows: which row's tensor each row reads
    edges: tuple[Edge, ...] = ()
    view: View = View.LAYER
    depth: int | None = None
    #: the inference forward's peak of live bytes (None for an ONNX file, or a report read from
    #: the JSON of a fxcost without it)
    peak_memory: PeakMemory | None = None
    #: the device of a roofline (``--device``): each row's time from its FLOPs and bytes moved
    hardware: Hardware | None = None
    #: a rolled-up view's roofline: each group's time is its layers' times added (set by the roll-up)
    roofs: tuple[Roof, ...] = ()
    #: what the report measures, as the analysis declared it: a training step's report has the
    #: backward's metrics (zero or not), an inference report none
    analysis: Analysis = Analysis.INFERENCE
    #: the bytes each op reads and writes were counted (a roofline's): the report has ``bytes_moved``
    traffic: bool = False
    #: a symbolic analysis's letters and domain: every figure is an expression of them (:meth:`at`)
    sizes: Sizes | None = None
    #: a symbolic analysis's other pieces: where the forward branched on a size, the analysis of
    #: the other side of that branch, with its own domain (:meth:`at` picks the piece that holds)
    pieces: tuple[Report, ...] = ()
    #: a symbolic analysis's peak memory: the candidates, each the live bytes at one point of the
    #: step as expressions; the peak at a size is the first largest of them there (:meth:`at`);
    #: ``peak_memory`` is the one at the hints
    peaks: tuple[PeakMemory, ...] = ()

    def _repr_markdown_(self) -> str | None:
        """Jupyter shows the report as its Markdown table and size block."""
        return NOTEBOOK[0](self, "markdown") if NOTEBOOK else None

    def _repr_html_(self) -> str | None:
        """Jupyter's rich display: the table and size block as HTML (``-f html``)."""
        return NOTEBOOK[0](self, "html") if NOTEBOOK else None

    def at(self, **values: int) -> Report:
        """A symbolic report (:attr:`sizes`) at one size of each letter (``at(B=8, S=4096)``): the
        ordinary report of that size, every expression evaluated. A size outside the domain, or a
        letter missing or unknown: ``ValueError``."""
        from fxcost.report.formulas import evaluate

        return evaluate(self, values)

    def total(self) -> Counts:
        return Counts.total(r.counts for r in self.layers)

    def metrics(self) -> tuple[str, ...]:
        """The metrics this report has (:meth:`Counts.present` for its declared kind)."""
        return Counts().present(self.analysis is Analysis.TRAIN, self.traffic)

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame``: one row per layer (or group, in a rolled-up view),
        its name, type, kind, module path and output shape, then every metric as an exact integer
        column (``int64``). pandas is optional: without it this raises ``ImportError`` saying how
        to install it (the data model imports nothing of fxcost, its errors included).
        ``report.to_pandas().groupby("type").macs.sum()`` is :meth:`by_type`."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Report.to_pandas() needs pandas, which is not installed: pip install pandas "
                              "(or read report.to_dict()['layers'], the same rows as dicts)") from None
        metrics = Counts.names()
        records = [{"name": r.name, "type": r.type, "kind": r.kind.value, "module_path": r.module_path,
                    "output_shape": "x".join(map(str, r.output_shape)),
                    **{m: int(getattr(r.counts, m)) for m in metrics}} for r in self.layers]
        frame = pd.DataFrame.from_records(records, columns=["name", "type", "kind", "module_path", "output_shape", *metrics])
        return frame.astype({m: "int64" for m in metrics})

    def by_module(self, depth: int) -> Report:
        """Roll rows up into their enclosing modules ``depth`` levels below the root."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")

        def key(row: Row) -> str:
            return ".".join(row.name.split(".")[:depth])

        return self._grouped(key, self._module_type, View.MODULE, depth)

    def collapse(self, paths: Iterable[str]) -> Report:
        """Each module in ``paths`` becomes one row holding every row inside it (the diagram's
        ``--depth``); other rows stay as they are. Edges follow their rows."""
        ordered = sorted(paths, key=len)

        def key(row: Row) -> str | None:
            return next((p for p in ordered if within(row.name, p)), None)

        return replace(self._grouped(key, self._module_type, View.MODULE, self.depth), view=self.view)

    def by_type(self) -> Report:
        """One row per layer type (``Conv2d``, ``Linear``, ``add``...)."""
        return self._grouped(lambda r: r.type, lambda k: k, View.TYPE, None)

    def _module_type(self, path: str) -> str:
        return self.module_types.get(path, "Module")

    def _grouped(
        self, key: Callable[[Row], str | None], type_of: Callable[[str], str], view: View, depth: int | None
    ) -> Report:
        """Rows with the same key become one; a row whose key is ``None`` stays on its own."""
        groups: dict[str | int, list[Row]] = {}
        for r in self.layers:
            k = key(r)
            groups.setdefault(r.id if k is None else k, []).append(r)
        rows = []
        new_id: dict[int, int] = {}
        for group, members in groups.items():
            i = members[0].id  # a group keeps its first member's id: one id names one place in every view
            for m in members:
                new_id[m.id] = i
            if isinstance(group, int) or (len(members) == 1 and members[0].name == group):
                rows.append(members[0])
                continue
            rows.append(
                Row(
                    id=i,
                    name=group,
                    type=type_of(group),
                    kind=RowKind.GROUP,
                    module_path=group if view is View.MODULE else "",
                    # a block's output (its last row that has one); a type has none
                    output=next((m.output for m in reversed(members) if m.output), ()) if view is View.MODULE else (),
                    counts=Counts.total(m.counts for m in members),
                    ops=merge_ops(op for m in members for op in m.ops),
                    members=sum(m.members for m in members),
                )
            )
        edges: dict[tuple[int, int], Edge] = {}
        if view is View.MODULE:  # a type has no place in the data flow
            for e in self.edges:
                src, dst = new_id.get(e.src), new_id.get(e.dst)
                if src is not None and dst is not None and src != dst:
                    edges.setdefault((src, dst), replace(e, src=src, dst=dst))
        roofs: tuple[Roof, ...] = ()
        if self.hardware is not None:  # a group's time is its layers' times, not the roof of its sums
            by_id = {r.id: r for r in self.roofline()}
            roofs = tuple(_added(row.id, [by_id[m.id] for m in members], row)
                          for row, members in zip(rows, groups.values(), strict=True))
        return replace(self, layers=tuple(rows), edges=tuple(edges.values()), view=view, depth=depth, roofs=roofs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """A report read back from its JSON (``fxcost analyze -f json``), into the same records:
        ``Report.from_dict(r.to_dict()) == r``. ``ValueError`` for anything else, a report of an
        older schema too (``fxcost review`` reads those as baselines)."""
        if not isinstance(d, dict) or "layers" not in d:
            raise ValueError("not an fxcost report (no layers)")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"an fxcost report of schema_version {d.get('schema_version')!r}; this fxcost reads "
                             f"{SCHEMA_VERSION} (write it again with fxcost analyze -f json)")
        try:
            return cls._from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a whole fxcost report: {type(e).__name__}: {e}") from e

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Report:
        view = d["view"]
        return cls(
            model=d["model"], convention=d["convention"],
            inputs=tuple(InputSpec.from_dict(i) for i in d["inputs"]),
            layers=tuple(Row.from_dict(r) for r in d["layers"]),
            memory=MemorySummary.from_dict(d["memory"]),
            peak_memory=PeakMemory.from_dict(d["peak_memory"]) if "peak_memory" in d else None,
            hardware=Hardware.from_dict(d["roofline"]["hardware"]) if "roofline" in d else None,
            unsupported=tuple(UnsupportedOp.from_dict(u) for u in d["unsupported"]),
            trace=TraceInfo.from_dict(d["trace"]),
            module_types=dict(d["module_types"]),
            mode=Mode(d["mode"]),
            outputs=tuple(TensorSpec.from_dict(o) for o in d["outputs"]),
            edges=tuple(Edge.from_dict(e) for e in d["edges"]),
            view=View(view["group_by"]), depth=view["depth"],
            # declared since fxcost 0.3; an older file is read by the keys it has
            analysis=Analysis(d.get("analysis") or (Analysis.TRAIN if "backward_macs" in d["totals"] else Analysis.INFERENCE)),
            traffic=bool(d.get("traffic", "bytes_moved" in d["totals"])),
        )

    def roofline(self) -> tuple[Roof, ...]:
        """Each row on the device's roofline (``hardware``; none without one)."""
        if self.hardware is None:
            return ()
        return self.roofs or tuple(self.hardware.roof(r.id, r.flops, r.bytes_moved) for r in self.layers)

    def _roofline_dict(self) -> dict[str, Any]:
        assert self.hardware is not None
        roofs = self.roofline()
        return {"hardware": self.hardware.to_dict(), "seconds": sum(r.seconds for r in roofs),
                "layers": [r.to_dict() for r in roofs]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "convention": self.convention,
            "analysis": self.analysis.value,
            "traffic": self.traffic,
            "mode": self.mode.value,
            "view": {"group_by": self.view.value, "depth": self.depth},
            "trace": self.trace.to_dict(),
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "totals": self.total().to_dict(self.metrics()),
            "memory": self.memory.to_dict(),
            **({"peak_memory": self.peak_memory.to_dict()} if self.peak_memory is not None else {}),
            **({"roofline": self._roofline_dict()} if self.hardware is not None else {}),
            "layers": [r.to_dict(self.metrics()) for r in self.layers],
            "unsupported": [u.to_dict() for u in self.unsupported],
            "edges": [e.to_dict() for e in self.edges],
            "module_types": dict(self.module_types),
            **({"sizes": self.sizes.to_dict()} if self.sizes is not None else {}),
            **({"pieces": [p.to_dict() for p in self.pieces]} if self.pieces else {}),
            **({"peaks": [p.to_dict() for p in self.peaks]} if self.peaks else {}),
        }


def _added(row_id: int, members: list[Roof], row: Row) -> Roof:
    """A group on the roofline: its members' times added, bound by what bounds most of that time."""
    seconds = sum(m.seconds for m in members)
    compute = sum(m.seconds for m in members if m.bound == "compute")
    return Roof(row_id, seconds, "compute" if compute >= seconds - compute else "memory",
                row.flops / row.bytes_moved if row.bytes_moved else 0.0)


@dataclass(frozen=True)
class OpTrace:
    """A report shown op by op (``fxcost analyze --ops``): its ``trace.ops`` as the table, the
    whole report as the JSON."""

    report: Report

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()


@dataclass(frozen=True)
class Sweep:
    """One model analyzed at several input sizes (seed Q4)."""

    reports: tuple[Report, ...]
    #: the same model with its sizes as letters (docs/sizes.md): its figures beside each measured point
    formula: Report | None = None

    def points(self) -> list[dict[str, int]]:
        """Each report's sizes as values of the formula's letters (read off its inputs' shapes)."""
        import sympy

        if self.formula is None:
            return []
        out = []
        for r in self.reports:
            values: dict[str, int] = {}
            for f, i in zip(self.formula.inputs, r.inputs, strict=False):
                for d, n in zip(f.shape, i.shape, strict=False):
                    if isinstance(d, sympy.Symbol):
                        values[str(d)] = n
            out.append(values)
        return out

    def by_formula(self) -> list[Report | str]:
        """The formula at each measured point: its report there, or why it has none (outside the domain)."""
        assert self.formula is not None
        found: list[Report | str] = []
        for values in self.points():
            try:
                found.append(self.formula.at(**values))
            except ValueError as e:
                found.append(str(e))
        return found

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "sweep": [r.to_dict() for r in self.reports]}
        if self.formula is not None:
            d["formula"] = self.formula.to_dict()
            d["by_formula"] = [r.total().to_dict(r.metrics()) if isinstance(r, Report) else {"refused": r}
                               for r in self.by_formula()]
        return d
