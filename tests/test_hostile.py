"""Hostile input does no harm: files fxcost must not read or write, names that are data, sizes
checked before anything is allocated, and every way a run can end badly ending in exit 2 (or 130,
143 for signals) with one named cause and no file left behind."""

from __future__ import annotations

import json
import math
import os
import random
import stat
import subprocess
import sys
import tracemalloc
import xml.dom.minidom
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import fxcost
from fxcost.cli import main
from fxcost.errors import InputSpecError, OnnxFileError, OutputError, printable
from tests.conftest import ROOT

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
TensorProto, numpy_helper, oh = onnx.TensorProto, onnx.numpy_helper, onnx.helper

MODELS = '''
import sys, time, torch
from torch import nn

class Lin(nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.l = nn.Linear(n, 4)
    def forward(self, x):
        return self.l(x)

class Exits(nn.Module):
    def forward(self, x):
        sys.exit(0)

class Generates(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)
    def forward(self, x):
        yield self.l(x)

class ReturnsAGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)
    def forward(self, x):
        return (self.l(x) for _ in range(2))

class Prints(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)
    def forward(self, x):
        print("hello from forward")
        return self.l(x)

def deep():
    m = nn.Linear(4, 4)
    for _ in range(2000):
        m = nn.Sequential(m)
    return m

def factory_exits():
    sys.exit(0)

ESC = "\\x1b]0;pwned\\x07\\x1b[31mred\\x1b[0m<b>&\\u202e"

class Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module(ESC, nn.Linear(4, 4))
    def forward(self, x):
        return getattr(self, ESC)(x)
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_cause(err: str) -> str:
    """The error line (and its ``try:``): one named cause, no traceback."""
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("fxcost: error: "), err
    return lines[0]


# --- the gate fails closed ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["analyze", "review"])
@pytest.mark.parametrize(("name", "cause"), [
    ("Exits", "called sys.exit(0)"),
    ("factory_exits", "called sys.exit(0)"),
    ("Generates", "forward is a generator"),
    ("ReturnsAGenerator", "forward is a generator"),
    ("deep", "recursion limit"),
])
def test_anything_but_a_completed_analysis_is_exit_2(capsys: pytest.CaptureFixture[str], models: Path, command: str,
                                                     name: str, cause: str) -> None:
    budget = ["--budget", "macs=1G"] if command == "review" else []
    code, out, err = run(capsys, command, f"{models}:{name}", "--input", "2x4", *budget)
    assert code == 2 and out == ""
    one_cause(err)
    assert cause in err  # after "no tracer could analyze ...", each tracer's reason


def test_a_generator_forward_is_refused_by_the_library_too(models: Path) -> None:
    from fxcost.loading import load_model

    model, _ = load_model(f"{models}:Generates")
    with pytest.raises(InputSpecError, match="generator"):
        fxcost.analyze(model, input_size=(2, 4))


@pytest.mark.parametrize(("shape", "cause"), [
    ("1000000000x1000000000", "fxcost takes inputs up to"),  # 10^18 elements
    ("1000000000x1000000000x4", "fxcost takes inputs up to"),
    ("2x0", "positive"),
])
def test_an_impossible_input_is_exit_2(capsys: pytest.CaptureFixture[str], models: Path, shape: str, cause: str) -> None:
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", shape)
    assert code == 2 and cause in one_cause(err)


def test_an_impossible_input_size_is_refused_by_the_library(models: Path) -> None:
    with pytest.raises(InputSpecError, match="fxcost takes inputs up to"):
        fxcost.analyze(nn.Linear(4, 4), input_size=(10**9, 10**9, 4))


@pytest.mark.parametrize(("value", "cause"), [
    ("[" * 20_000, "not a Python literal"),
    ("-" * 100_000 + "1", "too deeply nested"),
    ("9" * 5_000, "not a Python literal"),  # past Python's 4,300-digit limit for int()
    ("[1, 2", "not a Python literal"),
])
def test_an_arg_the_literal_parser_cannot_take_is_exit_2(capsys: pytest.CaptureFixture[str], models: Path, value: str,
                                                         cause: str) -> None:
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--arg", f"n={value}", "--input", "2x4")
    line = one_cause(err)
    assert code == 2 and cause in line and len(line) < 300  # the value is shortened, not echoed whole


def test_a_bare_word_arg_is_still_a_string() -> None:
    from fxcost.loading.specs import parse_kv

    assert parse_kv(["act=relu", "n=3", "shape=(1, 2)"]) == {"act": "relu", "n": 3, "shape": (1, 2)}


def test_stdout_on_a_full_disk_is_exit_2(models: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "fxcost", "analyze", f"{models}:Lin", "--input", "2x4"],
                              stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "cannot write to standard output: No space left on device" in one_cause(done.stderr)


@pytest.mark.parametrize(("content", "cause"), [
    (b"\xff\xfe{not utf-8", "not JSON in UTF-8"),
    (b"[1, 2, 3]", "not a single fxcost report"),
    (b'{"schema_version": 2, "totals": "many"}', "not a single fxcost report"),
    (b'{"schema_version": 2, "totals": {"params": -1}}', "no integer totals"),
    (b"[" * 100_000, "not JSON"),
])
def test_a_baseline_that_is_not_a_report_is_exit_2(capsys: pytest.CaptureFixture[str], models: Path, tmp_path: Path,
                                                   content: bytes, cause: str) -> None:
    baseline = tmp_path / "approved.json"
    baseline.write_bytes(content)
    code, _, err = run(capsys, "review", f"{models}:Lin", "--input", "2x4", "--baseline", str(baseline))
    assert code == 2 and cause in one_cause(err)


@pytest.mark.parametrize(("content", "cause"), [
    (b"[tool.fxcost]\nbudgets = {macs = '\xff\xfe'}\n", "UTF-8"),
    (b"tool = 3\n", "must be a table"),
    (b"[tool]\nfxcost = [1, 2]\n", "must be a table"),
    (b"[tool.fxcost]\nbudgets = 5\n", "must be a table"),
    (b"[tool.fxcost\n", "TOML"),
])
def test_a_pyproject_that_is_not_utf8_or_of_the_wrong_shape_is_exit_2(capsys: pytest.CaptureFixture[str], models: Path,
                                                                      tmp_path: Path, content: bytes, cause: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_bytes(content)
    code, _, err = run(capsys, "review", f"{models}:Lin", "--input", "2x4", "--pyproject", str(pyproject))
    line = one_cause(err)
    assert code == 2 and (cause in line or cause in err), err


def test_a_forward_that_prints_does_not_corrupt_json_on_stdout(models: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fxcost", "analyze", f"{models}:Prints", "--input", "2x4", "-f", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["macs"] == 2 * 4 * 4
    assert "hello from forward" in done.stderr


# a signal at any moment: tests/test_say_only_what_helps.py (synchronized on what the process prints)


def test_an_interrupted_onnx_save_leaves_no_staging_file(tmp_path: Path) -> None:
    from fxcost.onnx.export import _save_atomic

    class StopsHalfway:
        def save(self, path: Path, **_: Any) -> None:
            Path(path).write_bytes(b"half a model")
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM raised as Terminated: both BaseExceptions

    target = tmp_path / "model.onnx"
    with pytest.raises(KeyboardInterrupt):
        _save_atomic(StopsHalfway(), target, tmp_path, structure_only=False, external=False)
    assert os.listdir(tmp_path) == []


def test_real_does_not_consume_the_callers_rng() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))  # built first: its init draws too
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(0)
    random.seed(0)
    fxcost.analyze(model, input_size=(2, 4), real=True)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


# --- -o never destroys anything ----------------------------------------------------------------

def test_an_output_that_is_an_input_is_refused(capsys: pytest.CaptureFixture[str], models: Path, tmp_path: Path) -> None:
    before = models.read_bytes()
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(models))
    assert code == 2 and "is an input of this run" in one_cause(err) and models.read_bytes() == before
    baseline = tmp_path / "approved.json"
    assert run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-f", "json", "-o", str(baseline))[0] == 0
    approved = baseline.read_bytes()
    code, _, err = run(capsys, "review", f"{models}:Lin", "--input", "2x4", "--baseline", str(baseline), "-o", str(baseline))
    assert code == 2 and "is an input of this run" in one_cause(err) and baseline.read_bytes() == approved


def test_an_output_that_is_the_input_onnx_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model([oh.make_node("Relu", ["x"], ["y"])]), path)
    before = path.read_bytes()
    for command in (["analyze", str(path)], ["analyze", str(path), "-f", "json"]):
        code, _, err = run(capsys, *command, "-o", str(path))
        assert code == 2 and "is an input of this run" in one_cause(err) and path.read_bytes() == before


def test_a_symlink_fifo_or_folder_at_o_is_refused_and_left_as_it_is(capsys: pytest.CaptureFixture[str], models: Path,
                                                                    tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(link))
    assert code == 2 and "symbolic link" in one_cause(err)
    assert link.is_symlink() and target.read_text() == "keep me"
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(fifo))
    assert code == 2 and "not a regular file" in one_cause(err) and stat.S_ISFIFO(fifo.lstat().st_mode)
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(tmp_path))
    assert code == 2 and "is a folder" in one_cause(err)


def test_device_nodes_are_refused_before_any_work() -> None:
    # checked on the path alone (no run writes to it, so a regression cannot replace /dev/null)
    with pytest.raises(OutputError, match="not a regular file"):
        fxcost.io.check_output("/dev/null")


def test_an_existing_output_keeps_its_mode(capsys: pytest.CaptureFixture[str], models: Path, tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    out.write_text("old")
    out.chmod(0o640)
    assert run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(out))[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and json.loads(out.read_text())["totals"]["params"] == 20


def test_an_unwritable_folder_or_overlong_name_is_exit_2(capsys: pytest.CaptureFixture[str], models: Path,
                                                         tmp_path: Path) -> None:
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(tmp_path / ("a" * 300 + ".json")))
    assert code == 2 and "longer than this file system allows" in one_cause(err)
    # /proc takes no new files, even from root (a chmod'ed folder would not stop root)
    code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", "/proc/fxcost-test.json")
    assert code == 2 and "cannot write '/proc/fxcost-test.json'" in one_cause(err)
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = run(capsys, "analyze", f"{models}:Lin", "--input", "2x4", "-o", str(locked / "x.json"))
        assert code == 2 and "not writable" in one_cause(err)
    assert sorted(p.name for p in tmp_path.iterdir()) in (["models.py"], ["locked", "models.py"])


# --- names are data ----------------------------------------------------------------------------

def test_printable_escapes_controls_and_bidi_overrides() -> None:
    assert printable("a\x1b[31mb\u202ec\x07") == "a\\x1b[31mb\\u202ec\\x07"
    assert printable("two\nlines") == "two\nlines" and printable("two\nlines", lines=False) == "two\\nlines"


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_escape_sequences_in_names_never_reach_the_terminal(capsys: pytest.CaptureFixture[str], models: Path,
                                                            fmt: str) -> None:
    code, out, _ = run(capsys, "analyze", f"{models}:Named", "--input", "2x4", "-f", fmt)
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "red" in out  # the name is shown, escaped
    if fmt == "json":
        names = {r["name"] for r in json.loads(out)["layers"]}
        assert "\x1b]0;pwned\x07\x1b[31mred\x1b[0m<b>&\u202e" in names  # JSON keeps the real name, escaped by JSON


def test_names_do_not_break_the_svg_or_the_html(capsys: pytest.CaptureFixture[str], models: Path, tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    from fxcost.exporters.diagram import dot_available

    if not dot_available():
        pytest.skip("Graphviz's dot is not installed")
    svg, page = tmp_path / "m.svg", tmp_path / "m.html"
    assert run(capsys, "diagram", f"{models}:Named", "--input", "2x4", "-o", str(svg))[0] == 0
    xml.dom.minidom.parse(str(svg))  # well-formed XML: no raw control characters
    assert run(capsys, "report", f"{models}:Named", "--input", "2x4", "-o", str(page))[0] == 0
    text = page.read_text()
    assert "\x1b" not in text and "<b>&" not in text and "&lt;b&gt;&amp;" in text


def test_an_error_naming_a_hostile_module_prints_it_escaped(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    code, _, err = run(capsys, "analyze", f"{models}:Named", "--input", "2x5")  # 5 features into Linear(4, 4)
    assert code == 2 and "\x1b" not in err and "\\x1b" in err


def test_an_onnx_node_name_with_escapes_is_shown_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model([oh.make_node("Relu", ["x"], ["y"], name="\x1b[2Jrelu")]), path)
    code, out, _ = run(capsys, "analyze", str(path))
    assert code == 0 and "\x1b" not in out and "\\x1b[2Jrelu" in out


# --- ONNX files --------------------------------------------------------------------------------

def _model(nodes: list[Any], inits: tuple[Any, ...] = (), x: Any = None) -> Any:
    x = x if x is not None else oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return oh.make_model(oh.make_graph(nodes, "g", [x], [y], initializer=list(inits)), opset_imports=[oh.make_opsetid("", 17)])


def _external(t: Any, location: str) -> Any:
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    entry = t.external_data.add()
    entry.key, entry.value = "location", location
    return t


def _reshape_reading(location: str) -> Any:
    shape = _external(numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "shape"), location)
    return _model([oh.make_node("Reshape", ["x", "shape"], ["y"])], (shape,))


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname", "link.bin"])
def test_external_data_outside_the_files_folder_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "outside.bin").write_bytes(np.array([4, 4], dtype=np.int64).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(tmp_path / "outside.bin")  # a link leaving the folder
    path = folder / "m.onnx"
    path.write_bytes(_reshape_reading(location).SerializeToString())
    with pytest.raises(OnnxFileError, match="outside the ONNX file's folder"):
        fxcost.analyze_onnx(path)


def test_external_data_is_read_beside_the_file_whatever_the_current_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "shape.bin").write_bytes(np.array([4, 4], dtype=np.int64).tobytes())
    path = folder / "m.onnx"
    path.write_bytes(_reshape_reading("shape.bin").SerializeToString())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shape.bin").write_bytes(np.array([16, 1], dtype=np.int64).tobytes())  # a decoy in the cwd
    monkeypatch.chdir(elsewhere)
    report = fxcost.analyze_onnx(path)
    assert [list(o.shape) for o in report.outputs] == [[4, 4]]


def test_weight_bytes_are_never_read(tmp_path: Path) -> None:
    # the weight's data file does not exist: its size comes from its dims alone
    w = _external(numpy_helper.from_array(np.ones((8, 4), dtype=np.float32), "w"), "missing.data")
    path = tmp_path / "m.onnx"
    path.write_bytes(_model([oh.make_node("MatMul", ["x", "w"], ["y"])], (w,)).SerializeToString())
    report = fxcost.analyze_onnx(path)
    assert report.total().params == 32 and report.total().macs == 2 * 8 * 4


@pytest.mark.parametrize("make", ["ConstantOfShape", "Range", "Expand"])
def test_a_huge_constant_nobody_reads_is_not_materialized(tmp_path: Path, make: str) -> None:
    ints = {"ConstantOfShape": [("big", [100_000, 100_000])], "Range": [("s", 0), ("l", 10**10), ("d", 1)],
            "Expand": [("one", [1]), ("big", [100_000, 100_000])]}[make]
    inits = tuple(numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in ints)
    node = oh.make_node(make, [n for n, _ in ints], ["z"])
    path = tmp_path / "m.onnx"
    onnx.save(_model([node, oh.make_node("Relu", ["x"], ["y"])], inits), path)
    tracemalloc.start()  # numpy reports its allocations to tracemalloc
    try:
        report = fxcost.analyze_onnx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MiB traced"  # 10^10 int64 would be 80 GB
    # its shape still comes from the metadata (ONNX shape inference), without the values
    assert any(math.prod(r.output_shape) == 10**10 for r in report.layers)


def test_a_negative_dimension_is_refused(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((8, 4), dtype=np.float32), "w")
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [-3, 8])
    path = tmp_path / "m.onnx"
    onnx.save(_model([oh.make_node("MatMul", ["x", "w"], ["y"])], (w,), x=x), path)
    with pytest.raises(OnnxFileError, match="never negative"):
        fxcost.analyze_onnx(path)


def test_a_node_that_redefines_a_graph_input_is_refused(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((8, 4), dtype=np.float32), "w")
    path = tmp_path / "m.onnx"
    onnx.save(_model([oh.make_node("Relu", ["x"], ["x"]), oh.make_node("MatMul", ["x", "w"], ["y"])], (w,)), path)
    with pytest.raises(OnnxFileError, match="redefines 'x'"):
        fxcost.analyze_onnx(path)


# --- hf: configs are data ----------------------------------------------------------------------

@pytest.mark.parametrize("architecture", ["AutoTokenizer", "logging", "__class__", "set_seed", "GPT2Config", "os.system"])
def test_an_hf_config_names_only_model_classes(tmp_path: Path, architecture: str) -> None:
    transformers = pytest.importorskip("transformers")
    from fxcost.errors import SpecError
    from fxcost.loading import load_model

    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, architectures=[architecture])
    config.save_pretrained(tmp_path)
    with pytest.raises(SpecError, match="no model class"):
        load_model(f"hf:{tmp_path / 'config.json'}")
