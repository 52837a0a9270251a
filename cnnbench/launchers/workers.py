"""A comparison's runs spread over the GPUs of one machine: one ``cnnbench train --config JOB.json``
process per job, pinned to its GPU with CUDA_VISIBLE_DEVICES, the longest jobs first, each next job to
the GPU that frees first.

Workers write into the same results folder; the store's locked appends keep every row. A worker that
crashes or runs out of memory ends as its job's row; the others go on. Ctrl-C stops every worker;
finished runs stay. Each worker's output goes to the view and to its log beside its job file.

Several runs on one GPU (``--jobs-per-gpu K``) share it through CUDA MPS where the machine has it
(:func:`mps_daemon`): kernels of the K processes then run side by side instead of time-sliced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from cnnbench.device import parse_gpus
from cnnbench.launchers.base import Job, JobView, Launcher, Outcome, job_command, run_queue

WORKER_ENV = "CNNBENCH_WORKER"  # set in a sweep's worker processes: the GPU it was given


class PipedWorker:
    """A worker process whose output lines a thread hands to the view and writes to its log; its end is
    reported only once every line is read, so a crash's last words reach the view first."""

    def __init__(self, job: Job, argv: list[str], env: dict[str, str], log: Path, view: JobView) -> None:
        self.log = log
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        errors="replace")  # fmt: skip
        self.reader = threading.Thread(target=self._forward, args=(job, view), daemon=True)
        self.reader.start()

    def _forward(self, job: Job, view: JobView) -> None:
        with open(self.log, "w", encoding="utf-8") as fh:
            for line in self.process.stdout or ():
                fh.write(line)
                fh.flush()
                view.job_line(job, line.rstrip("\n"))

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self.reader.join(timeout=5)
        return code

    def stop(self) -> None:
        self.process.terminate()

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)


class WorkerLauncher(Launcher):
    """``per_gpu`` jobs at once on each GPU of ``gpus`` (all, N or 0,2,3), under CUDA MPS when ``mps``
    and several share a GPU; job files and logs in ``folder``."""

    name = "workers"
    orders_by_cost = True

    def __init__(self, gpus: str, per_gpu: int, mps: bool, folder: Path, log: Callable[[str], None]) -> None:
        self.gpus_text, self.per_gpu, self.mps, self.folder, self.log = gpus, per_gpu, mps, Path(folder), log
        self.gpus: list[str] = []

    def check(self) -> None:
        import torch

        self.gpus = parse_gpus(self.gpus_text, torch.cuda.device_count())

    def job_device(self, device: str) -> str:
        return "cuda" if device == "auto" else device  # each worker sees its one GPU

    def run(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        self.log(
            f"{len(jobs)} runs on GPUs {', '.join(self.gpus)}, {self.per_gpu} at a time on each, longest first"
        )
        if not jobs:
            return
        if self.per_gpu > 1 and not self.mps:
            self.log("CUDA MPS off (--no-mps): the runs on each GPU take turns (time-sliced)")
        self.folder.mkdir(parents=True, exist_ok=True)
        with mps_daemon(self.per_gpu > 1 and self.mps, self.log) as mps_env:

            def start(job: Job, gpu: str) -> PipedWorker:
                # A worker prints its epoch lines (each naming variant and seed), never a progress bar.
                env = {
                    **os.environ,
                    **mps_env,
                    "CUDA_VISIBLE_DEVICES": gpu,
                    "PYTHONUNBUFFERED": "1",
                    WORKER_ENV: gpu,
                }
                argv = job_command(job.write(self.folder))
                return PipedWorker(job, argv, env, self.folder / f"{job.run_id}.log", view)

            slots = [gpu for _ in range(self.per_gpu) for gpu in self.gpus]
            run_queue(jobs, slots, start, view, outcomes)


@contextlib.contextmanager
def mps_daemon(wanted: bool, log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """CUDA MPS for the sweep, when ``wanted`` (several runs per GPU): a control daemon of our own with
    private pipe and log folders, stopped afterwards. Yields the environment workers need to use it
    (empty without MPS, and then says why)."""
    if not wanted:
        yield {}
        return
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        log(
            "CUDA MPS is not available (no nvidia-cuda-mps-control): the runs on each GPU take turns (time-sliced)"
        )
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="cnnbench-mps-"))
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    for path in env.values():
        Path(path).mkdir()
    daemon_env = {**os.environ, **env}
    daemon_env.pop("CUDA_VISIBLE_DEVICES", None)
    started = subprocess.run([control, "-d"], env=daemon_env, capture_output=True, text=True)
    if started.returncode != 0:
        reason = (started.stderr or started.stdout).strip().splitlines()
        log(f"CUDA MPS did not start ({reason[0] if reason else f'exit {started.returncode}'}): the runs on each "
            "GPU take turns (time-sliced)")  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
        yield {}
        return
    log(f"CUDA MPS on for the sweep (pipe {env['CUDA_MPS_PIPE_DIRECTORY']})")
    try:
        yield {**env, "CNNBENCH_CUDA_MPS": "1"}
    finally:
        subprocess.run([control], input="quit\n", env=daemon_env, capture_output=True, text=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
