"""A small U-Net, written for fxcost's examples and tests.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation"
(2015): an encoder of double 3x3 conv blocks joined by 2x2 max pooling, a decoder that upsamples,
concatenates the encoder's feature map of the same size (``torch.cat`` skip connections) and
applies another double conv, then a 1x1 conv to class scores. Scaled down for tests: 16 base
channels doubling over 4 levels, batch norm in every conv block ("same" padding, so the output is
the input's size, unlike the paper's valid convolutions). Upsampling is a 2x2 stride-2
ConvTranspose2d, or with ``bilinear=True`` ``F.interpolate(scale_factor=2, mode="bilinear")``
followed by a 1x1 conv that halves the channels. Height and width must be multiples of 16.

Usage: ``fxcost analyze examples/unet.py:unet --input 1x3x64x64 --arg bilinear=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """(3x3 conv, batch norm, ReLU) twice."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.block(x)


class Down(nn.Module):
    """2x2 max pool, then a double conv that doubles the channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.conv(self.pool(x))


class Up(nn.Module):
    """Upsample 2x to half the channels, concatenate the skip, double conv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = False) -> None:
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.reduce = nn.Conv2d(in_channels, in_channels // 2, kernel_size=1)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x, skip):  # type: ignore[no-untyped-def]
        if self.bilinear:  # fixed at construction: a plain Python bool for a tracer
            x = self.reduce(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 16, bilinear: bool = False) -> None:
        super().__init__()
        c = base
        self.inc = DoubleConv(in_channels, c)
        self.down1 = Down(c, 2 * c)
        self.down2 = Down(2 * c, 4 * c)
        self.down3 = Down(4 * c, 8 * c)
        self.down4 = Down(8 * c, 16 * c)
        self.up1 = Up(16 * c, 8 * c, bilinear)
        self.up2 = Up(8 * c, 4 * c, bilinear)
        self.up3 = Up(4 * c, 2 * c, bilinear)
        self.up4 = Up(2 * c, c, bilinear)
        self.outc = nn.Conv2d(c, num_classes, kernel_size=1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


def unet(in_channels: int = 3, num_classes: int = 2, bilinear: bool = False) -> UNet:
    """A 4-level U-Net with 16 base channels; ``bilinear`` picks interpolation over ConvTranspose2d."""
    return UNet(in_channels, num_classes, base=16, bilinear=bilinear)
