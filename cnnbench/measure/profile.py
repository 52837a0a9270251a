"""What a model costs on a device: step time, throughput, memory, achieved TFLOP/s and utilisation.

Step times are CUDA-event timed on the GPU (host clock on the CPU), one measurement per step, after
untimed warm-up steps; reported as median and IQR. FLOPs per step come from FlopCounterMode (forward
for ``infer``; forward + backward for ``train``, whose step also includes the optimizer update).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.data.specs import format_input_size
from cnnbench.device import (
    autocast,
    clear_cublas_workspaces,
    is_cpu_oom,
    is_cuda,
    resolve_device,
    synchronize,
    use_channels_last,
)
from cnnbench.errors import InputSizeError, ResultsError, first_line
from cnnbench.measure.memory import cublas_workspace_bytes, estimate_memory
from cnnbench.models import format_options, get_model_info
from cnnbench.models.build import prepare_model, resolve_input, shared_meta
from cnnbench.models.counting import count_by_family, count_flops
from cnnbench.recipe import TrainConfig
from cnnbench.settings import ProfileConfig
from cnnbench.stats import iqr
from cnnbench.store.tables import (
    append_row,
    check_table,
    ensure_dir,
    environment,
    write_error,
)
from cnnbench.training.step import FixedBatch, TrainStep

# Dense peak TFLOP/s by precision basis, from the vendors' datasheets (no sparsity).
# The longest matching name wins, so "A100" is not taken for "A10".
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
    "V100": {"fp32": 15.7, "fp16": 125.0},
    "T4": {"fp32": 8.1, "fp16": 65.0},
}


def peak_tflops(gpu_name: str, precision: str) -> tuple[float | None, str]:
    """(peak TFLOP/s, basis) for this GPU and precision; fp32 counts as TF32 when cuDNN allows it."""
    import torch

    basis = precision
    if precision == "fp32" and torch.backends.cudnn.allow_tf32:
        basis = "tf32"  # convolutions, which dominate these models, run on TF32 tensor cores
    matches = [k for k in PEAK_TFLOPS if k.lower() in (gpu_name or "").lower()]
    if not matches:
        return None, basis
    table = PEAK_TFLOPS[max(matches, key=len)]
    return table.get(basis), basis


class Timer:
    """Per-step timing: CUDA events on the GPU (no host sync between steps), host clock on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = is_cuda(device)
        self.marks: list[Any] = []

    def stamp(self) -> Any:
        """A point in time: a recorded CUDA event on the GPU, the host clock on the CPU."""
        import torch

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, a: Any, b: Any) -> float:
        """Milliseconds between two stamps (CUDA events must have completed)."""
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3

    def mark(self) -> None:
        self.marks.append(self.stamp())

    def intervals_ms(self) -> list[float]:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        return [self.elapsed_ms(a, b) for a, b in zip(self.marks, self.marks[1:], strict=False)]


def make_step(
    model: Any, name: str, mode: str, x: Any, y: Any, config: ProfileConfig, device: str, graphs: bool = True
) -> tuple[Callable[[], None], Callable[[], None], float]:
    """(one step, the same step run eagerly, seconds its set-up took): an inference forward, or the training step exactly as
    ``cnnbench train`` runs it (:class:`cnnbench.training.step.TrainStep`: the chapter's Adam, fused on CUDA,
    warmed up and, where train would, captured as a CUDA graph). ``graphs=False`` keeps it eager (the
    per-module timing hooks cannot run inside a graph)."""
    import torch

    if mode == "infer":
        model.eval()
        forward = torch.compile(model) if config.compile else model

        def infer() -> None:
            with torch.no_grad(), autocast(config.precision, device):
                forward(x)

        return infer, infer, 0.0
    recipe = TrainConfig(model=name, batch_size=len(y), eval_batch_size=len(y), precision=config.precision,
                         compile=config.compile, cuda_graphs=graphs)  # fmt: skip
    step = TrainStep(model, recipe, device, steps_per_epoch=1, autotune=True)
    batch = FixedBatch(x, y)
    t0 = time.perf_counter()
    step.warmup(batch, batch)
    step.capture(batch)
    setup_s = time.perf_counter() - t0
    return (lambda: step.step(x, y)), (lambda: step._eager(x, y)), setup_s


