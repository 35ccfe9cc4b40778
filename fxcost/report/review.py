"""The pre-export cost review: a report's totals against budgets and against an approved baseline.

Budgets are ``metric=amount`` strings (``params=150M``, ``macs=20G``, ``activation_bytes=1GiB``)
from the command line or from ``[tool.fxcost] budgets`` in ``pyproject.toml``; a baseline is a
JSON report written earlier by ``fxcost analyze -f json``, and a total may grow by at most
``max_growth`` (``5%``) over it. Amounts are exact integers: k, M, G, T are powers of 1000;
KiB, MiB, GiB, TiB powers of 1024; KB, MB, GB, TB powers of 1000 (bytes metrics only take the
byte units or none).

Which totals a budget may name comes from :class:`~fxcost.report.records.Counts`: every metric
that adds up, except the split of params into weights and biases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from fxcost.errors import MAX_DIGITS, InputSpecError, SpecError, first_line, quoted
from fxcost.report.records import ORIGINAL_METRICS, SCHEMA_VERSION, Counts, InputSpec, Record
from fxcost.report.report import Report


@dataclass(frozen=True)
class Baseline(Record):
    """What a review compares with: an approved report's convention, inputs and totals (read from
    any report's JSON, a file written by fxcost 0.1 included)."""

    model: str
    convention: str
    inputs: tuple[InputSpec, ...]
    totals: Counts

    @classmethod
    def of(cls, report: Report) -> Baseline:
        return cls(report.model, report.convention, report.inputs, report.total())


@dataclass(frozen=True)
class Contributor(Record):
    """A row and its share of one metric."""

    name: str
    value: int


@dataclass(frozen=True)
class ReviewCheck(Record):
    """One total against one limit: a budget, or the baseline's total plus the allowed growth."""

    metric: str
    kind: str  # "budget" or "baseline +5%"
    value: int
    limit: int
    ok: bool
    #: the rows that contribute most to this metric, largest first
    top: tuple[Contributor, ...] = ()
    baseline: int | None = None

    JSON = ("metric", "kind", "value", "limit", "baseline", "growth", "ok", "top")

    @property
    def growth(self) -> float | None:
        """How much the total grew over the baseline (0.486 for +48.6%)."""
        return (self.value - self.baseline) / self.baseline if self.baseline else None


@dataclass(frozen=True)
class Review:
    """A report reviewed against budgets and a baseline (``fxcost review``)."""

    report: Report
    checks: tuple[ReviewCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "review": {
                "model": self.report.model,
                "inputs": [i.to_dict() for i in self.report.inputs],
                "convention": self.report.convention,
                "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks],
                "totals": self.report.total().to_dict(self.report.metrics()),
                "unsupported": [u.to_dict() for u in self.report.unsupported],
            },
        }


#: the totals a budget may name
METRICS = tuple(n for n in Counts.names() if n not in ("weight_params", "bias_params"))

_BYTES = tuple(m for m in METRICS if m.endswith("_bytes"))
_COUNT_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BYTE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
TOP = 5  # contributors listed for each failed check
GROWTH_METRICS = ("params", "macs", "flops", "activation_bytes")  # compared with a baseline


def parse_amount(metric: str, text: str) -> int:
    """``"1.5G"`` -> 1500000000 for a count; ``"1GiB"`` -> 1073741824 for a bytes metric."""
    units = _BYTE_UNITS if metric in _BYTES else _COUNT_UNITS
    m = _AMOUNT.match(str(text))
    if m and len(m.group(1)) > MAX_DIGITS:
        raise InputSpecError(f"the budget {metric}={quoted(text)} has more digits than any count fxcost makes "
                             f"(at most {MAX_DIGITS})", hint="params=150M, macs=20G")
    if not m or m.group(2) not in units:
        raise InputSpecError(
            f"cannot read the budget {metric}={quoted(text)}",
            hint=f"write a number with one of the units {', '.join(u for u in units if u)} (e.g. "
            + ("activation_bytes=1GiB)" if metric in _BYTES else "params=150M, macs=20G)"),
        )
    value = Fraction(m.group(1)) * units[m.group(2)]
    if value.denominator != 1:
        raise InputSpecError(f"the budget {metric}={text!r} is not a whole number", hint="budgets are exact integers")
    return int(value)


