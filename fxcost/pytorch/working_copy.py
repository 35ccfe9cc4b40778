"""The working copy: a weightless copy of the user's model, so analysis never touches the original.

The copy shares no tensor with the original: every parameter and buffer is replaced by a meta
tensor of the same shape, stride, dtype and ``requires_grad`` (``copy.deepcopy`` with a
pre-filled memo, so a tensor tied between two modules stays one tensor in the copy, and no
weight bytes are copied whatever the model's size). Lazy modules materialize on meta from the
input shapes. :func:`fakeify` then swaps the meta tensors for fake CPU tensors owned by one
``FakeTensorMode``, under which the analysis runs.
"""

from __future__ import annotations

import copy
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


def meta_copy(model: nn.Module) -> nn.Module:
    """Deep-copy the module structure with every parameter and buffer on meta."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in memo:
            memo[id(t)] = _meta_like(t)
    try:
        shadow = copy.deepcopy(model, memo)
    except Exception as e:
        raise FxcostError(
            f"cannot copy the structure of {type(model).__name__}: {type(e).__name__}: {e}",
            hint="fxcost analyzes a weightless copy of the structure and never touches your model; "
            "make the model deep-copyable (its weights are not copied)",
        ) from e
    _drop_user_hooks(shadow)
    return shadow


_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
)


def _drop_user_hooks(shadow: nn.Module) -> None:
    """The user's forward hooks expect real tensors (logging, .item()); they do not run on the
    copy. A lazy layer's own initialization hook stays: it is how the layer learns its shapes."""
    for m in shadow.modules():
        keep = {h.id for h in (getattr(m, "_initialize_hook", None),) if h is not None}
        for attr in _HOOK_DICTS:
            hooks = getattr(m, attr, None)
            if isinstance(hooks, dict):
                for k in [k for k in hooks if k not in keep]:
                    del hooks[k]


def fakeify(model: nn.Module, fake_mode: FakeTensorMode) -> None:
    """Replace each meta parameter and buffer of ``model`` (a copy) by a fake CPU tensor.

    Tied tensors stay tied: each distinct tensor gets one fake twin.
    """
    twins: dict[int, torch.Tensor] = {}

    def twin(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in twins:
            with fake_mode:
                fake = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            twins[id(t)] = nn.Parameter(fake, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else fake
        return twins[id(t)]

    for m in model.modules():
        for k, p in m._parameters.items():
            if p is not None:
                m._parameters[k] = twin(p)  # type: ignore[assignment]
        for k, b in m._buffers.items():
            if b is not None:
                m._buffers[k] = twin(b)
