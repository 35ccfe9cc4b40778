"""Benchmark: the cost of a training step's analysis, fxcost ``train=True`` against PyTorch's tools.

Side by side in one run, for ResNet-18 (batch 8, 3x224x224) and a small transformers Llama
(2x128 tokens), the median time of:

1. ``fxcost.analyze(model, input_size=..., train=True)``: forward and backward counted on
   data-free tensors;
2. PyTorch's ``MemTracker`` over one training step (forward, ``loss.backward()``, Adam's step) on
   ``FakeTensorMode`` (data-free too: the tool issue 12 compares fxcost's memory figures with);
3. ``FlopCounterMode`` over a real CPU forward and backward (what counting a backward needs
   without fxcost), checked equal to fxcost's backward MACs x 2.

Run from the repository root::

    python benchmarks/bench_train.py            # 3 repeats each
    python benchmarks/bench_train.py --quick    # 1 repeat

It reports; it is not a test. The target (issue 12): fxcost's training analysis no slower than
MemTracker's fake step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import fxcost  # noqa: E402
from examples.resnet import resnet18  # noqa: E402


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                                        num_attention_heads=8, num_key_value_heads=2, use_cache=False))


def _loss(out: Any) -> torch.Tensor:
    out = getattr(out, "logits", out)
    return out.float().sum()


def _median(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _memtracker_step(build: Callable[[], nn.Module], make_input: Callable[[], torch.Tensor]) -> None:
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        model = build().train()
        optimizer = torch.optim.Adam(model.parameters())
        x = make_input()
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            _loss(model(x)).backward()
            optimizer.step()
            optimizer.zero_grad()


def _real_backward(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False):
        out = model(x)
        with counter:
            _loss(out).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 repeat")
    args = p.parse_args()
    repeats = 1 if args.quick else args.repeats
    cases: list[tuple[str, Callable[[], nn.Module], Callable[[], torch.Tensor]]] = [
        ("resnet18 8x3x224x224", resnet18, lambda: torch.randn(8, 3, 224, 224)),
    ]
    try:
        import transformers  # noqa: F401

        cases.append(("llama (2 layers) 2x128", _llama, lambda: torch.randint(0, 1000, (2, 128))))
    except ImportError:
        print("transformers is not installed: the Llama case is skipped")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats}")
    print(f"{'model':26s} {'fxcost train':>13s} {'MemTracker fake step':>21s} {'real fwd+bwd (FCM)':>19s}  fxcost/MemTracker")
    for name, build, make_input in cases:
        torch.manual_seed(0)
        model, x = build().train(), make_input()
        t_fx, report = _median(lambda m=model, x=x: fxcost.analyze(m, example_inputs=(x.to("meta"),), train=True), repeats)
        t_mt, _ = _median(lambda b=build, mi=make_input: _memtracker_step(b, mi), repeats)
        t_real, flops = _median(lambda m=model, x=x: _real_backward(m, x), repeats)
        same = "equal" if 2 * report.total().backward_macs == flops else f"DIFFER ({2 * report.total().backward_macs:,} vs {flops:,})"
        print(f"{name:26s} {t_fx:12.2f}s {t_mt:20.2f}s {t_real:18.2f}s  {t_fx / t_mt:6.2f}x   backward MACs x2 vs FlopCounterMode: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
