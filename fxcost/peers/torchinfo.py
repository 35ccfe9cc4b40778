"""torchinfo 1.8.0's "Total mult-adds" and "Total params", reproduced on fxcost's meta copy.

torchinfo's mechanism (torchinfo/torchinfo.py, 1.8.0): a depth-first walk over ``_modules``
registers a forward pre-hook and a forward hook on every module (``apply_hooks``, :606-668).
Each *call* of a module appends a row (a ``LayerInfo``) to a summary list (pre-hook, :576-584);
a module already in the list is marked ``(recursive)``. After the forward, the containers that
were never called themselves (``ModuleList``, ``ModuleDict``) are inserted above their first
called descendant (``add_missing_container_layers``, :331-367), and each row's "children" are
set to the rows below it that are deeper (``set_children_layers``, :322-328).

Its Mult-Adds are a rule on *parameters*, never on ops (torchinfo/layer_info.py:225-245): each
parameter of a module named ``weight`` or ``bias`` costs its element count times the output's
first dimension (times the output's spatial size when the class name contains "Conv"), a
parameter with "weight"/"bias" inside its name (an RNN's ``weight_ih_l0``) its elements times the
output's first two dimensions. Only leaf modules (no children) are summed
(torchinfo/model_statistics.py:31-33), so nothing outside a leaf with such parameters (matmul,
softmax, attention, residual adds, a container's own parameters) is counted.

Params are each non-recursive leaf row's own count plus every container row's "leftover" (its
parameters less its descendants'), floored at zero (model_statistics.py:39-48): a weight shared
by two leaves (GPT-2's tied ``wte``/``lm_head``) is counted twice.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fxcost.counting.arithmetic import prod
from fxcost.errors import FxcostError
from fxcost.peers.base import Charge, PeerTool, Reproduction, ToolFigures, run_static

VERSION = "1.8.0"
HEADLINE = "Mult-Adds"


# --- the per-parameter formulas -------------------------------------------------------------------

def conv_macs(elements: int, output_size: Sequence[int]) -> int:
    """[N, C_out, *out] = <a class whose name contains "Conv">(...), for a parameter called
    ``weight`` or ``bias``; torchinfo: its elements x N x prod(out). C_out is not a factor (the
    weight holds it already), the bias is counted, and any class with "Conv" in its name takes
    this rule, transformers' ``Conv1D`` (a linear layer, output [N, T, F]) too: elements x N x F."""
    # torchinfo/layer_info.py:236-240 (1.8.0)
    return elements * prod([*output_size[:1], *output_size[2:]])


def dense_macs(elements: int, output_size: Sequence[int]) -> int:
    """[N, *] = layer(...), any other class, for a parameter called ``weight`` or ``bias``;
    torchinfo: its elements x N. Only the output's first dimension is a factor: a Linear over
    [N, T, in] costs N x (in x out + out), not N x T x in x out; an Embedding N x vocab x dim."""
    # torchinfo/layer_info.py:241-242 (1.8.0)
    return int(output_size[0]) * elements


def rnn_macs(elements: int, output_size: Sequence[int]) -> int:
    """[B, T, *] (or [T, B, *]) = rnn(...), for a parameter with "weight" or "bias" inside a
    longer name (``weight_ih_l0``, ``bias_hh_l1_reverse``); torchinfo: its elements x B x T."""
    # torchinfo/layer_info.py:243-245 (1.8.0)
    return prod(output_size[:2]) * elements


def param_rule(name: str, class_name: str) -> tuple[str, Callable[[int, Sequence[int]], int]] | None:
    """The rule torchinfo prices a parameter called ``name`` of a ``class_name`` with, if any."""
    # torchinfo/layer_info.py:235-245 (1.8.0): the test is on the name, then on the class name
    if name in ("weight", "bias"):
        if "Conv" in class_name:
            return "elements x N x prod(spatial out)", conv_macs
        return "elements x N (first output dim)", dense_macs
    if "weight" in name or "bias" in name:
        return "elements x first two output dims", rnn_macs
    return None


# --- what torchinfo reads off a module's output ---------------------------------------------------

