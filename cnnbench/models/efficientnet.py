"""EfficientNet-B0, from torchvision (the chapter only describes it)."""

from __future__ import annotations

from torch import nn

from cnnbench.models._api import DROPOUT, Option, register_model
from cnnbench.models._shapes import feature_shape


@register_model(
    "efficientnet_b0",
    family="efficientnet",
    default_dataset="imagenet",
    supported_inputs=((3, 224, 224), (3, 32, 32), (1, 28, 28)),
    options={"dropout": Option("float", 0.2, DROPOUT.help, minimum=0, maximum=1)},
)
def efficientnet_b0(input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.2) -> nn.Module:
    """EfficientNet-B0 (Tan & Le, 2019, "EfficientNet: rethinking model scaling"), torchvision's definition.

    Not adapted for CIFAR: at 32x32 the five stride-2 stages leave a 1x1 map before global average
    pooling. Inputs with other than 3 channels get a first convolution with that many input channels.
    """
    from torchvision.models import efficientnet_b0 as tv_efficientnet_b0

    model = tv_efficientnet_b0(weights=None, num_classes=num_classes, dropout=dropout)
    if input_shape[0] != 3:
        old = model.features[0][0]
        model.features[0][0] = nn.Conv2d(
            input_shape[0], old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    feature_shape(model.features, input_shape, "efficientnet_b0", prefix="features")
    return model
