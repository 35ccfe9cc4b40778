"""fxcost: a static cost analyzer for PyTorch models.

    >>> import fxcost
    >>> report = fxcost.analyze(model, input_size=(1, 3, 224, 224))
    >>> report.total().macs

Analysis runs on meta tensors (no weights, no real arithmetic). See docs/conventions.md for
what each number counts and docs/architecture.md for how the package is laid out.

The public names below are loaded on first use (from :mod:`fxcost._public`, torch with them):
``import fxcost`` itself imports nothing heavy, so that the ``fxcost`` command owns its process
(a Ctrl-C while torch imports is its own ``fxcost: interrupted``) and ``--help`` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fxcost._version import __version__

if TYPE_CHECKING:
    from fxcost._public import (
        CONVENTIONS,
        DEFAULT_REGISTRY,
        Comparison,
        Convention,
        Cost,
        Counts,
        ExportError,
        Fate,
        FormulaRegistry,
        Free,
        FxcostError,
        InputSpecError,
        LLMReport,
        Method,
        Mode,
        NodeCost,
        OnnxFileError,
        OpCost,
        OutputError,
        Report,
        Row,
        RowKind,
        Rule,
        ShapeError,
        SpecError,
        Sweep,
        TensorSpec,
        Totals,
        TraceError,
        TraceInfo,
        UnsupportedOpError,
        View,
        analyze,
        analyze_onnx,
        compare,
        explain,
        llm,
        register_formula,
        summary,
        sweep,
        zoo,
    )

__all__ = ["CONVENTIONS", "Comparison", "Convention", "Cost", "Counts", "DEFAULT_REGISTRY", "ExportError", "Fate", "FormulaRegistry", "Free", "FxcostError", "InputSpecError", "Method", "Mode", "NodeCost", "OnnxFileError", "OpCost", "OutputError", "Report", "Row", "RowKind", "Rule", "ShapeError", "SpecError", "Sweep", "TensorSpec", "Totals", "TraceError", "TraceInfo", "UnsupportedOpError", "View", "analyze", "analyze_onnx", "compare", "explain", "sweep", "llm", "LLMReport", "register_formula", "summary", "zoo", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'fxcost' has no attribute {name!r}")
    from fxcost import _public

    globals().update({n: getattr(_public, n) for n in _public.__all__})  # asked once: plain attributes from then on
    return getattr(_public, name)


def __dir__() -> list[str]:
    return sorted(__all__)
