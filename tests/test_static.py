"""Static by default: no weights needed, the user's model untouched, real tensors only on request."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcost
from examples.vgg import d2l_vgg11, vgg11
from tests.zoo import FunctionalConvs, TinyCNN


def snapshot(model: nn.Module) -> list[tuple[str, int, str, str, bool]]:
    return [(n, id(t), str(t.device), type(t).__name__, model.training) for n, t in [*model.named_parameters(), *model.named_buffers()]]


def test_model_is_not_modified() -> None:
    model = TinyCNN().train()
    before = snapshot(model)
    weights = model.stem[0].weight.detach().clone()
    fxcost.analyze(model, input_size=(2, 3, 32, 32))
    assert snapshot(model) == before  # same tensors, devices, types, and still in training mode
    assert torch.equal(model.stem[0].weight, weights)
    assert model.stem[1].num_batches_tracked.item() == 0  # no forward ran on it


def test_lazy_model_stays_lazy() -> None:
    model = d2l_vgg11()
    report = fxcost.analyze(model, input_size=(1, 3, 224, 224))
    first = model.net[0][0]
    assert type(first).__name__ == "LazyConv2d" and first.has_uninitialized_params()
    assert len(first._forward_pre_hooks) == 1  # its initialization hook is still there
    assert report.layers[1].type == "Conv2d"
    model(torch.zeros(1, 3, 224, 224))  # and it still materializes when the user runs it
    assert first.weight.shape == (64, 3, 3, 3)


def test_meta_model_analyzes() -> None:
    with torch.device("meta"):
        model = vgg11()
    report = fxcost.analyze(model, input_size=(1, 3, 224, 224))
    with torch.device("cpu"):
        ref = fxcost.analyze(vgg11(), input_size=(1, 3, 224, 224))
    assert report.total() == ref.total()
    assert all(p.device.type == "meta" for p in model.parameters())


def test_huge_meta_model_needs_no_memory() -> None:
    """A 4-billion-parameter stack on meta: no weight bytes exist, and analysis still works
    (its speed is measured by benchmarks/, not asserted here)."""
    with torch.device("meta"):
        model = nn.Sequential(*[nn.Linear(16384, 16384, bias=False) for _ in range(15)])
    report = fxcost.analyze(model, input_size=(8, 16384))
    assert report.total().params == 15 * 16384 * 16384  # 4,026,531,840
    assert report.total().macs == 8 * 15 * 16384 * 16384


def test_real_mode_runs_real_tensors_on_a_copy() -> None:
    model = FunctionalConvs()
    x = torch.randn(2, 8, 10, 10)
    real = fxcost.analyze(model, example_inputs=x, real=True)
    fake = fxcost.analyze(model, example_inputs=x)
    assert (real.mode, fake.mode) == ("real", "meta")
    assert real.total() == fake.total()
    with torch.device("meta"):
        meta_model = nn.Linear(4, 4)
    with pytest.raises(fxcost.InputSpecError, match="meta"):
        fxcost.analyze(meta_model, input_size=(1, 4), real=True)


class MakesCpuTensors(nn.Module):
    """A forward that builds its own CPU tensor: meta tensors cannot mix with it, fake ones can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + torch.ones(4)


def test_falls_back_to_fake_tensors() -> None:
    report = fxcost.analyze(MakesCpuTensors(), input_size=(3, 4))
    assert report.mode == "fake"
    assert report.total().macs == 3 * 4 * 4


def test_example_inputs_kwargs_and_dtypes() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.fc(x) * scale + y

    model = TwoInputs().half()
    report = fxcost.analyze(
        model, example_inputs=torch.empty(5, 6, dtype=torch.float16, device="meta"),
        example_kwargs={"y": torch.zeros(5, 3, dtype=torch.float16)},
    )
    assert [(i.name, i.shape, i.dtype) for i in report.inputs] == [("x", (5, 6), "float16"), ("y", (5, 3), "float16")]
    assert report.total().param_bytes == (6 * 3 + 3) * 2  # float16: 2 bytes each
    assert report.total().activation_bytes == 2 * report.total().activation_elements


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "no inputs"),
        ({"input_size": (1, 0, 4)}, "positive"),
        ({"input_size": "1x4x"}, "malformed input shape"),  # a string is --input's text (docs/sizes.md)
        ({"input_size": (1, 4), "example_inputs": torch.zeros(1, 4)}, "not both"),
        ({"input_size": (1, 4), "convention": "nope"}, "unknown convention"),
    ],
    ids=["none", "zero_dim", "string", "both", "convention"],
)
def test_bad_api_input(kwargs: dict, match: str) -> None:
    with pytest.raises(fxcost.InputSpecError, match=match):
        fxcost.analyze(nn.Linear(4, 2), **kwargs)


def test_wrong_channel_count_names_the_layer() -> None:
    with pytest.raises(fxcost.ShapeError) as e:
        fxcost.analyze(vgg11(), input_size=(1, 1, 64, 64))
    assert "features.0" in str(e.value) and "Conv2d" in str(e.value) and "1x1x64x64" in str(e.value)
    assert "channel" in str(e.value)
