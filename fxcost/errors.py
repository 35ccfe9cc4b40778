"""fxcost's exceptions. Each carries what a user needs: where, which shapes, what to try.

The CLI maps every :class:`FxcostError` to exit code 2 and prints ``str(error)``; an
:class:`InternalError`, like any other exception, is a bug in fxcost: exit 1, and the message says
so. Library code never prints.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes some libraries put in their messages


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-blank line of an exception's message, without colour codes, at most
    ``limit`` characters (the exception's type name when the message is empty)."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: characters a terminal, an SVG or a CSV reader would act on rather than show: C0 and C1 controls,
#: DEL, and the bidirectional overrides that reorder what is displayed
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_LINES = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def quoted(text: str, limit: int = 40) -> str:
    """A value the user gave, quoted for a message: whole when short, else its start and its
    length (a 5,001-digit number is not echoed back)."""
    text = str(text)
    return repr(text) if len(text) <= limit else f"{text[:limit // 2]!r}... ({len(text):,} characters)"


#: the most digits fxcost reads in one number: no size, budget or count it takes comes near 10^30
MAX_DIGITS = 30


def printable(text: str, lines: bool = True) -> str:
    """``text`` with every control character written as its escape (``\\x1b``, ``\\u202e``): names
    are data, and a module or ONNX node name must not drive the terminal or break a file. With
    ``lines=False`` newlines and tabs are escaped too (a name in a table cell)."""
    pattern = _UNPRINTABLE if lines else _UNPRINTABLE_LINES
    return pattern.sub(lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


class FxcostError(Exception):
    """Base class: bad input or a model fxcost cannot analyze as asked. ``source`` is the line of
    the user's code it happened at (``net.py:12, in forward: x = self.c(x)``), when known."""

    def __init__(self, message: str, *, hint: str = "", source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.source = source

    def __str__(self) -> str:
        return self.message + (f"\n  at {self.source}" if self.source else "") + (f"\n  try: {self.hint}" if self.hint else "")


class InternalError(Exception):
    """A bug in fxcost, never bad input: a formula that crashed on the shapes it was given. Not an
    :class:`FxcostError`, so no fallback to another tracer and no retry on other tensors hides it."""


class SpecError(FxcostError):
    """A model spec (``path/file.py:name``, ``package.module:name``) that does not load."""


class InputSpecError(FxcostError):
    """A malformed ``--input``/``--arg`` or input arguments that do not fit together."""


class TraceError(FxcostError):
    """torch.fx could not trace the model."""


class ShapeError(FxcostError):
    """A graph node failed while shapes were propagated: wrong channels, too small, ..."""

    def __init__(
        self,
        message: str,
        *,
        node: str = "",
        module_path: str = "",
        input_shapes: tuple[tuple[int, ...], ...] = (),
        hint: str = "",
        source: str = "",
    ) -> None:
        super().__init__(message, hint=hint, source=source)
        self.node = node
        self.module_path = module_path
        self.input_shapes = input_shapes


class UnsupportedOpError(FxcostError):
    """``strict`` analysis met aten ops with no formula and no reviewed zero-cost reason."""


class OutputError(FxcostError):
    """An output file could not be written."""


class ExportError(FxcostError):
    """``torch.onnx`` could not export the model as asked (an opset it refuses, an op it cannot
    translate, a model that does not run on meta tensors)."""


class OnnxFileError(FxcostError):
    """An ONNX file fxcost cannot analyze: not ONNX, truncated, invalid, or with dimensions that
    no ``--input`` pins."""
