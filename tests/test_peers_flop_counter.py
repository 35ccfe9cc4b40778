"""The flop_counter preset: torch's FlopCounterMode reproduced on fxcost's fake CPU copy.

The reference is FlopCounterMode itself over a real forward of the real model (it ships with
torch), called as its docs do: ``with FlopCounterMode() as f: model(x)``, gradients on.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from examples.zoo import ZooModel
from fxcost.peers import peer
from tests.peers_zoo import check_on_zoo, zoo

TOOL = peer("flop_counter")

@pytest.mark.parametrize("entry", zoo())
def test_reproduces_flop_counter_mode(entry: ZooModel) -> None:
    check_on_zoo(TOOL, entry, imports="torch.utils.flop_counter")


class _Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.proj(x))
        q = h.view(2, 5, 2, 4).transpose(1, 2)  # [batch 2, heads 2, tokens 5, head dim 4]
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_what_flop_counter_counts_by_hand() -> None:
    got = TOOL.reproduce(_Attn(), (torch.randn(2, 5, 8),), {})
    by_module = {(c.module_path, c.what): c.macs for c in got.charges}
    # proj: [10, 8] @ [8, 8]: 10 * 8 * 8 = 640 MACs; its bias add is fused in addmm and not counted
    assert by_module[("proj", "aten::addmm")] == 10 * 8 * 8
    # GELU costs 0 there, and so does the attention: on the CPU, SDPA runs
    # aten::_scaled_dot_product_flash_attention_for_cpu, which has no entry in flop_registry
    # (torch/utils/flop_counter.py:742 registers the CUDA flash kernel only). The truth would add
    # Q K^T, [2*2, 5, 4] x [4, 5] = 2*2*5*5*4 = 400 MACs, and P V, [2*2, 5, 5] x [5, 4], another 400
    assert got.macs == 640
    assert not [c for c in got.charges if "attention" in c.what]
    assert got.params == 8 * 8 + 8
