"""Every zoo model (examples/zoo.py: classic CNNs, ViT, RNNs, odd cases, transformers models
from their configs) checked against references that are not fxcost:

- 2 x fxcost's MACs == FLOPs of PyTorch's own ``FlopCounterMode`` over a real forward, exactly;
- params == the model's unique parameter count (ties once), and the published figure if any;
- the report's outputs == the shapes a real forward returns.

The reference forward takes PyTorch's unfused paths, because on CPU FlopCounterMode silently
counts 0 for the fused kernels: ``sdpa_kernel(MATH)`` instead of
``_scaled_dot_product_flash_attention_for_cpu``; grad enabled, which keeps
``nn.MultiheadAttention`` off ``_native_multi_head_attention`` (its fast path needs no_grad);
mkldnn off, which keeps LSTMs off ``mkldnn_rnn_layer``. fxcost counts those fused kernels too
(tests/test_formulas.py checks their formulas against these same unfused paths).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from examples.zoo import HF_ZOO, ZOO, ZooModel
from fxcost.pytorch.recorder import OpRecorder
from tests.conftest import unique_param_count

# Forwards that branch on tensor values: meta tensors have none, so these run with real=True
# (and test_tracing.py checks the message a user gets without it).
NEEDS_REAL = {"data_dependent_branch", "root_data_dependent"}


def _mv_flops(a_shape: Any, b_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # FlopCounterMode has no formula for aten::mv (x @ vector), so it would count 0; this is
    # the reference's own count, written from the definition: [m, n] @ [n] is m*n multiply-adds.
    m, n = a_shape
    return 2 * m * n


def reference(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, Any]:
    """FlopCounterMode's total over a real forward on the unfused paths, and the output."""
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.mv: _mv_flops})
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), counter:
        out = model(*args, **kwargs)
    return int(counter.get_total_flops()), out


def flat_shapes(out: Any) -> list[tuple[int, ...]]:
    """Shapes of the tensors in a real output, in order (dataclasses by field)."""
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [s for f in dataclasses.fields(out) for s in flat_shapes(getattr(out, f.name))]
    leaves, _ = tree_flatten(out)
    return [tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("entry", [*ZOO, *HF_ZOO], ids=lambda e: e.name)
def test_zoo_model_matches_pytorch(entry: ZooModel) -> None:
    if entry in HF_ZOO:
        pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = entry.build()
    args, kwargs = entry.inputs()
    report = fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs, real=entry.name in NEEDS_REAL)
    flops, out = reference(model, args, kwargs)  # after fxcost: lazy layers materialize here

    totals = report.total()
    assert 2 * totals.macs == flops, f"{entry.name}: fxcost MACs x2 = {2 * totals.macs:,}, FlopCounterMode = {flops:,}"
    assert totals.params == unique_param_count(model)
    if entry.params is not None:
        assert totals.params == entry.params
    assert [o.shape for o in report.outputs] == flat_shapes(out)
    assert not report.unsupported, [(u.op, u.where) for u in report.unsupported]
    # every row and every roll-up adds up to the totals
    assert all(isinstance(getattr(r, f), int) and getattr(r, f) >= 0 for r in report.layers
               for f in ("params", "macs", "flops", "activation_elements"))
    for view in (report.by_type(), report.by_module(1), report.by_module(2), report.by_module(3)):
        assert view.total() == totals
    # the JSON reads back into the same records, in every view
    for view in (report, report.by_type(), report.by_module(2)):
        assert fxcost.Report.from_dict(json.loads(json.dumps(view.to_dict()))) == view


def test_resnet50_published_gmacs() -> None:
    # torchvision's table lists ResNet-50 at 4.09 GFLOPS, which are multiply-accumulates
    from examples.resnet import resnet50

    report = fxcost.analyze(resnet50(), input_size=(1, 3, 224, 224))
    assert report.total().params == 25_557_032
    assert round(report.total().macs / 1e9, 2) == 4.09  # as published; the exact count is checked against FlopCounterMode


def test_zoo_has_30_architectures() -> None:
    assert len({e.name for e in [*ZOO, *HF_ZOO]}) >= 30


def _built(entry: ZooModel) -> tuple[torch.nn.Module, tuple[Any, ...], dict[str, Any]]:
    """The entry's model and inputs (a transformers one skipped where transformers is missing)."""
    if entry in HF_ZOO:
        pytest.importorskip("transformers")
    torch.manual_seed(0)
    args, kwargs = entry.inputs()
    return entry.build(), args, kwargs


def _both_ways(analysis: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report's JSON with the recorder's shape cache (the default) and without it."""
    cached = analysis().to_dict()
    OpRecorder.REUSE = False
    try:
        uncached = analysis().to_dict()
    finally:
        OpRecorder.REUSE = True
    return cached, uncached


@pytest.mark.parametrize("entry", [*ZOO, *HF_ZOO], ids=lambda e: e.name)
def test_shape_cache_changes_nothing(entry: ZooModel) -> None:
    # the recorder answers a repeated call (same op, same argument metadata: the second of
    # twelve identical blocks) from its cache instead of running the meta kernel and the formula
    # again; every figure, row, edge and the peak memory must be what running every op gives
    model, args, kwargs = _built(entry)
    cached, uncached = _both_ways(lambda: fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs,
                                                         real=entry.name in NEEDS_REAL, traffic=True))
    assert cached == uncached


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny", "hf_llama_small", "lstm_lm", "mha_model"])
def test_shape_cache_changes_nothing_in_training(name: str) -> None:
    # the backward's ops go through the same cache (fxcost.pytorch.backward.BackwardRecorder)
    model, args, kwargs = _built(next(e for e in [*ZOO, *HF_ZOO] if e.name == name))
    cached, uncached = _both_ways(lambda: fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs, train=True))
    assert cached == uncached


def test_a_factory_call_is_not_answered_from_the_cache() -> None:
    # a call with no tensor argument takes its dtype (and device) from the defaults in force, not
    # from its arguments: torch itself gives float64 after set_default_dtype, and so must the recorder
    recorder = OpRecorder(fxcost.DEFAULT_REGISTRY)
    try:
        with recorder:
            first = torch.zeros(3, device="meta")
            torch.set_default_dtype(torch.float64)
            second = torch.zeros(3, device="meta")
    finally:
        torch.set_default_dtype(torch.float32)
    assert (first.dtype, second.dtype) == (torch.float32, torch.float64)
