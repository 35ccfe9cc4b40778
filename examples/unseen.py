"""Architectures none of fxcost's other examples has: current transformers decoders (sliding
windows, soft-capping, ALiBi, multi-query and partial-rotary attention), encoder-decoder speech
and text models, mixture-of-experts, state-space models, diffusion UNets, VAEs and DiTs from
diffusers configs, and hand-written oddities. Each is shrunk (2 layers, widths of 64) so a real
CPU forward takes well under a second; nothing is downloaded (config classes, random weights).

``UNSEEN`` lists them as zoo entries (examples/zoo.py's ``ZooModel``): tests/test_unseen.py checks
each against FlopCounterMode over a real forward and the model's own parameter count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from examples.zoo import Inputs, ZooModel, randn, tokens

V, D, L, H, F = 256, 64, 2, 4, 128  # vocabulary, width, layers, heads, feed-forward width


def _tf(config: str, model: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers as tf

        return getattr(tf, model)(getattr(tf, config)(**kw))

    build.__name__ = model
    return build


def _diffusers(model: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import diffusers

        return getattr(diffusers, model)(**kw)

    build.__name__ = model
    return build


def ids(n: int = 16, vocab: int = V) -> Callable[[], Inputs]:
    return lambda: ((tokens(vocab, 1, n),), {})


_DECODER = dict(vocab_size=V, hidden_size=D, intermediate_size=F, num_hidden_layers=L, num_attention_heads=H,
                use_cache=False)

# --- decoders -------------------------------------------------------------------------------

DECODERS = [
    ZooModel("mistral_sliding_window", _tf("MistralConfig", "MistralForCausalLM", **_DECODER, num_key_value_heads=2,
                                           sliding_window=4), ids(), None,
             "sliding-window attention (window 4 over 16 tokens: the mask, not the matmuls, shrinks)"),
    ZooModel("gemma2_softcap", _tf("Gemma2Config", "Gemma2ForCausalLM", **_DECODER, num_key_value_heads=2, head_dim=16,
                                   sliding_window=4, attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
             ids(), None, "attention and final logit soft-capping (tanh), alternating sliding window, tied head"),
    ZooModel("bloom_alibi", _tf("BloomConfig", "BloomForCausalLM", vocab_size=V, hidden_size=D, n_layer=L, n_head=H,
                                use_cache=False), ids(), None, "ALiBi position biases (baddbmm with beta and alpha)"),
    ZooModel("falcon_alibi_mqa", _tf("FalconConfig", "FalconForCausalLM", vocab_size=V, hidden_size=D,
                                     num_hidden_layers=L, num_attention_heads=H, multi_query=True, alibi=True,
                                     parallel_attn=True, use_cache=False), ids(), None,
             "multi-query attention (one key/value head), ALiBi, parallel attention and MLP"),
    ZooModel("gpt_bigcode_mqa", _tf("GPTBigCodeConfig", "GPTBigCodeForCausalLM", vocab_size=V, n_embd=D, n_layer=L,
                                    n_head=H, multi_query=True, bos_token_id=1, eos_token_id=2, use_cache=False), ids(), None,
             "multi-query attention, learned positions"),
    ZooModel("phi_partial_rotary", _tf("PhiConfig", "PhiForCausalLM", **_DECODER, partial_rotary_factor=0.5),
             ids(), None, "rotary embeddings on half of each head, parallel attention and MLP"),
    ZooModel("gpt_neox_rotary_pct", _tf("GPTNeoXConfig", "GPTNeoXForCausalLM", **_DECODER, rotary_pct=0.25),
             ids(), None, "rotary embeddings on a quarter of each head, fused QKV"),
    ZooModel("stablelm", _tf("StableLmConfig", "StableLmForCausalLM", **_DECODER, num_key_value_heads=2,
                             partial_rotary_factor=0.25), ids(), None, "partial rotary, LayerNorm, grouped-query"),
    ZooModel("gptj", _tf("GPTJConfig", "GPTJForCausalLM", vocab_size=V, n_embd=D, n_layer=L, n_head=H, rotary_dim=8,
                         n_positions=64, use_cache=False), ids(), None, "interleaved rotary on 8 of 16 dims"),
    ZooModel("qwen2", _tf("Qwen2Config", "Qwen2ForCausalLM", **_DECODER, num_key_value_heads=2), ids(), None,
             "grouped-query attention with q/k/v biases"),
    ZooModel("gemma_geglu", _tf("GemmaConfig", "GemmaForCausalLM", **_DECODER, num_key_value_heads=1, head_dim=16),
             ids(), None, "GeGLU MLP, multi-query (one key/value head), scaled embeddings, tied head"),
    ZooModel("opt", _tf("OPTConfig", "OPTForCausalLM", vocab_size=V, hidden_size=D, ffn_dim=F, num_hidden_layers=L,
                        num_attention_heads=H, word_embed_proj_dim=D, use_cache=False), ids(), None,
             "learned positions offset by 2, ReLU MLP"),
]

# --- mixture of experts and state-space models ---------------------------------------------

MOE_SSM = [
    ZooModel("mixtral_moe", _tf("MixtralConfig", "MixtralForCausalLM", **_DECODER, num_key_value_heads=2,
                                num_local_experts=4, num_experts_per_tok=2, experts_implementation="batched_mm"),
             ids(), None, "top-2 of 4 experts (transformers' batched_mm experts; grouped_mm in tests/test_paths.py)"),
    ZooModel("qwen2_moe_shared", _tf("Qwen2MoeConfig", "Qwen2MoeForCausalLM", **_DECODER, num_key_value_heads=2,
                                     num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                     shared_expert_intermediate_size=64, experts_implementation="batched_mm"),
             ids(), None, "routed experts plus a gated shared expert"),
    ZooModel("mamba_ssm", _tf("MambaConfig", "MambaForCausalLM", vocab_size=V, hidden_size=D, state_size=8,
                              num_hidden_layers=L, use_cache=False), ids(), None,
             "selective state-space scan (the sequential reference path: no CUDA kernels here)"),
]

# --- encoder-decoder, speech and encoders ----------------------------------------------------

ENC_DEC = [
    ZooModel("bart", _tf("BartConfig", "BartModel", vocab_size=V, d_model=D, encoder_layers=L, decoder_layers=L,
                         encoder_attention_heads=H, decoder_attention_heads=H, encoder_ffn_dim=F, decoder_ffn_dim=F,
                         use_cache=False),
             lambda: ((tokens(V, 1, 16),), {"decoder_input_ids": tokens(V, 1, 8, seed=1)}), None,
             "text encoder-decoder, cross-attention"),
    ZooModel("whisper", _tf("WhisperConfig", "WhisperModel", vocab_size=V, d_model=D, encoder_layers=L,
                            decoder_layers=L, encoder_attention_heads=H, decoder_attention_heads=H, encoder_ffn_dim=F,
                            decoder_ffn_dim=F, num_mel_bins=16, max_source_positions=32, pad_token_id=0,
                            bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, use_cache=False),
             lambda: ((randn(1, 16, 64),), {"decoder_input_ids": tokens(V, 1, 8, seed=1)}), None,
             "speech encoder-decoder: two Conv1d over mel frames, then transformers"),
    ZooModel("speech_to_text", _tf("Speech2TextConfig", "Speech2TextModel", vocab_size=V, d_model=D, encoder_layers=L,
                                   decoder_layers=L, encoder_attention_heads=H, decoder_attention_heads=H,
                                   encoder_ffn_dim=F, decoder_ffn_dim=F, input_feat_per_channel=16,
                                   conv_channels=32, use_cache=False),
             lambda: ((randn(1, 32, 16),), {"decoder_input_ids": tokens(V, 1, 8, seed=1)}), None,
             "speech encoder-decoder, strided Conv1d subsampler with GLU"),
    ZooModel("wav2vec2", _tf("Wav2Vec2Config", "Wav2Vec2Model", hidden_size=D, num_hidden_layers=L,
                             num_attention_heads=H, intermediate_size=F, conv_dim=(32, 32), conv_stride=(5, 2),
                             conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4),
             lambda: ((randn(1, 800),), {}), None, "raw waveform: conv feature encoder, grouped conv positions"),
    ZooModel("roberta", _tf("RobertaConfig", "RobertaModel", vocab_size=V, hidden_size=D, num_hidden_layers=L,
                            num_attention_heads=H, intermediate_size=F), ids(), None, "positions offset by padding"),
    ZooModel("deberta_v2", _tf("DebertaV2Config", "DebertaV2Model", vocab_size=V, hidden_size=D, num_hidden_layers=L,
                               num_attention_heads=H, intermediate_size=F), ids(), None,
             "disentangled relative-position attention"),
    ZooModel("clip_vision", _tf("CLIPVisionConfig", "CLIPVisionModel", hidden_size=D, intermediate_size=F,
                                num_hidden_layers=L, num_attention_heads=H, image_size=32, patch_size=8),
             lambda: ((randn(1, 3, 32, 32),), {}), None, "patch conv, class token, quick-GELU"),
    ZooModel("convnext_hf", _tf("ConvNextConfig", "ConvNextModel", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2),
             lambda: ((randn(1, 3, 32, 32),), {}), None, "depthwise 7x7 convs, channels-last LayerNorm, layer scale"),
]

# --- diffusers ---------------------------------------------------------------------------------

_UNET = dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
             norm_num_groups=8)


def _timestep(*shape: int) -> Callable[[], Inputs]:
    return lambda: ((randn(*shape), torch.tensor([10])), {})


DIFFUSERS = [
    ZooModel("diffusers_unet2d", _diffusers("UNet2DModel", **_UNET, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                            up_block_types=("AttnUpBlock2D", "UpBlock2D")),
             _timestep(1, 3, 16, 16), None, "DDPM UNet: time embedding, ResNet blocks, self-attention"),
    ZooModel("diffusers_unet2d_condition",
             _diffusers("UNet2DConditionModel", sample_size=16, in_channels=4, out_channels=4,
                        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, cross_attention_dim=24,
                        attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
             lambda: ((randn(1, 4, 16, 16), torch.tensor([10]), randn(1, 7, 24, seed=1)), {}), None,
             "Stable Diffusion's UNet: cross-attention to text states, GEGLU feed-forward"),
    ZooModel("diffusers_vae", _diffusers("AutoencoderKL", in_channels=3, out_channels=3, latent_channels=4,
                                         block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                                         down_block_types=("DownEncoderBlock2D",) * 2,
                                         up_block_types=("UpDecoderBlock2D",) * 2),
             lambda: ((randn(1, 3, 32, 32),), {"sample_posterior": False}), None,
             "KL autoencoder: encoder, mid-block attention, decoder"),
    ZooModel("diffusers_dit", _diffusers("DiTTransformer2DModel", num_attention_heads=2, attention_head_dim=16,
                                         in_channels=4, num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10,
                                         norm_num_groups=8),
             lambda: ((randn(1, 4, 8, 8), torch.tensor([3])), {"class_labels": torch.tensor([1])}), None,
             "DiT: patchify, adaptive LayerNorm-zero conditioned on timestep and class"),
]

# --- hand-written oddities ------------------------------------------------------------------


class SharedTwice(nn.Module):
    """One block applied twice (weights shared across calls) and a head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.block = nn.Sequential(nn.Linear(16, 16), nn.GELU())
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.block(self.embed(x))))


