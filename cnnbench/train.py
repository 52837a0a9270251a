"""Train one registry architecture and record what it cost and what it reached.

Per run, under ``OUT/runs/RUN_ID/``: ``config.json`` (the run's conditions), ``epochs.csv`` (one row
flushed as each epoch ends), ``last.pt`` and ``best.pt``; one summary row is appended to ``OUT/runs.csv``.

Timing: an epoch's time is the training loop over it (data, forward, backward, step), bracketed by
``torch.cuda.synchronize``; evaluation is timed on its own, and so is warm-up (cuDNN autotuning,
allocator growth, ``torch.compile``), which runs a few steps before epoch 1 and then restores the
initial weights, so it changes nothing the run computes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.datasets import format_input_size, get_dataset_spec
from cnnbench.device import (
    PRECISIONS,
    autocast,
    cudnn_autotune,
    optimizer_impl,
    resolve_device,
    synchronize,
    use_channels_last,
)
from cnnbench.errors import InvalidArgumentError
from cnnbench.models import format_options, get_model_info
from cnnbench.results import DEFAULT_RESULTS_DIR, append_row, ensure_dir, environment
from cnnbench.stats import iqr

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULERS = ("step", "cosine", "onecycle", "none")

# The recipe: TrainConfig fields recorded as they are given.
_RECIPE_FIELDS = (
    "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "scheduler", "step_size", "gamma",
    "label_smoothing", "precision", "channels_last", "compile", "seed",
)  # fmt: skip
# Conditions that decide what a run computes; two runs equal in these are interchangeable.
_CONDITION_FIELDS = (
    "model", "options", "dataset", "input_size", "num_classes", *_RECIPE_FIELDS, "augment", "synthetic_size",
    "cuda_graphs", "optimizer_impl",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a run needs; defaults are the chapter's recipe."""

    model: str
    options: dict[str, str] = field(default_factory=dict)
    dataset: str = "cifar10"
    data_dir: Path | None = None
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "step"
    step_size: int = 20
    gamma: float = 0.5
    label_smoothing: float = 0.0
    precision: str = "fp32"
    channels_last: bool | None = None  # None: NHWC on CUDA, NCHW on the CPU
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    out: Path = DEFAULT_RESULTS_DIR
    augment: bool | None = None  # None: the dataset's default (crop + flip for CIFAR)
    eval_batch_size: int = 1000
    checkpoints: bool = True
    warmup_steps: int = 3
    cuda_graphs: bool = True  # replay the training step as a CUDA graph where possible
    input_size: tuple[int, int, int] | None = None  # synthetic only
    num_classes: int | None = None  # synthetic only
    synthetic_size: int | None = None
    run_name: str | None = None

    def validate(self) -> None:
        def need(ok: bool, what: str, got: Any) -> None:
            if not ok:
                raise InvalidArgumentError(f"expected {what}, got {got!r}")

        need(isinstance(self.epochs, int) and self.epochs >= 1, "--epochs >= 1", self.epochs)
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "--batch-size >= 1", self.batch_size)
        need(self.lr > 0 and math.isfinite(self.lr), "--lr > 0", self.lr)
        need(self.weight_decay >= 0, "--weight-decay >= 0", self.weight_decay)
        need(0 <= self.label_smoothing < 1, "--label-smoothing in [0, 1)", self.label_smoothing)
        need(self.optimizer in OPTIMIZERS, f"--optimizer in {'|'.join(OPTIMIZERS)}", self.optimizer)
        need(self.scheduler in SCHEDULERS, f"--scheduler in {'|'.join(SCHEDULERS)}", self.scheduler)
        need(self.precision in PRECISIONS, f"--precision in {'|'.join(PRECISIONS)}", self.precision)
        need(self.step_size >= 1, "--step-size >= 1", self.step_size)
        need(self.eval_batch_size >= 1, "eval batch size >= 1", self.eval_batch_size)
        get_dataset_spec(self.dataset)
        get_model_info(self.model).parse_options(self.options)


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


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    summary: dict[str, Any]
    epochs: list[EpochRow]


