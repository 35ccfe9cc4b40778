"""Benchmark: fxcost's speed against the floor of its approach and against real-tensor tools.

Side by side in one run on this machine (issue 14's tables):

1. **In process** (model already built, imports done; median of ``--repeats`` alternating
   rounds): ``fxcost.analyze`` against the floor, PyTorch's ``FlopCounterMode`` over the same
   data-free forward (it dispatches the same aten ops and keeps nothing: meta tensors for the
   classic models, ``FakeTensorMode`` for transformers, whose mask code reads values on meta),
   and ``torchinfo.summary`` over a real forward with real weights. VGG-19 and ResNet-50 at
   batch 1 (3x224x224), GPT-2 at 1x1024 tokens, Llama-2-7B at 1x2048 (no real-tensor tool: its
   27 GB of float32 weights do not fit here).
2. **Whole process** (fresh processes, alternating, median of 5): ``fxcost analyze
   examples/vgg.py:vgg19 --input 1x3x224x224`` against a Python script that builds VGG-19 with
   real weights and runs ``torchinfo.summary`` on it.
3. **Linear in graph size**: a model of N identical residual MLP blocks at N = 25 ... 400, the
   time per block, and an ASCII plot; DeepSeek-V3's architecture (transformers'
   ``DeepseekV3Config()``: 61 layers, 256 routed experts per MoE layer) analyzed on meta in a
   fresh process, its time and peak RSS.
4. **Training and LLM passes**: ``analyze(train=True)`` against PyTorch's ``MemTracker`` over
   two training steps on ``FakeTensorMode`` (ResNet-18, batch 8, Adam), and ``fxcost.llm``
   against ``FlopCounterMode`` over the same prefill and decode step on fake tensors (a
   4-layer Llama, 512-token prompt).

Targets (issue 21), printed as PASS/FAIL lines: in process at most 1.3x the floor on VGG-19,
ResNet-50, GPT-2 and Llama-2-7B, and ResNet-50 at least 3x faster than torchinfo; ``fxcost.llm``
at most 1.5x FlopCounterMode over the same passes; ``analyze(train=True)`` at most 0.8x MemTracker
over two steps on fake tensors (ResNet-18, and a small Llama with its default ``use_cache``); the
whole process at most 0.8x the torchinfo script, and ``fxcost llm`` on Llama-2-7B at 2048 + 256
tokens and ``fxcost analyze`` on DeepSeek-V3 under 10 s each; time per block within 1.5x across N.

Run from the repository root::

    python benchmarks/bench_speed.py            # everything (about 10 minutes)
    python benchmarks/bench_speed.py --quick    # smoke test: small models, 1 round (CI)

It reports; it is not a test: it exits 0 unless a tool fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import fxcost  # noqa: E402

TORCHINFO_SCRIPT = """\
import sys
sys.path.insert(0, {root!r})
import torch, torchinfo
from examples.vgg import vgg19
torchinfo.summary(vgg19(), input_size=(1, 3, 224, 224), verbose=0)
"""


def rounds(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, called in alternating rounds after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {text}"


# --- 1. in process -----------------------------------------------------------------------------

def _floor_meta(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> None:
        with torch.no_grad(), FlopCounterMode(display=False):
            model(x)
    return run


def _floor_fake(build: Callable[[], nn.Module], shape: tuple[int, ...]) -> Callable[[], Any]:
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model = build().eval()

    def run() -> None:
        with mode, torch.no_grad(), FlopCounterMode(display=False):
            model(torch.zeros(shape, dtype=torch.int64))
    return run


def _torchinfo(build: Callable[[], nn.Module], x: torch.Tensor) -> Callable[[], Any] | None:
    try:
        import torchinfo
    except ImportError:
        return None
    model = build().eval()
    return lambda: torchinfo.summary(model, input_data=[x], verbose=0)


def in_process(quick: bool, repeats: int) -> list[str]:
    from examples.resnet import resnet50
    from examples.vgg import vgg19

    cases: list[tuple[str, Callable[[], nn.Module], torch.Tensor, bool]] = [
        ("VGG-19, batch 1", vgg19, torch.zeros(1, 3, 224, 224), False),
        ("ResNet-50, batch 1", resnet50, torch.zeros(1, 3, 224, 224), False),
    ]
    try:
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        layers = 2 if quick else 12
        cases.append((f"GPT-2{' (2 layers)' if quick else ''}, 1x1024",
                      lambda: GPT2LMHeadModel(GPT2Config(n_layer=layers, use_cache=False)),
                      torch.zeros(1, 1024, dtype=torch.int64), True))
        if not quick:
            cases.append(("Llama-2-7B, 1x2048", lambda: LlamaForCausalLM(LlamaConfig(use_cache=False)),
                          torch.zeros(1, 2048, dtype=torch.int64), True))
    except ImportError:
        print("(transformers is not installed: GPT-2 and Llama are left out)")
    print(f"\n1. In process, median of {repeats} alternating rounds (ms)\n")
    print(f"{'model':<26}{'fxcost':>10}{'floor':>10}{'x floor':>9}{'torchinfo':>11}{'x fxcost':>10}")
    ratios, lines = {}, []
    for name, build, x, hf in cases:
        with torch.device("meta"):
            model = build().eval()
        xm = x.to("meta")
        fns: dict[str, Callable[[], Any]] = {
            "fxcost": lambda m=model, xm=xm: fxcost.analyze(m, example_inputs=(xm,)),
            "floor": _floor_fake(build, tuple(x.shape)) if hf else _floor_meta(model, xm),
        }
        real = None if name.startswith("Llama") else _torchinfo(build, x)
        if real is not None:
            fns["torchinfo"] = real
        t = rounds(fns, repeats)
        ratios[name] = (t["fxcost"] / t["floor"], t["torchinfo"] / t["fxcost"] if "torchinfo" in t else None)
        ti = f"{t['torchinfo'] * 1e3:>11,.1f}{t['torchinfo'] / t['fxcost']:>9.2f}x" if "torchinfo" in t else \
            f"{'cannot run':>11}{'':>10}"
        print(f"{name:<26}{t['fxcost'] * 1e3:>10,.1f}{t['floor'] * 1e3:>10,.1f}{t['fxcost'] / t['floor']:>8.2f}x{ti}")
    for name, (x_floor, _) in ratios.items():
        lines.append(verdict(x_floor <= 1.3, f"{name}: fxcost {x_floor:.2f}x the floor (target <= 1.3x)"))
    resnet = ratios.get("ResNet-50, batch 1")
    if resnet and resnet[1] is not None:
        lines.append(verdict(resnet[1] >= 3, f"ResNet-50: torchinfo's real forward takes {resnet[1]:.2f}x fxcost's time "
                                             f"(target >= 3x)"))
    return lines


# --- 2. whole process --------------------------------------------------------------------------

def _wall(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall


def whole_process(runs: int) -> list[str]:
    try:
        import torchinfo  # noqa: F401
    except ImportError:
        print("\n2. Whole process: torchinfo is not installed, left out")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "torchinfo_vgg19.py"
        script.write_text(TORCHINFO_SCRIPT.format(root=str(ROOT)))
        fx_cmd = [sys.executable, "-m", "fxcost", "analyze", "examples/vgg.py:vgg19", "--input", "1x3x224x224"]
        ti_cmd = [sys.executable, str(script)]
        fx, ti = [], []
        for _ in range(runs):
            fx.append(_wall(fx_cmd))
            ti.append(_wall(ti_cmd))
    a, b = statistics.median(fx), statistics.median(ti)
    print(f"\n2. Whole process, median of {runs} alternating runs (s)\n")
    print(f"   fxcost analyze examples/vgg.py:vgg19 --input 1x3x224x224   {a:6.2f}   ({', '.join(f'{v:.2f}' for v in fx)})")
    print(f"   VGG-19 with real weights + torchinfo.summary script       {b:6.2f}   ({', '.join(f'{v:.2f}' for v in ti)})")
    return [verdict(a / b <= 0.8, f"whole process: fxcost {a / b:.2f}x the torchinfo script's wall time (target <= 0.8x)")]


#: the issue's whole-process commands, each under 10 s
COMMANDS = {
    "fxcost llm Llama-2-7B, 2048 + 256 tokens, bf16 on h100": [
        "llm", "hf:LlamaForCausalLM", "--config", "max_position_embeddings=4096", "--prompt", "2048", "--generate", "256",
        "--dtype", "bfloat16", "--device", "h100"],
    "fxcost analyze DeepSeek-V3, 1x128": ["analyze", "hf:DeepseekV3ForCausalLM", "--input", "1x128:int64"],
}


def big_commands() -> list[str]:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return []
    print("\n2b. Whole process, one run each (s)\n")
    lines = []
    for name, argv in COMMANDS.items():
        wall = _wall([sys.executable, "-m", "fxcost", *argv])
        print(f"   {name:<58}{wall:6.1f}")
        lines.append(verdict(wall < 10, f"{name}: {wall:.1f} s (target < 10 s)"))
    return lines


# --- 3. linear in graph size -------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


def blocks(n: int, width: int = 64) -> nn.Module:
    return nn.Sequential(*(Block(width) for _ in range(n)))


def scaling(sizes: list[int], repeats: int) -> list[str]:
    print(f"\n3. Linear in graph size: N residual MLP blocks, input 8x64, median of {repeats} (ms)\n")
    per: dict[int, float] = {}
    print(f"{'N':>5}{'graph nodes':>13}{'analysis':>11}{'per block':>11}")
    for n in sizes:
        with torch.device("meta"):
            model = blocks(n)
        x = torch.zeros(8, 64, device="meta")
        t = rounds({"fx": lambda m=model, x=x: fxcost.analyze(m, example_inputs=(x,))}, repeats)["fx"]
        nodes = fxcost.analyze(model, example_inputs=(x,)).trace.graph_nodes
        per[n] = t / n
        print(f"{n:>5}{nodes:>13,}{t * 1e3:>11,.1f}{per[n] * 1e3:>11.3f}")
    top = max(per.values())
    print("\n   time per block (each # is 1/40 of the largest)")
    for n, v in per.items():
        print(f"   N={n:<4} {'#' * max(1, round(40 * v / top)):<40} {v * 1e3:.3f} ms")
    spread = max(per.values()) / min(per.values())
    return [verdict(spread <= 1.5, f"time per block varies {spread:.2f}x across N = {sizes[0]}..{sizes[-1]} (target <= 1.5x)")]


DEEPSEEK = """\
import json, resource, sys, time
import torch
sys.path.insert(0, {root!r})
import fxcost
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
t0 = time.perf_counter()
with torch.device("meta"):
    model = DeepseekV3ForCausalLM(DeepseekV3Config(use_cache=False{layers})).eval()
