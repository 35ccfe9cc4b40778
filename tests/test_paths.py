"""The code paths real models take (issue 11, part 2): expert loops that select tokens by value,
packed sequences, nn.Transformer's masks and fast path, a decode step with its KV cache passed in,
TorchScript inside a model, mixture-of-experts layers of transformers in each implementation.
References: FlopCounterMode over a real forward on PyTorch's math attention backend (it counts
the CPU flash kernel and ``_grouped_mm`` as 0, said where it matters), and hand arithmetic."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from fxcost.errors import InputSpecError, ShapeError


def flop_counter_macs(fn: Any, *args: Any, **kwargs: Any) -> int:
    """FlopCounterMode's MACs (its FLOPs / 2) over a real forward without gradients, on the math
    attention backend (it counts the CPU flash kernel as 0)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops()) // 2


class TopKLoop(nn.Module):
    """A mixture of experts as people write it: each expert takes the tokens routed to it, found
    with torch.where on the routing (sizes that only the values decide)."""

    def __init__(self, d: int = 16, experts: int = 4, k: int = 2) -> None:
        super().__init__()
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(nn.Linear(d, d) for _ in range(experts))
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: tokens x d
        weights, chosen = self.gate(x).softmax(-1).topk(self.k, -1)
        out = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == i)
            out[token] += expert(x[token]) * weights[token, slot, None]
        return out


def test_an_expert_loop_with_real_inputs_runs_on_them_and_says_so() -> None:
    torch.manual_seed(0)
    model, x = TopKLoop(), torch.randn(10, 16)
    report = fxcost.analyze(model, example_inputs=(x,))
    # by hand: the gate 10 * 16 * 4, then every token through k = 2 experts (16 x 16): 10 * 2 * 256,
    # however the tokens are spread
    assert report.total().macs == 10 * 16 * 4 + 10 * 2 * 16 * 16 == flop_counter_macs(model, x)
    assert report.mode == "real"
    assert any(n.startswith("ran on real tensors") and "aten::nonzero" in n for n in report.trace.notes)
    assert [u.op for u in report.unsupported] == []


def test_an_expert_loop_with_shapes_alone_is_refused_with_what_to_do() -> None:
    with pytest.raises(ShapeError) as e:
        fxcost.analyze(TopKLoop(), input_size=(10, 16))
    assert "aten.nonzero" in str(e.value) and "--real" in (e.value.hint or "")


def test_the_callers_inputs_are_not_run_for_real_without_weights() -> None:
    # weights on meta: nothing real to run, so the data-free failure stands
    with torch.device("meta"):
        model = TopKLoop()
    with pytest.raises(ShapeError):
        fxcost.analyze(model, example_inputs=(torch.randn(10, 16),))


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]


def test_a_packed_sequence_costs_its_real_lengths() -> None:
    model, x, lengths = Packed(), torch.randn(3, 7, 8), torch.tensor([7, 4, 2])
    report = fxcost.analyze(model, example_inputs=(x, lengths))
    # by hand: an LSTM step is 4 gates x 16 x (8 + 16) MACs, for 7 + 4 + 2 = 13 steps, not 3 x 7
    assert report.total().macs == 13 * 4 * 16 * (8 + 16) == flop_counter_macs(model, x, lengths)
    # the packed LSTM's kernel reads its batch sizes' data, which fake tensors have not: the given
    # real tensors decide, and the note names the line
    assert any(n.startswith("ran on real tensors") and "pack_padded_sequence(x, lengths" in n for n in report.trace.notes)
    assert [u.op for u in report.unsupported] == []


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, src_key_padding_mask=padding)


def test_a_padding_mask_counts_the_dense_path_and_says_the_fast_path_does_less() -> None:
    model = Encoder().eval()
    x, padding = torch.randn(2, 6, 32), torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    report = fxcost.analyze(model, input_size=None, example_inputs=(x.to("meta"), padding.to("meta")))
    # FlopCounterMode with gradients on takes the dense path (the nested-tensor one needs no_grad)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        model(x, padding)
    assert report.total().macs == counter.get_total_flops() // 2
    # by hand, per layer: q, k, v and out projections 4 * 12 * 32 * 32, two attention matmuls
    # 2 * 2 * 4 * 6 * 6 * 8, the feed-forward 2 * 12 * 32 * 64
    assert report.total().macs == 2 * (4 * 12 * 32 * 32 + 2 * 2 * 4 * 6 * 6 * 8 + 2 * 12 * 32 * 64)
    assert any("nested-tensor fast path" in n for n in report.trace.notes)
    assert report.mode != "real"


