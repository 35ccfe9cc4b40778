"""The CI snippets users copy: the GitHub Actions job (examples/ci/fxcost-review.yml) and the
pre-commit hook (.pre-commit-hooks.yaml) run the commands they say, with the output they say."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from fxcost.cli import main
from tests.conftest import ROOT

yaml = pytest.importorskip("yaml")


def test_the_actions_job_writes_the_review_to_the_job_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    job = yaml.safe_load((ROOT / "examples/ci/fxcost-review.yml").read_text())
    steps = job["jobs"]["fxcost-review"]["steps"]
    line = steps[-1]["run"]
    command, _, target = line.partition(">>")
    assert target.strip() == '"$GITHUB_STEP_SUMMARY"' and command.startswith("fxcost review ")
    monkeypatch.chdir(ROOT)  # the job runs in its checkout: the spec's path is relative to it
    code = main(shlex.split(command)[1:])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("**PASS: within budget  ·  vgg19 (1x3x224x224)")  # Markdown, for the summary
    assert "| budget | params | 143,667,240 | 150,000,000 |" in out
    # torch's CPU build is installed before fxcost, as the README's set-up does
    install = next(s["run"] for s in steps if "run" in s and "pip install" in s["run"])
    assert install.index("torch==2.13.0") < install.index("pip install fxcost")


def test_the_pre_commit_hook_runs_fxcost_review(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "fxcost-review" and hook["pass_filenames"] is False
    assert hook["entry"] == "fxcost review"
    monkeypatch.chdir(ROOT)
    args = ["examples/vgg.py:vgg19", "--input", "1x3x224x224", "--budget", "macs=10G"]  # a user's args, over budget
    code = main([*hook["entry"].split()[1:], *args])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("FAIL: over budget")  # a commit over its budget fails
