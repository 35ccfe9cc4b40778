"""The one row builder: every route turns what it saw into report rows here.

- Parameters: each distinct weight (:class:`Weight`) is counted once, at the first row that
  claims it; weights and biases apart (a bias is a parameter whose name ends in ``bias``);
  weights no row used get an ``unused`` row, so totals equal the model's unique parameter count.
- MACs and FLOPs: the sum of the row's op costs.
- Activations: the row's newly allocated tensors, or its leaf module's outputs, as the
  convention says (:class:`~fxcost.counting.conventions.ActivationRule`), sized by the
  convention (per sample or not, its element size).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from fxcost.counting.conventions import ActivationRule, Convention
from fxcost.errors import UnsupportedOpError
from fxcost.report.kinds import Fate, RowKind
from fxcost.report.records import Counts, InputSpec, MemorySummary, OpCost, Row, TensorSpec, UnsupportedOp

#: bytes per element, by the names TensorSpec gives dtypes (torch's, without "torch.")
_DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex128": 16, "complex64": 8, "complex32": 4,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e4m3fnuz": 1, "float8_e5m2": 1, "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1,
    "qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1,
}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype named as in :class:`TensorSpec` (``float32``: 4); a name this
    table lacks (a dtype newer than it) is asked of torch."""
    known = _DTYPE_BYTES.get(dtype)
    if known is not None:
        return known
    import torch

    return int(getattr(torch, dtype).itemsize)


def is_bias(name: str) -> bool:
    """A parameter named ``...bias`` (``fc.bias``, ``in_proj_bias``) or ``bias_...`` (nn.LSTM's
    ``bias_ih_l0``) is a bias."""
    leaf = name.rpartition(".")[2]
    return leaf.endswith("bias") or leaf.startswith("bias_")  # nn.LSTM's bias_ih_l0 too


@dataclass(frozen=True)
class Weight:
    """A parameter or buffer as a row claims it. ``key`` is its identity: the tensor's ``id`` on
    the PyTorch route (a tied weight is one tensor under two names), its name in an ONNX file."""

    key: Hashable
    name: str
    numel: int
    nbytes: int
    parameter: bool  # else a buffer
    trainable: bool = True

    def counts(self) -> Counts:
        if not self.parameter:
            return Counts(buffers=self.numel, buffer_bytes=self.nbytes)
        biased = is_bias(self.name)
        return Counts(params=self.numel, weight_params=0 if biased else self.numel, bias_params=self.numel if biased else 0,
                      trainable_params=self.numel if self.trainable else 0, param_bytes=self.nbytes)


def _elements(spec: TensorSpec, per_sample: bool) -> int:
    if per_sample and spec.shape:
        return spec.numel // spec.shape[0] if spec.shape[0] else 0
    return spec.numel


def sizes(specs: Iterable[TensorSpec], convention: Convention) -> tuple[int, int]:
    """Elements and bytes of ``specs`` as ``convention`` counts them (per sample or not, its element size)."""
    elements = nbytes = 0
    for s in specs:
        e = _elements(s, convention.per_sample)
        elements += e
        nbytes += e * (convention.bytes_per_element or dtype_bytes(s.dtype))
    return elements, nbytes


_NOTHING = Counts()


