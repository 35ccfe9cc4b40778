"""Benchmark: analysis time for VGG-19 with fxcost vs. real-tensor tools.

Measures, side by side in one run, how long it takes to get a cost analysis of the
torchvision-style VGG-19 (``examples.vgg.vgg19()``, input 3x224x224) from:

1. ``fxcost.analyze(model, input_size=(B, 3, 224, 224))`` at batch 1 and batch 64. fxcost
   runs on meta tensors, so its time should not grow with the batch size.
2. ``torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)`` at batch 1 (a real
   forward). Skipped, with a note, when torchinfo is not installed.
3. ``torch.utils.flop_counter.FlopCounterMode(display=False)`` around a real forward
   ``model(torch.randn(1, 3, 224, 224))`` under ``torch.no_grad()`` at batch 1.

The model is built once and put in eval mode; construction is not timed. Each tool gets one
untimed warm-up call, then the median of ``--repeats`` timed calls (``time.perf_counter``)
is reported, along with the ratio to fxcost at batch 1, two PASS/FAIL target lines and a
sanity check that fxcost's MACs equal FlopCounterMode's flops / 2.

Run from the repository root::

    python benchmarks/bench_vgg19.py              # 5 repeats per tool
    python benchmarks/bench_vgg19.py --repeats 9
    python benchmarks/bench_vgg19.py --quick      # 1 repeat, for smoke tests

The script reports; it is not a test. It exits 0 unless one of the tools raises an error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import fxcost  # noqa: E402
from examples.vgg import vgg19  # noqa: E402


def optional_import(name: str) -> ModuleType | None:
    """The module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


torchinfo = optional_import("torchinfo")  # optional: pip install fxcost[bench]

IMAGE_SHAPE = (3, 224, 224)
BIG_BATCH = 64
SPEEDUP_TARGET = 10.0
BATCH_GROWTH_LIMIT = 1.2
EXPECTED_MACS = 19_632_062_464


@dataclass
class Timing:
    tool: str
    batch: int
    seconds: float | None  # None when the tool failed
    result: Any = None  # what the last call returned (for the sanity check)


def time_call(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """One untimed warm-up call, then the median wall time of ``repeats`` calls."""
    result = fn()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run_fxcost(model: nn.Module, batch: int) -> int:
    """Total MACs from fxcost at ``batch``."""
    return fxcost.analyze(model, input_size=(batch, *IMAGE_SHAPE)).total().macs


def run_torchinfo(model: nn.Module) -> Any:
    assert torchinfo is not None
    return torchinfo.summary(model, input_size=(1, *IMAGE_SHAPE), verbose=0)


def run_flopcounter(model: nn.Module) -> int:
    """Total flops counted by FlopCounterMode over a real batch-1 forward."""
    x = torch.randn(1, *IMAGE_SHAPE)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


def measure(tool: str, batch: int, fn: Callable[[], Any], repeats: int) -> Timing:
    print(f"timing {tool} (batch {batch}) ...", flush=True)
    try:
        seconds, result = time_call(fn, repeats)
    except Exception:
        print(f"ERROR: {tool} (batch {batch}) failed:", file=sys.stderr)
        traceback.print_exc()
        return Timing(tool, batch, None)
    return Timing(tool, batch, seconds, result)


def print_table(timings: list[Timing], baseline: float | None) -> None:
    headers = ("tool", "batch", "median s", "x fxcost b1")
    rows: list[tuple[str, str, str, str]] = []
    for t in timings:
        if t.seconds is None:
            rows.append((t.tool, str(t.batch), "error", "-"))
            continue
        ratio = f"{t.seconds / baseline:.2f}" if baseline else "-"
        rows.append((t.tool, str(t.batch), f"{t.seconds:.4f}", ratio))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per tool; the median is reported (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="one timed call per tool (smoke test)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be at least 1")

    print(
        f"torch {torch.__version__}, fxcost {fxcost.__version__}, "
        f"torchinfo {torchinfo.__version__ if torchinfo is not None else 'not installed'}"
    )
    print(f"CPUs: {os.cpu_count()} (torch threads: {torch.get_num_threads()})")
    print(f"platform: {platform.platform()}, python {platform.python_version()}")
    print(
        f"model: examples.vgg.vgg19(), input (B, {', '.join(map(str, IMAGE_SHAPE))}); "
        f"median of {repeats} repeat(s) after 1 warm-up"
    )
    print()

    model = vgg19().eval()

    timings: list[Timing] = [
        measure("fxcost", 1, lambda: run_fxcost(model, 1), repeats),
        measure("fxcost", BIG_BATCH, lambda: run_fxcost(model, BIG_BATCH), repeats),
    ]
    if torchinfo is not None:
        timings.append(measure("torchinfo", 1, lambda: run_torchinfo(model), repeats))
    else:
        print("torchinfo is not installed (pip install torchinfo): skipping it")
    timings.append(measure("FlopCounterMode", 1, lambda: run_flopcounter(model), repeats))
    print()

    fx_b1, fx_big = timings[0], timings[1]
    flop = timings[-1]
    print_table(timings, fx_b1.seconds)
    print()

    real_times = [t.seconds for t in timings if t.tool != "fxcost" and t.seconds is not None]
    if fx_b1.seconds and real_times:
        speedup = min(real_times) / fx_b1.seconds
        print(
            f"[{verdict(speedup >= SPEEDUP_TARGET)}] fxcost >= {SPEEDUP_TARGET:g}x faster than the fastest "
            f"real-tensor tool at batch 1: {speedup:.1f}x"
        )
    else:
        print("[FAIL] fxcost >= 10x faster than the fastest real-tensor tool at batch 1: no timings to compare")
    if fx_b1.seconds and fx_big.seconds is not None:
        growth = fx_big.seconds / fx_b1.seconds
        print(
            f"[{verdict(growth <= BATCH_GROWTH_LIMIT)}] fxcost batch-{BIG_BATCH} time within "
            f"{BATCH_GROWTH_LIMIT:g}x of batch-1: {growth:.2f}x"
        )
    else:
        print(f"[FAIL] fxcost batch-{BIG_BATCH} time within {BATCH_GROWTH_LIMIT:g}x of batch-1: no timings to compare")

    if fx_b1.result is not None and flop.result is not None:
        macs, half_flops = int(fx_b1.result), int(flop.result) // 2
        same = "equal" if macs == half_flops else "NOT equal"
        expected = "" if macs == EXPECTED_MACS else f" (expected {EXPECTED_MACS:,})"
        print(f"sanity: fxcost MACs (batch 1) = {macs:,}; FlopCounterMode flops/2 = {half_flops:,}: {same}{expected}")
    else:
        print("sanity: skipped (a tool failed)")

    return 1 if any(t.seconds is None for t in timings) else 0


if __name__ == "__main__":
    sys.exit(main())
