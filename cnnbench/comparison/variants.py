"""The variant grammar: ``MODEL[:k=v[,v2...][:k2=v...]]``. A comma list expands to one variant per value
and several keys expand to their product: ``cnn_dropout:dropout=0,0.3,0.5,0.7`` is four variants."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cnnbench.errors import CnnbenchError, InvalidArgumentError


@dataclass(frozen=True)
class Variant:
    model: str
    options: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return self.model + "".join(f":{k}={v}" for k, v in self.options)


def parse_variants(specs: list[str]) -> list[Variant]:
    """Expand ``MODEL[:k=v,...]`` specs; malformed text or an unknown model is an error."""
    from cnnbench.models import get_model_info
    from cnnbench.models._sources import is_external, split_spec

    variants: list[Variant] = []
    for spec in specs:
        name, rest = split_spec(spec) if is_external(spec) else spec.partition(":")[::2]
        if not name.strip():
            raise InvalidArgumentError(f"expected MODEL[:key=value,...], got {spec!r}")
        model = get_model_info(name).name
        keys: list[str] = []
        values: dict[str, list[str]] = {}
        for item in [t.strip() for t in rest.replace(":", ",").split(",")] if rest else []:
            if "=" in item:
                key, _, value = item.partition("=")
                key = key.strip().lower()
                if not key or key in values:
                    raise InvalidArgumentError(
                        f"expected each key once in {spec!r}, got {key or 'an empty key'!r}"
                    )
                keys.append(key)
                values[key] = []
                item = value.strip()
            elif not keys:
                raise InvalidArgumentError(f"expected key=value after {name}:, got {item!r} in {spec!r}")
            if not item:
                raise InvalidArgumentError(f"expected a value for {keys[-1]} in {spec!r}, got an empty one")
            values[keys[-1]].append(item)
        for combo in itertools.product(*(values[k] for k in keys)):
            variant = Variant(model, tuple(zip(keys, combo, strict=True)))
            if variant not in variants:
                variants.append(variant)
    if not variants:
        raise InvalidArgumentError("expected at least one MODEL to compare, got none")
    return variants


def resolve_baseline(spec: str | None, variants: list[Variant]) -> str | None:
    """The label of the variant named by --baseline (any spelling the grammar accepts), or None."""
    if spec is None:
        return None
    labels = [v.label for v in variants]
    try:
        label = parse_variants([spec])[0].label
    except CnnbenchError:
        label = spec
    if label not in labels:
        raise InvalidArgumentError(f"expected --baseline to be one of {', '.join(labels)}, got {spec!r}")
    return label
