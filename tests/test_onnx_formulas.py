"""The ONNX op registry: each formula against the aten route on the same computation (or hand
arithmetic), fed the way the analyzer feeds it: single-node models built with onnx.helper, shapes
from onnx's own shape inference, attributes through get_attribute_value."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxcost
from fxcost import DEFAULT_REGISTRY, Cost
from fxcost.onnx.formulas import ONNX_REGISTRY, UnknownShape, UnsupportedForm, _conv_output, op_key
from tests.conftest import flop_counter_flops
from tests.test_formulas import Fn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# An input spec: a shape (a float graph input), an array (an initializer, for inputs whose
# values shape inference needs: Resize's scales, TopK's K), or None (an omitted optional input).
Spec = tuple[int, ...] | np.ndarray | None


def onnx_node_cost(
    op_type: str, inputs: Sequence[Spec], attrs: dict[str, Any] | None = None, *, outputs: int = 1,
    opset: int = 18, domain: str = "",
) -> tuple[Cost, tuple[torch.Size | None, ...]]:
    """Build a one-node model, let onnx infer its output shapes, and call the registry's formula
    as the analyzer does: one torch.Size (or None) per input, ``out`` per output, attributes as
    Python values (strings decoded)."""
    names, graph_inputs, initializers = [], [], []
    for i, spec in enumerate(inputs):
        if spec is None:
            names.append("")
            continue
        names.append(f"in{i}")
        if isinstance(spec, np.ndarray):
            initializers.append(numpy_helper.from_array(spec, f"in{i}"))
        else:
            graph_inputs.append(helper.make_tensor_value_info(f"in{i}", TensorProto.FLOAT, list(spec)))
    out_names = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op_type, names, out_names, domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], "one_node", graph_inputs, [onnx.ValueInfoProto(name=n) for n in out_names], initializer=initializers
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=opsets), strict_mode=True)

    def shape(vi: Any) -> torch.Size | None:
        t = vi.type.tensor_type
        return torch.Size(d.dim_value for d in t.shape.dim) if t.HasField("shape") else None

    known = {vi.name: shape(vi) for vi in [*model.graph.input, *model.graph.output]}
    known.update({i.name: torch.Size(i.dims) for i in model.graph.initializer})
    node_attrs = {}
    for a in model.graph.node[0].attribute:
        value = helper.get_attribute_value(a)
        node_attrs[a.name] = value.decode() if isinstance(value, bytes) else value
    fate, fn, _ = ONNX_REGISTRY.lookup(op_key(domain, op_type))
    assert fate == "formula" and fn is not None
    out = tuple(known[n] for n in out_names)
    cost = fn(*(known[n] if n else None for n in names), out=out, **node_attrs)
    assert isinstance(cost.macs, int) and isinstance(cost.flops, int) and cost.macs >= 0 and cost.flops >= 0
    return cost, out


def aten_cost(module: nn.Module, shape: tuple[int, ...]) -> Cost:
    """What fxcost's aten route counts for the module, which must dispatch only counted ops."""
    report = fxcost.analyze(module, input_size=shape)
    assert report.unsupported == ()
    return Cost(report.total().macs, report.total().flops)


def w(*shape: int) -> torch.Tensor:
    return torch.randn(shape)


# --- MAC ops: the same computation on both routes -----------------------------------------------

