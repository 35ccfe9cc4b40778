"""The working copy: a weightless copy of the user's model, so analysis never touches the original.

The copy shares no tensor with the original: every parameter, buffer and plain tensor
attribute is replaced by a meta tensor of the same shape, stride, dtype and ``requires_grad``
(``copy.deepcopy`` with a pre-filled memo, so a tensor tied between two modules stays one tensor
in the copy, no weight bytes are copied whatever the model's size, and a tensor computed from
parameters, such as the weight of the old hook-based ``weight_norm``, copies too). Lazy modules
materialize on meta from the input shapes. :func:`fakeify` then swaps the meta tensors for fake
CPU tensors owned by one ``FakeTensorMode``, under which the analysis runs.

The model's forward hooks are copied with it. torch's own run: they are part of the computation
(the old ``weight_norm`` and ``spectral_norm`` compute the weight in a forward pre-hook). The
user's (any hook whose code is not torch's) are taken off the copy unless the analysis is asked to
run them (``hooks=True``): an analysis runs the forward several times on fake tensors, and a hook
that logs or writes files would do so each time. A hook that runs and fails on data-free tensors
(a logging hook reading values) is taken off the copy by the analysis (:func:`hook_in`,
:func:`drop_hooks`), which says so.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from fxcost.errors import FxcostError


def has_meta_weights(model: nn.Module) -> bool:
    """Whether any parameter or buffer of ``model`` lives on the meta device (has no values)."""
    return any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])


def has_lazy_modules(model: nn.Module) -> bool:
    return any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    if isinstance(t, UninitializedParameter):
        # torch's stubs omit the factory kwargs these classes accept
        return UninitializedParameter(requires_grad=t.requires_grad, device="meta", dtype=t.dtype)  # type: ignore[call-arg]
    if isinstance(t, UninitializedBuffer):
        return UninitializedBuffer(requires_grad=t.requires_grad, device="meta", dtype=t.dtype)  # type: ignore[call-arg]
    meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
    if isinstance(t, nn.Parameter):
        return nn.Parameter(meta, requires_grad=t.requires_grad)
    return meta


def _tensor_attributes(model: nn.Module) -> list[torch.Tensor]:
    """Tensors kept as plain attributes of the model's modules (not parameters, not buffers)."""
    return [v for m in model.modules() for k, v in vars(m).items()
            if isinstance(v, torch.Tensor) and k not in ("_parameters", "_buffers")]


def meta_copy(model: nn.Module) -> nn.Module:
    """Deep-copy the module structure with every parameter, buffer and tensor attribute on meta."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers(), *_tensor_attributes(model)]:
        if id(t) not in memo:
            memo[id(t)] = _meta_like(t)
    try:
        shadow = _copied(model, memo)
    except Exception as e:
        raise FxcostError(
            f"cannot copy the structure of {type(model).__name__}: {type(e).__name__}: {e}",
            hint="fxcost analyzes a weightless copy of the structure and never touches your model; "
            "make the model deep-copyable (its weights are not copied)",
        ) from e
    return shadow


#: how nn.Module copies itself: a class that copies itself otherwise is deep-copied as it asks
_COPIES_AS_MODULE = {n: getattr(nn.Module, n, None) for n in ("__deepcopy__", "__copy__", "__reduce_ex__", "__reduce__",
                                                           "__getstate__", "__setstate__")}
_ATOMIC = (int, float, bool, str, bytes, type(None))


def _copied(m: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(m, memo)``, done for nn.Module's own state the way deepcopy would do it but
    without its generic machinery per attribute (a quarter of a ResNet-50's analysis): submodules
    copied the same way, parameters and buffers from ``memo``, empty hook tables made anew, plain
    values shared as deepcopy shares them; anything else goes through ``copy.deepcopy``."""
    found = memo.get(id(m))
    if found is not None:
        return found
    cls: Any = type(m)
    if not isinstance(m, nn.Module) or any(getattr(cls, n, None) is not f for n, f in _COPIES_AS_MODULE.items()):
        return copy.deepcopy(m, memo)
    twin = cls.__new__(cls)
    memo[id(m)] = twin
    state: dict[str, Any] = {}
    for k, v in m.__getstate__().items():
        t = type(v)
        if k == "_modules":
            state[k] = t((name, None if c is None else _copied(c, memo)) for name, c in v.items())
        elif t in _ATOMIC:
            state[k] = v
        elif t in (dict, OrderedDict, set) and not v:
            state[k] = t()
        else:
            state[k] = copy.deepcopy(v, memo)
    twin.__setstate__(state)
    return twin


@dataclass(frozen=True)
class Hook:
    """A forward hook (or pre-hook) of the model, by where it is registered."""

    path: str  # the module's
    kind: str  # "forward pre-hook" or "forward hook"
    key: int  # its handle's id in the module's dict
    name: str  # what it is: a function's qualified name, a callable object's class

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} of {self.path or 'the root'!r})"


