"""The chapter's two CIFAR-10 networks: CIFAR10Net (BN + GAP + dropout) and CNNWithDropout."""

from __future__ import annotations

import torch
from torch import nn

from cnnbench.models._api import DROPOUT, POOL, Option, register_model
from cnnbench.models._shapes import feature_shape


def _conv_block(in_ch: int, out_ch: int, batch_norm: bool) -> list[nn.Module]:
    # With BN the chapter drops the convolution's bias (BN's shift replaces it); without BN it keeps it.
    if batch_norm:
        return [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]


class CIFAR10Net(nn.Module):
    """Conv64-pool-Conv128-pool-Conv256x2-pool-Conv512x2, each Conv-BN-ReLU, then GAP, Dropout, FC.

    Exactly the chapter's model at 3x32x32 (4,507,722 parameters). ``batch_norm=false`` is the
    chapter's ConvBlockWithoutBN (biased convolution, no BN) in every position.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        batch_norm: bool = True,
        dropout: float = 0.5,
        pool: str = "max",
    ) -> None:
        super().__init__()
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            *_conv_block(input_shape[0], 64, batch_norm),
            pool_cls(2),
            *_conv_block(64, 128, batch_norm),
            pool_cls(2),
            *_conv_block(128, 256, batch_norm),
            *_conv_block(256, 256, batch_norm),
            pool_cls(2),
            *_conv_block(256, 512, batch_norm),
            *_conv_block(512, 512, batch_norm),
        )
        feature_shape(self.features, input_shape, "cifar10net", prefix="features")
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.gap(self.features(x)), 1)
        return self.fc(self.dropout(x))


class CNNWithDropout(nn.Module):
    """Conv64-ReLU-pool-Conv128-ReLU-pool, then FC512-Dropout-FC256-Dropout-FC (the chapter's 2.4).

    The first FC layer's input is the flattened feature map: 128x8x8 at 3x32x32, as in the chapter.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.5, pool: str = "max"
    ) -> None:
        super().__init__()
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, 3, padding=1),
            nn.ReLU(inplace=True),
            pool_cls(2, 2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(inplace=True),
            pool_cls(2, 2),
        )
        c, h, w = feature_shape(self.features, input_shape, "cnn_dropout", prefix="features")
        self.classifier = nn.Sequential(
            nn.Linear(c * h * w, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    "cifar10net",
    family="chapter-cnn",
    default_dataset="cifar10",
    supported_inputs=((3, 32, 32), (1, 28, 28)),
    options={
        "batch_norm": Option("bool", True, "BatchNorm after each convolution"),
        "dropout": DROPOUT,
        "pool": POOL,
    },
)
def cifar10net(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> CIFAR10Net:
    """The chapter's CIFAR10Net: VGG-style convolutions with BN and global average pooling (Lin et al., 2013)."""
    return CIFAR10Net(input_shape, num_classes, **options)


@register_model(
    "cnn_dropout",
    family="chapter-cnn",
    default_dataset="cifar10",
    supported_inputs=((3, 32, 32), (1, 28, 28)),
    options={"dropout": DROPOUT, "pool": POOL},
)
def cnn_dropout(input_shape: tuple[int, int, int], num_classes: int, **options: object) -> CNNWithDropout:
    """The chapter's CNNWithDropout: dropout between FC layers (Srivastava et al., 2014, "Dropout")."""
    return CNNWithDropout(input_shape, num_classes, **options)
