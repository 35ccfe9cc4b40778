"""``fxcost llm`` (issue 13): prefill, decode with the model's own KV cache, active parameters and
the roofline estimate.

References, none of them fxcost: FlopCounterMode over a real decode step with a real cache made
by a real prefill (math attention backend: it counts the CPU flash kernel as 0); the cache
tensors a real prefill leaves; ``fxcost analyze`` of the prefill as the table counts it; the
published parameter counts of Mixtral-8x7B, derived here from its config as arithmetic;
Llama-2-7B's cache as arithmetic from its config.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from fxcost.cli import main
from fxcost.counting.devices import DEVICES, device
from fxcost.errors import InputSpecError
from fxcost.pytorch.llm import active_params, llm

tf = pytest.importorskip("transformers")


def small_llama() -> Any:
    torch.manual_seed(0)
    return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2)).eval()


def small_gpt2() -> Any:
    torch.manual_seed(0)
    return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=256)).eval()


MODELS = {"llama": small_llama, "gpt2": small_gpt2}


def real_cache(model: Any, length: int, batch: int = 1) -> Any:
    with torch.no_grad():
        return model(torch.randint(0, 128, (batch, length)), use_cache=True).past_key_values


def real_decode_macs(model: Any, context: int) -> int:
    """FlopCounterMode's FLOPs / 2 over one real decode step after a real prefill of ``context``."""
    cache = real_cache(model, context)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(torch.randint(0, 128, (1, 1)), past_key_values=cache, use_cache=True)
    return int(counter.get_total_flops()) // 2


def cache_bytes(cache: Any) -> int:
    return sum(t.untyped_storage().nbytes() for layer in cache.layers for t in (layer.keys, layer.values))


@pytest.mark.parametrize("name", MODELS)
def test_decode_prefill_and_cache_match_a_real_run(name: str) -> None:
    model = MODELS[name]()
    r = llm(model, prompt=12, generate=5)
    assert r.decode_first.context == 12 and r.decode_last.context == 16
    assert r.decode_first.macs == real_decode_macs(model, 12)
    assert r.decode_last.macs == real_decode_macs(model, 16)
    # the cache a real prefill of 12 tokens leaves, per token
    assert r.kv_bytes_per_token == cache_bytes(real_cache(model, 12)) // 12
    # the cache at 17 tokens as generating leaves it: a real prefill of 16, then one real step
    cache = real_cache(model, 16)
    with torch.no_grad():
        model(torch.randint(0, 128, (1, 1)), past_key_values=cache, use_cache=True)
    assert r.kv_bytes == cache_bytes(cache)
    # the prefill is what fxcost analyze counts at 1 x 12
    table = fxcost.analyze(model, example_inputs=(torch.randint(0, 128, (1, 12)),), example_kwargs={"use_cache": True})
    assert (r.prefill.macs, r.prefill.flops) == (table.total().macs, table.total().flops)


def test_the_decode_total_is_every_step_added() -> None:
    model = small_llama()
    r = llm(model, prompt=6, generate=9)
    assert r.decode_total_macs == sum(real_decode_macs(model, c) for c in range(6, 15))


def test_a_sliding_window_total_is_exact_where_the_cost_bends() -> None:
    """Mistral's sliding window (here 8 positions): a decode step's attention grows with the
    context until the window is full, then stays; the total is still every step's sum."""
    torch.manual_seed(0)
    model = tf.MistralForCausalLM(tf.MistralConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                                   num_attention_heads=4, num_key_value_heads=2, sliding_window=8)).eval()
    r = llm(model, prompt=3, generate=12)
    steps = [llm(model, prompt=c, generate=1).decode_first.macs for c in range(3, 15)]
    assert len(set(steps[-4:])) == 1 and steps[0] < steps[-1]  # it bends: grows, then flat
    assert r.decode_total_macs == sum(steps)


