"""What the ``fxcost`` command spares a run (docs/architecture.md, "Where the time goes"): it
builds a spec's model on meta where the constructor allows (and says so where it does not), it
never imports torch._dynamo for a model that plain tracing follows, and it exits with its output
whole. Their speed is measured by benchmarks/bench_speed.py, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fxcost.cli import main
from tests.conftest import ROOT

FACTORIES = '''
from pathlib import Path

import torch
from torch import nn


def _built(model):  # where each build put its weights, one line per build, beside this file
    with open(Path(__file__).with_suffix(".log"), "a") as log:
        log.write(model[0].weight.device.type + "\\n")
    return model


def plain():
    return _built(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))


def reads_a_value():
    # a stochastic-depth schedule read as Python floats: needs values, so not on meta
    rates = [float(r) for r in torch.linspace(0, 0.1, 2)]
    return _built(nn.Sequential(nn.Linear(4, 8), nn.Dropout(rates[1]), nn.Linear(8, 2)))
'''


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


def _devices(factories: Path) -> list[str]:
    log = factories.with_suffix(".log")
    return log.read_text().split() if log.exists() else []


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else {}, err


def test_a_spec_is_built_on_meta(factories: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = _run(capsys, "analyze", f"{factories}:plain", "--input", "3x4", "-f", "json")
    assert code == 0 and err == ""
    assert _devices(factories) == ["meta"]
    # 4*8+8 + 8*2+2, by hand; and 3 rows of 4x8 then 8x2 multiply-adds
    assert report["totals"]["params"] == 58 and report["totals"]["macs"] == 3 * (32 + 16)


def test_real_builds_on_the_cpu(factories: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = _run(capsys, "analyze", f"{factories}:plain", "--input", "3x4", "-f", "json", "--real")
    assert code == 0 and _devices(factories) == ["cpu"]
    assert report["totals"]["params"] == 58


def test_a_constructor_that_reads_values_is_built_on_the_cpu_and_says_so(factories: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = _run(capsys, "analyze", f"{factories}:reads_a_value", "--input", "3x4", "-f", "json")
    assert code == 0
    assert "fxcost: note: reads_a_value cannot be built on the meta device" in err and "built on the CPU" in err
    assert _devices(factories) == ["cpu"]  # the meta attempt failed before it built anything
    assert report["totals"]["params"] == 58


def test_the_command_never_imports_dynamo_for_a_traceable_model() -> None:
    # the command as a user runs it; Python's -X importtime lists on stderr every module imported
    cmd = [sys.executable, "-X", "importtime", "-m", "fxcost", "analyze", str(ROOT / "examples/resnet.py") + ":resnet18",
           "--input", "1x3x64x64", "-f", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "torch.fx" in imported  # the list is there
    assert "torch._dynamo" not in imported
    assert json.loads(done.stdout)["totals"]["params"] == 11_689_512  # torchvision's ResNet-18


def test_main_called_in_another_program_leaves_its_torch_as_it_was() -> None:
    # main() may run inside someone's process, which may compile: only the command's own entry
    # point marks torch's meta kernels (fxcost.cli.options.without_dynamo)
    code = ("import gc, sys, types, torch; from fxcost.cli import main\n"
            f"main(['analyze', {str(ROOT / 'examples/alexnet.py')!r} + ':alexnet', '--input', '1x3x224x224', '-f', 'json'])\n"
            "inner = torch._disable_dynamo(lambda: None).__code__\n"
            "cells = [f.__closure__[inner.co_freevars.index('fn')].cell_contents for f in gc.get_objects()\n"
            "         if type(f) is types.FunctionType and f.__code__ is inner]\n"
            "print(len(cells), sum(getattr(fn, '__dynamo_disable', None) is fn for fn in cells), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    wrapped, marked = map(int, done.stderr.strip().splitlines()[-1].split())
    assert wrapped > 100 and marked == 0  # torch's wrapped kernels are there, none marked as their own


def test_the_command_exits_with_its_output_whole(tmp_path: Path) -> None:
    # fxcost's entry exits without the interpreter's teardown: stdout and -o files are complete
    target = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "fxcost", "analyze", str(ROOT / "examples/alexnet.py") + ":alexnet", "-i", "1x3x224x224"]
    piped = subprocess.run([*cmd, "-f", "json"], capture_output=True, text=True, cwd=ROOT, check=False)
    written = subprocess.run([*cmd, "-o", str(target)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert piped.returncode == written.returncode == 0
    assert json.loads(piped.stdout) == json.loads(target.read_text())
    # d2l's AlexNet (lazy layers, 10 classes) on 3 channels, by hand: convs 96*3*121+96, 256*96*25+256,
    # 384*256*9+384, 384*384*9+384, 256*384*9+256; linears 6400*4096+4096, 4096*4096+4096, 4096*10+10
    assert json.loads(piped.stdout)["totals"]["params"] == (34_944 + 614_656 + 885_120 + 1_327_488 + 884_992
                                                            + 26_218_496 + 16_781_312 + 40_970) == 46_787_978
