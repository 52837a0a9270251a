"""A small Vision Transformer (ViT-Tiny widths), from torchvision's VisionTransformer."""

from __future__ import annotations

from torch import nn

from cnnbench.errors import InputSizeError
from cnnbench.models._api import Option, register_model


@register_model(
    "vit_tiny",
    family="vit",
    default_dataset="cifar10",
    supported_inputs=((3, 32, 32), (1, 28, 28)),
    options={
        "patch_size": Option(
            "int", 4, "side of the square patches (the input side must be a multiple)", minimum=1
        ),
        "dropout": Option("float", 0.0, "dropout inside the encoder", minimum=0, maximum=1),
    },
)
def vit_tiny(
    input_shape: tuple[int, int, int], num_classes: int, patch_size: int = 4, dropout: float = 0.0
) -> nn.Module:
    """ViT-Tiny: 12 layers, width 192, 3 heads, MLP 768 (Dosovitskiy et al., 2020, "An image is worth 16x16 words").

    Patch 4 by default so that 32x32 inputs give 8x8 = 64 tokens (ViT's 16x16 patches suit 224x224).
    """
    from torchvision.models.vision_transformer import VisionTransformer

    c, h, w = input_shape
    if h != w or h % patch_size:
        got = "x".join(map(str, input_shape))
        raise InputSizeError(
            f"vit_tiny cannot take input {got}: expected a square input whose side is a multiple of "
            f"patch_size={patch_size} (smallest {c}x{patch_size}x{patch_size})"
        )
    model = VisionTransformer(
        image_size=h,
        patch_size=patch_size,
        num_layers=12,
        num_heads=3,
        hidden_dim=192,
        mlp_dim=768,
        dropout=dropout,
        num_classes=num_classes,
    )
    if c != 3:
        model.conv_proj = nn.Conv2d(c, 192, kernel_size=patch_size, stride=patch_size)
    return model
