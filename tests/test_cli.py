"""The command line: formats, files, sweeps, comparisons, and clear failures (exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fxcost.report
from fxcost.cli import main
from tests.conftest import ROOT

VGG_PAPER = str(ROOT / "examples/vgg.py") + ":vgg19_paper"
D2L = str(ROOT / "examples/vgg.py") + ":d2l_vgg11"
ALEX = str(ROOT / "examples/alexnet.py") + ":alexnet"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", VGG_PAPER, "--input", "1x3x224x224", "--width", "160")
    assert code == 0 and err == ""
    assert "features.0" in out and "143,667,240" in out and "16,542,184" in out
    assert "Estimated Total Size (MB)" in out


def test_json_is_report_to_dict(capsys: pytest.CaptureFixture[str]) -> None:
    import fxcost
    from examples.vgg import d2l_vgg11

    code, out, _ = run(capsys, "analyze", D2L, "--input", "1x3x224x224", "--format", "json")
    assert code == 0
    expected = fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224), name="d2l_vgg11").to_dict()
    assert json.loads(out) == expected
    # the JSON contract
    assert {"schema_version", "model", "convention", "inputs", "totals", "layers", "unsupported"} <= set(expected)
    assert {"params", "trainable_params", "weight_params", "bias_params", "buffers", "macs", "flops",
            "activation_elements", "activation_bytes"} <= set(expected["totals"])
    assert {"id", "name", "type", "output_shape", "params", "weight_params", "macs", "flops",
            "activation_elements"} <= set(expected["layers"][0])


def test_output_file_format_from_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for ext, check in [(".json", lambda t: json.loads(t)["schema_version"] == fxcost.report.SCHEMA_VERSION),
                       (".csv", lambda t: t.startswith("id,name,type")),
                       (".md", lambda t: "| id | layer |" in t)]:
        target = tmp_path / f"out{ext}"
        code, out, _ = run(capsys, "analyze", ALEX, "-i", "1x3x224x224", "-o", str(target))
        assert code == 0 and out == ""
        assert check(target.read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.json", "out.md"]  # no temp files left


def test_depth_and_group_by(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", D2L, "-i", "1x3x224x224", "--depth", "2", "-f", "csv")
    assert code == 0
    names = [line.split(",")[1] for line in out.splitlines()[1:]]
    assert names[:6] == ["x", "net.0", "net.1", "net.2", "net.3", "net.4"]
    code, out, _ = run(capsys, "analyze", D2L, "-i", "1x3x224x224", "--group-by", "type", "-f", "json")
    types = {r["type"]: r["params"] for r in json.loads(out)["layers"]}
    assert types["Conv2d"] == 9_220_480 and types["Linear"] == 119_586_826


def test_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", str(ROOT / "examples/vgg.py") + ":D2LVGG", "--arg", "arch=((3, 128), (3, 256))",
                       "-i", "1x3x28x28", "-i", "1x3x56x56", "-i", "1x3x84x84", "-f", "csv")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].startswith("input,params,macs")
    assert [r.split(",")[0] for r in rows[1:]] == ["1x3x28x28", "1x3x56x56", "1x3x84x84"]


def test_compare(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compare", D2L, ALEX, "-i", "1x3x224x224", "-f", "markdown")
    assert code == 0
    assert "| params | Conv2d | 9,220,480 | 3,747,200 | 2.46 |" in out
    assert "| params | Linear | 119,586,826 | 43,040,778 | 2.78 |" in out
    assert "| macs | Conv2d | 7,485,456,384 | 962,858,112 | 7.77 |" in out
    assert "| macs | Linear | 119,578,624 | 43,032,576 | 2.78 |" in out


def test_compare_one_model_two_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compare", ALEX, "-i", "2x3x224x224", "-i", "1x3x224x224", "-f", "csv")
    assert code == 0
    macs = next(line for line in out.splitlines() if line.startswith("macs,all,"))
    assert macs.endswith(",2.0")


def test_torchsummary_convention(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", D2L, "-i", "1x3x224x224", "--convention", "torchsummary", "-f", "markdown")
    assert code == 0
    for line in ["| Input size (MB) | 0.57 |", "| Forward/backward pass size (MB) | 125.37 |",
                 "| Params size (MB) | 491.36 |", "| Estimated Total Size (MB) | 617.30 |"]:
        assert line in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze", D2L, "-i", "1x3x28x28"], "layer 'net.4.4' (MaxPool2d) failed on input shape 1x512x1x1"),
        (["analyze", VGG_PAPER, "-i", "1x1x224x224"], "layer 'features.0' (Conv2d) failed on input shape 1x1x224x224"),
        (["analyze", VGG_PAPER, "-i", "1x3x112x112"], "layer 'classifier.0' (Linear)"),
        (["analyze", VGG_PAPER, "-i", "1x3xabc"], "malformed input shape '1x3xabc'"),
        (["analyze", VGG_PAPER, "-i", "1x3x224x224:float7"], "unknown dtype 'float7'"),
        (["analyze", VGG_PAPER], "no --input given"),
        (["analyze", "examples/nope.py:Net", "-i", "1x3"], "does not exist"),
        (["analyze", "no_such_package.models:Net", "-i", "1x3"], "cannot import module 'no_such_package.models'"),
        (["analyze", str(ROOT / "examples/vgg.py") + ":VGG99", "-i", "1x3"], "has no 'VGG99'"),
        (["analyze", str(ROOT / "examples/vgg.py"), "-i", "1x3"], "has no ':name'"),
        (["analyze", D2L, "--arg", "num_classes", "-i", "1x3"], "malformed --arg"),
        (["analyze", D2L, "--arg", "classes=3", "-i", "1x3"], "calling d2l_vgg11(classes=3) failed"),
        (["analyze", D2L, "-i", "1x3x224x224", "--convention", "fvcore9"], "unknown convention"),
        (["analyze", D2L, "-i", "1x3x224x224", "--depth", "0"], "argument --depth/-d: '0' is not a whole number from 1 to 100,000"),
        (["compare", D2L, "-i", "1x3x224x224"], "needs two --input sizes"),
        (["analyze", D2L, "-i", "1x3:int64=1;2"], "input '1x3:int64=1;2' gives 2 values for 3 elements"),
        (["analyze", D2L, "-i", "1x3:int64=1.5"], "malformed input value '1.5' for a int64 tensor"),
    ],
    ids=["too_small", "channels", "too_small_for_linear", "malformed", "dtype", "no_input", "no_file",
         "no_module", "no_name", "no_colon", "bad_arg", "wrong_arg", "convention", "depth", "compare_one",
         "values_count", "value_type"],
)
def test_bad_input_exits_2_with_a_message(capsys: pytest.CaptureFixture[str], argv: list[str], message: str, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    code, out, err = run(capsys, *argv, "-o", str(target))
    assert code == 2
    assert message in err
    assert "Traceback" not in err and out == ""
    assert err.startswith("fxcost: error: ") and "\n  try: " in err  # every failure says what to try
    assert list(tmp_path.iterdir()) == []  # no partial output file


def test_model_whose_forward_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "broken.py"
    spec.write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(4, 4)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x).view(3, 7)\n"
    )
    code, _, err = run(capsys, "analyze", f"{spec}:Net", "-i", "2x4")
    assert code == 2 and "view" in err and "2x4" in err and "Traceback" not in err
    code, _, err = run(capsys, "analyze", f"{spec}:Net", "-i", "2x4", "--debug")
    assert code == 2 and "Traceback" in err  # --debug shows it


def test_spec_that_does_not_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.py"
    spec.write_text("import torch\nraise ImportError('needs timm')\n")
    code, _, err = run(capsys, "analyze", f"{spec}:Net", "-i", "1x3")
    assert code == 2 and "importing" in err and "needs timm" in err and "Traceback" not in err


def test_strict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "cum.py"
    spec.write_text("import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return torch.linalg.qr(x)[0]\n")
    code, out, err = run(capsys, "analyze", f"{spec}:Net", "-i", "3x3", "-f", "markdown")
    assert code == 0 and "warning: unsupported op aten::linalg_qr" in out  # no formula for decompositions (yet)
    code, out, err = run(capsys, "analyze", f"{spec}:Net", "-i", "3x3", "--strict")
    assert code == 2 and "aten::linalg_qr" in err


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["analyze", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for needle in ["--input", "1x3x224x224", "--depth", "--convention", "examples:", "MACs"]:
        assert needle in out


def test_module_entry_point_runs() -> None:
    """As a user runs it: a separate process, exit code and streams."""
    ok = subprocess.run([sys.executable, "-m", "fxcost", "analyze", ALEX, "-i", "1x3x224x224", "-f", "json"],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["totals"]["params"] == 46_787_978  # 3,747,200 conv + 43,040,778 linear
    bad = subprocess.run([sys.executable, "-m", "fxcost", "analyze", ALEX, "-i", "1x3x2x2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "net.0" in bad.stderr


def test_latex_and_html_escape_what_they_would_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    # a model's names are data: TeX's specials and HTML's tags come out as text
    import html.parser

    import fxcost
    from fxcost.exporters import render

    report = fxcost.analyze(torch_linear(), input_size=(2, 4), name="my_net <b>100%</b> & $x^2$ #1 {a} ~ \\")
    tex = render(report, "latex")
    caption = next(line for line in tex.splitlines() if line.startswith("\\caption"))
    assert r"my\_net <b>100\%</b> \& \$x\textasciicircum{}2\$ \#1 \{a\} \textasciitilde{} \textbackslash{}" in caption
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 2 and "\\toprule" in tex and "\\bottomrule" in tex
    page = render(report, "html")
    assert "<b>" not in page and "&lt;b&gt;100%&lt;/b&gt; &amp; $x^2$" in page

    class Tags(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: object) -> None:
            self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag

    parser = Tags()
    parser.feed(page)
    assert parser.open == []  # every tag closed, in order


def torch_linear() -> object:
    from torch import nn

    return nn.Sequential(nn.Linear(4, 3))


def test_format_from_a_tex_or_html_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, first in (("t.tex", "\\begin{table}[ht]"), ("t.html", '<table class="fxcost">')):
        code, _, _ = run(capsys, "analyze", ALEX, "-i", "1x3x224x224", "-o", str(tmp_path / name))
        assert code == 0 and (tmp_path / name).read_text().splitlines()[0] == first


def test_a_notebook_shows_a_report_as_its_table() -> None:
    # Jupyter calls _repr_html_ (rich display) or _repr_markdown_: the same table as -f html / -f markdown
    import fxcost
    from fxcost.exporters import render

    report = fxcost.analyze(torch_linear(), input_size=(2, 4), name="tiny")
    assert report._repr_html_() == render(report, "html")
    assert report._repr_markdown_() == render(report, "markdown")
    assert "<td class=num>15</td>" in report._repr_html_()  # by hand: 4 x 3 weights + 3 biases


def test_the_parsers_optimizers_are_the_steps() -> None:
    # the parser names them without importing torch; the step is what allocates them
    from fxcost.cli import options
    from fxcost.pytorch import step

    assert options.OPTIMIZERS == tuple(step.OPTIMIZERS) and options.AMP_DTYPES == tuple(step.AMP_DTYPES)
    assert options.DEFAULT_OPTIMIZER == step.DEFAULT_OPTIMIZER
