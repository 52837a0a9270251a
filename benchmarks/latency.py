"""profile --latency against hand-timed loops: each model at batch 1 through eager, torch.compile, ONNX
Runtime and AOTInductor as cnnbench measures them, beside a plain loop over the eager model (CUDA events
around each request on a GPU) and one over ``onnxruntime.InferenceSession.run`` (where onnxruntime is
installed), same threads, same input, same number of requests, the hand loops run before and after.

    python benchmarks/latency.py --out results/latency/cpu [--device cuda] [--requests 300] [--threads N]

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
    cuda = x.is_cuda
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(requests):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def hand_loops(model, session, x, warmup: int, requests: int) -> dict[str, list[float]]:
    """The eager model and the ONNX Runtime session, each timed by a plain loop."""
    with torch.inference_mode():
        eager = hand_loop(model, x, warmup, requests)
    if session is None:
        return {"eager": eager}
    onnx = hand_loop(lambda t: session.run(None, {"x": t.cpu().numpy()}), x.cpu(), warmup, requests)
    return {"eager": eager, "onnxruntime": onnx}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/latency"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--backends", default="eager,compile,onnxruntime,aotinductor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="Comma-separated, of the five above.")
    args = parser.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:  # the GPU machine may not have it: its rows say so, its hand loop is left out
        ort = None

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    rows, hand = [], []
    for name in args.models.split(","):
        shape = MODELS[name]
        classes = 1000 if name.startswith("torchvision:") else 10
        torch.manual_seed(0)
        model = cnnbench.create_model(name, input_size=shape, num_classes=classes).eval()
        x = torch.randn(1, *shape)
        with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = None
            if ort is not None:
                path = f"{scratch}/m.onnx"
                torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=False)
                options = ort.SessionOptions()
                options.intra_op_num_threads = args.threads
                cuda = (
                    args.device.startswith("cuda")
                    and "CUDAExecutionProvider" in ort.get_available_providers()
                )
                providers = (
                    ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
                )
                session = ort.InferenceSession(path, options, providers=providers)
            model, x = model.to(args.device), x.to(args.device)

            # The hand loops run before and after cnnbench's, so a drift of the machine falls on both.
            before = hand_loops(model, session, x, args.warmup, args.requests)
            profiled = cnnbench.profile(name, input_size=shape, num_classes=classes, latency=True,
                                        backends=args.backends.split(","), requests=args.requests,
                                        warmup=args.warmup, threads=args.threads, device=args.device, out=args.out)  # fmt: skip
            after = hand_loops(model, session, x, args.warmup, args.requests)
        rows.append(profiled.rows)
        by_backend = profiled.rows.set_index("backend")
        print(
            profiled.rows[["model", "backend", "latency_ms_p50", "latency_ms_p99", "status"]].to_string(),
            flush=True,
        )
        for backend in before:
            times = before[backend] + after[backend]
            p50, p99 = np.percentile(times, [50, 99])
            ours = float(by_backend.latency_ms_p50[backend]) if backend in by_backend.index else float("nan")
            hand.append({"model": name, "input_size": "x".join(map(str, shape)), "backend": backend,
                         "threads": args.threads, "requests": args.requests, "hand_p50_ms": p50, "hand_p99_ms": p99,
                         "hand_p50_before_ms": float(np.median(before[backend])),
                         "hand_p50_after_ms": float(np.median(after[backend])),
                         "cnnbench_p50_ms": ours, "cnnbench_over_hand": ours / p50,
                         "within_5pct": abs(ours / p50 - 1) <= 0.05, "device": args.device,
                         "gpu_name": profiled.rows.gpu_name.iloc[0], "cpu": profiled.rows.cpu_model.iloc[0],
                         "torch_version": torch.__version__,
                         "onnxruntime_version": ort.__version__ if ort is not None else ""})  # fmt: skip
            print(hand[-1], flush=True)
    pd.DataFrame(hand).to_csv(args.out / "hand_loops.csv", index=False)


if __name__ == "__main__":
    main()
