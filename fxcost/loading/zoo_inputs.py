"""The inputs a transformers or diffusers model takes where ``--input`` is not given, written as
``--input`` writes them, with where each size comes from.

transformers: by the model's ``main_input_name`` and its config: 128 token ids (fewer where its
``max_position_embeddings`` is smaller; ``decoder_input_ids`` as many for an encoder-decoder; and
an image where the forward takes ``pixel_values`` too and the config has a vision config: CLIP),
one image at its config's ``image_size`` and ``num_channels`` (its ``vision_config``'s where it
has one), one second of 16 kHz audio (``input_values``; ``audio_channels`` channels where the
config has them), Whisper-style log-mel features at the frames its encoder takes (``num_mel_bins``
x 2 ``max_source_positions``) or 128 frames of ``feature_size`` features. A model that takes
images as Qwen2-VL does (flattened patches and their ``grid_thw``) gets a 16 x 16 patch grid with
its grid's values, and a whole model as many image tokens as the merged grid has (:func:`_patch_grid`).
Another main input is refused, naming it. Another multimodal model whose main input is
``input_ids`` gets text alone.

diffusers: the models of :data:`DIFFUSERS`, each at a size its pipelines use (a 64 x 64 latent for
Stable Diffusion's UNet, 77 text tokens; Flux's 4,096 image and 512 text tokens; SD3's 333 text
tokens), from its default config.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fxcost.errors import InputSpecError

#: 128 tokens, unless the model's positions are fewer
TOKENS = 128


def transformers_models() -> list[str]:
    """The base model class of every model type in transformers' auto mapping (``AutoModel``),
    one per type, sorted; the classes this transformers lacks are left out."""
    import transformers as tf
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    names: set[str] = set()
    for found in MODEL_MAPPING_NAMES.values():
        name = str(found[0] if isinstance(found, (list, tuple)) else found)
        if isinstance(getattr(tf, name, None), type):
            names.add(name)
    return sorted(names)


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    if isinstance(value, dict):  # {"height": h, "width": w} or {"shortest_edge": s}
        side = int(value.get("shortest_edge") or value.get("height") or 224)
        return int(value.get("height") or side), int(value.get("width") or side)
    return int(value), int(value)


def _tokens(config: Any) -> int:
    limit = getattr(config, "max_position_embeddings", None)
    return min(TOKENS, int(limit)) if isinstance(limit, int) and limit > 0 else TOKENS


def _image(config: Any) -> str:
    """One image at the config's (its vision config's) image_size and num_channels."""
    vision = getattr(config, "vision_config", None) or config
    h, w = _size(getattr(vision, "image_size", 224) or 224)
    return f"1x{int(getattr(vision, 'num_channels', 3) or 3)}x{h}x{w}"


def _dual_tower(model: nn.Module, config: Any) -> bool:
    """A model with a text and a vision tower whose forward takes both (CLIP, SigLIP, BLIP, OWL-ViT)."""
    import inspect

    try:
        takes = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "pixel_values" in takes and getattr(config, "vision_config", None) is not None


#: the patch grid of the image :func:`_patch_grid` makes, in patches a side
GRID = 16


def _takes(model: nn.Module) -> list[str]:
    import inspect

    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return []


def _patch_grid(model: nn.Module, config: Any) -> tuple[str, str] | None:
    """Qwen2-VL's way of taking images, which its kin share (GLM-4V, Qwen3-VL, ...): the patches
    of a 16 x 16 patch grid flattened, ``[256, channels x temporal_patch_size x patch_size^2]``,
    with their grid ``(t, h, w) = (1, 16, 16)`` (``grid_thw``, values the forward reads); a whole
    model gets as many image tokens as the merged grid has positions (``(16 / merge)^2``) and no
    text. None for a model that takes images otherwise."""
    takes = _takes(model)
    grid = next((p for p in ("grid_thw", "image_grid_thw") if p in takes), None)
    vision = getattr(config, "vision_config", None) or config
    patch = getattr(vision, "patch_size", None)
    if grid is None or not isinstance(patch, int):
        return None
    channels = int(getattr(vision, "in_channels", None) or getattr(vision, "num_channels", None) or 3)
    temporal = int(getattr(vision, "temporal_patch_size", None) or 1)
    merge = int(getattr(vision, "spatial_merge_size", None) or 1)
    patches = f"{GRID * GRID}x{channels * temporal * patch * patch}"
    thw = f"{grid}=1x3:int64=1;{GRID};{GRID}"
    why = f"one image as a {GRID} x {GRID} grid of {patch}-pixel patches (its grid_thw given)"
    if takes[0] in ("hidden_states", "pixel_values"):  # the vision tower alone
        return f"{patches},{thw}", why
    token = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    if takes[0] != "input_ids" or "pixel_values" not in takes or not isinstance(token, int):
        return None
    tokens = (GRID // merge) ** 2
    kinds = "".join(f",{k}=1x{tokens}:int64=1" for k in ("mm_token_type_ids", "moe_mm_token_type_ids") if k in takes)
    return (f"1x{tokens}:int64={token},pixel_values={patches},{thw}{kinds}",
            why + f" and its {tokens} image tokens (each of type 1, image, where it takes their types), no text")


def transformers_input(model: nn.Module) -> tuple[str, str]:
    """A transformers model's own input, as ``--input`` writes it, and where it comes from."""
    config: Any = getattr(model, "config", None)
    main = getattr(model, "main_input_name", "input_ids")
    grid = _patch_grid(model, config)
    if grid is not None:
        return grid
    decoder = ""
    if getattr(config, "is_encoder_decoder", False):
        decoder = f",decoder_input_ids=1x{_tokens(config)}:int64"
    if main == "input_ids":
        n = _tokens(getattr(config, "text_config", None) or config)
        text, why = f"1x{n}:int64{decoder}", f"{n} token ids" + (" and as many decoder ids" if decoder else "")
        if _dual_tower(model, config):  # CLIP's kind: a text tower and a vision tower, both run
            return f"{text},pixel_values={_image(config)}", why + " and one image at its vision config's image_size"
        return text, why
    if main == "pixel_values":
        return _image(config) + decoder, "one image at its config's image_size"
    if main == "input_values":
        audio = getattr(config, "audio_channels", None)
        shape = f"1x{audio}x16000" if isinstance(audio, int) else "1x16000"
        return shape + decoder, "one second of 16 kHz audio"
    if main == "input_features":
        mel, frames = getattr(config, "num_mel_bins", None), getattr(config, "max_source_positions", None)
        if isinstance(mel, int) and isinstance(frames, int):  # Whisper: its encoder takes 2 x positions frames
            return f"1x{mel}x{2 * frames}{decoder}", "log-mel features at the frames its encoder takes"
        per_channel = getattr(config, "feature_size", None) or getattr(config, "input_feat_per_channel", None)
        if isinstance(per_channel, int):
            features = per_channel * int(getattr(config, "input_channels", 1) or 1)
            return f"1x128x{features}{decoder}", "128 frames of its config's feature_size features"
    raise InputSpecError(f"{type(model).__name__} takes {main!r} first, an input fxcost does not make for it",
                         hint="give --input (and name=SHAPE for keyword tensors)")