# (id, ONNX op, inputs, attributes, torch module, input shape): MACs and FLOPs must both equal the
# aten route's. nn.Linear on a 2-D input dispatches addmm (mm without a bias); torch.matmul folds,
# expands or reaches mv and bmm.
SAME_AS_ATEN = [
    ("conv2d", "Conv", [(2, 3, 9, 9), (8, 3, 3, 3), (8,)], {}, nn.Conv2d(3, 8, 3), (2, 3, 9, 9)),
    ("conv2d_stride_pad", "Conv", [(1, 4, 17, 13), (6, 4, 5, 5), (6,)], {"strides": [2, 2], "pads": [2, 2, 2, 2]},
     nn.Conv2d(4, 6, 5, stride=2, padding=2), (1, 4, 17, 13)),
    ("conv2d_groups", "Conv", [(2, 8, 7, 7), (16, 2, 3, 3), (16,)], {"group": 4}, nn.Conv2d(8, 16, 3, groups=4), (2, 8, 7, 7)),
    ("conv2d_depthwise_no_bias", "Conv", [(2, 8, 7, 7), (8, 1, 3, 3)], {"group": 8},
     nn.Conv2d(8, 8, 3, groups=8, bias=False), (2, 8, 7, 7)),
    ("conv2d_dilation", "Conv", [(1, 3, 20, 20), (4, 3, 3, 3), (4,)], {"dilations": [3, 3]},
     nn.Conv2d(3, 4, 3, dilation=3), (1, 3, 20, 20)),
    ("conv1d", "Conv", [(2, 3, 30), (5, 3, 4), (5,)], {"strides": [2]}, nn.Conv1d(3, 5, 4, stride=2), (2, 3, 30)),
    ("conv3d", "Conv", [(1, 2, 5, 6, 7), (3, 2, 3, 3, 3), (3,)], {"pads": [1] * 6}, nn.Conv3d(2, 3, 3, padding=1), (1, 2, 5, 6, 7)),
    ("conv_transpose2d", "ConvTranspose", [(2, 4, 5, 5), (4, 6, 3, 3), (6,)], {"strides": [2, 2]},
     nn.ConvTranspose2d(4, 6, 3, stride=2), (2, 4, 5, 5)),
    ("conv_transpose2d_groups", "ConvTranspose", [(1, 4, 6, 6), (4, 3, 4, 4), (6,)],
     {"strides": [2, 2], "pads": [1, 1, 1, 1], "group": 2}, nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2), (1, 4, 6, 6)),
    ("conv_transpose1d", "ConvTranspose", [(2, 3, 11), (3, 2, 5), (2,)], {}, nn.ConvTranspose1d(3, 2, 5), (2, 3, 11)),
    ("gemm_linear", "Gemm", [(5, 12), (7, 12), (7,)], {"transB": 1}, nn.Linear(12, 7), (5, 12)),
    ("gemm_no_c", "Gemm", [(5, 12), (7, 12)], {"transB": 1}, nn.Linear(12, 7, bias=False), (5, 12)),
    ("gemm_trans_a", "Gemm", [(12, 5), (12, 7), (7,)], {"transA": 1}, nn.Linear(12, 7), (5, 12)),
    ("matmul_broadcast", "MatMul", [(2, 3, 4, 5), (5, 2)], {}, Fn(lambda x, m: torch.matmul(x, m), w(5, 2)), (2, 3, 4, 5)),
    ("matmul_batch_broadcast", "MatMul", [(2, 4, 5), (3, 1, 5, 6)], {}, Fn(lambda x, m: x @ m, w(3, 1, 5, 6)), (2, 4, 5)),
    ("matmul_vector_left", "MatMul", [(5,), (3, 5, 6)], {}, Fn(lambda x, m: x @ m, w(3, 5, 6)), (5,)),
    ("matmul_vector_right", "MatMul", [(2, 3, 4, 5), (5,)], {}, Fn(lambda x, m: x @ m, w(5)), (2, 3, 4, 5)),
    ("matmul_dot", "MatMul", [(5,), (5,)], {}, Fn(lambda x, m: x @ m, w(5)), (5,)),
    ("einsum_bij_jk", "Einsum", [(2, 4, 5), (5, 3)], {"equation": "bij,jk->bik"},
     Fn(lambda x, m: torch.einsum("bij,jk->bik", x, m), w(5, 3)), (2, 4, 5)),
    ("einsum_attention_scores", "Einsum", [(2, 3, 4, 5), (2, 3, 6, 5)], {"equation": "bhqd,bhkd->bhqk"},
     Fn(lambda x, m: torch.einsum("bhqd,bhkd->bhqk", x, m), w(2, 3, 6, 5)), (2, 3, 4, 5)),
    ("einsum_rowwise_dot", "Einsum", [(4, 5), (4, 5)], {"equation": "ij,ij->i"},
     Fn(lambda x, m: torch.einsum("ij,ij->i", x, m), w(4, 5)), (4, 5)),
    ("einsum_implicit", "Einsum", [(3, 4), (4, 5)], {"equation": "ij,jk"},
     Fn(lambda x, m: torch.einsum("ij,jk", x, m), w(4, 5)), (3, 4)),
    ("einsum_ellipsis_broadcast", "Einsum", [(1, 2, 4, 5), (3, 1, 5, 6)], {"equation": "...ij,...jk->...ik"},
     Fn(lambda x, m: torch.einsum("...ij,...jk->...ik", x, m), w(3, 1, 5, 6)), (1, 2, 4, 5)),
    ("einsum_matvec", "Einsum", [(3, 4), (4,)], {"equation": "ij,j->i"},
     Fn(lambda x, m: torch.einsum("ij,j->i", x, m), w(4)), (3, 4)),
    ("einsum_inner", "Einsum", [(5,), (5,)], {"equation": "i,i->"}, Fn(lambda x, m: torch.einsum("i,i->", x, m), w(5)), (5,)),
    ("einsum_outer_is_mul", "Einsum", [(2, 3), (2, 4)], {"equation": "bi,bj->bij"},
     Fn(lambda x, m: torch.einsum("bi,bj->bij", x, m), w(2, 4)), (2, 3)),
    ("einsum_size1_summed_is_mul", "Einsum", [(3, 1), (1, 5)], {"equation": "ij,jk->ik"},
     Fn(lambda x, m: torch.einsum("ij,jk->ik", x, m), w(1, 5)), (3, 1)),
    ("einsum_one_operand_sum", "Einsum", [(3, 4, 5)], {"equation": "ijk->i"}, Fn(lambda x: torch.einsum("ijk->i", x)), (3, 4, 5)),
    ("einsum_one_operand_permute", "Einsum", [(3, 4)], {"equation": "ij->ji"}, Fn(lambda x: torch.einsum("ij->ji", x)), (3, 4)),
]


@pytest.mark.parametrize(
    "op_type, inputs, attrs, module, shape", [c[1:] for c in SAME_AS_ATEN], ids=[c[0] for c in SAME_AS_ATEN]
)
def test_mac_ops_cost_what_the_aten_route_counts(
    op_type: str, inputs: list[Spec], attrs: dict[str, Any], module: nn.Module, shape: tuple[int, ...],
    request: pytest.FixtureRequest,
) -> None:
    cost, _ = onnx_node_cost(op_type, inputs, attrs)
    assert cost == aten_cost(module, shape)
    # and against PyTorch's own counter over a real forward, which counts 2 FLOPs per MAC; it has
    # no formula for mv and dot, so those two are written by hand
    expected = {"matmul_vector_right": 2 * 3 * 4 * 5, "matmul_dot": 5}.get(request.node.callspec.id)
    reference = 2 * expected if expected is not None else flop_counter_flops(module, torch.randn(shape))
    assert 2 * cost.macs == reference


