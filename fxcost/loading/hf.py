"""transformers models built from their config classes: offline, random weights, on meta.

``hf:GPT2LMHeadModel`` builds the architecture from its config class's defaults;
``hf:path/to/config.json`` (or a folder holding one) reads a local config and builds the class
its ``architectures`` names (else the base ``AutoModel``). ``overrides`` set config fields.
Nothing is downloaded: no weights are loaded, and a config is only ever read from disk.
The model is built under ``torch.device("meta")``, so a 7B-parameter model takes no memory.
Where the config has ``use_cache``, it defaults to ``False``: fxcost counts one forward pass, and a key/value cache is
state for generation (its ``DynamicCache`` is not a tensor structure tracers can follow). A config's ``dtype``
(``--config dtype=bfloat16``, or ``torch_dtype`` in a config.json) is honored: the model is cast to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fxcost.errors import SpecError
from fxcost.pytorch.known import built_on_meta

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


def load_hf(spec: str, overrides: dict[str, Any] | None = None, *, meta: bool = True) -> tuple[nn.Module, str]:
    """Build the model an ``hf:`` spec names. Returns the module (on meta) and a display name.
    ``meta=False`` builds it with real random weights (seed 0), for exports that run."""
    tf = _transformers()
    target = spec.removeprefix(PREFIX)
    path = Path(target)
    from_file = target.endswith(".json") or path.is_dir()
    cls, base, name = _from_file(tf, path) if from_file else _from_class(tf, target)
    overrides = {**({"use_cache": False} if hasattr(base, "use_cache") else {}), **(overrides or {})}
    unknown = [k for k in overrides if not hasattr(base, k)]
    if unknown:
        raise SpecError(f"{type(base).__name__} has no field {', '.join(map(repr, unknown))}",
                        hint="--config sets fields of the model's config class, e.g. --config n_layer=6")
    try:
        config = (tf.AutoConfig.from_pretrained(str(path), local_files_only=True, **overrides) if from_file
                  else type(base)(**overrides))
        # seed 0 for reproducible random weights, without touching the caller's random state
        with torch.random.fork_rng(devices=[]), torch.device("meta" if meta else "cpu"):
            torch.manual_seed(0)
            def build() -> nn.Module:
                return cls(config) if cls is not None else tf.AutoModel.from_config(config)

            model = built_on_meta(build) if meta else build()
    except Exception as e:
        raise SpecError(f"building {name}({_kv(overrides)}) from its config failed: {type(e).__name__}: {e}",
                        hint="check the --config values; --debug shows the traceback") from e
    # transformers 5 names it dtype (reading torch_dtype there prints a deprecation); 4.x stored torch_dtype
    dtype = getattr(config, "dtype", None) or vars(config).get("torch_dtype")
    if isinstance(dtype, torch.dtype) and dtype != torch.float32:
        model.to(dtype)  # the config's dtype, as from_pretrained honors it; building from the class does not
    return model.eval(), name


def _from_file(tf: Any, path: Path) -> tuple[Any, Any, str]:
    """A local config: the class its ``architectures`` names (None: the base AutoModel)."""
    if not path.exists():
        raise SpecError(f"config {str(path)!r} does not exist", hint="give a path to a config.json, or a class name: hf:GPT2LMHeadModel")
    try:
        base = tf.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise SpecError(f"cannot read config {str(path)!r}: {type(e).__name__}: {e}",
                        hint="the file must be a transformers config.json with a model_type") from e
    archs = getattr(base, "architectures", None) or []
    cls = _model_class(tf, archs[0]) if archs else None
    if archs and cls is None:
        raise SpecError(f"{str(path)!r} names architecture {str(archs[0])[:80]!r}, which is no model class of this transformers",
                        hint=f"upgrade transformers, or fix 'architectures' in the config (transformers {tf.__version__})")
    return cls, base, archs[0] if cls is not None else type(base).__name__.removesuffix("Config") + "Model"


def _model_class(tf: Any, name: Any) -> Any:
    """transformers' model class ``name``: a public name of the package that is an ``nn.Module``
    subclass with a config class, else None (a config file's ``architectures`` is data: it must not
    reach any other attribute of transformers)."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        return None
    cls = getattr(tf, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) and getattr(cls, "config_class", None) else None


def _from_class(tf: Any, target: str) -> tuple[Any, Any, str]:
    """A model class by name, with its config class's defaults."""
    cls: Any = _model_class(tf, target)
    if cls is None:
        if target.startswith("Auto"):
            raise SpecError(f"hf:{target} has no config of its own", hint="name a concrete class (hf:BertModel), or give a config: hf:path/to/config.json")
        close = sorted(n for n in dir(tf) if n.lower().startswith(target.lower()[:4]) and n.endswith(("Model", "ForCausalLM"))
                       and n != target)[:8]
        raise SpecError(
            f"transformers has no model class {target!r}",
            hint="name a model class, e.g. hf:GPT2LMHeadModel, hf:BertModel, hf:LlamaForCausalLM"
            + (f"; close: {', '.join(close)}" if close else ""),
        )
    model_cls: Any = cls  # mypy narrowed it to type[Module], which has no config_class
    return model_cls, model_cls.config_class(), target


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in d.items())
