"""The op registry: each formula against FlopCounterMode or hand arithmetic, and the three fates."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from fxcost import DEFAULT_REGISTRY, Cost, FormulaRegistry
from fxcost.counting.arithmetic import adaptive_window_total as _adaptive_window_total
from fxcost.pytorch.recorder import OpRecorder
from fxcost.report import OpCost
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
    ("gelu_tanh", nn.GELU(approximate="tanh"), (3, 7), 3 * 7),  # 1 per element, as approximate="none"
    ("silu", nn.SiLU(), (3, 7), 3 * 7),
    ("logsigmoid", nn.LogSigmoid(), (3, 7), 3 * 7),
    ("hardshrink", nn.Hardshrink(), (3, 7), 3 * 7),
    ("masked_fill", Fn(lambda x: x.masked_fill(x > 0, 0.0)), (3, 7), 2 * 3 * 7),  # gt + masked_fill
    # nn.RMSNorm decomposes: square, mean, multiply by 1/rms (3 per element), add eps and rsqrt
    # (2 per row), the weight (1 per element)
    ("rmsnorm", nn.RMSNorm(6), (2, 6), 4 * 2 * 6 + 2 * 2),
    ("instancenorm", nn.InstanceNorm2d(3), (2, 3, 4, 4), 6 * 2 * 3 * 4 * 4),  # batch norm over N*C, statistics
    ("upsample_nearest", nn.Upsample(scale_factor=2), (1, 2, 3, 3), 0),  # copies: free
    ("pixel_shuffle", nn.PixelShuffle(2), (1, 8, 3, 3), 0),
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
    model = Fn(lambda x: torch.linalg.qr(x)[0])  # matrix decompositions have no formula yet
    report = fxcost.analyze(model, input_size=(2, 8))
    assert [(u.op, u.count) for u in report.unsupported] == [("aten::linalg_qr", 1)]
    assert report.unsupported[0].where == "fn" or report.unsupported[0].where.endswith("qr")
    row = next(r for r in report.layers if r.ops)
    assert row.ops[0].fate == "unsupported"
    with pytest.raises(fxcost.UnsupportedOpError, match="aten::linalg_qr"):
        fxcost.analyze(model, input_size=(2, 8), strict=True)


def test_free_ops_carry_a_reason() -> None:
    report = fxcost.analyze(nn.Flatten(), input_size=(2, 3, 4))
    (op,) = [o for r in report.layers for o in r.ops if o.op == "aten::view"]
    assert op.fate == "free" and "view" in op.reason


def test_registry_refuses_duplicates_and_copies_are_independent() -> None:
    reg = FormulaRegistry()
    reg.formula("aten::foo")(lambda *a, out=None, **k: Cost(1, 2))
    with pytest.raises(ValueError, match="already has a fate"):
        reg.free("aten::foo", reason="no")
    with pytest.raises(ValueError, match="never changes"):  # the route's own table is frozen
        DEFAULT_REGISTRY.formula("aten::brand_new")(lambda *a, **k: Cost())
    with pytest.raises(ValueError, match="needs a reason"):
        reg.free("aten::bar", reason="")
    assert DEFAULT_REGISTRY.lookup("aten::definitely_not_an_op").fate == "unsupported"


def test_an_analysis_extends_a_copy_of_the_registry_never_the_default() -> None:
    class Orthogonal(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.qr(x)[0].abs()

    mine = DEFAULT_REGISTRY.copy()
    # a made-up price, to see that the copy is the one counting: 10 FLOPs per input element
    mine.formula("aten::linalg_qr")(lambda x, *a, out=None, **k: Cost(0, 10 * x.numel()))  # [2, 8] in, [2, 2] and [2, 8] out
    assert DEFAULT_REGISTRY.lookup("aten::linalg_qr").fate == "unsupported"
    with pytest.raises(ValueError, match="already has a fate"):
        mine.formula("aten::linalg_qr")(lambda *a, **k: Cost())
    counted = fxcost.analyze(Orthogonal(), input_size=(2, 8), registry=mine)
    default = fxcost.analyze(Orthogonal(), input_size=(2, 8))
    qr = [o for r in counted.layers for o in r.ops if o.op == "aten::linalg_qr"]
    assert [(o.fate, o.flops) for o in qr] == [("formula", 10 * 2 * 8)]
    assert [u.op for u in default.unsupported] == ["aten::linalg_qr"] and not counted.unsupported
    # an op that has a fate is priced differently only by replace(), in a copy
    mine.replace("aten::abs", lambda *a, out=None, **k: Cost(0, 0))
    assert fxcost.analyze(Orthogonal(), input_size=(2, 8), registry=mine).total().flops == 10 * 2 * 8
    with pytest.raises(ValueError, match="no fate to replace"):
        mine.replace("aten::definitely_not_an_op", lambda *a, **k: Cost())
    with pytest.raises(ValueError, match="never changes"):
        DEFAULT_REGISTRY.replace("aten::abs", lambda *a, **k: Cost())


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


# --- modern-model ops: fused kernels against their unfused decompositions -------------------
#
# On meta tensors PyTorch decomposes attention and RNNs into mm/bmm and pointwise ops; on CPU fake
# tensors (and real CPU ones) it takes fused kernels: _scaled_dot_product_flash_attention_for_cpu,
# _native_multi_head_attention, _transformer_encoder_layer_fwd, mkldnn_rnn_layer. Each fused
# formula must cost what the decomposition dispatches, so a model counts the same on either path.


def record(fn: Callable[..., Any], *shapes: Sequence[int], fake: bool, dtype: torch.dtype = torch.float32) -> dict[str, OpCost]:
    """The ops ``fn`` dispatches on inputs of ``shapes``, by name: on meta tensors (a module is
    copied to meta), or on CPU fake tensors (a module keeps its CPU weights, made fake on use)."""
    recorder = OpRecorder(DEFAULT_REGISTRY)
    if isinstance(fn, nn.Module):
        fn = fn.eval() if fake else copy.deepcopy(fn).to("meta").eval()
    if fake:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        with mode:
            args = [torch.randn(s, dtype=dtype) for s in shapes]
        with mode, torch.no_grad(), recorder:
            fn(*args)
    else:
        args = [torch.randn(s, dtype=dtype, device="meta") for s in shapes]
        with torch.no_grad(), recorder:
            fn(*args)
    return {o.op: o for o in recorder.take()}


def totals(ops: dict[str, OpCost], without: Sequence[str] = ()) -> tuple[int, int]:
    """(MACs, FLOPs) of the recorded ops, leaving out the named ones; asserts none is unsupported."""
    assert [o.op for o in ops.values() if o.fate == "unsupported"] == []
    kept = [o for o in ops.values() if o.op not in without]
    return sum(o.macs for o in kept), sum(o.flops for o in kept)


def flop_counter_with_grad(fn: Callable[..., Any], *inputs: torch.Tensor) -> int:
    """FlopCounterMode over a real forward with autograd on, which keeps nn.MultiheadAttention and
    nn.TransformerEncoderLayer off their fused fast paths (those need no_grad), and on the math
    attention backend (FlopCounterMode counts the CPU flash kernel as 0)."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn(*inputs)
    return int(counter.get_total_flops())


