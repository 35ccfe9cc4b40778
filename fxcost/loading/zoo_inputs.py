"""The inputs a transformers or diffusers model takes where ``--input`` is not given, written as
``--input`` writes them, with where each size comes from.

transformers: by the model's ``main_input_name`` and its config: 128 token ids (fewer where its
``max_position_embeddings`` is smaller; ``decoder_input_ids`` as many for an encoder-decoder; and
an image where the forward takes ``pixel_values`` too and the config has a vision config: CLIP),
one image at its config's ``image_size`` and ``num_channels`` (its ``vision_config``'s where it
has one), one second of 16 kHz audio (``input_values``; ``audio_channels`` channels where the
config has them), Whisper-style log-mel features at the frames its encoder takes (``num_mel_bins``
x 2 ``max_source_positions``), 128 frames of ``feature_size`` features, or 3,000 frames (30 s) of
``num_mel_bins`` features for another speech encoder (channels first where its first layer is a
convolution over them, as Whisper's), a video at its config's ``num_frames`` (``[1, frames,
channels, h, w]``; 16 frames for ``pixel_values_videos`` where the config does not say), a time
series of its ``context_length`` (``past_values``; ``num_input_channels`` channels). A vision tower
that takes images as Qwen2-VL does (flattened patches and their ``grid_thw``) gets a 16 x 16 patch
grid with its grid's values (:func:`_patch_grids`: flat, or each patch an image, as its forward
runs). A whole vision-language model (its config names an image token) gets one image (a patch
grid where it takes one; a list of one image, Idefics 2's) and as many image tokens as its own
``get_image_features`` makes of it, run on fake tensors (:func:`_image_tokens`); one whose default
config gives image features of another width than its text model's is refused, saying so. Another
main input is refused, naming it. Then the inputs a forward requires beside its main one
(:func:`_companions`: token ids, SegGPT's prompts, Perception Encoder's audio and video, the main
input's mask of ones), and the optional ones it does not run without (:data:`_NEEDED`: Bros'
boxes, ViLT's image, LXMERT's regions, X-MOD's language...), each the first form its forward runs
on fake tensors (:func:`_fitting`); another multimodal model whose main input is ``input_ids``
gets text alone.

diffusers: the models of :data:`DIFFUSERS`, each at a size its pipelines use (a 64 x 64 latent for
Stable Diffusion's UNet, 77 text tokens; Flux's 4,096 image and 512 text tokens; SD3's 333 text
tokens), from its default config.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fxcost.errors import InputSpecError
from fxcost.pytorch.tensors import quiet_fake_mode

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


#: frames of a video model whose config does not say
VIDEO_FRAMES = 16


def _vision(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


def _frames(config: Any) -> int | None:
    vision = _vision(config)
    frames = getattr(vision, "num_frames", None) or getattr(vision, "frames_per_clip", None)
    return int(frames) if isinstance(frames, int) else None


def _what(config: Any) -> str:
    frames = _frames(config)
    return f"{frames}-frame video" if frames else "image"


def _image(config: Any) -> str:
    """One image at the config's (its vision config's) image_size (or crop_size) and num_channels
    (or in_chans); a video model's (its config has num_frames or frames_per_clip) as that many
    frames, ``[1, frames, channels, h, w]``."""
    vision = _vision(config)
    h, w = _size(getattr(vision, "image_size", None) or getattr(vision, "crop_size", None) or 224)
    channels = int(getattr(vision, "num_channels", None) or getattr(vision, "in_chans", None) or 3)
    frames = _frames(config)
    return f"1x{frames}x{channels}x{h}x{w}" if frames else f"1x{channels}x{h}x{w}"


def _naflex(model: nn.Module, config: Any) -> str | None:
    """SigLIP 2's way of taking images (its kin's too: LFM2-VL): the ``num_patches`` patches of its
    vision config flattened, ``[1, patches, channels x patch_size^2]``, with their mask and their
    grid (``spatial_shapes``, values the forward reads), as ``--input`` writes them after
    ``pixel_values=``; None for a model that takes images otherwise."""
    import math

    takes = set(_takes(model)) | set(_params(getattr(model, "get_image_features", None)))
    vision = _vision(config)
    patches, patch = getattr(vision, "num_patches", None), getattr(vision, "patch_size", None)
    if not {"spatial_shapes", "pixel_attention_mask"} <= takes or not isinstance(patches, int) or not isinstance(patch, int):
        return None
    side, channels = math.isqrt(patches), int(getattr(vision, "num_channels", None) or 3)
    return (f"1x{patches}x{channels * patch * patch},pixel_attention_mask=1x{patches}:int64=1,"
            f"spatial_shapes=1x2:int64={side};{side}")


def _dual_tower(model: nn.Module, config: Any) -> bool:
    """A model with a text and a vision tower whose forward takes both (CLIP, SigLIP, BLIP, OWL-ViT)."""
    return "pixel_values" in _takes(model) and getattr(config, "vision_config", None) is not None


#: the patch grid of the image :func:`_patch_grid` makes, in patches a side
GRID = 16


def _params(fn: Any) -> dict[str, Any]:
    """``fn``'s parameters (``inspect.Parameter`` by name, in order); none where it has no
    signature to read (or is not there: a model without ``get_image_features``)."""
    import inspect

    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def _takes(model: nn.Module) -> list[str]:
    """The names of the inputs the model's forward takes, in order."""
    return list(_params(model.forward))


