"""onnxruntime, asked rather than assumed: which opsets the installed release loads, and how
far its outputs are from PyTorch's on the same random inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from fxcost.errors import first_line

#: torch.onnx's operator library is written for this opset; other opsets are reached through
#: onnx's version converter (fxcost.onnx.export)
NATIVE_OPSET = 18


def newest_opset() -> int:
    """The newest default-domain opset the installed onnx knows."""
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


def onnxruntime_opsets() -> tuple[str, int] | None:
    """The installed onnxruntime's version and the newest default-domain opset it loads, found by
    loading a one-node model at each opset from :data:`NATIVE_OPSET` up (a few ms); ``None``
    without onnxruntime. A new release loads newer opsets: ask it, never assume."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from onnx import TensorProto, helper

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a refused opset is the answer, not an error to show
    known = newest_opset()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    newest = 0
    for opset in range(NATIVE_OPSET, known + 8):  # a runtime may know opsets this onnx does not
        # the oldest IR version that carries the opset (onnx names none past its own newest)
        ir = helper.find_min_ir_version_for([helper.make_opsetid("", min(opset, known))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime's own error type: this opset is past its range
            break
        newest = opset
    return str(ort.__version__), newest


def _random_input(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A real tensor like ``t``: normal floats; integers 0 or 1 (valid token ids, segment ids
    and attention masks for any vocabulary); random booleans."""
    shape, dtype = tuple(t.shape), t.dtype
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randint(0, 2, shape, generator=gen, dtype=dtype)


def run_onnxruntime(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], path: Path) -> tuple[float | None, str]:
    """The largest absolute difference between PyTorch's outputs and onnxruntime's."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "not run: onnxruntime is not installed (pip install 'fxcost[onnx]')"
    leaves, spec = tree_flatten((args, kwargs))
    gen = torch.Generator().manual_seed(0)
    values = [_random_input(t, gen) if isinstance(t, torch.Tensor) else t for t in leaves]
    targs, tkwargs = tree_unflatten(values, spec)
    with torch.no_grad():
        expected = [t for t in tree_flatten(model(*targs, **tkwargs))[0] if isinstance(t, torch.Tensor)]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no warnings on the terminal
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: v.numpy() for i, v in zip(session.get_inputs(), tensors, strict=False)}
        got = session.run(None, feeds)
    except Exception as err:  # onnxruntime's own errors: an opset it does not support yet, a missing kernel
        return None, f"not run: onnxruntime {ort.__version__} cannot run this file ({first_line(err)})"
    if len(got) != len(expected):
        return None, f"not compared: ONNX returns {len(got)} outputs, PyTorch {len(expected)}"
    worst = 0.0
    for e, g in zip(expected, got, strict=True):
        if tuple(e.shape) != tuple(g.shape):
            return None, f"not compared: output shapes differ, PyTorch {tuple(e.shape)} vs ONNX {tuple(g.shape)}"
        if e.numel():
            worst = max(worst, float((e.double() - torch.from_numpy(g).double()).abs().max()))
    return worst, f"onnxruntime {ort.__version__}, CPU, random inputs (seed 0), {len(expected)} output(s)"
