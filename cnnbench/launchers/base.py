"""One interface for every way a comparison's runs are trained.

A :class:`Job` is one run: its label ("VARIANT seed N"), its recipe (whose ``run_name`` is the run's id
wherever it trains, so its row is found by that id) and its expected cost. A :class:`Launcher` runs a
list of jobs and says how each ended (:class:`Outcome`); the rows themselves are in the results store.

- :class:`~cnnbench.launchers.inline.InlineLauncher`: in this process, one after another;
- :class:`~cnnbench.launchers.workers.WorkerLauncher`: one ``cnnbench train`` process per GPU (CUDA MPS
  when several share one);
- :class:`~cnnbench.launchers.scheduler.LocalLauncher` and :class:`~cnnbench.launchers.scheduler.SlurmLauncher`:
  submitit's local executor and Slurm.

Each is found by its ``--launcher`` name (:func:`cnnbench.launchers.launcher_class`); what a comparison
must know of one (does it train here, on this machine, through a scheduler, does a stop leave its jobs
queued) is said by its class's attributes.

A job that leaves this process is written as JSON (:meth:`Job.write`) and trained by
``cnnbench train --config JOB.json``, which reads it back with :meth:`TrainConfig.from_dict`: the worker
trains exactly the recipe that was planned. Process-based launchers share one poll loop,
:func:`run_queue`.
"""

from __future__ import annotations

import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cnnbench.recipe import TrainConfig, write_job
from cnnbench.training.status import failed


@dataclass
class Job:
    """One run of a comparison."""

    label: str
    recipe: TrainConfig
    cost: float = 0.0  # what orders a queue: the longest (training FLOPs x epochs) first
    gpu: str | None = None  # where it runs, once started (a GPU, or "local"/"slurm")

    @property
    def run_id(self) -> str:
        return str(self.recipe.run_name)

    def write(self, folder: Path) -> Path:
        """The job as a JSON file in ``folder``, what ``cnnbench train --config`` trains."""
        return write_job(Path(folder) / f"{self.run_id}.json", self.label, self.recipe)


def job_command(job_file: Path, gpus: str | None = None) -> list[str]:
    """The process that trains a job file: ``cnnbench train --config FILE``, data-parallel on every GPU
    it was given with ``gpus``."""
    return [
        sys.executable,
        "-m",
        "cnnbench",
        "train",
        "--config",
        str(job_file),
        *(["--gpus", gpus] if gpus else []),
    ]


@dataclass
class Outcome:
    """How a job ended, as its launcher saw it: what stands in a run's row when the run left none
    (it crashed before its first write, was killed, or has not ended yet)."""

    ended: bool = False
    returncode: int | None = None
    status: str | None = None  # what the launcher knows it ended as (a scheduler's timeout, a crash's reason)
    log: Path | None = None  # where its output went

    def describe(self) -> str:
        """The status of a run that left no row: pending, what the launcher knows, or the exit code and
        the last error its log names."""
        if not self.ended:  # with why, where the scheduler says (squeue's reason)
            return f"pending ({self.status})" if self.status else "pending"
        if self.status:
            return self.status
        reason = last_error(self.log)
        return failed(f"worker exited with code {self.returncode}" + (f": {reason}" if reason else ""))


class JobView:
    """What a launcher shows as its jobs go (the terminal's display implements it); silent by default."""

    def jobs_planned(self, total: int) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_line(self, job: Job, line: str) -> None: ...
    def job_ended(self, job: Job, outcome: Outcome) -> None: ...


class Handle(Protocol):
    """A started job: ``poll()`` is None while it runs, its exit code after; ``stop()`` ends it and
    ``wait(timeout)`` lets it end (a stopped run writes its row before it exits)."""

    def poll(self) -> int | None: ...
    def stop(self) -> None: ...
    def wait(self, timeout: float) -> None: ...


