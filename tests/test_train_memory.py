"""The peak memory of a training step (issue 12, parts 2-4): ``analyze(..., train=True)``
measures the second of two steps (forward, loss, backward, optimizer step, zero_grad).

References, neither of them fxcost:
- PyTorch's ``MemTracker`` over the same steady-state step written here again, on a model built
  inside ``FakeTensorMode`` (the second step; its module stats reset between steps), with the
  inputs handed to ``track_external`` so that it counts them (it files them under "Other");
- the same ``MemTracker`` over a real CPU step on real tensors (a step whose live storages it
  tracks by allocation and weak-reference finalization in its dispatch mode), so the fake-tensor
  step fxcost runs is checked against one that computes.
The step is a function: its output and loss live until it returns, as fxcost documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import fxcost
from examples import hf_models
from examples.resnet import resnet18, resnet50
from fxcost.cli import main
from fxcost.errors import InputSpecError

OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps),
    "adamw": lambda ps: torch.optim.AdamW(ps),
}


def frozen_backbone() -> nn.Module:
    """A fine-tune: ResNet-18 with everything but its classifier frozen."""
    model = resnet18()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("fc."))
    return model


class _Unhooked:
    def remove(self) -> None:
        pass


def _memtracker() -> Any:
    """PyTorch's MemTracker, able to follow a model with frozen parameters: in torch 2.13 it
    registers a gradient hook on every parameter, which torch refuses for one that does not
    require grad ("cannot register a hook on a tensor that doesn't require gradient"). This marks
    a frozen parameter as hooked already; its accounting is untouched (a frozen parameter never
    gets a gradient to track)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module: nn.Module, install_grad_hooks: bool = True) -> tuple[int, int]:
            for p in module.parameters():
                if not p.requires_grad and self._param_to_grad_hook_handles.get(p) is None:
                    self._param_to_grad_hook_handles[p] = (_Unhooked(), _Unhooked())
            return super()._track_module_params_and_buffers(module, install_grad_hooks)  # type: ignore[no-any-return]

    return Tracker()


def memtracker_step(build: Callable[[], nn.Module], make_inputs: Callable[[], tuple[torch.Tensor, ...]], optimizer: str,
                    amp: torch.dtype | None = None, fake: bool = True, checkpoint: type | None = None) -> dict[str, int]:
    """MemTracker's peak snapshot (by its categories) of the second of two training steps;
    ``checkpoint``: every module of that class under torch.utils.checkpoint (non-reentrant)."""
    import functools

    from torch.utils.checkpoint import checkpoint as recompute
    mode = FakeTensorMode() if fake else None
    with mode or torch.device("cpu"):
        model = build().train()
        for m in model.modules():
            if checkpoint is not None and isinstance(m, checkpoint):
                m.forward = functools.partial(recompute, m.forward, use_reentrant=False)
        inputs = make_inputs()
        opt = OPTIMIZERS[optimizer]([p for p in model.parameters() if p.requires_grad])
        tracker = _memtracker()
        tracker.track_external(model, opt, *inputs)

        def step() -> None:
            with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
                out = model(*inputs)
                logits = out.logits if hasattr(out, "logits") else out
                loss = logits.float().sum()
            loss.backward()
            opt.step()
            opt.zero_grad()

        with tracker:
            for i in range(2):
                step()
                if i == 0:
                    tracker.reset_mod_stats()
        (snap,) = tracker.get_tracker_snapshot("peak").values()
    return {str(getattr(k, "value", k)): int(v) for k, v in snap.items()}


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]], str, torch.dtype | None]] = {
    "resnet18 8x3x224x224 adam": (resnet18, lambda: (torch.randn(8, 3, 224, 224),), "adam", None),
    "llama_small 2x128 adamw": (hf_models.llama_small, lambda: (torch.randint(0, 1000, (2, 128)),), "adamw", None),
    "frozen-backbone resnet18 8x3x224x224 sgd": (frozen_backbone, lambda: (torch.randn(8, 3, 224, 224),), "sgd", None),
    "llama_small 2x128 adamw amp bfloat16": (hf_models.llama_small, lambda: (torch.randint(0, 1000, (2, 128)),), "adamw",
                                             torch.bfloat16),
}


def fxcost_step(build: Callable[[], nn.Module], make_inputs: Callable[[], tuple[torch.Tensor, ...]], optimizer: str,
                amp: torch.dtype | None) -> Any:
    report = fxcost.analyze(build(), example_inputs=make_inputs(), train=True, optimizer=optimizer,
                            amp=None if amp is None else str(amp).removeprefix("torch."))
    assert report.peak_memory is not None and report.peak_memory.mode == "train"
    return report.peak_memory


