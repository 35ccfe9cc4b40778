"""Two reports side by side: each metric in total and split by layer type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fxcost.report.records import SCHEMA_VERSION, Record
from fxcost.report.report import Report

#: the metrics a comparison shows by default
COMPARED_METRICS = ("params", "macs", "flops", "activation_elements")


@dataclass(frozen=True)
class ComparisonRow(Record):
    """One line of a comparison: a metric for one layer type (or ``all``) in both reports."""

    metric: str
    group: str
    a: int
    b: int

    JSON = ("metric", "group", "a", "b", "ratio")

    @property
    def ratio(self) -> float | None:
        return self.a / self.b if self.b else None


@dataclass(frozen=True)
class Comparison:
    a: Report
    b: Report
    rows: tuple[ComparisonRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "compare": {
                "a": {"model": self.a.model, "inputs": [i.to_dict() for i in self.a.inputs]},
                "b": {"model": self.b.model, "inputs": [i.to_dict() for i in self.b.inputs]},
                "rows": [r.to_dict() for r in self.rows],
            },
        }


def compare(a: Report, b: Report, metrics: Sequence[str] = COMPARED_METRICS) -> Comparison:
    """Two reports side by side: each metric in total and split by layer type."""
    ta, tb = a.by_type(), b.by_type()
    types = list(dict.fromkeys([r.type for r in ta.layers] + [r.type for r in tb.layers]))
    rows = []
    for metric in metrics:
        rows.append(ComparisonRow(metric, "all", getattr(a.total(), metric), getattr(b.total(), metric)))
        for t in types:
            va = sum(getattr(r, metric) for r in ta.layers if r.type == t)
            vb = sum(getattr(r, metric) for r in tb.layers if r.type == t)
            if va or vb:
                rows.append(ComparisonRow(metric, t, va, vb))
    return Comparison(a, b, tuple(rows))
