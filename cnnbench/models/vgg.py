"""VGG-11/13/16/19, as the chapter defines VGG-16 (VGGBlock of 3x3 convolutions, 2x2 max-pools)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnbench.models._api import BATCH_NORM, DROPOUT, POOL, register_model
from cnnbench.models._shapes import feature_shape

# Convolutions per block; the widths are always 64-128-256-512-512.
_CONVS_PER_BLOCK = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_WIDTHS = (64, 128, 256, 512, 512)


class VGGBlock(nn.Module):
    """``num_convs`` x (Conv3x3 [-> BN] -> ReLU). Convolutions keep their bias, BN or not."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class VGG(nn.Module):
    """Five VGG blocks each followed by a 2x2 pool, then FC4096-ReLU-Dropout-FC4096-ReLU-Dropout-FC.

    The classifier's input is the flattened feature map at the given input size: 512x7x7 at 224x224
    (the chapter's ImageNet model), 512x1x1 at 32x32 (CIFAR: classifier 512-4096-4096-classes).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        convs_per_block: tuple[int, ...],
        batch_norm: bool = False,
        dropout: float = 0.5,
        pool: str = "max",
        name: str = "vgg",
    ) -> None:
        super().__init__()
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        layers: list[nn.Module] = []
        in_ch = input_shape[0]
        for width, n in zip(_WIDTHS, convs_per_block, strict=True):
            layers += [VGGBlock(in_ch, width, n, batch_norm), pool_cls(2, 2)]
            in_ch = width
        self.features = nn.Sequential(*layers)
        c, h, w = feature_shape(self.features, input_shape, name, prefix="features")
        self.classifier = nn.Sequential(
            nn.Linear(c * h * w, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _build(
    depth_name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    batch_norm: bool = False,
    dropout: float = 0.5,
    pool: str = "max",
) -> VGG:
    return VGG(
        input_shape,
        num_classes,
        _CONVS_PER_BLOCK[depth_name],
        batch_norm=batch_norm,
        dropout=dropout,
        pool=pool,
        name=depth_name + ("_bn" if batch_norm else ""),
    )


_REGISTER = partial(
    register_model,
    family="vgg",
    default_dataset="imagenet",
    supported_inputs=((3, 224, 224), (3, 32, 32)),
    options={"batch_norm": BATCH_NORM, "dropout": DROPOUT, "pool": POOL},
)


@_REGISTER("vgg11")
def vgg11(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-11 (Simonyan & Zisserman, 2014, "Very deep convolutional networks for large-scale image recognition")."""
    return _build("vgg11", input_shape, num_classes, **options)


@_REGISTER("vgg13")
def vgg13(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-13 (Simonyan & Zisserman, 2014, "Very deep convolutional networks for large-scale image recognition")."""
    return _build("vgg13", input_shape, num_classes, **options)


@_REGISTER("vgg16", aliases=("vgg",))
def vgg16(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-16, the chapter's model (Simonyan & Zisserman, 2014, "Very deep convolutional networks")."""
    return _build("vgg16", input_shape, num_classes, **options)


@_REGISTER("vgg19")
def vgg19(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-19 (Simonyan & Zisserman, 2014, "Very deep convolutional networks for large-scale image recognition")."""
    return _build("vgg19", input_shape, num_classes, **options)


@_REGISTER("vgg11_bn", defaults={"batch_norm": True})
def vgg11_bn(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-11 with BatchNorm after each convolution (Ioffe & Szegedy, 2015, "Batch normalization")."""
    return _build("vgg11", input_shape, num_classes, **options)


@_REGISTER("vgg13_bn", defaults={"batch_norm": True})
def vgg13_bn(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-13 with BatchNorm after each convolution (Ioffe & Szegedy, 2015, "Batch normalization")."""
    return _build("vgg13", input_shape, num_classes, **options)


@_REGISTER("vgg16_bn", defaults={"batch_norm": True})
def vgg16_bn(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-16 with BatchNorm after each convolution (Ioffe & Szegedy, 2015, "Batch normalization")."""
    return _build("vgg16", input_shape, num_classes, **options)


@_REGISTER("vgg19_bn", defaults={"batch_norm": True})
def vgg19_bn(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> VGG:
    """VGG-19 with BatchNorm after each convolution (Ioffe & Szegedy, 2015, "Batch normalization")."""
    return _build("vgg19", input_shape, num_classes, **options)
