"""The public model zoos, exact (issue 22): the ops their models dispatch that fxcost had no formula
for, priced by hand arithmetic written here where FlopCounterMode has none.

torchvision's compiled ops (``torchvision::roi_align``, ``roi_pool``, ``ps_roi_align``, ``ps_roi_pool``,
``nms``, ``deform_conv2d``) by hand below, from torchvision's CPU kernels; on this machine the test setup
stands in for torchvision's compiled library (tests/site/torchvision_stub.py).

Also: ``aten::linalg_solve_triangular`` (the GatedDeltaNet decoders: Qwen3-Next, Qwen3.5,
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
from tests.conftest import flop_counter_flops


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


def test_mse_loss_by_hand() -> None:
    """DAC's forward computes its commitment loss (``aten::mse_loss``, FlopCounterMode prices it at
    0): per element a subtraction and a square, and with a mean one accumulation more; its backward
    a subtraction and two multiplies (2 (x - y) / n, times the incoming gradient)."""
    x, y = torch.rand(2, 3, 5), torch.rand(2, 3, 5)
    both = _Op(lambda x, y: (torch.nn.functional.mse_loss(x, y), torch.nn.functional.mse_loss(x, y, reduction="none")))
    total = fxcost.analyze(both, example_inputs=(x, y)).total()
    assert (total.macs, total.flops) == (0, 30 * 3 + 30 * 2)
    assert flop_counter_flops(both, x, y) == 0  # docs/conventions.md: FlopCounterMode has no formula

    class Fit(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(5, 5, bias=False)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.mse_loss(self.fc(x), y)

    train = fxcost.analyze(Fit(), example_inputs=(x, y), train=True).total()
    # backward: mse_loss_backward 3 x 30, and the weight's gradient, 6 rows x 5 x 5 MACs
    assert train.backward_flops == 3 * 30 + 2 * (6 * 5 * 5)


def _binary_search_steps(n: int) -> int:
    """The most comparisons PyTorch's lower-bound loop (``cus_lower_bound`` in Bucketization.cpp)
    takes over n sorted values: the interval [start, end) halves, the upper half keeping the
    larger share, until it is empty."""
    steps, size = 0, n
    while size > 0:
        size, steps = size // 2, steps + 1  # the larger side of [start, mid) / [mid + 1, end)
    return steps


def test_bucketize_and_searchsorted_by_hand() -> None:
    """SmolVLM's and Idefics 3's vision embeddings bucketize patch positions (FlopCounterMode has
    no formula): one binary search of the boundaries per element."""
    assert [_binary_search_steps(n) for n in (1, 7, 8, 31)] == [1, 3, 4, 5]
    both = _Op(lambda x, b: (torch.bucketize(x, b), torch.searchsorted(b, x)))
    for n in (7, 8, 31):
        x, boundaries = torch.rand(4, 5), torch.linspace(0, 1, n)
        total = fxcost.analyze(both, example_inputs=(x, boundaries)).total()
        assert (total.macs, total.flops) == (0, 2 * 20 * _binary_search_steps(n))
        assert flop_counter_flops(both, x, boundaries) == 0  # docs/conventions.md: it has no formula


@pytest.mark.parametrize(("shape", "n", "by_hand"), [
    ((1, 128), 4, 2 * 128 * 4),  # 4 < 10 x 128^0.145 = 20.2: each id compared with each, then reduced
    # 40 > 20.2: the 40 sorted (40 x ceil(log2 40) = 240), each id searched in them (128 x
    # ceil(log2 41) = 768), then a bound check, a select and a comparison an id (3 x 128)
    ((1, 128), 40, 40 * 6 + 128 * 6 + 3 * 128),
    ((3, 7), 2, 2 * 21 * 2),
])
def test_isin_as_pytorchs_own_decomposition(shape: tuple[int, ...], n: int, by_hand: int) -> None:
    """Grounding DINO checks its ids against special tokens with ``isin`` (FlopCounterMode has no
    formula): priced as PyTorch's decomposition of it computes it, op by op, and by hand."""
    from torch._decomp.decompositions import isin_default, isin_sorting

    elements, test = torch.randint(0, 50, shape), torch.randint(0, 50, (n,))
    small = n < 10 * elements.numel() ** 0.145
    decomposed = fxcost.analyze(_Op(isin_default if small else isin_sorting), example_inputs=(elements, test)).total()
    total = fxcost.analyze(_Op(torch.isin), example_inputs=(elements, test)).total()
    assert (total.macs, total.flops) == (0, decomposed.flops) == (0, by_hand)
    assert flop_counter_flops(_Op(torch.isin), elements, test) == 0  # docs/conventions.md: it has no formula


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


_TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, linear_num_value_heads=4, linear_num_key_heads=2,
             linear_key_head_dim=16, linear_value_head_dim=16)
_MOE = dict(moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2)
_HYBRIDS = {  # each with linear-attention (Gated DeltaNet) layers and full-attention ones
    "Qwen3NextConfig": {**_TINY, **_MOE},
    "Qwen3_5TextConfig": {**_TINY, "layer_types": ["linear_attention"] * 3 + ["full_attention"]},
    "OlmoHybridConfig": {**_TINY, "num_key_value_heads": 4, "linear_num_key_heads": 4, "pad_token_id": 0,
                         "eos_token_id": 1,
                         "layer_types": ["linear_attention"] * 3 + ["full_attention"]},
    "LaraMiniConfig": {**_TINY, **_MOE, "sliding_window": 8,
                       "layer_types": ["linear_attention", "sliding_attention", "linear_attention", "full_attention"]},
}


