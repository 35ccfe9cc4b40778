"""fxcost's reproduction of fvcore's FlopCountAnalysis: the tool's own figures on the zoo, its
per-module attribution, and its rules pinned by hand arithmetic (those need no fvcore)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

from examples.zoo import ZOO, ZooModel
from fxcost.errors import FxcostError
from fxcost.peers import peer
from fxcost.peers.fvcore import TOOL, einsum_macs, matmul_macs, positional_inputs, reproduce
from tests.peers_zoo import NOT_STATIC, check_on_zoo, zoo

#: zoo models fvcore itself cannot run, with its own error
TOOL_FAILS = {
    "keyword_only": "keyword-only parameter 'scale' cannot be given positionally",
    "dataclass_out": "Only tuples, lists and Variables are supported as JIT inputs/outputs",
    "modern_block": "IndexError",  # matmul_flop_jit indexes [-2] of a 1-D operand (x @ v)
}
#: real forwards of a second or more here; the default run keeps VGG-19, ResNet-50, ViT-B/16 and GPT-2
SLOW = {
    "vgg13", "vgg16", "vgg19_paper", "d2l_vgg11", "mobilenet_v2", "unet", "unet_bilinear", "hf_bert_base", "hf_t5_small",
}


def _fvcore() -> Any:
    return pytest.importorskip("fvcore.nn")


@pytest.mark.parametrize("entry", zoo(SLOW))
def test_reproduction_equals_fvcore(entry: ZooModel) -> None:
    model, rep = check_on_zoo(TOOL, entry, imports="fvcore.nn", tool_fails=TOOL_FAILS)
    # and each charge is positive, on a module the model has (fvcore drops zero counts)
    paths = dict(model.named_modules())
    assert all(c.macs > 0 and c.module_path in paths for c in rep.charges)


# not the lazy models: fvcore's trace of a fresh lazy model also records its initialization
# (aten::uniform_, no handler, no cost), which the meta copy did before tracing
@pytest.mark.parametrize("name", ["vit_tiny", "twice_called", "mha_model", "dict_io", "tied_embeddings", "upsampler", "gru_classifier"])
def test_charges_roll_up_to_fvcore_by_module(name: str) -> None:
    fv = _fvcore()
    entry = next(e for e in ZOO if e.name == name)
    model = entry.build()
    args, kwargs = entry.inputs()
    rep = reproduce(model, args, kwargs)
    analysis = fv.FlopCountAnalysis(model, positional_inputs(model, args, kwargs))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    theirs = {k: v for k, v in analysis.by_module().items() if v}
    ours: Counter[str] = Counter()
    for c in rep.charges:  # fvcore's "owner" mode: the op's module and each dotted prefix
        parts = c.module_path.split(".") if c.module_path else []
        for k in {".".join(parts[:i]) for i in range(len(parts) + 1)}:
            ours[k] += c.macs
    assert dict(ours) == theirs
    assert Counter(analysis.unsupported_ops()) == Counter(
        {u.split(" x")[0]: int(u.split(" x")[1].split(" ")[0]) for u in rep.unseen})


def test_reproduction_fails_where_fvcore_handler_fails() -> None:
    entry = next(e for e in ZOO if e.name == "modern_block")
    with pytest.raises(FxcostError, match=r"aten::matmul"):
        reproduce(entry.build(), *entry.inputs())


@pytest.mark.parametrize("name", sorted(NOT_STATIC))
def test_data_dependent_models_are_refused(name: str) -> None:
    entry = next(e for e in ZOO if e.name == name)
    with pytest.raises(FxcostError, match="cannot trace"):
        reproduce(entry.build(), *entry.inputs())


# --- fvcore's rules by hand (no fvcore needed) --------------------------------------------------


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        y = self.up(y) + 1.0  # the add: no handler
        return self.fc(self.pool(y).flatten(1)).softmax(-1)


@pytest.mark.parametrize(("train", "bn"), [
    (False, 2 * 16 * 30 * 30 * 2),  # eval: 2 per element with an affine weight
    (True, 2 * 16 * 30 * 30 * 5),  # train: the norm rule, 5 per element with an affine weight
])
def test_small_model_by_hand(train: bool, bn: int) -> None:
    model = Small().train(train)
    rep = reproduce(model, (torch.randn(2, 3, 32, 32),), {})
    by_module = {c.module_path: c.macs for c in rep.charges}
    assert by_module == {
        "conv": 2 * (16 * 3 * 3 * 3) * 30 * 30,  # N x prod(W) x out spatial; no bias anyway
        "bn": bn,
        "up": 2 * 16 * 60 * 60 * 4,  # bilinear: 4 per output element
        "pool": 2 * 16 * 60 * 60,  # adaptive_avg_pool2d: 1 per input element
        "fc": 2 * 16 * 10,  # prod(x) x out_features; the bias add not counted
    }  # relu (ignored list), add and softmax (no handler): nothing
    assert rep.macs == sum(by_module.values())
    assert rep.params == 16 * 3 * 3 * 3 + 2 * 16 + 16 * 10 + 10
    assert any(u.startswith("aten::add x1") for u in rep.unseen)
    assert any(u.startswith("aten::softmax x1") for u in rep.unseen)
    assert not any("relu" in u for u in rep.unseen)


def test_transposed_conv_counts_input_spatial() -> None:
    model = nn.ConvTranspose2d(4, 8, 2, stride=2).eval()
    rep = reproduce(model, (torch.randn(1, 4, 5, 5),), {})
    assert rep.macs == 1 * (4 * 8 * 2 * 2) * 5 * 5  # N x prod(W[C_in, C_out, k, k]) x input spatial


def test_matmul_counts_only_the_first_operands_batch() -> None:
    assert matmul_macs([4, 5], [3, 5, 6]) == 4 * 5 * 6  # not 3 * 4 * 5 * 6: b's batch of 3 unseen
    with pytest.raises(ValueError):
        matmul_macs([2, 5], [5])  # fvcore's handler indexes [-2] of a 1-D operand


def test_einsum_rules() -> None:
    # the bmm forms, after renaming letters in order of appearance
    assert einsum_macs("nct,ncp->ntp", [[2, 3, 4], [2, 3, 5]]) == 2 * 3 * 4 * 5
    # otherwise numpy's optimized FLOP count as printed, 2 * 101 * 103 * 107 = 2,226,242 -> "2.226e+06",
    # halved: 1,113,000, not the true 1 * 101 * 103 * 107 = 1,113,121 MACs
    assert einsum_macs("bij,bjk->bik", [[1, 101, 103], [1, 103, 107]]) == 1_113_000


def test_tied_weights_once_and_registry() -> None:
    emb = nn.Embedding(50, 8)
    head = nn.Linear(8, 50, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    rep = reproduce(model, (torch.zeros(2, 3, dtype=torch.int64),), {})
    assert rep.params == 50 * 8  # named_parameters() yields the shared weight once
    assert rep.macs == 2 * 3 * 8 * 50  # the head's linear; the embedding has no handler
    assert peer("fvcore") is TOOL and TOOL.headline == "flops (MACs)"
