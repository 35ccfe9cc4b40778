"""Counting conventions as named presets.

A convention decides what the analysis counts, not how it traces, and it is route-neutral: the
one row builder (:mod:`fxcost.counting.rows`) applies it to the PyTorch and the ONNX route
alike. It says which of a row's tensors count as activations, how many bytes an element takes,
and how the torchsummary-style size block is derived. docs/conventions.md explains each
choice; a new preset is one more :class:`Convention` in :data:`CONVENTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fxcost.errors import InputSpecError


class ActivationRule(StrEnum):
    """Which of a row's tensors are its activations."""

    ALLOCATED = "allocated"  # tensors a node newly allocates: in-place results and views are free
    LEAF_OUTPUTS = "leaf_outputs"  # every leaf module's output, whether it aliases its input or not


@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    activation_rule: ActivationRule = ActivationRule.ALLOCATED
    #: inputs count as activations (their rows carry elements), as in the seed's VGG table
    inputs_are_activations: bool = True
    #: count elements per sample (the batch dimension dropped), as torchsummary does
    per_sample: bool = False
    #: ``None``: each tensor's own dtype size; an int: every element takes that many bytes
    bytes_per_element: int | None = None
    #: the forward/backward pass size is this many times the forward activations
    backward_factor: int = 2
    #: buffers (batch-norm statistics...) count towards the estimated total size
    buffers_in_total: bool = True


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            name="fxcost",
            description=(
                "MACs of matmul/conv ops; FLOPs = 2 x MACs + bias adds + documented per-element "
                "costs; activations = tensors each node newly allocates (in-place ops and views are "
                "free), inputs included, in their own dtype; forward/backward = 2 x activations"
            ),
        ),
        Convention(
            name="torchsummary",
            description=(
                "torchsummary's size block: every leaf module's output counts, in place or not, "
                "per sample, 4 bytes an element, twice (forward and backward); the input is "
                "counted apart, per sample; params at 4 bytes each, buffers left out"
            ),
            activation_rule=ActivationRule.LEAF_OUTPUTS,
            inputs_are_activations=False,
            per_sample=True,
            bytes_per_element=4,
            buffers_in_total=False,
        ),
    )
}


#: other tools whose counts fxcost reproduces (fxcost.peers): a preset of each, for the PyTorch
#: route of ``fxcost.analyze`` and the command line (their hooks and traced ops need the module)
TOOL_PRESETS = ("fvcore", "ptflops", "thop", "torchinfo", "calflops", "deepspeed", "flop_counter")
ALL_CONVENTIONS = (*CONVENTIONS, *TOOL_PRESETS)


def get_convention(convention: str | Convention) -> Convention:
    """A convention by name (or the one given); :class:`InputSpecError` naming the known ones."""
    if isinstance(convention, Convention):
        return convention
    if convention in TOOL_PRESETS:
        raise InputSpecError(
            f"the {convention} preset reproduces {convention}'s count of a PyTorch model (its hooks and traced ops), "
            "which this route cannot apply",
            hint=f"give the PyTorch model (its spec: file.py:name, hf:Class), not an ONNX file: "
            f"fxcost.analyze(model, ..., convention={convention!r})",
        )
    try:
        return CONVENTIONS[convention]
    except KeyError:
        raise InputSpecError(
            f"unknown convention {convention!r}", hint=f"one of: {', '.join(ALL_CONVENTIONS)}"
        ) from None
