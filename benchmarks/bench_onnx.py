"""Benchmark: the ONNX route on this machine.

Measures, in one run:

1. ``LlamaForCausalLM(LlamaConfig())`` (Llama-2-7B's architecture, 6.74 B params) built on meta
   and exported ``--structure-only`` at 1x2048 tokens: export seconds and file size (targets,
   issue 5: under 60 s and under 50 MB), then the ONNX route's params and MACs against the
   PyTorch route's on the same model.
2. The analysis of one ONNX file (VGG-19, structure only, dynamic batch) pinned at batch 1, 16
   and 256: seconds side by side with the ratio to batch 1. The graph is the same at every batch,
   so the time should be too, while MACs grow 256-fold.

Run from the repository root: ``python benchmarks/bench_onnx.py`` (``--quick``: a 4-layer Llama
instead of 32 layers, for CI). Needs transformers, onnxscript. It reports; it is not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from examples.vgg import vgg19  # noqa: E402
from fxcost import analyze  # noqa: E402
from fxcost.onnx.analyze import analyze_onnx  # noqa: E402
from fxcost.onnx.export import export_onnx  # noqa: E402

TARGET_EXPORT_S, TARGET_MB = 60.0, 50.0


def llama(tmp: Path, layers: int | None) -> None:
    from fxcost.loading.hf import load_hf

    model, _ = load_hf("hf:LlamaForCausalLM", {"num_hidden_layers": layers} if layers else None)  # as the CLI builds it
    cfg = model.config
    tokens = torch.zeros(1, 2048, dtype=torch.int64, device="meta")
    path = tmp / "llama.onnx"
    t0 = time.perf_counter()
    result = export_onnx(model, (tokens,), {}, path, structure_only=True)
    seconds = time.perf_counter() - t0
    mb = path.stat().st_size / 1e6
    t0 = time.perf_counter()
    via_onnx = analyze_onnx(path).total()
    onnx_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    via_torch = analyze(model, example_inputs=(tokens,)).total()
    torch_s = time.perf_counter() - t0
    print(f"Llama ({cfg.num_hidden_layers} layers) --structure-only from meta at 1x2048: export {seconds:.1f} s, "
          f"{mb:.1f} MB, {result.nodes:,} nodes")
    print(f"{'route':>8} {'analysis s':>11} {'params':>15} {'MACs':>22}")
    print(f"{'PyTorch':>8} {torch_s:>11.2f} {via_torch.params:>15,} {via_torch.macs:>22,}")
    print(f"{'ONNX':>8} {onnx_s:>11.2f} {via_onnx.params:>15,} {via_onnx.macs:>22,}")
    same = via_onnx.params == via_torch.params and via_onnx.macs == via_torch.macs
    print(f"[{'PASS' if seconds < TARGET_EXPORT_S else 'FAIL'}] export {seconds:.1f} s (target < {TARGET_EXPORT_S:.0f} s)")
    print(f"[{'PASS' if mb < TARGET_MB else 'FAIL'}] file {mb:.1f} MB (target < {TARGET_MB:.0f} MB)")
    print(f"[{'PASS' if same else 'FAIL'}] params and MACs equal on both routes")


def batch_scaling(tmp: Path) -> None:
    path = tmp / "vgg19.onnx"
    with torch.device("meta"):
        model = vgg19()
    export_onnx(model, (torch.empty(2, 3, 224, 224, device="meta"),), {}, path, structure_only=True, dynamic_batch=True)
    analyze_onnx(path, [(1, 3, 224, 224)])  # warm up: first imports of onnx's inference
    base = None
    print("\nVGG-19 ONNX file (structure only, dynamic batch), analyzed at three batch sizes:")
    print(f"{'batch':>6} {'analysis s':>11} {'x batch 1':>10} {'MACs':>20}")
    for batch in (1, 16, 256):
        t0 = time.perf_counter()
        total = analyze_onnx(path, [(batch, 3, 224, 224)]).total()
        s = time.perf_counter() - t0
        base = base or s
        print(f"{batch:>6} {s:>11.3f} {s / base:>10.2f} {total.macs:>20,}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4-layer Llama instead of the full 32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        llama(Path(tmp), 4 if args.quick else None)  # prints its PASS/FAIL lines
        batch_scaling(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
