"""The ops real models use beyond the classic layers (issue 11): each priced, checked against
PyTorch's FlopCounterMode where it has a formula for the op and by hand where it has none (said
at each test), and never a silent zero."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from fxcost.counting.arithmetic import Cost


class Fn(nn.Module):
    def __init__(self, f: Callable[..., Any]) -> None:
        super().__init__()
        self.f = f

    def forward(self, *xs: Any) -> Any:
        return self.f(*xs)


def op_costs(f: Callable[..., Any], *shapes: tuple[int, ...], **kwargs: Any) -> dict[str, Cost]:
    """fxcost's cost of each op ``f`` dispatches on inputs of ``shapes``, by op name."""
    report = fxcost.analyze(Fn(f), input_size=list(shapes), tracer="eager", **kwargs)
    assert not report.unsupported, report.unsupported
    out: dict[str, Cost] = {}
    for r in report.layers:
        for o in r.ops:
            out[o.op] = out.get(o.op, Cost()) + Cost(o.macs, o.flops)
    return out


def flop_counter(f: Callable[..., Any], *xs: Any) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        f(*xs)
    return int(counter.get_total_flops())


# --- the matmul family's scales -------------------------------------------------------------


def test_addbmm_sums_its_products() -> None:
    # FlopCounterMode has no formula for addbmm: by hand. [3, 5] += sum over 4 of [3, 6] @ [6, 5]
    cost = op_costs(lambda b, x, y: torch.addbmm(b, x, y), (3, 5), (4, 3, 6), (4, 6, 5))["aten::addbmm"]
    assert cost.macs == 4 * 3 * 6 * 5  # 360: each output element accumulates 4 * 6 products
    assert cost.flops == 2 * cost.macs + 3 * 5  # + adding the input once per output element


@pytest.mark.parametrize(("beta", "alpha", "extra"), [(1, 1, 1), (0, 1, 0), (0.5, 1, 2), (1, 2.0, 2), (0.5, 2.0, 3)],
                         ids=["plain", "beta0", "beta", "alpha", "both"])
def test_baddbmm_counts_its_scales(beta: float, alpha: float, extra: int) -> None:
    # per output element: the add (none when beta is 0: the input is ignored), one multiply per
    # scale that is not 1; FlopCounterMode counts the bmm's 2 * B * n * k * m and nothing else
    f = lambda b, x, y: torch.baddbmm(b, x, y, beta=beta, alpha=alpha)  # noqa: E731
    cost = op_costs(f, (4, 3, 5), (4, 3, 6), (4, 6, 5))["aten::baddbmm"]
    assert 2 * cost.macs == flop_counter(f, torch.randn(4, 3, 5), torch.randn(4, 3, 6), torch.randn(4, 6, 5))
    assert cost.flops == 2 * cost.macs + extra * 4 * 3 * 5


def test_scaled_mm_of_float8_counts_as_flop_counter_mode() -> None:
    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch._scaled_mm(a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn).t(), torch.tensor(1.0),
                                torch.tensor(1.0), out_dtype=torch.float32)

    cost = op_costs(f, (16, 32), (48, 32))["aten::_scaled_mm"]  # float8 matmuls take multiples of 16
    assert 2 * cost.macs == flop_counter(f, torch.randn(16, 32), torch.randn(48, 32)) == 2 * 16 * 32 * 48
    assert cost.flops == 2 * cost.macs + 16 * 48  # + applying the two scales to each output element


def test_sparse_times_dense_costs_per_nonzero() -> None:
    # FlopCounterMode prices a sparse mm as dense (2 * n * k * m); what runs is one
    # multiply-add per stored element and output column. Only real sparse tensors know their
    # nonzeros: with --real.
    indices = torch.tensor([[0, 1, 2, 2], [1, 0, 2, 4]])
    sparse = torch.sparse_coo_tensor(indices, torch.ones(4), (3, 5))
    dense = torch.randn(5, 7)
    report = fxcost.analyze(Fn(lambda s, d: torch.sparse.mm(s, d)), example_inputs=(sparse, dense), real=True,
                            tracer="eager")
    assert report.total().macs == 4 * 7  # nnz x columns


# --- distances, grids, spectra --------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols", "p", "mode"), [(7, 9, 2.0, None), (30, 9, 2.0, None), (7, 9, 2.0, "use_mm_for_euclid_dist"),
                                                         (7, 9, 1.0, None), (7, 9, 3.0, None)],
                         ids=["p2-pairwise", "p2-large-by-mm", "p2-forced-mm", "p1", "p3"])
