"""DeepSpeed's flops profiler 0.19.8 (``deepspeed.profiling.flops_profiler.get_model_profile``) reproduced.

The profiler wraps ~45 functions of ``torch.nn.functional``, ``torch``, ``torch.Tensor`` and
``einops`` (deepspeed/profiling/flops_profiler/profiler.py:890-973) and sums each module's priced
calls through per-module forward hooks (profiler.py:88-114); the mechanism, shared with its fork
calflops, is reproduced in :mod:`fxcost.peers._patched`. What 0.19.8 does beyond calflops:

* it also prices ``torch.mm``/``bmm``, ``Tensor.mm``/``bmm``/``__matmul__`` (``q @ k``) and
  ``F.scaled_dot_product_attention`` (two matmuls, profiler.py:863), so attention is counted;
* ``conv_transpose`` (profiler.py:614), ``interpolate`` by scale (profiler.py:720) and
  ``add``/``mul`` broadcasting (profiler.py:846) have been fixed;
* params are every parameter, trainable or not (profiler.py:185-199), read after one warm-up
  forward (profiler.py:1256), so lazy modules are materialized; the total is a sum over
  ``modules()``, each module once (profiler.py:1178).

``einops.einsum`` is patched too (profiler.py:972) and then calls the patched ``torch.einsum``;
the reproduction sees only the inner ``torch.einsum`` (named in its misses).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from fxcost.peers import _patched
from fxcost.peers._patched import Convention, Rule, common_rules
from fxcost.peers.base import PeerTool, Reproduction, ToolFigures

VERSION = "0.19.8"

_MATMUL = "prod(a) x b[-1] MACs; FLOPs 2 x MACs"


def _rules() -> dict[Any, Rule]:
    rules = common_rules(
        conv_transpose=_patched.conv_transpose_deepspeed, upsample=_patched.upsample_deepspeed, elementwise=_patched.elementwise_deepspeed,
    )
    for owner, prefix in ((torch, "torch"), (torch.Tensor, "Tensor")):  # profiler.py:953-956
        rules[owner.mm] = Rule(f"{prefix}.mm", _patched.price_matmul, _MATMUL)
        rules[owner.bmm] = Rule(f"{prefix}.bmm", _patched.price_matmul, _MATMUL)
    rules[torch.nn.functional.scaled_dot_product_attention] = Rule(  # profiler.py:946
        "F.scaled_dot_product_attention", _patched.price_sdpa, "Q K^T and P V as matmuls: prod(q) x S + prod(q[:-1]) x S x Ev MACs",
    )
    return rules


CONVENTION = Convention(
    tool="deepspeed",
    version=VERSION,
    rules=_rules(),
    # every call F.multi_head_attention_forward makes inside is a patched name here
    mha={"linear": _patched.linear, "baddbmm": _patched.addmm, "softmax": _patched.per_element,
         "bmm": _patched.matmul, "scaled_dot_product_attention": _patched.sdpa},
    # Tensor.__matmul__ is patched (profiler.py:952): `a @ b` is priced as torch.matmul
    operators={"@": Rule("Tensor.__matmul__", _patched.price_matmul, _MATMUL)},
    trainable_only=False,
    per_child_path=False,
    rnn_source="deepspeed profiler.py:1067-1120 RNN hook: per-layer weight FLOPs x batch x seq, 0 MACs",
)


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """DeepSpeed's MACs, FLOPs and params for ``model(*args, **kwargs)``, on fxcost's weightless copy."""
    return _patched.reproduce(CONVENTION, model, args, kwargs)


def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """``get_model_profile(model=..., args=[...], kwargs={...}, print_profile=False, as_string=False)``
    as DeepSpeed's docs call it, on a copy of ``model`` (it leaves the model in eval mode). Imports
    on a CPU-only machine (the accelerator falls back to CPU, with a warning in its log)."""
    from deepspeed.profiling.flops_profiler import get_model_profile, profiler

    quiet = logging.getLogger("DeepSpeed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "profiler started/finished" info lines
    try:
        flops, macs, params = get_model_profile(
            model=copy.deepcopy(model), args=list(args), kwargs=dict(kwargs), print_profile=False, as_string=False,
        )
    except Exception:
        # the profiler restores its patches only on success; left in place they count twice next time
        def reload() -> None:
            profiler._reload_functionals()
            profiler._reload_tensor_methods()
            profiler._reload_miscellaneous_operations()

        _patched.restore_after_failure(reload, profiler.module_flop_count, profiler.module_mac_count)
        raise
    finally:
        quiet.setLevel(level)
    return ToolFigures(macs=int(macs), params=int(params), flops=int(flops))


TOOL = PeerTool(
    name="deepspeed",
    package="deepspeed",
    version=VERSION,
    headline="MACs",
    reproduce=reproduce,
    run_tool=run_tool,
    misses=(
        "`x + y`, `x * y` and every operator but `@`: not priced (only x.add(y), torch.mul(...) are)",
        "tanh, exp, pow, sub, div, mean, hardtanh (nn.ReLU6), rms_norm: not priced",
        "pooling and activations: FLOPs only (input elements), 0 MACs; norms 0 MACs",
        "SDPA: the two matmuls only, whatever the mask or causality (a causal mask halves the truth)",
        "RNN/LSTM/GRU: FLOPs from weight shapes only, 0 MACs",
        "einops.einsum: priced twice by the tool (it and the torch.einsum inside); reproduced once",
        "params: every parameter, frozen ones included",
    ),
)
