"""``cnnbench summary`` against torchinfo's summary of the same model, whole processes on this machine's
CPU, median of N alternated runs: the ratio of their wall times (results/summary_speed/). cnnbench runs
twice each round: with an empty cache of counts (the first summary of a model: everything counted, as
torchinfo counts it) and with the counts the first run left (a later summary of the same model).

    pip install torchinfo  # not a dependency of cnnbench: only this comparison uses it
    python benchmarks/summary_vs_torchinfo.py --out results/summary_speed [--model resnet50 --size 224 --runs 5]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TORCHINFO = """
import torch, torchvision, torchinfo
model = getattr(torchvision.models, "{model}")()
torchinfo.summary(model, input_size=(1, 3, {size}, {size}), depth=3)
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def torch_version() -> str:
    return subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cold, warm, torchinfo = [], [], []
    # As users run them: Python keeps the bytecode it compiles (a sandbox may switch that off).
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [
        sys.executable,
        "-m",
        "cnnbench",
        "summary",
        f"torchvision:{args.model}",
        "-i",
        f"3x{args.size}x{args.size}",
    ]
    for _ in range(args.runs):  # alternated, so a busy moment costs all alike
        with tempfile.TemporaryDirectory() as store:
            env = {**base, "CNNBENCH_CACHE_DIR": store}
            cold.append(timed([*command, "--out", store], env))
            warm.append(timed([*command, "--out", store], env))
        torchinfo.append(
            timed([sys.executable, "-c", TORCHINFO.format(model=args.model, size=args.size)], base)
        )
    med = statistics.median
    row = {"model": args.model, "input_size": f"3x{args.size}x{args.size}", "runs": args.runs,
           "torchinfo_s_median": round(med(torchinfo), 2),
           "cnnbench_first_s_median": round(med(cold), 2), "ratio_first": round(med(cold) / med(torchinfo), 3),
           "cnnbench_later_s_median": round(med(warm), 2), "ratio_later": round(med(warm) / med(torchinfo), 3),
           "torchinfo_s": " ".join(f"{t:.2f}" for t in torchinfo), "cnnbench_first_s": " ".join(f"{t:.2f}" for t in cold),
           "cnnbench_later_s": " ".join(f"{t:.2f}" for t in warm), "torch": torch_version(),
           "cpu": f"{os.cpu_count()} cores", "date": datetime.date.today().isoformat()}  # fmt: skip
    path = args.out / "summary_vs_torchinfo.csv"
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(row)


if __name__ == "__main__":
    main()
