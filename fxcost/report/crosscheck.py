"""The cross-check's records: one model counted by the PyTorch route and by the ONNX route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fxcost.report.records import SCHEMA_VERSION, Record
from fxcost.report.report import Report


@dataclass(frozen=True)
class CrossCheckRow(Record):
    """One metric for one layer type (or ``all``) counted by the PyTorch route and the ONNX route."""

    metric: str
    group: str
    torch: int
    onnx: int

    JSON = ("metric", "group", "torch", "onnx", "diff")

    @property
    def diff(self) -> int:
        return self.onnx - self.torch


@dataclass(frozen=True)
class ExportSummary(Record):
    """How the checked file was written."""

    opset: int
    optimized: bool
    structure_only: bool
    seconds: float
    file_bytes: int
    nodes: int


@dataclass(frozen=True)
class CrossCheck:
    """A model counted twice: through torch.fx/torch.export, and through its exported ONNX graph.

    ``explanations`` name every difference; ``max_abs_diff`` is onnxruntime's largest absolute
    difference from PyTorch on random inputs (``None`` when it was not run, ``run_note`` says why).
    """

    torch: Report
    onnx: Report
    onnx_file: str
    rows: tuple[CrossCheckRow, ...]
    explanations: tuple[str, ...] = ()
    max_abs_diff: float | None = None
    run_note: str = ""
    export: ExportSummary | None = None
    #: the ONNX file records each node's module, so layer types compare (else totals only)
    by_type: bool = True

    def _total(self, metric: str) -> CrossCheckRow:
        return next(r for r in self.rows if r.metric == metric and r.group == "all")

    @property
    def params_equal(self) -> bool:
        return self._total("params").diff == 0

    @property
    def macs_equal(self) -> bool:
        """MACs agree in total and for every layer type (the same work, filed under the same layers);
        in total only when the ONNX file has no module records to type its nodes by."""
        return all(r.diff == 0 for r in self.rows if r.metric == "macs" and (self.by_type or r.group == "all"))

    @property
    def all_counted(self) -> bool:
        """Neither route met an op it could not count (which would hide work from the comparison)."""
        return not self.torch.unsupported and not self.onnx.unsupported

    @property
    def passed(self) -> bool:
        return self.params_equal and self.macs_equal and self.all_counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "crosscheck": {
                "model": self.torch.model,
                "inputs": [i.to_dict() for i in self.torch.inputs],
                "convention": self.torch.convention,
                "onnx_file": self.onnx_file,
                "export": self.export.to_dict() if self.export is not None else {},
                "params_equal": self.params_equal,
                "macs_equal": self.macs_equal,
                "all_counted": self.all_counted,
                "by_type": self.by_type,
                "passed": self.passed,
                "rows": [r.to_dict() for r in self.rows],
                "explanations": list(self.explanations),
                "onnxruntime": {"max_abs_diff": self.max_abs_diff, "note": self.run_note},
                "torch_trace": self.torch.trace.to_dict(),
                "onnx_trace": self.onnx.trace.to_dict(),
                "unsupported": {"torch": [u.to_dict() for u in self.torch.unsupported],
                                "onnx": [u.to_dict() for u in self.onnx.unsupported]},
            },
        }
