"""A comparison's runs handed to a scheduler through submitit: Slurm as a job array, or submitit's
local executor (subprocesses on this machine, what the tests run on the CPU).

Every job is one ``cnnbench train`` command writing into the shared ``--out``; the store's locked
appends keep every row, so the comparison's table is collected from the store once the jobs end, now
(waiting) or later (``compare --from FOLDER``, from the plan saved in the folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.choices import LAUNCHERS
from cnnbench.errors import DeviceError, InvalidArgumentError


@dataclass
class SchedulerOptions:
    """What a job asks of the scheduler."""

    partition: str | None = None  # Slurm partition (default: the cluster's)
    gpus_per_job: int = 1  # more than one: the job trains data-parallel on them (train --gpus all)
    time_min: int = 60  # each job's time limit
    max_parallel: int | None = None  # jobs running at once (Slurm's array throttle); None: no limit

    def validate(self) -> None:
        if self.gpus_per_job < 0:
            raise InvalidArgumentError(f"expected --gpus-per-job >= 0, got {self.gpus_per_job}")
        if self.time_min < 1:
            raise InvalidArgumentError(f"expected --time >= 1 minute, got {self.time_min}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise InvalidArgumentError(f"expected --max-parallel >= 1, got {self.max_parallel}")


def run_cnnbench(argv: list[str]) -> int:
    """What each job runs: ``cnnbench ARGV`` in a process of its own (its output goes to the job's log);
    the exit code, which the comparison turns into a row when the run left none."""
    return subprocess.run([sys.executable, "-m", "cnnbench", *argv]).returncode


def job_argv(argv: Sequence[str], options: SchedulerOptions) -> list[str]:
    """A run's train command as a job runs it: on every GPU the job was given when it has several."""
    return [*argv, "--gpus", "all"] if options.gpus_per_job > 1 else list(argv)


def executor(launcher: str, folder: Path, options: SchedulerOptions) -> Any:
    """A submitit executor for ``launcher`` whose logs go to ``folder`` (``options`` already validated
    with the comparison's configuration)."""
    import submitit

    if launcher == "slurm":
        if shutil.which("sbatch") is None:
            raise DeviceError(
                "expected Slurm for --launcher slurm (sbatch on PATH), got none; --launcher local runs the "
                "same jobs on this machine"
            )
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = {"timeout_min": options.time_min, "gpus_per_node": options.gpus_per_job,
                                  "tasks_per_node": 1, "nodes": 1, "name": "cnnbench"}  # fmt: skip
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.max_parallel:
            params["slurm_array_parallelism"] = options.max_parallel
        ex.update_parameters(**params)
        return ex
    if launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=options.time_min, gpus_per_node=options.gpus_per_job)
        return ex
    raise InvalidArgumentError(f"expected --launcher in {'|'.join(LAUNCHERS)}, got {launcher!r}")


class SubmititHandle:
    """A submitted job as :class:`cnnbench.sweep.Sweep` polls it."""

    def __init__(self, job: Any) -> None:
        self.job = job

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result())
        except Exception:  # the job itself failed (killed, timed out, preempted): no exit code of ours
            return 1

    def terminate(self) -> None:
        self.job.cancel(check=False)


def submit(launcher: str, folder: Path, options: SchedulerOptions, argvs: list[list[str]]) -> list[Any]:
    """Submit every run at once (Slurm throttles the array to --max-parallel); the submitit jobs."""
    ex = executor(launcher, folder, options)
    return ex.map_array(run_cnnbench, [job_argv(a, options) for a in argvs])


def local_slots(options: SchedulerOptions) -> int:
    """How many local jobs run at once: --max-parallel, else one per CPU pair."""
    return options.max_parallel or max(1, (os.cpu_count() or 2) // 2)