def step_peak_mib(config: ProfileConfig, name: str, shape: tuple[int, int, int], classes: int, mode: str,
                  batch: int, device: str) -> float:  # fmt: skip
    """Peak memory (MiB) of one step after warm-up, counted from what was allocated before its model was
    built, with cuBLAS's workspaces freed first so that every row counts its own: weights, gradients,
    optimizer state, activations and library workspaces, as one step on one stream holds them. Measured
    on an eager step of its own model, since a CUDA graph's replay writes into a private pool that the
    allocator no longer counts as allocated."""
    import torch

    if not is_cuda(device):
        return math.nan
    gc.collect()
    torch.cuda.empty_cache()
    clear_cublas_workspaces()
    before = torch.cuda.memory_allocated(device)
    model, x, y = _prepare(config, name, shape, classes, batch, device)
    _, eager, _ = make_step(model, name, mode, x, y, config, device, graphs=False)
    eager()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    eager()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del model, x, y, eager
    gc.collect()
    torch.cuda.empty_cache()
    return peak / 2**20


def time_steps(step: Callable[[], None], device: str, warmup: int, iters: int) -> tuple[list[float], float]:
    """(per-step milliseconds, seconds of the first call): warm-up untimed, then ``iters`` timed steps."""
    synchronize(device)
    t0 = time.perf_counter()
    step()  # the first call: compilation and cuDNN autotuning land here
    synchronize(device)
    first_s = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step()
    timer = Timer(device)
    timer.mark()
    for _ in range(iters):
        step()
        timer.mark()
    return timer.intervals_ms(), first_s


ENERGY_WINDOW_S = 1.0  # long enough for the device's energy counter to resolve a step's joules


def energy_per_step(step: Callable[[], None], device: str, window_s: float = ENERGY_WINDOW_S) -> float:
    """Joules per step from the device's energy counter, over steps repeated for ``window_s`` seconds
    (after the timed ones, so warm); NaN where energy cannot be read."""
    from cnnbench.energy import open_meter

    meter = open_meter(device)
    try:
        synchronize(device)
        before = meter.read()
        if before is None:
            return math.nan
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < window_s:
            step()
            steps += 1
            if steps % 10 == 0:
                synchronize(device)
        synchronize(device)
        after = meter.read()
        return (after - before) / steps if after is not None else math.nan
    finally:
        meter.close()


@dataclass
class ProfileResult:
    rows: list[dict[str, Any]]
    layers: list[dict[str, Any]] = field(default_factory=list)
    top_ops: list[dict[str, Any]] = field(default_factory=list)
    grads: list[dict[str, Any]] = field(default_factory=list)
    csv_path: Path | None = None
    latency: bool = False  # rows of profile --latency (latency.csv), not of the throughput sweep


def profile(config: ProfileConfig, repair: bool = False,
            say: Callable[[str], None] = lambda _line: None) -> ProfileResult:  # fmt: skip
    """The sweep over modes and batch sizes, one row each appended to OUT/profile.csv as it is measured
    (``say`` is told what is measured next, and what each gave); with ``grads``, only the gradient report
    of one batch."""
    import torch

    config.validate()
    device = resolve_device(config.device)
    config = dataclasses.replace(config, channels_last=use_channels_last(config.channels_last, device))
    if config.latency:
        from cnnbench.measure.latency import latency

        return ProfileResult(
            latency(config, device, say), csv_path=Path(config.out) / "latency.csv", latency=True
        )
    info = get_model_info(config.model)
    shape, classes = resolve_input(info.name, config.input_size, config.dataset, config.num_classes)
    if config.grads:
        batch = min(config.batch_sizes[-1], 32)
        return ProfileResult(
            [], grads=gradient_norms(info.name, config.options, shape, classes, device, batch=batch)
        )
    if config.trace is not None:
        _check_writable(Path(config.trace))
    out = ensure_dir(Path(config.out))
    check_table(out / "profile.csv", repair)
    fwd_flops, train_flops = count_flops(info.name, config.options, shape, classes)
    env = environment(device)
    peak, basis = (
        peak_tflops(env["gpu_name"], config.precision) if is_cuda(device) else (None, config.precision)
    )
    if is_cuda(device):
        torch.backends.cudnn.benchmark = True
        cublas_workspace_bytes(
            device, config.precision
        )  # before any graph exists: measuring frees workspaces
    rows = []
    total = len(config.modes) * len(config.batch_sizes)
    for mode in config.modes:
        for batch in sorted(config.batch_sizes):
            say(f"{len(rows) + 1}/{total}: {'training step' if mode == 'train' else 'inference'} at batch {batch}, "
                f"{config.warmup} untimed and {config.iters} timed steps on {device}")  # fmt: skip
            row = {
                "model": info.name, "options": format_options(info.parse_options(config.options)),
                "input_size": format_input_size(shape), "num_classes": classes, "mode": mode, "batch_size": batch,
                "precision": config.precision, "channels_last": config.channels_last, "compile": config.compile,
                "warmup_steps": config.warmup, "timed_steps": config.iters, "status": "ok",
            }  # fmt: skip
            try:
                row.update(_measure(config, info.name, shape, classes, mode, batch, device,
                                    fwd_flops if mode == "infer" else train_flops, peak))  # fmt: skip
            except (torch.cuda.OutOfMemoryError, MemoryError, InputSizeError) as exc:
                row["status"] = "out of memory"
                row["error"] = first_line(exc)
            except RuntimeError as exc:
                if not is_cpu_oom(exc):
                    raise
                row["status"] = "out of memory"
                row["error"] = first_line(exc)
            finally:
                gc.collect()  # a step's closures and graph go now, not whenever the collector next runs
                if is_cuda(device):
                    torch.cuda.empty_cache()
            row["estimated_mem_MiB"] = estimated_memory_mib(info.name, config, shape, classes, mode, batch)
            row.update({"peak_basis": basis, "peak_TFLOPs": peak, **env})
            rows.append(row)
            append_row(out / "profile.csv", row)
            if row["status"] == "ok":
                say(f"  median step {row['step_ms_median']:,.1f} ms, {row['samples_per_s']:,.1f} images/s")
            else:
                say(f"  {row['status']}")
    result = ProfileResult(rows, csv_path=out / "profile.csv")
    if config.layers or config.trace:
        say("per-module times and top operators: torch.profiler over a few more steps")
        result.layers, result.top_ops = layer_profile(config, info.name, shape, classes, device)
    return result


