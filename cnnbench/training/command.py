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

from cnnbench.errors import InvalidArgumentError
from cnnbench.fields import option_names
from cnnbench.recipe import TrainConfig, read_job, write_job
from cnnbench.store.tables import DEFAULT_RESULTS_DIR
from cnnbench.training import distributed

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
    """Train, resume, or start torchrun: the run's :class:`~cnnbench.training.trainer.RunResult`, or the
    exit code of torchrun when this process only started it."""
    from cnnbench.training import trainer

    if request.resume is not None:
        request.check_resume()
    if request.gpus is not None and not distributed.world_from_env().distributed:
        return _data_parallel(request)
    if request.resume is not None:
        device = request.given.get("device")
        return trainer.resume(request.out, request.resume, callbacks, epochs=request.given.get("epochs"),
                              device=None if device in (None, "auto") else device, model=request.model,
                              repair=request.repair)  # fmt: skip
    return trainer.Trainer(request.recipe(), callbacks, repair=request.repair).run()


def _data_parallel(request: TrainRequest) -> int:
    """Start torchrun on the GPUs of ``--gpus``; each rank trains the same run (a new run's recipe goes to
    the ranks as a job file, with its run id fixed here so that every rank names it alike)."""
    if request.resume is not None:
        argv = ["train", "--resume", request.resume, "--out", str(request.out)]
        for key in ("epochs", "device"):
            if request.given.get(key) is not None:
                argv += [f"--{key}", str(request.given[key])]
        return distributed.run_data_parallel(request.gpus or "", argv + ["--repair"] * request.repair)
    from cnnbench.training.trainer import new_run_id

    recipe = request.recipe()
    recipe.validate()
    recipe = recipe.replace(run_name=recipe.run_name or new_run_id(recipe))
    folder = Path(tempfile.mkdtemp(prefix="cnnbench-job-"))
    try:
        job = write_job(folder / f"{recipe.run_name}.json", str(recipe.run_name), recipe)
        os.chmod(folder, 0o755)
        argv = ["train", "--config", str(job)] + ["--repair"] * request.repair
        return distributed.run_data_parallel(request.gpus or "", argv)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_command(request: TrainRequest, quiet: bool = False, dry_run: bool = False) -> int:
    """``cnnbench train``: the run with a progress display (rank 0 alone prints), its result line, and on
    Ctrl-C what it keeps and the command that continues it; the exit code."""
    from cnnbench.report.progress import TrainProgress, print_interrupted_run
    from cnnbench.report.terminal import print_run

    if dry_run:
        return _dry_run(request)
    main = distributed.is_main_process()
    progress = TrainProgress(quiet or not main)
    try:
        with progress:
            result = run(request, progress)
    except KeyboardInterrupt:
        if main:
            checkpoints = request.resume is not None or request.given.get("checkpoints", True)
            print_interrupted_run(progress.run_id, request.given.get("out"), checkpoints)
        return 130
    if isinstance(result, int):
        return result  # torchrun's exit code
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