def formula(name: str) -> Callable[..., Cost]:
    fate, fn, _ = DEFAULT_REGISTRY.lookup(name)
    assert fate == "formula" and fn is not None
    return fn


def _sdpa(mask: str = "", **kwargs: Any) -> Callable[..., torch.Tensor]:
    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        lq, lk = q.shape[-2], k.shape[-2]
        if mask == "bool":
            kwargs["attn_mask"] = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        elif mask == "float":
            kwargs["attn_mask"] = torch.zeros(q.shape[0], 1, lq, lk, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, **kwargs)

    return run


# (id, attention, q, k, v shapes, is_causal): cases the CPU flash kernel takes on fake tensors
SDPA_CASES = [
    ("plain", _sdpa(), (2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8), False),
    ("causal", _sdpa(is_causal=True), (2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8), True),
    ("bool_mask", _sdpa("bool"), (2, 4, 6, 8), (2, 4, 6, 8), (2, 4, 6, 8), False),
    ("float_mask", _sdpa("float"), (2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8), False),
    ("scale", _sdpa(scale=0.3), (1, 2, 9, 16), (1, 2, 9, 16), (1, 2, 9, 16), False),
    ("gqa", _sdpa(enable_gqa=True), (2, 8, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8), False),
    ("gqa_causal", _sdpa(enable_gqa=True, is_causal=True), (2, 8, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8), True),
]


