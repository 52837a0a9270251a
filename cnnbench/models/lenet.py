"""LeNet-5, as the chapter defines it."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models._api import POOL, Option, register_model
from cnnbench.models._shapes import feature_shape


class LeNet5(nn.Module):
    """Conv(6,5x5) - pool - Conv(16,5x5) - pool - FC 120 - FC 84 - FC classes, ReLU activations.

    The chapter's model takes 1x28x28 and flattens 16x4x4; here the first FC layer's input is derived
    from the feature map, so at 3x32x32 (CIFAR) it flattens 16x5x5 (62,006 parameters).
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, pool: str = "avg") -> None:
        super().__init__()
        pool_cls = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        self.conv1 = nn.Conv2d(input_shape[0], 6, kernel_size=5)
        self.pool1 = pool_cls(kernel_size=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.pool2 = pool_cls(kernel_size=2)
        features = nn.Sequential(
            OrderedDict(conv1=self.conv1, pool1=self.pool1, conv2=self.conv2, pool2=self.pool2)
        )
        c, h, w = feature_shape(features, input_shape, "lenet5")
        self.fc1 = nn.Linear(c * h * w, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@register_model(
    "lenet5",
    family="lenet",
    aliases=("lenet",),
    default_dataset="mnist",
    supported_inputs=((1, 28, 28), (3, 32, 32)),
    options={"pool": Option("choice", "avg", POOL.help, choices=POOL.choices)},
)
def lenet5(input_shape: tuple[int, int, int], num_classes: int, pool: str = "avg") -> LeNet5:
    """LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition")."""
    return LeNet5(input_shape, num_classes, pool=pool)