def nested_size(value: Any) -> list[int]:
    """torchinfo's ``nested_list_size`` (torchinfo/layer_info.py:320-345): the size of the first
    tensor found by descending into first elements (a dict: its first value), [] when none."""
    if hasattr(value, "tensors"):
        return nested_size(value.tensors)
    if isinstance(value, torch.Tensor):
        return list(value.size())
    if not hasattr(value, "__getitem__") or not value:
        return []
    if isinstance(value, dict):
        return nested_size(list(value.values()))
    if callable(getattr(value, "size", None)) and callable(getattr(value, "element_size", None)):
        return list(value.size())
    if isinstance(value, (list, tuple)):
        return nested_size(value[0])
    return []


def output_size(outputs: Any) -> list[int]:
    """torchinfo's ``calculate_size`` with batch_dim=None (torchinfo/layer_info.py:88-137): a
    tensor's size; a list or tuple whose first item has ``.data.size`` (a tensor, a
    PackedSequence), that item's; a dict (a transformers ModelOutput), its *last* value's; None,
    []; any other type (a dataclass, a number, a string) raises TypeError, as torchinfo does."""
    if outputs is None:
        return []
    if isinstance(outputs, (list, tuple)) and outputs and hasattr(outputs[0], "data") \
            and hasattr(outputs[0].data, "size"):
        return list(outputs[0].data.size())
    if isinstance(outputs, dict):
        return nested_size(list(outputs.values())[-1])
    if isinstance(outputs, torch.Tensor):
        return list(outputs.size())
    if isinstance(outputs, (list, tuple)):
        return nested_size(outputs)
    raise TypeError(f"Model contains a layer with an unsupported input or output type: {type(outputs).__name__}")


# --- the summary list -----------------------------------------------------------------------------

@dataclass(eq=False)
class _Row:
    """One torchinfo ``LayerInfo``; compared by identity, as torchinfo's objects are (the same
    container object can stand twice in the list)."""

    module: nn.Module
    path: str  # named_modules() name
    depth: int
    parent: _Row | None
    class_name: str
    leaf: bool
    num_params: int = 0
    trainable: int = 0
    recursive: bool = False
    macs: int = 0
    rules: tuple[str, ...] = ()
    children: list[_Row] = field(default_factory=list)
    pruned: tuple[str, ...] = ()
    lazy: bool = False  # contains_lazy_param: recounted when the call is over
    priced: bool = False  # a leaf with a parameter torchinfo's rule prices: the ops inside are its cost

    def count_params(self) -> None:
        """``calculate_num_params`` (torchinfo/layer_info.py:182-201): the module's parameters,
        recursively and each shared one once *within* this module, lazy ones skipped."""
        self.num_params = self.trainable = 0
        pruned = []
        for name, p in self.module.named_parameters():
            if isinstance(p, nn.parameter.UninitializedParameter):
                self.lazy = True
                continue
            n, _, was_pruned = _param_count(self.module, name, p)
            if was_pruned:
                pruned.append(name)
            self.num_params += n
            self.trainable += n if p.requires_grad else 0
        self.pruned = tuple(pruned)


def _param_count(module: nn.Module, name: str, p: torch.Tensor) -> tuple[int, str, bool]:
    """(elements, name torchinfo prices it by, pruned?) (torchinfo/layer_info.py:139-156): a
    pruned ``weight_orig`` goes by ``weight``. torchinfo counts the ones of its ``weight_mask``,
    which are values a meta copy does not have: the full count is taken, and the fact reported."""
    if name.endswith("_orig"):
        base = name[: -len("_orig")]
        holder: Any = module
        for part in f"{base}_mask".split("."):
            holder = getattr(holder, part, None)
        if isinstance(holder, torch.Tensor):
            return p.nelement(), base, True
    return p.nelement(), name, False


def _class_name(module: nn.Module) -> str:
    # torchinfo/layer_info.py:39-43 (1.8.0)
    if isinstance(module, torch.jit.ScriptModule):
        return str(module.original_name)
    return type(module).__name__


def _price(row: _Row, out_size: list[int]) -> None:
    """``calculate_macs`` (torchinfo/layer_info.py:225-245), on every called row."""
    rules = []
    for name, p in row.module.named_parameters():
        n, name, _ = _param_count(row.module, name, p)
        rule = param_rule(name, row.class_name)
        if rule is not None:
            row.macs += rule[1](n, out_size)
            rules.append(f"{name}: {rule[0]}")
    row.rules = tuple(rules)