def test_cdist(rows: int, cols: int, p: float, mode: str | None) -> None:
    # FlopCounterMode has no formula for _cdist_forward: by hand; the matmul path as torch's own
    # _euclidean_dist computes it (aten/src/ATen/native/Distance.cpp): x1.pow(2).sum(-1) and the
    # same for x2, -2 * x1, a matmul of [P, M + 2] x [M + 2, R], clamp_min, sqrt
    dims, batch = 4, 2
    kwargs = {"compute_mode": mode} if mode else {}
    costs = op_costs(lambda a, b: torch.cdist(a, b, p=p, **kwargs), (batch, rows, dims), (batch, cols, dims))
    by_mm = p == 2 and (mode or rows > 25)
    # torch.cdist calls _euclidean_dist itself when it takes the matmul path, _cdist_forward otherwise
    cost = costs["aten::_euclidean_dist" if by_mm else "aten::_cdist_forward"]
    if by_mm:
        macs = batch * rows * cols * (dims + 2)
        by_hand = 2 * batch * (rows + cols) * dims + batch * rows * dims + 2 * macs + 2 * batch * rows * cols
        assert cost == Cost(macs, by_hand)
    else:
        root = 0 if p == 1 else 1
        assert cost == Cost(0, 2 * rows * cols * (3 * dims + root))  # subtract, square|abs, add per dim; the root


def test_affine_grid_and_grid_sample() -> None:
    # FlopCounterMode has no formula for either: by hand
    grid = op_costs(lambda t: F.affine_grid(t, [2, 3, 8, 8], align_corners=False), (2, 2, 3))["aten::affine_grid_generator"]
    assert grid == Cost(2 * 8 * 8 * 3 * 2, 2 * 2 * 8 * 8 * 3 * 2)  # each point [x, y, 1] times theta^T [3, 2]
    for mode, taps in (("bilinear", 4), ("bicubic", 16)):
        cost = op_costs(lambda x, g, mode=mode: F.grid_sample(x, g, mode=mode, align_corners=False),
                        (2, 3, 8, 8), (2, 5, 5, 2))["aten::grid_sampler_2d"]
        assert cost == Cost(0, (2 * taps - 1) * 2 * 3 * 5 * 5), mode  # taps multiplies and taps - 1 adds
    nearest = fxcost.analyze(Fn(lambda x, g: F.grid_sample(x, g, mode="nearest", align_corners=False)),
                             input_size=[(2, 3, 8, 8), (2, 5, 5, 2)], tracer="eager")
    assert nearest.total().flops == 0 and not nearest.unsupported  # a gather of the nearest values