@pytest.mark.parametrize("attend, q, k, v, causal", [c[1:] for c in SDPA_CASES], ids=[c[0] for c in SDPA_CASES])
def test_fused_attention_costs_its_math_decomposition(attend: Callable[..., Any], q: tuple, k: tuple, v: tuple, causal: bool) -> None:
    fused = record(attend, q, k, v, fake=True)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in fused and "aten::bmm" not in fused
    math = record(attend, q, k, v, fake=False)
    assert "aten::bmm" in math
    # A boolean mask becomes an additive one through a `where` that both paths dispatch before
    # attending. For is_causal only the math path builds its [Lq, Lk] triangle (with a `where`
    # too): mask preparation, which the fused kernel does not need and its formula does not count.
    macs, flops = totals(math)
    assert totals(fused) == (macs, flops - (q[2] * k[2] if causal else 0))
    # by hand: b * h_q * (Lq * Lk * E + Lq * Lk * Ev), counted with the query's heads
    b, h, lq, e = q
    assert macs == b * h * (lq * k[2] * e + lq * k[2] * v[3])


@pytest.mark.parametrize("attend, q, k, v", [c[1:5] for c in SDPA_CASES], ids=[c[0] for c in SDPA_CASES])
def test_fused_attention_macs_match_flop_counter_math_path(attend: Callable[..., Any], q: tuple, k: tuple, v: tuple) -> None:
    """FlopCounterMode has no formula for the CPU flash kernel (it counts it as 0); on the math
    backend it sees the two bmm and counts 2 per MAC."""
    tensors = [torch.randn(s) for s in (q, k, v)]
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), counter:
        attend(*tensors)
    assert 2 * totals(record(attend, q, k, v, fake=True))[0] == counter.get_total_flops()


def test_attention_formula_by_hand() -> None:
    # q[2, 4, 5, 8], k[2, 2, 7, 8], v[2, 2, 7, 6]: 2*4*5*7 = 280 scores, grouped-query heads
    q, k, v = torch.Size([2, 4, 5, 8]), torch.Size([2, 2, 7, 8]), torch.Size([2, 2, 7, 6])
    macs = 280 * 8 + 280 * 6  # q @ k^T, then weights @ v
    scale = 2 * 4 * (5 + 7) * 8  # q and the head-broadcast k, each by sqrt(scale)
    base = 2 * macs + scale + 5 * 280  # + softmax
    assert formula("aten::_scaled_dot_product_flash_attention_for_cpu")(q, k, v) == Cost(macs, base)
    assert formula("aten::_scaled_dot_product_flash_attention_for_cpu")(q, k, v, 0.0, True) == Cost(macs, base + 280)
    assert formula("aten::_scaled_dot_product_flash_attention_for_cpu")(q, k, v, attn_mask=torch.Size([5, 7])).flops == base + 280
    # the CUDA kernels, each with its own argument order; dropout scales the 280 weights once more
    assert formula("aten::_scaled_dot_product_flash_attention")(q, k, v, 0.1, True, False) == Cost(macs, base + 2 * 280)
    assert formula("aten::_scaled_dot_product_flash_attention")(q, k, v, None, None, None, 0.0, True) == Cost(macs, base + 280)
    assert formula("aten::_scaled_dot_product_efficient_attention")(q, k, v, torch.Size([2, 4, 5, 7]), True) == Cost(macs, base + 280)
    assert formula("aten::_scaled_dot_product_cudnn_attention")(q, k, v, None, False, 0.0, True) == Cost(macs, base + 280)
    assert formula("aten::_scaled_dot_product_fused_attention_overrideable")(q, k, v, None, 0.5) == Cost(macs, base + 280)


def _mha(need_weights: bool = True, mask: str = "", average: bool = True) -> nn.Module:
    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> Any:
            kw: dict[str, Any] = {"need_weights": need_weights, "average_attn_weights": average}
            if mask == "key_padding":
                kw["key_padding_mask"] = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
            elif mask == "attn":
                kw["attn_mask"] = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
            return self.mha(x, x, x, **kw)

    return Attend()


# (id, module, input, whether FLOPs equal the slow path's too: masks are prepared differently)
MHA_CASES = [
    ("weights", _mha(), (2, 5, 16), True),
    ("no_weights", _mha(need_weights=False), (2, 5, 16), True),
    ("per_head_weights", _mha(average=False), (3, 4, 16), True),
    ("key_padding_mask", _mha(mask="key_padding"), (2, 5, 16), False),
    ("attn_mask", _mha(need_weights=False, mask="attn"), (2, 5, 16), False),
]


@pytest.mark.parametrize("module, shape, same_flops", [c[1:] for c in MHA_CASES], ids=[c[0] for c in MHA_CASES])
def test_native_multi_head_attention_costs_its_slow_path(module: nn.Module, shape: tuple, same_flops: bool) -> None:
    fused = record(module, shape, fake=True)
    assert "aten::_native_multi_head_attention" in fused
    slow = record(module, shape, fake=False)
    assert totals(fused)[0] == totals(slow)[0]
    if same_flops:
        assert totals(fused)[1] == totals(slow)[1]
    assert 2 * totals(fused)[0] == flop_counter_with_grad(module, torch.randn(shape))


