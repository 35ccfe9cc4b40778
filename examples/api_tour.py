"""The Python API in a few lines (docs/api.md shows this file and its output)."""

import fxcost
from examples.vgg import vgg19

report = fxcost.analyze(vgg19(), input_size=(1, 3, 224, 224))
t = report.total()
print(t.params, t.macs, t.activation_elements)
print({r.type: r.macs for r in report.by_type().layers if r.macs})
print([(r.name, r.params) for r in report.by_module(1).layers])
print(report.unsupported, report.trace.method, report.outputs)
# the JSON (what -f json prints) reads back into the same records
assert fxcost.Report.from_dict(report.to_dict()) == report
