"""Vision Transformer (ViT-B/16 and a tiny config), written for fxcost's examples and tests.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"
(2020): a stride-16 16x16 conv cuts the image into patch embeddings, a learned class token is
prepended and a learned position embedding added, then pre-norm encoder blocks (LayerNorm,
multi-head self-attention, residual; LayerNorm, MLP with GELU, residual), a final LayerNorm and a
Linear head on the class token. Attention is written here as one ``nn.Linear`` producing q, k and
v, ``F.scaled_dot_product_attention`` and an output ``nn.Linear``: the same weights as
``nn.MultiheadAttention``'s in_proj/out_proj, so ``vit_b_16()`` has torchvision's 86,567,656 params
(LayerNorm eps 1e-6, class token (1, 1, 768), position embedding (1, 197, 768), 1000 classes).
:func:`vit_tiny` is a 32x32, patch-8, 2-block config for quick tests.

Usage: ``fxcost analyze examples/vit.py:vit_b_16 --input 1x3x224x224``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention: qkv Linear, scaled dot-product attention, output Linear."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x):  # type: ignore[no-untyped-def]
        b, n, d = x.shape
        # [B, N, 3D] -> [3, B, heads, N, D/heads]
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim), nn.Dropout(dropout),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        num_patches = (image_size // patch_size) ** 2
        self.conv_proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, num_patches + 1, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, num_heads, mlp_dim, dropout) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.conv_proj(x)  # [B, D, H/p, W/p]
        x = x.flatten(2).transpose(1, 2)  # [B, N, D]
        cls = self.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding
        x = self.blocks(self.dropout(x))
        return self.head(self.ln(x)[:, 0])


def vit_b_16(image_size: int = 224, num_classes: int = 1000) -> VisionTransformer:
    """ViT-B/16: 12 blocks of width 768, 12 heads, MLP 3072; 86,567,656 params at 224 with 1000 classes."""
    return VisionTransformer(image_size, 16, 768, 12, 12, 3072, num_classes)


def vit_tiny(image_size: int = 32, num_classes: int = 10) -> VisionTransformer:
    """A tiny ViT for quick tests: patch 8, width 64, 2 blocks, 4 heads, MLP 128."""
    return VisionTransformer(image_size, 8, 64, 2, 4, 128, num_classes)
