"""Shared test helpers: golden files, hypothesis profiles, and references that are not fxcost."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so `examples.vgg` imports without installing examples

GOLDENS = Path(__file__).parent / "goldens"


# torchvision as the package registry serves it needs two ops defined before it imports (test
# setup only): in this process, and in every process the tests start (tests/site/)
SITE = Path(__file__).parent / "site"
sys.path.insert(0, str(SITE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(SITE), *filter(None, [os.environ.get("PYTHONPATH")])])
import torchvision_stub  # noqa: E402,F401

# CI runs hypothesis derandomized, so a red run can be reproduced exactly.
settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", help="rewrite tests/goldens/* from the current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden(name, text)``: compare with tests/goldens/name, or rewrite it with --update-goldens."""

    def check(name: str, text: str) -> None:
        path = GOLDENS / name
        if request.config.getoption("--update-goldens"):
            path.write_text(text)
            return
        assert path.exists(), f"missing golden {path}; run pytest --update-goldens and review the diff"
        assert text == path.read_text(), f"{name} differs from its golden; if intended, run pytest --update-goldens"

    return check


# --- references that are not fxcost ---------------------------------------------------------


def unique_param_count(model: nn.Module) -> int:
    """The model's own count: each distinct parameter tensor once (parameters() dedups ties)."""
    return sum(p.numel() for p in model.parameters())


def flop_counter_flops(model: nn.Module, *inputs: Any) -> int:
    """PyTorch's own FlopCounterMode over a real forward, in eval mode without grad."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    return int(counter.get_total_flops())


def leaf_output_shapes(model: nn.Module, *inputs: Any) -> dict[str, list[tuple[int, ...]]]:
    """Output shapes of every leaf module from a real forward, by module path (forward hooks)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    for path, m in model.named_modules():
        if path and not list(m.children()):
            def hook(mod: nn.Module, args: Any, out: Any, path: str = path) -> None:
                t = out[0] if isinstance(out, (tuple, list)) else out
                shapes.setdefault(path, []).append(tuple(t.shape))
            handles.append(m.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(*inputs)
    for h in handles:
        h.remove()
    return shapes
