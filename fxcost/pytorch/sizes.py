"""Symbolic sizes: inputs whose dimensions are letters (``Bx3xHxW``, ``BxS:int64``), and an
analysis whose every figure is an exact expression of them, with the domain where it holds.

The fake run is PyTorch's own symbolic-shape machinery (``torch.fx.experimental.symbolic_shapes``):
a ``ShapeEnv`` gives each letter a symbol with a hint (the size at which the forward's branches
are taken); the input fake tensors carry those sizes (``SymInt``), so every op's output shape is
an expression of the letters, and fxcost's formulas, which keep a ``SymInt`` as it is
(:func:`fxcost.counting.arithmetic.whole`), price each op as one. Each branch the forward takes
on a size (``if seq_len > window``) is a guard the ShapeEnv records: the guards, beside each
letter's range, are the domain where the figures hold. A size the forward fixes (a position
table read at ``S``, ``int(S)``) is refused with the line that fixed it: no figure is an
expression of a letter that the model treats as a number.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy
import torch
from torch._guards import GuardSource, Source
from torch.utils._pytree import tree_flatten, tree_unflatten

from fxcost.errors import InputSpecError
from fxcost.pytorch.recorder import DispatchMode
from fxcost.report.formulas import mapped

#: a size written as a letter (``B``, ``S``, ``H``), optionally numbered (``S2``); ``x`` and ``X``
#: join dimensions and so are no letters, and a word (``1x3xabc``) is a malformed shape
LETTER = re.compile(r"^[A-WYZa-wyz][0-9]*$")

#: the hints a letter gets where ``--hint`` gives none: the size its place in an input usually
#: has (a batch of 2, an image of 224 pixels, a sequence of 128 tokens); each > 1, since PyTorch
#: specializes a size of 0 or 1
_BATCH_HINT, _IMAGE_HINT, _OTHER_HINT = 2, 224, 128


@dataclass(frozen=True)
class _Letter(Source):  # type: ignore[misc]  # torch's Source is untyped
    """A letter as the ShapeEnv's guards name it."""

    letter: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.letter

    @property
    def guard_source(self) -> GuardSource:
        return GuardSource.LOCAL


Pattern = tuple[int | str, ...]


@dataclass(frozen=True)
class Dims:
    """The letters of a symbolic analysis: each input tensor's sizes (a letter or a number), in
    the pytree order of ``(args, kwargs)``, and each letter's hint and range (``low``, ``high``:
    None for no bound)."""

    patterns: tuple[Pattern | None, ...]
    hints: Mapping[str, int]
    ranges: Mapping[str, tuple[int, int | None]] = dataclasses.field(default_factory=dict)

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(self.hints)

    def at_hints(self, pattern: Pattern) -> tuple[int, ...]:
        return tuple(self.hints[d] if isinstance(d, str) else d for d in pattern)


def is_letter(d: Any) -> bool:
    return isinstance(d, str) and bool(LETTER.match(d))


def has_letters(shape: Any) -> bool:
    return isinstance(shape, (tuple, list)) and any(isinstance(d, str) for d in shape)


def _default_hint(pattern: Pattern, i: int, floating: bool) -> int:
    if i == 0 and len(pattern) > 1:
        return _BATCH_HINT
    if floating and len(pattern) >= 3 and i >= len(pattern) - 2:
        return _IMAGE_HINT
    return _OTHER_HINT


