"""Peak memory from the lifetimes of the tensors an analysis actually makes.

The forward runs on data-free tensors whose storages are counted like real ones: a storage is
allocated when an op returns it and freed when its last reference dies (the graph interpreter
drops each value after its last use). :class:`LiveBytes` sees every op's outputs (the op
recorder hands them over), keeps a weak reference to each new storage, and after each
allocation sums the storages still alive: the peak of that sum, plus what lives throughout (the
parameters, buffers and inputs), is the peak memory of the run. Views and in-place results
share a storage already seen and allocate nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from fxcost.counting.arithmetic import whole
from fxcost.pytorch.tensors import tensors_in


def _key(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def storage_key(t: torch.Tensor) -> int | None:
    """The identity of the storage behind ``t`` (two views of one storage share it); None for a
    tensor without a strided storage of its own (sparse, or a subclass wrapping others)."""
    try:
        return int(t.untyped_storage()._cdata) if t.layout == torch.strided else None
    except Exception:
        return None


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """The bytes of the distinct storages behind ``tensors`` (a tied weight once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        seen.setdefault(_key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


class LiveBytes:
    """The live bytes of the storages ops allocate, their peak, and where it happened."""

    def __init__(self, resident: Iterable[torch.Tensor]) -> None:
        """``resident``: tensors alive before and after the run (weights, inputs): not counted here."""
        self._resident = {_key(t): StorageWeakRef(t.untyped_storage()) for t in resident}
        self._live: dict[int, tuple[int, StorageWeakRef, str]] = {}
        self.where = ""  # the row the ops now running belong to
        self.peak = 0
        self.peak_at = ""
        self.peak_temporaries = 0  # of the peak: storages made by the row then running

    def seen(self, out: Any) -> None:
        """An op returned ``out``: count the storages it newly allocated."""
        grew = False
        for t in tensors_in(out):
            if t.layout != torch.strided:
                continue
            key = _key(t)
            known = self._resident.get(key)
            if known is not None and not known.expired():
                continue
            entry = self._live.get(key)
            if entry is not None and not entry[1].expired():
                continue
            storage = t.untyped_storage()
            self._live[key] = (storage.nbytes(), StorageWeakRef(storage), self.where)
            grew = True
        if grew:
            self._sample()

    def _sample(self) -> None:
        self._live = {k: v for k, v in self._live.items() if not v[1].expired()}
        total = sum(n for n, _, _ in self._live.values())
        if total > self.peak:
            self.peak, self.peak_at = total, self.where
            self.peak_temporaries = sum(n for n, _, where in self._live.values() if where == self.where)


class SavedBytes:
    """The bytes of the tensors autograd saves for the backward, each storage counted once, the
    weights' never (saving a parameter keeps nothing new alive). :meth:`saving` is the
    ``saved_tensors_hooks`` pair that hands each saved tensor to ``to``."""

    def __init__(self, weights: Iterable[torch.Tensor]) -> None:
        self._seen = {k for k in map(storage_key, weights) if k is not None}

    def new(self, t: torch.Tensor) -> int:
        """``t``'s storage bytes if no tensor saved before shares its storage, else 0."""
        key = storage_key(t)
        if key is None or key in self._seen:
            return 0
        self._seen.add(key)
        return whole(t.untyped_storage().nbytes())

    @staticmethod
    def saving(to: Any) -> Any:
        """``torch.autograd.graph.saved_tensors_hooks`` calling ``to(tensor)`` for each saved tensor."""
        def pack(t: torch.Tensor) -> torch.Tensor:
            to(t)
            return t

        return torch.autograd.graph.saved_tensors_hooks(pack, _itself)


def _itself(t: torch.Tensor) -> torch.Tensor:
    return t
