"""Benchmark: a training step's analysis, fxcost ``train=True`` against PyTorch's tools.

Side by side in one run, for ResNet-18 (batch 8, 3x224x224, Adam) and a small transformers Llama
(2x128 tokens, AdamW), the median time and the figures of:

1. ``fxcost.analyze(model, input_size=..., train=True, optimizer=...)``: forward and backward
   counted on data-free tensors, and the steady-state step's peak memory measured on fake ones;
2. PyTorch's ``MemTracker`` over two training steps (forward, loss, backward, optimizer step,
   ``zero_grad``; the second is the steady state) on ``FakeTensorMode``;
3. the same ``MemTracker`` over two real CPU steps (real tensors, real arithmetic);
4. ``FlopCounterMode`` over a real CPU forward and backward, checked equal to fxcost's backward
   MACs x 2.

Run from the repository root::

    python benchmarks/bench_train.py            # 3 repeats each
    python benchmarks/bench_train.py --quick    # 1 repeat

It reports; it is not a test. The target (issue 12): fxcost's whole training analysis (counts
and memory) no slower than MemTracker's fake steps; the PASS/FAIL line says whether it held.
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


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _memtracker_steps(build: Callable[[], nn.Module], make_input: Callable[[], torch.Tensor], optimizer: str,
                      fake: bool) -> int:
    """MemTracker's peak over the second of two training steps (the inputs tracked too)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode() if fake else torch.device("cpu"):
        model = build().train()
        opt = OPTIMIZERS[optimizer](model.parameters())
        x = make_input()
        tracker = MemTracker()
        tracker.track_external(model, opt, x)

        def step() -> None:  # as fxcost's: the output and the loss live until it returns
            out = model(x)
            loss = _loss(out)
            loss.backward()
            opt.step()
            opt.zero_grad()

        with tracker:
            step()
            tracker.reset_mod_stats()
            step()
        (snap,) = tracker.get_tracker_snapshot("peak").values()
    return int(snap["Total"])


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
    cases: list[tuple[str, Callable[[], nn.Module], Callable[[], torch.Tensor], str]] = [
        ("resnet18 8x3x224x224 adam", resnet18, lambda: torch.randn(8, 3, 224, 224), "adam"),
    ]
    try:
        import transformers  # noqa: F401

        cases.append(("llama (2 layers) 2x128 adamw", _llama, lambda: torch.randint(0, 1000, (2, 128)), "adamw"))
    except ImportError:
        print("transformers is not installed: the Llama case is skipped")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats}")
    print(f"{'model':30s} {'fxcost train':>13s} {'MemTracker fake':>16s} {'MemTracker real':>16s}  fxcost/fake   "
          f"{'peak: fxcost':>14s} {'fake':>14s} {'real':>14s}")
    ratios = []
    for name, build, make_input, optimizer in cases:
        torch.manual_seed(0)
        model, x = build().train(), make_input()
        t_fx, report = _median(lambda m=model, x=x, o=optimizer: fxcost.analyze(m, example_inputs=(x.to("meta"),), train=True,
                                                                                 optimizer=o), repeats)
        t_fake, fake_peak = _median(lambda b=build, mi=make_input, o=optimizer: _memtracker_steps(b, mi, o, True), repeats)
        t_real, real_peak = _median(lambda b=build, mi=make_input, o=optimizer: _memtracker_steps(b, mi, o, False), repeats)
        ratios.append(t_fx / t_fake)
        peak = report.peak_memory.peak_bytes
        print(f"{name:30s} {t_fx:12.2f}s {t_fake:15.2f}s {t_real:15.2f}s  {t_fx / t_fake:9.2f}x   "
              f"{peak:14,d} {fake_peak:14,d} {real_peak:14,d}  (fxcost/fake {peak / fake_peak:.4f}, /real {peak / real_peak:.4f})")
        flops = _real_backward(model, x)
        same = "equal" if 2 * report.total().backward_macs == flops else f"DIFFER ({2 * report.total().backward_macs:,} vs {flops:,})"
        print(f"{'':30s} backward MACs x2 vs FlopCounterMode over a real backward: {same}")
    print("(a real step differs where the model reads values: transformers' Llama skips its 4-D attention mask when the "
          "real token ids have no padding, which data-free tensors cannot tell)")
    verdict = "PASS" if max(ratios) <= 1.0 else "FAIL"
    print(f"{verdict}: fxcost's training analysis at most MemTracker's fake steps' time (worst {max(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
