"""The package's shape, checked: imports point one way (docs/architecture.md).

Each module's imports of fxcost are read from its source (``ast``), not by importing it, so the
check sees every import, also those inside functions. The arrows:

    loading -> (nothing but errors)
    report (the data model and its queries) -> (nothing; review's parsers raise fxcost.errors)
    counting (the route-neutral core) -> report, errors
    pytorch (the PyTorch route) -> counting, report, errors
    onnx (the ONNX route) -> counting, report, errors, io; only its export and cross-check, which
        start from a PyTorch model, reach into the PyTorch route
    exporters -> report, errors
    cli -> anything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fxcost"

#: what each part of the package may import from fxcost (its own part is always allowed)
ALLOWED = {
    "errors": set(),
    "_version": set(),
    "io": {"errors"},
    "loading": {"pytorch", "errors"},  # it builds models; dtype names
    "report": {"errors"},
    "counting": {"report", "errors"},
    "pytorch": {"counting", "report", "errors"},
    "onnx": {"counting", "report", "errors", "io"},
    "exporters": {"report", "errors"},
    "summarize": {"pytorch", "exporters", "report", "errors"},  # torchinfo's call: analyze, then print the table
    "peers": {"pytorch", "counting", "report", "errors"},  # other tools' counts, reproduced on fxcost's meta copy
    # the public functions: thin, over the routes; an input size given as --input's text is read by loading's parser
    "api": {"pytorch", "peers", "summarize", "counting", "report", "errors", "loading"},
    "zoo_sweep": {"api", "loading", "pytorch", "errors"},  # fxcost zoo's workers: build by name, analyze, check
    "cli": None,  # the command line calls everything
    "__init__": {"_version", "_public"},  # imports nothing heavy: the public names load from _public on first use
    "_public": None,  # the public API re-exports everything
    "__main__": None,
}
#: the ONNX modules that export or cross-check a PyTorch model
ONNX_FROM_PYTORCH = {"onnx/export.py", "onnx/crosscheck.py"}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The fxcost parts ``path`` imports (``fxcost.counting.rows`` -> ``counting``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            if name == "fxcost":  # the whole public API: a part below it importing it is a cycle
                found.add("__init__")
            elif name.startswith("fxcost."):
                found.add(name.split(".")[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    part = _part(path)
    allowed = ALLOWED[part]
    if allowed is None:
        return
    extra = {"pytorch"} if str(path.relative_to(PACKAGE)) in ONNX_FROM_PYTORCH else set()
    wrong = _imports(path) - allowed - extra - {part}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({part}) imports {sorted(wrong)}"


def test_the_data_model_imports_nothing_of_fxcost() -> None:
    for name in ("kinds.py", "records.py", "report.py", "compare.py", "crosscheck.py"):
        assert _imports(PACKAGE / "report" / name) <= {"report"}, name


def test_every_part_is_known() -> None:
    assert {_part(p) for p in MODULES} <= set(ALLOWED)


#: the process-wide containers the package changes after import, each with its reason in
#: docs/architecture.md ("Conventions of the code")
PROCESS_WIDE = {"_DEFAULT", "_FORMULAS_READ", "_RESULTS", "STAGING", "NOTEBOOK", "_HANDLES"}
_MUTATING = {"append", "extend", "insert", "pop", "clear", "update", "add", "remove", "discard", "setdefault", "popitem"}
_CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _module_containers(tree: ast.Module) -> set[str]:
    """The names a module binds at its top level to a list, dict or set."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        made = isinstance(value, _CONTAINERS) or (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                                                   and value.func.id in ("dict", "list", "set", "OrderedDict", "defaultdict"))
        found |= {t.id for t in targets if isinstance(t, ast.Name) and made}
    return found


def _changed_names(tree: ast.Module) -> set[str]:
    """The names (or attributes, ``options._RESULTS``) a module calls a mutating method on or
    assigns an item of, with ``from ... import X as Y`` read back to ``X``."""
    aliases = {a.asname: a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names if a.asname}

    def name(v: ast.expr) -> str | None:
        found = v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else None
        return aliases.get(found, found) if found else None

    changed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATING:
            changed.add(name(node.func.value))
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        changed |= {name(t.value) for t in targets if isinstance(t, ast.Subscript)}
    return {n for n in changed if n}


def test_the_process_wide_state_is_the_documented_one() -> None:
    trees = [ast.parse(p.read_text()) for p in MODULES]
    containers = set().union(*(_module_containers(t) for t in trees))
    changed = containers & set().union(*(_changed_names(t) for t in trees))
    assert changed == PROCESS_WIDE
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert all(f"{n}`" in doc for n in PROCESS_WIDE)


#: the calls that put module hooks on a model
_HOOKS = ("register_forward_hook", "register_forward_pre_hook", "register_module_forward_hook",
          "register_module_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook")


def test_one_module_tracker() -> None:
    # docs/architecture.md: fxcost follows module calls with one tracker, eager.ModuleStack (the fake
    # run, the symbolic route's path check, the memory step and the input checks use it); the tool
    # reproductions under peers/ hook what each tool hooks, since their numbers depend on it
    hooking = set()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "peers":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in _HOOKS:
                hooking.add(str(path.relative_to(PACKAGE)))
    assert hooking == {"pytorch/eager.py"}


def test_the_public_names_are_listed_alike() -> None:
    """``fxcost/__init__.py`` names the public API three times (its ``__all__``, the imports a type
    checker reads, and through :mod:`fxcost._public`'s ``__all__``, what loads on first use): one
    list, or a name is importable and undocumented, or documented and missing."""
    import fxcost
    from fxcost import _public

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module == "fxcost._public" for a in node.names}
    assert set(fxcost.__all__) - {"__version__"} == set(_public.__all__) == typed
    assert all(getattr(fxcost, name) is getattr(_public, name) for name in _public.__all__)