def test_conv_and_gemm_by_hand() -> None:
    # [2, 16, 5, 5] = Conv([2, 8, 7, 7], W[16, 8/4, 3, 3], B[16]): 2*5*5 positions * 16 * 2 * 3*3
    conv, _ = onnx_node_cost("Conv", [(2, 8, 7, 7), (16, 2, 3, 3), (16,)], {"group": 4})
    assert conv.macs == 2 * 5 * 5 * 16 * 2 * 3 * 3 == 14_400
    assert conv.flops == 2 * 14_400 + 2 * 16 * 5 * 5  # 2 per MAC + the bias add per output
    # [5, 7] = Gemm(A[12, 5]^T, B[7, 12]^T, C[7]; alpha=0.5, beta=2): alpha and beta not counted
    gemm, _ = onnx_node_cost("Gemm", [(12, 5), (7, 12), (7,)], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0})
    assert gemm == Cost(5 * 12 * 7, 2 * 5 * 12 * 7 + 5 * 7)


# (id, ONNX op, inputs, attributes, MACs by hand): the integer and quantized forms count as the float op
QUANTIZED = [
    # 2*7*7 positions * 8 * 3 * 3*3
    ("conv_integer", "ConvInteger", [(2, 3, 9, 9), (8, 3, 3, 3)], 2 * 7 * 7 * 8 * 3 * 9, 0),
    ("qlinear_conv_bias", "QLinearConv", [(2, 3, 9, 9), (), (), (8, 3, 3, 3), (), (), (), (), (8,)],
     2 * 7 * 7 * 8 * 3 * 9, 2 * 8 * 7 * 7),
    ("matmul_integer", "MatMulInteger", [(2, 4, 5), (5, 3)], 2 * 4 * 5 * 3, 0),
    ("qlinear_matmul", "QLinearMatMul", [(4, 5), (), (), (5, 3), (), (), (), ()], 4 * 5 * 3, 0),
]


@pytest.mark.parametrize("op_type, inputs, macs, bias", [c[1:] for c in QUANTIZED], ids=[c[0] for c in QUANTIZED])
def test_quantized_ops_count_as_their_float_versions(op_type: str, inputs: list[Spec], macs: int, bias: int) -> None:
    fn = ONNX_REGISTRY.lookup(op_key("", op_type))[1]
    assert fn is not None
    sizes = [torch.Size(s) for s in inputs]  # type: ignore[arg-type]
    assert fn(*sizes, out=(None,)) == Cost(macs, 2 * macs + bias)


# --- attention ----------------------------------------------------------------------------------


class Sdpa(nn.Module):
    """scaled_dot_product_attention of the input (the query) with fixed k, v and mask."""

    def __init__(self, k: tuple, v: tuple, mask: tuple | None = None, causal: bool = False, gqa: bool = False) -> None:
        super().__init__()
        self.k, self.v = nn.Parameter(torch.randn(k)), nn.Parameter(torch.randn(v))
        self.mask = None if mask is None else nn.Parameter(torch.randn(mask))
        self.causal, self.gqa = causal, gqa

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, self.k, self.v, attn_mask=self.mask, is_causal=self.causal, enable_gqa=self.gqa)


# (id, ONNX inputs, attributes, the same attention on 4-D tensors, query shape, FLOPs the aten
# route counts on top). Intended difference: with is_causal the math path PyTorch runs on meta
# tensors builds the [Lq, Lk] triangle with one where, which formulas.py calls mask preparation
# and leaves out of every fused kernel's count.
ATTENTION = [
    ("plain", [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7)], {}, Sdpa((2, 3, 6, 5), (2, 3, 6, 7)), (2, 3, 4, 5), 0),
    ("float_mask", [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), (4, 6)], {}, Sdpa((2, 3, 6, 5), (2, 3, 6, 7), mask=(4, 6)),
     (2, 3, 4, 5), 0),
    ("causal", [(2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 7)], {"is_causal": 1}, Sdpa((2, 3, 4, 5), (2, 3, 4, 7), causal=True),
     (2, 3, 4, 5), 4 * 4),
    ("grouped_query", [(2, 4, 4, 5), (2, 2, 6, 5), (2, 2, 6, 7)], {}, Sdpa((2, 2, 6, 5), (2, 2, 6, 7), gqa=True),
     (2, 4, 4, 5), 0),
    # 3-D: Q[2, 4, 4 heads * 5], K[2, 6, 2 heads * 5], V[2, 6, 2 heads * 7]
    ("3d_heads", [(2, 4, 20), (2, 6, 10), (2, 6, 14)], {"q_num_heads": 4, "kv_num_heads": 2},
     Sdpa((2, 2, 6, 5), (2, 2, 6, 7), gqa=True), (2, 4, 4, 5), 0),
    # a cache of 2 past positions: the same as attending to K of length 2 + 4
    ("kv_cache", [(2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 7), None, (2, 3, 2, 5), (2, 3, 2, 7)], {},
     Sdpa((2, 3, 6, 5), (2, 3, 6, 7)), (2, 3, 4, 5), 0),
]


@pytest.mark.parametrize(
    "inputs, attrs, module, shape, aten_extra", [c[1:] for c in ATTENTION], ids=[c[0] for c in ATTENTION]
)
def test_attention_costs_scaled_dot_product_attention(
    inputs: list[Spec], attrs: dict[str, Any], module: nn.Module, shape: tuple, aten_extra: int
) -> None:
    cost, out = onnx_node_cost("Attention", inputs, attrs, outputs=3 if len(inputs) > 4 else 1, opset=23)
    aten = aten_cost(module, shape)
    assert cost.macs == aten.macs
    assert 2 * cost.macs == flop_counter_flops(module, torch.randn(shape))  # PyTorch's own counter
    assert cost.flops + aten_extra == aten.flops


