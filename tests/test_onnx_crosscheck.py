"""The two routes: PyTorch (torch.fx / torch.export) against the exported ONNX graph, recounted.

The ONNX side is a different toolchain end to end: torch.onnx's dynamo exporter writes the graph,
onnx's shape inference settles its shapes and fxcost's ONNX-op formulas count it; onnxruntime
runs it against PyTorch. Expected figures come from the seeds and published counts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

import fxcost  # noqa: E402
from examples.vgg import vgg19  # noqa: E402
from fxcost.cli import main  # noqa: E402
from fxcost.onnx.analyze import analyze_onnx  # noqa: E402
from fxcost.onnx.crosscheck import crosscheck, group_of  # noqa: E402
from fxcost.onnx.export import export_onnx  # noqa: E402
from tests.conftest import flop_counter_flops, unique_param_count  # noqa: E402

# torchvision's VGG-19 (configuration E): 16 convs and 3 linears; params from the seed table and
# torchvision's docs; MACs are checked against FlopCounterMode over a real forward in the test
VGG19_PARAMS = 143_667_240
VGG19_CONV_LINEAR_MACS = 19_632_062_464


def _rows(check, metric: str) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    return {r.group: (r.torch, r.onnx) for r in check.rows if r.metric == metric}


def test_vgg19_onnx_route_gives_the_seed_figures_and_runs_within_1e_4() -> None:
    torch.manual_seed(0)
    model = vgg19().eval()
    check = crosscheck(model, torch.empty(1, 3, 224, 224))
    assert check.passed, check.explanations
    # every VGG MAC is a conv's or a linear's: PyTorch's own counter gives 2 FLOPs per MAC
    assert flop_counter_flops(model, torch.randn(1, 3, 224, 224)) == 2 * VGG19_CONV_LINEAR_MACS
    assert unique_param_count(model) == VGG19_PARAMS
    params, macs = _rows(check, "params"), _rows(check, "macs")
    assert params["all"] == (VGG19_PARAMS, VGG19_PARAMS)
    onnx_conv_linear = sum(r.macs for r in check.onnx.layers if r.type in ("Conv2d", "Linear"))
    torch_conv_linear = sum(r.macs for r in check.torch.layers if r.type in ("Conv2d", "Linear"))
    assert onnx_conv_linear == torch_conv_linear == VGG19_CONV_LINEAR_MACS
    assert macs["Conv2d"][1] + macs["Linear"][1] == VGG19_CONV_LINEAR_MACS
    assert check.max_abs_diff is not None and check.max_abs_diff < 1e-4
    # the ONNX rows are named and typed like the PyTorch ones, from the exporter's scopes
    assert [r.name for r in check.onnx.layers if r.type == "Conv2d"] == [
        r.name for r in check.torch.layers if r.type == "Conv2d"]


class ZeroBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


def test_the_optimizer_dropping_a_zero_bias_is_named() -> None:
    plain = crosscheck(ZeroBias().eval(), torch.empty(2, 8))
    assert plain.passed and plain.max_abs_diff is not None and plain.max_abs_diff < 1e-6
    optimized = crosscheck(ZeroBias().eval(), torch.empty(2, 8), optimize=True)
    params = _rows(optimized, "params")["all"]
    assert params == (8 * 4 + 4, 8 * 4)  # the 4 zeros of fc.bias are gone from the file
    assert not optimized.passed
    assert any("fc.bias (4) not in the ONNX file: it is all zeros" in e for e in optimized.explanations)


def test_a_weightless_model_is_exported_structure_only_and_not_run() -> None:
    with torch.device("meta"):
        model = ZeroBias()
    check = crosscheck(model, torch.empty(2, 8, device="meta"))
    assert check.passed and check.export is not None and check.export.structure_only
    assert check.max_abs_diff is None and "no weight data" in check.run_note


def test_group_of_names_the_innermost_module() -> None:
    check = crosscheck(ZeroBias().eval(), torch.empty(2, 8), run=False)
    groups = {group_of(check.torch, r) for r in check.torch.layers}
    assert groups == {"Input", "Linear", "ZeroBias"}  # relu runs in the root's own forward


def _hf(name: str, **config: object) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = getattr(transformers, name.replace("LMHeadModel", "").replace("Model", "") + "Config")(**config)
    if hasattr(cfg, "use_cache"):
        cfg.use_cache = False
    torch.manual_seed(0)
    return getattr(transformers, name)(cfg).eval()


def _explained(check) -> None:  # type: ignore[no-untyped-def]
    """Params and MACs agree; for every group whose FLOPs differ, the explanation names ops on
    each side whose figures add up to that side's count: the whole difference is accounted for."""
    assert check.params_equal and check.macs_equal and check.all_counted, check.explanations
    for r in check.rows:
        if r.metric == "flops" and r.group != "all" and r.diff:
            (line,) = [e for e in check.explanations if e.startswith(f"FLOPs of {r.group}:")]
            torch_side, onnx_side = line.split("; ONNX counts ")
            torch_side = torch_side.split("PyTorch counts ")[1]

            def total(text: str) -> int:
                return sum(int(v.replace(",", "")) for v in re.findall(r"= ([\d,]+)", text))

            assert (total(torch_side), total(onnx_side)) == (r.torch, r.onnx), line


