"""The ONNX op registry: every ONNX op gets one fate, a formula, free (with a reason) or unsupported.

The ONNX route (``fxcost analyze model.onnx``) recounts an ONNX graph with fxcost's own
conventions (docs/conventions.md), so a model costs the same whichever route it takes: MACs
exactly as the aten route counts them, FLOPs by the same per-element rules wherever the ONNX op
is the same computation. Each formula maps the ONNX op's inputs and attributes onto the counting
core's arithmetic (:mod:`fxcost.counting.arithmetic`), as the aten formulas do, so a change of
convention there reaches both routes.

Names are :func:`op_key` strings: ``onnx::Conv`` for the default domain, ``com.microsoft::X``
otherwise. The analyzer (:mod:`fxcost.onnx.analyze`) calls a formula as
``fn(*inputs, out=outputs, **attrs)``:

- ``inputs``: one ``torch.Size`` per node input, in order; ``None`` for an omitted optional input
  (a node with an input of unknown shape is reported as not counted before any formula runs);
- ``out``: a tuple with one ``torch.Size`` (or ``None`` when unknown) per node output;
- ``attrs``: the node's attributes as Python values. A missing attribute takes the ONNX spec's
  default, which the formula applies (the keyword defaults below are the spec's).

A formula that needs a shape it was not given raises :class:`UnknownShape`, and one that meets
a form it cannot count exactly raises :class:`UnsupportedForm`; the analyzer reports the node as
not counted, with the message. No formula returns 0 for a shape it does not know.

This module imports torch and the counting core only: onnx itself is needed by the analyzer.

To give a new ONNX op a formula: add a function here under ``@_reg.formula(*_onnx("OpType"))``,
written with the arithmetic's functions, and a test in tests/test_onnx_formulas.py (a one-node
model through onnx's shape inference, compared with the aten route or FlopCounterMode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fxcost.counting import arithmetic as A
from fxcost.counting.arithmetic import Cost, prod
from fxcost.counting.registry import Formula, FormulaRegistry, Free

ONNX_REGISTRY = FormulaRegistry()
_reg = ONNX_REGISTRY

Size = torch.Size | None


class UnknownShape(Exception):
    """A formula needs a shape (an input's or an output's) that the graph does not pin down.
    The analyzer reports the node as not counted, with this message as the reason."""


class UnsupportedForm(UnknownShape):
    """The op in a form no formula counts exactly (an einsum that PyTorch would pre-sum, linear
    resizing of a rank-2 tensor, a required attribute missing). A subclass of UnknownShape so the
    analyzer reports it the same way: not counted, with the message; never zero."""


def op_key(domain: str, op_type: str) -> str:
    """The registry name of an ONNX op: ``("", "Conv")`` and ``("ai.onnx", "Conv")`` ->
    ``onnx::Conv``; ``("com.microsoft", "FusedMatMul")`` -> ``com.microsoft::FusedMatMul``."""
    return f"onnx::{op_type}" if domain in ("", "ai.onnx") else f"{domain}::{op_type}"


def _onnx(*op_types: str) -> tuple[str, ...]:
    return tuple(op_key("", t) for t in op_types)


def _need(shape: Size, what: str) -> torch.Size:
    if shape is None:
        raise UnknownShape(f"the shape of {what} is unknown")
    return shape


def _output(out: Sequence[Size], what: str, *alternatives: int) -> torch.Size:
    """The first known shape among outputs 0 and ``alternatives`` (outputs of the same shape)."""
    for i in (0, *alternatives):
        shape = out[i] if i < len(out) else None
        if shape is not None:
            return shape
    raise UnknownShape(f"the shape of {what}'s output is unknown")


# --- matmul family ------------------------------------------------------------------------


@_reg.formula(*_onnx("Gemm"))
def _gemm(
    a: Size, b: Size, c: Size = None, *_: Any, out: Sequence[Size] = (), transA: int = 0, transB: int = 0,
    **__: Any,
) -> Cost:
    """[M, N] = Gemm(A[M, K] ([K, M] when transA), B[K, N] ([N, K] when transB), C?; alpha, beta);
    MACs = M * K * N; FLOPs = 2 * MACs, + M * N with C (aten::addmm's convention).

    alpha and beta are not counted: aten::addmm with alpha = beta = 1, which nn.Linear
    dispatches, does not scale either, and a Gemm exported from it carries 1.0 for both."""
    a, b = _need(a, "Gemm's A"), _need(b, "Gemm's B")
    m, k = (a[1], a[0]) if transA else (a[0], a[1])
    n = b[0] if transB else b[1]
    return A.matmul(m, k, n) + A.bias(m * n if c is not None else 0)


def _matmul(a: torch.Size, b: torch.Size) -> Cost:
    """numpy matmul: a 1-D left operand is a row [1, k], a 1-D right operand a column [k, 1];
    the batch dims broadcast. MACs = prod(broadcast batch) * n * k * m, as aten's matmul
    (folded into mm, or mv, or bmm over the expanded batch) dispatches it."""
    left = torch.Size([1, a[0]]) if len(a) == 1 else a
    right = torch.Size([b[0], 1]) if len(b) == 1 else b
    batch = prod(torch.broadcast_shapes(left[:-2], right[:-2]))
    return A.matmul(left[-2], left[-1], right[-1], batch=batch)


@_reg.formula(*_onnx("MatMul", "MatMulInteger"))
def _onnx_matmul(a: Size, b: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*B, n, m] = MatMul(A[*Ba, n, k], B[*Bb, k, m]) with numpy semantics (1-D operands, batch
    broadcast); MACs = prod(*B) * n * k * m; FLOPs = 2 * MACs. MatMulInteger(A, B, a_zero_point?,
    b_zero_point?) counts the same: subtracting the zero points is the integer encoding's
    bookkeeping, not the product's arithmetic"""
    return _matmul(_need(a, "MatMul's A"), _need(b, "MatMul's B"))


@_reg.formula(*_onnx("QLinearMatMul"))
def _qlinear_matmul(
    a: Size, a_scale: Size, a_zero_point: Size, b: Size, *_: Any, out: Sequence[Size] = (), **__: Any
) -> Cost:
    """[*B, n, m] = QLinearMatMul(a[*Ba, n, k], a_scale, a_zp, b[*Bb, k, m], b_scale, b_zp,
    y_scale, y_zp); as MatMul: the (de)quantizing scales and zero points are not counted"""
    return _matmul(_need(a, "QLinearMatMul's a"), _need(b, "QLinearMatMul's b"))


def _einsum_labels(term: str, rank: int, ellipsis_dims: int | None = None) -> list[str]:
    """One operand's labels, its ``...`` expanded into ``...0`` (the last dim it covers),
    ``...1``, ... so that broadcast dims align from the right across operands."""
    if "..." not in term:
        if len(term) != rank:
            raise UnsupportedForm(f"einsum term {term!r} does not match a rank-{rank} operand")
        return list(term)
    head, tail = term.split("...")
    n = rank - len(head) - len(tail) if ellipsis_dims is None else ellipsis_dims
    return [*head, *(f"...{i}" for i in reversed(range(n))), *tail]


def _einsum_output(lhs: str, rhs: str | None, labelled: list[list[str]]) -> list[str]:
    """The output's labels: ``rhs``'s, or (implicit output) the broadcast dims, then the labels
    used once, alphabetically."""
    ellipsis_dims = max((sum(lab.startswith("...") for lab in labels) for labels in labelled), default=0)
    if rhs is not None:
        return _einsum_labels(rhs, 0, ellipsis_dims) if "..." in rhs else list(rhs)
    once = [c for c in sorted(set(lhs) - {",", "."}) if lhs.count(c) == 1]
    return [f"...{i}" for i in reversed(range(ellipsis_dims))] + once


@_reg.formula(*_onnx("Einsum"))
def _einsum(*operands: Size, out: Sequence[Size] = (), equation: str = "", **__: Any) -> Cost:
    """[out] = Einsum(*operands; equation), counted as aten's einsum decomposes it.

    Two operands: a contraction (a summed label of size > 1 in both) is one bmm over every label,
    MACs = prod(size of each distinct label, broadcast) and FLOPs = 2 * MACs ("bij,jk->bik":
    b * i * j * k); without one it is a mul, MACs = 0 and FLOPs = prod(out) ("bi,bj->bij").
    One operand: a sum, FLOPs = prod(input), when a label of size > 1 is dropped; a permute
    (0) otherwise. Other forms raise UnsupportedForm: three or more operands (the cost depends
    on the contraction order), a repeated label (diagonal), and a summed label that only one
    operand has beyond size 1 (aten sums it out of that operand first)."""
    shapes = [_need(s, f"Einsum's operand {i}") for i, s in enumerate(operands)]
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes) or len(shapes) > 2:
        raise UnsupportedForm(f"einsum {equation!r} on {len(shapes)} operands: only one or two are counted")
    labelled = [_einsum_labels(t, len(s)) for t, s in zip(terms, shapes, strict=True)]
    for t, labels in zip(terms, labelled, strict=True):
        if len(set(labels)) != len(labels):
            raise UnsupportedForm(f"einsum term {t!r} repeats a label (a diagonal)")
    output = _einsum_output(lhs, rhs if arrow else None, labelled)
    sizes = [dict(zip(labels, (int(d) for d in s), strict=True)) for labels, s in zip(labelled, shapes, strict=True)]
    everything = {lab: max(sz.get(lab, 1) for sz in sizes) for labels in labelled for lab in labels}
    if len(shapes) == 1:
        dropped = any(everything[lab] > 1 for lab in everything if lab not in output)
        return A.reduction(prod(shapes[0]) if dropped else 0)
    contracted = False
    for lab in everything:
        if lab in output:
            continue
        big = [sz.get(lab, 1) > 1 for sz in sizes]
        if all(big):
            contracted = True
        elif any(big):
            raise UnsupportedForm(f"einsum {equation!r}: summed label {lab!r} has size > 1 in one operand only")
    if contracted:  # one batched matmul over every label
        return A.matmul(prod(list(everything.values())), 1, 1)
    return A.pointwise(prod([everything[lab] for lab in output]))