built = time.perf_counter() - t0
t0 = time.perf_counter()
report = fxcost.analyze(model, example_inputs=(torch.zeros(1, 128, dtype=torch.int64, device="meta"),))
took = time.perf_counter() - t0
print(json.dumps(dict(modules=sum(1 for _ in model.modules()), build=built, analysis=took, method=report.trace.method,
                      nodes=report.trace.graph_nodes or report.trace.segments, params=report.total().params, macs=report.total().macs,
                      unsupported=len(report.unsupported),
                      rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""


def deepseek(quick: bool) -> None:
    import json

    try:
        import transformers  # noqa: F401
    except ImportError:
        return
    layers = ", num_hidden_layers=4" if quick else ""
    code = DEEPSEEK.format(root=str(ROOT), layers=layers)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"DeepSeek-V3 failed:\n{done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n   DeepSeek-V3{' (4 layers)' if quick else ''} on meta, 1x128 tokens, in a fresh process: {r['modules']:,} modules, "
          f"{r['nodes']:,} graph nodes or module calls ({r['method']}); build {r['build']:.2f} s, analysis {r['analysis']:.1f} s, "
          f"peak RSS {r['rss'] / 1e9:.2f} GB; params {r['params']:,}, MACs {r['macs']:,}, unsupported ops {r['unsupported']}")


# --- 4. training and LLM passes ----------------------------------------------------------------

def training(repeats: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train import _memtracker_steps  # the same two steps bench_train.py measures

    from examples.resnet import resnet18

    cases: list[tuple[str, Callable[[], nn.Module], Callable[[], torch.Tensor], tuple[int, ...], torch.dtype]] = [
        ("ResNet-18 8x3x224x224", resnet18, lambda: torch.randn(8, 3, 224, 224), (8, 3, 224, 224), torch.float32)]
    try:
        from transformers import LlamaConfig, LlamaForCausalLM

        def llama() -> nn.Module:  # its default use_cache: the output holds a DynamicCache
            return LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                                                num_attention_heads=8, num_key_value_heads=2))

        cases.append(("small Llama 2x128, default use_cache", llama, lambda: torch.randint(0, 1000, (2, 128)), (2, 128),
                      torch.int64))
    except ImportError:
        pass
    print(f"\n4. Training and LLM passes, median of {repeats} (ms)\n")
    lines = []
    for name, build, make, shape, dtype in cases:
        with torch.device("meta"):
            model = build()
        x = torch.empty(shape, dtype=dtype, device="meta")
        t = rounds({"fxcost": lambda m=model, x=x: fxcost.analyze(m, example_inputs=(x,), train=True, optimizer="adam"),
                    "memtracker": lambda b=build, mk=make: _memtracker_steps(b, mk, "adam", True)}, repeats)
        r = t["fxcost"] / t["memtracker"]
        print(f"   {name}, Adam: fxcost analyze(train=True) {t['fxcost'] * 1e3:,.0f}; MemTracker over two steps on "
              f"FakeTensorMode {t['memtracker'] * 1e3:,.0f} ({r:.2f}x)")
        lines.append(verdict(r <= 0.8, f"training, {name}: fxcost {r:.2f}x MemTracker's fake steps (target <= 0.8x; "
                                       f"fxcost: counts and memory; MemTracker: memory only)"))
    return lines


def llm(repeats: int) -> list[str]:
    try:
        from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    except ImportError:
        return []
    cfg = LlamaConfig(num_hidden_layers=4, hidden_size=1024, intermediate_size=2816, num_attention_heads=16,
                      num_key_value_heads=16, vocab_size=32000)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg).eval()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        fake = LlamaForCausalLM(cfg).eval()

    def floor() -> None:  # the same passes fxcost llm prices: a prefill and one decode step with the cache
        with mode, torch.no_grad(), FlopCounterMode(display=False):
            cache = DynamicCache(config=cfg)
            fake(torch.zeros(1, 512, dtype=torch.int64), past_key_values=cache, use_cache=True)
            fake(torch.zeros(1, 1, dtype=torch.int64), past_key_values=cache, use_cache=True)

    t = rounds({"fxcost": lambda: fxcost.llm(model, 512, 1), "floor": floor}, repeats)
    r = t["fxcost"] / t["floor"]
    print(f"   Llama (4 layers, 1024 wide), prompt 512, generate 1: fxcost.llm {t['fxcost'] * 1e3:,.0f}; FlopCounterMode "
          f"over the prefill and decode step on fake tensors {t['floor'] * 1e3:,.0f} ({r:.2f}x)")
    return [verdict(r <= 1.5, f"fxcost llm: {r:.2f}x FlopCounterMode over the same passes (target <= 1.5x)")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, one round: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per in-process measure (default 5; --quick 1)")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {sys.version.split()[0]}")
    lines = in_process(args.quick, repeats)
    lines += whole_process(1 if args.quick else 5)
    if not args.quick:
        lines += big_commands()
    lines += scaling([25, 50] if args.quick else [25, 50, 100, 200, 400], repeats)
    deepseek(args.quick)
    lines += training(repeats)
    lines += llm(repeats)
    print("\n" + "\n".join(lines))
    print(f"\n(this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
