"""The ONNX route: any ``.onnx`` file read without its weight data (:mod:`~fxcost.onnx.load`),
its shapes inferred (:mod:`~fxcost.onnx.shapes`), its ops priced (:mod:`~fxcost.onnx.formulas`)
and its rows built by the counting core (:mod:`~fxcost.onnx.analyze`); a model exported through
torch.onnx (:mod:`~fxcost.onnx.export`) and the two routes cross-checked
(:mod:`~fxcost.onnx.crosscheck`).

Importing this package imports neither onnx nor torch.onnx: each function imports what it needs.
"""

from fxcost.onnx.analyze import analyze_onnx

__all__ = ["analyze_onnx"]
