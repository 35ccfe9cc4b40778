"""calflops 0.3.2 (``calflops.calculate_flops``) reproduced: DeepSpeed's patched-functional profiler,
forked, with the formulas of its fork point.

calflops wraps ~40 functions of ``torch.nn.functional``, ``torch`` and ``torch.Tensor``
(calflops/pytorch_ops.py:452-525) and sums each module's priced calls through per-module forward
hooks (calflops/calculate_pipline.py:71-97); the mechanism is reproduced in
:mod:`fxcost.peers._patched`. Its own choices, kept here with their blind spots:

* no ``torch.bmm``/``mm``, no ``Tensor.__matmul__`` (``q @ k`` costs 0), no
  ``scaled_dot_product_attention``: attention through SDPA or ``@`` costs nothing;
* ``conv_transpose`` divides the per-group filter count by the groups again, and its bias term
  uses the forward conv's output size (pytorch_ops.py:128-171);
* interpolate by ``scale_factor`` counts the input size, the scale being dropped (pytorch_ops.py:248);
* ``add``/``mul`` pair broadcast dimensions from the left (pytorch_ops.py:328-350);
* params are those with ``requires_grad`` (calculate_pipline.py:135), read before the forward, so a
  lazy module fails there; the total walks ``children()`` recursively (utils.py:253), so a module
  registered under two parents is summed twice.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from fxcost.peers import _patched
from fxcost.peers._patched import Convention, Rule, common_rules
from fxcost.peers.base import PeerTool, Reproduction, ToolFigures

VERSION = "0.3.2"

_RULES: dict[Any, Rule] = common_rules(
    conv_transpose=_patched.conv_transpose_calflops, upsample=_patched.upsample_calflops, elementwise=_patched.elementwise_calflops,
)

CONVENTION = Convention(
    tool="calflops",
    version=VERSION,
    rules=_RULES,
    # inside F.multi_head_attention_forward the patched linear, softmax and torch.baddbmm are
    # priced; torch.bmm and scaled_dot_product_attention are not patched (pytorch_ops.py:509-512)
    mha={"linear": _patched.linear, "baddbmm": _patched.addmm, "softmax": _patched.per_element,
         "bmm": None, "scaled_dot_product_attention": None},
    trainable_only=True,
    per_child_path=True,
    rnn_source="calflops/pytorch_ops.py:397-439 RNN hook: per-layer weight FLOPs x batch x seq, 0 MACs",
)


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """calflops' MACs, FLOPs and params for ``model(*args, **kwargs)``, on fxcost's weightless copy."""
    return _patched.reproduce(CONVENTION, model, args, kwargs)


def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """``calculate_flops(model=..., args=[...], kwargs={...}, output_as_string=False, print_results=False)``
    as calflops' README calls it, on a copy of ``model`` (it leaves the model in eval mode)."""
    import calflops
    from calflops import calculate_pipline, pytorch_ops

    try:
        flops, macs, params = calflops.calculate_flops(
            model=copy.deepcopy(model), args=list(args), kwargs=dict(kwargs),
            output_as_string=False, print_results=False,
        )
    except Exception:
        # calflops restores its patches only on success; left in place they count twice next time
        def reload() -> None:
            pytorch_ops._reload_functionals(calculate_pipline.old_functions)
            pytorch_ops._reload_tensor_methods(calculate_pipline.old_functions)

        _patched.restore_after_failure(reload, calculate_pipline.module_flop_count, calculate_pipline.module_mac_count)
        raise
    return ToolFigures(macs=int(macs), params=int(params), flops=int(flops))


TOOL = PeerTool(
    name="calflops",
    package="calflops",
    version=VERSION,
    headline="MACs",
    reproduce=reproduce,
    run_tool=run_tool,
    misses=(
        "attention: scaled_dot_product_attention, torch.bmm and `q @ k` are not priced (0)",
        "`x + y`, `x * y` and every other operator: not priced (only x.add(y), torch.mul(...) are)",
        "tanh, exp, pow, sub, div, mean, hardtanh (nn.ReLU6), rms_norm: not priced",
        "pooling and activations: FLOPs only (input elements), 0 MACs; norms 0 MACs",
        "RNN/LSTM/GRU: FLOPs from weight shapes only, 0 MACs",
        "ConvTranspose: MACs divided by the groups twice; its bias term sized like a forward conv",
        "interpolate(scale_factor=s): FLOPs = input elements (the scale is dropped)",
        "params: only requires_grad ones; lazy modules fail before the forward",
        "fails on non-tensor args/kwargs (calls .to(device) on each) and leaves torch patched",
    ),
)