def test_attention_by_hand() -> None:
    # Q[1, 2, 3, 4], K[1, 2, 5, 4], V[1, 2, 5, 6]: S = 1*2*3*5 = 30 scores
    cost, _ = onnx_node_cost("Attention", [(1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 6)], {"softcap": 30.0}, opset=23)
    macs = 30 * 4 + 30 * 6  # q @ k^T, weights @ v
    scale = 1 * 2 * (3 + 5) * 4  # q and k scaled by sqrt(scale) each
    assert cost == Cost(macs, 2 * macs + scale + 5 * 30 + 3 * 30)  # softmax 5, softcap 3 per score


# --- recurrent layers: ONNX's one layer per node against nn.LSTM / GRU / RNN --------------------


def rnn_inputs(gates: int, steps: int, batch: int, size_in: int, hidden: int, directions: int, bias: bool) -> list[Spec]:
    rows = gates * hidden
    return [(steps, batch, size_in), (directions, rows, size_in), (directions, rows, hidden)] + (
        [(directions, 2 * rows)] if bias else []
    )


# (id, ONNX op, gates, attributes, module, bias): T=5, B=2, I=3, H=4
RNNS = [
    ("lstm", "LSTM", 4, {}, nn.LSTM(3, 4), True),
    ("lstm_bidirectional", "LSTM", 4, {"direction": "bidirectional"}, nn.LSTM(3, 4, bidirectional=True), True),
    ("lstm_no_bias", "LSTM", 4, {}, nn.LSTM(3, 4, bias=False), False),
    # PyTorch's GRU applies the reset gate after the hidden projection: linear_before_reset=1
    ("gru", "GRU", 3, {"linear_before_reset": 1}, nn.GRU(3, 4), True),
    ("gru_bidirectional", "GRU", 3, {"linear_before_reset": 1, "direction": "bidirectional"},
     nn.GRU(3, 4, bidirectional=True), True),
    ("rnn_tanh", "RNN", 1, {}, nn.RNN(3, 4), True),
    ("rnn_relu", "RNN", 1, {"activations": ["Relu"]}, nn.RNN(3, 4, nonlinearity="relu"), True),
]


@pytest.mark.parametrize("op_type, gates, attrs, module, bias", [c[1:] for c in RNNS], ids=[c[0] for c in RNNS])
def test_recurrent_layers_cost_what_the_aten_route_counts(
    op_type: str, gates: int, attrs: dict[str, Any], module: nn.RNNBase, bias: bool
) -> None:
    directions = 2 if module.bidirectional else 1
    inputs = rnn_inputs(gates, 5, 2, 3, 4, directions, bias)
    cost, _ = onnx_node_cost(op_type, inputs, {"hidden_size": 4, **attrs}, outputs=2)
    assert cost == aten_cost(module, (5, 2, 3))
    # T * B positions, each direction's gates project the input (I = 3) and the state (H = 4)
    assert cost.macs == 5 * 2 * directions * gates * 4 * (3 + 4)


def test_stacked_lstm_is_one_node_per_layer() -> None:
    # nn.LSTM(num_layers=2, bidirectional) = two ONNX LSTM nodes, the second fed 2 * H features
    first, _ = onnx_node_cost("LSTM", rnn_inputs(4, 5, 2, 3, 4, 2, True), {"hidden_size": 4, "direction": "bidirectional"})
    second, _ = onnx_node_cost("LSTM", rnn_inputs(4, 5, 2, 8, 4, 2, True), {"hidden_size": 4, "direction": "bidirectional"})
    aten = aten_cost(nn.LSTM(3, 4, num_layers=2, bidirectional=True), (5, 2, 3))
    assert Cost(first.macs + second.macs, first.flops + second.flops) == aten


def test_lstm_extras_by_hand() -> None:
    # peepholes P[1, 3H] and clip: T*B = 10 positions, H = 4
    plain, _ = onnx_node_cost("LSTM", rnn_inputs(4, 5, 2, 3, 4, 1, True), {"hidden_size": 4})
    extra, _ = onnx_node_cost(
        "LSTM", [*rnn_inputs(4, 5, 2, 3, 4, 1, True), None, None, None, (1, 12)], {"hidden_size": 4, "clip": 1.0}
    )
    assert extra.macs == plain.macs == 10 * (16 * 3 + 16 * 4)
    assert extra.flops - plain.flops == 10 * 2 * 12 + 10 * 16  # peephole multiply-add, a clamp per gate


# --- per-element conventions --------------------------------------------------------------------

