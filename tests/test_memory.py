"""Peak memory of an inference forward (issue 12, part 2), from the lifetimes of the tensors the
analysis makes: checked by hand and against PyTorch's MemTracker over the same forward on
FakeTensorMode (under no_grad). MemTracker does not count tensors made before it starts (the
input here), so the comparison leaves the input out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import fxcost
from examples import hf_models
from examples.resnet import resnet18, resnet50
from examples.vgg import vgg11


def memtracker_peak(build: Callable[[], nn.Module], make_input: Callable[[], torch.Tensor]) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        model = build().eval()
        x = make_input()
        tracker = MemTracker()
        tracker.track_external(model)
        with tracker, torch.no_grad():
            model(x)
        (by_kind,) = tracker.get_tracker_snapshot("peak").values()
    return int(by_kind["Total"])


def test_the_peak_of_an_mlp_by_hand() -> None:
    report = fxcost.analyze(nn.Sequential(nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 10)), input_size=(8, 100))
    p = report.peak_memory
    assert p is not None and p.mode == "inference"
    # params (100 x 200 + 200 + 200 x 10 + 10) x 4 bytes; the input 8 x 100 x 4; the peak is in the
    # ReLU (layer "1"): the first Linear's output, still held as the ReLU's argument, and the ReLU's
    # own output, 8 x 200 x 4 each
    assert p.params_bytes == 22_210 * 4 and p.inputs_bytes == 3_200
    assert (p.at, p.activations_bytes, p.temporaries_bytes) == ("1", 6_400, 6_400)
    assert p.peak_bytes == 88_840 + 3_200 + 2 * 6_400


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "resnet18 8x3x224x224": (resnet18, lambda: torch.randn(8, 3, 224, 224)),
    "resnet50 8x3x224x224": (resnet50, lambda: torch.randn(8, 3, 224, 224)),
    "vgg11 2x3x224x224": (vgg11, lambda: torch.randn(2, 3, 224, 224)),
}


@pytest.mark.parametrize("name", CASES)
def test_the_inference_peak_is_memtrackers(name: str) -> None:
    build, make_input = CASES[name]
    x = make_input()
    report = fxcost.analyze(build(), example_inputs=(x.to("meta"),))
    p = report.peak_memory
    assert p is not None and p.inputs_bytes == x.numel() * 4
    reference = memtracker_peak(build, make_input)
    assert abs(p.peak_bytes - p.inputs_bytes - reference) <= 0.01 * reference  # measured: within 2 KB
    assert p.peak_bytes == p.params_bytes + p.buffers_bytes + p.inputs_bytes + p.activations_bytes + p.temporaries_bytes


def test_a_graph_only_model_is_measured_on_its_forward() -> None:
    """A model torch.fx cannot trace (transformers') is counted on the fake run, and its peak
    measured on its forward run eagerly on fake CPU tensors, as MemTracker's reference runs it
    (the attention kernel PyTorch picks there, not the math path meta tensors take)."""
    pytest.importorskip("transformers")
    ids = torch.randint(0, 1000, (2, 128))
    report = fxcost.analyze(hf_models.llama_small(), example_inputs=(ids.to("meta"),))
    p = report.peak_memory
    assert p is not None and report.trace.method == "eager"
    reference = memtracker_peak(hf_models.llama_small, lambda: torch.randint(0, 1000, (2, 128)))
    assert abs(p.peak_bytes - p.inputs_bytes - reference) <= 0.01 * reference
    assert p.peak_bytes == p.params_bytes + p.buffers_bytes + p.inputs_bytes + p.activations_bytes + p.temporaries_bytes


def test_the_peak_is_in_the_json_and_reads_back(tmp_path: Any) -> None:
    report = fxcost.analyze(resnet18(), input_size=(1, 3, 32, 32))
    d = report.to_dict()
    assert d["peak_memory"]["peak_bytes"] == report.peak_memory.peak_bytes  # type: ignore[union-attr]
    assert fxcost.Report.from_dict(d) == report
    assert fxcost.Report.from_dict(report.by_module(1).to_dict()).peak_memory == report.peak_memory
