"""Does `cnnbench profile` report the step time a plain hand-timed loop measures, on the same card?

resnet18 at 3x224x224, batch 256, bf16 autocast, channels-last, training step (forward, loss, backward,
Adam). Order A-B-A: hand loop, profile, hand loop, so drift shows up. The hand loop times blocks of
steps with one pair of CUDA events per block (no per-step events), so if profile's per-step events
slowed the steps, profile's median would exceed the hand loop's.

    python benchmarks/profile_fidelity.py --out results/profile_fidelity.csv
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import torch

import cnnbench
from cnnbench.store.tables import environment

MODEL, BATCH, SHAPE = "resnet18", 256, (3, 224, 224)


def hand_loop(blocks: int = 5, steps: int = 20, warmup: int = 10) -> list[float]:
    torch.manual_seed(0)
    model = cnnbench.create_model(MODEL, input_size=SHAPE, num_classes=1000)
    model = model.cuda().to(memory_format=torch.channels_last).train()
    x = torch.randn(BATCH, *SHAPE, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (BATCH,), device="cuda")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    per_step = []
    for _ in range(blocks):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
        per_step.append(start.elapsed_time(end) / steps)
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/profile_fidelity.csv"))
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    first = hand_loop()
    row = cnnbench.profile(
        MODEL, input_size=SHAPE, num_classes=1000, batch_sizes=[BATCH], modes=["train"], precision="bf16",
        channels_last=True, device="cuda", warmup=10, iters=100, out=args.out.parent / "profile_fidelity_rows",
    ).rows.iloc[0]  # fmt: skip
    second = hand_loop()
    hand = statistics.median(first + second)
    result = {
        "model": MODEL, "input_size": "3x224x224", "batch_size": BATCH, "precision": "bf16", "channels_last": True,
        "mode": "train", "profile_step_ms_median": row["step_ms_median"], "profile_step_ms_iqr": row["step_ms_iqr"],
        "hand_step_ms_median": hand, "hand_step_ms_before": statistics.median(first),
        "hand_step_ms_after": statistics.median(second), "profile_over_hand": row["step_ms_median"] / hand,
        "within_5pct": abs(row["step_ms_median"] / hand - 1) <= 0.05, "achieved_TFLOPs": row["achieved_TFLOPs"],
        "MFU_pct": row["MFU_pct"], **environment("cuda"),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([result]).to_csv(args.out, index=False)
    print(pd.Series(result).to_string())


if __name__ == "__main__":
    main()
