"""The serving view of a causal language model: prefill, decode per token, KV cache, active
parameters, memory and a roofline estimate (``fxcost llm``). Data only: fxcost.pytorch.llm makes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fxcost.report.kinds import Analysis
from fxcost.report.records import Fit, Record

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Step(Record):
    """One forward of the model: the prefill over its tokens, or a decode step at a context."""

    tokens: int  # the new tokens, per sequence
    context: int  # tokens already in the cache
    macs: int
    flops: int
    bytes_moved: int = 0  # with a device: what the roofline prices
    peak_activation_bytes: int = 0  # the forward's peak, less its weights, buffers and inputs (the cache among them)


@dataclass(frozen=True)
class LayerType(Record):
    """A step's cost for one layer type (``Linear``, ``LlamaAttention``, ...), with its roofline."""

    type: str
    count: int
    macs: int
    flops: int
    bytes_moved: int = 0
    seconds: float = 0.0
    bound: str = ""


@dataclass(frozen=True)
class Roofline(Record):
    device: str
    peak_flops: float
    bandwidth_bytes_s: float
    prefill_s: float
    decode_s_per_token: float
    tokens_per_s: float
    source: str = ""


@dataclass(frozen=True)
class LLMReport(Record):
    """What serving the model costs: see docs/commands/llm.md for every field."""

    model: str
    batch: int
    prompt: int
    generate: int
    dtype: str
    params: int
    active_params: int
    weights_bytes: int
    kv_bytes_per_token: int
    kv_bytes: int
    kv_dtype: str
    prefill: Step
    decode_first: Step
    decode_last: Step
    decode_total_macs: int
    decode_total_flops: int
    last_logits: bool
    prefill_types: tuple[LayerType, ...] = ()
    decode_types: tuple[LayerType, ...] = ()  # at the first decode step
    roofline: Roofline | None = None
    fit: Fit | None = None  # --fit: the largest batch whose memory (weights + KV cache + activations) fits
    notes: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()

    def memory(self) -> dict[str, int]:
        """Weights, the KV cache at prompt + generate tokens, and the larger of the two steps'
        peak activations: what serving this batch needs at least."""
        act = max(self.prefill.peak_activation_bytes, self.decode_last.peak_activation_bytes)
        return {"weights_bytes": self.weights_bytes, "kv_cache_bytes": self.kv_bytes,
                "prefill_activation_bytes": self.prefill.peak_activation_bytes,
                "decode_activation_bytes": self.decode_last.peak_activation_bytes,
                "total_bytes": self.weights_bytes + self.kv_bytes + act}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "analysis": Analysis.LLM.value, "model": self.model, "batch": self.batch, "prompt": self.prompt,
            "generate": self.generate, "dtype": self.dtype, "params": self.params, "active_params": self.active_params,
            "weights_bytes": self.weights_bytes,
            "kv_cache": {"bytes_per_token": self.kv_bytes_per_token, "bytes": self.kv_bytes, "dtype": self.kv_dtype},
            "prefill": {"tokens": self.prefill.tokens * self.batch, "macs": self.prefill.macs, "flops": self.prefill.flops,
                        "logits": "last" if self.last_logits else "all",
                        "by_type": [t.to_dict() for t in self.prefill_types]},
            "decode": {"first": {"context": self.decode_first.context, "macs": self.decode_first.macs,
                                 "flops": self.decode_first.flops},
                       "last": {"context": self.decode_last.context, "macs": self.decode_last.macs,
                                "flops": self.decode_last.flops},
                       "total_macs": self.decode_total_macs, "total_flops": self.decode_total_flops,
                       "by_type": [t.to_dict() for t in self.decode_types]},
            "memory": self.memory(),
        }
        if self.roofline is not None:
            d["roofline"] = self.roofline.to_dict()
        if self.fit is not None:
            d["fit"] = self.fit.to_dict()
        d["notes"] = list(self.notes)
        d["assumptions"] = list(self.assumptions)
        return d
