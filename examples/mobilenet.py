"""MobileNetV2, written for fxcost's examples and tests (no torchvision needed).

Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks" (2018): a stride-2 3x3 stem, seventeen inverted residual blocks (1x1 expand with
ReLU6, 3x3 depthwise with ReLU6, 1x1 linear projection, a residual when the shape allows), a 1x1
conv to 1280 channels, global pooling and a Linear. The blocks follow Table 2 of the paper, and the
layout (``features`` / ``classifier``, Dropout 0.2) follows torchvision, so ``mobilenet_v2()`` has
torchvision's 3,504,872 params at width 1.0 with 1000 classes.

Usage: ``fxcost analyze examples/mobilenet.py:mobilenet_v2 --input 1x3x224x224``.
"""

from __future__ import annotations

from torch import nn

# Table 2 of the paper: expansion t, output channels c, repeats n, first stride s.
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor``, never more than 10% below ``value``.

    The paper's reference code does this so every layer's channels suit vectorized kernels; at
    width 1.0 every channel count above is already a multiple of 8.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    padding = (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1), 3x3 depthwise, 1x1 linear projection, optional residual."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            # The projection is linear (no activation): the "linear bottleneck" of the title.
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):  # type: ignore[no-untyped-def]
        if self.use_residual:  # fixed at construction, so a tracer sees a plain Python bool
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        in_channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [conv_bn_relu6(3, in_channels, stride=2)]
        for t, c, n, s in SETTINGS:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
                in_channels = out_channels
        features.append(conv_bn_relu6(in_channels, last_channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.features(x)
        x = self.pool(x).flatten(1)
        return self.classifier(x)


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNetV2; 3,504,872 params at width 1.0 with 1000 classes."""
    return MobileNetV2(num_classes, width_mult)