def estimated_memory_mib(name: str, config: ProfileConfig, shape: tuple[int, int, int], classes: int, mode: str,
                         batch: int) -> float:  # fmt: skip
    """summary's estimate of what this step holds: a training step's weights, gradients, Adam state and
    saved activations, or an inference step's weights and largest layer."""
    meta = shared_meta(name, config.options, shape, classes)
    workspace = cublas_workspace_bytes(resolve_device(config.device), config.precision)
    counts = count_by_family(name, tuple(sorted(config.options.items())), shape, classes)
    memory = estimate_memory(meta, shape, batch, config.precision, workspace, counts)
    if mode == "train":
        return memory["total_train_MiB"]
    return memory["params_MiB"] + memory["input_MiB"] + memory["activations_infer_MiB"]


def _check_writable(path: Path) -> None:
    """Refuse, before any work, a trace path that cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ResultsError(f"expected a file path for --trace, got a directory: {path}")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ResultsError(f"expected --trace in a writable folder, got {path} ({folder} cannot be written)")


def _prepare(config: ProfileConfig, name: str, shape: tuple[int, int, int], classes: int, batch: int,
             device: str) -> tuple[Any, Any, Any]:  # fmt: skip
    import torch

    model = prepare_model(
        name, config.options, shape, classes, device, bool(config.channels_last), check_batch=batch
    )
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x, y


def _measure(config: ProfileConfig, name: str, shape: tuple[int, int, int], classes: int, mode: str, batch: int,
             device: str, flops_per_sample: int, peak: float | None) -> dict[str, Any]:  # fmt: skip

    peak_mib = step_peak_mib(config, name, shape, classes, mode, batch, device)
    model, x, y = _prepare(config, name, shape, classes, batch, device)
    step, _, setup_s = make_step(model, name, mode, x, y, config, device)
    times, first_s = time_steps(step, device, config.warmup, config.iters)
    joules_per_step = energy_per_step(step, device)
    first_s += setup_s
    median = statistics.median(times)
    flops_step = flops_per_sample * batch
    achieved = flops_step / (median / 1e3) / 1e12
    return {
        "step_ms_median": median,
        "step_ms_iqr": iqr(times),
        "step_ms_min": min(times),
        "samples_per_s": batch / (median / 1e3),
        "peak_mem_MiB": peak_mib,
        "FLOPs_per_step": flops_step,
        "achieved_TFLOPs": achieved,
        "MFU_pct": 100 * achieved / peak if peak else math.nan,
        "first_step_s": first_s,
        "compile_s": first_s if config.compile else math.nan,
        "J_per_step": joules_per_step,
        "images_per_J": batch / joules_per_step if joules_per_step else math.nan,
        "power_W": joules_per_step / (median / 1e3) if joules_per_step else math.nan,
    }


def layer_profile(config: ProfileConfig, name: str, shape: tuple[int, int, int], classes: int, device: str):
    """Per-module forward (and backward, in train mode) time, and the top operators from torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    batch = max(config.batch_sizes)
    mode = "train" if "train" in config.modes else "infer"
    model, x, y = _prepare(config, name, shape, classes, batch, device)
    for module in model.modules():  # full backward hooks cannot wrap outputs that are modified in place
        if hasattr(module, "inplace"):
            module.inplace = False
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    marks: dict[tuple[str, str], list[Any]] = {}
    cuda = is_cuda(device)
    clock = Timer(device)
    stamp = clock.stamp

    handles = []
    for leaf_name, module in leaves:

        def pre(_m: Any, _i: Any, n: str = leaf_name) -> None:
            marks.setdefault((n, "forward"), []).append([stamp(), None])

        def post(_m: Any, _i: Any, _o: Any, n: str = leaf_name) -> None:
            marks[(n, "forward")][-1][1] = stamp()

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        if mode == "train":

            def bpre(_m: Any, _g: Any, n: str = leaf_name) -> None:
                marks.setdefault((n, "backward"), []).append([stamp(), None])

            def bpost(_m: Any, _gi: Any, _go: Any, n: str = leaf_name) -> None:
                if (n, "backward") in marks:
                    marks[(n, "backward")][-1][1] = stamp()

            handles += [
                module.register_full_backward_pre_hook(bpre),
                module.register_full_backward_hook(bpost),
            ]
    x.requires_grad_(mode == "train")  # so the first layer's backward hook fires
    step, _, _ = make_step(
        model, name, mode, x, y, dataclasses.replace(config, compile=False), device, graphs=False
    )
    repeats = 5
    for _ in range(2):
        step()
    marks.clear()
    whole = Timer(device)
    whole.mark()
    for _ in range(repeats):
        step()
        whole.mark()
    whole_ms = statistics.median(whole.intervals_ms())
    for h in handles:
        h.remove()
    layers = []
    for leaf_name, module in leaves:
        row = {"layer": leaf_name, "type": type(module).__name__}
        for phase in ("forward", "backward"):
            spans = [clock.elapsed_ms(a, b) for a, b in marks.get((leaf_name, phase), []) if b is not None]
            row[f"{phase}_ms"] = (
                statistics.median(spans)
                if spans
                else (math.nan if phase == "backward" and mode == "infer" else 0.0)
            )
        layers.append(row)
    attributed = sum(
        r["forward_ms"] + (0 if math.isnan(r["backward_ms"]) else r["backward_ms"]) for r in layers
    )
    layers.append({"layer": "(step total, measured)", "type": mode, "forward_ms": whole_ms, "backward_ms": math.nan,
                   "attributed_ms": attributed})  # fmt: skip

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _without_profiler_logs():
        with torch_profile(activities=activities) as prof:
            for _ in range(3):
                step()
            if cuda:
                torch.cuda.synchronize()
        if config.trace:
            try:
                prof.export_chrome_trace(str(config.trace))
            except OSError as exc:
                raise write_error(Path(config.trace), exc) from None
    top = []
    for evt in prof.key_averages():
        self_device = getattr(evt, "self_device_time_total", None)
        if self_device is None:
            self_device = getattr(evt, "self_cuda_time_total", 0)
        top.append({"op": evt.key, "calls": evt.count, "self_device_ms": self_device / 1e3 / 3,
                    "self_cpu_ms": evt.self_cpu_time_total / 1e3 / 3})  # fmt: skip
    top.sort(key=lambda r: r["self_device_ms"] if cuda else r["self_cpu_ms"], reverse=True)
    return layers, top[:15]


