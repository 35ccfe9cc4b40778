"""A registry of the example models, each with a real input it accepts and its published size.

``ZOO`` lists every model under ``examples/``: the classic networks (VGG, AlexNet, ResNet,
MobileNetV2, U-Net, ViT, recurrent models) and the one-feature odd cases of ``examples/odd.py``.
Each entry builds a fresh model and makes a deterministic CPU input (``(args, kwargs)`` for
``model(*args, **kwargs)``), small enough that a real forward takes well under a second or two.
``params`` is the published parameter count where one exists (torchvision's figures, which the
classic models here reproduce exactly), else None; lazy models have no count until a forward.

Import it with the repository root on ``sys.path`` (as the tests do): ``from examples.zoo import ZOO``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from examples import hf_models, odd
from examples.alexnet import alexnet
from examples.mobilenet import mobilenet_v2
from examples.resnet import resnet18, resnet50
from examples.rnn import gru_classifier, lstm_lm, rnn_tanh
from examples.unet import unet
from examples.vgg import d2l_vgg11, vgg11, vgg13, vgg16, vgg19, vgg19_paper
from examples.vit import vit_b_16, vit_tiny

Inputs = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Inputs]
    params: int | None = None  # the published parameter count, where there is one
    note: str = ""


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """A float32 tensor of standard normal values, the same on every call with the same seed."""
    return torch.randn(*shape, generator=_gen(seed))


def tokens(vocab: int, *shape: int, seed: int = 0) -> torch.Tensor:
    """int64 token ids in [0, vocab), the same on every call with the same seed."""
    return torch.randint(0, vocab, shape, generator=_gen(seed))


def image(*shape: int) -> Callable[[], Inputs]:
    """``inputs`` for a model that takes one float tensor of this shape."""
    return lambda: ((randn(*shape),), {})


def _dict_batch() -> Inputs:
    batch = {
        "image": randn(2, 3, 16, 16),
        "mask": (randn(2, 1, 16, 16, seed=1) > 0).float(),
        "aux": [randn(2, 6, seed=2), randn(2, 6, seed=3)],
    }
    return (batch,), {}


def _keyword_only() -> Inputs:
    return (randn(2, 16),), {"scale": 0.5, "bias": randn(16, seed=1), "flag": True}


def _var_args() -> Inputs:
    return (randn(2, 8), randn(2, 8, seed=1), randn(2, 8, seed=2)), {}


# torchvision's published counts, which examples/vgg.py, resnet.py, mobilenet.py and vit.py match.
VGG11, VGG13, VGG16, VGG19 = 132_863_336, 133_047_848, 138_357_544, 143_667_240

ZOO: list[ZooModel] = [
    # --- classic CNNs -----------------------------------------------------------------------------
    ZooModel("vgg11", vgg11, image(1, 3, 224, 224), VGG11, "VGG config A, torchvision layout"),
    ZooModel("vgg13", vgg13, image(1, 3, 224, 224), VGG13, "VGG config B"),
    ZooModel("vgg16", vgg16, image(1, 3, 224, 224), VGG16, "VGG config D"),
    ZooModel("vgg19", vgg19, image(1, 3, 224, 224), VGG19, "VGG config E, the seed's printout"),
    ZooModel("vgg19_paper", vgg19_paper, image(1, 3, 224, 224), VGG19, "no AdaptiveAvgPool2d: 224x224 only"),
    ZooModel("d2l_vgg11", d2l_vgg11, image(1, 3, 224, 224), None, "lazy layers, 10 classes: no params before a forward"),
    ZooModel("alexnet", alexnet, image(1, 3, 224, 224), None, "d2l's AlexNet: lazy layers, 10 classes"),
    ZooModel("resnet18", resnet18, image(1, 3, 224, 224), 11_689_512, "BasicBlocks, residual adds"),
    ZooModel("resnet50", resnet50, image(1, 3, 224, 224), 25_557_032, "Bottlenecks, stride on the 3x3 (v1.5)"),
    ZooModel("mobilenet_v2", mobilenet_v2, image(1, 3, 224, 224), 3_504_872, "depthwise convs, ReLU6, inverted residuals"),
    ZooModel("unet", unet, image(1, 3, 64, 64), None, "ConvTranspose2d upsampling, torch.cat skips"),
    ZooModel(
        "unet_bilinear", functools.partial(unet, bilinear=True), image(1, 3, 64, 64), None,
        "F.interpolate(bilinear) upsampling, torch.cat skips",
    ),
    # --- transformers -----------------------------------------------------------------------------
    ZooModel("vit_b_16", vit_b_16, image(1, 3, 224, 224), 86_567_656, "patch conv, class token, SDPA attention"),
    ZooModel("vit_tiny", vit_tiny, image(2, 3, 32, 32), None, "ViT at 32x32, patch 8, 2 blocks"),
    # --- recurrent --------------------------------------------------------------------------------
    ZooModel("lstm_lm", lstm_lm, lambda: ((tokens(1000, 2, 16),), {}), None, "int64 tokens, 2-layer LSTM, tied decoder"),
    ZooModel("gru_classifier", gru_classifier, lambda: ((tokens(1000, 2, 16),), {}), None, "int64 tokens, bidirectional GRU"),
    ZooModel("rnn_tanh", rnn_tanh, image(2, 20, 16), None, "nn.RNN(tanh) over float [B, T, F]"),
    # --- odd cases (examples/odd.py) -------------------------------------------------------------
    ZooModel("twice_called", odd.TwiceCalled, image(2, 3, 16, 16), None, "one submodule called twice"),
    ZooModel(
        "data_dependent_branch", odd.DataDependentBranch, image(2, 3, 16, 16), None,
        "`if x.sum() > 0` inside the submodule `gate`",
    ),
    ZooModel("root_data_dependent", odd.RootDataDependent, image(2, 16), None, "`if h.mean() > 0.5` in the root forward"),
    ZooModel("dict_io", odd.DictIO, _dict_batch, None, "dict in (image, mask, list of tensors), dict out"),
    ZooModel("keyword_only", odd.KeywordOnly, _keyword_only, None, "keyword-only float, optional tensor and bool"),
    ZooModel("var_args", odd.VarArgs, _var_args, None, "forward(*xs) with three inputs"),
    ZooModel("dataclass_out", odd.DataclassOut, image(2, 16), None, "returns a dataclass"),
    ZooModel("lazy_3d", odd.Lazy3D, image(1, 2, 8, 16, 16), None, "LazyConv3d, BatchNorm3d, LazyLinear"),
    ZooModel("mha_model", odd.MHAModel, image(2, 10, 32), None, "nn.MultiheadAttention, batch first"),
    ZooModel("tied_embeddings", odd.TiedEmbeddings, lambda: ((tokens(500, 2, 12),), {}), None, "head weight is the embedding"),
    ZooModel(
        "modern_block", odd.ModernBlock, image(2, 16, 64), None,
        "RMSNorm, RoPE, GQA, causal SDPA, SwiGLU, einsum, @, baddbmm, GroupNorm, InstanceNorm1d",
    ),
    ZooModel("upsampler", odd.Upsampler, image(1, 4, 8, 8), None, "nearest, bilinear, bicubic, linear, trilinear"),
]


#: transformers models from their configs (needs the ``hf`` extra); inputs are token ids or pixels
HF_ZOO: list[ZooModel] = [
    ZooModel("hf_gpt2", hf_models.gpt2, lambda: ((tokens(50257, 1, 32),), {}), 124_439_808,
             "GPT-2 small; the tied lm_head counted once (not 163,037,184)"),
    ZooModel("hf_bert_base", hf_models.bert_base,
             lambda: ((tokens(30522, 2, 32),), {"attention_mask": torch.ones(2, 32, dtype=torch.int64)}),
             109_482_240, "BERT-base with pooler; attention_mask as a keyword tensor"),
    ZooModel("hf_llama_small", hf_models.llama_small, lambda: ((tokens(1000, 1, 32),), {}), None,
             "RMSNorm, rotary embeddings, grouped-query attention, SwiGLU"),
    ZooModel("hf_t5_small", hf_models.t5_small,
             lambda: ((tokens(32128, 1, 24),), {"decoder_input_ids": tokens(32128, 1, 8, seed=1)}), None,
             "encoder-decoder; decoder_input_ids as a keyword tensor"),
    ZooModel("hf_vit", hf_models.vit_hf, image(1, 3, 64, 64), None, "transformers' ViTModel, pixel_values"),
    ZooModel("hf_distilbert", hf_models.distilbert, lambda: ((tokens(30522, 2, 16),), {}), None, "DistilBERT"),
]


def get(name: str) -> ZooModel:
    """The entry called ``name``; KeyError names the ones there are."""
    for entry in [*ZOO, *HF_ZOO]:
        if entry.name == name:
            return entry
    raise KeyError(f"no zoo model {name!r}; there are: {', '.join(e.name for e in ZOO)}")
