"""Other tools' counts reproduced exactly: presets for ``--convention`` and ``fxcost explain``.

Each module here reproduces one tool (see :mod:`fxcost.peers.base`); :data:`TOOLS` names them.
docs/conventions.md has each tool's rule per op family, with the source line it comes from.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from fxcost.counting.conventions import TOOL_PRESETS
from fxcost.errors import InputSpecError
from fxcost.peers.base import Charge, PeerTool, Reproduction, ToolFigures
from fxcost.report import Report

#: the --convention name of each reproduced tool -> the module that holds its PeerTool as TOOL
_MODULES = {
    "fvcore": "fxcost.peers.fvcore",
    "ptflops": "fxcost.peers.ptflops",
    "thop": "fxcost.peers.thop",
    "torchinfo": "fxcost.peers.torchinfo",
    "calflops": "fxcost.peers.calflops",
    "deepspeed": "fxcost.peers.deepspeed",
    "flop_counter": "fxcost.peers.flop_counter",
}
TOOLS = TOOL_PRESETS
assert set(TOOLS) == set(_MODULES)


def peer(name: str) -> PeerTool:
    """The reproducible tool ``name``; :class:`InputSpecError` listing them for any other."""
    if name not in _MODULES:
        raise InputSpecError(f"no reproduction of {name!r}", hint=f"one of: {', '.join(TOOLS)}")
    tool: PeerTool = importlib.import_module(_MODULES[name]).TOOL
    return tool


def preset(convention: object) -> Callable[..., Report] | None:
    """The extension point :func:`fxcost.analyze` asks: the preset that counts as the tool
    ``convention`` names (a report whose MACs and params are that tool's), or None for fxcost's
    own conventions."""
    if not isinstance(convention, str) or convention not in TOOLS:
        return None
    from fxcost.peers.apply import counted_by

    return functools.partial(counted_by, convention)


__all__ = ["TOOLS", "Charge", "PeerTool", "Reproduction", "ToolFigures", "peer", "preset"]
