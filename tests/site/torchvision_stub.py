"""Test and CI setup only, never fxcost's: the package registry serves torchvision only as a CUDA
build, whose compiled ops cannot load beside the CPU torch, and ``import torchvision`` then fails
registering fake kernels for the two ops it expects (``torchvision::nms``, ``torchvision::qnms``).
transformers and timm import torchvision whenever it is installed, so every process of a test run
needs them. Importing this module installs an import hook that, just before torchvision is first
imported, loads its compiled library if it can and otherwise defines those two ops (a user's
torchvision is a working build: there the library loads and nothing is defined). torch is imported
only then. ``tests/conftest.py`` imports it, and puts this folder on ``PYTHONPATH`` so that the
processes the tests start do too (``sitecustomize.py``); ``.ci/run`` does the same for its
benchmarks."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import Any

_KEPT: list[Any] = []  # the library holding the stand-in ops, alive for the process


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
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
    _KEPT.append(lib)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "torchvision":
            sys.meta_path.remove(self)
            _define()
        return None


if not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path) and "torchvision" not in sys.modules:
    sys.meta_path.insert(0, _BeforeTorchvision())
