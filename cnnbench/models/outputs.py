"""What a model's forward returns, read as logits: a tensor; a named tuple with ``logits`` (torchvision's
GoogLeNet and Inception in train mode, with their auxiliary heads' logits beside); a tuple or list (the
main logits first: timm's distilled models in train mode); a dict with ``logits``. Anything else is an
output cnnbench cannot interpret, and says so in one line."""

from __future__ import annotations

from typing import Any

from cnnbench.errors import UnknownModelError


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def logits_of(out: Any, name: str = "the model") -> Any:
    """The main logits of a forward's output."""
    if _is_tensor(out):
        return out
    if isinstance(out, dict) and _is_tensor(out.get("logits")):
        return out["logits"]
    if _is_tensor(getattr(out, "logits", None)):
        return out.logits
    if isinstance(out, (tuple, list)) and out and _is_tensor(out[0]):
        return out[0]
    raise UnknownModelError(
        f"expected {name} to return logits (a tensor, or a tuple, named tuple or dict holding them), got "
        f"{type(out).__name__}"
    )


def aux_logits_of(out: Any) -> list[Any]:
    """The auxiliary heads' logits of a train-mode output (GoogLeNet's two, Inception's one); none for a
    tensor, and none for a tuple whose other members are not logits of the same shape."""
    if _is_tensor(out):
        return []
    if hasattr(out, "_fields"):  # a named tuple: every field but the logits
        values = [getattr(out, f) for f in out._fields if f != "logits"]
    elif isinstance(out, dict):
        values = [v for k, v in out.items() if k != "logits"]
    elif isinstance(out, (tuple, list)):
        values = list(out[1:])
    else:
        return []
    main = logits_of(out)
    return [v for v in values if _is_tensor(v) and tuple(v.shape) == tuple(main.shape)]


def tensors_only(_module: Any, _inputs: Any, out: Any) -> Any:
    """A forward hook that leaves out the members of an output that are not tensors (a dict or tuple that
    also holds numbers or text), which torch.jit's trace, and so fvcore, cannot follow. The same ops make
    the same tensors, so the counts are the model's; an output of tensors alone is returned as it is."""
    if _is_tensor(out) or not isinstance(out, (dict, tuple, list)):
        return out
    values = out.values() if isinstance(out, dict) else out
    if all(_is_tensor(v) for v in values):
        return out
    if isinstance(out, dict):
        return {k: v for k, v in out.items() if _is_tensor(v)}
    return tuple(v for v in out if _is_tensor(v))