@pytest.mark.parametrize("case", CASES)
def test_training_peak_matches_memtracker(case: str) -> None:
    build, make_inputs, optimizer, amp = CASES[case]
    ref = memtracker_step(build, make_inputs, optimizer, amp)
    p = fxcost_step(build, make_inputs, optimizer, amp)
    assert abs(p.peak_bytes - ref["Total"]) <= 0.01 * ref["Total"]
    # the model states, exactly: MemTracker files the optimizer step's own working tensors under
    # its states too, as fxcost does
    assert (p.params_bytes, p.grads_bytes, p.optimizer_bytes, p.buffers_bytes) == (
        ref["Parameter"], ref["Gradient"], ref["Optstate"], ref["Buffer"])
    assert p.inputs_bytes == ref["Other"]  # the inputs, handed to track_external
    # what is left is the forward's and the backward's tensors; MemTracker tells them apart by
    # its module tracker's backward flag, fxcost by the phase (the loss's gradient seed, 4 bytes,
    # is the backward's in fxcost and an activation in MemTracker)
    assert abs((p.activations_bytes + p.temporaries_bytes) - (ref["Activation"] + ref["Temp"])) <= 0.01 * ref["Total"]


def test_model_states_by_hand() -> None:
    """Adam on a 10 -> 20 -> 5 MLP: params (10*20 + 20 + 20*5 + 5) = 325 floats; Adam keeps
    exp_avg and exp_avg_sq per parameter (2 x 325 floats) and a float32 step counter per
    parameter tensor (4 tensors x 4 bytes); the peak is the optimizer's step, where every
    gradient (325 floats) is alive."""
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    p = fxcost.analyze(model, input_size=(2, 10), train=True, optimizer="adam").peak_memory
    assert p is not None
    assert p.params_bytes == 325 * 4
    assert p.phase == "optimizer" and p.grads_bytes == 325 * 4
    assert p.optimizer_bytes >= 2 * 325 * 4 + 4 * 4  # the states, and the step's working tensors then alive
    sgd = fxcost.analyze(model, input_size=(2, 10), train=True, optimizer="sgd").peak_memory
    assert sgd is not None and sgd.optimizer_bytes == 0  # plain SGD keeps no state


@pytest.mark.parametrize("case", ["resnet18 2x3x64x64 adam", "llama_small 1x32 adamw"])
def test_training_peak_matches_a_real_cpu_step(case: str) -> None:
    """The fake-tensor step fxcost runs allocates what a real CPU step does. (Where the model reads
    values it may not: on real token ids without padding transformers skips building its 4-D
    attention mask, 2 x L x L booleans and their float copy, which a data-free step must build;
    at 1x32 tokens that is well inside 1%, at 2x128 it is 2.8%: benchmarks/bench_train.py.)"""
    build, make_inputs, optimizer = {
        "resnet18 2x3x64x64 adam": (resnet18, lambda: (torch.randn(2, 3, 64, 64),), "adam"),
        "llama_small 1x32 adamw": (hf_models.llama_small, lambda: (torch.randint(0, 1000, (1, 32)),), "adamw"),
    }[case]
    torch.manual_seed(0)
    ref = memtracker_step(build, make_inputs, optimizer, fake=False)
    p = fxcost_step(build, make_inputs, optimizer, None)
    assert abs(p.peak_bytes - ref["Total"]) <= 0.01 * ref["Total"]
    assert (p.params_bytes, p.grads_bytes, p.optimizer_bytes) == (ref["Parameter"], ref["Gradient"], ref["Optstate"])


def test_frozen_parameters_have_no_gradient_or_state() -> None:
    p = fxcost_step(frozen_backbone, lambda: (torch.randn(2, 3, 64, 64),), "adam", None)
    fc = 512 * 1000 + 1000  # the classifier alone trains
    assert p.grads_bytes <= fc * 4
    # after the step (the timeline's last point) the optimizer keeps exp_avg and exp_avg_sq of the
    # classifier alone and a step counter for its two tensors; at the peak, in its step, it also
    # holds the working tensors of the weight's update (sqrt(exp_avg_sq) and its quotient)
    after = dict(zip(p.TIMELINE, p.timeline[-1], strict=True))
    assert after["optimizer"] == 2 * fc * 4 + 2 * 4 and after["grads"] == 0
    assert p.phase == "optimizer" and p.optimizer_bytes == after["optimizer"] + 2 * 512 * 1000 * 4


