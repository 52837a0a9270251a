"""Per-step time of one CUDA-graph-captured training step under settings that might cut epoch time.

The step is cnnbench's own (``cnnbench.training.step.TrainStep``: forward under autocast, cross-entropy,
backward, Adam with capturable state), here also with the choices cnnbench does not make itself
(Adam unfused, other compile modes, cuDNN's autotuning limits), on random CIFAR-shaped data at the
chapter's batch size, captured once and replayed; timed with CUDA
events over --iters replays after warm-up. Compilation time is reported apart. A short torch.profiler
table of the heaviest kernels in the eager bf16 step says where the time goes.

    python benchmarks/step_explore.py [--models simple_resnet vgg16] [--out results/step_explore.csv]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import torch

from cnnbench.choices import PRECISIONS
from cnnbench.models.build import prepare_model
from cnnbench.recipe import TrainConfig
from cnnbench.stats import iqr
from cnnbench.store.tables import environment
from cnnbench.training.step import FixedBatch, TrainStep

# label: (precision, channels_last, compile mode or None, fused Adam[, cuDNN benchmark_limit, None: no autotuning])
SETTINGS = {
    "fp32": ("fp32", False, None, False),
    "fp32+CL": ("fp32", True, None, False),
    "bf16+CL": ("bf16", True, None, False),
    "bf16+CL+fusedAdam": ("bf16", True, None, True),
    "fp32+compile": ("fp32", False, "default", False),
    "fp32+CL+compile": ("fp32", True, "default", False),
    "bf16+CL+compile": ("bf16", True, "default", False),
    "bf16+CL+compile-max-autotune": ("bf16", True, "max-autotune-no-cudagraphs", False),
    "fp32+CL+fusedAdam": ("fp32", True, None, True),
    "bf16+fusedAdam": ("bf16", False, None, True),
    # benchmark_limit 0: cuDNN autotuning tries every algorithm, not just the first 10 heuristics offer
    "bf16+CL+fusedAdam+all-algos": ("bf16", True, None, True, 0),
    # cuDNN's heuristics alone: no autotuning, so no autotuning time in the warm-up
    "bf16+CL+fusedAdam+heuristics": ("bf16", True, None, True, None),
    # autotuning over fewer candidates: less warm-up, perhaps the same choice
    **{f"bf16+CL+fusedAdam+limit{n}": ("bf16", True, None, True, n) for n in (1, 2, 3, 5)},
    # fp16 with its loss scaler, as cnnbench trains; BatchNorm may take cuDNN's path
    "fp16+CL+fusedAdam": ("fp16", True, None, True),
}


def make_step(model_name: str, precision: str, channels_last: bool, compile_mode: str | None, fused: bool,
              batch: int, graphs: bool = True) -> tuple[TrainStep, float, FixedBatch]:  # fmt: skip
    """cnnbench's own training step (the chapter's Adam) for one setting, warmed up (three steps on a
    side stream: autotuning, compilation) and captured as a CUDA graph; and the warm-up's seconds."""
    model = prepare_model(model_name, {}, (3, 32, 32), 10, "cuda", channels_last)
    recipe = TrainConfig(model=model_name, batch_size=batch, eval_batch_size=batch, precision=precision,
                         cuda_graphs=graphs)  # fmt: skip
    step = TrainStep(
        model,
        recipe,
        "cuda",
        1,
        fused=fused,
        compile_mode=compile_mode,
        autotune=torch.backends.cudnn.benchmark,
    )  # the setting's own choice
    x = torch.randn(batch, 3, 32, 32, device="cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    data = FixedBatch(x, torch.randint(0, 10, (batch,), device="cuda"))
    first_s = step.warmup(data, data)
    step.capture(data)
    return step, first_s, data


def event_times_ms(fn, iters: int) -> list[float]:
    """Milliseconds of each of ``iters`` calls of ``fn`` by CUDA events, after 20 untimed calls."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return times


def time_setting(model_name: str, label: str, batch: int, iters: int) -> dict:
    precision, cl, mode, fused, *limit = SETTINGS[label]
    torch.backends.cudnn.benchmark = not limit or limit[0] is not None
    torch.backends.cudnn.benchmark_limit = limit[0] if limit and limit[0] is not None else 10
    step, first_s, _ = make_step(model_name, precision, cl, mode, fused, batch)
    times = event_times_ms(step.graph.replay, iters)
    med = statistics.median(times)
    return {"model": model_name, "setting": label, "batch_size": batch, "precision": precision,
            "channels_last": cl, "compile_mode": mode or "", "fused_adam": fused,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_benchmark_limit": torch.backends.cudnn.benchmark_limit, "step_ms_median": med,
            "step_ms_iqr": iqr(times), "epoch_s_at_391_steps": med * 391 / 1000,
            "warmup_and_compile_s": first_s, "iters": iters, **environment("cuda")}  # fmt: skip


def kernel_table(model_name: str, batch: int, precision: str) -> str:
    torch.backends.cudnn.benchmark = True
    step, _, data = make_step(model_name, precision, True, None, True, batch, graphs=False)
    for _ in range(5):
        step.step(data.x, data.y)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            step.step(data.x, data.y)
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=["simple_resnet", "vgg16"])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/step_explore.csv"))
    parser.add_argument(
        "--kernels", choices=list(PRECISIONS), help="also print the top kernels (eager, CL, fused Adam)"
    )
    args = parser.parse_args()
    rows = []
    for model_name in args.models:
        if args.kernels:
            print(
                f"== {model_name}: top kernels, eager {args.kernels} channels-last fused Adam, 10 steps",
                flush=True,
            )
            print(kernel_table(model_name, args.batch_size, args.kernels), flush=True)
        for label in args.settings:
            try:
                row = time_setting(model_name, label, args.batch_size, args.iters)
            except Exception as exc:  # one failing setting must not lose the others
                print(f"{model_name:14s} {label:30s} failed: {type(exc).__name__}: {exc}"[:300], flush=True)
                continue
            rows.append(row)
            print(f"{model_name:14s} {label:30s} {row['step_ms_median']:.3f} ms/step "
                  f"(IQR {row['step_ms_iqr']:.3f}) ~{row['epoch_s_at_391_steps']:.2f} s/epoch, "
                  f"warm-up+compile {row['warmup_and_compile_s']:.1f} s", flush=True)  # fmt: skip
            args.out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