class Launcher(ABC):
    """Runs jobs; ``outcomes`` (label -> :class:`Outcome`) is filled as they start and end, so that what
    is known survives a Ctrl-C. What a comparison must know of a launcher is said by its class, not by
    its name."""

    name = ""
    orders_by_cost = False  # whether the jobs' costs are worth counting (a queue orders by them)
    trains_here = False  # its jobs run in this process (a Python object may be their model)
    on_this_machine = True  # its jobs run on this machine: their device and data are this machine's
    scheduled = False  # a scheduler (submitit) runs its jobs: their display and figures wait for them
    leaves_jobs_queued = False  # a stop ends the waiting, not the jobs (a cluster's queue keeps them)

    def check(self) -> None:  # noqa: B027  (most launchers have nothing to check)
        """Refuse, before any work, what this launcher cannot do here (a missing sbatch, no GPU)."""

    def job_device(self, device: str) -> str:
        """The device a job's recipe names, given the comparison's ``--device``."""
        return device

    @abstractmethod
    def run(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None: ...


STOP_WAIT_S = 60.0  # how long stopped jobs may take to write their rows and end


def run_queue(
    jobs: Sequence[Job],
    slots: Sequence[str],
    start: Callable[[Job, str], Handle],
    view: JobView,
    outcomes: dict[str, Outcome],
    interval: float = 0.2,
    ended: Callable[[Job, Handle, int], Outcome] | None = None,
    on_interrupt: Callable[[list[Handle]], None] | None = None,
    max_interval: float | None = None,
) -> None:
    """The one poll loop: the longest jobs first, each next job to the slot that frees first; ``ended``
    turns a handle's exit code into its outcome. Polls every ``interval`` seconds, or, with
    ``max_interval``, waiting a quarter longer each round nothing ends, up to it (a cluster is not asked
    every second about a job of hours). Ctrl-C (or any error) stops every running job, unless
    ``on_interrupt`` says otherwise (a cluster's jobs go on)."""
    queue = sorted(jobs, key=lambda j: j.cost, reverse=True)
    running: dict[int, tuple[Job, Handle]] = {}
    free = [slot for slot in slots]
    view.jobs_planned(len(queue))
    sleep = interval
    try:
        while queue or running:
            while queue and free:
                job = queue.pop(0)
                job.gpu = free.pop(0)
                handle = start(job, job.gpu)
                outcomes[job.label] = Outcome(log=getattr(handle, "log", None))
                running[id(handle)] = (job, handle)
                view.job_started(job)
            for key, (job, handle) in list(running.items()):
                code = handle.poll()
                if code is None:
                    continue
                outcomes[job.label] = (ended or _exit_outcome)(job, handle, code)
                view.job_ended(job, outcomes[job.label])
                del running[key]
                free.append(job.gpu or "")
                sleep = interval
            if running and not (queue and free):
                time.sleep(sleep)
                sleep = min(max_interval or interval, sleep * 1.25)
    except BaseException:
        handles = [h for _, h in running.values()]
        if on_interrupt is not None:
            on_interrupt(handles)
        else:
            for handle in handles:
                handle.stop()
            deadline = time.monotonic() + STOP_WAIT_S
            for handle in handles:  # their runs write their rows: the table collected next shows them
                handle.wait(max(0.0, deadline - time.monotonic()))
        raise


def _exit_outcome(job: Job, handle: Handle, code: int) -> Outcome:
    return Outcome(
        ended=True, returncode=code, status=getattr(handle, "status", None), log=getattr(handle, "log", None)
    )


def last_error(path: Path | None) -> str | None:
    """The last error a job's log names: a Python exception's line, or cnnbench's own "error: ..." line."""
    if path is None or not Path(path).is_file():
        return None
    for line in reversed(Path(path).read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("error: "):
            return line.removeprefix("error: ")
        if _EXCEPTION.match(line):
            return line
    return None


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(: .*)?$")
