"""A run's epochs and recipe as TensorBoard logs (``--tensorboard DIR``): one TensorBoard run per variant
and seed, ``DIR/VARIANT/seedN``, holding each epoch's scalars (losses, accuracies, learning rate, epoch
time, images/s, energy, peak memory) at step = epoch, and the recipe as hparams with the run's final
metrics. The writer is torch's ``SummaryWriter``, which needs the ``tensorboard`` package (the
``tensorboard`` extra)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cnnbench.errors import InvalidArgumentError

EPOCH_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc", "lr", "epoch_time_s",
                 "eval_time_s", "images_per_s", "energy_J", "eval_energy_J", "peak_gpu_mem_MiB")  # fmt: skip
FINAL_METRICS = ("final_test_acc", "best_test_acc", "test_at_best_val", "final_val_acc", "median_epoch_s",
                 "total_train_s", "energy_train_J", "train_test_gap_pct_points")  # fmt: skip
MARKER = (
    "cnnbench_run_id.txt"  # which run a folder logs: another run of the same variant and seed gets its own
)


def check_writer() -> None:
    """Refuse ``--tensorboard`` in one line where the ``tensorboard`` package is not installed."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise InvalidArgumentError(
            'expected the tensorboard package for --tensorboard, got none installed: pip install "cnnbench[tensorboard]"'
        )


def logged_runs(root: Path) -> set[str]:
    """The run ids that have logs under ``root``."""
    return {p.read_text(encoding="utf-8").strip() for p in Path(root).glob(f"*/*/{MARKER}")}


def variant_label(model: str, options: Mapping[str, Any] | str) -> str:
    """A comparison's name of a variant: the model, then its options (``cnn_dropout:dropout=0.3``)."""
    if isinstance(options, str):
        text = options.replace(";", ",")
    else:
        text = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{model}:{text}" if text else model


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class TensorBoardLog:
    """The TensorBoard run of one training run: scalars as its epochs end, hparams when it ends."""

    def __init__(self, root: Path, variant: str, seed: int, run_id: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(root) / variant.replace("/", "_") / f"seed{seed}"
        marker = folder / MARKER
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() != run_id:
            folder = folder.with_name(f"seed{seed}-{run_id}")  # another run: its own, nothing mixed in
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text(run_id + "\n", encoding="utf-8")
        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, row: Mapping[str, Any]) -> None:
        step = int(row["epoch"])
        for name in EPOCH_SCALARS:
            value = _number(row.get(name))
            if value is not None:
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish(self, recipe: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in recipe.items()
                   if v is not None and k not in ("out", "data_dir", "tensorboard")}  # fmt: skip
        hparams["status"] = str(summary.get("status", ""))
        metrics = {f"final/{k}": v for k in FINAL_METRICS if (v := _number(summary.get(k))) is not None}
        self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.close()


def log_run(root: Path, variant: str, seed: int, run_id: str, epochs: Iterable[Mapping[str, Any]],
            recipe: Mapping[str, Any], summary: Mapping[str, Any]) -> None:  # fmt: skip
    """A finished run's logs written at once (a run a comparison reused: it trained before)."""
    log = TensorBoardLog(root, variant, seed, run_id)
    for row in epochs:
        log.epoch(row)
    log.finish(recipe, summary)
