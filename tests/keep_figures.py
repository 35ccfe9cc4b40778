"""Prove that a change keeps every figure: dump the JSON of every example and test-zoo model at
an old commit and at the working tree, and compare them.

    python tests/keep_figures.py --base 278824b          # dump both, compare, exit 1 on a difference
    python tests/keep_figures.py --dump DIR               # only dump the working tree's figures
    python tests/keep_figures.py --base REV --figures     # a contract change: numbers must stay, say what else moved

What is dumped, for each model of examples/zoo.py (ZOO and, with transformers, HF_ZOO) and
tests/zoo.py (CASES): the report's JSON (``fxcost analyze -f json``) under both conventions
(fxcost, torchsummary), rolled up to depth 1 and 2 and grouped by type; for the small test-zoo
models also with each tracer (symbolic, export, eager); and the ONNX route's JSON for a few models
exported once (by the working tree's torch.onnx) and then counted by both sides. Each side runs
in its own process with its own checkout first on ``sys.path``, its own ``examples/`` and
``tests/zoo.py``: the base commit is checked out in a temporary git worktree.

The comparison is of bytes: a figure that is equal but printed differently counts as changed.
With ``--figures`` (for a change that renames or adds keys on purpose) every number must be equal
wherever both sides have it, and the strings that changed and the keys that came or went are
summarized by path (list indices as ``[]``). Models only one side has are listed, not compared. The golden files (tests/goldens/) are compared
with ``git diff --stat BASE -- tests/goldens``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: models exported to ONNX once and counted by both sides' ONNX route
ONNX_MODELS = ("tiny_cnn", "matmuls", "norm_mlp", "resnet18", "vit_tiny", "lstm_lm")
TRACER_MODELS = ("tiny_cnn", "functional_convs", "tied", "called_twice", "matmuls", "transposed", "norm_mlp", "with_unused")
NEEDS_REAL = {"data_dependent_branch", "root_data_dependent"}


def _analyze_onnx() -> Any:
    """The ONNX analyzer, wherever this checkout keeps it."""
    import fxcost

    if hasattr(fxcost, "analyze_onnx"):
        return fxcost.analyze_onnx
    import importlib

    return importlib.import_module("fxcost.onnx_analyze").analyze_onnx  # where fxcost 0.1 kept it


def _views(report: Any) -> dict[str, Any]:
    return {"layer": report, "depth1": report.by_module(1), "depth2": report.by_module(2), "type": report.by_type()}


def _write(out: Path, key: str, obj: Any) -> None:
    (out / f"{key}.json").write_text(json.dumps(obj.to_dict(), indent=2) + "\n")


def _entries(checkout: Path) -> list[tuple[str, Any, Any, bool]]:
    """``(name, build, inputs, real)`` for every model of the checkout's zoos."""
    import torch

    from examples.zoo import HF_ZOO, ZOO
    from tests.zoo import CASES

    entries = [(e.name, e.build, e.inputs, e.name in NEEDS_REAL) for e in ZOO]
    try:
        import transformers  # noqa: F401

        entries += [(e.name, e.build, e.inputs, False) for e in HF_ZOO]
    except ImportError:
        pass
    entries += [(f"case_{c.id}", c.build, (lambda s=c.shape: ((torch.zeros(s),), {})), False) for c in CASES]
    return entries


def _dump_one(out: Path, key: str, analysis: Any, views: bool) -> None:
    """The report ``analysis()`` makes, in every view (or its error: both sides must fail alike)."""
    try:
        report = analysis()
    except Exception as err:
        (out / f"{key}.error").write_text(f"{type(err).__name__}: {err}\n")
        return
    for view, r in (_views(report) if views else {"": report}).items():
        _write(out, f"{key}.{view}" if view else key, r)


def dump(out: Path, onnx_dir: Path | None, checkout: Path) -> None:
    """``checkout``'s figures: every one, one file per model, convention and view."""
    sys.path.insert(0, str(checkout))  # its fxcost, examples/ and tests/zoo.py
    import torch

    import fxcost

    assert Path(fxcost.__file__).is_relative_to(checkout), f"imported {fxcost.__file__}, not {checkout}'s fxcost"
    out.mkdir(parents=True, exist_ok=True)
    for name, build, inputs, real in _entries(checkout):
        torch.manual_seed(0)
        model = build()
        args, kwargs = inputs()
        for convention in ("fxcost", "torchsummary"):
            _dump_one(out, f"{name}.{convention}", functools.partial(
                fxcost.analyze, model, example_inputs=args, example_kwargs=kwargs, convention=convention, real=real,
                name=name), views=True)
        if name.removeprefix("case_") in TRACER_MODELS:
            for tracer in ("symbolic", "export", "eager"):
                _dump_one(out, f"{name}.tracer-{tracer}", functools.partial(
                    fxcost.analyze, model, example_inputs=args, example_kwargs=kwargs, tracer=tracer, name=name),
                    views=False)
    if onnx_dir is not None:
        analyze_onnx = _analyze_onnx()
        for f in sorted(onnx_dir.glob("*.onnx")):
            for convention in ("fxcost", "torchsummary"):
                _dump_one(out, f"onnx_{f.stem}.{convention}",
                          functools.partial(analyze_onnx, f, convention=convention, name=f.stem), views=True)


