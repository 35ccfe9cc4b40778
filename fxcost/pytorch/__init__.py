"""The PyTorch route: a model's working copy traced (symbolic, export or eager), its shapes
propagated on meta tensors under the op recorder, its aten ops priced by :mod:`~fxcost.pytorch.aten`,
and its rows built by the counting core. The entry points are :func:`fxcost.analyze` and
:func:`fxcost.sweep` (:mod:`fxcost.pytorch.analyze`)."""
