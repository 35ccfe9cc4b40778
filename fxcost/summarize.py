"""``fxcost.summary``: torchinfo's ``summary`` call, answered by fxcost.

A torchinfo user changes one import::

    from fxcost import summary            # was: from torchinfo import summary
    summary(model, input_size=(1, 3, 224, 224), depth=2, col_names=("output_size", "num_params", "mult_adds"))

and gets fxcost's table of the model rolled up to ``depth``, on meta tensors (no weights are
read, no real forward runs, whatever the model's size), with the size block torchinfo prints.
The numbers are fxcost's, not torchinfo's: tied weights once, every aten op priced
(docs/conventions.md says where torchinfo counts otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from fxcost.errors import InputSpecError
from fxcost.exporters import to_text
from fxcost.exporters.tables import table_of
from fxcost.pytorch.analyze import analyze
from fxcost.report.report import Report

#: torchinfo's column names, as fxcost's table calls them
COLUMNS = {"output_size": "output", "num_params": "params", "params_percent": "% params", "kernel_size": "kernel",
           "mult_adds": "MACs"}
#: torchinfo's default columns
DEFAULT_COLUMNS = ("output_size", "num_params")
#: torchinfo's columns fxcost has no figure for, and why
MISSING = {"input_size": "fxcost's rows carry their output's shape; a row's input is the row before it",
           "trainable": "fxcost counts trainable params in the totals (Trainable params), not per row"}


def _shapes(input_size: Any, dtypes: Sequence[torch.dtype] | None) -> tuple[torch.Tensor, ...]:
    """torchinfo's ``input_size`` (one shape, or a list of them) and ``dtypes`` as meta tensors."""
    sizes = [input_size] if input_size and all(isinstance(d, int) for d in input_size) else list(input_size)
    if dtypes is not None and len(dtypes) != len(sizes):
        raise InputSpecError(f"dtypes has {len(dtypes)} entries for {len(sizes)} input sizes",
                             hint="give one dtype per input, e.g. dtypes=[torch.long]")
    kinds = list(dtypes) if dtypes is not None else [torch.float32] * len(sizes)
    return tuple(torch.empty(tuple(s), dtype=k, device="meta") for s, k in zip(sizes, kinds, strict=True))


def summary(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    input_data: Any = None,
    *,
    depth: int = 3,
    col_names: Sequence[str] | None = None,
    dtypes: Sequence[torch.dtype] | None = None,
    verbose: int = 1,
    width: int = 160,
    **kwargs: Any,
) -> Report:
    """Print fxcost's table of ``model`` rolled up to ``depth`` and return that report
    (``report.total()`` holds params, MACs, FLOPs and activations).

    As in ``torchinfo.summary``: ``input_size`` is one shape with its batch dimension, or a list
    of shapes (float32 unless ``dtypes`` lists one dtype per input); ``input_data`` a tensor or
    a list of positional arguments instead (only their shapes and dtypes are read); other keyword
    arguments go to ``model.forward``; ``col_names`` picks among ``output_size``, ``num_params``,
    ``params_percent``, ``kernel_size`` and ``mult_adds`` (default ``output_size, num_params``);
    ``verbose=0`` prints nothing. torchinfo's ``device``, ``mode``, ``row_settings`` and
    ``cache_forward_pass`` have no meaning for a static analysis and are refused by name."""
    for name in ("device", "mode", "row_settings", "cache_forward_pass", "batch_dim", "col_width"):
        if name in kwargs:
            raise InputSpecError(f"summary() does not take torchinfo's {name}=: fxcost analyzes on meta tensors, "
                                 f"with no device, mode or forward pass to cache",
                                 hint=f"drop {name}=; pass the model's own forward arguments as keywords")
    wanted = tuple(col_names) if col_names is not None else DEFAULT_COLUMNS
    for c in wanted:
        if c not in COLUMNS:
            why = f": {MISSING[c]}" if c in MISSING else ""
            raise InputSpecError(f"summary() has no column {c!r}{why}", hint=f"col_names among: {', '.join(COLUMNS)}")
    if (input_size is None) == (input_data is None):
        raise InputSpecError("summary() needs input_size or input_data (one of them)",
                             hint="e.g. summary(model, input_size=(1, 3, 224, 224))")
    if input_data is not None:
        args = tuple(input_data) if isinstance(input_data, (list, tuple)) else (input_data,)
    else:
        args = _shapes(input_size, dtypes)
    report = analyze(model, example_inputs=args, example_kwargs=kwargs)
    view = report.by_module(depth)
    if verbose:
        table = table_of(view)
        keep = ["layer", "type", *(COLUMNS[c] for c in wanted)]
        at = [table.columns.index(c) for c in keep]
        table = replace(table, columns=keep, rows=[[row[i] for i in at] for row in table.rows],
                        numeric=table.numeric & set(keep))
        sys.stdout.write(to_text(table, width=width))
    return view
