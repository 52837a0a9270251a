"""summary's memory estimate against the measured peak of one training step, for every registered model
at batch 128 on CIFAR-sized input (3x32x32, 10 classes), fp32 and bf16. Needs a CUDA GPU.

The measured peak is ``torch.cuda.max_memory_allocated`` over one eager training step after warm-up,
with cuBLAS's workspaces freed before the model is built (``cnnbench profile``'s peak column); the
estimate is weights + gradients + Adam state + saved activations + cuBLAS workspaces (``cnnbench
summary -b 128`` on a GPU machine). Models that cannot take 32x32 input get a row with their error.

    python benchmarks/memory_table.py --out results/memory/memory.csv
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

import cnnbench
from cnnbench.errors import CnnbenchError
from cnnbench.measure.memory import (
    cublas_workspace_bytes,  # what the estimate adds for cuBLAS: an internal figure
)
from cnnbench.training.status import failed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/memory/memory.csv"))
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    rows = []
    for precision in ("fp32", "bf16"):
        for name in cnnbench.list_models():
            base = {
                "model": name,
                "precision": precision,
                "batch_size": args.batch_size,
                "input_size": "3x32x32",
            }
            try:
                row = cnnbench.profile(name, input_size=(3, 32, 32), num_classes=10, batch_sizes=[args.batch_size],
                                       modes=["train"], precision=precision, device="cuda", warmup=3, iters=5,
                                       out=Path(tempfile.mkdtemp())).rows.iloc[0]  # fmt: skip
            except CnnbenchError as exc:
                rows.append({**base, "status": failed(str(exc))})
                continue
            est, peak = row["estimated_mem_MiB"], row.get("peak_mem_MiB")
            rows.append({**base, "status": row["status"], "estimated_MiB": est, "measured_peak_MiB": peak,
                         "estimate_over_measured": est / peak if peak else None,
                         "cublas_workspace_MiB": (cublas_workspace_bytes("cuda", precision) or 0) / 2**20,
                         "gpu_name": row["gpu_name"],
                         "torch_version": row["torch_version"], "date": row["date"]})  # fmt: skip
            print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
