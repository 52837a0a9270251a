"""A comparison's plan: its configuration, and for every variant x seed the run that answers it (one
already in the store with identical conditions, or a new job with its own run id). Saved as plan.json
in the comparison's folder, from which ``compare --from`` collects the rows while or after the jobs run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.choices import LAUNCHERS
from cnnbench.comparison.variants import Variant
from cnnbench.errors import CnnbenchError, InvalidArgumentError, ResultsError
from cnnbench.fields import Opt, declared
from cnnbench.launchers.scheduler import SchedulerOptions
from cnnbench.recipe import TrainConfig, without_added_defaults
from cnnbench.settings import (
    BACKEND_OPTION,
    DEFAULT_REQUESTS,
    REQUESTS_OPTION,
    THREADS_OPTION,
    check_latency,
)
from cnnbench.store.tables import read_json, to_json, write_text_atomic

_COMPARE = ("compare",)
MAX_PRICE = 1e6


def parse_seed_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise InvalidArgumentError(f"expected --seed-list as integers like 0,5,9, got {text!r}") from None


def check_price(price: float | None) -> None:
    """--price-per-gpu-hour: a positive number, at most a million (above that it is a typo, and near 1e308
    its costs overflow to inf)."""
    if price is not None and not (math.isfinite(price) and 0 < price <= MAX_PRICE):
        raise InvalidArgumentError(
            f"expected --price-per-gpu-hour > 0 and at most {MAX_PRICE:g}, got {price:g}"
        )


def _negate(flag: bool) -> bool:
    return not flag


@dataclass
class CompareConfig:
    """What a comparison trains and how: its variants, the recipe they share (``base``: its model and
    options are each variant's), seeds, and where the runs train."""

    variants: list[str]
    base: TrainConfig
    seeds: int = declared(1, option=Opt(("--seeds",), "Repeat each variant with this many seeds.", "K",
                                        commands=_COMPARE))  # fmt: skip
    seed_list: list[int] | None = declared(
        None, option=Opt(("--seed-list",), "Run these seeds (instead of --seeds).", "N,N,...", kind=str,
                         parse=parse_seed_list, commands=_COMPARE),
    )  # fmt: skip  # these seeds instead of base.seed .. base.seed + seeds - 1
    name: str | None = declared(
        None, option=Opt(("--name",), "Folder name under OUT/compare/ (default: models and a hash).", "NAME",
                         commands=_COMPARE),
    )  # fmt: skip
    baseline: str | None = declared(
        None, option=Opt(("--baseline",), "Measure differences from this variant (default: the first).",
                         "VARIANT", commands=_COMPARE),
    )  # fmt: skip
    rerun: bool = declared(
        False, option=Opt(("--rerun",), "Train even when identical runs exist.", commands=_COMPARE)
    )
    force: bool = declared(
        False, option=Opt(("--force",), "Replace an existing comparison of that --name.", commands=_COMPARE)
    )
    notes: list[str] = declared(
        default_factory=list,
        option=Opt(("--note",), "A note for the tables (repeatable), e.g. the data's copy.", "TEXT", kind=list[str],
                   commands=_COMPARE),
    )  # fmt: skip  # the user's own, e.g. which copy of the data
    launcher: str = declared(
        "inline",
        option=Opt(("--launcher",), "Where the runs train: here, submitit's local executor, or Slurm.",
                   choices=LAUNCHERS, commands=_COMPARE),
    )  # fmt: skip
    gpus: str | None = declared(
        None, option=Opt(("--gpus",), "Run the jobs at once, one worker process per GPU.", "all|N|0,2,3",
                         commands=_COMPARE),
    )  # fmt: skip  # None: one run after another here
    mps: bool = declared(
        True, option=Opt(("--no-mps",), "With --jobs-per-gpu: time-slice the GPU instead of CUDA MPS.",
                         parse=_negate, commands=_COMPARE),
    )  # fmt: skip
    wait: bool = declared(
        True, option=Opt(("--no-wait",), "Submit and return; render later with --from OUT/compare/NAME.",
                         parse=_negate, commands=_COMPARE),
    )  # fmt: skip
    price_per_gpu_hour: float | None = declared(
        None, option=Opt(("--price-per-gpu-hour",), "A cost column: GPU-hours times this price.", "X",
                         commands=_COMPARE),
    )  # fmt: skip
    latency: bool = declared(
        False, option=Opt(("--latency",), "Also time each variant's inference at batch 1 (p50, p99) by --backend, "
                          "here after training: a column per backend, and accuracy against latency.",
                          commands=_COMPARE),
    )  # fmt: skip
    backends: list[str] = declared(default_factory=lambda: ["eager"], option=BACKEND_OPTION)
    threads: int | None = declared(None, option=THREADS_OPTION)
    requests: int = declared(DEFAULT_REQUESTS, option=REQUESTS_OPTION)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    repair: bool = False  # move a damaged runs.csv aside, keeping its intact rows

    @property
    def seed_values(self) -> list[int]:
        return list(self.seed_list) if self.seed_list else [self.base.seed + i for i in range(self.seeds)]

    def command_line(self) -> str:
        """The command that makes this comparison again: ``cnnbench compare`` with its variants and each
        option that differs from compare's default."""
        import shlex

        from cnnbench.fields import typed_options

        argv = [*self.variants, *typed_options(self.base, "compare", COMPARE_DEFAULTS),
                *typed_options(self, "compare"), *typed_options(self.scheduler, "compare")]  # fmt: skip
        return shlex.join(["cnnbench", "compare", *argv])

    @property
    def launcher_kind(self) -> Any:
        """The :class:`~cnnbench.launchers.base.Launcher` class that runs its jobs (``--gpus`` turns the
        inline launcher into per-GPU workers)."""
        from cnnbench.launchers import launcher_class

        return launcher_class(self.launcher, self.gpus)

    def validate(self) -> None:
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise InvalidArgumentError(f"expected --seeds >= 1, got {self.seeds}")
        if self.seed_list is not None:
            if (
                not self.seed_list
                or len(set(self.seed_list)) != len(self.seed_list)
                or min(self.seed_list) < 0
            ):
                raise InvalidArgumentError(
                    f"expected --seed-list of distinct seeds >= 0, got {self.seed_list}"
                )
            if self.seeds != 1:  # --seeds left at its default: the list alone says how many
                raise InvalidArgumentError(
                    f"expected --seeds or --seed-list, got both (--seeds {self.seeds}, --seed-list "
                    f"{','.join(map(str, self.seed_list))})"
                )
        check_price(self.price_per_gpu_hour)
        check_latency(self.latency, self.backends, self.threads, self.requests)
        if self.latency and not (self.launcher_kind.on_this_machine and self.wait):
            raise InvalidArgumentError(
                f"expected --latency with runs trained and waited for on this machine, got --launcher {self.launcher}"
                f"{'' if self.wait else ' --no-wait'} (latency is timed where the comparison runs, after its runs); "
                "time it later with compare --from OUT/compare/NAME --latency"
            )
        if self.name is not None:
            from cnnbench.store.runs import plain_name

            plain_name(self.name, "--name")
        if self.launcher not in LAUNCHERS:
            raise InvalidArgumentError(f"expected --launcher in {'|'.join(LAUNCHERS)}, got {self.launcher!r}")
        if self.launcher != "inline":
            if self.gpus is not None:
                raise InvalidArgumentError(
                    f"expected --gpus with --launcher inline, got --launcher {self.launcher} "
                    "(a scheduler's job asks for --gpus-per-job instead)"
                )
            self.scheduler.validate()
        elif not self.wait:
            raise InvalidArgumentError(
                "expected --no-wait with --launcher local or slurm, got --launcher inline"
            )
        if self.base.jobs_per_gpu > 1 and self.gpus is None:
            raise InvalidArgumentError(
                f"expected --jobs-per-gpu with --gpus (the runs that share each GPU), got --jobs-per-gpu "
                f"{self.base.jobs_per_gpu} without --gpus"
            )

    def to_dict(self) -> dict[str, Any]:
        record = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("base", "scheduler")
        }
        return {**record, "base": self.base.to_dict(), "scheduler": dataclasses.asdict(self.scheduler)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the plan") -> CompareConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown or "variants" not in data or "base" not in data:
            raise ResultsError(
                f"expected a comparison's configuration in {source}, got {unknown or 'an incomplete one'}"
            )
        values = dict(data)
        values["base"] = TrainConfig.from_dict(data["base"], source=source)
        try:
            values["scheduler"] = SchedulerOptions(**(data.get("scheduler") or {}))
        except TypeError as exc:
            raise ResultsError(f"expected a scheduler's options in {source}, got {exc}") from None
        return cls(**values)


@dataclass
class PlannedRun:
    """One variant x seed of a comparison and the run that answers it."""

    variant: Variant
    seed: int
    run_id: str | None = None  # a new job's run, or the reused one; None when the variant cannot run
    conditions_hash: str | None = None
    reused: bool = False
    error: str | None = None  # why it cannot run (a bad option): its status

    @property
    def label(self) -> str:
        return f"{self.variant.label} seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "variant": self.variant.label, "model": self.variant.model,
                "options": [list(kv) for kv in self.variant.options], "seed": self.seed, "run_id": self.run_id,
                "conditions_hash": self.conditions_hash, "reused": self.reused, "error": self.error}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedRun:
        variant = Variant(data["model"], tuple((str(k), str(v)) for k, v in data["options"]))
        return cls(variant, int(data["seed"]), data.get("run_id"), data.get("conditions_hash"),
                   bool(data.get("reused")), data.get("error"))  # fmt: skip


