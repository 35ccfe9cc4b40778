"""The public model zoos, exact (issue 22): the ops their models dispatch that fxcost had no formula
for, priced by hand arithmetic written here where FlopCounterMode has none.

So far: ``aten::linalg_solve_triangular`` (the GatedDeltaNet decoders: Qwen3-Next, Qwen3.5,
OLMo-hybrid, Lara), ``aten::polar`` (DeepSeek-V2, Llama-4's rotary embedding), ``aten::_is_all_true``
(BLT, Gemma-3n, SigLIP-2, ShieldGemma-2's checks)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import fxcost


def _substitution_macs(n: int, k: int, batch: int) -> tuple[int, int]:
    """Forward substitution written out: row i of each of the k right-hand sides takes i
    multiply-adds with the values solved before it, and one division by the diagonal."""
    macs = divisions = 0
    for _ in range(batch):
        for _ in range(k):
            for i in range(n):
                macs += i
                divisions += 1
    return macs, divisions


class _Op(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("unit", "left"), [(False, True), (True, True), (False, False)])
def test_a_triangular_solve_by_hand(unit: bool, left: bool) -> None:
    a, b = torch.randn(2, 4, 4).tril(), torch.randn(2, 4, 3) if left else torch.randn(2, 3, 4)
    solve = _Op(lambda a, b: torch.linalg.solve_triangular(a, b, upper=False, left=left, unitriangular=unit))
    total = fxcost.analyze(solve, example_inputs=(a, b)).total()
    macs, divisions = _substitution_macs(n=4, k=3, batch=2)
    assert (macs, divisions) == (2 * 3 * (0 + 1 + 2 + 3), 2 * 3 * 4) == (36, 24)
    assert total.macs == macs and total.flops == 2 * macs + (0 if unit else divisions)


def test_polar_and_is_all_true_by_hand() -> None:
    r, theta = torch.rand(5, 7), torch.rand(5, 7)
    total = fxcost.analyze(_Op(torch.polar), example_inputs=(r, theta)).total()
    assert (total.macs, total.flops) == (0, 4 * 5 * 7)  # cos, sin and two multiplies per element
    flags = torch.ones(6, 3, dtype=torch.bool)
    report = fxcost.analyze(_Op(lambda x: torch.ops.aten._is_all_true(x)), example_inputs=(flags,))
    assert report.total().flops == 6 * 3 and not report.unsupported  # each element read into the running AND


class _Shapes(TorchDispatchMode):
    """The shapes of the ops FlopCounterMode has no formula for, as a real forward calls them."""

    def __init__(self) -> None:
        super().__init__()
        self.solves: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []
        self.grouped: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if name == "aten::linalg_solve_triangular":
            self.solves.append((tuple(args[0].shape), tuple(args[1].shape), bool(kwargs.get("unitriangular", False))))
        elif name == "aten::_grouped_mm":
            self.grouped.append((tuple(args[0].shape), tuple(args[1].shape)))
        return func(*args, **kwargs)


def test_qwen3_next_is_exact() -> None:
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Qwen3NextForCausalLM"):
        pytest.skip("this transformers has no Qwen3-Next")
    config = tf.Qwen3NextConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_num_value_heads=4,
                                linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                                moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4,
                                num_experts_per_tok=2)
    torch.manual_seed(0)
    model = tf.Qwen3NextForCausalLM(config).eval()
    ids = torch.randint(0, 128, (2, 16))
    report = fxcost.analyze(model, example_inputs=(ids,))
    assert not report.unsupported and report.trace.method == "eager"  # the eager branch, not export's loop
    assert report.total().params == sum(p.numel() for p in model.parameters())
    counter, shapes = FlopCounterMode(display=False), _Shapes()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), counter, shapes:
        model(ids)
    # FlopCounterMode prices neither op: the triangular solves by substitution (above), the grouped
    # expert matmul [tokens, K] x [experts, K, N] as one [K] x [K, N] product per routed token
    solved = 0
    for a, b, _ in shapes.solves:
        n, k = a[-1], b[-1]
        batch = 1
        for d in b[:-2]:
            batch *= d
        solved += _substitution_macs(n, k, batch)[0]
    grouped = sum(x[0] * x[1] * w[-1] for x, w in shapes.grouped)
    assert shapes.solves and shapes.grouped
    assert 2 * report.total().macs == counter.get_total_flops() + 2 * (solved + grouped)


# --- timm: and tv: specs ------------------------------------------------------------------------------

def _zoo(spec: str, shape: tuple[int, ...]) -> None:
    """The spec's model with random weights on the CPU: fxcost's count on the meta copy against
    FlopCounterMode over a real forward (mkldnn and fused attention off), params against its own."""
    from fxcost.loading.zoos import load_zoo

    torch.manual_seed(0)
    model, _ = load_zoo(spec, meta=False)
    x = torch.randn(*shape)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(x)
    report = fxcost.analyze(model, example_inputs=(x,))
    assert not report.unsupported, report.unsupported
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


@pytest.mark.parametrize(("spec", "shape"), [
    ("timm:resnet18", (1, 3, 64, 64)), ("timm:convnext_atto", (1, 3, 64, 64)),
    ("timm:vit_tiny_patch16_224", (1, 3, 224, 224)), ("timm:tf_efficientnet_b0", (1, 3, 64, 64)),
    ("timm:mobilenetv3_small_100", (1, 3, 64, 64)),
])
def test_timm_models(spec: str, shape: tuple[int, ...]) -> None:
    pytest.importorskip("timm")
    _zoo(spec, shape)


@pytest.mark.parametrize(("spec", "shape"), [
    ("tv:resnet18", (1, 3, 64, 64)), ("tv:mobilenet_v3_small", (1, 3, 64, 64)), ("tv:squeezenet1_0", (1, 3, 64, 64)),
    ("tv:r3d_18", (1, 3, 4, 32, 32)), ("tv:swin3d_t", (1, 3, 4, 32, 32)), ("tv:fcn_resnet50", (1, 3, 64, 64)),
    ("tv:regnet_y_400mf", (1, 3, 64, 64)),  # its constructor cannot run on meta: built on the CPU
])
def test_torchvision_models(spec: str, shape: tuple[int, ...]) -> None:
    # swin3d_t: its torch.fx.wrap'ped window helper mutates its argument; the fake run counts it
    pytest.importorskip("torchvision")
    _zoo(spec, shape)


@pytest.mark.parametrize(("spec", "shape"), [
    ("tv:resnet50", "1x3x224x224"), ("tv:inception_v3", "1x3x299x299"), ("tv:vit_b_16", "1x3x224x224"),
    ("tv:r3d_18", "1x3x16x112x112"), ("tv:fcn_resnet50", "1x3x520x520"),
    ("timm:convnext_tiny", "1x3x224x224"), ("timm:vit_base_patch16_384", "1x3x384x384"),
])
def test_a_zoo_model_brings_its_own_input_size(spec: str, shape: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fxcost.loading.zoos import default_input, load_zoo

    pytest.importorskip(spec.split(":")[0].replace("tv", "torchvision"))
    model, _ = load_zoo(spec)
    found = default_input(spec, model)
    assert found is not None and found[0] == shape
    assert next(model.parameters()).device.type == "meta"  # no weights were made, none downloaded


def test_zoo_specs_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fxcost.cli import main

    pytest.importorskip("torchvision")
    assert main(["analyze", "tv:resnet18", "-f", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == "fxcost: note: --input 1x3x224x224, resnet18's own input size (its first weights' crop size)\n"
    report = json.loads(out)
    assert report["inputs"][0]["shape"] == [1, 3, 224, 224] and report["totals"]["params"] == 11_689_512  # torchvision's figure
    assert main(["analyze", "torchvision:resnet18", "--input", "2x3x32x32", "--arg", "num_classes=10", "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["params"] == 11_689_512 - 1000 * 513 + 10 * 513
    assert main(["analyze", "tv:resnet5"]) == 2
    assert "did you mean: resnet50, resnet152, resnet34, resnet18, resnet101" in capsys.readouterr().err
    assert main(["analyze", "tv:fasterrcnn_resnet50_fpn"]) == 2
    assert "takes a list of images (detection)" in capsys.readouterr().err


# --- fxcost zoo -----------------------------------------------------------------------------------

def test_the_zoo_sweep(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import csv
    import io
    import time

    from fxcost.cli import main, zoo

    pytest.importorskip("torchvision")
    assert main(["zoo", "tv", "--filter", "resnet1[08]", "--jobs", "2", "-f", "csv"]) == 0
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert list(rows) == ["resnet18"] and rows["resnet18"]["status"] == "ok"
    assert int(rows["resnet18"]["params"]) == 11_689_512 and rows["resnet18"]["input"] == "1x3x224x224"  # torchvision's
    assert int(rows["resnet18"]["macs"]) == fxcost.analyze(zoo_resnet18(), input_size=(1, 3, 224, 224)).total().macs
    assert main(["zoo", "tv", "--filter", "fasterrcnn_resnet50_fpn", "-f", "json"]) == 0
    assert '"status": "refused"' in capsys.readouterr().out
    assert main(["zoo", "tv", "--filter", "no_such_*"]) == 2
    # a model that takes too long is stopped and said, and the sweep goes on
    monkeypatch.setattr(zoo, "_one", lambda spec, pipe: time.sleep(30))
    rows_ = zoo.sweep(["tv:resnet18"], jobs=1, timeout=1, say=lambda _: None)
    assert rows_[0]["status"] == "timeout" and rows_[0]["why"] == "stopped after 1 s"


def zoo_resnet18() -> torch.nn.Module:
    from fxcost.loading.zoos import load_zoo

    return load_zoo("tv:resnet18")[0]
