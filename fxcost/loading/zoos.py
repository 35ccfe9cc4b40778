"""timm, torchvision and diffusers models by name: ``timm:convnext_tiny``, ``tv:resnet50``
(``torchvision:`` too), ``diffusers:UNet2DConditionModel``, built without weights (nothing is
downloaded: ``pretrained=False``, ``weights=None``, a diffusers model from its default config) on
the meta device, with constructor arguments from ``--arg``. (transformers' models are ``hf:``
specs, :mod:`fxcost.loading.hf`; their own inputs are here too.)

Each has an input size of its own, used where ``--input`` is not given and said so: timm's from
the model's data config (``timm.data.resolve_model_data_config``: its pretrained config, or the
image size it was built for); torchvision's from the crop its first published weights are
evaluated at (a ViT's from the image size it was built for), with 16 frames for video models and
520 x 520 for segmentation, as torchvision's references evaluate them; a detection model takes a
list of one image at the size its transform resizes to (``[3x800x800]``), an optical-flow model a
pair of 440 x 1024 frames.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from typing import Any

import torch
from torch import nn

from fxcost.errors import SpecError, first_line, printable

PREFIXES = {"timm:": "timm", "tv:": "torchvision", "torchvision:": "torchvision", "diffusers:": "diffusers"}


def zoo_of(spec: str) -> tuple[str, str] | None:
    """``("timm", "convnext_tiny")`` for ``timm:convnext_tiny``; None for any other spec."""
    for prefix, zoo in PREFIXES.items():
        if spec.startswith(prefix):
            return zoo, spec[len(prefix):]
    return None


def _package(zoo: str) -> Any:
    try:
        return __import__(zoo)
    except ImportError:
        raise SpecError(f"{zoo} models need the {zoo} package, which is not installed",
                        hint=f"pip install 'fxcost[zoo]' (or pip install {zoo})") from None


def model_names(zoo: str) -> list[str]:
    """Every model name of ``zoo``: ``"timm"``, ``"torchvision"``, ``"diffusers"`` (the models
    whose inputs fxcost knows: :data:`fxcost.loading.zoo_inputs.DIFFUSERS`), ``"transformers"``
    (the base model class of every model type in its auto mapping)."""
    from fxcost.loading import zoo_inputs

    if zoo == "timm":
        return list(_package("timm").list_models())
    if zoo == "diffusers":
        return list(zoo_inputs.DIFFUSERS)
    if zoo == "transformers":
        return zoo_inputs.transformers_models()
    return list(_package("torchvision").models.list_models())


def _unknown(zoo: str, name: str) -> SpecError:
    names = model_names(zoo)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}" if close else f"{len(names):,} models: {', '.join(names[:8])}, ..."
    return SpecError(f"{zoo} has no model {printable(name)!r}", hint=hint)


def load_zoo(spec: str, args: dict[str, Any] | None = None, *, meta: bool = True) -> tuple[nn.Module, str]:
    """The model ``spec`` names, built without weights (on meta unless ``meta=False``), and its
    display name."""
    found = zoo_of(spec)
    assert found is not None
    zoo, name = found
    if name not in model_names(zoo) and not (zoo == "diffusers" and _diffusers_class(name) is not None):
        raise _unknown(zoo, name)
    try:
        model = _built(zoo, name, args, "meta" if meta else "cpu")
    except (NotImplementedError, RuntimeError) as e:  # a constructor that reads a value it computed (RegNet's widths)
        if not meta:
            raise
        model = _built(zoo, name, args, "cpu")
        print(printable(f"fxcost: note: {name} cannot be built on the meta device ({type(e).__name__}: "
                        f"{first_line(e)}); built on the CPU, with random weights"), file=sys.stderr)
    return model.eval(), name


def _built(zoo: str, name: str, args: dict[str, Any] | None, device: str) -> nn.Module:
    # their constructors warn about how weights will be initialized in releases to come: no
    # weights are initialized on meta, and the warning is not the user's to act on here
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            if zoo == "timm":
                return _package("timm").create_model(name, pretrained=False, **(args or {}))  # type: ignore[no-any-return]
            if zoo == "diffusers":  # its default config, --arg overriding fields
                return _diffusers_class(name)(**(args or {}))  # type: ignore[no-any-return]
            return _torchvision_model(name, dict(args or {}))
        except TypeError as e:  # an --arg the constructor does not take
            raise SpecError(f"{zoo}:{name}: {e}", hint="--arg passes the model's constructor arguments, e.g. "
                                                      "--arg num_classes=10") from e


def _diffusers_class(name: str) -> Any:
    """diffusers' model class ``name`` (a ``ModelMixin``), or None."""
    package = _package("diffusers")
    cls = getattr(package, name, None) if name.isidentifier() and not name.startswith("_") else None
    return cls if isinstance(cls, type) and issubclass(cls, package.ModelMixin) else None


def _torchvision_model(name: str, args: dict[str, Any]) -> nn.Module:
    """torchvision's model ``name`` without weights: its backbone's too (segmentation and
    detection models download their backbone's ImageNet weights unless told not to)."""
    import inspect

    models = _package("torchvision").models
    if "weights_backbone" in inspect.signature(models.get_model_builder(name)).parameters:
        args.setdefault("weights_backbone", None)
    return models.get_model(name, weights=None, **args)  # type: ignore[no-any-return]


def default_input(spec: str, model: nn.Module) -> tuple[str, str]:
    """The input ``model`` (built from ``spec``) takes where ``--input`` is not given, as --input
    writes it, and where that size comes from."""
    from fxcost.loading import zoo_inputs

    if spec.startswith("hf:"):
        return zoo_inputs.transformers_input(model)
    zoo, name = zoo_of(spec) or ("", "")
    if zoo == "diffusers":
        return zoo_inputs.diffusers_input(name, model)
    if zoo == "timm":
        config = _package("timm").data.resolve_model_data_config(model)
        return "1x" + "x".join(map(str, config["input_size"])), "its data config (timm.data.resolve_model_data_config)"
    models = _package("torchvision").models
    family = next((f for f in ("detection", "optical_flow", "segmentation", "video")
                   if name in models.list_models(module=getattr(models, f))), "classification")
    if family == "detection":  # its transform resizes each image to min_size on its short side
        transform: Any = model.transform
        side = int(transform.min_size[0])
        return f"[3x{side}x{side}]", "one image at its transform's own size (min_size)"
    if family == "optical_flow":
        return "1x3x440x1024,1x3x440x1024", "a pair of Sintel frames padded to a multiple of 8, as torchvision's reference evaluates"
    if family == "segmentation":
        return "1x3x520x520", "torchvision's segmentation evaluation size"
    size = getattr(model, "image_size", None)  # a ViT is built for one size, whatever its weights say
    if size is None:
        weights = list(models.get_model_weights(name))
        crop = getattr(weights[0].transforms(), "crop_size", None) if weights else None
        size = crop[0] if crop else 224
    if family == "video":
        return f"1x3x16x{size}x{size}", "16 frames at its first weights' crop size"
    why = "the image size it is built for" if hasattr(model, "image_size") else "its first weights' crop size"
    return f"1x3x{size}x{size}", why
