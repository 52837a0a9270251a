"""AlexNet, as the chapter defines it (single-tower, 96-256-384-384-256 channels)."""

from __future__ import annotations

import torch
from torch import nn

from cnnbench.models._api import DROPOUT, STEM, register_model
from cnnbench.models._shapes import feature_shape

# The ImageNet stem (11x11 stride 4, three 3x3/2 max-pools) leaves at least 3x3 before the last pool
# only from 63x63 up; below that the CIFAR stem is used.
_IMAGENET_STEM_MIN_SIDE = 64


def _use_imagenet_stem(stem: str, input_shape: tuple[int, int, int]) -> bool:
    if stem == "auto":
        return min(input_shape[1:]) >= _IMAGENET_STEM_MIN_SIDE
    return stem == "imagenet"


class AlexNet(nn.Module):
    """Five convolutions and three max-pools, then Dropout-FC4096-Dropout-FC4096-FC classes.

    CIFAR adaptation (inputs under 64x64, or ``stem=cifar``): the first convolution is 3x3 stride 1
    padding 1 instead of 11x11 stride 4 padding 2; everything else is the chapter's. At 3x32x32 the
    classifier then takes 256x3x3. The classifier's input is always derived from the feature map.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.5, stem: str = "auto"
    ) -> None:
        super().__init__()
        in_ch = input_shape[0]
        if _use_imagenet_stem(stem, input_shape):
            first = nn.Conv2d(in_ch, 96, kernel_size=11, stride=4, padding=2)
        else:
            first = nn.Conv2d(in_ch, 96, kernel_size=3, stride=1, padding=1)
        self.features = nn.Sequential(
            first,
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        c, h, w = feature_shape(self.features, input_shape, "alexnet", prefix="features")
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c * h * w, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    "alexnet",
    family="alexnet",
    default_dataset="imagenet",
    supported_inputs=((3, 224, 224), (3, 32, 32), (1, 28, 28)),
    options={"dropout": DROPOUT, "stem": STEM},
    count_note=(
        "one tower at the paper's widths: 1.135 G MACs at 3x224x224, 1.6x the 0.7 G papers cite for the "
        "two-tower network, where conv2, conv4 and conv5 each see half the channels (counted that way: "
        "0.724 G MACs, 61.0 M parameters)"
    ),
)
def alexnet(
    input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.5, stem: str = "auto"
) -> AlexNet:
    """AlexNet with the paper's single-tower widths 96-256-384-384-256, not torchvision's 64-192-384-256-256 (Krizhevsky et al., 2012).

    "ImageNet classification with deep convolutional neural networks": 62,378,344 parameters at
    3x224x224 with 1000 classes (torchvision's variant has 61,100,840).
    """
    return AlexNet(input_shape, num_classes, dropout=dropout, stem=stem)
