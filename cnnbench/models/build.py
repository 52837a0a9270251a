"""Building a model as every command runs it: from its name, options, input size and classes, on a
device, from a seed; and refusing, in one line, a size that cannot fit the device's memory."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from typing import Any

from cnnbench.data.specs import format_input_size, get_dataset_spec
from cnnbench.device import is_cuda
from cnnbench.errors import CnnbenchError, InputSizeError, InvalidArgumentError
from cnnbench.models._api import get_model_info


def resolve_input(
    model: str, input_size: tuple[int, int, int] | None, dataset: str | None, num_classes: int | None
) -> tuple[tuple[int, int, int], int]:
    """Input shape and class count from --input-size / --dataset / the model's default dataset."""
    info = get_model_info(model)
    spec = get_dataset_spec(dataset or info.default_dataset)
    # A model's own size (Inception's 299, a ViT's 518) unless a dataset or a size is asked for.
    own = info.default_input if dataset is None else None
    shape = tuple(input_size) if input_size else tuple(own or spec.input_shape)
    if num_classes is None and spec.num_classes < 1:
        raise InvalidArgumentError(
            f"expected --num-classes with --dataset {spec.name} (its classes are its folders), got none"
        )
    if num_classes is not None and num_classes < 1:
        raise InvalidArgumentError(f"expected --num-classes >= 1, got {num_classes}")
    return shape, int(num_classes or spec.num_classes)  # type: ignore[return-value]


def build(
    model: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int, device: Any = None,
    check_memory: tuple[int, str] | None = None,
):  # fmt: skip
    """Build a registered model (optionally directly on ``device``, e.g. 'meta') with parsed options.

    ``check_memory=(batch, device)`` first measures the model on the meta device and refuses, with one
    line, a size whose parameters and activations cannot fit that device's memory.
    """
    import torch

    info = get_model_info(model)
    parsed = info.parse_options(options)
    if check_memory is not None:
        check_fits(info.name, options, shape, num_classes, *check_memory)
    with torch.device(device or "cpu"):
        return info.builder(shape, num_classes, **parsed), parsed


def build_meta(name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int) -> Any:
    """The model on the meta device (shapes only, no memory): built there where its builder allows, else
    built on the CPU without initialising its weights (some builders compute with tensors as they build,
    torchvision's RegNets among them) and moved to meta."""
    import torch

    info = get_model_info(name)
    parsed = info.parse_options(options)
    try:
        with torch.device("meta"):
            return info.builder(shape, num_classes, **parsed)
    except CnnbenchError as exc:
        # the builder ran and its result was refused: the CPU would refuse it too; but a zoo builder's own
        # refusal (said in one line) may be the meta device's, and is asked again on the CPU
        if not getattr(exc, "builder_raised", False):
            raise
    except Exception:  # a builder that computes with tensors: the CPU below
        pass
    import inspect

    with uninitialised():  # the builder itself (not its output check, which runs on meta next)
        model = inspect.unwrap(info.builder)(shape, num_classes, **parsed).to("meta")
    if info.open_options:
        from cnnbench.models._sources import check_model

        check_model(model, shape, num_classes, info.name)
    return model


@functools.lru_cache(maxsize=4)
def _shared_meta(
    name: str, options: tuple[tuple[str, str], ...], shape: tuple[int, int, int], num_classes: int
) -> Any:
    return build_meta(name, dict(options), shape, num_classes)


def shared_meta(name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int) -> Any:
    """:func:`build_meta`'s model, built once per process for the counts, the memory check and the
    estimate that one command makes of it (each sets the mode it needs; none changes the model)."""
    return _shared_meta(name, tuple(sorted(options.items())), tuple(shape), num_classes)


def forget_shared_meta() -> None:
    """Forget the models :func:`shared_meta` built: a name now names another model."""
    _shared_meta.cache_clear()


def build_for_counting(
    name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int
) -> Any:
    """The model with real tensors on the CPU and every weight zero: for a counter that must run it
    (fvcore traces a forward) and needs shapes, not values. Initialising a large model's weights costs
    seconds that no count depends on. Its output was checked when :func:`shared_meta` built it."""
    import inspect

    import torch

    info = get_model_info(name)
    with uninitialised(), torch.device("cpu"):
        model = inspect.unwrap(info.builder)(shape, num_classes, **info.parse_options(options))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # not left uninitialised: stray NaNs or denormals would slow the forward
    return model


@contextlib.contextmanager
def uninitialised() -> Iterator[None]:
    """Inside the block, torch.nn.init's functions leave tensors as they are: a model is built at the
    cost of allocating its weights, for its shapes alone."""
    import torch

    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *a, **k: tensor)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def prepare_model(
    name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int, device: str,
    channels_last: bool = False, seed: int = 0, check_batch: int | None = None,
) -> Any:  # fmt: skip
    """A model as every command runs it: built from ``seed``, on ``device``, channels-last if asked;
    with ``check_batch``, refused in one line when that batch cannot fit the device."""
    import torch

    torch.manual_seed(seed)
    check = (check_batch, device) if check_batch is not None else None
    model, _ = build(name, options, shape, num_classes, check_memory=check)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def forward_bytes(model: Any, shape: tuple[int, int, int], batch: int) -> int:
    """Bytes of the input and of every leaf module's output for one fp32 forward of ``batch``,
    measured on the meta device (shapes only): an upper bound on inference activations."""
    import torch

    total = batch * math.prod(shape) * 4

    def count(_m: Any, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(batch, *shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def device_memory_bytes(device: str) -> int:
    """All the memory of ``device``: the GPU's, or the host's RAM."""
    import torch

    if is_cuda(device):
        return torch.cuda.mem_get_info(torch.device(device))[1]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_bytes(
    name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int
) -> tuple[int, int]:
    """(bytes of the parameters, bytes of the input and every leaf module's output for one sample),
    measured on the meta device, kept in the user's cache of counts."""

    from cnnbench.models import cache

    key = cache.key("memory", name, options, shape, num_classes)
    found = cache.get(key)
    if found is not None:
        return int(found[0]), int(found[1])
    meta = shared_meta(name, options, shape, num_classes)
    params = sum(p.numel() * p.element_size() for p in meta.parameters())
    per_sample = forward_bytes(meta, shape, 1)
    cache.put(key, [params, per_sample])
    return params, per_sample


def check_fits(name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int, batch: int,
                device: str) -> None:  # fmt: skip
    """One line, before anything is built for real, when ``batch`` of the model at ``shape`` cannot fit
    ``device``'s memory (its parameters and the activations of one forward, from the meta device)."""
    params, per_sample = memory_bytes(name, options, shape, num_classes)
    need = params + per_sample * batch  # activations grow with the batch
    have = device_memory_bytes(device)
    if need > have:
        raise InputSizeError(
            f"{name} at {format_input_size(shape)} needs about {need / 2**30:,.1f} GiB for its parameters and "
            f"the activations of a batch of {batch}; expected a size that fits in {have / 2**30:,.1f} GiB ({device})"
        )
