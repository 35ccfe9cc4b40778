"""Architecture diagrams: DOT that Graphviz itself parses (its JSON output tells which node sits in
which box), the seed's VGG blocks as boxes, --depth, --roll by structure, colours, marks for
what was not counted, byte-identical output, golden files, and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import fxcost
from examples.vgg import d2l_vgg11
from fxcost.cli import main
from fxcost.exporters.diagram import to_dot
from tests.conftest import ROOT
from tests.test_tracing import Outer

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (.ci/run installs it)")
D2L = str(ROOT / "examples/vgg.py") + ":d2l_vgg11"


def graphviz_layout(dot_text: str) -> dict[str, Any]:
    """Graphviz's own reading of the DOT: boxes (clusters) with the nodes inside them."""
    done = subprocess.run(["dot", "-Tjson"], input=dot_text, capture_output=True, text=True, check=True)
    d = json.loads(done.stdout)
    objects = d["objects"]
    nodes = {o["_gvid"]: o for o in objects if "nodes" not in o and not o["name"].startswith("cluster_")}
    boxes = {o["name"].removeprefix("cluster_"): [nodes[i].get("tooltip", nodes[i]["name"]) for i in o.get("nodes", []) if i in nodes]
             for o in objects if o["name"].startswith("cluster_")}
    return {"nodes": {o["tooltip"]: o for o in nodes.values() if "tooltip" in o}, "boxes": boxes}


@pytest.fixture(scope="module")
def d2l_report() -> fxcost.Report:
    return fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224), name="d2l_vgg11")


@needs_dot
def test_d2l_vgg11_depth_1_is_five_blocks_flatten_and_the_classifier(d2l_report: fxcost.Report) -> None:
    g = graphviz_layout(to_dot(d2l_report, depth=1))
    types = {name: n["label"].split("\\n")[0].split(": ")[1] for name, n in g["nodes"].items()}
    assert [n for n, t in types.items() if t == "Sequential"] == [f"net.{i}" for i in range(5)]
    assert [n for n, t in types.items() if t == "Flatten"] == ["net.5"]
    # the classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear (net.6 .. net.12)
    assert [types[f"net.{i}"] for i in range(6, 13)] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert set(types) == {"x", *(f"net.{i}" for i in range(13))}  # nothing else: no conv at depth 1
    assert set(g["boxes"]) == {"legend"}


@needs_dot
def test_d2l_vgg11_full_depth_puts_every_layer_in_its_block(d2l_report: fxcost.Report) -> None:
    g = graphviz_layout(to_dot(d2l_report))
    blocks = {b: members for b, members in g["boxes"].items() if b != "legend"}
    assert sorted(blocks) == [f"net.{i}" for i in range(5)]
    for row in d2l_report.layers:
        if row.type in ("Conv2d", "ReLU", "MaxPool2d") and row.name.count(".") == 2:
            assert row.name in blocks[row.name.rpartition(".")[0]], row.name
    # VGG-11: blocks of 1, 1, 2, 2, 2 convs, each with its ReLUs and one pool
    assert [sum(d2l_report.module_types[m] == "Conv2d" for m in blocks[b]) for b in sorted(blocks)] == [1, 1, 2, 2, 2]


def test_same_model_same_bytes(d2l_report: fxcost.Report) -> None:
    again = fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224), name="d2l_vgg11")
    assert to_dot(d2l_report) == to_dot(again)


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(self.norm(x))


class Twin(Block):
    """A different class (its own name in every row) with Block's structure: rolled together with
    Blocks (structure, not names)."""


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.blocks = nn.ModuleList([Block(16), Block(16), Twin(16), Block(16)])
        self.wide = nn.Linear(16, 32)
        self.tail = nn.ModuleList([Block(32), Block(32)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        x = self.wide(x)
        for b in self.tail:
            x = b(x)
        return x


def test_roll_finds_identical_blocks_by_structure() -> None:
    report = fxcost.analyze(Stack(), input_size=(2, 8))
    dot = to_dot(report, roll=True)
    assert 'label="blocks.0: Block  x4"' in dot  # Twin has Block's structure: it rolls in
    assert 'label="tail.0: Block  x2"' in dot  # same class, other width than blocks.*: its own run
    assert "blocks.1" not in dot and "tail.1" not in dot
    # the rolled run still connects to what follows it
    ids = {r.name: r.id for r in report.layers}
    assert f"n{ids['blocks.0.add']} -> n{ids['wide']}" in dot
    unrolled = to_dot(report)
    assert "blocks.3" in unrolled and "x4" not in unrolled


def test_depth_and_roll_on_transformer_blocks() -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100, n_positions=32, use_cache=False))
    report = fxcost.analyze(model, example_inputs=(torch.zeros(1, 16, dtype=torch.int64),))
    dot = to_dot(report, depth=2, roll=True)
    assert 'transformer.h.0: GPT2Block  x4' in dot
    assert "transformer.h.1" not in dot and "transformer.h.0.attn" not in dot


