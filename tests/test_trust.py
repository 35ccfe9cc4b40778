"""Trust on any code: an analysis is never silently wrong, whatever the model's code does and
wherever the analysis is called from (issue 11). References are PyTorch's own: FlopCounterMode
over a real forward, the model's parameters, a real forward's outputs."""

from __future__ import annotations

import resource
import threading
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from examples.resnet import resnet18
from examples.vgg import vgg11
from tests.conftest import flop_counter_flops
from tests.zoo import CASES

# --- wherever it is called from --------------------------------------------------------------


def _small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "enable_grad", "flop_counter", "fake_mode"])
def test_the_same_report_in_every_context(context: str) -> None:
    model = _small()
    expected = fxcost.analyze(model, input_size=(2, 3, 8, 8)).to_dict()
    contexts = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode, "enable_grad": torch.enable_grad,
                "flop_counter": lambda: FlopCounterMode(display=False), "fake_mode": FakeTensorMode}
    ctx = contexts[context]()
    with ctx:
        x = torch.empty(2, 3, 8, 8)  # a fake tensor under the fake mode, an inference tensor under inference mode
        got = fxcost.analyze(model, example_inputs=(x,)).to_dict()
    assert got == expected
    if context == "flop_counter":  # the caller's counter saw none of fxcost's work
        assert ctx.get_total_flops() == 0
    # 2 x MACs: FlopCounterMode over a real forward of the same model
    assert 2 * got["totals"]["macs"] == flop_counter_flops(model, torch.randn(2, 3, 8, 8))


def test_twenty_threads_at_once_give_the_sequential_results() -> None:
    builds = [(c.id, c.build, c.shape) for c in CASES] + [("vgg11", lambda: vgg11(num_classes=10), (1, 3, 32, 32)),
                                                          ("resnet18", resnet18, (1, 3, 32, 32))]
    jobs = [builds[i % len(builds)] for i in range(20)]
    models = [(name, build(), shape) for name, build, shape in jobs]
    sequential = [fxcost.analyze(m, input_size=s, name=n).to_dict() for n, m, s in models]
    results: list[Any] = [None] * len(models)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            n, m, s = models[i]
            results[i] = fxcost.analyze(m, input_size=s, name=n).to_dict()
        except BaseException as e:  # a thread's failure must fail the test, not vanish
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == sequential