def _required(fn: Any) -> list[str]:
    """The inputs ``fn`` (a model's forward, its ``get_image_features``) requires, in order: no
    default, not ``*args``/``**kwargs``."""
    return [name for name, p in _params(fn).items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _patch_grids(model: nn.Module, config: Any) -> list[tuple[str, str]]:
    """Qwen2-VL's way of taking images, which its kin share (GLM-4V, Qwen3-VL, ...): the patches
    of a 16 x 16 patch grid flattened, ``[256, channels x temporal_patch_size x patch_size^2]``,
    or each a ``[channels x temporal, patch, patch]`` image (Kimi-K2.5's convolution), with their
    grid ``(t, h, w) = (1, 16, 16)`` (``grid_thw``, values the forward reads) and, where it takes
    them, merge sizes of 1 (VideoLLaMA 3), as ``--input`` writes them: the layouts to try, in
    order. None for a model that takes images otherwise."""
    takes = _takes(model)
    grid = next((p for p in ("grid_thw", "image_grid_thw") if p in takes), None)
    vision = getattr(config, "vision_config", None) or config
    patch = getattr(vision, "patch_size", None)
    if grid is None or not isinstance(patch, int):
        return []
    channels = int(getattr(vision, "in_channels", None) or getattr(vision, "num_channels", None) or 3)
    channels *= int(getattr(vision, "temporal_patch_size", None) or getattr(vision, "patch_temporal", None) or 1)
    merge = next((p for p in ("merge_sizes", "image_merge_sizes") if p in takes), None)
    given = f",{grid}=1x3:int64=1;{GRID};{GRID}" + (f",{merge}=1:int64=1" if merge else "")
    why = f"one image as a {GRID} x {GRID} grid of {patch}-pixel patches (its grid_thw given" \
        + (", merged 1 x 1)" if merge else ")")
    return [(f"{GRID * GRID}x{channels * patch * patch}{given}", why),
            (f"{GRID * GRID}x{channels}x{patch}x{patch}{given}", why + ", each patch an image")]


def _patch_grid(model: nn.Module, config: Any) -> tuple[str, str] | None:
    """A vision tower's patch grid (:func:`_patch_grids`): the first layout its forward runs on."""
    grids = _patch_grids(model, config)
    if not grids:
        return None
    found = _fitting(model, [text for text, _ in grids])
    return next(grid for grid in grids if grid[0] == found)


def _trial(fn: Any, text: str) -> tuple[bool | None, Any]:
    """``(True, what fn returns)`` on the inputs of ``text`` (``--input`` text: positional shapes,
    then ``name=SHAPE``), made fake tensors that follow their given values (a patch grid's
    ``grid_thw``, a mask of ones); ``(None, None)`` where it stops at a value read (the inputs fit
    as far as it got: ``--real`` runs it), ``(False, None)`` where it fails otherwise. ``fn`` is a
    copy's: a first call installs transformers' hooks that capture hidden states, and the analysis
    must find the model as it was built."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from fxcost.loading.specs import make_inputs
    from fxcost.pytorch.diagnosis import values_read
    from fxcost.pytorch.known import Knowing, KnownValues

    ((args, given),) = make_inputs([text], any_name=True)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    reals = [*args, *given.values()]
    fakes = [mode.from_tensor(t.to("meta")) for t in reals]
    known = [(f, t) for f, t in zip(fakes, reals, strict=True) if t.device.type != "meta"]
    try:
        with torch.no_grad(), quiet_fake_mode(), Knowing(mode, KnownValues(known)):
            return True, fn(*fakes[:len(args)], **dict(zip(given, fakes[len(args):], strict=True)))
    except Exception as e:  # a trial only: the analysis then fails, and says why, as it would without one
        return (None if values_read(e) else False), None


def _image_features(model: nn.Module, image: str) -> tuple[int, int] | None:
    """``(tokens, width)`` of the features the model's ``get_image_features`` makes of ``image``
    (``--input`` keyword text), run on fake tensors (:func:`_trial`): the image tokens its text must
    hold, and their width. None where it has no ``get_image_features`` or that does not run so."""
    import copy

    import torch

    if not hasattr(model, "get_image_features"):
        return None
    get: Any = copy.deepcopy(model).get_image_features
    image += _required_ids(get, getattr(model, "config", None), image)  # InstructBLIP's Q-Former takes its ids
    ran, made = _trial(get, image)
    if not ran:
        return None
    made = getattr(made, "pooler_output", made)
    found = [made] if isinstance(made, torch.Tensor) else list(made) if isinstance(made, (list, tuple)) else []
    widths = {int(t.shape[-1]) for t in found if isinstance(t, torch.Tensor) and t.dim() >= 2}
    if len(widths) != 1 or len(found) != sum(isinstance(t, torch.Tensor) for t in found):
        return None
    return sum(t.numel() // t.shape[-1] for t in found), widths.pop()


def _sized_image(model: nn.Module, config: Any) -> tuple[str, str]:
    """One image at its vision config's size, with its ``image_sizes`` (``[[h, w]]``) where
    ``get_image_features`` requires them (Mistral 3's patch merger reads them); cut into the tiles
    LLaVA-NeXt's grid of resolutions makes of it (the model's own ``image_size_to_num_patches``:
    ``[1, tiles, channels, h, w]``) where its module has that."""
    import sys

    naflex = _naflex(model, config)
    if naflex is not None:
        return naflex, "one image as its vision config's num_patches patches, with their mask and grid"
    image = _image(config)
    why = f"one {_what(config)} at its vision config's size"
    if "image_sizes" not in _required(getattr(model, "get_image_features", None)) or image.count("x") != 3:
        return image, why
    _, channels, h, w = image.split("x")
    tiles = getattr(sys.modules.get(type(model).__module__), "image_size_to_num_patches", None)
    pinpoints, side = getattr(config, "image_grid_pinpoints", None), getattr(_vision(config), "image_size", None)
    if callable(tiles) and pinpoints and isinstance(side, int):
        n = tiles(image_size=(int(h), int(w)), grid_pinpoints=pinpoints, patch_size=side)
        image, why = f"1x{n}x{channels}x{h}x{w}", why + f" as its {n} tiles (its grid of resolutions)"
    return f"{image},image_sizes=1x2:int64={h};{w}", why + " and its image_sizes"


def _image_tokens(model: nn.Module, config: Any) -> tuple[str, str] | None:
    """A whole vision-language model (its forward takes ``input_ids`` and ``pixel_values``, one of
    them first, and its config names an image token: LLaVA, BLIP-2): one image (a patch grid where it takes one, else at its
    vision config's size) and as many image tokens as ``get_image_features`` makes of it, and no
    text. A default config whose image features are not as wide as its text model's embeddings
    (Qwen2-VL's: 3,584 against 8,192) is refused: no forward of it runs. None for another model."""
    takes = _takes(model)
    token = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    if not {"input_ids", "pixel_values"} <= set(takes) or takes[0] not in ("input_ids", "pixel_values") \
            or not isinstance(token, int):
        return None
    tried = _patch_grids(model, config)
    if not tried:  # an image at its size; or Idefics 2's, SmolVLM's list of images per sample
        image, why = _sized_image(model, config)  # ([1, images, c, h, w]), whose pixels it reads to find
        listed = image.replace("1x", "1x1x", 1) + "=1"  # padding images (all zero): ones, one real image
        if "pixel_attention_mask" in _required(getattr(model, "get_image_features", None)):
            listed += ",pixel_attention_mask=1x1:bool=1"  # Granite Docling: which tiles are real (this one)
        tried = [(image, why)] + ([(listed, why + " (a list of one image, its pixels 1)")] if image.count("x") == 3 else [])
    found = next(((image, why, made) for image, why in tried
                  if (made := _image_features(model, f"pixel_values={image}")) is not None), None)
    if found is None:
        return None
    image, why, features = found
    tokens, width = features
    text = getattr(config, "text_config", None) or config
    hidden = getattr(text, "hidden_size", None)
    if isinstance(hidden, int) and width != hidden:
        raise InputSpecError(f"{type(model).__name__}'s config does not fit together: its image features are {width:,} "
                             f"wide and its text model's embeddings {hidden:,}, so no forward with an image runs",
                             hint="give a config whose vision tower and text model agree (--config, or hf:path/to/config.json)")
    kinds = "".join(f",{k}=1x{tokens}:int64=1" for k in ("mm_token_type_ids", "moe_mm_token_type_ids") if k in takes)
    ids = f"1x{tokens}:int64={token}"
    return (f"{ids},pixel_values={image}{kinds}" if takes[0] == "input_ids" else f"{image},input_ids={ids}{kinds}",
            why + f" and its {tokens} image tokens (each of type 1, image, where it takes their types), no text")


def transformers_input(model: nn.Module) -> tuple[str, str]:
    """A transformers model's own input, as ``--input`` writes it, and where it comes from."""
    config: Any = getattr(model, "config", None)
    main = getattr(model, "main_input_name", "input_ids")
    takes = _takes(model)
    first = takes[:1]
    if isinstance(main, str) and first and first[0] != main and first[0] in _MAIN_INPUTS:
        main = first[0]  # a tower that keeps its class's default main_input_name: its forward's first input
    vlm = _image_tokens(model, config)
    grid = _patch_grid(model, config) if vlm is None and first in (["hidden_states"], ["pixel_values"]) else None
    if grid is not None:  # a vision tower alone
        return grid
    decoding = _tokens(config) if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in takes else 0
    decoder = f",decoder_input_ids=1x{decoding}:int64" if decoding else ""
    make = _MAIN_INPUTS.get(main) if isinstance(main, str) else None  # OneFormer names a list of two
    found = vlm or (make(model, config) if make is not None else None)
    if found is None:
        raise InputSpecError(f"{type(model).__name__} takes {main!r} first, an input fxcost does not make for it",
                             hint="give --input (and name=SHAPE for keyword tensors)")
    text, why = found
    ids = _required_ids(model, config, text)
    text, why = _companions(model, config, text, why)
    text, why = _masks(model, text + decoder + ids, why, f"{main}_mask")
    return text, why + (f" and {decoding} decoder ids" if decoder and main == "input_ids" else "") + (
        f" and {_tokens(_text_config(config))} token ids as {', '.join(n.split('=')[0] for n in ids.split(',')[1:])}"
        if ids else "")


def _companions(model: nn.Module, config: Any, text: str, why: str) -> tuple[str, str]:
    """``text`` (``--input`` text) with each input of :data:`_COMPANIONS` the forward requires and
    ``text`` lacks, and ``why`` with their names: SegGPT's prompt image and mask (as large as its
    image), the audio or video beside a text of Perception Encoder's audio and video models. A
    forward that takes an input of :data:`_NEEDED` and does not run on fake tensors without it
    gets the first of its forms it runs with: Bros, which checks for boxes, one box per token."""
    named = _named(text)
    main = text.split(",")[0]
    made = [name for name in _required(model.forward)[1:] if name in _COMPANIONS and name not in named]
    for name in made:  # each the first of its shapes the forward runs on
        text = _fitting(model, [f"{text},{name}={shape}" for shape in _COMPANIONS[name](config, main)])
    takes = _takes(model)
    for name, make in _NEEDED.items():  # optional inputs a forward may still need: the first it runs with
        if name in takes[1:] and name not in named:
            text = _fitting(model, [text] + [text + more for more in make(model, config, main.split(":")[0])])
            made += [name] if f",{name}=" in text else []
    return text, why + (f", with its {', '.join(made)}" if made else "")


#: optional inputs some forwards need all the same (:func:`_companions`), each its forms (``--input``
#: text to add) as a function of (model, config, the main input's shape): a box per token (float:
#: Bros; integer coordinates), the image (or a video of its config's frames, as large as TVP's
#: prompter pads them) beside a text (ViLT), LXMERT's 36 region features and boxes (its paper's 36 objects per image), X-MOD's
#: language (adapter 0), Kosmos-2's text beside its image (its image's ``latent_query_num`` tokens,
#: each marked an image position, no text), the audio features beside a text (CLAP)
_NEEDED: dict[str, Any] = {
    "bbox": lambda model, config, shape: [f",bbox={shape}x4", f",bbox={shape}x4:int64"],
    "pixel_values": lambda model, config, shape: [
        f",pixel_values={_image(config)}", f",pixel_values={_clip(config)}", *_padded_clip(config)],
    "visual_feats": lambda model, config, shape: [f",visual_feats=1x36x{getattr(config, 'visual_feat_dim', 2048)},"
                                                  f"visual_pos=1x36x{getattr(config, 'visual_pos_dim', 4)}"],
    "lang_ids": lambda model, config, shape: [",lang_ids=1:int64"],
    "input_ids": lambda model, config, shape: [f",input_ids=1x{_tokens(_text_config(config))}:int64"] + [
        f",input_ids=1x{n}:int64,image_embeds_position_mask=1x{n}:int64=1"  # Kosmos-2: its image's latent tokens
        for n in [getattr(config, "latent_query_num", None)] if isinstance(n, int)],
    "input_features": lambda model, config, shape: [
        f",input_features={found[0]}" for found in [_features(model, getattr(config, "audio_config", None) or config)]
        if found is not None] + _swin_spectrogram(model, getattr(config, "audio_config", None)),
}


#: the inputs :func:`_companions` makes, each the shapes it may take as a function of (config, the
#: main input's text): one second of audio (with a channel axis: Perception Encoder's DAC), a video
_COMPANIONS: dict[str, Any] = {
    "prompt_pixel_values": lambda config, main: [main],
    "prompt_masks": lambda config, main: [main],
    "input_values": lambda config, main: ["1x16000", "1x1x16000"],
    "pixel_values_videos": lambda config, main: [_videos(None, getattr(config, "video_config", None) or config)[0]],
}


def _masks(model: nn.Module, text: str, why: str, mask: str) -> tuple[str, str]:
    """``text`` (``--input`` text) with the main input's ``mask`` (Qwen3-ASR's
    ``input_features_mask``) where the forward requires it, or takes it and does not run on fake
    tensors without it (AudioFlamingo 3), and ``text`` lacks it: all ones (nothing padded) over
    one axis of the main input, the first axis from the last (frames), and layout of a 3-D main
    input (``[1, a, b]`` or ``[1, b, a]``), its forward runs on, on fake tensors (:func:`_fitting`)."""
    main, _, rest = text.partition(",")
    shape, colon, dtype = main.partition(":")
    dims = shape.split("x")
    if mask not in _takes(model)[1:] or mask in _named(text) or "=" in main:
        return text, why
    layouts = [dims] + ([[dims[0], dims[2], dims[1]]] if len(dims) == 3 else [])
    tried = ["x".join(layout) + colon + dtype + "".join("," + part for part in rest.split(",") if part)
             + f",{mask}=1x{axis}:int64=1" for layout in layouts for axis in reversed(layout[1:])]
    optional = mask not in _required(model.forward)
    found = _fitting(model, list(dict.fromkeys([text] * optional + tried)))
    if found == text:
        return text, why
    swapped = found.split(",")[0].split(":")[0] != shape
    return found, why + (", channels first" if swapped else "") + f", with {mask} all ones (nothing padded)"


def _named(text: str) -> set[str]:
    """The keyword inputs an ``--input`` text gives (``name=SHAPE`` parts)."""
    return {part.split("=")[0] for part in text.split(",") if "=" in part}


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def _required_ids(model: Any, config: Any, given: str) -> str:
    """``,NAME=1xN:int64`` for each token-id input the model's forward (or a function: its
    ``get_image_features``) requires (no default) that ``given`` (``--input`` text) does not hold:
    Grounding DINO's ``input_ids`` beside the image, InstructBLIP's ``qformer_input_ids``; N as
    :func:`_tokens` of its text config."""
    required = _required(model.forward) if isinstance(model, nn.Module) else _required(model)
    named = _named(given)
    first = 1 if isinstance(model, nn.Module) else 0  # a forward's first input is the main one, given
    missing = [name for name in required[first:] if name.endswith("input_ids") and name not in named]
    return "".join(f",{name}=1x{_tokens(_text_config(config))}:int64" for name in missing)


def _text(model: nn.Module, config: Any) -> tuple[str, str]:
    n = _tokens(_text_config(config))
    if _dual_tower(model, config):  # CLIP's kind: a text tower and a vision tower, both run
        naflex = _naflex(model, config)
        if naflex is not None:
            return f"1x{n}:int64,pixel_values={naflex}", f"{n} token ids and one image as its vision config's patches"
        return f"1x{n}:int64,pixel_values={_image(config)}", f"{n} token ids and one {_what(config)} at its vision config's size"
    codebooks = getattr(config, "num_codebooks", None)
    if isinstance(codebooks, int) and codebooks > 1:  # an audio decoder: one row of ids, or one per codebook (MusicGen)
        if _fitting(model, [f"1x{n}:int64", f"{codebooks}x{n}:int64"]) != f"1x{n}:int64":
            return f"{codebooks}x{n}:int64", f"{n} token ids for each of its {codebooks} codebooks"
    return f"1x{n}:int64", f"{n} token ids"


def _pixels(model: nn.Module, config: Any) -> tuple[str, str]:
    naflex = _naflex(model, config)
    if naflex is not None:
        return naflex, "one image as its config's num_patches patches, with their mask and grid"
    from transformers.models.auto import modeling_auto

    matchers = getattr(modeling_auto, "MODEL_FOR_KEYPOINT_MATCHING_MAPPING_NAMES", {})  # transformers' own list
    image = _image(config)
    if getattr(config, "model_type", None) in matchers:  # a pair of images: EfficientLoFTR, LightGlue, SuperGlue
        return image.replace("1x", "1x2x", 1), f"a pair of {_what(config)}s at its config's size (a keypoint matcher)"
    return image, f"one {_what(config)} at its config's size"


def _audio(model: nn.Module, config: Any) -> tuple[str, str]:
    """One second of 16 kHz audio, ``[1, samples]`` as wav2vec2 takes it, or with a channel axis
    (``[1, channels, samples]``: ``audio_channels``, or one for a codec whose first layer is a
    convolution over it: DAC, VibeVoice), or, for a model that takes a spectrogram as its
    ``input_values`` (AST), ``max_length`` frames of ``num_mel_bins``: the first of these its
    forward runs on fake tensors."""
    audio = getattr(config, "audio_channels", None)
    if isinstance(audio, int):
        return f"1x{audio}x16000", "one second of 16 kHz audio"
    mel, frames = getattr(config, "num_mel_bins", None), getattr(config, "max_length", None)
    spectrogram = [f"1x{frames}x{mel}"] if isinstance(mel, int) and isinstance(frames, int) else []
    found = _fitting(model, ["1x16000", "1x1x16000", *spectrogram])
    if found == "1x1x16000":
        return found, "one second of 16 kHz audio, one channel"
    if found in spectrogram:
        return found, f"a spectrogram of its max_length ({frames} frames) of {mel} mel bins"
    return "1x16000", "one second of 16 kHz audio"


def _fitting(model: nn.Module, texts: list[str]) -> str:
    """The first of ``texts`` (``--input`` texts) the model's forward runs on, on fake tensors, on a
    copy of it (:func:`_trial`); else the first it runs on up to a value read (Qwen3-ASR's: the
    analysis refuses it at that line, and ``--real`` runs it); else the first (the analysis then
    says why)."""
    import copy

    try:
        trial: Any = copy.deepcopy(model)
    except Exception:  # a parameter subclass that cannot be copied: no trial
        return texts[0]
    read = None
    for text in texts:
        ran = _trial(trial, text)[0]
        if ran:
            return text
        read = read or (text if ran is None else None)
    return read or texts[0]


#: log-mel frames of an encoder whose config does not bound them: 30 s at 10 ms a frame, Whisper's window
FRAMES = 3000


def _features(model: nn.Module, config: Any) -> tuple[str, str] | None:
    mel, frames = getattr(config, "num_mel_bins", None), getattr(config, "max_source_positions", None)
    if isinstance(mel, int) and isinstance(frames, int):  # Whisper: its encoder takes 2 x positions frames
        return f"1x{mel}x{2 * frames}", "log-mel features at the frames its encoder takes"
    per_channel = getattr(config, "feature_size", None) or getattr(config, "input_feat_per_channel", None)
    if isinstance(per_channel, int):
        features = per_channel * int(getattr(config, "input_channels", 1) or 1)
        return f"1x128x{features}", "128 frames of its config's feature_size features"
    inner = getattr(config, "encoder_config", None) or getattr(config, "audio_config", None)  # a CTC head's encoder
    mel = mel or getattr(config, "feature_projection_input_dim", None) or getattr(inner, "num_mel_bins", None)
    if not isinstance(mel, int):
        return None
    # a convolution over the mel bins as channels first (Whisper's layout), else frames first (a conformer's)
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))), None)
    if isinstance(first, nn.Conv1d) and first.in_channels == mel:
        return f"1x{mel}x{FRAMES}", f"{FRAMES} frames (30 s) of {mel} log-mel features, channels first"
    return f"1x{FRAMES}x{mel}", f"{FRAMES} frames (30 s) of {mel} log-mel features"


