"""profile --latency against hand-timed loops: each model at batch 1 through eager, torch.compile, ONNX
Runtime and AOTInductor as cnnbench measures them (latency.csv), then cnnbench's eager and ONNX Runtime
figures checked against plain loops over the eager model (CUDA events around each request on a GPU) and
over ``onnxruntime.InferenceSession.run`` (where onnxruntime is installed): same threads, same input,
same number of requests.

The check interleaves: ``--rounds`` rounds, each timing the hand loops and a ``cnnbench.profile`` call back
to back, in alternating order (hand first in even rounds, cnnbench first in odd ones), so a machine that
drifts (a shared host, a CPU's clock) moves both sides alike. Each round gives a ratio, cnnbench's p50
over the hand loop's p50; the answer is their geometric mean with a 95% t-interval over the rounds.

    python benchmarks/latency.py --out results/latency/cpu [--device cuda] [--requests 300] [--threads N]
        [--rounds 5] [--no-sweep]

Writes latency.csv (cnnbench's rows of the sweep), check/latency.csv (cnnbench's rows of each round),
hand_rounds.csv (each round's p50s) and hand_loops.csv (per model and backend: the ratio and its interval).
"""

from __future__ import annotations

import argparse
import math
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
CHECKED = ("eager", "onnxruntime")  # the backends a hand loop stands beside


def hand_loop(run, x, warmup: int, requests: int) -> list[float]:
    cuda = x.is_cuda
    for _ in range(warmup):
        run(x)
    if cuda:
        torch.cuda.synchronize()
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


def onnx_session(model, x, path: str, threads: int, device: str):
    """The model exported and opened in ONNX Runtime by hand (CUDA provider where the device is a GPU and
    the installed onnxruntime has it), or None where onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    cuda = device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    return ort.InferenceSession(path, options, providers=providers)


def hand_loops(model, session, x, warmup: int, requests: int) -> dict[str, float]:
    """The p50 (ms) of a plain loop over the eager model and one over the ONNX Runtime session."""
    with torch.inference_mode():
        p50 = {"eager": float(np.median(hand_loop(model, x, warmup, requests)))}
    if session is not None:  # a request hands the session a host array, as cnnbench's does
        run = lambda t: session.run(None, {"x": t.detach().cpu().numpy()})  # noqa: E731
        p50["onnxruntime"] = float(np.median(hand_loop(run, x, warmup, requests)))
    return p50


def ratio_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of the ratios and its 95% t-interval (over rounds, on the log scale)."""
    from scipy import stats

    logs = np.log(np.asarray(ratios, dtype=float))
    mean = float(logs.mean())
    if len(logs) < 2:
        return math.exp(mean), math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs)))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def check(name: str, args, classes: int, rounds_out: list[dict], summary_out: list[dict]) -> None:
    shape = MODELS[name]
    torch.manual_seed(0)
    model = cnnbench.create_model(name, input_size=shape, num_classes=classes).eval()
    x = torch.randn(1, *shape)
    with tempfile.TemporaryDirectory() as scratch:
        session = onnx_session(model, x, f"{scratch}/m.onnx", args.threads, args.device)
        provider = session.get_providers()[0] if session is not None else ""
        model, x = model.to(args.device), x.to(args.device)
        backends = [b for b in CHECKED if b != "onnxruntime" or session is not None]
        for r in range(args.rounds):

            def ours() -> pd.DataFrame:
                return cnnbench.profile(name, input_size=shape, num_classes=classes, latency=True,
                                        backends=backends, requests=args.requests, warmup=args.warmup,
                                        threads=args.threads, device=args.device, out=args.out / "check").rows  # fmt: skip

            if r % 2 == 0:
                hand = hand_loops(model, session, x, args.warmup, args.requests)
                rows = ours()
            else:
                rows = ours()
                hand = hand_loops(model, session, x, args.warmup, args.requests)
            by_backend = rows.set_index("backend")
            for backend, hand_p50 in hand.items():
                mine = float(by_backend.latency_ms_p50[backend])
                rounds_out.append({"model": name, "backend": backend, "round": r,
                                   "order": "hand first" if r % 2 == 0 else "cnnbench first",
                                   "hand_p50_ms": hand_p50, "cnnbench_p50_ms": mine, "ratio": mine / hand_p50,
                                   "cnnbench_provider": by_backend.provider[backend], "hand_provider":
                                   provider if backend == "onnxruntime" else ""})  # fmt: skip
                print(rounds_out[-1], flush=True)
    for backend in backends:
        mine = [row for row in rounds_out if row["model"] == name and row["backend"] == backend]
        ratio, low, high = ratio_interval([row["ratio"] for row in mine])
        summary_out.append({"model": name, "input_size": "x".join(map(str, shape)), "backend": backend,
                            "threads": args.threads, "requests_per_round": args.requests, "rounds": args.rounds,
                            "hand_p50_ms_median": float(np.median([row["hand_p50_ms"] for row in mine])),
                            "cnnbench_p50_ms_median": float(np.median([row["cnnbench_p50_ms"] for row in mine])),
                            "cnnbench_over_hand": ratio, "ci95_low": low, "ci95_high": high,
                            "round_ratio_min": min(row["ratio"] for row in mine),
                            "round_ratio_max": max(row["ratio"] for row in mine),
                            "within_5pct": abs(ratio - 1) <= 0.05,
                            "interval_within_5pct": 0.95 <= low and high <= 1.05,
                            "provider": mine[0]["cnnbench_provider"], "device": args.device,
                            "gpu_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "",
                            "torch_version": torch.__version__})  # fmt: skip
        print(summary_out[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/latency"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--backends", default="eager,compile,onnxruntime,aotinductor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="Comma-separated, of the five above.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds of the hand-loop check.")
    parser.add_argument("--no-sweep", action="store_true", help="Only the hand-loop check.")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    for name in names if not args.no_sweep else []:
        shape = MODELS[name]
        classes = 1000 if name.startswith("torchvision:") else 10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = cnnbench.profile(name, input_size=shape, num_classes=classes, latency=True,
                                    backends=args.backends.split(","), requests=args.requests, warmup=args.warmup,
                                    threads=args.threads, device=args.device, out=args.out).rows  # fmt: skip
        print(rows[["model", "backend", "provider", "latency_ms_p50", "latency_ms_p99", "status"]].to_string(),
              flush=True)  # fmt: skip
    rounds, summary = [], []
    for name in names:
        check(name, args, 1000 if name.startswith("torchvision:") else 10, rounds, summary)
        pd.DataFrame(rounds).to_csv(args.out / "hand_rounds.csv", index=False)
        pd.DataFrame(summary).to_csv(args.out / "hand_loops.csv", index=False)


if __name__ == "__main__":
    main()
