"""The ``fxcost`` command: parses arguments, calls the library, maps errors to exit codes.

Each subcommand is one module of this package (``fxcost/cli/analyze.py``...) defining ``NAME``,
``ORDER`` (its place in ``--help``), ``SUMMARY``, ``DESCRIPTION``, ``EPILOG`` (or an ``epilog()``
computed when help is shown), ``add_arguments(parser)`` and ``run(args) -> int``; optionally
``internal_error(args) -> int``. Modules are found by listing the package: a new command is a new
file.

Exit codes: 0 success; 2 bad input (a spec that does not load, a malformed or unfitting
``--input``, a model fxcost cannot trace); 1 an internal error (a bug: please report it), except
for ``review`` and ``crosscheck``, where 1 means over budget or the routes disagree and an
internal error is 3; 130 interrupted (SIGINT), 143 terminated (SIGTERM). Every failure prints one
line on stderr (and a ``try:`` line), and leaves no output file, whole or half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, NoReturn

from fxcost.cli.analyze import EPILOG as EXAMPLES


def commands() -> list[ModuleType]:
    """The subcommand modules of this package, in ``ORDER``."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "run") and hasattr(module, "NAME"):
            found.append(module)
    return sorted(found, key=lambda m: m.ORDER)


class _BadArguments(Exception):
    """The command line does not parse: :func:`main` says so in one line and what to try (exit 2)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.message = prog, message


class _Parser(argparse.ArgumentParser):
    """fxcost's parsers: an error is one line and a ``try:`` (not argparse's usage wall); a
    subcommand's epilog may be computed when help is shown (``epilog()``)."""

    epilog_of: Any = None

    def error(self, message: str) -> NoReturn:
        raise _BadArguments(self.prog, message)

    def format_help(self) -> str:
        if self.epilog_of is not None:
            self.epilog = self.epilog_of()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    from fxcost import __version__

    found = commands()
    parser = _Parser(
        prog="fxcost",
        description="Static cost analysis of PyTorch models: params, MACs, FLOPs and activation "
        "memory per layer, on fake tensors (no weights, no GPU, no real compute).",
        epilog=EXAMPLES + "\nmore: " + ", ".join(f"fxcost {m.NAME} --help" for m in found if m.NAME != "analyze") + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fxcost {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for m in found:
        p = sub.add_parser(m.NAME, help=m.SUMMARY, description=m.DESCRIPTION, epilog=getattr(m, "EPILOG", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.epilog_of = getattr(m, "epilog", None)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
        m.add_arguments(p)
        p.set_defaults(module=m)
    return parser


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """The command on ``argv``; its exit code. ``own_process``: the ``fxcost`` command's own
    process (:func:`entry`), which nothing else in it compiles."""
    parser = build_parser()
    args = _parsed(parser, argv)
    if args is None:
        return 2
    from fxcost.cli import options
    from fxcost.errors import FxcostError

    module = args.module
    try:
        if own_process:
            _own_process()
        # the model's code may print: its output goes to stderr, so that stdout holds fxcost's alone
        with options.results_to(sys.stdout), contextlib.redirect_stdout(sys.stderr), _terminated_raises():
            return int(module.run(args))
    except FxcostError as e:
        if args.debug:
            traceback.print_exc()
        print(f"fxcost: error: {options.printable(str(e))}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse is done: only the model's own code (a spec, a forward) exits
        print(f"fxcost: error: the model's code called sys.exit({e.code!r}) while fxcost was loading or analyzing it: "
              "no analysis completed\n  try: keep the exit out of the module's top level and forward "
              "(an `if __name__ == \"__main__\":` guard keeps a script's own run out of imports)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxcost: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("fxcost: terminated", file=sys.stderr)
        return 143
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        print(
            f"fxcost: internal error: {type(e).__name__}: {options.printable(str(e))}\n  this is a bug in fxcost; rerun "
            "with --debug for the traceback and report it with the model",
            file=sys.stderr,
        )
        return int(module.internal_error(args)) if hasattr(module, "internal_error") else 1


def entry() -> None:
    """The ``fxcost`` command and ``python -m fxcost``: :func:`main`, then exit at once. Its files
    are written and closed by then; the exit handlers run and the streams are flushed, but the
    interpreter's teardown, which frees every module of torch one by one (a second here, a
    quarter of a small analysis), is skipped. Signals: :mod:`fxcost.__main__`."""
    import atexit
    import os

    try:
        code = main(own_process=True)
    except KeyboardInterrupt:
        code = _said("fxcost: interrupted", 130)
    except Terminated:
        code = _said("fxcost: terminated", 143)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | None:
    """The parsed command line, or None once a line has said why it does not parse (or the help
    has been shown for want of a command)."""
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return None
        return args
    except _BadArguments as e:
        from fxcost.errors import printable

        print(f"fxcost: error: {printable(e.message)}\n  try: `{e.prog} --help` lists every option", file=sys.stderr)
        return None


def _own_process() -> None:
    """The command's process, before its work: spared Dynamo (importing torch meanwhile: a signal
    until here ends the process at once, :mod:`fxcost.__main__`), then Ctrl-C raises where the
    work is, so that what it was writing is removed."""
    from fxcost.cli.options import without_dynamo

    without_dynamo()
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _said(line: str, code: int) -> int:
    with contextlib.suppress(Exception):
        print(line, file=sys.stderr)
    return code


class Terminated(BaseException):
    """SIGTERM, raised where the work is so that its clean-up runs (no staging file is left)."""


@contextlib.contextmanager
def _terminated_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    from fxcost.__main__ import run

    run()
