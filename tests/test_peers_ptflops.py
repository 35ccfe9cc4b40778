"""fxcost's reproduction of ptflops 0.7.5 (fxcost/peers/ptflops.py), default (pytorch) backend:
the tool's own figures on the zoo, and its rules pinned by hand arithmetic (no ptflops needed)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.zoo import ZooModel
from fxcost.peers.ptflops import TOOL, reproduce
from tests.peers_zoo import check_on_zoo, zoo

#: zoo models ptflops itself fails on or cannot be called on, with (a part of) its error; the
#: reproduction must fail the same way
TOOL_FAILS = {
    "d2l_vgg11": "has no attribute '__flops__'",  # lazy layers: accumulate_flops reads __flops__, never set
    "alexnet": "has no attribute '__flops__'",
    "lazy_3d": "has no attribute '__flops__'",
    "var_args": "variadic positional parameter 'xs'",  # input_constructor gives model(batch) or model(**batch)
}
SLOW = {"vgg11", "vgg13", "vgg16", "vgg19_paper", "hf_gpt2", "hf_bert_base", "hf_t5_small"}


@pytest.mark.parametrize("entry", zoo(SLOW))
def test_reproduces_ptflops_on_the_zoo(entry: ZooModel) -> None:
    def alike(e: BaseException) -> None:
        with pytest.raises(type(e)):
            reproduce(entry.build(), *entry.inputs())

    check_on_zoo(TOOL, entry, imports="ptflops", tool_fails=TOOL_FAILS, fails_alike=alike)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        self.norm = nn.LayerNorm(10)
        self.silu = nn.SiLU()  # no module hook; F.silu inside it is patched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.act(self.conv(x))).flatten(1)
        h = self.silu(self.norm(self.fc(h)))
        h = h + h  # an operator: Tensor.__add__, not the patched Tensor.add
        return torch.add(h, h).matmul(torch.ones(10, 4))


def test_ptflops_rules_by_hand() -> None:
    b = 2
    r = reproduce(_Net(), (torch.randn(b, 3, 32, 32),), {})
    modules = (
        3 * 3 * 3 * 16 * (b * 30 * 30) + b * 16 * 30 * 30  # conv: k*C_in*C_out per output position + bias adds
        + b * 16 * 30 * 30  # nn.ReLU hook: output elements
        + b * 16 * 30 * 30  # nn.AdaptiveAvgPool2d hook: input elements
        + b * (16 * 10 + 10)  # nn.Linear: prod(*) x (in*out + out)
        + b * 10  # nn.LayerNorm: input elements, never doubled (no `affine` attribute)
    )
    functional = (
        b * 16 * 30 * 30  # F.relu inside nn.ReLU, again
        + b * 16 * 30 * 30  # F.adaptive_avg_pool2d inside nn.AdaptiveAvgPool2d, again
        + b * 10  # F.silu inside nn.SiLU
    )
    tensor_ops = b * 10 + b * 10 * 4  # torch.add: elements; Tensor.matmul: prod(a) x b[-1]
    assert r.macs == int(modules / b + functional + tensor_ops)  # only the hooks' total is per sample
    assert r.params == 3 * 16 * 9 + 16 + 16 * 10 + 10 + 10 + 10


def test_ptflops_interpolate_and_mha_by_hand() -> None:
    class Up(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=0.5, mode="linear")

    r = reproduce(Up(), (torch.randn(1, 2, 8),), {})
    assert r.macs == int(1 * 2 * 8 * 0.5)  # elements x scale ** spatial dims (a float)
    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x)[0]  # need_weights=True by default

    r = reproduce(SelfAttention(), (torch.randn(1, 3, 8),), {})
    L, E, h = 3, 8, 2
    hook = (L * E + 3 * L * E * E + 3 * L * E  # scaling, q/k/v projections, their bias
            + h * (L * L * (E // h) + L * L + L * L * (E // h))  # QK^T, softmax, AV per head
            + L * E * (E + 1))  # out projection
    # need_weights=True: torch.bmm twice and softmax inside multi_head_attention_forward, patched
    inner = (h * L * (E // h)) * L + h * L * L + (h * L * L) * (E // h)
    assert r.macs == hook + inner


def test_an_op_ptflops_prices_through_a_patched_name_is_not_listed_unseen() -> None:
    class Scores(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            s = torch.matmul(q, q.transpose(1, 2))  # patched: priced, so its aten::bmm is seen
            return s @ q  # an operator: not patched, its aten::bmm unseen

    got = reproduce(Scores(), (torch.randn(2, 4, 8),), {})
    assert got.macs == 2 * 4 * 8 * 4  # torch.matmul: prod(q) x 4; the @ costs nothing in ptflops
    assert [u for u in got.unseen if u.startswith("aten::bmm")] == ["aten::bmm x1 (outside every hooked module, through no patched name)"]


def test_extra_keywords_reach_the_forward_as_given() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, **kw: Any) -> torch.Tensor:
            return self.fc(x) * kw["scale"]  # a KeyError if ptflops' batch nested the keywords

    got = reproduce(Scaled(), (torch.randn(2, 4),), {"scale": 2.0})
    # the Linear over 2 rows: 2 x (4 x 3 + 3 bias) = 30, divided by ptflops' batch of 1 (keyword inputs)
    assert got.macs == 2 * (4 * 3 + 3)
    pytest.importorskip("ptflops")
    assert TOOL.run_tool is not None
    assert TOOL.run_tool(Scaled(), (torch.randn(2, 4),), {"scale": 2.0}).macs == got.macs  # ptflops itself
