"""``fxcost analyze model.onnx`` on files torch did not write: built here with onnx.helper, so
the expected figures come from the graph's own arithmetic, not from fxcost's PyTorch route."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fxcost.cli import main  # noqa: E402
from fxcost.errors import InputSpecError, OnnxFileError, UnsupportedOpError  # noqa: E402
from fxcost.onnx.analyze import analyze_onnx  # noqa: E402


def _init(name: str, *shape: int, dtype: type = np.float32) -> TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def small_cnn(batch: int | str = "N", custom: bool = False) -> onnx.ModelProto:
    """x[N, 3, 16, 16] -> Conv 8x3x3x3 pad 1 -> BatchNorm -> Relu -> MaxPool 2 -> Reshape [N, 512]
    -> Gemm (transB) 10 -> Softmax, and optionally an op of a made-up domain."""
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax"),
    ]
    if custom:
        nodes.append(helper.make_node("Mystery", ["y"], ["z"], name="mystery", domain="my.domain"))
    inits = [
        _init("conv.weight", 8, 3, 3, 3), _init("conv.bias", 8),
        _init("bn.weight", 8), _init("bn.bias", 8), _init("bn.running_mean", 8), _init("bn.running_var", 8),
        numpy_helper.from_array(np.array([-1, 8 * 8 * 8], dtype=np.int64), "flat_shape"),
        _init("fc.weight", 10, 512), _init("fc.bias", 10),
    ]
    out = "z" if custom else "y"
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, 10])], inits,
    )
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("my.domain", 1)] if custom else [])
    return helper.make_model(graph, opset_imports=opsets, producer_name="onnx.helper")


@pytest.fixture
def cnn_file(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), path)
    return path


# Arithmetic from the graph above, at batch 2
CONV_PARAMS = 8 * 3 * 3 * 3 + 8  # 224
BN_PARAMS = 8 + 8  # scale and bias; the running mean and variance are buffers
FC_PARAMS = 10 * 512 + 10  # 5,130
CONV_MACS = 2 * 16 * 16 * 8 * (3 * 3 * 3)  # N * Ho * Wo * Co * (Ci * Kh * Kw) = 110,592
FC_MACS = 2 * 512 * 10  # 10,240


def test_a_file_onnx_helper_wrote_counts_from_its_own_arithmetic(cnn_file: Path) -> None:
    r = analyze_onnx(cnn_file, [(2, 3, 16, 16)])
    t = r.total()
    assert t.params == CONV_PARAMS + BN_PARAMS + FC_PARAMS == 5_370
    assert t.buffers == 8 + 8
    assert t.macs == CONV_MACS + FC_MACS == 120_832
    by_name = {row.name: row for row in r.layers}
    assert by_name["conv"].macs == CONV_MACS
    assert by_name["conv"].flops == 2 * CONV_MACS + 2 * 8 * 16 * 16  # + the bias add per output
    assert by_name["fc"].flops == 2 * FC_MACS + 2 * 10
    assert by_name["pool"].flops == 2 * 8 * 8 * 8 * (2 * 2)  # every window element compared once
    assert by_name["softmax"].flops == 5 * 2 * 10  # max, subtract, exp, sum, divide per element
    assert by_name["conv"].kernel_size == (3, 3)
    assert by_name["conv"].type == "Conv" and by_name["conv"].kind == "function"
    assert by_name["flatten"].output_shape == (2, 512)
    # the Reshape's int64 shape is a constant: neither a parameter nor a buffer
    assert r.trace.onnx.constants == 1 and r.trace.method == "onnx"
    assert r.outputs[0].shape == (2, 10)
    # activations: the input, then every node's output except the Reshape (a view in PyTorch)
    per_sample = 3 * 16 * 16 + 8 * 16 * 16 * 3 + 8 * 8 * 8 + 10 + 10
    assert t.activation_elements == 2 * per_sample
    assert sum(row.macs for row in r.layers) == t.macs
    assert not r.unsupported


def test_dynamic_batch_needs_an_input_and_scales_linearly(cnn_file: Path) -> None:
    with pytest.raises(OnnxFileError, match=r"input 'x' .* dynamic dimensions \[Nx3x16x16\]"):
        analyze_onnx(cnn_file)
    one, eight = (analyze_onnx(cnn_file, [(b, 3, 16, 16)]).total() for b in (1, 8))
    assert eight.macs == 8 * one.macs and eight.params == one.params
    with pytest.raises(InputSpecError, match="does not fit input 'x'"):
        analyze_onnx(cnn_file, [(2, 4, 16, 16)])
    with pytest.raises(InputSpecError, match="has 1 input"):
        analyze_onnx(cnn_file, [(2, 3, 16, 16), (2, 3)])


def test_an_op_without_a_formula_is_listed_never_zero(tmp_path: Path) -> None:
    path = tmp_path / "custom.onnx"
    onnx.save(small_cnn(batch=2, custom=True), path)
    r = analyze_onnx(path)
    assert [(u.op, u.where) for u in r.unsupported] == [("my.domain::Mystery", "mystery")]
    with pytest.raises(UnsupportedOpError, match="my.domain::Mystery"):
        analyze_onnx(path, strict=True)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_is_a_clear_error_with_exit_2_and_no_output(tmp_path: Path, cnn_file: Path, damage: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = cnn_file.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x08\xff\xff\xff not onnx at all", "empty": b""}[damage])
    with pytest.raises(OnnxFileError, match="truncated or"):
        analyze_onnx(bad, [(1, 3, 16, 16)])
    out = tmp_path / "out.json"
    assert main(["analyze", str(bad), "--input", "1x3x16x16", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fxcost: error:" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_unpinned_dynamic_dims_exit_2(cnn_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(cnn_file)]) == 2
    err = capsys.readouterr().err
    assert "dynamic dimensions [Nx3x16x16]" in err and "--input x=1x3x16x16" in err


def test_cli_json_of_an_onnx_file(cnn_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cnn.json"
    assert main(["analyze", str(cnn_file), "--input", "2x3x16x16", "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["totals"]["params"] == CONV_PARAMS + BN_PARAMS + FC_PARAMS and d["totals"]["macs"] == CONV_MACS + FC_MACS
    assert d["trace"]["method"] == "onnx" and d["mode"] == "onnx"


def test_cli_refuses_torch_only_options_for_an_onnx_file(cnn_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(cnn_file), "--input", "1x3x16x16", "--real"]) == 2
    assert "--real do(es) not apply to an ONNX file" in capsys.readouterr().err


def test_torchsummary_convention_counts_leaf_outputs_per_sample(cnn_file: Path) -> None:
    r = analyze_onnx(cnn_file, [(4, 3, 16, 16)], convention="torchsummary")
    # every node's output per sample (the Reshape too: torchsummary counts a Flatten), input apart
    per_sample = 8 * 16 * 16 * 3 + 8 * 8 * 8 + 512 + 10 + 10
    assert r.total().activation_elements == per_sample


# --- files other tools write: odd but valid ------------------------------------------------


def _save(tmp_path: Path, name: str, nodes: list, inputs: list, outputs: list, inits: list = ()) -> Path:  # type: ignore[assignment, type-arg]
    path = tmp_path / f"{name}.onnx"
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_an_input_without_a_shape_is_pinned_not_refused(tmp_path: Path) -> None:
    """onnx's checker refuses a graph input without a shape; runtimes do not, nor does fxcost."""
    path = _save(tmp_path, "noshape", [helper.make_node("Relu", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [helper.make_empty_tensor_value_info("y")])
    with pytest.raises(OnnxFileError, match=r"input 'x' .* has no shape"):
        analyze_onnx(path)
    assert analyze_onnx(path, [(2, 5)]).total().flops == 2 * 5  # one per element


def test_inputs_named_like_legacy_exports_can_be_pinned_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _save(tmp_path, "legacy", [helper.make_node("Relu", ["input.1"], ["y"])],
                 [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    assert main(["analyze", str(path)]) == 2
    assert "--input input.1=1x3" in capsys.readouterr().err  # the hint is one the parser takes
    assert main(["analyze", str(path), "--input", "input.1=4x3", "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["flops"] == 4 * 3


def test_a_scalar_input_keeps_its_rank(tmp_path: Path) -> None:
    path = _save(tmp_path, "scalar", [helper.make_node("Relu", ["s"], ["y"])],
                 [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    assert analyze_onnx(path).total().flops == 1
    with pytest.raises(InputSpecError, match="does not fit input 's'"):
        analyze_onnx(path, [(1,)])


def test_a_sequence_input_is_refused_with_a_reason(tmp_path: Path) -> None:
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2, 3])
    path = _save(tmp_path, "seq", [helper.make_node("SequenceAt", ["s", "i"], ["y"])], [seq],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                 [numpy_helper.from_array(np.array(0, dtype=np.int64), "i")])
    with pytest.raises(OnnxFileError, match="'s' .* is a sequence_type value, not a tensor"):
        analyze_onnx(path)


def test_int8_weights_of_a_quantized_conv_are_parameters(tmp_path: Path) -> None:
    """QLinearConv's weight is int8: still 16 x 4 x 3 x 3 parameters, not a constant."""
    scalars = [numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in (
        ("xs", 0.1, np.float32), ("xz", 0, np.uint8), ("ws", 0.1, np.float32), ("wz", 0, np.int8),
        ("ys", 0.1, np.float32), ("yz", 0, np.uint8))]
    w = numpy_helper.from_array(np.ones((16, 4, 3, 3), dtype=np.int8), "w")
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    path = _save(tmp_path, "qconv", [node], [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 16, 8, 8])], [*scalars, w])
    t = analyze_onnx(path).total()
    assert t.params == 16 * 4 * 3 * 3 and t.param_bytes == 16 * 4 * 3 * 3  # one byte each
    assert t.macs == 8 * 8 * 16 * 4 * 3 * 3


def test_weights_in_constant_nodes_count_in_files_without_kinds(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((5, 3), dtype=np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["w"], value=w), helper.make_node("MatMul", ["x", "w"], ["y"])]
    path = _save(tmp_path, "constw", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    r = analyze_onnx(path)
    assert r.total().params == 5 * 3 and r.total().macs == 2 * 5 * 3
    assert not r.trace.onnx.structure_only  # no initializers is not the same as written structure-only


def test_control_flow_is_unsupported_with_its_reason(tmp_path: Path) -> None:
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "b", [],
                               [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    path = _save(tmp_path, "if", [node], [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    r = analyze_onnx(path)
    assert [(u.op, u.where) for u in r.unsupported] == [("onnx::If", "If_0")]
    assert r.layers[-1].ops[0].reason == "control flow: its subgraphs are not counted"


def test_an_element_type_without_a_torch_dtype_is_sized_and_said(tmp_path: Path) -> None:
    w = helper.make_tensor("w", TensorProto.INT4, [4, 8], np.zeros(32, dtype=np.int8).tolist())
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"]), helper.make_node("MatMul", ["x", "wf"], ["y"])]
    path = _save(tmp_path, "int4", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
                 [w, numpy_helper.from_array(np.array(0.5, dtype=np.float32), "s")])
    r = analyze_onnx(path)
    assert r.total().params == 4 * 8  # a dequantized weight is a parameter whatever its type
    assert list(r.trace.notes) == ["ONNX element type INT4 has no PyTorch dtype: its tensors are counted as 1 byte per "
                                "element (sub-byte types are smaller, strings have no fixed size)"]
    assert r.total().macs == 2 * 4 * 8


def test_shape_arithmetic_is_folded_so_a_computed_bias_counts(tmp_path: Path) -> None:
    # torch.onnx gives a bias-free conv a zero bias computed in the graph, as here:
    # Expand(0, Expand(Shape(W)[:1], [1])). onnx's data propagation does not follow Expand, so only
    # fxcost's own folding tells inference the bias's shape; without it the Conv would be "not
    # counted" and the Shape's output would pass for an activation.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), dtype=np.float32), "w")
    nodes = [
        helper.make_node("Shape", ["w"], ["s"], start=0, end=1),
        helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.ones((1,), dtype=np.int64))),
        helper.make_node("Expand", ["s", "one"], ["n"]),
        helper.make_node("Constant", [], ["z"], value=numpy_helper.from_array(np.zeros((1,), dtype=np.float32))),
        helper.make_node("Expand", ["z", "n"], ["b"]),
        helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3]),
    ]
    path = tmp_path / "bias.onnx"
    import onnx

    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 18)]),
              str(path))
    r = analyze_onnx(path)
    assert not r.unsupported
    t = r.total()
    assert t.macs == 1 * 6 * 6 * 4 * (3 * 3 * 3)  # 3,888: every output position, 3x3x3 taps, 4 channels
    assert t.flops == 2 * t.macs + 4 * 6 * 6  # + the bias add, one per output element
    assert t.activation_elements == 3 * 8 * 8 + 4 * 6 * 6  # the input and the conv's output; Shape, Expand alias
    assert [o.fate for row in r.layers for o in row.ops if o.op == "onnx::Conv"] == ["formula"]
