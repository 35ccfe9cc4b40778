"""The HTML report: one self-contained file (nothing fetched from a network), with the diagram,
a sortable table, totals, charts and, for several input sizes, the sweep plot; and a real
headless browser (Debian's chromium, driven by selenium through Debian's chromedriver) that loads
it without console errors, clicks a node and sees its row highlighted. The screenshot is kept
in test-artifacts/ (or $FXCOST_ARTIFACTS)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import fxcost
from examples.vgg import d2l_vgg11
from fxcost.cli import main
from tests.conftest import ROOT, flop_counter_flops

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (.ci/run installs it)")
D2L = str(ROOT / "examples/vgg.py") + ":d2l_vgg11"
VGG11 = str(ROOT / "examples/vgg.py") + ":vgg11"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (.ci/run installs it)")
    path = tmp_path_factory.mktemp("report") / "vgg11.html"
    assert main(["report", D2L, "--input", "1x3x224x224", "-o", str(path)]) == 0
    return path


def test_report_is_self_contained(report_html: Path) -> None:
    page = report_html.read_text()
    assert "<svg" in page and 'id="layers"' in page and "<script>" in page
    # nothing to fetch: no external scripts, styles, images or fonts
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)=', page)
    assert "url(" not in page
    # every row of the report is in the table, and every node in the diagram has its row
    report = fxcost.analyze(d2l_vgg11(), input_size=(1, 3, 224, 224))
    assert len(re.findall(r'<tr id="tr-\d+"', page)) == len(report.layers)
    nodes = re.findall(r'<g id="row&#45;(\d+)" class="node"', page)  # Graphviz writes "-" as &#45;
    assert len(nodes) == len(report.layers)
    for node in nodes:
        assert f'id="tr-{node}"' in page
    assert "128,807,306" in page  # the seed's d2l VGG-11 params total


@needs_dot
def test_report_sweep_plot(tmp_path: Path) -> None:
    path = tmp_path / "sweep.html"
    assert main(["report", VGG11, "-i", "1x3x64x64", "-i", "1x3x128x128", "-i", "1x3x224x224", "--depth", "1", "-o", str(path)]) == 0
    page = path.read_text()
    assert page.count('class="chart sweep"') == 3  # params, MACs, activation memory
    from examples.vgg import vgg11

    # VGG-11's MACs are all conv and linear: PyTorch's own counter, 2 FLOPs per MAC
    macs = [flop_counter_flops(vgg11(), torch.randn(1, 3, s, s)) // 2 for s in (64, 128, 224)]
    for m in macs:  # each point carries its exact value
        assert f"{m:,} MACs" in page


def test_report_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["report", D2L, "--input", "1x3x224x224", "-o", str(tmp_path / "r.pdf")]) == 2
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["report", D2L, "--input", "1x3x224x224", "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")


def chromium() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.browser
@browser
def test_report_in_a_real_browser(report_html: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        driver.get(report_html.as_uri())
        assert driver.title == "fxcost: d2l_vgg11"
        nodes = driver.find_elements(By.CSS_SELECTOR, ".diagram g.node")
        rows = driver.find_elements(By.CSS_SELECTOR, "#layers tbody tr")
        # 1 input + the blocks' 3 + 3 + 5 + 5 + 5 layers + Flatten + 7 classifier layers = 30
        assert len(rows) == 30 and len([n for n in nodes if (n.get_attribute("id") or "").startswith("row-")]) == 30
        assert driver.find_element(By.CSS_SELECTOR, ".diagram svg").size["height"] > 100  # it rendered
        conv = driver.find_element(By.ID, "row-4")  # net.1.0, the second block's conv
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", conv)
        conv.click()
        assert "hl" in driver.find_element(By.ID, "tr-4").get_attribute("class")
        assert driver.find_element(By.ID, "tr-4").find_elements(By.TAG_NAME, "td")[1].text == "net.1.0"
        # sorting by MACs puts the largest layer first
        header = driver.find_elements(By.CSS_SELECTOR, "#layers th")[9]
        header.click()
        header.click()
        first = driver.find_elements(By.CSS_SELECTOR, "#layers tbody tr")[0]
        # the largest layers: a 256 -> 256 3x3 conv at 56x56 (and 512 -> 512 at 28x28, the same count)
        assert first.find_elements(By.TAG_NAME, "td")[9].text == f"{56 * 56 * 256 * 256 * 3 * 3:,}"
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        artifacts = Path(os.environ.get("FXCOST_ARTIFACTS", ROOT / "test-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(artifacts / "report.png"))
    finally:
        driver.quit()


@pytest.mark.browser
@browser
def test_clicking_a_collapsed_block_finds_its_first_row(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    path = tmp_path / "resnet.html"
    assert main(["report", str(ROOT / "examples/resnet.py") + ":resnet18", "-i", "1x3x64x64", "--depth", "1", "-o", str(path)]) == 0
    driver = chromium()
    try:
        driver.get(path.as_uri())
        for node in driver.find_elements(By.CSS_SELECTOR, ".diagram g.node"):
            name = node.find_element(By.TAG_NAME, "text").get_attribute("textContent").split(": ")[0]  # "layer1: BasicBlock"
            if not (node.get_attribute("id") or "").startswith("row-"):
                continue
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", node)
            driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", node)
            row = driver.find_element(By.CSS_SELECTOR, "#layers tr.hl")
            layer = row.find_elements(By.TAG_NAME, "td")[1].text
            # a block's node finds the block's first layer; a layer's node finds itself
            assert layer == name or layer.startswith(name + "."), (name, layer)
        assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
    finally:
        driver.quit()
