"""A comparison's runs handed to a scheduler through submitit: Slurm as a job array, or submitit's local
executor (processes on this machine, what the tests run on the CPU).

Every job is one ``cnnbench train --config JOB.json`` process writing into the shared ``--out``; the
store's locked appends keep every row, so the comparison's table is collected from the store once the
jobs end, now (waiting) or later (``compare --from FOLDER``, from the plan saved in the folder).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import subprocess
import sys
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.device import is_cuda, resolve_device
from cnnbench.errors import DeviceError, InvalidArgumentError
from cnnbench.fields import Opt, declared
from cnnbench.launchers.base import Job, JobView, Launcher, Outcome, job_command, run_queue
from cnnbench.launchers.job import run_job
from cnnbench.launchers.slurm_states import ASK_TIMEOUT_S, SlurmStates, pending_reason
from cnnbench.store.tables import to_json, write_text_atomic
from cnnbench.training.status import failed

_COMPARE = ("compare",)


@dataclass
class SchedulerOptions:
    """What a job asks of the scheduler."""

    partition: str | None = declared(
        None, option=Opt(("--partition",), "Slurm partition of the jobs.", "NAME", commands=_COMPARE)
    )  # None: the cluster's default
    gpus_per_job: int = declared(
        1, option=Opt(("--gpus-per-job",), "GPUs each job asks for (over 1: data-parallel).", "N",
                      commands=_COMPARE),
    )  # fmt: skip
    nodes: int = declared(
        1, option=Opt(("--nodes",), "Nodes each job spans (its GPUs on each: one rank per GPU).", "N",
                      commands=_COMPARE),
    )  # fmt: skip
    time_min: float = declared(
        60, option=Opt(("--time",), "Each job's time limit.", "MINUTES", commands=_COMPARE)
    )
    max_parallel: int | None = declared(
        None, option=Opt(("--max-parallel",), "Jobs running at once.", "N", commands=_COMPARE)
    )  # Slurm's array throttle; None: no limit

    def validate(self) -> None:
        if self.gpus_per_job < 0:
            raise InvalidArgumentError(f"expected --gpus-per-job >= 0, got {self.gpus_per_job}")
        if self.nodes < 1:
            raise InvalidArgumentError(f"expected --nodes >= 1, got {self.nodes}")
        if not self.time_min > 0:
            raise InvalidArgumentError(f"expected --time > 0 minutes, got {self.time_min}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise InvalidArgumentError(f"expected --max-parallel >= 1, got {self.max_parallel}")


@contextlib.contextmanager
def _started_apart(log: Path) -> Iterator[None]:
    """Processes started inside the block (submitit's local controller) take no Ctrl-C from the terminal
    (they are stopped by the comparison, with SIGTERM) and write their own words to ``log``."""
    import signal

    with open(log, "a") as fh:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def executor(launcher: str, folder: Path, options: SchedulerOptions, on_cpu: bool = False) -> Any:
    """A submitit executor for ``launcher`` whose logs go to ``folder``. A Slurm job of several GPUs is
    that many tasks, one rank each (``on_cpu``: ranks on the node's CPUs, asking for no GPU)."""
    import submitit

    # The warning that a job's time is nearly up (SIGUSR2) comes early enough for the run to write its
    # row, and never at a short job's start (submitit's default asks for it 90 s before the end).
    delay = int(min(90, max(5, options.time_min * 60 // 6)))
    if launcher == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        # Slurm counts a job's time in whole minutes.
        params: dict[str, Any] = {"timeout_min": math.ceil(options.time_min),
                                  "gpus_per_node": 0 if on_cpu else options.gpus_per_job,
                                  "tasks_per_node": max(1, options.gpus_per_job), "nodes": options.nodes, "name": "cnnbench",
                                  "slurm_signal_delay_s": delay}  # fmt: skip
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.max_parallel:
            params["slurm_array_parallelism"] = options.max_parallel
        ex.update_parameters(**params)
        return ex
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(
        timeout_min=options.time_min, gpus_per_node=options.gpus_per_job, signal_delay_s=delay
    )
    return ex


class SubmititHandle:
    """A submitted job as the poll loop sees it. ``stop`` ends a local job (SIGTERM to submitit's
    controller, which passes it to the job, whose run then writes its row) and leaves a cluster's jobs
    alone (Ctrl-C stops the waiting, not the jobs)."""

    def __init__(self, job: Any, cancel_on_stop: bool = True, states: SlurmStates | None = None) -> None:
        self.job = job
        self.cancel_on_stop = cancel_on_stop
        self.states = states  # a Slurm job's state comes from these, not from submitit's watcher
        self.log = Path(job.paths.stderr) if hasattr(job, "paths") else None  # where a crash's words go
        self.status: str | None = None
        self.completed_at: float | None = None  # when Slurm first said COMPLETED without a result here

    def poll(self) -> int | None:
        if self.states is None:
            if not self.job.done():
                return None
        elif not all(self.job.task(i).paths.result_pickle.exists() for i in range(self.job.num_tasks)):
            self.states.refresh([self.job.job_id])
            reason = self.states.never_starts(self.job.job_id)
            if reason is not None:  # it would wait forever: cancelled, and its run says why
                subprocess.run(["scancel", str(self.job.job_id)], capture_output=True, timeout=ASK_TIMEOUT_S)
                self.status = failed(f"{pending_reason(reason)}; cancelled")
                return 1
            ended, status = self.states.ended(self.job.job_id)
            if not ended or (status is None and self._result_may_come()):
                return None
            self.status = status or failed("its job ended without a result")
            return 1
        try:
            result = self.job.task(0).result()  # rank 0's, in a job of several tasks
        except Exception:  # the job itself failed (killed, timed out, preempted): no exit code of ours
            return 1
        if isinstance(result, str):  # run_job's status of a run a signal stopped
            self.status = result
            return 1
        return int(result)

    def _result_may_come(self) -> bool:
        """Slurm says COMPLETED and the result file is not there yet: a slow shared file system may
        show it a little later (submitit writes it before the job ends)."""
        import time

        if self.completed_at is None:
            self.completed_at = time.monotonic()
        return time.monotonic() - self.completed_at < 30

    def stop(self) -> None:
        if not self.cancel_on_stop:
            return
        import signal

        controller = getattr(self.job, "_process", None)
        if controller is not None:
            controller.send_signal(signal.SIGTERM)
        else:
            self.job.cancel(check=False)

    def wait(self, timeout: float) -> None:
        controller = getattr(self.job, "_process", None)
        if self.cancel_on_stop and controller is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                controller.wait(timeout)


class SubmititLauncher(Launcher):
    """What submitit's two launchers share: job files and submitit's logs in ``folder``, the scheduler's
    options checked first, one ``cnnbench train --config JOB.json`` per job."""

    orders_by_cost = True
    scheduled = True

    def __init__(
        self, folder: Path, options: SchedulerOptions, wait: bool, log: Callable[[str], None]
    ) -> None:
        self.folder, self.options, self.wait, self.log = Path(folder), options, wait, log

    def check(self) -> None:
        self.options.validate()

    def command(self, job: Job) -> list[str]:
        """A job as it runs: ``cnnbench train --config JOB.json``, on all its GPUs where it starts its own ranks."""
        several = self.options.gpus_per_job > 1 and self.runs_data_parallel_here
        return job_command(job.write(self.folder), "all" if several else None)

    runs_data_parallel_here = (
        False  # a job of several GPUs starts its own ranks (torchrun), or a cluster does
    )

    def run(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if jobs:
            self.submit(jobs, view, outcomes)

    @abstractmethod
    def submit(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None: ...


class LocalLauncher(SubmititLauncher):
    """submitit's local executor: processes on this machine, at most ``--max-parallel`` at a time (else
    one per CPU pair); a job of several GPUs trains data-parallel on this machine's GPUs (torchrun)."""

    name = "local"
    runs_data_parallel_here = True

    def check(self) -> None:
        super().check()
        if self.options.nodes > 1:
            raise InvalidArgumentError(f"expected --nodes 1 with --launcher local, got {self.options.nodes}")
        if self.options.gpus_per_job > 1:
            import torch

            have = torch.cuda.device_count()
            if have < self.options.gpus_per_job:
                raise DeviceError(
                    f"expected {self.options.gpus_per_job} GPUs here for --gpus-per-job {self.options.gpus_per_job} "
                    f"with --launcher local (each job trains data-parallel on them), got {have}"
                )

    def job_device(self, device: str) -> str:
        if device != "auto":
            return device
        return "cuda" if is_cuda(resolve_device("auto")) else "cpu"  # where this machine's device is

    def submit(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        # submitit's local executor starts every job at once: at most --max-parallel at a time here.
        ex = executor("local", self.folder, self.options)
        slots = self.options.max_parallel or max(1, (os.cpu_count() or 2) // 2)
        self.log(
            f"{_runs(len(jobs))} through submitit's local executor, {slots} at a time; logs in {self.folder}"
        )
        if not self.wait:
            self.log("--no-wait: local jobs end with this command's process group; they run to the end here")

        def start(job: Job, _slot: str) -> SubmititHandle:
            with _started_apart(self.folder / "local-executor.log"):
                return SubmititHandle(
                    ex.submit(run_job, self.command(job), 60.0 * self.options.time_min, "local", os.getpid())
                )

        run_queue(jobs, ["local"] * slots, start, view, outcomes)


class SlurmLauncher(SubmititLauncher):
    """Slurm, as one job array; its throttle (``--max-parallel``) runs that many at a time. A job finds its
    device on its node; a stop ends the waiting and leaves the jobs queued; without ``wait`` the jobs
    are submitted and the command returns."""

    name = "slurm"
    on_this_machine = False
    leaves_jobs_queued = True

    def check(self) -> None:
        super().check()
        for command in ("sbatch", "srun"):
            if shutil.which(command) is None:
                raise DeviceError(
                    f"expected Slurm for --launcher slurm ({command} on PATH), got none; --launcher local runs "
                    "the same jobs on this machine"
                )

    def job_device(self, device: str) -> str:
        if device != "auto":
            return device
        return "cuda" if self.options.gpus_per_job > 0 else "cpu"  # a node's GPUs, if the job asks for any

    def submit(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        from submitit.core.utils import FailedJobError

        on_cpu = all(job.recipe.device == "cpu" for job in jobs)
        ex = executor("slurm", self.folder, self.options, on_cpu)
        limit = 60.0 * math.ceil(self.options.time_min)
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # submitit prints sbatch's refusal, then raises it
                submitted = ex.map_array(run_job, [self.command(job) for job in jobs], [limit] * len(jobs))
        except FailedJobError as exc:
            words = str(exc).strip() or said.getvalue().strip() or "no reason given"
            raise DeviceError(
                f"expected Slurm to queue the jobs, got sbatch's refusal: {words.splitlines()[0]}"
            ) from None
        told = False

        def stopped_waiting(_handles: Sequence[Any]) -> None:
            # Ctrl-C stops the waiting, not the cluster's jobs: the table shows what has ended so far.
            nonlocal told
            if not told:
                told = True
                self.log("stopped waiting; the jobs go on in Slurm: render the table later with  "
                         f"cnnbench compare --from {self.folder.parent}")  # fmt: skip

        try:  # from the moment the jobs are queued, a Ctrl-C leaves them queued
            self._follow(jobs, submitted, view, outcomes, stopped_waiting)
        except KeyboardInterrupt:
            stopped_waiting([])
            raise

    def _follow(self, jobs: list[Job], submitted: list[Any], view: JobView, outcomes: dict[str, Outcome],
                stopped_waiting: Callable[[Sequence[Any]], None]) -> None:  # fmt: skip
        ids = [j.job_id for j in submitted]
        states = SlurmStates(self.log)
        handles = {
            job.label: SubmititHandle(j, cancel_on_stop=False, states=states)
            for job, j in zip(jobs, submitted, strict=True)
        }
        for job in jobs:  # queued: pending, whatever comes next
            outcomes[job.label] = Outcome(log=handles[job.label].log)
        write_text_atomic(self.folder / "jobs.json", to_json({"launcher": "slurm", "job_ids": ids,
                                                               "labels": [job.label for job in jobs]}))  # fmt: skip
        self.log(
            f"{_runs(len(jobs))} submitted to Slurm as job array {ids[0].split('_')[0]}; logs in {self.folder}"
        )
        if not self.wait:
            self.log(
                f"not waiting: render the table later with  cnnbench compare --from {self.folder.parent}"
            )
            return

        ended_count = 0

        def ended(job: Job, handle: SubmititHandle, code: int) -> Outcome:
            nonlocal ended_count
            ended_count += 1
            self.log(f"{ended_count}/{len(jobs)} runs ended")
            return Outcome(ended=True, returncode=code, status=handle.status, log=handle.log)

        # Every job is queued already: the loop's slots are the jobs themselves, polled every second at
        # first and less often as they go on (every 10 s at most).
        run_queue(jobs, [job.label for job in jobs], lambda job, _slot: handles[job.label], view, outcomes,
                  interval=1, max_interval=10, ended=ended, on_interrupt=stopped_waiting)  # fmt: skip


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")
