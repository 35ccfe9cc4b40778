"""Model specs and input specs, as the CLI writes them: how a model is found and built.

- model: ``path/to/file.py:name`` or ``package.module:name``; ``name`` is an ``nn.Module``
  class, a factory function, or a module instance. ``--arg key=value`` passes constructor
  arguments as Python literals (a bare word that is no literal stays a string).
- ``hf:ClassName`` or ``hf:path/to/config.json``: a transformers model from its config (:mod:`fxcost.loading.hf`).
- input: ``1x3x224x224`` with an optional ``:dtype`` (``1x128:int64``); several positional
  inputs of one call are joined with commas (``1x3x32x32,1x10``); ``name=1x128:int64`` is a
  keyword tensor; ``[3x800x800;3x480x640]`` is one positional list of tensors (a detection
  model's images). An ``--input`` made only of keyword tensors applies to every input size.
  A tensor may be given its values after ``=``: one number fills it (``1x576:int64=32000``, 576
  image tokens), or as many as it has elements, row-major, joined by ``;``
  (``image_grid_thw=1x3:int64=1;16;16``). A tensor given only a shape has no values: the
  analysis takes an integer one as zeros (as ``--real`` makes it) and a float one as unknown.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import reprlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from fxcost.errors import MAX_DIGITS, InputSpecError, SpecError, first_line, printable, quoted
from fxcost.pytorch.sizes import Dims, dims_of, has_letters, is_letter, parse_hints
from fxcost.pytorch.tensors import check_input_size, parse_dtype


def parse_shape(text: str) -> tuple[tuple[Any, ...], torch.dtype]:
    """``"1x3x224x224:float16"`` -> ``((1, 3, 224, 224), torch.float16)``; a size written as a
    letter stays one (``"BxS:int64"`` -> ``(("B", "S"), torch.int64)``: a symbolic size,
    :mod:`fxcost.pytorch.sizes`)."""
    raw = text.strip()
    dims_text, colon, dtype_text = raw.partition(":")
    dtype = parse_dtype(dtype_text) if colon else torch.float32
    parts = re.split("[xX×]", dims_text)
    try:
        dims = tuple(p.strip() if is_letter(p.strip()) else int(p) if len(p.strip()) <= MAX_DIGITS else -1 for p in parts)
    except ValueError:
        raise InputSpecError(
            f"malformed input shape {quoted(text)}",
            hint="write dimensions joined by 'x', e.g. --input 1x3x224x224 or --input 1x128:int64 (a letter for a size "
                 "that varies: --input BxS:int64)",
        ) from None
    if not dims_text or any(isinstance(d, int) and d <= 0 for d in dims):
        raise InputSpecError(
            f"malformed input shape {quoted(text)}: every dimension must be a positive integer or a letter",
            hint="e.g. --input 1x3x224x224",
        )
    if not has_letters(dims):
        check_input_size(dims, dtype, "input")  # type: ignore[arg-type]  # numbers only
    return dims, dtype


#: a shape and its dtype, as one ``--input`` part names them; a part that gives values too is a
#: :data:`Valued`
ShapedDtype = tuple[tuple[int, ...], torch.dtype]
#: a shape, its dtype and its values (one that fills it, or one per element, row-major)
Valued = tuple[tuple[int, ...], torch.dtype, tuple[float | int | bool, ...]]


def _number(text: str, dtype: torch.dtype) -> float | int | bool:
    t = text.strip()
    try:
        if dtype == torch.bool:
            return {"1": True, "0": False, "true": True, "false": False}[t.lower()]
        return float(t) if dtype.is_floating_point or dtype.is_complex else int(t)
    except (KeyError, ValueError):
        raise InputSpecError(f"malformed input value {quoted(t)} for a {str(dtype).removeprefix('torch.')} tensor",
                             hint="one number fills the tensor (1x576:int64=32000); several, joined by ';', "
                                  "give each element (1x3:int64=1;16;16)") from None


def parse_tensor(text: str) -> ShapedDtype | Valued:
    """``"1x3:int64=1;16;16"`` -> ``((1, 3), torch.int64, (1, 16, 16))``; without ``=`` as
    :func:`parse_shape`."""
    shape_text, eq, values_text = text.partition("=")
    dims, dtype = parse_shape(shape_text)
    if not eq:
        return dims, dtype
    if has_letters(dims):
        raise InputSpecError(f"input {quoted(text)} gives values to a tensor whose size is a letter",
                             hint="values fill a tensor of known size: give numbers, or drop the values")
    values = tuple(_number(v, dtype) for v in values_text.split(";"))
    count = 1
    for d in dims:
        count *= d
    if len(values) not in (1, count):
        raise InputSpecError(f"input {quoted(text)} gives {len(values)} values for {count} elements",
                             hint="give one value (it fills the tensor) or one per element, joined by ';'")
    return dims, dtype, values


def _parse_positional(text: str) -> ShapedDtype | Valued | list[ShapedDtype]:
    """One positional input: a shape, or a list of shapes in brackets joined by ``;``
    (``[3x800x800;3x480x640]``: a detection model's list of images)."""
    inner = text.strip()
    if not inner.startswith("["):
        return parse_tensor(text)
    if not inner.endswith("]") or len(inner) < 3:
        raise InputSpecError(f"malformed list of inputs {quoted(text)}",
                             hint="write shapes in brackets joined by ';', e.g. --input '[3x800x800;3x480x640]'")
    return [parse_shape(part) for part in inner[1:-1].split(";")]


def make_inputs(texts: Iterable[str], plain: dict[str, Any] | None = None, any_name: bool = False) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """``--input`` texts -> one (positional, keyword) pair of meta tensors per input size (a list
    in brackets a list of tensors), with ``plain`` keyword values added to each."""

    def meta(shaped: Any) -> Any:
        if isinstance(shaped, list):
            return [meta(s) for s in shaped]
        if len(shaped) == 3:  # given values: a real tensor
            dims, dtype, values = shaped
            if len(values) == 1:
                return torch.full(dims, values[0], dtype=dtype)
            return torch.tensor(values, dtype=dtype).reshape(dims)
        return torch.empty(shaped[0], dtype=shaped[1], device="meta")

    return [(tuple(meta(s) for s in pos), {**(plain or {}), **{k: meta(s) for k, s in kw.items()}})
            for pos, kw in parse_inputs(texts, any_name=any_name)]


def lettered_inputs(texts: Iterable[str], plain: dict[str, Any] | None = None, hints: Any = None,
                    ranges: Any = None) -> tuple[tuple[Any, ...], dict[str, Any], Dims] | None:
    """``--input`` texts with sizes written as letters (``BxS:int64,attention_mask=BxS:int64``):
    the one call they make, as meta tensors at the letters' hints, and its :class:`Dims`; None
    where no size is a letter. Letters in several input sizes (a sweep): :class:`InputSpecError`."""
    texts = list(texts)
    calls = parse_inputs(texts)
    if not _lettered(calls):
        return None
    if len(calls) != 1:
        raise InputSpecError("sizes written as letters make one analysis whose figures hold at every size: give one --input",
                             hint="e.g. --input BxS:int64; report.at(B=8, S=4096) evaluates it at a size")
    ((pos, kw),) = calls
    if any(isinstance(p, list) for p in pos):
        raise InputSpecError("a list of inputs takes numbers, not letters", hint="give each image's size as numbers")
    order = [*pos, *kw.values()]
    dims = dims_of([(t[0], t[1]) if has_letters(t[0]) else None for t in order], parse_hints(hints), ranges)

    def meta(t: Any) -> torch.Tensor:
        return torch.empty(dims.at_hints(t[0]), dtype=t[1], device="meta")

    args, kwargs = tuple(meta(t) for t in pos), {**(plain or {}), **{k: meta(t) for k, t in kw.items()}}
    # the patterns in the pytree order of (args, kwargs), the order the fake run reads them in
    flat, _ = tree_flatten((args, kwargs))
    by_tensor = {id(m): (t[0] if has_letters(t[0]) else None) for m, t in zip([*args, *(kwargs[k] for k in kw)],
                                                                          [*pos, *kw.values()], strict=True)}
    patterns = tuple(by_tensor.get(id(x)) for x in flat if isinstance(x, torch.Tensor))
    return args, kwargs, Dims(patterns, dims.hints, dims.ranges)


def text_has_letters(text: str) -> bool:
    """An ``--input`` text with a size written as a letter (``input_ids=BxS:int64``)."""
    return _lettered(parse_inputs([text]))


def _lettered(calls: list[tuple[list[Any], dict[str, Any]]]) -> bool:
    return any(has_letters(t[0]) for pos, kw in calls for t in _shaped([*pos, *kw.values()]))


def _shape_like(text: str) -> bool:
    """``Bx3x32x32`` or ``BxS``: sizes joined by x (a number among them, or single capital letters),
    not a keyword's name."""
    parts = [p.strip() for p in re.split("[xX×]", text.partition(":")[0])]
    if len(parts) < 2 or not all(p.isdigit() or is_letter(p) for p in parts):
        return False
    return any(p.isdigit() for p in parts) or all(len(p) == 1 and p.isupper() for p in parts)


def _shaped(items: Iterable[Any]) -> list[Any]:
    return [t for t in items if not isinstance(t, list)]


def parse_inputs(texts: Iterable[str], any_name: bool = False) -> list[tuple[list[Any], dict[str, ShapedDtype | Valued]]]:
    """All ``--input`` values -> one ``(positional, keyword)`` pair per input size.

    ``["1x128:int64", "attention_mask=1x128:int64"]`` -> one call with a positional tensor and
    a keyword tensor; ``["1x3x32x32", "1x3x64x64"]`` -> two calls (a sweep). ``any_name``
    accepts any keyword name (an ONNX graph input's), not only Python identifiers."""
    calls: list[tuple[list[Any], dict[str, ShapedDtype | Valued]]] = []
    shared: dict[str, ShapedDtype | Valued] = {}
    for text in texts:
        positional: list[Any] = []
        keyword: dict[str, ShapedDtype | Valued] = {}
        for part in text.split(","):
            name, eq, shape = part.partition("=")
            # 1x576:int64=32000 (or Bx576:int64=...) is a positional tensor with values
            if eq and not name.strip()[:1].isdigit() and not _shape_like(name):
                # an ONNX graph's inputs may be named anything (input.1, input:0, onnx::Gemm_0)
                if not (name.strip() if any_name else name.strip().isidentifier()):
                    raise InputSpecError(f"malformed keyword input {part!r}", hint="write --input name=SHAPE, e.g. --input attention_mask=1x128:int64")
                keyword[name.strip()] = parse_tensor(shape)
            else:
                positional.append(_parse_positional(part))
        if positional:
            calls.append((positional, keyword))
        else:
            shared.update(keyword)
    if not calls:
        calls.append(([], {}))
    return [(pos, {**shared, **kw}) for pos, kw in calls]


#: a value that starts like one of these is meant as a Python literal, not a bare word
_LITERAL_START = tuple("[({'\"0123456789-+.")


def parse_literal(text: str, what: str = "value") -> Any:
    """A Python literal (``10``, ``(1, 64)``, ``'relu'``, ``None``); a bare word (``relu``) is that
    string. Something that starts like a literal and is not one is an :class:`InputSpecError`, not
    a string: ``[1, 2`` was meant as a list."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        if not text.startswith(_LITERAL_START):
            return text
        shown = text if len(text) <= 60 else text[:57] + "..."
        reason = "too deeply nested" if isinstance(e, (MemoryError, RecursionError)) else first_line(e, 120)
        raise InputSpecError(f"{what}: {shown!r} is not a Python literal ({reason})",
                             hint="write a number, a string, a tuple or list of them, True/False or None; e.g. --arg arch=((1, 64),)") from None


def parse_kv(items: Iterable[str], flag: str = "--arg") -> dict[str, Any]:
    """``["num_classes=10", "arch=((1, 64),)"]`` -> ``{"num_classes": 10, "arch": ((1, 64),)}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputSpecError(f"malformed {flag} {item!r}", hint=f"write {flag} name=value, e.g. {flag} num_classes=10")
        out[key.strip()] = parse_literal(value.strip(), f"{flag} {key.strip()}")
    return out


def import_file(path: Path) -> Any:
    """Run a Python file as a module of its own (its folder on ``sys.path`` while it runs); a
    file that does not import is a :class:`SpecError` naming the exception."""
    if not path.exists():
        raise SpecError(f"model file {str(path)!r} does not exist", hint="check the path before ':'")
    mod_name = f"_fxcost_spec_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot import {str(path)!r} as Python", hint="a model file must end in .py")
    module = importlib.util.module_from_spec(spec)
    # The file's folder goes on sys.path while it runs, so it can import its siblings.
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[mod_name] = module
    # the file sees the command line of a script run with no arguments, not fxcost's: one that
    # parses sys.argv at import (a training script with argparse at its top) reads no fxcost flag
    argv, sys.argv = sys.argv, [str(path)]
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:
        sys.modules.pop(mod_name, None)
        raise SpecError(f"importing {str(path)!r} stopped: its code called sys.exit({e.code!r}) at import (what it printed "
                        f"above is its own)", source=_line_in(e, path),
                        hint="keep a script's own run under `if __name__ == \"__main__\":`, so that importing the file "
                             "only defines the model") from None
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise SpecError(
            f"importing {str(path)!r} failed: {type(e).__name__}: {e}",
            hint="run `python " + str(path) + "` to see the error in full, or pass --debug",
        ) from e
    finally:
        sys.argv = argv
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    return module


