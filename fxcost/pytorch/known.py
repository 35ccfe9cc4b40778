"""The values a data-free run knows: those of the inputs, and of what is computed from them alone.

A fake run has no values, yet fxcost knows some: the integer inputs it made from a shape are zeros
(as ``--real`` makes them), an input the caller gave as a real tensor has its own, and a constant
the forward makes (``torch.arange(n)``, ``torch.tensor([1, 2])``) has one. :class:`KnownValues`
sits between the op recorder and the fake mode and runs every op whose tensor operands all have
known values once more on those values (real CPU tensors beside the fake ones). So a forward that
reads a value computed from its inputs alone (Longformer's ``is_index_global_attn.any().item()``,
FSMT's ``if not padding_mask.any():``, a ``torch.where(mask)`` on the token ids) reads the value
that a real run with those inputs reads, and goes on data-free. A value computed from the weights
or from an activation is not known: that read is refused, as before, at its line.

A tensor's known value is dropped when an op whose operands are not all known writes into its
storage, and none is kept for a tensor larger than :attr:`KnownValues.LIMIT` elements (the time of
a data-free run grows with the graph, not with the batch) or made by a random op.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from fxcost.pytorch.memory import storage_key
from fxcost.pytorch.recorder import DispatchMode, run_tagged
from fxcost.pytorch.tensors import tensors_in

#: ops whose output has no defined value (``torch.empty``): what they make is not known
_UNDEFINED = frozenset({"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::new_empty",
                        "aten::new_empty_strided", "aten::empty_permuted"})


#: ops whose output shape depends on the values of some arguments only (their places): the
#: others' values may be unknown (``x[mask]``: the mask decides how many rows)
_SHAPED_BY: dict[str, frozenset[int]] = {
    "aten::index": frozenset({1}),  # self[indices]: a boolean mask among the indices
    "aten::masked_select": frozenset({1}),
    "aten::repeat_interleave": frozenset({1}),  # self_Tensor: (self, repeats)
}


@functools.cache
def _schema_facts(func: Any) -> tuple[str, bool, tuple[int, ...]]:
    """The op's name, whether its values are random, and the places of the arguments it writes."""
    schema = func._schema
    written = tuple(i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write)
    return schema.name, torch.Tag.nondeterministic_seeded in func.tags, written


def _on_cpu(x: Any) -> Any:
    """An op argument for the run on values: a device becomes the CPU (where the values are)."""
    if isinstance(x, torch.device):
        return torch.device("cpu")
    return x


