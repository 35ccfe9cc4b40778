"""Costs as exact formulas of the input sizes (issue 23): a letter in an input size (``Bx3xHxW``,
``BxS:int64``) makes every figure an exact sympy expression of it, from the model's own code run
once on PyTorch's symbolic shapes, valid where the printed domain holds.

Checked against what is not the formula:

- the concrete analysis at sizes the formula was not built from (each test's hint is another
  size), every metric of every row, the outputs and the inputs. The concrete analysis is the fake
  run (``tracer="eager"``), the route a symbolic analysis takes; tests/test_zoo.py and
  tests/test_public_zoos.py check that route against FlopCounterMode over real forwards;
- hand arithmetic: VGG-19's convolutions as functions of H and W, a GPT's matmuls per layer;
- Narayanan et al. (SC'21, eq. 3)'s closed form for a GPT's training FLOPs, term by term;
- conditions of the domain a model's code states (BERT's 512 positions, a branch at 8 tokens).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
import sympy
import torch
from torch import nn

import fxcost
from fxcost.errors import InputSpecError
from tests.conftest import unique_param_count

B, S, H, W = sympy.symbols("B S H W", integer=True, positive=True)


def _same(formula: fxcost.Report, concrete: fxcost.Report) -> None:
    """Every figure of ``formula`` (evaluated) equals ``concrete``'s: totals, rows, outputs,
    inputs, the peak memory (its bytes, their breakdown, the module and phase it happens in; a
    training step's timeline is the concrete run's alone)."""
    assert formula.peak_memory is not None and concrete.peak_memory is not None
    assert dataclasses.replace(formula.peak_memory, timeline=()) == dataclasses.replace(concrete.peak_memory, timeline=())
    assert formula.total() == concrete.total()
    assert [(r.name, r.type, r.kind, r.counts, r.output) for r in formula.layers] == \
        [(r.name, r.type, r.kind, r.counts, r.output) for r in concrete.layers]
    assert formula.outputs == concrete.outputs
    assert formula.inputs == concrete.inputs


def _tiny_gpt2(layers: int = 2, hidden: int = 64, heads: int = 4, vocab: int = 100, device: str = "meta") -> nn.Module:
    tf = pytest.importorskip("transformers")
    config = tf.GPT2Config(n_layer=layers, n_embd=hidden, n_head=heads, vocab_size=vocab, n_positions=1024)
    with torch.device(device):
        return tf.GPT2LMHeadModel(config).eval()


def _flop_counter_on_fakes(model: nn.Module, shape: tuple[int, ...]) -> int:
    """PyTorch's FlopCounterMode over the model's forward on a fake input of ``shape`` (its
    kernels' own shape arithmetic, no data: a 512x512 VGG-19 in a second)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(shape))
    return int(counter.get_total_flops())


# --- CNNs: MACs as expressions of H and W ------------------------------------------------------

# (B, H, W): the 224, 225, 299 and 512, and a non-square image; the formula is built at
# the hint B=4, H=W=256, none of them
CNN_SIZES = [(2, 224, 224), (3, 225, 225), (2, 299, 299), (2, 512, 512), (3, 240, 320)]


@pytest.mark.parametrize("name", ["vgg19", "resnet50"])
def test_a_cnn_is_exact_at_sizes_the_formula_was_not_built_from(name: str) -> None:
    tv = pytest.importorskip("torchvision")
    model = getattr(tv.models, name)()
    formula = fxcost.analyze(model, ("B", 3, "H", "W"), hint="B=4,H=256,W=256")
    assert formula.sizes is not None and formula.sizes.letters == ("B", "H", "W")
    for b, h, w in CNN_SIZES:
        evaluated = formula.at(B=b, H=h, W=w)
        _same(evaluated, fxcost.analyze(model, (b, 3, h, w), tracer="eager"))
        # and against what is not fxcost: PyTorch's counter at that size, the model's parameters
        assert 2 * evaluated.total().macs == _flop_counter_on_fakes(model, (b, 3, h, w))
        assert evaluated.total().params == unique_param_count(model)


def test_vgg19_macs_are_the_hand_formula_of_h_and_w() -> None:
    tv = pytest.importorskip("torchvision")
    formula = fxcost.analyze(tv.models.vgg19(), ("B", 3, "H", "W"))

    def convs(*pairs: tuple[int, int]) -> int:  # 3x3 convolutions, padding 1: 9 * Ci * Co MACs per position
        return sum(9 * ci * co for ci, co in pairs)

    expected = B * (
        convs((3, 64), (64, 64)) * H * W  # 38,592 per position
        + convs((64, 128), (128, 128)) * sympy.floor(H / 2) * sympy.floor(W / 2)  # after each 2x2 max pool
        + convs((128, 256), *[(256, 256)] * 3) * sympy.floor(H / 4) * sympy.floor(W / 4)
        + convs((256, 512), *[(512, 512)] * 3) * sympy.floor(H / 8) * sympy.floor(W / 8)
        + convs(*[(512, 512)] * 4) * sympy.floor(H / 16) * sympy.floor(W / 16)
        # the classifier reads the adaptive pool's 7x7x512 whatever the size: 25088*4096 + 4096*4096 + 4096*1000
        + 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    )
    assert sympy.simplify(formula.total().macs - expected) == 0
    # no letter in it: the parameters do not depend on the size. 143,667,240: torchvision's published
    # figure for vgg19 (its weights table), and Simonyan & Zisserman's 144M
    assert formula.total().params == 143_667_240


# --- GPT-2's family: the matmuls, and Narayanan et al.'s training FLOPs ----------------------


GPT_SIZES = [(2, 7), (3, 64), (2, 100), (5, 333), (4, 1000)]


def test_a_gpt_is_exact_at_sizes_the_formula_was_not_built_from() -> None:
    from tests.test_zoo import reference

    model = _tiny_gpt2()
    torch.manual_seed(0)
    real = _tiny_gpt2(device="cpu")  # the same configuration with weights, for PyTorch's own counter
    for train in (False, True):
        formula = fxcost.analyze(model, "BxS:int64", hint="B=3,S=256", train=train)
        for b, s in GPT_SIZES:
            evaluated = formula.at(B=b, S=s)
            _same(evaluated, fxcost.analyze(model, f"{b}x{s}:int64", tracer="eager", train=train))
            if not train:  # FlopCounterMode over a real forward (unfused attention) at that size
                flops, _ = reference(real, (torch.zeros(b, s, dtype=torch.int64),), {})
                assert 2 * evaluated.total().macs == flops
            assert evaluated.total().params == unique_param_count(real)


@pytest.mark.parametrize(("layers", "hidden", "heads", "vocab"), [(2, 64, 4, 100), (3, 96, 6, 1000)])
def test_a_gpts_training_flops_are_narayanans_closed_form(layers: int, hidden: int, heads: int, vocab: int) -> None:
    """Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM" (SC'21), eq. 3: a training step (forward and backward, no recomputation) of a GPT
    with l layers of width h and a vocabulary of V costs 72*B*S*l*h^2 * (1 + S/(6h) + V/(12*l*h))
    FLOPs in its matmuls. Written out per layer, forward: Q, K, V and the output projection
    4*h^2 MACs per token, the MLP 8*h^2, the scores Q K^T and their product with V S*h each: 2
    MACs per FLOP. The backward doubles every matmul (the input's gradient and the weight's)."""
    l, h, V = layers, hidden, vocab  # noqa: E741 (the paper's names)
    model = _tiny_gpt2(layers, hidden, heads, vocab)
    report = fxcost.analyze(model, "BxS:int64", train=True)
    forward_macs = l * (12 * h**2 * B * S + 2 * B * S**2 * h) + B * S * h * V  # + the logits, B*S*h*V
    assert sympy.expand(report.total().macs - forward_macs) == 0
    assert sympy.expand(report.total().backward_macs - 2 * forward_macs) == 0
    matmul_flops = 2 * (report.total().macs + report.total().backward_macs)
    narayanan = 72 * B * S * l * h**2 * (1 + S / (6 * h) + sympy.Rational(V, 12 * l * h))
    assert sympy.expand(matmul_flops - narayanan) == 0
    # term by term: 72*B*S*l*h^2 (dense), 12*B*S^2*l*h (attention), 6*B*S*h*V (logits)
    assert sympy.expand(matmul_flops) == sympy.expand(72 * B * S * l * h**2 + 12 * B * S**2 * l * h + 6 * B * S * h * V)


# --- the domain --------------------------------------------------------------------------------


def test_the_domain_holds_a_models_position_table() -> None:
    """BERT's 512 learned positions: its position ids are a slice of a 512-long buffer, a
    condition PyTorch records; past it, report.at() refuses."""
    tf = pytest.importorskip("transformers")
    config = tf.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=100)
    with torch.device("meta"):
        model = tf.BertModel(config).eval()
    formula = fxcost.analyze(model, "BxS:int64,attention_mask=BxS:int64", hint="S=64")
    assert "S <= 512" in formula.sizes.domain
    # per layer: Q, K, V, output 4*64^2 + MLP 2*64*128 = 32,768 MACs per token, the scores 2*S*64
    # per token; the pooler's 64x64 once per sequence
    assert sympy.expand(formula.total().macs - (2 * (32_768 * B * S + 128 * B * S**2) + 4096 * B)) == 0
    for b, s in [(2, 2), (3, 100), (2, 512)]:
        _same(formula.at(B=b, S=s), fxcost.analyze(model, f"{b}x{s}:int64,attention_mask={b}x{s}:int64", tracer="eager"))
    with pytest.raises(ValueError, match="S <= 512"):
        formula.at(B=2, S=513)


