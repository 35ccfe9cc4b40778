"""A model's inputs as the analysis takes them: normalized, bound to forward's signature, named,
and on the working copy's device (meta, or real with ``--real``)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_any, tree_map

from fxcost.counting.arithmetic import whole
from fxcost.errors import FxcostError, InputSpecError, TraceError, first_line
from fxcost.pytorch.diagnosis import naming_module
from fxcost.pytorch.eager import ModuleStack
from fxcost.pytorch.recorder import OpTagger
from fxcost.pytorch.tensors import check_input_size, dtype_name, meta_tensor, realize
from fxcost.pytorch.working_copy import Hook, drop_hooks, has_lazy_modules, has_meta_weights, meta_copy
from fxcost.report.records import InputSpec


def _is_shape(x: Any) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and len(x) > 0 and all(isinstance(d, int) for d in x)


def normalize_inputs(input_size: Any, example_inputs: Any) -> tuple[Any, ...]:
    """Positional inputs as a tuple of tensors (meta placeholders for bare shapes) and values."""
    if input_size is not None and example_inputs is not None:
        raise InputSpecError("give input_size or example_inputs, not both", hint="input_size for bare shapes, example_inputs for tensors")
    if input_size is not None:
        shapes = [input_size] if _is_shape(input_size) else list(input_size)
        if not shapes or not all(_is_shape(s) for s in shapes):
            raise InputSpecError(
                f"input_size must be a shape like (1, 3, 224, 224) or a list of shapes, got {input_size!r}"
            )
        if any(d <= 0 for s in shapes for d in s):
            raise InputSpecError(f"every dimension of input_size must be positive, got {input_size!r}", hint="e.g. input_size=(1, 3, 224, 224)")
        for s in shapes:
            check_input_size(tuple(s), torch.float32, "input_size")
        return tuple(torch.empty(tuple(s), device="meta") for s in shapes)
    if example_inputs is None:
        return ()
    return tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def _has_tensor(value: Any) -> bool:
    return tree_any(lambda x: isinstance(x, torch.Tensor), value)


def signature(forward: Any) -> inspect.Signature:
    """``forward``'s parameters; a TorchScript method's come from its schema (Python cannot see them)."""
    try:
        return inspect.signature(forward)
    except ValueError:
        schema = getattr(forward, "schema", None)
        if schema is None:
            raise InputSpecError(f"cannot read the parameters of {forward!r}", hint="analyze a module whose forward is a Python function") from None
    P = inspect.Parameter
    return inspect.Signature([P(a.name, P.POSITIONAL_OR_KEYWORD, default=a.default_value if a.has_default_value() else P.empty)
                              for a in schema.arguments[1:]])  # [0] is self


def _bind(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    sig = signature(forward)
    try:
        return sig.bind(*args, **kwargs)
    except TypeError as e:
        raise InputSpecError(
            f"the inputs do not fit forward{sig}: {e}",
            hint="give one --input shape per positional argument of forward (joined by commas), "
            "--input name=SHAPE for a keyword tensor and --kwarg name=VALUE for other keywords",
        ) from None


def graph_inputs(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Order the inputs as forward's parameters (and so the graph's placeholders); arguments with
    no tensor in them (flags, ``mask=None`` defaults) become concrete values for the tracer."""
    bound = _bind(forward, args, kwargs)
    bound.apply_defaults()
    values, concrete = [], {}
    for name, p in bound.signature.parameters.items():
        value = bound.arguments.get(name)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "*" if p.kind == p.VAR_POSITIONAL else "**"
            owner = getattr(forward, "__qualname__", "forward")
            raise TraceError(f"{owner} takes {stars}{name}, which torch.fx cannot trace as inputs")
        if not _has_tensor(value):
            concrete[name] = value
        values.append(value)
    return values, concrete


def input_specs(forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[InputSpec]:
    """Every tensor among the inputs, named by its parameter and its place in a nested input
    (``batch.image``, ``xs.1``)."""
    specs: list[InputSpec] = []

    def walk(name: str, v: Any) -> None:
        if isinstance(v, torch.Tensor):
            specs.append(InputSpec(name, tuple(whole(d) for d in v.shape), dtype_name(v.dtype)))
        elif isinstance(v, dict):
            for k, item in v.items():
                walk(f"{name}.{k}", item)
        elif isinstance(v, (tuple, list)):
            for i, item in enumerate(v):
                walk(f"{name}.{i}", item)

    for name, value in _bind(forward, args, kwargs).arguments.items():
        walk(name, value)
    return specs


def run_eagerly(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], doing: str) -> None:
    """Run ``model`` (fxcost's own copy) once; on failure, name the innermost module that was
    running and the shapes that reached it."""
    with naming_module(doing), ModuleStack(model, include_self=True) as stack, stack.naming_failures(), torch.no_grad(), \
            OpTagger():
        model(*args, **kwargs)