def test_colour_legend_and_marks() -> None:
    class WithQR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.qr(self.fc(x))[1].abs()

    report = fxcost.analyze(WithQR(), input_size=(2, 8))
    dot = to_dot(report)
    assert "cluster_legend" in dot and "share of flops" in dot
    assert "unsupported ops: not counted" in dot  # the node with the QR decomposition, which has no formula
    plain = to_dot(report, color="none")
    assert "cluster_legend" not in plain and "#d7301f" not in plain
    opaque = to_dot(fxcost.analyze(Outer(), input_size=(2, 8)))
    assert 'label="b: ShapeBranch  (opaque: ran op by op)"; style="rounded,dashed"' in opaque


def test_edges_carry_shapes(d2l_report: fxcost.Report) -> None:
    ids = {r.name: r.id for r in d2l_report.layers}
    assert f'n{ids["net.0.2"]} -> n{ids["net.1.0"]} [label="1x64x112x112"];' in to_dot(d2l_report)
    assert "rankdir=LR" in to_dot(d2l_report, rankdir="LR")


@pytest.mark.parametrize(
    ("golden_name", "build", "shape", "options"),
    [
        ("d2l_vgg11.dot", d2l_vgg11, (1, 3, 224, 224), {}),
        ("d2l_vgg11_depth1.dot", d2l_vgg11, (1, 3, 224, 224), {"depth": 1, "color": "params"}),
        ("stack_roll.dot", Stack, (2, 8), {"roll": True, "rankdir": "LR"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_golden_dot(golden: Any, golden_name: str, build: Any, shape: tuple[int, ...], options: dict[str, Any]) -> None:
    report = fxcost.analyze(build(), input_size=shape, name=build.__name__)
    golden(golden_name, to_dot(report, **options))


# --- the command line ---------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@needs_dot
@pytest.mark.parametrize("suffix", ["svg", "png", "pdf", "dot"])
def test_cli_diagram_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str) -> None:
    out_file = tmp_path / f"vgg.{suffix}"
    code, _, err = run(capsys, "diagram", D2L, "--input", "1x3x224x224", "--depth", "1", "-o", str(out_file))
    assert code == 0, err
    data = out_file.read_bytes()
    assert data.startswith({"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF", "dot": b"digraph"}[suffix])


def test_cli_diagram_without_graphviz(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = run(capsys, "diagram", D2L, "--input", "1x3x224x224", "-o", str(tmp_path / "vgg.svg"))
    assert code == 2 and "apt-get install graphviz" in err and "Traceback" not in err
    assert not (tmp_path / "vgg.svg").exists()  # no half-written file
    assert (tmp_path / "vgg.svg.dot").read_text().startswith("digraph")  # the DOT text is offered, beside it


def test_cli_diagram_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "diagram", D2L, "--input", "1x3x224x224", "-o", str(tmp_path / "vgg.gif"))
    assert code == 2 and ".svg" in err
    code, _, err = run(capsys, "diagram", D2L, "--input", "1x3x224x224", "--input", "1x3x112x112")
    assert code == 2 and "one input size" in err
    assert not list(tmp_path.iterdir())


def test_cli_diagram_dot_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", D2L, "--input", "1x3x224x224", "--color", "none")
    assert code == 0 and out.startswith('digraph "d2l_vgg11"')


# --- regressions found in review ------------------------------------------------------------


class Parallel(nn.Module):
    """Two identical branches side by side: not a sequence, so not rolled."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = Block(8), Block(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.left(x), self.right(x)], dim=1)


class Interleaved(nn.Module):
    """Identical blocks with a different layer between them: no run."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.mid, self.b = Block(8), nn.Tanh(), Block(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.mid(self.a(x)))


class ConvBlock(nn.Module):
    def __init__(self, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=dilation, dilation=dilation)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Dilated(nn.Module):
    """Same shapes, params and MACs, different dilation: different layers."""

    def __init__(self) -> None:
        super().__init__()
        self.one, self.two = ConvBlock(1), ConvBlock(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.two(self.one(x))


@pytest.mark.parametrize(("model", "shape"), [(Parallel, (2, 8)), (Interleaved, (2, 8)), (Dilated, (1, 4, 8, 8))],
                         ids=["parallel", "interleaved", "dilated"])
def test_roll_only_rolls_chains_of_identical_blocks(model: Any, shape: tuple[int, ...]) -> None:
    dot = to_dot(fxcost.analyze(model(), input_size=shape), roll=True)
    assert " x2" not in dot


class Passes(nn.Module):
    """Layers that dispatch nothing in eval (Dropout, Identity) and an op that returns its input."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.d, self.i, self.b = nn.Linear(8, 8), nn.Dropout(0.1), nn.Identity(), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return h + self.b(self.i(self.d(h))).to(torch.float32)


@pytest.mark.parametrize("tracer", ["symbolic", "export", "eager"])
def test_data_flows_through_layers_that_do_nothing(tracer: str) -> None:
    report = fxcost.analyze(Passes(), input_size=(2, 8), tracer=tracer)
    names = {r.id: r.name for r in report.layers}
    pairs = {(names[e.src], names[e.dst]) for e in report.edges}
    # under export, eval-mode Dropout and Identity leave no node: a feeds b directly
    chain = [("a", "b")] if tracer == "export" else [("a", "d"), ("d", "i"), ("i", "b")]
    assert set(chain) <= pairs, pairs
    # the residual leaves from a, not from whatever handed its tensor on. Intended difference:
    # an eager run sees one tensor object go through d and i unchanged, and can only say it
    # came last from i (docs/tracing.md)
    assert any(src == ("i" if tracer == "eager" else "a") and dst not in ("d", "b") for src, dst in pairs), pairs


def test_gpt2_hidden_states_reach_the_rolled_blocks() -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=100, n_positions=32, use_cache=False))
    report = fxcost.analyze(model, example_inputs=(torch.zeros(1, 16, dtype=torch.int64),))
    view = report.collapse(["transformer.h.0", "transformer.h.1", "transformer.h.2"])
    ids = {r.name: r.id for r in view.layers}
    into_block = [e for e in view.edges if e.dst == ids["transformer.h.0"]]
    assert (1, 16, 64) in [e.shape for e in into_block]  # the hidden states, not only the mask
    assert any(e.src == ids["transformer.h.0"] and e.dst == ids["transformer.h.1"] for e in view.edges)
    dot = to_dot(report, depth=2, roll=True)
    assert f'n{ids["transformer.h.0"]} -> n{ids["transformer.ln_f"]}' in dot  # the run's output leaves it


def test_marks_survive_collapsing() -> None:
    class QRBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.qr(self.fc(x))[1][:, :5].abs()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = QRBlock()
            self.other = nn.Sequential(nn.Linear(5, 8), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.other(self.block(x))

    dot = to_dot(fxcost.analyze(Net(), input_size=(2, 8)), depth=1)
    assert "unsupported ops: not counted" in dot and "peripheries=2" in dot
    opaque = to_dot(fxcost.analyze(Outer(), input_size=(2, 8)), depth=1)
    assert "opaque: ran op by op" in opaque


def test_out_channels_come_from_the_module() -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=64, n_head=4, vocab_size=100, n_positions=32, use_cache=False))
    dot = to_dot(fxcost.analyze(model, example_inputs=(torch.zeros(1, 16, dtype=torch.int64),)))
    assert " ch" not in dot  # HF's Conv1D is a linear layer: no channels (its dim 1 is the sequence)
    d2l = to_dot(fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224)))
    assert "net.0.0: Conv2d\\n64 ch" in d2l
