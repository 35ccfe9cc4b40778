"""The output pasted in README.md and docs/ is what the commands print today (tests/doc_outputs.py
runs every documented ``$ `` command; ``python tests/doc_outputs.py --update`` rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import doc_outputs

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_shows_real_output() -> None:
    assert doc_outputs.check_file(ROOT / "README.md", update=False) == []


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted((ROOT / "docs").rglob("*.md")), ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_the_docs_show_real_output(page: Path) -> None:
    pytest.importorskip("transformers")  # the hf: examples
    assert doc_outputs.check_file(page, update=False) == []


def test_every_doc_link_resolves() -> None:
    import re

    for page in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
