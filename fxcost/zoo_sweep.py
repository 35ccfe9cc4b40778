"""Every model of a zoo analyzed at its own input size, each in a worker process: the machinery of
``fxcost zoo`` and of :func:`zoo` (``fxcost.zoo``)."""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any

ZOOS = {"timm": "timm:", "tv": "tv:", "torchvision": "tv:", "hf": "hf:", "transformers": "hf:",
        "diffusers": "diffusers:"}
#: the package each zoo's names come from
PACKAGES = {"timm:": "timm", "tv:": "torchvision", "hf:": "transformers", "diffusers:": "diffusers"}


def names(zoo: str, pattern: str) -> list[str]:
    """The zoo's model names matching ``pattern``."""
    from fxcost.loading.zoos import model_names

    return [n for n in model_names(PACKAGES[ZOOS[zoo]]) if fnmatch.fnmatchcase(n, pattern)]


def _one(spec: str, pipe: Any, real: bool = False, check: bool = False) -> None:
    """A worker: analyze ``spec`` at its own input size; send one row. ``real``: a model refused
    on data-free tensors (one that reads values: detection's box filtering) is analyzed again on
    real tensors, built on the CPU with random weights. ``check``: compare with FlopCounterMode
    (:func:`_checked`)."""
    import contextlib
    import io
    import warnings

    started = time.perf_counter()
    row: dict[str, Any] = {"model": spec.split(":", 1)[1], "input": "", "status": "ok", "why": ""}
    try:
        import torch

        from fxcost.api import analyze

        # one thread a worker: the sweep's parallelism is its workers, and a forked child that
        # computes on its parent's OpenMP thread pool (a parent that ran real kernels) hangs
        torch.set_num_threads(1)
        from fxcost.errors import FxcostError
        from fxcost.loading.specs import make_inputs
        from fxcost.loading.zoos import default_input

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = made = None
            try:
                model = _built(spec, meta=True)
                row["input"] = default_input(spec, model)[0]
                ((args, kwargs),) = made = make_inputs([row["input"]])
                try:
                    report = analyze(model, example_inputs=args, example_kwargs=kwargs)
                except FxcostError as e:
                    if not real:
                        raise
                    row["why"] = "--real: " + _where(e)
                    model = _built(spec, meta=False)
                    args, kwargs = _materialized((args, kwargs))
                    report = analyze(model, example_inputs=args, example_kwargs=kwargs, real=True)
                total = report.total()
                row.update(params=total.params, macs=total.macs, flops=total.flops, activations=total.activation_elements,
                           peak_bytes=report.peak_memory.peak_bytes if report.peak_memory else None)
                if report.unsupported:
                    row["status"], row["why"] = "unsupported", ", ".join(sorted({u.op for u in report.unsupported}))
                if check:
                    row["check"] = _checked(report, model, args, kwargs, lambda: _built(spec, meta=False))
            except FxcostError as e:
                row["status"], row["why"] = "refused", _where(e)
                if check and model is not None and made is not None:
                    row["check"] = _pytorch_on(model, *made[0], lambda: _built(spec, meta=False))
    except Exception as e:  # a bug: said in the table, the sweep goes on
        row["status"], row["why"] = "error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    row["seconds"] = round(time.perf_counter() - started, 2)
    pipe.send(row)


def _built(spec: str, meta: bool) -> Any:
    """The model ``spec`` names, without weights on meta, or with random ones on the CPU."""
    from fxcost.loading.hf import load_hf
    from fxcost.loading.zoos import load_zoo

    return (load_hf(spec, meta=meta) if spec.startswith("hf:") else load_zoo(spec, meta=meta))[0]