def test_tiny_gpt2_crosschecks_with_every_difference_named() -> None:
    model = _hf("GPT2LMHeadModel", n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=64)
    check = crosscheck(model, torch.zeros(1, 16, dtype=torch.int64))
    _explained(check)
    assert _rows(check, "params")["all"] == (unique_param_count(model),) * 2  # the model's own count
    assert check.max_abs_diff is not None and check.max_abs_diff < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "params"), [("GPT2LMHeadModel", 124_439_808), ("BertModel", 109_482_240)])
def test_transformers_base_models_crosscheck(cls: str, params: int) -> None:
    check = crosscheck(_hf(cls), torch.zeros(1, 128, dtype=torch.int64))
    _explained(check)
    assert _rows(check, "params")["all"] == (params, params)  # published counts; GPT-2's tied head once
    assert check.max_abs_diff is not None and check.max_abs_diff < 1e-3


@pytest.mark.slow
def test_llama_7b_structure_only_export_is_fast_small_and_counts_the_same(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig()
    cfg.use_cache = False
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path / "llama7b.onnx"
    start = time.perf_counter()
    result = export_onnx(model, (torch.zeros(1, 2048, dtype=torch.int64, device="meta"),), {}, path, structure_only=True)
    seconds = time.perf_counter() - start
    assert seconds < 60 and path.stat().st_size < 50 * 1024**2
    report = analyze_onnx(path)
    # the model's own count (meta tensors know their numel), and as arithmetic: per layer 4 d x d
    # attention projections, 3 d x ffn MLP matrices and 2 RMSNorm weights; embeddings, head, final norm
    assert result.params == report.total().params == unique_param_count(model)
    d, ffn, v = 4096, 11008, 32000
    assert report.total().params == 32 * (4 * d * d + 3 * d * ffn + 2 * d) + 2 * v * d + d == 6_738_415_616
    # the same MACs as the PyTorch route: 32 layers of (4d^2 + 3 d ffn) S + 2 S^2 d, plus the head
    d, ffn, s, v = 4096, 11008, 2048, 32000
    assert report.total().macs == 32 * ((4 * d * d + 3 * d * ffn) * s + 2 * s * s * d) + s * d * v


def test_onnx_verify_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "net.py"
    spec.write_text("import torch\nfrom torch import nn\n"
                    "def net():\n    torch.manual_seed(0)\n"
                    "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))\n")
    out = tmp_path / "net.onnx"
    assert main(["onnx", f"{spec}:net", "--input", "2x3x8x8", "-o", str(out), "--verify"]) == 0
    captured = capsys.readouterr()
    assert "PASS: params and MACs agree exactly" in captured.out
    assert "max abs diff" in captured.out and f"wrote {out}" in captured.err
    assert main(["analyze", str(out), "-f", "csv"]) == 0
    assert main(["crosscheck", f"{spec}:net", "--input", "2x3x8x8", "-f", "markdown", "--no-run"]) == 0
    assert "| params | all |" in capsys.readouterr().out


def test_a_dynamic_batch_export_analyzes_at_any_batch(tmp_path: Path) -> None:
    """torch.onnx computes a dynamic batch's Flatten shape at run time (Shape -> Squeeze ->
    Concat -> Reshape), which onnx's own data propagation does not follow; fxcost evaluates it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    path = tmp_path / "dyn.onnx"
    export_onnx(model, (torch.empty(2, 3, 8, 8),), {}, path, dynamic_batch=True)
    per_sample = 6 * 6 * 4 * 3 * 3 * 3 + 4 * 6 * 6 * 5  # conv + linear MACs for one image
    for batch in (1, 3, 64):
        r = analyze_onnx(path, [(batch, 3, 8, 8)])
        assert not r.unsupported and r.total().macs == batch * per_sample
        assert r.outputs[0].shape == (batch, 5)


class ConvBN(nn.Module):
    """A conv and a BatchNorm with non-trivial statistics, and a lifted tensor constant."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.k = torch.linspace(0.5, 1.5, 6)  # a plain tensor attribute: torch.export lifts it as a constant
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.running_mean.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x)) * self.k


def test_batchnorm_and_tensor_constants_cross_check_and_the_bn_fold_is_named() -> None:
    torch.manual_seed(0)
    plain = crosscheck(ConvBN().eval(), torch.empty(2, 3, 8, 8))
    assert plain.passed, plain.explanations  # the constant k is no parameter; BN stays BN
    assert plain.max_abs_diff is not None and plain.max_abs_diff < 1e-4
    folded = crosscheck(ConvBN().eval(), torch.empty(2, 3, 8, 8), optimize=True, run=False)
    assert _rows(folded, "params")["all"] == (8 * 3 * 3 * 3 + 8 + 8 + 8, 8 * 3 * 3 * 3 + 8)  # BN's 16 folded away
    assert not folded.passed
    assert any("bn.weight (8) not in the ONNX file: the exporter's optimizer folded this BatchNorm" in e
               for e in folded.explanations)


