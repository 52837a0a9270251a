"""What --deterministic costs in epoch time for the chapter's three models on CIFAR-10: the same run
with and without it, in one process on one card, 4 epochs each (median epoch time). Needs a CUDA GPU
and CIFAR-10 where cnnbench finds it.

    python benchmarks/deterministic_cost.py --data-dir DIR --out results/deterministic/cost.csv
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

import cnnbench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/deterministic/cost.csv"))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    rows = []
    for model in ("lenet5", "cifar10net", "simple_resnet"):
        times = {}
        for deterministic in (False, True):
            run = cnnbench.train(model, data_dir=args.data_dir, epochs=args.epochs, deterministic=deterministic,
                                 checkpoints=False, out=Path(tempfile.mkdtemp()))  # fmt: skip
            times[deterministic] = run.summary
        plain, det = times[False], times[True]
        rows.append({"model": model, "epochs": args.epochs, "median_epoch_s": plain["median_epoch_s"],
                     "median_epoch_s_deterministic": det["median_epoch_s"],
                     "slowdown_x": det["median_epoch_s"] / plain["median_epoch_s"],
                     "warmup_s": plain["warmup_s"], "warmup_s_deterministic": det["warmup_s"],
                     "gpu_name": plain["gpu_name"], "torch_version": plain["torch_version"],
                     "cudnn_version": plain["cudnn_version"], "date": plain["date"]})  # fmt: skip
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
