"""Profile the chapter's architectures at CIFAR-10 size, batch 128, fp32 and bf16, both modes.

python benchmarks/profile_chapter.py --out results/profile_chapter
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import cnnbench

MODELS = ("lenet5", "alexnet", "vgg16", "vgg16_bn", "simple_resnet", "cifar10net", "cnn_dropout", "resnet18")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/profile_chapter"))
    args = parser.parse_args()
    rows = []
    for precision in ("fp32", "bf16"):
        for model in MODELS:
            rows.append(cnnbench.profile(model, dataset="cifar10", batch_sizes=[128], precision=precision,
                                         channels_last=precision == "bf16", device="cuda", out=args.out).rows)  # fmt: skip
    table = pd.concat(rows)[["model", "precision", "channels_last", "mode", "batch_size", "step_ms_median",
                                "step_ms_iqr", "samples_per_s", "achieved_TFLOPs", "MFU_pct", "peak_mem_MiB", "status"]]  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
