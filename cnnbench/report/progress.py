"""What the terminal shows while runs train: a run's progress bar and epoch lines, the live display of a
launcher's jobs, and what Ctrl-C leaves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnbench.report.terminal import err_console


class TrainProgress:
    """A rich progress bar on a terminal, and one line per epoch naming the run (also when piped);
    silent with ``quiet``."""

    CPU_ESTIMATE_STEPS = 5

    def __init__(self, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=err_console,
            # A bar only where someone watches it; a pipe, or a worker of a sweep, gets the epoch lines alone.
            disable=quiet or not err_console.is_terminal or "CNNBENCH_WORKER" in os.environ,
            transient=True,
        )
        self.task = None
        self.steps = 0
        self.last = ""
        self.run_id: str | None = None
        self.label = ""
        self.variant: str | None = None  # compare's name for the run's variant
        self.cpu_note_shown = False  # said once per command, not once per run of a compare
        self.warmup_said = False  # likewise
        self.started = 0.0
        self.checkpoints = True
        self.world_size = 1
        self.out: Any = None
        self.device: str | None = None

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def for_job(self, job: Any) -> TrainProgress:
        """This display, for a comparison's ``job`` (None: before any), its lines naming the job's variant."""
        self.variant = job.label.rsplit(" seed ", 1)[0] if job is not None else None
        return self

    def on_run(self, run_id: str, config: Any) -> None:
        """The run's folder exists: from here on, Ctrl-C leaves a run that can be named, in the folder and
        the processes its recipe says (a data-parallel rank's recipe came in a job file, not as --out)."""
        self.run_id, self.checkpoints = run_id, config.checkpoints
        self.out, self.world_size = config.out, config.world_size
        self.device = config.device if config.device != "auto" else None  # resolved as the run starts

    def on_note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def on_start(self, run_id: str, config: Any, steps_per_epoch: int, start_epoch: int, device: str) -> None:
        self.steps = steps_per_epoch
        self.epochs = config.epochs
        self.run_id = run_id
        self.device = device
        from cnnbench.models import get_model_info

        opts = "".join(f":{k}={v}" for k, v in config.options.items())
        self.label = f"{self.variant or get_model_info(config.model).name + opts} seed {config.seed}"
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            f"{self.label} epoch {start_epoch}/{config.epochs}", total=steps_per_epoch, status=""
        )

    def on_warmup_start(self, steps: int, batch: int, device: str) -> None:
        """On the CPU a warm-up step of a large model takes seconds: the first line comes now, not after
        the warm-up and the first timed steps (minutes for ResNet on CIFAR-10)."""
        if device == "cpu" and steps > 0 and not self.quiet and not self.warmup_said:
            self.warmup_said = True
            self.progress.console.print(
                f"warming up on the CPU: {steps} untimed steps of batch {batch}, then the epochs and an "
                "estimate of their time",
                highlight=False,
            )

    def on_warmup(self, seconds: float) -> None:
        pass

    def on_data(self, done: int, total: int) -> None:
        """Decoding your own images (once; later runs read the cache): a bar with images/s and the time
        left, then one line."""
        import time

        if getattr(self, "decode_task", None) is None:
            self.decode_task = self.progress.add_task("decoding images", total=total, status="")
            self.decode_started = time.perf_counter()
        elapsed = max(time.perf_counter() - self.decode_started, 1e-9)
        rate = done / elapsed
        left = (total - done) / rate if rate > 0 else float("inf")
        self.progress.update(
            self.decode_task, completed=done, status=f"{rate:,.0f} images/s, {left:,.0f} s left"
        )
        if done == total:
            self.progress.remove_task(self.decode_task)
            self.decode_task = None
            if not self.quiet:
                self.progress.console.print(
                    f"decoded {total:,} images into the cache in {elapsed:,.1f} s ({rate:,.0f} images/s)",
                    highlight=False,
                )

    def on_step(self, epoch: int, step: int, loss: float | None) -> None:
        if self.device == "cpu" and not self.cpu_note_shown and self.steps > 1:
            # Timed from the end of the first step: the first steps of a process are its slowest.
            if step == 1:
                import time

                self.started = time.perf_counter()
            elif step == min(1 + self.CPU_ESTIMATE_STEPS, self.steps):
                self._cpu_note(step - 1)
        if self.task is None:
            return
        fields = {"status": f"loss {loss:.3f} {self.last}"} if loss is not None else {}
        self.progress.update(
            self.task, completed=step, description=f"{self.label} epoch {epoch}/{self.epochs}", **fields
        )

    def _cpu_note(self, step: int) -> None:
        import time

        self.cpu_note_shown = True
        per_epoch = (time.perf_counter() - self.started) / step * self.steps
        self.progress.console.print(
            f"[yellow]training on the CPU[/] (no CUDA GPU in use): about {per_epoch:,.{1 if per_epoch < 10 else 0}f} s an epoch, "
            f"judging by steps 2 to {step + 1}",
            highlight=False,
        )

    def on_epoch(self, row: Any) -> None:
        self.last = f"| test acc {row.test_acc:.2f}% ({row.epoch_time_s:.2f} s/epoch)"
        if self.task is not None:
            self.progress.update(self.task, status=f"train acc {row.train_acc:.1f}% {self.last}")
        if not self.quiet:
            self.progress.console.print(
                f"{self.label} epoch {row.epoch}/{self.epochs}  train loss {row.train_loss:.4f} "
                f"acc {row.train_acc:.2f}%  test loss {row.test_loss:.4f} acc {row.test_acc:.2f}%  "
                f"{row.epoch_time_s:.2f} s  {row.images_per_s:,.0f} img/s",
                highlight=False,
                soft_wrap=True,
            )


