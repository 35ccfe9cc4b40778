"""fvcore's ``FlopCountAnalysis(model, inputs).total()`` reproduced on the meta copy.

fvcore (0.1.5.post20221221) traces the model with ``torch.jit._get_trace_graph``, pushing each
module's name as a tracing scope from forward pre-/post-hooks, then walks the graph's nodes and
prices each jit op kind by its handle table: ``_DEFAULT_SUPPORTED_OPS`` (fvcore/nn/flop_count.py:26)
with the handlers of fvcore/nn/jit_handles.py. A kind in ``_IGNORED_OPS`` (jit_analysis.py:28) or
any ``prim::`` op is skipped silently; any other kind is an "unsupported op" (jit_analysis.py:577)
and costs nothing. fvcore's "flops" are MACs: one fused multiply-add is one flop (flop_count.py:55).

The reproduction runs that same tracer on fxcost's weightless meta copy, with the same scope
hooks, and prices the graph with the handlers below. One torch quirk is routed around: a traced
``conv*d`` is not recorded itself (torch's ``DONT_RECORD_TRACE``), so its meta shape function runs
with tracing on, where sizes are traced tensors and the check fails. ``_ConvAsUnderscore``
sends ``aten::convolution`` on to ``aten::_convolution`` with the tracer back in, which records
``aten::_convolution`` as a real trace does and runs its meta kernel with tracing off.
Parameters are ``fvcore.nn.parameter_count(model)[""]``: ``named_parameters()``, tied weights once
(fvcore/nn/parameter_count.py:24).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from math import prod
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from fxcost.errors import FxcostError, first_line
from fxcost.peers.base import Charge, PeerTool, Reproduction, ToolFigures, positional_call

VERSION = "0.1.5.post20221221"
HEADLINE = "flops (MACs)"

Shape = Sequence[int]

# --- formulas: pure functions of shapes, each mirroring one fvcore handler ----------------------


def addmm_macs(a: Shape, b: Shape) -> int:
    """[n, p] = addmm(bias, a[n, m], b[m, p]); MACs = n * m * p, bias not counted.
    # fvcore/nn/jit_handles.py:82 (addmm_flop_jit)"""
    if len(a) != 2 or len(b) != 2:
        raise ValueError(f"addmm_flop_jit asserts 2-D operands, got {list(a)} and {list(b)}")
    return a[0] * a[1] * b[1]


def linear_macs(x: Shape, w: Shape) -> int:
    """[*, out] = linear(x[*, in], W[out, in], b?); MACs = prod(x) * out, bias not counted.
    # fvcore/nn/jit_handles.py:99 (linear_flop_jit)"""
    if x[-1] != w[-1]:
        raise ValueError(f"linear_flop_jit asserts x[-1] == W[-1], got {list(x)} and {list(w)}")
    return prod(x) * w[0]


def bmm_macs(a: Shape, b: Shape) -> int:
    """[n, c, d] = bmm(a[n, c, t], b[n, t, d]); MACs = n * c * t * d.
    # fvcore/nn/jit_handles.py:113 (bmm_flop_jit)"""
    n, c, t = a
    return n * c * t * b[-1]


def matmul_macs(a: Shape, b: Shape) -> int:
    """[*, n, p] = matmul(a[*, n, m], b[..., m, p]); MACs = prod(a) * p: the batch of ``a`` only,
    so a broadcast batch that only ``b`` has is not counted; a 1-D operand fails (fvcore asserts).
    # fvcore/nn/jit_handles.py:217 (matmul_flop_jit, also aten::mm)"""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"matmul_flop_jit indexes [-2] of both operands, got {list(a)} @ {list(b)}")
    if a[-1] != b[-2]:
        raise ValueError(f"matmul_flop_jit asserts a[-1] == b[-2], got {list(a)} @ {list(b)}")
    return prod(a) * b[-1]


def conv_macs(x: Shape, w: Shape, out: Shape, transposed: bool) -> int:
    """[N, C_out, *o] = _convolution(x[N, C_in, *i], W[C_out, C_in/g, *k]) (W[C_in, C_out/g, *k]
    transposed); MACs = N * prod(W) * prod(o), or prod(i) when transposed; bias not counted.
    # fvcore/nn/jit_handles.py:127 (conv_flop_count)"""
    spatial = (x if transposed else out)[2:]
    return x[0] * prod(w) * prod(spatial)


