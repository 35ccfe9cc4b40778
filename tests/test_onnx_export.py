"""fxcost.onnx_export: files checked by onnx, run by onnxruntime against PyTorch, weights counted
against the model's own parameters(), and failures that leave nothing behind."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from examples.odd import DataDependentBranch, TiedEmbeddings
from examples.vgg import vgg11
from fxcost.errors import ExportError, OutputError
from fxcost.onnx import export as onnx_export
from fxcost.onnx.export import KIND_KEY, STRUCTURE_ONLY_KEY, OnnxExport, export_onnx
from tests.conftest import unique_param_count

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def small_cnn() -> nn.Module:
    # conv 3->8 (3*8*9 + 8 = 224), BN (8 + 8 params, 3 buffers), linear 8*8*8 -> 10 (5,130)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )


class LayerNormNet(nn.Module):
    """LayerNormalization exists from opset 17: onnx's converter cannot take it below."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.fc(x)))


class Svd(nn.Module):
    """aten._linalg_svd has no ONNX translation in torch.onnx's library."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[1]


class MixesCpu(nn.Module):
    """Makes a CPU tensor of its own: cannot run on meta weights and inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + torch.ones(3, device="cpu")


def ort_run(path: str | Path, *inputs: torch.Tensor) -> list[Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return list(session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)}))


