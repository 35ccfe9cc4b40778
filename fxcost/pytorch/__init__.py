"""The PyTorch route: a model's working copy traced (symbolic, export or eager), its shapes
propagated on meta tensors under the op recorder, its aten ops priced by :mod:`~fxcost.pytorch.aten`,
and its rows built by the counting core."""

from fxcost.pytorch.analyze import analyze, sweep
from fxcost.pytorch.aten import ATEN

__all__ = ["ATEN", "analyze", "sweep"]