class Windowed(nn.Module):
    """Scores over all tokens up to 8, over the first 8 past that: a branch on the size."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x)
        if x.shape[1] > 8:
            return (q[:, :8] @ q[:, :8].transpose(1, 2)).sum() + q.sum()
        return (q @ q.transpose(1, 2)).sum()


def test_a_branch_on_a_size_gives_a_piece_for_each_side() -> None:
    formula = fxcost.analyze(Windowed(), ("B", "S", 16), hint="S=32")
    # past 8: the projection 16*16 per token, then 8x8 scores of 16 each per sequence
    assert formula.total().macs == 256 * B * S + 8 * 8 * 16 * B
    assert "S > 8" in formula.sizes.domain
    (other,) = formula.pieces
    assert "S <= 8" in other.sizes.domain
    assert other.total().macs == 256 * B * S + 16 * B * S**2  # up to 8: SxS scores of 16 each
    for s in (2, 3, 8, 9, 40):  # both sides, their edges included
        _same(formula.at(B=2, S=s), fxcost.analyze(Windowed(), (2, s, 16), tracer="eager"))


def test_mistrals_sliding_window_is_exact_on_both_sides_of_the_window() -> None:
    """transformers' Mistral (this release) computes every score and masks those outside the
    window, with no branch on S: one piece, exact on both sides of S = window (4). With its
    cache (use_cache, the default), the cache keeps the last window - 1 tokens, a branch on S:
    the domain starts at S = 4, and below it the cache's slice fixes S (a note says so)."""
    tf = pytest.importorskip("transformers")
    config = tf.MistralConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    with torch.device("meta"):
        model = tf.MistralForCausalLM(config).eval()
    formula = fxcost.analyze(model, "BxS:int64", hint="S=16", example_kwargs={"use_cache": False})
    assert formula.sizes.domain == ("B >= 2", "S >= 2") and not formula.pieces
    for s in (2, 3, 5, 9, 40):
        concrete = fxcost.analyze(model, f"2x{s}:int64", example_kwargs={"use_cache": False}, tracer="eager")
        _same(formula.at(B=2, S=s), concrete)
    cached = fxcost.analyze(model, "BxS:int64", hint="S=16")
    assert "S >= 4" in cached.sizes.domain and not cached.pieces
    assert any("S = 3" in n and "fixes S" in n for n in cached.trace.notes), cached.trace.notes
    _same(cached.at(B=2, S=9), fxcost.analyze(model, "2x9:int64", tracer="eager"))


