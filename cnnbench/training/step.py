"""How one training step runs: eager, compiled, or captured once as a CUDA graph and replayed.

:class:`TrainStep` owns what a step touches (the model, the optimizer and its learning-rate tensors,
the scheduler, fp16's loss scaler, the running loss and accuracy sums, and, under CUDA graphs, the
static input tensors and the graph). A run's bookkeeping (files, checkpoints, status) lives in
:mod:`cnnbench.store.runs`; the order in which a run uses a step is:

1. ``warmup(train_loader, test_loader)``: a few real steps at every batch shape the run will see
   (cuDNN autotuning, allocator growth, ``torch.compile``), then the initial weights and a zeroed
   optimizer state restored *in place*, so it changes nothing the run computes.
2. ``load_state_dict(checkpoint)`` when resuming: after warm-up, because warm-up zeroes the optimizer
   state; before capture, because the graph must see the restored tensors at their final addresses.
3. ``capture(train_loader)``: last, once every tensor the step reads or writes exists.
4. ``step(x, y)`` per batch, ``end_epoch()`` per epoch.

The CUDA graph's rules: a replay reads and writes exactly the memory captured, so
- inputs are copied into ``static_x``/``static_y``, never passed as new tensors;
- gradients are zeroed in place (``set_to_none=False``), never freed;
- the learning rate is a device tensor that schedulers fill, never a Python float they reassign;
- fp16's loss scaler has its scale and growth tensors allocated before capture (allocated inside it,
  every replay would reset the scale).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Any

from cnnbench.device import autocast, cudnn_autotune, is_cuda, optimizer_impl, synchronize
from cnnbench.models.outputs import aux_logits_of, logits_of


def uses_cuda_graphs(config: Any, device: str) -> bool:
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
        and getattr(config, "world_size", 1) == 1  # DDP's all-reduce runs eagerly
        and is_cuda(device)
        and config.optimizer in ("adam", "adamw")
        and config.scheduler in ("step", "cosine", "none")
    )


# cuDNN autotuning (benchmark mode) of the full training batch pays for itself only over many steps.
# Measured on an H200 (results/overhead/step_autotune_vs_heuristics.csv, autotune_limits.txt): it makes
# VGG-16's step 0.074 ms faster and SimpleResNet's 0.15 ms, for 0.8-1.3 s more warm-up on a machine that
# has run the model before and up to 5.8 s on a fresh one; break-even at 5,300 to 86,000 steps. Runs of
# at least this many full-batch steps autotune; shorter ones keep cuDNN's heuristics.
AUTOTUNE_MIN_STEPS = 20_000


def autotunes(config: Any, device: str, steps_per_epoch: int) -> bool:
    """Whether a run's full-batch step is autotuned by cuDNN (recorded in its conditions): as the
    recipe asks (``--cudnn-autotune``), else for runs of :data:`AUTOTUNE_MIN_STEPS` full-batch steps."""
    if not is_cuda(device) or config.deterministic:
        return False
    asked = getattr(config, "cudnn_autotune", None)
    if asked is not None:
        return bool(asked)
    return config.epochs * max(steps_per_epoch - 1, 1) >= AUTOTUNE_MIN_STEPS


def rng_state(device: str) -> dict[str, Any]:
    import torch

    state = {"cpu": torch.get_rng_state()}
    if is_cuda(device):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: str) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state and is_cuda(device):
        torch.cuda.set_rng_state(state["cuda"], device)


def make_optimizer(
    config: Any, params: Any, steps_per_epoch: int, graphs: bool, device: str, fused: bool | None = None
) -> tuple[Any, Any]:
    """The recipe's optimizer and learning-rate schedule (a tensor LR when the step is graphed)."""
    import torch

    lr: Any = torch.tensor(config.lr, device=device) if graphs else config.lr
    if fused is None:
        fused = optimizer_impl(config.optimizer, device) == "fused"
    fused = fused or None  # None, not False: torch then picks its multi-tensor implementation
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        opt = cls(params, lr=lr, weight_decay=config.weight_decay, capturable=graphs, fused=fused)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                              nesterov=config.nesterov)  # fmt: skip
    schedules = torch.optim.lr_scheduler
    warmup = config.warmup_epochs
    if config.scheduler == "step":
        sched = schedules.StepLR(opt, step_size=config.step_size, gamma=config.gamma)
    elif config.scheduler == "cosine":
        sched = schedules.CosineAnnealingLR(opt, T_max=config.epochs - warmup)
    elif config.scheduler == "onecycle":
        sched = schedules.OneCycleLR(
            opt, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    else:
        sched = schedules.LambdaLR(opt, lambda _epoch: 1.0) if warmup else None
    if warmup:
        # Epoch e of the warm-up (1-based) trains at e/(W+1) of the rate; then the schedule starts as if
        # its first epoch were epoch W+1. Per epoch, so a captured graph sees it through its LR tensor.
        ramp = schedules.LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
        sched = schedules.SequentialLR(opt, [ramp, sched], milestones=[warmup])
    return opt, sched


class FixedBatch:
    """A loader of one batch, for a step timed on the same inputs over and over (profile, benchmarks):
    what ``warmup`` and ``capture`` ask of a loader."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y

    def head(self, n: int) -> tuple[Any, Any]:
        return self.x[:n].clone(), self.y[:n].clone()

    def batch_sizes(self) -> set[int]:
        return {len(self.y)}


class TrainStep:
    """One training step of ``model`` under ``config``'s recipe on ``device`` (see the module doc).

    ``fused`` and ``compile_mode`` exist for benchmarks that time what cnnbench itself does not run
    (Adam without fusion on CUDA, other ``torch.compile`` modes); runs leave them to the recipe.
    ``wrapped`` is the model as training runs it forward when that is not ``model`` itself (its
    DistributedDataParallel wrapper); ``model`` is what is saved and evaluated.
    """

    def __init__(
        self, model: Any, config: Any, device: str, steps_per_epoch: int, *, fused: bool | None = None,
        compile_mode: str | None = None, wrapped: Any = None, autotune: bool | None = None,
    ) -> None:  # fmt: skip
        import torch

        self.config = config
        self.device = device
        self.model = model
        self.forward_model = wrapped if wrapped is not None else model
        # Compiled for the full training batch only (dynamic=False: one static graph, best kernels);
        # the last partial batch and evaluation run the same weights eagerly instead of recompiling.
        compiled = config.compile or compile_mode is not None
        self.step_model = (
            torch.compile(self.forward_model, dynamic=False, mode=compile_mode)
            if compiled
            else self.forward_model
        )
        self.graphed = uses_cuda_graphs(config, device)
        # A step timed over and over (profile, benchmarks) autotunes; a run, when it is long enough.
        self.autotune = autotunes(config, device, steps_per_epoch) if autotune is None else autotune
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.optimizer, self.scheduler = make_optimizer(
            config, model.parameters(), steps_per_epoch, self.graphed, device, fused
        )
        self.scaler = self._new_scaler()
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.graph: Any = None
        self.static_x: Any = None
        self.static_y: Any = None
        self.static_loss: Any = None
        self.lr_tensors: list[Any] = []
        self.step_images_per_s = math.nan  # measured by warmup(timed_steps=...)

    def _new_scaler(self) -> Any:
        """fp16's loss scaler (a no-op otherwise), its scale and growth tensors already allocated."""
        import torch

        scaler = torch.amp.GradScaler(self.device.split(":")[0], enabled=self.config.precision == "fp16")
        scaler.scale(torch.zeros((), device=self.device))
        return scaler

    def _eager(self, x: Any, y: Any) -> Any:
        """The step's body; also what the CUDA graph captures."""
        full = y.shape[0] == self.config.batch_size
        model = self.step_model if full else self.forward_model
        with cudnn_autotune(
            full and self.autotune and is_cuda(self.device) and not self.config.deterministic
        ):
            with autocast(self.config.precision, self.device):
                outputs = model(x)
                out = logits_of(outputs)  # the main logits (GoogLeNet's and Inception's heads aside)
                loss = self.criterion(out, y)
                weight = getattr(self.config, "aux_loss", 0.0)
                for aux in aux_logits_of(outputs) if weight else ():
                    loss = loss + weight * self.criterion(aux, y)
            self.optimizer.zero_grad(set_to_none=not self.graphed)
            self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.loss_sum += loss.detach().float() * y.shape[0]
        self.correct += (out.argmax(1) == y).sum()
        # Detached: a kept autograd graph would pin nodes created on the warm-up stream.
        return loss.detach()

    def step(self, x: Any, y: Any) -> Any:
        """One step on batch ``(x, y)``: the graph's replay for a full batch, else the eager body."""
        if self.graph is not None and y.shape[0] == self.config.batch_size:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
            self.graph.replay()
            loss = self.static_loss
        else:
            loss = self._eager(x, y)
        if self.config.scheduler == "onecycle":
            self.scheduler.step()
        return loss

    def start_epoch(self) -> None:
        self.model.train()
        self.loss_sum.zero_()
        self.correct.zero_()

    def epoch_stats(self, samples: int) -> tuple[float, float]:
        """(mean training loss, training accuracy in %) of the epoch so far."""
        return self.loss_sum.item() / samples, 100.0 * self.correct.item() / samples

    def end_epoch(self) -> None:
        if self.scheduler is not None and self.config.scheduler != "onecycle":
            self.scheduler.step()
            if self.graph is not None:
                self._keep_lr_on_device()

    @property
    def lr(self) -> float:
        # A tensor LR (CUDA graphs) is float32: 1e-3 reads back as 0.0010000000475.
        return float(f"{float(self.optimizer.param_groups[0]['lr']):.7g}")

    def warmup(self, train_loader: Any, test_loader: Any, timed_steps: int = 0) -> float:
        """A few real steps at every batch size the run will see, then the initial state restored.

        Weights are copied back in place and optimizer state zeroed in place (a zeroed Adam or momentum
        state steps exactly like a fresh one), so addresses stay fixed for graph capture. With
        ``timed_steps``, that many more full-batch steps on the same batch are timed once the warm-up
        steps are done: the step's own speed without its loader (``step_images_per_s``; eager, so a
        graphed step is faster still).
        """
        import torch

        c = self.config
        if c.warmup_steps <= 0:
            return 0.0
        model_state = copy.deepcopy(self.model.state_dict())
        rng = rng_state(self.device)
        x_all, y_all = train_loader.head(c.batch_size)
        x_eval, _ = test_loader.head(c.eval_batch_size)
        synchronize(self.device)
        t0 = time.perf_counter()
        stream = torch.cuda.Stream(self.device) if is_cuda(self.device) else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            self.model.train()
            for bs in sorted(train_loader.batch_sizes(), reverse=True):
                for _ in range(c.warmup_steps if bs == c.batch_size else 1):
                    self._eager(x_all[:bs], y_all[:bs])
            if timed_steps > 0:
                synchronize(self.device)
                t1 = time.perf_counter()
                done = 0
                # At most about half a second (a CPU's steps are slow; there the clock is the step's own).
                while done < timed_steps and (done < 2 or not self._time_is_up(t1, 0.5)):
                    self._eager(x_all, y_all)
                    done += 1
                synchronize(self.device)
                self.step_images_per_s = done * len(y_all) / (time.perf_counter() - t1)
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
            for state in self.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
        set_rng_state(rng, self.device)
        self.scaler = self._new_scaler()
        return seconds

    def _time_is_up(self, start: float, seconds: float) -> bool:
        """Whether ``seconds`` have passed since ``start``: in a data-parallel run, on any rank, so that
        every rank takes the same number of steps (each step's gradients are a collective: one rank
        stopping a step early leaves the others waiting on it, or mismatched with its next collective)."""
        import torch

        from cnnbench.training.distributed import is_distributed, sum_over_ranks

        up = time.perf_counter() - start >= seconds
        if not is_distributed():
            return up
        flag = torch.tensor(float(up), device=self.device)
        sum_over_ranks(flag)
        return bool(flag.item() > 0)

    def capture(self, train_loader: Any) -> float:
        """Capture one full-batch step (forward, backward, optimizer, statistics) as a CUDA graph;
        nothing to do when the step is not graphed. Returns the seconds it took."""
        import torch

        if not self.graphed:
            return 0.0
        t0 = time.perf_counter()
        # Fresh tensors that live as long as the graph: each replay reads its batch from them.
        self.static_x, self.static_y = train_loader.head(self.config.batch_size)
        self.lr_tensors = [group["lr"] for group in self.optimizer.param_groups]
        self.model.train()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._eager(self.static_x, self.static_y)
        synchronize(self.device)
        return time.perf_counter() - t0

    def _keep_lr_on_device(self) -> None:
        # A scheduler that assigns a float instead of filling the tensor would be invisible to the graph.
        for group, tensor in zip(self.optimizer.param_groups, self.lr_tensors, strict=True):
            if group["lr"] is not tensor:
                tensor.fill_(float(group["lr"]))
                group["lr"] = tensor

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (loadable with weights_only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.device),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint's state in place (call between ``warmup`` and ``capture``)."""
        import torch

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for (
            group
        ) in self.optimizer.param_groups:  # a tensor LR comes back on the CPU; the graph needs it here
            if isinstance(group["lr"], torch.Tensor):
                group["lr"] = group["lr"].to(self.device)
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.device)


def evaluate(model: Any, loader: Any, precision: str, device: str) -> tuple[float, float]:
    """(mean loss, accuracy in %) of ``model`` over ``loader``, without autotuning its one-off shapes;
    in a data-parallel run, over every rank's shard."""
    import torch

    from cnnbench.training.distributed import sum_over_ranks

    model.eval()
    criterion = torch.nn.CrossEntropyLoss(reduction="sum")
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad(), autocast(precision, device), cudnn_autotune(False):
        for x, y in loader.epoch(0):
            out = logits_of(model(x))
            loss_sum += criterion(out.float(), y)
            correct += (out.argmax(1) == y).sum()
    samples = torch.tensor(loader.num_samples, device=device, dtype=torch.long)
    sum_over_ranks(loss_sum, correct, samples)
    n = int(samples.item())
    return loss_sum.item() / n, 100.0 * correct.item() / n