def _missing_containers(rows: list[_Row]) -> None:
    """``add_missing_container_layers`` (torchinfo/torchinfo.py:331-367): insert, in place, each
    never-called container above the row that needs it. Rows inserted at or after the cursor
    are visited in turn, as torchinfo's enumerate over the list it grows visits them."""
    seen = {id(r.module) for r in rows}
    current: dict[int, _Row] = {}
    i = 0
    while i < len(rows):
        row = rows[i]
        chain: dict[int, _Row] = {}
        parent = row.parent
        while parent is not None and parent.depth > 0:
            chain[parent.depth] = parent
            parent = parent.parent
        at = i
        for d in range(1, row.depth):
            missing = d not in current or current[d].module is not chain[d].module
            if missing and chain[d] is not rows[at - 1]:  # rows[-1] at the top, as torchinfo
                chain[d].count_params()
                chain[d].recursive = id(chain[d].module) in seen
                rows.insert(at, chain[d])
                seen.add(id(chain[d].module))
                current[d] = chain[d]
                at += 1
        current[row.depth] = row
        d = row.depth + 1
        while d in current:
            del current[d]
            d += 1
        i += 1


def _set_children(rows: list[_Row]) -> None:
    """``set_children_layers`` (torchinfo/torchinfo.py:322-328, layer_info.py:366-373): a row's
    children are all the deeper rows right below it (descendants, not only direct children)."""
    for i, row in enumerate(rows):
        j = i + 1
        while j < len(rows) and rows[j].depth > row.depth:
            j += 1
        row.children = rows[i + 1 : j]


def _leftover(row: _Row, attr: str, memo: dict[tuple[int, str], int]) -> int:
    """``leftover_params`` (torchinfo/layer_info.py:299-317): a container's count less its
    non-recursive descendants' (a leaf's own count, a container's leftover); can be negative."""
    key = (id(row), attr)
    if key not in memo:
        memo[key] = getattr(row, attr) - sum(
            getattr(c, attr) if c.leaf else _leftover(c, attr, memo) for c in row.children if not c.recursive)
    return memo[key]


class ToolFails(Exception):
    """torchinfo's own hook raises on this module's output (it wraps that in a RuntimeError)."""


@dataclass(frozen=True)
class Totals:
    """torchinfo's ModelStatistics totals, reproduced."""

    macs: int  # total_mult_adds
    params: int  # total_params
    trainable: int  # trainable_params
    charges: tuple[Charge, ...]
    unseen: tuple[str, ...]
    params_by_module: tuple[tuple[str, int], ...]  # where each of ``params`` is counted


def _totals(rows: list[_Row]) -> tuple[int, int, list[tuple[str, int]]]:
    """ModelStatistics.__init__ (torchinfo/model_statistics.py:31-48): MACs of every leaf row
    (recursive ones too); params of non-recursive leaves plus containers' leftovers, each >= 0,
    by the module each is counted at; trainable params the same way."""
    macs = trainable = 0
    by_module: list[tuple[str, int]] = []
    memo: dict[tuple[int, str], int] = {}
    for row in rows:
        if row.leaf:
            macs += row.macs
            if not row.recursive:
                by_module.append((row.path, max(row.num_params, 0)))
                trainable += max(row.trainable, 0)
        elif not row.recursive:
            by_module.append((row.path, max(_leftover(row, "num_params", memo), 0)))
            trainable += max(_leftover(row, "trainable", memo), 0)
    return macs, trainable, [(path, n) for path, n in by_module if n]


# --- what the hooks never see -----------------------------------------------------------------------

#: aten ops that move or make data and do no arithmetic, left out of ``unseen`` (views are too)
_NO_ARITHMETIC = frozenset({
    "detach", "clone", "_to_copy", "copy_", "contiguous", "lift_fresh", "lift_fresh_copy", "empty", "empty_like",
    "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "new_zeros", "ones", "ones_like",
    "new_ones", "full", "full_like", "new_full", "fill_", "zero_", "arange", "scalar_tensor", "cat", "stack",
    "_unsafe_view", "index_select", "embedding", "dropout", "native_dropout", "sym_size", "sym_numel",
    "sym_stride", "sym_storage_offset", "is_nonzero", "item", "_local_scalar_dense", "masked_fill_",
})


