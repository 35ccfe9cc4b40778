"""Backward counts of a training step (issue 12, part 1): ``analyze(..., train=True)`` runs the
backward of the default loss on data-free tensors and prices its ops with the same registry.

The reference is PyTorch's own FlopCounterMode over a real ``loss.backward()`` on the same model
and inputs (fused CPU paths off: the math attention backend, mkldnn off), in total and per
top-level module (its module tracker attributes backward work to the module whose forward made
it; the backward share of a module is its count over forward and backward less its count over
the forward alone)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from examples import hf_models
from examples.resnet import resnet18
from examples.rnn import lstm_lm
from examples.vit import vit_b_16
from fxcost.cli import main

MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[Any, ...]]]] = {
    "resnet18": (resnet18, lambda: (torch.randn(2, 3, 64, 64),)),
    "lstm_lm": (lstm_lm, lambda: (torch.randint(0, 100, (2, 12)),)),
    "vit_b_16": (vit_b_16, lambda: (torch.randn(1, 3, 224, 224),)),
    "llama_small": (hf_models.llama_small, lambda: (torch.randint(0, 1000, (1, 32)),)),
}


def _loss(out: Any) -> torch.Tensor:
    """fxcost's default loss, written again here: the first float output, as float32, summed."""
    if hasattr(out, "logits"):
        out = out.logits
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.float().sum()


def flop_counter(model: nn.Module, inputs: tuple[Any, ...], backward: bool) -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), counter:
        out = model(*inputs)
        if backward:
            _loss(out).backward()
    return counter