_KINDS = {"_forward_pre_hooks": "forward pre-hook", "_forward_hooks": "forward hook"}
#: the flags torch keeps beside a hook, by the same key
_FLAGS = {"_forward_pre_hooks": ("_forward_pre_hooks_with_kwargs",),
          "_forward_hooks": ("_forward_hooks_with_kwargs", "_forward_hooks_always_called")}


_TORCH = str(Path(torch.__file__).resolve().parent) + os.sep


#: hooks a library's forward computes its output with, not instrumentation: transformers gathers
#: the hidden states a model returns (``outputs.hidden_states``, which a backbone then indexes)
#: with forward hooks it installs itself
_FORWARDS_OWN = (os.path.join("transformers", "utils", "output_capturing.py"),)


def users_hooks(model: nn.Module) -> list[Hook]:
    """The model's hooks whose code is not torch's own (a function or callable object defined in
    the user's code or another package), those a library's forward needs aside (:data:`_FORWARDS_OWN`)."""
    found = []
    for h in hooks_of(model):
        hook = getattr(model.get_submodule(h.path), "_forward_pre_hooks" if "pre" in h.kind else "_forward_hooks")[h.key]
        code = _code_of(hook)
        where = str(Path(code.co_filename).resolve()) if code is not None else ""
        if not where.startswith(_TORCH) and not where.endswith(_FORWARDS_OWN):
            found.append(h)
    return found


def _name(hook: Any) -> str:
    fn = getattr(hook, "func", hook)  # functools.partial
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def hooks_of(model: nn.Module) -> list[Hook]:
    """The model's forward hooks and pre-hooks, a lazy layer's own initialization hook aside."""
    found = []
    for path, m in model.named_modules():
        lazy = getattr(m, "_initialize_hook", None)
        for attr, kind in _KINDS.items():
            for key, hook in getattr(m, attr, {}).items():
                if lazy is None or key != lazy.id:
                    found.append(Hook(path, kind, key, _name(hook)))
    return found


def _code_of(hook: Any) -> Any:
    """The code a hook runs: a function's own, a callable object's ``__call__``."""
    fn = getattr(hook, "func", hook)
    if hasattr(fn, "__code__"):
        return fn.__code__
    call = vars(type(fn)).get("__call__") or next((vars(c)["__call__"] for c in type(fn).__mro__ if "__call__" in vars(c)), None)
    return getattr(call, "__code__", None)


def hook_in(error: BaseException, model: nn.Module) -> Hook | None:
    """The hook of ``model`` whose code raised ``error`` (or an exception it came from), if one did."""
    import traceback

    codes = {}
    for h in hooks_of(model):
        code = _code_of(getattr(model.get_submodule(h.path), "_forward_pre_hooks" if "pre" in h.kind else "_forward_hooks")[h.key])
        if code is not None:
            codes[code] = h
    e: BaseException | None = error
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for frame, _ in traceback.walk_tb(e.__traceback__):
            if frame.f_code in codes:
                return codes[frame.f_code]
        e = e.__cause__ or e.__context__
    return None


def drop_hooks(model: nn.Module, hooks: Iterable[Hook]) -> None:
    """Take ``hooks`` off ``model`` (fxcost's copy)."""
    for h in hooks:
        m = model.get_submodule(h.path)
        attr = "_forward_pre_hooks" if "pre" in h.kind else "_forward_hooks"
        for d in (attr, *_FLAGS[attr]):
            getattr(m, d, {}).pop(h.key, None)


def fakeify(model: nn.Module, fake_mode: FakeTensorMode, device: str = "cpu") -> None:
    """Replace each meta parameter and buffer of ``model`` (a copy) by a fake tensor on ``device``.

    Tied tensors stay tied: each distinct tensor gets one fake twin.
    """
    twins: dict[int, torch.Tensor] = {}

    def twin(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in twins:
            with fake_mode:
                fake = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
            twins[id(t)] = nn.Parameter(fake, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else fake
        return twins[id(t)]

    for m in model.modules():
        for k, p in m._parameters.items():
            if p is not None:
                m._parameters[k] = twin(p)  # type: ignore[assignment]
        for k, b in m._buffers.items():
            if b is not None:
                m._buffers[k] = twin(b)


def dense_encoders(model: nn.Module) -> list[str]:
    """Turn off nn.TransformerEncoder's nested-tensor fast path on the working copy, and name the
    encoders it was on for. In eval mode without gradients, given a ``src_key_padding_mask``, that
    path packs the unpadded tokens into a nested tensor (whose sizes are the mask's values, which
    data-free tensors do not have) and computes only those: the dense path computes every position,
    so what is counted is the cost with no padding, an upper bound on the fast path's."""
    found = []
    for path, m in model.named_modules():
        if isinstance(m, nn.TransformerEncoder) and getattr(m, "use_nested_tensor", False):
            m.use_nested_tensor = False
            found.append(path or type(model).__name__)
    return found