# (id, ONNX op, inputs, attributes, opset, torch module, input shape): FLOPs equal the aten route's
FLOPS_AS_ATEN = [
    ("relu", "Relu", [(2, 10)], {}, 18, nn.ReLU(), (2, 10)),
    ("gelu", "Gelu", [(3, 7)], {}, 20, nn.GELU(), (3, 7)),
    ("sigmoid", "Sigmoid", [(3, 7)], {}, 18, nn.Sigmoid(), (3, 7)),
    ("prelu", "PRelu", [(2, 3, 4), (3, 1)], {}, 18, nn.PReLU(3), (2, 3, 4)),
    ("clip", "Clip", [(3, 7), np.array(0.0, np.float32), np.array(6.0, np.float32)], {}, 18, nn.ReLU6(), (3, 7)),
    ("add_broadcast", "Add", [(2, 3, 4), (4,)], {}, 18, Fn(lambda x, b: x + b, w(4)), (2, 3, 4)),
    ("max_pair", "Max", [(2, 3, 4), (4,)], {}, 18, Fn(lambda x, b: torch.maximum(x, b), w(4)), (2, 3, 4)),
    ("softmax", "Softmax", [(4, 5)], {"axis": -1}, 18, nn.Softmax(dim=-1), (4, 5)),
    ("log_softmax", "LogSoftmax", [(4, 5)], {}, 18, nn.LogSoftmax(dim=-1), (4, 5)),  # axis defaults to -1
    ("hardmax", "Hardmax", [(3, 4)], {}, 18, Fn(lambda x: F.one_hot(x.argmax(-1), 4)), (3, 4)),
    ("maxpool2d", "MaxPool", [(1, 3, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2]}, 18, nn.MaxPool2d(2), (1, 3, 8, 8)),
    ("avgpool2d_k3s2", "AveragePool", [(1, 2, 9, 9)], {"kernel_shape": [3, 3], "strides": [2, 2]}, 18,
     nn.AvgPool2d(3, stride=2), (1, 2, 9, 9)),
    ("global_avg_pool", "GlobalAveragePool", [(2, 3, 5, 5)], {}, 18, nn.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    ("global_max_pool", "GlobalMaxPool", [(2, 3, 5, 5)], {}, 18, nn.AdaptiveMaxPool2d(1), (2, 3, 5, 5)),
    ("batchnorm", "BatchNormalization", [(2, 4, 3, 3), (4,), (4,), (4,), (4,)], {}, 18, nn.BatchNorm2d(4), (2, 4, 3, 3)),
    ("layernorm", "LayerNormalization", [(2, 6), (6,), (6,)], {}, 18, nn.LayerNorm(6), (2, 6)),
    ("layernorm_scale_only", "LayerNormalization", [(2, 6), (6,)], {}, 18, nn.LayerNorm(6, bias=False), (2, 6)),
    ("groupnorm", "GroupNormalization", [(2, 4, 5), (4,), (4,)], {"num_groups": 2}, 21, nn.GroupNorm(2, 4), (2, 4, 5)),
    ("instancenorm_affine", "InstanceNormalization", [(2, 3, 4, 4), (3,), (3,)], {}, 18,
     nn.InstanceNorm2d(3, affine=True), (2, 3, 4, 4)),
    ("rmsnorm", "RMSNormalization", [(2, 6), (6,)], {}, 23, nn.RMSNorm(6), (2, 6)),
    ("rmsnorm_two_dims", "RMSNormalization", [(2, 3, 4), (3, 4)], {"axis": 1}, 23, nn.RMSNorm((3, 4)), (2, 3, 4)),
    ("reduce_mean", "ReduceMean", [(3, 4), np.array([-1], np.int64)], {}, 18, Fn(lambda x: x.mean(-1)), (3, 4)),
    ("reduce_sum_all", "ReduceSum", [(3, 4)], {}, 18, Fn(lambda x: x.sum()), (3, 4)),
    ("reduce_log_sum_exp", "ReduceLogSumExp", [(3, 4), np.array([1], np.int64)], {}, 18, Fn(lambda x: x.logsumexp(1)), (3, 4)),
    ("argmax", "ArgMax", [(3, 4)], {"axis": 1}, 18, Fn(lambda x: x.argmax(1)), (3, 4)),
    ("topk", "TopK", [(3, 8), np.array([3], np.int64)], {}, 18, Fn(lambda x: x.topk(3, -1).values), (3, 8)),
    ("cumsum", "CumSum", [(3, 4), np.array(1, np.int64)], {}, 18, Fn(lambda x: x.cumsum(1)), (3, 4)),
    ("one_hot", "OneHot", [(3,), np.array(5, np.int64), np.array([0.0, 1.0], np.float32)], {}, 18,
     Fn(lambda x: F.one_hot(x.long(), 5)), (3,)),
    ("resize_nearest", "Resize", [(1, 2, 3, 3), None, np.array([1, 1, 2, 2], np.float32)], {}, 18,
     nn.Upsample(scale_factor=2), (1, 2, 3, 3)),
    ("resize_linear_1d", "Resize", [(1, 2, 5), None, np.array([1, 1, 2], np.float32)], {"mode": "linear"}, 18,
     nn.Upsample(scale_factor=2, mode="linear"), (1, 2, 5)),
    ("resize_bilinear", "Resize", [(1, 2, 3, 3), None, np.array([1, 1, 2, 2], np.float32)], {"mode": "linear"}, 18,
     nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 3, 3)),
    ("resize_trilinear", "Resize", [(1, 2, 3, 3, 3), None, np.array([1, 1, 2, 2, 2], np.float32)], {"mode": "linear"}, 18,
     nn.Upsample(scale_factor=2, mode="trilinear"), (1, 2, 3, 3, 3)),
    ("resize_bicubic", "Resize", [(1, 2, 3, 3), None, np.array([1, 1, 2, 2], np.float32)], {"mode": "cubic"}, 18,
     nn.Upsample(scale_factor=2, mode="bicubic"), (1, 2, 3, 3)),
    ("resize_bilinear_antialiased_down", "Resize", [(1, 2, 8, 8), None, np.array([1, 1, 0.5, 0.5], np.float32)],
     {"mode": "linear", "antialias": 1}, 18, Fn(lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)),
     (1, 2, 8, 8)),
    ("col2im", "Col2Im", [(1, 2 * 2 * 2, 9), np.array([4, 4], np.int64), np.array([2, 2], np.int64)], {}, 18,
     nn.Fold((4, 4), 2), (1, 8, 9)),
    ("trilu", "Trilu", [(3, 3)], {}, 18, Fn(lambda x: torch.tril(x)), (3, 3)),
]


