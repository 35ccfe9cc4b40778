"""``fxcost explain``'s records: fxcost's count of a model beside another tool's, every
difference named."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fxcost.report.records import SCHEMA_VERSION, Record

#: the ops whose absence from a tool's count moves MACs: matmuls, convolutions, attention, RNNs
_COMPUTE = ("mm", "matmul", "conv", "linear", "attention", "lstm", "gru", "rnn", "einsum", "bmm")


def noteworthy(unseen: Iterable[str]) -> list[str]:
    """The entries of a reproduction's ``unseen`` list (``"aten::op xN (why)"``) that name a
    matmul-like op; the rest (pointwise, indexing, metadata) are cheap and only counted."""
    return [u for u in unseen if any(k in u.split(" ", 1)[0].lower() for k in _COMPUTE)]


@dataclass(frozen=True)
class TypeLine(Record):
    """One layer type: fxcost's MACs and the tool's, over the modules of that type."""

    module_type: str
    fxcost: int
    tool: int
    modules: int  # how many distinct modules of the type ran

    JSON = ("module_type", "fxcost", "tool", "diff", "modules")

    @property
    def diff(self) -> int:
        return self.tool - self.fxcost


@dataclass(frozen=True)
class Difference(Record):
    """One named reason, with the MACs it moves: the tool's figure minus fxcost's over the modules it applies to."""

    module_type: str
    reason: str
    fxcost: int
    tool: int
    modules: int

    JSON = ("module_type", "reason", "fxcost", "tool", "diff", "modules")

    @property
    def diff(self) -> int:
        return self.tool - self.fxcost


@dataclass(frozen=True)
class Explanation:
    """A model's MACs and params as fxcost counts them and as ``tool`` does, by layer type, with
    the differences named; they add up to the gap (:attr:`gap` is their sum, checked on build).

    ``measured`` is the installed tool's own figure where it ran (``measured_note`` says why not).
    """

    model: str
    inputs: tuple[tuple[int, ...], ...]
    tool: str
    version: str
    headline: str
    fxcost_macs: int
    tool_macs: int
    fxcost_params: int
    tool_params: int
    by_type: tuple[TypeLine, ...]
    differences: tuple[Difference, ...]
    params_reason: str = ""
    unseen: tuple[str, ...] = ()
    misses: tuple[str, ...] = ()
    measured_macs: int | None = None
    measured_params: int | None = None
    measured_note: str = ""
    #: the installed tool raised where the reproduction counted (``measured_note`` has its error)
    measured_failed: bool = False
    install: str = ""

    def __post_init__(self) -> None:
        if sum(d.diff for d in self.differences) != self.gap:
            raise AssertionError(f"the named differences add up to {sum(d.diff for d in self.differences):,}, "
                                 f"not to the gap {self.gap:,}")

    @property
    def gap(self) -> int:
        return self.tool_macs - self.fxcost_macs

    @property
    def reproduced(self) -> bool | None:
        """The installed tool gave the reproduction's figures (None: it did not run)."""
        if self.measured_macs is None:
            return None
        return (self.measured_macs, self.measured_params) == (self.tool_macs, self.tool_params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "explain": {
                "model": self.model,
                "inputs": [list(s) for s in self.inputs],
                "tool": self.tool,
                "version": self.version,
                "headline": self.headline,
                "fxcost": {"macs": self.fxcost_macs, "params": self.fxcost_params},
                "reproduced": {"macs": self.tool_macs, "params": self.tool_params},
                "gap": self.gap,
                "params_reason": self.params_reason,
                "by_type": [t.to_dict() for t in self.by_type],
                "differences": [d.to_dict() for d in self.differences],
                "unseen": list(self.unseen),
                "misses": list(self.misses),
                "measured": {"macs": self.measured_macs, "params": self.measured_params, "note": self.measured_note,
                             "matches": self.reproduced, "failed": self.measured_failed},
                "install": self.install,
            },
        }
