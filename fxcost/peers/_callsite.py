"""How a torch function was called, read off the caller's frame: what a tool that patches names sees.

ptflops, calflops and DeepSpeed's profiler replace attributes (``F.gelu``, ``torch.matmul``,
``Tensor.add``) by counting wrappers. A :class:`torch.overrides.TorchFunctionMode` is handed the
function object instead, whatever the spelling of the call, so two questions decide whether the
patch would have seen a call:

* was it an operator? ``x + y`` goes to the C slot ``Tensor.__add__``, which no patch replaces,
  and a mode is handed ``Tensor.add`` for it just as for ``x.add(y)``;
* was the callable looked up, at the time of the call, through the name the tool patched? A
  function object kept from before the patch (transformers' ``GELUActivation.act = F.gelu``,
  ``from torch.nn.functional import gelu``) calls the original.

Both are answered from the caller's frame at its current instruction: the source expression of
that instruction, parsed, and where the source is not known, the instruction itself. Nothing here
patches torch or keeps state beyond a :class:`CallSites` reader's own cache.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import linecache
import textwrap
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

import torch
import torch.nn.functional as F

#: where the tools patch, by the prefix their tables spell a name with (``F.gelu``): the owner of
#: the replaced attribute, and the globals in which a bare name sees the replacement (None: a class)
OWNERS: dict[str, tuple[Any, dict[str, Any] | None]] = {
    "F": (F, vars(F)), "torch": (torch, vars(torch)), "Tensor": (torch.Tensor, None),
}
#: the instructions of ``x + y``, ``x * y``, ``x @ y`` and their in-place forms (one BINARY_OP since 3.11)
_BINARY_OPCODES = frozenset(dis.opmap[n] for n in (
    "BINARY_OP", "BINARY_ADD", "BINARY_MULTIPLY", "BINARY_MATRIX_MULTIPLY",
    "INPLACE_ADD", "INPLACE_MULTIPLY", "INPLACE_MATRIX_MULTIPLY") if n in dis.opmap)
_OVERRIDES_FILE = torch.overrides.__file__


def _codes_of(func: Any) -> set[CodeType]:
    """The code objects a call of ``func`` runs before it reaches the mode (its own, and for a
    ``boolean_dispatch`` wrapper such as F.max_pool2d the two functions it chooses from)."""
    codes = {func.__code__} if hasattr(func, "__code__") else set()
    for cell in getattr(func, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if hasattr(inner, "__code__"):
            codes.add(inner.__code__)
    return codes


def caller(func: Any, frame: FrameType | None) -> FrameType | None:
    """The frame of the Python code that called ``func``: ``frame`` (the one just outside
    ``__torch_function__``) less torch.overrides' dispatch and ``func``'s own frames (a Python
    function of torch.nn.functional dispatches from its body; a C function has neither)."""
    codes = _codes_of(func)
    while frame is not None and (frame.f_code.co_filename == _OVERRIDES_FILE or frame.f_code in codes):
        frame = frame.f_back
    return frame


def expression_at(code: CodeType, lasti: int) -> ast.expr | None:
    """The source expression of the instruction at byte ``lasti`` of ``code`` (a call, an operator),
    parsed; None where the source or the position is not known, or is no expression (``x += y``)."""
    try:
        lineno, end_lineno, col, end_col = list(code.co_positions())[lasti // 2]
    except (IndexError, ValueError):
        return None
    lines = linecache.getlines(code.co_filename)
    if lineno is None or end_lineno is None or col is None or end_col is None or not lines or end_lineno > len(lines):
        return None
    chunk = [line.encode() for line in lines[lineno - 1:end_lineno]]  # positions count UTF-8 bytes
    chunk[-1] = chunk[-1][:end_col]
    chunk[0] = chunk[0][col:]
    try:
        return ast.parse(b"(" + b"".join(chunk) + b"\n)", mode="eval").body
    except (SyntaxError, ValueError):
        return None


def _resolve(node: ast.expr, frame: FrameType) -> Any:
    """The value of a ``name.attr.attr`` chain in ``frame`` (nothing is called but attribute
    lookups); LookupError for anything else."""
    if isinstance(node, ast.Name):
        for space in (frame.f_locals, frame.f_globals, vars(builtins)):
            if node.id in space:
                return space[node.id]
        raise LookupError(node.id)
    if isinstance(node, ast.Attribute):
        try:
            return getattr(_resolve(node.value, frame), node.attr)
        except AttributeError as e:
            raise LookupError(node.attr) from e
    raise LookupError(type(node).__name__)


def _assigned_in(frame: FrameType, name: str) -> list[ast.expr] | None:
    """The values the running function binds to its local ``name`` (``g = F.relu``), each an
    ``x = value`` of its own body: bound while it runs, so while the tool's patch is on. None where
    ``name`` is a parameter or a cell, is bound any other way (a loop, ``with``, an import, a tuple
    target), or the function's source is not known."""
    code = frame.f_code
    params = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & inspect.CO_VARARGS) \
        + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    if name not in code.co_varnames[params:]:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError):
        return None
    scope = tree.body[0] if tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if scope is None or scope.name != code.co_name:
        return None
    values: list[ast.expr] = []
    todo: list[ast.AST] = list(scope.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return None  # ``def name(...)`` binds it too
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # another scope
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if not all(isinstance(t, ast.Name) for t in node.targets):
                return None
            values.append(node.value)
            todo.append(node.value)  # its targets are the binding just read
            continue
        if (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, (ast.Store, ast.Del))
              or isinstance(node, (ast.Import, ast.ImportFrom))
              and any((a.asname or a.name.split(".")[0]) == name for a in node.names)
              or isinstance(node, ast.ExceptHandler) and node.name == name):
            return None  # a binding other than ``name = value``
        todo.extend(ast.iter_child_nodes(node))
    return values or None