class Callbacks:
    """Hooks for a progress display; the library never imports rich."""

    def on_start(self, run_id: str, config: TrainConfig, steps_per_epoch: int, start_epoch: int) -> None: ...
    def on_step(self, epoch: int, step: int, loss: float | None) -> None: ...
    def on_epoch(self, row: EpochRow) -> None: ...
    def on_warmup(self, seconds: float) -> None: ...


def planned_conditions(config: TrainConfig) -> dict[str, Any]:
    """The conditions that decide what a run computes, known before any data is loaded."""
    import torch

    device = resolve_device(config.device)
    info = get_model_info(config.model)
    spec = get_dataset_spec(config.dataset)
    synthetic = spec.name == "synthetic"
    shape = tuple(config.input_size or spec.input_shape) if synthetic else spec.input_shape
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else ""
    conditions = {
        "model": info.name,
        "options": format_options(info.parse_options(config.options)),
        "family": info.family,
        "dataset": spec.name,
        "input_size": format_input_size(shape),
        "num_classes": int(config.num_classes or spec.num_classes) if synthetic else spec.num_classes,
        **{k: getattr(config, k) for k in _RECIPE_FIELDS},
        "augment": spec.augment if config.augment is None else config.augment,
        "synthetic_size": config.synthetic_size if synthetic else None,
        "channels_last": use_channels_last(config.channels_last, device),
        "cuda_graphs": uses_cuda_graphs(config, device),
        "optimizer_impl": optimizer_impl(config.optimizer, device),
        "device_kind": gpu or "cpu",
    }  # fmt: skip
    conditions["conditions_hash"] = conditions_hash(conditions)
    return conditions


def conditions_hash(conditions: dict[str, Any]) -> str:
    key = {k: conditions.get(k) for k in (*_CONDITION_FIELDS, "device_kind")}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def uses_cuda_graphs(config: TrainConfig, device: str) -> bool:
    """Whether the training step is captured once as a CUDA graph and replayed.

    Small CNNs are bound by kernel-launch overhead on the host, not by the GPU: replaying one graph
    per step removes it. Requires static shapes and an optimizer whose state and learning rate live on
    the device (Adam/AdamW with capturable=True and a tensor LR); per-batch schedules that change
    betas (onecycle) keep the eager loop. fp16 loss scaling is captured too: with fused Adam (always
    on CUDA) the scaler's inf check, the skipped step and the scale update all stay on the device.
    With ``compile`` the compiled full-batch step is what the graph captures.
    """
    return (
        config.cuda_graphs
        and device.startswith("cuda")
        and config.optimizer in ("adam", "adamw")
        and config.scheduler in ("step", "cosine", "none")
    )


def _make_optimizer(
    config: TrainConfig, params: Any, steps_per_epoch: int, graphs: bool = False, device: str = "cpu"
):
    import torch

    lr: Any = torch.tensor(config.lr, device=device) if graphs else config.lr
    fused = True if optimizer_impl(config.optimizer, device) == "fused" else None
    if config.optimizer == "adam":
        opt = torch.optim.Adam(
            params, lr=lr, weight_decay=config.weight_decay, capturable=graphs, fused=fused
        )
    elif config.optimizer == "adamw":
        opt = torch.optim.AdamW(
            params, lr=lr, weight_decay=config.weight_decay, capturable=graphs, fused=fused
        )
    else:
        opt = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.step_size, gamma=config.gamma)
    elif config.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    elif config.scheduler == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    else:
        sched = None
    return opt, sched