@pytest.mark.parametrize("config_name", sorted(_HYBRIDS))
def test_the_hybrid_linear_attention_decoders_are_exact(config_name: str) -> None:
    """Qwen3-Next, Qwen3.5, OLMo-hybrid and Lara: their chunked Gated DeltaNet solves a triangular
    system per chunk (``linalg_solve_triangular``) that FlopCounterMode prices at 0, and the MoE
    ones route tokens through a grouped matmul it does not price either: both written out here."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, config_name):
        pytest.skip(f"this transformers has no {config_name}")
    fields = dict(_HYBRIDS[config_name])
    config_cls = getattr(tf, config_name)
    defaults = config_cls()
    config = config_cls(**{k: v for k, v in fields.items() if hasattr(defaults, k)})
    torch.manual_seed(0)
    model = tf.AutoModel.from_config(config).eval()
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
    assert shapes.solves and (shapes.grouped or "num_experts" not in fields)
    assert 2 * report.total().macs == counter.get_total_flops() + 2 * (solved + grouped)


_READS_INPUTS = {  # transformers models whose forward reads a value computed from the token ids alone
    "LongformerConfig": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              attention_window=8, vocab_size=100), False),  # is_global_attn...any().item()
    "XLMConfig": (dict(emb_dim=32, n_layers=2, n_heads=2, vocab_size=100), False),  # assert lengths.max().item() <= slen
    "FSMTConfig": (dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, src_vocab_size=100,
                        tgt_vocab_size=100, langs=["en", "de"]), False),  # decoder ids made from the ids: if not padding_mask.any():
    "LEDConfig": (dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                       encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, attention_window=8), True),
}


@pytest.mark.parametrize("config_name", sorted(_READS_INPUTS))
def test_transformers_models_that_read_their_token_ids_are_counted_data_free(config_name: str) -> None:
    """Built on meta (no weights, no values), given ids as a shape: fxcost takes them as zeros, as
    --real does, and follows their values to the reads; FlopCounterMode counts a real forward of the
    same architecture with random weights on zero ids."""
    tf = pytest.importorskip("transformers")
    fields, seq2seq = _READS_INPUTS[config_name]
    config = getattr(tf, config_name)(**fields)
    with torch.device("meta"):
        weightless = tf.AutoModel.from_config(config).eval()
    kwargs = {"decoder_input_ids": torch.empty(2, 12, dtype=torch.long, device="meta")} if seq2seq else {}
    report = fxcost.analyze(weightless, example_inputs=(torch.empty(2, 12, dtype=torch.long, device="meta"),),
                            example_kwargs=kwargs)
    assert any(n.startswith("the path depends on values computed from the inputs alone") for n in report.trace.notes)
    torch.manual_seed(0)
    model = tf.AutoModel.from_config(config).eval()
    zeros = torch.zeros(2, 12, dtype=torch.long)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(zeros, **({"decoder_input_ids": zeros} if seq2seq else {}))
    assert not report.unsupported
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


def _exact_on_its_own_input(cls: Any, config: Any, made: str) -> Any:
    """``cls(config)`` built on meta gets ``made`` as its own input from fxcost (transformers_input),
    and fxcost's data-free count of it equals FlopCounterMode over a real forward of the same
    architecture with random weights (seed 0; math attention, mkldnn off) on those inputs made
    real (given values as given, integers made from a shape zeros as fxcost takes them, floats
    random); params equal its own. The report."""
    from torch.utils._pytree import tree_map

    from fxcost.loading.specs import make_inputs
    from fxcost.loading.zoo_inputs import transformers_input

    with torch.device("meta"):
        weightless = cls(config).eval()
    assert transformers_input(weightless)[0] == made
    ((args, kwargs),) = make_inputs([made])
    report = fxcost.analyze(weightless, example_inputs=args, example_kwargs=kwargs)
    torch.manual_seed(0)
    model = cls(config).eval().requires_grad_(False)  # FlopCounterMode's module tracker: parameters as inputs (a perceiver's latents)

    def real(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.device.type != "meta":
            return t
        return torch.randn(t.shape, dtype=t.dtype) if t.dtype.is_floating_point else torch.zeros(t.shape, dtype=t.dtype)

    real_args, real_kwargs = tree_map(real, (args, kwargs))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(*real_args, **real_kwargs)
    assert not report.unsupported
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()
    return report


def test_a_patch_grid_vision_tower_with_its_own_input() -> None:
    """Qwen2.5-VL's vision tower takes flattened patches and their grid (values it reads to place
    windows and rotary positions): the input fxcost makes for it gives the grid's values, and the
    count is data-free, exact against FlopCounterMode over a real forward on the same values."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Qwen2_5_VLVisionConfig"):
        pytest.skip("this transformers has no Qwen2.5-VL")
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    config = tf.Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48,
                                       fullatt_block_indexes=[1], window_size=56)
    report = _exact_on_its_own_input(Qwen2_5_VisionTransformerPretrainedModel, config, "256x1176,grid_thw=1x3:int64=1;16;16")
    assert any(n.startswith("the path depends on values computed from the inputs alone") for n in report.trace.notes)


def test_a_naflex_vision_tower_with_its_patches_mask_and_grid() -> None:
    """SigLIP 2 takes an image as its num_patches patches flattened, with their mask and their grid
    (``spatial_shapes``, values it reads to resize its position embeddings): 16 patches of 4 x 4 x
    3 = 48 values on a 4 x 4 grid here, and the count is exact against FlopCounterMode over a real
    forward on the same mask and grid."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Siglip2VisionConfig"):
        pytest.skip("this transformers has no SigLIP 2")
    config = tf.Siglip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    num_patches=16, patch_size=4)
    _exact_on_its_own_input(tf.Siglip2VisionModel, config,
                            "1x16x48,pixel_attention_mask=1x16:int64=1,spatial_shapes=1x2:int64=4;4")


def test_a_series_model_gets_the_padding_and_frequency_it_requires() -> None:
    """TimesFM requires which steps are padding and the series' frequency class beside the series:
    none padded and class 0 (zeros, as fxcost makes integer inputs), exact against FlopCounterMode
    over a real forward on the same values."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "TimesFmConfig"):
        pytest.skip("this transformers has no TimesFM")
    config = tf.TimesFmConfig(patch_length=8, context_length=32, horizon_length=8, hidden_size=16, intermediate_size=32,
                              num_hidden_layers=1, num_attention_heads=2, head_dim=8)
    _exact_on_its_own_input(tf.TimesFmModel, config, "1x32,past_values_padding=1x32:int64,freq=1x1:int64")


def test_a_layout_model_that_requires_boxes_gets_one_per_token() -> None:
    """Bros raises "You have to specify bbox" without boxes, although its forward gives them a
    default: the input fxcost makes holds one float box per token (its forward runs on fake tensors
    with them, and not without), exact against FlopCounterMode over a real forward on the same
    inputs. LayoutLM, which runs without boxes, keeps its ids alone."""
    tf = pytest.importorskip("transformers")
    from fxcost.loading.zoo_inputs import transformers_input

    config = tf.BrosConfig(vocab_size=99, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=64, dim_bbox_sinusoid_emb_2d=16,
                           dim_bbox_sinusoid_emb_1d=2, dim_bbox_projection=32)
    with pytest.raises(ValueError, match="specify bbox"):
        tf.BrosModel(config).eval()(torch.zeros(1, 64, dtype=torch.int64))
    _exact_on_its_own_input(tf.BrosModel, config, "1x64:int64,bbox=1x64x4")
    with torch.device("meta"):
        layoutlm = tf.LayoutLMModel(tf.LayoutLMConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=37,
                                                      max_position_embeddings=64))
    assert transformers_input(layoutlm)[0] == "1x64:int64"


def test_a_text_model_that_needs_its_optional_image_or_regions_gets_them() -> None:
    """ViLT's forward gives ``pixel_values`` a default and then raises "You have to specify either
    pixel_values or image_embeds"; LXMERT's does the same for ``visual_feats``: fxcost makes the
    image (at its config's size), or 36 region features and their boxes, and each count is exact
    against FlopCounterMode over a real forward on the same inputs."""
    tf = pytest.importorskip("transformers")
    vilt = tf.ViltConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         image_size=32, patch_size=8, max_position_embeddings=40, max_image_length=-1)
    with pytest.raises(ValueError, match="pixel_values"):
        tf.ViltModel(vilt).eval()(torch.zeros(1, 40, dtype=torch.int64))
    _exact_on_its_own_input(tf.ViltModel, vilt, "1x40:int64,pixel_values=1x3x32x32")
    lxmert = tf.LxmertConfig(vocab_size=99, hidden_size=32, num_attention_heads=2, intermediate_size=37, l_layers=1,
                             x_layers=1, r_layers=1, visual_feat_dim=16, max_position_embeddings=64)
    _exact_on_its_own_input(tf.LxmertModel, lxmert, "1x64:int64,visual_feats=1x36x16,visual_pos=1x36x4")


