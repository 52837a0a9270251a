"""cnnbench: benchmark convolutional network architectures in PyTorch.

The command line is ``cnnbench``; from Python, the same commands are functions (:mod:`cnnbench.api`),
imported on first use so that ``import cnnbench`` (and ``cnnbench --help``) stays free of torch::

    import cnnbench
    cnnbench.summary("vgg16").layers
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("Comparison", "Profile", "Run", "Summary", "compare", "create_model", "list_models", "make_report", "profile",
        "runs", "summary", "train")  # fmt: skip
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from cnnbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'cnnbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
