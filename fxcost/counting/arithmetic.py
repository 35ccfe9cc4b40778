"""The arithmetic of every op family, as pure functions of shapes and arguments.

Both routes price their ops here: :mod:`fxcost.pytorch.aten` maps each aten op's arguments onto
these functions, :mod:`fxcost.onnx.formulas` each ONNX op's. A convention change made here
reaches both. Conventions (docs/conventions.md):

- MACs count multiply-accumulates of matmul- and convolution-like work only.
- FLOPs count 2 per MAC, plus 1 per element for a fused bias add, plus each other op's
  documented per-element cost.

Shapes are sequences of ints (``torch.Size`` is one); nothing here reads a tensor's values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

Shape = Sequence[int]


@dataclass(frozen=True)
class Cost:
    """What one op costs."""

    macs: int = 0
    flops: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.flops + other.flops)


def whole(x: Any) -> int:
    """``x`` as an exact integer: an ``int``, or a symbolic size (``torch.SymInt``, where the
    analysis is symbolic: :mod:`fxcost.pytorch.sizes`) kept as it is, so that a formula of
    symbolic shapes is an expression of the symbols; ``int()`` would fix it at its hint."""
    if isinstance(x, int) or type(x).__name__ == "SymInt":
        return x  # type: ignore[no-any-return]
    return int(x)


def prod(xs: Shape) -> int:
    return math.prod(whole(x) for x in xs)


# --- matmul family ------------------------------------------------------------------------


def matmul(rows: int, inner: int, cols: int, batch: int = 1) -> Cost:
    """[B, rows, cols] = [B, rows, inner] @ [B, inner, cols]: MACs = B * rows * inner * cols,
    FLOPs = 2 * MACs (each multiply-accumulate is a multiply and an add)."""
    macs = whole(batch) * whole(rows) * whole(inner) * whole(cols)
    return Cost(macs, 2 * macs)


def bias(elements: int) -> Cost:
    """Adding a bias (or any operand that is not a product) into ``elements`` outputs: 1 FLOP each."""
    return Cost(0, whole(elements))


def scaled_sum(elements: int, beta: float = 1, alpha: float = 1) -> Cost:
    """``beta * input + alpha * product`` over ``elements`` outputs (addmm, baddbmm, addbmm,
    addmv): the add (none when beta is 0: the input is ignored), and a multiply for each scale
    that is not 1."""
    per_element = (1 if beta != 0 else 0) + (1 if beta not in (0, 1) else 0) + (1 if alpha != 1 else 0)
    return Cost(0, per_element * whole(elements))


def sparse_matmul(nonzeros: int, cols: int) -> Cost:
    """[n, m] = sparse[n, k] @ dense[k, m]: one multiply-accumulate per stored element and output
    column, MACs = nnz * m."""
    return matmul(whole(nonzeros), 1, whole(cols))


# --- convolution --------------------------------------------------------------------------


def convolution(x: Shape, w: Shape, out: Shape, *, transposed: bool, biased: bool) -> Cost:
    """[N, Co, *So] = convolution([N, Ci, *Si], W, b[Co]?), W = [Co, Ci/groups, *K]
    ([Ci, Co/groups, *K] when transposed).

    MACs = N * prod(So) * Co * (Ci/groups) * prod(K); transposed: every input position is
    scattered through the kernel, MACs = N * prod(Si) * Ci * (Co/groups) * prod(K).
    FLOPs = 2 * MACs, plus N * Co * prod(So) for the bias add.
    """
    per_position = whole(w[0]) * whole(w[1]) * prod(w[2:])  # channel cross product times kernel size
    positions = whole(x[0]) * prod(x[2:]) if transposed else whole(out[0]) * prod(out[2:])
    macs = positions * per_position
    return Cost(macs, 2 * macs + (prod(out) if biased else 0))


# --- attention ----------------------------------------------------------------------------


def attention(q: Shape, k: Shape, v: Shape, *, masked: bool, dropout: bool, scale_key: bool = True) -> Cost:
    """[*B, Lq, Ev] = attention(q[*B, Lq, E], k[*Bk, Lk, E], v[*Bk, Lk, Ev]), as PyTorch's math
    path (``_scaled_dot_product_attention_math``) dispatches it.

    *B are the query's batch and head dims; k and v may have fewer heads (grouped-query
    attention), which are broadcast to the query's, so S = prod(*B) * Lq * Lk scores.
    MACs = S * E (q @ k^T) + S * Ev (weights @ v).
    FLOPs = 2 * MACs
          + prod(*B) * (Lq + Lk) * E  scaling q and k (broadcast to the query's heads) by
                                      sqrt(scale) each, as the math path does; only Lq when
                                      ``scale_key`` is False (q alone is scaled)
          + S when masked             adding the mask (or is_causal's triangle) to the scores
          + 5 * S                     softmax (max, subtract, exp, sum, divide)
          + S when dropout            scaling the weights by the dropout mask
    Not counted, as mask preparation: is_causal's [Lq, Lk] triangle, which only the math path
    builds (one ``where``), and scaling the dropout mask, which the math path also dispatches.
    """
    lead = prod(q[:-2])
    lq, e = whole(q[-2]), whole(q[-1])
    lk, ev = whole(k[-2]), whole(v[-1])
    scores = attention_scores(q, k)
    macs = scores * (e + ev)
    scale = lead * (lq + lk) * e if scale_key else lead * lq * e
    flops = 2 * macs + scale + SOFTMAX_FLOPS * scores + (scores if masked else 0) + (scores if dropout else 0)
    return Cost(macs, flops)


def attention_scores(q: Shape, k: Shape) -> int:
    """S = prod(*B) * Lq * Lk: one score per query position, key position, batch and query head."""
    return prod(q[:-1]) * whole(k[-2])


# --- normalization ------------------------------------------------------------------------
# Per element: normalize = subtract the mean, multiply by 1/std (2); the affine weight and bias
# add 2; computing the statistics (training batch norm, layer/group/instance norm) adds 4: one
# add for the mean, subtract, square and add for the variance.


def normalization(elements: int, *, stats: bool, affine: bool) -> Cost:
    """Batch, layer, group and instance norm over ``elements``: 2 + 2 (affine) + 4 (statistics)
    FLOPs per element."""
    per_element = 2 + (2 if affine else 0) + (4 if stats else 0)
    return Cost(0, per_element * whole(elements))


def rms_normalization(x: Shape, normalized: Shape, *, weighted: bool) -> Cost:
    """RMS norm of x[*R, *D] over its last dims D (``normalized``): 3 FLOPs per element (square,
    mean, multiply by 1/rms) + 2 per row (add eps, rsqrt) + 1 per element with a weight."""
    elements = prod(x)
    rows = elements // max(prod(normalized), 1)
    return Cost(0, 3 * elements + 2 * rows + (elements if weighted else 0))


# --- recurrent layers ---------------------------------------------------------------------


class RnnCell(IntEnum):
    """The recurrent cells, numbered as cuDNN's modes (mkldnn_rnn_layer and _cudnn_rnn share them)."""

    RNN_RELU = 0
    RNN_TANH = 1
    LSTM = 2
    GRU = 3


#: Per step and hidden unit, the pointwise work of one cell as PyTorch's unfused cells dispatch it
#: (the bias adds are counted apart, with the projections they follow):
#:   RNN (tanh or relu): add the two projections, the activation               -> 2
#:   LSTM: add the projections (4 gates), 3 sigmoids, tanh of the cell gate,
#:         c = f * c + i * g (3), h = o * tanh(c) (2)                           -> 13
#:   GRU: r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z) (4), n = tanh(x_n + r * h_n) (3),
#:        h = n + z * (h - n) (3)                                              -> 10
CELL_FLOPS = {RnnCell.RNN_RELU: 2, RnnCell.RNN_TANH: 2, RnnCell.LSTM: 13, RnnCell.GRU: 10}


def recurrent(x: Shape, matrices: Sequence[Shape], biases: Sequence[Shape], cell: int, hidden: int, cells: int) -> Cost:
    """Layers that run every position of x[T, B, In] (or [B, T, In], or packed [sum(batch_sizes),
    In]) through ``cells`` cells (layers x directions) of ``hidden`` units.

    MACs = positions * sum(rows * cols of every weight matrix) (input, hidden and projection
    weights; positions = prod(x[:-1]) = steps x batch).
    FLOPs = 2 * MACs + positions * sum(len(b) of every bias) + positions * cells * hidden * the
    cell's pointwise work (:data:`CELL_FLOPS`).
    """
    positions = prod(x[:-1])
    macs = positions * sum(whole(w[0]) * whole(w[1]) for w in matrices)
    bias_flops = positions * sum(whole(b[0]) for b in biases)
    return Cost(macs, 2 * macs + bias_flops + positions * cells * hidden * CELL_FLOPS[RnnCell(int(cell))])


def cell_pointwise(cell: RnnCell, units: int) -> Cost:
    """The pointwise half of ``units`` cells (their matmuls counted apart): :data:`CELL_FLOPS` each."""
    return Cost(0, CELL_FLOPS[cell] * whole(units))


# --- pooling ------------------------------------------------------------------------------


def window(kernel_size: int | Sequence[int], spatial: int) -> int:
    """Elements in a pooling window: one size for every spatial dim (``2``, ``(2,)``) or one each."""
    sizes = [whole(kernel_size)] if isinstance(kernel_size, int) else [whole(k) for k in kernel_size]
    return prod(sizes * spatial if len(sizes) == 1 else sizes)


def pooling(out_elements: int, window: int) -> Cost:
    """Max or average pooling: each window element is compared (max) or added (avg, whose final
    divide replaces the first add) once per output element: FLOPs = prod(out) * prod(K)."""
    return Cost(0, whole(out_elements) * whole(window))


def adaptive_window_total(size_in: int, size_out: int) -> int:
    """Sum of the window lengths PyTorch's adaptive pooling uses along one dimension:
    window i spans [floor(i * I / O), ceil((i + 1) * I / O))."""
    return sum(-((-(i + 1) * size_in) // size_out) - (i * size_in) // size_out for i in range(size_out))


def adaptive_pooling(x: Shape, out: Shape, spatial: int) -> Cost:
    """[N, C, *So] = adaptive_pool([N, C, *Si], So) over its last ``spatial`` dims: FLOPs =
    N * C * the product over dims of the summed window lengths (exact, windows may overlap)."""
    total = prod(out[:-spatial])
    for si, so in zip(x[-spatial:], out[-spatial:], strict=True):
        total *= adaptive_window_total(whole(si), whole(so))
    return Cost(0, total)


# --- interpolation ------------------------------------------------------------------------
# Each output element is a weighted sum of T input values ("taps"): T multiplies and T - 1 adds,
# 2T - 1 FLOPs. The weights depend on the output position alone and are computed once per row or
# column, not per element, as a convolution's weights are not counted. No MACs: FlopCounterMode
# counts no FLOPs for interpolation either. Nearest-neighbour modes copy values (free).


def interpolation(out_elements: int, taps: int) -> Cost:
    """Resampling with ``taps`` input values per output element: FLOPs = (2 * taps - 1) * prod(out)."""
    return Cost(0, (2 * whole(taps) - 1) * whole(out_elements))


def antialiased_taps(size_in: Shape, size_out: Shape, support: int) -> int:
    """Taps of an anti-aliased filter ``support`` wide, stretched by Si / So along each dimension
    that shrinks: the product over dims of ceil(support * Si / So) (Si > So) or support."""
    taps = 1
    for si, so in zip(size_in, size_out, strict=True):
        si, so = whole(si), whole(so)
        taps *= -(-support * si // so) if si > so else support
    return taps


# --- reductions, sorting and selection ----------------------------------------------------


def reduction(elements: int) -> Cost:
    """Each input element accumulated (added, compared, multiplied) once: FLOPs = prod(input)."""
    return Cost(0, whole(elements))


def sort(elements: int, n: int) -> Cost:
    """A comparison sort along a dimension of size n: n * ceil(log2(n)) comparisons for each of
    the prod(*) / n rows, FLOPs = prod(*) * ceil(log2(n))."""
    return Cost(0, whole(elements) * max(int(n) - 1, 0).bit_length())  # a log2: no polynomial, int() fixes a symbolic size


def topk(elements: int, k: int) -> Cost:
    """Each element compared against a heap of the k best so far: FLOPs = prod(*) * ceil(log2(k + 1))."""
    return Cost(0, whole(elements) * int(k).bit_length())  # a log2: no polynomial, int() fixes a symbolic size


# --- spectral ------------------------------------------------------------------------------

#: FLOPs of a complex FFT of length n, per n * ceil(log2 n): the radix-2 Cooley-Tukey count (each
#: of the log2 n stages does n / 2 butterflies of a complex multiply, 6 FLOPs, and two complex adds,
#: 4), the figure FFTW reports its speeds in
FFT_FLOPS = 5


def fft(elements: int, lengths: Sequence[int], *, real: bool, normalized: bool) -> Cost:
    """FFTs over the dims of ``lengths`` of a signal of ``elements`` complex values: for each dim,
    5 * elements * ceil(log2 n) FLOPs; a real-input or real-output transform (rfft, irfft) costs
    half, its other half being the conjugate symmetry it skips. + 1 per element to normalize. No
    MACs: an FFT's multiplies are by fixed twiddle factors, not a matmul of the model's."""
    stages = sum(max(int(n) - 1, 0).bit_length() for n in lengths)  # log2s: int() fixes a symbolic size
    flops = FFT_FLOPS * whole(elements) * stages
    return Cost(0, (flops // 2 if real else flops) + (whole(elements) if normalized else 0))


# --- pointwise ----------------------------------------------------------------------------

#: softmax and log-softmax: max, subtract, exp, sum, divide (or log) per element
SOFTMAX_FLOPS = 5


def pointwise(elements: int, flops_per_element: int = 1) -> Cost:
    """An elementwise op: ``flops_per_element`` FLOPs for each output element, no MACs. One FLOP
    whatever the function: a library's instruction count for exp or tanh varies, and the op is
    listed per row so a reader can weight it differently."""
    return Cost(0, whole(flops_per_element) * whole(elements))


# --- backward -------------------------------------------------------------------------------
# A backward op's MACs are its matmuls' (a convolution's input and weight gradients each cost the
# forward's MACs, as FlopCounterMode counts them). Its other FLOPs follow the textbook gradient,
# written out per op family below.

#: an activation's backward (relu/threshold, gelu, silu, sigmoid, tanh, ...): the derivative, one
#: function as every pointwise op counts it, times the incoming gradient
ACTIVATION_BACKWARD_FLOPS = 2
#: softmax's backward y * (dy - sum(dy * y)): multiply, sum, subtract, multiply
SOFTMAX_BACKWARD_FLOPS = 4


def normalization_backward(elements: int, *, affine: bool, weight_grad: bool, bias_grad: bool,
                           input_grad: bool = True) -> Cost:
    """The backward of a batch, layer or group norm over ``elements``, per element: the input's
    gradient dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w: xhat recomputed (2),
    g (1 with a weight), the two means (1 + 2), the combination (3): 8 (+ 1); the weight's gradient
    sum(dy * xhat) 2, the bias's sum(dy) 1."""
    per_element = (8 + (1 if affine else 0) if input_grad else 0) + (2 if weight_grad else 0) + (1 if bias_grad else 0)
    return Cost(0, per_element * whole(elements))
