"""The serving costs of a causal language model, from its own code on meta tensors.

- **Prefill**: :func:`fxcost.analyze` over ``batch x prompt`` token ids with the cache on.
- **Decode at context L**: the model's own cache object, built by a prefill of ``L`` tokens on
  meta tensors, is passed to one step of one new token per sequence, which is analyzed like any
  forward: the new token attends to ``L + 1`` positions. The first step is at ``L = prompt``, the
  last at ``prompt + generate - 1``. The total over all steps is exact: the step's MACs and
  FLOPs are measured at the ends and the middle of the range, and a range whose cost is not one
  straight line through them (a sliding window that fills) is halved until it is, down to steps
  measured one by one.
- **KV cache**: the bytes of the tensors in the cache the model itself makes (so grouped-query,
  multi-query, sliding-window and shared caches are what the model keeps), after a prefill of
  ``prompt`` tokens (per token: divided by the prompt and the batch), and at ``prompt + generate``
  as the last decode step leaves it (a prefill's cache may hold views into a fused projection's
  output, a decode step's concatenation does not).
- **Active parameters** of a mixture of experts: the total, less, in every ``experts`` module,
  the share of experts a token does not use (``1 - top_k / experts`` from the config).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from fxcost.counting.devices import Device, device
from fxcost.errors import InputSpecError
from fxcost.pytorch.analyze import Request, run
from fxcost.pytorch.memory import storage_bytes
from fxcost.pytorch.recorder import OpTagger
from fxcost.pytorch.step import parse_size, size_text
from fxcost.pytorch.tensors import dtype_name, parse_dtype, tensors_within
from fxcost.pytorch.working_copy import meta_copy
from fxcost.report.llm import LayerType, LLMReport, Roofline, Step
from fxcost.report.records import Fit
from fxcost.report.report import Report

ASSUMPTIONS = (
    "roofline: time = max(FLOPs / peak FLOP/s, bytes moved / bandwidth) per layer, summed; the datasheet's dense peaks",
    "no kernel launch overheads and perfect overlap of compute and memory traffic: the best case for the bytes counted, "
    "which are unfused (each op reads its inputs and writes its outputs; a fused kernel moves less)",
    "decode seconds per token: the mean of the first and the last step's estimates",
    "attention as PyTorch's math path on data-free tensors (its scores written and read, grouped K and V copied): a "
    "fused flash kernel moves less, so attention's estimate is the unfused one",
)


def _is_causal_lm(model: nn.Module) -> bool:
    """A model whose forward takes a KV cache (``cache=`` or ``past_key_values=``) and a switch to
    return one (``use_cache=``): transformers' causal LMs, and a user's model that does the same."""
    params = inspect.signature(model.forward).parameters
    return _cache_name(model) is not None and ("use_cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()))


def _cache_name(model: nn.Module) -> str | None:
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def _position_limit(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _cache_of(out: Any) -> Any:
    for key in ("cache", "past_key_values"):
        c = getattr(out, key, None)
        if c is not None:
            return c
    raise InputSpecError("the model returned no cache with use_cache=True", hint="fxcost llm needs a model that returns its KV cache")


def kv_bytes(cache: Any) -> tuple[int, str]:
    """The bytes of the distinct storages a cache holds, and their dtype."""
    tensors = tensors_within(cache)
    dtypes = sorted({dtype_name(t.dtype) for t in tensors if t.is_floating_point()})
    return storage_bytes(tensors), ",".join(dtypes)


def active_params(model: nn.Module) -> tuple[int, int, str]:
    """Total unique parameters, those a token uses, and how the active count was found."""
    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    config = getattr(model, "config", None)
    experts = next((getattr(config, k) for k in ("num_local_experts", "num_experts", "n_routed_experts")
                    if isinstance(getattr(config, k, None), int)), None)
    top_k = getattr(config, "num_experts_per_tok", None)
    if not experts or not isinstance(top_k, int):
        return total, total, "dense: every parameter is used by every token"
    inactive = 0
    found = 0
    for path, m in model.named_modules():
        if path.split(".")[-1] != "experts":
            continue
        found += 1
        n = sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())
        inactive += n * (experts - top_k) // experts
    if not found:
        return total, total, f"{experts} experts in the config but no module named experts: active counted as total"
    return total, total - inactive, (f"mixture of experts: {top_k} of {experts} experts per token in each of {found} experts "
                                     f"modules; everything else (embeddings, attention, routers, shared experts) active")


def llm(model: nn.Module, prompt: int, generate: int, *, batch: int = 1, dtype: torch.dtype | str | None = None,
        kv_dtype: torch.dtype | str | None = None, device_name: str | None = None, last_logits: bool = False,
        name: str | None = None, progress: Callable[[str], None] | None = None, fit: int | str | None = None) -> LLMReport:
    """The serving costs of a causal LM at ``batch`` sequences of ``prompt`` tokens generating
    ``generate`` more (see the module's docs); ``device_name`` adds the roofline estimate; ``fit``
    (``"80GiB"``) the largest batch whose memory fits."""
    say = progress or (lambda _: None)
    title = name or type(model).__name__
    _refuse(model, title, prompt, generate, batch, last_logits)
    dev = device(device_name) if device_name else None
    limit = parse_size(fit) if fit is not None else None
    as_dtype = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    kv_as = parse_dtype(kv_dtype) if isinstance(kv_dtype, str) else kv_dtype
    meta = meta_copy(model).eval()
    if as_dtype is not None:
        meta.to(as_dtype)
    cache_kw = _cache_name(meta)
    assert cache_kw is not None
    model_dtype = dtype_name(next((p.dtype for p in meta.parameters() if p.is_floating_point()), torch.float32))
    passes = _Passes(meta, title, batch, prompt, cache_kw, last_logits, traffic=dev is not None, say=say)
    first, last = prompt, prompt + generate - 1
    per_token, cache_dtype = kv_bytes(passes.cache_at(prompt))
    notes = []
    if kv_as is not None:
        have = parse_dtype(cache_dtype.split(",")[0]) if cache_dtype else kv_as
        passes.scale = (torch.empty((), dtype=kv_as).element_size(), torch.empty((), dtype=have).element_size())
        notes.append(f"KV cache as {dtype_name(kv_as)}: the model's cache bytes x {passes.scale[0]}/{passes.scale[1]}")
    decode = passes.decode
    decode(first), decode(last)  # with their memory: the steps shown; the others are counted alone

    def counts(c: int) -> tuple[int, int]:
        t = decode(c, memory=False).total()
        return t.macs, t.flops

    total_macs, total_flops = _exact_total(counts, first, last)
    cache, full = passes.cache_after(last)
    notes.insert(0, f"KV cache: {type(cache).__name__}, {cache_dtype}, read from the tensors the model makes")
    if kv_as is not None:
        per_token, cache_dtype = per_token * passes.scale[0] // passes.scale[1], dtype_name(kv_as)
    total, active, how = active_params(meta)
    notes.append(f"active parameters: {how}")
    notes.append(f"prefill computes the logits of {'the last position' if last_logits else 'every position'}"
                 + ("" if last_logits else " (--last-logits: only the last, as generate does)"))
    pre = passes.prefill()
    report = LLMReport(
        model=title, batch=batch, prompt=prompt, generate=generate, dtype=model_dtype, params=total, active_params=active,
        weights_bytes=passes.weights, kv_bytes_per_token=per_token // (batch * prompt), kv_bytes=full,
        kv_dtype=cache_dtype, prefill=_step(pre, prompt, 0), decode_first=_step(decode(first), 1, first),
        decode_last=_step(decode(last), 1, last), decode_total_macs=total_macs, decode_total_flops=total_flops,
        last_logits=last_logits, prefill_types=_types(pre, dev, model_dtype), decode_types=_types(decode(first), dev, model_dtype),
        notes=tuple(notes), assumptions=ASSUMPTIONS if dev else ())
    if limit is not None:
        report = replace(report, fit=_fit(limit, report, lambda rows: passes.memory_at(rows, last)))
    if dev is not None:
        pre_s = _seconds(pre, dev, model_dtype)
        step_s = (_seconds(decode(first), dev, model_dtype) + _seconds(decode(last), dev, model_dtype)) / 2
        report = replace(report, roofline=Roofline(dev.name, dev.peak(model_dtype), dev.bandwidth_bytes_s, pre_s, step_s,
                                                   batch / step_s if step_s else float("inf"), dev.source))
    return report


class _Passes:
    """The passes fxcost llm prices on the model's data-free copy: prefills and decode steps, each
    analyzed once per (context, batch) and kept, and the caches they read."""

    def __init__(self, meta: nn.Module, title: str, batch: int, prompt: int, cache_kw: str, last_logits: bool, *,
                 traffic: bool, say: Callable[[str], None]) -> None:
        self.meta, self.title, self.batch, self.prompt, self.cache_kw = meta, title, batch, prompt, cache_kw
        self.extra = {"logits_to_keep": 1} if last_logits else {}
        self.traffic, self.say = traffic, say
        self.scale = (1, 1)  # the cache's bytes at --kv-dtype, as a fraction of the model's
        self.weights = storage_bytes(meta.parameters())
        self.prefills: dict[int, Report] = {}
        self.decoded: dict[tuple[int, int], Report] = {}
        self.counted: dict[tuple[int, int], Report] = {}  # decode steps analyzed for their counts alone
        self.caches: dict[tuple[int, int], Any] = {}

    def ids(self, n: int, rows: int) -> torch.Tensor:
        return torch.empty(rows, n, dtype=torch.long, device="meta")

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The model's forward on its data-free copy, dispatched as the analysis dispatches it (the
        same kernels: torch's meta kernel for ``_grouped_mm`` wants bfloat16 where the CPU takes any
        float, which the analysis answers for MoE experts)."""
        with torch.no_grad(), OpTagger():
            return self.meta(*args, **kwargs)

    def cache_at(self, length: int, rows: int | None = None) -> Any:
        """The cache a prefill of ``length`` tokens leaves, made once: read it, or hand it to an
        analysis (which runs on a copy); a forward run on it directly appends to it."""
        rows = rows or self.batch
        if (length, rows) not in self.caches:
            self.caches[length, rows] = _cache_of(self.run(self.ids(length, rows), use_cache=True))
        return self.caches[length, rows]

    def prefill(self, rows: int | None = None) -> Report:
        rows = rows or self.batch
        if rows not in self.prefills:
            self.say(f"prefill: {rows} x {self.prompt} tokens")
            self.prefills[rows] = self._analyzed(self.ids(self.prompt, rows), {"use_cache": True, **self.extra})
        return self.prefills[rows]

    def decode(self, context: int, rows: int | None = None, memory: bool = True) -> Report:
        """The decode step at ``context``; ``memory=False``: for its counts alone (no peak measured)."""
        rows = rows or self.batch
        if (context, rows) in self.decoded:
            return self.decoded[context, rows]
        if not memory and (context, rows) in self.counted:
            return self.counted[context, rows]
        self.say(f"decode step at context {context:,}")
        kwargs = {self.cache_kw: self.cache_at(context, rows), "use_cache": True, **self.extra}
        report = self._analyzed(self.ids(1, rows), kwargs, memory)
        (self.decoded if memory else self.counted)[context, rows] = report
        return report

    def _analyzed(self, ids: torch.Tensor, kwargs: dict[str, Any], memory: bool = True) -> Report:
        """One pass analyzed on the data-free copy; ``memory=False``: its counts alone."""
        request = Request.of(None, (ids,), kwargs, "fxcost", name=self.title, traffic=self.traffic)
        return run(self.meta, replace(request, memory=memory))

    def cache_after(self, last: int, rows: int | None = None) -> tuple[Any, int]:
        """The cache as generating leaves it (the last step's output: a prefill's may hold views
        into a fused projection's output), and its bytes (at --kv-dtype)."""
        rows = rows or self.batch
        before = copy.deepcopy(self.cache_at(last, rows))  # the step appends to it
        cache = _cache_of(self.run(self.ids(1, rows), **{self.cache_kw: before, "use_cache": True}))
        return cache, kv_bytes(cache)[0] * self.scale[0] // self.scale[1]

    def memory_at(self, rows: int, last: int) -> int:
        """What serving ``rows`` sequences needs, measured (LLMReport.memory's total)."""
        return self.weights + self.cache_after(last, rows)[1] + max(
            _step(self.prefill(rows), self.prompt, 0).peak_activation_bytes,
            _step(self.decode(last, rows), 1, last).peak_activation_bytes)


def _refuse(model: nn.Module, title: str, prompt: int, generate: int, batch: int, last_logits: bool) -> None:
    """What fxcost llm cannot drive, refused before any copy is made."""
    if not isinstance(model, nn.Module) or not _is_causal_lm(model):
        raise InputSpecError(f"{title} is not a causal language model fxcost llm can drive: it needs a forward that takes a KV "
                             f"cache (cache= or past_key_values=) and returns it",
                             hint="a transformers *ForCausalLM (hf:LlamaForCausalLM), or fxcost analyze for any other model")
    for what, v in (("--prompt", prompt), ("--generate", generate), ("--batch", batch)):
        if not isinstance(v, int) or v < 1:
            raise InputSpecError(f"{what} must be a positive number of tokens, got {v}", hint=f"e.g. {what} 128")
    limit = _position_limit(model)
    if limit is not None and prompt + generate > limit:
        raise InputSpecError(f"{title} attends to at most {limit:,} positions; prompt {prompt:,} + generate {generate:,} = "
                             f"{prompt + generate:,} is beyond it", hint=f"keep --prompt + --generate within {limit:,}")
    if last_logits and "logits_to_keep" not in inspect.signature(model.forward).parameters:
        raise InputSpecError(f"{title}.forward has no logits_to_keep argument: --last-logits cannot ask for the last "
                             f"position's logits alone", hint="drop --last-logits")


def _fit(limit: int, report: LLMReport, memory: Callable[[int], int]) -> Fit:
    """The largest batch whose measured memory is at most ``limit``: the memory is measured at
    batches 1, 2 and 3; where those lie on a line the line gives the answer, which is then
    measured (it and the next batch) to confirm; otherwise, or if the line was wrong, doubling
    and bisection on measurements."""
    if report.weights_bytes > limit:
        raise InputSpecError(f"the weights alone take {size_text(report.weights_bytes)}; nothing fits in {size_text(limit)}",
                             hint="a larger --fit, or a lower-precision --dtype")
    seen: dict[int, int] = {}

    def mem(b: int) -> int:
        if b not in seen:
            seen[b] = memory(b)
        return seen[b]

    if mem(1) > limit:
        raise InputSpecError(f"one sequence already needs {size_text(mem(1))}, more than {size_text(limit)}",
                             hint="a larger --fit, a shorter --prompt or --generate, or a lower-precision --dtype or --kv-dtype")
    slope = mem(2) - mem(1)
    if slope > 0 and mem(3) - mem(2) == slope:
        b = 1 + (limit - mem(1)) // slope
        if mem(b) <= limit < mem(b + 1):
            return Fit(limit, b, mem(b), mem(b + 1))
    lo, hi = 1, 2
    while hi <= 2**20 and mem(hi) <= limit:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if mem(mid) <= limit else (lo, mid)
    return Fit(limit, lo, mem(lo), mem(lo + 1))


def _step(r: Report, tokens: int, context: int) -> Step:
    t = r.total()
    p = r.peak_memory
    act = p.peak_bytes - p.params_bytes - p.buffers_bytes - p.inputs_bytes if p is not None else 0
    return Step(tokens, context, t.macs, t.flops, t.bytes_moved, act)


def _seconds(r: Report, dev: Device, dtype: str) -> float:
    hw = dev.at(dtype)
    return sum(hw.roof(row.id, row.flops, row.bytes_moved).seconds for row in r.layers)


def _types(r: Report, dev: Device | None, dtype: str) -> tuple[LayerType, ...]:
    """The step's rows by type, with their roofline time (each row's, summed) where a device is given."""
    acc: dict[str, list[Any]] = {}
    for row in r.layers:
        if not (row.macs or row.flops or row.bytes_moved):
            continue
        a = acc.setdefault(row.type, [0, 0, 0, 0, 0.0, 0.0, 0.0])
        a[0] += 1
        a[1] += row.macs
        a[2] += row.flops
        a[3] += row.bytes_moved
        if dev is not None:
            est = dev.at(dtype).roof(row.id, row.flops, row.bytes_moved)
            a[4] += est.seconds
            a[5 if est.bound == "compute" else 6] += est.seconds
    out = [LayerType(t, n, macs, flops, moved, secs, ("compute" if c >= m else "memory") if dev else "")
           for t, (n, macs, flops, moved, secs, c, m) in acc.items()]
    return tuple(sorted(out, key=lambda x: -x.flops))


def _exact_total(cost: Callable[[int], tuple[int, int]], first: int, last: int) -> tuple[int, int]:
    """The sum of ``cost(c)`` for every context ``c`` from ``first`` to ``last``: a range whose
    costs lie on one line (checked at its two ends, its second point and its middle) is summed
    as an arithmetic series; any other is halved, down to ranges of three measured one by one."""
    if last - first < 3:
        sums = [cost(c) for c in range(first, last + 1)]
        return sum(s[0] for s in sums), sum(s[1] for s in sums)
    mid = (first + last) // 2
    a, a1, m, b = cost(first), cost(first + 1), cost(mid), cost(last)
    n = last - first + 1
    totals = []
    for i in range(2):
        step = a1[i] - a[i]
        if m[i] != a[i] + step * (mid - first) or b[i] != a[i] + step * (last - first):
            break
        totals.append(n * a[i] + step * n * (n - 1) // 2)
    else:
        return totals[0], totals[1]
    left, right = _exact_total(cost, first, mid), _exact_total(cost, mid + 1, last)
    return left[0] + right[0], left[1] + right[1]


