"""The public model zoos, exact (issue 22): the ops their models dispatch that fxcost had no formula
for, priced by hand arithmetic written here where FlopCounterMode has none.

So far: ``aten::linalg_solve_triangular`` (the GatedDeltaNet decoders: Qwen3-Next, Qwen3.5,
OLMo-hybrid, Lara), ``aten::polar`` (DeepSeek-V2, Llama-4's rotary embedding), ``aten::_is_all_true``
(BLT, Gemma-3n, SigLIP-2, ShieldGemma-2's checks)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import fxcost


def _substitution_macs(n: int, k: int, batch: int) -> tuple[int, int]:
    """Forward substitution written out: row i of each of the k right-hand sides takes i
    multiply-adds with the values solved before it, and one division by the diagonal."""
    macs = divisions = 0
    for _ in range(batch):
        for _ in range(k):
            for i in range(n):
                macs += i
                divisions += 1
    return macs, divisions


class _Op(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("unit", "left"), [(False, True), (True, True), (False, False)])
def test_a_triangular_solve_by_hand(unit: bool, left: bool) -> None:
    a, b = torch.randn(2, 4, 4).tril(), torch.randn(2, 4, 3) if left else torch.randn(2, 3, 4)
    solve = _Op(lambda a, b: torch.linalg.solve_triangular(a, b, upper=False, left=left, unitriangular=unit))
    total = fxcost.analyze(solve, example_inputs=(a, b)).total()
    macs, divisions = _substitution_macs(n=4, k=3, batch=2)
    assert (macs, divisions) == (2 * 3 * (0 + 1 + 2 + 3), 2 * 3 * 4) == (36, 24)
    assert total.macs == macs and total.flops == 2 * macs + (0 if unit else divisions)


def test_polar_and_is_all_true_by_hand() -> None:
    r, theta = torch.rand(5, 7), torch.rand(5, 7)
    total = fxcost.analyze(_Op(torch.polar), example_inputs=(r, theta)).total()
    assert (total.macs, total.flops) == (0, 4 * 5 * 7)  # cos, sin and two multiplies per element
    flags = torch.ones(6, 3, dtype=torch.bool)
    report = fxcost.analyze(_Op(lambda x: torch.ops.aten._is_all_true(x)), example_inputs=(flags,))
    assert report.total().flops == 6 * 3 and not report.unsupported  # each element read into the running AND


class _Shapes(TorchDispatchMode):
    """The shapes of the ops FlopCounterMode has no formula for, as a real forward calls them."""

    def __init__(self) -> None:
        super().__init__()
        self.solves: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []
        self.grouped: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if name == "aten::linalg_solve_triangular":
            self.solves.append((tuple(args[0].shape), tuple(args[1].shape), bool(kwargs.get("unitriangular", False))))
        elif name == "aten::_grouped_mm":
            self.grouped.append((tuple(args[0].shape), tuple(args[1].shape)))
        return func(*args, **kwargs)


def test_qwen3_next_is_exact() -> None:
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Qwen3NextForCausalLM"):
        pytest.skip("this transformers has no Qwen3-Next")
    config = tf.Qwen3NextConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_num_value_heads=4,
                                linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                                moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4,
                                num_experts_per_tok=2)
    torch.manual_seed(0)
    model = tf.Qwen3NextForCausalLM(config).eval()
    ids = torch.randint(0, 128, (2, 16))
    report = fxcost.analyze(model, example_inputs=(ids,))
    assert not report.unsupported and report.trace.method == "eager"  # the eager branch, not export's loop
    assert report.total().params == sum(p.numel() for p in model.parameters())
    counter, shapes = FlopCounterMode(display=False), _Shapes()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), counter, shapes:
        model(ids)
    # FlopCounterMode prices neither op: the triangular solves by substitution (above), the grouped
    # expert matmul [tokens, K] x [experts, K, N] as one [K] x [K, N] product per routed token
    solved = 0
    for a, b, _ in shapes.solves:
        n, k = a[-1], b[-1]
        batch = 1
        for d in b[:-2]:
            batch *= d
        solved += _substitution_macs(n, k, batch)[0]
    grouped = sum(x[0] * x[1] * w[-1] for x, w in shapes.grouped)
    assert shapes.solves and shapes.grouped
    assert 2 * report.total().macs == counter.get_total_flops() + 2 * (solved + grouped)
