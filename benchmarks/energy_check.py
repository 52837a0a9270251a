"""NVML's energy counter against its power sampled every 20 ms and integrated, over the same training run
on one GPU: the two must agree within 5% (results/energy/counter_vs_sampling.csv).

    python benchmarks/energy_check.py --out results/energy [--model simple_resnet --epochs 20]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cnnbench
from cnnbench import energy  # the meter under test, read beside the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="simple_resnet")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    nvml = energy._nvml()
    if nvml is None:
        raise SystemExit("no NVML here: this check needs an NVIDIA GPU")
    index = energy.nvml_index("cuda:0")
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    counter = energy.gpu_meter([index], nvml)
    sampler = energy.PowerSampler(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1e3)
    start = time.monotonic()
    counted0, sampled0 = counter.read(), sampler.read()
    run = cnnbench.train(
        args.model, epochs=args.epochs, device="cuda", out=args.out / "store", checkpoints=False
    )
    counted, sampled = counter.read() - counted0, sampler.read() - sampled0
    seconds = time.monotonic() - start
    sampler.close()
    env = run.summary  # the run's row: its card, torch and date
    row = {"model": args.model, "epochs": args.epochs, "window_s": round(seconds, 2), "counter_J": round(counted, 1),
           "sampled_J": round(sampled, 1), "sampled_over_counter": round(sampled / counted, 4),
           "run_energy_train_J": round(run.summary["energy_train_J"], 1), "gpu": env["gpu_name"],
           "torch": env["torch_version"], "date": env["date"]}  # fmt: skip
    with open(args.out / "counter_vs_sampling.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    print(row)


if __name__ == "__main__":
    main()