def dims_of(patterns: Sequence[tuple[Pattern, torch.dtype] | None], hints: Mapping[str, int] | None = None,
            ranges: Mapping[str, tuple[int, int | None]] | None = None) -> Dims:
    """The :class:`Dims` of input tensors given as ``(pattern, dtype)`` (None for one without
    letters): each letter's hint is the one given, else the size its first place usually has.
    A hint outside a letter's range, a hint or range for a letter no input has: :class:`InputSpecError`."""
    hints = dict(hints or {})
    ranges = dict(ranges or {})
    found: dict[str, int] = {}
    for item in patterns:
        if item is None:
            continue
        pattern, dtype = item
        for i, d in enumerate(pattern):
            if isinstance(d, str):
                if not is_letter(d):
                    raise InputSpecError(f"size {d!r} is neither a number nor a letter",
                                         hint="write a letter (B, S, H) for a size that varies, a number for one that does not")
                found.setdefault(d, hints.get(d) or _default_hint(pattern, i, dtype.is_floating_point))
    for name, what in [*((n, "--hint") for n in hints), *((n, "a range") for n in ranges)]:
        if name not in found:
            raise InputSpecError(f"{what} names {name!r}, which no input size has",
                                 hint=f"the letters in the inputs: {', '.join(found) or 'none'}")
    for letter, hint in found.items():
        low, high = ranges.get(letter, (2, None))
        if hint < 2 or hint < low or (high is not None and hint > high):
            raise InputSpecError(f"hint {letter}={hint} is outside {letter}'s range [{max(low, 2)}, {high or 'inf'}]",
                                 hint="a hint is a size the model is run at: give one inside the range, and at least 2 "
                                      "(PyTorch fixes a size of 0 or 1)")
    return Dims(tuple(None if p is None else p[0] for p in patterns), found, ranges)


