"""A comparison's numbers: one tidy row per variant and seed (the run's own numbers, as runs.csv names
them, and what only a comparison derives from its epochs), and one aggregated row per variant (mean and
std over seeds, and with two or more seeds the difference from the baseline with its 95% interval).

The headline accuracy is the final one, the last epoch's: the best epoch by test accuracy selects a model
on the test set, so it is biased upward; it is kept beside, named for what it is. Differences are
measured on final accuracy; with three or more variants their significance is Holm-adjusted."""

from __future__ import annotations

import math
from typing import Any

from cnnbench.comparison.latency import add_latency
from cnnbench.comparison.variants import Variant
from cnnbench.stats import welch_interval, welch_p

# A run's own numbers, under the names runs.csv gives them, that the tidy table carries over.
RUN_NUMBERS = (
    "params", "forward_MACs_per_sample", "train_FLOPs_per_sample", "epochs_done", "median_epoch_s", "iqr_epoch_s",
    "total_train_s", "best_test_acc", "final_test_acc", "final_train_acc", "warmup_s", "peak_gpu_mem_MiB",
    "final_val_acc", "best_val_acc", "best_val_epoch", "test_at_best_val", "train_eval_acc",
    "energy_train_J", "energy_eval_J", "energy_per_epoch_J", "J_per_image", "mean_power_W", "gpu_hours",
    "idle_power_W",
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
    "seed", *RUN_NUMBERS, "epochs_to_95pct_of_best", "train_test_gap_pct_points", "epochs_to_target",
    "seconds_to_target", "energy_to_target_J",
)  # fmt: skip
# Significance marks: Welch's t against the baseline, Holm-adjusted across variants when there are 3+.
ALPHA = 0.05


def _convergence_epoch(accs: list[float]) -> float:
    """Epochs to reach 95% of the best test accuracy."""
    if not accs:
        return math.nan
    target = 0.95 * max(accs)
    return float(next(i for i, a in enumerate(accs, start=1) if a >= target))


