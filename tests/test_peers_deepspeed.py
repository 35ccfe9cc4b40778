"""The deepspeed preset: DeepSpeed 0.19.8's flops profiler reproduced on fxcost's fake CPU copy.

The reference is the profiler itself on the real CPU model, called as its docs do:
``get_model_profile(model=..., args=[...], kwargs={...}, print_profile=False, as_string=False)``.
DeepSpeed imports and profiles on a CPU-only machine (its accelerator falls back to CPU).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.zoo import ZooModel
from fxcost.peers import peer
from tests.peers_zoo import Hand, Odd, check_on_zoo, zoo

TOOL = peer("deepspeed")

@pytest.mark.parametrize("entry", zoo())
def test_reproduces_deepspeed(entry: ZooModel) -> None:
    check_on_zoo(TOOL, entry, imports="deepspeed.profiling.flops_profiler")


def test_what_deepspeed_counts_by_hand() -> None:
    model = Hand()
    model.fc.weight.requires_grad_(False)
    got = TOOL.reproduce(model, (torch.randn(2, 3, 32, 32),), {})
    by = {(c.module_path, c.what): c.macs for c in got.charges}
    # conv: out elements 2*16*30*30 x C_in 3 x k 3*3
    assert by[("conv", "F.conv2d")] == 2 * 16 * 30 * 30 * 3 * 3 * 3
    assert by[("relu", "F.relu")] == 0 and by[("pool", "F.max_pool2d")] == 0  # FLOPs only
    # `q @ k` and torch.matmul alike: prod([2, 16, 225]) x 16
    assert by[("", "Tensor.__matmul__")] == by[("", "torch.matmul")] == 2 * 16 * 225 * 16
    assert by[("fc", "F.linear")] == 2 * 3600 * 10  # input elements x out_features
    assert got.macs == 2 * 16 * 30 * 30 * 27 + 2 * (2 * 16 * 225 * 16) + 2 * 3600 * 10
    assert got.flops == (
        2 * (2 * 16 * 30 * 30 * 27) + 16 * 2 * 30 * 30  # conv: 2 x MACs + one add per output for the bias
        + 2 * 16 * 30 * 30 + 2 * 16 * 30 * 30  # relu, max pool: the input's elements
        + 2 * 16 * 15 * 15  # h.add(h); `h + h` and the kept gelu cost nothing
        + 2 * 2 * (2 * 16 * 225 * 16) + 2 * (2 * 3600 * 10)  # two matmuls, linear: 2 x MACs
    )
    assert got.params == 16 * 3 * 3 * 3 + 16 + 3600 * 10  # frozen fc.weight counted too
    assert any(u.startswith("F.gelu x1 (called through a name kept") for u in got.unseen)


def test_deepspeed_rules_by_hand() -> None:
    got = TOOL.reproduce(Odd(), (torch.randn(1, 4, 5, 5),), {})
    # ConvTranspose2d: input positions 5*5 x k 9 x C_in 4 x C_out/g 4; its bias: C_out 8 x the
    # transposed output (5-1)*2 + (3-1) + 1 = 11, so 11*11
    conv_t = 5 * 5 * 9 * 4 * 4
    linear = 12 * 4  # [1, 3, 4] elements 12 x out 4, the module once whatever its parents
    assert got.macs == conv_t + linear
    lstm = 2 * 24 * 4 - 24 + 2 * 24 * 6 - 24 + 10 * 6 + (24 + 24)  # one step of one layer (gates 4*6 = 24)
    assert got.flops == (
        2 * conv_t + 8 * 11 * 11
        + 1 * 4 * 5 * 5 * 2 ** 2  # interpolate by scale 2: the input's elements x 2^(4-2)
        + 2 * 3 * 4  # mul [2, 3, 4] x [4]: the broadcast result's elements
        + 2 * linear + lstm * 1 * 3  # the LSTM hook x batch 1 x seq 3, 0 MACs
    )
    assert got.params == (4 * 4 * 9 + 8) + (4 * 4 + 4) + (24 * 4 + 24 * 6 + 24 + 24)  # the tied Linear once


def test_attention_through_sdpa_and_mha_by_hand() -> None:
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 5, 8)  # [batch 3, tokens 5, dim 8], heads 2 of dim 4

    class _M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, _ = self.attn(x, x, x)  # need_weights: bmm, softmax, bmm inside
            q = x.view(3, 5, 2, 4).transpose(1, 2)
            return a + F.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(3, 5, 8)

    got = TOOL.reproduce(_M(), (x,), {})
    packed = 15 * 8 * 24  # in-projection: [5, 3, 8] elements x 3E 24
    scores = 6 * 5 * 4 * 5  # Q K^T: [B*H 6, 5, 4] x 5 (and P V: [6, 5, 5] x 4, the same)
    out = 15 * 8 * 8  # out-projection: [15, 8] elements x out 8
    sdpa = 2 * (6 * 5 * 4 * 5)  # F.scaled_dot_product_attention: its two matmuls, [3, 2, 5, 4] x 5 and x 4
    assert got.macs == packed + 2 * scores + out + sdpa
