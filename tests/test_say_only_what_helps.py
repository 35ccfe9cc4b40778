"""Say only what helps (issue 25): no alarming lines under exact results, messages in the user's
terms, hints that never blame a correct input, and the last hostile inputs handled.

References outside fxcost: FlopCounterMode over a real forward, the process's exit code and
streams as a user's shell sees them, a hook's own record of its calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fxcost
from examples.zoo import HF_ZOO, ZOO
from fxcost.cli import main
from fxcost.exporters import render

ROOT = Path(__file__).resolve().parents[1]

MODELS = '''
import sys, time, warnings
import torch
import torch.nn.functional as F
from torch import nn


class SamePad(nn.Conv2d):
    """timm's Conv2dSame: the padding depends on the input's size, an `if` torch.fx cannot trace."""
    def forward(self, x):
        ih = x.size()[-2]
        pad = max((-(ih // -self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - ih, 0)
        if pad > 0:
            x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2])
        return super().forward(x)


class WithSamePad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = SamePad(3, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class Patch(nn.Module):
    """timm's PatchEmbed: a size check whose message torch.fx formats from a Proxy."""
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 4, 4)

    def forward(self, x):
        B, C, H, W = x.shape
        torch._assert(H == 32, f"Input height ({H}) doesn't match model (32).")
        return self.proj(x).flatten(2)


@torch.fx.wrap
def window_and_shift(size, window):
    """torchvision's swin3d helper: it changes the list it is given in place."""
    for i in range(2):
        if size[i] <= window[i]:
            window[i] = size[i]
    return window