class Symmetric(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x.transpose(-1, -2)


def test_two_letters_the_model_makes_one_size_are_said() -> None:
    formula = fxcost.analyze(Symmetric(), ("B", 3, "H", "W"), hint="H=8,W=8")
    assert formula.sizes.equal == ("W = H",)
    assert formula.total().flops == 3 * B * H**2  # the add: one FLOP per element of B x 3 x H x H


# --- output ------------------------------------------------------------------------------------


def test_json_gives_every_expression_as_text_with_its_symbols_and_domain() -> None:
    from fxcost.exporters import render

    formula = fxcost.analyze(Windowed(), ("B", "S", 16), hint="S=32")
    d = json.loads(render(formula, "json"))
    assert d["sizes"] == {"letters": ["B", "S"], "hints": [2, 32], "domain": list(formula.sizes.domain), "equal": [],
                          "branches": ["S > 8"], "fits": []}
    assert sympy.sympify(d["totals"]["macs"], locals={"B": B, "S": S}) == formula.total().macs
    assert d["pieces"][0]["totals"]["macs"] == str(formula.pieces[0].total().macs)


def test_the_table_shows_each_rows_leading_term() -> None:
    from fxcost.report.formulas import leading

    assert leading(256 * B * S**2 + 104704 * B * S) == "~256*B*S**2"
    assert leading(12288 * B * S) == "12288*B*S"
    assert leading(sympy.Integer(6400)) == "6,400"
    # floor() counts as its argument: 9408*B*floor((H-1)/2)*floor((W-1)/2) leads with 2352*B*H*W
    assert leading(9408 * B * sympy.floor((H - 1) / 2) * sympy.floor((W - 1) / 2)) == "~2352*B*H*W"


def test_the_command_line_prints_the_formula_and_its_domain(tmp_path: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "fxcost", "analyze", "examples/vgg.py:vgg11", "--input", "Bx3xHxW",
                          "--hint", "H=64,W=64", "-f", "json", "-o", str(tmp_path / "vgg.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    d = json.loads((tmp_path / "vgg.json").read_text())
    assert d["sizes"]["letters"] == ["B", "H", "W"] and d["sizes"]["hints"] == [2, 64, 64]
    table = subprocess.run([sys.executable, "-m", "fxcost", "analyze", "examples/vgg.py:vgg11", "--input", "Bx3xHxW",
                            "--hint", "H=64,W=64"], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "Domain" in table.stdout and "B >= 2" in table.stdout and "*B*H*W" in table.stdout


# --- bad input ---------------------------------------------------------------------------------


def test_a_size_the_model_fixes_is_refused_with_its_line() -> None:
    tv = pytest.importorskip("torchvision")
    vit = tv.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64)
    with pytest.raises(InputSpecError, match=r"fixes H at 32 \(at .*vision_transformer\.py:\d+, in _process_input") as e:
        fxcost.analyze(vit, ("B", 3, "H", "W"), hint="H=32,W=32")
    assert "give H as the number 32" in str(e.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hint": "H=64", "dims": {"H": (2, 32)}}, "outside H's range"),
    ({"hint": "T=64"}, "names 'T', which no input size has"),
    ({"hint": "H=1"}, "outside H's range"),
    ({"hint": "H=="}, "malformed --hint"),
], ids=["outside-range", "unknown-letter", "below-2", "malformed"])
def test_a_bad_hint_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        fxcost.analyze(Symmetric(), ("B", 3, "H", "H"), **kwargs)


def test_at_needs_every_letter_inside_the_domain() -> None:
    formula = fxcost.analyze(Symmetric(), ("B", 3, "H", "H"), hint="H=8")
    with pytest.raises(ValueError, match="missing H"):
        formula.at(B=2)
    with pytest.raises(ValueError, match="B >= 2"):
        formula.at(B=1, H=8)
    with pytest.raises(ValueError, match="symbolic report"):
        fxcost.analyze(Symmetric(), (2, 3, 8, 8)).at(B=2)


@pytest.mark.parametrize(("argv", "message"), [
    (["--input", "1x3x32x32", "--hint", "B=2"], "no --input size has one"),
    (["--input", "Bx3x32x32=1"], "gives values to a tensor whose size is a letter"),
    (["--input", "Bx3x32x32", "--input", "Bx3x64x64"], "give one --input with letters"),
    (["--input", "Bx3x32x32", "--real"], "no real tensor"),
    (["--input", "Bx3x32x32", "--tracer", "symbolic"], "followed by the fake run"),
    # one letter for the batch and the image: run at B = 2, the image is too small for VGG's pools
    (["--input", "Bx3xBxB"], "Output size is too small"),
], ids=["hint-without-letters", "values", "sweep", "real", "tracer", "one-letter-two-sizes"])
def test_the_command_line_refuses_bad_letters_with_exit_2(argv: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "fxcost", "analyze", "examples/vgg.py:vgg11", *argv],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


# --- every zoo model: exact at sizes it was not built from, or refused with a named reason ------

#: the zoo models a symbolic analysis refuses, and why (each message names the model's line):
#: PyTorch kernels that need a number where the model passes a size (its meta kernels for FFTs,
#: baddbmm and matmuls of some layouts, affine_grid's linspace, interpolate with a scale factor,
#: recurrent layers' batch), models that fix a size themselves (a ViT's image size, Mamba's
#: scan), value reads, and domains that admit only sizes near the hint ("pinned": AlexNet's
#: classifier reads a flattened 6x6 map, DiT's 4x4 patch grid)
ZOO_REFUSALS = {
    "hf_vit": "fixes H at 64", "clip_vision": "fixes H at 32", "mamba_ssm": "fixes S at 16",
    "bloom_alibi": "SymIntArrayRef expected to contain only concrete integers",
    "diffusers_unet2d": "fixes B at 2", "diffusers_unet2d_condition": "fixes B at 2", "diffusers_vae": "fixes B at 2",
    "spatial_transformer": "fixes H at 12", "spectral_filter": "fixes B at 2", "unet_bilinear": "fixes B at 2",
    "lstm_lm": "fixes B at 2", "gru_classifier": "fixes B at 2", "upsampler": "fixes B at 2",
    "tied_embeddings": "fixes S at 12", "data_dependent_branch": "reads a tensor's value",
    "root_data_dependent": "reads a tensor's value", "diffusers_dit": "pinned", "alexnet": "pinned",
}


def _pattern(t: torch.Tensor) -> list[Any]:
    """The letters a zoo input gets: B for the batch of a tensor of 2 dims or more, S for a
    sequence of token ids, H and W for an image's height and width."""
    if t.dim() < 2:
        return list(t.shape)
    if t.dtype.is_floating_point and t.dim() == 4:
        return ["B", t.shape[1], "H", "W"]
    if not t.dtype.is_floating_point and t.dim() == 2:
        return ["B", "S"]
    return ["B", *t.shape[1:]]


def _spec(args: tuple[Any, ...], kwargs: dict[str, Any], at: dict[str, int] | None = None) -> str:
    parts = []
    for name, t in [*((None, a) for a in args), *kwargs.items()]:
        sizes = [at[d] if at and isinstance(d, str) else d for d in _pattern(t)]
        text = "x".join(map(str, sizes)) + ":" + str(t.dtype).removeprefix("torch.")
        parts.append(text if name is None else f"{name}={text}")
    return ",".join(parts)


def _zoo() -> list[Any]:
    from examples.unseen import UNSEEN
    from examples.zoo import HF_ZOO, ZOO

    return [*UNSEEN, *ZOO, *HF_ZOO]


@pytest.mark.slow
@pytest.mark.parametrize("entry", _zoo(), ids=lambda e: e.name)
def test_every_zoo_model_is_exact_at_sizes_it_was_not_built_from_or_refused_with_a_reason(entry: Any) -> None:
    if "diffusers" in entry.name:
        pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = entry.build()
    args, kwargs = entry.inputs()
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    plain = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)} or None
    if not all(isinstance(a, torch.Tensor) for a in args):
        pytest.skip("a positional input that is not a tensor (a dict of them): letters size tensors given by shape")
    hints: dict[str, int] = {}
    for t in [*args, *tensors.values()]:
        for d, n in zip(_pattern(t), t.shape, strict=True):
            if isinstance(d, str):
                hints.setdefault(d, max(2, n))
    refusal = ZOO_REFUSALS.get(entry.name)
    try:
        formula = fxcost.analyze(model, _spec(args, tensors), example_kwargs=plain, hint=hints)
    except fxcost.FxcostError as e:
        assert refusal is not None and refusal in str(e), str(e)
        return
    # two sizes inside the domain, none of them the hint: each letter grown by k (W by 2k)
    points = []
    for k in (1, 2, 3, 5, 8, 16, 32, 64):
        at = {x: h + (k if i % 2 == 0 else 2 * k) for i, (x, h) in enumerate(hints.items())}
        try:
            formula.at(**at)
        except ValueError:
            continue
        points.append(at)
        if len(points) == 2:
            break
    if refusal == "pinned":
        assert not points, formula.sizes.domain
        return
    assert refusal is None and points, f"no size in the domain: {formula.sizes.domain}"
    for at in points:
        concrete = fxcost.analyze(model, _spec(args, tensors, at), example_kwargs=plain, tracer="eager")
        _same(formula.at(**at), concrete)


