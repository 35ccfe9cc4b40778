"""Benchmark: a GPT-2 diagram at --depth 2 with --roll, from the command line and in process.

Measures, in one run:

1. The whole CLI call
   ``fxcost diagram hf:GPT2LMHeadModel --input 1x1024:int64 --depth 2 --roll -o gpt2.svg``,
   three times, each in a fresh subprocess (importing torch, transformers and GPT-2's modeling
   code included, about 4 s here): the median and the range (runs on 2 cores vary by seconds).
2. In this process, after imports (torch, transformers and GPT-2's modeling code): building the
   model on meta, ``fxcost.analyze``, ``to_dot(depth=2, roll=True)`` and Graphviz's rendering to
   SVG, each timed, and their sum.

Targets (issue 4): the diagram in under 5 s after imports; the whole CLI call in under 10 s.
Needs transformers and Graphviz's ``dot``. Run from the repository root:
``python benchmarks/bench_diagram_gpt2.py``. It reports; it is not a test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
TARGET_AFTER_IMPORTS_S, TARGET_CLI_S = 5.0, 10.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gpt2.svg"
        cmd = [sys.executable, "-m", "fxcost", "diagram", "hf:GPT2LMHeadModel", "--input", "1x1024:int64",
               "--depth", "2", "--roll", "-o", str(out)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            walls.append(time.perf_counter() - t0)
            if done.returncode != 0:
                sys.exit(f"the CLI call failed ({done.returncode}):\n{done.stderr}")
        size = out.stat().st_size
    cli = statistics.median(walls)
    print(f"CLI  fxcost diagram hf:GPT2LMHeadModel --input 1x1024:int64 --depth 2 --roll -o gpt2.svg: "
          f"median {cli:.2f} s wall (runs {', '.join(f'{w:.2f}' for w in walls)}), {size:,} bytes of SVG")

    t0 = time.perf_counter()
    import torch
    from transformers.models.gpt2 import modeling_gpt2  # noqa: F401  (its import is import time, not analysis)

    import fxcost
    from fxcost.exporters.diagram import render, to_dot
    from fxcost.loading.hf import load_hf

    imports = time.perf_counter() - t0
    steps = {}
    t = time.perf_counter()
    model, _ = load_hf("hf:GPT2LMHeadModel")  # what the CLI builds: on meta, use_cache=False
    steps["build on meta"] = time.perf_counter() - t
    t = time.perf_counter()
    report = fxcost.analyze(model, example_inputs=(torch.zeros(1, 1024, dtype=torch.int64, device="meta"),))
    steps["analyze"] = time.perf_counter() - t
    t = time.perf_counter()
    dot_text = to_dot(report, depth=2, roll=True)
    steps["to_dot (depth 2, roll)"] = time.perf_counter() - t
    t = time.perf_counter()
    render(dot_text, "svg")
    steps["dot -Tsvg"] = time.perf_counter() - t
    total = sum(steps.values())
    print(f"\nin process: imports {imports:.2f} s, then")
    for k, v in steps.items():
        print(f"  {k:<24} {v:6.2f} s")
    print(f"  {'total after imports':<24} {total:6.2f} s   (rolled: {'x12' in dot_text})")
    print()
    print(f"[{'PASS' if total < TARGET_AFTER_IMPORTS_S else 'FAIL'}] diagram after imports: {total:.2f} s (target < {TARGET_AFTER_IMPORTS_S:.0f} s)")
    print(f"[{'PASS' if cli < TARGET_CLI_S else 'FAIL'}] whole CLI call: {cli:.2f} s (target < {TARGET_CLI_S:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
