"""What ``cnnbench train`` does with what the user typed: a new run from the options (or from a job file,
``--config``), a resumed run (``--resume``), or either one data-parallel (``--gpus``: this process starts
torchrun, and each rank it starts runs the same request without ``--gpus``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, InvalidArgumentError, RunFailed, first_line
from cnnbench.fields import option_names
from cnnbench.recipe import TrainConfig, read_job, write_job
from cnnbench.store.tables import DEFAULT_RESULTS_DIR
from cnnbench.training import distributed
from cnnbench.training.status import Stopped, exit_code, failed, stop_on_signals

# What --resume takes besides the run id: a run continues with its own recipe.
RESUME_OPTIONS = ("epochs", "device", "out")


@dataclass
class TrainRequest:
    model: str | None = None
    given: dict[str, Any] = field(default_factory=dict)  # the recipe's options the user typed
    config_file: Path | None = None  # a job file (or a run's config.json) to train
    resume: str | None = None  # a run id under OUT/runs/
    gpus: str | None = None  # data-parallel on these GPUs
    repair: bool = False
    quiet: bool = False  # no progress bar: one line per run (the ranks of a data-parallel run too)

    def recipe(self) -> TrainConfig:
        """The recipe of a new run: the job file's (if any) with the options typed on top."""
        base: dict[str, Any] = {}
        if self.config_file is not None:
            base = read_job(self.config_file).to_dict()
        elif self.model is None:
            raise InvalidArgumentError(
                "expected a MODEL argument, --config FILE or --resume RUN_ID, got none"
            )
        model = {"model": self.model} if self.model is not None else {}
        return TrainConfig.from_dict({**base, **self.given, **model})

    @property
    def out(self) -> Path:
        return Path(self.given.get("out") or DEFAULT_RESULTS_DIR)

    def check_resume(self) -> None:
        others = [k for k in self.given if k not in RESUME_OPTIONS]
        if self.config_file is not None or others:
            extra = (["--config"] if self.config_file is not None else []) + option_names(
                TrainConfig, "train", others
            )
            raise InvalidArgumentError(
                f"expected only --epochs, --device and --out with --resume (a run continues with its own "
                f"recipe), got {' '.join(extra)}"
            )


def run(request: TrainRequest, callbacks: Any = None) -> Any:
    """Train, resume, or start the ranks of a data-parallel run: the run's
    :class:`~cnnbench.training.trainer.RunResult`, or an exit code when this process only started the ranks."""
    from cnnbench.training.resuming import resume

    if request.resume is not None:
        request.check_resume()
    if request.gpus is not None and not distributed.world_from_env().distributed:
        return _data_parallel(request)
    if request.resume is not None:
        device = request.given.get("device")
        return resume(request.out, request.resume, callbacks, epochs=request.given.get("epochs"),
                              device=None if device in (None, "auto") else device, model=request.model,
                              repair=request.repair)  # fmt: skip
    from cnnbench.api import run_train

    return run_train(request.recipe(), callbacks, repair=request.repair).result


def _data_parallel(request: TrainRequest) -> int:
    """Start the ranks on the GPUs of ``--gpus``; each trains the same run (a new run's recipe goes to them
    as a job file, its run id fixed here so that every rank names it alike). A rank that fails gives the
    run its final status (its own process may not have lived to write one) and one line."""
    from cnnbench.store.runs import RunStore
    from cnnbench.training.trainer import new_run_id

    folder = Path(tempfile.mkdtemp(prefix="cnnbench-job-"))
    try:
        recipe = None
        if request.resume is not None:
            run_id = request.resume
            argv = ["train", "--resume", run_id, "--out", str(request.out)]
            for key in ("epochs", "device"):
                if request.given.get(key) is not None:
                    argv += [f"--{key}", str(request.given[key])]
        else:
            recipe = request.recipe()
            recipe.validate()
            recipe = recipe.replace(run_name=recipe.run_name or new_run_id(recipe))
            run_id = str(recipe.run_name)
            os.chmod(folder, 0o755)
            argv = ["train", "--config", str(write_job(folder / f"{run_id}.json", run_id, recipe))]
        device = request.given.get("device") or (recipe.device if request.resume is None else "auto")
        failure = distributed.run_data_parallel(
            request.gpus or "", argv + ["--repair"] * request.repair + ["-q"] * request.quiet, device
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if failure is None:
        return 0
    # The first rank to fail stopped the others (the agent stops them; collectives fail with their
    # peer): the run's row says which rank failed first, and how.
    status = failed(failure.describe())
    settled = RunStore(request.out, run_id).settle(status, replace=None)
    kept = "; its finished epochs are kept" if settled else ""
    raise RunFailed(f"data-parallel run {run_id} {status}{kept}")


def train_command(request: TrainRequest, quiet: bool = False, dry_run: bool = False) -> int:
    """``cnnbench train``: the run with a progress display (rank 0 alone prints), its result line, and when
    Ctrl-C or a stop signal (SIGTERM, SIGHUP) ends it, what it keeps and the command that continues it;
    the exit code."""
    from cnnbench.report.progress import TrainProgress, print_interrupted_run
    from cnnbench.report.terminal import print_run

    if dry_run:
        return _dry_run(request)
    main = distributed.is_main_process()
    # A process that only starts the ranks of a data-parallel run: rank 0 says how the run ended.
    starts_ranks = request.gpus is not None and not distributed.world_from_env().distributed
    quiet = quiet or request.quiet
    progress = TrainProgress(quiet or not main)
    try:
        with stop_on_signals(), progress:
            result = run(request, progress)
    except Exception as exc:
        # A rank of a data-parallel run leaves its error for the process that started the ranks, which
        # says the run's first failure once; its row is written already.
        if isinstance(exc, CnnbenchError) or not distributed.world_from_env().distributed:
            raise
        message = f"{type(exc).__name__}: {first_line(exc)}"
        if not distributed.rank_error(message):  # rank 0 of a torchrun of the user's own: one line
            from cnnbench.report.terminal import err_console

            err_console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt as exc:
        if main and not starts_ranks:
            why = str(exc) if isinstance(exc, Stopped) else "interrupted"
            print_interrupted_run(progress, why)
        return exit_code(exc)
    if isinstance(result, int):
        return result
    if main:
        print_run(result)
    return 0


def _dry_run(request: TrainRequest) -> int:
    """The recipe a run would train and its conditions hash, as JSON; nothing trains."""
    from cnnbench.store.tables import to_json
    from cnnbench.training.conditions import planned_conditions

    recipe = request.recipe()
    recipe.validate()
    print(
        to_json(
            {"recipe": recipe.to_dict(), "conditions_hash": planned_conditions(recipe)["conditions_hash"]}
        )
    )
    return 0
