"""Tracing that does not give up: opaque submodules, torch.export and eager fallbacks, any
inputs and outputs, transformers models from their configs, and the messages for what no
tracer can do. Numbers are checked against the model's own parameters and FlopCounterMode."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import fxcost
from examples import odd
from examples.zoo import get
from fxcost.cli import main
from fxcost.errors import InputSpecError, ShapeError, SpecError, TraceError
from tests.conftest import ROOT, flop_counter_flops, unique_param_count

ODD = str(ROOT / "examples/odd.py")


class ShapeBranch(nn.Module):
    """Python control flow on a shape: FX cannot trace it, meta tensors can run it."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Linear(8, 8)
        self.narrow = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:  # a Proxy's shape is a Proxy: FX cannot branch on it
            return self.wide(x)
        return self.narrow(x)


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = ShapeBranch()
        self.c = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))


class Holder:
    """Not a pytree and not a dataclass: torch.export cannot return it."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


class Unexportable(nn.Module):
    """A root FX cannot trace (a shape branch) returning what export cannot flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> Any:
        if x.shape[0] > 1:
            x = x * 2
        return Holder(self.fc(x))


def test_untraceable_submodule_stays_opaque_and_is_still_counted() -> None:
    model = Outer()
    report = fxcost.analyze(model, input_size=(2, 8))
    assert report.trace.method == "symbolic"
    [opaque] = report.trace.opaque
    assert opaque.module == "b" and opaque.type == "ShapeBranch"
    assert "control flow" in opaque.reason
    rows = {r.name: r for r in report.layers}
    # the opaque module's ops are attributed to the submodule that ran them
    assert rows["b.wide"].macs == 2 * 8 * 8 and rows["b.wide"].params == 8 * 8 + 8
    assert rows["b.narrow"].kind == "unused"  # the branch not taken
    assert report.total().params == unique_param_count(model)
    assert 2 * report.total().macs == flop_counter_flops(model, torch.randn(2, 8))


def test_root_that_fx_cannot_trace_goes_to_the_fake_run() -> None:
    report = fxcost.analyze(ShapeBranch(), input_size=(2, 8))
    assert report.trace.method == "eager" and report.mode == "fake"
    assert report.trace.fallbacks[0].tracer == "symbolic"
    assert report.total().macs == 2 * 8 * 8


def test_an_output_export_cannot_flatten_runs_op_by_op() -> None:
    model = Unexportable()
    report = fxcost.analyze(model, input_size=(2, 8))
    assert report.trace.method == "eager"
    assert [f.tracer for f in report.trace.fallbacks] == ["symbolic"]  # auto asks torch.export nothing
    with pytest.raises(fxcost.TraceError, match="torch.export"):
        fxcost.analyze(model, input_size=(2, 8), tracer="export")
    assert report.total().macs == 2 * 8 * 8 and report.total().params == 8 * 8 + 8
    # Holder is neither a container, a pytree nor a dataclass: fxcost does not look inside
    # arbitrary objects, so the report lists no outputs (the costs above are complete)
    assert report.outputs == ()


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny", "modern_block", "dict_io", "keyword_only", "tied_embeddings"])
def test_every_tracer_gives_the_same_params_and_macs(name: str) -> None:
    entry = get(name)
    model = entry.build()
    args, kwargs = entry.inputs()
    results = {}
    for tracer in ("symbolic", "export", "eager"):
        try:
            r = fxcost.analyze(model, example_inputs=args, example_kwargs=kwargs, tracer=tracer)
        except TraceError:
            assert tracer == "symbolic" and name == "dict_io"  # FX cannot iterate a dict's list input
            continue
        results[tracer] = (r.total().params, r.total().macs, r.trace.method)
    assert len({v[:2] for v in results.values()}) == 1, results


@pytest.mark.parametrize("tracer", ["symbolic", "export", "eager"])
def test_leaf_option_keeps_a_module_whole(tracer: str) -> None:
    from examples.resnet import resnet18

    model = resnet18()
    report = fxcost.analyze(model, input_size=(1, 3, 64, 64), leaves=["BasicBlock"], tracer=tracer)
    plain = fxcost.analyze(model, input_size=(1, 3, 64, 64))
    assert report.total().macs == plain.total().macs and report.total().params == plain.total().params
    assert plain.total().params == unique_param_count(model)
    assert 2 * plain.total().macs == flop_counter_flops(model, torch.randn(1, 3, 64, 64))
    # one row per block call, whatever the tracer; nothing inside a block has a row of its own
    blocks = [r for r in report.layers if r.type == "BasicBlock"]
    assert [r.name for r in blocks] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert not any(r.name.startswith("layer1.0.") for r in report.layers)
    assert blocks[0].params == sum(p.numel() for p in model.layer1[0].parameters())


