"""``fxcost explain --vs TOOL`` and ``--convention TOOL``: another tool's count reproduced, set
beside fxcost's, every difference named; the named differences add up to the gap exactly.

The references are not fxcost: each tool itself, installed as a test extra (tests/constraints.txt
pins the versions reproduced), run on the real model the way its README calls it.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
import torch
from torch import nn

import fxcost
from examples.zoo import HF_ZOO, ZOO
from fxcost.cli import main
from fxcost.counting.conventions import TOOL_PRESETS
from fxcost.peers import peer
from fxcost.peers.apply import counted_as, explanation, installed, measured
from tests.conftest import ROOT

#: the four models the issue names, from the zoo
MODELS = ("vgg19", "resnet50", "hf_gpt2", "vit_b_16")
_ENTRIES = {e.name: e for e in [*ZOO, *HF_ZOO]}


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"fxcost.peers.{name}") is not None


@pytest.fixture(scope="module")
def counted() -> dict[str, Any]:
    """Each model built once (real weights, the tools run them), with fxcost's report of it."""
    out = {}
    for name in MODELS:
        e = _ENTRIES[name]
        model = e.build().eval()
        args, kwargs = e.inputs()
        out[name] = (model, args, kwargs, fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("tool_name", TOOL_PRESETS)
def test_named_differences_add_up_to_the_gap(tool_name: str, model_name: str, counted: dict[str, Any]) -> None:
    if not _available(tool_name):
        pytest.skip(f"no reproduction of {tool_name} yet")
    tool = peer(tool_name)
    model, args, kwargs, report = counted[model_name]
    repro = tool.reproduce(model, args, kwargs)
    explained = explanation(report, repro, tool)
    # fxcost's side is fxcost's own report; the tool's side is the reproduction
    assert explained.fxcost_macs == report.total().macs
    assert explained.tool_macs == repro.macs
    # the reasons, each with the MACs it moves, add up to the gap exactly, and so do the layer types
    assert sum(d.diff for d in explained.differences) == repro.macs - report.total().macs
    assert sum(t.diff for t in explained.by_type) == explained.gap
    assert all(d.diff for d in explained.differences)  # a difference of 0 is not a difference
    assert all(d.reason for d in explained.differences)
    # --convention TOOL: the report's totals are the tool's, MACs and params
    as_tool = counted_as(report, repro).total()
    assert (as_tool.macs, as_tool.params) == (repro.macs, repro.params)
    assert as_tool.flops == (2 * repro.macs if repro.flops is None else repro.flops)
    assert as_tool.flops == (2 * repro.macs if repro.flops is None else repro.flops)
    if not installed(tool):
        pytest.skip(f"{tool.package} is not installed: the tool's own figure is not compared")
    explained = measured(explained, tool, model, args, kwargs)
    assert explained.reproduced, explained.measured_note
    assert (explained.measured_macs, explained.measured_params) == (repro.macs, repro.params)


def test_convention_tool_gives_the_tools_totals() -> None:
    e = _ENTRIES["vit_b_16"]
    model = e.build()
    (x,), _ = e.inputs()
    report = fxcost.analyze(model, input_size=tuple(x.shape), convention="flop_counter")
    own = peer("flop_counter").run_tool(model, (x,), {})
    assert report.convention == "flop_counter"
    assert report.total().macs == own.macs  # 16,848,500,736: no attention on the CPU
    assert report.total().flops == own.flops
    mine = fxcost.analyze(model, input_size=tuple(x.shape))
    # 12 blocks x 2 matmuls x 197 tokens x 197 tokens x 768: the attention FlopCounterMode misses on the CPU
    assert mine.total().macs - report.total().macs == 12 * 2 * 197 * 197 * 768
    assert any("flop_counter 2." in n for n in report.trace.notes)


def test_a_tool_preset_refuses_a_training_step() -> None:
    with pytest.raises(fxcost.InputSpecError, match="forward"):
        fxcost.analyze(_ENTRIES["resnet18"].build(),
                       input_size=(1, 3, 32, 32), convention="flop_counter", train=True)


VGG = str(ROOT / "examples/vgg.py") + ":vgg19"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "explain", str(ROOT / "examples/vit.py") + ":vit_b_16", "--input", "1x3x224x224",
                         "--vs", "flop_counter", "-f", "json")
    assert code == 0, err
    x = json.loads(out)["explain"]
    assert x["gap"] == -12 * 2 * 197 * 197 * 768
    assert sum(d["diff"] for d in x["differences"]) == x["gap"]
    assert x["measured"]["matches"] is True  # FlopCounterMode itself, over a real forward