def _line_in(e: BaseException, path: Path) -> str:
    """``file.py:12, in <module>: args = parser.parse_args()``: the last line of ``path`` that
    ``e`` passed through."""
    import traceback

    mine = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f"{printable(str(path))}:{mine[-1].lineno}, in {mine[-1].name}: {(mine[-1].line or '').strip()}" if mine else ""


def _import_module(name: str) -> Any:
    argv, sys.argv = sys.argv, [name]  # as import_file: the module reads no fxcost flag
    try:
        return importlib.import_module(name)
    except SystemExit as e:
        raise SpecError(f"importing module {name!r} stopped: its code called sys.exit({e.code!r}) at import (what it "
                        f"printed above is its own)", hint="keep a script's own run under `if __name__ == \"__main__\":`") from None
    except Exception as e:
        raise SpecError(
            f"cannot import module {name!r}: {type(e).__name__}: {e}",
            hint="give a file path (path/to/file.py:name) or a module on the Python path (package.module:name)",
        ) from e
    finally:
        sys.argv = argv


def _candidates(module: Any) -> list[str]:
    names = []
    for k, v in vars(module).items():
        if k.startswith("_"):
            continue
        if (inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__) or (
            inspect.isfunction(v) and v.__module__ == module.__name__
        ) or isinstance(v, nn.Module):
            names.append(k)
    return sorted(names)