def _series(model: nn.Module, config: Any) -> tuple[str, str] | None:
    context = getattr(config, "context_length", None)
    if not isinstance(context, int):
        return None
    channels = getattr(config, "num_input_channels", None)
    shape = f"1x{context}x{channels}" if isinstance(channels, int) else f"1x{context}"
    required = _required(model.forward)
    # TimesFM requires which steps are padding (none) and the series' frequency class (0, high)
    extra = "".join(part for name, part in (("past_values_padding", f",past_values_padding=1x{context}:int64"),
                                            ("freq", ",freq=1x1:int64")) if name in required)
    return shape + extra, f"a series of its context_length ({context} steps)" + (", no padding, frequency 0" if extra else "")


def _clip(config: Any) -> str:
    """A video of the config's ``num_frames`` (its own, where its vision config has none: TVP's) at
    its image size: ``[1, frames, c, h, w]``."""
    image = _image(config)
    frames = _frames(config) or getattr(config, "num_frames", None) or VIDEO_FRAMES
    return image if image.count("x") == 4 else image.replace("1x", f"1x{frames}x", 1)


def _padded_clip(config: Any) -> list[str]:
    """TVP's video: as large as the frame its prompter pads (``max_img_size``), where it has one."""
    side = getattr(config, "max_img_size", None)
    return [f",pixel_values={_clip(config).rsplit('x', 2)[0]}x{side}x{side}"] if isinstance(side, int) else []


def _swin_spectrogram(model: nn.Module, audio: Any) -> list[str]:
    """CLAP's spectrogram, ``[1, 1, frames, mel]``: as many frames as its Swin input holds (its
    config's ``spec_size`` x its encoder's ``freq_ratio``: 1,024; its feature extractor makes
    1,001, 10 s)."""
    spec, mel = getattr(audio, "spec_size", None), getattr(audio, "num_mel_bins", None)
    ratio = next((m.freq_ratio for m in model.modules() if isinstance(getattr(m, "freq_ratio", None), int)), None)
    ok = all(isinstance(n, int) for n in (spec, ratio, mel))
    return [f",input_features=1x1x{spec * ratio}x{mel}"] if ok else []  # type: ignore[operator]


def _videos(model: Any, config: Any) -> tuple[str, str]:
    frames = _frames(config) or VIDEO_FRAMES
    image = _image(config)
    shape = image if _frames(config) else image.replace("1x", f"1x{frames}x", 1)
    return shape, f"a {frames}-frame video at its config's size"


_MAIN_INPUTS: dict[str, Any] = {"input_ids": _text, "pixel_values": _pixels, "pixel_values_videos": _videos,
                                "input_values": _audio, "input_features": _features, "past_values": _series}


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
