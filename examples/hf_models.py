"""transformers models for the zoo, built from their config classes with random weights.

Nothing is downloaded: each model is ``ModelClass(ConfigClass(...))``. ``use_cache=False``
because the zoo counts one forward pass (fxcost's ``hf:`` specs do the same). The full-size
GPT-2 and BERT-base are here because their parameter counts are published figures; the others
are shrunk (fewer layers, narrower) so a real CPU forward for the cross-check stays quick.

fxcost builds the same architectures from the command line, on meta:
``fxcost analyze hf:GPT2LMHeadModel --input 1x128:int64``.
"""

from __future__ import annotations

from torch import nn


def gpt2() -> nn.Module:
    """GPT-2 small (Radford et al., 2019): 124,439,808 params, lm_head tied to the token embedding."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(use_cache=False))


def bert_base() -> nn.Module:
    """BERT-base (Devlin et al., 2019) with its pooler: 109,482,240 params."""
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig())


def llama_small() -> nn.Module:
    """A small Llama (Touvron et al., 2023): RMSNorm, rotary embeddings, grouped-query attention
    (8 query heads share 2 key/value heads), SwiGLU MLP."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                      num_attention_heads=8, num_key_value_heads=2, use_cache=False)
    return LlamaForCausalLM(cfg)


def t5_small() -> nn.Module:
    """T5 (Raffel et al., 2020) encoder-decoder, t5-small's widths with 2 layers each side."""
    from transformers import T5Config, T5Model

    return T5Model(T5Config(num_layers=2, num_decoder_layers=2, use_cache=False))


def vit_hf() -> nn.Module:
    """transformers' ViT (Dosovitskiy et al., 2021), narrowed: 64x64 images, patch 16, 2 layers."""
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(image_size=64, patch_size=16, hidden_size=192, num_hidden_layers=2,
                              num_attention_heads=3, intermediate_size=768))


def distilbert() -> nn.Module:
    """DistilBERT (Sanh et al., 2019), 2 layers."""
    from transformers import DistilBertConfig, DistilBertModel

    return DistilBertModel(DistilBertConfig(n_layers=2))
