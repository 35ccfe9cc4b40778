"""What every peer tool's zoo test shares: the cases, and the one check that a reproduction gives
the tool's own figures (tests/test_peers_<tool>.py call it with that tool's known failures)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.zoo import HF_ZOO, ZOO, ZooModel
from fxcost.peers import PeerTool, Reproduction

#: where no reproduction can run: the forward's path depends on values, which fake tensors lack
NOT_STATIC = {
    "data_dependent_branch": "`if x.sum() > 0` decides the path",
    "root_data_dependent": "`if h.mean() > 0.5` in the root forward",
}


def zoo(slow: Iterable[str] = ()) -> list[Any]:
    """Every zoo model as a case named after it, the ``slow`` ones marked so."""
    heavy = set(slow)
    return [pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.name in heavy else []) for e in [*ZOO, *HF_ZOO]]


def check_on_zoo(tool: PeerTool, entry: ZooModel, *, imports: str, tool_fails: dict[str, str] | None = None,
                 fails_alike: Callable[[BaseException], Any] | None = None,
                 reproduce: Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], Reproduction] | None = None,
                 ) -> tuple[nn.Module, Reproduction]:
    """The installed tool (``imports``: its module) and its reproduction give the same MACs, params
    and (where the tool has them) FLOPs on ``entry`` (a model whose path depends on values must make
    the reproduction fail, not count); every charge is an exact int >= 0 and the
    charges add up to the total. Where the tool itself fails (``tool_fails``: model -> a text its
    error contains) the test checks it still does and skips, naming the error; ``fails_alike``
    then checks the reproduction's failure (it gets the tool's exception)."""
    pytest.importorskip(imports)
    if entry in HF_ZOO:
        pytest.importorskip("transformers")
    assert tool.run_tool is not None
    model = entry.build()
    args, kwargs = entry.inputs()
    if entry.name in NOT_STATIC:
        with pytest.raises(Exception):  # noqa: B017 - whatever the tool's mechanism trips on, it must not count
            (reproduce or tool.reproduce)(model, args, kwargs)
        pytest.skip(f"value-dependent path ({NOT_STATIC[entry.name]}): no data-free reproduction")
    fails = (tool_fails or {}).get(entry.name)
    if fails is not None:
        with pytest.raises(Exception) as failed:
            tool.run_tool(model, args, kwargs)
        said = f"{type(failed.value).__name__}: {failed.value}"
        assert fails in said
        if fails_alike is not None:
            fails_alike(failed.value)
        pytest.skip(f"{tool.name} itself fails ({fails}): {said.splitlines()[0][:200]}")
    with torch.random.fork_rng():
        own = tool.run_tool(model, args, kwargs)
    got = (reproduce or tool.reproduce)(model, args, kwargs)
    assert (got.macs, got.params) == (own.macs, own.params)
    if own.flops is not None:
        assert got.flops == own.flops
    assert sum(c.macs for c in got.charges) == got.macs  # every counted item charged to one module
    assert all(isinstance(c.macs, int) and c.macs >= 0 for c in got.charges)
    return model, got


class Hand(nn.Module):
    """The patched-functional tools' rules in one model (calflops and DeepSpeed price it differently)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)  # with bias
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 15 * 15, 10, bias=False)
        self.act = F.gelu  # the function object, kept before the tool patches F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu(self.conv(x)))  # [2, 16, 15, 15]
        h = h + h  # an operator: not a patched name
        h = h.add(h)  # Tensor.add: patched
        h = self.act(h)
        q = h.flatten(2)  # [2, 16, 225]
        s = q @ q.transpose(1, 2)  # Tensor.__matmul__: patched by DeepSpeed, not by calflops
        y = torch.matmul(q, q.transpose(1, 2))
        return self.fc(h.flatten(1)) + s.sum() + y.sum()


class Odd(nn.Module):
    """Rules calflops kept and DeepSpeed fixed: grouped ConvTranspose, interpolate by scale,
    broadcast mul, a module under two parents, the LSTM hook."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 8, 3, stride=2, groups=2)  # W [4, 8/2, 3, 3]
        self.a = nn.Linear(4, 4)
        self.b = nn.Sequential(self.a)  # the same Linear under a second parent
        self.lstm = nn.LSTM(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up(x)
        i = F.interpolate(x, scale_factor=2)
        m = torch.mul(torch.ones(2, 3, 4), x[0, 0, 0, :4])
        h, _ = self.lstm(self.b(x[:, 0, :3, :4]))
        return u.sum() + i.sum() + m.sum() + h.sum()
