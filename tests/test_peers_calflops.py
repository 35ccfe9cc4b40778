"""The calflops preset: calflops 0.3.2's patched-functional count reproduced on fxcost's fake CPU copy.

The reference is calflops itself on the real CPU model, called as its README does:
``calculate_flops(model=..., args=[...], kwargs={...}, output_as_string=False, print_results=False)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.zoo import ZooModel
from fxcost.peers import peer
from tests.peers_zoo import Hand, Odd, check_on_zoo, zoo

TOOL = peer("calflops")

#: where calflops itself fails, with the start of its own error
TOOL_FAILS = {
    "d2l_vgg11": "Attempted to use an uninitialized parameter",  # params read before the forward (lazy layers)
    "alexnet": "Attempted to use an uninitialized parameter",
    "lazy_3d": "Attempted to use an uninitialized parameter",
    "dict_io": "'dict' object has no attribute 'to'",  # it calls .to(device) on every arg and kwarg
    "keyword_only": "'float' object has no attribute 'to'",
}


@pytest.mark.parametrize("entry", zoo())
def test_reproduces_calflops(entry: ZooModel) -> None:
    check_on_zoo(TOOL, entry, imports="calflops", tool_fails=TOOL_FAILS)


def test_what_calflops_counts_by_hand() -> None:
    model = Hand()
    model.fc.weight.requires_grad_(False)
    got = TOOL.reproduce(model, (torch.randn(2, 3, 32, 32),), {})
    by = {(c.module_path, c.what): c.macs for c in got.charges}
    # conv: out elements 2*16*30*30 x C_in 3 x k 3*3
    assert by[("conv", "F.conv2d")] == 2 * 16 * 30 * 30 * 3 * 3 * 3
    assert by[("relu", "F.relu")] == 0 and by[("pool", "F.max_pool2d")] == 0  # FLOPs only
    # torch.matmul: prod([2, 16, 225]) x 16; `q @ k` is not priced at all
    assert by[("", "torch.matmul")] == 2 * 16 * 225 * 16
    assert by[("fc", "F.linear")] == 2 * 3600 * 10  # input elements x out_features
    assert got.macs == 2 * 16 * 30 * 30 * 27 + 2 * 16 * 225 * 16 + 2 * 3600 * 10
    assert got.flops == (
        2 * (2 * 16 * 30 * 30 * 27) + 16 * 2 * 30 * 30  # conv: 2 x MACs + one add per output for the bias
        + 2 * 16 * 30 * 30 + 2 * 16 * 30 * 30  # relu, max pool: the input's elements
        + 2 * 16 * 15 * 15  # h.add(h); `h + h` and the kept gelu cost nothing
        + 2 * (2 * 16 * 225 * 16) + 2 * (2 * 3600 * 10)  # matmul, linear: 2 x MACs
    )
    assert got.params == 16 * 3 * 3 * 3 + 16  # the frozen fc.weight is not counted
    assert any(u.startswith("operator @ x1") for u in got.unseen)
    assert any(u.startswith("F.gelu x1 (called through a name kept") for u in got.unseen)


def test_calflops_quirks_by_hand() -> None:
    got = TOOL.reproduce(Odd(), (torch.randn(1, 4, 5, 5),), {})
    # ConvTranspose2d: W[1] = 4 divided by groups 2 again: input positions 5*5 x k 9 x C_in 4 x 2
    # (the truth is x 4); its bias term: W[1] 4 x the forward conv's output (5-3)//2+1 = 2, so 2*2
    conv_t = 5 * 5 * 9 * 4 * 2
    # the Linear is read once per parent in the children() walk: [1, 3, 4] elements 12 x out 4, twice
    linear = 12 * 4
    assert got.macs == conv_t + 2 * linear
    lstm = 2 * 24 * 4 - 24 + 2 * 24 * 6 - 24 + 10 * 6 + (24 + 24)  # one step of one layer (gates 4*6 = 24)
    assert got.flops == (
        2 * conv_t + 4 * 2 * 2
        + 1 * 4 * 5 * 5  # interpolate by scale 2: the input's elements, the scale dropped
        + 4 * 3 * 4  # mul [2, 3, 4] x [4]: paired from the left, max(2, 4) * max(3, 1) * max(4, 1)
        + 2 * (2 * linear) + lstm * 1 * 3  # the LSTM hook x batch 1 x seq 3, 0 MACs
    )
    assert got.params == (4 * 4 * 9 + 8) + (4 * 4 + 4) + (24 * 4 + 24 * 6 + 24 + 24)  # the tied Linear once


def test_attention_costs_nothing_by_hand() -> None:
    mha = nn.MultiheadAttention(8, 2, batch_first=True)

    class _M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, _ = self.attn(x, x, x)  # need_weights: torch.bmm, softmax, torch.bmm inside
            q = x.view(3, 5, 2, 4).transpose(1, 2)
            return a + F.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(3, 5, 8)

    got = TOOL.reproduce(_M(), (torch.randn(3, 5, 8),), {})  # [batch 3, tokens 5, dim 8], 2 heads
    # only the projections: packed in-projection [5, 3, 8] elements 120 x 3E 24, out-projection
    # [15, 8] elements 120 x 8; torch.bmm and SDPA are not patched by calflops
    assert got.macs == 120 * 24 + 120 * 8
    assert any(u.startswith("F.scaled_dot_product_attention x1") for u in got.unseen)
    assert any(u.startswith("torch.bmm in F.multi_head_attention_forward x2") for u in got.unseen)
