"""Golden outputs: text, Markdown, CSV and JSON, byte for byte. Rewrite them only with
``pytest --update-goldens`` and review the diff: the figures in them are checked against the
seeds and FlopCounterMode in test_seed_*.py and test_crosscheck.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import fxcost
from examples.alexnet import alexnet
from examples.vgg import D2LVGG, d2l_vgg11, vgg19_paper
from fxcost.exporters import render

INPUT = (1, 3, 224, 224)


@pytest.mark.parametrize(
    "name, build, fmt",
    [
        ("vgg19_paper.md", lambda: fxcost.analyze(vgg19_paper(), input_size=INPUT, name="vgg19_paper"), "markdown"),
        ("vgg19_paper.txt", lambda: fxcost.analyze(vgg19_paper(), input_size=INPUT, name="vgg19_paper"), "table"),
        ("d2l_vgg11_depth2.json", lambda: fxcost.analyze(d2l_vgg11(), input_size=INPUT, name="d2l_vgg11").by_module(2), "json"),
        ("d2l_vgg11_types_torchsummary.md", lambda: fxcost.analyze(d2l_vgg11(), input_size=INPUT, convention="torchsummary", name="d2l_vgg11").by_type(), "markdown"),
        ("alexnet.csv", lambda: fxcost.analyze(alexnet(), input_size=INPUT, name="alexnet"), "csv"),
        ("d2l_vgg11_depth2.tex", lambda: fxcost.analyze(d2l_vgg11(), input_size=INPUT, name="d2l_vgg11").by_module(2), "latex"),
        ("d2l_vgg11_depth2.html", lambda: fxcost.analyze(d2l_vgg11(), input_size=INPUT, name="d2l_vgg11").by_module(2), "html"),
        ("compare_vgg11_alexnet.md", lambda: fxcost.compare(
            fxcost.analyze(d2l_vgg11(), input_size=INPUT, name="d2l_vgg11"), fxcost.analyze(alexnet(), input_size=INPUT, name="alexnet")), "markdown"),
        ("sweep_q4.csv", lambda: fxcost.sweep(D2LVGG(arch=((3, 128), (3, 256))), [(1, 3, s, s) for s in (28, 56, 84)], name="D2LVGG"), "csv"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_golden(name: str, build: Callable[[], object], fmt: str, golden: Callable[[str, str], None]) -> None:
    text = render(build(), fmt, width=140)  # type: ignore[arg-type]
    assert text == render(build(), fmt, width=140)  # deterministic: a second run is byte-identical  # type: ignore[arg-type]
    golden(name, text)
