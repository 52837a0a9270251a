"""ResNets: the chapter's SimpleResNet and ResNet-18/34, one residual block for all three."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models._api import BATCH_NORM, SKIP, STEM, Option, register_model
from cnnbench.models._shapes import feature_shape

_IMAGENET_STEM_MIN_SIDE = 64


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    """The chapter's block: Conv3x3-BN-ReLU-Conv3x3-BN, plus the shortcut, then ReLU.

    ``skip=False`` drops the shortcut (and its 1x1 projection): the plain block of He et al.
    ``batch_norm=False`` replaces BN with identity and gives the convolutions a bias.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, skip: bool = True, batch_norm: bool = True
    ) -> None:
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = _norm(out_channels, batch_norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=bias)
        self.bn2 = _norm(out_channels, batch_norm)
        self.skip = skip
        self.downsample: nn.Module | None = None
        if skip and (stride != 1 or in_channels != out_channels):
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias),
                _norm(out_channels, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + (self.downsample(x) if self.downsample is not None else x)
        return F.relu(out)


class ResNet(nn.Module):
    """Stem, stages of residual blocks (the first block of each later stage has stride 2), GAP, FC.

    Stems: ``cifar`` is Conv3x3/1 (64) -BN-ReLU, as in the chapter's SimpleResNet; ``imagenet`` is
    Conv7x7/2 (64) -BN-ReLU-MaxPool3x3/2, as in He et al. and torchvision.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        imagenet_stem: bool,
        skip: bool = True,
        batch_norm: bool = True,
        name: str = "resnet",
    ) -> None:
        super().__init__()
        bias = not batch_norm
        if imagenet_stem:
            self.conv1 = nn.Conv2d(input_shape[0], 64, 7, stride=2, padding=3, bias=bias)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=bias)
            self.maxpool = nn.Identity()
        self.bn1 = _norm(64, batch_norm)
        stages = []
        in_ch = 64
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [ResidualBlock(in_ch, width, stride, skip, batch_norm)]
            layers += [ResidualBlock(width, width, 1, skip, batch_norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            in_ch = width
        self.layers = nn.ModuleList(stages)
        trunk = nn.Sequential(self.conv1, self.maxpool, *self.layers)
        feature_shape(trunk, input_shape, name)  # a clear error for inputs the trunk cannot take
        # Global average pooling over a map of any size (never a duplicating resize).
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for stage in self.layers:
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stem(stem: str, input_shape: tuple[int, int, int]) -> bool:
    if stem == "auto":
        return min(input_shape[1:]) >= _IMAGENET_STEM_MIN_SIDE
    return stem == "imagenet"


_RESNET_BN = Option("bool", True, BATCH_NORM.help)


@register_model(
    "simple_resnet",
    family="resnet",
    aliases=("resnet",),
    default_dataset="cifar10",
    supported_inputs=((3, 32, 32), (1, 28, 28), (3, 224, 224)),
    options={"skip": SKIP, "batch_norm": _RESNET_BN},
)
def simple_resnet(
    input_shape: tuple[int, int, int], num_classes: int, skip: bool = True, batch_norm: bool = True
) -> ResNet:
    """The chapter's SimpleResNet: 3 stages (64-128-256) of 2 blocks (He et al., 2015, "Deep residual learning")."""
    return ResNet(input_shape, num_classes, (64, 128, 256), (2, 2, 2), False, skip, batch_norm, "resnet")


@register_model(
    "resnet18",
    family="resnet",
    default_dataset="imagenet",
    supported_inputs=((3, 224, 224), (3, 32, 32), (1, 28, 28)),
    options={"skip": SKIP, "batch_norm": _RESNET_BN, "stem": STEM},
)
def resnet18(
    input_shape: tuple[int, int, int], num_classes: int, stem: str = "auto", **options: bool
) -> ResNet:
    """ResNet-18 (He et al., 2015, "Deep residual learning"); CIFAR stem (3x3/1, no max-pool) under 64x64."""
    return ResNet(
        input_shape,
        num_classes,
        (64, 128, 256, 512),
        (2, 2, 2, 2),
        _stem(stem, input_shape),
        name="resnet18",
        **options,
    )


@register_model(
    "resnet34",
    family="resnet",
    default_dataset="imagenet",
    supported_inputs=((3, 224, 224), (3, 32, 32)),
    options={"skip": SKIP, "batch_norm": _RESNET_BN, "stem": STEM},
)
def resnet34(
    input_shape: tuple[int, int, int], num_classes: int, stem: str = "auto", **options: bool
) -> ResNet:
    """ResNet-34 (He et al., 2015, "Deep residual learning"); CIFAR stem (3x3/1, no max-pool) under 64x64."""
    return ResNet(
        input_shape,
        num_classes,
        (64, 128, 256, 512),
        (3, 4, 6, 3),
        _stem(stem, input_shape),
        name="resnet34",
        **options,
    )
