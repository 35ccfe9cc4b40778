"""The report data model and its queries: what an analysis found, as frozen records of exact
integers, with roll-ups (:meth:`Report.by_module`, :meth:`Report.by_type`), comparisons and the
review gate. The records import nothing else from fxcost; exporters render them, the routes
build them.
"""

from fxcost.report.compare import COMPARED_METRICS, Comparison, ComparisonRow, compare
from fxcost.report.crosscheck import CrossCheck, CrossCheckRow
from fxcost.report.kinds import TRACERS, Fate, Method, Mode, RowKind, View
from fxcost.report.records import (
    SCHEMA_VERSION,
    Counts,
    Edge,
    Fallback,
    InputSpec,
    MemorySummary,
    OnnxSource,
    OpaqueModule,
    OpCost,
    Row,
    TensorSpec,
    TraceInfo,
    UnsupportedOp,
    merge_ops,
    within,
)
from fxcost.report.report import Report, Sweep

__all__ = [
    "COMPARED_METRICS", "SCHEMA_VERSION", "TRACERS", "Comparison", "ComparisonRow", "Counts", "CrossCheck",
    "CrossCheckRow", "Edge", "Fallback", "Fate", "InputSpec", "MemorySummary", "Method", "Mode", "OnnxSource",
    "OpCost", "OpaqueModule", "Report", "Row", "RowKind", "Sweep", "TensorSpec", "TraceInfo", "UnsupportedOp", "View",
    "compare", "merge_ops", "within",
]