def load_model(spec: str, args: dict[str, Any] | None = None, config: dict[str, Any] | None = None, *,
               hf_weights: bool = False, meta: bool = False) -> tuple[nn.Module, str]:
    """Build the model a spec names. Returns the module and a display name. ``config`` sets
    fields of an ``hf:`` model's config; ``args`` are other models' constructor arguments.
    ``hf_weights`` builds an ``hf:`` model with real random weights instead of on meta.

    ``meta`` builds a class or factory under ``torch.device("meta")``: its weights get a shape
    and no values, so building costs nothing (a static analysis never reads them; an ``hf:`` model
    is built so unless ``hf_weights``). A constructor that cannot run on meta (it reads a tensor's
    value: ``.item()``, ``.tolist()``, NumPy) is built again on the CPU, and a note on stderr says so."""
    if spec.startswith("hf:"):
        if args:
            raise SpecError("--arg passes constructor arguments; an hf: model takes --config key=value", hint="e.g. --config n_layer=6")
        from fxcost.loading.hf import load_hf

        return load_hf(spec, config, meta=not hf_weights)
    if config:
        raise SpecError("--config sets fields of an hf: model's config", hint="use --arg key=value for the constructor of " + spec)
    from fxcost.loading.zoos import load_zoo, zoo_of

    if zoo_of(spec) is not None:
        return load_zoo(spec, args, meta=meta)
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise SpecError(
            f"model spec {spec!r} has no ':name'",
            hint="write path/to/file.py:name or package.module:name, e.g. examples/vgg.py:vgg19",
        )
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    module = import_file(Path(target)) if is_file else _import_module(target)
    if not hasattr(module, attr):
        found = ", ".join(_candidates(module)) or "none"
        raise SpecError(f"{target!r} has no {attr!r}", hint=f"models and factories found there: {found}")
    return _build(getattr(module, attr), attr, spec, args or {}, module, meta)