def test_fit_solves_the_budget_on_the_formula_and_measures_the_answer() -> None:
    """--fit with letters: the largest B (H and W at their hints) whose peak fits, solved on the
    peak's expressions, equals the batch the concrete --fit finds by doubling and bisection on
    measured steps; each letter's answer and the next size are measured, and agree."""
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18()
    formula = fxcost.analyze(model, ("B", 3, "H", "W"), fit="2GiB")
    fits = {f.letter: f for f in formula.sizes.fits}
    concrete = fxcost.analyze(model, (2, 3, 224, 224), fit="2GiB").peak_memory.fit
    assert fits["B"].size == concrete.batch and fits["B"].peak_bytes == concrete.peak_bytes
    for f in fits.values():
        assert f.peak_bytes <= 2**31 < f.next_peak_bytes
        assert (f.measured_peak_bytes, f.measured_next_peak_bytes) == (f.peak_bytes, f.next_peak_bytes)


def test_latex_typesets_the_expressions() -> None:
    from fxcost.exporters import render

    formula = fxcost.analyze(_tiny_gpt2(), "BxS:int64", hint="S=64")
    tex = render(formula, "latex")
    # per layer the scores 2*B*S^2*64 MACs, two layers: 256*B*S^2 leads the total
    assert r"$\sim 256 B S^{2}$" in tex
    assert r"Total MACs & $256 B S^{2} + 104704 B S$" in tex  # 2 * 12 * 64^2 + 64 * 100 (the logits) = 104,704


