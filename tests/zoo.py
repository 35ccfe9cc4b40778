"""Small test models that exercise one feature each, with the input each takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class TinyCNN(nn.Module):
    """conv + batch norm + grouped and dilated convs + adaptive pool + linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.depthwise = nn.Conv2d(32, 32, 5, padding=2, groups=32)
        self.pool = nn.AdaptiveAvgPool2d((3, 3))
        self.head = nn.Linear(32 * 9, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(self.grouped(x))
        x = self.dilated(x) + x
        x = self.depthwise(x)
        return self.head(torch.flatten(self.pool(x), 1))


class FunctionalConvs(nn.Module):
    """The same convolution three ways: nn.Conv2d, F.conv2d and torch.conv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, 8, 3, 3))
        self.b = nn.Parameter(torch.randn(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        b = F.conv2d(x, self.w, self.b, padding=1)
        c = torch.conv2d(x, self.w, self.b, padding=1)
        return a + b + c


class Tied(nn.Module):
    """An embedding-style weight shared by two Linear layers: counted once."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(32, 64, bias=False)
        self.mid = nn.Linear(64, 64)
        self.dec = nn.Linear(64, 32, bias=False)
        self.dec.weight = nn.Parameter(self.enc.weight.t().contiguous())
        self.dec2 = nn.Linear(32, 64, bias=False)
        self.dec2.weight = self.enc.weight  # tied: the same tensor in two modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec2(self.dec(torch.relu(self.mid(self.enc(x)))))


class CalledTwice(nn.Module):
    """One block applied twice: its params once, its MACs twice."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(self.block(x)))


class Matmuls(nn.Module):
    """matmul on 3-D inputs, bmm, @ with a parameter, a linear on a 3-D tensor, softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(24, 24)
        self.w = nn.Parameter(torch.randn(24, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.proj(x)  # [B, T, 24]
        att = torch.softmax(torch.bmm(q, q.transpose(1, 2)), dim=-1)  # [B, T, T]
        y = torch.matmul(att, x)
        return y @ self.w


class Transposed(nn.Module):
    """ConvTranspose2d (with groups), Conv1d and Conv3d, and upsampling by interpolation."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, groups=2)
        self.c1 = nn.Conv1d(6, 4, 3)
        self.c3 = nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(x)  # [B, 6, 2H, 2W]
        z = self.c1(y.flatten(2))  # [B, 4, 4HW - 2]
        v = self.c3(y[:, :1].unsqueeze(1))  # [B, 2, 1, 2H, 2W]
        return z.sum() + v.mean()


class NormMLP(nn.Module):
    """LayerNorm, GELU, GroupNorm, Dropout, MaxPool1d, LogSoftmax."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(32)
        self.fc1 = nn.Linear(32, 64)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.1)
        self.gn = nn.GroupNorm(4, 8)
        self.pool = nn.MaxPool1d(2)
        self.out = nn.LogSoftmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.fc1(self.ln(x))))  # [B, 8, 64]
        h = self.pool(self.gn(h))  # [B, 8, 32]
        return self.out(h)


class WithUnused(nn.Module):
    """A module that forward never calls: its params still count (in an 'unused' row)."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(8, 8)
        self.spare = nn.Linear(8, 100)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]


def _examples() -> list[Case]:
    from examples.alexnet import alexnet
    from examples.vgg import d2l_vgg11, vgg11

    return [
        Case("d2l_vgg11", d2l_vgg11, (1, 3, 224, 224)),
        Case("alexnet", alexnet, (2, 3, 224, 224)),
        Case("vgg11_64px", lambda: vgg11(num_classes=10), (2, 3, 64, 64)),
    ]


CASES: list[Case] = [
    Case("tiny_cnn", TinyCNN, (2, 3, 32, 32)),
    Case("functional_convs", FunctionalConvs, (2, 8, 10, 10)),
    Case("tied", Tied, (3, 32)),
    Case("called_twice", CalledTwice, (5, 16)),
    Case("matmuls", Matmuls, (2, 7, 24)),
    Case("transposed", Transposed, (2, 8, 5, 5)),
    Case("norm_mlp", NormMLP, (2, 8, 32)),
    Case("with_unused", WithUnused, (4, 8)),
    *_examples(),
]