def test_patch_grid_towers_get_the_layout_and_merge_sizes_they_take() -> None:
    """Kimi-K2.5's vision tower embeds each patch with a convolution (``[patches, c, p, p]``, not
    flat rows); VideoLLaMA 3's requires merge sizes beside the grid: fxcost makes each the layout
    its forward runs on (a 16 x 16 grid, 1 x 1 merges) and the counts are exact against
    FlopCounterMode over a real forward on the same values."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Kimi_K25VisionModel") or not hasattr(tf, "VideoLlama3VisionModel"):
        pytest.skip("this transformers has no Kimi-K2.5 or VideoLLaMA 3")
    kimi = tf.Kimi_K25VisionModel.config_class(num_hidden_layers=1, hidden_size=32, intermediate_size=37,
                                               num_attention_heads=2, pos_emb_height=16, pos_emb_width=16)
    _exact_on_its_own_input(tf.Kimi_K25VisionModel, kimi, "256x3x14x14,grid_thw=1x3:int64=1;16;16")
    videollama = tf.VideoLlama3VisionModel.config_class(num_hidden_layers=1, hidden_size=32, intermediate_size=37,
                                                        num_attention_heads=2)
    _exact_on_its_own_input(tf.VideoLlama3VisionModel, videollama,
                            "256x768,grid_thw=1x3:int64=1;16;16,merge_sizes=1:int64=1")


def test_a_language_id_and_a_feature_mask_a_forward_needs_are_made() -> None:
    """X-MOD's forward raises "Input language unknown" without a language (``lang_ids``: adapter
    0 here), AudioFlamingo 3's encoder fails without its frames' mask (all ones, every frame
    valid): fxcost makes each, and the counts are exact against FlopCounterMode over a real
    forward on the same values."""
    tf = pytest.importorskip("transformers")
    xmod = tf.XmodConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=130, languages=("en_XX", "de_DE"))
    with pytest.raises(ValueError, match="language"):
        tf.XmodModel(xmod).eval()(torch.zeros(1, 64, dtype=torch.int64))
    _exact_on_its_own_input(tf.XmodModel, xmod, "1x128:int64,lang_ids=1:int64")
    if not hasattr(tf, "AudioFlamingo3Encoder"):
        pytest.skip("this transformers has no AudioFlamingo 3")
    flamingo = tf.AudioFlamingo3Encoder.config_class(d_model=32, encoder_layers=1, encoder_attention_heads=2,
                                                     encoder_ffn_dim=37, num_mel_bins=16, max_source_positions=50)
    _exact_on_its_own_input(tf.AudioFlamingo3Encoder, flamingo, "1x16x100,input_features_mask=1x100:int64=1")


def test_kosmos2_gets_its_image_latent_tokens_as_its_text() -> None:
    """Kosmos-2 places its image's ``latent_query_num`` latents in its text where
    ``image_embeds_position_mask`` says, and fails without a text: fxcost makes that many tokens,
    each an image position (8 here), exact against FlopCounterMode over a real forward on them."""
    tf = pytest.importorskip("transformers")
    config = tf.Kosmos2Config(
        text_config={"vocab_size": 99, "embed_dim": 32, "layers": 1, "attention_heads": 2, "ffn_dim": 37,
                     "max_position_embeddings": 64},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        latent_query_num=8)
    _exact_on_its_own_input(tf.Kosmos2Model, config,
                            "1x3x32x32,input_ids=1x8:int64,image_embeds_position_mask=1x8:int64=1")


def test_a_keypoint_matcher_gets_a_pair_of_images() -> None:
    """EfficientLoFTR matches two images (``[1, 2, c, h, w]``) and refuses one: fxcost makes a pair
    at its config's size, exact against FlopCounterMode over a real forward on them."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "EfficientLoFTRModel"):
        pytest.skip("this transformers has no EfficientLoFTR")
    config = tf.EfficientLoFTRConfig()
    with pytest.raises(ValueError, match="5D"):
        tf.EfficientLoFTRModel(config).eval()(torch.zeros(1, 3, 64, 64))
    _exact_on_its_own_input(tf.EfficientLoFTRModel, config, "1x2x3x224x224")