def test_a_sweep_prints_the_formula_beside_the_measured_points() -> None:
    """fxcost.sweep with one size in letters: the formula at each measured size, from the formula
    alone, equals the measured params, MACs and FLOPs; a size outside its domain (a batch of 1:
    PyTorch fixes a size of 1) says so instead of a number."""
    from fxcost.exporters import render

    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18()
    sweep = fxcost.sweep(model, [("B", 3, "H", "W"), (2, 3, 224, 224), (3, 3, 240, 320), (1, 3, 224, 224)])
    assert sweep.formula is not None and len(sweep.reports) == 3
    assert sweep.points() == [{"B": 2, "H": 224, "W": 224}, {"B": 3, "H": 240, "W": 320}, {"B": 1, "H": 224, "W": 224}]
    by = sweep.by_formula()
    for formula, measured in zip(by[:2], sweep.reports[:2], strict=True):
        assert isinstance(formula, fxcost.Report)
        assert (formula.total().params, formula.total().macs, formula.total().flops) == \
            (measured.total().params, measured.total().macs, measured.total().flops)
    assert isinstance(by[2], str) and "B >= 2" in by[2]
    text = render(sweep, "table", width=200)
    assert text.count("same params, MACs, FLOPs") == 2 and "outside its domain" in text
    with pytest.raises(InputSpecError, match="one input size with letters"):
        fxcost.sweep(model, [("B", 3, "H", "W"), ("B", 3, "H", "H")])