@dataclass
class Plan:
    config: CompareConfig
    name: str
    folder: Path
    runs: list[PlannedRun]
    baseline: str | None = None

    @property
    def jobs_folder(self) -> Path:
        return self.folder / "jobs"

    def save(self) -> None:
        write_text_atomic(self.folder / "plan.json", to_json({
            "compare": self.config.to_dict(), "baseline": self.baseline, "runs": [r.to_dict() for r in self.runs],
        }))  # fmt: skip

    @classmethod
    def load(cls, folder: Path) -> Plan:
        path = Path(folder) / "plan.json"
        data = read_json(path, required=("compare", "runs"))
        try:
            config = CompareConfig.from_dict(data["compare"], source=str(path))
            runs = [PlannedRun.from_dict(r) for r in data["runs"]]
        except (KeyError, TypeError, ValueError, CnnbenchError) as exc:
            if isinstance(exc, ResultsError):
                raise
            raise ResultsError(f"expected a comparison's plan in {path}, got {exc}") from None
        config.base = config.base.replace(
            out=Path(folder).parent.parent
        )  # OUT/compare/NAME, wherever OUT is now
        return cls(config, Path(folder).name, Path(folder), runs, data.get("baseline"))


def recipe_of(config: CompareConfig, variant: Variant, seed: int) -> TrainConfig:
    """The recipe of one run of the comparison: the shared recipe with the variant's model, options, seed."""
    return config.base.replace(model=variant.model, options=dict(variant.options), seed=seed, run_name=None)


