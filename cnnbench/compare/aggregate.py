"""A comparison's numbers: one tidy row per variant and seed (the run's own numbers, as runs.csv names
them, and what only a comparison derives from its epochs), and one aggregated row per variant (mean and
std over seeds, and with two or more seeds the difference from the baseline with its 95% interval)."""

from __future__ import annotations

import math
from typing import Any

from cnnbench.compare.variants import Variant
from cnnbench.stats import welch_interval

# A run's own numbers, under the names runs.csv gives them, that the tidy table carries over.
RUN_NUMBERS = (
    "params", "forward_MACs_per_sample", "train_FLOPs_per_sample", "epochs_done", "median_epoch_s", "iqr_epoch_s",
    "total_train_s", "best_test_acc", "final_test_acc", "final_train_acc", "warmup_s", "peak_gpu_mem_MiB",
)  # fmt: skip
# Names that tidy tables written by cnnbench 0.1 used for those numbers.
LEGACY_NAMES = {
    "median_epoch_time_s": "median_epoch_s", "iqr_epoch_time_s": "iqr_epoch_s", "total_train_time_s": "total_train_s",
    "best_test_acc_pct": "best_test_acc", "final_test_acc_pct": "final_test_acc",
    "final_train_acc_pct": "final_train_acc",
}  # fmt: skip
# The columns of the tidy table that --from needs, and those of them that hold numbers.
TIDY_COLUMNS = ("variant", "model", "options", "seed", "status", "run_id", "epochs_done")
TIDY_NUMBERS = (
    "seed", *RUN_NUMBERS, "epochs_to_95pct_of_best", "train_test_gap_pct_points",
)  # fmt: skip


def _convergence_epoch(accs: list[float]) -> float:
    """Epochs to reach 95% of the best test accuracy."""
    if not accs:
        return math.nan
    target = 0.95 * max(accs)
    return float(next(i for i, a in enumerate(accs, start=1) if a >= target))


def tidy_row(variant: Variant, seed: int, summary: dict[str, Any] | None, epochs: list[dict[str, Any]],
              status: str, reused: bool) -> dict[str, Any]:  # fmt: skip
    """The run's summary numbers as runs.csv names them, and what only a comparison derives from its
    epochs (epochs to 95% of the best accuracy, the final train-test gap)."""
    s = summary or {}
    last = epochs[-1] if epochs else {}
    return {
        "variant": variant.label,
        "model": variant.model,
        "options": ";".join(f"{k}={v}" for k, v in variant.options),
        "seed": seed,
        "status": status,
        "reused": reused,
        "run_id": s.get("run_id", ""),
        **{k: s.get(k, 0 if k == "epochs_done" else math.nan) for k in RUN_NUMBERS},
        "epochs_to_95pct_of_best": _convergence_epoch([e["test_acc"] for e in epochs]),
        "train_test_gap_pct_points": last.get("train_acc", math.nan) - last.get("test_acc", math.nan),
    }


def aggregate(tidy: Any, baseline: str | None = None) -> Any:
    """One row per variant: mean and std over seeds, epoch time as median and IQR over seeds' medians;
    with two or more seeds, each variant's difference in best test accuracy from ``baseline`` (the
    first variant by default) with its 95% confidence interval (Welch's t)."""
    import pandas as pd

    rows = []
    for variant, group in tidy.groupby("variant", sort=False):
        ok = group[group.epochs_done > 0]
        statuses = sorted(set(group.status))

        def mean(col: str, ok: Any = ok) -> float:
            return float(ok[col].mean()) if len(ok) else math.nan

        def std(col: str, ok: Any = ok) -> float:
            return float(ok[col].std(ddof=1)) if len(ok) > 1 else math.nan

        rows.append({
            "variant": variant,
            "seeds": len(group),
            "status": statuses[0] if len(statuses) == 1 else ", ".join(statuses),
            "params": group.params.iloc[0],
            "forward_MACs_per_sample": group.forward_MACs_per_sample.iloc[0],
            "train_FLOPs_per_sample": group.train_FLOPs_per_sample.iloc[0],
            "median_epoch_s": float(ok.median_epoch_s.median()) if len(ok) else math.nan,
            "iqr_epoch_s": mean("iqr_epoch_s"),
            "total_train_s": mean("total_train_s"),
            "best_test_acc_mean": mean("best_test_acc"),
            "best_test_acc_std": std("best_test_acc"),
            "final_test_acc_mean": mean("final_test_acc"),
            "final_test_acc_std": std("final_test_acc"),
            "epochs_to_95pct_of_best": mean("epochs_to_95pct_of_best"),
            "train_test_gap_pct_points": mean("train_test_gap_pct_points"),
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    reference = baseline or frame.variant.iloc[0]
    accs = {
        v: g[g.epochs_done > 0].best_test_acc.dropna().tolist()
        for v, g in tidy.groupby("variant", sort=False)
    }
    deltas = [welch_interval(accs.get(v, []), accs.get(reference, [])) for v in frame.variant]
    frame["baseline"] = reference
    frame["delta_best_acc"] = [d[0] for d in deltas]
    frame["delta_ci95_low"] = [d[1] for d in deltas]
    frame["delta_ci95_high"] = [d[2] for d in deltas]
    frame["delta_significant"] = [bool(lo > 0 or hi < 0) for _, lo, hi in deltas]
    return frame
