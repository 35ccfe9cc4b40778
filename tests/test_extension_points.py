"""docs/architecture.md's "To add ..." table, done: each extension is an edit of the one file the
table names, made in a copy of the package, and it works from there in a fresh process. If a new
kind of thing needed a second file, the copy would not know it and the check would fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the checks' VGG-11 has torchvision's published parameter count, 132,863,336 (its model card)


def _before(anchor: str, text: str) -> tuple[str, str]:
    """An edit that puts ``text`` just before ``anchor``."""
    return anchor, text + anchor


# (the file, its edits: (a text that stands once in it, what replaces it; a new file: (None, its text)),
#  a check run in the copy)
CASES: dict[str, tuple[str, list[tuple[str | None, str]], str]] = {
    "an aten formula": (
        "pytorch/aten.py", [_before("# the route's table is written: from here on", '''
@_reg.formula("aten::special_bessel_j0")
def _bessel_j0(x: Any, *, out: Any) -> Cost:
    """[*] = special_bessel_j0([*]); 20 FLOPs an element (a test's convention, by hand)"""
    return Cost(0, 20 * _numel(x))

''')],
        '''
import torch, fxcost
class M(torch.nn.Module):
    def forward(self, x):
        return torch.special.bessel_j0(x)
r = fxcost.analyze(M(), input_size=(2, 3))
assert r.total().flops == 20 * 2 * 3 and not r.unsupported, (r.total(), r.unsupported)
''',
    ),
    "an ONNX op": (
        "onnx/formulas.py", [_before("ONNX_REGISTRY.freeze()", '''
@_reg.formula(*_onnx("Det"))
def _onnx_det(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*] = Det([*, n, n]); LU: n^3 / 3 multiply-adds a matrix (a test's convention, by hand)"""
    n = x[-1]
    return Cost(prod(x[:-2]) * n**3 // 3, 2 * prod(x[:-2]) * n**3 // 3)

''')],
        '''
import onnx, fxcost, sys
from onnx import helper, TensorProto
g = helper.make_graph([helper.make_node("Det", ["x"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6, 6])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), sys.argv[1] + "/det.onnx")
r = fxcost.analyze_onnx(sys.argv[1] + "/det.onnx")
assert r.total().macs == 4 * 6**3 // 3 and not r.unsupported, (r.total(), r.unsupported)
''',
    ),
    "a convention": (
        "counting/conventions.py", [_before("\n    )\n}", '''
        Convention(
            name="per_sample_fp16",
            description="a test's convention: fxcost's, per sample, 2 bytes an element",
            per_sample=True,
            bytes_per_element=2,
        ),''')],
        '''
import fxcost
from fxcost.cli import main
r = fxcost.analyze(__import__("torch").nn.Linear(8, 4), input_size=(5, 8), convention="per_sample_fp16")
assert r.convention == "per_sample_fp16" and r.total().activation_bytes == 2 * (8 + 4), r.total()
assert main(["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--convention", "per_sample_fp16"]) == 0
''',
    ),
    "an output format": (
        "exporters/__init__.py", [
            ('"latex", "html")', '"latex", "html", "totals")'),
            _before("def render(", '''def to_totals(obj: Any) -> str:
    """The totals alone, one metric a line (a test's format)."""
    return "".join(f"{k} {v}\\n" for k, v in obj.total().to_dict(obj.metrics()).items())


'''),
            _before("    raise ValueError(f\"unknown format", '''    if fmt == "totals":
        return to_totals(obj)
'''),
        ],
        '''
import contextlib, io
from fxcost.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "-f", "totals"]) == 0
assert "params 132863336" in out.getvalue(), out.getvalue()
''',
    ),
    "a subcommand": (
        "cli/hello.py", [(None, '''"""``fxcost hello``: a test's subcommand."""

import argparse

NAME = "hello"
ORDER = 99
SUMMARY = "say how many params a model has"
DESCRIPTION = "Analyze the model and print its params."
EPILOG = ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec")
    p.add_argument("--input", required=True)


def run(args: argparse.Namespace) -> int:
    import fxcost
    from fxcost.cli import options
    from fxcost.loading import load_model

    model, _ = load_model(args.spec, meta=True)
    shape = tuple(int(d) for d in args.input.split("x"))
    print("params", fxcost.analyze(model, input_size=shape).total().params, file=options.results())
    return 0
''')],
        '''
import contextlib, io
from fxcost.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["hello", "examples/vgg.py:vgg11", "--input", "1x3x32x32"]) == 0
assert "params 132863336" in out.getvalue(), out.getvalue()
''',
    ),
    "a metric that adds up": (
        "report/records.py", [_before("    #: bytes the forward's ops read and wrote", '''    #: a test's metric: rows that report it carry it, every other row 0
    comm_bytes: int = 0
''')],
        '''
import json, fxcost
from fxcost.report.review import review
r = fxcost.analyze(__import__("torch").nn.Linear(8, 4), input_size=(5, 8))
d = r.to_dict()
assert d["totals"]["comm_bytes"] == 0 and all(row["comm_bytes"] == 0 for row in d["layers"])
assert fxcost.Report.from_dict(json.loads(json.dumps(d))) == r
assert r.by_module(1).total() == r.total() and review(r, budgets={"comm_bytes": 0}).passed
for part in [d["totals"], *d["layers"]]:
    del part["comm_bytes"]  # a report written before the metric existed
assert fxcost.Report.from_dict(d).total().comm_bytes == 0
''',
    ),
}


def _edited(copy: Path, file: str, edits: list[tuple[str | None, str]]) -> None:
    path = copy / "fxcost" / file
    for anchor, addition in edits:
        if anchor is None:
            assert not path.exists(), f"{file} is meant to be new"
            path.write_text(addition)
            continue
        text = path.read_text()
        assert text.count(anchor) == 1, f"{file}: {anchor!r} must stand once"
        path.write_text(text.replace(anchor, addition))


def _changed(copy: Path) -> list[str]:
    theirs, ours = copy / "fxcost", ROOT / "fxcost"
    files = {p.relative_to(theirs) for p in theirs.rglob("*.py")} | {p.relative_to(ours) for p in ours.rglob("*.py")}
    return sorted(str(f) for f in files
                  if not (theirs / f).exists() or not (ours / f).exists() or (theirs / f).read_bytes() != (ours / f).read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("what", CASES)
def test_one_file_is_enough(what: str, tmp_path: Path) -> None:
    file, edits, check = CASES[what]
    shutil.copytree(ROOT / "fxcost", tmp_path / "fxcost", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    _edited(tmp_path, file, edits)
    assert _changed(tmp_path) == [file]
    script = f"import fxcost, sys\nassert fxcost.__file__.startswith({str(tmp_path)!r}), fxcost.__file__\n{check}\nprint('OK')\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-3000:]
