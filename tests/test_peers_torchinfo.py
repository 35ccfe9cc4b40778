"""The torchinfo preset: torchinfo 1.8.0's Mult-Adds and params reproduced on fxcost's meta copy.

The reference is torchinfo itself, called as its README does
(``summary(model, input_data=[...], verbose=0)``), on the real CPU model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from examples.zoo import ZooModel
from fxcost.errors import FxcostError
from fxcost.peers import peer
from fxcost.peers import torchinfo as ti
from tests.peers_zoo import check_on_zoo, zoo

TOOL = peer("torchinfo")

#: where torchinfo itself fails, with (a part of) its error; the reproduction must fail there too:
#: the root returns a dataclass, which torchinfo's calculate_size refuses (a TypeError it re-raises)
TOOL_FAILS = {"dataclass_out": "Failed to run torchinfo"}
#: the real forwards that take the longest (4-6 s each on 2 cores); the rest of the zoo takes ~20 s
HEAVY = {"hf_gpt2", "hf_bert_base", "vit_b_16"}


def _fails_too(entry: ZooModel) -> None:
    with pytest.raises(FxcostError, match="as it does itself"):
        TOOL.reproduce(entry.build(), *entry.inputs())


@pytest.mark.parametrize("entry", zoo(HEAVY))
def test_reproduces_torchinfo(entry: ZooModel) -> None:
    check_on_zoo(TOOL, entry, imports="torchinfo", tool_fails=TOOL_FAILS, fails_alike=lambda e: _fails_too(entry))


def test_tied_head_counted_twice_as_torchinfo_does() -> None:
    pytest.importorskip("transformers")
    from examples import hf_models

    model = hf_models.gpt2()
    got = TOOL.reproduce(model, (torch.zeros(1, 8, dtype=torch.int64),), {})
    # GPT-2 small has 124,439,808 parameters; torchinfo adds the lm_head leaf, which is wte's
    # weight again: 50257 * 768 = 38,597,376 more
    assert got.params == 124_439_808 + 50257 * 768 == 163_037_184


class _Hand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.act = nn.ReLU()
        self.proj = nn.Linear(16, 8)
        self.scale = nn.Parameter(torch.ones(8))  # the root's own: a container's, never priced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))  # [2, 16, 30, 30]
        t = self.proj(h.flatten(2).transpose(1, 2))  # [2, 900, 16] -> [2, 900, 8]
        return t * self.scale


def test_torchinfo_rules_by_hand() -> None:
    got = TOOL.reproduce(_Hand(), (torch.randn(2, 3, 32, 32),), {})
    by_module = {c.module_path: c.macs for c in got.charges}
    # conv: weight 16*3*3*3 and bias 16, each element x N 2 x spatial out 30*30 (C_out not a factor)
    assert by_module["conv"] == (16 * 3 * 3 * 3 + 16) * 2 * 30 * 30
    # proj over [2, 900, 16]: weight 16*8 and bias 8 x the first output dim 2 only (not 2*900)
    assert by_module["proj"] == (16 * 8 + 8) * 2
    # ReLU has no weight/bias: no charge; the `* scale` runs in the root, a container: not seen
    assert set(by_module) == {"conv", "proj"}
    assert got.macs == (16 * 3 * 3 * 3 + 16) * 2 * 30 * 30 + (16 * 8 + 8) * 2
    # params: the leaves' 448 + 136, plus the root's leftover: its own scale, 8
    assert got.params == 16 * 3 * 3 * 3 + 16 + 16 * 8 + 8 + 8
    assert any("aten::mul" in u and "not a leaf" in u for u in got.unseen)
    assert any("aten::relu" in u for u in got.unseen)
    assert any("own parameters scale" in u for u in got.unseen)


def test_trainable_params_by_hand() -> None:
    model = _Hand()
    model.conv.requires_grad_(False)
    # all but the frozen conv's 16*3*3*3 + 16
    assert ti.trainable_params(model, (torch.randn(2, 3, 32, 32),), {}) == 16 * 8 + 8 + 8


class _TiedTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.block = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.block(self.emb(ids))))  # [2, 5] -> [2, 5, 4] -> [2, 5, 10]


def test_tied_and_recursive_by_hand() -> None:
    got = TOOL.reproduce(_TiedTwice(), (torch.zeros(2, 5, dtype=torch.int64),), {})
    # emb 10*4 x N 2; block (4*4 + 4) x 2, and again for its second call; head 10*4 x 2
    assert got.macs == 10 * 4 * 2 + 2 * (4 * 4 + 4) * 2 + 10 * 4 * 2
    assert [c.module_path for c in got.charges] == ["emb", "block", "block", "head"]
    # params: emb 40, block 20 once (its second call is "(recursive)"), head 40 again (tied);
    # the root's leftover, 60 - 100 < 0, floors at 0. The truth is 60
    assert got.params == 10 * 4 + (4 * 4 + 4) + 10 * 4


def test_rnn_rule_by_hand() -> None:
    model = nn.LSTM(4, 8, batch_first=True)
    got = TOOL.reproduce(model, (torch.randn(2, 5, 4),), {})
    # weight_ih_l0 4*8*4, weight_hh_l0 4*8*8, two biases 4*8: each x B 2 x T 5 (output [2, 5, 8])
    assert got.macs == (4 * 8 * 4 + 4 * 8 * 8 + 2 * 4 * 8) * 2 * 5
    assert got.params == 4 * 8 * 4 + 4 * 8 * 8 + 2 * 4 * 8


class _Blocks(nn.Module):
    """A ModuleList (never called itself) interleaved with another layer."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[1](self.norm(self.blocks[0](x)))


