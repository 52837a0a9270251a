"""What a model is to the registry: its builder, family, default data and declared options.

Shared by the registry (:mod:`cnnbench.models._api`) and the sources outside it
(:mod:`cnnbench.models._sources`), which both make :class:`ModelInfo`; no torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnbench.errors import InvalidOptionError

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
    default_input: tuple[int, int, int] | None = (
        None  # its own input size where it has one (torchvision's weights)
    )
    count_note: str = ""  # what its MACs are of, where papers cite another figure for "the same" model

    @property
    def description(self) -> str:
        doc = (self.builder.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``raw`` against the declared options; return the full, typed option set."""
        if self.open_options:
            return {key: loose(value) for key, value in raw.items()}
        parsed = {key: opt.default for key, opt in self.options.items()}
        parsed.update(self.defaults)
        for key, value in raw.items():
            if key not in self.options:
                valid = ", ".join(f"{k}={o.describe_values()}" for k, o in self.options.items()) or "none"
                raise InvalidOptionError(f"unknown option {key!r} for {self.name}: expected one of {valid}")
            parsed[key] = self.options[key].parse(key, value)
        return parsed


def loose(value: Any) -> Any:
    """An option's text as the value a factory most likely wants: bool, int, float, else the text."""
    if not isinstance(value, str):
        return value
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(low)
        except ValueError:
            pass
    return value


def format_options(options: Mapping[str, Any]) -> str:
    """Canonical text of an option set, used in CSV keys: sorted ``k=v`` joined by ';'."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return ";".join(f"{k}={fmt(v)}" for k, v in sorted(options.items()))