def test_commands_other_than_analyze_refuse_letters() -> None:
    out = subprocess.run([sys.executable, "-m", "fxcost", "compare", "examples/vgg.py:vgg11", "examples/alexnet.py:alexnet",
                          "--input", "Bx3x224x224"], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "read by fxcost analyze, not fxcost compare" in out.stderr


def test_positions_looked_up_in_a_table_bound_the_domain() -> None:
    """GPT-2 looks its positions up with arange(S) (+ the past's length) as indices into its
    n_positions = 1024-row table: past it a real run fails, and no shape says so. fxcost follows
    those positions into the lookup and bounds the domain there."""
    formula = fxcost.analyze(_tiny_gpt2(), "BxS:int64")
    assert "S <= 1024" in formula.sizes.domain and not formula.pieces  # no branch: nothing runs past the table
    with pytest.raises(ValueError, match="S <= 1024"):
        formula.at(B=2, S=1025)
    with pytest.raises(InputSpecError, match="past its table"):
        fxcost.analyze(_tiny_gpt2(), "BxS:int64", hint="S=2000")


@pytest.mark.parametrize(("text", "lettered"), [
    ("BxS:int64", True), ("input_ids=BxS:int64", True), ("Bx576:int64,attention_mask=Bx576:int64", True),
    ("1x128:int64", False), ("input_ids=1x128:int64", False), ("attention_mask=1x128:int64", False),
    ("1x576:int64=32000", False), ("[3x800x800;3x480x640]", False),
], ids=lambda v: str(v))
def test_an_input_text_has_letters_where_a_size_is_one(text: str, lettered: bool) -> None:
    """Keyword names (input_ids, attention_mask) and values are no sizes: only a size is a letter."""
    from fxcost.loading.specs import text_has_letters

    assert text_has_letters(text) is lettered


class CopiedPositions(nn.Module):
    """Positions made from the length, copied, moved by 2, then looked up in a 64-row table."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1]).clone() + 2
        return x + self.table(positions)


def test_positions_followed_through_a_copy_and_an_offset() -> None:
    # arange(S) holds 0..S-1; + 2 makes the largest S + 1, which must be a row of 64: S + 2 <= 64
    formula = fxcost.analyze(CopiedPositions(), ("B", "S", 8), hint="S=16")
    assert "S + 2 <= 64" in formula.sizes.domain