def test_nn_transformer_with_a_causal_tgt_mask() -> None:
    model = nn.Transformer(32, 4, 1, 1, 64, batch_first=True).eval()
    src, tgt = torch.randn(2, 6, 32), torch.randn(2, 5, 32)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    report = fxcost.analyze(model, example_inputs=(src, tgt), example_kwargs={"tgt_mask": mask, "tgt_is_causal": True})
    # with gradients on, FlopCounterMode sees the layers' math (without, the encoder's fused fast
    # path, _transformer_encoder_layer_fwd, which it counts as 0)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        model(src, tgt, tgt_mask=mask, tgt_is_causal=True)
    assert report.total().macs == counter.get_total_flops() // 2
    # by hand: encoder 12 positions, decoder 10 (self- and cross-attention), head projections d x d
    d, f = 32, 64
    encoder = 4 * 12 * d * d + 2 * 2 * 4 * 6 * 6 * 8 + 2 * 12 * d * f
    decoder = 4 * 10 * d * d + 2 * 2 * 4 * 5 * 5 * 8 + (2 * 10 + 2 * 12) * d * d + 2 * 2 * 4 * 5 * 6 * 8 + 2 * 10 * d * f
    assert report.total().macs == encoder + decoder
    assert report.mode != "real"


@torch.jit.script
def _gram(x: torch.Tensor) -> torch.Tensor:
    return x @ x.t()


class WithScript(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gram(self.fc(x))


def test_a_torchscript_function_inside_a_model_is_counted() -> None:
    model, x = WithScript(), torch.randn(4, 8)
    report = fxcost.analyze(model, input_size=(4, 8))
    assert report.total().macs == 4 * 8 * 8 + 4 * 8 * 4 == flop_counter_macs(model, x)


def test_a_scriptmodule_root_is_refused_with_what_to_do() -> None:
    scripted = torch.jit.script(nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
    with pytest.raises(InputSpecError) as e:
        fxcost.analyze(scripted, input_size=(4, 8))
    assert "TorchScript" in str(e.value) and "scripted from" in (e.value.hint or "")


def test_where_alone_and_nonzero_are_free_indices() -> None:
    rule = fxcost.DEFAULT_REGISTRY.lookup("aten::nonzero")
    assert rule.fate == "free" and "positions of the non-zero elements" in rule.reason

    class Select(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.where(x > 0, x, 2 * x)  # where(cond, a, b): one selection an element

    report = fxcost.analyze(Select(), input_size=(3, 5))
    ops = {o.op: o for row in report.layers for o in row.ops}
    assert ops["aten::where"].flops == 15 and ops["aten::gt"].flops == 15


# --- transformers: a decode step with its cache, mixture-of-experts layers --------------------


def _llama() -> Any:
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2)
    return tf.LlamaForCausalLM(config).eval()


def test_a_decode_step_with_its_kv_cache_passed_in() -> None:
    model = _llama()
    with torch.no_grad():
        cache = model(torch.randint(0, 128, (1, 6)), use_cache=True).past_key_values
    step = torch.randint(0, 128, (1, 1))
    reference = flop_counter_macs(model, step, past_key_values=copy.deepcopy(cache), use_cache=True)
    report = fxcost.analyze(model, example_inputs=(step,), example_kwargs={"past_key_values": cache, "use_cache": True})
    assert report.total().macs == reference
    # by hand: per layer q and o 64 x 64, k and v 64 x 32, the MLP 3 x 64 x 128, attention over
    # 6 cached + 1 new positions 2 x 4 heads x 7 x 16; the head 64 x 128
    assert reference == 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 4 * 7 * 16) + 64 * 128
    assert cache.get_seq_length() == 6  # the caller's cache: copied, not appended to


def _mixtral(implementation: str) -> Any:
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = tf.MixtralConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                              experts_implementation=implementation)
    return tf.MixtralForCausalLM(config).eval()


# by hand, for 6 tokens: per layer the router 6 x 64 x 4, attention projections 6 x (2 x 64 x 64 +
# 2 x 64 x 32), attention 2 x 4 heads x 6 x 6 x 16, every token through 2 experts of
# 64 x 256 (gate and up) + 128 x 64 (down); then the head 6 x 64 x 128
MIXTRAL_MACS = 2 * (6 * 64 * 4 + 6 * (2 * 64 * 64 + 2 * 64 * 32) + 2 * 4 * 6 * 6 * 16
                    + 6 * 2 * (64 * 256 + 128 * 64)) + 6 * 64 * 128


@pytest.mark.parametrize("implementation", ["grouped_mm", "batched_mm"])
def test_mixture_of_experts_without_data(implementation: str) -> None:
    model = _mixtral(implementation)
    report = fxcost.analyze(model, example_inputs=(torch.empty(1, 6, dtype=torch.long, device="meta"),))
    assert report.total().macs == MIXTRAL_MACS
    assert report.mode != "real" and [u.op for u in report.unsupported] == []
    assert report.total().params == sum(p.numel() for p in model.parameters())
    if implementation == "batched_mm":
        assert MIXTRAL_MACS == flop_counter_macs(model, torch.randint(0, 128, (1, 6)))
    else:  # FlopCounterMode counts _grouped_mm on the CPU as 0: it misses every expert's work
        assert flop_counter_macs(model, torch.randint(0, 128, (1, 6))) == MIXTRAL_MACS - 2 * 6 * 2 * (64 * 256 + 128 * 64)


def test_mixture_of_experts_eager_loop_runs_on_real_tokens() -> None:
    model = _mixtral("eager")
    ids = torch.randint(0, 128, (1, 6))
    report = fxcost.analyze(model, example_inputs=(ids,))
    assert report.total().macs == MIXTRAL_MACS == flop_counter_macs(model, ids)
    assert report.mode == "real" and [u.op for u in report.unsupported] == []
