"""Test and CI setup only, never fxcost's: the package registry serves torchvision only as a CUDA
build, whose compiled ops cannot load beside the CPU torch, and ``import torchvision`` then fails
registering fake kernels for ops it expects (``torchvision::nms``, ``torchvision::qnms``).
transformers and timm import torchvision whenever it is installed, so every process of a test run
needs them. Importing this module installs an import hook that, just before torchvision is first
imported, loads its compiled library if it can (a user's torchvision is a working build: there the
library loads and nothing here is used). Otherwise it stands in for that library as the tests need
it:

- it defines every op the library defines (``torchvision::roi_align``, ``nms``, ``deform_conv2d``
  and the rest, with the schemas of torchvision's ``csrc/ops/*.cpp``; ``qroi_align``'s from the
  arguments of its meta kernel), so that torchvision's own Python registers its meta kernels and
  autograd formulas for them exactly as on a working build (``torchvision.extension._has_ops()``
  says True once the ops exist);
- it gives the two ops torchvision's detection models run CPU kernels: ``nms`` (greedy, in
  score order, as torchvision's CPU kernel) and ``roi_align`` (torchvision's own pure-PyTorch
  ``_roi_align``, which it uses where the compiled op is missing, run uncompiled). The other ops have no CPU
  kernel here: a test that runs one for real fails saying so.

torch is imported only then. ``tests/conftest.py`` imports this module, and puts this folder on
``PYTHONPATH`` so that the processes the tests start do too (``sitecustomize.py``); ``.ci/run``
does the same for its benchmarks."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

_KEPT: list[Any] = []  # the library holding the stand-in ops, alive for the process
_STOOD_IN: list[bool] = []  # True once the stand-in ops are defined

#: every op torchvision's compiled library defines, as its csrc/ops/*.cpp write them
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, float rois_scale, "
    "int rois_zero_point, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "bool aligned) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, "
    "SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
    "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, "
    "SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, "
    "SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "_cuda_version() -> int",
)


def _nms(dets: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression in descending score order (torchvision's CPU kernel's rule:
    a box is dropped when its IoU with a kept, higher-scoring box exceeds the threshold)."""
    import torch
    from torchvision.ops.boxes import box_iou

    order = torch.argsort(scores, descending=True, stable=True)
    above = (box_iou(dets[order], dets[order]) > iou_threshold).tolist()
    dropped = [False] * len(above)
    keep = []
    for i, row in enumerate(above):
        if dropped[i]:
            continue
        keep.append(i)
        for j in range(i + 1, len(row)):
            dropped[j] = dropped[j] or row[j]
    return order[torch.tensor(keep, dtype=torch.long)]


def _roi_align(*args: Any) -> Any:
    from torchvision.ops.roi_align import _roi_align

    # uncompiled: torchvision compiles it on first use (lazy_compile), and inductor's compile
    # workers hang a process forked after them (the zoo sweeps' workers)
    return _roi_align.__wrapped__(*args)


def _define() -> None:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    built = next(Path(spec.submodule_search_locations[0]).glob("_C*.so"), None)
    if built is not None:
        try:
            torch.ops.load_library(str(built))
            return
        except OSError:
            pass
    lib = torch.library.Library("torchvision", "DEF")
    for schema in SCHEMAS:
        lib.define(schema)
    lib.impl("nms", _nms, "CPU")
    lib.impl("roi_align", _roi_align, "CPU")
    lib.impl("_cuda_version", lambda: -1, "CompositeExplicitAutograd")
    _KEPT.append(lib)
    _STOOD_IN.append(True)


class _SayHasOps(importlib.abc.Loader):
    """Runs torchvision.extension, then makes its ``_has_ops()`` say True (the stand-in ops exist)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        module._has_ops = lambda: True


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    defined = False

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "torchvision" and not self.defined:
            self.defined = True
            _define()
        elif name == "torchvision.extension":
            sys.meta_path.remove(self)
            found = importlib.machinery.PathFinder.find_spec(name, path)
            if _STOOD_IN and found is not None and found.loader is not None:
                found.loader = _SayHasOps(found.loader)
            return found
        return None


if not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path) and "torchvision" not in sys.modules:
    sys.meta_path.insert(0, _BeforeTorchvision())