class KnownValues(DispatchMode):
    """Follows the values known in a fake run (see the module's text). ``given``: each input as
    the fake tensor the run sees, with its value. :attr:`reads` lists where the forward read a
    known value that a fake tensor could not give (``file:line, in function: code``)."""

    #: the most elements a tensor may have to keep its value
    LIMIT = 1 << 24

    def __init__(self, given: Iterable[tuple[torch.Tensor, torch.Tensor]] = ()) -> None:
        super().__init__()
        self.values: dict[int, tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}
        self.reads: list[str] = []
        for fake, value in given:
            if value.numel() <= self.LIMIT:
                self._keep(fake, value.detach())

    def _keep(self, fake: torch.Tensor, value: torch.Tensor) -> None:
        key = id(fake)

        def forget(_: Any, key: int = key) -> None:
            self.values.pop(key, None)

        self.values[key] = (weakref.ref(fake, forget), value)

    def value(self, t: torch.Tensor) -> torch.Tensor | None:
        """``t``'s known value; a real tensor (a constant the forward made) is its own."""
        if not isinstance(t, torch._subclasses.FakeTensor) and t.device.type != "meta":
            return t
        entry = self.values.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def _forget_storage(self, written: Sequence[torch.Tensor]) -> None:
        """An op that does not run on values wrote into ``written``: every tensor over the same
        storage (a view of it, its base) no longer has a known value."""
        keys = {storage_key(t) for t in written} - {None}
        if not keys:
            return
        for key, (ref, _) in list(self.values.items()):
            t = ref()
            if t is not None and storage_key(t) in keys:
                self.values.pop(key, None)

    def _on_values(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any], unknown_as_zeros: bool = False) -> Any:
        """``func`` run on the known values (each operand known: see :meth:`__torch_dispatch__`;
        or ``unknown_as_zeros``)."""
        from torch.utils._python_dispatch import _disable_current_modes

        def real(x: Any) -> Any:
            if not isinstance(x, torch.Tensor):
                return _on_cpu(x)
            v = self.value(x)
            if v is None and unknown_as_zeros:
                with _disable_current_modes():
                    return torch.zeros(x.shape, dtype=x.dtype)
            return v

        r_args, r_kwargs = tree_map(real, (tuple(args), kwargs))
        with _disable_current_modes(), torch.no_grad():
            return func(*r_args, **r_kwargs)

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

        kwargs = kwargs or {}
        name, random, written = _schema_facts(func)
        operands = tensors_in((args, kwargs))
        known = not random and name not in _UNDEFINED and all(self.value(t) is not None for t in operands)
        if name == "aten::embedding":
            self._in_range(args[0], args[1])
        try:
            out = run_tagged(func, args, kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException):
            if known:
                return self._read(func, args, kwargs, operands)
            if self._shaped_by_known(func, args, kwargs):
                return self._read(func, args, kwargs, operands, values=False)
            raise
        except Exception as e:  # a plain meta tensor (a literal made on meta) refuses a read otherwise
            if not known or not operands or all(isinstance(t, torch._subclasses.FakeTensor) for t in operands):
                raise
            try:
                return self._read(func, args, kwargs, operands)
            except Exception:
                raise e from None
        if known:
            self._follow(func, args, kwargs, out)
        elif written:
            self._forget_storage([a for i, a in enumerate(args) if i in written and isinstance(a, torch.Tensor)]
                                 + tensors_in(kwargs.get("out")))
        return out

    def _in_range(self, weight: torch.Tensor, ids: torch.Tensor) -> None:
        """A lookup of known ids fails as a real one does where an id is not a row of ``weight``
        (an image token id past a default config's vocabulary): a fake tensor would look up any."""
        from torch.utils._python_dispatch import _disable_current_modes

        value = self.value(ids)
        if value is None or not value.numel():
            return
        with _disable_current_modes():
            low, high, rows = int(value.min()), int(value.max()), weight.shape[0]
        if low < 0 or high >= rows:
            raise IndexError(f"index out of range in self: id {high if high >= rows else low} of a {rows}-row embedding")

    def _follow(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> None:
        """Each output of an op whose operands are all known gets its value (none above the limit)."""
        outs = tensors_in(out)
        if not outs or any(o.numel() > self.LIMIT for o in outs):
            return
        try:
            values = tensors_in(self._on_values(func, args, kwargs))
        except Exception:  # the op does not run on these values as it did on fake ones: not known
            return
        if len(values) == len(outs):
            for o, v in zip(outs, values, strict=True):
                if o.shape == v.shape and o.dtype == v.dtype:
                    self._keep(o, v)

    def _shaped_by_known(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        """The op's output shape depends only on values that are known (``x[mask]`` with a known
        mask and an unknown ``x``)."""
        name, random, _ = _schema_facts(func)
        deciding = _SHAPED_BY.get(name)
        if deciding is None or random or kwargs:
            return False
        decisive = tensors_in([a for i, a in enumerate(args) if i in deciding])
        return bool(decisive) and all(self.value(t) is not None for t in decisive)

    def _read(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any], operands: Sequence[torch.Tensor],
              values: bool = True) -> Any:
        """An op a fake tensor cannot answer (a value read back, an output shaped by values) whose
        operands are all known (or, not ``values``, those that decide its output's shape: the
        others are taken as zeros, and its outputs' values are not known): its answer from the
        values, its tensors as fake ones."""
        result = self._on_values(func, args, kwargs, unknown_as_zeros=not values)
        self.reads.append(_callers_line())
        if not tensors_in(result):
            return result
        device = operands[0].device if operands else torch.device("cpu")

        def faked(v: Any) -> Any:
            if not isinstance(v, torch.Tensor):
                return v
            fake = torch.empty_strided(v.shape, v.stride(), dtype=v.dtype, device=device)
            if values:
                self._keep(fake, v)
            return fake

        leaves, spec = tree_flatten(result)
        return spec.unflatten([faked(v) for v in leaves])


def _callers_line() -> str:
    """The line of the model's code running now (``file:line, in function: code``), "" if none."""
    from fxcost.pytorch.diagnosis import last_user_line

    return last_user_line(traceback.extract_stack())


def given_values(originals: Any, prepared: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(prepared input, its value)`` for the inputs whose values fxcost knows: ``originals``
    as the caller gave them and ``prepared`` (the same structure) as the analysis holds them. A
    real tensor the caller gave has its own value; an integer or boolean one fxcost made from a
    shape is zeros, as ``--real`` makes it. A float made from a shape has none (``--real`` draws
    it at random)."""
    given, _ = tree_flatten(originals)
    held, _ = tree_flatten(prepared)
    if len(given) != len(held):
        return
    for g, h in zip(given, held, strict=True):
        if not isinstance(g, torch.Tensor) or not isinstance(h, torch.Tensor) or g.shape != h.shape:
            continue
        if g.device.type != "meta" and not isinstance(g, torch._subclasses.FakeTensor):
            if g.dtype == h.dtype:
                yield h, g
        elif not (h.dtype.is_floating_point or h.dtype.is_complex):
            yield h, torch.zeros(h.shape, dtype=h.dtype)


class _Literals(TorchFunctionMode):
    """Keeps the value of a tensor the forward writes out (``torch.tensor([2], device=x.device)``):
    on the meta device torch makes it without dispatching an op that holds the value."""

    def __init__(self, known: KnownValues) -> None:
        super().__init__()
        self.known = known

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _LITERAL and isinstance(out, torch.Tensor) and out.device.type == "meta" and args \
                and not tensors_in(args[0]) and out.numel() <= self.known.LIMIT:
            from torch.utils._python_dispatch import _disable_current_modes

            with _disable_current_modes(), torch._C.DisableTorchFunction():
                value = torch.tensor(args[0], dtype=out.dtype)
            if value.shape == out.shape:
                self.known._keep(out, value)
        return out


_LITERAL = {torch.tensor, torch.as_tensor}


class Knowing:
    """The fake mode with :class:`KnownValues` above it, as one context that can be entered again
    (the forward, then its backward, then a step that measures memory)."""

    def __init__(self, fake_mode: Any, known: KnownValues) -> None:
        self.fake_mode, self.known = fake_mode, known
        self._stacks: list[contextlib.ExitStack] = []

    def __enter__(self) -> Knowing:
        stack = contextlib.ExitStack()
        stack.enter_context(self.fake_mode)
        stack.enter_context(self.known)
        stack.enter_context(_Literals(self.known))
        self._stacks.append(stack)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stacks.pop().__exit__(*exc)


def knowing(fake_mode: Any, known: Sequence[tuple[torch.Tensor, torch.Tensor]], held: Any, faked: Any,
            buffers: Iterable[tuple[torch.Tensor, torch.Tensor]] = ()) -> Knowing:
    """``fake_mode`` following the known values ``known`` (``(input as held, value)`` pairs:
    :func:`given_values`) of the inputs ``held``, which the run sees as ``faked`` (the same
    structure, each tensor its fake), and ``buffers`` (``(fake buffer, value)``: :func:`buffer_values`)."""
    values = {id(h): v for h, v in known}
    pairs = [(f, values[id(h)]) for h, f in zip(tree_flatten(held)[0], tree_flatten(faked)[0], strict=False)
             if id(h) in values and isinstance(f, torch.Tensor)]
    return Knowing(fake_mode, KnownValues([*pairs, *buffers]))


#: the values of buffers a model built on meta by fxcost (``hf:``) made from literals, by name
_BUILT: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.Tensor]] = weakref.WeakKeyDictionary()


def built_on_meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` (a constructor run under ``torch.device("meta")``), keeping the values of the
    buffers it makes from literals (a codec's ``register_buffer("stride", torch.tensor(stride))``):
    on meta they have none, and a forward that reads one (a padding computed from the stride)
    reads the value a model with weights has. :func:`real_buffers` gives them."""
    known = KnownValues()
    with known, _Literals(known):  # a literal, and what the constructor computes from literals alone
        model = build()
    values = {name: v for name, b in model.named_buffers(remove_duplicate=False) if (v := known.value(b)) is not None
              and b.device.type == "meta"}
    if values:
        _BUILT[model] = values
    return model


def real_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The buffers of the caller's model that have values (a model with weights: position ids,
    a codec's stride), by name; for a model built on meta, those it made from literals
    (:func:`built_on_meta`)."""
    return {**_BUILT.get(model, {}), **{name: b for name, b in model.named_buffers(remove_duplicate=False)
                                         if b.device.type != "meta" and not isinstance(b, torch._subclasses.FakeTensor)}}


def buffer_values(copy: torch.nn.Module, values: dict[str, torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(the working copy's buffer, its value)`` for each buffer ``values`` has (the same name,
    shape and dtype: a ``--dtype`` cast float buffer is not known)."""
    for name, b in copy.named_buffers(remove_duplicate=False):
        v = values.get(name)
        if v is not None and v.shape == b.shape and v.dtype == b.dtype:
            yield b, v
