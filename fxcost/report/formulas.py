"""A symbolic report's expressions: evaluated at sizes (:meth:`Report.at`), and shown by their
leading term. The report holds sympy expressions where an ordinary one holds ints."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import sympy


def mapped(obj: Any, fn: Any) -> Any:
    """``obj`` (a report: dataclasses, tuples, lists and dicts of them) with every leaf replaced by
    ``fn(leaf)``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: mapped(getattr(obj, f.name), fn) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(mapped(x, fn) for x in obj)
    if isinstance(obj, list):
        return [mapped(x, fn) for x in obj]
    if isinstance(obj, dict):
        return {k: mapped(v, fn) for k, v in obj.items()}
    return fn(obj)


def symbols_of(letters: Any) -> dict[str, sympy.Symbol]:
    return {name: sympy.Symbol(name, integer=True, positive=True) for name in letters}


def outside(domain: Any, letters: Any, values: Mapping[str, int]) -> list[str]:
    """The conditions of ``domain`` that ``values`` break."""
    names = symbols_of(letters)
    at = {names[k]: v for k, v in values.items()}
    broken = []
    for c in domain:
        holds = sympy.sympify(c, locals=names).subs(at)
        if holds not in (sympy.true, sympy.false):
            raise ValueError(f"cannot decide whether {c} holds at {dict(values)}")
        if holds is sympy.false:
            broken.append(c)
    return broken


def evaluate(report: Any, values: Mapping[str, int]) -> Any:
    """``report`` (symbolic) with every expression evaluated at ``values``, an ordinary report."""
    sizes = report.sizes
    if sizes is None:
        raise ValueError("at() evaluates a symbolic report (one analyzed with letters in its input sizes)")
    missing = [x for x in sizes.letters if x not in values]
    unknown = [x for x in values if x not in sizes.letters]
    if missing or unknown:
        raise ValueError(f"at() needs a size for each of {', '.join(sizes.letters)}"
                         + (f"; missing {', '.join(missing)}" if missing else "") + (f"; no letter {', '.join(unknown)}" if unknown else ""))
    broken = outside(sizes.domain, sizes.letters, values)
    if broken:
        for piece in report.pieces:
            if not outside(piece.sizes.domain, piece.sizes.letters, values):
                return evaluate(piece, values)
        given = ", ".join(f"{k}={v}" for k, v in values.items())
        others = "".join(f"; or (another piece) {' and '.join(p.sizes.domain)}" for p in report.pieces)
        raise ValueError(f"{given} is outside the domain where the figures hold: {'; '.join(broken)} fails{others}")
    names = symbols_of(sizes.letters)
    at = {names[k]: int(v) for k, v in values.items()}

    def value(x: Any) -> Any:
        if isinstance(x, sympy.Basic):
            v = x.subs(at)
            if not v.is_number:
                raise ValueError(f"{x} is not a number at {values}")
            return int(v)
        return x

    done = mapped(dataclasses.replace(report, pieces=(), peak_memory=None), value)
    peaks = list(done.peaks)
    peak = max(peaks, key=lambda p: p.peak_bytes) if peaks else None  # the first largest, as a step's run finds it
    return dataclasses.replace(done, sizes=None, peaks=(), peak_memory=peak)


def leading(x: Any) -> str:
    """``x``'s leading term as text: a polynomial's highest-degree part in its letters, with
    ``floor``/``ceiling`` taken as their argument; ``~`` before it where that leaves terms out."""
    if not isinstance(x, sympy.Basic) or x.is_number:
        return f"{int(x):,}"
    smooth = sympy.expand(x.replace(sympy.floor, lambda a: a).replace(sympy.ceiling, lambda a: a))
    letters = sorted(smooth.free_symbols, key=str)
    try:
        poly = sympy.Poly(smooth, *letters)
    except sympy.PolynomialError:
        return str(x)
    top = poly.total_degree()
    lead = sum((c * sympy.prod(s**k for s, k in zip(letters, m, strict=True)) for m, c in poly.terms() if sum(m) == top),
               sympy.Integer(0))
    return ("" if sympy.expand(lead - x) == 0 else "~") + str(lead)


def largest_of(report: Any, letter: str, fixed: Mapping[str, int], limit: int) -> int | None:
    """:func:`largest` over a symbolic report and its pieces: the largest size of ``letter`` that
    fits in any piece (the peak growing with the size)."""
    found = []
    for r in (report, *report.pieces):  # each piece searched from its own side (its hint)
        if r.peaks:
            own = dict(zip(r.sizes.letters, r.sizes.hints, strict=True))[letter]
            found.append(largest([p.peak_bytes for p in r.peaks], letter, {**fixed, letter: own}, limit, r.sizes.letters,
                                 r.sizes.domain))
    sizes = [n for n in found if n is not None]
    return max(sizes) if sizes else None


def largest(exprs: list[Any], letter: str, fixed: Mapping[str, int], limit: int, letters: Any, domain: Any,
            most: int = 1 << 40) -> int | None:
    """The largest size of ``letter`` (the others at ``fixed``) at which every expression of
    ``exprs`` is at most ``limit``, inside ``domain``; None where even the smallest size is over.
    In closed form where each expression is a polynomial in ``letter`` that grows with it (the
    real root of ``p(x) = limit``, floored, checked exactly at it and the next size); by exact
    bisection on the expressions otherwise (a floor of the letter, a power that does not grow)."""
    names = symbols_of(letters)
    x = names[letter]
    at = {names[k]: v for k, v in fixed.items() if k != letter}
    low = next((n for n in range(2, max(fixed[letter], 2) + 1) if not outside(domain, letters, {**fixed, letter: n})), None)
    if low is None:  # the domain starts past the hint on that letter: the hint's side is another piece's
        return None

    def fits(n: int) -> bool:
        return all(int(e.subs(at).subs(x, n)) <= limit for e in exprs) and not outside(domain, letters, {**fixed, letter: n})

    if not fits(low):
        return None
    best = most
    for e in exprs:
        p = sympy.expand(e.subs(at))
        if p.is_number:
            continue
        bound = _root(p, x, limit)
        best = min(best, bound if bound is not None else most)
    # the closed form's answer (or the search's ceiling), made exact: the largest n that fits
    lo, hi = low, max(low, min(best, most))
    if fits(hi):
        if not fits(hi + 1) or hi >= most:
            return hi
        lo, hi = hi, most  # the closed form was low (a floor, or a non-polynomial): search above it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _root(p: Any, x: Any, limit: int) -> int | None:
    """floor of the real x >= 2 where ``p(x) = limit``, ``p`` a polynomial in ``x`` with
    nonnegative coefficients (so growing); None otherwise."""
    try:
        poly = sympy.Poly(p, x)
    except sympy.PolynomialError:
        return None
    if any(c < 0 for c in poly.all_coeffs()) or not all(c.is_number for c in poly.all_coeffs()):
        return None
    roots = [r for r in sympy.Poly(poly - limit, x).nroots(n=30) if abs(sympy.im(r)) < 1e-9 and sympy.re(r) >= 0]
    return int(sympy.floor(max(sympy.re(r) for r in roots))) if roots else None
