"""Where users already work: the report in Jupyter (examples/notebook.ipynb, executed here with
nbclient) and in pandas (``Report.to_pandas()``, optional)."""

from __future__ import annotations

import sys

import pytest

import fxcost
from examples.vgg import vgg19
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def report() -> fxcost.Report:
    return fxcost.analyze(vgg19(), input_size=(1, 3, 224, 224))


def test_to_pandas_is_the_reports_rows(report: fxcost.Report) -> None:
    pytest.importorskip("pandas")
    df = report.to_pandas()
    assert list(df["name"]) == [r.name for r in report.layers]
    assert int(df["macs"].sum()) == report.total().macs == 19_632_062_464  # the seed's VGG-19 figure
    assert int(df["params"].sum()) == 143_667_240
    assert str(df["macs"].dtype) == "int64"  # exact integers, not floats
    by_type = {r.type: r.macs for r in report.by_type().layers}
    assert {t: int(m) for t, m in df.groupby("type")["macs"].sum().items()} == by_type


def test_to_pandas_without_pandas_says_how_to_install(report: fxcost.Report, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match="needs pandas") as e:
        report.to_pandas()
    assert "pip install pandas" in str(e.value)


@pytest.mark.slow
def test_the_example_notebook_runs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    nb = nbformat.read(ROOT / "examples/notebook.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = {i: cell.outputs for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    html = outputs[1][0]["data"]["text/html"]  # the report as Jupyter shows it
    assert '<table class="fxcost">' in html and "4,089,184,256" in html  # ResNet-50's MACs
    assert "text/markdown" in outputs[1][0]["data"]
    frame = outputs[3][0]["data"]["text/plain"]
    from examples.resnet import resnet50

    convs = sum(r.macs for r in fxcost.analyze(resnet50(), input_size=(1, 3, 224, 224)).layers if r.type == "Conv2d")
    assert f"Conv2d             23454912  {convs}" in frame  # the notebook's frame, summed by pandas
    printed = outputs[5][0]["text"]
    assert printed.split()[:3] == ["4089184256"] * 3  # fxcost, the reproduction, FlopCounterMode itself