@pytest.mark.slow
def test_twenty_threads_fifty_analyses_each_keep_memory_flat() -> None:
    model = _small()

    def work() -> None:
        for _ in range(50):
            fxcost.analyze(model, input_size=(2, 3, 8, 8))

    def round_of_threads() -> None:
        threads = [threading.Thread(target=work) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    round_of_threads()  # warm: imports, torch's caches
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    round_of_threads()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux: 1,000 more analyses may not grow the peak by more than 64 MiB
    assert after - before < 64 * 1024, f"peak RSS grew by {(after - before) / 1024:.0f} MiB over 1,000 analyses"


# --- symbolic tracing is checked against the forward's own path ------------------------------


class Conditioned(nn.Module):
    """Conditioning that accepts a tensor or an int: under symbolic tracing ``cond`` is a Proxy,
    not a Tensor, so the graph silently loses the branch (half the MACs, no error)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(16, 16)
        self.embed = nn.Linear(4, 16)

    def forward(self, x: torch.Tensor, cond: Any) -> torch.Tensor:
        h = self.body(x)
        if isinstance(cond, torch.Tensor):
            h = h + self.embed(cond)
        return h


class ReadsWhatTheGraphSkips(nn.Module):
    """The forward's own path reads a value; the graph's does not go there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.sum() > 0:
            return self.fc(x)
        return x


def test_a_branch_symbolic_tracing_cannot_see_falls_back_and_is_counted() -> None:
    model = Conditioned()
    x, cond = torch.randn(2, 16), torch.randn(2, 4)
    report = fxcost.analyze(model, example_inputs=(x, cond))
    # both Linear layers ran: 2 * (16 * 16 + 4 * 16) = 640 MACs, as FlopCounterMode counts a real forward
    assert 2 * report.total().macs == flop_counter_flops(model, x, cond) == 2 * 640
    assert report.trace.method == "eager"
    [fallback] = report.trace.fallbacks
    assert fallback.tracer == "symbolic" and "module 'embed' called 0 time(s) in the graph, 1 in the forward" in fallback.error
    with pytest.raises(fxcost.TraceError, match="another path"):  # insisting on the graph is an error, not a wrong number
        fxcost.analyze(model, example_inputs=(x, cond), tracer="symbolic")


def test_a_graph_that_runs_where_the_forward_fails_is_not_trusted() -> None:
    with pytest.raises(fxcost.ShapeError) as e:
        fxcost.analyze(ReadsWhatTheGraphSkips(), input_size=(2, 8))
    assert "symbolic: torch.fx's graph ran, but the forward fails" in str(e.value)
    # with real tensors the forward's own path is counted: x.sum() > 0 for these values takes fc
    x = torch.ones(2, 8)
    real = fxcost.analyze(ReadsWhatTheGraphSkips(), example_inputs=(x,), real=True)
    assert 2 * real.total().macs == flop_counter_flops(ReadsWhatTheGraphSkips(), x) == 2 * 2 * 8 * 8


# --- hooks that are part of the computation run; the report says which ----------------------


def _counted_with_mv_and_dot(model: nn.Module, x: torch.Tensor) -> int:
    """FlopCounterMode over a real forward, with the formulas it lacks for mv and dot written out:
    [m, n] @ [n] is m * n multiply-adds, [n] . [n] is n."""
    mapping = {torch.ops.aten.mv: lambda a, b, *_, **__: 2 * a[0] * a[1],
               torch.ops.aten.dot: lambda a, b, *_, **__: 2 * a[0]}
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def test_weight_norm_and_spectral_norm_hooks_run_and_a_logging_hook_is_set_aside() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the hook-based forms are deprecated, not gone
        model = nn.Sequential(nn.utils.weight_norm(nn.Linear(8, 8)), nn.utils.spectral_norm(nn.Linear(8, 4)))
    seen: list[float] = []
    model[1].register_forward_hook(lambda m, i, out: seen.append(out.mean().item()))  # reads values
    quiet = fxcost.analyze(model, input_size=(2, 8))  # the user's hook is not run at all by default
    said = " ".join(quiet.trace.notes)
    assert "hooks not run: " in said and "<lambda> (forward hook of '1'): the model's own hooks do not run" in said
    assert seen == []
    report = fxcost.analyze(model, input_size=(2, 8), hooks=True)
    assert report.total() == quiet.total()
    x = torch.randn(2, 8)
    # the spectral norm's power step in eval: mv(W[4, 8], v[8]) = 32 and dot(u[4], .) = 4 MACs on
    # top of the two Linear layers' 2 * (8 * 8 + 8 * 4) = 192
    assert 2 * report.total().macs == _counted_with_mv_and_dot(model, x) == 2 * (192 + 32 + 4)
    assert report.total().params == sum(p.numel() for p in model.parameters())  # weight_g, weight_v, weight_orig
    notes = " ".join(report.trace.notes)
    assert "hooks that ran: WeightNorm (forward pre-hook of '0'), SpectralNorm (forward pre-hook of '1')" in notes
    assert "<lambda> (forward hook of '1'): it fails on data-free tensors" in notes and "hook not run:" in notes
    assert len(model[1]._forward_hooks) == 1 and seen == [seen[0]]  # the user's model keeps its hook (run once, above)


# --- every dtype honest --------------------------------------------------------------------


def test_dtype_analyzes_the_model_as_cast() -> None:
    model = _small()
    params = sum(p.numel() for p in model.parameters())
    fp32 = fxcost.analyze(model, input_size=(2, 3, 8, 8))
    bf16 = fxcost.analyze(model, input_size=(2, 3, 8, 8), dtype="bfloat16")
    assert fp32.total().param_bytes == 4 * params and bf16.total().param_bytes == 2 * params  # bfloat16: 2 bytes
    assert bf16.total().activation_bytes == 2 * bf16.total().activation_elements
    assert bf16.inputs[0].dtype == "bfloat16" and bf16.total().macs == fp32.total().macs
    assert "analyzed as bfloat16" in " ".join(bf16.trace.notes)
    assert next(model.parameters()).dtype == torch.float32  # the user's model is not cast


def test_an_hf_configs_dtype_is_honored() -> None:
    pytest.importorskip("transformers")
    from fxcost.loading.hf import load_hf

    model, _ = load_hf("hf:GPT2LMHeadModel", {"n_layer": 1, "dtype": "bfloat16"})
    report = fxcost.analyze(model, example_inputs=(torch.zeros(1, 8, dtype=torch.int64),))
    # GPT-2's tied head counted once: params() dedups it
    assert report.total().param_bytes == 2 * sum(p.numel() for p in model.parameters())


def test_a_float16_input_on_a_float32_model_says_what_to_do() -> None:
    with pytest.raises(fxcost.ShapeError) as e:
        fxcost.analyze(_small(), example_inputs=(torch.empty(2, 3, 8, 8, dtype=torch.float16),))
    assert "the inputs are float16 and the weights float32: --dtype float16" in str(e.value)


def test_transformers_own_output_capturing_hooks_run() -> None:
    """transformers gathers the hidden states a model returns with forward hooks it installs itself
    (PP-OCR's backbones index them): part of the forward, not the user's instrumentation, so they
    run; a hook of the user's beside them is still set aside."""
    output_capturing = pytest.importorskip("transformers.utils.output_capturing")
    from fxcost.pytorch.working_copy import hooks_of, users_hooks

    class Gathers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            collected: dict[str, list[torch.Tensor]] = {"hidden_states": []}
            token = output_capturing._active_collector.set(collected)
            try:
                for block in self.blocks:
                    x = block(x)
            finally:
                output_capturing._active_collector.reset(token)
            return collected["hidden_states"][2]  # the input and each block's output: the second block's

    model = Gathers()
    for block in model.blocks:
        output_capturing.install_output_capuring_hook(block, "hidden_states", 0)
    model.blocks[0].register_forward_hook(lambda m, i, out: None)  # the user's
    assert len(hooks_of(model)) == 4 and [h.path for h in users_hooks(model)] == ["blocks.0"]
    report = fxcost.analyze(model, input_size=(2, 8))
    assert report.total().macs == 3 * 2 * 8 * 8  # all three blocks run; the output is the second's
    assert report.outputs[0].shape == (2, 8)