def _build(obj: Any, attr: str, spec: str, args: dict[str, Any], module: Any, meta: bool = False) -> tuple[nn.Module, str]:
    """The model ``obj`` is (an instance) or makes (a class or factory called with ``args``, on
    meta where ``meta`` and the constructor allows it)."""
    if isinstance(obj, nn.Module):
        if args:
            raise SpecError(f"{spec!r} is a module instance; --arg needs a class or a factory", hint="drop --arg, or name the class or factory that builds it")
        return obj, attr
    if not callable(obj):
        raise SpecError(f"{spec!r} is a {type(obj).__name__}, not a model, class or factory", hint=f"models and factories found there: {', '.join(_candidates(module)) or 'none'}")
    on_meta: Exception | None = None  # why the constructor could not run on meta
    if meta:
        built, on_meta = _built_on_meta(obj, args)
        if built is not None:
            return built, attr
    try:
        model = obj(**args)
    except TypeError as e:
        raise SpecError(
            f"calling {attr}({', '.join(f'{k}={reprlib.repr(v)}' for k, v in args.items())}) failed: {first_line(e)}",
            hint=f"check the --arg names against {attr}{_signature(obj)}",
        ) from e
    except Exception as e:
        raise SpecError(f"building {attr} failed: {type(e).__name__}: {first_line(e)}", hint="pass --debug for the traceback") from e
    if not isinstance(model, nn.Module):
        raise SpecError(f"{attr}(...) returned a {type(model).__name__}, not an nn.Module", hint="name a class or factory that returns an nn.Module")
    if on_meta is not None:
        print(printable(f"fxcost: note: {attr} cannot be built on the meta device ({type(on_meta).__name__}: "
                        f"{first_line(on_meta)}); built on the CPU, with real weights"), file=sys.stderr)
    return model, attr


def _built_on_meta(obj: Any, args: dict[str, Any]) -> tuple[nn.Module | None, Exception | None]:
    """The model ``obj(**args)`` builds under ``torch.device("meta")``, or why it could not."""
    try:
        with torch.device("meta"):
            model = obj(**args)
    except Exception as e:  # e.g. .item() on a meta tensor: the constructor needs values
        return None, e
    return (model, None) if isinstance(model, nn.Module) else (None, None)


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