# Kineto, the profiler's native library, logs to the process's stderr itself ("USDT:... profiler_start",
# and on a machine without a GPU "ERROR:... gpuGetDeviceCount failed"): lines that say nothing to a user.
_KINETO_LINE = re.compile(r"^(USDT|INFO|WARNING|ERROR):\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


@contextlib.contextmanager
def _without_profiler_logs() -> Iterator[None]:
    """Inside the block, the native stderr is kept aside; after it, every line but Kineto's goes back."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            for line in kept.read().decode(errors="replace").splitlines(keepends=True):
                if not _KINETO_LINE.match(line):
                    sys.stderr.write(line)


def gradient_norms(name: str, options: dict[str, str], shape: tuple[int, int, int], classes: int, device: str,
                   batch: int = 32, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """L2 norm of each weight's gradient for one batch at initialisation, input to output."""
    import torch

    model = prepare_model(name, options, shape, classes, device, seed=seed).train()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    y = torch.randint(0, classes, (batch,), generator=gen).to(device)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    rows = []
    for param_name, param in model.named_parameters():
        if param_name.endswith("weight") and param.dim() > 1 and param.grad is not None:
            rows.append({"parameter": param_name, "shape": "x".join(map(str, param.shape)),
                         "grad_norm": float(param.grad.norm()), "weight_norm": float(param.detach().norm())})  # fmt: skip
    return rows