class EinsumMixer(nn.Module):
    """Token and channel mixing by einsum on parameters (an MLP-Mixer written with einsum)."""

    def __init__(self, n: int = 8, d: int = 12) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n, n) / n)
        self.channels = nn.Parameter(torch.randn(d, d) / d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.einsum("bnd,mn->bmd", x, self.tokens)
        return torch.einsum("bnd,de->bne", x, self.channels)


class WarpAndSample(nn.Module):
    """A spatial transformer: predicts an affine warp, builds the grid, samples bilinearly."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.loc(x).view(-1, 2, 3)
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        return nn.functional.grid_sample(x, grid, align_corners=False)


class SpectralFilter(nn.Module):
    """A global filter layer (FNO/GFNet style): rfft2, a learned complex weight, irfft2."""

    def __init__(self, c: int = 4, h: int = 8, w: int = 8) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, h, w // 2 + 1, 2) * 0.02)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft2(x, norm="ortho") * torch.view_as_complex(self.weight)
        return self.proj(torch.fft.irfft2(spectrum, s=x.shape[-2:], norm="ortho"))


class TypeDispatch(nn.Module):
    """Conditioning that accepts a tensor or a number: a Python type check on an input."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.cond = nn.Linear(1, 8)

    def forward(self, x: torch.Tensor, scale: Any) -> torch.Tensor:
        if isinstance(scale, torch.Tensor):
            return self.body(x) + self.cond(scale)
        return self.body(x) * scale


ODD = [
    ZooModel("shared_block_tied_head", SharedTwice, lambda: ((tokens(50, 2, 6),), {}), 50 * 16 + 16 * 16 + 16,
             "a block called twice, a head tied to the embedding: params once, MACs twice"),
    ZooModel("einsum_mixer", EinsumMixer, lambda: ((randn(2, 8, 12),), {}), 8 * 8 + 12 * 12,
             "einsum with parameters"),
    ZooModel("spatial_transformer", WarpAndSample, lambda: ((randn(1, 3, 12, 12),), {}), None,
             "affine_grid and grid_sample (FlopCounterMode counts neither: see the test)"),
    ZooModel("spectral_filter", SpectralFilter, lambda: ((randn(1, 4, 8, 8),), {}), None,
             "rfft2, complex multiply, irfft2 (FlopCounterMode counts no FFT)"),
    ZooModel("type_dispatch", TypeDispatch, lambda: ((randn(3, 8), randn(3, 1, seed=1)), {}), None,
             "an isinstance check on an input: symbolic tracing alone would take the wrong branch"),
]

UNSEEN: list[ZooModel] = [*DECODERS, *MOE_SSM, *ENC_DEC, *DIFFUSERS, *ODD]
