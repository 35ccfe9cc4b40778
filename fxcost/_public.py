"""The public API, as ``import fxcost`` gives it (:mod:`fxcost` loads this module on the first
attribute asked for, so that ``import fxcost.cli`` does not import torch)."""

from fxcost.api import analyze, explain, llm, summary, sweep
from fxcost.counting import CONVENTIONS, Convention, Cost, FormulaRegistry, Free, Rule
from fxcost.errors import (
    ExportError,
    FxcostError,
    InputSpecError,
    OnnxFileError,
    OutputError,
    ShapeError,
    SpecError,
    TraceError,
    UnsupportedOpError,
)
from fxcost.onnx.analyze import analyze_onnx
from fxcost.pytorch.aten import ATEN as DEFAULT_REGISTRY
from fxcost.pytorch.aten import register_formula
from fxcost.report import (
    Comparison,
    Counts,
    Fate,
    Method,
    Mode,
    OpCost,
    Report,
    Row,
    RowKind,
    Sweep,
    TensorSpec,
    TraceInfo,
    View,
    compare,
)
from fxcost.report.llm import LLMReport
from fxcost.zoo_sweep import zoo

#: the names fxcost 0.1 used for the row and the totals
NodeCost = Row
Totals = Counts

__all__ = [
    "CONVENTIONS", "Comparison", "Convention", "Cost", "Counts", "DEFAULT_REGISTRY", "ExportError", "Fate", "FormulaRegistry",
    "Free", "FxcostError", "InputSpecError", "Method", "Mode", "NodeCost", "OnnxFileError", "OpCost", "OutputError",
    "Report", "Row", "RowKind", "Rule", "ShapeError", "SpecError", "Sweep", "TensorSpec", "Totals", "TraceError",
    "TraceInfo", "UnsupportedOpError", "View", "analyze", "analyze_onnx", "compare", "explain", "sweep", "llm",
    "LLMReport", "register_formula", "summary", "zoo",
]