#: the diffusers models ``fxcost zoo diffusers`` sweeps, each with its input as a function of its
#: config: (--input text, where it comes from)
DIFFUSERS: dict[str, Any] = {
    "UNet2DModel": lambda c: (f"1x{c.in_channels}x64x64,1", "a 64 x 64 sample and a timestep"),
    "UNet2DConditionModel": lambda c: (
        f"1x{c.in_channels}x64x64,1,1x77x{c.cross_attention_dim}",
        "Stable Diffusion's 64 x 64 latent (512 px), a timestep, 77 text tokens"),
    "UNet3DConditionModel": lambda c: (
        f"1x{c.in_channels}x16x32x32,1,1x77x{c.cross_attention_dim}",
        "16 frames of a 32 x 32 latent, a timestep, 77 text tokens"),
    "AutoencoderKL": lambda c: (f"1x{c.in_channels}x256x256", "a 256 x 256 image, encoded and decoded"),
    "DiTTransformer2DModel": lambda c: (
        f"1x{c.in_channels}x{c.sample_size}x{c.sample_size},timestep=1:int64,class_labels=1:int64",
        "a latent of its sample_size, a timestep and a class label"),
    "SD3Transformer2DModel": lambda c: (
        f"1x{c.in_channels}x{c.sample_size}x{c.sample_size},encoder_hidden_states=1x333x{c.joint_attention_dim},"
        f"pooled_projections=1x{c.pooled_projection_dim},timestep=1",
        "a latent of its sample_size, SD3's 333 text tokens (77 CLIP + 256 T5), a timestep"),
    "FluxTransformer2DModel": lambda c: (
        f"1x4096x{c.in_channels},encoder_hidden_states=1x512x{c.joint_attention_dim},"
        f"pooled_projections=1x{c.pooled_projection_dim},timestep=1,img_ids=4096x3,txt_ids=512x3"
        + (",guidance=1" if c.guidance_embeds else ""),
        "Flux's 4,096 image tokens (1024 px) and 512 text tokens, a timestep"),
}


def diffusers_input(name: str, model: nn.Module) -> tuple[str, str]:
    """A diffusers model's own input (one of :data:`DIFFUSERS`), as ``--input`` writes it."""
    make = DIFFUSERS.get(name)
    if make is None:
        raise InputSpecError(f"fxcost does not know the inputs of diffusers' {name}",
                             hint=f"give --input; fxcost knows those of {', '.join(DIFFUSERS)}")
    return make(model.config)  # type: ignore[no-any-return]
