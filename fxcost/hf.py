"""transformers models built from their config classes: offline, random weights, on meta.

``hf:GPT2LMHeadModel`` builds the architecture from its config class's defaults;
``hf:path/to/config.json`` (or a folder holding one) reads a local config and builds the class
its ``architectures`` names (else the base ``AutoModel``). ``overrides`` set config fields.
Nothing is downloaded: no weights are loaded, and a config is only ever read from disk.
The model is built under ``torch.device("meta")``, so a 7B-parameter model takes no memory.
``use_cache`` defaults to ``False``: fxcost counts one forward pass, and a key/value cache is
state for generation (its ``DynamicCache`` is not a tensor structure tracers can follow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fxcost.errors import SpecError

PREFIX = "hf:"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise SpecError(
            "hf: models need the transformers package, which is not installed",
            hint="pip install 'fxcost[hf]' (or pip install transformers)",
        ) from None
    return transformers


def load_hf(spec: str, overrides: dict[str, Any] | None = None) -> tuple[nn.Module, str]:
    """Build the model an ``hf:`` spec names. Returns the module (on meta) and a display name."""
    tf = _transformers()
    target = spec.removeprefix(PREFIX)
    overrides = dict(overrides or {})
    overrides.setdefault("use_cache", False)
    path = Path(target)
    if target.endswith(".json") or path.is_dir():
        if not path.exists():
            raise SpecError(f"config {target!r} does not exist", hint="give a path to a config.json, or a class name: hf:GPT2LMHeadModel")
        try:
            config = tf.AutoConfig.from_pretrained(str(path), local_files_only=True, **overrides)
        except Exception as e:
            raise SpecError(f"cannot read config {target!r}: {type(e).__name__}: {e}",
                            hint="the file must be a transformers config.json with a model_type") from e
        archs = getattr(config, "architectures", None) or []
        cls = getattr(tf, archs[0], None) if archs else None
        name = archs[0] if cls is not None else type(config).__name__.removesuffix("Config") + "Model"
        build = (lambda: cls(config)) if cls is not None else (lambda: tf.AutoModel.from_config(config))
    else:
        cls = getattr(tf, target, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module) and getattr(cls, "config_class", None)):
            close = sorted(n for n in dir(tf) if n.lower().startswith(target.lower()[:4]) and n.endswith(("Model", "LMHeadModel", "ForCausalLM")))[:8]
            raise SpecError(
                f"transformers has no model class {target!r}",
                hint="name a model class, e.g. hf:GPT2LMHeadModel, hf:BertModel, hf:LlamaForCausalLM"
                + (f"; close: {', '.join(close)}" if close else ""),
            )
        try:
            config = cls.config_class(**overrides)
        except Exception as e:
            raise SpecError(f"{cls.config_class.__name__}({_kv(overrides)}) failed: {type(e).__name__}: {e}",
                            hint="check the --config names against the config class") from e
        name = target
        build = lambda: cls(config)  # noqa: E731
    base = (cls.config_class() if cls is not None and not (target.endswith(".json") or path.is_dir())
            else tf.AutoConfig.from_pretrained(str(path), local_files_only=True))
    unknown = [k for k in overrides if not hasattr(base, k)]
    if unknown:
        raise SpecError(f"{type(config).__name__} has no field {', '.join(map(repr, unknown))}",
                        hint="--config sets fields of the model's config class, e.g. --config n_layer=6")
    try:
        with torch.device("meta"):
            model = build()
    except Exception as e:
        raise SpecError(f"building {name} from its config failed: {type(e).__name__}: {e}",
                        hint="check the --config values; --debug shows the traceback") from e
    return model.eval(), name


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in d.items())
