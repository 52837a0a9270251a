"""What ``cnnbench compare`` does with what the user typed: a new comparison (trained here, by workers or
by a scheduler) or a saved one rendered again (``--from``), with its display and its exit code."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from cnnbench.comparison.plan import CompareConfig, check_price, make_config
from cnnbench.errors import CnnbenchError, InvalidArgumentError
from cnnbench.launchers.scheduler import SchedulerOptions
from cnnbench.recipe import TrainConfig
from cnnbench.settings import DEFAULT_REQUESTS, check_latency
from cnnbench.training.status import FINISHED, Stopped, exit_code, stop_on_signals

# What --from honours: it renders a saved comparison, with another baseline, more notes, a price, or its
# variants' latency timed here (on --device).
FROM_TAKES = (
    "baseline",
    "notes",
    "price_per_gpu_hour",
    "latency",
    "backends",
    "threads",
    "requests",
    "device",
)


def _refuse_others(expected: str, variants: list[str], recipe: dict[str, Any], compare: dict[str, Any],
                   scheduler: dict[str, Any], takes: tuple[str, ...]) -> None:  # fmt: skip
    """``--from`` trains nothing: an option beside it other than those it ``takes`` (fields of the recipe or
    the comparison) would change what is trained, and is refused, not dropped."""
    from cnnbench.fields import option_names

    ignored = [*option_names(TrainConfig, "compare", [k for k in recipe if k not in takes]),
               *option_names(CompareConfig, "compare", [k for k in compare if k not in takes]),
               *option_names(SchedulerOptions, "compare", list(scheduler))]  # fmt: skip
    if variants:
        ignored.insert(0, "VARIANT " + " ".join(variants))
    if ignored:
        raise InvalidArgumentError(f"expected {expected}, got {', '.join(ignored)}")


def _stopped_line(exc: BaseException, config: CompareConfig, run_id: str | None) -> str:
    """What a stopped comparison keeps, and the command that goes on with it, as it works when typed."""
    from cnnbench.store.runs import RunRecords

    why = str(exc) if isinstance(exc, Stopped) else "interrupted"
    if config.launcher_kind.leaves_jobs_queued:
        return (f"[yellow]{why}:[/] stopped waiting; the jobs go on in Slurm, and the --from command above "
                "renders their table as they end")  # fmt: skip
    # a run whose row says how it ended had ended before the stop: it came between runs, or after them
    try:
        row = RunRecords(config.base.out).rows.get(run_id or "")
        ended = row is not None and row.get("status") != "interrupted"  # the stop ended it
    except CnnbenchError:  # an unreadable runs.csv: say no more than is known
        ended = False
    during = f" during run {run_id}" if run_id and not ended else ""
    argv = ["cnnbench", *sys.argv[1:]]
    if config.name is not None and "--force" not in argv:
        argv.append("--force")  # the folder holds the stopped comparison now: its --name is taken
    return (f"[yellow]{why}{during}:[/] finished runs and the partial tables are kept; this command reuses "
            f"the finished runs and trains the rest: {shlex.join(argv)}")  # fmt: skip


def _join_command(sources: list[Path], variants: list[str], recipe: dict[str, Any], compare: dict[str, Any],
                  scheduler: dict[str, Any], apart: bool, wide: bool) -> int:  # fmt: skip
    """``--from A --from B ...``: the comparisons joined into OUT/compare/NAME; nothing else is honoured."""
    from cnnbench.comparison.join import join
    from cnnbench.report.terminal import print_joined
    from cnnbench.store.tables import DEFAULT_RESULTS_DIR

    _refuse_others("only --name, --out or --apart beside several --from (they join saved comparisons, nothing "
                   "trains)", variants, recipe, compare, scheduler, takes=("name", "out"))  # fmt: skip
    print_joined(
        join(sources, Path(recipe.get("out") or DEFAULT_RESULTS_DIR), compare.get("name"), apart), wide
    )
    return 0


def compare_command(variants: list[str], recipe: dict[str, Any], compare: dict[str, Any], scheduler: dict[str, Any],
                    from_: list[Path] | None = None, repair: bool = False, wide: bool = False, quiet: bool = False,
                    apart: bool = False) -> int:  # fmt: skip
    """Run, render or join comparisons, print the table; the exit code (1 when every variant failed)."""
    from cnnbench.api import run_compare
    from cnnbench.comparison import run as comparing
    from cnnbench.report.progress import JobsDisplay, TrainProgress
    from cnnbench.report.terminal import console, err_console, print_compare

    if from_ and len(from_) > 1:
        return _join_command(from_, variants, recipe, compare, scheduler, apart, wide)
    if apart:
        raise InvalidArgumentError(
            "expected --apart with several --from (it joins comparisons), got one or none"
        )
    if from_:
        _refuse_others("only --baseline, --note, --price-per-gpu-hour or --latency (with --backend, --threads, "
                       "--requests, --device) beside --from (it renders a saved comparison, nothing trains)",
                       variants, recipe, compare, scheduler, takes=FROM_TAKES)  # fmt: skip
        check_price(compare.get("price_per_gpu_hour"))
        timing = {k: compare.get(k) for k in ("latency", "backends", "threads", "requests")}
        check_latency(bool(timing["latency"]), timing["backends"] or ["eager"], timing["threads"],
                      timing["requests"] or DEFAULT_REQUESTS)  # fmt: skip
        if recipe.get("device") is not None and not timing["latency"]:
            raise InvalidArgumentError("expected --latency with --device beside --from (where to time the "
                                       "variants), got no --latency")  # fmt: skip
        result = comparing.render(from_[0], compare.get("baseline"), compare.get("notes") or [],
                                  compare.get("price_per_gpu_hour"),
                                  {**timing, "device": recipe.get("device")} if timing["latency"] else None,
                                  lambda m: console.print(m, highlight=False))  # fmt: skip
        print_compare(result, wide=wide)
        return 0
    config = make_config(variants, recipe, compare, scheduler, repair)
    progress = TrainProgress(quiet)

    # Runs in workers or a scheduler's jobs share one display; runs trained here, a progress bar.
    elsewhere = not config.launcher_kind.trains_here
    view = JobsDisplay(live=elsewhere and err_console.is_terminal and not quiet)
    try:
        with stop_on_signals(), view if elsewhere else progress:
            result = run_compare(config, callbacks=progress.for_job, log=lambda m: console.print(m, highlight=False),
                                 view=view).result  # fmt: skip
    except KeyboardInterrupt as exc:
        err_console.print(_stopped_line(exc, config, progress.run_id if not elsewhere else None),
                          highlight=False, soft_wrap=True)  # fmt: skip
        return exit_code(exc)
    print_compare(result, wide=wide)
    statuses = set(result.tidy.status) if len(result.tidy) else set()
    if statuses and not statuses & set(FINISHED) and not any(comparing.is_pending(s) for s in statuses):
        return 1  # every variant failed: a script must not take this for a result
    return 0