def parse_budget(text: str) -> tuple[str, int]:
    """``"params=150M"`` -> ``("params", 150000000)``."""
    metric, sep, amount = text.partition("=")
    metric = metric.strip()
    if not sep or metric not in METRICS:
        raise InputSpecError(f"cannot read the budget {quoted(text)}", hint=f"write --budget METRIC=AMOUNT with a metric of: {', '.join(METRICS)}")
    return metric, parse_amount(metric, amount)


def parse_growth(text: str) -> Fraction:
    """``"5%"`` -> 1/20; ``"0.05"`` -> 1/20."""
    t = str(text).strip()
    try:
        if len(t) > MAX_DIGITS:
            raise ValueError(t)
        value = Fraction(t[:-1].strip()) / 100 if t.endswith("%") else Fraction(t)
    except (ValueError, ZeroDivisionError):
        raise InputSpecError(f"cannot read the growth limit {quoted(text)}", hint="write a percentage such as 5%") from None
    if value < 0:
        raise InputSpecError(f"the growth limit {text!r} is negative", hint="write a percentage such as 5%")
    if not t.endswith("%") and value >= 1:  # "5" is far more likely 5% than 500%
        raise InputSpecError(f"the growth limit {text!r} is ambiguous", hint="write it as a percentage (5%) or a fraction below 1 (0.05)")
    if value > 1000:
        raise InputSpecError(f"the growth limit {text!r} is implausibly large", hint="write a percentage such as 5%")
    return value


def pyproject_settings(path: str | Path) -> tuple[dict[str, int], Fraction | None]:
    """Budgets and max growth from ``[tool.fxcost]`` in a pyproject.toml:
    ``budgets = {params = "150M", macs = "20G"}`` and ``max_growth = "5%"``."""
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        raise SpecError("reading [tool.fxcost] from pyproject.toml needs Python 3.11 or later (tomllib)",
                        hint="give the budgets with --budget instead") from None
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise SpecError(f"cannot read {str(p)!r}: {first_line(e)}", hint="check the path, that it is UTF-8 and its TOML syntax") from e
    tool = doc.get("tool", {})
    table = tool.get("fxcost", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise SpecError(f"[tool.fxcost] in {str(p)!r} must be a table", hint='[tool.fxcost]\nbudgets = {params = "150M"}')
    unknown = sorted(set(table) - {"budgets", "max_growth"})
    if unknown:
        raise SpecError(f"[tool.fxcost] in {str(p)!r} has unknown keys {', '.join(unknown)}", hint="it takes budgets = {...} and max_growth = \"5%\"")
    raw = table.get("budgets", {})
    if not isinstance(raw, dict):
        raise SpecError(f"[tool.fxcost] budgets in {str(p)!r} must be a table", hint='budgets = {params = "150M"}')
    budgets = {}
    for metric, amount in raw.items():
        if metric not in METRICS:
            raise InputSpecError(f"[tool.fxcost] budgets names {metric!r}, not a metric", hint=f"metrics: {', '.join(METRICS)}")
        if isinstance(amount, bool) or not isinstance(amount, (int, str)):
            raise InputSpecError(f"[tool.fxcost] budget {metric} = {amount!r}: write an integer or a string like \"150M\"",
                                 hint='budgets = {params = "150M", macs = 20000000000}')
        budgets[metric] = parse_amount(metric, str(amount))
    growth = parse_growth(table["max_growth"]) if "max_growth" in table else None
    return budgets, growth


#: the report schemas a baseline may have: their totals are the same
BASELINE_SCHEMAS = (1, SCHEMA_VERSION)


def load_baseline(path: str | Path) -> Baseline:
    """The setting and totals of an approved report (``fxcost analyze -f json``)."""
    p = Path(path)
    hint = "write one with fxcost analyze ... -f json -o baseline.json (one model, one input size)"
    try:
        d = json.loads(p.read_text())
    except OSError as e:
        raise SpecError(f"cannot read the baseline {str(p)!r}: {e.strerror or e}", hint=hint) from e
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise SpecError(f"the baseline {str(p)!r} is not JSON in UTF-8: {first_line(e)}", hint=hint) from e
    if not isinstance(d, dict) or d.get("schema_version") not in BASELINE_SCHEMAS or not isinstance(d.get("totals"), dict):
        raise SpecError(f"the baseline {str(p)!r} is not a single fxcost report (schema_version "
                        f"{' or '.join(map(str, BASELINE_SCHEMAS))} with totals)", hint=hint)
    for metric in Counts.names():
        v = d["totals"].get(metric, None if metric in ORIGINAL_METRICS else 0)  # a later metric reads 0 where absent
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SpecError(f"the baseline {str(p)!r} has no integer totals.{metric} (found {v!r})", hint=hint)
    try:
        return Baseline.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"the baseline {str(p)!r} is not a whole fxcost report ({type(e).__name__}: {e})", hint=hint) from e


