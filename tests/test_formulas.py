"""The op registry: each formula against FlopCounterMode or hand arithmetic, and the three fates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fxcost
from fxcost.formulas import DEFAULT_REGISTRY, Cost, FormulaRegistry, _adaptive_window_total
from tests.conftest import flop_counter_flops


class Fn(nn.Module):
    """Wraps a function of the input so one op can be analyzed as a model."""

    def __init__(self, fn, *params: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn
        self.ps = nn.ParameterList([nn.Parameter(p) for p in params])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.ps)


# (id, module, input shape): every MAC op family, checked against FlopCounterMode's 2 per MAC
MAC_CASES = [
    ("conv2d", nn.Conv2d(3, 8, 3), (2, 3, 9, 9)),
    ("conv2d_stride_pad", nn.Conv2d(4, 6, 5, stride=2, padding=2), (1, 4, 17, 13)),
    ("conv2d_groups", nn.Conv2d(8, 16, 3, groups=4), (2, 8, 7, 7)),
    ("conv2d_depthwise", nn.Conv2d(8, 8, 3, groups=8, bias=False), (2, 8, 7, 7)),
    ("conv2d_dilation", nn.Conv2d(3, 4, 3, dilation=3), (1, 3, 20, 20)),
    ("conv1d", nn.Conv1d(3, 5, 4, stride=2), (2, 3, 30)),
    ("conv3d", nn.Conv3d(2, 3, 3, padding=1), (1, 2, 5, 6, 7)),
    ("conv_transpose2d", nn.ConvTranspose2d(4, 6, 3, stride=2), (2, 4, 5, 5)),
    ("conv_transpose2d_groups", nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2), (1, 4, 6, 6)),
    ("conv_transpose1d", nn.ConvTranspose1d(3, 2, 5), (2, 3, 11)),
    ("linear", nn.Linear(12, 7), (5, 12)),
    ("linear_3d", nn.Linear(12, 7), (2, 5, 12)),
    ("linear_no_bias", nn.Linear(12, 7, bias=False), (4, 3, 2, 12)),
    ("bilinear_matmul", Fn(lambda x, w: x @ w, torch.randn(6, 9)), (4, 6)),
    ("bmm", Fn(lambda x: torch.bmm(x, x.transpose(1, 2))), (3, 4, 5)),
    ("matmul_broadcast", Fn(lambda x, w: torch.matmul(x, w), torch.randn(5, 2)), (2, 3, 4, 5)),
    ("baddbmm", Fn(lambda x: torch.baddbmm(torch.zeros(3, 4, 4), x, x.transpose(1, 2))), (3, 4, 5)),
    ("einsum", Fn(lambda x, w: torch.einsum("bij,jk->bik", x, w), torch.randn(5, 3)), (2, 4, 5)),
]


def test_mv_and_dot_by_hand() -> None:
    """FlopCounterMode has no formula for aten::mv or aten::dot (it counts them as 0), so these
    are checked by hand: mv([3, 6], [6]) is 3 * 6 MACs; dot([6], [6]) is 6."""
    mv = fxcost.analyze(Fn(lambda x, w: torch.mv(w, x[0]), torch.randn(3, 6)), input_size=(1, 6))
    assert mv.total().macs == 3 * 6
    dot = fxcost.analyze(Fn(lambda x: torch.dot(x[0], x[0])), input_size=(1, 6))
    assert dot.total().macs == 6


@pytest.mark.parametrize("module, shape", [c[1:] for c in MAC_CASES], ids=[c[0] for c in MAC_CASES])
def test_macs_match_flop_counter(module: nn.Module, shape: tuple[int, ...]) -> None:
    report = fxcost.analyze(module, input_size=shape)
    assert 2 * report.total().macs == flop_counter_flops(module, torch.randn(shape))
    assert report.unsupported == ()


def test_conv_formula_by_hand() -> None:
    # [2, 16, 5, 5] = conv([2, 8, 7, 7], W[16, 8/4, 3, 3]): 2*5*5 positions * 16 * 2 * 9
    report = fxcost.analyze(nn.Conv2d(8, 16, 3, groups=4), input_size=(2, 8, 7, 7))
    row = report.layers[1]
    assert row.macs == 2 * 5 * 5 * 16 * 2 * 9 == 14_400
    assert row.flops == 2 * 14_400 + 2 * 16 * 5 * 5  # 2 per MAC + one add per output for the bias


# (id, module, input shape, expected FLOPs written as arithmetic): per-element conventions
ELEMENTWISE = [
    ("relu", nn.ReLU(), (2, 10), 2 * 10),
    ("relu_inplace", nn.ReLU(inplace=True), (2, 10), 2 * 10),
    ("gelu", nn.GELU(), (3, 7), 3 * 7),
    ("softmax", nn.Softmax(dim=-1), (4, 5), 5 * 4 * 5),
    ("maxpool2d", nn.MaxPool2d(2), (1, 3, 8, 8), 3 * 4 * 4 * (2 * 2)),
    ("avgpool2d_k3s2", nn.AvgPool2d(3, stride=2), (1, 2, 9, 9), 2 * 4 * 4 * 9),
    ("adaptive_avg_identity", nn.AdaptiveAvgPool2d(7), (1, 512, 7, 7), 512 * 7 * 7),
    ("adaptive_avg_10_to_3", nn.AdaptiveAvgPool2d(3), (1, 1, 10, 10), 12 * 12),  # windows 4+4+4 per dim
    ("batchnorm_eval", nn.BatchNorm2d(4), (2, 4, 3, 3), 4 * 2 * 4 * 3 * 3),  # normalize 2 + affine 2
    ("layernorm", nn.LayerNorm(6), (2, 6), 8 * 2 * 6),  # + statistics 4
    ("layernorm_no_affine", nn.LayerNorm(6, elementwise_affine=False), (2, 6), 6 * 2 * 6),
    ("groupnorm", nn.GroupNorm(2, 4), (2, 4, 5), 8 * 2 * 4 * 5),
    ("dropout_eval", nn.Dropout(0.5), (3, 3), 0),  # eval: dispatches no op at all
    ("flatten", nn.Flatten(), (2, 3, 4), 0),
]


@pytest.mark.parametrize("module, shape, flops", [c[1:] for c in ELEMENTWISE], ids=[c[0] for c in ELEMENTWISE])
def test_per_element_conventions(module: nn.Module, shape: tuple[int, ...], flops: int) -> None:
    report = fxcost.analyze(module, input_size=shape)
    assert report.total().flops == flops
    assert report.total().macs == 0
    assert report.unsupported == ()


def test_adaptive_windows_match_pytorch() -> None:
    """Window lengths from PyTorch itself: pooling the one-hot rows of an identity matrix puts
    1/len in every (input position, window) pair the window covers, so counting the non-zero
    entries sums the window lengths."""
    for size_in, size_out in [(10, 3), (7, 7), (13, 4), (5, 8)]:
        pooled = F.adaptive_avg_pool1d(torch.eye(size_in).unsqueeze(1), size_out)
        assert _adaptive_window_total(size_in, size_out) == int((pooled != 0).sum())


def test_unsupported_ops_are_listed_never_zero() -> None:
    model = Fn(lambda x: torch.cumsum(x, dim=1))
    report = fxcost.analyze(model, input_size=(2, 5))
    assert [(u.op, u.count) for u in report.unsupported] == [("aten::cumsum", 1)]
    assert report.unsupported[0].where == "fn" or report.unsupported[0].where.endswith("cumsum")
    row = next(r for r in report.layers if r.ops)
    assert row.ops[0].fate == "unsupported"
    with pytest.raises(fxcost.UnsupportedOpError, match="aten::cumsum"):
        fxcost.analyze(model, input_size=(2, 5), strict=True)


def test_free_ops_carry_a_reason() -> None:
    report = fxcost.analyze(nn.Flatten(), input_size=(2, 3, 4))
    (op,) = [o for r in report.layers for o in r.ops if o.op == "aten::view"]
    assert op.fate == "free" and "view" in op.reason


def test_registry_refuses_duplicates_and_copies_are_independent() -> None:
    reg = FormulaRegistry()
    reg.formula("aten::foo")(lambda *a, out=None, **k: Cost(1, 2))
    with pytest.raises(ValueError, match="already has a fate"):
        reg.free("aten::foo", reason="no")
    with pytest.raises(ValueError, match="already has a fate"):
        DEFAULT_REGISTRY.formula("aten::mm")(lambda *a, **k: Cost())
    mine = DEFAULT_REGISTRY.copy()
    mine.override("aten::mm", lambda *a, out=None, **k: Cost(0, 0))
    assert DEFAULT_REGISTRY.lookup("aten::mm")[0] == "formula"
    assert DEFAULT_REGISTRY.lookup("aten::mm")[1] is not mine.lookup("aten::mm")[1]
    assert DEFAULT_REGISTRY.lookup("aten::definitely_not_an_op")[0] == "unsupported"


@given(batch=st.integers(1, 16), c_in=st.integers(1, 8), c_out=st.integers(1, 8), k=st.integers(1, 4), size=st.integers(4, 12), stride=st.integers(1, 3))
def test_conv_property_vs_flop_counter(batch: int, c_in: int, c_out: int, k: int, size: int, stride: int) -> None:
    conv = nn.Conv2d(c_in, c_out, k, stride=stride)
    shape = (batch, c_in, size, size)
    assert 2 * fxcost.analyze(conv, input_size=shape).total().macs == flop_counter_flops(conv, torch.randn(shape))


@given(batch=st.integers(1, 64), n=st.integers(1, 32), m=st.integers(1, 32))
def test_linear_macs_linear_in_batch(batch: int, n: int, m: int) -> None:
    lin = nn.Linear(n, m)
    one = fxcost.analyze(lin, input_size=(1, n)).total()
    many = fxcost.analyze(lin, input_size=(batch, n)).total()
    assert many.macs == batch * one.macs == batch * n * m
    assert many.activation_elements == batch * one.activation_elements