class _Watch(TorchDispatchMode):
    """Counts the aten ops that run where torchinfo prices nothing: outside every leaf with a
    weight/bias parameter. ``where`` is the innermost module call, kept by the hooks."""

    def __init__(self, where: list[_Row]) -> None:
        super().__init__()
        self.where = where
        self.seen: collections.Counter[tuple[str, str]] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if not func.is_view and name not in _NO_ARITHMETIC:
            row = self.where[-1] if self.where else None
            if row is None or not row.priced:
                kind = "no module" if row is None else (
                    f"{row.class_name}: leaf without weight/bias" if row.leaf else f"{row.class_name}: not a leaf")
                self.seen[(name, kind)] += 1
        return func(*args, **(kwargs or {}))


# --- the run --------------------------------------------------------------------------------------

def _walk(shadow: nn.Module, paths: dict[int, str]) -> Iterator[tuple[nn.Module, _Row]]:
    """apply_hooks' depth-first walk (a module met twice comes twice), each module with its fallback row."""
    stack: list[tuple[nn.Module, int, _Row | None]] = [(shadow, 0, None)]
    while stack:
        module, depth, parent = stack.pop()
        fallback = _Row(module, paths.get(id(module), ""), depth, parent, _class_name(module), not any(module.children()))
        yield module, fallback
        stack += [(m, depth + 1, fallback) for m in reversed(module._modules.values()) if m is not None]


def _priced_output(row: _Row, outputs: Any, where: list[_Row]) -> None:
    """torchinfo's forward hook: the row priced by its module's output."""
    if row.lazy:  # torchinfo/torchinfo.py:595-596
        row.count_params()
    try:
        _price(row, output_size(outputs))
    except (TypeError, IndexError) as e:  # what torchinfo's hook raises on the same output
        raise ToolFails(f"{row.class_name} {row.path or '(root)'}: {e}") from e
    if where and where[-1] is row:
        where.pop()


@contextmanager
def _hooked(shadow: nn.Module, rows: list[_Row], where: list[_Row]) -> Iterator[None]:
    """torchinfo's ``apply_hooks`` (torchinfo/torchinfo.py:606-668) on the shadow: the walk, its
    fallback rows, a module met twice hooked for its last place; all hooks removed after."""
    paths = {id(m): p for p, m in shadow.named_modules()}
    current: dict[int, _Row] = {}  # the row a module's forward hook updates (global_layer_info)
    called: set[int] = set()  # layer_ids
    handles: dict[int, tuple[Any, Any]] = {}

    def make_pre(fallback: _Row) -> Callable[..., None]:
        def pre(module: nn.Module, _inputs: Any) -> None:
            row = _Row(module, fallback.path, fallback.depth, fallback.parent, _class_name(module), fallback.leaf)
            row.count_params()
            row.priced = row.leaf and any(param_rule(_param_count(module, n, p)[1], row.class_name) is not None
                                          for n, p in module.named_parameters())
            row.recursive = id(module) in called
            rows.append(row)
            called.add(id(module))
            current[id(module)] = row
            where.append(row)
        return pre

    def post(module: nn.Module, _inputs: Any, outputs: Any) -> None:
        _priced_output(current[id(module)], outputs, where)

    try:
        for module, fallback in _walk(shadow, paths):
            current[id(module)] = fallback
            if isinstance(module, torch.jit.ScriptModule):  # WRAPPER_MODULES: a row now, never hooked
                make_pre(fallback)(module, None)
                where.pop()
            else:
                for h in handles.pop(id(module), ()):
                    h.remove()
                handles[id(module)] = (module.register_forward_pre_hook(make_pre(fallback)),
                                       module.register_forward_hook(post))
        yield
    finally:
        for pair in handles.values():
            for h in pair:
                h.remove()


def _run(shadow: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[_Row], collections.Counter[tuple[str, str]]]:
    """One forward of the copy under torchinfo's hooks, no_grad as torchinfo's (torchinfo.py:292)."""
    rows: list[_Row] = []
    where: list[_Row] = []
    watch = _Watch(where)
    with _hooked(shadow, rows, where), torch.no_grad(), watch:
        shadow(*args, **kwargs)
    return rows, watch.seen


