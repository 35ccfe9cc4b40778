"""fxcost.summary: the torchinfo call, answered on meta tensors (docs/api.md)."""

import fxcost  # was: from torchinfo import summary
from examples.resnet import resnet18

report = fxcost.summary(resnet18(), input_size=(1, 3, 224, 224), depth=1,
                        col_names=("output_size", "num_params", "mult_adds"))
print(report.total().params, report.total().macs)