def test_native_multi_head_attention_by_hand() -> None:
    # self-attention, B=2, L=5, E=16, H=4 (d=4): in-projections 3 * 10*16*16, attention
    # 2*4*5*5 = 200 scores * (4 + 4), out-projection 10*16*16
    report = record(_mha(need_weights=False), (2, 5, 16), fake=True)["aten::_native_multi_head_attention"]
    assert report.macs == 3 * 10 * 16 * 16 + 200 * 8 + 10 * 16 * 16 == 11_840
    # + biases 3*160 + 160, scaling q and k 2*4*(5+5)*4, softmax 5*200
    assert report.flops == 2 * 11_840 + 4 * 160 + 320 + 1_000


ENCODER_CASES = [
    ("relu", nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), (2, 5, 16)),
    ("gelu_norm_first", nn.TransformerEncoderLayer(16, 2, 24, batch_first=True, activation="gelu", norm_first=True), (3, 4, 16)),
]


@pytest.mark.parametrize("module, shape", [c[1:] for c in ENCODER_CASES], ids=[c[0] for c in ENCODER_CASES])
def test_transformer_encoder_layer_fwd_costs_its_slow_path(module: nn.Module, shape: tuple) -> None:
    fused = record(module, shape, fake=True)
    assert "aten::_transformer_encoder_layer_fwd" in fused
    assert totals(fused) == totals(record(module, shape, fake=False))
    assert 2 * totals(fused)[0] == flop_counter_with_grad(module.eval(), torch.randn(shape))


# (id, module, input): nn.LSTM takes mkldnn_rnn_layer on CPU fake tensors (without proj_size)
LSTM_CASES = [
    ("one_layer", nn.LSTM(3, 4), (5, 2, 3)),
    ("stacked_bidirectional_batch_first", nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True), (2, 5, 3)),
    ("no_bias", nn.LSTM(6, 5, bias=False), (4, 3, 6)),
    ("unbatched", nn.LSTM(3, 4), (7, 3)),
]


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch.backends.mkldnn.flags
@pytest.mark.parametrize("module, shape", [c[1:] for c in LSTM_CASES], ids=[c[0] for c in LSTM_CASES])
def test_mkldnn_rnn_layer_costs_the_unfused_cells(module: nn.Module, shape: tuple) -> None:
    fused = record(module, shape, fake=True)
    assert "aten::mkldnn_rnn_layer" in fused
    unfused = record(module, shape, fake=False)
    assert "aten::mkldnn_rnn_layer" not in unfused and totals(fused) == totals(unfused)
    # FlopCounterMode counts mkldnn_rnn_layer as 0; with mkldnn off the real forward takes the
    # unfused cells, whose addmm/mm it sees
    counter = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), counter:
        module.eval()(torch.randn(shape))
    seen = {str(op) for op in counter.get_flop_counts()["Global"]}
    assert seen & {"aten.addmm", "aten.mm"}
    assert 2 * totals(fused)[0] == counter.get_total_flops()


def test_lstm_formula_by_hand() -> None:
    # T=5, B=2, In=3, H=4: per position 4H*In + 4H*H = 16*3 + 16*4 = 112 MACs
    ops = record(nn.LSTM(3, 4), (5, 2, 3), fake=True)
    assert ops["aten::mkldnn_rnn_layer"].macs == 5 * 2 * 112
    # 2 per MAC, both biases (2 * 4H), the cell's 13 pointwise FLOPs per hidden unit: adding the
    # input and hidden projections (4 gates), 3 sigmoids, 2 tanh, f*c, i*g, their sum, o*tanh(c)
    # = 4 + 3 + 2 + 1 + 1 + 1 + 1
    assert ops["aten::mkldnn_rnn_layer"].flops == 2 * 1_120 + 10 * (2 * 16 + 13 * 4)


# (id, module, input, cuDNN mode): whole-RNN kernels checked against the unfused cells on meta
CUDNN_CASES = [
    ("lstm", nn.LSTM(3, 4, num_layers=2), (5, 2, 3), 2),
    ("lstm_proj_bidirectional", nn.LSTM(3, 6, proj_size=2, bidirectional=True), (4, 3, 3), 2),
    ("gru_no_bias", nn.GRU(3, 4, bias=False), (5, 2, 3), 3),
    ("rnn_tanh", nn.RNN(3, 4, num_layers=2), (5, 2, 3), 1),
    ("rnn_relu", nn.RNN(3, 4, nonlinearity="relu"), (5, 2, 3), 0),
]


