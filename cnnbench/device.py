"""Where work runs: device selection, synchronisation and autocast, shared by train and profile."""

from __future__ import annotations

import contextlib
from typing import Any

from cnnbench.errors import DeviceError


def use_channels_last(requested: bool | None, device: str) -> bool:
    """NHWC unless asked otherwise on CUDA, where cuDNN's tensor-core convolutions are NHWC-native
    (SimpleResNet's fp32 training step on an H200: 6.06 -> 3.99 ms); NCHW on the CPU."""
    return device.startswith("cuda") if requested is None else requested


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; reject CUDA requests without a GPU."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"expected a CUDA GPU for --device {name}, got none (torch sees no GPU); use --device cpu"
            )
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"expected --device cuda:N with N < {torch.cuda.device_count()}, got {name!r}")
        return name
    raise DeviceError(f"expected --device auto|cpu|cuda[:N], got {name!r}")


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def autocast(precision: str, device: str) -> Any:

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    # The cast cache must be off for CUDA graph capture; one forward reuses each weight once anyway.
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, cache_enabled=False)
