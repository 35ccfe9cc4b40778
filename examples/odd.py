"""Small models with one awkward feature each, for testing how fxcost traces and counts.

Each class is a few layers around the one thing it exists to exercise: a module called twice, a
Python ``if`` on a tensor's value (inside a submodule, or in the root forward), dict / list /
dataclass inputs and outputs, keyword-only and ``*args`` signatures, lazy 3-D layers,
``nn.MultiheadAttention``, tied embeddings, a hand-written Llama-style block, and five
interpolation modes. ``examples/zoo.py`` pairs each with an input it accepts.

Usage: ``fxcost analyze examples/odd.py:TwiceCalled --input 2x3x16x16``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class TwiceCalled(nn.Module):
    """One conv block applied twice: its params count once, its MACs twice."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.block(self.stem(x)))
        return self.head(self.pool(x).flatten(1))


class SignGate(nn.Module):
    """A Python ``if`` on a tensor's value: no static trace can follow it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pos = nn.Conv2d(channels, channels, 1)
        self.neg = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.pos(x)
        return self.neg(x)


class PaddedTokens(nn.Module):
    """A Python ``if`` on the token ids' values (Longformer's and FSMT's padding checks): decided
    by values fxcost knows (ids made from a shape are zeros), so counted without weights."""

    def __init__(self, vocab: int = 100, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.embed(ids))
        if (ids == 0).any():  # padding (id 0): one more layer
            x = self.fc(x)
        return x


class DataDependentBranch(nn.Module):
    """Convs before and after a submodule whose forward branches on data (``SignGate``).

    A tracer that keeps ``gate`` opaque (a leaf) can trace everything else.
    """

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.gate = SignGate(channels)
        self.tail = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tail(self.gate(self.stem(x)))
        return self.head(self.pool(x).flatten(1))


class RootDataDependent(nn.Module):
    """The data-dependent ``if`` sits in the root forward: no submodule to hide it in."""

    def __init__(self, features: int = 16, num_classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(features, features)
        self.big = nn.Linear(features, num_classes)
        self.small = nn.Sequential(nn.Linear(features, 4), nn.ReLU(), nn.Linear(4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(x))
        if h.mean() > 0.5:
            return self.big(h)
        return self.small(h)


class DictIO(nn.Module):
    """Takes a dict (an image, a mask and a list of vectors) and returns a dict."""

    def __init__(self, channels: int = 8, aux_features: int = 6, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.aux = nn.Linear(aux_features, channels)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x = self.conv(batch["image"]) * batch["mask"]  # mask [B, 1, H, W] broadcasts over channels
        features = self.pool(x).flatten(1)
        for extra in batch["aux"]:  # a list of [B, aux_features] tensors
            features = features + self.aux(extra)
        return {"logits": self.head(features), "features": features}


class KeywordOnly(nn.Module):
    """Keyword-only arguments: a float, an optional tensor and a bool."""

    def __init__(self, features: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, features)
        self.fc2 = nn.Linear(features, features)

    def forward(
        self, x: torch.Tensor, *, scale: float = 1.0, bias: torch.Tensor | None = None, flag: bool = False
    ) -> torch.Tensor:
        h = self.fc1(x) * scale
        if bias is not None:
            h = h + bias
        if flag:
            h = torch.relu(h)
        return self.fc2(h)


class VarArgs(nn.Module):
    """``forward(*xs)``: one shared Linear applied to every input, the results summed."""

    def __init__(self, features: int = 8, out_features: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(features, out_features)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = self.fc(xs[0])
        for x in xs[1:]:
            out = out + self.fc(x)
        return out


@dataclass
class Outputs:
    logits: torch.Tensor
    embedding: torch.Tensor


class DataclassOut(nn.Module):
    """Returns a dataclass with two tensor fields."""

    def __init__(self, features: int = 16, dim: int = 8, num_classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(features, dim), nn.Tanh())
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> Outputs:
        e = self.embed(x)
        return Outputs(logits=self.head(e), embedding=e)


class Lazy3D(nn.Module):
    """3-D convolution with lazy layers: in_channels and in_features come from the first input."""

    def __init__(self, channels: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.LazyConv3d(channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm3d(channels)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d((2, 2, 2))
        self.fc = nn.LazyLinear(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(x.flatten(1))


class MHAModel(nn.Module):
    """Self-attention through ``nn.MultiheadAttention`` (batch first), residual, LayerNorm, Linear."""

    def __init__(self, dim: int = 32, num_heads: int = 4, num_classes: int = 6) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim=dim, num_heads=num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, need_weights=False)
        return self.head(self.norm(x + a))


class TiedEmbeddings(nn.Module):
    """Embedding, a residual token-mixing MLP and a channel MLP, a head tied to the embedding."""

    def __init__(self, vocab: int = 500, dim: int = 32, seq_len: int = 12) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.token_mix = nn.Linear(seq_len, seq_len)  # mixes along the sequence (MLP-Mixer style)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mix = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm_out = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # the same tensor: counted once

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # [B, T, D]; T must equal seq_len
        x = x + self.token_mix(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.channel_mix(self.norm2(x))
        return self.head(self.norm_out(x))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] along the last dimension (the rotation of RoPE, half-split form)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class ModernBlock(nn.Module):
    """A Llama-style decoder block written by hand, plus a few ops grafted on to exercise them.

    Touvron et al., "LLaMA" (2023): RMSNorm (Zhang & Sennrich, 2019) before attention and MLP,
    rotary position embeddings (Su et al., "RoFormer", 2021) applied with cos/sin and
    ``rotate_half``, grouped-query attention (Ainslie et al., 2023: 4 query heads share 2 k/v
    heads) through causal ``F.scaled_dot_product_attention``, and a SwiGLU MLP (Shazeer, "GLU
    Variants Improve Transformer", 2020). The output projection is an einsum over a
    [dim, heads, head_dim] weight. Then, for coverage rather than any paper: a depthwise Conv1d
    branch with GroupNorm, InstanceNorm1d and tanh-approximated GELU, and a head that pools the
    sequence three ways: mean, amax, and attention pooling with ``@`` and ``torch.baddbmm``.
    Takes float [B, T, dim].
    """

    inv_freq: torch.Tensor

    def __init__(
        self, dim: int = 64, n_heads: int = 4, n_kv_heads: int = 2, hidden: int = 128, num_classes: int = 10
    ) -> None:
        super().__init__()
        if dim % n_heads or n_heads % n_kv_heads:
            raise ValueError("dim must divide into n_heads, and n_heads into n_kv_heads groups")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.attn_norm = nn.RMSNorm(dim, eps=1e-6)
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Parameter(torch.randn(dim, n_heads, self.head_dim) / math.sqrt(dim))
        # RoPE frequencies theta_i = 10000^(-2i/d) (RoFormer, eq. 15); not a parameter, not saved.
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.mlp_norm = nn.RMSNorm(dim, eps=1e-6)
        self.w1 = nn.Linear(dim, hidden, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden, bias=False)  # up
        self.w2 = nn.Linear(hidden, dim, bias=False)  # down
        self.conv_norm = nn.GroupNorm(8, dim)
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.inorm = nn.InstanceNorm1d(dim, affine=True)
        self.pool_query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.pool_bias = nn.Parameter(torch.zeros(1, 1, dim))
        self.head = nn.Linear(3 * dim, num_classes)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, KV, T, hd]
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        pos = torch.arange(t, device=x.device, dtype=self.inv_freq.dtype)
        freqs = torch.outer(pos, self.inv_freq)  # [T, hd/2]
        angles = torch.cat((freqs, freqs), dim=-1)  # [T, hd]
        cos, sin = angles.cos(), angles.sin()
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(groups, dim=1)  # [B, H, T, hd]: each k/v head serves `groups` queries
        v = v.repeat_interleave(groups, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, hd]
        return torch.einsum("bhtd,ehd->bte", y, self.wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x))
        h = self.mlp_norm(x)
        x = x + self.w2(F.silu(self.w1(h)) * self.w3(h))
        c = self.inorm(self.dwconv(self.conv_norm(x.transpose(1, 2))))  # [B, D, T]
        x = x + F.gelu(c, approximate="tanh").transpose(1, 2)
        weights = torch.softmax(x @ self.pool_query, dim=-1)  # [B, T]
        pooled = torch.baddbmm(self.pool_bias.expand(x.shape[0], -1, -1), weights.unsqueeze(1), x)  # [B, 1, D]
        features = torch.cat([x.mean(dim=1), x.amax(dim=1), pooled.squeeze(1)], dim=-1)
        return self.head(features)


class Upsampler(nn.Module):
    """Five interpolation modes: nearest (nn.Upsample), bilinear, bicubic, 1-D linear, 3-D trilinear.

    Takes [B, C, H, W]; returns a 1-D signal [B, C, 2HW] and a volume [B, C, 2, 4H, 4W].
    """

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.up(x)
        b = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        c = F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bicubic", align_corners=False)
        y = self.conv(a + b + c)  # [B, C, 2H, 2W]
        signal = F.interpolate(y.flatten(2), scale_factor=0.5, mode="linear", align_corners=False)
        volume = F.interpolate(y.unsqueeze(2), scale_factor=2, mode="trilinear", align_corners=False)
        return signal, volume