# --- convolution --------------------------------------------------------------------------


def _ints(value: Any, n: int, default: int) -> list[int]:
    return [int(v) for v in value] if value else [default] * n


def _conv_output(x: torch.Size, w: torch.Size, attrs: dict[str, Any], transposed: bool) -> torch.Size:
    """[N, M, *So] from the attributes, each at the spec's default when missing: kernel_shape
    W's spatial dims, strides and dilations 1, pads 0, auto_pad NOTSET, group 1 (ConvTranspose:
    output_padding 0, output_shape when given)."""
    kernel = _ints(attrs.get("kernel_shape"), 0, 0) or [int(k) for k in w[2:]]
    n = len(kernel)
    strides = _ints(attrs.get("strides"), n, 1)
    dilations = _ints(attrs.get("dilations"), n, 1)
    pads = _ints(attrs.get("pads"), 2 * n, 0)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        pads = [0] * (2 * n)
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    size_in = [int(s) for s in x[2:]]
    if transposed:
        channels = int(w[1]) * int(attrs.get("group", 1))
        if attrs.get("output_shape"):
            spatial = [int(s) for s in attrs["output_shape"]][-n:]
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            spatial = [s * st for s, st in zip(size_in, strides, strict=True)]
        else:
            out_pad = _ints(attrs.get("output_padding"), n, 0)
            spatial = [
                st * (s - 1) + op + e - pads[i] - pads[i + n]
                for i, (s, st, op, e) in enumerate(zip(size_in, strides, out_pad, extent, strict=True))
            ]
    else:
        channels = int(w[0])
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            spatial = [-(-s // st) for s, st in zip(size_in, strides, strict=True)]
        else:
            spatial = [
                (s + pads[i] + pads[i + n] - e) // st + 1
                for i, (s, st, e) in enumerate(zip(size_in, strides, extent, strict=True))
            ]
    return torch.Size([int(x[0]), channels, *spatial])


def _conv_cost(
    x: Size, w: Size, b: Size, out: Sequence[Size], attrs: dict[str, Any], *, transposed: bool, op: str
) -> Cost:
    x, w = _need(x, f"{op}'s X"), _need(w, f"{op}'s W")
    y = out[0] if out and out[0] is not None else _conv_output(x, w, attrs, transposed)
    return A.convolution(x, w, y, transposed=transposed, biased=b is not None)


@_reg.formula(*_onnx("Conv"))
def _conv(x: Size, w: Size, b: Size = None, *_: Any, out: Sequence[Size] = (), **attrs: Any) -> Cost:
    """[N, M, *So] = Conv(X[N, C, *Si], W[M, C/group, *K], B[M]?; kernel_shape, strides, pads,
    dilations, group, auto_pad); MACs = N * prod(So) * M * (C/group) * prod(K); FLOPs = 2 * MACs,
    + N * M * prod(So) with B. So comes from ``out``, or from the attributes at their defaults"""
    return _conv_cost(x, w, b, out, attrs, transposed=False, op="Conv")


@_reg.formula(*_onnx("ConvTranspose"))
def _conv_transpose(x: Size, w: Size, b: Size = None, *_: Any, out: Sequence[Size] = (), **attrs: Any) -> Cost:
    """[N, M, *So] = ConvTranspose(X[N, C, *Si], W[C, M/group, *K], B[M]?; ...); every input
    position is scattered through the kernel (aten's transposed convolution):
    MACs = N * prod(Si) * C * (M/group) * prod(K); FLOPs = 2 * MACs, + N * M * prod(So) with B"""
    return _conv_cost(x, w, b, out, attrs, transposed=True, op="ConvTranspose")


@_reg.formula(*_onnx("ConvInteger"))
def _conv_integer(x: Size, w: Size, *_: Any, out: Sequence[Size] = (), **attrs: Any) -> Cost:
    """[N, M, *So] = ConvInteger(X[N, C, *Si], W[M, C/group, *K], x_zero_point?, w_zero_point?);
    as Conv without a bias: the zero points are the integer encoding's bookkeeping, not counted"""
    return _conv_cost(x, w, None, out, attrs, transposed=False, op="ConvInteger")


@_reg.formula(*_onnx("QLinearConv"))
def _qlinear_conv(
    x: Size, x_scale: Size, x_zero_point: Size, w: Size, w_scale: Size = None, w_zero_point: Size = None,
    y_scale: Size = None, y_zero_point: Size = None, b: Size = None, *_: Any, out: Sequence[Size] = (), **attrs: Any,
) -> Cost:
    """[N, M, *So] = QLinearConv(x, x_scale, x_zp, w[M, C/group, *K], w_scale, w_zp, y_scale, y_zp,
    B[M]?); as Conv with its bias B: the (de)quantizing scales and zero points are not counted"""
    return _conv_cost(x, w, b, out, attrs, transposed=False, op="QLinearConv")


# --- attention ----------------------------------------------------------------------------


@_reg.formula(*_onnx("Attention"))
def _onnx_attention(
    q: Size, k: Size, v: Size, attn_mask: Size = None, past_key: Size = None, past_value: Size = None,
    nonpad_kv_seqlen: Size = None, *_: Any, out: Sequence[Size] = (), is_causal: int = 0,
    q_num_heads: int | None = None, kv_num_heads: int | None = None, softcap: float = 0.0,
    left_window_size: int = -1, right_window_size: int = -1, **__: Any,
) -> Cost:
    """Y[B, Hq, Lq, Ev] = Attention(Q[B, Hq, Lq, E], K[B, Hk, Lk, E], V[B, Hk, Lk, Ev], attn_mask?,
    past_key?, past_value?, nonpad_kv_seqlen?; is_causal, softcap, ...), or 3-D
    Q[B, Lq, Hq*E], K[B, Lk, Hk*E], V[B, Lk, Hk*Ev] with q_num_heads = Hq, kv_num_heads = Hk.

    Costed by arithmetic.attention, as aten's scaled_dot_product_attention: masked when
    attn_mask or nonpad_kv_seqlen is given, is_causal is 1 or a window is set; no dropout.
    With a cache, Lk is the past length plus K's (the present_key output's length when known).
    softcap > 0 adds 3 FLOPs per score (divide, tanh, multiply), which aten has no op for.
    A boolean attn_mask's conversion to an additive one is inside this op; the aten route counts
    it as a separate ``where`` (one per mask element), so FLOPs differ by that where."""
    q, k, v = _need(q, "Attention's Q"), _need(k, "Attention's K"), _need(v, "Attention's V")
    if len(q) == 3:
        if not q_num_heads or not kv_num_heads:
            raise UnsupportedForm("3-D Attention without q_num_heads and kv_num_heads (required for 3-D inputs)")
        hq, hk = int(q_num_heads), int(kv_num_heads)
        q4 = [int(q[0]), hq, int(q[1]), int(q[2]) // hq]
        k4 = [int(k[0]), hk, int(k[1]), int(k[2]) // hk]
        v4 = [int(v[0]), hk, int(v[1]), int(v[2]) // hk]
    else:
        q4, k4, v4 = list(q), list(k), list(v)
    present = out[1] if len(out) > 1 else None
    if present is not None:
        k4[-2] = v4[-2] = int(present[-2])
    elif past_key is not None:
        k4[-2] = v4[-2] = int(k4[-2]) + int(past_key[-2])
    masked = (
        attn_mask is not None or nonpad_kv_seqlen is not None or bool(is_causal)
        or left_window_size != -1 or right_window_size != -1
    )
    softcapping = A.pointwise(A.attention_scores(q4, k4) if softcap else 0, 3)  # divide, tanh, multiply per score
    return A.attention(q4, k4, v4, masked=masked, dropout=False) + softcapping


# --- pooling ------------------------------------------------------------------------------


@_reg.formula(*_onnx("MaxPool", "AveragePool"))
def _onnx_pool(x: Size, *_: Any, out: Sequence[Size] = (), kernel_shape: Sequence[int] = (), **__: Any) -> Cost:
    """[N, C, *So], indices? = MaxPool / AveragePool(X[N, C, *Si]; kernel_shape K, ...);
    FLOPs = prod(out) * prod(K), as aten's max and avg pooling (arithmetic.pooling)"""
    if not kernel_shape:
        raise UnsupportedForm("pooling without kernel_shape (a required attribute)")
    y = _output(out, "pooling", 1)
    x = _need(x, "pooling's X")
    spatial = len(x) - 2 if len(x) >= 3 else 1
    return A.pooling(prod(y), A.window(kernel_shape, spatial))


@_reg.formula(*_onnx("GlobalAveragePool", "GlobalMaxPool"))
def _global_pool(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[N, C, 1, ...] = GlobalAveragePool / GlobalMaxPool(X[N, C, *S]); FLOPs = prod(X): each
    element accumulated once, as aten's adaptive pooling to size 1 (arithmetic.adaptive_pooling)"""
    x = _need(x, "global pooling's X")
    spatial = len(x) - 2
    return A.adaptive_pooling(x, [*x[:2], *[1] * spatial], spatial)


# --- interpolation ------------------------------------------------------------------------


def _resize_cost(x: Size, out: Sequence[Size], mode: str, antialias: int, op: str) -> Cost:
    if mode == "nearest":
        return Cost(0, 0)  # copies input values, a gather: aten's upsample_nearest* is free
    if mode not in ("linear", "cubic"):
        raise UnsupportedForm(f"{op} mode {mode!r}")
    x, y = _need(x, f"{op}'s X"), _output(out, op)
    spatial = len(x) - 2
    if spatial < 1:
        raise UnsupportedForm(f"{op} {mode} of a rank-{len(x)} tensor: no [N, C, *spatial] layout to count")
    per_dim = 2 if mode == "linear" else 4
    if antialias:
        if spatial != 2:
            raise UnsupportedForm(f"antialiased {op} of a rank-{len(x)} tensor: only 2-D is counted")
        return A.interpolation(prod(y), A.antialiased_taps(x[-2:], y[-2:], per_dim))
    return A.interpolation(prod(y), per_dim**spatial)


@_reg.formula(*_onnx("Resize"))
def _resize(
    x: Size, *_: Any, out: Sequence[Size] = (), mode: str = "nearest", antialias: int = 0, **__: Any
) -> Cost:
    """[N, C, *So] = Resize(X[N, C, *Si], roi?, scales?, sizes?; mode, antialias, ...).
    nearest: 0, a copy (as aten's upsample_nearest*, free). linear / cubic: T = 2 / 4 taps per
    spatial dim (rank - 2 of them, whichever change size), FLOPs = (2T - 1) * prod(out): 3, 7,
    15 for 1-, 2-, 3-D linear and 31 for 2-D cubic, as the aten route's interpolation counts
    aten's upsample_linear1d, _bilinear2d, _trilinear3d, _bicubic2d. antialias = 1 (2-D only):
    arithmetic.antialiased_taps, as aten's _upsample_{bilinear,bicubic}2d_aa"""
    return _resize_cost(x, out, mode, antialias, "Resize")


@_reg.formula(*_onnx("Upsample"))
def _upsample(x: Size, *_: Any, out: Sequence[Size] = (), mode: str = "nearest", **__: Any) -> Cost:
    """[N, C, *So] = Upsample(X[N, C, *Si], scales; mode) (deprecated since opset 10); as Resize"""
    return _resize_cost(x, out, mode, 0, "Upsample")


@_reg.formula(*_onnx("Col2Im"))
def _onnx_col2im(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[N, C, *S] = Col2Im(input[N, C * prod(K), L], image_shape, block_shape); FLOPs = prod(input),
    each column element added into place once, as aten's col2im (nn.Fold)"""
    return A.reduction(prod(_need(x, "Col2Im's input")))


# --- normalization ------------------------------------------------------------------------


@_reg.formula(*_onnx("BatchNormalization"))
def _batch_normalization(x: Size, *_: Any, out: Sequence[Size] = (), training_mode: int = 0, **__: Any) -> Cost:
    """[N, C, *] = BatchNormalization(X[N, C, *], scale[C], B[C], mean[C], var[C]; training_mode);
    scale and B are required, so always affine: FLOPs = 4 * prod(X) in inference (the stored
    statistics), 8 * prod(X) with training_mode = 1 (statistics computed), as aten's batch norm"""
    return A.normalization(prod(_need(x, "BatchNormalization's X")), stats=bool(training_mode), affine=True)


@_reg.formula(*_onnx("LayerNormalization", "GroupNormalization", "InstanceNormalization"))
def _stats_normalization(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*] = LayerNormalization(X, scale, B?) / GroupNormalization(X, scale, bias; num_groups) /
    InstanceNormalization(X, scale, B); statistics computed, scale always given: FLOPs =
    8 * prod(X), as aten's native_layer_norm and native_group_norm with a weight (the arithmetic
    counts the affine step as 2 per element whether or not a bias is given). An exported
    nn.InstanceNorm2d without affine carries scale = 1 and B = 0: 8 here, 6 on the aten route"""
    return A.normalization(prod(_need(x, "the normalized X")), stats=True, affine=True)


@_reg.formula(*_onnx("RMSNormalization"), op_key("com.microsoft", "SimplifiedLayerNormalization"))
def _rms_normalization(x: Size, scale: Size = None, *_: Any, out: Sequence[Size] = (), axis: int = -1, **__: Any) -> Cost:
    """[*R, *D] = RMSNormalization(X[*R, *D], scale; axis) (com.microsoft's
    SimplifiedLayerNormalization alike), D the dims from ``axis`` on; scale is required:
    FLOPs = 4 * prod(X) + 2 * prod(R), as arithmetic.rms_normalization with a weight"""
    x = _need(x, "the normalized X")
    return A.rms_normalization(x, x[int(axis):], weighted=True)


@_reg.formula(*_onnx("LpNormalization"))
def _lp_normalization(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*] = LpNormalization(X[*]; axis, p): X / ||X||_p along axis; FLOPs = 2 * prod(X): the norm
    (a reduction, 1 per input element as aten's linalg_vector_norm) and the divide (1 per element)"""
    x = _need(x, "LpNormalization's input")
    return A.reduction(prod(x)) + A.pointwise(prod(x))


# --- reductions, scans, selection ---------------------------------------------------------


@_reg.formula(
    *_onnx(
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    )
)
def _onnx_reduce(
    x: Size, axes: Size = None, *_: Any, out: Sequence[Size] = (), noop_with_empty_axes: int = 0, **__: Any
) -> Cost:
    """[reduced] = ReduceX(data[*], axes?; keepdims, noop_with_empty_axes); FLOPs = prod(*), each
    input element accumulated once (arithmetic.reduction: aten's sum, norm and logsumexp
    count the same, the square or log inside a reduction included). With noop_with_empty_axes = 1
    and no axes the op is the identity: 0"""
    if noop_with_empty_axes and (axes is None or prod(axes) == 0):
        return Cost(0, 0)
    return A.reduction(prod(_need(x, "the reduced data")))


@_reg.formula(*_onnx("ArgMax", "ArgMin"))
def _arg_reduce(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[reduced] = ArgMax / ArgMin(data[*]; axis, keepdims); FLOPs = prod(*), as aten's argmax"""
    return A.reduction(prod(_need(x, "ArgMax's data")))


@_reg.formula(*_onnx("TopK"))
def _onnx_topk(x: Size, *_: Any, out: Sequence[Size] = (), axis: int = -1, k: int | None = None, **__: Any) -> Cost:
    """values[*, k], indices = TopK(X[*, n], K; axis, largest, sorted) (opset 1: attribute k);
    FLOPs = prod(X) * ceil(log2(k + 1)), as arithmetic.topk. K is a tensor whose value
    the shapes do not carry: k is read from the outputs' size along axis"""
    x = _need(x, "TopK's X")
    if k is None:
        k = int(_output(out, "TopK", 1)[int(axis)])
    return A.topk(prod(x), int(k))


def _same_shape(x: Size, out: Sequence[Size], op: str) -> torch.Size:
    """The output's shape, or the input's for ops that keep it."""
    if out and out[0] is not None:
        return out[0]
    return _need(x, f"{op}'s input")


@_reg.formula(*_onnx("Softmax", "LogSoftmax"))
def _softmax(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*] = Softmax / LogSoftmax([*]; axis); FLOPs = 5 * prod(*): max, subtract, exp, sum, divide
    (or log), as aten's _softmax"""
    return A.pointwise(prod(_same_shape(x, out, "Softmax")), A.SOFTMAX_FLOPS)


@_reg.formula(*_onnx("Hardmax"))
def _hardmax(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*] = Hardmax([*]; axis): 1 where the maximum along axis is; FLOPs = 2 * prod(*): the argmax
    (1 per input element) and the one-hot compare (1 per output element), as aten's
    ``one_hot(argmax(x))`` dispatches them (argmax, then eq against an arange)"""
    return A.pointwise(prod(_same_shape(x, out, "Hardmax")), 2)


@_reg.formula(*_onnx("CumSum"))
def _cumsum(x: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*] = CumSum([*], axis; exclusive, reverse); FLOPs = prod(*), one add per element, as
    aten's cumsum"""
    return A.pointwise(prod(_same_shape(x, out, "CumSum")))


@_reg.formula(*_onnx("OneHot"))
def _one_hot(indices: Size, *_: Any, out: Sequence[Size] = (), **__: Any) -> Cost:
    """[*, depth] = OneHot(indices[*], depth, values; axis); FLOPs = prod(out): each index is
    compared with every class, as aten's one_hot dispatches it (eq against an arange). depth is
    a value, so the output's shape is needed"""
    return A.pointwise(prod(_output(out, "OneHot")))


# --- scatter ------------------------------------------------------------------------------
# As the aten route's scatter rule: combining a source element into the destination (add, mul,
# max, min) costs 1 FLOP per element applied; writing values without combining them is data
# movement (0). One op name covers both, so these are formulas, not free entries.


@_reg.formula(*_onnx("ScatterElements", "Scatter"))
def _scatter_elements(
    data: Size, indices: Size, *_: Any, out: Sequence[Size] = (), reduction: str = "none", **__: Any
) -> Cost:
    """[*] = ScatterElements(data[*], indices[*i], updates[*i]; axis, reduction); FLOPs = prod(*i)
    with a reduction, 0 without (aten's scatter / scatter_reduce). Scatter (deprecated) has no
    reduction: 0"""
    if reduction == "none":
        return Cost(0, 0)
    return A.pointwise(prod(_need(indices, "ScatterElements' indices")))


@_reg.formula(*_onnx("ScatterND"))
def _scatter_nd(
    data: Size, indices: Size, updates: Size = None, *_: Any, out: Sequence[Size] = (), reduction: str = "none",
    **__: Any,
) -> Cost:
    """[*] = ScatterND(data[*], indices[*q, r], updates[*q, *rest]; reduction); FLOPs =
    prod(updates) with a reduction, 0 without (aten's index_put with and without accumulate)"""
    if reduction == "none":
        return Cost(0, 0)
    return A.pointwise(prod(_need(updates, "ScatterND's updates")))


# --- recurrent layers ---------------------------------------------------------------------
# ONNX runs one layer (one or two directions) per node: W[D, G*H, I], R[D, G*H, H], B[D, 2*G*H]
# (input and hidden biases), the layer PyTorch's nn.LSTM / nn.GRU / nn.RNN unrolls into cells.
# arithmetic.recurrent counts it with each direction's two matrices and two biases.

_RNN_TANH, _LSTM, _GRU = A.RnnCell.RNN_TANH, A.RnnCell.LSTM, A.RnnCell.GRU


def _onnx_rnn(x: Size, w: Size, r: Size, b: Size, mode: int, op: str) -> tuple[Cost, int, int]:
    """``_rnn``'s cost of one ONNX layer, the positions T * B, and the gate units D * G * H."""
    x, w, r = _need(x, f"{op}'s X"), _need(w, f"{op}'s W"), _need(r, f"{op}'s R")
    directions, rows = int(w[0]), int(w[1])
    hidden = int(r[-1])
    matrices = [torch.Size([rows, int(w[2])]), torch.Size([rows, hidden])] * directions
    biases = [torch.Size([rows])] * (2 * directions) if b is not None else []
    cost = A.recurrent(x, matrices, biases, mode, hidden, directions)
    return cost, prod(x[:-1]), directions * rows


@_reg.formula(*_onnx("LSTM"))
def _lstm(
    x: Size, w: Size, r: Size, b: Size = None, sequence_lens: Size = None, initial_h: Size = None,
    initial_c: Size = None, p: Size = None, *_: Any, out: Sequence[Size] = (), clip: float | None = None, **__: Any,
) -> Cost:
    """Y, Y_h, Y_c = LSTM(X[T, B, I] ([B, T, I] when layout = 1), W[D, 4H, I], R[D, 4H, H],
    B[D, 8H]?, sequence_lens?, initial_h?, initial_c?, P[D, 3H]?; direction, hidden_size, ...).
    MACs = T * B * D * (4H * I + 4H * H); FLOPs = 2 * MACs + T * B * D * 8H with B + T * B * D * H
    * 13 (the cell's pointwise work), as arithmetic.recurrent counts nn.LSTM's cells.
    ONNX-only extras: peepholes P add 2 per element of P per position (multiply, add); clip adds
    one clamp per gate pre-activation (T * B * D * 4H). sequence_lens is not read: every position
    counts (an upper bound for padded batches), as for a padded nn.LSTM"""
    cost, positions, gate_units = _onnx_rnn(x, w, r, b, _LSTM, "LSTM")
    peepholes = A.pointwise(positions * prod(p) if p is not None else 0, 2)
    clipping = A.pointwise(positions * gate_units if clip is not None else 0)
    return cost + peepholes + clipping


@_reg.formula(*_onnx("GRU"))
def _gru(
    x: Size, w: Size, r: Size, b: Size = None, *_: Any, out: Sequence[Size] = (), clip: float | None = None, **__: Any,
) -> Cost:
    """Y, Y_h = GRU(X[T, B, I], W[D, 3H, I], R[D, 3H, H], B[D, 6H]?, sequence_lens?, initial_h?;
    linear_before_reset, ...). MACs = T * B * D * (3H * I + 3H * H); FLOPs = 2 * MACs +
    T * B * D * 6H with B + T * B * D * H * 10, as nn.GRU's cells (linear_before_reset = 1 is
    PyTorch's GRU; 0 multiplies r into h before R's product instead of after: the same count).
    clip adds one clamp per gate pre-activation"""
    cost, positions, gate_units = _onnx_rnn(x, w, r, b, _GRU, "GRU")
    return cost + A.pointwise(positions * gate_units if clip is not None else 0)


@_reg.formula(*_onnx("RNN"))
def _simple_rnn(
    x: Size, w: Size, r: Size, b: Size = None, *_: Any, out: Sequence[Size] = (), clip: float | None = None, **__: Any,
) -> Cost:
    """Y, Y_h = RNN(X[T, B, I], W[D, H, I], R[D, H, H], B[D, 2H]?, sequence_lens?, initial_h?;
    activations (Tanh), ...). MACs = T * B * D * (H * I + H * H); FLOPs = 2 * MACs + T * B * D * 2H
    with B + T * B * D * H * 2 (add the projections, the activation: 1 whichever), as nn.RNN.
    clip adds one clamp per pre-activation"""
    cost, positions, gate_units = _onnx_rnn(x, w, r, b, _RNN_TANH, "RNN")
    return cost + A.pointwise(positions * gate_units if clip is not None else 0)


# --- elementwise --------------------------------------------------------------------------
# One FLOP per output element, whatever the function (arithmetic.pointwise). The output's shape is
# out[0]; when unknown, the broadcast of the inputs that shape it (all of them for n-ary ops,
# the first for ops whose extra inputs are parameters: Clip's bounds, PRelu's slope).


def elementwise(flops_per_element: int, shaped_by_first: bool = False) -> Formula:
    """An ONNX elementwise op: ``flops_per_element`` FLOPs for each output element."""

    def formula(*inputs: Size, out: Sequence[Size] = (), **__: Any) -> Cost:
        if out and out[0] is not None:
            shape = out[0]
        else:
            shaping = inputs[:1] if shaped_by_first else inputs
            shape = torch.broadcast_shapes(*(_need(s, f"input {i}") for i, s in enumerate(shaping)))
        return A.pointwise(prod(shape), flops_per_element)

    formula.__doc__ = f"[*] = op([*], ...) (inputs broadcast); FLOPs = {flops_per_element} * prod(*)"
    return formula


_reg.formula(
    *_onnx(
        "Add", "Sub", "Mul", "Div", "Pow", "Mod", "BitShift", "Equal", "Less", "Greater", "LessOrEqual",
        "GreaterOrEqual", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Where",
    )
)(elementwise(1))
_reg.formula(
    *_onnx(
        "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Tanh", "Sigmoid", "Relu", "LeakyRelu", "Elu",
        "Selu", "Celu", "Gelu", "Erf", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish",
        "ThresholdedRelu", "Shrink", "Swish", "Not", "BitwiseNot", "IsNaN", "IsInf", "Sin", "Cos", "Tan",
        "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round", "Sign",
        "Clip", "PRelu",
    )
)(elementwise(1, shaped_by_first=True))
# Softsign is x / (1 + |x|), which aten has no op for (nn.Softsign dispatches abs, add, div: 3);
# as one ONNX op it counts 1, like every other activation.


def _variadic(divide: bool) -> Formula:
    def formula(*inputs: Size, out: Sequence[Size] = (), **__: Any) -> Cost:
        n = len(inputs)
        return elementwise(n - 1 + (1 if divide and n > 1 else 0))(*inputs, out=out)

    formula.__doc__ = (
        "[*] = Sum / Max / Min(data_0, ..., data_{n-1}) (inputs broadcast); FLOPs = (n - 1) * prod(*): "
        "n - 1 adds or compares per output element, as aten's add, maximum, minimum chained"
        if not divide
        else "[*] = Mean(data_0, ..., data_{n-1}) (inputs broadcast); FLOPs = n * prod(*) for n >= 2: "
        "n - 1 adds and the divide per output element (one input is a copy: 0)"
    )
    return formula


_reg.formula(*_onnx("Sum", "Max", "Min"))(_variadic(divide=False))
_reg.formula(*_onnx("Mean"))(_variadic(divide=True))


# --- free: reviewed zero-cost ops, for the reasons the aten route gives their aten equivalents ---
# (aten dispatches Reshape, Transpose, Slice, Split and Expand as views; Trilu is aten's tril/triu;
# DepthToSpace is a pixel shuffle, Compress a masked select, ReverseSequence a flip)

_reg.free(*_onnx("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Slice", "Split", "Expand"),
          reason=Free.VIEW)
_reg.free(*_onnx("Shape", "Size", "OptionalHasElement", "SequenceLength"), reason=Free.METADATA)
_reg.free(*_onnx("Constant", "ConstantOfShape", "Range", "EyeLike", "Trilu"), reason=Free.CONSTRUCTOR)
_reg.free(
    *_onnx(
        "Concat", "Gather", "GatherElements", "GatherND", "Tile", "Pad", "Cast", "CastLike", "DepthToSpace",
        "SpaceToDepth", "Compress", "ReverseSequence", "CenterCropPad", "SequenceConstruct", "SequenceAt",
        "SequenceInsert", "SequenceErase", "SequenceEmpty", "SplitToSequence", "ConcatFromSequence",
        "Optional", "OptionalGetElement",
    ),
    reason=Free.DATA_MOVEMENT,
)
_reg.free(*_onnx("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"),
          reason=Free.RANDOM)
_reg.free(*_onnx("Dropout"), reason=Free.PASS_THROUGH)
_reg.free(*_onnx("NonZero"), reason=Free.NONZERO)

ONNX_REGISTRY.freeze()  # the route's table is written: from here on, copies change, it does not
