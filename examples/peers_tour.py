"""Other tools' figures for one model, reproduced, and why they differ from fxcost's.

    PYTHONPATH=. python examples/peers_tour.py
"""

import fxcost
from examples.vgg import vgg19

model = vgg19()
mine = fxcost.analyze(model, input_size=(1, 3, 224, 224)).total()
print(f"fxcost: {mine.macs:,} MACs, {mine.params:,} params")
for tool in ("fvcore", "ptflops", "thop", "torchinfo", "calflops", "deepspeed", "flop_counter"):
    theirs = fxcost.analyze(model, input_size=(1, 3, 224, 224), convention=tool).total()
    print(f"{tool:>12}: {theirs.macs:,} MACs ({theirs.macs - mine.macs:+,})")

why = fxcost.explain(model, input_size=(1, 3, 224, 224), vs="ptflops", run=False)
for d in why.differences:  # each named reason with the MACs it moves; they add up to the gap
    print(f"{d.diff:+,}  {d.module_type}: {d.reason}")
print(f"{sum(d.diff for d in why.differences):+,} = {why.tool_macs:,} - {why.fxcost_macs:,}")
