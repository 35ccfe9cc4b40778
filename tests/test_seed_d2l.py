"""The seed's d2l exercises (shared/seeds/004_*.txt): VGG-11 vs AlexNet, torchsummary's block,
the depth-limited view (Q2) and the input-size sweep (Q4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcost
from examples.alexnet import alexnet
from examples.vgg import D2LVGG, d2l_vgg11

INPUT = (1, 3, 224, 224)


def by_type(report: fxcost.Report, metric: str) -> dict[str, int]:
    return {r.type: getattr(r, metric) for r in report.by_type().layers}


@pytest.fixture(scope="module")
def vgg() -> fxcost.Report:
    return fxcost.analyze(d2l_vgg11(), input_size=INPUT)


@pytest.fixture(scope="module")
def alex() -> fxcost.Report:
    return fxcost.analyze(alexnet(), input_size=INPUT)


def test_d2l_vgg11_figures(vgg: fxcost.Report) -> None:
    params, macs = by_type(vgg, "params"), by_type(vgg, "macs")
    assert params["Conv2d"] == 9_220_480  # seed: stat_params, conv
    assert params["Linear"] == 119_586_826  # seed: stat_params, 'lr'
    assert vgg.total().params == 128_807_306  # seed: torchsummary's "Total params"
    assert macs["Conv2d"] == 7_485_456_384  # seed: stat_comp, conv
    # fc MACs are in*out per layer, not the param counts the seed's "fc FLOPs" row repeats
    assert macs["Linear"] == 25088 * 4096 + 4096 * 4096 + 4096 * 10 == 119_578_624


def test_d2l_figures_against_the_materialized_model() -> None:
    """The same split from the model itself: materialize the lazy layers with one real forward
    and count each type's parameters."""
    model = d2l_vgg11()
    model(torch.zeros(INPUT))
    conv = sum(p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    linear = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    report = by_type(fxcost.analyze(d2l_vgg11(), input_size=INPUT), "params")
    assert (report["Conv2d"], report["Linear"]) == (conv, linear)


def test_torchsummary_convention(vgg: fxcost.Report) -> None:
    """The seed's torchsummary printout for d2l VGG-11 on 1x3x224x224."""
    ts = fxcost.analyze(d2l_vgg11(), input_size=INPUT, convention="torchsummary")
    mib = {k: f"{v / 1024**2:.2f}" for k, v in ts.memory.to_dict().items()}
    assert mib == {
        "input_bytes": "0.57",
        "forward_backward_bytes": "125.37",
        "params_bytes": "491.36",
        "total_bytes": "617.30",
    }
    # torchsummary counts each leaf module's output, in place or not: more than fxcost, which
    # counts the ReLUs (not in place in d2l's VGG) but not the flatten view or the eval dropouts
    assert ts.total().activation_elements > vgg.total().activation_elements - 150_528


def test_d2l_alexnet_figures(alex: fxcost.Report) -> None:
    params, macs = by_type(alex, "params"), by_type(alex, "macs")
    assert params["Conv2d"] == 3_747_200
    assert params["Linear"] == 43_040_778
    assert macs["Conv2d"] == 962_858_112
    assert macs["Linear"] == 6400 * 4096 + 4096 * 4096 + 4096 * 10 == 43_032_576


def test_compare_ratios(vgg: fxcost.Report, alex: fxcost.Report) -> None:
    rows = {(r.metric, r.group): r for r in fxcost.compare(vgg, alex).rows}
    assert f"{rows['params', 'Conv2d'].ratio:.2f}" == "2.46"
    # 119,586,826 / 43,040,778 = 2.7785: 2.78 rounded; the seed truncates it to 2.77
    assert f"{rows['params', 'Linear'].ratio:.2f}" == "2.78"
    assert f"{rows['macs', 'Conv2d'].ratio:.2f}" == "7.77"
    assert (rows["macs", "Linear"].a, rows["macs", "Linear"].b) == (119_578_624, 43_032_576)
    assert rows["params", "all"].a == vgg.total().params


def test_q2_depth_limited_view(vgg: fxcost.Report) -> None:
    """Seed Q2: a depth-limited view shows 8 blocks with MACs (5 conv blocks + 3 linear layers)
    where the network has 11 layers (8 conv + 3 linear)."""
    blocks = vgg.by_module(2)
    with_macs = [r for r in blocks.layers if r.macs > 0]
    assert [r.name for r in with_macs] == ["net.0", "net.1", "net.2", "net.3", "net.4", "net.6", "net.9", "net.12"]
    assert [r.type for r in with_macs[:5]] == ["Sequential"] * 5
    layers = [r for r in vgg.layers if r.type in ("Conv2d", "Linear")]
    assert len(layers) == 11


def test_q4_input_sweep() -> None:
    """Seed Q4: the seed's smaller network, VGG(arch=((3, 128), (3, 256))), on 28, 56 and 84
    pixels. Two 2x2 pools leave (s/4)^2 positions of 256 channels for the first LazyLinear, so
    its parameters grow with the input; conv params stay and conv MACs grow with the pixel count."""
    sizes = [28, 56, 84]
    sw = fxcost.sweep(D2LVGG(arch=((3, 128), (3, 256)), num_classes=10), [(1, 3, s, s) for s in sizes])
    conv_params = {by_type(r, "params")["Conv2d"] for r in sw.reports}
    assert conv_params == {(3 * 9 * 128 + 128) + 2 * (128 * 9 * 128 + 128) + (128 * 9 * 256 + 256) + 2 * (256 * 9 * 256 + 256)}
    for s, r in zip(sizes, sw.reports, strict=True):
        fc1 = next(row for row in r.layers if row.name == "net.3")
        assert fc1.params == 256 * (s // 4) ** 2 * 4096 + 4096
    conv_macs = [by_type(r, "macs")["Conv2d"] for r in sw.reports]
    assert conv_macs[1] == 4 * conv_macs[0] and conv_macs[2] == 9 * conv_macs[0]


def test_too_small_input_names_the_layer() -> None:
    """Five 2x2 pools on 28 pixels: 28 -> 14 -> 7 -> 3 -> 1 -> the fifth pool has nothing left."""
    with pytest.raises(fxcost.ShapeError) as e:
        fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 28, 28))
    msg = str(e.value)
    assert "net.4.4" in msg and "MaxPool2d" in msg and "1x512x1x1" in msg
    assert "larger --input" in msg
