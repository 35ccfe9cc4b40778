"""``fxcost.summary``: torchinfo's call answered by fxcost (fxcost/summarize.py). The reference
for params is torchinfo itself, run the way its README runs it, on the real model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcost
from fxcost.errors import InputSpecError


def test_the_same_call_as_torchinfo_gives_torchinfos_params_and_fxcosts_table(capsys: pytest.CaptureFixture[str]) -> None:
    torchinfo = pytest.importorskip("torchinfo")
    from examples.resnet import resnet18

    model = resnet18()
    theirs = torchinfo.summary(model, input_size=(1, 3, 224, 224), depth=2, verbose=0)
    capsys.readouterr()
    view = fxcost.summary(model, input_size=(1, 3, 224, 224), depth=2, col_names=("output_size", "num_params", "mult_adds"))
    out = capsys.readouterr().out
    assert view.total().params == theirs.total_params == 11_689_512
    assert view.total() == fxcost.analyze(model, input_size=(1, 3, 224, 224)).total()
    header = next(line for line in out.splitlines() if "layer" in line and "params" in line)
    assert header.split() == ["layer", "type", "output", "params", "MACs"]
    assert "layer1.0" in out and "layer1.0.conv1" not in out  # rolled up to depth 2
    assert "Total params:" in out and "11,689,512" in out
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model is untouched


def test_default_columns_inputs_as_data_and_forward_keywords(capsys: pytest.CaptureFixture[str]) -> None:
    class Tagged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, ids: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.head(self.embed(ids)) * scale

    view = fxcost.summary(Tagged(), input_size=(2, 5), dtypes=[torch.long], scale=2.0)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "layer" in line and "params" in line)
    assert header.split() == ["layer", "type", "output", "params"]  # torchinfo's default: output_size, num_params
    # by hand: the embedding 100 x 8, the head 8 x 3 + 3; the head's MACs 2 * 5 * 8 * 3
    assert view.total().params == 800 + 27 and view.total().macs == 240
    again = fxcost.summary(Tagged(), input_data=torch.zeros(2, 5, dtype=torch.long), verbose=0)
    assert again.total() == view.total() and capsys.readouterr().out == ""


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"col_names": ("input_size",)}, "no column 'input_size'"),
    ({"col_names": ("bogus",)}, "no column 'bogus'"),
    ({"device": "cuda"}, "device="),
    ({"input_size": None}, "needs input_size or input_data"),
])
def test_what_it_refuses_says_why(kwargs: dict, words: str) -> None:
    call = {"input_size": (1, 4), **kwargs}
    with pytest.raises(InputSpecError) as e:
        fxcost.summary(nn.Linear(4, 2), **call)
    assert words in str(e.value) and e.value.hint
