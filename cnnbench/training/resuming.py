"""Continuing a run: its recipe read back from its config.json, checked against what it has done (its
checkpoint, its epochs) before any work, then trained on by :class:`~cnnbench.training.trainer.Trainer`
with its own store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cnnbench.errors import InvalidArgumentError
from cnnbench.models import get_model_info
from cnnbench.recipe import TrainConfig
from cnnbench.store.runs import RunStore
from cnnbench.store.tables import check_table
from cnnbench.training.distributed import world_from_env
from cnnbench.training.trainer import Callbacks, RunResult, Trainer


def resume(out: Path, run: str, callbacks: Callbacks | None = None, epochs: int | None = None,
           device: str | None = None, model: str | None = None, repair: bool = False) -> RunResult:  # fmt: skip
    """Continue a run of ``out/runs/`` from its last checkpoint with its own configuration; with
    ``epochs``, to that epoch (a finished run is continued)."""
    store = RunStore.open(out, run)
    if world_from_env().is_main:  # rank 0 alone writes a data-parallel run's files
        store.claim()
    try:
        return _resume(store, callbacks, epochs, device, model, repair)
    finally:
        store.release()


def _resume(store: RunStore, callbacks: Callbacks | None, epochs: int | None, device: str | None,
            model: str | None, repair: bool) -> RunResult:  # fmt: skip
    out, run = store.out, store.run_id
    saved = store.read_config()
    if model is not None and get_model_info(model).name != saved["model"]:
        raise InvalidArgumentError(
            f"expected model {saved['model']} (the run's own) with --resume {run}, got {get_model_info(model).name}"
        )
    config = TrainConfig.from_dict(saved["config"], source=str(store.config_path))
    source = saved.get("data_source")
    data_dir = Path(source) if config.dataset != "synthetic" and source else None  # where the data was read
    config = dataclasses.replace(
        config, out=Path(out), run_name=store.run_id, device=device or saved.get("device", "auto"),
        data_dir=data_dir, epochs=config.epochs if epochs is None else epochs,
    )  # fmt: skip
    if not config.checkpoints:
        raise InvalidArgumentError(
            f"run {run} wrote no checkpoint (--no-checkpoint), so it cannot be resumed; train it again instead"
        )
    # Its files, checked before any work: a damaged epochs.csv is named (and with --repair mended).
    repaired = check_table(store.epochs_path, repair)
    if repaired and callbacks is not None:
        callbacks.on_note(f"repaired {repaired}")
    checkpoint = store.load_checkpoint()
    done = checkpoint.epoch if checkpoint else 0
    if config.epochs < done or (config.epochs == done and epochs is not None):
        raise InvalidArgumentError(
            f"expected --epochs > {done} (the epochs run {run} has done) to continue it, got {config.epochs}"
        )
    if config.epochs == done:
        raise InvalidArgumentError(
            f"run {run} has finished its {done} epochs; give --epochs N > {done} to continue it"
        )
    return Trainer(config, callbacks, store=store, repair=repair).run()