def export_onnx_models(out: Path) -> None:
    """Export ONNX_MODELS once, with torch.onnx directly (the same bytes for both sides)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from examples.zoo import ZOO
    from tests.zoo import CASES

    builds = {e.name: (e.build, e.inputs) for e in ZOO}
    builds.update({c.id: (c.build, (lambda s=c.shape: ((torch.zeros(s),), {}))) for c in CASES})
    out.mkdir(parents=True, exist_ok=True)
    for name in ONNX_MODELS:
        build, inputs = builds[name]
        torch.manual_seed(0)
        model = build().eval()
        args, kwargs = inputs()
        torch.onnx.export(model, args, str(out / f"{name}.onnx"), kwargs=kwargs or None, dynamo=True, optimize=False,
                          verbose=False)


def _run_side(checkout: Path, out: Path, onnx_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([sys.executable, __file__, "--dump", str(out), "--onnx-dir", str(onnx_dir), "--checkout", str(checkout)],
                   check=True, env=env, cwd=checkout)


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """``{"layers[3].macs": 123, ...}`` for every leaf of a JSON value."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def _pattern(path: str) -> str:
    """A leaf's path with list indices as ``[]`` and dict keys that are names (module paths) as ``*``."""
    import re

    path = re.sub(r"\[\d+\]", "[]", path)
    for names in ("module_types", "hparams"):
        head, sep, _ = path.partition(f"{names}.")
        if sep:
            return f"{head}{names}.*"
    return path


def compare_figures(a: Path, b: Path) -> int:
    """Every number equal where both sides have it; other differences summarized by path."""
    numbers = 0
    changed_numbers: list[str] = []
    strings: dict[str, set[tuple[str, str]]] = {}
    added: dict[str, int] = {}
    removed: dict[str, int] = {}
    names = sorted({p.name for p in a.iterdir()} & {p.name for p in b.iterdir()})
    for n in names:
        if not n.endswith(".json"):
            continue
        la, lb = _leaves(json.loads((a / n).read_text())), _leaves(json.loads((b / n).read_text()))
        for k in la.keys() & lb.keys():
            x, y = la[k], lb[k]
            if k == "schema_version":  # a version, not a figure: said with the strings
                if x != y:
                    strings.setdefault(k, set()).add((str(x), str(y)))
                continue
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                numbers += 1
                if x != y:
                    changed_numbers.append(f"{n}: {k}: {x} -> {y}")
            elif x != y:
                strings.setdefault(_pattern(k), set()).add((str(x)[:80], str(y)[:80]))
        for k in lb.keys() - la.keys():
            added[_pattern(k)] = added.get(_pattern(k), 0) + 1
        for k in la.keys() - lb.keys():
            removed[_pattern(k)] = removed.get(_pattern(k), 0) + 1
    for line in changed_numbers[:20]:
        print(f"NUMBER CHANGED {line}")
    for k, pairs in sorted(strings.items()):
        print(f"string changed at {k}: " + "; ".join(f"{x!r} -> {y!r}" for x, y in sorted(pairs)[:3])
              + (f" (+{len(pairs) - 3} more)" if len(pairs) > 3 else ""))
    for k, count in sorted(added.items()):
        print(f"key added: {k} (x{count})")
    for k, count in sorted(removed.items()):
        print(f"key removed: {k} (x{count})")
    print(f"{len(names)} files: {numbers} numbers compared, {len(changed_numbers)} changed")
    return 1 if changed_numbers else 0


def compare(a: Path, b: Path) -> int:
    names_a = {p.name for p in a.iterdir()}
    names_b = {p.name for p in b.iterdir()}
    same = changed = 0
    for n in sorted(names_a & names_b):
        ta, tb = (a / n).read_text(), (b / n).read_text()
        if n.startswith("onnx_"):  # the exported file's path is each side's temporary folder
            ta, tb = (t.replace(str(a.parent), "<tmp>") for t in (ta, tb))
        if ta == tb:
            same += 1
            continue
        changed += 1
        la, lb = ta.splitlines(), tb.splitlines()
        first = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), min(len(la), len(lb)))
        print(f"CHANGED {n}: line {first + 1}: {la[first].strip() if first < len(la) else '<end>'!r} -> "
              f"{lb[first].strip() if first < len(lb) else '<end>'!r}")
    for n in sorted(names_a - names_b):
        print(f"only at base: {n}")
    for n in sorted(names_b - names_a):
        print(f"only now: {n}")
    print(f"{same} files byte-identical, {changed} changed, {len(names_a - names_b)} only at base, "
          f"{len(names_b - names_a)} only now")
    return 1 if changed or names_a - names_b else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="the commit to compare the working tree with")
    p.add_argument("--dump", type=Path, help="dump this checkout's figures into DIR")
    p.add_argument("--onnx-dir", type=Path, help="(with --dump) count the .onnx files in this folder too")
    p.add_argument("--checkout", type=Path, default=ROOT, help="(with --dump) the checkout whose fxcost runs")
    p.add_argument("--keep", type=Path, help="keep the dumps in this folder (default: a temporary one)")
    p.add_argument("--figures", action="store_true", help="compare numbers only, summarize the rest (a contract change)")
    args = p.parse_args()
    if args.dump:
        dump(args.dump, args.onnx_dir, args.checkout.resolve())
        return 0
    if not args.base:
        p.error("give --base REV or --dump DIR")
    with tempfile.TemporaryDirectory(prefix="fxcost-figures-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        base_tree = Path(tmp) / "base-tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.base], check=True,
                       capture_output=True)
        try:
            export_onnx_models(work / "onnx")
            _run_side(base_tree, work / "base", work / "onnx")
            _run_side(ROOT, work / "now", work / "onnx")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
        status = (compare_figures if args.figures else compare)(work / "base", work / "now")
        goldens = subprocess.run(["git", "-C", str(ROOT), "diff", "--stat", args.base, "--", "tests/goldens"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        print(f"golden files changed since {args.base}: {goldens or 'none'}")
        return status or (1 if goldens and not args.figures else 0)


if __name__ == "__main__":
    sys.exit(main())