def test_checkpointed_step_matches_memtracker() -> None:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    ids = lambda: (torch.randint(0, 1000, (2, 128)),)  # noqa: E731
    ref = memtracker_step(hf_models.llama_small, ids, "adamw", checkpoint=LlamaDecoderLayer)
    p = fxcost.analyze(hf_models.llama_small(), example_inputs=ids(), train=True, checkpoint=["LlamaDecoderLayer"]).peak_memory
    assert abs(p.peak_bytes - ref["Total"]) <= 0.01 * ref["Total"]
    assert (p.params_bytes, p.grads_bytes, p.optimizer_bytes) == (ref["Parameter"], ref["Gradient"], ref["Optstate"])


def test_checkpointing_trades_memory_for_a_second_forward() -> None:
    def run(**kw: Any) -> Any:
        return fxcost.analyze(hf_models.llama_small(), example_inputs=torch.zeros(2, 128, dtype=torch.long), train=True, **kw)

    plain, ckpt = run(), run(checkpoint=["LlamaDecoderLayer"])
    assert ckpt.peak_memory.checkpointed == ("model.layers.0", "model.layers.1")
    assert ckpt.peak_memory.activations_bytes < plain.peak_memory.activations_bytes
    # the recomputed layers' forward MACs are counted once more, in the backward
    layers = sum(r.counts.macs for r in plain.layers if r.module_path.startswith("model.layers."))
    assert ckpt.total().backward_macs == plain.total().backward_macs + layers
    assert ckpt.total().macs == plain.total().macs


def test_shard_divides_the_model_states() -> None:
    """ZeRO per rank (Rajbhandari et al. 2020): stage 1 divides the optimizer states, stage 2 also
    the gradients, stage 3 also the parameters; each rank keeps ceil(bytes / ranks)."""
    kw: dict[str, Any] = {"input_size": (4, 3, 64, 64), "train": True, "optimizer": "adam"}
    whole = fxcost.analyze(resnet18(), **kw).peak_memory
    for scheme, divided in [("zero1", ("optimizer",)), ("zero2", ("optimizer", "grads")),
                            ("zero3", ("optimizer", "grads", "params")), ("fsdp", ("optimizer", "grads", "params"))]:
        s = fxcost.analyze(resnet18(), shard=f"{scheme}:8", **kw).peak_memory.shard
        parts = {k: getattr(whole, f"{k}_bytes") for k in ("params", "grads", "optimizer")}
        expected = {k: -(-v // 8) if k in divided else v for k, v in parts.items()}
        assert (s.params_bytes, s.grads_bytes, s.optimizer_bytes) == (expected["params"], expected["grads"], expected["optimizer"])
        assert s.peak_bytes == whole.peak_bytes - sum(parts.values()) + sum(expected.values())


def memtracker_peak_at(batch: int) -> int:
    return memtracker_step(resnet50, lambda: (torch.randn(batch, 3, 224, 224),), "sgd-momentum")["Total"]


@pytest.mark.slow
def test_fit_finds_the_largest_batch_memtracker_agrees_with() -> None:
    limit = 8 * 2**30
    report = fxcost.analyze(resnet50(), input_size=(1, 3, 224, 224), train=True, optimizer="sgd-momentum", fit="8GiB")
    fit = report.peak_memory.fit
    assert fit is not None and fit.limit_bytes == limit
    assert memtracker_peak_at(fit.batch) <= limit < memtracker_peak_at(fit.batch + 1)
    assert fit.peak_bytes <= limit < fit.next_peak_bytes


def test_fit_for_inference_grows_with_the_batch() -> None:
    report = fxcost.analyze(nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10)), input_size=(1, 1000),
                            fit="8MB")
    fit = report.peak_memory.fit
    assert report.peak_memory.mode == "inference" and fit is not None
    # params (1000*1000 + 1000 + 1000*10 + 10) x 4 = 4,044,040 bytes; per sample the input (4,000
    # bytes) and, at the ReLU, its argument and output (2 x 4,000): 12,000 bytes a sample
    assert fit.batch == (8_000_000 - 4_044_040) // 12_000
    assert fit.peak_bytes <= 8_000_000 < fit.next_peak_bytes


