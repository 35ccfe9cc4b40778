"""Reads of values computed from the inputs alone, data-free (issue 22): fxcost knows the values of
the inputs it made (integer ones are zeros, as --real makes them) and of real tensors the caller
gave, follows them through the ops that use nothing else, and answers the forward's read with them.
The references are PyTorch's: FlopCounterMode over a real forward on the same input values, and
hand arithmetic. A value computed from the weights stays unknown: that read is refused at its line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcost
from examples.odd import PaddedTokens
from tests.conftest import flop_counter_flops

D = 16


def _ids(*shape: int) -> torch.Tensor:
    """Token ids given as a shape only (what --input 2x8:int64 makes)."""
    return torch.empty(*shape, dtype=torch.long, device="meta")


class PickPadding(nn.Module):
    """An output shaped by the values: the rows at padding positions (``x[mask]``: nonzero)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(100, D), nn.Linear(D, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        return self.fc(x[ids == 0])


class LongestPrefix(nn.Module):
    """A size read from the ids (``int(ids.max())``) and one from a constant the forward makes."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(100, D), nn.Linear(D, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = int(ids.max()) + int(torch.tensor([1, 2]).sum())
        return self.fc(self.emb(ids)[:, :n])


def test_a_branch_on_the_ids_made_from_a_shape_takes_the_zeros_path() -> None:
    model = PaddedTokens()
    report = fxcost.analyze(model, example_inputs=(_ids(2, 8),))
    # zeros are all padding: the second layer runs, 2 x (2*8 rows x 16 x 16)
    assert report.total().macs == 2 * (2 * 8 * D * D) + 0
    assert 2 * report.total().macs == flop_counter_flops(model, torch.zeros(2, 8, dtype=torch.long))
    assert report.total().macs == fxcost.analyze(model, example_inputs=(torch.zeros(2, 8, dtype=torch.long),),
                                                 real=True).total().macs
    note = next(n for n in report.trace.notes if n.startswith("the path depends on values computed from the inputs"))
    assert "examples/odd.py" in note and "if (ids == 0).any()" in note
    assert report.peak_memory is not None  # the memory run follows the same values


def test_given_ids_decide_the_branch_with_their_own_values() -> None:
    model = PaddedTokens()
    ids = torch.arange(1, 17).reshape(2, 8)  # no padding: one layer
    report = fxcost.analyze(model, example_inputs=(ids,))
    assert report.total().macs == 2 * 8 * D * D
    assert 2 * report.total().macs == flop_counter_flops(model, ids)
    assert not any(n.startswith("ran on real tensors") for n in report.trace.notes)  # data-free, not run again


def test_an_output_shaped_by_the_ids_values() -> None:
    model = PickPadding()
    ids = torch.tensor([[0, 5, 0, 7], [1, 0, 2, 3]])  # three padding positions: three rows reach fc
    report = fxcost.analyze(model, example_inputs=(ids,))
    assert report.total().macs == 3 * D * D
    assert 2 * report.total().macs == flop_counter_flops(model, ids)
    made = fxcost.analyze(model, example_inputs=(_ids(2, 4),))  # zeros: all 8 positions
    assert made.total().macs == 8 * D * D


def test_a_size_read_from_the_ids_and_from_a_constant() -> None:
    model = LongestPrefix()
    ids = torch.tensor([[2, 0, 1, 0, 0, 0, 0, 0]])  # max 2, plus 1 + 2: the first 5 positions
    report = fxcost.analyze(model, example_inputs=(ids,))
    assert report.total().macs == 5 * D * D
    assert 2 * report.total().macs == flop_counter_flops(model, ids)


class RoutedByWeights(nn.Module):
    """A branch on a value computed from the weights: no input decides it."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(100, D), nn.Linear(D, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.emb(ids))
        if x.sum() > 0:
            x = self.fc(x)
        return x


class OverwrittenMask(nn.Module):
    """A known mask overwritten in place by a value from the weights: no longer known."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(100, D), nn.Linear(D, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids == 0).long()
        view = mask[:, :2]
        view.add_(self.fc.weight[0, 0].long())  # writes through a view into the mask's storage
        if mask.any():
            return self.fc(self.emb(ids))
        return self.emb(ids)


@pytest.mark.parametrize("model, line", [(RoutedByWeights(), "if x.sum() > 0:"), (OverwrittenMask(), "if mask.any():")])
def test_a_value_not_from_the_inputs_alone_is_refused_at_its_line(model: nn.Module, line: str) -> None:
    with pytest.raises(fxcost.FxcostError) as info:
        fxcost.analyze(model, example_inputs=(_ids(2, 8),))
    assert line in str(info.value)
    assert 2 * fxcost.analyze(model, example_inputs=(torch.zeros(2, 8, dtype=torch.long),),
                              real=True).total().macs == flop_counter_flops(model, torch.zeros(2, 8, dtype=torch.long))


def test_a_float_input_made_from_a_shape_has_no_known_values() -> None:
    class Positive(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(D, D)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if (x > 0).all() else x  # --real draws x at random: fxcost does not know it

    with pytest.raises(fxcost.FxcostError, match=r"\(x > 0\)\.all\(\)"):
        fxcost.analyze(Positive(), input_size=(2, D))


def test_the_cli_says_which_line_read_which_values(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from fxcost.cli import main

    assert main(["analyze", "examples/odd.py:PaddedTokens", "--input", "2x8:int64", "-f", "json",
                 "-o", str(tmp_path / "r.json")]) == 0

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["macs"] == 2 * (2 * 8 * D * D)
    assert any("if (ids == 0).any()" in n for n in report["trace"]["notes"])


class StridedPad(nn.Module):
    """A codec's padding (EnCodec's ``_get_extra_padding_for_conv1d``): a size computed from a
    buffer the model made in ``__init__`` and the input's length."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 4, stride=4)
        self.register_buffer("stride", torch.tensor(4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = int((-x.shape[-1]) % self.stride)  # pad to a whole number of strides
        return self.conv(torch.nn.functional.pad(x, (0, extra)))


def test_a_size_read_from_the_models_own_buffer() -> None:
    model = StridedPad()
    report = fxcost.analyze(model, input_size=(1, 1, 10))  # padded to 12: 3 frames of 4 channels x 4 taps
    assert report.total().macs == 3 * 4 * 4
    assert 2 * report.total().macs == flop_counter_flops(model, torch.randn(1, 1, 10))
    assert any("in forward: extra = int((-x.shape[-1]) % self.stride)" in n for n in report.trace.notes)
    with torch.device("meta"):  # built without values: its buffer is not known
        weightless = StridedPad()
    with pytest.raises(fxcost.FxcostError, match=r"extra = int"):
        fxcost.analyze(weightless, input_size=(1, 1, 10))


def test_input_values_on_the_command_line_are_the_given_tensors() -> None:
    from fxcost.loading.specs import make_inputs

    ((args, kwargs),) = make_inputs(["1x4:int64=7,grid=1x3:int64=1;16;16,mask=1x2:bool=1,scale=2:float16=0.5;2"])
    assert torch.equal(args[0], torch.full((1, 4), 7))
    assert torch.equal(kwargs["grid"], torch.tensor([[1, 16, 16]]))
    assert torch.equal(kwargs["mask"], torch.ones(1, 2, dtype=torch.bool))
    assert torch.equal(kwargs["scale"], torch.tensor([0.5, 2.0], dtype=torch.float16))
    ((plain, _),) = make_inputs(["1x4:int64"])
    assert plain[0].device.type == "meta"  # a shape alone has no values


class PatchGrid(nn.Module):
    """Qwen2-VL's vision tower's bookkeeping: the grid's values give the sizes, through a literal
    made on the input's device (on meta, torch makes it without an op that holds its value)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(D, D)

    def forward(self, patches: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        merge = torch.tensor([2], device=grid.device).expand(len(grid))
        sizes = [t * h * w // (m * m) for (t, h, w), m in zip(grid.tolist(), merge.tolist(), strict=True)]
        return self.fc(patches.reshape(sum(sizes), -1, D).mean(1))


def test_a_grid_given_with_its_values_sizes_the_work() -> None:
    model = PatchGrid()
    grid = torch.tensor([[1, 4, 6], [1, 2, 2]])  # (4 x 6 + 2 x 2) / 4 = 7 merged positions
    report = fxcost.analyze(model, example_inputs=(torch.empty(28, D, device="meta"), grid))
    assert report.total().macs == 7 * D * D
    assert 2 * report.total().macs == flop_counter_flops(model, torch.randn(28, D), grid)


def test_a_tensor_above_the_limit_or_from_a_random_op_has_no_known_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/tracing.md: no value is kept for a tensor of more than KnownValues.LIMIT elements, nor
    # for a random op's output
    from fxcost.pytorch.known import KnownValues

    model = PaddedTokens()
    assert fxcost.analyze(model, example_inputs=(_ids(2, 8),)).total().macs == 2 * (2 * 8 * D * D)
    monkeypatch.setattr(KnownValues, "LIMIT", 2 * 8 - 1)  # the ids have 16 elements
    with pytest.raises(fxcost.FxcostError, match=r"if \(ids == 0\)\.any\(\)"):
        fxcost.analyze(model, example_inputs=(_ids(2, 8),))
    monkeypatch.undo()

    class Dice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(D, D)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.fc(torch.zeros(ids.shape[0], D, device=ids.device))
            return self.fc(x) if torch.randint(0, 2, (1,), device=ids.device).item() else x

    with pytest.raises(fxcost.FxcostError, match=r"torch\.randint"):
        fxcost.analyze(Dice(), example_inputs=(_ids(2, 8),))


def test_a_lookup_of_known_ids_past_the_table_fails_as_a_real_one_does() -> None:
    """A fake embedding looks up any id; a real one fails on an id that is not a row (a default
    config whose image token id is past its text vocabulary: Florence-2's 51,289 of 50,265 rows).
    Where the ids are known, the data-free run fails at the same line a real run fails at."""

    class Shifted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, D)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            if (ids == 0).any():  # a read: the run follows the known ids from here
                ids = ids + 10  # zeros + 10: the 11th row of a 10-row table
            return self.emb(ids)

    model = Shifted()
    with pytest.raises(IndexError, match="index out of range"):
        model(torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(fxcost.FxcostError, match=r"id 10 of a 10-row embedding[\s\S]*return self\.emb\(ids\)"):
        fxcost.analyze(model, example_inputs=(_ids(2, 8),))
    ids = torch.full((2, 8), 9)  # the last row, and no padding: no read, nothing known, counted
    assert fxcost.analyze(model, example_inputs=(ids,)).total().macs == 0