class Mutates(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.window = [4, 16]

    def forward(self, x):
        window = window_and_shift([x.shape[0], x.shape[1]], list(self.window))
        return self.fc(x) * window[1]


class MakesItsOwn(nn.Module):
    """A tensor the model makes with a size of its own, into a layer that expects another."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.zeros(x.shape[0], 5, device=x.device))


class Warns(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        warnings.warn("the model's own deprecation", DeprecationWarning)
        return self.fc(x)


class Sleeps(nn.Module):
    def forward(self, x):
        print("fxcost-test: in forward", file=sys.stderr, flush=True)
        time.sleep(60)
        return x
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def _load(models: Path, name: str) -> Any:
    from fxcost.loading.specs import import_file

    return getattr(import_file(models), name)()


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fxcost", *argv], capture_output=True, text=True, cwd=cwd, timeout=300)


# --- quiet by default --------------------------------------------------------------------------------

ALARMING = ("failed", "error", "traceback")


@pytest.mark.parametrize("entry", [*ZOO[::3], *HF_ZOO], ids=lambda e: e.name)
def test_an_exact_analysis_says_nothing_alarming(entry: Any) -> None:
    if entry in HF_ZOO:
        pytest.importorskip("transformers")
    args, kwargs = entry.inputs()
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        report = fxcost.analyze(entry.build(), example_inputs=args, example_kwargs=kwargs)
    assert not report.unsupported
    table = render(report, "table", width=200)
    assert not [ln for ln in table.splitlines() if any(w in ln.lower() for w in ALARMING)]
    assert leaked == []  # nothing reaches the caller's warnings: they are the report's


def test_the_tried_routes_are_for_verbose(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # timm's Conv2dSame, counted op by op inside a traced model: exact, and said only with --verbose
    model = _load(models, "WithSamePad")
    x = torch.randn(1, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x)
    report = fxcost.analyze(model, input_size=(1, 3, 32, 32))
    assert 2 * report.total().macs == counter.get_total_flops()
    assert main(["analyze", f"{models}:WithSamePad", "--input", "1x3x32x32"]) == 0
    quiet = capsys.readouterr()
    assert "Op by op" not in quiet.out and "TraceError" not in quiet.out and quiet.err == ""
    assert main(["analyze", f"{models}:WithSamePad", "--input", "1x3x32x32", "--verbose", "--width", "300"]) == 0
    assert ("Op by op: conv (SamePad):        TraceError: symbolically traced variables cannot be used as inputs to control "
            "flow; its ops are counted") in capsys.readouterr().out


def test_the_verbose_section_of_a_transformers_model(capsys: pytest.CaptureFixture[str]) -> None:
    # the golden lines: the route tried first and why, as --verbose shows them under the totals
    pytest.importorskip("transformers")
    argv = ["analyze", "hf:GPT2LMHeadModel", "--config", "n_layer=1", "--input", "1x16:int64", "--width", "300"]
    assert main(argv) == 0
    quiet = capsys.readouterr().out
    assert main([*argv, "--verbose"]) == 0
    loud = capsys.readouterr().out
    added = [ln.rstrip() for ln in loud.splitlines() if ln not in quiet.splitlines()]
    assert added == ["Tried symbolic first:            GPT2LMHeadModel.forward takes **kwargs, which torch.fx cannot trace "
                     "as inputs"]


def test_warnings_go_to_the_report(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        report = fxcost.analyze(_load(models, "Warns"), input_size=(2, 4))
    assert leaked == [] and report.trace.warnings == ("DeprecationWarning: the model's own deprecation",)
    assert json.loads(json.dumps(report.to_dict()))["trace"]["warnings"] == list(report.trace.warnings)
    assert main(["analyze", f"{models}:Warns", "--input", "2x4"]) == 0
    assert "deprecation" not in (out := capsys.readouterr()).out + out.err
    assert main(["analyze", f"{models}:Warns", "--input", "2x4", "-v", "--width", "200"]) == 0
    assert "Warning:" in (out := capsys.readouterr().out) and "DeprecationWarning: the model's own deprecation" in out


# --- messages in the user's terms --------------------------------------------------------------------

def test_a_size_check_says_the_size_not_a_proxy(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", f"{models}:Patch", "--input", "1x3x16x16"]) == 2
    err = capsys.readouterr().err
    assert "Input height (16) doesn't match model (32)" in err and "models.py" in err
    assert "Proxy" not in err and "getitem" not in err and "no tensors" not in err
    # asked for torch.fx alone, it says what it can, in the user's terms
    assert main(["analyze", f"{models}:Patch", "--input", "1x3x16x16", "--tracer", "symbolic"]) == 2
    err = capsys.readouterr().err
    assert "Proxy" not in err and "getitem" not in err and "no tensors" not in err
    assert "message written while tracing" in err and "--tracer eager" in err and "--input" not in err


def test_a_wrapped_helper_that_mutates_its_argument(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # torchvision's swin3d: auto moves on to the fake run, which counts it exactly
    model = _load(models, "Mutates")
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 8))
    report = fxcost.analyze(model, input_size=(2, 8))
    assert 2 * report.total().macs == counter.get_total_flops() and report.trace.method == "eager"
    assert "changes a list it is given in place" in report.trace.fallbacks[0].error
    assert main(["analyze", f"{models}:Mutates", "--input", "2x8", "--tracer", "symbolic"]) == 2
    err = capsys.readouterr().err
    assert "torch.fx.wrap'ped helper that mutates its argument" in err and "--input" not in err  # the input is right


def test_a_hint_blames_the_input_only_where_the_input_failed(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the Linear layer is given a tensor the model made itself: the input is right
    assert main(["analyze", f"{models}:MakesItsOwn", "--input", "2x4"]) == 2
    err = capsys.readouterr().err
    assert "made by the model itself, not computed from --input" in err and "check the spatial size of --input" not in err
    assert "in forward: return self.fc(torch.zeros(x.shape[0], 5, device=x.device))" in err
    # the same failure where the input is what does not fit keeps its advice
    assert main(["analyze", "examples/vgg.py:vgg11", "--input", "1x1x224x224"]) == 2  # a 3-channel first layer
    assert "check the channel dimension of --input" in capsys.readouterr().err


def test_the_transformers_models_whose_hint_blamed_the_input() -> None:
    tf = pytest.importorskip("transformers")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # SEW-D makes a CPU tensor inside forward (masked_fill(mask, torch.tensor(...))): the fake run
    # follows it on fake CPU tensors, exactly
    torch.manual_seed(0)
    sewd = tf.SEWDModel(tf.SEWDConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                      conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=4, squeeze_factor=2)).eval()
    x = torch.randn(1, 1600)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        sewd(x)
    report = fxcost.analyze(sewd, example_inputs=(x,))
    assert 2 * report.total().macs == counter.get_total_flops() and not report.unsupported
    # SwitchTransformers' router casts its own classifier in forward (self.classifier.to(dtype)), which
    # torch cannot do to fake weights held elsewhere: the hint names that, not --input
    switch = tf.SwitchTransformersModel(tf.SwitchTransformersConfig(
        vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, num_experts=4,
        expert_capacity=8, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1)).eval()
    ids = torch.randint(0, 128, (2, 8))
    try:
        fxcost.analyze(switch, example_inputs=(ids,), example_kwargs={"decoder_input_ids": ids})
    except fxcost.FxcostError as e:  # issue 22 makes it count; until then it must say why
        assert "converts a module of the model (module.to(...))" in e.hint and "--input" not in e.hint
        assert "self.classifier = self.classifier.to(self.dtype)" in e.source


# --- the battery's last cases ------------------------------------------------------------------------

def test_user_hooks_do_not_run_unless_asked() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    calls: list[str] = []
    model[0].register_forward_hook(lambda m, i, o: calls.append("hook"))
    report = fxcost.analyze(model, input_size=(2, 4), train=True)
    assert calls == []
    assert any("hooks not run" in n and "<lambda> (forward hook of '0')" in n for n in report.trace.notes)
    asked = fxcost.analyze(model, input_size=(2, 4), train=True, hooks=True)
    assert calls and asked.total() == report.total()  # run when asked, on each of the analysis' forwards
    assert any("hooks that ran" in n for n in asked.trace.notes)


BIG = "9" * 5001


@pytest.mark.parametrize("argv", [
    ["review", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--budget", f"macs={BIG}"],
    ["review", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--max-growth", f"{BIG}%"],
    ["analyze", "examples/vgg.py:vgg11", "--input", f"1x3x{BIG}x32"],
    ["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--depth", BIG],
    ["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--width", BIG],
    ["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--fit", f"{BIG}GiB"],
    ["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--fit", "1e999"],
    ["analyze", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--train", "--shard", f"zero2:{BIG}"],
    ["llm", "examples/hf_models.py:llama_small", "--prompt", BIG, "--generate", "1"],
    ["llm", "examples/hf_models.py:llama_small", "--prompt", "8", "--generate", "-1"],
    ["onnx", "examples/vgg.py:vgg11", "--input", "1x3x32x32", "--opset", BIG, "-o", "x.onnx"],
], ids=["budget", "growth", "dimension", "depth", "width", "fit", "fit_inf", "shard", "prompt", "generate", "opset"])
def test_every_number_has_a_bound(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fxcost: error: ") and "\n  try: " in err and len(err) < 600  # the value is not echoed whole
    assert "internal error" not in err and "Traceback" not in err


def test_a_spec_that_parses_the_command_line(tmp_path: Path) -> None:
    script = ("import argparse\nfrom torch import nn\nparser = argparse.ArgumentParser()\n"
              "parser.add_argument('--lr', type=float, default=0.1)\nargs = parser.parse_args()\n"
              "class Net(nn.Linear):\n    def __init__(self):\n        super().__init__(4, 2)\n")
    (tmp_path / "train.py").write_text(script)
    done = _cli("analyze", f"{tmp_path}/train.py:Net", "--input", "2x4", "-f", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["params"] == 10  # it saw no fxcost flag
    (tmp_path / "strict.py").write_text(script.replace("default=0.1", "required=True"))
    done = _cli("analyze", f"{tmp_path}/strict.py:Net", "--input", "2x4")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "usage: strict.py [-h] --lr LR"  # its own parser, named after its file
    assert lines[2].startswith(f"fxcost: error: importing '{tmp_path}/strict.py' stopped: its code called sys.exit(2) at import")
    assert lines[3] == f"  at {tmp_path}/strict.py:5, in <module>: args = parser.parse_args()"


@pytest.mark.parametrize(("sig", "code", "line"), [(signal.SIGINT, 130, "fxcost: interrupted"),
                                                   (signal.SIGTERM, 143, "fxcost: terminated")])
def test_a_signal_while_torch_imports(tmp_path: Path, sig: int, code: int, line: str) -> None:
    # an import hook prints a marker when torch's import begins: the signal lands while it runs,
    # whatever the machine's load (torch takes a second to import; a later signal ends alike)
    boot = ("import sys, importlib.abc\n"
            "class Mark(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'torch':\n"
            "            sys.stderr.write('importing torch\\n'); sys.stderr.flush()\n"
            "        return None\n"
            "sys.meta_path.insert(0, Mark())\n"
            f"sys.argv = ['fxcost', 'analyze', 'examples/vgg.py:vgg11', '--input', '1x3x32x32', '-o', {str(tmp_path / 'out.json')!r}]\n"
            "from fxcost.__main__ import run\n"
            "run()\n")
    p = subprocess.Popen([sys.executable, "-c", boot], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stderr is not None
    assert p.stderr.readline() == "importing torch\n"
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code and err.strip() == line and out == ""
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("sig", "code", "line"), [(signal.SIGINT, 130, "fxcost: interrupted"),
                                                   (signal.SIGTERM, 143, "fxcost: terminated")])
def test_a_signal_in_the_forward(models: Path, tmp_path: Path, sig: int, code: int, line: str) -> None:
    # synchronized on what the model prints on entering its forward, not on time
    out_file = tmp_path / "out.json"
    p = subprocess.Popen([sys.executable, "-m", "fxcost", "analyze", f"{models}:Sleeps", "--input", "2x4", "-o", str(out_file)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stderr is not None
    assert p.stderr.readline() == "fxcost-test: in forward\n"
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code and err.strip() == line and out == ""
    assert sorted(os.listdir(tmp_path)) == ["models.py"]  # no output, no staging file


def test_import_fxcost_is_light() -> None:
    # the command owns its process before torch loads; the library's names load on first use
    done = subprocess.run([sys.executable, "-c", "import sys, fxcost, fxcost.cli; print('torch' in sys.modules); "
                           "fxcost.analyze; print('torch' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.split() == ["False", "True"], done.stderr
    assert _cli("--version").stdout.startswith("fxcost ")