Prepared = tuple[nn.Module, tuple[Any, ...], dict[str, Any]]


_PLAIN = (int, float, complex, bool, str, bytes, type, torch.dtype, torch.device, torch.Size, torch.Tensor)


def own_copy(x: Any) -> Any:
    """An input object that is not a tensor or a plain value (a KV cache, a config) is copied: the
    forward may change it (a cache appends each step), and the caller's must stay as it was."""
    if x is None or isinstance(x, _PLAIN):
        return x
    try:
        return copy.deepcopy(x)
    except Exception as e:
        raise InputSpecError(
            f"cannot copy the input {type(x).__name__} ({type(e).__name__}: {first_line(e)}), and the forward could change it",
            hint="make it deep-copyable, or pass tensors",
        ) from e


def prepare_meta(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], without: Iterable[Hook] = ()) -> Prepared:
    """A weightless meta copy of ``model`` in eval mode, the hooks ``without`` names taken off,
    lazy layers materialized, and the inputs as meta tensors."""
    shadow = meta_copy(model)
    drop_hooks(shadow, without)
    shadow.eval()
    meta_args, meta_kwargs = tree_map(lambda x: meta_tensor(own_copy(x)), (args, kwargs))
    if has_lazy_modules(shadow):  # one unrecorded run lets lazy layers infer their shapes
        run_eagerly(shadow, meta_args, meta_kwargs, "inferring lazy layer shapes")
    return shadow, meta_args, meta_kwargs


def prepare_real(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], without: Iterable[Hook] = ()) -> Prepared:
    """A full copy of ``model`` in eval mode, the hooks ``without`` names taken off, and the
    inputs as real tensors (``--real``)."""
    if has_meta_weights(model):
        raise InputSpecError(
            f"{type(model).__name__} has parameters on the meta device, which --real cannot run",
            hint="drop --real: fxcost's default analysis needs no weights",
        )
    try:
        shadow = copy.deepcopy(model)
    except Exception as e:
        raise FxcostError(
            f"--real cannot copy {type(model).__name__}: {type(e).__name__}: {e}",
            hint="make the model deep-copyable, or drop --real",
        ) from e
    drop_hooks(shadow, without)
    shadow.eval()
    real_args, real_kwargs = tree_map(lambda x: realize(own_copy(x)), (args, kwargs))
    if has_lazy_modules(shadow):
        run_eagerly(shadow, real_args, real_kwargs, "inferring lazy layer shapes")
    return shadow, real_args, real_kwargs


def cast(prepared: Prepared, dtype: torch.dtype | None) -> Prepared:
    """The working copy and its float inputs as ``dtype`` (``--dtype``): floating-point parameters
    and buffers cast as ``Module.to(dtype)`` casts them, integer ones (token ids, counters) kept."""
    if dtype is None:
        return prepared
    shadow, args, kwargs = prepared
    shadow.to(dtype)

    def as_dtype(x: Any) -> Any:
        return x.to(dtype) if isinstance(x, torch.Tensor) and x.dtype.is_floating_point else x

    args, kwargs = tree_map(as_dtype, (args, kwargs))
    return shadow, args, kwargs


def float_dtypes(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The floating-point dtypes of the model's parameters, and of its tensor inputs."""
    from torch.utils._pytree import tree_flatten

    weights = {dtype_name(p.dtype) for p in model.parameters() if p.dtype.is_floating_point}
    inputs = {dtype_name(t.dtype) for t in tree_flatten((args, kwargs))[0]
              if isinstance(t, torch.Tensor) and t.dtype.is_floating_point}
    return weights, inputs


def leaf_paths(model: nn.Module, leaves: Sequence[str]) -> set[str]:
    """The paths of the modules the user asked to keep whole, by path or class name."""
    paths = set()
    for name in leaves:
        found = {p for p, m in model.named_modules() if p and (p == name or type(m).__name__ == name)}
        if not found:
            some = ", ".join(dict.fromkeys(type(m).__name__ for _, m in model.named_modules()).keys() - {type(model).__name__})
            raise InputSpecError(f"--leaf {name!r} matches no submodule of {type(model).__name__}",
                                 hint=f"give a module path (layer1.0) or a class name: {some[:200]}")
        paths |= found
    # a leaf inside another leaf is already whole
    return {p for p in paths if not any(p.startswith(q + ".") for q in paths)}
