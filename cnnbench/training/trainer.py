"""Train one registry architecture and record what it cost and what it reached.

:class:`Trainer` sets a run up and runs its epochs; how a step runs is :class:`cnnbench.training.step.TrainStep`
and where the run's files go is :class:`cnnbench.store.runs.RunStore`.

Timing: an epoch's time is the training loop over it (data, forward, backward, step), bracketed by
``torch.cuda.synchronize``; evaluation is timed on its own, and so is warm-up (cuDNN autotuning,
allocator growth, ``torch.compile``, CUDA-graph capture), which changes nothing the run computes.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.device import (
    deterministic_algorithms,
    is_cpu_oom,
    is_cuda,
    resolve_device,
    synchronize,
    use_channels_last,
)
from cnnbench.energy import EnergyMeter, IdlePower, nvml_index, open_meter
from cnnbench.errors import InvalidArgumentError, OutOfMemory, first_line
from cnnbench.models import get_model_info
from cnnbench.recipe import TrainConfig
from cnnbench.store.manifest import key_fields, manifest
from cnnbench.store.runs import Replica, RunStore, epoch_summary, restore_into, validate_runs_table
from cnnbench.store.tables import ensure_dir, environment, to_json, write_text_atomic
from cnnbench.training.conditions import planned_conditions
from cnnbench.training.distributed import (
    World,
    join,
    leave,
    per_rank_batch,
    sum_over_ranks,
    world_from_env,
    wrap,
)
from cnnbench.training.inputs import load_run_data
from cnnbench.training.status import deferred_signals, diverged, final_status
from cnnbench.training.step import TrainStep, evaluate


@dataclass
class EpochRow:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    epoch_time_s: float
    eval_time_s: float
    images_per_s: float
    peak_gpu_mem_MiB: float
    val_loss: float = math.nan  # with --val-split: the held-out training images
    val_acc: float = math.nan
    energy_J: float = math.nan  # the training pass's, from the device's counter (NaN: not measured)
    eval_energy_J: float = math.nan


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    summary: dict[str, Any]
    epochs: list[EpochRow]


class Callbacks:
    """Hooks for a progress display; the library never imports rich."""

    def on_run(self, run_id: str, config: TrainConfig) -> None: ...
    def on_start(
        self, run_id: str, config: TrainConfig, steps_per_epoch: int, start_epoch: int, device: str
    ) -> None: ...
    def on_step(self, epoch: int, step: int, loss: float | None) -> None: ...
    def on_epoch(self, row: EpochRow) -> None: ...
    def on_warmup_start(self, steps: int, batch: int, device: str) -> None: ...
    def on_warmup(self, seconds: float) -> None: ...
    def on_data(self, done: int, total: int) -> None: ...
    def on_note(self, text: str) -> None: ...


class Trainer:
    """One run: set-up, the epoch loop, and the run's record (see the module doc)."""

    def __init__(
        self, config: TrainConfig, callbacks: Callbacks | None = None, store: RunStore | None = None,
        repair: bool = False,
    ) -> None:  # fmt: skip
        self.world: World = world_from_env()
        if store is None:
            config = dataclasses.replace(config, world_size=self.world.size)
        elif config.world_size != self.world.size:
            raise InvalidArgumentError(
                f"expected to resume run {store.run_id} in {config.world_size} process(es) (--gpus {config.world_size}), "
                f"as it was trained, got {self.world.size}"
            )
        config.validate()
        self.config = config
        # Rank 0 alone prints and writes; the other ranks of a data-parallel run keep a read-only store.
        self.cb = (callbacks or Callbacks()) if self.world.is_main else Callbacks()
        self.store = store  # an existing run to continue, or None for a new one
        self.opened: RunStore | None = None  # the run's store once open: its lock is let go as the run ends
        if store is not None and not self.world.is_main:
            self.store = Replica.of(store)
        self.repair = repair
        self.train_eval_acc = math.nan  # measured once the last epoch has ended
        self.train_eval_s = math.nan
        self.meter: EnergyMeter = EnergyMeter()
        self.warmup_energy_J = math.nan
        self.loader_images_per_s = math.nan  # the training loader alone, over the probe's batches
        self.input_bound: bool | None = None

    def _setup(self) -> None:
        import torch

        from cnnbench.data.readers import VAL_SPLIT_SEED
        from cnnbench.models.build import prepare_model
        from cnnbench.models.counting import count_flops

        c, world = self.config, self.world
        self.device = join(world, resolve_device(c.device))
        channels_last = use_channels_last(c.channels_last, self.device)
        if world.is_main:
            ensure_dir(Path(c.out))
            validate_runs_table(Path(c.out), self.repair)
        data = load_run_data(c, world, self.device, channels_last, self.cb.on_data, self.cb.on_note)
        self.spec = data.spec
        self.train_loader, self.test_loader, self.val_loader = (
            data.train_loader,
            data.test_loader,
            data.val_loader,
        )
        self.data_load_s, self.decode_s = data.load_s, data.decode_s
        if world.is_main:  # rank 0 reads every GPU of the run: a data-parallel run adds them
            gpus = (
                [nvml_index(f"cuda:{r}") for r in range(world.size)]
                if world.distributed and is_cuda(self.device)
                else None
            )
            self.meter = open_meter(self.device, gpus)
            # The device's idle power is sampled over its quiet second on a thread, while the model is
            # built and counted (host work, the GPU idle): the second no longer adds to the run.
            idle = IdlePower(self.meter, self.device)

        info = get_model_info(c.model)
        shape, classes = self.spec.input_shape, self.spec.num_classes
        model = prepare_model(
            info.name, c.options, shape, classes, self.device, channels_last, c.seed, c.batch_size
        )
        fwd_flops, train_flops = count_flops(info.name, c.options, shape, classes)
        if c.aux_loss:
            _check_aux_heads(model, shape, self.device, info.name, c.aux_loss)
        self.model = model
        step_config = dataclasses.replace(c, batch_size=per_rank_batch(c.batch_size, world))
        self.step = TrainStep(
            model, step_config, self.device, len(self.train_loader), wrapped=wrap(model, self.device, world)
        )
        self.conditions: dict[str, Any] = {
            **planned_conditions(c),
            "data_source": data.source,
            "data_placement": self.train_loader.placement
            + (f", a 1/{world.size} shard per process" if world.distributed else ""),
            "augmentation": self.train_loader.augmentation,
            "batches_made": "a whole epoch at once" if self.train_loader.whole_epochs else "one by one",
            "batch_per_process": per_rank_batch(c.batch_size, world),
            "jobs_per_gpu": c.jobs_per_gpu,
            "cuda_mps": os.environ.get("CNNBENCH_CUDA_MPS")
            == "1",  # sharing the GPU through MPS (compare --gpus)
            "images_skipped": data.images_skipped,
            "class_names": ";".join(data.class_names),
            "train_samples": self.train_loader.num_samples * world.size,
            "test_samples": data.test_samples,
            "val_samples": data.val_samples,
            "val_split_seed": VAL_SPLIT_SEED if data.val_samples else None,
            "params": sum(p.numel() for p in model.parameters()),
            "forward_MACs_per_sample": fwd_flops // 2,
            "train_FLOPs_per_sample": train_flops,
            "tf32_conv": bool(torch.backends.cudnn.allow_tf32),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
            "energy_method": self.meter.method,
            # With other runs on the card (several per GPU, MPS) its counter holds theirs too.
            "energy_shared": c.jobs_per_gpu > 1 or os.environ.get("CNNBENCH_CUDA_MPS") == "1",
            "idle_power_W": idle.watts() if world.is_main else None,
            "cudnn_autotuned": self.step.autotune,
            **environment(self.device),
            **key_fields(manifest()),
        }

    def _open_store(self) -> RunStore:
        """A new run's folder and config.json, or the checks that a resumed run's conditions hold."""
        c = self.config
        record = {**self.conditions, "config": c.to_dict(location=False)}
        if self.store is None:
            run_id = c.run_name or new_run_id(c)
            if not self.world.is_main:
                return Replica.create(c.out, f"rank{self.world.rank}", record)
            store = RunStore.create(c.out, run_id, record)
            write_text_atomic(store.dir / "environment.json", to_json(manifest()))
            return store
        saved = self.store.read_config()
        if saved["conditions_hash"] != self.conditions["conditions_hash"] and not _only_epochs_changed(
            saved, c
        ):
            raise InvalidArgumentError(
                f"expected to resume with the run's own conditions, got different ones for {self.store.run_id} "
                f"(device or versions changed?)"
            )
        self._continued_record = record  # written once a new epoch ends: a failed resume changes nothing
        return self.store

    def _restore(self, store: RunStore) -> tuple[int, list[EpochRow]]:
        """(first epoch to train, rows already done) of a resumed run; (1, []) for a new one."""
        if self.store is None:
            return 1, []
        checkpoint = store.load_checkpoint()
        done = 0
        if checkpoint is not None:
            restore_into(self.step, checkpoint, store.last_path, get_model_info(self.config.model).name)
            done = checkpoint.epoch
        rows = [
            # A run recorded before a column existed (validation) reads it as its default.
            EpochRow(**{f.name: r[f.name] for f in dataclasses.fields(EpochRow) if f.name in r})
            for r in store.epochs(done)
        ]
        return done + 1, rows

    def run(self) -> RunResult:
        try:
            with deterministic_algorithms(self.config.deterministic):
                return self._run()
        finally:
            self.meter.close()
            if self.opened is not None:
                self.opened.release()
            leave(self.world)

    def _run(self) -> RunResult:
        import torch

        wall0 = time.perf_counter()
        self._setup()
        c = self.config
        store = self.opened = self._open_store()
        board = None
        if c.tensorboard is not None:
            from cnnbench.store.tensorboard import TensorBoardLog, variant_label

            board = TensorBoardLog(c.tensorboard, variant_label(get_model_info(c.model).name, c.options), c.seed,
                                   store.run_id)  # fmt: skip
        self.cb.on_run(store.run_id, c)
        rows: list[EpochRow] = []
        status, warmup_s, new_epochs = "running", 0.0, 0
        try:
            e0 = self.meter.read()
            self.cb.on_warmup_start(c.warmup_steps, c.batch_size, self.device)
            warmup_s = self.step.warmup(self.train_loader, self.test_loader, self._probe_batches())
            warmup_s += self._probe_loader()
            start_epoch, rows = self._restore(store)
            warmup_s += self.step.capture(self.train_loader)
            synchronize(self.device)
            self.warmup_energy_J = _joules(e0, self.meter.read())
            self.cb.on_warmup(warmup_s)
            self.cb.on_start(store.run_id, c, len(self.train_loader), start_epoch, self.device)
            # The epoch that best.pt keeps: the best on validation where there is some, else (the chapter's
            # loop) on test, which selects on the test set and is reported as such.
            best = max((_selected_on(r) for r in rows), default=-math.inf)
            for epoch in range(start_epoch, c.epochs + 1):
                row = self._epoch(epoch)
                rows.append(row)
                if self.store is not None and not new_epochs:  # a continued run records its new epochs
                    store.write_config(self._continued_record)
                store.append_epoch(dataclasses.asdict(row))
                if board is not None:
                    board.epoch(dataclasses.asdict(row))
                new_epochs += 1
                self.cb.on_epoch(row)
                if self.input_bound is None:
                    self._judge_input(row)
                if diverged(row.train_loss, self.spec.num_classes):
                    status = "diverged"
                    break
                improved, best = _selected_on(row) > best, max(best, _selected_on(row))
                if c.checkpoints:
                    store.save_checkpoint(self.step.state_dict(), epoch, improved, best)
            else:
                chance = 100.0 / self.spec.num_classes
                status = "not learning" if best < chance + 2.0 else "ok"
                if (
                    rows
                ):  # the final model on its training images, in eval mode: the overfitting gap's footing
                    t0 = time.perf_counter()
                    _, self.train_eval_acc = evaluate(self.model, self.train_loader.in_order(c.eval_batch_size),
                                                      c.precision, self.device)  # fmt: skip
                    self.train_eval_s = time.perf_counter() - t0
        except BaseException as exc:
            status = final_status(exc)
            if isinstance(exc, torch.cuda.OutOfMemoryError) or is_cpu_oom(exc):
                raise OutOfMemory(
                    f"out of memory training {get_model_info(c.model).name}: {first_line(exc)}"
                ) from None
            raise
        finally:
            # A second signal (Ctrl-C to the process group, then the comparison's SIGTERM) can cut the
            # handling of the first before it named the status: the exception on its way out names it.
            if status == "running" and sys.exc_info()[1] is not None:
                status = final_status(sys.exc_info()[1])
            # A continued run that trained no new epoch keeps its row as it was (a failed resume, or one
            # stopped in warm-up, changes nothing); every other run's row says how it ended, written whole.
            with deferred_signals():
                summary = self._summary(store, status, rows, warmup_s, time.perf_counter() - wall0)
                if self.store is None or new_epochs:
                    store.finish(summary)
                if board is not None:
                    board.finish(c.to_dict(), summary)
        return RunResult(store.run_id, store.dir, status, summary, rows)

    def _probe_batches(self) -> int:
        """Batches the input-bound check reads and steps: enough to time, few enough to cost little."""
        return min(len(self.train_loader), 20)

    def _probe_loader(self) -> float:
        """The training loader alone over the probe's batches (of epoch 0, which no run trains): its
        images/s; the seconds it took, which count as warm-up."""
        if self.train_loader.whole_epochs:
            return 0.0  # an epoch built whole: the loader's time is its building, timed in the first epoch
        k = self._probe_batches()
        synchronize(self.device)
        start = t0 = time.perf_counter()
        images = 0
        batches = self.train_loader.epoch(0)
        for i, (_x, y) in enumerate(batches):
            if i == 0 and k < len(self.train_loader):
                # Timed from the first batch on: a streaming loader's start (its thread, its first
                # reads) is paid once an epoch, not once a batch.
                synchronize(self.device)
                t0 = time.perf_counter()
                continue
            images += len(y)
            if i >= k:
                break
        batches.close()  # a streaming loader's reading thread ends here
        synchronize(self.device)
        end = time.perf_counter()
        self.loader_images_per_s = images / (end - t0) if end > t0 else math.inf
        return end - start

    def _judge_input(self, row: EpochRow) -> None:
        """After the first epoch: input-bound when the loader gives fewer images/s than the step takes
        (at least its eager speed on one batch, at least the epoch's own speed); said once, in a line."""
        if math.isfinite(self.train_loader.build_s):  # an epoch built whole: its building was timed
            self.loader_images_per_s = self.train_loader.num_samples / max(self.train_loader.build_s, 1e-9)
        step = max(self.step.step_images_per_s, row.images_per_s)
        if not math.isfinite(self.loader_images_per_s) or not math.isfinite(step):
            self.input_bound = False
            return
        self.input_bound = bool(self.loader_images_per_s < step)
        if self.input_bound:
            self.cb.on_note(
                f"input-bound: the loader gives {self.loader_images_per_s:,.0f} images/s and the step takes "
                f"{step:,.0f} (the same batches; the epoch ran at {row.images_per_s:,.0f})"
            )

    def _epoch(self, epoch: int) -> EpochRow:
        """Train one epoch, then evaluate; its row."""
        import torch

        step, n = self.step, self.train_loader.num_samples * self.world.size
        if is_cuda(self.device):
            torch.cuda.reset_peak_memory_stats(self.device)
        lr = step.lr
        synchronize(self.device)
        e0 = self.meter.read()
        t0 = time.perf_counter()
        step.start_epoch()
        for i, (x, y) in enumerate(self.train_loader.epoch(epoch)):
            loss = step.step(x, y)
            # Reading the loss forces a device sync, so the display samples it only now and then.
            self.cb.on_step(epoch, i + 1, loss.item() if (i + 1) % 50 == 0 else None)
        sum_over_ranks(step.loss_sum, step.correct)
        train_loss, train_acc = step.epoch_stats(n)
        synchronize(self.device)
        epoch_s = time.perf_counter() - t0
        e1 = self.meter.read()
        step.end_epoch()
        t1 = time.perf_counter()
        test_loss, test_acc = evaluate(self.model, self.test_loader, self.config.precision, self.device)
        val_loss, val_acc = math.nan, math.nan
        if self.val_loader is not None:
            val_loss, val_acc = evaluate(self.model, self.val_loader, self.config.precision, self.device)
        synchronize(self.device)
        eval_s = time.perf_counter() - t1
        e2 = self.meter.read()
        peak = torch.cuda.max_memory_allocated(self.device) / 2**20 if is_cuda(self.device) else math.nan
        return EpochRow(
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            lr,
            epoch_s,
            eval_s,
            n / epoch_s,
            peak,
            val_loss,
            val_acc,
            _joules(e0, e1),
            _joules(e1, e2),
        )

    def _summary(self, store: RunStore, status: str, rows: list[EpochRow], warmup_s: float,
                 wall_s: float) -> dict[str, Any]:  # fmt: skip
        return {
            "run_id": store.run_id,
            "status": status,
            **epoch_summary([dataclasses.asdict(r) for r in rows], self.config.target_acc),
            "energy_warmup_J": self.warmup_energy_J,
            "gpu_hours": wall_s * (self.world.size if is_cuda(self.device) else 0) / 3600,
            "train_eval_acc": self.train_eval_acc,
            "train_eval_s": self.train_eval_s,
            "warmup_s": warmup_s,
            "data_load_s": self.data_load_s,
            "data_decode_s": self.decode_s,
            "loader_images_per_s": self.loader_images_per_s,
            "step_images_per_s": self.step.step_images_per_s,
            "input_bound": self.input_bound,
            "wall_s": wall_s,
            **{k: v for k, v in self.conditions.items() if k != "conditions_hash"},
            "conditions_hash": self.conditions["conditions_hash"],
            "run_dir": str(store.dir),
        }