@dataclass(frozen=True)
class CallSite:
    """One call as its caller made it: the caller's frame (None: none found) and the parsed source
    expression of its current instruction (None: not known)."""

    frame: FrameType | None
    expression: ast.expr | None

    def by_operator(self) -> bool:
        """``x + y`` (``x * y``, ``x @ y``, ``x += y``) rather than ``x.add(y)``: the source says so,
        else the caller's instruction."""
        if self.expression is not None:
            return isinstance(self.expression, ast.BinOp)
        return self.frame is not None and self.frame.f_code.co_code[self.frame.f_lasti] in _BINARY_OPCODES

    def through(self, what: str) -> bool:
        """Whether the callable was looked up, at the call, where a tool patched ``what`` (spelled
        with an :data:`OWNERS` prefix: ``F.gelu``, ``torch.add``, ``Tensor.add``): ``F.gelu(x)``,
        ``torch.nn.functional.gelu(x)``, ``x.add(y)``, ``torch.Tensor.add(x, y)``,
        ``getattr(F, "gelu")(x)``, a bare ``interpolate(...)`` inside torch.nn.functional itself.
        A callable kept from before the patch is not: ``self.act = nn.functional.gelu`` then
        ``self.act(x)``, ``ACT2FN["gelu"](x)``, ``from torch.nn.functional import gelu``; nor an
        operator, nor a call made from C (``sum(tensors)``). A local the running function bound
        itself (``g = F.relu`` then ``g(x)``) was looked up during the run: it is judged by the
        value it was bound to. Unknown source: assumed patched."""
        site, frame = self.expression, self.frame
        if not isinstance(site, ast.Call) or frame is None:
            return site is None
        return _looks_up(site.func, what, frame)

    def within(self, func: Any) -> bool:
        """Whether the call is made by the body of the Python function ``func`` itself
        (``F.upsample``, which has no torch-function dispatch, calling ``interpolate``)."""
        return self.frame is not None and self.frame.f_code is getattr(func, "__code__", None)


def _looks_up(callee: ast.expr, what: str, frame: FrameType, locals_seen: frozenset[str] = frozenset()) -> bool:
    """Whether evaluating ``callee`` in ``frame`` now reads ``what`` where the tool patched it
    (``locals_seen``: the locals already followed to their values, so ``g = h; h = g`` ends)."""
    prefix, name = what.split(".", 1)
    owner, namespace = OWNERS[prefix]
    if (isinstance(callee, ast.Call) and isinstance(callee.func, ast.Name) and callee.func.id == "getattr"
            and len(callee.args) >= 2 and isinstance(callee.args[1], ast.Constant) and isinstance(callee.args[1].value, str)):
        callee = ast.Attribute(value=callee.args[0], attr=callee.args[1].value)  # getattr(F, "relu") looks up now
    if isinstance(callee, ast.Name):
        if callee.id in frame.f_locals:
            values = None if callee.id in locals_seen else _assigned_in(frame, callee.id)
            return values is not None and all(_looks_up(v, what, frame, locals_seen | {callee.id}) for v in values)
        return namespace is not None and frame.f_globals is namespace and callee.id == name
    if not isinstance(callee, ast.Attribute) or callee.attr != name:
        return False
    try:
        base = _resolve(callee.value, frame)
    except LookupError:
        return True  # cannot tell (``torch.add(a, b).matmul(c)``): trust the name
    return base is owner or (owner is torch.Tensor and isinstance(base, torch.Tensor))


class CallSites:
    """Reads the call sites of one run; each instruction's source expression is parsed once."""

    def __init__(self) -> None:
        self._expressions: dict[tuple[CodeType, int], ast.expr | None] = {}

    def of(self, func: Any, frame: FrameType | None) -> CallSite:
        """The call of ``func`` that a mode's ``__torch_function__`` was handed, from the frame just
        outside it (``sys._getframe(1)``)."""
        return self.at(caller(func, frame))

    def at(self, frame: FrameType | None) -> CallSite:
        """The call ``frame`` is making at its current instruction."""
        if frame is None:
            return CallSite(None, None)
        key = (frame.f_code, frame.f_lasti)
        if key not in self._expressions:
            self._expressions[key] = expression_at(*key)
        return CallSite(frame, self._expressions[key])

    def outer(self, site: CallSite) -> CallSite:
        """The call of the function whose body makes ``site`` (for :meth:`CallSite.within`)."""
        return self.at(site.frame.f_back if site.frame is not None else None)


__all__ = ["OWNERS", "CallSite", "CallSites", "caller", "expression_at"]