def review(
    report: Report,
    budgets: dict[str, int] | None = None,
    baseline: Baseline | Report | None = None,
    max_growth: Fraction | None = None,
) -> Review:
    """Check ``report``'s totals against ``budgets`` (at most) and against ``baseline``'s totals
    (at most ``1 + max_growth`` times each, default 5%); each failed check lists the layers
    that contribute most to that metric."""
    if isinstance(baseline, Report):
        baseline = Baseline.of(baseline)
    totals = report.total().to_dict(report.metrics())
    for metric in budgets or {}:
        if metric not in METRICS:
            raise InputSpecError(f"{metric!r} is not a metric a budget can name", hint=f"metrics: {', '.join(METRICS)}")
    if baseline is not None:
        _same_setting(report, baseline)
    checks = []
    for metric, limit in (budgets or {}).items():
        checks.append(ReviewCheck(metric, "budget", totals[metric], limit, totals[metric] <= limit, _top(report, metric)))
    if baseline is not None:
        growth = Fraction(1, 20) if max_growth is None else max_growth
        for metric in GROWTH_METRICS:
            old = int(getattr(baseline.totals, metric))
            limit = int(old * (1 + growth))  # the largest integer within the allowed growth
            checks.append(ReviewCheck(metric, f"baseline +{float(growth) * 100:g}%", totals[metric], limit,
                                      totals[metric] <= limit, _top(report, metric), baseline=old))
    return Review(report, tuple(checks))


def _same_setting(report: Report, baseline: Baseline) -> None:
    """A baseline compares like with like: the same convention and the same input shapes (the
    model may differ: that is what a review of a new version is for)."""
    if baseline.convention != report.convention:
        raise InputSpecError(
            f"the baseline was counted under convention {baseline.convention!r}, this review under {report.convention!r}",
            hint=f"review with --convention {baseline.convention}, or approve a new baseline",
        )
    theirs = [(i.name, i.shape) for i in baseline.inputs]
    ours = [(i.name, i.shape) for i in report.inputs]
    if theirs != ours:
        def shown(xs: list[Any]) -> str:
            return ", ".join(f"{n} {'x'.join(map(str, s or []))}" for n, s in xs)
        raise InputSpecError(f"the baseline was analyzed with inputs {shown(theirs)}, this review with {shown(ours)}",
                             hint="give the baseline's --input, or approve a new baseline at this size")


def _top(report: Report, metric: str) -> tuple[Contributor, ...]:
    rows = sorted((r for r in report.layers if getattr(r, metric, 0)), key=lambda r: -getattr(r, metric))
    return tuple(Contributor(r.name, int(getattr(r, metric))) for r in rows[:TOP])
