"""What ``cnnbench summary``, ``pool`` and ``profile`` do with what the user typed: the measurement, its
rows in the results tables, and its rendering in the format asked for."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from cnnbench.measure.pooling import pool
from cnnbench.measure.scaling import profile_scaling
from cnnbench.settings import PoolConfig, ProfileConfig, SummaryConfig


def summary_command(config: SummaryConfig, repair: bool, fmt: str, wide: bool) -> None:
    """``cnnbench summary``: the summary, its row upserted into summary.csv, printed in ``fmt``."""
    from cnnbench.api import run_summary
    from cnnbench.report.terminal import print_summary

    with _quiet_stdout():  # what a model's own code prints goes to stderr: stdout holds the data alone
        result = run_summary(config, repair).result
    print_summary(result, fmt, wide)


def pool_command(config: PoolConfig, plot: Path | None, fmt: str) -> None:
    """``cnnbench pool``: both poolings, drawn to ``plot`` if given, printed as a table or JSON."""
    from cnnbench.report.terminal import print_pool
    from cnnbench.store.tables import to_json

    result = pool(config)
    if plot is not None:
        from cnnbench.report.plots import pool_plot

        pool_plot(result, plot)
    if fmt == "json":
        print(to_json(result.to_dict()))
    else:
        print_pool(result)


def profile_command(config: ProfileConfig, gpus: str | None, repair: bool, fmt: str, wide: bool) -> int:
    """``cnnbench profile``: the sweep over modes and batch sizes, or with ``gpus`` the data-parallel
    scaling, its rows appended to the results tables and printed in ``fmt``; the exit code."""
    from cnnbench.api import run_profile
    from cnnbench.report.terminal import err_console, print_profile, print_scaling
    from cnnbench.training.status import Stopped, exit_code, stop_on_signals

    def say(line: str) -> None:  # on stderr: stdout holds the data alone
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        with stop_on_signals(), _quiet_stdout():  # a model's own prints go to stderr too
            result = (
                profile_scaling(config, gpus, repair)
                if gpus is not None
                else run_profile(config, repair, say).result
            )
    except KeyboardInterrupt as exc:
        why = str(exc) if isinstance(exc, Stopped) else "interrupted"
        say(f"{why}: the batch sizes measured so far are kept in {Path(config.out) / 'profile.csv'}")
        return exit_code(exc)
    if gpus is not None:
        print_scaling(result, fmt)
    else:
        print_profile(result, fmt, wide=wide)
    return 0


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Prints inside the block go to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
