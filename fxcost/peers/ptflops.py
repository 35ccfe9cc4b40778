"""ptflops 0.7.5, reproduced: ``get_model_complexity_info`` with its default backend.

The default backend is ``FLOPS_BACKEND.PYTORCH`` (ptflops/flops_counter.py:34), the module-hook
engine (ptflops/pytorch_engine.py:23), which runs the forward in eval mode, with grad enabled:

* a forward hook on every module whose *exact* type is in ``MODULES_MAPPING``
  (ptflops/pytorch_ops.py:271), put on before the forward; ``accumulate_flops``
  (pytorch_engine.py:96) takes a hooked module's own total and ignores its children, any other
  module sums its children (so ``nn.MultiheadAttention``'s ``out_proj`` is not counted twice);
* the module total is divided by the batch size, ``len()`` of the root's first positional input
  (1, with a printed warning, when the input comes as keywords) (pytorch_engine.py:199, :267);
* by default (``count_functional``) it also patches ``torch.nn.functional.relu/gelu/silu/elu/
  relu6/prelu/softmax/interpolate/upsample`` and the pooling functions, and ``torch.matmul/mm/bmm/
  addmm/baddbmm/mul/add`` with their ``Tensor`` methods (pytorch_engine.py:348, :434): every call
  made through those names adds its cost *undivided* by the batch, also when a hooked module
  makes it (``nn.ReLU`` is priced by its hook and again by ``F.relu``);
* params: ``sum(p.numel() for p in model.parameters() if p.requires_grad)`` on the whole model
  (pytorch_engine.py:161): a tied weight once, every parameter counted, hooked or not.

Here the patched names are watched by a TorchFunctionMode instead, which sees the same calls by
function identity. What the patch sees differently is mirrored: a call counts only where it looked
the patched name up (:mod:`fxcost.peers._callsite`), so neither an operator (``a + b`` goes to
``Tensor.__add__``) nor a function a module bound to an attribute before the run (transformers'
``GELUActivation.act = F.gelu``) is counted; and the names
``multi_head_attention_forward`` and ``upsample`` resolve *inside* torch.nn.functional (``softmax``,
``torch.bmm``, ``torch.baddbmm``, ``interpolate``) are counted as the patch counts them.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from fxcost.peers._callsite import CallSites
from fxcost.peers.base import Charge, PeerTool, Reproduction, ToolFigures, UnseenOps, hooked, run_static, shape_of

VERSION = "0.7.5"
HEADLINE = "MACs"

Shape = tuple[int, ...]


# --- module hooks (ptflops/pytorch_ops.py) ------------------------------------------------------

def conv_macs(x: Shape, y: Shape, kernel: Shape, c_in: int, c_out: int, groups: int, bias: bool,
              transpose: bool = False) -> int:
    """[N, C_out, *out] = conv(x[N, C_in, *in], W, b?); ptflops: prod(k) x C_in x C_out/g per
    position, over the N x *out positions (N x *in for a transposed conv), + N x C_out x *out bias adds.

    # ptflops/pytorch_ops.py:60 conv_flops_counter_hook (0.7.5)
    """
    positions = x[0] * math.prod(x[2:] if transpose else y[2:])
    macs = math.prod(kernel) * (c_in * (c_out // groups)) * positions
    return macs + (x[0] * math.prod(y[1:]) if bias else 0)


def linear_macs(x: Shape, out_features: int, bias: bool) -> int:
    """[*, out] = linear(x[*, in], W[out, in], b[out]?); ptflops: prod(*) x (in x out + out if bias).

    # ptflops/pytorch_ops.py:35 linear_flops_counter_hook (0.7.5)
    """
    return (x[-1] * out_features + (out_features if bias else 0)) * math.prod(x[:-1])


def numel(shape: Shape) -> int:
    """Elements of one tensor: ptflops' activation hooks (output), pooling and norm hooks (input),
    upsample (output) and the patched activations, pooling and softmax functions (input).

    # ptflops/pytorch_ops.py:21, :30, :46, :347 (0.7.5)
    """
    return math.prod(shape)


def norm_macs(x: Shape, affine: bool) -> int:
    """y = norm(x) (BatchNorm, InstanceNorm, GroupNorm, LayerNorm); ptflops: input elements,
    doubled if the module has ``affine`` set (LayerNorm has none: never doubled).

    # ptflops/pytorch_ops.py:51 bn_flops_counter_hook (0.7.5)
    """
    return math.prod(x) * (2 if affine else 1)


def rnn_macs(kind: str, x: Shape, layer_weights: list[tuple[Shape, Shape]], hidden: int, bias: bool,
             bidirectional: bool) -> int:
    """[B, T, ...] = rnn(x[B, T, i]); ptflops: per layer W_ih and W_hh sizes + gate terms (RNN h;
    GRU 7h; LSTM 10h) + bias sizes, x B x T (x[0] and x[1] whatever batch_first says), x 2 if
    bidirectional (the reverse direction's weights are not read).

    # ptflops/pytorch_ops.py:105 rnn_flops, :130 rnn_flops_counter_hook (0.7.5)
    """
    extra = {"RNN": hidden, "GRU": hidden + 3 * hidden + 3 * hidden, "LSTM": 4 * hidden + 3 * hidden + 3 * hidden}[kind]
    flops = 0
    for w_ih, w_hh in layer_weights:
        flops += w_ih[0] * w_ih[1] + w_hh[0] * w_hh[1] + extra
        if bias:
            flops += w_ih[0] + w_hh[0]  # b_ih, b_hh are as long as the weights' rows
    return flops * x[0] * x[1] * (2 if bidirectional else 1)


def rnn_cell_macs(kind: str, x: Shape, w_ih: Shape, w_hh: Shape, hidden: int, bias: bool) -> int:
    """[B, h] = cell(x[B, i]); ptflops: the same per-layer sum as rnn_macs, x B.

    # ptflops/pytorch_ops.py:163 rnn_cell_flops_counter_hook (0.7.5)
    """
    return rnn_macs(kind, (x[0], 1), [(w_ih, w_hh)], hidden, bias, False)


def mha_macs(q: Shape, k: Shape, v: Shape, embed: int, heads: int, batch_first: bool, in_bias: bool) -> int:
    """[L, B, E] = MultiheadAttention(q[L, B, E], k[S, B, Ek], v[S, B, Ev]); ptflops: scaling L x E,
    projections L x E^2 + S x Ek^2 + S x Ev^2 (+ (L + 2S) x E bias), per head L x S x (E/h + 1 + Ev/h),
    out projection L x Ev x (Ev + 1); all x B.

    # ptflops/pytorch_ops.py:180 multihead_attention_counter_hook (0.7.5)
    """
    b, li = (q[0], 1) if batch_first else (q[1], 0)
    ql, kl, vl, qd, kd, vd = q[li], k[li], v[li], q[2], k[2], v[2]
    flops = ql * qd + ql * qd * qd + kl * kd * kd + vl * vd * vd
    if in_bias:
        flops += (ql + kl + vl) * qd
    flops += heads * (ql * kl * (qd // heads) + ql * kl + ql * kl * (vd // heads))
    flops += ql * vd * (vd + 1)
    return flops * b


Hook = Callable[[Any, tuple[Any, ...], Any], tuple[int, str]]


def _conv(transpose: bool) -> Hook:
    def hook(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
        return (conv_macs(shape_of(x[0]), shape_of(y), tuple(m.kernel_size), m.in_channels, m.out_channels, m.groups,
                          m.bias is not None, transpose),
                "prod(k) x C_in x C_out/g per " + ("input" if transpose else "output") + " position + bias adds")
    return hook


def _act(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return numel(shape_of(y)), "output elements"


def _pool(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return numel(shape_of(x[0])), "input elements"


def _bn(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return norm_macs(shape_of(x[0]), bool(getattr(m, "affine", False))), "input elements, x 2 if affine"


def _linear(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return linear_macs(shape_of(x[0]), int(y.shape[-1]), m.bias is not None), "prod(*) x (in x out + out bias)"


def _upsample_out(y: Any) -> int:
    """ptflops' upsample hook reads ``output[0]``, the first sample: its elements, not the batch's.

    # ptflops/pytorch_ops.py:21 upsample_flops_counter_hook (0.7.5)
    """
    return numel(shape_of(y[0]))


def _rnn(kind: str) -> Hook:
    def hook(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
        weights = [(shape_of(getattr(m, f"weight_ih_l{i}")), shape_of(getattr(m, f"weight_hh_l{i}"))) for i in range(m.num_layers)]
        return rnn_macs(kind, shape_of(x[0]), weights, m.hidden_size, bool(m.bias), m.bidirectional), \
            "weights + gate terms per layer, x x[0] x x[1] (x 2 bidirectional)"
    return hook


def _cell(kind: str) -> Hook:
    def hook(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
        return rnn_cell_macs(kind, shape_of(x[0]), shape_of(m.weight_ih), shape_of(m.weight_hh), m.hidden_size, bool(m.bias)), \
            "weights + gate terms, x batch"
    return hook


def _mha(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    q, k, v = x  # ptflops unpacks exactly three positional inputs (pytorch_ops.py:183)
    return mha_macs(shape_of(q), shape_of(k), shape_of(v), m.embed_dim, m.num_heads, bool(getattr(m, "batch_first", False)),
                    m.in_proj_bias is not None), "projections + heads (QK^T, softmax, AV) + out projection"


MODULES: dict[type[nn.Module], Hook] = {
    **dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv(False)),
    **dict.fromkeys((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.GELU), _act),
    **dict.fromkeys((nn.MaxPool1d, nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool3d,
                     nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d,
                     nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool3d), _pool),
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
                     nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm), _bn),
    nn.Linear: _linear,
    nn.Upsample: lambda m, x, y: (_upsample_out(y), "output elements"),
    **dict.fromkeys((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _conv(True)),
    nn.RNN: _rnn("RNN"), nn.GRU: _rnn("GRU"), nn.LSTM: _rnn("LSTM"),
    nn.RNNCell: _cell("RNN"), nn.LSTMCell: _cell("LSTM"), nn.GRUCell: _cell("GRU"),
    nn.MultiheadAttention: _mha,
}
# torchvision's DeformConv2d and timm's Attention join the table only where those are installed
# (pytorch_ops.py:326-336); neither is a dependency here, nor used by the zoo.


# --- the patched functions (ptflops/pytorch_ops.py:339-469) ------------------------------------

def matmul_macs(a: Shape, b: Shape) -> int:
    """torch.matmul / mm / bmm (and Tensor's); ptflops: prod(a) x b[-1], whatever the broadcast.

    # ptflops/pytorch_ops.py:385 _matmul_tensor_flops_hook (0.7.5)
    """
    return math.prod(a) * b[-1]


def addmm_macs(c: Shape, a: Shape, b: Shape, beta: Any) -> int:
    """torch.addmm / baddbmm(c, a, b, beta=): ptflops: prod(a) x b[-1] + prod(c) unless beta == 0.

    # ptflops/pytorch_ops.py:390 _addmm_tensor_flops_hook (0.7.5)
    """
    return math.prod(a) * b[-1] + (math.prod(c) if beta != 0 else 0)


def elementwise_macs(a: Shape | None, b: Shape | None) -> int:
    """torch.add / mul (and Tensor's) on a and b (None: a Python number); ptflops: elements of
    the per-dimension max of the two shapes, aligned from the *left* (not broadcast's right); 1
    for two numbers.

    # ptflops/pytorch_ops.py:397 _elementwise_tensor_flops_hook (0.7.5)
    """
    if a is None:
        return 1 if b is None else math.prod(b)
    if b is None:
        return math.prod(a)
    n = max(len(a), len(b))
    return math.prod(max(a[i] if i < len(a) else 1, b[i] if i < len(b) else 1) for i in range(n))


def interpolate_macs(x: Shape, size: Any, scale_factor: Any) -> int | float:
    """F.interpolate / F.upsample(x[N, C, *in], size | scale_factor); ptflops: N x C x prod(size)
    (an int size: size ** spatial dims); else elements x prod(int(s)) for a tuple with one s per
    spatial dim, elements x s ** spatial dims for a number (a float when s is: 0.5 halves).

    # ptflops/pytorch_ops.py:351 _interpolate_functional_flops_hook (0.7.5)
    """
    spatial = len(x) - 2
    if size is not None:
        if isinstance(size, (tuple, list)):
            return math.prod(int(s) for s in size) * x[0] * x[1]
        return int(size) ** spatial * x[0] * x[1]
    if scale_factor is None:
        raise AssertionError("either size or scale_factor should be passed to interpolate")
    if isinstance(scale_factor, tuple) and len(scale_factor) == spatial:
        return math.prod(x) * math.prod(int(s) for s in scale_factor)
    return math.prod(x) * scale_factor ** spatial  # type: ignore[no-any-return]


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _sh(t: Any) -> Shape | None:
    return shape_of(t) if isinstance(t, torch.Tensor) else None


def _first(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return numel(shape_of(_arg(args, kwargs, 0, "input")))


def _interp(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | float:
    return interpolate_macs(shape_of(_arg(args, kwargs, 0, "input")), _arg(args, kwargs, 1, "size"),
                            _arg(args, kwargs, 2, "scale_factor"))


def _mm(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return matmul_macs(shape_of(args[0]), shape_of(args[1]))


def _addmm(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return addmm_macs(shape_of(args[0]), shape_of(args[1]), shape_of(args[2]), kwargs.get("beta", 1))


def _elementwise(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return elementwise_macs(_sh(args[0]), _sh(args[1]))


Counted = Callable[[tuple[Any, ...], dict[str, Any]], "int | float"]

#: the functions patch_functional replaces (pytorch_engine.py:348), each with its counter; F.upsample
#: never reaches a mode (it has no torch-function dispatch): the interpolate its body calls does
FUNCTIONAL: dict[Any, tuple[str, Counted]] = {
    **{getattr(F, n): (f"F.{n}", _first) for n in (
        "relu", "prelu", "elu", "relu6", "gelu", "silu", "softmax",
        "avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d",
        "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
        "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")},
    F.upsample: ("F.upsample", _interp),
    F.interpolate: ("F.interpolate", _interp),
}
#: the functions and methods patch_tensor_ops replaces (pytorch_engine.py:434)
TENSOR_OPS: dict[Any, tuple[str, Counted]] = {
    torch.matmul: ("torch.matmul", _mm), torch.Tensor.matmul: ("Tensor.matmul", _mm),
    torch.mm: ("torch.mm", _mm), torch.Tensor.mm: ("Tensor.mm", _mm),
    torch.bmm: ("torch.bmm", _mm), torch.Tensor.bmm: ("Tensor.bmm", _mm),
    torch.addmm: ("torch.addmm", _addmm), torch.Tensor.addmm: ("Tensor.addmm", _addmm),
    torch.baddbmm: ("torch.baddbmm", _addmm),
    torch.mul: ("torch.mul", _elementwise), torch.Tensor.mul: ("Tensor.mul", _elementwise),
    torch.add: ("torch.add", _elementwise), torch.Tensor.add: ("Tensor.add", _elementwise),
}


class _InnerMHA(TorchDispatchMode):
    """Inside F.multi_head_attention_forward (torch/nn/functional.py, need_weights path), the calls
    ``torch.bmm``, ``torch.baddbmm`` and ``softmax`` go through patched names: their aten ops here."""

    def __init__(self, add: Callable[[str, int | float, str], None]) -> None:
        super().__init__()
        self.add = add

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if name == "aten::bmm":
            self.add("torch.bmm", matmul_macs(shape_of(args[0]), shape_of(args[1])), "tensor")
        elif name == "aten::baddbmm":
            self.add("torch.baddbmm", addmm_macs(shape_of(args[0]), shape_of(args[1]), shape_of(args[2]),
                                                 kwargs.get("beta", args[3] if len(args) > 3 else 1)), "tensor")
        elif name == "aten::_softmax":
            self.add("F.softmax", numel(shape_of(args[0])), "functional")
        return func(*args, **kwargs)


@dataclass
class _Tally:
    """What the run priced: per module object its hook totals, and the patched calls in order."""

    hooks: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    functional: list[tuple[str, str, int | float]] = field(default_factory=list)  # (path, what, flops)
    tensor_ops: list[tuple[str, str, int | float]] = field(default_factory=list)
    batch: int = 0


def _needs_weights(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """multi_head_attention_forward calls torch.bmm / baddbmm / softmax only on its need_weights
    path; without weights it calls F.scaled_dot_product_attention, which is not patched."""
    bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
    bound.apply_defaults()
    return bool(bound.arguments["need_weights"])


class _Patched(TorchFunctionMode):
    """Sees the calls ptflops' patched names would see, and adds their counts to ``tally``: a call
    made through the patched name (:meth:`CallSite.through <fxcost.peers._callsite.CallSite.through>`),
    not by an operator (``a + b`` goes to ``Tensor.__add__``, a slot the patch leaves alone)."""

    def __init__(self, tally: _Tally, running: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.tally, self.running = tally, running
        self.sites = CallSites()
        self.pricing = 0  # > 0 while a call it priced runs: its aten ops are counted, not unseen

    def add(self, what: str, flops: int | float, kind: str) -> None:
        path = self.running[-1][0] if self.running else ""
        (self.tally.functional if kind == "functional" else self.tally.tensor_ops).append((path, what, flops))

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kind = "functional" if func in FUNCTIONAL else "tensor" if func in TENSOR_OPS else None
        if kind is not None:
            what, count = (FUNCTIONAL if kind == "functional" else TENSOR_OPS)[func]
            site = self.sites.of(func, sys._getframe(1))
            if not site.by_operator() and site.through(what):
                if func is F.interpolate and site.within(F.upsample) and self.sites.outer(site).through("F.upsample"):
                    # the patched upsample counts its call, then the patched interpolate its body calls
                    self.add("F.upsample", count(args, kwargs), "functional")
                self.add(what, count(args, kwargs), kind)
                self.pricing += 1
                try:
                    return func(*args, **kwargs)
                finally:
                    self.pricing -= 1
        if func is F.multi_head_attention_forward and _needs_weights(args, kwargs):
            with _InnerMHA(self.add):
                return func(*args, **kwargs)
        return func(*args, **kwargs)


# --- the reproduction --------------------------------------------------------------------------

def call_form(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """How ptflops' ``input_constructor`` hands the inputs over: its result is passed as
    ``model(batch)``, or as ``model(**batch)`` when it is a dict (pytorch_engine.py:65). One
    non-dict input goes positionally; anything else as keywords named by forward's signature.
    TypeError where neither form can carry them (``forward(*xs)``)."""
    if not kwargs and len(args) == 1 and not isinstance(args[0], dict):
        return (args[0],), {}
    sig = inspect.signature(model.forward)
    bound = sig.bind(*args, **kwargs)
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) and p.name in bound.arguments:
            raise TypeError(f"ptflops calls model(batch) or model(**batch): forward's {p.kind.description} "
                            f"parameter {p.name!r} cannot be given that way")
    batch = dict(bound.arguments)
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:  # bind() gathers the extra keywords under **kw's name: they go in as they came
            batch.update(batch.pop(p.name, {}))
    return (), batch


def _fails_on_lazy_layers(model: nn.Module) -> None:
    """ptflops fails on a model with lazy layers it hooks: hooks and counters go on them by type
    before the forward, which turns them into hooked types; accumulate_flops then reads a counter
    they never got (pytorch_engine.py:98). The reproduction fails as ptflops does."""
    became = sorted({type(m).__name__ for p, m in model.named_modules()
                     if isinstance(m, nn.modules.lazy.LazyModuleMixin) and getattr(m, "cls_to_become", None) in MODULES})
    if became:
        raise RuntimeError(f"ptflops returned None: AttributeError: lazy layers ({', '.join(became)}): the "
                           f"materialized module has no attribute '__flops__'")


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """ptflops' ``(macs, params)`` for the inputs ``run_tool`` hands it, from hooks and a
    TorchFunctionMode on fxcost's meta copy."""
    types_before = {path: type(m) for path, m in model.named_modules()}
    _fails_on_lazy_layers(model)
    cargs, ckwargs = call_form(model, args, kwargs)

    def watch(shadow: nn.Module, margs: tuple[Any, ...], mkwargs: dict[str, Any]) -> tuple[nn.Module, _Tally, UnseenOps]:
        tally = _Tally()
        paths = {id(m): p for p, m in shadow.named_modules()}
        hooks = {id(m): MODULES[types_before[p]] for p, m in shadow.named_modules() if types_before.get(p) in MODULES}
        running: list[tuple[str, nn.Module]] = []

        def enter(m: nn.Module, x: tuple[Any, ...]) -> None:
            running.append((paths[id(m)], m))

        def leave(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
            running.pop()
            if id(m) in hooks:
                tally.hooks.setdefault(id(m), []).append(hooks[id(m)](m, x, y))
            if m is shadow:  # batch_counter_hook (pytorch_engine.py:267)
                tally.batch += len(x[0]) if len(x) > 0 else 1

        patched = _Patched(tally, running)
        unseen = UnseenOps(lambda: patched.pricing > 0 or any(id(m) in hooks for _, m in running))
        modules = list(dict.fromkeys(m for _, m in shadow.named_modules()))
        with torch.enable_grad(), hooked(modules, enter, leave), unseen, patched:
            shadow(*margs, **mkwargs)  # already in the form call_form gave them
        return shadow, tally, unseen

    shadow, tally, unseen = run_static(model, cargs, ckwargs, watch)
    charges: list[Charge] = []
    module_sum = 0
    for path, m in _accumulated(shadow, "", tally.hooks):
        for macs, rule in tally.hooks[id(m)]:
            # each module's count as its share of the total: the engine divides the modules' sum by the batch
            charges.append(Charge(path, type(m).__name__, type(m).__name__, macs // tally.batch,
                                  f"{rule}; / batch {tally.batch}"))
            module_sum += macs
    kinds = {p: type(m).__name__ for p, m in shadow.named_modules()}
    for path, what, flops in [*tally.functional, *tally.tensor_ops]:
        charges.append(Charge(path, kinds[path], what, int(flops), "patched function, not divided by the batch"))
    total: float = module_sum / tally.batch  # compute_average_flops_cost (pytorch_engine.py:199)
    total += sum(f for _, _, f in tally.functional)  # pytorch_engine.py:70
    total += sum(f for _, _, f in tally.tensor_ops)
    rounding = int(total) - sum(c.macs for c in charges)
    if rounding:  # the engine adds floats (a batch that does not divide, a float scale) and truncates once
        charges.append(Charge("", type(shadow).__name__, "int() of the float total", rounding,
                              "ptflops divides by the batch and adds float counts, then truncates the total once"))
    params = sum(p.numel() for p in shadow.parameters() if p.requires_grad)
    return Reproduction(
        tool="ptflops", version=VERSION, headline=HEADLINE, macs=int(total), params=params,
        charges=tuple(charges), unseen=tuple(unseen.named("outside every hooked module, through no patched name")),
    )


def _accumulated(module: nn.Module, prefix: str, hooks: dict[int, Any]) -> list[tuple[str, nn.Module]]:
    """accumulate_flops (pytorch_engine.py:96): a hooked module itself, else its children's."""
    if id(module) in hooks:
        return [(prefix, module)]
    out = []
    for name, child in module.named_children():
        out += _accumulated(child, f"{prefix}.{name}" if prefix else name, hooks)
    return out


# --- the tool itself ---------------------------------------------------------------------------

def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """``get_model_complexity_info(model, input_res, as_strings=False, print_per_layer_stat=False)``
    with the default backend, the inputs given by ``input_constructor`` (see :func:`call_form`), on
    a deep copy. ptflops prints its failure and returns None: that becomes a RuntimeError here."""
    import contextlib
    import copy
    import io

    import ptflops

    cargs, ckwargs = call_form(model, args, kwargs)
    batch = cargs[0] if cargs else ckwargs
    first = cargs[0] if cargs else None
    res = tuple(first.shape[1:]) if isinstance(first, torch.Tensor) and first.dim() > 1 else (1,)
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        macs, params = ptflops.get_model_complexity_info(
            copy.deepcopy(model), res, as_strings=False, print_per_layer_stat=False,
            input_constructor=lambda _res: batch)
    if macs is None or params is None:
        lines = [ln for ln in said.getvalue().splitlines() if ln.strip()]
        raise RuntimeError(f"ptflops returned None: {lines[-1] if lines else 'no message'}")
    return ToolFigures(macs=int(macs), params=int(params))


TOOL = PeerTool(
    name="ptflops",
    package="ptflops",
    version=VERSION,
    headline=HEADLINE,
    reproduce=reproduce,
    run_tool=run_tool,
    misses=(
        "module hooks count only exact types in MODULES_MAPPING; nn.SiLU, nn.Embedding, RMSNorm, a subclass "
        "(MultiheadAttention's NonDynamicallyQuantizableLinear) cost 0 as modules",
        "hooked modules' totals are divided by the batch size, patched functions' are not: batch > 1 mixes "
        "per-sample and per-batch counts",
        "nn.ReLU, nn.GELU, pooling, nn.Upsample are counted twice: by their hook and by the patched F.* they call",
        "F.scaled_dot_product_attention, `@`, `+`, `*`, einsum, torch.softmax, torch.relu, F.layer_norm, "
        "F.embedding: not patched, 0",
        "bias adds are counted (linear, conv); activations 1 per element; norms 1 (2 if affine) per element; "
        "LayerNorm never doubled (it has no `affine`)",
        "torch.add / mul take the per-dimension max of the shapes aligned from the left, not the broadcast shape",
        "lazy layers make the run fail (accumulate_flops reads a counter they never got)",
        "params: every requires_grad parameter of the model, tied ones once",
    ),
)
