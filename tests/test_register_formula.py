"""``fxcost.register_formula`` and ``--formulas``: users price their own ops (fxcost/pytorch/aten.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import fxcost
from fxcost.cli import main, options
from fxcost.pytorch import aten


@torch.library.custom_op("fxcostuser::gated", mutates_args=())
def gated(x: torch.Tensor) -> torch.Tensor:
    return x * float(x.mean())  # reads a value: without a formula it cannot be priced data-free


@gated.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gated(x)


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    """Each test starts with no registered formula, and leaves none."""
    aten._DEFAULT[:] = [aten.ATEN]
    options._FORMULAS_READ.clear()
    yield
    aten._DEFAULT[:] = [aten.ATEN]
    options._FORMULAS_READ.clear()


def _per_element(x: torch.Size, *, out: torch.Size) -> fxcost.Cost:
    # our op's own convention, by hand: one multiply per element, a mean's add per element
    return fxcost.Cost(macs=0, flops=2 * out.numel())


def test_a_registered_formula_prices_the_op_in_every_later_analysis() -> None:
    before = fxcost.analyze(Gate(), input_size=(3, 5), tracer="eager")
    assert [u.op for u in before.unsupported] == ["fxcostuser::gated"]
    fxcost.register_formula("fxcostuser::gated", _per_element)
    after = fxcost.analyze(Gate(), input_size=(3, 5), tracer="eager")
    assert after.unsupported == () and after.total().flops == 2 * 15
    [op] = [o for r in after.layers for o in r.ops if o.op == "fxcostuser::gated"]
    assert op.fate == "formula"
    assert fxcost.DEFAULT_REGISTRY.lookup("fxcostuser::gated").fate == "unsupported"  # fxcost's own table is as it was


@pytest.mark.parametrize(("name", "words"), [
    ("fxcostuser::nowhere", "not an operator torch knows"),
    ("gated", "not an operator torch knows"),
    ("fxcostuser::gated.default", "without an overload"),
    ("aten::mm", "already has a fate in fxcost's table"),
])
def test_registration_refuses_what_it_cannot_take(name: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        fxcost.register_formula(name, _per_element)


def test_a_second_formula_for_the_same_op_is_refused() -> None:
    fxcost.register_formula("fxcostuser::gated", _per_element)
    with pytest.raises(ValueError, match="already has a registered formula"):
        fxcost.register_formula("fxcostuser::gated", _per_element)
    with pytest.raises(ValueError, match="must be a function"):
        fxcost.register_formula("fxcostuser::other", 3)  # type: ignore[arg-type]


MODEL = '''
import torch
from torch import nn
from tests.test_register_formula import Gate

def build():
    return Gate()
'''

FORMULAS = '''
import fxcost

@lambda fn: fxcost.register_formula("fxcostuser::gated", fn) or fn
def gated(x, *, out):
    return fxcost.Cost(macs=0, flops=2 * out.numel())
'''


def test_the_command_reads_a_formulas_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "formulas.py").write_text(FORMULAS)
    argv = ["analyze", f"{tmp_path / 'model.py'}:build", "--input", "3x5", "--tracer", "eager", "-f", "json"]
    assert main([*argv, "--formulas", str(tmp_path / "formulas.py")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unsupported"] == [] and report["totals"]["flops"] == 30


@pytest.mark.parametrize(("text", "words"), [
    (None, "no such file"),
    ("import not_a_module_anywhere\n", "ModuleNotFoundError"),
    ('import fxcost\nfxcost.register_formula("fxcostuser::nowhere", lambda *a, out: None)\n', "not an operator torch knows"),
])
def test_a_bad_formulas_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None,
                                          words: str) -> None:
    (tmp_path / "model.py").write_text(MODEL)
    plugin = tmp_path / "plugin.py"
    if text is not None:
        plugin.write_text(text)
    code = main(["analyze", f"{tmp_path / 'model.py'}:build", "--input", "3x5", "--formulas", str(plugin)])
    err = capsys.readouterr().err
    assert code == 2 and "--formulas" in err and words in err