def test_leaf_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(InputSpecError, match="--leaf 'Nope' matches no submodule"):
        fxcost.analyze(Outer(), input_size=(2, 8), leaves=["Nope"])


def test_data_dependent_branch_names_module_and_op_and_suggests_real() -> None:
    with pytest.raises(ShapeError) as e:
        fxcost.analyze(odd.DataDependentBranch(), input_size=(2, 3, 16, 16))
    text = str(e.value)
    assert "'gate' (SignGate)" in text and "_local_scalar_dense" in text and "--real" in text
    report = fxcost.analyze(odd.DataDependentBranch(), input_size=(2, 3, 16, 16), real=True)
    assert report.mode == "real" and report.trace.opaque[0].module == "gate"


def test_var_args_forward() -> None:
    entry = get("var_args")
    args, _ = entry.inputs()
    report = fxcost.analyze(entry.build(), example_inputs=args)
    assert [i.name for i in report.inputs] == ["xs.0", "xs.1", "xs.2"]
    assert report.trace.method == "eager"


def test_dict_inputs_and_outputs_are_named_and_shaped() -> None:
    entry = get("dict_io")
    args, kwargs = entry.inputs()
    model = entry.build()
    report = fxcost.analyze(model, example_inputs=args)
    assert [(i.name, i.shape) for i in report.inputs] == [
        ("batch.image", (2, 3, 16, 16)), ("batch.mask", (2, 1, 16, 16)), ("batch.aux.0", (2, 6)), ("batch.aux.1", (2, 6)),
    ]
    out = model(*args)
    assert [o.shape for o in report.outputs] == [tuple(out["logits"].shape), tuple(out["features"].shape)]


def test_dataclass_outputs() -> None:
    @dataclass
    class Out:
        logits: torch.Tensor
        extra: tuple[torch.Tensor, ...]

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> Out:
            return Out(self.fc(x), (x, x.sum(1)))

    report = fxcost.analyze(M(), input_size=(5, 4))
    assert [o.shape for o in report.outputs] == [(5, 3), (5, 4), (5,)]


def test_keyword_tensors_and_plain_keywords() -> None:
    model = odd.KeywordOnly()
    x, bias = torch.randn(2, 16), torch.randn(16)
    with_flag = fxcost.analyze(model, example_inputs=(x,), example_kwargs={"bias": bias, "flag": True, "scale": 0.5})
    assert [i.name for i in with_flag.inputs] == ["x", "bias"]
    without = fxcost.analyze(model, example_inputs=(x,), example_kwargs={"flag": False})
    assert [i.name for i in without.inputs] == ["x"]
    for report, kw in ((with_flag, {"bias": bias, "flag": True, "scale": 0.5}), (without, {"flag": False})):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x, **kw)
        assert 2 * report.total().macs == counter.get_total_flops()


def test_inputs_that_do_not_fit_forward() -> None:
    with pytest.raises(InputSpecError, match="do not fit forward"):
        fxcost.analyze(odd.KeywordOnly(), input_size=(2, 16), example_kwargs={"nope": 1})


# --- the command line ---------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_keyword_inputs_and_kwargs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", f"{ODD}:KeywordOnly", "--input", "2x16", "--input", "bias=16",
                         "--kwarg", "flag=True", "--kwarg", "scale=0.5", "-f", "json")
    assert code == 0, err
    d = json.loads(out)
    assert [(i["name"], i["shape"]) for i in d["inputs"]] == [("x", [2, 16]), ("bias", [16])]


def test_cli_keyword_inputs_apply_to_every_sweep_point(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", f"{ODD}:KeywordOnly", "--input", "2x16", "--input", "4x16",
                         "--input", "bias=16", "-f", "json")
    assert code == 0, err
    assert [[i["name"] for i in r["inputs"]] for r in json.loads(out)["sweep"]] == [["x", "bias"], ["x", "bias"]]


