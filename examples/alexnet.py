"""d2l's AlexNet (Krizhevsky et al., 2012, as d2l writes it): lazy layers, 10 classes.

The seed compares it with d2l's VGG-11 on 3x224x224 inputs:
``fxcost compare examples/vgg.py:d2l_vgg11 examples/alexnet.py:alexnet --input 1x3x224x224``.
"""

from __future__ import annotations

from torch import nn


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LazyConv2d(96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LazyConv2d(256, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
            nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
            nn.LazyConv2d(256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x)


def alexnet(num_classes: int = 10) -> AlexNet:
    return AlexNet(num_classes)
