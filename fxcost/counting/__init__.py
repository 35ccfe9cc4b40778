"""The counting core, shared by the PyTorch and the ONNX route: the arithmetic of every op family
(:mod:`~fxcost.counting.arithmetic`), the registry that gives each op its fate
(:mod:`~fxcost.counting.registry`), the conventions (:mod:`~fxcost.counting.conventions`) and the
one row builder (:mod:`~fxcost.counting.rows`). It knows no tracer and no file format.
"""

from fxcost.counting.arithmetic import Cost
from fxcost.counting.conventions import CONVENTIONS, ActivationRule, Convention, get_convention
from fxcost.counting.registry import Formula, FormulaRegistry, Free, Rule
from fxcost.counting.rows import RowBuilder, Weight, dtype_bytes, memory_summary, sizes, unsupported_ops

__all__ = [
    "CONVENTIONS", "ActivationRule", "Convention", "Cost", "Formula", "FormulaRegistry", "Free", "RowBuilder", "Rule",
    "Weight", "dtype_bytes", "get_convention", "memory_summary", "sizes", "unsupported_ops",
]
