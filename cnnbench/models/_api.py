"""The architecture registry: ``@register_model()`` builders, ``list_models``, ``get_model``.

A builder takes ``input_shape`` (C, H, W), ``num_classes`` and its declared options, and returns an
``nn.Module``. Options are declared with :class:`Option` so that the CLI can parse ``-o key=value``
strings, list them, and reject unknown keys or bad values with a message naming the valid ones.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnbench.errors import InvalidOptionError, UnknownModelError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One builder option: its type, default, the values it allows and what it does."""

    kind: str  # "bool" | "float" | "int" | "choice"
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def describe_values(self) -> str:
        if self.kind == "bool":
            return "true|false"
        if self.kind == "choice":
            return "|".join(self.choices)
        lo = "" if self.minimum is None else f"{self.minimum:g}"
        hi = "" if self.maximum is None else f"{self.maximum:g}"
        return f"{self.kind} in [{lo}, {hi}]" if (lo or hi) else self.kind

    def parse(self, key: str, raw: Any) -> Any:
        text = str(raw).strip().lower()
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        elif self.kind == "choice":
            if text in self.choices:
                return text
        else:
            cast = float if self.kind == "float" else int
            try:
                value = cast(raw) if not isinstance(raw, str) else cast(text)
            except ValueError:
                value = None
            if value is not None and (
                (self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum)
            ):
                return value
        raise InvalidOptionError(
            f"bad value for option {key}: expected {self.describe_values()}, got {raw!r}"
        )


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


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., Any]
    family: str
    aliases: tuple[str, ...]
    default_dataset: str
    supported_inputs: tuple[tuple[int, int, int], ...]
    options: Mapping[str, Option]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    open_options: bool = False  # a model from outside the registry takes whatever its factory takes

    @property
    def description(self) -> str:
        doc = (self.builder.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``raw`` against the declared options; return the full, typed option set."""
        if self.open_options:
            from cnnbench.models._sources import loose

            return {key: loose(value) for key, value in raw.items()}
        parsed = {key: opt.default for key, opt in self.options.items()}
        parsed.update(self.defaults)
        for key, value in raw.items():
            if key not in self.options:
                valid = ", ".join(f"{k}={o.describe_values()}" for k, o in self.options.items()) or "none"
                raise InvalidOptionError(f"unknown option {key!r} for {self.name}: expected one of {valid}")
            parsed[key] = self.options[key].parse(key, value)
        return parsed


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
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder ``fn(input_shape, num_classes, **options) -> nn.Module``."""

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
    from cnnbench.models._sources import external_info, is_external

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


def get_model(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> Any:
    """Build a registered model for ``input_shape`` and ``num_classes`` (the default dataset's if None)."""
    from cnnbench.datasets import get_dataset_spec

    info = get_model_info(name)
    spec = get_dataset_spec(info.default_dataset)
    parsed = info.parse_options(options)
    return info.builder(
        tuple(input_shape or spec.input_shape), int(num_classes or spec.num_classes), **parsed
    )


def parse_option_strings(items: Iterable[str]) -> dict[str, str]:
    """Turn ``["k=v", ...]`` from ``-o`` into a dict, rejecting malformed items."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidOptionError(f"expected -o key=value, got {item!r}")
        out[key.strip().lower()] = value.strip()
    return out


def format_options(options: Mapping[str, Any]) -> str:
    """Canonical text of an option set, used in CSV keys: sorted ``k=v`` joined by ';'."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return ";".join(f"{k}={fmt(v)}" for k, v in sorted(options.items()))
