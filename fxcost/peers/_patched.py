"""The mechanism calflops and DeepSpeed's flops profiler share, reproduced without patching.

calflops 0.3.2 is a fork of DeepSpeed's profiler (calflops/pytorch_ops.py against
deepspeed/profiling/flops_profiler/profiler.py). Both replace ~40 functions of
``torch.nn.functional``, ``torch`` and ``torch.Tensor`` by wrappers that price each call from its
arguments' shapes, and hang a pre/post forward hook on every module: the pre-hook pushes an empty
list, a priced call appends ``(flops, macs)`` to the list on top, the post-hook adds that list
to the module's own ``__flops__``/``__macs__``. nn.RNN/GRU/LSTM and their cells get one forward
hook instead, which prices the whole layer from its weight shapes (FLOPs only, no MACs).

Here a :class:`torch.overrides.TorchFunctionMode` on fxcost's fake CPU copy sees the same calls
and the module hooks (on the copy, removed after) keep the same stack. Three things a patch sees
differently from a mode, each mirrored:

* a patch replaces a *name*: ``x.add(y)`` looks ``Tensor.add`` up and is priced, ``x + y`` goes to
  the C slot ``__add__`` and is not; a mode is handed ``Tensor.add`` for both. And a function
  object kept before the patch (``self.act = F.gelu``) calls the original. The caller's source
  expression at its current instruction tells them apart (:mod:`fxcost.peers._callsite`).
* a patched name is looked up inside torch's own Python too: ``F.multi_head_attention_forward``
  calls the patched ``linear``, ``softmax``, ``torch.bmm``; a mode does not see calls nested in a
  torch function it was handed, so those are priced here from the shapes they would get.
* the tool's formula runs on the call's own arguments; the mode gets what ``handle_torch_function``
  passes on, which for the Python functions of ``torch.nn.functional`` are the same values under
  the same names (the rules here bind them by name, so either spelling gives the same figure).

What differs between the two tools (a handful of formulas DeepSpeed has since fixed, the extra
functions it patches, how params and totals are summed) is a :class:`Convention`.
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from fxcost.counting.arithmetic import prod
from fxcost.peers._callsite import CallSites
from fxcost.peers.base import Charge, Reproduction, run_static

Shape = Sequence[int]
#: (FLOPs, MACs) of one call, as the tools' ``*_flops_compute`` functions return them
Cost = tuple[int, int]


# --- formulas: pure functions of shapes --------------------------------------------------------

def linear(x: Shape, out_features: int) -> Cost:
    """[*, out] = linear(x[*, in], W[out, in], b?); MACs = prod(x) x out, FLOPs = 2 x MACs, bias not counted.
    calflops/pytorch_ops.py:37, deepspeed profiler.py:523"""
    macs = prod(x) * out_features
    return 2 * macs, macs


def per_element(x: Shape, flops_per_element: int = 1) -> Cost:
    """y = f(x[*]); FLOPs = prod(x) x flops_per_element, MACs = 0. Activations (calflops:43-67,
    deepspeed:529-553), pooling of every kind (the *input* size; calflops:71, deepspeed:557),
    softmax (calflops:254, deepspeed:749), batch norm 1|2 in eval and 4|5 in training, layer /
    group / instance norm 4|5 (without|with affine; calflops:174-226, deepspeed:665-718)."""
    return prod(x) * flops_per_element, 0


def _conv_out(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - (dilation * (k - 1) + 1)) // stride + 1


def conv(x: Shape, w: Shape, has_bias: bool, stride: Any, padding: Any, dilation: Any, groups: int) -> Cost:
    """[N, C_out, *out] = conv(x[N, C_in, *in], W[C_out, C_in/g, *k], b[C_out]?);
    MACs = N x prod(out) x prod(k) x C_in x C_out/g, FLOPs = 2 x MACs + (N x prod(out) x C_out if bias).
    ``out`` from the tool's own shape formula with its padding rules (a tuple as is, 'same' as
    d(k-1)//2, 'valid' as 0, else repeated). calflops/pytorch_ops.py:83, deepspeed profiler.py:569"""
    if w[1] * groups != x[1]:
        raise AssertionError("weight.shape[1] * groups != input.shape[1]")  # both tools assert it
    n, c_in, c_out, kernel, spatial = x[0], x[1], w[0], list(w[2:]), list(x[2:])
    rank = len(spatial)
    strides = stride if type(stride) is tuple else (stride,) * rank
    dilations = dilation if type(dilation) is tuple else (dilation,) * rank
    if isinstance(padding, str):
        pads: tuple[int, ...] = (0,) * rank if padding == "valid" else tuple(d * (k - 1) // 2 for d, k in zip(dilations, kernel, strict=False))
    else:
        pads = padding if isinstance(padding, tuple) else (padding,) * rank
    out = [_conv_out(s, k, st, p, d) for s, k, st, p, d in zip(spatial, kernel, strides, pads, dilations, strict=False)]
    active = n * prod(out)
    macs = prod(kernel) * c_in * (c_out // groups) * active
    return 2 * macs + (c_out * active if has_bias else 0), macs


def conv_transpose_calflops(x: Shape, w: Shape, has_bias: bool, stride: Any, padding: Any, output_padding: Any,
                            dilation: Any, groups: int) -> Cost:
    """[N, C_out, *out] = conv_transpose(x[N, C_in, *in], W[C_in, C_out/g, *k]); calflops takes
    W's dim 1 as C_out and divides it by g again: MACs = N x prod(in) x prod(k) x C_in x (W[1] // g);
    the bias term counts W[1] x N x prod(out) with ``out`` from the *forward* conv formula
    (output_padding unused).
    calflops/pytorch_ops.py:128 (0.3.2)"""
    n, c_in, c_out, kernel, spatial = x[0], x[1], w[1], list(w[2:]), list(x[2:])
    rank = len(spatial)
    pads = padding if type(padding) is tuple else (padding,) * rank
    strides = stride if type(stride) is tuple else (stride,) * rank
    dilations = dilation if type(dilation) is tuple else (dilation,) * rank
    out = [_conv_out(s, k, st, p, d) for s, k, st, p, d in zip(spatial, kernel, strides, pads, dilations, strict=False)]
    macs = prod(kernel) * c_in * (c_out // groups) * n * prod(spatial)
    return 2 * macs + (c_out * n * prod(out) if has_bias else 0), macs


def conv_transpose_deepspeed(x: Shape, w: Shape, has_bias: bool, stride: Any, padding: Any, output_padding: Any,
                             dilation: Any, groups: int) -> Cost:
    """[N, C_out, *out] = conv_transpose(x[N, C_in, *in], W[C_in, C_out/g, *k], b[C_out]?);
    MACs = N x prod(in) x prod(k) x C_in x C_out/g, FLOPs = 2 x MACs + (C_out x N x prod(out) if bias),
    out = (in - 1) s - 2p + d(k - 1) + output_padding + 1. deepspeed profiler.py:614 (0.19.8)"""
    n, c_in, per_group, kernel, spatial = x[0], x[1], w[1], list(w[2:]), list(x[2:])
    rank = len(spatial)
    pads = padding if type(padding) is tuple else (padding,) * rank
    strides = stride if type(stride) is tuple else (stride,) * rank
    dilations = dilation if type(dilation) is tuple else (dilation,) * rank
    extra = output_padding if isinstance(output_padding, (tuple, list)) else (output_padding,) * rank
    out = [(s - 1) * st - 2 * p + d * (k - 1) + e + 1
           for s, st, p, d, k, e in zip(spatial, strides, pads, dilations, kernel, extra, strict=False)]
    macs = prod(kernel) * c_in * per_group * n * prod(spatial)
    return 2 * macs + (per_group * groups * n * prod(out) if has_bias else 0), macs


def matmul(a: Shape, b: Shape) -> Cost:
    """[*, n, p] = a[*, n, m] @ b[*, m, p]; MACs = prod(a) x p (the last dim of b), FLOPs = 2 x MACs.
    calflops/pytorch_ops.py:274, deepspeed profiler.py:769"""
    macs = prod(a) * b[-1]
    return 2 * macs, macs


def addmm(c: Shape, a: Shape, b: Shape) -> Cost:
    """[n, p] = c + a[n, m] @ b[m, p] (addmm, baddbmm); MACs = prod(a) x p, FLOPs = 2 x MACs + prod(c).
    calflops/pytorch_ops.py:282,312, deepspeed profiler.py:777,830"""
    macs = prod(a) * b[-1]
    return 2 * macs + prod(c), macs


def elementwise_calflops(a: Shape | None, b: Shape | None) -> Cost:
    """add / mul; FLOPs = elements of the larger shape, dims paired *from the left* (calflops'
    broadcast, so [2, 3, 4] * [4] counts [4, 3, 4]); a scalar side takes the other's size, two
    scalars 1; MACs 0. calflops/pytorch_ops.py:328"""
    if a is None or b is None:
        return (1 if a is None and b is None else prod(b if a is None else a)), 0  # type: ignore[arg-type]
    return prod([max(a[i] if i < len(a) else 1, b[i] if i < len(b) else 1) for i in range(max(len(a), len(b)))]), 0


def elementwise_deepspeed(a: Shape | None, b: Shape | None) -> Cost:
    """add / mul; FLOPs = elements of the broadcast result, MACs 0. deepspeed profiler.py:846 (0.19.8)"""
    if a is None or b is None:
        return (1 if a is None and b is None else prod(b if a is None else a)), 0  # type: ignore[arg-type]
    return prod(torch.broadcast_shapes(torch.Size(a), torch.Size(b))), 0


def einsum(equation: str, shapes: Sequence[Shape]) -> Cost:
    """einsum(eq, *operands); FLOPs = NumPy's "Optimized FLOP count" for eq (letters renamed a, b, ...
    in order of appearance) as einsum_path prints it (4 significant digits), MACs = 0.
    calflops/pytorch_ops.py:290, deepspeed profiler.py:785"""
    import numpy as np

    eq = equation.replace(" ", "")
    letters = OrderedDict((ch, 0) for ch in eq if ch.isalpha()).keys()
    eq = eq.translate({ord(ch): 97 + i for i, ch in enumerate(letters)})
    # zero-stride views: einsum_path reads shapes only, nothing of their size is allocated
    views = [np.broadcast_to(np.zeros(()), tuple(s)) for s in shapes]
    report = np.einsum_path(eq, *views, optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return int(float(line.split(":")[-1])), 0
    raise NotImplementedError("Unsupported einsum operation.")


def upsample_calflops(x: Shape, size: Any, scale_factor: Any) -> Cost:
    """interpolate(x[N, C, *in], size | scale_factor); FLOPs = prod(size) when given (no N, C), else
    prod(x): the scale factor's product is computed and dropped (``flops * ...`` not assigned).
    calflops/pytorch_ops.py:229,248-250"""
    if size is not None:
        return (prod(size) if isinstance(size, (tuple, list)) else int(size)), 0
    if scale_factor is None:
        raise AssertionError("either size or scale_factor should be defined")
    return prod(x), 0


def upsample_deepspeed(x: Shape, size: Any, scale_factor: Any) -> Cost:
    """interpolate(x[N, C, *in], size | scale_factor); FLOPs = prod(size) when given (no N, C), else
    int(prod(x) x prod(scale)) (a number as scale^(ndim-2)), MACs 0. deepspeed profiler.py:720"""
    if size is not None:
        return (prod(size) if isinstance(size, (tuple, list)) else int(size)), 0
    if scale_factor is None:
        raise AssertionError("either size or scale_factor should be defined")
    if isinstance(scale_factor, (list, tuple)):
        factor: Any = 1
        for s in scale_factor:
            factor *= s
    else:
        factor = scale_factor ** (len(x) - 2)
    return int(prod(x) * factor), 0


def sdpa(q: Shape, k: Shape, v: Shape) -> Cost:
    """[*, L, Ev] = sdpa(q[*, L, E], k[*, S, E], v[*, S, Ev]); MACs = prod(q) x S + prod(q[:-1]) x S x Ev,
    FLOPs = 2 x MACs; softmax and scaling not counted. deepspeed profiler.py:863"""
    macs = prod(q) * k[-2] + prod(q[:-1]) * k[-2] * v[-1]
    return 2 * macs, macs


def rnn_layer(kind: str, w_ih: Shape, w_hh: Shape, hidden: int, bias: Shape | None) -> int:
    """FLOPs of one step of one layer of an RNN/GRU/LSTM (batch 1): 2 x W_ih - gates + 2 x W_hh - gates
    + the gate arithmetic (RNN h, GRU 7h, LSTM 10h) + both biases' lengths. MACs 0.
    calflops/pytorch_ops.py:371-394,413-416, deepspeed profiler.py:1041-1092"""
    gates = w_ih[0]
    flops = 2 * w_ih[0] * w_ih[1] - gates + 2 * w_hh[0] * w_hh[1] - gates
    flops += {"RNN": hidden, "GRU": 7 * hidden, "LSTM": 10 * hidden}[kind]
    return flops + (bias[0] + bias[1] if bias is not None else 0)


# --- binding a call to a formula ----------------------------------------------------------------

def _shape(t: Any) -> Shape | None:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


@dataclass(frozen=True)
class Rule:
    """How one patched function prices its call: ``price`` has the tool's compute function's
    signature (so a call binds to it the way it bound to the tool's) and returns (FLOPs, MACs)."""

    what: str  # the patched name: "F.linear", "torch.matmul", "Tensor.add"
    price: Callable[..., Cost]
    text: str  # the rule in words, for Charge.rule


def _per_input_element(input: Any, *args: Any, **kwargs: Any) -> Cost:
    """An activation or a pooling call: 1 FLOP per input element, whatever the window."""
    return per_element(input.shape)


def _linear(input: Any, weight: Any, bias: Any = None) -> Cost:
    return linear(input.shape, weight.shape[0])


def _conv(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Cost:
    return conv(input.shape, weight.shape, bias is not None, stride, padding, dilation, groups)


def _conv_t(formula: Callable[..., Cost]) -> Callable[..., Cost]:
    def price(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
              groups: int = 1, dilation: Any = 1) -> Cost:
        return formula(input.shape, weight.shape, bias is not None, stride, padding, output_padding, dilation, groups)
    return price


def _batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                training: bool = False, momentum: float = 0.1, eps: float = 1e-05) -> Cost:
    affine = weight is not None
    return per_element(input.shape, (5 if affine else 4) if training else (2 if affine else 1))


def _layer_norm(input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Cost:
    return per_element(input.shape, 5 if weight is not None else 4)


def _group_norm(input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Cost:
    return per_element(input.shape, 5 if weight is not None else 4)


def _instance_norm(input: Any, running_mean: Any = None, running_var: Any = None, weight: Any = None, bias: Any = None,
                   use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> Cost:
    return per_element(input.shape, 5 if weight is not None else 4)


def _upsample(formula: Callable[[Shape, Any, Any], Cost]) -> Callable[..., Cost]:
    def price(*args: Any, **kwargs: Any) -> Cost:  # the tools read size/scale_factor by name, else by position 1/2
        size = kwargs.get("size")
        if size is None and len(args) > 1:
            size = args[1]
        scale = kwargs.get("scale_factor")
        if scale is None and len(args) > 2:
            scale = args[2]
        return formula(args[0].shape, size, scale)
    return price


def _softmax(input: Any, dim: Any = None, _stacklevel: int = 3, dtype: Any = None) -> Cost:
    return per_element(input.shape)


def _embedding(input: Any, weight: Any, padding_idx: Any = None, max_norm: Any = None, norm_type: float = 2.0,
               scale_grad_by_freq: bool = False, sparse: bool = False) -> Cost:
    return 0, 0  # calflops/pytorch_ops.py:258, deepspeed profiler.py:753: a lookup costs nothing


def price_matmul(input: Any, other: Any, *, out: Any = None) -> Cost:
    """torch.matmul / mm / bmm and their Tensor methods, bound as the tools bind them."""
    return matmul(input.shape, other.shape)


def _addmm(input: Any, mat1: Any, mat2: Any, *, beta: Any = 1, alpha: Any = 1, out: Any = None) -> Cost:
    return addmm(input.shape, mat1.shape, mat2.shape)


def _elementwise(formula: Callable[[Shape | None, Shape | None], Cost]) -> Callable[..., Cost]:
    def price(input: Any, other: Any, *, alpha: Any = 1, out: Any = None) -> Cost:
        return formula(_shape(input), _shape(other))
    return price


def _einsum(equation: str, *operands: Any) -> Cost:
    return einsum(equation, [o.shape for o in operands])


def price_sdpa(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Cost:
    """F.scaled_dot_product_attention: q, k, v by position, as DeepSpeed's rule takes them."""
    return sdpa(q.shape, k.shape, v.shape)


_ACT = "input elements x 1 FLOP; 0 MACs"
_POOL = "input elements x 1 FLOP (whatever the window); 0 MACs"
_NORM = "input elements x 5 FLOPs with affine, 4 without; 0 MACs"


def common_rules(conv_transpose: Callable[..., Cost], upsample: Callable[[Shape, Any, Any], Cost],
                 elementwise: Callable[[Shape | None, Shape | None], Cost]) -> dict[Any, Rule]:
    """The functions both tools patch (calflops/pytorch_ops.py:452-525, deepspeed profiler.py:890-969),
    keyed by the object a TorchFunctionMode is handed for a call through the patched name."""
    rules: dict[Any, Rule] = {
        F.linear: Rule("F.linear", _linear, "output rows x in x out MACs; FLOPs 2 x MACs; bias not counted"),
        torch.matmul: Rule("torch.matmul", price_matmul, "prod(a) x b[-1] MACs; FLOPs 2 x MACs"),
        torch.Tensor.matmul: Rule("Tensor.matmul", price_matmul, "prod(a) x b[-1] MACs; FLOPs 2 x MACs"),
        torch.addmm: Rule("torch.addmm", _addmm, "prod(mat1) x mat2[-1] MACs; FLOPs 2 x MACs + prod(input)"),
        torch.Tensor.addmm: Rule("Tensor.addmm", _addmm, "prod(mat1) x mat2[-1] MACs; FLOPs 2 x MACs + prod(self)"),
        torch.baddbmm: Rule("torch.baddbmm", _addmm, "prod(batch1) x batch2[-1] MACs; FLOPs 2 x MACs + prod(input)"),
        torch.einsum: Rule("torch.einsum", _einsum, "NumPy's optimized FLOP count (4 digits); 0 MACs"),
        F.batch_norm: Rule("F.batch_norm", _batch_norm, "input elements x 2 FLOPs with affine, 1 without (eval); 5|4 training; 0 MACs"),
        F.layer_norm: Rule("F.layer_norm", _layer_norm, _NORM),
        F.group_norm: Rule("F.group_norm", _group_norm, _NORM),
        F.instance_norm: Rule("F.instance_norm", _instance_norm, _NORM),
        F.interpolate: Rule("F.interpolate", _upsample(upsample), "prod(size), or input elements (x scale); 0 MACs"),
        F.softmax: Rule("F.softmax", _softmax, "input elements x 1 FLOP; 0 MACs"),
        F.embedding: Rule("F.embedding", _embedding, "0"),
    }
    for name in ("conv1d", "conv2d", "conv3d"):
        rules[getattr(F, name)] = Rule(f"F.{name}", _conv, "N x out positions x k x C_in x C_out/g MACs; FLOPs 2 x MACs + bias adds")
    for name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        rules[getattr(F, name)] = Rule(f"F.{name}", _conv_t(conv_transpose), "N x input positions x k x C_in x W[1] MACs; FLOPs 2 x MACs + bias adds")
    for name in ("relu", "prelu", "elu", "leaky_relu", "relu6", "silu", "gelu"):
        rules[getattr(F, name)] = Rule(f"F.{name}", _per_input_element, _ACT)
    for kind in ("avg_pool", "max_pool", "adaptive_avg_pool", "adaptive_max_pool"):
        for d in (1, 2, 3):
            rules[getattr(F, f"{kind}{d}d")] = Rule(f"F.{kind}{d}d", _per_input_element, _POOL)
    for owner, prefix in ((torch, "torch"), (torch.Tensor, "Tensor")):
        rules[owner.add] = Rule(f"{prefix}.add", _elementwise(elementwise), "elements of the (tool's) broadcast shape; 0 MACs")
        rules[owner.mul] = Rule(f"{prefix}.mul", _elementwise(elementwise), "elements of the (tool's) broadcast shape; 0 MACs")
    return rules


#: methods a TorchFunctionMode is also handed for an operator (``x + y``, ``x * y``, ``x @ y``),
#: which goes to the C slot and not through the patched name
_OPERATOR_TWINS = {torch.Tensor.add: "+", torch.Tensor.mul: "*", torch.Tensor.matmul: "@"}


# --- reading a torch call: what is free, how a call is named ----------------------------------------

#: calls neither tool prices and that do no arithmetic: views, metadata, copies and moves, creation,
#: indexing, dropout (eval); anything else unpriced is named in Reproduction.unseen
FREE = frozenset({
    "__get__", "__getitem__", "__setitem__", "__len__", "__iter__", "__bool__", "__contains__", "__format__",
    "__hash__", "__eq__", "__ne__", "dim", "size", "stride", "numel", "element_size", "is_floating_point",
    "is_complex", "is_contiguous", "data_ptr", "storage_offset", "requires_grad_", "item", "tolist", "__index__",
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose",
    "permute", "t", "expand", "expand_as", "contiguous", "split", "chunk", "unbind", "narrow", "select",
    "movedim", "swapaxes", "as_strided", "cat", "concat", "stack", "to", "type", "float", "half", "bool", "long",
    "int", "clone", "detach", "cpu", "repeat", "repeat_interleave", "index_select", "gather", "masked_fill",
    "masked_fill_", "fill_", "zero_", "copy_", "new_zeros", "new_ones", "new_empty", "new_full", "zeros",
    "ones", "empty", "full", "arange", "zeros_like", "ones_like", "empty_like", "full_like", "tril", "triu",
    "dropout", "pad", "flip", "roll", "where", "_canonical_mask", "_none_or_dtype", "is_tensor", "apply_",
    "broadcast_to", "is_nonzero", "any", "all", "shape", "device", "dtype", "_has_compatible_shallow_copy_type",
    "get_device", "is_inference", "_is_view", "ndim", "diagonal", "squeeze_", "unsqueeze_",
})


def name_of(func: Any) -> str:
    """A call's name as a user would write it: ``Tensor.add``, ``torch.bmm``, ``F.relu``."""
    name = getattr(func, "__name__", None) or type(func).__name__
    owner = getattr(func, "__objclass__", None)
    if owner is not None or type(func).__name__ in ("method_descriptor", "wrapper_descriptor", "getset_descriptor"):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None) or ""
    if getattr(func, "__qualname__", "").startswith("Tensor."):
        return f"Tensor.{name}"
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return f"F.{name}"
    return f"torch.{name}"


# --- the attention function, priced by what it calls inside ---------------------------------------

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def _in_projections(a: dict[str, Any], q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...],
                    embed: int) -> list[tuple[str, Any]]:
    """``F.multi_head_attention_forward``'s in-projection calls: one packed [3E, E] ``linear`` when
    query, key and value are one tensor; [E, E] + [2E, E] when key is value; three otherwise."""
    if a["use_separate_proj_weight"]:
        return [("linear", (q, a["q_proj_weight"].shape[0])), ("linear", (k, a["k_proj_weight"].shape[0])),
                ("linear", (v, a["v_proj_weight"].shape[0]))]
    query, key, value = a["query"], a["key"], a["value"]
    if key is value and query is key:
        return [("linear", (q, 3 * embed))]
    if key is value:
        return [("linear", (q, embed)), ("linear", (k, 2 * embed))]
    return [("linear", (q, embed)), ("linear", (k, embed)), ("linear", (v, embed))]


def mha_calls(args: Sequence[Any], kwargs: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """The patched calls ``F.multi_head_attention_forward`` (torch 2.13, torch/nn/functional.py) makes
    inside, each as (the patched name, its (FLOPs, MACs) under a convention's rule, left to the
    caller, as the shapes to price): the in-projection ``linear`` (one packed [3E, E] when query, key and value are one
    tensor; [E, E] + [2E, E] when key is value; three [E, E] otherwise), then with ``need_weights``
    ``torch.baddbmm`` (a mask) or ``torch.bmm`` for Q K^T, ``softmax``, ``torch.bmm`` for P V;
    without it ``scaled_dot_product_attention``; and the out-projection ``linear``."""
    b = _MHA_SIGNATURE.bind(*args, **kwargs)
    b.apply_defaults()
    a = b.arguments
    query, key, value = a["query"], a["key"], a["value"]
    q, k, v = tuple(query.shape), tuple(key.shape), tuple(value.shape)
    if len(q) == 2:  # unbatched: [T, E] -> [T, 1, E]
        q, k, v = (q[0], 1, q[1]), (k[0], 1, k[1]), (v[0], 1, v[1])
    tgt, bsz, embed = q
    heads = a["num_heads"]
    head_dim = embed // heads
    calls: list[tuple[str, Any]] = _in_projections(a, q, k, v, embed)
    src = a["static_k"].shape[1] if a["static_k"] is not None else k[0]
    mask = a["attn_mask"]
    mask_shape: tuple[int, ...] | None = None
    if mask is not None:
        mask_shape = (1, *mask.shape) if mask.dim() == 2 else tuple(mask.shape)
    if a["bias_k"] is not None and a["static_k"] is None:
        src += 1
        mask_shape = (*mask_shape[:-1], mask_shape[-1] + 1) if mask_shape else None
    if a["add_zero_attn"]:
        src += 1
        mask_shape = (*mask_shape[:-1], mask_shape[-1] + 1) if mask_shape else None
    if a["key_padding_mask"] is not None:  # merged into the mask: [B*H, 1, S] (+ [1, T, S])
        kpm = (bsz * heads, 1, src)
        mask_shape = kpm if mask_shape is None else tuple(torch.broadcast_shapes(mask_shape, kpm))
    bh = bsz * heads
    if a["need_weights"]:
        if mask_shape is not None:
            calls.append(("baddbmm", (mask_shape, (bh, tgt, head_dim), (bh, head_dim, src))))
        else:
            calls.append(("bmm", ((bh, tgt, head_dim), (bh, head_dim, src))))
        calls += [("softmax", ((bh, tgt, src),)), ("bmm", ((bh, tgt, src), (bh, src, head_dim)))]
    else:
        calls.append(("scaled_dot_product_attention", ((bsz, heads, tgt, head_dim), (bsz, heads, src, head_dim),
                                                       (bsz, heads, src, head_dim))))
    calls.append(("linear", ((tgt * bsz, embed), a["out_proj_weight"].shape[0])))
    return calls


# --- a tool's convention and the run ------------------------------------------------------------

@dataclass(frozen=True)
class Convention:
    """What one of the two tools does with the shared mechanism."""

    tool: str
    version: str
    rules: dict[Any, Rule]
    #: the priced calls inside F.multi_head_attention_forward: name -> formula over shapes (None: not patched)
    mha: dict[str, Callable[..., Cost] | None]
    #: operators priced through a patched dunder (DeepSpeed's Tensor.__matmul__)
    operators: dict[str, Rule] = field(default_factory=dict)
    #: params: True = only those with requires_grad (calflops), False = all (DeepSpeed)
    trainable_only: bool = False
    #: totals: True = recurse over children() so a module under two parents counts twice (calflops);
    #: False = sum over modules(), each module once (DeepSpeed)
    per_child_path: bool = False
    rnn_source: str = ""  # the RNN hook's rule and source, for its charges


_RNN_TYPES = {nn.RNN: "RNN", nn.GRU: "GRU", nn.LSTM: "LSTM", nn.RNNCell: "RNN", nn.GRUCell: "GRU", nn.LSTMCell: "LSTM"}


def _rnn_hook_flops(module: nn.Module, inputs: tuple[Any, ...]) -> int:
    """The tools' RNN hook: sum of :func:`rnn_layer` over layers x batch x seq (dims 0 and 1 of the
    input, whatever batch_first says) x 2 if bidirectional; a cell: one step x batch."""
    kind = _RNN_TYPES[type(module)]
    inp = inputs[0]
    if isinstance(module, nn.RNNCellBase):
        bias = (module.bias_ih.shape[0], module.bias_hh.shape[0]) if module.bias else None
        return rnn_layer(kind, module.weight_ih.shape, module.weight_hh.shape, module.hidden_size, bias) * inp.shape[0]
    assert isinstance(module, nn.RNNBase)
    flops = 0
    for i in range(module.num_layers):
        w_ih, w_hh = getattr(module, f"weight_ih_l{i}"), getattr(module, f"weight_hh_l{i}")
        bias = (getattr(module, f"bias_ih_l{i}").shape[0], getattr(module, f"bias_hh_l{i}").shape[0]) if module.bias else None
        flops += rnn_layer(kind, w_ih.shape, w_hh.shape, module.hidden_size, bias)
    flops *= inp.shape[0] * inp.shape[1]
    return flops * (2 if module.bidirectional else 1)


@dataclass
class _Item:
    what: str
    rule: str
    flops: int = 0
    macs: int = 0


class _Counter(TorchFunctionMode):
    """The patched functions (the mode) and the per-module lists (the hooks) of one run."""

    def __init__(self, convention: Convention, model: nn.Module) -> None:
        super().__init__()
        self.convention = convention
        self.stack: list[nn.Module] = []  # the modules whose pre-hook ran and post-hook did not
        self.own: dict[int, dict[str, _Item]] = {}  # id(module) -> what -> its items, once per call
        self.unseen: Counter[str] = Counter()  # "what (why)" -> calls
        self.sites = CallSites()
        self.rnn_depth = 0
        self.handles: list[Any] = []
        for m in model.modules():
            if type(m) in _RNN_TYPES:
                self.handles += [m.register_forward_pre_hook(self._rnn_enter), m.register_forward_hook(self._rnn_exit)]
            else:
                self.handles += [m.register_forward_pre_hook(self._enter), m.register_forward_hook(self._exit)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _enter(self, m: nn.Module, inputs: Any) -> None:
        self.stack.append(m)

    def _exit(self, m: nn.Module, inputs: Any, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    def _rnn_enter(self, m: nn.Module, inputs: Any) -> None:
        self.rnn_depth += 1

    def _rnn_exit(self, m: nn.Module, inputs: Any, output: Any) -> None:
        self.rnn_depth -= 1
        self._add(m, f"nn.{type(m).__name__} hook", self.convention.rnn_source, (_rnn_hook_flops(m, inputs), 0))

    def _add(self, m: nn.Module, what: str, rule: str, cost: Cost) -> None:
        item = self.own.setdefault(id(m), {}).setdefault(what, _Item(what, rule))
        item.flops += int(cost[0])
        item.macs += int(cost[1])

    def _charge(self, what: str, rule: str, cost: Cost) -> None:
        if self.stack:  # the tools append only while some module's list is open
            self._add(self.stack[-1], what, rule, cost)

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        known = _hashable(func)
        rule = self.convention.rules.get(func) if known else None
        twin = known and func in _OPERATOR_TWINS
        if rule is not None or twin:
            site = self.sites.of(func, sys._getframe(1))
            if twin and site.by_operator():
                op = _OPERATOR_TWINS[func]
                rule = self.convention.operators.get(op)
                if rule is None:
                    self.unseen[f"operator {op} (no handler)"] += 1
            elif rule is not None and not site.through(rule.what):
                self.unseen[f"{rule.what} (called through a name kept from before the patch)"] += 1
                rule = None
            if rule is not None:
                cost = rule.price(*args, **kwargs)
                self._charge(rule.what, rule.text, cost)
                if func is F.interpolate and site.within(F.upsample) and self.sites.outer(site).through("F.upsample"):
                    # F.upsample has no torch-function dispatch of its own: the mode is handed the
                    # interpolate it calls; the tools price the patched upsample and that interpolate
                    self._charge("F.upsample", rule.text, cost)
        elif known and func is F.multi_head_attention_forward:
            self._mha(args, kwargs)
        elif not self.rnn_depth:
            name = name_of(func)
            if name.rsplit(".", 1)[-1] not in FREE:
                self.unseen[f"{name} (no handler)"] += 1
        return func(*args, **kwargs)

    def _mha(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        for name, shapes in mha_calls(args, kwargs):
            formula = self.convention.mha.get(name)
            if formula is None:
                self.unseen[f"torch.{name} in F.multi_head_attention_forward (no handler)"] += 1
                continue
            self._charge(f"{name} in F.multi_head_attention_forward", f"the tool's {name} rule", formula(*shapes))


def _hashable(func: Any) -> bool:
    try:
        hash(func)
    except TypeError:
        return False
    return True


def visits(model: nn.Module, per_child_path: bool) -> Iterator[tuple[str, nn.Module]]:
    """Each time the tool's total reads a module's accumulator, with a path for it: every position
    in the children() tree (calflops' recursive sum), or each module once (DeepSpeed's modules())."""
    if not per_child_path:
        yield from model.named_modules()
        return

    def walk(path: str, m: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        yield path, m
        for name, child in m.named_children():
            yield from walk(f"{path}.{name}" if path else name, child)

    yield from walk("", model)


def reproduce(convention: Convention, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """The tool's figures for ``model(*args, **kwargs)``, from its mechanism on fxcost's fake CPU copy
    (the tools run on the CPU with gradients on: nn.MultiheadAttention keeps to its Python path)."""

    def watch(shadow: nn.Module, sargs: tuple[Any, ...], skwargs: dict[str, Any]) -> tuple[nn.Module, _Counter]:
        counter = _Counter(convention, shadow)
        try:
            with torch.enable_grad(), counter:
                shadow(*sargs, **skwargs)
        finally:
            counter.remove()
        return shadow, counter

    shadow, counter = run_static(model, args, kwargs, watch, cpu=True)
    charges: list[Charge] = []
    for path, m in visits(shadow, convention.per_child_path):
        for item in counter.own.get(id(m), {}).values():
            charges.append(Charge(path, type(m).__name__, item.what, item.macs, item.rule, item.flops))
    params = sum(p.numel() for p in shadow.parameters() if p.requires_grad or not convention.trainable_only)
    return Reproduction(
        tool=convention.tool, version=convention.version, headline="MACs",
        macs=sum(c.macs for c in charges), params=params, charges=tuple(charges),
        unseen=tuple(f"{what.replace(' (', f' x{n} (', 1)}" for what, n in sorted(counter.unseen.items())),
        flops=sum(c.flops or 0 for c in charges),
    )


def restore_after_failure(reload: Callable[[], None], *counts: Any) -> None:
    """After the tool raised mid-run, put back what it patched with its own ``reload`` and empty
    its per-module ``counts``: both tools restore only on success, and a second wrapper on top
    would count every later call twice. Nothing is reloaded if ``F.linear`` is torch's own."""
    if F.linear is not torch._C._nn.linear:
        reload()
    for count in counts:
        count.clear()


__all__ = ["Convention", "Rule", "common_rules", "reproduce", "restore_after_failure"]
