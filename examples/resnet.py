"""ResNet-18 and ResNet-50, written for fxcost's examples and tests (no torchvision needed).

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition" (2015): a 7x7 stem, four
stages of residual blocks (BasicBlock: two 3x3 convs; Bottleneck: 1x1, 3x3, 1x1 with a 4x
expansion), global average pooling and one Linear. The layout and names follow torchvision
(conv1/bn1/relu/maxpool/layer1..layer4/avgpool/fc, ``downsample`` = Sequential(conv1x1, bn)),
and the Bottleneck strides on its 3x3 conv, not on the first 1x1 ("ResNet v1.5", as torchvision
and most reference implementations do), so the parameter counts are torchvision's:
``resnet18()`` 11,689,512 and ``resnet50()`` 25,557,032 with 1000 classes.

Usage: ``fxcost analyze examples/resnet.py:resnet50 --input 1x3x224x224``.
"""

from __future__ import annotations

from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and an identity (or 1x1 projection) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x):  # type: ignore[no-untyped-def]
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Written out of place: `out += identity` would be traced as the same add anyway (a static
        # tracer records an out-of-place add), so the code says what the graph will hold.
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4: ResNet-50/101/152."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):  # type: ignore[no-untyped-def]
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity  # out of place on purpose: see BasicBlock.forward
        return self.relu(out)


class ResNet(nn.Module):
    """Stem, four stages of ``layers[i]`` blocks (64, 128, 256, 512 channels), pool, fc."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_stage(self, block: type[BasicBlock | Bottleneck], channels: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out_channels = channels * block.expansion
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(conv1x1(self.in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        stage: list[nn.Module] = [block(self.in_channels, channels, stride, downsample)]
        self.in_channels = out_channels
        stage += [block(out_channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18: BasicBlocks (2, 2, 2, 2); 11,689,512 params with 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50: Bottlenecks (3, 4, 6, 3); 25,557,032 params with 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)