@pytest.mark.parametrize("module, shape, mode", [c[1:] for c in CUDNN_CASES], ids=[c[0] for c in CUDNN_CASES])
def test_cudnn_and_miopen_rnn_cost_the_unfused_cells(module: nn.RNNBase, shape: tuple, mode: int) -> None:
    x = torch.Size(shape if len(shape) == 3 else (shape[0], 1, shape[1]))
    weights = [w.shape for w in module._flat_weights]
    h = module.hidden_size
    cudnn = formula("aten::_cudnn_rnn")(x, weights, 4, None, None, None, mode, h, module.proj_size, module.num_layers,
                                        False, 0.0, False, module.bidirectional, [], None)
    miopen = formula("aten::miopen_rnn")(x, weights, 4, None, None, mode, h, module.num_layers, False, 0.0, False,
                                         module.bidirectional, [], None)
    assert (cudnn.macs, cudnn.flops) == (miopen.macs, miopen.flops) == totals(record(module, shape, fake=False))


@pytest.mark.parametrize("cell, gates", [(nn.LSTMCell(3, 4), 4), (nn.GRUCell(3, 4), 3)], ids=["lstm", "gru"])
def test_fused_cells_cost_the_unfused_cell(cell: nn.RNNCellBase, gates: int) -> None:
    """CUDA's _thnn_fused_{lstm,gru}_cell take the two projections from mm (no bias) and add the
    biases themselves: mm + fused cell costs what the unfused cell dispatches."""
    b, h, i = 2, 4, 3
    g = torch.Size([b, gates * h])
    name = "aten::_thnn_fused_lstm_cell" if gates == 4 else "aten::_thnn_fused_gru_cell"
    pointwise = formula(name)(g, g, torch.Size([b, h]), torch.Size([gates * h]), torch.Size([gates * h]))
    mm_macs = b * i * gates * h + b * h * gates * h
    assert (mm_macs, 2 * mm_macs + pointwise.flops) == totals(record(cell, (b, i), fake=False))