def _rng_state(device: str) -> dict[str, Any]:
    import torch

    state = {"cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: str) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """One run: data on the device, the model, the loop, the files."""

    def __init__(
        self, config: TrainConfig, callbacks: Callbacks | None = None, resume: Path | None = None
    ) -> None:
        config.validate()
        self.config = config
        self.cb = callbacks or Callbacks()
        self.resume_dir = resume

    # -- set-up ------------------------------------------------------------------------------------

    def _setup(self) -> None:
        import torch

        from cnnbench.data import DeviceLoader, load_split
        from cnnbench.summary import build, count_flops

        c = self.config
        self.device = resolve_device(c.device)
        self.channels_last = use_channels_last(c.channels_last, self.device)
        ensure_dir(Path(c.out))
        spec = get_dataset_spec(c.dataset)
        load = dict(
            synthetic_shape=c.input_size, synthetic_classes=c.num_classes, synthetic_size=c.synthetic_size
        )
        t0 = time.perf_counter()
        train = load_split(spec.name, "train", c.data_dir, **load)
        test = load_split(spec.name, "test", c.data_dir, **load)
        self.data_source = train.source
        self.spec = train.spec
        augment = spec.augment if c.augment is None else c.augment
        self.train_loader = DeviceLoader(
            train, c.batch_size, self.device, True, augment, c.seed, self.channels_last
        )
        self.test_loader = DeviceLoader(
            test, c.eval_batch_size, self.device, False, False, 0, self.channels_last
        )
        self.data_load_s = time.perf_counter() - t0

        info = get_model_info(c.model)
        shape, classes = self.spec.input_shape, self.spec.num_classes
        torch.manual_seed(c.seed)
        model, _ = build(info.name, c.options, shape, classes)
        fwd_flops, train_flops = count_flops(info.name, c.options, shape, classes)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Compiled for the full training batch only (dynamic=False: one static graph, best kernels);
        # the last partial batch and evaluation run the same weights eagerly instead of recompiling.
        self.step_model = torch.compile(self.model, dynamic=False) if c.compile else self.model
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        self.eval_criterion = torch.nn.CrossEntropyLoss(reduction="sum")
        self.scaler = self._new_scaler()
        self.use_graphs = uses_cuda_graphs(c, self.device)
        self.graph: Any = None
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)

        planned = planned_conditions(c)
        self.conditions: dict[str, Any] = {
            **planned,
            "data_source": self.data_source,
            "train_samples": self.train_loader.num_samples,
            "test_samples": self.test_loader.num_samples,
            "params": sum(p.numel() for p in model.parameters()),
            "forward_MACs_per_sample": fwd_flops // 2,
            "train_FLOPs_per_sample": train_flops,
            "tf32_conv": bool(torch.backends.cudnn.allow_tf32),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            **environment(self.device),
        }
        self.conditions["conditions_hash"] = planned["conditions_hash"]

    def _new_run_dir(self) -> tuple[str, Path]:
        c = self.config
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = (
            c.run_name
            or f"{get_model_info(c.model).name}-{c.dataset}-s{c.seed}-{stamp}-{uuid.uuid4().hex[:4]}"
        )
        run_dir = Path(c.out) / "runs" / run_id
        if run_dir.exists():
            raise InvalidArgumentError(f"expected a new run name, got existing run {run_id!r} (use --resume)")
        run_dir.mkdir(parents=True)
        return run_id, run_dir

    # -- the loop ----------------------------------------------------------------------------------

    def _step(self, x: Any, y: Any, opt: Any) -> Any:
        """One training step; also the body that is captured as a CUDA graph."""
        full = y.shape[0] == self.config.batch_size
        model = self.step_model if full else self.model
        with cudnn_autotune(full and self.device.startswith("cuda")):
            with autocast(self.config.precision, self.device):
                out = model(x)
                loss = self.criterion(out, y)
            # Under CUDA graphs the gradients must stay at the addresses the graph captured.
            opt.zero_grad(set_to_none=not self.use_graphs)
            self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()
        self.loss_sum += loss.detach().float() * y.shape[0]
        self.correct += (out.argmax(1) == y).sum()
        # Detached: a kept autograd graph would pin nodes created on the warm-up stream.
        return loss.detach()

    def _warmup(self, opt: Any) -> float:
        """A few real steps at every batch size the run will see, then the initial state restored.

        Weights are copied back in place and optimizer state zeroed in place (a zeroed Adam or momentum
        state steps exactly like a fresh one), so addresses stay fixed for graph capture.
        """
        import torch

        c = self.config
        if c.warmup_steps <= 0:
            return 0.0
        model_state = copy.deepcopy(self.model.state_dict())
        rng = _rng_state(self.device)
        x_all, y_all = self.train_loader.head(c.batch_size)
        x_eval, _ = self.test_loader.head(c.eval_batch_size)
        synchronize(self.device)
        t0 = time.perf_counter()
        stream = torch.cuda.Stream(self.device) if self.device.startswith("cuda") else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            self.model.train()
            for bs in sorted(self.train_loader.batch_sizes(), reverse=True):
                for _ in range(c.warmup_steps if bs == c.batch_size else 1):
                    self._step(x_all[:bs], y_all[:bs], opt)
            self.model.eval()
            with torch.no_grad(), autocast(c.precision, self.device), cudnn_autotune(False):
                self.model(x_eval)
        if stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(stream)
        synchronize(self.device)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                value.copy_(model_state[name])
            for state in opt.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
        _set_rng_state(rng, self.device)
        self.scaler = self._new_scaler()
        return seconds

    def _new_scaler(self) -> Any:
        """fp16's loss scaler (a no-op otherwise), its scale and growth tensors already allocated.

        Allocated lazily, they would be created inside the CUDA graph capture, and every replay
        would then reset the scale to its initial value.
        """
        import torch

        scaler = torch.amp.GradScaler(self.device.split(":")[0], enabled=self.config.precision == "fp16")
        scaler.scale(torch.zeros((), device=self.device))
        return scaler

    def _capture(self, opt: Any) -> float:
        """Capture one full-batch training step (forward, backward, optimizer, statistics) as a graph."""
        import torch

        c = self.config
        t0 = time.perf_counter()
        # Fresh tensors that live as long as the graph: each replay reads its batch from them.
        self.static_x, self.static_y = self.train_loader.head(c.batch_size)
        self.lr_tensors = [group["lr"] for group in opt.param_groups]
        self.model.train()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._step(self.static_x, self.static_y, opt)
        synchronize(self.device)
        return time.perf_counter() - t0

    def _keep_lr_on_device(self, opt: Any) -> None:
        # A scheduler that assigns a float instead of filling the tensor would be invisible to the graph.
        for group, tensor in zip(opt.param_groups, self.lr_tensors, strict=True):
            if group["lr"] is not tensor:
                tensor.fill_(float(group["lr"]))
                group["lr"] = tensor

    def _train_epoch(self, epoch: int, opt: Any, sched: Any) -> tuple[float, float]:
        c = self.config
        self.model.train()
        self.loss_sum.zero_()
        self.correct.zero_()
        images, labels = self.train_loader.epoch_tensors(epoch)
        n = self.train_loader.num_samples
        for step, start in enumerate(range(0, n, c.batch_size)):
            x, y = images[start : start + c.batch_size], labels[start : start + c.batch_size]
            if self.graph is not None and y.shape[0] == c.batch_size:
                self.static_x.copy_(x)
                self.static_y.copy_(y)
                self.graph.replay()
                loss = self.static_loss
            else:
                loss = self._step(x, y, opt)
            if c.scheduler == "onecycle":
                sched.step()
            # Reading the loss forces a device sync, so the display samples it only now and then.
            self.cb.on_step(epoch, step + 1, loss.item() if (step + 1) % 50 == 0 else None)
        return self.loss_sum.item() / n, 100.0 * self.correct.item() / n

    def _evaluate(self) -> tuple[float, float]:
        import torch

        c = self.config
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        with torch.no_grad(), autocast(c.precision, self.device), cudnn_autotune(False):
            for x, y in self.test_loader.epoch(0):
                out = self.model(x)
                loss_sum += self.eval_criterion(out.float(), y)
                correct += (out.argmax(1) == y).sum()
        n = self.test_loader.num_samples
        return loss_sum.item() / n, 100.0 * correct.item() / n

    def run(self) -> RunResult:
        import pandas as pd
        import torch

        wall0 = time.perf_counter()
        self._setup()
        c = self.config
        steps = len(self.train_loader)

        def factory() -> tuple[Any, Any]:
            return _make_optimizer(c, self.model.parameters(), steps, self.use_graphs, self.device)

        start_epoch, best_acc, best_epoch = 1, -1.0, 0
        rows: list[EpochRow] = []
        if self.resume_dir is not None:
            run_dir = self.resume_dir
            run_id = run_dir.name
            saved = json.loads((run_dir / "config.json").read_text())
            if saved["conditions_hash"] != self.conditions["conditions_hash"]:
                raise InvalidArgumentError(
                    f"expected to resume with the run's own conditions, got different ones for {run_id} "
                    f"(device or versions changed?)"
                )
        else:
            run_id, run_dir = self._new_run_dir()
            (run_dir / "config.json").write_text(json.dumps(self.conditions, indent=2, default=str))

        opt, sched = factory()
        warmup_s = self._warmup(opt)
        if self.resume_dir is not None and (run_dir / "last.pt").exists():
            # On the CPU: RNG states must stay CPU byte tensors; load_state_dict moves the rest.
            ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
            self.model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            for group in opt.param_groups:  # a tensor LR comes back on the CPU; the graph needs it here
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"] = group["lr"].to(self.device)
            if sched is not None and ckpt.get("scheduler"):
                sched.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
            _set_rng_state(ckpt["rng"], self.device)
            start_epoch = ckpt["epoch"] + 1
            best_acc, best_epoch = ckpt["best_acc"], ckpt["best_epoch"]
            epochs_csv = run_dir / "epochs.csv"
            if epochs_csv.exists():
                done = pd.read_csv(epochs_csv)
                done = done[done.epoch <= ckpt["epoch"]]  # a row may have outlived its checkpoint
                done.to_csv(epochs_csv, index=False)
                rows = [EpochRow(**r) for r in done.to_dict("records")]
        if self.use_graphs:
            warmup_s += self._capture(opt)
        self.cb.on_warmup(warmup_s)
        self.cb.on_start(run_id, c, steps, start_epoch)

        status = "running"
        try:
            for epoch in range(start_epoch, c.epochs + 1):
                if self.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats(self.device)
                # A tensor LR (CUDA graphs) is float32: 1e-3 reads back as 0.0010000000475.
                lr = float(f"{float(opt.param_groups[0]['lr']):.7g}")
                synchronize(self.device)
                t0 = time.perf_counter()
                train_loss, train_acc = self._train_epoch(epoch, opt, sched)
                synchronize(self.device)
                epoch_s = time.perf_counter() - t0
                if sched is not None and c.scheduler != "onecycle":
                    sched.step()
                    if self.graph is not None:
                        self._keep_lr_on_device(opt)
                t1 = time.perf_counter()
                test_loss, test_acc = self._evaluate()
                synchronize(self.device)
                eval_s = time.perf_counter() - t1
                peak = (
                    torch.cuda.max_memory_allocated(self.device) / 2**20
                    if self.device.startswith("cuda")
                    else float("nan")
                )
                row = EpochRow(epoch, train_loss, train_acc, test_loss, test_acc, lr, epoch_s, eval_s,
                               self.train_loader.num_samples / epoch_s, peak)  # fmt: skip
                rows.append(row)
                append_row(run_dir / "epochs.csv", dataclasses.asdict(row))
                if not math.isfinite(train_loss):
                    status = "diverged"
                    break
                improved = test_acc > best_acc
                if improved:
                    best_acc, best_epoch = test_acc, epoch
                if c.checkpoints:
                    self._checkpoint(run_dir, epoch, opt, sched, best_acc, best_epoch, improved)
                self.cb.on_epoch(row)
            else:
                chance = 100.0 / self.spec.num_classes
                status = "not learning" if best_acc < chance + 2.0 else "ok"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except torch.cuda.OutOfMemoryError:
            status = "out of memory"
            raise
        finally:
            summary = self._summary(run_id, run_dir, status, rows, best_acc, best_epoch, warmup_s,
                                    time.perf_counter() - wall0)  # fmt: skip
            append_row(Path(c.out) / "runs.csv", summary)
        return RunResult(run_id, run_dir, status, summary, rows)

    def _checkpoint(self, run_dir: Path, epoch: int, opt: Any, sched: Any, best_acc: float, best_epoch: int,
                    improved: bool) -> None:  # fmt: skip
        import os

        import torch

        state = {
            "model": self.model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(self.device),
            "epoch": epoch,
            "best_acc": best_acc,
            "best_epoch": best_epoch,
        }
        tmp = run_dir / "last.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, run_dir / "last.pt")
        if improved:
            torch.save({"model": state["model"], "epoch": epoch, "test_acc": best_acc}, run_dir / "best.pt")

    def _summary(self, run_id: str, run_dir: Path, status: str, rows: list[EpochRow], best_acc: float,
                 best_epoch: int, warmup_s: float, wall_s: float) -> dict[str, Any]:  # fmt: skip
        times = [r.epoch_time_s for r in rows]
        last = rows[-1] if rows else None
        summary = {
            "run_id": run_id,
            "status": status,
            "epochs_done": len(rows),
            "best_test_acc": best_acc if rows else float("nan"),
            "best_epoch": best_epoch,
            "final_test_acc": last.test_acc if last else float("nan"),
            "final_train_acc": last.train_acc if last else float("nan"),
            "median_epoch_s": statistics.median(times) if times else float("nan"),
            "iqr_epoch_s": iqr(times),
            "total_train_s": sum(times),
            "total_eval_s": sum(r.eval_time_s for r in rows),
            "warmup_s": warmup_s,
            "data_load_s": self.data_load_s,
            "wall_s": wall_s,
            "peak_gpu_mem_MiB": max((r.peak_gpu_mem_MiB for r in rows), default=float("nan")),
            **{k: v for k, v in self.conditions.items() if k != "conditions_hash"},
            "conditions_hash": self.conditions["conditions_hash"],
            "run_dir": str(run_dir),
        }
        return summary


def train(config: TrainConfig, callbacks: Callbacks | None = None) -> RunResult:
    return Trainer(config, callbacks).run()


def find_run(out: Path, run: str) -> Path:
    """A run directory from a path or a run id under ``out/runs``."""
    path = Path(run)
    for candidate in (path, Path(out) / "runs" / run):
        if (candidate / "config.json").is_file():
            return candidate
    raise InvalidArgumentError(f"expected a run directory or id with a config.json, got {run!r}")


def resume(out: Path, run: str, callbacks: Callbacks | None = None, epochs: int | None = None,
           device: str | None = None) -> RunResult:  # fmt: skip
    """Continue an interrupted run from its last checkpoint, with its own recorded configuration."""
    run_dir = find_run(out, run)
    saved = json.loads((run_dir / "config.json").read_text())
    options = dict(kv.split("=", 1) for kv in saved["options"].split(";") if kv)
    config = TrainConfig(
        model=saved["model"], options=options, dataset=saved["dataset"],
        data_dir=Path(saved["data_source"]) if saved["dataset"] != "synthetic" else None,
        out=Path(out), device=device or saved["device"],
        input_size=tuple(int(v) for v in saved["input_size"].split("x")) if saved["dataset"] == "synthetic" else None,
        num_classes=saved["num_classes"] if saved["dataset"] == "synthetic" else None,
        **{k: saved[k] for k in (*_RECIPE_FIELDS, "augment", "synthetic_size", "cuda_graphs")},
    )  # fmt: skip
    if epochs is not None and epochs != config.epochs:
        raise InvalidArgumentError(
            f"expected --epochs {config.epochs} (the run's own) when resuming, got {epochs}"
        )
    return Trainer(config, callbacks, resume=run_dir).run()
