"""The op registry: every aten op gets one fate, a formula, free (with a reason) or unsupported.

Formulas are pure functions of shapes and arguments, never of tensor values. They receive the
op's arguments with every tensor replaced by its ``torch.Size`` and return a :class:`Cost`.
Conventions (docs/conventions.md):

- MACs count multiply-accumulates of matmul- and convolution-like ops only.
- FLOPs count 2 per MAC, plus 1 per element for a fused bias add, plus each other op's
  documented per-element cost.

One registry, one way in: :meth:`FormulaRegistry.formula` and :meth:`FormulaRegistry.free`
refuse an op that already has a fate. A convention that counts differently extends a
:meth:`FormulaRegistry.copy` of :data:`DEFAULT_REGISTRY`, never the global table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Shape = Sequence[int]


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    flops: int = 0


Formula = Callable[..., Cost]


def _prod(xs: Shape) -> int:
    return math.prod(int(x) for x in xs)


def _numel(s: Any) -> int:
    return _prod(s) if isinstance(s, torch.Size) else 0


def _first_shape(out: Any) -> torch.Size:
    """The first tensor's shape in an op's output (ops like max_pool return (values, indices))."""
    if isinstance(out, torch.Size):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Size):
                return o
    raise TypeError(f"no tensor in op output {out!r}")


class FormulaRegistry:
    """Maps aten op names (``aten::addmm``) to a formula or to a zero-cost reason."""

    def __init__(self) -> None:
        self._formulas: dict[str, Formula] = {}
        self._free: dict[str, str] = {}

    def _claim(self, names: Sequence[str]) -> None:
        for n in names:
            if n in self._formulas or n in self._free:
                raise ValueError(f"{n} already has a fate in this registry")

    def formula(self, *names: str) -> Callable[[Formula], Formula]:
        """Decorator: ``fn(*args, out=shape, **kwargs) -> Cost`` for the named ops."""

        def register(fn: Formula) -> Formula:
            self._claim(names)
            for n in names:
                self._formulas[n] = fn
            return fn

        return register

    def free(self, *names: str, reason: str) -> None:
        """Declare ops that cost nothing, with the reviewed reason."""
        if not reason:
            raise ValueError("a free op needs a reason")
        self._claim(names)
        for n in names:
            self._free[n] = reason

    def override(self, name: str, fn: Formula) -> None:
        """Replace one op's formula (for a convention's copy of the registry)."""
        self._free.pop(name, None)
        self._formulas[name] = fn

    def lookup(self, name: str) -> tuple[str, Formula | None, str]:
        """``(fate, formula, reason)`` for an op name."""
        fn = self._formulas.get(name)
        if fn is not None:
            return "formula", fn, ""
        reason = self._free.get(name)
        if reason is not None:
            return "free", None, reason
        return "unsupported", None, ""

    def copy(self) -> FormulaRegistry:
        new = FormulaRegistry()
        new._formulas = dict(self._formulas)
        new._free = dict(self._free)
        return new

    def names(self) -> dict[str, str]:
        """Every op with a fate: name -> ``formula`` or the free reason (for docs and tests)."""
        out = {n: "formula" for n in self._formulas}
        out.update(self._free)
        return dict(sorted(out.items()))


DEFAULT_REGISTRY = FormulaRegistry()
_reg = DEFAULT_REGISTRY


def _with_inplace(*names: str) -> tuple[str, ...]:
    """``relu`` -> ``aten::relu``, ``aten::relu_``: an in-place variant costs the same."""
    return tuple(f"aten::{n}{s}" for n in names for s in ("", "_"))


# --- matmul family ------------------------------------------------------------------------


@_reg.formula("aten::mm")
def _mm(a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[n, m] = mm([n, k], [k, m]); MACs = n * k * m"""
    n, k = a
    m = b[1]
    macs = n * k * m
    return Cost(macs, 2 * macs)