@pytest.mark.parametrize(
    "op_type, inputs, attrs, opset, module, shape", [c[1:] for c in FLOPS_AS_ATEN], ids=[c[0] for c in FLOPS_AS_ATEN]
)
def test_per_element_conventions_match_the_aten_route(
    op_type: str, inputs: list[Spec], attrs: dict[str, Any], opset: int, module: nn.Module, shape: tuple
) -> None:
    fate = ONNX_REGISTRY.lookup(op_key("", op_type))[0]
    if fate == "free":
        assert aten_cost(module, shape) == Cost(0, 0)
        return
    cost, _ = onnx_node_cost(op_type, inputs, attrs, outputs=2 if op_type == "TopK" else 1, opset=opset)
    assert cost == aten_cost(module, shape)


# (id, ONNX op, inputs, attributes, expected FLOPs written as arithmetic): no single aten op to
# compare with, or an intended difference
FLOPS_BY_HAND = [
    ("sum_of_three", "Sum", [(2, 3), (2, 3), (3,)], {}, 2 * 2 * 3),  # n - 1 = 2 adds per element
    ("mean_of_three", "Mean", [(2, 3), (2, 3), (2, 3)], {}, 3 * 2 * 3),  # 2 adds and the divide
    ("max_of_one", "Max", [(2, 3)], {}, 0),  # a copy
    ("where", "Where", [(2, 1), (2, 3), (1, 3)], {}, 2 * 3),
    ("softsign", "Softsign", [(3, 4)], {}, 3 * 4),  # one op, 1 per element (aten: abs, add, div = 3)
    # F.normalize also clamps the norm by eps (1 per row); LpNormalization does not: the norm
    # (1 per input element) and the divide
    ("lp_normalization", "LpNormalization", [(3, 4)], {}, 2 * 3 * 4),
    # scatter without a reduction copies (0); with one, 1 per update element
    ("scatter_nd_copy", "ScatterND", [(4, 5), np.array([[0], [2]], np.int64), (2, 5)], {}, 0),
    ("scatter_nd_add", "ScatterND", [(4, 5), np.array([[0], [2]], np.int64), (2, 5)], {"reduction": "add"}, 2 * 5),
    ("scatter_elements_max", "ScatterElements", [(4, 5), np.zeros((2, 5), np.int64), (2, 5)], {"reduction": "max"}, 2 * 5),
    ("reduce_noop_without_axes", "ReduceSum", [(3, 4)], {"noop_with_empty_axes": 1}, 0),  # the identity
    ("reduce_sum_square", "ReduceSumSquare", [(3, 4)], {}, 3 * 4),  # the square inside, as aten's norm
    # InstanceNormalization always has scale and B (an exported nn.InstanceNorm2d(affine=False)
    # carries ones and zeros): 8 per element where the aten route counts 6
    ("instancenorm", "InstanceNormalization", [(2, 3, 4, 4), (3,), (3,)], {}, 8 * 2 * 3 * 4 * 4),
    # training_mode = 1: statistics computed, 8 per element (as aten's training batch norm)
    ("batchnorm_training", "BatchNormalization", [(2, 4, 3, 3), (4,), (4,), (4,), (4,)], {"training_mode": 1},
     8 * 2 * 4 * 3 * 3),
]


@pytest.mark.parametrize("op_type, inputs, attrs, flops", [c[1:] for c in FLOPS_BY_HAND], ids=[c[0] for c in FLOPS_BY_HAND])
def test_per_element_conventions_by_hand(op_type: str, inputs: list[Spec], attrs: dict[str, Any], flops: int) -> None:
    outputs = 3 if op_type == "BatchNormalization" and attrs.get("training_mode") else 1
    cost, _ = onnx_node_cost(op_type, inputs, attrs, outputs=outputs)
    assert cost == Cost(0, flops)


def test_simplified_layer_normalization_is_rms_norm() -> None:
    # com.microsoft's SimplifiedLayerNormalization: onnx does not know its schema, so no inference
    fn = ONNX_REGISTRY.lookup("com.microsoft::SimplifiedLayerNormalization")[1]
    assert fn is not None
    cost = fn(torch.Size([2, 6]), torch.Size([6]), out=(None,), axis=-1, epsilon=1e-5)
    assert cost == aten_cost(nn.RMSNorm(6), (2, 6))


# --- the analyzer's view: attributes at their defaults, shapes onnx infers -----------------------

