"""fxcost against references that are not fxcost, and invariants, on every model tested:

- 2 x MACs equal torch.utils.flop_counter.FlopCounterMode's FLOPs over a real forward (it counts
  matmul- and conv-like ops at 2 per MAC, bias adds not at all, and nothing else);
- params equal the model's own unique-parameter count (tied tensors once);
- each leaf module's output shape equals a real forward's (forward hooks);
- --real and fake analyses agree;
- rows sum to the totals at every depth and by type; every figure is a non-negative int.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fxcost
from tests.conftest import flop_counter_flops, leaf_output_shapes, unique_param_count
from tests.zoo import CASES, Case

FIELDS = ("params", "weight_params", "bias_params", "trainable_params", "buffers", "macs", "flops",
          "activation_elements", "activation_bytes")


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest) -> tuple[Case, torch.nn.Module, torch.Tensor, fxcost.Report]:
    c: Case = request.param
    torch.manual_seed(0)
    model = c.build()
    x = torch.randn(c.shape)
    model(x)  # materialize lazy layers so the references see real parameters
    return c, model, x, fxcost.analyze(model, input_size=c.shape)


def test_macs_match_flop_counter(case: tuple) -> None:
    _, model, x, report = case
    assert 2 * report.total().macs == flop_counter_flops(model, x)


def test_params_match_the_model(case: tuple) -> None:
    _, model, _, report = case
    t = report.total()
    assert t.params == unique_param_count(model)
    assert t.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert t.buffers == sum(b.numel() for b in model.buffers())
    assert t.weight_params + t.bias_params == t.params


def test_output_shapes_match_a_real_forward(case: tuple) -> None:
    _, model, x, report = case
    real = leaf_output_shapes(model, x)
    ours: dict[str, list[tuple[int, ...]]] = {}
    for r in report.layers:
        if r.kind == "module":
            ours.setdefault(r.name, []).append(r.output_shape)
    assert ours == real


def test_real_mode_agrees(case: tuple) -> None:
    _, model, x, report = case
    real = fxcost.analyze(model, example_inputs=x, real=True)
    assert real.mode == "real"
    assert real.total() == report.total()
    assert [r.output for r in real.layers] == [r.output for r in report.layers]


def test_rows_sum_to_totals_at_every_depth(case: tuple) -> None:
    _, _, _, report = case
    total = report.total()
    max_depth = max(len(r.name.split(".")) for r in report.layers)
    views = [report, report.by_type()] + [report.by_module(d) for d in range(1, max_depth + 1)]
    for view in views:
        for f in FIELDS:
            assert sum(getattr(r, f) for r in view.layers) == getattr(total, f), (view.view, view.depth, f)
        # a group keeps its first member's id, so an id names the same place in every view
        ids = [r.id for r in view.layers]
        assert len(set(ids)) == len(ids) and set(ids) <= {r.id for r in report.layers}
    for r in report.layers:
        for f in FIELDS:
            v = getattr(r, f)
            assert isinstance(v, int) and v >= 0, (r.name, f)


def test_macs_scale_linearly_with_batch(case: tuple) -> None:
    c, model, _, report = case
    doubled = fxcost.analyze(model, input_size=(2 * c.shape[0], *c.shape[1:]))
    assert doubled.total().macs == 2 * report.total().macs
    assert doubled.total().params == report.total().params


def test_vgg19_matches_flop_counter() -> None:
    """The torchvision-style VGG-19: 19,632,062,464 MACs in conv + linear layers, half the FLOPs
    FlopCounterMode reports over a real forward (~1 s on this machine)."""
    from examples.vgg import vgg19

    model = vgg19()
    report = fxcost.analyze(model, input_size=(1, 3, 224, 224))
    types = {r.type: r.macs for r in report.by_type().layers}
    assert types["Conv2d"] + types["Linear"] == report.total().macs == 19_632_062_464
    assert flop_counter_flops(model, torch.randn(1, 3, 224, 224)) == 2 * 19_632_062_464


def test_tied_and_shared_counted_once() -> None:
    from tests.zoo import CalledTwice, Tied

    tied = fxcost.analyze(Tied(), input_size=(3, 32))
    # enc.weight 64*32 (also dec2.weight) + mid 64*64 + 64 + dec.weight 32*64 (an untied copy)
    assert tied.total().params == 64 * 32 + 64 * 64 + 64 + 32 * 64
    twice = fxcost.analyze(CalledTwice(), input_size=(5, 16))
    block_rows = [r for r in twice.layers if r.name == "block.0"]
    assert len(block_rows) == 2  # two calls, two rows
    assert [r.params for r in block_rows] == [16 * 16 + 16, 0]  # params counted at the first call
    assert [r.macs for r in block_rows] == [5 * 16 * 16] * 2  # MACs at both


def test_unused_module_gets_a_row() -> None:
    from tests.zoo import WithUnused

    report = fxcost.analyze(WithUnused(), input_size=(4, 8))
    unused = [r for r in report.layers if r.kind == "unused"]
    assert [(r.name, r.params) for r in unused] == [("spare", 8 * 100 + 100)]


def test_functional_convs_count_the_same() -> None:
    from tests.zoo import FunctionalConvs

    report = fxcost.analyze(FunctionalConvs(), input_size=(2, 8, 10, 10))
    conv_macs = [r.macs for r in report.layers if r.macs]
    assert conv_macs == [2 * 10 * 10 * 8 * 8 * 9] * 3  # nn.Conv2d, F.conv2d, torch.conv2d


def test_report_is_frozen() -> None:
    report = fxcost.analyze(fxcost_model(), input_size=(1, 4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.layers[0].macs = 1  # type: ignore[misc]


def fxcost_model() -> torch.nn.Module:
    return torch.nn.Linear(4, 2)