def test_cli_tracer_and_leaf(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", f"{ODD}:TwiceCalled", "--input", "2x3x16x16", "--tracer", "eager", "-f", "json")
    assert code == 0 and json.loads(out)["trace"]["method"] == "eager"
    code, out, err = run(capsys, "analyze", f"{ODD}:DataDependentBranch", "--input", "2x3x16x16")
    assert code == 2 and "SignGate" in err and "--real" in err and "Traceback" not in err


def test_cli_table_names_fallbacks_and_opaque_modules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", f"{ODD}:DataDependentBranch", "--input", "2x3x16x16", "--real", "--width", "200")
    assert code == 0 and "Op by op" not in out and "Opaque" not in out  # its ops are counted: how is --verbose's business
    code, out, _ = run(capsys, "analyze", f"{ODD}:DataDependentBranch", "--input", "2x3x16x16", "--real", "--width", "200",
                       "--verbose")
    assert code == 0 and "Op by op: gate (SignGate)" in out
    assert "gate.neg [unused]" in out  # the branch not taken; rich must not eat "[unused]" as markup


def test_hf_without_transformers_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from fxcost.loading.hf import load_hf

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(SpecError, match="pip install"):
        load_hf("hf:GPT2LMHeadModel")


# --- regressions found in review ------------------------------------------------------------


class FoldedInner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:  # untraceable: each one found costs another tracing attempt
            x = self.fc(x)
        return self.fc(x)


class Folded(nn.Module):
    """Work on a buffer alone (FX folds it into a constant) and two untraceable children."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.randn(8, 8))
        self.inner, self.inner2 = FoldedInner(), FoldedInner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner2(self.inner(x) @ (self.a @ self.a))


def test_folded_work_counts_once_however_many_tracing_attempts() -> None:
    report = fxcost.analyze(Folded(), input_size=(2, 8))
    assert len(report.trace.opaque) == 2
    assert 2 * report.total().macs == flop_counter_flops(Folded(), torch.randn(2, 8))


class Cached(nn.Module):
    """State set by a first call: an attempt that fails must not leave it for the next tracer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> Any:
        if self.cache is None:
            self.cache = self.fc(x)
        if x.shape[0] > 1:
            x = x * 2
        return Holder(self.fc(x) + self.cache)


def test_each_tracer_starts_from_a_fresh_copy() -> None:
    report = fxcost.analyze(Cached(), input_size=(2, 8))
    assert report.trace.method == "eager"
    assert 2 * report.total().macs == flop_counter_flops(Cached(), torch.randn(2, 8))  # both fc calls


class Child(nn.Module):
    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w


class PassesWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8))
        self.child = Child()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.child(x, self.w)


@pytest.mark.parametrize("tracer", ["symbolic", "export", "eager"])
def test_a_parameter_passed_to_a_child_is_used_not_unused(tracer: str) -> None:
    report = fxcost.analyze(PassesWeight(), input_size=(2, 8), tracer=tracer)
    assert report.total().params == unique_param_count(PassesWeight()) == 8 * 8  # w is 8 x 8
    assert not [r for r in report.layers if r.kind == "unused"]


@pytest.mark.parametrize("name", ["vgg11", "resnet18"])
def test_torchsummary_activations_do_not_depend_on_the_tracer(name: str) -> None:
    entry = get(name)
    model = entry.build()
    args, _ = entry.inputs()
    totals = {t: fxcost.analyze(model, example_inputs=args, convention="torchsummary", tracer=t).total().activation_elements
              for t in ("symbolic", "export", "eager")}
    assert totals["symbolic"] == totals["eager"]
    # Intended difference: in eval, Dropout is the identity and torch.export leaves no node for
    # it, so the outputs torchsummary counts for VGG's two Dropout layers (4,096 each) are not
    # seen under export. ResNet-18 has no Dropout.
    dropouts = 2 * 4096 if name == "vgg11" else 0
    assert totals["export"] == totals["symbolic"] - dropouts


