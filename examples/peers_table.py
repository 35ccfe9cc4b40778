"""The figures each tool gives four models, reproduced by fxcost, beside fxcost's own.

    PYTHONPATH=. python examples/peers_table.py

The tests check each reproduced figure against the tool itself (tests/test_peers_*.py).
"""

import fxcost
from examples.zoo import HF_ZOO, ZOO

TOOLS = ("fvcore", "ptflops", "thop", "torchinfo", "calflops", "deepspeed", "flop_counter")
MODELS = {"vgg19": "VGG-19", "resnet50": "ResNet-50", "vit_b_16": "ViT-B/16", "hf_gpt2": "GPT-2 (1x32 tokens)"}

entries = {e.name: e for e in [*ZOO, *HF_ZOO]}
print(f"{'':>13}" + "".join(f"{label:>22}" for label in MODELS.values()))
rows: dict[str, list[str]] = {"fxcost": []}
for name in MODELS:
    e = entries[name]
    model = e.build()
    args, kwargs = e.inputs()
    for tool in ("fxcost", *TOOLS):
        t = fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs, convention=tool).total()
        rows.setdefault(tool, []).append(f"{t.macs / 1e9:.3f} G / {t.params / 1e6:.1f} M")
for tool, cells in rows.items():
    print(f"{tool:>13}" + "".join(f"{c:>22}" for c in cells))
print("(MACs as each tool counts them / params as it reports them)")
