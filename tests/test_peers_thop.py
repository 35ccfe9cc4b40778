"""fxcost's reproduction of thop 0.1.1 (fxcost/peers/thop.py): the tool's own figures on the zoo,
and thop's per-module rules pinned by hand arithmetic (which need no thop installed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from examples.zoo import ZooModel
from fxcost.peers.thop import TOOL, reproduce
from tests.peers_zoo import check_on_zoo, zoo

#: zoo models thop itself cannot be called on, with (a part of) its error
TOOL_FAILS = {
    "keyword_only": "keyword-only parameter 'scale' cannot be given positionally",  # thop calls model(*inputs)
}
SLOW = {"vgg11", "vgg13", "vgg16", "vgg19_paper", "hf_gpt2", "hf_bert_base", "hf_t5_small"}


@pytest.mark.parametrize("entry", zoo(SLOW))
def test_reproduces_thop_on_the_zoo(entry: ZooModel) -> None:
    check_on_zoo(TOOL, entry, imports="thop", tool_fails=TOOL_FAILS)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        self.emb = nn.Embedding(7, 16)  # no rule: 0 MACs, 7*16 params not counted
        self.gelu = nn.GELU()  # no rule
        self.token = nn.Parameter(torch.zeros(16))  # a container's own parameter: not counted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.act(self.bn(self.conv(x)))).flatten(1)
        h = h + self.token + self.emb(torch.zeros(2, dtype=torch.long))  # the adds are outside every hook
        return self.fc(self.gelu(h)) @ torch.ones(10, 10)


def test_thop_rules_by_hand() -> None:
    x = torch.randn(2, 3, 32, 32)
    r = reproduce(_Net(), (x,), {})
    by = {c.module_path: c.macs for c in r.charges}
    assert by == {
        "conv": 2 * 16 * 30 * 30 * 3 * 3 * 3,  # out elements 2*16*30*30 x C_in 3 x k 3*3, no bias
        "bn": 2 * (2 * 16 * 30 * 30) * 2,  # 2 x input elements, x 2 as affine
        "act": 0,  # ReLU: zero_ops
        "pool": (30 * 30 / 1 + 1) * 2 * 16,  # (prod(in/out) + 1) x output elements 2*16*1*1
        "fc": 2 * 10 * 16,  # out elements 2*10 x in_features 16, bias not counted
    }
    assert r.macs == sum(by.values())
    # conv 3*16*9 (no bias) + bn 16+16 + fc 16*10+10; the embedding, GELU and token are not counted
    assert r.params == 3 * 16 * 9 + 2 * 16 + 16 * 10 + 10
    assert any(u.startswith("Embedding x1") for u in r.unseen)
    assert any(u.startswith("aten::mm") or u.startswith("aten::matmul") for u in r.unseen)


def test_thop_softmax_upsample_rnn_by_hand() -> None:
    net = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Softmax(dim=1))
    r = reproduce(net, (torch.randn(1, 4, 3, 3),), {})
    # upsample: 1*4*6*6 output elements x 11 (bilinear); softmax over 4 channels: 36 rows x (3*4 - 1)
    assert r.macs == 1 * 4 * 6 * 6 * 11 + 36 * (3 * 4 - 1)
    lstm = nn.Sequential(nn.LSTM(8, 4, batch_first=True))
    r = reproduce(lstm, (torch.randn(2, 5, 8),), {})
    # one LSTM cell: 4 gates x (4*(8+4) + 4 + 2*4 bias) + 3*4 + 4; x 5 steps x 2 samples
    assert r.macs == (4 * (4 * (8 + 4) + 4 + 2 * 4) + 3 * 4 + 4) * 5 * 2
    # twice-called module: MACs twice, params once
    lin = nn.Linear(4, 4)
    twice = nn.Sequential(lin, lin)
    r = reproduce(twice, (torch.randn(1, 4),), {})
    # named_children lists the shared child once: its two calls' MACs, its params once
    assert (r.macs, r.params) == (2 * 4 * 4, 4 * 4 + 4)


def test_lazy_layers_get_no_hook() -> None:
    net = nn.Sequential(nn.LazyLinear(3))
    r = reproduce(net, (torch.randn(2, 5),), {})
    assert (r.macs, r.params) == (0, 0)  # its type is LazyLinear when the hooks go on
