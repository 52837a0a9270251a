"""Data-parallel throughput and scaling efficiency: ``cnnbench profile MODEL --gpus 1,2,4``.

For each process count N, torchrun starts N processes (``python -m cnnbench.measure.scaling``), one per GPU;
each times the same eager DDP training step (the chapter's Adam, synthetic data) at ``batch`` samples
per GPU (weak scaling: the global batch is N x batch). A step's time is the slowest rank's median, so
throughput is N x batch / that time, and the efficiency of N processes is their throughput over N times
that of one. One process runs the same eager step without the all-reduce; CUDA graphs stay off at
every count, so that the counts differ in the number of processes alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cnnbench.data.specs import format_input_size
from cnnbench.device import is_cuda, resolve_device, use_channels_last
from cnnbench.errors import DeviceError, InvalidArgumentError, ResultsError
from cnnbench.measure.profile import ProfileResult, _prepare, time_steps
from cnnbench.models import format_options, get_model_info
from cnnbench.models.build import resolve_input
from cnnbench.recipe import TrainConfig
from cnnbench.settings import ProfileConfig
from cnnbench.stats import iqr
from cnnbench.store.tables import append_row, check_table, ensure_dir, environment, plain
from cnnbench.training.distributed import join, leave, world_from_env, wrap
from cnnbench.training.status import failed
from cnnbench.training.step import FixedBatch, TrainStep


def parse_counts(text: str, available: int | None = None) -> list[int]:
    """``1,2,4`` -> [1, 2, 4], checked against the GPUs there are."""
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise InvalidArgumentError(f"expected --gpus as process counts like 1,2,4, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise InvalidArgumentError(f"expected --gpus of counts >= 1, got {text!r}")
    if available is not None and counts[-1] > available:
        raise InvalidArgumentError(
            f"expected --gpus counts up to the {available} GPUs here, got {counts[-1]}"
        )
    return counts


def measure(config: Any, counts: list[int], device: str) -> list[dict[str, Any]]:
    """One row per process count: the step's median and IQR (ms), images/s and scaling efficiency."""
    rows: list[dict[str, Any]] = []
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="cnnbench-scaling-") as tmp:
            result = Path(tmp) / "rank0.json"
            job = {**plain(dataclasses.asdict(config)), "device": device, "result": str(result)}
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "CNNBENCH_SCALING_JOB": json.dumps(job)}
            if device.startswith("cuda"):
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                    "-m", "cnnbench.measure.scaling"]  # fmt: skip
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            if done.returncode != 0 or not result.is_file():
                last = (done.stderr or done.stdout).strip().splitlines()
                reason = next((line for line in reversed(last) if "Error" in line), last[-1] if last else "")
                rows.append({"processes": n, "status": failed(reason[:200])})
                continue
            rows.append({"processes": n, "status": "ok", **json.loads(result.read_text())})
    single = next((r for r in rows if r["processes"] == 1 and r["status"] == "ok"), None)
    for row in rows:
        if row["status"] == "ok":
            row["images_per_s"] = row["processes"] * row["batch_per_process"] / (row["step_ms_median"] / 1e3)
    for row in rows:
        ok = row["status"] == "ok" and single is not None
        row["scaling_efficiency_pct"] = (
            100 * row["images_per_s"] / (row["processes"] * single["images_per_s"]) if ok else None
        )
    return rows


def profile_scaling(config: ProfileConfig, gpus: str, repair: bool = False) -> ProfileResult:
    """Data-parallel throughput at 1..N processes (``--gpus 1,2,4``): one row per count, appended to
    OUT/profile_scaling.csv with its conditions (see the module doc)."""
    import torch

    config.validate()
    if len(config.batch_sizes) != 1:
        raise InvalidArgumentError(
            f"expected one --batch-sizes value with --gpus (the batch of each GPU), got {config.batch_sizes}"
        )
    device = resolve_device(config.device)
    cuda = is_cuda(device)
    if not cuda and config.device == "auto":
        raise DeviceError(
            f"expected CUDA GPUs for --gpus {gpus}, got none (torch sees no GPU); --device cpu measures CPU "
            "processes (gloo) instead"
        )
    counts = parse_counts(gpus, torch.cuda.device_count() if cuda else None)
    info = get_model_info(config.model)
    shape, classes = resolve_input(info.name, config.input_size, config.dataset, config.num_classes)
    config = dataclasses.replace(config, model=info.name, input_size=shape, num_classes=classes, dataset=None,
                                 channels_last=use_channels_last(config.channels_last, device))  # fmt: skip
    out = ensure_dir(Path(config.out))
    check_table(out / "profile_scaling.csv", repair)
    base = {
        "model": info.name, "options": format_options(info.parse_options(config.options)),
        "input_size": format_input_size(shape), "num_classes": classes, "mode": "train (DDP, eager)",
        "precision": config.precision, "channels_last": config.channels_last, "warmup_steps": config.warmup,
        "timed_steps": config.iters, "backend": "nccl" if cuda else "gloo",
    }  # fmt: skip
    env = environment("cuda:0" if cuda else "cpu")
    rows = [{**base, **row, **env} for row in measure(config, counts, "cuda" if cuda else "cpu")]
    for row in rows:
        append_row(out / "profile_scaling.csv", row)
    return ProfileResult(rows, csv_path=out / "profile_scaling.csv")


def _rank_main() -> None:
    """One rank of one process count (started by torchrun with the job in the environment)."""
    import torch

    job = json.loads(os.environ["CNNBENCH_SCALING_JOB"])
    known = {f.name for f in dataclasses.fields(ProfileConfig)}
    config = ProfileConfig(**{k: v for k, v in job.items() if k in known})
    world = world_from_env()
    device = join(world, job["device"])
    try:
        shape, classes = resolve_input(config.model, config.input_size and tuple(config.input_size),
                                       config.dataset, config.num_classes)  # fmt: skip
        batch = config.batch_sizes[0]
        model, x, y = _prepare(config, config.model, shape, classes, batch, device)
        recipe = TrainConfig(model=config.model, batch_size=batch, eval_batch_size=batch, precision=config.precision,
                             cuda_graphs=False, world_size=world.size)  # fmt: skip
        step = TrainStep(
            model, recipe, device, steps_per_epoch=1, wrapped=wrap(model, device, world), autotune=True
        )
        step.warmup(FixedBatch(x, y), FixedBatch(x, y))
        # Timed as profile times a step: untimed warm-up, then CUDA events around each timed step.
        times, _ = time_steps(lambda: step.step(x, y), device, config.warmup, config.iters)
        median = torch.tensor([statistics.median(times), iqr(times)], dtype=torch.float64, device=device)
        if world.distributed:
            import torch.distributed as dist

            dist.all_reduce(median, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
        if world.is_main:
            result = {"step_ms_median": float(median[0]), "step_ms_iqr": float(median[1]),
                      "batch_per_process": batch, "world_size": world.size}  # fmt: skip
            path = Path(job["result"])
            try:
                path.write_text(json.dumps(result))
            except OSError as exc:
                raise ResultsError(f"could not write {path}: {exc}") from None
    finally:
        leave(world)


if __name__ == "__main__":
    _rank_main()