def weights_by_kind(proto: Any, kind: str) -> dict[str, tuple[int, ...]]:
    """Initializers and graph inputs whose metadata says ``kind``, with their shapes."""
    found = {
        t.name: tuple(t.dims) for t in proto.graph.initializer if {p.key: p.value for p in t.metadata_props}.get(KIND_KEY) == kind
    }
    for v in proto.graph.input:
        if {p.key: p.value for p in v.metadata_props}.get(KIND_KEY) == kind:
            found[v.name] = tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
    return found


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def only_file(folder: Path, *names: str) -> None:
    """Nothing but ``names`` in the folder: no temporary files or folders left over."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def check_invariants(result: OnnxExport, proto: Any) -> None:
    """The result describes the file on disk."""
    on_disk = os.path.getsize(result.path)
    if result.external_data:
        on_disk += os.path.getsize(result.path + ".data")
    assert result.file_bytes == on_disk
    assert result.nodes == len(proto.graph.node)
    assert result.params == sum(numel(s) for s in weights_by_kind(proto, "PARAMETER").values())
    assert {(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {("", result.opset)}
    user_inputs = [v.name for v in proto.graph.input if {p.key: p.value for p in v.metadata_props}.get(KIND_KEY) == "USER_INPUT"]
    assert tuple(user_inputs) == result.inputs


# --- real weights ---------------------------------------------------------------------------


def test_real_export_runs_in_onnxruntime_like_pytorch_in_eval_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = small_cnn().train()
    model[1].eval()  # a mixed state, to be put back module by module
    before = [m.training for m in model.modules()]
    x = torch.randn(2, 3, 16, 16)
    result = export_onnx(model, (x,), None, tmp_path / "cnn.onnx", optimize=True)
    assert [m.training for m in model.modules()] == before
    proto = onnx.load(result.path)
    onnx.checker.check_model(proto, full_check=True)
    check_invariants(result, proto)
    assert (result.opset, result.optimized, result.structure_only, result.dynamic_batch) == (18, True, False, False)
    # the optimizer folds BatchNorm into the conv before it: its weight and bias (8 + 8) leave the file
    assert result.params == unique_param_count(model) - (8 + 8)
    with torch.no_grad():
        expected = model.eval()(x).numpy()  # the file is the eval-mode graph (running statistics)
    (got,) = ort_run(result.path, x)
    assert abs(got - expected).max() < 1e-4
    only_file(tmp_path, "cnn.onnx")


@pytest.mark.parametrize(
    "build, inputs, buffers",
    [
        # an eval-mode BatchNorm reads its running statistics, not num_batches_tracked
        pytest.param(small_cnn, lambda: (torch.randn(2, 3, 16, 16),), {"1.running_mean", "1.running_var"}, id="cnn-with-batchnorm-buffers"),
        pytest.param(TiedEmbeddings, lambda: (torch.randint(0, 500, (2, 12)),), set(), id="tied-embeddings"),
    ],
)
def test_unoptimized_initializers_carry_kinds_and_count_like_parameters(
    tmp_path: Path, build: Any, inputs: Any, buffers: set[str]
) -> None:
    model = build().eval()
    result = export_onnx(model, inputs(), None, tmp_path / "m.onnx", optimize=False)
    proto = onnx.load(result.path)
    check_invariants(result, proto)
    params = weights_by_kind(proto, "PARAMETER")
    # each distinct tensor once: a tied head is one initializer (parameters() dedups it too)
    assert sum(numel(s) for s in params.values()) == result.params == unique_param_count(model)
    assert set(weights_by_kind(proto, "BUFFER")) == buffers
    # no weight is left untagged: every initializer is a parameter or a buffer before optimization
    assert len(proto.graph.initializer) == len(params) + len(buffers)


def test_tiny_gpt2_unoptimized_counts_its_tied_parameters(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=64)
    config.use_cache = False
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 100, (1, 16))
    result = export_onnx(model, (ids,), None, tmp_path / "gpt2.onnx", optimize=False)
    proto = onnx.load(result.path)
    check_invariants(result, proto)
    # wte.weight and lm_head.weight are one tensor: one initializer, counted once
    assert result.params == unique_param_count(model)
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    (got,) = ort_run(result.path, ids)
    assert abs(got - expected).max() < 1e-4


def test_lazy_layers_are_materialized_for_a_real_export(tmp_path: Path) -> None:
    model = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(2, 3, 8, 8)
    result = export_onnx(model, (x,), None, tmp_path / "lazy.onnx", optimize=False)
    # conv 3->4: 3*4*9 + 4 = 112; linear 4*6*6 -> 5: 144*5 + 5 = 725
    assert result.params == unique_param_count(model) == 112 + 725
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(ort_run(result.path, x)[0] - expected).max() < 1e-4


def test_large_weights_go_to_an_external_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)  # any weights count as large
    model = small_cnn().eval()
    x = torch.randn(2, 3, 16, 16)
    result = export_onnx(model, (x,), None, tmp_path / "big.onnx")
    assert result.external_data
    only_file(tmp_path, "big.onnx", "big.onnx.data")
    proto = onnx.load(result.path)  # loads the data from beside it
    check_invariants(result, proto)
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(ort_run(result.path, x)[0] - expected).max() < 1e-4


# --- structure only -------------------------------------------------------------------------


def test_structure_only_from_a_meta_model_writes_shapes_without_data(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = vgg11()  # 132,863,336 parameters; no byte of them is allocated
    x = torch.empty(1, 3, 32, 32, device="meta")
    result = export_onnx(model, (x,), None, tmp_path / "vgg11.onnx", structure_only=True)
    proto = onnx.load(result.path)
    onnx.checker.check_model(proto)
    check_invariants(result, proto)
    assert (result.structure_only, result.optimized) == (True, False)
    assert len(proto.graph.initializer) == 0
    assert {p.key: p.value for p in proto.metadata_props}[STRUCTURE_ONLY_KEY] == "true"
    params = weights_by_kind(proto, "PARAMETER")
    assert params == {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert result.params == unique_param_count(model) == 132_863_336
    assert result.file_bytes < 100_000  # vs ~531 MB of float32 weights
    assert result.inputs == ("x",)


def test_structure_only_leaves_the_model_alone(tmp_path: Path) -> None:
    model = small_cnn().train()
    weight = model[0].weight.detach().clone()
    result = export_onnx(model, (torch.randn(2, 3, 16, 16),), None, tmp_path / "m.onnx", structure_only=True)
    assert result.params == unique_param_count(model)
    assert model.training and model[0].weight.device.type == "cpu" and torch.equal(model[0].weight, weight)
    assert set(weights_by_kind(onnx.load(result.path), "BUFFER")) == {"1.running_mean", "1.running_var"}


# --- dynamic batch --------------------------------------------------------------------------


def batch_dims(proto: Any) -> list[str]:
    return [v.type.tensor_type.shape.dim[0].dim_param for v in proto.graph.input]


@pytest.mark.parametrize("example_batch", [1, 4], ids=["batch-1-widened", "batch-4"])
def test_dynamic_batch_runs_at_other_batch_sizes(tmp_path: Path, example_batch: int) -> None:
    torch.manual_seed(0)
    model = small_cnn().eval()
    result = export_onnx(model, (torch.randn(example_batch, 3, 16, 16),), None, tmp_path / "cnn.onnx", dynamic_batch=True)
    proto = onnx.load(result.path)
    check_invariants(result, proto)
    assert batch_dims(proto) == ["batch"]
    for batch in (1, 3):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            expected = model(x).numpy()
        got = ort_run(result.path, x)[0]
        assert got.shape == expected.shape and abs(got - expected).max() < 1e-4


def test_dynamic_batch_gpt2_from_a_batch_1_example(tmp_path: Path) -> None:
    # From a batch-1 example torch.export fixes GPT-2's batch to 1 (internal reshapes); widening
    # the example to 2 keeps it symbolic.
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=64)
    config.use_cache = False
    model = transformers.GPT2LMHeadModel(config).eval()
    result = export_onnx(model, (torch.randint(0, 100, (1, 16)),), None, tmp_path / "gpt2.onnx", dynamic_batch=True)
    assert batch_dims(onnx.load(result.path)) == ["batch"]
    for batch in (1, 3):
        ids = torch.randint(0, 100, (batch, 16))
        with torch.no_grad():
            expected = model(ids).logits.numpy()
        assert abs(ort_run(result.path, ids)[0] - expected).max() < 1e-4


def test_dynamic_batch_refuses_a_model_that_fixes_its_batch(tmp_path: Path) -> None:
    class FixedBatch(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(4, 3)  # the example's batch, written in

    with pytest.raises(ExportError, match="fixed batch size") as info:
        export_onnx(FixedBatch(), (torch.randn(4, 3),), None, tmp_path / "m.onnx", dynamic_batch=True)
    assert "--dynamic-batch" in info.value.hint
    only_file(tmp_path)


# --- opsets ---------------------------------------------------------------------------------


# (model, opset, what torch 2.13 + onnx 1.23 do): 18 is torch.onnx's own; higher ones are
# translated directly; lower ones go through onnx's version converter, which works or not by op.
OPSETS = [
    pytest.param(LayerNormNet, 17, True, id="17-converted-down"),
    pytest.param(LayerNormNet, 20, True, id="20"),
    pytest.param(LayerNormNet, 14, False, id="14-LayerNormalization-has-no-opset-14"),
    pytest.param(LayerNormNet, 29, False, id="29-newer-than-onnx"),
    pytest.param(LayerNormNet, 0, False, id="0"),
    pytest.param(lambda: nn.Linear(6, 6), 16, True, id="16-Gemm-converts"),
]


@pytest.mark.parametrize("build, opset, works", OPSETS)
def test_opsets_written_or_refused(tmp_path: Path, build: Any, opset: int, works: bool) -> None:
    model = build().eval()
    x = torch.randn(2, 6)
    path = tmp_path / "m.onnx"
    if works:
        result = export_onnx(model, (x,), None, path, opset=opset)
        proto = onnx.load(result.path)
        check_invariants(result, proto)
        assert result.opset == opset
        with torch.no_grad():
            expected = model(x).numpy()
        assert abs(ort_run(result.path, x)[0] - expected).max() < 1e-4
        return
    with pytest.raises(ExportError) as info:
        export_onnx(model, (x,), None, path, opset=opset)
    assert f"opset {opset}" in info.value.message and "--opset 18" in info.value.hint
    only_file(tmp_path)


def test_structure_only_is_refused_below_opset_18(tmp_path: Path) -> None:
    # onnx's version converter serializes the graph with its weights, which meta tensors lack
    with pytest.raises(ExportError, match="structure only at opset 17") as info:
        export_onnx(nn.Linear(6, 6), (torch.randn(2, 6),), None, tmp_path / "m.onnx", structure_only=True, opset=17)
    assert "--opset 18" in info.value.hint
    only_file(tmp_path)


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, structure_only, expected, hint",
    [
        pytest.param(Svd(), False, "_linalg_svd", "--opset", id="no-onnx-translation"),
        pytest.param(DataDependentBranch(), False, "data-dependent", "torch.cond", id="data-dependent-branch"),
        pytest.param(MixesCpu(), True, "meta", "drop --structure-only", id="cannot-run-on-meta"),
    ],
)
def test_export_failures_are_export_errors_and_leave_nothing(
    tmp_path: Path, model: nn.Module, structure_only: bool, expected: str, hint: str
) -> None:
    x = torch.randn(2, 3, 8, 8) if isinstance(model, DataDependentBranch) else torch.randn(3, 3)
    with pytest.raises(ExportError) as info:
        export_onnx(model, (x,), None, tmp_path / "m.onnx", structure_only=structure_only)
    error = info.value
    assert type(model).__name__ in error.message
    assert "x".join(map(str, x.shape)) in error.message
    assert expected in error.message and hint in error.hint
    assert error.__cause__ is not None  # the exporter's own exception, for --debug
    only_file(tmp_path)


def test_real_export_of_a_meta_model_asks_for_structure_only(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = small_cnn()
    with pytest.raises(ExportError, match="meta") as info:
        export_onnx(model, (torch.randn(1, 3, 16, 16),), None, tmp_path / "m.onnx")
    assert "--structure-only" in info.value.hint


def test_missing_folder_fails_before_exporting(tmp_path: Path) -> None:
    stages: list[str] = []
    with pytest.raises(OutputError, match="does not exist"):
        export_onnx(small_cnn(), (torch.randn(1, 3, 16, 16),), None, tmp_path / "no" / "m.onnx", on_stage=stages.append)
    assert stages == []


def test_a_failed_save_leaves_neither_file_nor_temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.onnx").write_bytes(b"the previous file")

    def half_written(self: Any, destination: Any, **kwargs: Any) -> None:
        Path(destination).write_bytes(b"\x08\x0a")  # a truncated protobuf
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.onnx.ONNXProgram, "save", half_written)
    with pytest.raises(OutputError, match="No space left"):
        export_onnx(small_cnn(), (torch.randn(1, 3, 16, 16),), None, tmp_path / "m.onnx")
    only_file(tmp_path, "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"the previous file"


# --- silence and progress -------------------------------------------------------------------


def test_stages_reach_on_stage_and_nothing_reaches_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    stages: list[str] = []
    torch_level = logging.getLogger("torch").level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(small_cnn(), (torch.randn(1, 3, 16, 16),), None, tmp_path / "m.onnx", on_stage=stages.append,
                    optimize=True)
    assert stages == [
        "torch.export (strict=False)", "decompositions", "translation to ONNX", "ONNX graph optimization", "writing m.onnx",
    ]
    assert capfd.readouterr() == ("", "")
    assert [str(w.message) for w in caught] == []
    assert logging.getLogger("torch").level == torch_level  # the silencing is scoped to the export


def test_on_stage_may_print(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A CLI's progress line is the callback's own output: it gets through."""
    export_onnx(small_cnn(), (torch.randn(1, 3, 16, 16),), None, tmp_path / "m.onnx", on_stage=lambda s: print("stage:", s))
    out, err = capfd.readouterr()
    assert out.splitlines()[:2] == ["stage: torch.export (strict=False)", "stage: decompositions"]
    assert err == ""


# --- big ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_llama_7b_structure_only(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig()  # the defaults are Llama-2-7B's shapes
    config.use_cache = False
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    ids = torch.zeros(1, 2048, dtype=torch.int64, device="meta")
    result = export_onnx(model, (ids,), None, tmp_path / "llama.onnx", structure_only=True)
    assert result.params == unique_param_count(model) == 6_738_415_616  # Llama-2-7B's published 6.74 B
    assert result.file_bytes < 20_000_000
    check_invariants(result, onnx.load(result.path))