def test_the_json_of_a_training_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "examples/resnet.py:resnet18", "--input", "2x3x64x64", "--train", "--optimizer", "sgd-momentum",
                 "--fit", "256MiB", "--shard", "zero2:4", "-f", "json"]) == 0
    p = json.loads(capsys.readouterr().out)["peak_memory"]
    assert list(p)[:10] == ["mode", "peak_bytes", "params_bytes", "buffers_bytes", "grads_bytes", "optimizer_bytes",
                            "activations_bytes", "temporaries_bytes", "inputs_bytes", "at"]
    assert p["mode"] == "train" and p["optimizer"] == "sgd-momentum" and p["phase"] in ("forward", "backward", "optimizer")
    assert sorted(p["fit"]) == ["batch", "limit_bytes", "next_peak_bytes", "peak_bytes"]
    assert p["fit"]["limit_bytes"] == 256 * 2**20
    assert p["shard"]["scheme"] == "zero2" and p["shard"]["ranks"] == 4
    # the timeline's points add up, and its highest point is the peak
    assert max(sum(point[1:]) for point in p["timeline"]) == p["peak_bytes"]


def test_the_size_block_shows_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "examples/resnet.py:resnet18", "--input", "2x3x64x64", "--train", "--fit", "1GiB"]) == 0
    out = capsys.readouterr().out
    assert "training step (adamw): params" in out and "optimizer" in out
    assert "Largest batch in 1.00 GiB" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--train", "--optimizer", "lion"], "invalid choice: 'lion'"),
    (["--optimizer", "adam"], "only apply to a training step"),
    (["--train", "--checkpoint", "NoSuchBlock"], "names no module"),
    (["--train", "--shard", "zero4:8"], "cannot read --shard"),
    (["--fit", "lots"], "cannot read 'lots' as a memory size"),
    (["--fit", "1MB"], "the parameters and buffers alone take 44.63 MiB; nothing fits in 0.95 MiB"),
])
def test_bad_memory_options_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["analyze", "examples/resnet.py:resnet18", "--input", "1x3x64x64", *argv])
    except SystemExit as e:  # argparse's own refusal of a choice
        code = int(e.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


def test_no_floating_output_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    class Argmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).argmax(-1)

    with pytest.raises(InputSpecError, match="no floating-point output"):
        fxcost.analyze(Argmax(), input_size=(2, 4), train=True)


def test_saved_bytes_of_an_mlp_by_hand() -> None:
    model = nn.Sequential(nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 10))
    rows = {r.name: r for r in fxcost.analyze(model, input_size=(8, 100), train=True).layers}
    # the first Linear saves its input (8 x 100 floats; its weight is a parameter, not counted);
    # the ReLU its output (8 x 200 floats); the second Linear's input is that same output,
    # saved already
    assert (rows["0"].saved_bytes, rows["1"].saved_bytes, rows["2"].saved_bytes) == (8 * 100 * 4, 8 * 200 * 4, 0)


@pytest.mark.parametrize("case", ["resnet18 2x3x64x64", "llama_small 1x32"])
def test_saved_bytes_match_a_real_forward(case: str) -> None:
    """The storages a real forward's autograd graph saves (PyTorch's saved-tensor hooks over a
    real training-mode forward, parameters and buffers aside), each once. The counts run on meta
    tensors, where scaled_dot_product_attention takes its math path (saving the attention
    weights); the real forward is pinned to that path too. (The training step's peak runs on
    fake CPU tensors, where PyTorch picks the flash kernel, as MemTracker's step does.)"""
    build, x = {"resnet18 2x3x64x64": (resnet18, torch.randn(2, 3, 64, 64)),
                "llama_small 1x32": (hf_models.llama_small, torch.randint(0, 1000, (1, 32)))}[case]
    torch.manual_seed(0)
    model = build().train()
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}
    kept = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(t)  # alive until the count is done: no storage address is reused
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), sdpa_kernel(SDPBackend.MATH):
        model(x)
    report = fxcost.analyze(build(), example_inputs=(x,), train=True)
    assert report.total().saved_bytes == sum(saved.values())


def test_the_html_report_draws_the_step() -> None:
    from fxcost.exporters.html import to_html

    report = fxcost.analyze(resnet18(), input_size=(2, 3, 64, 64), train=True, optimizer="adam")
    page = to_html(report, None)
    assert "Memory of a training step" in page and 'class="chart timeline"' in page
    assert f"peak {report.peak_memory.peak_bytes:,} bytes" in page
    assert "<h2>Memory of a training step</h2>" not in to_html(fxcost.analyze(resnet18(), input_size=(2, 3, 64, 64)), None)
