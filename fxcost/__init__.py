"""fxcost: a static cost analyzer for PyTorch models.

    >>> import fxcost
    >>> report = fxcost.analyze(model, input_size=(1, 3, 224, 224))
    >>> report.total().macs

Analysis runs on fake tensors (no weights, no real arithmetic). See docs/conventions.md for
what each number counts.
"""

from fxcost.analyze import analyze, compare, sweep
from fxcost.conventions import CONVENTIONS, Convention
from fxcost.errors import (
    FxcostError,
    InputSpecError,
    OutputError,
    ShapeError,
    SpecError,
    TraceError,
    UnsupportedOpError,
)
from fxcost.formulas import DEFAULT_REGISTRY, Cost, FormulaRegistry
from fxcost.model import Comparison, NodeCost, OpCost, Report, Sweep, TensorSpec, Totals

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS", "Comparison", "Convention", "Cost", "DEFAULT_REGISTRY", "FormulaRegistry",
    "FxcostError", "InputSpecError", "NodeCost", "OpCost", "OutputError", "Report", "ShapeError",
    "SpecError", "Sweep", "TensorSpec", "Totals", "TraceError", "UnsupportedOpError",
    "analyze", "compare", "sweep",
]