def _materialized(tree: Any) -> Any:
    """Meta tensors replaced by random CPU ones of the same shape and dtype (seed 0)."""
    import torch
    from torch.utils._pytree import tree_map

    torch.manual_seed(0)

    def real(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.device.type != "meta":
            return t
        if t.dtype.is_floating_point:
            return torch.rand(t.shape, dtype=t.dtype)
        return torch.zeros(t.shape, dtype=t.dtype)

    return tree_map(real, tree)


def _checked(report: Any, model: Any, args: Any, kwargs: Any, rebuild: Any = None) -> str:
    """The report against references that are not fxcost: its params against the model's own
    ``parameters()``, and 2 x its MACs against FlopCounterMode over the same forward (on meta
    tensors for a model on meta, else on random CPU tensors; PyTorch's math attention, mkldnn
    off; ``rebuild`` makes the model with random weights, for a forward that reads values).
    ``exact``, or what differs."""
    # FlopCounterMode's module tracker hooks the autograd graph of inputs that require grad, and
    # fails on a meta parameter handed to a submodule (timm's CaiT, PiT, SigLIP pooling): the
    # count needs no gradients
    from fxcost.pytorch.tensors import quiet_fake_mode

    model.requires_grad_(False)
    own = sum(p.numel() for p in model.parameters())
    try:
        with quiet_fake_mode():  # a reference that fails on fake tensors is said in the column, not logged
            counted, how = _counted(model, args, kwargs, rebuild)
    except Exception as e:  # the reference could not run this forward: said, not counted as a difference
        return f"FlopCounterMode did not run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    total, found = report.total(), []
    if total.params != own:
        found.append(f"params {total.params:,} vs parameters() {own:,}")
    if 2 * total.macs != counted:
        found.append(f"2 x MACs {2 * total.macs:,} vs FlopCounterMode {counted:,}")
    return "; ".join(found) or "exact" + how


def _pytorch_on(model: Any, args: Any, kwargs: Any, rebuild: Any) -> str:
    """For a model fxcost refused: whether PyTorch itself runs its forward on the same inputs on
    fake tensors (on meta, on the CPU, following the known input values), and, up to
    :data:`REAL_CHECK_PARAMS`, with random weights on real ones. ``"PyTorch fails too on fake
    tensors (...)"`` is not a refusal of fxcost's own (the inputs made do not fit, the default
    config does not hold together, or the forward reads values only a real run has), and says
    whether a real forward runs (``--real``). ``"PyTorch runs it on fake tensors ..."`` says too
    whether a real forward fails (a fake embedding looks up any id; a real one fails on an id
    past its rows, as fxcost's run on the known ids does), or runs: a refusal of fxcost's own."""
    model.requires_grad_(False)
    try:  # the last stage knows most (the known input values): its failure is the one said
        said, fake = f"PyTorch runs it on fake tensors (FlopCounterMode {_first_run(model, args, kwargs, _FAKE_STAGES):,})", True
    except Exception as e:
        said, fake = f"PyTorch fails too on fake tensors ({_failure(e)})", False
    if sum(p.numel() for p in model.parameters()) > REAL_CHECK_PARAMS:
        return said + ("; too large to run for real here" if fake else "")
    try:
        _real_run(rebuild, args, kwargs)
    except Exception as e:
        return said + (f"; but a real forward with random weights fails ({_failure(e)})" if fake
                       else f"; so does a real forward with random weights ({_failure(e)})")
    return said + ("; a real forward with random weights runs: a refusal of fxcost's own" if fake
                   else "; a real forward with random weights runs (--real)")


#: the ways a model on meta runs data-free, tried in turn: on its meta tensors as they are, on
#: fake tensors on meta, on fake CPU tensors (a forward that makes CPU tensors of its own)
_DATA_FREE = ((None, False), ("meta", False), ("cpu", False))
#: and last, on fake tensors following fxcost's known input values (:mod:`fxcost.pytorch.known`)
_FAKE_STAGES = (*_DATA_FREE, ("meta", True))


def _first_run(model: Any, args: Any, kwargs: Any, stages: Any) -> int:
    """:func:`_flop_count` of the first of ``stages`` (``(device, known)``) that runs; the last
    one's failure where none does."""
    from fxcost.pytorch.tensors import quiet_fake_mode

    failure: Exception = RuntimeError("no stage to run")
    for device, known in stages:
        try:
            with quiet_fake_mode():  # a stage that fails is an answer, not logged
                return _flop_count(model, args, kwargs, device, known)
        except Exception as e:
            failure = e
    raise failure


def _real_run(rebuild: Any, args: Any, kwargs: Any) -> int:
    """:func:`_flop_count` of the model ``rebuild`` makes with random weights, on the inputs made
    real (:func:`_materialized`)."""
    real = rebuild()
    real.requires_grad_(False)
    real_args, real_kwargs = _materialized((args, kwargs))
    return _flop_count(real, real_args, real_kwargs, None)


def _failure(e: BaseException | None) -> str:
    text = str(e).splitlines()[0] if e is not None and str(e) else ""
    return f"{type(e).__name__}: {text[:200]}"


def _beside_flop_counter() -> Any:
    """A dispatch mode for the ops FlopCounterMode prices at 0 whose arithmetic is plain, counted
    here by hand (MACs): a grouped matmul (mixture-of-experts layers) ``[M, K] x [G, K, N]`` is one
    ``K x N`` product per row, ``M * K * N``; a triangular solve ``A [*, n, n], B [*, n, k]`` is
    substitution, ``n (n - 1) / 2`` multiply-adds per right-hand side; Euclidean ``cdist`` of ``[*B,
    P, M]`` and ``[*B, R, M]`` where PyTorch takes its matmul path (``p = 2``, ``compute_mode`` 1, or
    the default with more than 25 rows: ``_euclidean_dist`` in ATen's Distance.cpp) is one matmul of
    ``[P, M + 2] x [M + 2, R]`` (the squared norms and ones appended), ``B * P * R * (M + 2)``
    (Mimi's codebook lookup; ``torch.cdist`` dispatches ``_euclidean_dist`` itself there). It also lets a data-free
    ``_grouped_mm`` run in float32 (torch's meta kernel demands bfloat16, its CUDA kernel's rule,
    where the CPU kernel takes float32), through fxcost's recorder's ``run_tagged``."""
    import math

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from fxcost.pytorch.recorder import run_tagged

    grouped, solve = torch.ops.aten._grouped_mm.default, torch.ops.aten.linalg_solve_triangular.default
    cdist, euclidean = torch.ops.aten._cdist_forward.default, torch.ops.aten._euclidean_dist.default

    class Beside(TorchDispatchMode):
        macs = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func is grouped:
                a, b = args[0], args[1]
                if a.dim() == 2 and b.dim() == 3:
                    self.macs += a.shape[0] * a.shape[1] * b.shape[-1]
                else:
                    raise NotImplementedError(f"no hand count for _grouped_mm of {a.dim()}-D x {b.dim()}-D")
            elif func is solve:
                a, b = args[0], args[1]
                left = kwargs.get("left", args[3] if len(args) > 3 else True)
                n, k = a.shape[-1], b.shape[-1] if left else b.shape[-2]
                self.macs += math.prod(b.shape[:-2]) * k * n * (n - 1) // 2
            elif func is cdist:
                x1, x2, p, mode = args[0], args[1], args[2], args[3] if len(args) > 3 else None
                rows, cols = x1.shape[-2], x2.shape[-2]
                if p != 2 or not (mode == 1 or (mode in (None, 0) and (rows > 25 or cols > 25))):
                    raise NotImplementedError(f"no hand count for cdist with p={p}, compute_mode={mode}")
                self.macs += math.prod(x1.shape[:-2]) * rows * cols * (x1.shape[-1] + 2)
            elif func is euclidean:  # what torch.cdist dispatches on that path
                x1, x2 = args[0], args[1]
                self.macs += math.prod(x1.shape[:-2]) * x1.shape[-2] * x2.shape[-2] * (x1.shape[-1] + 2)
            return run_tagged(func, args, kwargs)  # a data-free float32 _grouped_mm shaped as bfloat16

    return Beside()


#: the most parameters a model reading input values is built with random weights to be checked on
#: a real forward (four bytes each, a worker at a time); a larger one is checked on fake tensors
#: that follow fxcost's known input values (:mod:`fxcost.pytorch.known`)
REAL_CHECK_PARAMS = 1_000_000_000


def _counted(model: Any, args: Any, kwargs: Any, rebuild: Any = None) -> tuple[int, str]:
    """FlopCounterMode's total over one forward (with the MACs of the ops it prices at 0 added by
    hand, x 2: :func:`_beside_flop_counter`), and how it ran where that is not plain ("" or
    " on known values"): as it is, or for a model on meta whose forward reads a value there
    (``.item()``) on fake tensors, on meta then on the CPU (transformers takes the branches it
    takes under tracing), as the fake run does. Where those read a value too (one computed from the
    inputs: Longformer's padding check, a patch grid's sizes), the model ``rebuild`` makes with
    random weights runs on real inputs (integer ones without values zeros, as fxcost takes them);
    a model of more than :data:`REAL_CHECK_PARAMS` runs on fake tensors that follow the known
    values instead, FlopCounterMode counting the path they choose."""
    import torch

    on_meta = next(iter(model.parameters()), torch.empty(0, device="meta")).device.type == "meta"
    if not on_meta:  # a model with weights runs on random CPU inputs of the same shapes
        real_args, real_kwargs = _materialized((args, kwargs))
        return _flop_count(model, real_args, real_kwargs, None), ""
    try:
        return _first_run(model, args, kwargs, _DATA_FREE), ""
    except Exception:
        if rebuild is None:
            raise
    if sum(p.numel() for p in model.parameters()) <= REAL_CHECK_PARAMS:
        return _real_run(rebuild, args, kwargs), ""
    return _flop_count(model, args, kwargs, "meta", known=True), " on known values"


def _flop_count(model: Any, args: Any, kwargs: Any, device: str | None, known: bool = False) -> int:
    """One forward under FlopCounterMode: as given (``device`` None), or on fake tensors on
    ``device`` (following the inputs' known values where ``known``)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils._pytree import tree_map
    from torch.utils.flop_counter import FlopCounterMode

    from fxcost.pytorch.known import given_values, knowing
    from fxcost.pytorch.tensors import fake_tensor
    from fxcost.pytorch.working_copy import fakeify

    run_args, run_kwargs = args, kwargs
    mode: Any = contextlib.nullcontext()
    if device is not None:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        fakeify(model, mode, device)
        run_args, run_kwargs = tree_map(functools.partial(fake_tensor, fake_mode=mode, device=device), (args, kwargs))
        if known:
            mode = knowing(mode, tuple(given_values((args, kwargs), (args, kwargs))), (args, kwargs), (run_args, run_kwargs))
    beside = _beside_flop_counter()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter, mode, beside:
        model(*run_args, **run_kwargs)
    return int(counter.get_total_flops()) + 2 * beside.macs


def _where(e: Any) -> str:
    """A refusal in one line: its first line, and the line of the model's code that caused it where
    the message names one (``at file:line, in function: code``)."""
    lines = [line.strip() for line in str(e.message).splitlines()]
    at = [line for line in lines if line.startswith("at ")]
    return lines[0] + (f" ({at[-1]})" if at else "")


def sweep(specs: list[str], jobs: int, timeout: int, say: Any, real: bool = False,
          check: bool = False) -> list[dict[str, Any]]:
    """Each spec in a worker process (``jobs`` at once), stopped after ``timeout`` seconds; the rows
    in the order of ``specs``."""
    # fork on Linux: a worker starts with torch already imported (spawn imports it again, a second each)
    context: Any = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    rows: dict[str, dict[str, Any]] = {}
    waiting = list(specs)
    running: list[tuple[str, Any, Any, float]] = []  # spec, worker, its pipe, when it started
    while waiting or running:
        while waiting and len(running) < jobs:
            spec = waiting.pop(0)
            receive, send = context.Pipe(duplex=False)
            worker = context.Process(target=_one, args=(spec, send, real, check), daemon=True)
            worker.start()
            running.append((spec, worker, receive, time.monotonic()))
        for item in list(running):
            spec, worker, receive, began = item
            row = receive.recv() if receive.poll() else None
            late = row is None and time.monotonic() - began > timeout
            if row is None and not late and worker.is_alive():
                continue
            if late:
                worker.kill()
            worker.join()
            running.remove(item)
            name = spec.split(":", 1)[1]
            rows[spec] = row or {"model": name, "input": "", "status": "timeout" if late else "error",
                                 "why": f"stopped after {timeout} s" if late else f"the worker died (exit {worker.exitcode})",
                                 "seconds": round(time.monotonic() - began, 2)}
            say(f"{len(rows)}/{len(specs)} {name}: {rows[spec]['status']}")
        time.sleep(0.02)
    return [rows[s] for s in specs]


def zoo(which: str, filter: str = "*", *, jobs: int | None = None, timeout: int = 300, real: bool = False,  # noqa: A002
        check: bool = False, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Analyze every model of a zoo whose name matches ``filter`` (a shell pattern), each at its own
    input size in a worker process stopped after ``timeout`` seconds: ``which`` is ``"timm"``,
    ``"tv"`` (``"torchvision"``), ``"hf"`` (``"transformers"``) or ``"diffusers"``, as for
    ``fxcost zoo``. ``jobs``: worker processes (default: the machine's cores). ``real``: a model
    refused for reading values is analyzed again on real tensors with random weights. ``check``:
    each model against FlopCounterMode and its own ``parameters()`` (a ``"check"`` key: ``"exact"``,
    ``"exact on known values"`` for a model too large to build with weights whose forward reads
    its inputs' values, counted by FlopCounterMode on fake tensors that follow them, or what differs). ``progress`` gets a line per finished model.

    Returns a dict per model, in name order: ``model``, ``input``, ``params``, ``macs``,
    ``flops``, ``activations``, ``peak_bytes``, ``seconds``, ``status`` (``ok``, ``unsupported``,
    ``refused``, ``timeout``, ``error``), ``why``, and ``check`` with ``check=True``.

        >>> rows = fxcost.zoo("tv", "resnet*", check=True)
        >>> [(r["model"], r["macs"], r["check"]) for r in rows][:1]
        [('resnet101', 7801405440, 'exact')]
    """
    from fxcost.errors import InputSpecError

    if which not in ZOOS:
        raise InputSpecError(f"no zoo {which!r}", hint=f"one of {', '.join(ZOOS)}")
    found = names(which, filter)
    if not found:
        raise InputSpecError(f"no {which} model matches {filter!r}", hint="a shell pattern, e.g. 'resnet*'")
    return sweep([ZOOS[which] + n for n in found], jobs or os.cpu_count() or 1, timeout, progress or (lambda _: None),
                 real=real, check=check)
