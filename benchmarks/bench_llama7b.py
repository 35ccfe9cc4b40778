"""Benchmark: Llama-2-7B's architecture (``LlamaForCausalLM(LlamaConfig())``, 6.74 B params)
analyzed on meta tensors, on this machine.

Measures, in one run:

1. In a fresh subprocess, the whole CLI call
   ``fxcost analyze hf:LlamaForCausalLM --input 1x2048:int64 --format json``: wall time and
   the subprocess's peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``). This includes
   importing torch and transformers (about 4 s here).
2. In this process, after imports: building the model on meta, then ``fxcost.analyze`` at
   sequence lengths 128 and 2048 (batch 1) and at batch 8 x 2048, with the time ratios. fxcost's
   time should follow the graph's size, which does not change with sequence length or batch.
3. The memory a real-tensor tool would need just to hold the weights in float32, as
   arithmetic: more than this machine's RAM, so torchinfo or FlopCounterMode cannot even
   build the model here.

Targets (issue 3): analysis under 10 s after imports, the CLI call under 15 s, peak RSS under
1.5 GB. Run from the repository root: ``python benchmarks/bench_llama7b.py`` (``--quick``: the
CLI call and one analysis at 2048 only). Needs transformers. It reports; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
TARGET_ANALYSIS_S, TARGET_CLI_S, TARGET_RSS_GB = 10.0, 15.0, 1.5


def cli_run() -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (GB) and the JSON report of one CLI call in a fresh process."""
    cmd = [sys.executable, "-m", "fxcost", "analyze", "hf:LlamaForCausalLM", "--input", "1x2048:int64", "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"the CLI call failed ({done.returncode}):\n{done.stderr}")
    rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # Linux: kB
    return wall, rss_gb, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CLI call and one analysis at 2048 only")
    args = parser.parse_args()

    cli_wall, cli_rss, report = cli_run()
    t = report["totals"]
    print(f"CLI  fxcost analyze hf:LlamaForCausalLM --input 1x2048:int64: {cli_wall:.2f} s wall, peak RSS {cli_rss:.2f} GB")
    print(f"     traced by {report['trace']['method']}; params {t['params']:,}; MACs {t['macs']:,}; "
          f"unsupported ops: {len(report['unsupported'])}")

    t0 = time.perf_counter()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import fxcost

    imports = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(use_cache=False))
    build = time.perf_counter() - t0
    print(f"\nin process: imports {imports:.2f} s, building on meta {build:.2f} s")

    shapes = [(1, 2048)] if args.quick else [(1, 128), (1, 2048), (8, 2048)]
    times = {}
    print(f"\n{'input':>10}  {'analysis s':>10}  {'x (1, 128)':>10}  {'nodes/calls':>11}  {'MACs':>22}")
    for shape in shapes:
        ids = torch.zeros(shape, dtype=torch.int64, device="meta")
        t0 = time.perf_counter()
        r = fxcost.analyze(model, example_inputs=(ids,))
        times[shape] = time.perf_counter() - t0
        ratio = times[shape] / times[shapes[0]]
        print(f"{'x'.join(map(str, shape)):>10}  {times[shape]:>10.2f}  {ratio:>10.2f}  {r.trace.graph_nodes or r.trace.segments:>11,}  {r.total().macs:>22,}")
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9

    weights_gb = t["params"] * 4 / 1e9
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    print(f"\na real-tensor tool needs {t['params']:,} x 4 bytes = {weights_gb:.1f} GB for the float32 weights alone; "
          f"this machine has {ram_gb:.1f} GB of RAM")
    print(f"peak RSS of this process ({len(shapes)} analyses): {rss_self:.2f} GB")

    analysis = times[(1, 2048)]
    print()
    for ok, line in (
        (analysis < TARGET_ANALYSIS_S, f"analysis at 1x2048 after imports: {analysis:.2f} s (target < {TARGET_ANALYSIS_S:.0f} s)"),
        (cli_wall < TARGET_CLI_S, f"whole CLI call: {cli_wall:.2f} s (target < {TARGET_CLI_S:.0f} s)"),
        (cli_rss < TARGET_RSS_GB, f"CLI peak RSS: {cli_rss:.2f} GB (target < {TARGET_RSS_GB} GB)"),
    ):
        print(f"[{'PASS' if ok else 'FAIL'}] {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
