"""The op registry: every op gets one fate, a formula, free (with a reason) or unsupported.

One registry per route (:data:`fxcost.pytorch.aten.ATEN` for aten ops,
:data:`fxcost.onnx.formulas.ONNX_REGISTRY` for ONNX ops), one way in: :meth:`FormulaRegistry.formula`
and :meth:`FormulaRegistry.free` refuse an op that already has a fate. The routes' tables are
frozen once written; an analysis that counts differently takes a :meth:`FormulaRegistry.copy`,
adds ops to it or replaces one's rule there (:meth:`FormulaRegistry.replace`), and passes the copy in.

A formula is a pure function of shapes and arguments: it receives the op's arguments with every
tensor replaced by its shape and returns a :class:`~fxcost.counting.arithmetic.Cost`. A formula
whose op costs what its operands' values say (a box's size in RoI pooling) is marked
``reads_values = True``: it gets the tensors themselves and raises :class:`ValueDependent` where
they have no values (meta and fake tensors), and the op is then reported unsupported with that
reason. The reasons ops are free are written once, in :class:`Free`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import NamedTuple

from fxcost.counting.arithmetic import Cost
from fxcost.report.kinds import Fate

Formula = Callable[..., Cost]


class Free(StrEnum):
    """Why an op costs nothing: the reviewed reasons, shared by both routes."""

    VIEW = "view: a new shape or stride over the same storage, no arithmetic"
    METADATA = "metadata query, no data touched"
    CONSTRUCTOR = "constructor or constant fill, no arithmetic on activations"
    DATA_MOVEMENT = "data movement (copy, gather, concatenate, pad, cast): memory traffic, no arithmetic"
    NEAREST = ("nearest-neighbour upsampling copies input values (a gather, like index_select), no "
               "arithmetic")
    INDEX = ("builds the index of each repeated element from the repeat counts (index_select then moves the "
             "values), no arithmetic on activations")
    NONZERO = ("lists the positions of the non-zero elements (nonzero, where(cond)): an index, no arithmetic on "
               "activations; its size depends on the values")
    CHECK = "runtime check of a shape, dtype or value: computes nothing the model uses"
    READ_BACK = "reads one element back to Python (item()), no arithmetic"
    RANDOM = "random number generation, not arithmetic on the model's values"
    PASS_THROUGH = "the input passes through unchanged (dropout at inference), no arithmetic"


class ValueDependent(Exception):  # noqa: N818 (a fate, not a failure)
    """Raised by a formula that reads values (``reads_values``) given tensors without any: the
    message says what the cost depends on."""


class Rule(NamedTuple):
    """An op's fate, its formula (``Fate.FORMULA``) and its reason (``Fate.FREE``)."""

    fate: Fate
    formula: Formula | None = None
    reason: str = ""


_UNSUPPORTED = Rule(Fate.UNSUPPORTED)


class FormulaRegistry:
    """Maps op names (``aten::addmm``, ``onnx::Conv``) to a :class:`Rule`."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}
        self._frozen = False

    def freeze(self, known: Callable[[str], bool] | None = None) -> FormulaRegistry:
        """No more changes (a route's own table, once its module has written it). ``known``: whether
        the route has an op of that name; a table naming one it has not is refused (``ValueError``)."""
        unknown = [n for n in self._rules if known is not None and not known(n)]
        if unknown:
            raise ValueError(f"ops that do not exist: {', '.join(sorted(unknown))}")
        self._frozen = True
        return self

    def _writable(self) -> None:
        if self._frozen:
            raise ValueError("this registry is a route's own table and never changes: take a copy() and change that")

    def _claim(self, names: Sequence[str], rule: Rule) -> None:
        self._writable()
        for n in names:
            if n in self._rules:
                raise ValueError(f"{n} already has a fate in this registry")
        for n in names:
            self._rules[n] = rule

    def formula(self, *names: str) -> Callable[[Formula], Formula]:
        """Decorator: ``fn(*args, out=shape, **kwargs) -> Cost`` for the named ops."""

        def register(fn: Formula) -> Formula:
            self._claim(names, Rule(Fate.FORMULA, fn))
            return fn

        return register

    def free(self, *names: str, reason: str) -> None:
        """Declare ops that cost nothing, with the reviewed reason (a :class:`Free` member where
        one fits)."""
        if not reason:
            raise ValueError("a free op needs a reason")
        self._claim(names, Rule(Fate.FREE, reason=str(reason)))

    def replace(self, name: str, fn: Formula) -> None:
        """Give an op that has a fate a new formula, in a copy (a convention that counts it
        differently); :meth:`formula` is the way in for an op without one."""
        self._writable()
        if name not in self._rules:
            raise ValueError(f"{name} has no fate to replace: give it one with formula()")
        self._rules[name] = Rule(Fate.FORMULA, fn)

    def lookup(self, name: str) -> Rule:
        """The op's rule; ``Fate.UNSUPPORTED`` for an op with no fate."""
        return self._rules.get(name, _UNSUPPORTED)

    def copy(self) -> FormulaRegistry:
        new = FormulaRegistry()
        new._rules = dict(self._rules)
        return new

    def names(self) -> dict[str, str]:
        """Every op with a fate: name -> ``formula`` or the free reason (for docs and tests)."""
        return {n: "formula" if r.fate is Fate.FORMULA else r.reason for n, r in sorted(self._rules.items())}
