"""Why a model failed on the PyTorch route, in words a user can act on: which layer, which
shapes, the line of the user's code, and what to try.

Failures are classified by what failed, never by the words of a message: the exception's type
(torch's ``GuardOnDataDependentSymNode``, fake tensors' ``DynamicOutputShapeException``...) and
the aten op that raised it, which the op recorder attaches to the exception with the shapes and
devices of its tensor arguments (:class:`FailedOp`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sysconfig
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fxcost.errors import FxcostError, ShapeError, first_line
from fxcost.report.kinds import Method

#: the attribute the op recorder sets on an exception an op raised
OP_ATTRIBUTE = "fxcost_failed_op"


@dataclass(frozen=True)
class FailedOp:
    """The aten op that raised, and what it was given."""

    name: str
    shapes: tuple[tuple[int, ...], ...]  # its tensor arguments', in order
    devices: frozenset[str]
    args: tuple[Any, ...]  # its arguments with tensors as their shapes

    @classmethod
    def of(cls, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> FailedOp:
        from torch.utils._pytree import tree_flatten, tree_map

        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        shaped = tree_map(lambda x: tuple(x.shape) if isinstance(x, torch.Tensor) else x, tuple(args))
        # a 0-dim CPU tensor may join tensors of any device (a scalar): it mixes nothing
        return cls(name, tuple(tuple(int(d) for d in t.shape) for t in tensors),
                   frozenset(t.device.type for t in tensors if t.dim() > 0), shaped)


class OperandDtypeError(RuntimeError):
    """A matmul or convolution given operands of different dtypes (which meta kernels accept and
    real kernels refuse)."""


class Cause(Enum):
    """What a failure needs from the user (each has its hint in :data:`_HINTS`)."""

    DATA_DEPENDENT = auto()  # the forward reads a tensor's value
    NEEDS_VALUES = auto()  # an op's output shape depends on values, or it has no meta kernel
    DEVICE = auto()  # tensors of two devices met (a tensor made on the CPU inside forward)
    CHANNELS = auto()  # a convolution's input channels
    TOO_SMALL = auto()  # a convolution's or pooling's window is larger than its input
    FEATURES = auto()  # a Linear layer's in_features
    DTYPE = auto()  # operands of different dtypes
    MODULE_CAST = auto()  # the forward converts a module of the model (module.to(...)) and torch cannot swap its weights
    OTHER = auto()


# the aten ops a TorchDispatchMode sees (composite ops such as linear, matmul or conv2d are
# decomposed before it does)
#: ops that read a value back to Python: data-free tensors have none
_READS_VALUE = frozenset({"aten::_local_scalar_dense", "aten::equal"})
#: ops whose output shape depends on the values
_VALUE_SHAPED = frozenset({"aten::nonzero", "aten::nonzero_static", "aten::masked_select", "aten::unique_dim",
                           "aten::_unique", "aten::_unique2", "aten::unique_consecutive", "aten::repeat_interleave",
                           "aten::argwhere"})
#: and ``x[mask]`` (``aten::index`` with a boolean mask): a known mask decides its shape
_VALUE_SHAPED_OR_MASKED = _VALUE_SHAPED | {"aten::index"}
#: what nn.Linear dispatches (mm on a 3-D input)
_LINEAR = frozenset({"aten::mm", "aten::addmm"})
_CONVS = frozenset({"aten::convolution", "aten::_convolution"})
_POOLS = frozenset({"aten::max_pool1d", "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices",
                    "aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d"})


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def failed_op(error: BaseException) -> FailedOp | None:
    """The aten op that raised ``error`` (or an exception it came from), if one did."""
    return next((op for e in _chain(error) if isinstance(op := getattr(e, OP_ATTRIBUTE, None), FailedOp)), None)


def _type_cause(error: BaseException) -> Cause | None:
    from torch._subclasses.fake_tensor import (
        DataDependentOutputException,
        DynamicOutputShapeException,
        UnsupportedOperatorException,
    )
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    for e in _chain(error):
        if isinstance(e, (GuardOnDataDependentSymNode, DataDependentOutputException)):
            return Cause.DATA_DEPENDENT
        if isinstance(e, (DynamicOutputShapeException, UnsupportedOperatorException)):
            return Cause.NEEDS_VALUES
        if isinstance(e, OperandDtypeError):
            return Cause.DTYPE
    return None


def _conv_cause(op: FailedOp) -> Cause:
    """A convolution refuses its input for its channels or its size (or its rank: another cause).
    Both ops take (input, weight, bias, stride, padding, dilation, transposed, output_padding,
    groups, ...)."""
    x, w = (op.args + (None, None))[:2]
    if not isinstance(x, tuple) or not isinstance(w, tuple) or len(x) != len(w) or len(op.args) < 9:
        return Cause.OTHER
    transposed, groups = bool(op.args[6]), int(op.args[8])
    expected = w[0] if transposed else w[1] * groups
    return Cause.CHANNELS if x[1] != expected else Cause.TOO_SMALL


def _ints(v: Any, n: int) -> list[int]:
    return [int(v)] * n if isinstance(v, int) else [int(d) for d in v] * (n if len(v) == 1 else 1)


def _pool_cause(op: FailedOp) -> Cause:
    """A pooling window larger than its (padded) input: (self, kernel_size, stride, padding, ...),
    max pooling's dilation after the padding."""
    x = op.args[0] if op.args else None
    if not isinstance(x, tuple) or len(op.args) < 2 or not op.args[1]:
        return Cause.OTHER
    n = 3 if "3d" in op.name else 2 if "2d" in op.name else 1
    if len(x) < n:
        return Cause.OTHER
    kernel = _ints(op.args[1], n)
    padding = _ints(op.args[3], n) if len(op.args) > 3 and op.args[3] is not None else [0] * n
    dilation = _ints(op.args[4], n) if "max" in op.name and len(op.args) > 4 else [1] * n
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=False)]
    small = any(size + 2 * pad < span for size, pad, span in zip(x[-n:], padding, spans, strict=False))
    return Cause.TOO_SMALL if small else Cause.OTHER