@_reg.formula("aten::addmm")
def _addmm(bias: Shape, a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[n, m] = addmm(bias[m]|[n, m], [n, k], [k, m]); MACs = n * k * m; FLOPs += n * m for the bias"""
    c = _mm(a, b)
    return Cost(c.macs, c.flops + _numel(out))


@_reg.formula("aten::bmm")
def _bmm(a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[B, n, m] = bmm([B, n, k], [B, k, m]); MACs = B * n * k * m"""
    bsz, n, k = a
    m = b[2]
    macs = bsz * n * k * m
    return Cost(macs, 2 * macs)


@_reg.formula("aten::baddbmm")
def _baddbmm(bias: Shape, a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[B, n, m] = baddbmm(bias, [B, n, k], [B, k, m]); MACs = B * n * k * m; FLOPs += B * n * m"""
    c = _bmm(a, b)
    return Cost(c.macs, c.flops + _numel(out))


@_reg.formula("aten::mv")
def _mv(a: Shape, v: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[n] = mv([n, k], [k]); MACs = n * k"""
    macs = a[0] * a[1]
    return Cost(macs, 2 * macs)


@_reg.formula("aten::addmv")
def _addmv(bias: Shape, a: Shape, v: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[n] = addmv(bias[n], [n, k], [k]); MACs = n * k; FLOPs += n"""
    c = _mv(a, v)
    return Cost(c.macs, c.flops + _numel(out))


@_reg.formula("aten::dot", "aten::vdot")
def _dot(a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[] = dot([k], [k]); MACs = k"""
    return Cost(a[0], 2 * a[0])


# --- convolution --------------------------------------------------------------------------


@_reg.formula("aten::convolution", "aten::_convolution")
def _convolution(
    x: Shape,
    w: Shape,
    bias: Any,
    stride: Any = None,
    padding: Any = None,
    dilation: Any = None,
    transposed: bool = False,
    *_: Any,
    out: Any = None,
    **__: Any,
) -> Cost:
    """[N, Co, *So] = convolution([N, Ci, *Si], W, b[Co]?, ..., transposed, ..., groups)

    W is [Co, Ci/groups, *K] (or [Ci, Co/groups, *K] when transposed).
    MACs = N * prod(So) * Co * (Ci/groups) * prod(K); transposed: every input position is
    scattered through the kernel, MACs = N * prod(Si) * Ci * (Co/groups) * prod(K).
    FLOPs = 2 * MACs, plus N * Co * prod(So) for the bias add.
    """
    out_shape = _first_shape(out)
    per_position = w[0] * w[1] * _prod(w[2:])  # channel cross product times kernel size
    positions = x[0] * _prod(x[2:]) if transposed else out_shape[0] * _prod(out_shape[2:])
    macs = positions * per_position
    bias_flops = _prod(out_shape) if isinstance(bias, torch.Size) else 0
    return Cost(macs, 2 * macs + bias_flops)


# --- pointwise ----------------------------------------------------------------------------


def pointwise(flops_per_element: int) -> Formula:
    """An elementwise op: ``flops_per_element`` FLOPs for each output element, no MACs."""

    def formula(*_: Any, out: Any = None, **__: Any) -> Cost:
        return Cost(0, flops_per_element * _numel(_first_shape(out)))

    formula.__doc__ = f"[*] = op([*], ...); FLOPs = {flops_per_element} * prod(*)"
    return formula


# One FLOP per output element, whatever the function: a library's instruction count for exp or
# tanh varies, and the op is listed per node so a reader can weight it differently.
_reg.formula(
    *_with_inplace(
        "add", "sub", "mul", "div", "neg", "abs", "reciprocal", "sqrt", "rsqrt", "pow", "square",
        "exp", "exp2", "expm1", "log", "log2", "log1p", "sin", "cos", "tan", "erf", "erfc",
        "sign", "floor", "ceil", "round", "trunc", "frac", "remainder", "fmod",
        "relu", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "silu", "mish", "sigmoid",
        "tanh", "hardtanh", "hardsigmoid", "hardswish", "softplus", "threshold", "logit",
        "clamp", "clamp_min", "clamp_max", "lerp", "addcmul", "addcdiv",
        "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
        "logical_xor", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor",
        "maximum", "minimum", "where", "masked_fill", "nan_to_num",
    ),
    "aten::rsub", "aten::prelu", "aten::_prelu_kernel", "aten::glu", "aten::_log_softmax_backward_data",
)(pointwise(1))

# softmax and log-softmax: max, subtract, exp, sum, divide (or log) per element.
_reg.formula("aten::_softmax", "aten::_log_softmax", "aten::_safe_softmax")(pointwise(5))

# Dropout while training scales each kept element once; drawing the random mask is not
# arithmetic on the activations. In eval mode dropout dispatches no op at all.
_reg.formula("aten::native_dropout")(pointwise(1))


# --- normalization ------------------------------------------------------------------------
# Per element: normalize = subtract the mean, multiply by 1/std (2); the affine weight and bias
# add 2; computing the statistics (training batch norm, layer/group/instance norm) adds 4: one
# add for the mean, subtract, square and add for the variance.


def _norm(stats: bool, affine: bool, x: Shape) -> Cost:
    per_element = 2 + (2 if affine else 0) + (4 if stats else 0)
    return Cost(0, per_element * _prod(x))


@_reg.formula("aten::_batch_norm_with_update")
def _batch_norm_train(x: Shape, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *] = batch_norm_with_update([N, C, *], w[C]?, ...): training, statistics computed"""
    return _norm(True, isinstance(weight, torch.Size), x)


@_reg.formula("aten::native_batch_norm", "aten::_native_batch_norm_legit")
def _batch_norm(x: Shape, weight: Any, bias: Any, *args: Any, out: Any = None, **kwargs: Any) -> Cost:
    """[N, C, *] = batch_norm([N, C, *], w[C]?, b[C]?, mean, var, training, ...)"""
    training = next((a for a in args if isinstance(a, bool)), kwargs.get("training", False))
    return _norm(bool(training), isinstance(weight, torch.Size), x)


@_reg.formula("aten::_native_batch_norm_legit_no_training", "aten::_batch_norm_no_update")
def _batch_norm_eval(x: Shape, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *] = batch_norm_eval([N, C, *], w[C]?, ...): statistics are stored, not computed"""
    return _norm(False, isinstance(weight, torch.Size), x)


@_reg.formula("aten::native_layer_norm")
def _layer_norm(x: Shape, normalized_shape: Any, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*, D] = layer_norm([*, D], D, w[D]?, b[D]?); statistics over D are computed"""
    return _norm(True, isinstance(weight, torch.Size), x)


@_reg.formula("aten::native_group_norm")
def _group_norm(x: Shape, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *] = group_norm([N, C, *], w[C]?, b[C]?, ...); statistics per group are computed"""
    return _norm(True, isinstance(weight, torch.Size), x)


# --- pooling ------------------------------------------------------------------------------


def _pair(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v


@_reg.formula(
    "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d",
    "aten::max_pool1d_with_indices", "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices",
    "aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d",
)
def _pool(x: Shape, kernel_size: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *So] = pool([N, C, *Si], K); FLOPs = prod(out) * prod(K): each window element is
    compared (max) or added (avg, whose final divide replaces the first add) once"""
    out_shape = _first_shape(out)
    spatial = len(x) - 2 if len(x) >= 3 else 1
    return Cost(0, _prod(out_shape) * _prod(_pair(kernel_size, spatial)))


def _adaptive_window_total(size_in: int, size_out: int) -> int:
    """Sum of the window lengths PyTorch's adaptive pooling uses along one dimension:
    window i spans [floor(i * I / O), ceil((i + 1) * I / O))."""
    return sum(-((-(i + 1) * size_in) // size_out) - (i * size_in) // size_out for i in range(size_out))


@_reg.formula(
    "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d", "aten::adaptive_max_pool2d",
    "aten::adaptive_max_pool3d", "aten::adaptive_max_pool1d", "aten::adaptive_avg_pool1d",
)
def _adaptive_pool(x: Shape, output_size: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *So] = adaptive_pool([N, C, *Si], So); FLOPs = N * C * prod over dims of the
    summed window lengths (exact, windows may overlap)"""
    out_shape = _first_shape(out)
    spatial = len(output_size)  # the op's own dimensionality: inputs may be unbatched
    lead = _prod(out_shape[:-spatial])
    total = lead
    for si, so in zip(x[-spatial:], out_shape[-spatial:], strict=True):
        total *= _adaptive_window_total(int(si), int(so))
    return Cost(0, total)


# --- reductions ---------------------------------------------------------------------------


def _reduction(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[reduced] = reduce([*]); FLOPs = prod(*): each input element is accumulated once"""
    return Cost(0, _prod(x))


_reg.formula(
    "aten::sum", "aten::mean", "aten::amax", "aten::amin", "aten::max", "aten::min", "aten::prod",
    "aten::var", "aten::std", "aten::var_mean", "aten::std_mean", "aten::norm",
    "aten::linalg_vector_norm", "aten::logsumexp", "aten::argmax", "aten::argmin",
    "aten::all", "aten::any",
)(_reduction)


# --- free: reviewed zero-cost ops ---------------------------------------------------------

_reg.free(
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::t", "aten::transpose", "aten::permute",
    "aten::expand", "aten::squeeze", "aten::unsqueeze", "aten::select", "aten::slice", "aten::as_strided",
    "aten::alias", "aten::detach", "aten::split", "aten::split_with_sizes", "aten::unbind", "aten::narrow",
    "aten::diagonal", "aten::unfold", "aten::view_as", "aten::expand_as", "aten::flatten",
    "aten::unflatten", "aten::movedim", "aten::_reshape_alias", "aten::lift_fresh",
    "aten::t_", "aten::transpose_", "aten::squeeze_", "aten::unsqueeze_", "aten::as_strided_",
    "aten::chunk", "aten::tensor_split", "aten::view_as_real", "aten::view_as_complex",
    "aten::unsafe_split", "aten::unsafe_split_with_sizes", "aten::unsafe_chunk",
    reason="view: a new shape or stride over the same storage, no arithmetic",
)
_reg.free(
    "prim::device", "prim::layout", "prim::dtype", "aten::sym_size", "aten::sym_stride",
    "aten::sym_numel", "aten::sym_storage_offset", "aten::is_same_size", "aten::_has_compatible_shallow_copy_type",
    "aten::is_nonzero", "aten::size", "aten::stride", "aten::dim",
    reason="metadata query, no data touched",
)
_reg.free(
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros", "aten::zeros_like",
    "aten::ones", "aten::ones_like", "aten::full", "aten::full_like", "aten::arange", "aten::new_empty",
    "aten::new_empty_strided", "aten::new_zeros", "aten::new_ones", "aten::new_full",
    "aten::scalar_tensor", "aten::fill", "aten::fill_", "aten::zero", "aten::zero_",
    "aten::linspace", "aten::eye", "aten::tril", "aten::triu", "aten::tril_", "aten::triu_",
    reason="constructor or constant fill, no arithmetic on activations",
)
_reg.free(
    "aten::clone", "aten::copy", "aten::copy_", "aten::_to_copy", "aten::contiguous", "aten::cat",
    "aten::stack", "aten::constant_pad_nd", "aten::index_select", "aten::gather", "aten::index",
    "aten::repeat", "aten::roll", "aten::flip", "aten::pad", "aten::_unsafe_index", "aten::embedding",
    "aten::masked_select", "aten::slice_scatter",
    "aten::select_scatter", "aten::lift_fresh_copy", "aten::_pin_memory", "aten::reflection_pad1d",
    "aten::reflection_pad2d", "aten::replication_pad1d", "aten::replication_pad2d",
    reason="data movement (copy, gather, concatenate, pad, cast): memory traffic, no arithmetic",
)
_reg.free(
    "aten::bernoulli", "aten::bernoulli_", "aten::rand", "aten::randn", "aten::randint",
    "aten::rand_like", "aten::randn_like", "aten::uniform_", "aten::normal_", "aten::randperm",
    reason="random number generation, not arithmetic on the model's values",
)
