"""fxcost review, the pre-export gate: budgets (command line and pyproject.toml), growth over an
approved baseline, exit codes 0/1/2, the contributors named, Markdown for a CI job summary."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

import fxcost
from examples.vgg import d2l_vgg11, vgg11, vgg13
from fxcost.cli import main
from fxcost.errors import InputSpecError, SpecError
from fxcost.report.review import parse_budget, parse_growth, pyproject_settings, review
from tests.conftest import ROOT, flop_counter_flops

VGG11 = str(ROOT / "examples/vgg.py") + ":vgg11"
VGG13 = str(ROOT / "examples/vgg.py") + ":vgg13"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params=150M", ("params", 150 * 10**6)),
        ("macs=20G", ("macs", 20 * 10**9)),
        ("flops=1.5T", ("flops", 15 * 10**11)),
        ("params=2500", ("params", 2500)),
        ("params=12.5k", ("params", 12500)),
        ("activation_bytes=1GiB", ("activation_bytes", 2**30)),
        ("activation_bytes=512MB", ("activation_bytes", 512 * 10**6)),
        ("param_bytes=1.5KiB", ("param_bytes", 1536)),  # 1.5 x 1024
    ],
)
def test_budget_amounts(text: str, expected: tuple[str, int]) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["params", "params=", "weights=10M", "params=10Q", "params=1GiB", "activation_bytes=1G", "params=1.0000001k"])
def test_budgets_that_do_not_parse(text: str) -> None:
    with pytest.raises(InputSpecError):
        parse_budget(text)


def test_growth() -> None:
    assert parse_growth("5%") == Fraction(1, 20) == parse_growth("0.05")
    for bad in ("five", "-5%", "5", "1e400%"):  # "5" would be 500%: ambiguous, refused
        with pytest.raises(InputSpecError):
            parse_growth(bad)


def test_review_against_budgets_names_the_largest_layers() -> None:
    report = fxcost.analyze(vgg11(), input_size=(1, 3, 224, 224))
    ok = review(report, {"params": 150 * 10**6})
    assert ok.passed
    over = review(report, {"params": 100 * 10**6, "macs": 10**10})
    assert not over.passed
    [params] = [c for c in over.checks if not c.ok]
    assert params.metric == "params" and params.value == 132_863_336  # torchvision's VGG-11 figure
    # classifier.0: 25,088 x 4,096 weights + 4,096 biases, the largest layer by far
    assert (params.top[0].name, params.top[0].value) == ("classifier.0", 25088 * 4096 + 4096)


def vgg_macs(build: Any) -> int:
    """MACs from PyTorch's FlopCounterMode over a real forward (FLOPs / 2), not from fxcost."""
    return flop_counter_flops(build(), torch.randn(1, 3, 224, 224)) // 2


def test_review_against_a_baseline() -> None:
    old = fxcost.analyze(vgg11(), input_size=(1, 3, 224, 224))
    new = fxcost.analyze(vgg13(), input_size=(1, 3, 224, 224))
    result = review(new, baseline=old, max_growth=Fraction(1, 20))
    by_metric = {c.metric: c for c in result.checks}
    # torchvision: params 133,047,848 vs 132,863,336 (+0.14%, within 5%); MACs 11.31 G vs 7.61 G (+48.6%, over)
    assert by_metric["params"].ok and not by_metric["macs"].ok
    assert by_metric["params"].baseline == 132_863_336 and by_metric["params"].value == 133_047_848
    assert by_metric["macs"].limit == vgg_macs(vgg11) * 21 // 20
    assert by_metric["macs"].value == vgg_macs(vgg13)
    # a limit is inclusive: the exact growth of the largest-growing total passes, a hair less fails
    worst = max(Fraction(c.value, c.baseline) - 1 for c in result.checks if c.baseline)
    assert review(new, baseline=old, max_growth=worst).passed
    assert not review(new, baseline=old, max_growth=worst - Fraction(1, 10**6)).passed


def test_pyproject_budgets(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.fxcost]\nbudgets = {params = "150M", activation_bytes = "1GiB"}\nmax_growth = "10%"\n')
    budgets, growth = pyproject_settings(tmp_path / "pyproject.toml")
    assert budgets == {"params": 150 * 10**6, "activation_bytes": 2**30} and growth == Fraction(1, 10)
    (tmp_path / "bad.toml").write_text("[tool.fxcost\n")
    with pytest.raises(SpecError):
        pyproject_settings(tmp_path / "bad.toml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--budget", "params=150M", "--budget", "macs=20G")
    assert code == 0 and "PASS" in out
    code, out, _ = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--budget", "params=100M")
    assert code == 1 and "OVER" in out and "classifier.0" in out
    code, _, err = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--budget", "params=lots")
    assert code == 2 and "cannot read the budget" in err
    code, _, err = run(capsys, "review", VGG11, "-i", "1x3x224x224")
    assert code == 2 and "nothing to review" in err
    (tmp_path / "broken.json").write_text("{")
    code, _, err = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--baseline", str(tmp_path / "broken.json"))
    assert code == 2 and "not JSON" in err


