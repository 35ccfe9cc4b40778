"""``fxcost review``: the pre-export gate, a model's totals against budgets and an approved baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from fxcost.cli import options

NAME = "review"
ORDER = 5
SUMMARY = "the pre-export gate: totals against budgets and an approved baseline (exit 1 when over)"
DESCRIPTION = ("Check a model's totals against budgets (--budget, or [tool.fxcost] in pyproject.toml) and against "
               "a previously approved JSON report (--baseline, at most --max-growth larger; same convention and "
               "input shapes, the model may differ). Exit 0 within budget, 1 over budget, 2 for bad input, 3 for "
               "an internal error. -f markdown writes a table ready for a CI job summary.")
EPILOG = """\
examples:
  fxcost review examples/vgg.py:vgg19 --input 1x3x224x224 --budget params=150M --budget macs=20G
      exit 0: within budget
  fxcost analyze examples/vgg.py:vgg11 --input 1x3x224x224 -f json -o approved.json
  fxcost review examples/vgg.py:vgg13 --input 1x3x224x224 --baseline approved.json --max-growth 5% -f markdown
      exit 1: MACs grew 49% over the approved report; a Markdown table for the job summary
pyproject.toml:
  [tool.fxcost]
  budgets = {params = "150M", macs = "20G", activation_bytes = "1GiB"}
  max_growth = "5%"
"""


def internal_error(args: argparse.Namespace) -> int:
    """1 means "over budget": an internal error is 3."""
    return 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_analysis(p)
    options.add_output(p)
    g = p.add_argument_group("the gate")
    g.add_argument("--budget", "-b", action="append", default=[], metavar="METRIC=AMOUNT",
                   help="a limit on a total: params=150M, macs=20G, flops=40G, activation_bytes=1GiB (repeatable; "
                   "k/M/G/T are powers of 1000, KiB/MiB/GiB powers of 1024)")
    g.add_argument("--baseline", metavar="REPORT.json", help="an approved report (fxcost analyze -f json) to compare with")
    g.add_argument("--max-growth", metavar="PCT", help="how much a total may grow over the baseline (default 5%%)")
    g.add_argument("--pyproject", metavar="FILE", default=None,
                   help="where [tool.fxcost] budgets and max_growth are read from (default: ./pyproject.toml when it exists)")


def run(args: argparse.Namespace) -> int:
    from fxcost.errors import InputSpecError
    from fxcost.report.review import load_baseline, parse_budget, parse_growth, pyproject_settings, review

    options.check_output(args.output, args)
    given = args.pyproject is not None  # the default ./pyproject.toml may be absent; a named one may not
    path = Path(args.pyproject or "pyproject.toml")
    budgets, growth = pyproject_settings(path) if given or path.is_file() else ({}, None)
    budgets.update(dict(parse_budget(b) for b in args.budget))  # the command line wins
    if args.max_growth is not None:
        if not args.baseline:
            raise InputSpecError("--max-growth needs --baseline", hint="give the approved report: --baseline approved.json")
        growth = parse_growth(args.max_growth)
    baseline = load_baseline(args.baseline) if args.baseline else None
    if not budgets and baseline is None:
        raise InputSpecError("nothing to review against", hint="give --budget params=150M, --baseline approved.json, or [tool.fxcost] budgets in pyproject.toml")
    result = review(options.one_report(args, "review"), budgets, baseline, growth)
    options.emit(result, args)
    return 0 if result.passed else 1