def test_torchscript_submodules_run_under_eager() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scripted = torch.jit.script(nn.Linear(8, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scripted(x)

    report = fxcost.analyze(M(), example_inputs=(torch.randn(2, 8),), tracer="eager", real=True)
    assert report.total().macs == 2 * 8 * 8  # counted in the module that called it


def test_ops_that_need_values_suggest_real() -> None:
    class Nonzero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[torch.nonzero(x > 0, as_tuple=True)]

    with pytest.raises(ShapeError) as e:
        fxcost.analyze(Nonzero(), input_size=(2, 8))
    assert "--real" in str(e.value)
    assert fxcost.analyze(Nonzero(), input_size=(2, 8), real=True).mode == "real"


def test_when_every_tracer_fails_each_says_why() -> None:
    # a mask that does not fit the input: FX cannot trace the root and the fake run stops at a
    # read of a value of the weights (the real run fxcost then tries meets the shape error): each
    # tracer says why
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 1:
                x = x * 2
            if self.fc.weight.sum() > 0:  # a value of the weights: the fake run cannot decide it
                x = x + 1
            return self.fc(x) * mask

    with pytest.raises(ShapeError) as e:
        fxcost.analyze(Masked(), example_inputs=(torch.randn(2, 8), torch.ones(2, 9)))
    text = str(e.value)
    assert "symbolic:" in text and "eager:" in text and "export:" not in text


def test_a_value_read_from_a_given_mask_gets_to_the_real_failure() -> None:
    # the mask is given, so its sum is known and the fake run goes on to what is wrong with it
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if mask.sum() > 0:
                x = x + 1
            return self.fc(x) * mask

    with pytest.raises(ShapeError, match=r"(?s)broadcast a dimension of length 9.*return self\.fc\(x\) \* mask"):
        fxcost.analyze(Masked(), example_inputs=(torch.randn(2, 8), torch.ones(2, 9)))


def test_cli_failures_print_no_traceback() -> None:
    import subprocess

    spec = f"{ROOT / 'tests' / 'test_tracing.py'}:ShapeBranch"
    done = subprocess.run([sys.executable, "-m", "fxcost", "analyze", spec, "--input", "2x9"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "fxcost: error:" in done.stderr


def test_cli_leaf(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", str(ROOT / "examples/resnet.py") + ":resnet18", "--input", "1x3x64x64",
                         "--leaf", "BasicBlock", "-f", "json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)["layers"]}
    # each BasicBlock is one row, nothing inside it is (the model's modules are still listed by type)
    assert rows["layer1.0"]["type"] == "BasicBlock" and rows["layer1.0"]["kind"] == "module"
    assert not [n for n in rows if n.startswith("layer1.0.")]
    code, _, err = run(capsys, "analyze", str(ROOT / "examples/resnet.py") + ":resnet18", "--input", "1x3x64x64",
                       "--leaf", "Nope")
    assert code == 2 and "matches no submodule" in err


# --- data flow (the report's edges, which the diagrams draw) ---------------------------------


@pytest.mark.parametrize("tracer", ["symbolic", "export", "eager"])
def test_edges_follow_the_data(tracer: str) -> None:
    from examples.vgg import d2l_vgg11

    report = fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224), tracer=tracer)
    ids = {r.id: r for r in report.layers}
    assert all(e.src in ids and e.dst in ids and e.src != e.dst for e in report.edges)
    # each conv reads exactly one tensor: its input, whose shape the edge carries
    for r in report.layers:
        if r.type == "Conv2d":
            [edge] = [e for e in report.edges if e.dst == r.id]
            assert edge.shape[1] == ids[edge.src].output_shape[1]
    # rolled up to the blocks: one chain from the input through the five blocks to the head
    blocks = report.by_module(2)
    names = {r.id: r.name for r in blocks.layers}
    chain = [(names[e.src], names[e.dst]) for e in blocks.edges]
    assert chain[:6] == [("x", "net.0"), ("net.0", "net.1"), ("net.1", "net.2"), ("net.2", "net.3"), ("net.3", "net.4"), ("net.4", "net.5")]


def test_edges_in_an_opaque_module() -> None:
    report = fxcost.analyze(Outer(), input_size=(2, 8))
    names = {r.id: r.name for r in report.layers}
    assert [(names[e.src], names[e.dst], e.shape) for e in report.edges] == [
        ("x", "a", (2, 8)), ("a", "b.wide", (2, 8)), ("b.wide", "c", (2, 8)),
    ]


# --- failures name the user's line, and are told apart by type and op ----------------------

NET = '''import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        x = self.c(x)
        return self.fc(x.flatten(1))


class Liar(nn.Module):
    def forward(self, x):
        raise RuntimeError("too small: channels, dtype, mat1 and mat2, Output size")
'''


@pytest.mark.parametrize(("tracer", "shape", "line"), [
    ("auto", "1x3x16x16", "return self.fc(x.flatten(1))"),  # a standard layer's call: the node's recorded line
    ("auto", "1x4x16x16", "x = self.c(x)"),
    ("eager", "1x4x16x16", "x = self.c(x)"),  # from the traceback of an op-by-op run
    ("export", "1x4x16x16", "x = self.c(x)"),  # torch.export's own failure
], ids=["symbolic-linear", "symbolic-conv", "eager-conv", "export-conv"])
def test_a_failure_names_the_users_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        tracer: str, shape: str, line: str) -> None:
    (tmp_path / "net.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "analyze", "net.py:Net", "--input", shape, "--tracer", tracer)
    number = NET.splitlines().index(f"        {line}") + 1
    assert code == 2 and f"at net.py:{number}, in forward: {line}" in err, err


def test_failures_are_classified_by_type_and_op_not_by_their_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "net.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    # the wrong channel count: told by aten::convolution's shapes (3 expected, 4 given)
    _, _, err = run(capsys, "analyze", "net.py:Net", "--input", "1x4x16x16")
    assert "channel dimension of --input" in err
    # too small for the 3x3 kernel: the same op, the channels right
    _, _, err = run(capsys, "analyze", "net.py:Net", "--input", "1x3x2x2")
    assert "input is too small" in err
    # 14x14x8 = 1568 features where the Linear takes 100: aten::addmm's
    _, _, err = run(capsys, "analyze", "net.py:Net", "--input", "1x3x16x16")
    assert "flattened features" in err
    # a message full of the words the hints once matched, from no op: the general hint
    _, _, err = run(capsys, "analyze", "net.py:Liar", "--input", "1x3")
    assert "check --input against what the model expects" in err