def tidy_row(variant: Variant, seed: int, summary: dict[str, Any] | None, epochs: list[dict[str, Any]],
             status: str, reused: bool, target_acc: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The run's summary numbers as runs.csv names them, and what only a comparison derives from its
    epochs: epochs to 95% of the best accuracy, time to ``target_acc``, and the final train-test gap
    (training accuracy measured in eval mode over the training images where the run has it, else the
    last epoch's running accuracy in train mode, as ``train_acc_basis`` says)."""
    from cnnbench.store.runs import time_to_accuracy

    s = summary or {}
    last = epochs[-1] if epochs else {}
    measured = s.get("train_eval_acc")
    if isinstance(measured, (int, float)) and math.isfinite(measured):
        train_acc, basis = float(measured), "eval mode"
    else:
        train_acc, basis = float(last.get("train_acc", math.nan)), "running, train mode"
    reached = time_to_accuracy(epochs, target_acc)
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
        "train_test_gap_pct_points": train_acc - last.get("test_acc", math.nan),
        "train_acc_basis": basis if epochs else "",
        "target_acc": target_acc,
        "epochs_to_target": reached["epochs_to_target"],
        "seconds_to_target": reached["seconds_to_target"],
        "energy_to_target_J": reached["energy_to_target_J"],
        "energy_method": s.get("energy_method") or "none",
        "energy_shared": bool(s.get("energy_shared")),
    }


def aggregate(tidy: Any, baseline: str | None = None, price_per_gpu_hour: float | None = None,
              latency: Any = None) -> Any:  # fmt: skip
    """One row per variant: mean and std over seeds, epoch time as median and IQR over seeds' medians;
    with ``latency`` (the rows of ``compare --latency``), each variant's p50 and p99 per backend;
    time to the target accuracy over the seeds that reached it, and how many did; with two or more
    seeds, each variant's difference in final test accuracy from ``baseline`` (the first variant by
    default) with its 95% confidence interval and p-value (Welch's t), Holm-adjusted across the
    variants when there are three or more (and, as before, the difference in best test accuracy)."""
    import pandas as pd

    tidy = tidy.copy()
    for column in (*TIDY_NUMBERS, "target_acc"):  # a comparison saved before a column existed: missing
        if column not in tidy.columns:
            tidy[column] = math.nan
    rows = []
    for variant, group in tidy.groupby("variant", sort=False):
        ok = group[group.epochs_done > 0]
        statuses = sorted(set(group.status))

        def mean(col: str, ok: Any = ok) -> float:
            values = ok[col].dropna()
            return float(values.mean()) if len(values) else math.nan

        def std(col: str, ok: Any = ok) -> float:
            values = ok[col].dropna()
            return float(values.std(ddof=1)) if len(values) > 1 else math.nan

        reached = ok.seconds_to_target.notna()
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
            "test_at_best_val_mean": mean("test_at_best_val"),
            "test_at_best_val_std": std("test_at_best_val"),
            "final_val_acc_mean": mean("final_val_acc"),
            "epochs_to_95pct_of_best": mean("epochs_to_95pct_of_best"),
            "train_test_gap_pct_points": mean("train_test_gap_pct_points"),
            "seconds_to_target_mean": mean("seconds_to_target", ok[reached]),
            "seconds_to_target_std": std("seconds_to_target", ok[reached]),
            "epochs_to_target_mean": mean("epochs_to_target", ok[reached]),
            "seeds_reaching_target": int(reached.sum()) if ok.target_acc.notna().any() else math.nan,
            "energy_per_epoch_J_mean": mean("energy_per_epoch_J"),
            "energy_per_epoch_J_std": std("energy_per_epoch_J"),
            "energy_train_J_mean": mean("energy_train_J"),
            "J_per_image_mean": mean("J_per_image"),
            "mean_power_W": mean("mean_power_W"),
            "idle_power_W": mean("idle_power_W"),
            "energy_to_target_J_mean": mean("energy_to_target_J", ok[reached]),
            "gpu_hours_mean": mean("gpu_hours"),
            # a run on the CPU used no GPU-hours: its cost at a GPU's price is no number, not 0
            "cost_mean": mean("gpu_hours") * price_per_gpu_hour
            if price_per_gpu_hour is not None and mean("gpu_hours") > 0
            else math.nan,
            "energy_shared": bool(ok.energy_shared.any()) if "energy_shared" in ok else False,
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.attrs["price_per_gpu_hour"] = price_per_gpu_hour
    if frame.empty:
        return frame
    frame["energy_pareto"] = pareto_front(
        frame.final_test_acc_mean.tolist(), frame.energy_train_J_mean.tolist()
    )
    reference = baseline or frame.variant.iloc[0]
    frame["baseline"] = reference
    for column, name in (("best_test_acc", "best"), ("final_test_acc", "final")):
        accs = {
            v: g[g.epochs_done > 0][column].dropna().tolist() for v, g in tidy.groupby("variant", sort=False)
        }
        deltas = [welch_interval(accs.get(v, []), accs.get(reference, [])) for v in frame.variant]
        prefix = "delta_" if name == "best" else "delta_final_"
        frame["delta_best_acc" if name == "best" else "delta_final_acc"] = [d[0] for d in deltas]
        frame[f"{prefix}ci95_low"] = [d[1] for d in deltas]
        frame[f"{prefix}ci95_high"] = [d[2] for d in deltas]
        if name == "best":
            frame["delta_significant"] = [bool(lo > 0 or hi < 0) for _, lo, hi in deltas]
            continue
        p = [
            welch_p(accs.get(v, []), accs.get(reference, [])) if v != reference else math.nan
            for v in frame.variant
        ]
        frame["delta_final_p"] = p
        frame["delta_final_p_holm"] = holm(p) if len(frame) >= 3 else [math.nan] * len(p)
        marked = frame.delta_final_p_holm if len(frame) >= 3 else frame.delta_final_p
        frame["delta_final_significant"] = [bool(m < ALPHA) if math.isfinite(m) else False for m in marked]
    return add_latency(frame, latency)


def pareto_front(accuracy: list[float], energy: list[float]) -> list[bool]:
    """Which variants no other beats on both counts (at least as accurate for at most as much energy, and
    better in one): the front of accuracy against energy. Variants without both numbers are not on it."""
    points = [(a, e) for a, e in zip(accuracy, energy, strict=True)]
    known = [math.isfinite(a) and math.isfinite(e) for a, e in points]

    def beaten(i: int) -> bool:
        a, e = points[i]
        return any(known[j] and j != i and points[j][0] >= a and points[j][1] <= e and points[j] != (a, e)
                   for j in range(len(points)))  # fmt: skip

    return [known[i] and not beaten(i) for i in range(len(points))]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of the p-values that exist (NaN stays NaN), from statsmodels."""
    index = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    adjusted = [math.nan] * len(p_values)
    if index:
        from statsmodels.stats.multitest import multipletests  # here: it imports scipy, a second

        for i, value in zip(
            index, multipletests([p_values[i] for i in index], method="holm")[1], strict=True
        ):
            adjusted[i] = float(value)
    return adjusted
