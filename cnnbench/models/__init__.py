"""The registry of architectures; importing this package registers every family."""

from cnnbench.models import alexnet, chapter_cnns, efficientnet, lenet, resnet, vgg, vit  # noqa: F401
from cnnbench.models._api import (
    ModelInfo,
    Option,
    format_options,
    get_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = [
    "ModelInfo",
    "Option",
    "format_options",
    "get_model",
    "get_model_info",
    "list_models",
    "register_model",
]
