"""profile --latency against hand-timed loops, on this machine's CPU: each model at batch 1 through eager,
torch.compile, ONNX Runtime and AOTInductor as cnnbench measures them, beside a plain loop over the eager
model and one over ``onnxruntime.InferenceSession.run``, same threads, same input, same number of requests.

    python benchmarks/latency_cpu.py --out results/latency [--requests 300] [--threads N]

Writes latency.csv (cnnbench's rows) and hand_loops.csv (per model: hand p50/p99 and cnnbench's p50 over
them for eager and onnxruntime) under --out.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import cnnbench

MODELS = {  # name -> input size
    "torchvision:resnet18": (3, 224, 224),
    "torchvision:mobilenet_v3_small": (3, 224, 224),
    "lenet5": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "simple_resnet": (3, 32, 32),
}


def hand_loop(run, x, warmup: int, requests: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/latency"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--backends", default="eager,compile,onnxruntime,aotinductor")
    args = parser.parse_args()
    import onnxruntime as ort

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    rows, hand = [], []
    for name, shape in MODELS.items():
        classes = 1000 if name.startswith("torchvision:") else 10
        profiled = cnnbench.profile(name, input_size=shape, num_classes=classes, latency=True,
                                    backends=args.backends.split(","), requests=args.requests, warmup=args.warmup,
                                    threads=args.threads, device="cpu", out=args.out)  # fmt: skip
        rows.append(profiled.rows)
        by_backend = profiled.rows.set_index("backend")
        print(
            profiled.rows[["model", "backend", "latency_ms_p50", "latency_ms_p99", "status"]].to_string(),
            flush=True,
        )
        torch.manual_seed(0)
        model = cnnbench.create_model(name, input_size=shape, num_classes=classes).eval()
        x = torch.randn(1, *shape)
        with torch.inference_mode():
            eager = hand_loop(model, x, args.warmup, args.requests)
        with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = f"{scratch}/m.onnx"
            torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            ort_times = hand_loop(
                lambda t, s=session: s.run(None, {"x": t.numpy()}), x, args.warmup, args.requests
            )
        for backend, times in (("eager", eager), ("onnxruntime", ort_times)):
            p50, p99 = np.percentile(times, [50, 99])
            ours = float(by_backend.latency_ms_p50[backend]) if backend in by_backend.index else float("nan")
            hand.append({"model": name, "input_size": "x".join(map(str, shape)), "backend": backend,
                         "threads": args.threads, "requests": args.requests, "hand_p50_ms": p50, "hand_p99_ms": p99,
                         "cnnbench_p50_ms": ours, "cnnbench_over_hand": ours / p50,
                         "within_5pct": abs(ours / p50 - 1) <= 0.05, "cpu": profiled.rows.cpu_model.iloc[0],
                         "torch_version": torch.__version__, "onnxruntime_version": ort.__version__})  # fmt: skip
            print(hand[-1], flush=True)
    pd.DataFrame(hand).to_csv(args.out / "hand_loops.csv", index=False)


if __name__ == "__main__":
    main()