def test_cli_baseline_markdown_and_pyproject(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    approved = tmp_path / "approved.json"
    assert main(["analyze", VGG11, "-i", "1x3x224x224", "-f", "json", "-o", str(approved)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "review", VGG13, "-i", "1x3x224x224", "--baseline", str(approved), "-f", "markdown")
    assert code == 1
    old, new = vgg_macs(vgg11), vgg_macs(vgg13)  # FlopCounterMode's, not fxcost's
    assert out.startswith("**FAIL: over budget") and f"| baseline +5% | macs | {new:,} | {old * 21 // 20:,} | {old:,} |" in out
    # VGG-13 grows every total by less than 60% over VGG-11 (MACs +48.6%, per torchvision's 11.31 G / 7.61 G)
    code, out, _ = run(capsys, "review", VGG13, "-i", "1x3x224x224", "--baseline", str(approved), "--max-growth", "60%", "-f", "json")
    assert code == 0 and json.loads(out)["review"]["passed"] is True
    (tmp_path / "pyproject.toml").write_text('[tool.fxcost]\nbudgets = {params = "100M"}\n')
    code, out, _ = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--pyproject", str(tmp_path / "pyproject.toml"))
    assert code == 1 and "100,000,000" in out
    code, out, _ = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--pyproject", str(tmp_path / "pyproject.toml"), "--budget", "params=150M")
    assert code == 0  # the command line wins over pyproject.toml


def test_limits_are_inclusive_and_five_contributors_are_named() -> None:
    report = fxcost.analyze(vgg11(), input_size=(1, 3, 224, 224))
    n = sum(p.numel() for p in vgg11().parameters())  # the model's own count
    exact = review(report, {"params": n})
    assert exact.passed  # at the budget is within it
    [check] = review(report, {"params": n - 1}).checks
    assert not check.ok and len(check.top) == 5
    assert review(report, baseline=report, max_growth=Fraction(0)).passed  # no growth at 0%


def test_baselines_that_cannot_be_compared(tmp_path: Path) -> None:
    report = fxcost.analyze(vgg11(), input_size=(1, 3, 224, 224))
    batch8 = fxcost.analyze(vgg11(), input_size=(8, 3, 224, 224))
    with pytest.raises(InputSpecError, match="inputs x 8x3x224x224"):
        review(report, baseline=batch8)
    summary = fxcost.analyze(vgg11(), input_size=(1, 3, 224, 224), convention="torchsummary")
    with pytest.raises(InputSpecError, match="convention 'torchsummary'"):
        review(report, baseline=summary)
    with pytest.raises(InputSpecError, match="not a metric"):
        review(report, {"weights": 1})
    from fxcost.report.review import load_baseline

    sweep = {"schema_version": 1, "sweep": []}
    broken = dict(report.to_dict(), totals={"params": "abc"})
    for i, d in enumerate((sweep, broken, dict(report.to_dict(), totals={}))):
        (tmp_path / f"b{i}.json").write_text(json.dumps(d))
        with pytest.raises(SpecError):
            load_baseline(tmp_path / f"b{i}.json")


def test_pyproject_mistakes(tmp_path: Path) -> None:
    for i, text in enumerate(['[tool.fxcost]\nmax-growth = "5%"\n', '[tool]\nfxcost = "x"\n',
                              '[tool.fxcost]\nbudgets = {weights = "1M"}\n', '[tool.fxcost]\nbudgets = {params = 1.5e8}\n']):
        (tmp_path / f"p{i}.toml").write_text(text)
        with pytest.raises((SpecError, InputSpecError)):
            pyproject_settings(tmp_path / f"p{i}.toml")
    (tmp_path / "ints.toml").write_text("[tool.fxcost]\nbudgets = {params = 150000000}\n")
    assert pyproject_settings(tmp_path / "ints.toml")[0] == {"params": 150_000_000}


def test_cli_review_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--pyproject", str(tmp_path / "nope.toml"), "-b", "params=1G")
    assert code == 2 and "nope.toml" in err
    code, _, err = run(capsys, "review", VGG11, "-i", "1x3x224x224", "-b", "params=1G", "--max-growth", "10%")
    assert code == 2 and "--max-growth needs --baseline" in err
    (tmp_path / "list.json").write_text(json.dumps({"schema_version": 1, "totals": []}))
    code, _, err = run(capsys, "review", VGG11, "-i", "1x3x224x224", "--baseline", str(tmp_path / "list.json"))
    assert code == 2 and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.suffix not in (".json",)]


def test_unsupported_ops_are_named_in_the_review(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "qr.py"
    spec.write_text("import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return torch.linalg.qr(x)[0].abs()\n")
    code, out, _ = run(capsys, "review", f"{spec}:Net", "-i", "2x8", "-b", "flops=1G", "-f", "markdown")
    assert code == 0 and "unsupported op aten::linalg_qr" in out


def test_a_baseline_written_by_fxcost_0_1_still_reviews(tmp_path: Path) -> None:
    # tests/data/report_fxcost_0_1.json is d2l's VGG-11 as fxcost 0.1 wrote it (its rows lack the
    # byte counts 0.2 adds): a review needs only its convention, inputs and totals
    from fxcost.report.review import Baseline, load_baseline

    old = load_baseline(Path(__file__).parent / "data" / "report_fxcost_0_1.json")
    report = fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224), name="d2l_vgg11")
    assert old == Baseline.of(report)  # the same model and input: the same totals, typed alike
    assert review(report, baseline=old, max_growth=Fraction(0)).passed
    with pytest.raises(ValueError, match="schema_version 1"):
        fxcost.Report.from_dict(json.loads((Path(__file__).parent / "data" / "report_fxcost_0_1.json").read_text()))