def test_diagram_and_report_of_an_exported_file(tmp_path: Path) -> None:
    path = tmp_path / "cbn.onnx"
    export_onnx(ConvBN().eval(), (torch.empty(2, 3, 8, 8),), {}, path)
    assert main(["diagram", str(path), "-o", str(tmp_path / "cbn.dot")]) == 0
    dot = (tmp_path / "cbn.dot").read_text()
    # the file's module records name and type the nodes as the PyTorch route does
    assert 'label="c: Conv2d\\n8 ch  k3x3  s1x1  2x8x6x6\\n' in dot and 'label="bn: BatchNorm2d\\n' in dot
    assert "n1 -> n2" in dot
    html = tmp_path / "cbn.html"
    assert main(["report", str(path), "-o", str(html)]) == 0 and "<svg" in html.read_text()


def test_an_opset_onnxruntime_cannot_load_is_checked_without_running(tmp_path: Path) -> None:
    # which opsets onnxruntime loads changes with its release (1.31: up to 26, 1.32: up to 28):
    # ask the installed one for the first opset onnx writes and it refuses
    import onnx.defs

    from fxcost.onnx.export import onnxruntime_opsets

    found = onnxruntime_opsets()
    assert found is not None  # the onnx extra installs it
    version, highest = found
    if highest >= onnx.defs.onnx_opset_version():
        pytest.skip(f"onnxruntime {version} loads every opset this onnx writes (up to {highest}): no case to check")
    check = crosscheck(ZeroBias().eval(), torch.empty(2, 8), opset=highest + 1)
    assert check.passed and check.max_abs_diff is None
    assert f"onnxruntime {version}" in check.run_note and "cannot run this file" in check.run_note


def test_the_opset_hint_names_the_installed_onnxruntime_range() -> None:
    import onnxruntime as ort

    from fxcost.onnx.export import onnxruntime_opsets, opset_hint

    version, highest = onnxruntime_opsets() or ("", 0)
    assert version == ort.__version__ and highest >= 18  # every release since 1.14 loads opset 18
    assert f"onnxruntime {ort.__version__} runs up to {highest}" in opset_hint()


def test_onnx_refuses_options_that_only_shape_a_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "zb.py"
    spec.write_text("from torch import nn\ndef net():\n    return nn.Linear(8, 4)\n")
    out = tmp_path / "zb.onnx"
    assert main(["onnx", f"{spec}:net", "--input", "2x8", "-o", str(out), "--convention", "torchsummary"]) == 2
    assert "--convention only apply with --verify" in capsys.readouterr().err and not out.exists()
    assert main(["onnx", f"{spec}:net", "--input", "2x8", "-o", str(out), "--verify", "--convention", "nope"]) == 2
    assert "unknown convention 'nope'" in capsys.readouterr().err and not out.exists()


def test_the_zero_bias_torch_onnx_gives_a_bias_free_conv_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False)).eval()
    check = crosscheck(model, torch.empty(2, 3, 8, 8), run=False)
    assert check.passed
    flops = _rows(check, "flops")["Conv2d"]
    assert flops[1] - flops[0] == 2 * 4 * 6 * 6  # one add per output element: the exporter's zero bias
    (line,) = [e for e in check.explanations if e.startswith("FLOPs of Conv2d:")]
    assert "its bias input is computed in the graph, not a parameter" in line


def test_a_convention_applies_to_an_onnx_file_as_to_the_pytorch_route(tmp_path: Path) -> None:
    # torchsummary's rules (every leaf module's output, per sample, 4 bytes an element, twice for
    # the backward) are the row builder's, whichever route made the rows: VGG-11 at 64 px gives
    # the same activation counts and size block from its ONNX export as from PyTorch
    from examples.vgg import vgg11

    model = vgg11(num_classes=10).eval()
    path = tmp_path / "vgg11.onnx"
    export_onnx(model, (torch.randn(2, 3, 64, 64),), {}, path)
    for convention in ("fxcost", "torchsummary"):
        onnx_report = analyze_onnx(path, convention=convention)
        torch_report = fxcost.analyze(model, input_size=(2, 3, 64, 64), convention=convention)
        assert onnx_report.convention == convention
        assert onnx_report.memory.params_bytes == torch_report.memory.params_bytes
        assert onnx_report.memory.input_bytes == torch_report.memory.input_bytes
    summary = analyze_onnx(path, convention="torchsummary")
    torch_summary = fxcost.analyze(model, input_size=(2, 3, 64, 64), convention="torchsummary")
    # ONNX has no in-place ops, which torchsummary's leaf-output rule does not see anyway: equal
    assert summary.total().activation_elements == torch_summary.total().activation_elements
    assert summary.memory == torch_summary.memory