def test_container_rows_by_hand() -> None:
    got = TOOL.reproduce(_Blocks(), (torch.randn(3, 4),), {})
    # 2 Linears (4*4 + 4) and LayerNorm 4 + 4, each x N 3; containers cost nothing
    assert got.macs == (2 * (4 * 4 + 4) + 4 + 4) * 3
    assert got.params == 2 * (4 * 4 + 4) + 4 + 4


@pytest.mark.parametrize("model", [_Blocks(), _TiedTwice()], ids=["blocks", "tied"])
def test_hand_models_match_torchinfo(model: nn.Module) -> None:
    pytest.importorskip("torchinfo")
    x = torch.randn(3, 4) if isinstance(model, _Blocks) else torch.zeros(2, 5, dtype=torch.int64)
    assert TOOL.run_tool is not None
    own = TOOL.run_tool(model, (x,), {})
    got = TOOL.reproduce(model, (x,), {})
    assert (got.macs, got.params) == (own.macs, own.params)


def test_trainable_matches_torchinfo() -> None:
    torchinfo = pytest.importorskip("torchinfo")
    model = _Hand()
    model.conv.requires_grad_(False)
    x = torch.randn(2, 3, 32, 32)
    assert ti.trainable_params(model, (x,), {}) == torchinfo.summary(model, input_data=[x], verbose=0).trainable_params


def test_fails_where_torchinfo_fails() -> None:
    class Out(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> object:
            return {"x": self.lin(x)}.items()  # neither tensor, sequence, dict nor None

    with pytest.raises(FxcostError, match="as it does itself"):
        TOOL.reproduce(Out(), (torch.randn(1, 2),), {})


def test_no_hooks_left_behind() -> None:
    model = _Hand()
    TOOL.reproduce(model, (torch.randn(2, 3, 32, 32),), {})
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


#: single modules whose rule the zoo does not pin: (module, positional inputs)
SMALL = {
    "conv_transpose": (lambda: nn.ConvTranspose2d(4, 8, 2, stride=2), lambda: (torch.randn(2, 4, 5, 5),)),
    "lstm_cell": (lambda: nn.LSTMCell(4, 8), lambda: (torch.randn(3, 4),)),
    "norms_upsample_pool": (
        lambda: nn.Sequential(nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Upsample(scale_factor=2), nn.AdaptiveAvgPool2d(1)),
        lambda: (torch.randn(2, 4, 5, 5),),
    ),
    "bidirectional_gru": (lambda: nn.GRU(4, 8, num_layers=2, bidirectional=True), lambda: (torch.randn(5, 2, 4),)),
    "multihead_attention": (lambda: nn.MultiheadAttention(8, 2, batch_first=True), lambda: (torch.randn(2, 3, 8),) * 3),
}


@pytest.mark.parametrize("name", SMALL)
def test_small_modules_match_torchinfo(name: str) -> None:
    pytest.importorskip("torchinfo")
    build, inputs = SMALL[name]
    model, args = build(), inputs()
    assert TOOL.run_tool is not None
    own = TOOL.run_tool(model, args, {})
    got = TOOL.reproduce(model, args, {})
    assert (got.macs, got.params) == (own.macs, own.params)
