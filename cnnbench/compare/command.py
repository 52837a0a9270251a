"""What ``cnnbench compare`` does with what the user typed: a new comparison (trained here, by workers or
by a scheduler) or a saved one rendered again (``--from``), with its display and its exit code."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from cnnbench.compare.plan import CompareConfig
from cnnbench.errors import InvalidArgumentError
from cnnbench.launchers.scheduler import SchedulerOptions
from cnnbench.recipe import TrainConfig
from cnnbench.training.status import FINISHED, Stopped, exit_code, stop_on_signals

# What compare's runs do unless told otherwise, where that differs from a single run's recipe.
COMPARE_DEFAULTS = {"checkpoints": False}  # a comparison reuses runs; it does not resume them


def make_config(variants: list[str], recipe: dict[str, Any], compare: dict[str, Any], scheduler: dict[str, Any],
                repair: bool = False) -> CompareConfig:  # fmt: skip
    """The comparison the options describe (``recipe``, ``compare``, ``scheduler``: the options given)."""
    if not variants:
        raise InvalidArgumentError("expected at least one MODEL (or --from DIR), got none")
    base = TrainConfig.from_dict({"model": "", **COMPARE_DEFAULTS, **recipe})
    return CompareConfig(variants=list(variants), base=base, scheduler=SchedulerOptions(**scheduler), repair=repair,
                         **compare)  # fmt: skip


def compare_command(variants: list[str], recipe: dict[str, Any], compare: dict[str, Any], scheduler: dict[str, Any],
                    from_: Path | None = None, repair: bool = False, wide: bool = False, quiet: bool = False) -> int:  # fmt: skip
    """Run or render a comparison, print its table; the exit code (1 when every variant failed)."""
    from cnnbench.compare import run as comparing
    from cnnbench.report.progress import JobsDisplay, TrainProgress
    from cnnbench.report.terminal import console, err_console, print_compare

    if from_ is not None:
        result = comparing.render(from_, compare.get("baseline"), compare.get("notes") or [])
        print_compare(result, wide=wide)
        return 0
    config = make_config(variants, recipe, compare, scheduler, repair)
    progress = TrainProgress(quiet)

    def for_job(job: Any) -> TrainProgress:
        progress.variant = job.label.rsplit(" seed ", 1)[0] if job is not None else None
        return progress

    # Runs in workers or a scheduler's jobs share one display; runs trained here, a progress bar.
    elsewhere = config.gpus is not None or config.launcher != "inline"
    view = JobsDisplay(live=elsewhere and err_console.is_terminal and not quiet)
    try:
        with stop_on_signals(), view if elsewhere else progress:
            result = comparing.run_compare(config, callbacks=for_job, log=lambda m: console.print(m, highlight=False),
                                           view=view)  # fmt: skip
    except KeyboardInterrupt as exc:
        why = str(exc) if isinstance(exc, Stopped) else "interrupted"
        during = f" during run {progress.run_id}" if progress.run_id and not elsewhere else ""
        err_console.print(
            f"[yellow]{why}{during}:[/] finished runs and the partial tables are kept; the same command "
            f"again reuses the finished runs and trains the rest: {shlex.join(['cnnbench', *sys.argv[1:]])}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        return exit_code(exc)
    print_compare(result, wide=wide)
    statuses = set(result.tidy.status) if len(result.tidy) else set()
    if statuses and not statuses & {*FINISHED, comparing.PENDING}:
        return 1  # every variant failed: a script must not take this for a result
    return 0
