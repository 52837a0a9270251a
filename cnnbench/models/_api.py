"""The architecture registry: ``@register_model()`` builders, ``list_models``, ``get_model``.

A builder takes ``input_shape`` (C, H, W), ``num_classes`` and its declared options, and returns an
``nn.Module``. Options are declared with :class:`~cnnbench.models._info.Option` so that the CLI can
parse ``-o key=value`` strings, list them, and reject unknown keys or bad values with a message naming
the valid ones. Names from outside the registry (``torchvision:NAME``, a user's factory) are resolved
apart, in :mod:`cnnbench.models._sources`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cnnbench.errors import UnknownModelError
from cnnbench.models._info import ModelInfo, Option, format_options  # noqa: F401  (the registry's face)
from cnnbench.models._sources import external_info, is_external, object_info

# Options shared by several families, defined once.
BATCH_NORM = Option("bool", False, "BatchNorm after each convolution")
DROPOUT = Option(
    "float", 0.5, "dropout probability before the classifier's linear layers", minimum=0, maximum=1
)
POOL = Option("choice", "max", "pooling type of the feature extractor", choices=("max", "avg"))
SKIP = Option("bool", True, "residual (skip) connections; false gives a plain network of the same depth")
STEM = Option(
    "choice",
    "auto",
    "input stem: imagenet (large kernel, stride) or cifar (3x3, stride 1); auto picks by input size",
    choices=("auto", "imagenet", "cifar"),
)


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str | None = None,
    *,
    family: str,
    default_dataset: str,
    supported_inputs: Iterable[tuple[int, int, int]],
    aliases: Iterable[str] = (),
    options: Mapping[str, Option] | None = None,
    defaults: Mapping[str, Any] | None = None,
    count_note: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder ``fn(input_shape, num_classes, **options) -> nn.Module``; ``count_note`` says what
    its MACs are of where a paper's figure for the model differs (summary shows it)."""

    def wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model {key!r} is already registered")
        info = ModelInfo(
            name=key,
            builder=fn,
            family=family,
            aliases=tuple(aliases),
            default_dataset=default_dataset,
            supported_inputs=tuple(supported_inputs),
            options=dict(options or {}),
            defaults=dict(defaults or {}),
            count_note=count_note,
        )
        _REGISTRY[key] = info
        for alias in info.aliases:
            _ALIASES[alias] = key
        return fn

    return wrapper


def list_models(
    include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> list[str]:
    """Registered names, sorted, filtered by glob patterns matched against names and aliases."""

    def patterns(p: str | Iterable[str] | None) -> list[str]:
        return [p] if isinstance(p, str) else list(p or [])

    def matches(info: ModelInfo, pats: list[str]) -> bool:
        return any(fnmatch.fnmatch(n, pat) for pat in pats for n in (info.name, *info.aliases))

    inc, exc = patterns(include), patterns(exclude)
    names = []
    for info in _REGISTRY.values():
        if inc and not matches(info, inc):
            continue
        if exc and matches(info, exc):
            continue
        names.append(info.name)
    return sorted(names)


def get_model_info(name: str) -> ModelInfo:
    own = object_info(name)
    if own is not None:  # a Python object handed to the API, under its rows' name
        return own
    if is_external(name.strip()):
        return external_info(name.strip())
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        candidates = list(_REGISTRY) + list(_ALIASES)
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `cnnbench list` to see them all"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return _REGISTRY[key]


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered name or alias."""
    key = name.strip().lower()
    return key in _REGISTRY or key in _ALIASES


def get_model(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> Any:
    """Build a registered model for ``input_shape`` and ``num_classes`` (the default dataset's if None)."""
    from cnnbench.data.specs import get_dataset_spec

    info = get_model_info(name)
    spec = get_dataset_spec(info.default_dataset)
    parsed = info.parse_options(options)
    return info.builder(
        tuple(input_shape or spec.input_shape), int(num_classes or spec.num_classes), **parsed
    )