class JobsDisplay:
    """The runs of a sweep (compare --gpus, --launcher local) as one display: on a terminal, a live
    line per running run (where it runs, its latest epoch line) under the overall count; in a pipe,
    every worker's lines as they come (each names its variant and seed). A run that fails shows its
    last lines."""

    KEPT_LINES = 6

    def __init__(self, live: bool) -> None:
        import threading

        from rich.live import Live

        self.total = 0
        self.done = 0
        self.running: dict[str, tuple[str, str]] = {}  # label -> (where, latest line)
        self.tails: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.live = Live(console=err_console, transient=True, refresh_per_second=4) if live else None

    def __enter__(self) -> JobsDisplay:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _render(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_row(f"[bold]runs: {self.done} of {self.total} ended, {len(self.running)} running[/]")
        for label, (where, line) in self.running.items():
            grid.add_row(f"{where}  {label}: {line}")
        return grid

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def job_started(self, job: Any) -> None:
        with self.lock:
            self.total = max(self.total, self.done + len(self.running) + 1)
            where = f"GPU {job.gpu}" if job.gpu not in (None, "local") else "job"
            self.running[job.label] = (where, "running, no epoch ended yet")
            self.tails[job.label] = []
            self._refresh()

    def job_line(self, job: Any, line: str) -> None:
        with self.lock:
            tail = self.tails.setdefault(job.label, [])
            tail.append(line)
            del tail[: -self.KEPT_LINES]
            if self.live is None:
                err_console.print(line, highlight=False, markup=False, soft_wrap=True)
                return
            if job.label in self.running and " epoch " in line:
                where = self.running[job.label][0]
                self.running[job.label] = (where, line.split(" epoch ", 1)[1] if " epoch " in line else line)
                self._refresh()

    def job_ended(self, job: Any, outcome: Any) -> None:
        with self.lock:
            self.running.pop(job.label, None)
            self.done += 1
            if outcome.returncode not in (0, None):
                target = self.live.console if self.live is not None else err_console
                target.print(f"[red]{job.label}: {outcome.describe()}[/]", highlight=False)
                if self.live is not None:  # a pipe has shown these lines already
                    for line in self.tails.get(job.label, []):
                        target.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
            self._refresh()

    def jobs_planned(self, total: int) -> None:
        with self.lock:
            self.total = total
            self._refresh()


def print_interrupted_run(progress: TrainProgress, why: str = "interrupted") -> None:
    """What Ctrl-C (or a stop signal) leaves of a run, and the exact command that continues it."""
    import shlex

    from cnnbench.store.tables import DEFAULT_RESULTS_DIR

    run_id = progress.run_id
    if run_id is None:
        err_console.print(f"[yellow]{why}[/] before the run started; nothing was written")
        return
    out = progress.out
    where = f" --out {shlex.quote(str(out))}" if out is not None and Path(out) != DEFAULT_RESULTS_DIR else ""
    command = f"cnnbench train --resume {run_id}"
    if progress.world_size > 1:
        # on the CPU, --gpus N is N processes with --device cpu (alone it asks for GPUs the machine lacks)
        on_cpu = " --device cpu" if progress.device == "cpu" else ""
        command = f"{command} --gpus {progress.world_size}{on_cpu}"
    run_dir = Path(out if out is not None else DEFAULT_RESULTS_DIR) / "runs" / run_id
    epochs_file = run_dir / "epochs.csv"
    has_epochs = epochs_file.is_file() and len(epochs_file.read_text().splitlines()) > 1
    if not has_epochs:
        err_console.print(
            f"[yellow]{why}:[/] run {run_id} stopped before its first epoch ended, so it measured nothing; "
            f"start it again with: {command}{where}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    elif progress.checkpoints and (run_dir / "last.pt").is_file():
        err_console.print(
            f"[yellow]{why}:[/] run {run_id} keeps its finished epochs and last checkpoint; "
            f"continue it with: {command}{where}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    else:
        err_console.print(
            f"[yellow]{why}:[/] run {run_id} keeps its finished epochs, but it wrote no checkpoint "
            "(--no-checkpoint), so it cannot be resumed",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