# (id, function, input shape, FLOPs): interpolation, 2T - 1 FLOPs per output for T taps, no MACs
INTERPOLATION = [
    ("linear1d", lambda x: F.interpolate(x, scale_factor=2, mode="linear"), (1, 2, 5), 3 * 2 * 10),
    ("bilinear", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 2, 4, 6), 7 * 2 * 8 * 12),
    ("bilinear_align", lambda x: F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True), (1, 2, 4, 6), 7 * 2 * 7 * 9),
    ("bicubic", lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), (1, 2, 4, 6), 31 * 2 * 8 * 12),
    ("trilinear", lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"), (1, 2, 3, 4, 5), 15 * 2 * 6 * 8 * 10),
    # anti-aliased downsampling 8x12 -> 4x6: the 2-tap filter spans ceil(2 * 8/4) = 4 and
    # ceil(2 * 12/6) = 4 inputs, 16 taps
    ("bilinear_aa", lambda x: F.interpolate(x, size=(4, 6), mode="bilinear", antialias=True), (1, 2, 8, 12), 31 * 2 * 4 * 6),
    # 4 taps stretched: ceil(4 * 8/3) = 11, ceil(4 * 12/5) = 10
    ("bicubic_aa", lambda x: F.interpolate(x, size=(3, 5), mode="bicubic", antialias=True), (1, 2, 8, 12), (2 * 110 - 1) * 2 * 3 * 5),
    ("bilinear_aa_upsampling", lambda x: F.interpolate(x, size=(8, 12), mode="bilinear", antialias=True), (1, 2, 4, 6), 7 * 2 * 8 * 12),
    # lanczos (a=3) reads 6 taps a dimension, stretched by the downscale: 6*8/4 = 12 by 6*12/6 = 12 taps
    ("lanczos_aa", lambda x: F.interpolate(x, size=(4, 6), mode="lanczos", antialias=True), (1, 2, 8, 12), (2 * (12 * 12) - 1) * 2 * 4 * 6),
    ("nearest", lambda x: F.interpolate(x, scale_factor=2), (1, 2, 4, 6), 0),
    ("nearest_exact", lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"), (1, 2, 4, 6), 0),
]


@pytest.mark.parametrize("fn, shape, flops", [c[1:] for c in INTERPOLATION], ids=[c[0] for c in INTERPOLATION])
def test_interpolation_by_hand(fn: Callable[..., Any], shape: tuple, flops: int) -> None:
    for fake in (False, True):
        assert totals(record(fn, shape, fake=fake)) == (0, flops)
    # FlopCounterMode counts no FLOPs for interpolation either
    assert flop_counter_flops(Fn(fn), torch.randn(shape)) == 0


def test_nearest_upsampling_is_free_as_a_gather() -> None:
    ops = record(lambda x: F.interpolate(x, scale_factor=2), (1, 2, 4, 6), fake=False)
    assert ops["aten::upsample_nearest2d"].fate == "free" and "gather" in ops["aten::upsample_nearest2d"].reason
    assert DEFAULT_REGISTRY.lookup("aten::index_select")[0] == DEFAULT_REGISTRY.lookup("aten::embedding")[0] == "free"


def test_bilinear_layer_by_hand_and_against_its_kernel() -> None:
    """nn.Bilinear is _trilinear(x1[N, in1], W[out, in1, in2], x2[N, in2]): its kernel multiplies
    x1 * W over [N, out, in1, in2], then contracts the product with x2 in a matmul."""
    layer = nn.Bilinear(3, 4, 5)
    ops = record(layer, (2, 3), (2, 4), fake=False)
    assert ops["aten::_trilinear"].macs == 2 * 5 * 3 * 4 == 120
    assert ops["aten::_trilinear"].flops == 3 * 120  # multiply, multiply, add per term
    assert totals(ops)[1] == 3 * 120 + 2 * 5  # + the bias add
    # the same computation, unfused: FlopCounterMode counts the matmul at 2 per MAC (it has no
    # formula for _trilinear itself)
    x1, x2 = torch.randn(2, 3), torch.randn(2, 4)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        products = x1[:, None, :, None] * layer.weight  # [2, 5, 3, 4]
        y = (products @ x2[:, None, :, None]).sum((2, 3)) + layer.bias
    torch.testing.assert_close(y, layer(x1, x2).detach())
    assert counter.get_total_flops() == 2 * 120


def test_grouped_mm_by_hand_and_against_per_group_matmuls() -> None:
    # a mixture-of-experts layer: 32 token rows in 4 groups, each through its own [64, 256]
    def experts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch._grouped_mm(a, b, torch.tensor([8, 16, 24, 32], dtype=torch.int32, device=a.device))

    for fake in (False, True):
        ops = record(experts, (32, 64), (4, 64, 256), fake=fake, dtype=torch.bfloat16)
        assert (ops["aten::_grouped_mm"].macs, ops["aten::_grouped_mm"].flops) == (32 * 64 * 256, 2 * 32 * 64 * 256)
    a, b = torch.randn(32, 64, dtype=torch.bfloat16), torch.randn(4, 64, 256, dtype=torch.bfloat16)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        looped = torch.cat([a[8 * g : 8 * (g + 1)] @ b[g] for g in range(4)])
    torch.testing.assert_close(experts(a, b), looped)
    assert counter.get_total_flops() == 2 * 32 * 64 * 256
    # the other layouts: [G, M, K] x [G, K, N]; [M, Ktot] x [Ktot, N] split over K; [G, M, K] x [K, Ntot]
    grouped = formula("aten::_grouped_mm")
    assert grouped(torch.Size([3, 8, 16]), torch.Size([3, 16, 4]), out=torch.Size([3, 8, 4])).macs == 3 * 8 * 16 * 4
    assert grouped(torch.Size([8, 16]), torch.Size([16, 4]), torch.Size([2]), out=torch.Size([2, 8, 4])).macs == 8 * 16 * 4
    assert grouped(torch.Size([2, 8, 16]), torch.Size([16, 10]), torch.Size([2]), out=torch.Size([8, 10])).macs == 8 * 16 * 10


def test_rms_norm_and_weight_norm_cost_their_decompositions() -> None:
    rms = formula("aten::_fused_rms_norm")
    for weight in (True, False):
        module = nn.RMSNorm(6, elementwise_affine=weight)
        expected = totals(record(module, (3, 2, 6), fake=False))
        assert (rms(torch.Size([3, 2, 6]), [6], torch.Size([6]) if weight else None, 1e-6, out=None).macs,
                rms(torch.Size([3, 2, 6]), [6], torch.Size([6]) if weight else None, 1e-6, out=None).flops) == expected
    # w = v * (g / ||v||) over dim 0: the norm (12), the divide (4), the multiply (12)
    fused = record(lambda v, g: torch._weight_norm(v, g, 0), (4, 3), (4, 1), fake=False)
    unfused = record(lambda v, g: v * (g / torch.linalg.vector_norm(v, dim=1, keepdim=True)), (4, 3), (4, 1), fake=False)
    assert totals(fused) == totals(unfused) == (0, 12 + 4 + 12)


def _long(*shape: int, high: int = 3) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.randint(0, high, shape, device=x.device)


# (id, function of one input, input shape, FLOPs written as arithmetic with the reason)
SCAN_SORT_SCATTER = [
    ("cumsum", lambda x: x.cumsum(1), (2, 5), 2 * 5),  # one add per output element
    ("cumprod", lambda x: x.cumprod(0), (2, 5), 2 * 5),
    ("logcumsumexp", lambda x: x.logcumsumexp(1), (2, 5), 2 * 5),
    ("cummax", lambda x: x.cummax(1), (2, 5), 2 * 5),
    ("sort", lambda x: x.sort(), (3, 5), 3 * 5 * 3),  # n * ceil(log2 5) per row of 5
    ("sort_dim0_stable", lambda x: torch.sort(x, dim=0, stable=True), (3, 5), 3 * 5 * 2),  # ceil(log2 3) = 2
    ("argsort", lambda x: x.argsort(descending=True), (4, 8), 4 * 8 * 3),
    ("topk_2", lambda x: x.topk(2), (3, 5), 3 * 5 * 2),  # ceil(log2(2 + 1)) = 2 heap steps
    ("topk_1", lambda x: x.topk(1, dim=0), (3, 5), 3 * 5 * 1),
    ("kthvalue", lambda x: x.kthvalue(2), (3, 5), 3 * 5),  # one selection pass
    ("median", lambda x: x.median(), (3, 5), 3 * 5),
    ("median_dim", lambda x: x.median(1), (3, 5), 3 * 5),
    # index[2, 4] applies 8 source elements
    ("scatter_add", lambda x: torch.zeros(3, 5, device=x.device).scatter_add(0, _long(2, 4)(x), x), (2, 5), 8),
    ("scatter_reduce", lambda x: torch.zeros(3, 5, device=x.device).scatter_reduce(0, _long(2, 4)(x), x, "amax"), (2, 5), 8),
    ("scatter_multiply", lambda x: torch.zeros(3, 5, device=x.device).scatter(0, _long(2, 4)(x), x, reduce="multiply"), (2, 5), 8),
    ("scatter_copy", lambda x: torch.zeros(3, 5, device=x.device).scatter(0, _long(2, 4)(x), x), (2, 5), 0),  # copies
    ("index_add", lambda x: torch.zeros(3, 5, device=x.device).index_add(1, _long(4, high=5)(x), x), (3, 4), 12),
    ("index_add_alpha", lambda x: torch.zeros(3, 5, device=x.device).index_add(1, _long(4, high=5)(x), x, alpha=2), (3, 4), 2 * 12),
    # two indexed rows of 5 elements each
    ("index_put_accumulate", lambda x: torch.zeros(3, 5, device=x.device).index_put((_long(2)(x),), x, accumulate=True), (5,), 2 * 5),
    # [:, idx[2, 4]]: 8 indexed positions in each of 3 rows
    ("index_put_accumulate_inner", lambda x: torch.ops.aten.index_put_(torch.zeros(3, 5, device=x.device), [None, _long(2, 4, high=5)(x)], x, True), (1,), 3 * 8),
    ("index_put_copy", lambda x: torch.zeros(3, 5, device=x.device).index_put((_long(2)(x),), x), (5,), 0),
    # 6 gathered rows of 4 added into their bags; with per-sample weights each row is scaled too
    ("embedding_bag", lambda x: F.embedding_bag(_long(2, 3, high=10)(x), x), (10, 4), 2 * 3 * 4),
    ("embedding_bag_weighted", lambda x: F.embedding_bag(_long(6, high=10)(x), x, torch.tensor([0, 2], device=x.device), mode="sum", per_sample_weights=torch.ones(6, device=x.device)), (10, 4), 2 * 6 * 4),
    ("histc", lambda x: torch.histc(x, bins=4), (32,), 32),  # each element binned once
    ("fold", lambda x: F.fold(x, (4, 4), 2), (1, 8, 9), 8 * 9),  # each column element added once
    ("unfold", lambda x: F.unfold(x, 2), (1, 2, 4, 4), 0),  # im2col copies
    ("repeat_interleave", lambda x: x.repeat_interleave(torch.tensor([1, 2], device=x.device), dim=0, output_size=3), (2, 3), 0),
]


@pytest.mark.parametrize("fn, shape, flops", [c[1:] for c in SCAN_SORT_SCATTER], ids=[c[0] for c in SCAN_SORT_SCATTER])
def test_scan_sort_scatter_by_hand(fn: Callable[..., Any], shape: tuple, flops: int) -> None:
    for fake in (False, True):
        assert totals(record(fn, shape, fake=fake)) == (0, flops)


# --- every op the modern models dispatch has a fate --------------------------------------------

MODELS = ["gpt2", "bert", "t5", "llama", "vit"]


def _hf_model(name: str, attention: str, device: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A two-layer model from a transformers config with random weights, and its inputs."""
    transformers = pytest.importorskip("transformers")
    configs = {
        "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, bos_token_id=0, eos_token_id=0, use_cache=False)),
        "bert": (transformers.BertModel, transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=100)),
        "t5": (transformers.T5ForConditionalGeneration, transformers.T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_kv=16, num_heads=4, d_ff=128, vocab_size=100, use_cache=False)),
        "llama": (transformers.LlamaForCausalLM, transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, vocab_size=100, use_cache=False)),
        "vit": (transformers.ViTModel, transformers.ViTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8)),
    }
    cls, config = configs[name]
    config._attn_implementation = attention
    torch.manual_seed(0)
    with torch.device(device):
        model = cls(config).eval()
        if name == "vit":
            return model, {"pixel_values": torch.randn(2, 3, 32, 32)}
        inputs = {"input_ids": torch.randint(0, 100, (2, 7))}
        if device == "meta" and name in ("gpt2", "llama"):
            # without a mask their mask builder calls .item(), which meta tensors refuse
            inputs["attention_mask"] = torch.ones(2, 7, dtype=torch.long)
        if name == "t5":
            inputs["decoder_input_ids"] = torch.randint(0, 100, (2, 5))
    return model, inputs


def _run_hf(name: str, attention: str, fake: bool) -> dict[str, OpCost]:
    recorder = OpRecorder(DEFAULT_REGISTRY)
    if fake:
        model, inputs = _hf_model(name, attention, "cpu")
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        with mode, torch.no_grad(), recorder:
            model(**inputs)
    else:
        model, inputs = _hf_model(name, "eager" if name in ("gpt2", "llama") else attention, "meta")
        with torch.no_grad(), recorder:
            model(**inputs)
    return {o.op: o for o in recorder.take()}


@pytest.mark.parametrize("fake", [False, True], ids=["meta", "fake"])
@pytest.mark.parametrize("name", MODELS)
def test_modern_models_dispatch_no_unsupported_op(name: str, fake: bool) -> None:
    ops = {"sdpa": _run_hf(name, "sdpa", fake), "eager": _run_hf(name, "eager", fake)}
    for recorded in ops.values():
        assert [o.op for o in recorded.values() if o.fate == "unsupported"] == []
    if fake:  # the fused CPU attention kernel, costed as the eager attention's matmuls
        assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops["sdpa"]
    assert totals(ops["sdpa"])[0] == totals(ops["eager"])[0]


@pytest.mark.parametrize("name", MODELS)
def test_modern_models_macs_match_flop_counter_on_the_math_path(name: str) -> None:
    model, inputs = _hf_model(name, "sdpa", "cpu")
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), counter:
        model(**inputs)
    assert 2 * totals(_run_hf(name, "sdpa", fake=True))[0] == counter.get_total_flops()


def test_mixture_of_experts_dispatches_no_unsupported_op() -> None:
    """Mixtral's routing (topk, sort, histc, cumsum) and its experts (_grouped_mm, which PyTorch's
    meta kernel accepts in bfloat16 only)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=128, vocab_size=100, num_local_experts=4, num_experts_per_tok=2)
    model = transformers.MixtralForCausalLM(config).eval().to(torch.bfloat16)
    recorder = OpRecorder(DEFAULT_REGISTRY)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, torch.no_grad(), recorder:
        model(input_ids=torch.zeros(2, 8, dtype=torch.long))
    ops = {o.op: o for o in recorder.take()}
    assert {"aten::_grouped_mm", "aten::topk", "aten::histc"} <= set(ops)
    # 2 layers x 16 tokens x 2 experts each: gate-up [64 -> 2*128] and down [128 -> 64]
    assert ops["aten::_grouped_mm"].macs == 2 * 32 * (64 * 256 + 128 * 64)
    assert totals(ops)[0] > 0


def test_the_counting_cores_dtype_sizes_are_torchs() -> None:
    from fxcost.counting.rows import _DTYPE_BYTES, dtype_bytes

    for name, size in _DTYPE_BYTES.items():  # the table the ONNX route sizes tensors by, without torch
        assert getattr(torch, name).itemsize == size, name
    assert dtype_bytes("float4_e2m1fn_x2") == torch.float4_e2m1fn_x2.itemsize  # one the table lacks: torch's
