"""32 architectures of examples/unseen.py, none of them in fxcost's other examples: current
transformers decoders, speech and text encoder-decoders, mixture-of-experts, a state-space model,
diffusers' UNets, VAE and DiT, hand-written oddities (issue 11, part 5). Each is analyzed data-free
(the model's real weights and inputs are given, but only a failure for want of values would use
them, and none may) and checked against references that are not fxcost:

- 2 x MACs == FlopCounterMode's FLOPs over a real forward on the unfused paths (tests/test_zoo.py's
  ``reference``), except where FlopCounterMode has no formula, said below with the arithmetic;
- params == the model's unique parameter count (tied weights once);
- the outputs' shapes == the real forward's; no op unsupported.
"""

from __future__ import annotations

import pytest
import torch

import fxcost
from examples.unseen import DIFFUSERS, ODD, UNSEEN, ZooModel
from tests.conftest import unique_param_count
from tests.test_zoo import flat_shapes, reference


def _uncounted_by_flop_counter(entry: ZooModel) -> int:
    """MACs FlopCounterMode has no formula for, by hand."""
    if entry.name == "spatial_transformer":
        # aten::affine_grid_generator: each of the 1 x 12 x 12 base points [x, y, 1] times theta^T
        # (3 x 2) is 6 MACs; FlopCounterMode counts it as 0
        return 1 * 12 * 12 * 3 * 2
    return 0


@pytest.mark.parametrize("entry", UNSEEN, ids=lambda e: e.name)
def test_an_unseen_architecture_is_exact(entry: ZooModel) -> None:
    if entry in DIFFUSERS:
        pytest.importorskip("diffusers")
    elif entry not in ODD:
        pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = entry.build()
    args, kwargs = entry.inputs()
    report = fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs)
    flops, out = reference(model, args, kwargs)

    totals = report.total()
    assert 2 * (totals.macs - _uncounted_by_flop_counter(entry)) == flops, (
        f"{entry.name}: fxcost MACs x2 = {2 * totals.macs:,}, FlopCounterMode = {flops:,}")
    assert totals.params == unique_param_count(model)
    if entry.params is not None:
        assert totals.params == entry.params
    assert [o.shape for o in report.outputs] == flat_shapes(out)
    assert not report.unsupported, [(u.op, u.where) for u in report.unsupported]
    assert report.mode != "real", report.trace.notes  # data-free: no value decided anything


def test_the_unseen_zoo_covers_every_category() -> None:
    names = {e.name for e in UNSEEN}
    assert len(names) == len(UNSEEN) >= 30
    for needed in ("mistral_sliding_window", "gemma2_softcap", "bloom_alibi", "falcon_alibi_mqa",
                   "phi_partial_rotary", "whisper", "bart", "mixtral_moe", "qwen2_moe_shared", "mamba_ssm",
                   "diffusers_unet2d_condition", "diffusers_vae", "diffusers_dit", "type_dispatch"):
        assert needed in names


def test_a_spectral_filter_counts_its_ffts_by_hand() -> None:
    entry = next(e for e in ODD if e.name == "spectral_filter")
    args, _ = entry.inputs()
    report = fxcost.analyze(entry.build(), example_inputs=args)
    ops = {o.op: o for row in report.layers for o in row.ops}
    # FlopCounterMode counts no FFT. By hand (docs/conventions.md): rfft2 of 1 x 4 x 8 x 8 real values
    # over two dims of 8: 5 x 256 x (3 + 3) / 2 (a real input: half), + 256 to normalize ("ortho");
    # irfft2 the same from the 1 x 4 x 8 x 5 half spectrum, counted on the 256 real outputs
    assert ops["aten::_fft_r2c"].flops == 5 * 256 * 6 // 2 + 256
    assert ops["aten::_fft_r2c"].macs == 0


def test_type_dispatch_falls_back_from_symbolic_tracing() -> None:
    entry = next(e for e in ODD if e.name == "type_dispatch")
    args, _ = entry.inputs()
    report = fxcost.analyze(entry.build(), example_inputs=args)
    assert report.trace.method != "symbolic" and report.trace.fallbacks
    assert report.total().macs == 3 * 8 * 8 + 3 * 1 * 8  # both Linears: the tensor branch
