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