def test_an_image_list_model_gets_one_image_of_ones_and_its_tokens() -> None:
    """Idefics 2 takes a list of images per sample (``[1, images, c, h, w]``) and reads their
    pixels to drop padding images (all zero): fxcost makes one image of ones, and as many image
    tokens as its perceiver makes of it (its resampler_n_latents: 4), exact against FlopCounterMode
    over a real forward on the same values."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Idefics2Config"):
        pytest.skip("this transformers has no Idefics 2")
    config = tf.Idefics2Config(
        text_config={"model_type": "mistral", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 37,
                     "max_position_embeddings": 256},
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 37,
                       "image_size": 32, "patch_size": 8},
        perceiver_config={"hidden_size": 32, "resampler_n_latents": 4, "resampler_depth": 1, "resampler_n_heads": 2,
                          "resampler_head_dim": 8, "num_key_value_heads": 1},
        image_token_id=50)
    _exact_on_its_own_input(tf.Idefics2Model, config, "1x4:int64=50,pixel_values=1x1x3x32x32=1")


def test_a_speech_encoder_that_requires_its_feature_mask_gets_one_of_ones() -> None:
    """Qwen3-ASR's encoder requires ``input_features_mask`` and takes its mel bins first: fxcost
    makes 3,000 frames channels first, all valid. A real forward runs on them; the data-free run
    stops where the encoder splits by the mask's lengths (``lengths.tolist()``), naming that line,
    and ``--real`` counts it exactly."""
    pytest.importorskip("transformers")
    try:
        from transformers.models.qwen3_asr import modeling_qwen3_asr as asr
    except ImportError:
        pytest.skip("this transformers has no Qwen3-ASR")
    from fxcost.loading.specs import make_inputs
    from fxcost.loading.zoo_inputs import transformers_input

    config = asr.Qwen3ASREncoderConfig(d_model=32, encoder_attention_heads=2, encoder_ffn_dim=37, encoder_layers=1,
                                       downsample_hidden_size=8, num_mel_bins=16, output_dim=24)
    with torch.device("meta"):
        weightless = asr.Qwen3ASREncoder(config).eval()
    made = transformers_input(weightless)[0]
    assert made == "1x16x3000,input_features_mask=1x3000:int64=1"
    ((args, kwargs),) = make_inputs([made])
    with pytest.raises(fxcost.FxcostError, match="tolist"):
        fxcost.analyze(weightless, example_inputs=args, example_kwargs=kwargs)
    torch.manual_seed(0)
    model = asr.Qwen3ASREncoder(config).eval()
    features = torch.randn(1, 16, 3000)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(features, input_features_mask=kwargs["input_features_mask"])
    report = fxcost.analyze(model, example_inputs=(features,), example_kwargs=kwargs, real=True)
    assert 2 * report.total().macs == counter.get_total_flops()


def test_a_vision_language_model_gets_as_many_image_tokens_as_its_image_makes() -> None:
    """A whole VLM (LLaVA's kind) checks that its text holds one image token per image feature:
    the input fxcost makes has as many as the model's own get_image_features makes of one image
    (a 32 x 32 image of 8-pixel patches: (32 / 8)^2 = 16, CLIP's class token dropped), and the
    count is exact against FlopCounterMode over a real forward on the same ids."""
    tf = pytest.importorskip("transformers")
    from fxcost.loading.specs import make_inputs
    from fxcost.loading.zoo_inputs import transformers_input

    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=32, patch_size=8)
    text = tf.LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2,
                          num_key_value_heads=2, vocab_size=200)
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_index=150)
    _exact_on_its_own_input(tf.LlavaModel, config, f"1x{(32 // 8) ** 2}:int64=150,pixel_values=1x3x32x32")
    # LLaVA's default config puts its image token at 32,000 in a 32,000-token vocabulary: the
    # embedding lookup of a real forward fails, and so does the data-free run, at that line
    past = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_index=200)
    with pytest.raises(IndexError, match="index out of range"):
        tf.LlavaModel(past).eval()(torch.full((1, 16), 200), pixel_values=torch.randn(1, 3, 32, 32))
    with torch.device("meta"):
        weightless = tf.LlavaModel(past).eval()
    made, _ = transformers_input(weightless)
    ((args, kwargs),) = make_inputs([made])
    with pytest.raises(fxcost.FxcostError, match=r"id 200 of a 200-row embedding[\s\S]*get_input_embeddings\(\)\(input_ids\)"):
        fxcost.analyze(weightless, example_inputs=args, example_kwargs=kwargs)


def test_a_vision_language_config_whose_towers_disagree_is_refused_saying_so() -> None:
    """Qwen2-VL's default config merges image features 3,584 wide into a text model 8,192 wide: no
    forward with an image runs (transformers' own check fails). A tiny one, 48 against 64: fxcost
    says so instead of making inputs, and a real forward on the inputs it would make fails."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "Qwen2VLModel"):
        pytest.skip("this transformers has no Qwen2-VL")
    from fxcost.errors import InputSpecError
    from fxcost.loading.zoo_inputs import transformers_input

    config = tf.Qwen2VLConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=200, rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=48, num_heads=2, patch_size=4, temporal_patch_size=2,
                           spatial_merge_size=2), image_token_id=150)
    with torch.device("meta"):
        weightless = tf.Qwen2VLModel(config).eval()
    with pytest.raises(InputSpecError, match="image features are 48 wide and its text model's embeddings 64"):
        transformers_input(weightless)
    model = tf.Qwen2VLModel(config).eval()
    tokens = (16 // 2) ** 2  # a 16 x 16 patch grid, merged 2 x 2
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(torch.full((1, tokens), 150), pixel_values=torch.randn(256, 3 * 2 * 4 * 4),
              image_grid_thw=torch.tensor([[1, 16, 16]]))


@pytest.mark.parametrize(("spec", "config"), [
    # Encodec pads each convolution by sizes computed from buffers it makes of literals
    # (``nn.Buffer(torch.tensor(stride))``): built on meta they keep their values
    ("hf:EncodecModel", {"num_filters": 4, "hidden_size": 16, "codebook_size": 1024, "codebook_dim": 16,
                         "num_lstm_layers": 1}),
    # DAC's forward computes its commitment loss (mse_loss, priced by hand: test_mse_loss_by_hand)
    ("hf:DacModel", {"encoder_hidden_size": 8, "downsampling_ratios": [2, 4], "decoder_hidden_size": 16,
                     "n_codebooks": 2, "codebook_size": 16, "codebook_dim": 4, "hidden_size": 32,
                     "upsampling_ratios": [4, 2], "hop_length": 8}),
])
def test_a_codec_takes_one_channel_of_audio_and_its_buffers_values(spec: str, config: dict[str, Any]) -> None:
    """A codec's first layer is a convolution over one channel: the audio fxcost makes for it is
    ``[1, 1, samples]`` (the first shape its forward runs on, on fake tensors), and the count,
    data-free, is exact against FlopCounterMode over a real forward with random weights."""
    pytest.importorskip("transformers")
    from fxcost.loading.hf import load_hf
    from fxcost.loading.zoo_inputs import transformers_input

    weightless, _ = load_hf(spec, config)
    assert transformers_input(weightless)[0] == "1x1x16000"
    report = fxcost.analyze(weightless, input_size=(1, 1, 4000))
    torch.manual_seed(0)
    model, _ = load_hf(spec, config, meta=False)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, 4000))
    assert not report.unsupported
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


def test_an_audio_decoder_takes_a_row_of_ids_per_codebook() -> None:
    """MusicGen's decoder takes ``[batch x codebooks, tokens]`` ids (it views them as ``[-1,
    codebooks, tokens]``): the ids fxcost makes are the first shape its forward runs on, one row per
    codebook here, and the count is exact against FlopCounterMode over a real forward."""
    tf = pytest.importorskip("transformers")
    if not hasattr(tf, "MusicgenDecoderConfig"):
        pytest.skip("this transformers has no MusicGen")
    config = tf.MusicgenDecoderConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      ffn_dim=32, num_codebooks=2, max_position_embeddings=32)
    _exact_on_its_own_input(tf.MusicgenModel, config, "2x32:int64")  # 2 codebooks, 32 positions


def test_the_sweeps_hand_count_of_euclidean_distances() -> None:
    """torch.cdist's matmul path (``_euclidean_dist``, which FlopCounterMode prices at 0; Mimi's
    codebook lookup): ATen's Distance.cpp appends the squared norms and a column of ones, one
    matmul of [P, M + 2] x [M + 2, R]."""
    from fxcost.zoo_sweep import _beside_flop_counter

    x, codes = torch.rand(1, 9, 8), torch.rand(1, 30, 8)  # 30 > 25 rows: the matmul path
    with _beside_flop_counter() as beside:
        torch.cdist(x, codes, p=2)
    assert beside.macs == 9 * 30 * (8 + 2)
    assert fxcost.analyze(_Op(lambda a, b: torch.cdist(a, b, p=2)), example_inputs=(x, codes)).total().macs == beside.macs


def test_a_model_whose_main_input_is_a_list_is_refused_naming_it() -> None:
    from fxcost.errors import InputSpecError
    from fxcost.loading.zoo_inputs import transformers_input

    class TwoFirst(torch.nn.Module):  # OneFormer's main_input_name is ["pixel_values", "task_inputs"]
        main_input_name = ["pixel_values", "task_inputs"]

    with pytest.raises(InputSpecError, match=r"takes \['pixel_values', 'task_inputs'\] first"):
        transformers_input(TwoFirst())


# --- timm: and tv: specs ------------------------------------------------------------------------------

def _zoo(spec: str, shape: tuple[int, ...]) -> None:
    """The spec's model with random weights on the CPU: fxcost's count on the meta copy against
    FlopCounterMode over a real forward (mkldnn and fused attention off), params against its own."""
    from fxcost.loading.zoos import load_zoo

    torch.manual_seed(0)
    model, _ = load_zoo(spec, meta=False)
    x = torch.randn(*shape)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(x)
    report = fxcost.analyze(model, example_inputs=(x,))
    assert not report.unsupported, report.unsupported
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


@pytest.mark.parametrize(("spec", "shape"), [
    ("timm:resnet18", (1, 3, 64, 64)), ("timm:convnext_atto", (1, 3, 64, 64)),
    ("timm:vit_tiny_patch16_224", (1, 3, 224, 224)), ("timm:tf_efficientnet_b0", (1, 3, 64, 64)),
    ("timm:mobilenetv3_small_100", (1, 3, 64, 64)),
])
def test_timm_models(spec: str, shape: tuple[int, ...]) -> None:
    pytest.importorskip("timm")
    _zoo(spec, shape)


