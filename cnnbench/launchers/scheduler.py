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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.device import is_cuda, resolve_device
from cnnbench.errors import DeviceError, InvalidArgumentError
from cnnbench.fields import Opt, declared
from cnnbench.launchers.base import Job, JobView, Launcher, Outcome, job_command, run_queue
from cnnbench.store.tables import to_json, write_text_atomic

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
    time_min: float = declared(
        60, option=Opt(("--time",), "Each job's time limit.", "MINUTES", commands=_COMPARE)
    )
    max_parallel: int | None = declared(
        None, option=Opt(("--max-parallel",), "Jobs running at once.", "N", commands=_COMPARE)
    )  # Slurm's array throttle; None: no limit

    def validate(self) -> None:
        if self.gpus_per_job < 0:
            raise InvalidArgumentError(f"expected --gpus-per-job >= 0, got {self.gpus_per_job}")
        if not self.time_min > 0:
            raise InvalidArgumentError(f"expected --time > 0 minutes, got {self.time_min}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise InvalidArgumentError(f"expected --max-parallel >= 1, got {self.max_parallel}")


def run_job(argv: list[str], time_limit_s: float | None = None, kind: str = "slurm") -> int | str:
    """What each scheduled job runs: ``cnnbench train --config JOB.json`` in a process of its own (its
    output goes to the job's log); its exit code, or the status a signal gave it.

    The scheduler's signals reach the run: its warning that the time is nearly up (SIGUSR2, which
    submitit asks Slurm for and its local executor sends) and a stop (SIGTERM: Slurm's cancel, or the
    comparison of a local job stopping) end the run, which writes its epochs and an ``interrupted``
    row; the row then says what ended it: ``timeout``, ``cancelled`` (Slurm), ``interrupted`` (a local
    comparison that was stopped). A run killed before it wrote a row gets one."""
    import signal
    import time

    # A local job is started with Ctrl-C blocked (the comparison stops it); its run takes Ctrl-C again.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    child = subprocess.Popen(argv)
    started = time.monotonic()
    why: list[str] = []

    def forward(signum: int, _frame: object) -> None:
        if not why:
            late = time_limit_s is not None and time.monotonic() - started >= 0.9 * time_limit_s
            if signum == signal.SIGUSR2 or (signum == signal.SIGTERM and late):
                why.append("timeout")
            elif signum == signal.SIGTERM and kind == "slurm":
                why.append("cancelled")
            else:
                why.append("interrupted")
            child.send_signal(signal.SIGTERM)

    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    }
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if why or code != 0:
        from cnnbench.recipe import read_job
        from cnnbench.store.runs import RunStore

        recipe = read_job(Path(argv[argv.index("--config") + 1]))
        status = why[0] if why else f"failed: exited with code {code}"
        RunStore(recipe.out, str(recipe.run_name)).settle(status, replace=("interrupted",) if why else ())
    return why[0] if why else code  # stopped before its run had a folder, the job still says how it ended


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


