"""Why a model failed on the PyTorch route, in words a user can act on: which layer, which
shapes, what it was doing, and what to try."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from torch import nn

from fxcost.errors import FxcostError, ShapeError, first_line


class ModuleRunError(Exception):
    """A module failed while running op by op; names the innermost module that was running."""

    def __init__(self, path: str, module: nn.Module, shapes: tuple[tuple[int, ...], ...], cause: BaseException) -> None:
        super().__init__(first_line(cause))
        self.path, self.module, self.shapes, self.cause = path, module, shapes, cause


def is_data_dependent(error: BaseException) -> bool:
    """The forward read a tensor's value (``.item()``, ``if tensor:``), which meta and fake
    tensors do not have."""
    text = f"{type(error).__name__} {error}"
    return any(k in text for k in ("_local_scalar_dense", "item() cannot be called", "DataDependent", "data-dependent"))


def needs_values(error: BaseException) -> bool:
    """An op whose output shape depends on values (``nonzero``, ``unique``, ``masked_select``)
    or a library op with no meta/fake kernel: only real tensors can run it."""
    text = f"{type(error).__name__} {error}"
    return any(k in text for k in ("DynamicOutputShape", "nonzero", "fake impl", "Meta kernel", "meta kernel",
                                   "could not run", "Could not run"))


def needs_fake(error: ShapeError) -> bool:
    """A meta run failed because the forward mixed in tensors of another device (or an op has no
    meta kernel): worth a retry on fake tensors. A shape error would only fail again."""
    cause = error.__cause__
    if cause is None or is_data_dependent(cause):
        return False
    text = str(cause)
    return isinstance(cause, NotImplementedError) or "device" in text or "meta" in text


def failure_message(place: str, shapes: Sequence[Sequence[int]], cause: BaseException, doing: str = "") -> str:
    """``layer 'x' (Conv2d) failed on input shape 1x3x8x8[ while ...]: why``, one wording for
    every way a model runs (a graph node, an opaque module, an eager run, lazy initialization)."""
    shown = ", ".join("x".join(map(str, s)) for s in shapes) or "no tensors"
    why = first_line(cause)
    if is_data_dependent(cause):
        why = f"it reads a tensor's value (aten::_local_scalar_dense, from .item() or `if tensor:`): {why}"
    return f"{place} failed on input shape {shown}{f' while {doing}' if doing else ''}: {why}"


def hint_for(error: BaseException) -> str:
    text = str(error)
    if is_data_dependent(error):
        return ("the forward reads tensor values (.item(), `if tensor:`), which fxcost's data-free tensors "
                "do not have: --real runs real tensors on a copy of a model with weights; or make that branch "
                "depend on shapes")
    if needs_values(error):
        return ("this op needs real values (its output shape depends on them, or it has no meta kernel): --real "
                "runs real tensors on a copy of a model with weights; or --leaf the module around it and give "
                "the op a fake kernel (torch.library.register_fake)")
    if "too small" in text or "Output size" in text or "non-positive" in text:
        return "the input is too small for this architecture: use a larger --input, or fewer downsampling layers"
    if "channels" in text:
        return "check the channel dimension of --input against the model's first layer"
    if "dtype" in text:
        return "the operands' dtypes differ: give --input the model's dtype (e.g. 1x3x224x224:float16)"
    if any(k in text for k in ("mat1 and mat2", "size mismatch", "shapes cannot be multiplied", "same reduction dim")):
        return "the flattened features do not match a Linear layer: check the spatial size of --input"
    return "check --input against what the model expects; --debug shows the full traceback"


def shape_error(e: ModuleRunError, doing: str) -> ShapeError:
    """A module's failure while running op by op, as the user sees it."""
    place = f"layer {e.path!r} ({type(e.module).__name__})" if e.path else f"{type(e.module).__name__}.forward"
    return ShapeError(
        failure_message(place, e.shapes, e.cause, doing),
        module_path=e.path,
        input_shapes=e.shapes,
        hint=hint_for(e.cause),
    )


@contextlib.contextmanager
def naming_module(doing: str) -> Iterator[None]:
    """A :class:`ModuleRunError` inside becomes the :class:`ShapeError` that names its module."""
    try:
        yield
    except ModuleRunError as e:
        raise shape_error(e, doing) from e.cause


def all_failed(model: str, methods: Sequence[str], errors: list[FxcostError]) -> FxcostError:
    """Every tracer failed: say why each did. When the last one failed for want of tensor values
    (transformers' mask code, run eagerly on meta), export's reason is usually the real one."""
    lines = "\n".join(f"  {m}: {e.message}" for m, e in zip(methods, errors, strict=False))
    hint = errors[-1].hint
    exported = [e for m, e in zip(methods, errors, strict=False) if m == "export"]
    if exported and errors[-1].__cause__ is not None and is_data_dependent(errors[-1].__cause__) and exported[0].__cause__:
        hint = hint_for(exported[0].__cause__)
    return ShapeError(f"no tracer could analyze {model}:\n{lines}", hint=hint)
