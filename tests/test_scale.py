"""Llama-2-7B's architecture on meta: 6.74 B parameters analyzed without allocating a weight.

Slow (several seconds: torch.export of 32 decoder layers); `.ci/run` runs it. Time and memory
are measured by benchmarks/bench_llama7b.py, not asserted here.
"""

from __future__ import annotations

import pytest
import torch

import fxcost

pytest.importorskip("transformers")


@pytest.mark.slow
def test_llama_7b_at_2048_tokens_on_meta() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(use_cache=False)  # the defaults are Llama-2-7B's
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    S, d, ffn, L, V = 2048, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    report = fxcost.analyze(model, example_inputs=(torch.zeros(1, S, dtype=torch.int64, device="meta"),))

    assert report.total().params == 6_738_415_616 == sum(p.numel() for p in model.parameters())
    per_layer = (4 * d * d + 3 * d * ffn) * S  # q, k, v, o projections; gate, up, down of the MLP
    attention = 2 * S * S * d  # Q K^T and P V over all heads (32 x 128 = d), the full S x S (see conventions)
    lm_head = S * d * V
    assert report.total().macs == L * (per_layer + attention) + lm_head == 14_630_806_093_824
    assert not report.unsupported
    assert [o.shape for o in report.outputs] == [(1, S, V)]
