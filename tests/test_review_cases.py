"""Cases a review found: buffers, optional arguments, unbatched pooling, user hooks, dtypes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcost


class Normalize(nn.Module):
    """Buffers used through views, as torchvision-style input normalization does."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("std", torch.ones(3))
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv((x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1))


def test_buffers_counted_once() -> None:
    report = fxcost.analyze(Normalize(), input_size=(1, 3, 8, 8))
    assert report.total().buffers == 3 + 3  # mean and std, once each
    assert report.total().params == 4 * 3 + 4


class BufferMatmul(nn.Module):
    """a @ b uses buffers alone: FX computes it while tracing and keeps the result as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.randn(8, 8))
        self.register_buffer("b", torch.randn(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.a @ self.b)


def test_trace_time_ops_are_not_lost() -> None:
    report = fxcost.analyze(BufferMatmul(), input_size=(2, 8))
    # x @ (a @ b): 2*8*8 MACs at run time + 8*8*8 folded into a constant while tracing
    assert report.total().macs == 2 * 8 * 8 + 8 * 8 * 8
    assert report.layers[0].kind == "constant" and report.layers[0].macs == 8 * 8 * 8
    assert report.total().buffers == 2 * 64  # the folded constant is not a buffer


class Masked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return y * scale


def test_optional_arguments_are_traced_as_given() -> None:
    plain = fxcost.analyze(Masked(), input_size=(2, 4))
    assert [i.name for i in plain.inputs] == ["x"]
    masked = fxcost.analyze(Masked(), example_inputs=(torch.zeros(2, 4), torch.ones(2, 4)), example_kwargs={"scale": 2.0})
    assert [i.name for i in masked.inputs] == ["x", "mask"]
    assert masked.total().flops == plain.total().flops + 2 * 4  # the mask multiply


def test_adaptive_pool_unbatched() -> None:
    pool = nn.AdaptiveAvgPool2d((2, 2))
    unbatched = fxcost.analyze(pool, input_size=(3, 8, 8)).total().flops
    batched = fxcost.analyze(pool, input_size=(1, 3, 8, 8)).total().flops
    assert unbatched == batched == 3 * 8 * 8  # 2 windows of 4 per dimension: every element once


def test_user_hooks_do_not_run() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    seen: list[str] = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(str(o.abs().max().item())))
    fxcost.analyze(model, input_size=(1, 4))
    assert seen == []
    assert len(model[0]._forward_hooks) == 1  # and the user's hook is still registered


def test_mismatched_input_dtype_is_an_error() -> None:
    with pytest.raises(fxcost.ShapeError, match="dtype"):
        fxcost.analyze(nn.Linear(4, 4), example_inputs=torch.zeros(1, 4, dtype=torch.float16))


def test_accumulating_scatter_is_not_free() -> None:
    class Accumulate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(3).index_put((torch.tensor([0, 1, 1]),), x, accumulate=True)

    report = fxcost.analyze(Accumulate(), input_size=(3,))
    assert report.unsupported == ()
    fates = {o.op: o.fate for r in report.layers for o in r.ops}
    assert fates["aten::index_put"] == "formula"
    assert report.total().flops == 3  # three source elements, each added into its position
