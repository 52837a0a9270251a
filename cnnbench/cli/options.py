"""Command-line options made from dataclass fields, so each is declared once (in the field's metadata,
:class:`cnnbench.fields.Opt`) and shared by every command that takes it.

``@dataclass_options(command, recipe=TrainConfig, ...)`` adds to a command one option per field of each
dataclass that ``command`` takes; the command receives, per group, a dict of the values the user *gave*
(parsed to the field's type), so that a command can tell "not given" from "given as the default"
(``train --resume`` takes only a few; ``train --config FILE`` takes overrides).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from cnnbench.errors import InvalidArgumentError
from cnnbench.fields import Opt, field_default, options_of

_ENUMS: dict[tuple[str, ...], type[Enum]] = {}

# The sections of a long --help (as timm's train.py groups its arguments): each field's option under the
# subject it sets. A field not named here stays among the command's own options.
PANELS = {
    "Model and data": ("options", "dataset", "data_dir", "input_size", "num_classes", "synthetic_size", "augment",
                       "val_split", "skip_bad_images", "cache_size"),
    "Memory estimate": (),  # summary's batch size and precision (COMMAND_PANELS)
    "Recipe": ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "scheduler",
               "step_size", "gamma", "warmup_epochs", "label_smoothing", "aux_loss", "seed"),
    "Speed": ("precision", "channels_last", "compile", "device", "cuda_graphs", "cudnn_autotune", "deterministic",
              "warmup_steps", "eval_batch_size", "placement", "jobs_per_gpu", "batch_sizes", "modes", "warmup",
              "iters", "layers", "trace", "grads"),
    "Statistics": ("seeds", "seed_list", "baseline", "rerun", "target_acc"),
    "Launch": ("launcher", "gpus", "mps", "wait", "partition", "gpus_per_job", "nodes", "time_min", "max_parallel"),
    "Output": ("out", "run_name", "name", "force", "notes", "checkpoints", "price_per_gpu_hour"),
}  # fmt: skip
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
# Where a command gives a field another meaning: summary trains nothing, its batch size and precision are
# those of its memory estimate.
COMMAND_PANELS = {("summary", "batch_size"): "Memory estimate", ("summary", "precision"): "Memory estimate"}
OUTPUT = "Output"  # the panel of the options every command that writes a table takes (--repair, --wide, ...)


class GroupedCommand(TyperCommand):
    """Plain help (one line per option at 80 columns) whose options come in sections by subject."""

    def format_options(self, ctx: Any, formatter: Any) -> None:  # click's Context and HelpFormatter
        arguments: list[tuple[str, str]] = []
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                panel = getattr(param, "rich_help_panel", None) or "Options"
                sections.setdefault(panel, []).append(record)
        order = ["Options", *PANELS]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for title in sorted(sections, key=lambda t: order.index(t) if t in order else len(order)):
            if sections[title]:
                with formatter.section(title):
                    formatter.write_dl(sections[title])


def choice_enum(choices: tuple[str, ...]) -> type[Enum]:
    """One Enum per set of choices (typer lists and checks an Enum's values)."""
    if choices not in _ENUMS:
        _ENUMS[choices] = Enum("Choice_" + "_".join(choices), {c: c for c in choices}, type=str)  # type: ignore[misc]
    return _ENUMS[choices]


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> int; the type the command line reads for a field without a ``kind``."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Path": Path, "Any": Any})  # noqa: S307  (the field's own annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _default_text(f: dataclasses.Field, defaults: dict[str, Any]) -> str | None:
    value = defaults.get(f.name, field_default(f))
    if value is None or value is dataclasses.MISSING or value == [] or value == {}:
        return None
    if isinstance(value, bool):
        return None  # a flag's name says it
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _param(
    f: dataclasses.Field, opt: Opt, defaults: dict[str, Any], name: str, command: str
) -> inspect.Parameter:
    kind = opt.kind if opt.kind is not None else _base_type(f.type)
    if opt.choices:
        kind = choice_enum(opt.choices)
    flag = kind is bool
    default_text = None if flag else _default_text(f, defaults)
    help_text = (
        opt.help if default_text is None or "default" in opt.help else f"{opt.help} (default: {default_text})"
    )
    # No click ranges: the dataclass's validate() refuses a bad value in one line, with exit code 1.
    info = typer.Option(*opt.decls, help=help_text, metavar=opt.metavar, show_default=False,
                        rich_help_panel=COMMAND_PANELS.get((command, f.name), _PANEL_OF.get(f.name)))  # fmt: skip
    annotation = Annotated[kind | None, info]  # None: not given
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def dataclass_options(command: str, defaults: dict[str, Any] | None = None,
                      **groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # fmt: skip
    """Decorate a command with the options of each dataclass in ``groups`` that ``command`` takes; the
    command's parameter named after each group receives {field: value given}. ``defaults`` names the
    defaults the command's help states where they differ from the fields' (compare writes no checkpoints)."""
    defaults = defaults or {}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name not in groups]
        added: list[inspect.Parameter] = []
        names: dict[str, tuple[str, dataclasses.Field, Opt]] = {}  # parameter -> (group, field, option)
        for group, cls in groups.items():
            for f, opt in options_of(cls, command):
                name = f.name if f.name not in names else f"{f.name}__{opt.name.strip('-').replace('-', '_')}"
                names[name] = (group, f, opt)
                added.append(_param(f, opt, defaults, name, command))

        @functools.wraps(fn)
        def command_fn(**kwargs: Any) -> Any:
            given: dict[str, dict[str, Any]] = {group: {} for group in groups}
            by_option: dict[str, Opt] = {}
            for name, (group, f, opt) in names.items():
                value = kwargs.pop(name)
                if (
                    value is None
                    or value is False
                    and opt.kind is None
                    and _base_type(f.type) is bool
                    and "/" not in opt.decls[0]
                ):
                    continue  # not given (a lone flag's False is its absence)
                if isinstance(value, Enum):
                    value = value.value
                if opt.parse is not None:
                    value = opt.parse(value)
                if f.name in given[group] and given[group][f.name] != value:
                    raise InvalidArgumentError(
                        f"expected {by_option[f.name].name} or {opt.name}, got both with different values"
                    )
                given[group][f.name] = value
                by_option[f.name] = opt
            return fn(**kwargs, **given)

        command_fn.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        command_fn.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        command_fn.__annotations__["return"] = signature.return_annotation
        return command_fn

    return decorate