def test_cli_unknown_tool_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "explain", VGG, "--input", "1x3x224x224", "--vs", "torchprofile")
    assert code == 2
    assert "torchprofile" in err and all(t in err for t in TOOL_PRESETS)


def test_cli_unknown_convention_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "analyze", VGG, "--input", "1x3x224x224", "--convention", "flopth")
    assert code == 2
    assert all(t in err for t in ("fxcost", "torchsummary", *TOOL_PRESETS))


def test_cli_tool_not_installed_still_shows_the_reproduction(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import fxcost.peers.apply

    monkeypatch.setattr(fxcost.peers.apply, "installed", lambda tool: False)
    code, out, err = run(capsys, "explain", VGG, "--input", "1x3x224x224", "--vs", "flop_counter")
    assert code == 2
    assert "19,632,062,464" in out  # the reproduction is shown
    assert "is not installed" in err and "pip install torch==" in err


@pytest.mark.parametrize("model_name", ["vit_tiny", "mha_model", "gru_classifier", "unet"])
@pytest.mark.parametrize("tool_name", TOOL_PRESETS)
def test_differences_add_up_at_batch_2(tool_name: str, model_name: str) -> None:
    """Small models at batch 2 (ptflops divides its modules' sum by the batch and truncates once:
    the truncation is a named difference of its own)."""
    e = _ENTRIES[model_name]
    model = e.build()
    args, kwargs = e.inputs()
    report = fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs)
    tool = peer(tool_name)
    repro = tool.reproduce(model, args, kwargs)
    explained = explanation(report, repro, tool)
    assert sum(d.diff for d in explained.differences) == explained.gap == repro.macs - report.total().macs
    as_tool = counted_as(report, repro).total()
    assert (as_tool.macs, as_tool.params) == (repro.macs, repro.params)
    assert as_tool.flops == (2 * repro.macs if repro.flops is None else repro.flops)


def test_cli_explain_refuses_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "explain", VGG, "--input", "1x3x224x224", "--vs", "thop", "--dtype", "float16")
    assert code == 2 and not out
    assert "--dtype" in err


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        lin = nn.Linear(8, 8)
        self.p = nn.Sequential(lin)
        self.q = nn.Sequential(nn.ReLU(), lin)  # the same Linear under a second parent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(self.p(x))


@pytest.mark.parametrize("tool_name", ["thop", "flop_counter", "fvcore"])
def test_a_module_kept_whole_takes_its_insides_charges(tool_name: str) -> None:
    # with body kept whole, fxcost has one row for it; the tools charge body.0: the same 4*8*4 MACs
    # (4 rows x 4 in x 8 out) must meet there, not show as a difference of +128 and -128
    why = fxcost.explain(_Nested(), input_size=(4, 4), vs=tool_name, run=False, leaves=["body"])
    assert why.fxcost_macs == why.tool_macs == 4 * 4 * 8 + 4 * 8 * 2
    assert why.differences == ()


def test_flop_counter_charges_a_shared_module_once_each_call() -> None:
    got = peer("flop_counter").reproduce(_Shared(), (torch.randn(2, 8),), {})
    # the Linear runs twice (in p and in q): 2 x (2 rows x 8 x 8) MACs, both on its first name p.0
    assert [(c.module_path, c.macs) for c in got.charges] == [("p.0", 2 * 2 * 8 * 8)]
    assert fxcost.explain(_Shared(), input_size=(2, 8), vs="flop_counter", run=False).differences == ()


def test_running_the_tool_leaves_the_users_model_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.LazyLinear(3)).train()
    why = fxcost.explain(model, input_size=(2, 4), vs="flop_counter", run=True)
    assert why.reproduced  # FlopCounterMode ran (on a copy)
    assert model.training and isinstance(model[2], nn.LazyLinear)  # still in training mode, still lazy


@pytest.mark.parametrize("tool_name", ["thop", "fvcore"])
def test_a_call_the_tool_cannot_make_is_not_reproduced(tool_name: str) -> None:
    class KeywordOnly(nn.Module):
        def forward(self, x: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
            return x * scale

    with pytest.raises(fxcost.InputSpecError, match="keyword-only parameter 'scale'"):
        peer(tool_name).reproduce(KeywordOnly(), (torch.randn(2),), {"scale": 2.0})


def test_a_tool_preset_refuses_options_it_has_no_counterpart_for() -> None:
    with pytest.raises(fxcost.InputSpecError, match="device"):
        fxcost.analyze(_Nested(), input_size=(4, 4), convention="thop", device="h100")