def summarize(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Totals:
    """torchinfo's totals for ``model(*args, **kwargs)``, run on fxcost's meta (or fake) copy."""
    try:
        rows, seen = run_static(model, args, kwargs, _run)
    except ToolFails as e:
        raise FxcostError(f"torchinfo {VERSION} fails on {type(model).__name__} as it does itself: {e}",
                          hint="torchinfo sizes only tensors, sequences, dicts and None") from e
    except Exception as e:
        raise FxcostError(
            f"cannot reproduce torchinfo on {type(model).__name__}: {type(e).__name__}: {e}",
            hint="the forward does not run without real values (a branch on a tensor's value)",
        ) from e
    _missing_containers(rows)
    _set_children(rows)
    macs, trainable, by_module = _totals(rows)
    charges = tuple(
        Charge(r.path, type(r.module).__name__, r.class_name, r.macs, "; ".join(r.rules))
        for r in rows if r.leaf and r.rules)
    unseen = [f"aten::{op} x{n} ({kind})" for (op, kind), n in sorted(seen.items())]
    unseen += sorted({f"{r.class_name} {r.path or '(root)'}: own parameters {_own(r.module)} (not a leaf: never priced)"
                      for r in rows if not r.leaf and _own(r.module)})
    unseen += sorted({f"{r.class_name} {r.path}: pruned {p} counted in full (torchinfo counts its mask's ones)"
                      for r in rows for p in r.pruned})
    return Totals(macs, sum(n for _, n in by_module), trainable, charges, tuple(unseen), tuple(by_module))


def _own(module: nn.Module) -> str:
    return ", ".join(n for n, _ in module.named_parameters(recurse=False))


def reproduce(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reproduction:
    """torchinfo 1.8.0's Mult-Adds and params for ``model(*args, **kwargs)``, without torchinfo."""
    t = summarize(model, args, kwargs)
    return Reproduction("torchinfo", VERSION, HEADLINE, t.macs, t.params, t.charges, t.unseen,
                        params_by_module=t.params_by_module)


def trainable_params(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """torchinfo's "Trainable params" (its ``trainable_params``), reproduced."""
    return summarize(model, args, kwargs).trainable


def run_tool(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolFigures:
    """``torchinfo.summary(model, input_data=[*args], verbose=0, **kwargs)`` on a copy of the real
    model (torchinfo materializes lazy layers and keeps a cache of the last run: both let go)."""
    import copy

    import torchinfo
    from torchinfo.torchinfo import clear_cached_forward_pass

    try:
        s = torchinfo.summary(copy.deepcopy(model), input_data=list(args), verbose=0, **kwargs)
    finally:
        clear_cached_forward_pass()
    return ToolFigures(macs=int(s.total_mult_adds), params=int(s.total_params))


TOOL = PeerTool(
    name="torchinfo",
    package="torchinfo",
    version=VERSION,
    headline=HEADLINE,
    reproduce=reproduce,
    run_tool=run_tool,
    misses=(
        "counts parameters, not ops: every op outside a leaf module with weight/bias params is 0 "
        "(matmul, bmm, SDPA, softmax, residual adds, GELU, pooling, upsampling)",
        "Linear/LayerNorm/Embedding: elements x the output's first dim only; a Linear over [N, T, in] "
        "misses the factor T (ViT, BERT, GPT-2 blocks are undercounted)",
        "any class with 'Conv' in its name takes the conv rule: transformers' Conv1D (GPT-2) costs "
        "elements x N x out_features, not N x T x in x out",
        "Conv: bias counted (N x C_out x prod(out) extra); Embedding priced as a dense layer "
        "(N x vocab x dim) though it is a lookup",
        "nn.MultiheadAttention: not a leaf (it owns out_proj), so its in_proj weights, the "
        "attention and out_proj (never called as a module) cost 0",
        "RNN/LSTM/GRU: each weight/bias x B x T, without the gate count and ignoring h0 and the "
        "per-step elementwise ops",
        "BatchNorm/GroupNorm affine weight and bias x N only; normalization arithmetic not counted",
        "params: a weight shared by two leaves (tied embeddings) is counted twice",
        "fails (TypeError) on a module whose output is not a tensor, sequence, dict or None (a dataclass)",
    ),
    params_rule="each leaf module's own parameters (containers: what their leaves leave over): a weight shared by two leaves (a tied head) is counted twice",
)
