"""The vocabularies of a report: each is one enum, spelled the same in the CLI, the records and
the JSON (a member *is* its string: ``Fate.FREE == "free"``)."""

from __future__ import annotations

from enum import StrEnum


class Fate(StrEnum):
    """What an op costs: a formula's count, nothing (with a reviewed reason), or unknown."""

    FORMULA = "formula"
    FREE = "free"
    UNSUPPORTED = "unsupported"


class RowKind(StrEnum):
    """What a row of the report stands for."""

    INPUT = "input"  # a model input
    MODULE = "module"  # a leaf module's call (or a module kept whole)
    FUNCTION = "function"  # a torch function called in a forward (an ONNX node in a file without modules)
    METHOD = "method"  # a tensor method called in a forward
    ATTRIBUTE = "attribute"  # a parameter or buffer read by the graph
    CODE = "code"  # the work a module with children does in its own code
    CONSTANT = "constant"  # ops folded into constants while tracing
    UNUSED = "unused"  # parameters and buffers no op read
    GROUP = "group"  # a roll-up of several rows


class Method(StrEnum):
    """How the graph was obtained: the PyTorch route's three tracers (spelled as ``--tracer``
    takes them), or an ONNX file."""

    SYMBOLIC = "symbolic"
    EXPORT = "export"
    EAGER = "eager"
    ONNX = "onnx"


#: the tracers a user can ask for (``--tracer``)
TRACERS = (Method.SYMBOLIC, Method.EXPORT, Method.EAGER)
#: the order ``auto`` tries them in: torch.fx's code-level graph where it can follow the forward,
#: else the fake run (the model's forward once on fake tensors); torch.export only when asked for
AUTO = (Method.SYMBOLIC, Method.EAGER)


class Analysis(StrEnum):
    """What a report measures, as it declares it (the JSON's ``analysis``): which metrics it has is
    read from this, never guessed from which numbers happen to be zero."""

    INFERENCE = "inference"  # the forward alone
    TRAIN = "train"  # a training step: the forward, the backward of its loss, their memory
    LLM = "llm"  # a causal LM's serving costs: prefill and decode steps (fxcost llm)


class Mode(StrEnum):
    """The tensors the analysis ran on."""

    META = "meta"  # no data, no device
    FAKE = "fake"  # FakeTensorMode: a device, no data
    REAL = "real"  # real tensors on a copy of a model with weights
    ONNX = "onnx"  # an ONNX file's shape inference


class View(StrEnum):
    """What a report's rows are: one per graph node, or roll-ups."""

    LAYER = "layer"
    MODULE = "module"
    TYPE = "type"