def executor(launcher: str, folder: Path, options: SchedulerOptions) -> Any:
    """A submitit executor for ``launcher`` whose logs go to ``folder``."""
    import submitit

    # The warning that a job's time is nearly up (SIGUSR2) comes early enough for the run to write its
    # row, and never at a short job's start (submitit's default asks for it 90 s before the end).
    delay = int(min(90, max(5, options.time_min * 60 // 6)))
    if launcher == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        # Slurm counts a job's time in whole minutes.
        params: dict[str, Any] = {"timeout_min": math.ceil(options.time_min), "gpus_per_node": options.gpus_per_job,
                                  "tasks_per_node": 1, "nodes": 1, "name": "cnnbench",
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

    def __init__(self, job: Any, cancel_on_stop: bool = True) -> None:
        self.job = job
        self.cancel_on_stop = cancel_on_stop
        self.log = Path(job.paths.stderr) if hasattr(job, "paths") else None  # where a crash's words go
        self.status: str | None = None

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            result = self.job.result()
        except Exception:  # the job itself failed (killed, timed out, preempted): no exit code of ours
            return 1
        if isinstance(result, str):  # run_job's status of a run a signal stopped
            self.status = result
            return 1
        return int(result)

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
    """``kind`` local or slurm; job files and submitit's logs in ``folder``. Local jobs run at most
    ``--max-parallel`` at a time (else one per CPU pair); Slurm's array throttle does the same there.
    Without ``wait``, Slurm's jobs are submitted and the command returns."""

    orders_by_cost = True

    def __init__(self, kind: str, folder: Path, options: SchedulerOptions, wait: bool,
                 log: Callable[[str], None]) -> None:  # fmt: skip
        self.name, self.folder, self.options, self.wait, self.log = kind, Path(folder), options, wait, log

    def check(self) -> None:
        self.options.validate()
        if self.name == "slurm":
            for command in ("sbatch", "srun"):
                if shutil.which(command) is None:
                    raise DeviceError(
                        f"expected Slurm for --launcher slurm ({command} on PATH), got none; --launcher local runs "
                        "the same jobs on this machine"
                    )
        elif self.options.gpus_per_job > 1:
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
        if self.name == "local":  # local jobs run where this machine's device is
            return "cuda" if is_cuda(resolve_device("auto")) else "cpu"
        return "cuda" if self.options.gpus_per_job > 0 else "cpu"  # a node's GPUs, if the job asks for any

    def command(self, job: Job) -> list[str]:
        """A job as it runs: on every GPU it was given when it has several (data-parallel)."""
        return job_command(job.write(self.folder), "all" if self.options.gpus_per_job > 1 else None)

    def run(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not jobs:
            return
        if self.name == "local":
            self._run_local(jobs, view, outcomes)
        else:
            self._run_slurm(jobs, view, outcomes)

    def _run_local(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        # submitit's local executor starts every job at once: at most --max-parallel at a time here.
        ex = executor("local", self.folder, self.options)
        slots = self.options.max_parallel or max(1, (os.cpu_count() or 2) // 2)
        self.log(
            f"{len(jobs)} runs through submitit's local executor, {slots} at a time; logs in {self.folder}"
        )
        if not self.wait:
            self.log("--no-wait: local jobs end with this command's process group; they run to the end here")

        def start(job: Job, _slot: str) -> SubmititHandle:
            with _started_apart(self.folder / "local-executor.log"):
                return SubmititHandle(
                    ex.submit(run_job, self.command(job), 60.0 * self.options.time_min, "local")
                )

        run_queue(jobs, ["local"] * slots, start, view, outcomes)

    def _run_slurm(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        from submitit.core.utils import FailedJobError

        ex = executor("slurm", self.folder, self.options)
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
        ids = [j.job_id for j in submitted]
        self.log(
            f"{len(jobs)} runs submitted to Slurm as job array {ids[0].split('_')[0]}; logs in {self.folder}"
        )
        write_text_atomic(self.folder / "jobs.json", to_json({"launcher": "slurm", "job_ids": ids,
                                                               "labels": [job.label for job in jobs]}))  # fmt: skip
        handles = {
            job.label: SubmititHandle(j, cancel_on_stop=False) for job, j in zip(jobs, submitted, strict=True)
        }
        if not self.wait:
            for job in jobs:
                outcomes[job.label] = Outcome(log=handles[job.label].log)
            self.log(
                f"not waiting: render the table later with  cnnbench compare --from {self.folder.parent}"
            )
            return

        def stopped_waiting(_handles: Sequence[Any]) -> None:
            # Ctrl-C stops the waiting, not the cluster's jobs: the table shows what has ended so far.
            self.log("stopped waiting; the jobs go on in Slurm: render the table later with  "
                     f"cnnbench compare --from {self.folder.parent}")  # fmt: skip

        ended_count = 0

        def ended(job: Job, handle: SubmititHandle, code: int) -> Outcome:
            nonlocal ended_count
            ended_count += 1
            self.log(f"{ended_count}/{len(jobs)} runs ended")
            return Outcome(ended=True, returncode=code, status=handle.status, log=handle.log)

        # Every job is queued already: the loop's slots are the jobs themselves, polled every 10 s.
        run_queue(jobs, [job.label for job in jobs], lambda job, _slot: handles[job.label], view, outcomes,
                  interval=10, ended=ended, on_interrupt=stopped_waiting)  # fmt: skip
