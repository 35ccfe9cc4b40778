"""Keep the output pasted in the docs real: run every documented command and compare (or rewrite).

A documented command is a fenced ``text`` block in README.md or docs/**/*.md whose first line is
``$ fxcost ...`` (or another ``$ `` command); each ``$ `` line is run with bash in a scratch
folder holding a link to examples/, and the lines after it, up to the next ``$ ``, are its
output (stdout and stderr together). ``$ echo $?`` prints the previous command's exit code. A
line ``...`` elides the middle of a long output: the lines above it must be the output's first
lines and the lines below it its last. Durations (``7.2 s``) compare as any duration, and
onnxruntime's max abs diff (of a model with fresh random weights) as any number.

    python tests/doc_outputs.py            # check every block; exit 1 naming the first mismatch
    python tests/doc_outputs.py --update   # rewrite the blocks from a fresh run (review the diff)
    python tests/doc_outputs.py docs/commands/review.md   # only these files

The table width is fixed (``COLUMNS=160``, as a pipe gets), so a run is reproducible.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```text\n(\$ .*?)^```\n", re.M | re.S)
_DURATION = re.compile(r"\b\d+(\.\d+)? s\b")
#: onnxruntime against PyTorch on a model with fresh random weights: a different tiny number each run
_ROUNDING = re.compile(r"max abs diff [0-9.e+-]+")


@dataclass
class Step:
    command: str
    expected: list[str]


def _steps(block: str) -> list[Step]:
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append(Step(line[2:], []))
        elif steps:
            steps[-1].expected.append(line)
    return steps


def _run(steps: list[Step], folder: Path) -> list[list[str]]:
    # the fxcost of this interpreter's environment, tables 160 wide as a pipe gets them
    env = {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    outputs, code = [], 0
    for step in steps:
        if step.command.strip() == "echo $?":
            outputs.append([str(code)])
            continue
        done = subprocess.run(["bash", "-c", f"{step.command} 2>&1"], cwd=folder, env=env, capture_output=True,
                              text=True, check=False)
        code = done.returncode
        outputs.append(done.stdout.rstrip("\n").splitlines())
    return outputs


def _normal(line: str) -> str:
    return _ROUNDING.sub("max abs diff X", _DURATION.sub("N s", line.rstrip()))


def _same(expected: list[str], got: list[str]) -> bool:
    norm = [_normal(ln) for ln in expected]
    have = [_normal(ln) for ln in got]
    if "..." in norm:
        cut = norm.index("...")
        head, tail = norm[:cut], norm[cut + 1:]
        return have[:len(head)] == head and (not tail or have[-len(tail):] == tail) and len(have) >= len(head) + len(tail)
    return have == norm


def _rewritten(expected: list[str], got: list[str]) -> list[str]:
    """The fresh output, elided where the old one was (the same number of lines each side)."""
    if "..." not in expected:
        return [ln.rstrip() for ln in got]
    cut = expected.index("...")
    head, tail = cut, len(expected) - cut - 1
    if len(got) <= head + tail:
        return [ln.rstrip() for ln in got]
    return [ln.rstrip() for ln in got[:head]] + ["..."] + [ln.rstrip() for ln in got[len(got) - tail:]] if tail else \
        [ln.rstrip() for ln in got[:head]] + ["..."]


def check_file(path: Path, update: bool) -> list[str]:
    """Mismatches in ``path`` (rewritten in place with ``update``)."""
    text = path.read_text()
    problems: list[str] = []
    pieces: list[str] = []
    last = 0
    with tempfile.TemporaryDirectory(prefix="fxcost-docs-") as tmp:
        folder = Path(tmp)
        (folder / "examples").symlink_to(ROOT / "examples")
        for name in ("sitecustomize.py", "torchvision_stub.py"):  # a command that sets PYTHONPATH=. keeps the
            (folder / name).symlink_to(ROOT / "tests" / "site" / name)  # test runs' torchvision setup
        for m in _FENCE.finditer(text):
            steps = _steps(m.group(1))
            outputs = _run(steps, folder)
            new_block = []
            for step, got in zip(steps, outputs, strict=True):
                if not _same(step.expected, got):
                    line = text[: m.start()].count("\n") + 1
                    problems.append(f"{path.relative_to(ROOT)}:{line}: `{step.command}` printed something else"
                                    + (f"; first line: {got[0]!r}" if got else ""))
                new_block += [f"$ {step.command}", *(_rewritten(step.expected, got) if update else step.expected)]
            pieces += [text[last:m.start()], "```text\n" + "\n".join(new_block) + "\n```\n"]
            last = m.end()
    pieces.append(text[last:])
    if update:
        path.write_text("".join(pieces))
    return problems


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, help="the documents to check (default: README.md and docs/)")
    p.add_argument("--update", action="store_true", help="rewrite each block from a fresh run")
    args = p.parse_args()
    problems = []
    for f in [f.resolve() for f in args.files] or documents():
        problems += check_file(f, args.update)
    for line in problems:
        print(line)
    print(f"{len(problems)} block(s) differ" + (" (rewritten)" if args.update and problems else ""))
    return 1 if problems and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
