"""The seed's VGG-19 layer table (shared/seeds/000_*.txt), reproduced by fxcost.

The table follows the VGG paper's network (no AdaptiveAvgPool2d): examples.vgg.vgg19_paper.
Its params column counts weights only. Slips in the seed, fixed here:
- rows 17-20 are labelled Pool5_1..Pool5_4 but are the conv5_x layers (3x3 kernels, 2,359,296
  weights each): named conv5_x below;
- the second table writes "POOL2 56*56*128=401408" after conv3; pool3's output is
  28*28*256 = 200,704, as the first table has it.
"""

from __future__ import annotations

import pytest

import fxcost
from examples.vgg import vgg19, vgg19_paper

# (seed name, kind, H, W, C, activation elements, weights): the seed's first table, row by row.
SEED_ROWS = [
    ("input", "Input", 224, 224, 3, 224 * 224 * 3, 0),  # 150,528
    ("conv1_1", "Conv2d", 224, 224, 64, 3_211_264, 3 * 3 * 3 * 64),  # 1,728
    ("conv1_2", "Conv2d", 224, 224, 64, 3_211_264, 3 * 3 * 64 * 64),  # 36,864
    ("pool1", "MaxPool2d", 112, 112, 64, 802_816, 0),
    ("conv2_1", "Conv2d", 112, 112, 128, 1_605_632, 73_728),
    ("conv2_2", "Conv2d", 112, 112, 128, 1_605_632, 147_456),
    ("pool2", "MaxPool2d", 56, 56, 128, 401_408, 0),
    ("conv3_1", "Conv2d", 56, 56, 256, 802_816, 294_912),
    ("conv3_2", "Conv2d", 56, 56, 256, 802_816, 589_824),
    ("conv3_3", "Conv2d", 56, 56, 256, 802_816, 589_824),
    ("conv3_4", "Conv2d", 56, 56, 256, 802_816, 589_824),
    ("pool3", "MaxPool2d", 28, 28, 256, 200_704, 0),  # the second table's slip says 401,408
    ("conv4_1", "Conv2d", 28, 28, 512, 401_408, 1_179_648),
    ("conv4_2", "Conv2d", 28, 28, 512, 401_408, 2_359_296),
    ("conv4_3", "Conv2d", 28, 28, 512, 401_408, 2_359_296),
    ("conv4_4", "Conv2d", 28, 28, 512, 401_408, 2_359_296),
    ("pool4", "MaxPool2d", 14, 14, 512, 100_352, 0),
    ("conv5_1", "Conv2d", 14, 14, 512, 100_352, 2_359_296),  # seed: "Pool5_1"
    ("conv5_2", "Conv2d", 14, 14, 512, 100_352, 2_359_296),  # seed: "Pool5_2"
    ("conv5_3", "Conv2d", 14, 14, 512, 100_352, 2_359_296),  # seed: "Pool5_3"
    ("conv5_4", "Conv2d", 14, 14, 512, 100_352, 2_359_296),  # seed: "Pool5_4"
    ("pool5", "MaxPool2d", 7, 7, 512, 25_088, 0),  # seed: "Pool6"
    ("fc1", "Linear", 1, 1, 4096, 4_096, 25088 * 4096),  # 102,760,448
    ("fc2", "Linear", 1, 1, 4096, 4_096, 4096 * 4096),  # 16,777,216
    ("fc3", "Linear", 1, 1, 1000, 1_000, 4096 * 1000),  # 4,096,000
]


@pytest.fixture(scope="module")
def paper() -> fxcost.Report:
    return fxcost.analyze(vgg19_paper(), input_size=(1, 3, 224, 224))


def _seed_view(report: fxcost.Report) -> list[fxcost.NodeCost]:
    """The rows the seed's table has: those that allocate (in-place ReLU, dropout in eval and
    the flatten view allocate nothing, which is why the seed has no rows for them)."""
    return [r for r in report.layers if r.activation_elements > 0]


def test_rows_match_the_seed_table(paper: fxcost.Report) -> None:
    rows = _seed_view(paper)
    assert len(rows) == len(SEED_ROWS)
    for row, (name, kind, h, w, c, elements, weights) in zip(rows, SEED_ROWS, strict=True):
        assert row.type == kind, name
        shape = row.output_shape
        hwc = (shape[2], shape[3], shape[1]) if len(shape) == 4 else (1, 1, shape[1])
        assert hwc == (h, w, c), name
        assert row.activation_elements == elements, name
        assert row.weight_params == weights, name


def test_seed_totals(paper: fxcost.Report) -> None:
    t = paper.total()
    assert t.activation_elements == 16_542_184  # the seed's memory total, input included
    assert sum(r[5] for r in SEED_ROWS) == 16_542_184  # the table above adds up to it too
    assert t.weight_params == 143_652_544  # the seed's params column: weights only
    assert t.bias_params == 14_696  # 2*64 + 2*128 + 4*256 + 8*512 + 4096 + 4096 + 1000
    assert t.params == 143_667_240


def test_conv1_1_and_fc1(paper: fxcost.Report) -> None:
    conv1_1 = paper.layers[1]
    assert conv1_1.name == "features.0"
    assert conv1_1.output_shape == (1, 64, 224, 224)
    assert conv1_1.activation_elements == 224 * 224 * 64 == 3_211_264
    assert conv1_1.weight_params == 1_728
    assert conv1_1.kernel_size == (3, 3) and conv1_1.stride == (1, 1)
    fc1 = next(r for r in paper.layers if r.name == "classifier.0")
    assert fc1.weight_params == 102_760_448
    # the seed's "71.53%": FC1's share of all weights
    assert f"{100 * fc1.weight_params / paper.total().weight_params:.2f}%" == "71.53%"


def test_printout_vgg19_adds_the_avgpool_row(paper: fxcost.Report) -> None:
    """The seed's printed tree has AdaptiveAvgPool2d(7, 7): one more 7x7x512 tensor."""
    printed = fxcost.analyze(vgg19(), input_size=(1, 3, 224, 224))
    avgpool = next(r for r in printed.layers if r.name == "avgpool")
    assert avgpool.type == "AdaptiveAvgPool2d"
    assert avgpool.activation_elements == 7 * 7 * 512 == 25_088
    assert printed.total().activation_elements == paper.total().activation_elements + 25_088
    assert printed.total().params == paper.total().params


# torchvision's published figures for its VGG models (ImageNet, 224x224): parameter counts, and
# "GFLOPS" that torchvision computes as multiply-accumulates.
PUBLISHED = [
    ("vgg11", 132_863_336, "7.61"),
    ("vgg13", 133_047_848, "11.31"),
    ("vgg16", 138_357_544, "15.47"),
    ("vgg19", 143_667_240, "19.63"),
]


@pytest.mark.parametrize("name, params, gmacs", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_table1_configs_match_published_figures(name: str, params: int, gmacs: str) -> None:
    import examples.vgg as vgg

    report = fxcost.analyze(getattr(vgg, name)(), input_size=(1, 3, 224, 224))
    assert report.total().params == params
    assert f"{report.total().macs / 1e9:.2f}" == gmacs