def default_name(config: CompareConfig, variants: list[Variant], planned: dict[str, Any]) -> str:
    """The models, then a hash of the variants, seeds and shared conditions (``planned``: the first run's
    planned conditions): two comparisons that differ in anything get two folders, and the same
    comparison run again gets its own folder back."""
    shared = {k: v for k, v in without_added_defaults(planned).items()
              if k not in ("model", "options", "family", "seed", "conditions_hash")}  # fmt: skip
    key = {"variants": [v.label for v in variants], "seeds": config.seed_values, **shared}
    digest = hashlib.sha1(to_json(key, indent=None).encode()).hexdigest()[:8]
    models = re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(dict.fromkeys(v.model for v in variants)))[:60]
    return f"{models}-{digest}"


# What compare's runs do unless told otherwise, where that differs from a single run's recipe.
COMPARE_DEFAULTS = {"checkpoints": False}  # a comparison reuses runs; it does not resume them


def make_config(variants: list[str], recipe: dict[str, Any], compare: dict[str, Any], scheduler: dict[str, Any],
                repair: bool = False) -> CompareConfig:  # fmt: skip
    """The comparison the options describe (``recipe``, ``compare``, ``scheduler``: the options given)."""
    if not variants:
        raise InvalidArgumentError("expected at least one MODEL (or --from DIR), got none")
    if compare.get("seed_list") is not None:
        # the list says which seeds and how many: another seed option given beside it would be dropped
        other = [o for o, given in (("--seed", "seed" in recipe), ("--seeds", "seeds" in compare)) if given]
        if other:
            raise InvalidArgumentError(
                f"expected --seed-list or {' and '.join(other)}, got both (the list names every seed)"
            )
    base = TrainConfig.from_dict({"model": "", **COMPARE_DEFAULTS, **recipe})
    return CompareConfig(variants=list(variants), base=base, scheduler=SchedulerOptions(**scheduler), repair=repair,
                         **compare)  # fmt: skip