def parse_hints(text: str | Mapping[str, int] | None) -> dict[str, int]:
    """``"B=8,S=2048"`` -> ``{"B": 8, "S": 2048}``."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return {str(k): int(v) for k, v in text.items()}
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq or not is_letter(name.strip()) or not value.strip().isdigit():
            raise InputSpecError(f"malformed --hint {part!r}", hint="write LETTER=SIZE joined by commas, e.g. --hint B=8,S=2048")
        out[name.strip()] = int(value)
    return out


def parse_ranges(dims: Mapping[str, Any] | None) -> dict[str, tuple[int, int | None]]:
    """``dims={"S": (2, 4096), "B": 8}``: each letter's range (``low``, ``high``; a number alone is
    both, a ``high`` of None no bound)."""
    out: dict[str, tuple[int, int | None]] = {}
    for k, v in (dims or {}).items():
        low, high = (v, v) if isinstance(v, int) else tuple(v)
        out[str(k)] = (int(low), None if high is None else int(high))
    return out


class Symbols:
    """The letters of one symbolic run: its ShapeEnv, and each letter's symbol there."""

    def __init__(self, dims: Dims) -> None:
        from torch.fx.experimental.symbolic_shapes import DimDynamic

        self.dims = dims
        self.env = _env()
        self.symbols: dict[str, Any] = {}
        self.sizes: dict[str, Any] = {}
        for letter, hint in dims.hints.items():
            s = self.env.create_symbol(hint, _Letter(letter), dynamic_dim=DimDynamic.DYNAMIC)
            low, high = dims.ranges.get(letter, (2, None))
            self.env.constrain_symbol_range(s, compiler_min=max(low, 2), compiler_max=high if high is not None else int(sys_max()))
            self.symbols[letter] = s
            self.sizes[letter] = self.env.create_symintnode(s, hint=hint)
        self.named = {s: sympy.Symbol(letter, integer=True, positive=True) for letter, s in self.symbols.items()}
        self._plain: dict[Any, Any] = {}

    def mode(self) -> Any:
        from torch._subclasses.fake_tensor import FakeTensorMode

        return FakeTensorMode(shape_env=self.env, allow_non_fake_inputs=True)

    def inputs(self, mode: Any, args: tuple[Any, ...], kwargs: dict[str, Any], device: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` with each input tensor a fake tensor of ``mode`` whose sizes are the
        letters' symbols (asking for a gradient where the input did)."""

        def fake(x: torch.Tensor, shape: Sequence[Any]) -> torch.Tensor:
            with mode:
                made = torch.empty(shape, dtype=x.dtype, device=device)
            return made.requires_grad_(True) if x.requires_grad and made.is_floating_point() else made

        return _each_input(self.dims, args, kwargs, self.sizes, fake)

    def expr(self, x: Any) -> Any:
        """A ``SymInt`` as a sympy expression of the letters (anything else as it is)."""
        if isinstance(x, torch.SymInt):
            return self.plain(x.node.expr)
        return x

    def plain(self, e: Any) -> Any:
        """A ShapeEnv expression in the letters and sympy's own functions (``floor``, ``Mod``);
        each expression once (a report holds the same few many times)."""
        done = self._plain.get(e)
        if done is None:
            done = _plain(self.env.simplify(e)).xreplace(self.named)
            done = sympy.expand(done) if isinstance(done, sympy.Expr) and done.is_polynomial() else done
            self._plain[e] = done
        return done

    def fixed(self) -> list[tuple[str, int, str]]:
        """The letters the run fixed at a number: ``(letter, size, where)``."""
        found = []
        for letter, s in self.symbols.items():
            value = self.env.replacements.get(s)
            if value is not None and value.is_number:
                where = self.env.replacements_slocs.get(s)
                found.append((letter, int(value), _where(where)))
        return found

    def related(self) -> list[tuple[str, str, str]]:
        """Letters the run found equal to an expression of others (two letters for one size)."""
        found = []
        for letter, s in self.symbols.items():
            value = self.env.replacements.get(s)
            if value is not None and not value.is_number:
                found.append((letter, str(value.xreplace(self.named)), _where(self.env.replacements_slocs.get(s))))
        return found

    def domain(self) -> tuple[str, ...]:
        """Where the figures hold: each letter's range, then each guard the run recorded, in
        the letters (``S <= 1024``), each once."""
        return tuple(dict.fromkeys([*self._ranges(), *self.guards()]))

    def guards(self) -> list[str]:
        """The conditions the run's branches on sizes recorded, in the letters."""
        out: list[str] = []
        for g in self.env.guards:
            e = self.plain(g.expr)
            if e is not sympy.true:
                out.append(str(e))
        return out

    def _ranges(self) -> list[str]:
        out: list[str] = []
        for letter, s in self.symbols.items():
            r = self.env.var_to_range.get(s)
            low = int(r.lower) if r is not None and r.lower.is_finite else 2
            high = int(r.upper) if r is not None and r.upper.is_finite and int(r.upper) < sys_max() else None
            out += [f"{letter} >= {low}"] + ([f"{letter} <= {high}"] if high is not None else [])
        return out


def _plain(e: Any) -> Any:
    """``e`` with torch's own sympy functions (``FloorDiv``, ``PythonMod``...) as sympy's."""
    import torch.utils._sympy.functions as F

    for fn, as_sympy in ((F.FloorDiv, lambda a, b: sympy.floor(a / b)), (F.CeilDiv, lambda a, b: sympy.ceiling(a / b)),
                         (F.CleanDiv, lambda a, b: a / b), (F.IntTrueDiv, lambda a, b: a / b),
                         (F.PythonMod, sympy.Mod), (F.Mod, sympy.Mod), (F.PowByNatural, lambda a, b: a**b),
                         (F.Max, sympy.Max), (F.Min, sympy.Min), (F.CeilToInt, sympy.ceiling),
                         (F.FloorToInt, sympy.floor), (F.Identity, lambda a: a), (F.ToFloat, lambda a: a),
                         (F.FloatPow, lambda a, b: a**b), (F.FloatTrueDiv, lambda a, b: a / b),
                         (F.TruncToInt, lambda a: sympy.sign(a) * sympy.floor(abs(a)))):
        if e.has(fn):
            e = e.replace(fn, as_sympy)
    return e


def sys_max() -> int:
    return int(torch.iinfo(torch.int64).max) - 1


def _where(sloc: Any) -> str:
    if sloc is None:
        return ""
    user = getattr(sloc, "maybe_user_loc", None) or getattr(sloc, "framework_loc", None)
    if user is None:
        return ""
    if hasattr(user, "filename"):
        return f"{user.filename}:{user.lineno}, in {user.name}"
    asker = getattr(sloc, "framework_loc", None)
    return f"{user}" + (f", by {asker}" if isinstance(asker, str) and asker != user else "")


_OWN = tuple(str(p) + os.sep for p in (Path(torch.__file__).parent, Path(__file__).parents[1], Path(sympy.__file__).parent))


#: the symbolic-shape machinery itself: a guard is made there, never asked for
_MACHINERY = (*(str(Path(torch.__file__).parent.joinpath(*p.split("/"))) + (os.sep if p.endswith("/") else "") for p in (
    "fx/experimental/", "_guards.py", "__init__.py", "utils/_sympy/", "_subclasses/", "utils/_stats.py", "_ops.py",
    "_prims_common/wrappers.py", "_dynamo/", "_compile.py", "overrides.py")),
    *(str(Path(__file__).parent / f) for f in ("eager.py", "recorder.py")), __file__, str(Path(sympy.__file__).parent) + os.sep)


def _lines() -> tuple[str | None, str | None]:
    """The running stack's innermost line outside torch, sympy and fxcost (the model's), and its
    innermost line outside the symbolic-shape machinery (what asked for the guard: a torch kernel
    or fxcost's own formula)."""
    model = asker = None
    frame = sys._getframe(1)
    while frame is not None and model is None:
        name = frame.f_code.co_filename
        here = f"{name}:{frame.f_lineno}, in {frame.f_code.co_name}"
        if asker is None and not name.startswith(_MACHINERY):
            asker = here
        if not name.startswith(_OWN) and not name.startswith("<"):
            model = here
        frame = frame.f_back  # type: ignore[assignment]
    return model, asker


def _env() -> Any:
    """A ShapeEnv whose guards and replacements name the model's line (torch's own search stops at
    the first frame outside its tracing machinery, which may be torch's dispatch code)."""
    from torch._guards import SLoc
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    class Env(ShapeEnv):  # type: ignore[misc]
        def _get_sloc(self, framework_loc: str | None = None) -> SLoc:
            sloc = super()._get_sloc(framework_loc)
            model, asker = _lines()
            return SLoc(asker if asker != model else sloc.framework_loc, model) if model is not None else sloc

    return Env()


_SYMBOL = re.compile(r"(?<![A-Za-z0-9_])s\d+(?!\d)")  # s44x16: x joins sizes


def lettered_text(text: str, symbols: Symbols) -> str:
    """``text`` (an error message) with the ShapeEnv's symbol names (``s44``) as the letters."""
    names = {str(s): letter for letter, s in symbols.symbols.items()}
    return _SYMBOL.sub(lambda m: names.get(m.group(0), m.group(0)), text)


def lettered_sizes(input_size: Any, hints: Mapping[str, int] | None,
                   ranges: Mapping[str, tuple[int, int | None]] | None) -> tuple[Any, Dims] | None:
    """``input_size`` with letters (``("B", 3, "H", "W")``, or a list of such shapes: float32
    inputs) as the same shapes at the letters' hints, and their :class:`Dims`; None where it has
    no letter."""
    if input_size is None or isinstance(input_size, str):
        return None
    one = isinstance(input_size, (tuple, list)) and all(isinstance(d, (int, str)) for d in input_size)
    shapes = [input_size] if one else list(input_size)
    if not any(has_letters(s) for s in shapes):
        return None
    dims = dims_of([(tuple(s), torch.float32) for s in shapes], hints, ranges)
    concrete = [dims.at_hints(tuple(s)) for s in shapes]
    return (concrete[0] if one else concrete), dims


def symbolic_report(report: Any, symbols: Symbols, peaks: tuple[Any, ...] = (), guards: Sequence[str] = (),
                    lookups: Sequence[str] = ()) -> Any:
    """The report of a symbolic run with every ``SymInt`` in it an expression of the letters, its
    domain, and ``peaks`` (already expressions) as its peak memory. A letter the run fixed at a
    number, or hints that look a position up past its table (``lookups``), are an
    :class:`InputSpecError` naming where; letters found equal to others are said in ``equal``."""
    from fxcost.report.records import Sizes

    fixed = symbols.fixed()
    if fixed:
        letter, size, where = fixed[0]
        raise InputSpecError(
            f"the forward fixes {letter} at {size}" + (f" (at {where})" if where else "")
            + f": no figure is an expression of {letter} where the model takes {letter} as a number",
            hint=f"give {letter} as the number {size} in the input sizes (or another size the model takes)")
    from fxcost.report.formulas import outside

    past = outside(lookups, symbols.dims.letters, symbols.dims.hints)
    if past:
        raise InputSpecError(f"at {', '.join(f'{k}={v}' for k, v in symbols.dims.hints.items())} the forward looks a "
                             f"position up past its table ({past[0]} fails): a real run fails there",
                             hint="give a --hint inside the table")
    report = mapped(report, symbols.expr)
    # the memory run's branches too, and the tables positions are looked up in (no branch: past them a run fails)
    domain = tuple(dict.fromkeys([*symbols.domain(), *guards, *lookups]))
    sizes = Sizes(letters=symbols.dims.letters, hints=tuple(symbols.dims.hints.values()), domain=domain,
                  equal=tuple(f"{a} = {b}" for a, b, _ in symbols.related()),
                  branches=tuple(dict.fromkeys([*symbols.guards(), *guards])))
    return dataclasses.replace(report, sizes=sizes, peaks=peaks, peak_memory=_at_hint(peaks, symbols) if peaks else None)


def _at_hint(peaks: tuple[Any, ...], symbols: Symbols) -> Any:
    """The candidate that is the first largest at the hints: the report's peak as shown."""
    at = {symbols.named[s]: symbols.dims.hints[letter] for letter, s in symbols.symbols.items()}
    values = [int(p.peak_bytes.subs(at)) if isinstance(p.peak_bytes, sympy.Basic) else int(p.peak_bytes) for p in peaks]
    return peaks[values.index(max(values))]


_BRANCHES = (sympy.StrictGreaterThan, sympy.StrictLessThan, sympy.GreaterThan, sympy.LessThan)


def other_sides(sizes: Any, dims: Dims) -> list[tuple[str, int, str]]:
    """The branches the forward took on one letter alone: each condition of the domain on a
    single letter that its range does not imply (``S >= 4``: the sliding window's), with the size
    of that letter nearest its hint on the other side, ``(letter, size, condition)``; none where
    the range has no size there."""
    from fxcost.report.formulas import symbols_of

    names = symbols_of(sizes.letters)
    found: list[tuple[str, int, str]] = []
    for cond in sizes.branches:
        rel = sympy.sympify(cond, locals=names)
        free = rel.free_symbols
        # an inequality on one letter is a branch; Ne and Eq are PyTorch's checks that a size is
        # not 0 or 1, and sizes the model pins (a position table's), whose other side is no branch
        if not isinstance(rel, _BRANCHES) or len(free) != 1:
            continue
        (symbol,) = free
        letter = str(symbol)
        low, high = dims.ranges.get(letter, (2, None))
        holds = sympy.lambdify(symbol, rel, modules=["math", {"floor": lambda x: x // 1, "ceiling": lambda x: -(-x // 1)}])
        hint = dims.hints[letter]
        for d in range(1, 1 << 16):
            side = [v for v in (hint - d, hint + d) if max(low, 2) <= v and (high is None or v <= high) and not holds(v)]
            if side:
                if (letter, side[0]) not in [(x, v) for x, v, _ in found]:
                    found.append((letter, side[0], cond))
                break
            if hint - d < max(low, 2) and high is not None and hint + d > high:
                break
    return found


def _nonnegative_atom(factor: Any) -> bool:
    """A factor of a term that is >= 0 at every size >= 2: a letter, a power of one, or the floor
    or ceiling of an expression that grows with each letter and is >= 0 where they are all 2."""
    if factor.is_Symbol or (factor.is_Pow and factor.base.is_Symbol and factor.exp.is_Integer and factor.exp > 0):
        return True
    if isinstance(factor, (sympy.floor, sympy.ceiling)):
        arg = sympy.expand(factor.args[0])
        coefficients = arg.as_coefficients_dict()
        grows = all(c >= 0 for term, c in coefficients.items() if term != 1) and all(
            _nonnegative_atom(f) for term in coefficients if term != 1 for f in sympy.Mul.make_args(term))
        return grows and arg.subs({s: 2 for s in arg.free_symbols}) >= 0
    return False


def at_least(a: Any, b: Any, strictly: bool = False) -> bool:
    """``a >= b`` (``a > b`` where ``strictly``) at every size >= 2, proved term by term: ``a - b``
    expanded is a sum of nonnegative coefficients times nonnegative factors (strictly: and one
    term is a positive number or a positive multiple of letters alone). False where that does not
    prove it."""
    diff = sympy.expand(a - b)
    if diff.is_number:
        return bool(diff > 0) if strictly else bool(diff >= 0)
    positive = False
    for term, c in diff.as_coefficients_dict().items():
        factors = [f for f in sympy.Mul.make_args(term) if not f.is_number]
        if c < 0 or not all(_nonnegative_atom(f) for f in factors):
            return False
        positive = positive or (c > 0 and all(f.is_Symbol or f.is_Pow for f in factors))
    return positive or not strictly


def peak_candidates(totals: list[Any]) -> list[int]:
    """The indices of ``totals`` (live bytes in the order the ops made them) that can be the
    first largest at some size: each one that no other is proved at least as large as, where that
    other came first, or larger, where it came after."""
    kept: list[int] = []
    for i, t in enumerate(totals):
        if any(at_least(totals[j], t) for j in kept):
            continue  # an earlier one is at least as large everywhere: it is the first max, not this
        kept = [j for j in kept if not at_least(t, totals[j], strictly=True)]
        kept.append(i)
    return kept


def sized_inputs(dims: Dims, args: tuple[Any, ...], kwargs: dict[str, Any],
                 values: Mapping[str, int]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` (meta tensors at the hints) with each lettered tensor at ``values``."""
    return _each_input(dims, args, kwargs, values,
                       lambda x, shape: torch.empty(shape, dtype=x.dtype, device="meta"))


def _each_input(dims: Dims, args: tuple[Any, ...], kwargs: dict[str, Any], sizes: Mapping[str, Any],
                make: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` with each input tensor (in pytree order, as ``dims.patterns`` lists
    them) replaced by ``make(tensor, shape)``: its pattern with each letter's size in ``sizes``, a
    tensor without letters at its own shape."""
    flat, spec = tree_flatten((args, kwargs))
    patterns = iter(dims.patterns)
    out = []
    for x in flat:
        if isinstance(x, torch.Tensor):
            pattern = next(patterns, None)
            x = make(x, x.shape if pattern is None else [sizes[d] if isinstance(d, str) else d for d in pattern])
        out.append(x)
    a, kw = tree_unflatten(out, spec)
    return a, kw


#: ops whose output holds the positions of their first operand, moved by an added number
_SAME_VALUES = (torch.ops.aten.add, torch.ops.aten._to_copy, torch.ops.aten.clone, torch.ops.aten.contiguous)


class Lookups(DispatchMode):
    """Table lookups at positions made from a size: ``arange`` up to a letter's expression (a
    position's index, ``arange(past + S)``), read, through any view of it, as the indices of an
    ``embedding`` with N rows. A lookup past N raises in a real run, and no shape records it: the
    condition ``end <= N`` is added to the domain here (GPT-2's 1,024 positions)."""

    def __init__(self, symbols: Symbols) -> None:
        super().__init__()
        self.symbols = symbols
        self._ends: dict[int, Any] = {}  # storage -> the arange's end
        self.conditions: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        from fxcost.pytorch.memory import storage_key

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = getattr(func, "overloadpacket", None)
        if packet is torch.ops.aten.arange and isinstance(out, torch.Tensor):
            end = kwargs.get("end", args[1] if len(args) > 1 and not isinstance(args[1], torch.dtype) else args[0] if args else None)
            if isinstance(end, torch.SymInt):
                self._ends[storage_key(out) or 0] = end
        elif packet in _SAME_VALUES and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            end = self._ends.get(storage_key(args[0]) or 0)
            if end is not None:  # a copy keeps the positions; adding an offset (past + arange(S)) moves them
                offset = args[1] if packet is torch.ops.aten.add and len(args) > 1 else 0
                if isinstance(offset, (int, torch.SymInt)) and kwargs.get("alpha", 1) == 1:
                    self._ends[storage_key(out) or 0] = end + offset
        elif packet is torch.ops.aten.embedding and len(args) >= 2 and isinstance(args[1], torch.Tensor):
            end = self._ends.get(storage_key(args[1]) or 0)
            rows = args[0].shape[0]
            if end is not None and isinstance(rows, int):
                self.conditions.append(str(sympy.Le(self.symbols.plain(end.node.expr), rows)))
        return out