# (id, ONNX op, inputs, attributes): ``_conv_output`` must agree with onnx's shape inference with
# attributes left out (kernel_shape from W, strides and dilations 1, pads 0) or given
CONV_SHAPES = [
    ("conv_all_defaults", "Conv", [(2, 3, 9, 9), (8, 3, 3, 3)], {}),
    ("conv_1d_defaults", "Conv", [(2, 3, 30), (5, 3, 4)], {}),
    ("conv_stride_pad_dilation", "Conv", [(1, 4, 17, 13), (6, 4, 5, 3)],
     {"strides": [2, 3], "pads": [2, 1, 0, 1], "dilations": [1, 2]}),
    ("conv_same_upper", "Conv", [(1, 4, 17, 13), (6, 4, 4, 4)], {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("conv_valid", "Conv", [(1, 4, 17, 13), (6, 4, 4, 4)], {"auto_pad": "VALID"}),
    ("conv_groups", "Conv", [(2, 8, 7, 7), (16, 2, 3, 3)], {"group": 4}),
    ("conv_transpose_defaults", "ConvTranspose", [(2, 4, 5, 5), (4, 6, 3, 3)], {}),
    ("conv_transpose_stride_pad_outpad", "ConvTranspose", [(1, 4, 6, 7), (4, 3, 4, 3)],
     {"strides": [2, 3], "pads": [1, 0, 1, 1], "output_padding": [1, 2], "group": 2}),
    ("conv_transpose_same", "ConvTranspose", [(1, 4, 6, 7), (4, 3, 3, 3)], {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("conv_transpose_output_shape", "ConvTranspose", [(1, 4, 6, 7), (4, 3, 3, 3)],
     {"strides": [2, 2], "output_shape": [12, 15]}),
]


@pytest.mark.parametrize("op_type, inputs, attrs", [c[1:] for c in CONV_SHAPES], ids=[c[0] for c in CONV_SHAPES])
def test_conv_output_shape_from_default_attributes_matches_onnx(
    op_type: str, inputs: list[tuple[int, ...]], attrs: dict[str, Any]
) -> None:
    with_out, (inferred,) = onnx_node_cost(op_type, inputs, attrs)
    assert inferred is not None
    x, wt = (torch.Size(s) for s in inputs)
    assert _conv_output(x, wt, attrs, op_type == "ConvTranspose") == inferred
    # the formula without the output's shape (the analyzer's None) costs the same
    fn = ONNX_REGISTRY.lookup(op_key("", op_type))[1]
    assert fn is not None
    assert fn(x, wt, out=(None,), **attrs) == with_out


def test_conv_without_kernel_shape_takes_it_from_w() -> None:
    # no attributes at all: kernel 3x3 from W, stride 1, no padding -> [2, 8, 7, 7]
    cost, (out,) = onnx_node_cost("Conv", [(2, 3, 9, 9), (8, 3, 3, 3), (8,)])
    assert out == torch.Size([2, 8, 7, 7])
    assert cost == aten_cost(nn.Conv2d(3, 8, 3), (2, 3, 9, 9))


def test_spec_defaults_apply_when_attributes_are_missing() -> None:
    softmax = ONNX_REGISTRY.lookup("onnx::Softmax")[1]
    resize = ONNX_REGISTRY.lookup("onnx::Resize")[1]
    bn = ONNX_REGISTRY.lookup("onnx::BatchNormalization")[1]
    topk = ONNX_REGISTRY.lookup("onnx::TopK")[1]
    assert softmax is not None and resize is not None and bn is not None and topk is not None
    x = torch.Size([1, 2, 3, 3])
    assert resize(x, None, torch.Size([4]), out=(torch.Size([1, 2, 6, 6]),)) == Cost(0, 0)  # mode "nearest"
    assert bn(x, *[torch.Size([2])] * 4, out=(x,)) == Cost(0, 4 * 1 * 2 * 3 * 3)  # per element of x: training_mode 0: 2 + affine 2
    # TopK's axis -1: k is the outputs' last dim, 3 of 8 -> ceil(log2(3 + 1)) = 2 per element
    assert topk(torch.Size([3, 8]), torch.Size([1]), out=(torch.Size([3, 3]), None)) == Cost(0, 3 * 8 * 2)
    assert softmax(torch.Size([4, 5]), out=(None,)) == Cost(0, 5 * 4 * 5)  # softmax's 5 per element; the input's shape stands in


# --- fates ---------------------------------------------------------------------------------------


def test_registry_names_are_domain_qualified() -> None:
    names = ONNX_REGISTRY.names()
    assert names
    for name in names:
        assert re.fullmatch(r"(onnx|[a-z][a-z0-9_.]*)::[A-Z][A-Za-z0-9]*", name), name


@pytest.mark.parametrize(
    "domain, op_type, key",
    [("", "Conv", "onnx::Conv"), ("ai.onnx", "Conv", "onnx::Conv"),
     ("com.microsoft", "FusedMatMul", "com.microsoft::FusedMatMul")],
    ids=["default_domain", "ai_onnx", "com_microsoft"],
)
def test_op_key(domain: str, op_type: str, key: str) -> None:
    assert op_key(domain, op_type) == key


@pytest.mark.parametrize(
    "name",
    ["onnx::LpPool", "onnx::Loop", "onnx::QuantizeLinear", "com.microsoft::FusedMatMul",
     "com.microsoft::MultiHeadAttention", "onnx::NoSuchOp", "custom::Conv"],
)
def test_unknown_and_uncounted_ops_are_unsupported(name: str) -> None:
    assert ONNX_REGISTRY.lookup(name) == ("unsupported", None, "")


def test_free_ops_carry_a_reason() -> None:
    free = {n: r for n, r in ONNX_REGISTRY.names().items() if r != "formula"}
    assert free and all(len(r) > 10 for r in free.values())


# (ONNX op, its aten equivalent): the fate on one route is the fate on the other
SAME_FATE = [
    ("Reshape", "aten::reshape"), ("Transpose", "aten::permute"), ("Shape", "aten::sym_size"),
    ("Trilu", "aten::tril"), ("Cast", "aten::_to_copy"), ("Gather", "aten::gather"), ("Concat", "aten::cat"),
    ("DepthToSpace", "aten::pixel_shuffle"), ("Compress", "aten::masked_select"), ("RandomNormal", "aten::randn"),
    ("NonZero", "aten::nonzero"), ("Relu", "aten::relu"), ("Where", "aten::where"), ("Erf", "aten::erf"),
    ("Softmax", "aten::_softmax"), ("CumSum", "aten::cumsum"), ("ScatterND", "aten::index_put"),
    ("ScatterElements", "aten::scatter"), ("TopK", "aten::topk"), ("ReduceMean", "aten::mean"),
]


@pytest.mark.parametrize("onnx_op, aten_op", SAME_FATE, ids=[c[0] for c in SAME_FATE])
def test_fates_mirror_the_aten_registry(onnx_op: str, aten_op: str) -> None:
    assert ONNX_REGISTRY.lookup(op_key("", onnx_op))[0] == DEFAULT_REGISTRY.lookup(aten_op)[0]


def formula(name: str) -> Callable[..., Cost]:
    fn = ONNX_REGISTRY.lookup(name)[1]
    assert fn is not None
    return fn


S = torch.Size
# (id, op, inputs, attributes): a shape the formula needs is None (unknown) -> UnknownShape
UNKNOWN = [
    ("conv_x", "onnx::Conv", [None, S([8, 3, 3, 3])], {}),
    ("conv_w", "onnx::Conv", [S([2, 3, 9, 9]), None], {}),
    ("gemm_b", "onnx::Gemm", [S([5, 12]), None], {}),
    ("matmul_a", "onnx::MatMul", [None, S([5, 2])], {}),
    ("einsum_operand", "onnx::Einsum", [S([2, 3]), None], {"equation": "ij,jk->ik"}),
    ("softmax_in_and_out", "onnx::Softmax", [None], {}),
    ("add_operand_and_out", "onnx::Add", [S([2, 3]), None], {}),
    ("maxpool_out", "onnx::MaxPool", [S([1, 3, 8, 8])], {"kernel_shape": [2, 2]}),
    ("resize_linear_out", "onnx::Resize", [S([1, 2, 3, 3])], {"mode": "linear"}),
    ("topk_k", "onnx::TopK", [S([3, 8]), S([1])], {}),
    ("one_hot_depth", "onnx::OneHot", [S([3]), S([]), S([2])], {}),
    ("lstm_r", "onnx::LSTM", [S([5, 2, 3]), S([1, 16, 3]), None], {}),
    ("attention_k", "onnx::Attention", [S([2, 3, 4, 5]), None, S([2, 3, 6, 7])], {}),
    ("layernorm_x", "onnx::LayerNormalization", [None, S([6])], {}),
    ("reduce_data", "onnx::ReduceSum", [None], {}),
    ("scatter_nd_updates", "onnx::ScatterND", [S([4, 5]), S([2, 1]), None], {"reduction": "add"}),
]


@pytest.mark.parametrize("name, inputs, attrs", [c[1:] for c in UNKNOWN], ids=[c[0] for c in UNKNOWN])
def test_a_needed_unknown_shape_raises_never_zero(name: str, inputs: list[torch.Size | None], attrs: dict) -> None:
    with pytest.raises(UnknownShape):
        formula(name)(*inputs, out=(None, None), **attrs)


# (id, op, inputs, out, attributes): forms no formula counts exactly -> UnsupportedForm
UNCOUNTED = [
    ("einsum_three_operands", "onnx::Einsum", [S([2, 3]), S([3, 4]), S([4, 5])], {"equation": "ij,jk,kl->il"}),
    ("einsum_diagonal", "onnx::Einsum", [S([3, 3])], {"equation": "ii->i"}),
    # k is summed but only the second operand has it: aten sums it out of that operand first
    ("einsum_presum", "onnx::Einsum", [S([3, 4]), S([4, 5])], {"equation": "ij,jk->i"}),
    ("einsum_summed_broadcast", "onnx::Einsum", [S([3, 4]), S([1, 5])], {"equation": "ij,jk->ik"}),
    ("resize_linear_rank2", "onnx::Resize", [S([3, 3])], {"mode": "linear"}),
    ("attention_3d_without_heads", "onnx::Attention", [S([2, 4, 20]), S([2, 6, 10]), S([2, 6, 14])], {}),
    ("pool_without_kernel_shape", "onnx::MaxPool", [S([1, 3, 8, 8])], {}),
]


@pytest.mark.parametrize("name, inputs, attrs", [c[1:] for c in UNCOUNTED], ids=[c[0] for c in UNCOUNTED])
def test_uncountable_forms_raise_never_zero(name: str, inputs: list[torch.Size], attrs: dict) -> None:
    with pytest.raises(UnsupportedForm):
        formula(name)(*inputs, out=(S([3, 3]),), **attrs)


def test_einsum_presum_is_really_not_one_contraction() -> None:
    """Why "ij,jk->i" is left uncounted: aten sums k out of the second operand (20 FLOPs) before a
    3 * 4 bmm, a count that depends on the decomposition's order rather than the equation."""
    report = fxcost.analyze(Fn(lambda x, m: torch.einsum("ij,jk->i", x, m), w(4, 5)), input_size=(3, 4))
    assert report.total().macs == 3 * 4  # the bmm after the pre-sum; one contraction would be 3 * 4 * 5


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_matmul_like_costs_scale_linearly_with_batch(batch: int) -> None:
    conv = formula("onnx::Conv")(S([batch, 3, 9, 9]), S([8, 3, 3, 3]), S([8]), out=(None,))
    matmul = formula("onnx::MatMul")(S([batch, 4, 5]), S([5, 6]), out=(None,))
    one_conv = formula("onnx::Conv")(S([1, 3, 9, 9]), S([8, 3, 3, 3]), S([8]), out=(None,))
    one_matmul = formula("onnx::MatMul")(S([1, 4, 5]), S([5, 6]), out=(None,))
    assert conv == Cost(batch * one_conv.macs, batch * one_conv.flops)
    assert matmul == Cost(batch * one_matmul.macs, batch * one_matmul.flops)


def test_import_needs_no_onnx() -> None:
    code = "import sys, fxcost, fxcost.onnx.formulas, fxcost.onnx.analyze; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
