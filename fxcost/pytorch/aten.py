"""The aten ops' fates: each formula maps one aten op's arguments onto the counting core's
arithmetic (:mod:`fxcost.counting.arithmetic`); each free op has its reviewed reason.

A formula receives the op's arguments with every tensor replaced by its ``torch.Size`` and the
output's shape(s) as ``out``, and opens with its shape contract. :data:`ATEN` is the PyTorch
route's registry (``fxcost.DEFAULT_REGISTRY``); an analysis that counts differently extends a
copy of it.

To give a new aten op a formula: add a function here under ``@_reg.formula("aten::name")``,
written with the arithmetic's functions, and a test against FlopCounterMode (or by hand where
FlopCounterMode has no formula) in tests/test_formulas.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fxcost.counting import arithmetic as A
from fxcost.counting.arithmetic import Cost, Shape, prod, whole
from fxcost.counting.registry import Formula, FormulaRegistry, Free
from fxcost.pytorch import vision_ops
from fxcost.pytorch.tensors import SHAPES, SparseSize
from fxcost.report.kinds import Fate

ATEN = FormulaRegistry()
_reg = ATEN


def _numel(s: Any) -> int:
    return prod(s) if isinstance(s, SHAPES) else 0


def _given(t: Any) -> bool:
    """An optional tensor argument that was passed (its shape), not ``None``."""
    return isinstance(t, SHAPES)


def _first_shape(out: Any) -> Any:
    """The first tensor's shape in an op's output (ops like max_pool return (values, indices))."""
    if isinstance(out, SHAPES):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, SHAPES):
                return o
    raise TypeError(f"no tensor in op output {out!r}")


def _op_exists(name: str) -> bool:
    """Whether ``ns::op`` names an operator torch knows (every overload of it: the recorder
    looks formulas up by the schema's name, which has no overload)."""
    ns, sep, op = name.partition("::")
    if not sep or not ns or not op or "." in op:
        return False
    try:
        getattr(getattr(torch.ops, ns), op)
    except (AttributeError, RuntimeError):
        return False
    return True


def _with_inplace(*names: str) -> tuple[str, ...]:
    """``relu`` -> ``aten::relu``, ``aten::relu_``: an in-place variant costs the same (where torch
    has one: ``aten::maximum`` has none)."""
    return tuple(n for base in names for n in (f"aten::{base}", f"aten::{base}_") if not n.endswith("_") or _op_exists(n))


# --- matmul family ------------------------------------------------------------------------


@_reg.formula("aten::mm")
def _mm(a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[n, m] = mm([n, k], [k, m]); MACs = n * k * m; a sparse [n, k] (COO, with --real: data-free
    sparse tensors have no nonzeros to count): MACs = nnz * m"""
    if isinstance(a, SparseSize):
        return A.sparse_matmul(a.nnz, b[1])
    return A.matmul(a[0], a[1], b[1])


@_reg.formula("aten::_sparse_addmm")
def _sparse_addmm(bias: Shape, a: Shape, b: Shape, *_: Any, out: Any = None, beta: float = 1, alpha: float = 1,
                  **__: Any) -> Cost:
    """[n, m] = _sparse_addmm(bias[n, m], sparse[n, k], dense[k, m], beta=, alpha=) (torch.sparse.mm):
    MACs = nnz * m; FLOPs += the scaled add (see arithmetic.scaled_sum)"""
    return _mm(a, b) + A.scaled_sum(_numel(out), beta, alpha)


@_reg.formula("aten::addmm")
def _addmm(bias: Shape, a: Shape, b: Shape, *_: Any, out: Any = None, beta: float = 1, alpha: float = 1, **__: Any) -> Cost:
    """[n, m] = addmm(bias[m]|[n, m], [n, k], [k, m], beta=, alpha=); MACs = n * k * m (sparse:
    nnz * m); FLOPs += n * m for the bias (none when beta is 0), + n * m for each scale not 1"""
    return _mm(a, b) + A.scaled_sum(_numel(out), beta, alpha)


@_reg.formula("aten::bmm")
def _bmm(a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[B, n, m] = bmm([B, n, k], [B, k, m]); MACs = B * n * k * m"""
    return A.matmul(a[1], a[2], b[2], batch=a[0])


@_reg.formula("aten::baddbmm")
def _baddbmm(bias: Shape, a: Shape, b: Shape, *_: Any, out: Any = None, beta: float = 1, alpha: float = 1,
             **__: Any) -> Cost:
    """[B, n, m] = baddbmm(bias, [B, n, k], [B, k, m], beta=, alpha=); MACs = B * n * k * m;
    FLOPs += B * n * m for the bias (none when beta is 0), + B * n * m for each scale not 1"""
    return A.matmul(a[1], a[2], b[2], batch=a[0]) + A.scaled_sum(_numel(out), beta, alpha)


@_reg.formula("aten::addbmm")
def _addbmm(bias: Shape, a: Shape, b: Shape, *_: Any, out: Any = None, beta: float = 1, alpha: float = 1,
            **__: Any) -> Cost:
    """[n, m] = addbmm(bias, [B, n, k], [B, k, m], beta=, alpha=): the B products summed into one;
    MACs = B * n * k * m (each output element accumulates B * k products); FLOPs += the scaled
    add over n * m (see arithmetic.scaled_sum)"""
    return A.matmul(a[1], a[2], b[2], batch=a[0]) + A.scaled_sum(_numel(out), beta, alpha)


@_reg.formula("aten::mv")
def _mv(a: Shape, v: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[n] = mv([n, k], [k]); MACs = n * k"""
    return A.matmul(a[0], a[1], 1)


@_reg.formula("aten::addmv")
def _addmv(bias: Shape, a: Shape, v: Shape, *_: Any, out: Any = None, beta: float = 1, alpha: float = 1,
           **__: Any) -> Cost:
    """[n] = addmv(bias[n], [n, k], [k], beta=, alpha=); MACs = n * k; FLOPs += the scaled add over n"""
    return A.matmul(a[0], a[1], 1) + A.scaled_sum(_numel(out), beta, alpha)


@_reg.formula("aten::_scaled_mm")
def _scaled_mm(a: Shape, b: Shape, scale_a: Any = None, scale_b: Any = None, bias: Any = None, *_: Any,
               out: Any = None, **__: Any) -> Cost:
    """[M, N] = _scaled_mm(a[M, K] (float8), b[K, N], scale_a, scale_b, bias?, scale_result?, out_dtype):
    MACs = M * K * N (as FlopCounterMode counts it); FLOPs += M * N applying the scales, + M * N for a bias"""
    n = _numel(_first_shape(out))
    return A.matmul(a[0], a[1], b[1]) + A.pointwise(n) + A.bias(n if _given(bias) else 0)


@_reg.formula("aten::dot", "aten::vdot")
def _dot(a: Shape, b: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[] = dot([k], [k]); MACs = k"""
    return A.matmul(1, a[0], 1)


@_reg.formula("aten::_grouped_mm", "transformers::grouped_mm_fallback")
def _grouped_mm(a: Shape, b: Shape, offs: Any = None, bias: Any = None, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[M, N] = _grouped_mm(a[M, K], b[G, K, N], offs[G]): the rows of a are split into G groups
    (mixture-of-experts layers), each multiplied by its own [K, N]. The other layouts:
    [G, M, N] = ([G, M, K], [G, K, N]); [M, Ntot] = ([G, M, K], [K, Ntot], offs over N);
    [G, M, N] = ([M, Ktot], [Ktot, N], offs over K). transformers' ``grouped_mm_fallback`` (the
    custom op its mixture-of-experts layers use where _grouped_mm cannot run) takes the first
    layout and costs the same.

    MACs = prod(out) * K, and M * Ktot * N when both operands are 2-D (each group contracts its
    own slice of K). Rows past the last offset are counted as computed (an upper bound).
    FLOPs = 2 * MACs, + prod(out) for a bias.
    """
    out_shape = _first_shape(out)
    if len(a) == 2 and len(b) == 2:
        cost = A.matmul(a[0], a[1], b[-1])
    else:
        cost = A.matmul(prod(out_shape), a[-1], 1)
    return cost + A.bias(prod(out_shape) if _given(bias) else 0)


def _unsqueezed(shape: Shape, dims: Sequence[int]) -> list[int]:
    """``shape`` with a size-1 dimension inserted at each of ``dims`` (ascending), as
    ``_trilinear`` expands its operands."""
    s = [whole(d) for d in shape]
    for d in sorted(dims):
        s.insert(d, 1)
    return s


@_reg.formula("aten::_trilinear")
def _trilinear(
    i1: Shape, i2: Shape, i3: Shape, expand1: Any, expand2: Any, expand3: Any, sumdim: Any, *_: Any, out: Any = None, **__: Any
) -> Cost:
    """[*P without sumdim] = _trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim): the sum
    over ``sumdim`` of i1 * i2 * i3, each unsqueezed at its ``expand`` dims and broadcast to the
    full product space P. nn.Bilinear is ``_trilinear(x1[N, in1], W[out, in1, in2], x2[N, in2])``
    with P = [N, out, in1, in2].

    MACs = prod(P): PyTorch's kernel multiplies i1 * i2 elementwise over P, then contracts the
    product with i3 (a matmul of prod(P) MACs). FLOPs = 3 * prod(P): the contraction's multiply
    and add, plus the first multiply of each triple product.
    """
    full = [
        max(a, b, c)
        for a, b, c in zip(_unsqueezed(i1, expand1), _unsqueezed(i2, expand2), _unsqueezed(i3, expand3), strict=True)
    ]
    terms = prod(full)
    return A.matmul(terms, 1, 1) + A.pointwise(terms)


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
    """[N, Co, *So] = convolution([N, Ci, *Si], W, b[Co]?, stride, padding, dilation, transposed,
    output_padding, groups); see arithmetic.convolution"""
    return A.convolution(x, w, _first_shape(out), transposed=bool(transposed), biased=_given(bias))


# --- attention ----------------------------------------------------------------------------
# A fused attention kernel costs what PyTorch's math path (``_scaled_dot_product_attention_math``)
# dispatches for the same shapes, so a model counts the same whichever kernel runs: on meta
# tensors scaled_dot_product_attention decomposes into that math path, on CPU fake (and real)
# tensors it is one ``_scaled_dot_product_flash_attention_for_cpu``. The tests check it op by op.
# A boolean mask becomes an additive one through a ``where`` that scaled_dot_product_attention
# dispatches before either path, counted there.


@_reg.formula("aten::_scaled_dot_product_flash_attention_for_cpu")
def _sdpa_flash_cpu(
    q: Shape, k: Shape, v: Shape, dropout_p: float = 0.0, is_causal: bool = False, *_: Any,
    attn_mask: Any = None, out: Any = None, **__: Any,
) -> Cost:
    """[B, H, Lq, Ev], lse = _scaled_dot_product_flash_attention_for_cpu(q[B, H, Lq, E],
    k[B, Hk, Lk, E], v[B, Hk, Lk, Ev], dropout_p, is_causal, attn_mask=?); see arithmetic.attention"""
    return A.attention(q, k, v, masked=bool(is_causal) or _given(attn_mask), dropout=bool(dropout_p))


@_reg.formula("aten::_scaled_dot_product_flash_attention")
def _sdpa_flash(q: Shape, k: Shape, v: Shape, *args: Any, out: Any = None, **__: Any) -> Cost:
    """out, ... = _scaled_dot_product_flash_attention(q[B, H, Lq, E], k, v, dropout_p, is_causal,
    ...); the ``quantized`` overload has three descale tensors before dropout_p; see arithmetic.attention"""
    if args and (args[0] is None or _given(args[0])):
        args = args[3:]  # q_descale, k_descale, v_descale
    dropout_p, is_causal = (*args, 0.0, False)[:2]
    return A.attention(q, k, v, masked=bool(is_causal), dropout=bool(dropout_p))


@_reg.formula("aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_cudnn_attention")
def _sdpa_efficient(
    q: Shape, k: Shape, v: Shape, attn_bias: Any = None, compute_log_sumexp: bool = False,
    dropout_p: float = 0.0, is_causal: bool = False, *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """out, ... = _scaled_dot_product_{efficient,cudnn}_attention(q[B, H, Lq, E], k, v, bias?,
    compute_log_sumexp, dropout_p, is_causal, ...); see arithmetic.attention"""
    return A.attention(q, k, v, masked=bool(is_causal) or _given(attn_bias), dropout=bool(dropout_p))


@_reg.formula("aten::_scaled_dot_product_fused_attention_overrideable")
def _sdpa_overrideable(
    q: Shape, k: Shape, v: Shape, attn_bias: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
    *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """out, ... = _scaled_dot_product_fused_attention_overrideable(q[B, H, Lq, E], k, v, bias?,
    dropout_p, is_causal, ...); see arithmetic.attention"""
    return A.attention(q, k, v, masked=bool(is_causal) or _given(attn_bias), dropout=bool(dropout_p))


@_reg.formula("aten::_native_multi_head_attention")
def _native_mha(
    query: Shape, key: Shape, value: Shape, embed_dim: int, num_head: int, qkv_weight: Shape, qkv_bias: Any,
    proj_weight: Shape, proj_bias: Any, mask: Any = None, need_weights: bool = True, *args: Any,
    out: Any = None, **kwargs: Any,
) -> Cost:
    """[B, Lq, E], weights = _native_multi_head_attention(q[B, Lq, E], k[B, Lk, E], v[B, Lk, E],
    E, H, W_qkv[3E, E], b_qkv[3E], W_o[E, E], b_o[E], mask?, need_weights, average_attn_weights)

    nn.MultiheadAttention's fast path (eval, no grad, CPU tensors): the whole layer in one op.
    Its cost is what the layer's own slow path dispatches, with d = E / H:
    MACs = (B*Lq + 2*B*Lk) * E * E    in-projections of q, k and v
         + attention of [B, H, Lq, d] x [B, H, Lk, d]  (see arithmetic.attention)
         + B * Lq * E * E             out-projection.
    FLOPs = 2 * MACs, + (B*Lq + 2*B*Lk) * E and B * Lq * E for the biases, + the attention's
    scale, mask, softmax work (q alone is scaled when the weights are returned, as the slow path
    does), + B * H * Lq * Lk averaging the weights over heads when they are returned averaged.
    """
    average = (*args, kwargs.get("average_attn_weights", True))[0]
    rows_q, rows_k, rows_v = prod(query[:-1]), prod(key[:-1]), prod(value[:-1])
    e_out, e_in = whole(qkv_weight[0]) // 3, whole(qkv_weight[1])
    projections = A.matmul(rows_q + rows_k + rows_v, e_in, e_out)
    in_bias = A.bias((rows_q + rows_k + rows_v) * e_out if _given(qkv_bias) else 0)
    d = e_out // num_head

    def heads(x: Shape) -> list[int]:
        return [*x[:-2], num_head, whole(x[-2]), d]

    attn = A.attention(heads(query), heads(key), heads(value), masked=_given(mask), dropout=False,
                       scale_key=not need_weights)
    out_proj = A.matmul(rows_q, whole(proj_weight[1]), whole(proj_weight[0]))
    out_bias = A.bias(rows_q * whole(proj_weight[0]) if _given(proj_bias) else 0)
    averaging = A.pointwise(A.attention_scores(heads(query), heads(key)) if need_weights and average else 0)
    return projections + in_bias + attn + out_proj + out_bias + averaging


@_reg.formula("aten::_transformer_encoder_layer_fwd")
def _encoder_layer(
    src: Shape, embed_dim: int, num_heads: int, qkv_weight: Shape, qkv_bias: Any, proj_weight: Shape,
    proj_bias: Any, use_gelu: bool, norm_first: bool, eps: float, norm_weight_1: Any, norm_bias_1: Any,
    norm_weight_2: Any, norm_bias_2: Any, ffn_weight_1: Shape, ffn_bias_1: Any, ffn_weight_2: Shape,
    ffn_bias_2: Any, mask: Any = None, *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """[B, L, E] = _transformer_encoder_layer_fwd(src[B, L, E], E, H, <self-attention weights>,
    use_gelu, norm_first, eps, <two layer norms>, W1[F, E], b1[F], W2[E, F], b2[E], mask?)

    nn.TransformerEncoderLayer's fast path, costed as its slow path dispatches:
    self-attention without weights (see _native_mha), + 2 * B * L * E for the two residual adds,
    + two layer norms (see arithmetic.normalization), + the feed-forward block:
    MACs += 2 * B * L * E * F; FLOPs += 2 * those MACs + B * L * (F + E) for the biases + B * L * F
    for the activation (relu or gelu, 1 per element).
    """
    attn = _native_mha(src, src, src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
                       mask, False)
    rows = prod(src[:-1])
    hidden, width = whole(ffn_weight_1[0]), whole(ffn_weight_1[1])
    ffn = A.matmul(rows, width, hidden) + A.matmul(rows, whole(ffn_weight_2[1]), whole(ffn_weight_2[0]))
    ffn_bias = A.bias((rows * hidden if _given(ffn_bias_1) else 0) + (rows * whole(ffn_weight_2[0]) if _given(ffn_bias_2) else 0))
    norms = (A.normalization(prod(src), stats=True, affine=_given(norm_weight_1))
             + A.normalization(prod(src), stats=True, affine=_given(norm_weight_2)))
    residuals = A.pointwise(2 * prod(src))
    return attn + residuals + norms + ffn + ffn_bias + A.pointwise(rows * hidden)


# --- recurrent layers ---------------------------------------------------------------------


@_reg.formula("aten::mkldnn_rnn_layer")
def _mkldnn_rnn_layer(
    x: Shape, w_ih: Shape, w_hh: Shape, b_ih: Any, b_hh: Any, hx: Any, cx: Any, reverse: bool,
    batch_sizes: Any, mode: int, hidden_size: int, num_layers: int, has_biases: bool, *_: Any,
    out: Any = None, **__: Any,
) -> Cost:
    """[T, B, H], hy, cy, ws = mkldnn_rnn_layer(x[T, B, In], W_ih[G*H, In], W_hh[G*H, H], b_ih[G*H],
    b_hh[G*H], hx, cx, reverse, batch_sizes, mode, H, num_layers, has_biases, ...): one layer in
    one direction, the CPU fast path nn.LSTM takes on CPU tensors (G = 4 gates).
    MACs = T * B * (G*H * In + G*H * H); see arithmetic.recurrent for FLOPs."""
    biases = [b for b in (b_ih, b_hh) if _given(b)] if has_biases else []
    return A.recurrent(x, [w_ih, w_hh], biases, mode, whole(hidden_size), 1)


def _cudnn_like_rnn(
    x: Shape, weights: Sequence[Any], mode: int, hidden_size: int, num_layers: int, bidirectional: bool
) -> Cost:
    ws = [w for w in weights if _given(w)]
    cells = whole(num_layers) * (2 if bidirectional else 1)
    return A.recurrent(x, [w for w in ws if len(w) == 2], [w for w in ws if len(w) == 1], mode, whole(hidden_size), cells)


@_reg.formula("aten::_cudnn_rnn")
def _cudnn_rnn(
    x: Shape, weight: Sequence[Any], weight_stride0: int, weight_buf: Any, hx: Any, cx: Any, mode: int,
    hidden_size: int, proj_size: int, num_layers: int, batch_first: bool, dropout: float, train: bool,
    bidirectional: bool, *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """output, ... = _cudnn_rnn(x[T, B, In], [W_ih, W_hh, b_ih?, b_hh?, W_hr?] per layer and
    direction, ..., mode, H, proj_size, num_layers, ..., bidirectional, ...): a whole
    nn.LSTM/GRU/RNN in one op; see arithmetic.recurrent (every weight matrix, projection included)"""
    return _cudnn_like_rnn(x, weight, mode, hidden_size, num_layers, bidirectional)


@_reg.formula("aten::miopen_rnn")
def _miopen_rnn(
    x: Shape, weight: Sequence[Any], weight_stride0: int, hx: Any, cx: Any, mode: int, hidden_size: int,
    num_layers: int, batch_first: bool, dropout: float, train: bool, bidirectional: bool, *_: Any,
    out: Any = None, **__: Any,
) -> Cost:
    """output, ... = miopen_rnn(x[T, B, In], weights, ..., mode, H, num_layers, ...,
    bidirectional, ...): ROCm's whole-RNN op; see _cudnn_rnn"""
    return _cudnn_like_rnn(x, weight, mode, hidden_size, num_layers, bidirectional)


@_reg.formula("aten::_thnn_fused_lstm_cell")
def _fused_lstm_cell(
    input_gates: Shape, hidden_gates: Shape, cx: Shape, input_bias: Any = None, hidden_bias: Any = None,
    *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """hy[B, H], cy[B, H], ws = _thnn_fused_lstm_cell(x_gates[B, 4H], h_gates[B, 4H], cx[B, H],
    b_ih[4H]?, b_hh[4H]?): the pointwise half of a CUDA LSTM cell (its matmuls are separate mm
    ops). FLOPs = 13 * B * H (see arithmetic.CELL_FLOPS) + B * 4H per bias"""
    biases = sum(1 for b in (input_bias, hidden_bias) if _given(b))
    return A.cell_pointwise(A.RnnCell.LSTM, prod(cx)) + A.bias(biases * prod(input_gates))


@_reg.formula("aten::_thnn_fused_gru_cell")
def _fused_gru_cell(
    input_gates: Shape, hidden_gates: Shape, hx: Shape, input_bias: Any = None, hidden_bias: Any = None,
    *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """hy[B, H], ws = _thnn_fused_gru_cell(x_gates[B, 3H], h_gates[B, 3H], hx[B, H], b_ih[3H]?,
    b_hh[3H]?): the pointwise half of a CUDA GRU cell. FLOPs = 10 * B * H + B * 3H per bias"""
    biases = sum(1 for b in (input_bias, hidden_bias) if _given(b))
    return A.cell_pointwise(A.RnnCell.GRU, prod(hx)) + A.bias(biases * prod(input_gates))


# --- pointwise ----------------------------------------------------------------------------


def elementwise(flops_per_element: int) -> Formula:
    """An elementwise aten op: ``flops_per_element`` FLOPs for each output element, no MACs."""

    def formula(*_: Any, out: Any = None, **__: Any) -> Cost:
        return A.pointwise(_numel(_first_shape(out)), flops_per_element)

    formula.__doc__ = f"[*] = op([*], ...); FLOPs = {flops_per_element} * prod(*)"
    return formula


# One FLOP per output element, whatever the function (arithmetic.pointwise).
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
        "maximum", "minimum", "masked_fill", "nan_to_num",
        "floor_divide", "atan2", "hypot", "logaddexp", "logaddexp2", "xlogy", "copysign", "fmax", "fmin",
        "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "erfinv", "sgn",
        "hardshrink", "softshrink", "rrelu_with_noise",
    ),
    "aten::rsub", "aten::prelu", "aten::_prelu_kernel", "aten::glu", "aten::_log_softmax_backward_data",
    "aten::log_sigmoid_forward", "aten::isnan", "aten::isinf", "aten::isposinf", "aten::isneginf",
    "aten::signbit",
)(elementwise(1))
# gelu counts 1 per element whether approximate="none" (erf) or "tanh": the convention does not
# weigh one transcendental function against another (see above).

# softmax and log-softmax: max, subtract, exp, sum, divide (or log) per element. _masked_softmax
# (the transformer fast path's) applies its mask by selection, not arithmetic.
_reg.formula("aten::_softmax", "aten::_log_softmax", "aten::_safe_softmax", "aten::_masked_softmax")(
    elementwise(A.SOFTMAX_FLOPS)
)

# Scans: each output element is one add (multiply, compare, log-add-exp) of the running value and
# the next input; the first element of each scan, which needs none, stands in for nothing else.
_reg.formula(
    *_with_inplace("cumsum", "cumprod"), "aten::logcumsumexp", "aten::cummax", "aten::cummin",
)(elementwise(1))

# Dropout while training scales each kept element once; drawing the random mask is not
# arithmetic on the activations. In eval mode dropout dispatches no op at all.
_reg.formula("aten::native_dropout")(elementwise(1))


# --- normalization ------------------------------------------------------------------------


@_reg.formula("aten::_batch_norm_with_update")
def _batch_norm_train(x: Shape, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *] = batch_norm_with_update([N, C, *], w[C]?, ...): training, statistics computed"""
    return A.normalization(prod(x), stats=True, affine=_given(weight))


@_reg.formula("aten::native_batch_norm", "aten::_native_batch_norm_legit")
def _batch_norm(x: Shape, weight: Any, bias: Any, *args: Any, out: Any = None, **kwargs: Any) -> Cost:
    """[N, C, *] = batch_norm([N, C, *], w[C]?, b[C]?, mean, var, training, ...)"""
    training = next((a for a in args if isinstance(a, bool)), kwargs.get("training", False))
    return A.normalization(prod(x), stats=bool(training), affine=_given(weight))


@_reg.formula("aten::_native_batch_norm_legit_no_training", "aten::_batch_norm_no_update")
def _batch_norm_eval(x: Shape, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *] = batch_norm_eval([N, C, *], w[C]?, ...): statistics are stored, not computed"""
    return A.normalization(prod(x), stats=False, affine=_given(weight))


@_reg.formula("aten::native_layer_norm")
def _layer_norm(x: Shape, normalized_shape: Any, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*, D] = layer_norm([*, D], D, w[D]?, b[D]?); statistics over D are computed"""
    return A.normalization(prod(x), stats=True, affine=_given(weight))


@_reg.formula("aten::native_group_norm")
def _group_norm(x: Shape, weight: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *] = group_norm([N, C, *], w[C]?, b[C]?, ...); statistics per group are computed"""
    return A.normalization(prod(x), stats=True, affine=_given(weight))


@_reg.formula("aten::_fused_rms_norm")
def _rms_norm(x: Shape, normalized_shape: Any, weight: Any = None, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*, D] = _fused_rms_norm([*, D], D, w[D]?, eps) (a fused kernel on some backends; on CPU
    nn.RMSNorm decomposes into the same work); see arithmetic.rms_normalization"""
    return A.rms_normalization(x, normalized_shape, weighted=_given(weight))


@_reg.formula("aten::_weight_norm_interface")
def _weight_norm(v: Shape, g: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """w[*], norms = _weight_norm_interface(v[*], g, dim): w = v * (g / ||v||), as its
    decomposition dispatches it: FLOPs = prod(*) for the norms (reduction) + prod(g) (divide)
    + prod(*) (multiply)"""
    return A.reduction(prod(v)) + A.pointwise(prod(g)) + A.pointwise(prod(v))


# --- pooling ------------------------------------------------------------------------------


@_reg.formula(
    "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d",
    "aten::max_pool1d_with_indices", "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices",
    "aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d",
)
def _pool(x: Shape, kernel_size: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *So] = pool([N, C, *Si], K); see arithmetic.pooling"""
    spatial = len(x) - 2 if len(x) >= 3 else 1
    return A.pooling(prod(_first_shape(out)), A.window(kernel_size, spatial))


@_reg.formula(
    "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d", "aten::adaptive_max_pool2d",
    "aten::adaptive_max_pool3d", "aten::adaptive_max_pool1d", "aten::adaptive_avg_pool1d",
)
def _adaptive_pool(x: Shape, output_size: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *So] = adaptive_pool([N, C, *Si], So); see arithmetic.adaptive_pooling"""
    # the op's own dimensionality: inputs may be unbatched
    return A.adaptive_pooling(x, _first_shape(out), len(output_size))


# --- interpolation ------------------------------------------------------------------------


def interpolation(taps: int, name: str) -> Formula:
    """Linear-family upsampling with a fixed number of taps per output element."""

    def formula(*_: Any, out: Any = None, **__: Any) -> Cost:
        return A.interpolation(_numel(_first_shape(out)), taps)

    formula.__doc__ = (
        f"[N, C, *So] = {name}([N, C, *Si], So, align_corners, scales...); {taps} taps: "
        f"FLOPs = {2 * taps - 1} * N * C * prod(So)"
    )
    return formula


_reg.formula("aten::upsample_linear1d")(interpolation(2, "upsample_linear1d"))
_reg.formula("aten::upsample_bilinear2d")(interpolation(2 * 2, "upsample_bilinear2d"))
_reg.formula("aten::upsample_trilinear3d")(interpolation(2 * 2 * 2, "upsample_trilinear3d"))
_reg.formula("aten::upsample_bicubic2d")(interpolation(4 * 4, "upsample_bicubic2d"))


def antialiased(support: int, name: str) -> Formula:
    """Anti-aliased 2-D resampling: a filter ``support`` taps wide, stretched by the factor
    Si / So along each dimension that shrinks."""

    def formula(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
        out_shape = _first_shape(out)
        return A.interpolation(prod(out_shape), A.antialiased_taps(x[-2:], out_shape[-2:], support))

    formula.__doc__ = (
        f"[N, C, Ho, Wo] = {name}([N, C, Hi, Wi], (Ho, Wo), align_corners, scales...); taps per "
        f"dimension t = ceil({support} * Si / So) when Si > So, else {support}; FLOPs = "
        "(2 * t_h * t_w - 1) * N * C * Ho * Wo. PyTorch clips the windows at the borders; fxcost "
        "does not, so this is an upper bound there"
    )
    return formula


_reg.formula("aten::_upsample_bilinear2d_aa")(antialiased(2, "_upsample_bilinear2d_aa"))
_reg.formula("aten::_upsample_bicubic2d_aa")(antialiased(4, "_upsample_bicubic2d_aa"))
_reg.formula("aten::_upsample_lanczos2d_aa")(antialiased(6, "_upsample_lanczos2d_aa"))  # Lanczos-3


@_reg.formula("aten::col2im")
def _col2im(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, H, W] = col2im([N, C * prod(K), L], (H, W), K, ...) (nn.Fold); FLOPs = prod(input):
    each column element is added into its output position once (patches overlap)"""
    return A.reduction(prod(x))


# --- distances and grids ------------------------------------------------------------------


def _euclidean(x1: Shape, x2: Shape) -> Cost:
    """Euclidean distances through a matmul, as PyTorch's ``_euclidean_dist`` computes them:
    |x1|^2 and |x2|^2 (a square and an add per element), -2 * x1 (1 per element), one matmul of
    [P, M + 2] x [M + 2, R] (the norms and ones ride along as two columns), then clamp and sqrt
    per distance: MACs = B * P * R * (M + 2)."""
    batch, rows, cols, dims = prod(x1[:-2]), whole(x1[-2]), whole(x2[-2]), whole(x1[-1])
    norms = A.pointwise(batch * (rows + cols) * dims, 2) + A.pointwise(batch * rows * dims)
    return norms + A.matmul(rows, dims + 2, cols, batch=batch) + A.pointwise(batch * rows * cols, 2)


@_reg.formula("aten::_cdist_forward")
def _cdist(x1: Shape, x2: Shape, p: float = 2.0, compute_mode: Any = None, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*B, P, R] = _cdist_forward(x1[*B, P, M], x2[*B, R, M], p, compute_mode) (torch.cdist).
    p = 2 through a matmul (compute_mode 1, or the default 0/None when P or R exceeds 25): see
    _euclidean. Otherwise pair by pair: 3 FLOPs per pair and dim (subtract, square or abs,
    accumulate) and 1 per pair for the root (not for p = 0, 1 or inf); no MACs."""
    rows, cols = whole(x1[-2]), whole(x2[-2])
    if p == 2 and (compute_mode == 1 or (compute_mode in (None, 0) and (rows > 25 or cols > 25))):
        return _euclidean(x1, x2)
    root = 0 if p in (0, 1, float("inf")) else 1
    return A.pointwise(prod(x1[:-2]) * rows * cols, 3 * whole(x1[-1]) + root)


@_reg.formula("aten::_euclidean_dist")
def _euclidean_dist(x1: Shape, x2: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*B, P, R] = _euclidean_dist(x1[*B, P, M], x2[*B, R, M]); see _euclidean"""
    return _euclidean(x1, x2)


@_reg.formula("aten::affine_grid_generator")
def _affine_grid(theta: Shape, size: Sequence[int], align_corners: bool = False, *_: Any, out: Any = None,
                 **__: Any) -> Cost:
    """[N, *S, d] = affine_grid_generator(theta[N, d, d + 1], size[N, C, *S]) (F.affine_grid): each
    of the N * prod(S) base points [*coords, 1] is multiplied by theta^T, a bmm of
    MACs = N * prod(S) * (d + 1) * d"""
    spatial = [whole(v) for v in size[2:]]
    d = len(spatial)
    return A.matmul(prod(spatial), d + 1, d, batch=whole(size[0]))


#: taps per output element of grid_sampler's modes: bilinear, nearest (a copy), bicubic
_GRID_TAPS = {0: 4, 1: 0, 2: 16}


@_reg.formula("aten::grid_sampler_2d", "aten::grid_sampler_3d")
def _grid_sampler(x: Shape, grid: Shape, interpolation_mode: int = 0, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *So] = grid_sampler_{2,3}d(input[N, C, *Si], grid[N, *So, d], mode, padding, align_corners)
    (F.grid_sample): each output element is a weighted sum of its taps, as the interpolation
    formulas count it: bilinear 4 taps (8 in 3-D, trilinear), nearest a copy (0), bicubic 16; the
    taps' weights, one set per output position, are not counted (as for upsampling)"""
    taps = _GRID_TAPS.get(whole(interpolation_mode), 4)
    if len(x) == 5 and taps == 4:
        taps = 8
    return A.interpolation(_numel(_first_shape(out)), taps) if taps else Cost(0, 0)


# --- backward -------------------------------------------------------------------------------
# The ops a training step's backward dispatches (train=True); see arithmetic's backward section.


def _mask(output_mask: Any, n: int = 3) -> list[bool]:
    return [bool(m) for m in output_mask] if output_mask is not None else [True] * n


@_reg.formula("aten::convolution_backward")
def _convolution_backward(dy: Shape, x: Shape, w: Shape, bias_sizes: Any = None, stride: Any = None, padding: Any = None,
                          dilation: Any = None, transposed: bool = False, output_padding: Any = None, groups: int = 1,
                          output_mask: Any = None, *_: Any, out: Any = None, **__: Any) -> Cost:
    """dx, dw, db = convolution_backward(dy[N, Co, *So], x, W, ..., output_mask): dx and dw each
    cost the forward's MACs (a convolution of dy with W, and of x with dy); db = sum(dy), FLOPs
    prod(dy). FlopCounterMode counts dx and dw the same way."""
    grads = _mask(output_mask)
    forward = A.convolution(x, w, dy, transposed=bool(transposed), biased=False)
    n = whole(grads[0]) + whole(grads[1])
    return Cost(forward.macs * n, forward.flops * n + (prod(dy) if grads[2] else 0))


_reg.formula(
    "aten::threshold_backward", "aten::gelu_backward", "aten::silu_backward", "aten::sigmoid_backward",
    "aten::tanh_backward", "aten::hardtanh_backward", "aten::hardswish_backward", "aten::hardsigmoid_backward",
    "aten::leaky_relu_backward", "aten::elu_backward", "aten::softplus_backward", "aten::mish_backward",
    "aten::log_sigmoid_backward",
)(elementwise(A.ACTIVATION_BACKWARD_FLOPS))
_reg.formula("aten::_softmax_backward_data")(elementwise(A.SOFTMAX_BACKWARD_FLOPS))


@_reg.formula("aten::native_batch_norm_backward")
def _batch_norm_backward(dy: Shape, x: Shape, weight: Any = None, *args: Any, out: Any = None, **kwargs: Any) -> Cost:
    """dx, dw, db = native_batch_norm_backward(dy, x, w?, running mean and var, saved mean and
    invstd, train, eps, output_mask); see arithmetic.normalization_backward"""
    grads = _mask(args[-1] if args and isinstance(args[-1], (list, tuple)) else kwargs.get("output_mask"))
    return A.normalization_backward(prod(x), affine=_given(weight), input_grad=grads[0], weight_grad=grads[1],
                                    bias_grad=grads[2])


@_reg.formula("aten::native_layer_norm_backward")
def _layer_norm_backward(dy: Shape, x: Shape, normalized_shape: Any, mean: Any, rstd: Any, weight: Any = None,
                         bias: Any = None, output_mask: Any = None, *_: Any, out: Any = None, **__: Any) -> Cost:
    """dx, dw, db = native_layer_norm_backward(dy, x, D, mean, rstd, w?, b?, output_mask); see
    arithmetic.normalization_backward"""
    grads = _mask(output_mask)
    return A.normalization_backward(prod(x), affine=_given(weight), input_grad=grads[0], weight_grad=grads[1],
                                    bias_grad=grads[2])


@_reg.formula("aten::native_group_norm_backward")
def _group_norm_backward(dy: Shape, x: Shape, mean: Any, rstd: Any, weight: Any = None, *args: Any, out: Any = None,
                         **kwargs: Any) -> Cost:
    """dx, dw, db = native_group_norm_backward(dy, x, mean, rstd, w?, N, C, HxW, group, output_mask)"""
    grads = _mask(args[-1] if args and isinstance(args[-1], (list, tuple)) else kwargs.get("output_mask"))
    return A.normalization_backward(prod(x), affine=_given(weight), input_grad=grads[0], weight_grad=grads[1],
                                    bias_grad=grads[2])


@_reg.formula(
    "aten::max_pool2d_with_indices_backward", "aten::max_pool3d_with_indices_backward",
    "aten::embedding_dense_backward", "aten::_adaptive_avg_pool2d_backward", "aten::_adaptive_avg_pool3d_backward",
)
def _scatter_add_backward(dy: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[input] = backward(dy, ...): each gradient element is added into the input position (or the
    embedding row) it came from (max pooling's argmax, an embedding's token, an adaptive average's
    window with its 1/size folded in, a nearest upsampling's source, a padding's mirrored or
    replicated border): FLOPs = prod(dy)"""
    return A.pointwise(prod(dy))


@_reg.formula("aten::avg_pool2d_backward", "aten::avg_pool3d_backward")
def _avg_pool_backward(dy: Shape, x: Shape, kernel_size: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[N, C, *Si] = avg_pool_backward(dy[N, C, *So], x, K, ...): each output's gradient is spread
    over its window, one add per window element, as the forward's pooling count"""
    return A.pooling(prod(dy), A.window(kernel_size, len(x) - 2))


def _interpolation_backward(taps: int, name: str) -> Formula:
    def formula(dy: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
        return Cost(0, 2 * taps * prod(dy))

    formula.__doc__ = (f"[N, C, *Si] = {name}(dy[N, C, *So], ...): each output gradient is weighted and added "
                       f"into its {taps} input taps: FLOPs = {2 * taps} * prod(dy)")
    return formula


_reg.formula("aten::upsample_linear1d_backward")(_interpolation_backward(2, "upsample_linear1d_backward"))
_reg.formula("aten::upsample_bilinear2d_backward")(_interpolation_backward(4, "upsample_bilinear2d_backward"))
_reg.formula("aten::upsample_trilinear3d_backward")(_interpolation_backward(8, "upsample_trilinear3d_backward"))
_reg.formula("aten::upsample_bicubic2d_backward")(_interpolation_backward(16, "upsample_bicubic2d_backward"))
_reg.formula(
    "aten::upsample_nearest1d_backward", "aten::upsample_nearest2d_backward", "aten::upsample_nearest3d_backward",
    "aten::adaptive_max_pool2d_backward", "aten::adaptive_max_pool3d_backward",
    "aten::reflection_pad1d_backward", "aten::reflection_pad2d_backward", "aten::reflection_pad3d_backward",
    "aten::replication_pad1d_backward", "aten::replication_pad2d_backward", "aten::replication_pad3d_backward",
)(_scatter_add_backward)
@_reg.formula("transformers::grouped_mm_fallback_backward")
def _grouped_mm_fallback_backward(a: Shape, b: Shape, offs: Any, dy: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """d_input[M, K], d_weight[G, K, N] = grouped_mm_fallback_backward(input[M, K], weight[G, K, N],
    offs, dy[M, N]): each row's input gradient dy @ W_g^T and each group's weight gradient
    x_g^T @ dy_g: twice the forward's MACs, M * K * N each"""
    forward = A.matmul(a[0], a[1], b[-1])
    return Cost(2 * forward.macs, 2 * forward.flops)


_reg.formula("aten::_prelu_kernel_backward", "aten::glu_backward")(elementwise(A.ACTIVATION_BACKWARD_FLOPS))

_reg.free("aten::select_backward", "aten::slice_backward", "aten::index_select_backward", "aten::unfold_backward",
          "aten::diagonal_backward", "aten::as_strided_scatter", reason=Free.DATA_MOVEMENT)


# --- spectral -------------------------------------------------------------------------------


def _lengths(x: Shape, dims: Sequence[int]) -> list[int]:
    return [whole(x[d]) for d in dims]


@_reg.formula("aten::_fft_r2c")
def _fft_r2c(x: Shape, dim: Sequence[int], normalization: int = 0, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] = _fft_r2c(x[*] real, dim, normalization, onesided) (rfft, rfftn, and fft of a real input):
    see arithmetic.fft, a real-input transform (half)"""
    return A.fft(prod(x), _lengths(x, dim), real=True, normalized=bool(normalization))


@_reg.formula("aten::_fft_c2r")
def _fft_c2r(x: Shape, dim: Sequence[int], normalization: int = 0, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] real = _fft_c2r(x[*] complex, dim, normalization, last_dim_size) (irfft): see
    arithmetic.fft, a real-output transform (half) over the output's lengths"""
    y = _first_shape(out)
    return A.fft(prod(y), _lengths(y, dim), real=True, normalized=bool(normalization))


@_reg.formula("aten::_fft_c2c")
def _fft_c2c(x: Shape, dim: Sequence[int], normalization: int = 0, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] = _fft_c2c(x[*] complex, dim, normalization, forward) (fft, ifft, fftn): see arithmetic.fft"""
    return A.fft(prod(x), _lengths(x, dim), real=False, normalized=bool(normalization))


# --- quantization ---------------------------------------------------------------------------
# Fake quantization rounds each element to the integer grid and back: x / scale + zero_point,
# round, clamp (4), then (q - zero_point) * scale (2): 6 FLOPs an element. An observer that
# updates its range on the way (fused_moving_avg_obs_fake_quant) adds a min and a max pass (2).

_reg.formula(
    "aten::fake_quantize_per_tensor_affine_cachemask", "aten::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams",
    "aten::fake_quantize_per_channel_affine_cachemask", "aten::_fake_quantize_learnable_per_tensor_affine",
    "aten::_fake_quantize_learnable_per_channel_affine", "aten::fake_quantize_per_tensor_affine",
    "aten::fake_quantize_per_channel_affine",
)(elementwise(6))
_reg.formula("aten::fused_moving_avg_obs_fake_quant", "aten::_fused_moving_avg_obs_fq_helper")(elementwise(6 + 2))


def _dynamic_linear(rows: int, n_in: int, n_out: int, biased: bool) -> Cost:
    """One dynamic int8 matmul as fbgemm runs it: the float matmul's MACs; FLOPs = 2 * MACs + a
    bias + 2 per input element (its range, then quantizing it) + 1 per output element (dequantizing)"""
    quantizing = A.pointwise(rows * n_in, 2) + A.pointwise(rows * n_out)
    return A.matmul(rows, n_in, n_out) + A.bias(rows * n_out if biased else 0) + quantizing


@_reg.formula("quantized::linear_dynamic")
def _linear_dynamic(x: Shape, packed: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*, out] = quantized::linear_dynamic(x[*, in], W_prepack(int8 [out, in], bias[out]?), reduce_range)
    (torch.ao's dynamic int8 nn.Linear): MACs = prod(*) * in * out, as the float layer; FLOPs =
    2 * MACs + prod(*) * out for a bias + 2 per input element (its range, then quantizing it) +
    prod(*) * out dequantizing the result"""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes():  # the packed weight is real int8: read it outside the analysis's modes
        weight, bias = packed.unpack()
    return _dynamic_linear(prod(x[:-1]), whole(weight.shape[1]), whole(weight.shape[0]), bias is not None)


def _quantized_rnn(cell: A.RnnCell, x: Shape, after: Sequence[Any]) -> Cost:
    packed = len(after[0]) == 1 and not isinstance(after[0][0], Sequence)  # the .data overloads: batch_sizes[T]
    hx, _params, has_biases, num_layers, _dropout, _train, bidirectional = after[1:8] if packed else after[:7]
    hidden = whole((hx[0] if isinstance(hx[0], Sequence) else hx)[-1])
    rows, gates, directions = prod(x[:-1]), {A.RnnCell.LSTM: 4, A.RnnCell.GRU: 3}[cell] * hidden, 2 if bidirectional else 1
    cost = Cost()
    for layer in range(whole(num_layers)):
        n_in = whole(x[-1]) if layer == 0 else hidden * directions
        one = _dynamic_linear(rows, n_in, gates, bool(has_biases)) + _dynamic_linear(rows, hidden, gates, bool(has_biases))
        cost = cost + Cost(one.macs * directions, one.flops * directions)
    return cost + A.cell_pointwise(cell, rows * whole(num_layers) * directions * hidden)


@_reg.formula("aten::quantized_lstm")
def _quantized_lstm(x: Shape, *after: Any, out: Any = None, **__: Any) -> Cost:
    """torch.ao's dynamic int8 nn.LSTM in one op: quantized_lstm(x[T, B, In] or packed
    [sum(batch_sizes), In], [batch_sizes], hx, packed params, has_biases, num_layers, dropout,
    train, bidirectional, ...). Per layer and direction two dynamic int8 matmuls a position (input
    and hidden, 4H outputs each; see quantized::linear_dynamic) and the LSTM cell's pointwise work
    (arithmetic.CELL_FLOPS): the float LSTM's MACs"""
    return _quantized_rnn(A.RnnCell.LSTM, x, after)


@_reg.formula("aten::quantized_gru")
def _quantized_gru(x: Shape, *after: Any, out: Any = None, **__: Any) -> Cost:
    """torch.ao's dynamic int8 nn.GRU in one op; as quantized_lstm with 3H gate outputs and the GRU
    cell's pointwise work"""
    return _quantized_rnn(A.RnnCell.GRU, x, after)


@_reg.formula("aten::polar")
def _polar(magnitude: Shape, angle: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] complex = polar(|z| [*], angle [*]): |z| cos(angle) + i |z| sin(angle); FLOPs = 4 * prod(*)
    (a cosine, a sine and two multiplies per element, each one FLOP as every pointwise function is)"""
    return A.pointwise(_numel(_first_shape(out)), 4)


@_reg.formula("aten::linalg_solve_triangular")
def _solve_triangular(a: Shape, b: Shape, *_: Any, out: Any = None, upper: bool = False, left: bool = True,
                      unitriangular: bool = False, **__: Any) -> Cost:
    """[*, n, k] = linalg_solve_triangular(A [*, n, n], B [*, n, k]) (``left=False``: X A = B with B
    [*, k, n]): substitution, for each of the k right-hand sides, row i takes i multiply-adds with the
    solved values and (unless ``unitriangular``) one division. MACs = batch * k * n (n - 1) / 2;
    FLOPs = 2 * MACs + batch * k * n divisions (none with a unit diagonal). The matrix is never
    inverted (LAPACK's trsm)."""
    shape = _first_shape(out)
    n = a[-1]
    k = shape[-1] if left else shape[-2]
    batch = _numel(shape) // (n * k) if n * k else 0
    macs = batch * k * n * (n - 1) // 2
    return Cost(macs, 2 * macs + (0 if unitriangular else batch * k * n))


# --- reductions ---------------------------------------------------------------------------


def _reduction(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[reduced] = reduce([*]); FLOPs = prod(*): each input element is accumulated once"""
    return A.reduction(prod(x))


_reg.formula(
    "aten::sum", "aten::mean", "aten::amax", "aten::amin", "aten::max", "aten::min", "aten::prod",
    "aten::var", "aten::std", "aten::var_mean", "aten::std_mean", "aten::norm",
    "aten::linalg_vector_norm", "aten::logsumexp", "aten::argmax", "aten::argmin",
    "aten::all", "aten::any", "aten::_is_all_true",
)(_reduction)


@_reg.formula("aten::mse_loss")
def _mse_loss(x: Shape, target: Shape, reduction: int = 1, *_: Any, out: Any = None, **__: Any) -> Cost:
    """loss = mse_loss(input [*], target [*], reduction): each element's difference squared, 2 *
    prod(*) FLOPs (a subtraction and a multiply), and with a mean or sum (reduction 1, 2) each
    accumulated once more, 3 * prod(*), as ``mean`` counts its elements (the one division of a
    mean is not counted, as there). Its MACs are 0: a square is not a multiply-accumulate."""
    return A.pointwise(prod(x), 2 if reduction == 0 else 3)


@_reg.formula("aten::mse_loss_backward")
def _mse_loss_backward(grad: Shape, x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """grad_input [*] = mse_loss_backward(grad, input [*], target [*], reduction): 2 (input -
    target) grad (/ n for a mean, a scale computed once): a subtraction and two multiplies per
    element, 3 * prod(*) FLOPs"""
    return A.pointwise(prod(x), 3)


@_reg.formula("aten::aminmax")
def _aminmax(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """min, max = aminmax([*]); FLOPs = 2 * prod(*): each element compared with the running minimum
    and with the running maximum (amin and amax, one comparison each, in one pass)"""
    return Cost(0, 2 * prod(x))


# histograms bin each input element once
_reg.formula("aten::histc", "aten::bincount")(_reduction)


# --- sorting and selection ----------------------------------------------------------------
# Comparisons count as FLOPs here as in max pooling and ``gt``.


@_reg.formula("aten::sort")
def _sort(x: Shape, dim: int = -1, *_: Any, out: Any = None, **__: Any) -> Cost:
    """values, indices = sort([*], dim, ...) (argsort and msort too); see arithmetic.sort"""
    return A.sort(prod(x), whole(x[dim]) if len(x) else 1)


def _sorted_unique(n: int, rows: int, sort: bool) -> Cost:
    """``rows`` rows of n / rows elements each (one element a row without a dim): sorted (a row
    comparison reading the whole row) when ``sort``, then each compared with its neighbour."""
    compare = A.pointwise((rows - 1) * (n // rows) if rows else 0)
    return A.sort(n, rows) + compare if sort else compare


@_reg.formula("aten::_unique2", "aten::_unique")
def _unique(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """values, inverse?, counts? = unique(x) (torch.unique, flattened): the n elements sorted (see
    arithmetic.sort), then each compared with its neighbour, n - 1 FLOPs. The inverse indices
    and counts are index bookkeeping, not counted."""
    return _sorted_unique(prod(x), prod(x), sort=True)


@_reg.formula("aten::unique_dim")
def _unique_dim(x: Shape, dim: int, *_: Any, out: Any = None, **__: Any) -> Cost:
    """unique along ``dim``: its rows sorted and compared whole, n * ceil(log2 rows) +
    (rows - 1) * n / rows FLOPs"""
    return _sorted_unique(prod(x), whole(x[dim]), sort=True)


@_reg.formula("aten::unique_consecutive", "aten::unique_dim_consecutive")
def _unique_consecutive(x: Shape, *args: Any, out: Any = None, dim: Any = None, **__: Any) -> Cost:
    """unique_consecutive(x, return_inverse, return_counts, dim?) and unique_dim_consecutive(x,
    dim, ...): no sort, each element (row along ``dim``) compared with the one before it"""
    if isinstance(args[0] if args else None, int) and not isinstance(args[0], bool):
        dim = args[0]  # unique_dim_consecutive(self, dim, ...)
    elif len(args) >= 3:
        dim = args[2]
    rows = prod(x) if dim is None else whole(x[dim])
    return _sorted_unique(prod(x), rows, sort=False)


@_reg.formula("aten::topk")
def _topk(x: Shape, k: int, *_: Any, out: Any = None, **__: Any) -> Cost:
    """values[*, k], indices = topk([*, n], k, dim, largest, sorted); see arithmetic.topk"""
    return A.topk(prod(x), k)


@_reg.formula("aten::bucketize")
def _bucketize(x: Shape, boundaries: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] = bucketize(input [*] (or a scalar), boundaries [n]): a binary search of the n sorted
    boundaries for each element, ceil(log2(n + 1)) comparisons (the most a search takes), so
    FLOPs = prod(*) * ceil(log2(n + 1)); comparisons count as in ``sort``"""
    n = whole(boundaries[-1]) if isinstance(boundaries, tuple) and boundaries else 0
    return Cost(0, _numel(_first_shape(out)) * n.bit_length())


@_reg.formula("aten::searchsorted")
def _searchsorted(sorted_sequence: Shape, values: Any, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*, m] = searchsorted(sorted_sequence [*, n] (or [n]), values [*, m] (or a scalar)): a
    binary search of a row of n for each value, FLOPs = prod(out) * ceil(log2(n + 1)), as
    ``bucketize``"""
    return Cost(0, _numel(_first_shape(out)) * whole(sorted_sequence[-1]).bit_length())


@_reg.formula("aten::isin")
def _isin(elements: Any, test: Any, *_: Any, out: Any = None, assume_unique: bool = False, invert: bool = False,
          **__: Any) -> Cost:
    """[*] = isin(elements [*], test_elements [n]) (one may be a scalar), priced as PyTorch's own
    decomposition of it (torch/_decomp/decompositions.py) computes it. A small test set (n < 10 *
    prod(*)^0.145): each element compared with each, and those n results reduced, 2 * prod(*) * n
    FLOPs. A larger one is sorted (see ``sort``) and each element binary-searched in it (see
    ``bucketize``), then a bound check, a select and a comparison, 3 FLOPs an element; with
    ``assume_unique`` both are sorted together and each compared with its neighbour. ``invert``
    adds a negation an element."""
    m = _numel(_first_shape(out))
    n = prod(test) if isinstance(test, tuple) else 1
    if not isinstance(elements, tuple) or not isinstance(test, tuple) or not test:  # a scalar: one eq an element
        cost = A.pointwise(m)
    elif n < 10.0 * pow(m, 0.145):
        cost = A.pointwise(m * n) + A.reduction(m * n)
    elif assume_unique:
        cost = A.sort(m + n, m + n) + A.pointwise(m + n - 1)
    else:
        cost = A.sort(n, n) + Cost(0, m * n.bit_length()) + A.pointwise(m, 3)
    return cost + (A.pointwise(m) if invert else Cost())


@_reg.formula("aten::kthvalue", "aten::median", "aten::nanmedian")
def _select(x: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """kthvalue([*], k, dim), median([*], dim?): a selection pass, FLOPs = prod(*), one
    comparison per element"""
    return A.reduction(prod(x))


# --- scatter and accumulate ---------------------------------------------------------------
# An op that adds (multiplies, compares) its source into the destination costs 1 FLOP per source
# element applied; writing values without combining them is data movement and costs 0, as
# gather and index_select do. The rule is a formula, not a free entry, because one op name
# covers both (``scatter(..., reduce=)``, ``index_put(..., accumulate=)``).


@_reg.formula(*_with_inplace("scatter"))
def _scatter(x: Shape, dim: int, index: Shape, *_: Any, reduce: Any = None, out: Any = None, **__: Any) -> Cost:
    """[*] = scatter(self[*], dim, index[*i], src | value, reduce=?); FLOPs = prod(*i) with a
    reduce, else 0 (values are copied)"""
    return A.pointwise(prod(index) if reduce is not None else 0)


@_reg.formula(*_with_inplace("scatter_add", "scatter_reduce"))
def _scatter_add(x: Shape, dim: int, index: Shape, *_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] = scatter_add(self[*], dim, index[*i], src) (scatter_reduce: also with a reduce);
    FLOPs = prod(*i), one per source element applied"""
    return A.pointwise(prod(index))


@_reg.formula(*_with_inplace("index_add", "index_reduce"))
def _index_add(
    x: Shape, dim: int, index: Shape, source: Shape, *_: Any, alpha: Any = 1, out: Any = None, **__: Any
) -> Cost:
    """[*] = index_add(self[*], dim, index[n], source[*s], alpha=) (index_reduce: reduce);
    FLOPs = prod(*s), + prod(*s) when alpha != 1 scales the source"""
    return A.pointwise(prod(source), 1 if alpha == 1 else 2)


@_reg.formula(*_with_inplace("index_put"), "aten::_index_put_impl_", "aten::_unsafe_index_put")
def _index_put(
    x: Shape, indices: Sequence[Any], values: Shape, accumulate: bool = False, *_: Any, out: Any = None, **__: Any
) -> Cost:
    """[*] = index_put(self[*], indices, values, accumulate); FLOPs with accumulate = the number of
    indexed positions, prod(broadcast(index shapes)) * prod(dims of self no index covers); 0
    without (values are copied). Each index is taken to cover one dimension, as an integer index
    does: a boolean mask's shape does not say how many positions it selects"""
    if not accumulate:
        return Cost(0, 0)
    given = [i for i in indices if _given(i)]
    covered = torch.broadcast_shapes(*given) if given else torch.Size()
    free_dims = [d for n, d in enumerate(x) if n >= len(indices) or not _given(indices[n])]
    return A.pointwise(prod(covered) * prod(free_dims))


@_reg.formula("aten::_embedding_bag", "aten::_embedding_bag_forward_only")
def _embedding_bag(
    weight: Shape, indices: Shape, offsets: Any, scale_grad_by_freq: bool = False, mode: int = 0,
    sparse: bool = False, per_sample_weights: Any = None, *_: Any, out: Any = None, **__: Any,
) -> Cost:
    """[bags, D], ... = _embedding_bag(W[V, D], indices[*], offsets, ..., mode, ...,
    per_sample_weights?); FLOPs = prod(*) * D: each gathered row is added into (sum, mean) or
    compared with (max) its bag once, + prod(*) * D to scale rows by per-sample weights"""
    gathered = prod(indices) * whole(weight[-1])
    return A.pointwise(gathered, 2 if _given(per_sample_weights) else 1)


# --- free: reviewed zero-cost ops ---------------------------------------------------------

_reg.free(
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::t", "aten::transpose", "aten::permute",
    "aten::expand", "aten::squeeze", "aten::unsqueeze", "aten::select", "aten::slice", "aten::as_strided",
    "aten::alias", "aten::detach", "aten::split", "aten::split_with_sizes", "aten::unbind", "aten::narrow",
    "aten::diagonal", "aten::unfold", "aten::view_as", "aten::expand_as", "aten::flatten",
    "aten::unflatten", "aten::movedim", "aten::_reshape_alias", "aten::lift_fresh",
    "aten::t_", "aten::transpose_", "aten::squeeze_", "aten::unsqueeze_", "aten::as_strided_",
    "aten::chunk", "aten::tensor_split", "aten::view_as_real", "aten::view_as_complex",
    "aten::unsafe_split", "aten::unsafe_split_with_sizes", "aten::unsafe_chunk", "aten::detach_",
    reason=Free.VIEW,
)
_reg.free(
    "prim::device", "prim::layout", "prim::dtype", "aten::sym_size", "aten::sym_stride",
    "aten::sym_numel", "aten::sym_storage_offset", "aten::is_same_size", "aten::_has_compatible_shallow_copy_type",
    "aten::is_nonzero", "aten::size", "aten::stride", "aten::dim",
    reason=Free.METADATA,
)
_reg.free(
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros", "aten::zeros_like",
    "aten::ones", "aten::ones_like", "aten::full", "aten::full_like", "aten::arange", "aten::new_empty",
    "aten::new_empty_strided", "aten::new_zeros", "aten::new_ones", "aten::new_full",
    "aten::scalar_tensor", "aten::fill", "aten::fill_", "aten::zero", "aten::zero_",
    "aten::linspace", "aten::eye", "aten::tril", "aten::triu", "aten::tril_", "aten::triu_",
    "aten::empty_permuted", "aten::logspace", "aten::tril_indices", "aten::triu_indices",
    reason=Free.CONSTRUCTOR,
)
_reg.free(
    "aten::clone", "aten::copy", "aten::copy_", "aten::_to_copy", "aten::contiguous", "aten::cat",
    "aten::stack", "aten::constant_pad_nd", "aten::index_select", "aten::gather", "aten::index",
    "aten::repeat", "aten::roll", "aten::flip", "aten::pad", "aten::_unsafe_index", "aten::embedding",
    "aten::masked_select", "aten::slice_scatter",
    "aten::select_scatter", "aten::lift_fresh_copy", "aten::_pin_memory", "aten::reflection_pad1d",
    "aten::reflection_pad2d", "aten::replication_pad1d", "aten::replication_pad2d", "aten::reflection_pad3d",
    "aten::replication_pad3d", "aten::index_copy", "aten::index_copy_", "aten::index_fill", "aten::index_fill_",
    "aten::masked_scatter", "aten::masked_scatter_", "aten::pixel_shuffle", "aten::pixel_unshuffle",
    "aten::channel_shuffle", "aten::native_channel_shuffle", "aten::im2col", "aten::resolve_conj",
    "aten::resolve_neg", "aten::_pack_padded_sequence", "aten::_pad_packed_sequence",
    reason=Free.DATA_MOVEMENT,
)
_reg.free(
    "aten::upsample_nearest1d", "aten::upsample_nearest2d", "aten::upsample_nearest3d",
    "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d", "aten::_upsample_nearest_exact3d",
    reason=Free.NEAREST,
)
_reg.free("aten::repeat_interleave", reason=Free.INDEX)
_reg.free("aten::nonzero", "aten::nonzero_static", "aten::argwhere", reason=Free.NONZERO)


@_reg.formula("aten::where")
def _where(*_: Any, out: Any = None, **__: Any) -> Cost:
    """[*] = where(cond, a, b): FLOPs = prod(*), one selection an element, as every pointwise op.
    where(cond) alone returns the indices of cond's non-zero elements (a tuple): nonzero's index,
    no arithmetic (Free.NONZERO), so 0 here too."""
    if not isinstance(out, SHAPES):  # the indices: a tuple of shapes
        return Cost()
    return A.pointwise(_numel(_first_shape(out)), 1)
_reg.free(
    "aten::_assert_tensor_metadata", "aten::_assert_async", "aten::_functional_assert_async",
    "aten::_assert_scalar", "aten::sym_constrain_range", "aten::sym_constrain_range_for_size",
    reason=Free.CHECK,
)
_reg.free("aten::_local_scalar_dense", reason=Free.READ_BACK)
_reg.free(
    "aten::bernoulli", "aten::bernoulli_", "aten::rand", "aten::randn", "aten::randint",
    "aten::rand_like", "aten::randn_like", "aten::uniform_", "aten::normal_", "aten::randperm",
    "aten::randint_like", "aten::normal", "aten::exponential_", "aten::geometric_", "aten::log_normal_",
    "aten::cauchy_", "aten::random_", "aten::multinomial",
    reason=Free.RANDOM,
)

vision_ops.register(_reg)  # torchvision's compiled ops (torchvision::roi_align, nms, ...)

# the route's table is written: from here on, copies change, it does not. Every aten and prim name
# must be an operator torch has (a misspelt or removed name would never match a dispatched op);
# other namespaces (transformers::, torchvision::) belong to libraries that define their ops when imported.
ATEN.freeze(known=lambda name: not name.startswith(("aten::", "prim::")) or _op_exists(name))


#: the table an analysis given no registry counts with: ATEN, then ATEN plus the formulas users
#: registered for their own ops (fxcost.register_formula, --formulas), each registration a new copy
_DEFAULT: list[FormulaRegistry] = [ATEN]


def register_formula(name: str, fn: Formula) -> None:
    """Price the op ``name`` (``"mylib::op"``, as torch names it in its schema) with ``fn`` in
    every analysis that does not pass its own ``registry``: ``fn(*shapes, out=shape, **kwargs)``
    gets each tensor argument as its shape (``torch.Size``), the output as ``out``, and returns
    :class:`~fxcost.counting.registry.Cost` ``(macs, flops)``. Refused (``ValueError``): an op
    torch does not know (define it with ``torch.library`` first), one fxcost already prices or
    declares free, one registered before, and a ``fn`` that is not callable."""
    if not callable(fn):
        raise ValueError(f"the formula for {name} must be a function of shapes, got a {type(fn).__name__}")
    if not _op_exists(name):
        raise ValueError(f"{name} is not an operator torch knows: define it first (torch.library.custom_op), "
                         f"and name it as its schema does, without an overload (namespace::name)")
    if ATEN.lookup(name).fate is not Fate.UNSUPPORTED:
        raise ValueError(f"{name} already has a fate in fxcost's table; to count it differently pass "
                         f"analyze(..., registry=...) with a copy whose replace() changes it")
    known = _DEFAULT[0].lookup(name).formula
    if known is not None:
        raise ValueError(f"{name} already has a registered formula ({getattr(known, '__qualname__', known)})")
    table = _DEFAULT[0].copy()
    table.formula(name)(fn)
    _DEFAULT[0] = table.freeze()


def default_registry() -> FormulaRegistry:
    """The table an analysis counts with when it is given none: ATEN, plus the registered formulas."""
    return _DEFAULT[0]