def backward_reference(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[int, dict[str, int]]:
    """FlopCounterMode's backward FLOPs in total and per top-level module."""
    model.train()
    both, forward = flop_counter(model, inputs, True), flop_counter(model, inputs, False)
    total = both.get_total_flops() - forward.get_total_flops()
    name = type(model).__name__
    per_module = {}
    for child, _ in model.named_children():
        key = f"{name}.{child}"
        per_module[child] = (sum(both.get_flop_counts().get(key, {}).values())
                             - sum(forward.get_flop_counts().get(key, {}).values()))
    return int(total), per_module


@pytest.mark.parametrize("name", MODELS)
def test_backward_macs_equal_flop_counter_over_a_real_backward(name: str) -> None:
    if name == "llama_small":
        pytest.importorskip("transformers")
    build, make_inputs = MODELS[name]
    torch.manual_seed(0)
    model, inputs = build(), make_inputs()
    report = fxcost.analyze(model, example_inputs=inputs, train=True)
    total, per_module = backward_reference(model, inputs)
    assert 2 * report.total().backward_macs == total
    assert not report.unsupported, [(u.op, u.where) for u in report.unsupported]
    assert report.mode != "real"
    if name != "llama_small":  # transformers' model nests its layers one level deeper (model.layers)
        ours = {r.name: 2 * r.backward_macs for r in report.by_module(1).layers}
        if name == "vit_b_16":
            # FlopCounterMode's module tracker counts conv_proj's weight gradient (196 x 768 x 3 x 16
            # x 16 MACs = 231,211,008 FLOPs) under conv_proj and again under dropout, whose backward
            # it still holds open then (the positions and class token join between the two); its
            # total counts it once, as fxcost does, under conv_proj
            assert per_module.pop("dropout") == 2 * 196 * 768 * 3 * 16 * 16 == ours["conv_proj"]
        assert {k: ours.get(k, 0) for k in per_module} == per_module


def test_a_frozen_backbone_gets_no_weight_gradients() -> None:
    model = resnet18()
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc.weight.requires_grad_(True)
    model.fc.bias.requires_grad_(True)
    x = torch.randn(2, 3, 64, 64)
    report = fxcost.analyze(model, example_inputs=(x,), train=True)
    # by hand: only fc's weight gradient, dW = dy^T x: 2 x 512 x 1000; nothing flows further back
    assert report.total().backward_macs == 2 * 512 * 1000 == backward_reference(model, (x,))[0] // 2
    assert report.total().trainable_params == 512 * 1000 + 1000
    conv_rows = [r for r in report.layers if r.type == "Conv2d"]
    assert conv_rows and all(r.backward_macs == 0 for r in conv_rows)


def test_backward_by_hand_on_a_linear_layer() -> None:
    # y = x W^T + b, x: 4 x 8, W: 16 x 8; the loss sums y. dW = dy^T x: 16 x 4 x 8 MACs; dx is not
    # needed (x requires no grad); db = sum(dy): 4 x 16 FLOPs
    report = fxcost.analyze(nn.Linear(8, 16), input_size=(4, 8), train=True)
    assert report.total().backward_macs == 16 * 4 * 8
    ops = {o.op: o for r in report.layers for o in r.ops if o.backward}
    assert ops["aten::mm"].macs == 16 * 4 * 8 and ops["aten::sum"].flops == 4 * 16


def test_forward_only_json_has_no_backward_keys_and_a_training_one_has_them(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "examples/resnet.py:resnet18"
    assert main(["analyze", spec, "--input", "1x3x32x32", "-f", "json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "backward_macs" not in plain["totals"] and all("backward_macs" not in r for r in plain["layers"])
    assert main(["analyze", spec, "--input", "2x3x32x32", "-f", "json", "--train"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["totals"]["backward_macs"] > 0 and trained["totals"]["backward_flops"] > 0
    assert trained["totals"]["backward_macs"] == sum(r.get("backward_macs", 0) for r in trained["layers"])
    assert fxcost.Report.from_dict(trained).total().backward_macs == trained["totals"]["backward_macs"]
    assert main(["analyze", spec, "--input", "2x3x32x32", "--train"]) == 0
    table = capsys.readouterr().out
    assert "backward MACs" in table and "Training step FLOPs" in table


def test_train_refuses_what_it_cannot_do(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    # the fake run trains as the graph does (tests/test_trace_core.py): no refusal
    assert fxcost.analyze(nn.Linear(2, 2), input_size=(1, 2), train=True, tracer="eager").total().backward_macs == 2 * 1 * 2

    class Indices(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.argmax(-1)

    with pytest.raises(Exception, match="no floating-point output"):
        fxcost.analyze(Indices(), input_size=(2, 3), train=True)
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])])
    onnx.save(onnx.helper.make_model(graph), path)
    assert main(["analyze", str(path), "--train"]) == 2
    assert "--train" in capsys.readouterr().err


# --- found in review ----------------------------------------------------------------------------


def test_the_callers_backward_hooks_do_not_run() -> None:
    seen: list[str] = []
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model[0].register_full_backward_hook(lambda m, gi, go: seen.append(go[0].device.type))
    report = fxcost.analyze(model, input_size=(2, 4), train=True)
    assert seen == [] and report.total().backward_macs == 4 * 2 * 4
    assert any("backward hooks not run" in n for n in report.trace.notes)


def test_a_real_run_does_not_backpropagate_into_the_callers_graph() -> None:
    encoder, head = nn.Linear(16, 64), nn.Linear(64, 8)
    x = encoder(torch.randn(5, 16))  # part of the caller's graph
    report = fxcost.analyze(head, example_inputs=(x,), train=True, real=True)
    assert encoder.weight.grad is None
    # by hand: head's weight gradient 8 x 5 x 64 and its input gradient 5 x 8 x 64 (x asks for one)
    assert report.total().backward_macs == 2 * 8 * 5 * 64
    meta = fxcost.analyze(head, example_inputs=(x.detach().to("meta").requires_grad_(),), train=True)
    assert meta.total().backward_macs == report.total().backward_macs


def test_a_dataclass_output_trains() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> Out:
            return Out(self.fc(x))

    assert fxcost.analyze(Net(), input_size=(2, 4), train=True).total().backward_macs == 3 * 2 * 4


def test_a_genuine_shape_error_is_not_run_for_real() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + y

    ran: list[bool] = []
    model = Bad()
    model.fc.register_forward_pre_hook(lambda m, a: ran.append(a[0].device.type == "cpu"))
    with pytest.raises(fxcost.errors.FxcostError):
        fxcost.analyze(model, example_inputs=(torch.randn(2, 4), torch.randn(3, 4)))
    assert not any(ran)  # never on the caller's real data


def test_transformers_moe_experts_train() -> None:
    tf = pytest.importorskip("transformers")

    def mixtral(implementation: str) -> nn.Module:
        torch.manual_seed(0)
        return tf.MixtralForCausalLM(tf.MixtralConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, experts_implementation=implementation,
            use_cache=False))

    ids = torch.randint(0, 128, (1, 6))
    batched = fxcost.analyze(mixtral("batched_mm"), example_inputs=(ids,), train=True)
    assert 2 * batched.total().backward_macs == backward_reference(mixtral("batched_mm"), (ids,))[0]
    # grouped_mm's backward is transformers' custom grouped_mm_fallback_backward, which
    # FlopCounterMode counts as 0: it must cost what the batched experts' backward costs
    grouped = fxcost.analyze(mixtral("grouped_mm"), example_inputs=(ids,), train=True)
    assert grouped.total().backward_macs == batched.total().backward_macs
    assert not batched.unsupported and not grouped.unsupported


def test_backward_formulas_of_resampling_and_padding_by_hand() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = nn.functional.pad(self.conv(x), (1, 1, 1, 1), mode="reflect")
            return nn.functional.interpolate(y, scale_factor=2, mode="bilinear")

    report = fxcost.analyze(Net(), input_size=(1, 2, 4, 4), train=True)
    ops = {o.op: o for r in report.layers for o in r.ops if o.backward}
    assert not report.unsupported
    # bilinear: each of the 1 x 2 x 12 x 12 output gradients weighted into 4 taps, 2 FLOPs a tap
    assert ops["aten::upsample_bilinear2d_backward"].flops == 2 * 4 * (2 * 12 * 12)
    # reflect padding: each of the 1 x 2 x 6 x 6 gradients added into its source, 1 FLOP each
    assert ops["aten::reflection_pad2d_backward"].flops == 2 * 6 * 6