@pytest.mark.parametrize(("name", "f", "shape", "expected"), [
    # 5 * n * ceil(log2 n) per complex transform of length n; real-input or -output ones half
    ("aten::_fft_c2c", lambda x: torch.fft.fft(x.to(torch.complex64)), (2, 16), 5 * 2 * 16 * 4),
    ("aten::_fft_r2c", lambda x: torch.fft.rfft(x), (2, 16), 5 * 2 * 16 * 4 // 2),
    ("aten::_fft_c2c", lambda x: torch.fft.fft2(x.to(torch.complex64)), (2, 8, 16), 5 * 2 * 8 * 16 * (3 + 4)),
    ("aten::_fft_r2c", lambda x: torch.fft.rfft(x, norm="ortho"), (2, 12), 5 * 2 * 12 * 4 // 2 + 2 * 12),  # + normalizing
], ids=["fft", "rfft", "fft2", "rfft-ortho-12"])
def test_fft(name: str, f: Callable[..., Any], shape: tuple[int, ...], expected: int) -> None:
    # FlopCounterMode has no formula for FFTs: the radix-2 Cooley-Tukey count, by hand
    assert op_costs(f, shape)[name] == Cost(0, expected)


def test_irfft_counts_the_real_output() -> None:
    costs = op_costs(lambda x: torch.fft.irfft(torch.fft.rfft(x)), (2, 16))
    assert costs["aten::_fft_c2r"] == Cost(0, 5 * 2 * 16 * 4 // 2 + 2 * 16)  # irfft normalizes by 1/n by default


# --- quantization ----------------------------------------------------------------------------


def test_fake_quantize_costs_six_per_element() -> None:
    # FlopCounterMode has no formula: quantize (divide, add the zero point, round, clamp) and
    # dequantize (subtract it, multiply): 6 per element
    cost = op_costs(lambda x: torch.fake_quantize_per_tensor_affine(x, 0.1, 0, 0, 255), (2, 8))
    assert cost["aten::fake_quantize_per_tensor_affine_cachemask"] == Cost(0, 6 * 2 * 8)


def test_a_dynamic_int8_linear_counts_its_params_and_macs() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    report = fxcost.analyze(quantized, input_size=(2, 16))
    assert not report.unsupported
    # the float model's figures: its parameters, and FlopCounterMode's FLOPs of a real forward / 2
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == flop_counter(model, torch.randn(2, 16))
    # int8 weights (1 byte each), float32 biases
    assert report.total().param_bytes == (16 * 32 + 32 * 4) * 1 + (32 + 4) * 4
    assert report.total().trainable_params == 0


@pytest.mark.parametrize(("cls", "bidirectional"), [(nn.LSTM, False), (nn.LSTM, True), (nn.GRU, False)],
                         ids=["lstm", "bilstm", "gru"])
def test_a_dynamic_int8_rnn_counts_its_params_and_macs(cls: type[nn.RNNBase], bidirectional: bool) -> None:
    model = cls(8, 16, num_layers=2, batch_first=True, bidirectional=bidirectional)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(model), {cls}, dtype=torch.qint8)
    report = fxcost.analyze(quantized, input_size=(2, 5, 8))
    assert not report.unsupported
    # the float layer's own parameters; FlopCounterMode has no formula for recurrent ops (0), so
    # MACs by hand: per layer, direction and position a [G*H, in] and a [G*H, H] matmul
    gates, directions = (4 if cls is nn.LSTM else 3) * 16, 2 if bidirectional else 1
    assert report.total().params == sum(p.numel() for p in model.parameters())
    macs = 2 * 5 * directions * (gates * 8 + gates * 16 + gates * 16 * directions + gates * 16)
    assert report.total().macs == macs
    biases = 2 * directions * 2 * gates
    assert report.total().bias_params == biases  # bias_ih_l0, bias_hh_l0, ...: biases
    assert report.total().param_bytes == (report.total().params - biases) * 1 + biases * 4


# --- custom ops -------------------------------------------------------------------------------

@torch.library.custom_op("fxcosttest::twice_mm", mutates_args=())
def twice_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b) @ b


@twice_mm.register_fake
def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[1])


@torch.library.custom_op("fxcosttest::reads_values", mutates_args=())
def reads_values(a: torch.Tensor) -> torch.Tensor:
    return a * float(a.sum())


@reads_values.register_fake
def _(a: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(a)


class WithCustomOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return twice_mm(x, self.w)


@pytest.mark.parametrize("tracer", ["auto", "symbolic", "export", "eager"])
def test_a_custom_op_is_counted_through_its_python_implementation(tracer: str) -> None:
    report = fxcost.analyze(WithCustomOps(), input_size=(4, 8), tracer=tracer)
    # FlopCounterMode sees the custom op as one op it has no formula for (0), not the two mms its
    # implementation runs: by hand, [4, 8] @ [8, 8] twice
    assert flop_counter(WithCustomOps(), torch.randn(4, 8)) == 0
    assert report.total().macs == 2 * 4 * 8 * 8
    [op] = [o for r in report.layers for o in r.ops if o.op == "fxcosttest::twice_mm"]
    assert op.fate == "free" and "through its Python implementation" in op.reason


def test_a_custom_op_whose_code_needs_values_stays_unsupported() -> None:
    report = fxcost.analyze(Fn(lambda a: reads_values(a)), input_size=(4, 8), tracer="eager")
    [u] = report.unsupported
    assert u.op == "fxcosttest::reads_values"
    [op] = [o for r in report.layers for o in r.ops if o.op == u.op]
    assert "does not run on data-free tensors" in op.reason


def test_transformers_grouped_mm_fallback_costs_as_grouped_mm() -> None:
    pytest.importorskip("transformers")
    import transformers.integrations.moe  # noqa: F401  (registers the op)

    rule = fxcost.DEFAULT_REGISTRY.lookup("transformers::grouped_mm_fallback")
    assert rule.formula is fxcost.DEFAULT_REGISTRY.lookup("aten::_grouped_mm").formula
    # 6 routed rows, 3 experts of [8, 5]: every row through one expert, 6 * 8 * 5 MACs
    assert rule.formula is not None
    cost = rule.formula(torch.Size([6, 8]), torch.Size([3, 8, 5]), torch.Size([3]), out=torch.Size([6, 5]))
    assert cost == Cost(6 * 8 * 5, 2 * 6 * 8 * 5)
    assert math.prod((6, 8, 5)) == 240
