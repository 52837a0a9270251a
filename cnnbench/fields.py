"""How a dataclass field declares its command-line option and its place in a run's conditions.

The recipe (:class:`cnnbench.recipe.TrainConfig`), a comparison's plan and a scheduler's options are
dataclasses whose fields carry this metadata; the CLI builds its options from it and the conditions
hash reads it, so a new field is one field (and, if users set it, one :class:`Opt`). No torch and no
typer here: ``cnnbench --help`` imports this module.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Opt:
    """A field's command-line option.

    ``decls`` are its names ("--lr", or "--augment/--no-augment" for a pair of flags); ``kind`` is the
    type the command line reads when it is not the field's own (text for an input size), and ``parse``
    turns what was read into the field's value. ``commands`` are the commands that take it.
    """

    decls: tuple[str, ...]
    help: str
    metavar: str | None = None
    kind: Any = None
    parse: Callable[[Any], Any] | None = None
    choices: tuple[str, ...] = ()
    commands: tuple[str, ...] = ("train", "compare")

    @property
    def name(self) -> str:
        """The option as a user types it: its first long name."""
        return self.decls[0].split("/")[0]


def declared(
    default: Any = dataclasses.MISSING,
    *,
    option: Opt | tuple[Opt, ...] | None = None,
    condition: bool = True,
    hashed_at_default: bool = True,
    shared: bool | None = None,
    label: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its metadata:

    - ``condition``: it decides what a run computes (so it is in the run's conditions and their hash);
      False for bookkeeping (where files go, how often a run is saved);
    - ``hashed_at_default=False``: a condition added after runs were recorded without it; at its
      default it stays out of the hash, so those runs (which had the default) are still reused;
    - ``shared``: every run of a comparison has the same value (default: any condition);
    - ``label``: how the conditions line names it (default: the field's name);
    - ``option``: its command-line option(s).
    """
    options = () if option is None else (option,) if isinstance(option, Opt) else tuple(option)
    metadata = {"condition": condition, "hashed_at_default": hashed_at_default,
                "shared": condition if shared is None else shared, "label": label, "options": options}  # fmt: skip
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def options_of(cls: type, command: str) -> list[tuple[dataclasses.Field, Opt]]:
    """The (field, option) pairs of ``cls`` that ``command`` takes, in field order."""
    return [(f, opt) for f in dataclasses.fields(cls) for opt in f.metadata.get("options", ())
            if command in opt.commands]  # fmt: skip


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def option_names(cls: type, command: str, names: list[str]) -> list[str]:
    """The options of fields ``names`` as a user types them (a field without one keeps its name)."""
    typed = {f.name: opt.name for f, opt in reversed(options_of(cls, command))}
    return [typed.get(name, name) for name in names]


def check_names(given: Iterable[str], valid: Iterable[str], expected: str, source: str = "",
                options_of_fields: Iterable[type] = ()) -> None:  # fmt: skip
    """Refuse names in ``given`` that are not in ``valid``, listing the valid ones ("expected
    ``expected``: a, b, c; got unknown 'x' (did you mean y?)"). A name that is a command-line option of a
    field in ``options_of_fields`` (``image_size``, the command line's ``--image-size``) is pointed to
    its field instead."""
    from cnnbench.errors import InvalidArgumentError

    valid = sorted(set(valid))
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    first = unknown[0]
    spelled_as_option = {
        opt_name.lstrip("-").replace("-", "_"): (opt_name, f.name)
        for cls in options_of_fields
        for f in dataclasses.fields(cls)
        for opt in f.metadata.get("options", ())
        for decl in opt.decls
        for opt_name in decl.split("/")
        if opt_name.startswith("--") and f.name in valid
    }
    if first in spelled_as_option:
        option, field_name = spelled_as_option[first]
        hint = f" ({option} on the command line sets {field_name})"
    else:
        close = difflib.get_close_matches(first, valid, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
    where = f" in {source}" if source else ""
    raise InvalidArgumentError(
        f"expected {expected}{where}: {', '.join(valid)}; got unknown {', '.join(map(repr, unknown))}{hint}"
    )


def typed_options(obj: Any, command: str, defaults: dict[str, Any] | None = None) -> list[str]:
    """The options a user types on ``command`` for the dataclass ``obj``: each field that differs from its
    default (or from ``defaults``, the command's own), as its first declared option."""
    argv: list[str] = []
    defaults = defaults or {}
    done: set[str] = set()
    for f, opt in options_of(type(obj), command):
        value = getattr(obj, f.name)
        default = defaults.get(f.name, field_default(f))
        if f.name in done or value == default or (value is None and default is dataclasses.MISSING):
            continue
        done.add(f.name)
        decl = opt.decls[0]
        if "/" in decl:  # a pair of flags: --augment/--no-augment
            on, off = decl.split("/")
            argv.append(on if value else off)
        elif isinstance(value, bool):  # a lone flag: --rerun (True), --no-wait (False)
            argv.append(decl)
        elif isinstance(value, dict):
            for key, v in value.items():
                argv += [decl, f"{key}={v}"]
        elif isinstance(value, tuple):  # an input size
            argv += [decl, "x".join(map(str, value))]
        elif isinstance(value, list):
            if opt.kind is str:  # one option for the list: --seed-list 0,1,2
                argv += [decl, ",".join(map(str, value))]
            else:  # repeatable: --note A --note B
                for item in value:
                    argv += [decl, str(item)]
        elif value is not None:
            argv += [decl, str(value)]  # str of a float reads back as the same float
    return argv
