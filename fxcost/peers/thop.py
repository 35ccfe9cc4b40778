"""thop (pytorch-OpCounter) 0.1.1, reproduced.

``thop.profile(model, inputs=(x,))`` (thop/profile.py:157) puts a buffer and, for a module whose
*exact* type is in its ``register_hooks`` table (thop/profile.py:21), a forward hook on every
module, runs ``model(*inputs)`` under ``no_grad`` in eval mode, then walks ``named_children`` from
the root (``dfs_count``, thop/profile.py:214): a hooked module (not a Sequential) gives its own
total and its params, any other module the sum of its children. So:

* a module type outside the table (``nn.Embedding``, ``nn.GroupNorm``, ``nn.MultiheadAttention``,
  ``nn.GELU``, a user's RMSNorm, a lazy layer, whose type is ``LazyConv2d`` when the hooks go on)
  costs 0 and its parameters are not counted; nor are parameters held by a container itself
  (ViT's class token);
* nothing outside a hooked module is seen: ``torch.matmul``, ``@``, ``F.scaled_dot_product_attention``,
  residual adds, functional activations;
* params are ``p.numel()`` over each hooked module's ``parameters()``, set (not added) on every
  call: a module called twice counts its params once; a weight tied between two hooked modules
  counts twice, one tied to an unhooked module (an embedding) once.

The headline is ``total_ops`` (MACs), returned as a float; the reproduction keeps exact ints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from fxcost.peers.base import (
    Charge,
    PeerTool,
    Reproduction,
    ToolFigures,
    UnseenOps,
    hooked,
    positional_call,
    run_static,
    shape_of,
)

#: how thop calls the model
_CALLS = "thop.profile(model, inputs) calls model(*inputs)"

VERSION = "0.1.1.post2209072238"
HEADLINE = "MACs (total_ops)"


# --- thop's formulas, one per hook --------------------------------------------------------------

def conv_macs(x: tuple[int, ...], y: tuple[int, ...], weight: tuple[int, ...], groups: int) -> int:
    """[N, C_out, *out] = conv(x[N, C_in, *in], W[C_out, C_in/g, *k]) (transposed too); thop:
    output elements x C_in // g x prod(k), bias not counted. A transposed conv is priced by the
    same formula on its output (not on its input, as its MACs are).

    # thop/vision/calc_func.py:28 calculate_conv2d_flops, via thop/vision/basic_hooks.py:22 (0.1.1)
    """
    return math.prod(y) * (x[1] // groups) * math.prod(weight[2:])


def norm_macs(x: tuple[int, ...], affine: bool) -> int:
    """y[*] = norm(x[*]) (BatchNorm, LayerNorm, InstanceNorm, SyncBatchNorm); thop: 2 x elements,
    doubled when affine / elementwise_affine; the same in eval and train (profile() sets eval).

    # thop/vision/basic_hooks.py:60 count_normalization, calc_func.py:43 calculate_norm (0.1.1)
    """
    return 2 * math.prod(x) * (2 if affine else 1)


def prelu_macs(x: tuple[int, ...]) -> int:
    """y[*] = prelu(x[*]); thop: one per element (profile() runs in eval, where it counts).

    # thop/vision/basic_hooks.py:82 count_prelu (0.1.1)
    """
    return math.prod(x)


def softmax_macs(x: tuple[int, ...], dim: int) -> int:
    """y[*] = softmax(x[*], dim); thop: (exp + add + div) per row = rows x (3 x n - 1), n = x[dim].

    # thop/vision/basic_hooks.py:98 count_softmax, calc_func.py:57 calculate_softmax (0.1.1)
    """
    n = x[dim]
    return math.prod(x) // n * (n + (n - 1) + n)


def avgpool_macs(y: tuple[int, ...]) -> int:
    """y[N, C, *out] = avg_pool(x); thop: one per output element, whatever the kernel.

    # thop/vision/basic_hooks.py:106 count_avgpool (0.1.1)
    """
    return math.prod(y)


def adaptive_avgpool_macs(x: tuple[int, ...], y: tuple[int, ...]) -> int:
    """y[N, C, *out] = adaptive_avg_pool(x[N, C, *in]); thop: (prod(in / out) + 1) x output
    elements, the kernel a float ratio (float64, truncated once at the end).

    # thop/vision/basic_hooks.py:114 count_adap_avgpool, calc_func.py:69 (0.1.1)
    """
    kernel = math.prod(float(i) / float(o) for i, o in zip(x[2:], y[2:], strict=True))
    return int((kernel + 1) * math.prod(y))


#: thop/vision/calc_func.py:75 calculate_upsample; "trilinear" never reaches it (basic_hooks.py:126)
_UPSAMPLE_PER_ELEMENT = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 224 + 35}


def upsample_macs(y: tuple[int, ...], mode: str) -> int:
    """y[N, C, *out] = upsample(x, mode); thop: output elements x 1 (nearest), 5 (linear),
    11 (bilinear), 259 (bicubic); any other mode (trilinear) 0 with a logged warning.

    # thop/vision/basic_hooks.py:125 count_upsample, calc_func.py:75 (0.1.1)
    """
    return math.prod(y) * _UPSAMPLE_PER_ELEMENT.get(mode, 0)


def linear_macs(y: tuple[int, ...], in_features: int) -> int:
    """y[*, out] = linear(x[*, in]); thop: output elements x in, bias not counted.

    # thop/vision/basic_hooks.py:140 count_linear, calc_func.py:90 (0.1.1)
    """
    return math.prod(y) * in_features


def rnn_cell_macs(kind: str, input_size: int, hidden: int, bias: bool) -> int:
    """One step of one direction of an RNN / GRU / LSTM cell for one sample; thop:
    RNN  h*(i+h) + h (+2h bias);
    GRU  2 x [h*(h+i) + h (+2h)] + [h*(h+i) + h (+2h)] + h + 3h;
    LSTM 4 x [h*(i+h) + h (+2h)] + 3h + h.

    # thop/rnn_hooks.py:6 _count_rnn_cell, :24 _count_gru_cell, :56 _count_lstm_cell (0.1.1)
    """
    gate = hidden * (input_size + hidden) + hidden + (2 * hidden if bias else 0)
    if kind == "RNN":
        return gate
    if kind == "GRU":
        return 3 * gate + hidden + 3 * hidden
    return 4 * gate + 3 * hidden + hidden  # LSTM


def rnn_macs(kind: str, input_size: int, hidden: int, layers: int, bidirectional: bool, bias: bool,
             batch: int, steps: int) -> int:
    """[B, T, D x h] = rnn(x[B, T, i]) for nn.RNN / GRU / LSTM; thop: (first layer's cell +
    each later layer's cell on D x h inputs) x D x T x B (D = 2 if bidirectional); proj_size ignored.

    # thop/rnn_hooks.py:87 count_rnn, :124 count_gru, :161 count_lstm (0.1.1)
    """
    d = 2 if bidirectional else 1
    per_step = d * rnn_cell_macs(kind, input_size, hidden, bias)
    per_step += (layers - 1) * d * rnn_cell_macs(kind, hidden * d, hidden, bias)
    return per_step * steps * batch


# --- the hook table (thop/profile.py:21 register_hooks) ----------------------------------------

Rule = Callable[[nn.Module, tuple[Any, ...], Any], tuple[int, str]]


def _zero(m: nn.Module, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return 0, "zero_ops: 0"  # thop/vision/basic_hooks.py:18


def _conv(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return (conv_macs(shape_of(x[0]), shape_of(y), shape_of(m.weight), m.groups),
            "output elements x C_in/g x prod(k); bias not counted")


def _norm(m: nn.Module, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    affine = bool(getattr(m, "affine", False) or getattr(m, "elementwise_affine", False))
    return norm_macs(shape_of(x[0]), affine), "2 x input elements, x 2 if affine"


def _prelu(m: nn.Module, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return prelu_macs(shape_of(x[0])), "input elements"


def _leaky(m: nn.Module, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return 0, "count_relu: 0"  # thop/vision/basic_hooks.py:90, calc_func.py:47 returns 0


def _softmax(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return softmax_macs(shape_of(x[0]), m.dim), "rows x (3 x features - 1)"


def _avgpool(m: nn.Module, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return avgpool_macs(shape_of(y)), "output elements"


def _adaptive_avgpool(m: nn.Module, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return adaptive_avgpool_macs(shape_of(x[0]), shape_of(y)), "(prod(in/out) + 1) x output elements"


def _upsample(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return upsample_macs(shape_of(y), m.mode), f"output elements x {_UPSAMPLE_PER_ELEMENT.get(m.mode, 0)} ({m.mode})"


def _linear(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
    return linear_macs(shape_of(y), m.in_features), "output elements x in_features; bias not counted"


def _cell(kind: str) -> Rule:
    def rule(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:  # thop/rnn_hooks.py:15, :47, :78
        return (rnn_cell_macs(kind, m.input_size, m.hidden_size, m.bias) * int(x[0].shape[0]),
                f"{kind} cell x batch")
    return rule


def _rnn(kind: str) -> Rule:
    def rule(m: Any, x: tuple[Any, ...], y: Any) -> tuple[int, str]:
        seq = x[0]
        if isinstance(seq, nn.utils.rnn.PackedSequence):  # thop/rnn_hooks.py:93
            batch, steps = int(seq.batch_sizes.max()), int(seq.batch_sizes.shape[0])
        elif m.batch_first:
            batch, steps = int(seq.shape[0]), int(seq.shape[1])
        else:
            batch, steps = int(seq.shape[1]), int(seq.shape[0])
        macs = rnn_macs(kind, m.input_size, m.hidden_size, m.num_layers, m.bidirectional, m.bias, batch, steps)
        return macs, f"{kind} cells x layers x directions x steps x batch"
    return rule


RULES: dict[type[nn.Module], Rule] = {
    nn.ZeroPad2d: _zero,
    **dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _conv),
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.InstanceNorm1d,
                     nn.InstanceNorm2d, nn.InstanceNorm3d, nn.SyncBatchNorm), _norm),
    nn.PReLU: _prelu,
    nn.Softmax: _softmax,
    nn.ReLU: _zero,
    nn.ReLU6: _zero,
    nn.LeakyReLU: _leaky,
    **dict.fromkeys((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                     nn.AdaptiveMaxPool3d), _zero),
    **dict.fromkeys((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _avgpool),
    **dict.fromkeys((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), _adaptive_avgpool),
    nn.Linear: _linear,
    nn.Dropout: _zero,
    **dict.fromkeys((nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d), _upsample),
    nn.RNNCell: _cell("RNN"),
    nn.GRUCell: _cell("GRU"),
    nn.LSTMCell: _cell("LSTM"),
    nn.RNN: _rnn("RNN"),
    nn.GRU: _rnn("GRU"),
    nn.LSTM: _rnn("LSTM"),
    nn.Sequential: _zero,
    nn.PixelShuffle: _zero,
}


# --- naming what no hook sees ------------------------------------------------------------------

# --- the reproduction --------------------------------------------------------------------------

@dataclass
class _Calls:
    charges: list[tuple[int, str]]
    called: bool = False


def _walk(module: nn.Module, prefix: str, hooked_at: dict[int, _Calls], root: bool = False) -> Iterator[tuple[str, nn.Module, bool]]:
    """thop's dfs_count (thop/profile.py:214): (path, module, counted as a whole) for every
    module the walk reads; a module reached by two paths is read twice."""
    if root:
        yield prefix, module, False  # the root's own total_ops is read, its params never
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if id(child) in hooked_at and not isinstance(child, (nn.Sequential, nn.ModuleList)):
            yield path, child, True
        else:
            yield from _walk(child, path, hooked_at)


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """thop.profile's figures for ``model(*args, **kwargs)``, from hooks on fxcost's meta copy."""
    positional_call(model, args, kwargs, _CALLS)  # thop cannot call the model otherwise: neither can its reproduction
    # hooks go on by type *before* the forward: a lazy layer is still Lazy* then, so gets none
    types_before = {path: type(m) for path, m in model.named_modules()}

    def watch(shadow: nn.Module, margs: tuple[Any, ...], mkwargs: dict[str, Any]) -> tuple[nn.Module, dict[int, _Calls], UnseenOps]:
        modules = dict(shadow.named_modules())
        ruled = {id(m): RULES[types_before[p]] for p, m in modules.items() if types_before.get(p) in RULES}
        calls = {key: _Calls([]) for key in ruled}
        depth = [0]  # hooked modules (other than Sequential) now running

        def enter(m: nn.Module, x: tuple[Any, ...]) -> None:
            depth[0] += not isinstance(m, nn.Sequential)

        def leave(m: nn.Module, x: tuple[Any, ...], y: Any) -> None:
            depth[0] -= not isinstance(m, nn.Sequential)
            calls[id(m)].called = True
            calls[id(m)].charges.append(ruled[id(m)](m, x, y))

        unseen = UnseenOps(lambda: depth[0] > 0)
        targets = [m for p, m in modules.items() if id(m) in ruled]
        with hooked(list(dict.fromkeys(targets)), enter, leave), unseen:
            shadow(*margs, **mkwargs)
        return shadow, calls, unseen

    shadow, calls, unseen = run_static(model, args, kwargs, watch)
    charges: list[Charge] = []
    by_module: list[tuple[str, int]] = []
    for path, m, whole in _walk(shadow, "", calls, root=True):
        if id(m) not in calls:
            continue
        for macs, rule in calls[id(m)].charges:
            charges.append(Charge(path, type(m).__name__, type(m).__name__, macs, rule))
        if whole and calls[id(m)].called:  # count_parameters (basic_hooks.py:11) sets it on each call
            by_module.append((path, sum(p.numel() for p in m.parameters())))
    missing = _unruled(shadow, types_before)
    return Reproduction(
        tool="thop", version=VERSION, headline=HEADLINE, macs=sum(c.macs for c in charges), params=sum(n for _, n in by_module),
        charges=tuple(charges), unseen=tuple(missing + unseen.named("outside every hooked module")),
        params_by_module=tuple(by_module),
    )


def _unruled(shadow: nn.Module, types_before: dict[str, type[nn.Module]]) -> list[str]:
    """Module types thop has no rule for that hold parameters of their own, or are leaves."""
    found: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    for path, m in shadow.named_modules():
        kind = types_before.get(path, type(m))
        if kind in RULES:
            continue
        own = sum(p.numel() for p in m.parameters(recurse=False))
        if own or not any(True for _ in m.children()):
            found[kind.__name__] += 1
            uncounted[kind.__name__] += own
    return [f"{name} x{n} (no thop rule: 0 MACs, {uncounted[name]:,} own params not counted)"
            for name, n in sorted(found.items())]


# --- the tool itself ---------------------------------------------------------------------------

def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """``thop.profile(model, inputs=..., verbose=False)`` on a deep copy (it leaves the model in
    its training mode but registers and pops buffers on it)."""
    import copy
    import logging

    import thop

    inputs = positional_call(model, args, kwargs, _CALLS)
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # count_upsample logs a warning for trilinear
    try:
        macs, params = thop.profile(copy.deepcopy(model), inputs=inputs, verbose=False)
    finally:
        quiet.setLevel(level)
    return ToolFigures(macs=_exact(macs), params=_exact(params))


def _exact(x: float) -> int:
    n = int(x)
    if n != x:
        raise ValueError(f"thop returned {x!r}, not a whole number")
    return n


TOOL = PeerTool(
    name="thop",
    package="thop",
    version=VERSION,
    headline=HEADLINE,
    reproduce=reproduce,
    run_tool=run_tool,
    misses=(
        "only modules whose exact type is in register_hooks are priced; any other (nn.Embedding, nn.GELU, "
        "nn.SiLU, nn.GroupNorm, nn.MultiheadAttention, RMSNorm, a subclass) costs 0 and its params are not counted",
        "functional ops and tensor methods outside hooked modules cost 0: matmul, @, bmm, baddbmm, "
        "F.scaled_dot_product_attention, residual adds, F.interpolate, torch.relu, einsum",
        "lazy layers get no hook (their type is Lazy* when the hooks go on): 0 MACs, params not counted",
        "bias adds are not counted (linear, conv); ConvTranspose is priced on its output, not its input",
        "ReLU, ReLU6, LeakyReLU, max pooling, dropout: 0; softmax 3n - 1 per row; upsample x 1/5/11/259, trilinear 0",
        "params: a container's own parameters (class token, position embedding) are not counted; "
        "a weight tied between two hooked modules is counted twice",
    ),
    params_rule="p.numel() over each hooked module's parameters(): a module thop has no rule for (Embedding, GroupNorm, transformers' Conv1D, a Lazy* layer) or a container's own parameter (a class token) is not counted, a weight shared by two hooked modules is counted in each",
)
