"""VGG networks, written for fxcost's examples and tests (no torchvision needed).

- :func:`d2l_vgg11`: the seed's d2l-style VGG, built from an ``arch`` tuple of
  (num_convs, out_channels) blocks with LazyConv2d/LazyLinear, 10 classes.
- :func:`vgg11` ... :func:`vgg19`: configs A, B, D and E of Table 1 of Simonyan & Zisserman,
  "Very Deep Convolutional Networks for Large-Scale Image Recognition" (2014), laid out as
  torchvision lays them out (features / avgpool / classifier, 1000 classes): ``vgg19()`` is the
  network the seed prints.
- :func:`vgg19_paper`: the paper's VGG-19 without the AdaptiveAvgPool2d, the network of the
  seed's layer table.

Usage: ``fxcost analyze examples/vgg.py:vgg19_paper --input 1x3x224x224``.
"""

from __future__ import annotations

from torch import nn

# Table 1 of the VGG paper as (num_convs, out_channels) blocks. The seed's arch16 has a typo,
# (32, 512) for (3, 512); these are the paper's.
ARCH = {
    "A": ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),  # VGG-11
    "B": ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),  # VGG-13
    "D": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),  # VGG-16
    "E": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),  # VGG-19
}
ARCH_BY_DEPTH = {11: ARCH["A"], 13: ARCH["B"], 16: ARCH["D"], 19: ARCH["E"]}


# --- d2l style: blocks of lazy layers -------------------------------------------------------


def d2l_vgg_block(num_convs: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.LazyConv2d(out_channels, kernel_size=3, padding=1), nn.ReLU()]
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class D2LVGG(nn.Module):
    """d2l's VGG: ``net`` = the conv blocks, Flatten, then three lazy Linear layers."""

    def __init__(self, arch: tuple[tuple[int, int], ...] = ARCH["A"], num_classes: int = 10) -> None:
        super().__init__()
        blocks = [d2l_vgg_block(n, c) for n, c in arch]
        self.net = nn.Sequential(
            *blocks,
            nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x)


def d2l_vgg11(num_classes: int = 10) -> D2LVGG:
    """The seed's VGG-11 (d2l, 10 classes)."""
    return D2LVGG(ARCH["A"], num_classes)


def d2l_vgg(depth: int = 11, num_classes: int = 10) -> D2LVGG:
    return D2LVGG(ARCH_BY_DEPTH[depth], num_classes)


# --- torchvision style ------------------------------------------------------------------------


def make_features(arch: tuple[tuple[int, int], ...], in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for num_convs, out_channels in arch:
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def make_classifier(num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )


class VGG(nn.Module):
    """features / avgpool / classifier, as torchvision and the seed's printout lay it out."""

    def __init__(self, arch: tuple[tuple[int, int], ...] = ARCH["E"], num_classes: int = 1000) -> None:
        super().__init__()
        self.features = make_features(arch)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = make_classifier(num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.features(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        return self.classifier(x)


class PaperVGG(nn.Module):
    """The paper's network: no adaptive pooling, so it takes 224x224 inputs only."""

    def __init__(self, arch: tuple[tuple[int, int], ...] = ARCH["E"], num_classes: int = 1000) -> None:
        super().__init__()
        self.features = make_features(arch)
        self.classifier = make_classifier(num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x).flatten(1))


def vgg11(num_classes: int = 1000) -> VGG:
    return VGG(ARCH["A"], num_classes)


def vgg13(num_classes: int = 1000) -> VGG:
    return VGG(ARCH["B"], num_classes)


def vgg16(num_classes: int = 1000) -> VGG:
    return VGG(ARCH["D"], num_classes)


def vgg19(num_classes: int = 1000) -> VGG:
    """The VGG-19 of the seed's printout (with AdaptiveAvgPool2d, 1000 classes)."""
    return VGG(ARCH["E"], num_classes)


def vgg19_paper(num_classes: int = 1000) -> PaperVGG:
    """The VGG-19 of the seed's layer table (no AdaptiveAvgPool2d)."""
    return PaperVGG(ARCH["E"], num_classes)