def _joules(before: float | None, after: float | None) -> float:
    return after - before if before is not None and after is not None else math.nan


def _selected_on(row: EpochRow) -> float:
    """What picks a run's best epoch: validation accuracy where the run holds some images out, else test."""
    value = row.val_acc if math.isfinite(row.val_acc) else row.test_acc
    return value if math.isfinite(value) else -math.inf


def new_run_id(config: TrainConfig) -> str:
    """A new run's folder name: model, dataset, seed, time and a few random letters. A model from outside
    the registry ("torchvision:resnet50", "models/net.py:make") has its separators replaced: a run id is
    one folder name."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", get_model_info(config.model).name).lstrip("._-")  # never hidden
    return f"{model}-{config.dataset}-s{config.seed}-{stamp}-{uuid.uuid4().hex[:4]}"


def _only_epochs_changed(saved: dict[str, Any], config: TrainConfig) -> bool:
    """Whether the saved conditions differ from the new ones only in the number of epochs."""
    again = dataclasses.replace(config, epochs=saved["config"]["epochs"])
    return planned_conditions(again)["conditions_hash"] == saved["conditions_hash"]


def train(config: TrainConfig, callbacks: Callbacks | None = None, repair: bool = False) -> RunResult:
    return Trainer(config, callbacks, repair=repair).run()


def _check_aux_heads(model: Any, shape: tuple[int, int, int], device: str, name: str, weight: float) -> None:
    """``--aux-loss`` weighs the losses of auxiliary heads: a model whose train-mode output holds none would
    record a weight for a loss never added. Read on a copy, with the random state put back, so the run
    itself is as it would be without the look."""
    import copy

    import torch

    from cnnbench.models.outputs import aux_logits_of

    devices = [torch.device(device)] if is_cuda(device) else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        outputs = copy.deepcopy(model).train()(torch.zeros(2, *shape, device=device))
    if not aux_logits_of(outputs):
        raise InvalidArgumentError(
            f"expected --aux-loss 0 for {name}, whose output has no auxiliary heads' logits (GoogLeNet's and "
            f"Inception's have), got {weight:g}"
        )
