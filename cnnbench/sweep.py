"""A comparison's runs spread over the GPUs of one machine: one worker process per job, pinned to its GPU
with CUDA_VISIBLE_DEVICES, the longest jobs first, each next job to the GPU that frees first.

Workers are ``cnnbench train`` processes writing into the same results folder; the store's locked
appends keep every row. A worker that crashes or runs out of memory ends as its job's row; the others
go on. Ctrl-C stops every worker; finished runs stay.

Several runs on one GPU (``--jobs-per-gpu K``) share it through CUDA MPS where the machine has it
(:func:`mps_daemon`): kernels of the K processes then run side by side instead of time-sliced.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.errors import DeviceError, InvalidArgumentError

WORKER_ENV = "CNNBENCH_WORKER"  # set in a sweep's worker processes: the GPU it was given


def parse_gpus(text: str, available: int) -> list[str]:
    """``all``, a count ``N`` (the first N GPUs) or a list ``0,2,3``, checked against the GPUs there are."""
    if available < 1:
        raise DeviceError(f"expected CUDA GPUs for --gpus {text}, got none (torch sees no GPU)")
    text = text.strip().lower()
    if text == "all":
        return [str(i) for i in range(available)]
    try:
        if "," not in text:
            count = int(text)
            if not 1 <= count <= available:
                raise InvalidArgumentError(f"expected --gpus between 1 and {available}, got {count}")
            return [str(i) for i in range(count)]
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidArgumentError(
            f"expected --gpus all, a count or a list like 0,2,3, got {text!r}"
        ) from None
    if len(set(ids)) != len(ids) or any(not 0 <= i < available for i in ids):
        raise InvalidArgumentError(f"expected --gpus of distinct ids in [0, {available}), got {text!r}")
    return [str(i) for i in ids]


@dataclass
class Job:
    """One run of a comparison: its label (variant and seed), the command that trains it, its cost."""

    label: str
    argv: list[str]
    cost: float  # what orders the queue: longest first
    gpu: str | None = None
    returncode: int | None = None


@dataclass
class Slot:
    gpu: str
    job: Job | None = None
    handle: Any = None


class SweepView:
    """What a sweep shows as it goes (the terminal's live display implements it); silent by default."""

    def jobs_planned(self, total: int) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_line(self, job: Job, line: str) -> None: ...
    def job_ended(self, job: Job) -> None: ...


@dataclass
class Sweep:
    """Runs ``jobs`` on ``gpus`` with ``per_gpu`` at once on each; ``launch`` starts a job on a GPU and
    returns a handle whose ``poll()`` gives None while it runs and its exit code after."""

    jobs: list[Job]
    gpus: Sequence[str]
    per_gpu: int = 1
    launch: Callable[[Job, str], Any] = field(default=None)  # type: ignore[assignment]
    started: list[Job] = field(default_factory=list)
    view: SweepView = field(default_factory=SweepView)

    def run(self, interval: float = 0.2, on_change: Callable[[list[Slot]], None] | None = None) -> list[Job]:
        queue = sorted(self.jobs, key=lambda j: j.cost, reverse=True)
        slots = [Slot(gpu) for _ in range(self.per_gpu) for gpu in self.gpus]
        launch = self.launch or launch_process
        self.view.jobs_planned(len(queue))
        try:
            while queue or any(s.job for s in slots):
                changed = False
                for slot in slots:
                    if slot.job is not None:
                        code = slot.handle.poll()
                        if code is None:
                            continue
                        slot.job.returncode = code
                        self.view.job_ended(slot.job)
                        slot.job, slot.handle, changed = None, None, True
                    if queue:
                        job = queue.pop(0)
                        job.gpu = slot.gpu
                        slot.job, slot.handle = job, launch(job, slot.gpu)
                        self.started.append(job)
                        self.view.job_started(job)
                        changed = True
                if changed and on_change is not None:
                    on_change(slots)
                time.sleep(interval)
        except BaseException:
            for slot in slots:  # Ctrl-C (or anything else) stops every worker
                if slot.handle is not None and hasattr(slot.handle, "terminate"):
                    slot.handle.terminate()
            raise
        return self.jobs


class PipedWorker:
    """A worker whose output lines a thread hands to the view; its end is reported only once every
    line is read, so a crash's last words reach the view first."""

    def __init__(self, process: subprocess.Popen, job: Job, view: SweepView) -> None:
        self.process = process
        self.reader = threading.Thread(target=self._forward, args=(job, view), daemon=True)
        self.reader.start()

    def _forward(self, job: Job, view: SweepView) -> None:
        for line in self.process.stdout or ():
            view.job_line(job, line.rstrip("\n"))

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self.reader.join(timeout=5)
        return code

    def terminate(self) -> None:
        self.process.terminate()


def launch_process(
    job: Job, gpu: str, view: SweepView | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen | PipedWorker:
    """``job.argv`` in a process that sees only ``gpu``; with ``view``, its output lines go there."""
    # A worker prints its epoch lines (each naming variant and seed), never a progress bar of its own.
    env = {**os.environ, **(env or {}), "CUDA_VISIBLE_DEVICES": gpu, "PYTHONUNBUFFERED": "1", WORKER_ENV: gpu}
    argv = [sys.executable, "-m", "cnnbench", *job.argv]
    if view is None:
        return subprocess.Popen(argv, env=env)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace")  # fmt: skip
    return PipedWorker(process, job, view)


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


def train_argv(config: Any, label_options: dict[str, str]) -> list[str]:
    """The ``cnnbench train`` arguments of one run of a comparison (its recipe, model, options, seed)."""
    c = config
    argv = ["train", c.model, "--dataset", c.dataset, "--epochs", str(c.epochs), "--batch-size", str(c.batch_size),
            "--optimizer", c.optimizer, "--lr", repr(c.lr), "--weight-decay", repr(c.weight_decay),
            "--scheduler", c.scheduler, "--label-smoothing", repr(c.label_smoothing), "--precision", c.precision,
            "--seed", str(c.seed), "--out", str(c.out), "--device", "cuda" if c.device == "auto" else c.device,
            ]  # fmt: skip
    for key, value in label_options.items():
        argv += ["-o", f"{key}={value}"]
    if c.data_dir is not None:
        argv += ["--data-dir", str(c.data_dir)]
    if c.run_name is not None:
        argv += ["--run-name", c.run_name]
    if c.input_size is not None:
        argv += ["--input-size", "x".join(map(str, c.input_size))]
    if c.num_classes is not None:
        argv += ["--num-classes", str(c.num_classes)]
    flags = {"--compile": c.compile, "--no-cuda-graphs": not c.cuda_graphs, "--deterministic": c.deterministic,
             "--no-checkpoint": not c.checkpoints, "--skip-bad-images": c.skip_bad_images}  # fmt: skip
    argv += [flag for flag, on in flags.items() if on]
    if c.channels_last is not None:
        argv.append("--channels-last" if c.channels_last else "--no-channels-last")
    return argv


def command_line(job: Job) -> str:
    return shlex.join(["cnnbench", *job.argv])
