"""A network of your own, as cnnbench takes one: a factory called with ``num_classes`` and, if it takes
them, ``input_shape`` (C, H, W) and the ``-o key=value`` options.

    cnnbench summary examples/net.py:make -o width=32
    cnnbench compare lenet examples/net.py:make:width=16,32 --epochs 20
    cnnbench train examples.net:make -o width=8 -o depth=3      # as package.module:callable
"""

from __future__ import annotations

from torch import nn


def make(
    num_classes: int, input_shape: tuple[int, int, int] = (3, 32, 32), width: int = 16, depth: int = 2
) -> nn.Module:
    """A small all-convolutional network: ``depth`` blocks of 3x3 convolutions, BatchNorm and ReLU,
    each halving the image and doubling the channels from ``width``, then global pooling."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for block in range(depth):
        out = width * 2**block
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]  # fmt: skip
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