@pytest.mark.parametrize(("spec", "shape"), [
    ("tv:resnet18", (1, 3, 64, 64)), ("tv:mobilenet_v3_small", (1, 3, 64, 64)), ("tv:squeezenet1_0", (1, 3, 64, 64)),
    ("tv:r3d_18", (1, 3, 4, 32, 32)), ("tv:swin3d_t", (1, 3, 4, 32, 32)), ("tv:fcn_resnet50", (1, 3, 64, 64)),
    ("tv:regnet_y_400mf", (1, 3, 64, 64)),  # its constructor cannot run on meta: built on the CPU
])
def test_torchvision_models(spec: str, shape: tuple[int, ...]) -> None:
    # swin3d_t: its torch.fx.wrap'ped window helper mutates its argument; the fake run counts it
    pytest.importorskip("torchvision")
    _zoo(spec, shape)


@pytest.mark.parametrize(("spec", "shape"), [
    ("tv:resnet50", "1x3x224x224"), ("tv:inception_v3", "1x3x299x299"), ("tv:vit_b_16", "1x3x224x224"),
    ("tv:r3d_18", "1x3x16x112x112"), ("tv:fcn_resnet50", "1x3x520x520"),
    ("timm:convnext_tiny", "1x3x224x224"), ("timm:vit_base_patch16_384", "1x3x384x384"),
])
def test_a_zoo_model_brings_its_own_input_size(spec: str, shape: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fxcost.loading.zoos import default_input, load_zoo

    pytest.importorskip(spec.split(":")[0].replace("tv", "torchvision"))
    model, _ = load_zoo(spec)
    found = default_input(spec, model)
    assert found is not None and found[0] == shape
    assert next(model.parameters()).device.type == "meta"  # no weights were made, none downloaded


def test_zoo_specs_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fxcost.cli import main

    pytest.importorskip("torchvision")
    assert main(["analyze", "tv:resnet18", "-f", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == "fxcost: note: --input 1x3x224x224, resnet18's own input size (its first weights' crop size)\n"
    report = json.loads(out)
    assert report["inputs"][0]["shape"] == [1, 3, 224, 224] and report["totals"]["params"] == 11_689_512  # torchvision's figure
    assert main(["analyze", "torchvision:resnet18", "--input", "2x3x32x32", "--arg", "num_classes=10", "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["params"] == 11_689_512 - 1000 * 513 + 10 * 513
    assert main(["analyze", "tv:resnet5"]) == 2
    assert "did you mean: resnet50, resnet152, resnet34, resnet18, resnet101" in capsys.readouterr().err
    assert main(["analyze", "tv:fasterrcnn_resnet50_fpn"]) == 2  # it reads values (below)
    err = capsys.readouterr().err
    assert "--input [3x800x800], fasterrcnn_resnet50_fpn's own input size" in err and "--real" in err
    assert "boxes.py:151, in remove_small_boxes: keep = torch.where(keep)[0]" in err


# --- fxcost zoo -----------------------------------------------------------------------------------

def test_the_zoo_sweep(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import csv
    import io
    import json
    import time

    from fxcost import zoo_sweep as zoo
    from fxcost.cli import main

    pytest.importorskip("torchvision")
    assert main(["zoo", "tv", "--filter", "resnet1[08]", "--jobs", "2", "-f", "csv"]) == 0
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert list(rows) == ["resnet18"] and rows["resnet18"]["status"] == "ok"
    assert int(rows["resnet18"]["params"]) == 11_689_512 and rows["resnet18"]["input"] == "1x3x224x224"  # torchvision's
    assert int(rows["resnet18"]["macs"]) == fxcost.analyze(zoo_resnet18(), input_size=(1, 3, 224, 224)).total().macs
    assert main(["zoo", "tv", "--filter", "fasterrcnn_resnet50_fpn", "-f", "json"]) == 0
    out = capsys.readouterr().out
    assert '"status": "refused"' in out and "remove_small_boxes" in out
    # --check: against FlopCounterMode and parameters(); --real: a model that reads values, for real
    assert main(["zoo", "tv", "--filter", "fasterrcnn_mobilenet_v3_large_320_fpn", "--check", "--real", "-f", "json"]) == 0
    (checked,) = json.loads(capsys.readouterr().out)["models"]
    assert checked["model"] == "fasterrcnn_mobilenet_v3_large_320_fpn" and checked["status"] == "ok"
    assert checked["check"] == "exact" and checked["why"].startswith("--real: no tracer could analyze FasterRCNN")
    assert "remove_small_boxes" in checked["why"] and checked["input"] == "[3x320x320]"
    # --check on a refused model: PyTorch's own forward on fake tensors fails there too (the box
    # filtering reads values), and a real one with random weights runs: the refusal is not fxcost's
    assert main(["zoo", "tv", "--filter", "fasterrcnn_mobilenet_v3_large_320_fpn", "--check", "-f", "json"]) == 0
    (refused,) = json.loads(capsys.readouterr().out)["models"]
    assert refused["status"] == "refused" and refused["check"].startswith("PyTorch fails too on fake tensors (")
    assert refused["check"].endswith("; a real forward with random weights runs (--real)")
    # the same from Python
    (api,) = fxcost.zoo("tv", "resnet18", jobs=1, check=True)
    assert (api["model"], api["macs"], api["check"]) == ("resnet18", int(rows["resnet18"]["macs"]), "exact")
    with pytest.raises(fxcost.InputSpecError, match="no zoo 'keras'"):
        fxcost.zoo("keras")
    assert main(["zoo", "tv", "--filter", "no_such_*"]) == 2
    # a model that takes too long is stopped and said, and the sweep goes on
    monkeypatch.setattr(zoo, "_one", lambda spec, pipe, real, check: time.sleep(30))
    rows_ = zoo.sweep(["tv:resnet18"], jobs=1, timeout=1, say=lambda _: None)
    assert rows_[0]["status"] == "timeout" and rows_[0]["why"] == "stopped after 1 s"


def test_a_refused_models_check_says_whether_pytorch_runs_it_on_fake_tensors(capfd: pytest.CaptureFixture[str]) -> None:
    from fxcost.zoo_sweep import _pytorch_on

    with torch.device("meta"):
        runs = torch.nn.Linear(8, 4)
    x = torch.empty(3, 8, device="meta")
    assert _pytorch_on(runs, (x,), {}, lambda: torch.nn.Linear(8, 4)) == \
        f"PyTorch runs it on fake tensors (FlopCounterMode {2 * 3 * 8 * 4:,}); a real forward with random weights " \
        "runs: a refusal of fxcost's own"
    ids = torch.full((2, 3), 10)  # given ids past a 10-row table: a fake lookup takes any id, a real one fails
    with torch.device("meta"):
        table = torch.nn.Embedding(10, 4)
    said = _pytorch_on(table, (ids,), {}, lambda: torch.nn.Embedding(10, 4))
    assert said.startswith("PyTorch runs it on fake tensors (FlopCounterMode 0); but a real forward with random "
                           "weights fails (IndexError: index out of range in self")
    wrong = torch.empty(3, 5, device="meta")  # 5 features into an 8-feature layer: no run takes it
    said = _pytorch_on(runs, (wrong,), {}, lambda: torch.nn.Linear(8, 4))
    assert said.startswith("PyTorch fails too on fake tensors (RuntimeError: ")
    assert "; so does a real forward with random weights (RuntimeError: " in said
    assert "failed while attempting to run meta" not in capfd.readouterr().err  # the fake mode's log, quiet


def zoo_resnet18() -> torch.nn.Module:
    from fxcost.loading.zoos import load_zoo

    return load_zoo("tv:resnet18")[0]


# --- torchvision's compiled ops, and the models that use them ----------------------------------------

def _box_ops() -> Any:
    tv = pytest.importorskip("torchvision")
    return tv.ops


#: two boxes (batch index, x1, y1, x2, y2) on an 8 x 8 map: one whole, one with coordinates that
#: round (4.5 to 5, away from zero as C's round does; Python's round() would give 4)
_BOXES = [[0, 0.0, 0.0, 7.0, 7.0], [0, 1.6, 2.4, 4.5, 3.5]]


class _Calls(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, boxes: torch.Tensor) -> Any:
        return self.fn(x, boxes)


def _flops_of(report: Any, op: str) -> int:
    return sum(o.flops for row in report.layers for o in row.ops if o.op == op)


def test_roi_align_by_hand() -> None:
    ops = _box_ops()
    x, boxes = torch.rand(1, 2, 8, 8), torch.tensor(_BOXES)
    fixed = fxcost.analyze(_Calls(lambda x, b: ops.roi_align(x, b, 2, 1.0, sampling_ratio=2)),
                           example_inputs=(x.to("meta"), boxes.to("meta")))
    # 2 boxes x 2 channels x 2 x 2 bins, each the mean of 2 x 2 bilinear samples: 4 taps times their
    # weight, added (8 FLOPs a sample), then one division by the 4 samples
    assert _flops_of(fixed, "torchvision::roi_align") == 2 * 2 * 4 * (8 * 4 + 1) == 528
    assert fixed.total().macs == 0 and not fixed.unsupported
    # sampling_ratio 0: each box's own grid, ceil(box size / 2) each way (not aligned: a size under
    # 1 counts as 1): box 1 is 7 x 7, a 4 x 4 grid; box 2 is 2.9 wide (ceil 1.45 = 2) and 1.1 high
    # (ceil 0.55 = 1): 2 samples
    adaptive = _Calls(lambda x, b: ops.roi_align(x, b, 2, 1.0, sampling_ratio=0))
    data_free = fxcost.analyze(adaptive, example_inputs=(x.to("meta"), boxes.to("meta")))
    (unsupported,) = data_free.unsupported
    assert unsupported.op == "torchvision::roi_align" and "--real counts it exactly" in unsupported.reason
    real = fxcost.analyze(adaptive, example_inputs=(x, boxes), real=True)
    assert _flops_of(real, "torchvision::roi_align") == 2 * 4 * ((8 * 16 + 1) + (8 * 2 + 1)) == 1168


def _zeros_kernel(op: str) -> Any:
    """A CPU kernel for ``op`` where the test setup has none (its values do not matter here: only
    the boxes' coordinates set the cost); a working torchvision build brings its own."""
    import contextlib

    if torch._C._dispatch_has_kernel_for_dispatch_key(f"torchvision::{op}", "CPU"):
        return contextlib.nullcontext()
    scope = torch.library._scoped_library("torchvision", "IMPL")
    lib = scope.__enter__()

    def kernel(x: torch.Tensor, rois: torch.Tensor, scale: float, ph: int, pw: int, *_: Any) -> Any:
        channels = x.shape[1] // (ph * pw) if op.startswith("ps_") else x.shape[1]
        shape = (rois.shape[0], channels, ph, pw)
        return torch.zeros(shape, dtype=x.dtype), torch.zeros(shape, dtype=torch.int32)

    lib.impl(op, kernel, "CPU")
    return contextlib.closing(type("_Close", (), {"close": lambda self: scope.__exit__(None, None, None)})())


def test_roi_pooling_by_hand() -> None:
    ops = _box_ops()
    boxes = torch.tensor(_BOXES)
    # roi_pool: a box spans round(end) - round(start) + 1 pixels, split into 2 x 2 bins [floor(i *
    # bin), ceil((i + 1) * bin)); box 1: 8 x 8, four 4 x 4 bins (64 pixels); box 2: x from 2 to 5
    # (4 wide: bins [2, 4) [4, 6)), y from 2 to 4 (3 high, bin 1.5: [2, 4) and [3, 5)): four 2 x 2
    # bins (16 pixels). One comparison a pixel, per channel.
    with _zeros_kernel("roi_pool"):
        pooled = fxcost.analyze(_Calls(lambda x, b: ops.roi_pool(x, b, 2, 1.0)),
                                example_inputs=(torch.rand(1, 2, 8, 8), boxes), real=True)
    assert _flops_of(pooled, "torchvision::roi_pool") == 2 * (64 + 16) == 160 and not pooled.unsupported
    # ps_roi_pool: a box spans round(end) - round(start) pixels, bins clipped to the map less one;
    # 4 channels = 1 output channel of 2 x 2 bins. Box 1: 7 x 7, bins [0, 4) and [3, 7): four 4 x 4
    # (64); box 2: 3 wide (bins [2, 4), [3, 5)) and 2 high (bins [2, 3), [3, 4)): four 1 x 2 (8)
    with _zeros_kernel("ps_roi_pool"):
        ps = fxcost.analyze(_Calls(lambda x, b: ops.ps_roi_pool(x, b, 2, 1.0)),
                            example_inputs=(torch.rand(1, 4, 8, 8), boxes), real=True)
    assert _flops_of(ps, "torchvision::ps_roi_pool") == 64 + 8 == 72
    data_free = fxcost.analyze(_Calls(lambda x, b: ops.roi_pool(x, b, 2, 1.0)),
                               example_inputs=(torch.rand(1, 2, 8, 8).to("meta"), boxes.to("meta")))
    assert [u.op for u in data_free.unsupported] == ["torchvision::roi_pool"]


def test_nms_and_deform_conv2d_by_hand() -> None:
    ops = _box_ops()
    boxes, scores = torch.rand(5, 4).to("meta"), torch.rand(5).to("meta")
    # nms prices no data-dependent work: each box's area (3 FLOPs) and every pair's IoU (13 FLOPs),
    # as torchvision's CUDA kernel computes them; the fake run then stops at its output's size
    from fxcost.pytorch.aten import ATEN

    assert ATEN.lookup("torchvision::nms").formula(boxes.shape, scores.shape, 0.5).flops == 3 * 5 + 13 * 10
    # deform_conv2d, groups 2, a 3 x 3 kernel with a mask: 36 output positions of 6 channels, each a
    # dot product of 2 x 9 sampled values (MACs); each of the 4 x 9 x 36 samples is a 4-tap bilinear
    # interpolation (7 FLOPs) times its mask value (1), and the bias is added
    x, w = torch.rand(1, 4, 8, 8).to("meta"), torch.rand(6, 2, 3, 3).to("meta")
    offset, mask = torch.rand(1, 18, 6, 6).to("meta"), torch.rand(1, 9, 6, 6).to("meta")
    conv = _Calls(lambda x, m: ops.deform_conv2d(x, offset, w, mask=m))
    total = fxcost.analyze(conv, example_inputs=(x, mask)).total()
    macs = 36 * 6 * 2 * 9
    samples = 4 * 9 * 36
    assert (total.macs, total.flops) == (macs, 2 * macs + samples * (7 + 1) + 6 * 36) == (3888, 18360)


class _VisionCalls(TorchDispatchMode):
    """Each torchvision op a real forward calls, with its shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func._schema.name.startswith("torchvision::"):
            self.calls.append((func._schema.name, args))
        return func(*args, **(kwargs or {}))


def test_a_detection_model_reads_values_and_is_exact_for_real() -> None:
    from fxcost.errors import FxcostError
    from fxcost.loading.zoos import load_zoo

    _box_ops()
    spec = "tv:fasterrcnn_mobilenet_v3_large_320_fpn"
    with pytest.raises(FxcostError) as refused:
        fxcost.analyze(load_zoo(spec)[0], example_inputs=([torch.empty(3, 320, 320, device="meta")],))
    assert "remove_small_boxes: keep = torch.where(keep)[0]" in str(refused.value) and "--real" in str(refused.value)
    torch.manual_seed(0)
    model, images = load_zoo(spec, meta=False)[0], [torch.rand(3, 320, 320)]
    report = fxcost.analyze(model, example_inputs=(images,), real=True)
    calls = _VisionCalls()
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter, calls:
        model(images)
    assert not report.unsupported and report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()  # RoI Align and NMS have no MACs
    # FlopCounterMode prices neither torchvision op: by hand, from the shapes of this forward's calls
    aligned = [a for name, a in calls.calls if name == "torchvision::roi_align"]
    suppressed = [a for name, a in calls.calls if name == "torchvision::nms"]
    assert aligned and suppressed
    assert _flops_of(report, "torchvision::roi_align") == sum(
        rois.shape[0] * x.shape[1] * ph * pw * (8 * ratio * ratio + 1) for x, rois, _, ph, pw, ratio, _ in aligned)
    assert _flops_of(report, "torchvision::nms") == sum(3 * b.shape[0] + 13 * b.shape[0] * (b.shape[0] - 1) // 2
                                                        for b, *_ in suppressed)


def test_optical_flow_takes_a_pair() -> None:
    pytest.importorskip("torchvision")
    _zoo_pair("tv:raft_small", (1, 3, 128, 128))


def _zoo_pair(spec: str, shape: tuple[int, ...]) -> None:
    from fxcost.loading.zoos import load_zoo

    torch.manual_seed(0)
    model, _ = load_zoo(spec, meta=False)
    a, b = torch.randn(*shape), torch.randn(*shape)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model(a, b)
    report = fxcost.analyze(model, example_inputs=(a, b))
    assert not report.unsupported and report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


def test_a_list_of_images_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from fxcost.cli import main
    from fxcost.loading.specs import make_inputs

    ((args, kwargs),) = make_inputs(["[3x32x32;3x16x24:float16],1x4"])
    assert [[tuple(t.shape) for t in args[0]], tuple(args[1].shape)] == [[(3, 32, 32), (3, 16, 24)], (1, 4)]
    assert args[0][1].dtype == torch.float16 and not kwargs
    assert main(["analyze", "examples/odd.py:TwiceCalled", "--input", "[3x8x8"]) == 2
    assert "malformed list of inputs" in capsys.readouterr().err


# --- diffusers: and hf: models at their own inputs ----------------------------------------------------

_TINY_DIFFUSERS = {
    "UNet3DConditionModel": dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                 layers_per_block=1, norm_num_groups=32, cross_attention_dim=32, attention_head_dim=8,
                                 down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                 up_block_types=("UpBlock3D", "CrossAttnUpBlock3D")),
    "SD3Transformer2DModel": dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                                  num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32,
                                  pooled_projection_dim=16, out_channels=4, pos_embed_max_size=16),
    "FluxTransformer2DModel": dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                   pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)),
}


@pytest.mark.parametrize("name", sorted(_TINY_DIFFUSERS))
def test_diffusers_models_at_their_own_inputs(name: str) -> None:
    """Shrunk by their constructors' arguments (as --arg passes them), at the inputs fxcost makes
    for them (zoo_inputs.DIFFUSERS; Flux's 4,096 image tokens made 64 here), against
    FlopCounterMode over a real forward and their own parameters()."""
    pytest.importorskip("diffusers")
    from fxcost.loading.specs import make_inputs
    from fxcost.loading.zoos import default_input, load_zoo

    spec = f"diffusers:{name}"
    text, _ = default_input(spec, load_zoo(spec, _TINY_DIFFUSERS[name])[0])
    text = text.replace("4096", "64")
    torch.manual_seed(0)
    model = load_zoo(spec, _TINY_DIFFUSERS[name], meta=False)[0]
    ((args, kwargs),) = make_inputs([text])

    def real(t: Any) -> Any:
        return torch.rand(t.shape, dtype=t.dtype) if t.dtype.is_floating_point else torch.zeros(t.shape, dtype=t.dtype)

    args, kwargs = tuple(real(a) for a in args), {k: real(v) for k, v in kwargs.items()}
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    report = fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs)
    assert not report.unsupported and report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


@pytest.mark.parametrize(("spec", "text"), [
    ("hf:BertModel", "1x128:int64"), ("hf:T5Model", "1x128:int64,decoder_input_ids=1x128:int64"),
    ("hf:ViTModel", "1x3x224x224"), ("hf:WhisperModel", "1x80x3000,decoder_input_ids=1x128:int64"),
    ("hf:Wav2Vec2Model", "1x16000"), ("hf:EncodecModel", "1x1x16000"),
    ("diffusers:UNet2DConditionModel", "1x4x64x64,1,1x77x1280"),
])
def test_hf_and_diffusers_models_bring_their_own_inputs(spec: str, text: str) -> None:
    from fxcost.loading.specs import load_model
    from fxcost.loading.zoos import default_input

    pytest.importorskip("transformers" if spec.startswith("hf:") else "diffusers")
    model, _ = load_model(spec, meta=True)
    assert default_input(spec, model)[0] == text


def test_the_hf_and_diffusers_sweeps(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fxcost.cli import main

    pytest.importorskip("transformers")
    pytest.importorskip("diffusers")
    assert main(["zoo", "hf", "--filter", "GPT2Model", "--check", "-j", "1", "-f", "json"]) == 0
    (gpt2,) = json.loads(capsys.readouterr().out)["models"]
    assert (gpt2["status"], gpt2["check"], gpt2["input"], gpt2["params"]) == ("ok", "exact", "1x128:int64", 124_439_808)
    assert main(["zoo", "diffusers", "--filter", "AutoencoderKL", "--check", "-j", "1", "-f", "json"]) == 0
    (vae,) = json.loads(capsys.readouterr().out)["models"]
    assert (vae["status"], vae["check"], vae["input"]) == ("ok", "exact", "1x3x256x256")


def test_switch_transformers_converts_its_router_and_reads_which_experts_are_hit() -> None:
    """Its router converts itself (``self.classifier = self.classifier.to(self.dtype)``), to what it
    already is: the fake run goes on. Its experts then ask which of them got tokens (``nonzero``),
    a value: refused on data-free tensors with that line, exact with --real."""
    from fxcost.errors import FxcostError

    tf = pytest.importorskip("transformers")
    config = tf.SwitchTransformersConfig(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=32,
                                         vocab_size=256, num_experts=4, use_cache=False, num_sparse_encoder_layers=1,
                                         num_sparse_decoder_layers=1)  # block 1 of each stack routes to experts
    torch.manual_seed(0)
    model = tf.SwitchTransformersModel(config).eval()
    ids, decoder_ids = torch.randint(0, 256, (1, 32)), torch.randint(0, 256, (1, 8))
    with torch.device("meta"):
        data_free = tf.SwitchTransformersModel(config).eval()
    with pytest.raises(FxcostError) as refused:
        fxcost.analyze(data_free, example_inputs=(ids.to("meta"),), example_kwargs={"decoder_input_ids": decoder_ids.to("meta")})
    assert "expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()" in str(refused.value)
    assert "Couldn't swap" not in str(refused.value)
    report = fxcost.analyze(model, example_inputs=(ids,), example_kwargs={"decoder_input_ids": decoder_ids}, real=True)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(ids, decoder_input_ids=decoder_ids)
    assert not report.unsupported and report.total().params == sum(p.numel() for p in model.parameters())
    assert 2 * report.total().macs == counter.get_total_flops()


# --- the slow tier: whole zoos against FlopCounterMode and parameters() ---------------------------------

def _not_exact(specs: list[str], real: bool = False) -> list[tuple[Any, ...]]:
    """Each spec swept as ``fxcost zoo --check`` sweeps it (its own input; FlopCounterMode over the
    same forward, with the ops it prices at 0 added by hand; its own parameters()): what is not
    analyzed, or not exact."""
    import os

    from fxcost import zoo_sweep

    rows = zoo_sweep.sweep(specs, jobs=os.cpu_count() or 1, timeout=900, say=lambda _: None, real=real, check=True)
    return [(r["model"], r["status"], r.get("check"), r["why"]) for r in rows
            if r["status"] != "ok" or r.get("check") != "exact"]


@pytest.mark.slow
def test_one_model_of_every_timm_family_is_exact() -> None:
    timm = pytest.importorskip("timm")
    families = [timm.list_models(module=m) for m in timm.list_modules()]
    specs = ["timm:" + names[0] for names in families if names]
    assert len(specs) >= 90  # timm 1.0.31: 98 families
    assert _not_exact(specs) == []


@pytest.mark.slow
def test_every_torchvision_model_is_exact() -> None:
    """Classification, segmentation, video and optical flow on meta; the detection models, which
    read values (their box filtering), on real tensors with random weights (--real)."""
    tv = pytest.importorskip("torchvision")
    specs = ["tv:" + name for name in tv.models.list_models()]
    assert len(specs) >= 120  # torchvision 0.28: 121
    assert _not_exact(specs, real=True) == []


@pytest.mark.slow
def test_the_diffusers_models_are_exact_at_their_default_configs() -> None:
    pytest.importorskip("diffusers")
    from fxcost.loading.zoo_inputs import DIFFUSERS

    assert _not_exact(["diffusers:" + name for name in DIFFUSERS]) == []


#: transformers models FlopCounterMode cannot run data-free (fxcost analyzes them: the check has
#: no reference): the wav2vec2 family's, DeformableDETR's and XLNet's forward on fake CPU tensors
#: meets a meta tensor; MRA's, FlopCounterMode's module tracker fails on a meta parameter; Grounding
#: DINO's reads values on meta, and its reference's forward with random weights then meets a meta
#: tensor inside BERT's attention (where that tensor comes from is not found yet)
_NO_REFERENCE = {"Data2VecAudioModel", "DeformableDetrModel", "GroundingDinoModel", "HubertModel", "MMGroundingDinoModel",
                 "MraModel", "SEWDModel", "SEWModel", "UniSpeechModel", "UniSpeechSatModel", "Wav2Vec2BertModel",
                 "Wav2Vec2ConformerModel", "Wav2Vec2Model", "WavLMModel", "XLNetModel"}


def _transformers_sweep(pattern: str = "*") -> tuple[list[tuple[Any, ...]], list[str]]:
    """The hf zoo swept with --check: what is analyzed and not exact (or an error, an unsupported
    op, a timeout, a refusal PyTorch does not share), and the models refused (inputs the sweep does
    not make, configs that do not hold together, or values read)."""
    import os

    from fxcost import zoo_sweep

    specs = ["hf:" + name for name in zoo_sweep.names("hf", pattern)]
    rows = zoo_sweep.sweep(specs, jobs=os.cpu_count() or 1, timeout=900, say=lambda _: None, check=True)
    wrong = [(r["model"], r["status"], r.get("check"), r["why"]) for r in rows if r["status"] not in ("ok", "refused")
             or (r["status"] == "ok" and r["check"] not in ("exact", "exact on known values")
                 and not (r["model"] in _NO_REFERENCE and r["check"].startswith("FlopCounterMode did not run")))]
    # a refused model whose forward PyTorch runs on fake tensors and for real: a refusal of fxcost's own
    wrong += [(r["model"], r["status"], r.get("check"), r["why"]) for r in rows
              if r["status"] == "refused" and "a refusal of fxcost's own" in str(r.get("check"))]
    return wrong, [r["model"] for r in rows if r["status"] == "refused"]


def test_a_sample_of_the_transformers_zoo() -> None:
    pytest.importorskip("transformers")
    wrong, refused = _transformers_sweep("[BC][el][ri][tP]Model")  # BEiT and BERT
    assert wrong == [] and refused == []


@pytest.mark.zoo
def test_every_transformers_model_type_analyzed_is_exact() -> None:
    """Every model type's base model (transformers 5.24: 612 classes) at its default config: each
    analyzed one exact; those refused are refused with a reason (docs/commands/zoo.md lists them by
    kind: inputs the sweep does not make, values read, configs that do not build)."""
    pytest.importorskip("transformers")
    wrong, refused = _transformers_sweep()
    assert wrong == []
    assert len(refused) <= 146  # transformers 5.24: 465 of 612 analyzed (V-JEPA 2 takes over 300 s)


def test_the_torchvision_backward_ops_by_hand() -> None:
    """Their backwards, as docs/conventions.md states them: RoI Align's scatters each sample's 4
    weighted taps back (8 FLOPs a sample) after one division per output gradient, its forward's
    count; RoI pooling adds each output gradient at its argmax (1 FLOP each)."""
    from fxcost.pytorch.aten import ATEN

    boxes = torch.tensor(_BOXES)
    align = ATEN.lookup("torchvision::_roi_align_backward").formula
    # grad [2 boxes, 2 channels, 2, 2] for an input [1, 2, 8, 8], sampling_ratio 2 (4 samples a bin)
    assert align(torch.Size([2, 2, 2, 2]), boxes, 1.0, 2, 2, 1, 2, 8, 8, 2, False).flops == 2 * 2 * 4 * (8 * 4 + 1)
    pool = ATEN.lookup("torchvision::_roi_pool_backward").formula
    assert pool(torch.Size([2, 2, 2, 2]), boxes, torch.Size([2, 2, 2, 2]), 1.0, 2, 2, 1, 2, 8, 8).flops == 16