def classify(error: BaseException) -> Cause:
    """What ``error`` needs from the user, by its type and the op that raised it."""
    by_type = _type_cause(error)
    if by_type is not None:
        return by_type
    if raised_in(error, "torch/nn/modules/module.py", "_apply"):
        return Cause.MODULE_CAST
    op = failed_op(error)
    if op is None:
        return Cause.OTHER
    if op.name in _READS_VALUE:
        return Cause.DATA_DEPENDENT
    if op.name in _VALUE_SHAPED or any(isinstance(e, NotImplementedError) for e in _chain(error)):
        return Cause.NEEDS_VALUES  # a value-shaped op, or one with no meta kernel
    if len(op.devices) > 1:
        return Cause.DEVICE
    if op.name in _CONVS:
        return _conv_cause(op)
    if op.name in _POOLS:
        return _pool_cause(op)
    if op.name in _LINEAR:
        return Cause.FEATURES
    return Cause.OTHER


def is_data_dependent(error: BaseException) -> bool:
    """The forward read a tensor's value (``.item()``, ``if tensor:``), which meta and fake
    tensors do not have."""
    return classify(error) is Cause.DATA_DEPENDENT


def values_read(error: BaseException) -> bool:
    """The forward read a value (``.item()``, ``if tensor:``) or ran an op whose output shape is
    one (``nonzero``, ``x[mask]``): values fxcost knows may answer it (:mod:`fxcost.pytorch.known`).
    An op with no fake kernel, which no value helps, is not one."""
    from torch._subclasses.fake_tensor import DynamicOutputShapeException

    op = failed_op(error)
    return classify(error) is Cause.DATA_DEPENDENT or (op is not None and op.name in _VALUE_SHAPED_OR_MASKED) \
        or any(isinstance(e, DynamicOutputShapeException) for e in _chain(error))


def needs_fake(error: ShapeError) -> bool:
    """A meta run failed for want of a device (a forward that makes CPU tensors of its own) or of
    a meta kernel: worth a retry on fake tensors, which have a device. A shape error or a value
    read would only fail again."""
    cause = error.__cause__
    return cause is not None and classify(cause) in (Cause.DEVICE, Cause.NEEDS_VALUES)


_HINTS = {
    Cause.DATA_DEPENDENT: "the forward reads a tensor value computed from the weights or activations (.item(), `if "
    "tensor:`), which fxcost's data-free tensors do not have (values from the inputs alone they do): --real runs real "
    "tensors on a copy of a model with weights; or make that branch depend on shapes",
    Cause.NEEDS_VALUES: "this op needs real values (its output shape depends on values not from the inputs alone, or "
    "it has no meta kernel): --real "
    "runs real tensors on a copy of a model with weights; or --leaf the module around it and give the op a fake "
    "kernel (torch.library.register_fake)",
    Cause.DEVICE: "the forward makes tensors on a device of its own: create them on the input's device "
    "(torch.zeros(..., device=x.device)), or run with --real",
    Cause.TOO_SMALL: "the input is too small for this architecture: use a larger --input, or fewer downsampling layers",
    Cause.CHANNELS: "check the channel dimension of --input against the model's first layer",
    Cause.DTYPE: "the operands' dtypes differ: give --input the model's dtype (e.g. 1x3x224x224:float16)",
    Cause.FEATURES: "the flattened features do not match a Linear layer: check the spatial size of --input",
    Cause.MODULE_CAST: "the forward converts a module of the model (module.to(...)) and torch cannot swap fxcost's "
    "fake weights there: --real runs real tensors on a copy of a model with weights",
    Cause.OTHER: "check --input against what the model expects; --debug shows the full traceback",
}


def hint_for(error: BaseException) -> str:
    return _HINTS[classify(error)]


# --- the user's line -----------------------------------------------------------------------

def _folder(path: str | Path) -> str:
    return str(Path(path).resolve()) + os.sep