class RowBuilder:
    """Builds a report's rows in order (a row's id is its position), handing out each weight once
    and sizing each row's activations under one convention."""

    def __init__(self, convention: Convention) -> None:
        self.convention = convention
        self.rows: list[Row] = []
        self._claimed: set[Hashable] = set()

    @property
    def next_id(self) -> int:
        """The id the next row gets."""
        return len(self.rows)

    def claim(self, weights: Iterable[Weight]) -> Counts:
        """The counts of the weights not claimed before, now claimed."""
        total = _NOTHING
        for w in weights:
            if w.key in self._claimed:
                continue
            self._claimed.add(w.key)
            total = total + w.counts()
        return total

    def add(
        self,
        *,
        name: str,
        type: str,
        kind: RowKind,
        module_path: str = "",
        output: tuple[TensorSpec, ...] = (),
        allocated: Sequence[TensorSpec] = (),
        leaf_outputs: Sequence[TensorSpec] = (),
        weights: Iterable[Weight] = (),
        claimed: Counts = _NOTHING,
        ops: tuple[OpCost, ...] = (),
        kernel_size: tuple[int, ...] | None = None,
        stride: tuple[int, ...] | None = None,
        hparams: tuple[tuple[str, str], ...] = (),
        saved: int = 0,
    ) -> Row:
        """One row. ``allocated``: the tensors it newly allocated; ``leaf_outputs``: what it
        returned, when it is a leaf module's call (or an input); the convention picks which
        count as its activations. ``weights``: what it uses (claimed here when no row did
        before); ``claimed``: counts the caller claimed already (:meth:`claim`)."""
        convention = self.convention
        if kind == RowKind.INPUT and not convention.inputs_are_activations:
            counted: Sequence[TensorSpec] = ()
        else:
            counted = leaf_outputs if convention.activation_rule is ActivationRule.LEAF_OUTPUTS else allocated
        elements, nbytes = sizes(counted, convention)
        forward = [o for o in ops if not o.backward]
        backward = [o for o in ops if o.backward]
        work = Counts(macs=sum(o.macs for o in forward), flops=sum(o.flops for o in forward),
                      backward_macs=sum(o.macs for o in backward), backward_flops=sum(o.flops for o in backward),
                      activation_elements=elements, activation_bytes=nbytes, saved_bytes=saved,
                      bytes_moved=sum(o.bytes_moved for o in forward))
        row = Row(id=len(self.rows), name=name, type=type, kind=kind, module_path=module_path, output=output,
                  kernel_size=kernel_size, stride=stride, counts=claimed + self.claim(weights) + work, ops=ops, hparams=hparams)
        self.rows.append(row)
        return row

    def input(self, spec: InputSpec) -> Row:
        """A row for one model input (export, eager and ONNX inputs: one per tensor)."""
        t = TensorSpec(spec.shape, spec.dtype)
        return self.add(name=spec.name, type="Input", kind=RowKind.INPUT, output=(t,), allocated=(t,), leaf_outputs=(t,))

    def unused(self, name: str, type: str, module_path: str, weights: Iterable[Weight]) -> None:
        """A row for the weights among ``weights`` that no row claimed, if they hold anything."""
        counts = self.claim(weights)
        if counts != _NOTHING:
            self.add(name=name, type=type, kind=RowKind.UNUSED, module_path=module_path, claimed=counts)


def unsupported_ops(rows: Iterable[Row], strict: bool = False) -> list[UnsupportedOp]:
    """Every op without a formula and where it ran; with ``strict``, :class:`UnsupportedOpError`
    when there is any."""
    found = [UnsupportedOp(o.op, r.name, o.count, o.reason) for r in rows for o in r.ops if o.fate == Fate.UNSUPPORTED]
    if strict and found:
        listed = "; ".join(f"{u.op} in {u.where!r} (x{u.count})" for u in found[:10])
        raise UnsupportedOpError(
            f"{len(found)} unsupported op use(s): {listed}",
            hint="drop --strict to get a report that lists them, or add a formula (docs/architecture.md)",
        )
    return found


def memory_summary(rows: Sequence[Row], inputs: Iterable[InputSpec], convention: Convention) -> MemorySummary:
    """The torchsummary-style size block under ``convention``."""
    _, input_bytes = sizes((TensorSpec(i.shape, i.dtype) for i in inputs), convention)
    activation_bytes = sum(r.activation_bytes for r in rows if r.kind != RowKind.INPUT)
    params = sum(r.params for r in rows)
    params_bytes = params * convention.bytes_per_element if convention.bytes_per_element else sum(r.param_bytes for r in rows)
    buffer_bytes = sum(r.buffer_bytes for r in rows) if convention.buffers_in_total else 0
    fb = convention.backward_factor * activation_bytes
    return MemorySummary(input_bytes, fb, params_bytes, input_bytes + fb + params_bytes + buffer_bytes)