def test_mixtral_total_and_active_parameters() -> None:
    """Mixtral-8x7B as published: 46.7 B parameters, 12.9 B active per token. From its config:
    embeddings and head V x H each; per layer attention H x (H + 2 x KV + H) with
    KV = kv_heads x head_dim, a router H x E, E experts of 3 x H x I, two RMSNorm weights H;
    a final norm H (I is the expert width, ffn here). Active: top_k of the E experts."""
    c = tf.MixtralConfig()
    with torch.device("meta"):
        model = tf.MixtralForCausalLM(c)
    H, ffn, V, E, k, L = c.hidden_size, c.intermediate_size, c.vocab_size, c.num_local_experts, c.num_experts_per_tok, c.num_hidden_layers
    kv = c.num_key_value_heads * (H // c.num_attention_heads)
    per_layer_shared = H * (2 * H + 2 * kv) + H * E + 2 * H
    experts = E * 3 * H * ffn
    total = 2 * V * H + L * (per_layer_shared + experts) + H
    active = 2 * V * H + L * (per_layer_shared + k * 3 * H * ffn) + H
    assert (total, active) == (46_702_792_704, 12_879_925_248)  # Mistral AI's figures
    got_total, got_active, how = active_params(model)
    assert (got_total, got_active) == (total, active)
    assert "2 of 8 experts" in how


@pytest.mark.slow
def test_llama2_7b_cache_and_weights_in_bfloat16() -> None:
    """Llama-2-7B in bfloat16: K and V of 32 layers x 4,096 wide x 2 bytes = 524,288 bytes a
    token; 4,096 tokens of that is 2 GiB; 6,738,415,616 weights x 2 bytes = 13,476,831,232.
    (LlamaConfig()'s defaults are Llama-2-7B's but for its context, 2,048 positions, Llama 1's:
    Llama-2 attends to 4,096.)"""
    with torch.device("meta"):
        model = tf.LlamaForCausalLM(tf.LlamaConfig(max_position_embeddings=4096))
    r = llm(model, prompt=4095, generate=1, dtype="bfloat16")
    assert r.kv_bytes_per_token == 2 * 32 * 4096 * 2 == 524_288
    assert r.kv_bytes == 4096 * 524_288 == 2 * 2**30
    assert r.weights_bytes == 6_738_415_616 * 2 == 13_476_831_232
    assert r.params == r.active_params == 6_738_415_616


def test_roofline_arithmetic() -> None:
    h100 = DEVICES["h100"]
    hw = h100.at("bfloat16")
    # 2 TFLOPs and 1 GB: 2e12 / 989.4e12 s of compute against 1e9 / 3.35e12 s of traffic
    r = hw.roof(0, 2 * 10**12, 10**9)
    assert r.bound == "compute" and r.seconds == pytest.approx(2e12 / 989.4e12) and r.intensity == 2000
    r = hw.roof(0, 10**9, 10**9)  # intensity 1 FLOP/byte, far below the ridge (~295)
    assert r.bound == "memory" and r.seconds == pytest.approx(1e9 / 3.35e12)
    assert hw.ridge == pytest.approx(989.4e12 / 3.35e12)
    assert h100.peak("float32") == pytest.approx(67e12)


def test_decode_at_batch_1_is_memory_bound_on_every_gpu() -> None:
    model = small_llama()
    for name in ("h100", "h200", "a100-80g", "l4", "mi300x"):
        r = llm(model, prompt=64, generate=2, dtype="bfloat16", device_name=name)
        assert r.roofline is not None and r.roofline.device == name
        assert all(t.bound == "memory" for t in r.decode_types), name
        # the step's time is its bytes over the bandwidth: every layer is memory-bound
        assert r.roofline.decode_s_per_token == pytest.approx(
            (r.decode_first.bytes_moved + r.decode_last.bytes_moved) / 2 / DEVICES[name].bandwidth_bytes_s)
        assert r.roofline.tokens_per_s == pytest.approx(1 / r.roofline.decode_s_per_token)


def test_last_logits_computes_one_position() -> None:
    model = small_llama()
    every, last = llm(model, prompt=16, generate=1), llm(model, prompt=16, generate=1, last_logits=True)
    # the head (64 -> 128) runs on 16 positions, or on 1
    assert every.prefill.macs - last.prefill.macs == 15 * 64 * 128


def test_the_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llm", "examples/hf_models.py:llama_small", "--prompt", "32", "--generate", "4", "--batch", "2",
                 "--dtype", "bfloat16", "--device", "h100", "-f", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["schema_version"] == 1 and (d["batch"], d["prompt"], d["generate"], d["dtype"]) == (2, 32, 4, "bfloat16")
    for key in ("model", "params", "active_params", "weights_bytes", "kv_cache", "prefill", "decode", "roofline"):
        assert key in d
    assert sorted(d["kv_cache"]) == ["bytes", "bytes_per_token", "dtype"]
    assert {"tokens", "macs", "flops"} <= set(d["prefill"]) and d["prefill"]["tokens"] == 64
    assert {"first", "last", "total_macs"} <= set(d["decode"])
    assert d["decode"]["first"]["context"] == 32 and d["decode"]["last"]["context"] == 35
    assert {"device", "peak_flops", "bandwidth_bytes_s", "prefill_s", "decode_s_per_token", "tokens_per_s"} <= set(d["roofline"])
    # the cache at 36 tokens for both sequences: 2 layers x K and V x 2 heads x 32 dims x 2 bytes a token
    assert d["kv_cache"]["bytes_per_token"] == 2 * 2 * 2 * 32 * 2
    assert d["kv_cache"]["bytes"] == 2 * 36 * d["kv_cache"]["bytes_per_token"]


def test_kv_dtype_scales_the_cache() -> None:
    model = small_llama()
    r = llm(model, prompt=8, generate=1, kv_dtype="float16")
    assert r.kv_dtype == "float16" and r.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2  # float32 cache of 16-dim heads, halved


def test_a_device_profile_file(tmp_path: Path) -> None:
    p = tmp_path / "gpu.toml"
    p.write_text('name = "mine"\nbandwidth_bytes_s = 1e12\n[peak_flops]\nfloat32 = 1e14\nbfloat16 = 4e14\n')
    d = device(str(p))
    assert (d.name, d.bandwidth_bytes_s, d.peak("bfloat16"), d.peak("float16")) == ("mine", 1e12, 4e14, 1e14)


@pytest.mark.parametrize(("argv", "message"), [
    (["examples/resnet.py:resnet18", "--prompt", "8", "--generate", "2"], "is not a causal language model"),
    (["examples/hf_models.py:llama_small", "--prompt", "8", "--generate", "0"], "argument --generate: '0' is not a whole number from 1 to"),
    (["hf:GPT2LMHeadModel", "--prompt", "1000", "--generate", "100"], "attends to at most 1,024 positions"),
    (["examples/hf_models.py:llama_small", "--prompt", "8", "--generate", "2", "--device", "tpu9"],
     "unknown device 'tpu9'"),
])
def test_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llm", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    if "unknown device" in message:
        assert "h100, h200, a100-80g, l4, mi300x, cpu" in err


def test_a_profile_with_missing_fields_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "half.toml"
    p.write_text('name = "half"\n[peak_flops]\nbfloat16 = 4e14\n')
    assert main(["llm", "examples/hf_models.py:llama_small", "--prompt", "8", "--generate", "2", "--device", str(p)]) == 2
    assert "lacks bandwidth_bytes_s" in capsys.readouterr().err
    with pytest.raises(InputSpecError, match="lacks"):
        device(str(p))


def test_the_callers_model_is_untouched() -> None:
    model = small_llama()
    before = copy.deepcopy(model.state_dict())
    llm(model, prompt=4, generate=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_analyze_draws_a_roofline_per_layer(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.resnet import resnet18

    report = fxcost.analyze(resnet18(), input_size=(1, 3, 224, 224), device="a100-80g")
    hw = report.hardware
    assert hw is not None and (hw.device, hw.dtype, hw.peak_flops, hw.bandwidth_bytes_s) == ("a100-80g", "float32", 19.5e12, 2.039e12)
    roofs = {r.id: r for r in report.roofline()}
    for row in report.layers:
        r = roofs[row.id]
        assert r.seconds == pytest.approx(max(row.flops / 19.5e12, row.bytes_moved / 2.039e12))
    conv1 = next(r for r in report.layers if r.name == "conv1")
    # conv1 reads the image (3 x 224 x 224) and its weight (64 x 3 x 7 x 7), writes 64 x 112 x 112, in float32
    assert conv1.bytes_moved == 4 * (3 * 224 * 224 + 64 * 3 * 7 * 7 + 64 * 112 * 112)
    # a roll-up's time is its layers' times added
    blocks = {r.id: r for r in report.by_module(1).roofline()}
    assert sum(r.seconds for r in blocks.values()) == pytest.approx(sum(r.seconds for r in roofs.values()))
    assert main(["analyze", "examples/resnet.py:resnet18", "--input", "1x3x224x224", "--device", "h100", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "time" in out and "bound" in out and "Roofline:" in out


def test_the_html_report_plots_the_roofline() -> None:
    from examples.resnet import resnet18
    from fxcost.exporters.html import to_html

    page = to_html(fxcost.analyze(resnet18(), input_size=(1, 3, 64, 64), device="h100"), None)
    assert 'class="chart roofline"' in page and "ridge" in page


def test_fit_finds_the_largest_batch() -> None:
    """The batch --fit finds is the largest whose memory (as the report at that batch states it:
    weights, the cache at prompt + generate, the larger peak activation) fits."""
    model = small_llama()
    r = llm(model, prompt=16, generate=4, fit="2MiB")
    f = r.fit
    assert f is not None and f.limit_bytes == 2 * 2**20
    at = llm(model, prompt=16, generate=4, batch=f.batch).memory()["total_bytes"]
    after = llm(model, prompt=16, generate=4, batch=f.batch + 1).memory()["total_bytes"]
    assert (f.peak_bytes, f.next_peak_bytes) == (at, after)
    assert at <= 2 * 2**20 < after
    with pytest.raises(InputSpecError, match="the weights alone take"):
        llm(model, prompt=16, generate=4, fit="100KB")


class TinyDecoder(torch.nn.Module):
    """A user's own causal LM: one attention layer with a cache of its own making (a list of
    (keys, values) per layer), returned in a dataclass; no transformers in it."""

    def __init__(self, vocab: int = 50, d: int = 32) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor, past_key_values: Any = None, use_cache: bool = False) -> Any:
        from dataclasses import dataclass

        @dataclass
        class Out:
            logits: torch.Tensor
            past_key_values: Any

        x = self.embed(ids)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if past_key_values is not None:
            k, v = torch.cat([past_key_values[0][0], k], 1), torch.cat([past_key_values[0][1], v], 1)
        scores = (q @ k.transpose(1, 2)).softmax(-1)
        return Out(self.head(scores @ v), [(k, v)] if use_cache else None)


def test_a_users_own_model_with_its_own_cache() -> None:
    torch.manual_seed(0)
    model = TinyDecoder().eval()
    r = llm(model, prompt=10, generate=3)
    # by hand, one new token at context 10: qkv 32 x 96, scores 1 x 11 x 32, mixing 11 x 32, head 32 x 50
    assert r.decode_first.macs == 32 * 96 + 11 * 32 + 11 * 32 + 32 * 50 == real_decode_macs_of(model, 10)
    # after the prefill the cache's keys and values are views (chunk) into the qkv projection's
    # output, which stays alive whole, queries included: 3 x 32 floats a token, what the model
    # really keeps (storages, not the views' sizes, are what memory holds)
    assert r.kv_bytes_per_token == 3 * 32 * 4
    # at prompt + generate = 13 tokens, as the last step leaves it, the cache is that step's
    # concatenations: contiguous keys and values alone
    assert r.kv_bytes == 2 * 13 * 32 * 4


def real_decode_macs_of(model: Any, context: int) -> int:
    with torch.no_grad():
        cache = model(torch.randint(0, 50, (1, context)), use_cache=True).past_key_values
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randint(0, 50, (1, 1)), past_key_values=cache, use_cache=True)
    return int(counter.get_total_flops()) // 2


def test_every_format_renders(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("table", "markdown", "csv", "json"):
        assert main(["llm", "examples/hf_models.py:llama_small", "--prompt", "8", "--generate", "2", "-f", fmt]) == 0
        assert capsys.readouterr().out.strip()