#: frames in torch and fxcost are never the user's; other installed packages (transformers, timm)
#: hold model code, which is what the user runs; the standard library is not the user's (and may
#: hold site-packages, in a Python that is not a virtual environment)
_FRAMEWORK = tuple({_folder(Path(torch.__file__).parent), _folder(Path(__file__).parents[1])})
_PACKAGES = tuple({_folder(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")})
_STDLIB = tuple({_folder(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")})


def _is_user(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    try:
        path = str(Path(filename).resolve())
    except OSError:  # a folder that no longer exists
        return False
    if path.startswith(_FRAMEWORK):
        return False
    return path.startswith(_PACKAGES) or not path.startswith(_STDLIB)


def _shown(filename: str) -> str:
    """A path relative to the working folder when it is inside it."""
    try:
        rel = os.path.relpath(filename)
    except (ValueError, OSError):  # another drive (Windows), a working folder that is gone
        return filename
    return filename if rel.startswith("..") else rel


def user_line(error: BaseException, stack_trace: str | None = None) -> str:
    """``my_model.py:42, in forward: x = self.fc(x)``: the last line of the user's own code that
    led to ``error``, from an FX node's recorded ``stack_trace`` when there is one, else from the
    exception's traceback; "" when no frame is the user's."""
    frames: list[traceback.FrameSummary] = []
    if stack_trace:
        frames = _parse_stack_trace(stack_trace)
    if not frames:
        for e in reversed(list(_chain(error))):
            frames += traceback.extract_tb(e.__traceback__)
    return last_user_line(frames)


def last_user_line(frames: Sequence[traceback.FrameSummary]) -> str:
    """The last of ``frames`` in the user's own code, as ``file:line, in function: code``; ""
    when none is."""
    mine = [f for f in frames if _is_user(f.filename)]
    if not mine:
        return ""
    f = mine[-1]
    return f"{_shown(f.filename)}:{f.lineno}, in {f.name}: {(f.line or '').strip()}"


def _parse_stack_trace(text: str) -> list[traceback.FrameSummary]:
    """The frames of a ``File "x.py", line 3, in f`` text (what FX and torch.export record)."""
    import re

    frames = []
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        m = re.match(r'\s*File "(.+)", line (\d+), in (.+)', ln)
        if m:
            code = lines[i + 1].strip() if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("File ") else ""
            frames.append(traceback.FrameSummary(m.group(1), int(m.group(2)), m.group(3), line=code))
    return frames


# --- the messages --------------------------------------------------------------------------


class ModuleRunError(Exception):
    """A module failed while running op by op; names the innermost module that was running."""

    def __init__(self, path: str, module: nn.Module, shapes: tuple[tuple[int, ...], ...], cause: BaseException) -> None:
        super().__init__(first_line(cause))
        self.path, self.module, self.shapes, self.cause = path, module, shapes, cause


def raised_in(error: BaseException, path: str, function: str | None = None) -> bool:
    """``error`` (or an exception it was raised from) passed through a file whose path ends in
    ``path`` (``"torch/nn/utils/rnn.py"``), in ``function`` where one is named: where it came
    from, not what its message says."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename.replace("\\", "/").endswith(path) and function in (None, code.co_name):
                return True
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    return False


#: a torch.fx Proxy as its repr writes it into a message formatted while tracing
PROXY = re.compile(r"Proxy\((\w+)\)")


def readable(text: str) -> str:
    """``text`` without torch.fx's internals: a ``Proxy(getitem_2)`` formatted into it while
    tracing is a value the trace had not computed."""
    return PROXY.sub("<a traced value>", text)


def failure_message(place: str, shapes: Sequence[Sequence[int]], cause: BaseException, doing: str = "") -> str:
    """``layer 'x' (Conv2d) failed on input shape 1x3x8x8[ while ...]: why``, one wording for every
    way a model runs (a graph node, an opaque module, an eager run, lazy initialization); a call
    given no tensor names no shape."""
    shown = ", ".join("x".join(map(str, s)) for s in shapes)
    why = readable(first_line(cause))
    if is_data_dependent(cause):
        why = f"it reads a tensor's value (aten::_local_scalar_dense, from .item() or `if tensor:`): {why}"
    return f"{place} failed{f' on input shape {shown}' if shown else ''}{f' while {doing}' if doing else ''}: {why}"


def shape_error(e: ModuleRunError, doing: str) -> ShapeError:
    """A module's failure while running op by op, as the user sees it."""
    place = f"layer {e.path!r} ({type(e.module).__name__})" if e.path else f"{type(e.module).__name__}.forward"
    return ShapeError(
        failure_message(place, e.shapes, e.cause, doing),
        module_path=e.path,
        input_shapes=e.shapes,
        hint=hint_for(e.cause),
        source=user_line(e.cause),
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
    lines = "\n".join(f"  {m}: {e.message}" + (f"\n      at {e.source}" if e.source else "")
                      for m, e in zip(methods, errors, strict=False))
    hint = errors[-1].hint
    exported = [e for m, e in zip(methods, errors, strict=False) if m == Method.EXPORT]
    if exported and errors[-1].__cause__ is not None and is_data_dependent(errors[-1].__cause__) and exported[0].__cause__:
        hint = hint_for(exported[0].__cause__)
    return ShapeError(f"no tracer could analyze {model}:\n{lines}", hint=hint)