def norm_macs(x: Shape, affine: bool) -> int:
    """[*] = group_norm / layer_norm / instance_norm / batch_norm(train)(x[*]); MACs = prod(x) * 5
    with an affine weight, else * 4 ("a rough estimate"); x must be 2-D to 5-D.
    # fvcore/nn/jit_handles.py:230 (norm_flop_counter)"""
    if not 2 <= len(x) <= 5:
        raise ValueError(f"norm_flop_jit asserts a 2-D to 5-D input, got {list(x)}")
    return prod(x) * (5 if affine else 4)


def batch_norm_eval_macs(x: Shape, affine: bool) -> int:
    """[*] = batch_norm(x[*]) with running statistics; MACs = prod(x) * 2 with a weight, else * 1.
    # fvcore/nn/jit_handles.py:251 (batchnorm_flop_jit)"""
    return prod(x) * (2 if affine else 1)


def elementwise_macs(x: Shape, out: Shape, input_scale: int, output_scale: int) -> int:
    """out = op(x); MACs = prod(x) * input_scale + prod(out) * output_scale.
    # fvcore/nn/jit_handles.py:261 (elementwise_flop_counter)"""
    return (prod(x) * input_scale if input_scale else 0) + (prod(out) * output_scale if output_scale else 0)


def einsum_macs(equation: str, shapes: Sequence[Shape]) -> int:
    """out = einsum(equation, *operands); letters renamed a, b, c... in order of appearance, then
    "abc,abd->acd" = n*c*t*p and "abc,adc->adb" = n*t*g*c (the bmm forms), else numpy's
    ``einsum_path(optimize="optimal")`` report: its "Optimized FLOP count", printed to 4
    significant digits (%.3e) and read back, halved and floored.
    # fvcore/nn/jit_handles.py:174 (einsum_flop_jit)"""
    import numpy as np

    equation = equation.replace(" ", "")
    letters = dict.fromkeys(ch for ch in equation if ch.isalpha())
    equation = equation.translate({ord(ch): ord("a") + i for i, ch in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    # einsum_path reads only shapes: zero-stride views cost no memory, whatever the shapes
    operands = [np.broadcast_to(np.zeros(()), tuple(s)) for s in shapes]
    report = np.einsum_path(equation, *operands, optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return int(np.floor(float(line.split(":")[-1]) / 2))
    raise ValueError(f"numpy's einsum_path gave no optimized FLOP count for {equation!r}")


# --- the handle table: jit op kind -> how to read its node, and the rule in words -------------

Node = Any  # torch._C.Node
Price = Callable[[Node], int]
_HANDLES: dict[str, tuple[Price, str]] = {}


def _handles(*kinds: str, rule: str) -> Callable[[Price], Price]:
    """Register ``price`` for jit op ``kinds``; a kind registered twice is an error."""

    def register(price: Price) -> Price:
        for kind in kinds:
            if kind in _HANDLES:
                raise ValueError(f"{kind} already has a handler")
            _HANDLES[kind] = (price, rule)
        return price

    return register


def _shape(value: Any) -> list[int] | None:
    """A jit value's sizes when the trace knows them all, else None (fvcore's get_shape)."""
    return list(value.type().sizes()) if value.isCompleteTensor() else None


def _shapes(node: Node) -> tuple[list[Any], list[Any]]:
    return [_shape(v) for v in node.inputs()], [_shape(v) for v in node.outputs()]


def _need(shape: list[int] | None, node: Node) -> list[int]:
    if shape is None:
        raise ValueError(f"{node.kind()} has an operand of unknown shape")
    return shape


@_handles("aten::addmm", rule="a[n, m] @ b[m, p]: n*m*p; bias not counted")
def _addmm(node: Node) -> int:
    i, _ = _shapes(node)
    return addmm_macs(_need(i[1], node), _need(i[2], node))


@_handles("aten::linear", rule="prod(x) * out_features; bias not counted")
def _linear(node: Node) -> int:
    i, _ = _shapes(node)
    return linear_macs(_need(i[0], node), _need(i[1], node))


@_handles("aten::bmm", rule="[n, c, t] @ [n, t, d]: n*c*t*d")
def _bmm(node: Node) -> int:
    i, _ = _shapes(node)
    if len(i) != 2:
        raise ValueError(f"bmm_flop_jit asserts 2 inputs, got {len(i)}")
    return bmm_macs(_need(i[0], node), _need(i[1], node))


@_handles("aten::matmul", "aten::mm", rule="prod(a) * b[-1]: a's batch only")
def _matmul(node: Node) -> int:
    i, _ = _shapes(node)
    if len(i) != 2:
        raise ValueError(f"matmul_flop_jit asserts 2 inputs, got {len(i)}")
    return matmul_macs(_need(i[0], node), _need(i[1], node))


@_handles("aten::_convolution", rule="N * prod(W) * prod(out spatial) (input spatial if transposed); bias not counted")
def _convolution(node: Node) -> int:
    inputs = list(node.inputs())
    if len(inputs) not in (12, 13):
        raise ValueError(f"conv_flop_jit asserts 12 or 13 inputs, got {len(inputs)}")
    i, o = _shapes(node)
    return conv_macs(_need(i[0], node), _need(i[1], node), _need(o[0], node), bool(inputs[6].toIValue()))


@_handles("aten::einsum", rule="the bmm forms exactly, else numpy's optimal path FLOPs (3 decimals) / 2")
def _einsum(node: Node) -> int:
    inputs = list(node.inputs())
    operands = [_need(_shape(v), node) for v in inputs[1].node().inputs()]
    return einsum_macs(str(inputs[0].toIValue()), operands)


def _norm(affine_index: int) -> Price:
    def price(node: Node) -> int:
        i, _ = _shapes(node)
        return norm_macs(_need(i[0], node), i[affine_index] is not None)

    return price


_handles("aten::group_norm", "aten::layer_norm", rule="prod(x) * 5 with affine, * 4 without")(_norm(2))
_handles("aten::instance_norm", rule="prod(x) * 5 with affine, * 4 without")(_norm(1))


@_handles("aten::batch_norm", rule="eval: prod(x) * 2 with affine (* 1 without); train: prod(x) * 5 (* 4)")
def _batch_norm(node: Node) -> int:
    training = list(node.inputs())[5].toIValue()
    i, _ = _shapes(node)
    if training:
        return norm_macs(_need(i[0], node), i[1] is not None)
    return batch_norm_eval_macs(_need(i[0], node), i[1] is not None)


def _elementwise(input_scale: int, output_scale: int) -> Price:
    def price(node: Node) -> int:
        i, o = _shapes(node)
        return elementwise_macs(_need(i[0], node), _need(o[0], node), input_scale, output_scale)

    return price


_handles("aten::upsample_nearest2d", rule="output elements x 1")(_elementwise(0, 1))
_handles("aten::upsample_bilinear2d", "aten::grid_sampler", rule="output elements x 4")(_elementwise(0, 4))
_handles("aten::adaptive_avg_pool2d", rule="input elements x 1")(_elementwise(1, 0))

#: jit op kind -> (price of its node, the rule in words): fvcore/nn/flop_count.py:26
HANDLES: Mapping[str, tuple[Price, str]] = MappingProxyType(_HANDLES)

#: kinds fvcore skips without a word (fvcore/nn/jit_analysis.py:28): it says "truly 0 flops",
#: yet the list holds aten::relu and aten::max; every other prim:: op is skipped too (:647)
IGNORED: frozenset[str] = frozenset({
    "aten::Int", "aten::ScalarImplicit", "aten::__and__", "aten::arange", "aten::bitwise_not",
    "aten::cat", "aten::chunk", "aten::clamp", "aten::clamp_", "aten::constant_pad_nd",
    "aten::contiguous", "aten::copy_", "aten::detach", "aten::dropout", "aten::empty", "aten::eq",
    "aten::expand", "aten::flatten", "aten::floor", "aten::floor_divide", "aten::full",
    "aten::full_like", "aten::gather", "aten::ge", "aten::gt", "aten::index", "aten::index_put_",
    "aten::masked_fill", "aten::max", "aten::narrow", "aten::new_empty", "aten::new_full",
    "aten::new_zeros", "aten::nonzero", "aten::ones", "aten::permute", "aten::relu", "aten::relu_",
    "aten::remainder", "aten::reshape", "aten::roll", "aten::select", "aten::size", "aten::slice",
    "aten::split", "aten::split_with_sizes", "aten::squeeze", "aten::stack", "aten::t", "aten::to",
    "aten::transpose", "aten::type_as", "aten::unbind", "aten::unsqueeze", "aten::unsqueeze_",
    "aten::view", "aten::zeros", "aten::zeros_like",
})


def _ignored(kind: str) -> bool:
    """fvcore/nn/jit_analysis.py:638 (_should_ignore_node)."""
    if kind in IGNORED:
        return True
    if kind.startswith(("prim::PythonOp", "prim::CallFunction")):
        return False
    return kind.startswith("prim::")


# --- the trace on the meta copy ---------------------------------------------------------------


class _ConvAsUnderscore(TorchDispatchMode):
    """Under the jit tracer, hand ``aten::convolution`` on to ``aten::_convolution`` with the
    Tracer key back in (and this mode's Python key out), as ``at::convolution`` itself does: the
    tracer records the node and switches tracing off while the meta kernel reads shapes."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if func is not torch.ops.aten.convolution.default:
            return func(*args, **(kwargs or {}))
        cudnn = torch.backends.cudnn
        # the trailing flags at::convolution passes (aten/src/ATen/native/Convolution.cpp)
        flags = (cudnn.benchmark, cudnn.deterministic or torch.are_deterministic_algorithms_enabled(),
                 cudnn.enabled, cudnn.allow_tf32)
        python = torch._C.DispatchKeySet(torch._C.DispatchKey.Python) | torch._C.DispatchKeySet(
            torch._C.DispatchKey.PythonTLSSnapshot)
        with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), python):
            return torch.ops.aten._convolution.default(*args, *(kwargs or {}).values(), *flags)


@contextmanager
def _scopes(shadow: nn.Module) -> Iterator[None]:
    """Each module pushes its name as the tracing scope while it runs, as fvcore's
    ScopePushHook/ScopePopHook do (fvcore/nn/jit_analysis.py:137); removed afterwards."""

    def push(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any) -> None:
            state = torch._C._get_tracing_state()
            if state:
                state.push_scope(name)

        return hook

    def pop(module: nn.Module, inputs: Any, outputs: Any) -> None:
        state = torch._C._get_tracing_state()
        if state:
            state.pop_scope()

    handles = []
    try:
        for name, module in shadow.named_modules():  # shared modules once, by their first name
            handles.append(module.register_forward_pre_hook(push(name)))
            handles.append(module.register_forward_hook(pop))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors in a model's output, a dataclass's fields included."""
    if isinstance(out, torch.Tensor):
        return [out]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [t for f in dataclasses.fields(out) for t in _tensors(getattr(out, f.name))]
    leaves, _ = tree_flatten(out)
    if len(leaves) == 1 and leaves[0] is out:
        return []
    return [t for leaf in leaves for t in _tensors(leaf)]


_SLOT = object()  # where a tensor input goes


class _Positional(nn.Module):
    """``inner(*args, **kwargs)`` with the tensors taken positionally, the way the tracer takes
    inputs; the rest (floats, flags, None) fixed. Adds no scope and no op of its own."""

    def __init__(self, inner: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.inner = inner
        leaves, self._spec = tree_flatten((args, kwargs))
        self._fixed = [_SLOT if isinstance(x, torch.Tensor) else x for x in leaves]
        self.tensors = tuple(x for x in leaves if isinstance(x, torch.Tensor))

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given = iter(tensors)
        args, kwargs = tree_unflatten([next(given) if x is _SLOT else x for x in self._fixed], self._spec)
        return tuple(_tensors(self.inner(*args, **kwargs)))


def _trace(shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The jit graph of ``shadow(*args, **kwargs)`` with fvcore's module scopes."""
    import warnings

    wrapper = _Positional(shadow, args, kwargs)
    with warnings.catch_warnings():
        # fvcore's default tracer_warnings("no_tracer_warning") (jit_analysis.py:549)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with _scopes(shadow), _ConvAsUnderscore():
            graph, _ = torch.jit._get_trace_graph(wrapper, wrapper.tensors)
    return graph


def _as_the_user_left_it(shadow: nn.Module, model: nn.Module) -> None:
    """fvcore traces the model in the mode it is in (a fresh model trains: dropout on, batch norm
    on batch statistics); prepare_meta's copy is in eval mode, so each module gets its flag back."""
    flags = {name: m.training for name, m in model.named_modules(remove_duplicate=False)}
    for name, m in shadow.named_modules(remove_duplicate=False):
        m.training = flags.get(name, m.training)


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """fvcore's total and parameter count for ``model(*args, **kwargs)``, on a meta copy."""
    from fxcost.pytorch.inputs import prepare_meta

    positional_inputs(model, args, kwargs)  # fvcore cannot call the model otherwise: neither can its reproduction

    shadow, margs, mkwargs = prepare_meta(model, args, kwargs)
    _as_the_user_left_it(shadow, model)
    try:
        graph = _trace(shadow, margs, mkwargs)
    except FxcostError:
        raise
    except Exception as e:
        raise FxcostError(
            f"torch.jit cannot trace {type(model).__name__} on a meta copy, as fvcore traces it: {type(e).__name__}: {first_line(e)}",
            hint="fvcore needs a model torch.jit.trace can follow (no data-dependent `if`, tensor outputs)",
        ) from e
    modules = dict(shadow.named_modules())
    charges: list[Charge] = []
    unsupported: Counter[str] = Counter()
    for node in graph.nodes():
        kind = node.kind()
        if kind == "prim::PythonOp":
            kind = f"{kind}.{node.pyname()}"
        path = node.scopeName().split("/")[-1]
        path = path if path in modules else ""
        if kind not in HANDLES:
            if not _ignored(kind):
                unsupported[kind] += 1
            continue
        price, rule = HANDLES[kind]
        try:
            macs = price(node)
        except (ValueError, AssertionError) as e:
            raise FxcostError(
                f"fvcore's handler for {kind} fails on this model (in {path or 'the root'}): {e}",
                hint="fvcore itself raises here; give it a handle with set_op_handle, or use another convention",
            ) from e
        if macs:  # fvcore adds Counters, which drop zeros (jit_analysis.py:595)
            charges.append(Charge(path, type(modules[path]).__name__, kind, macs, rule))
    return Reproduction(
        tool="fvcore",
        version=VERSION,
        headline=HEADLINE,
        macs=sum(c.macs for c in charges),
        params=sum(p.numel() for p in shadow.parameters()),
        charges=tuple(charges),
        unseen=tuple(f"{kind} x{n} (no handler)" for kind, n in unsupported.items()),
    )


# --- the tool itself --------------------------------------------------------------------------


def positional_inputs(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``args`` and ``kwargs`` as the one positional tuple fvcore's ``inputs`` is (its tracer takes
    no keyword arguments, jit/_trace.py ONNXTracedModule)."""
    return positional_call(model, args, kwargs, "fvcore's FlopCountAnalysis(model, inputs) passes inputs positionally")


def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """The installed fvcore on a real copy, as its README calls it:
    ``FlopCountAnalysis(model, inputs).total()`` and ``parameter_count(model)[""]``."""
    from fvcore.nn import FlopCountAnalysis, parameter_count

    # a copy: the trace runs the model as it is (batch norm statistics move in train mode), and
    # fvcore leaves its scope hooks on the model when the trace fails
    model = copy.deepcopy(model)
    analysis = FlopCountAnalysis(model, positional_inputs(model, args, kwargs))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total = analysis.total()
    params = parameter_count(model)[""]
    if total != int(total):
        raise ValueError(f"fvcore's total {total!r} is not a whole number")
    return ToolFigures(macs=int(total), params=int(params))


MISSES = (
    "attention: aten::scaled_dot_product_attention has no handler (0); only explicit matmul/bmm/einsum count",
    "baddbmm (nn.MultiheadAttention's scores with a mask, HF attention) has no handler: 0",
    "elementwise ops (add, mul, softmax, GELU, SiLU, tanh, residual adds): no handler, 0",
    "ReLU and max are on the silently ignored list; max/avg pooling and adaptive_avg_pool1d/3d: no handler, 0",
    "RNN/LSTM/GRU (aten::lstm, aten::gru, aten::rnn_tanh): no handler, 0",
    "embedding: no handler, 0",
    "bias adds of conv and linear are not counted",
    "norms are priced by a rough 5 (4 without affine) per element; eval batch norm 2 (1)",
    "matmul counts only the first operand's batch; a 1-D operand crashes the handler",
    "upsampling: nearest2d (1/element) and bilinear2d (4/element) only; bicubic, linear, trilinear, 1d/3d: 0",
    "the model is traced in the mode it is in: a fresh (training) model prices batch norm as 5/element",
    "rms_norm and hand-written norms (pow, mean, rsqrt): no handler, 0",
)

TOOL = PeerTool(
    name="fvcore",
    package="fvcore",
    version=VERSION,
    headline=HEADLINE,
    reproduce=reproduce,
    run_tool=run_tool,
    misses=MISSES,
    params_rule='parameter_count(model)[""]: every named parameter, each tensor once',
)

__all__ = ["HANDLES", "IGNORED", "TOOL", "positional_inputs", "reproduce", "run_tool"]

