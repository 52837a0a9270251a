"""Shape inference on the meta device, so builders can size their classifiers from the input size."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from cnnbench.errors import InputSizeError

_MAX_PROBE_SIDE = 1024


def _meta_forward(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    # Meta copies of parameters and buffers: shapes only, no memory, no arithmetic.
    state = {
        k: torch.empty_like(v, device="meta")
        for k, v in itertools.chain(module.named_parameters(), module.named_buffers())
    }
    x = torch.empty(2, *input_shape, device="meta")
    with torch.no_grad():
        return torch.func.functional_call(module, state, (x,))


def _failing_layer(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    """Name and type of the innermost module that was running when the forward pass failed."""
    stack: list[str] = []
    failed: list[str] = []
    names = {m: n for n, m in module.named_modules()}

    def pre(mod: nn.Module, _inp: object) -> None:
        stack.append(names.get(mod, "?"))

    def post(_mod: nn.Module, _inp: object, _out: object) -> None:
        stack.pop()

    handles = []
    for m in module.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        _meta_forward(module, input_shape)
    except Exception:
        failed = list(stack)
    finally:
        for h in handles:
            h.remove()
    if not failed:
        return "?"
    name = failed[-1]
    mod = module.get_submodule(name) if name else module
    return f"{name or '(input)'} ({type(mod).__name__})"


def smallest_working_side(module: nn.Module, channels: int) -> int | None:
    """Smallest square side the module accepts, or None if none up to 1024 does."""
    for side in range(1, _MAX_PROBE_SIDE + 1):
        try:
            out = _meta_forward(module, (channels, side, side))
        except Exception:
            continue
        if out.numel() > 0:
            return side
    return None


def feature_shape(
    module: nn.Module, input_shape: tuple[int, int, int], model_name: str, prefix: str = ""
) -> tuple[int, ...]:
    """Output shape (without batch) of ``module`` at ``input_shape``; a clear error if it cannot take it.

    ``prefix`` is the module's name inside the model, so the error names the layer as the model does.
    """
    try:
        out = _meta_forward(module, input_shape)
        if out.numel() == 0:
            raise RuntimeError("empty output")
        return tuple(out.shape[1:])
    except Exception:
        layer = _failing_layer(module, input_shape)
        if prefix and not layer.startswith("("):
            layer = f"{prefix}.{layer}"
        side = smallest_working_side(module, input_shape[0])
        got = "x".join(map(str, input_shape))
        smallest = f"{input_shape[0]}x{side}x{side}" if side else "none up to 1024x1024"
        raise InputSizeError(
            f"{model_name} cannot take input {got}: layer {layer} fails; expected at least {smallest}"
        ) from None
