"""Train several architectures under identical settings and write one honest table.

Variant grammar: ``MODEL[:k=v[,v2...][:k2=v...]]``. A comma list expands to one variant per value and
several keys expand to their product: ``cnn_dropout:dropout=0,0.3,0.5,0.7`` is four variants.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, InvalidArgumentError
from cnnbench.models import get_model_info
from cnnbench.results import ensure_dir, format_number, missing, write_frame_atomic
from cnnbench.stats import iqr
from cnnbench.train import Callbacks, TrainConfig, planned_conditions

# Statuses of finished runs whose numbers can stand in for a new run with the same conditions.
REUSABLE = ("ok", "not learning", "diverged")
SHARED_CONDITIONS = (
    "dataset", "data_source", "input_size", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "scheduler", "step_size", "gamma", "label_smoothing", "precision", "channels_last", "compile", "cuda_graphs",
    "augment", "device", "gpu_name", "torch_version", "cuda_version", "cudnn_version", "cnnbench_version",
)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    model: str
    options: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return self.model + "".join(f":{k}={v}" for k, v in self.options)


def parse_variants(specs: list[str]) -> list[Variant]:
    """Expand ``MODEL[:k=v,...]`` specs; malformed text or an unknown model is an error."""
    variants: list[Variant] = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        if not name.strip():
            raise InvalidArgumentError(f"expected MODEL[:key=value,...], got {spec!r}")
        model = get_model_info(name).name
        keys: list[str] = []
        values: dict[str, list[str]] = {}
        for item in [t.strip() for t in rest.replace(":", ",").split(",")] if rest else []:
            if "=" in item:
                key, _, value = item.partition("=")
                key = key.strip().lower()
                if not key or key in values:
                    raise InvalidArgumentError(
                        f"expected each key once in {spec!r}, got {key or 'an empty key'!r}"
                    )
                keys.append(key)
                values[key] = []
                item = value.strip()
            elif not keys:
                raise InvalidArgumentError(f"expected key=value after {name}:, got {item!r} in {spec!r}")
            if not item:
                raise InvalidArgumentError(f"expected a value for {keys[-1]} in {spec!r}, got an empty one")
            values[keys[-1]].append(item)
        for combo in itertools.product(*(values[k] for k in keys)):
            variant = Variant(model, tuple(zip(keys, combo, strict=True)))
            if variant not in variants:
                variants.append(variant)
    if not variants:
        raise InvalidArgumentError("expected at least one MODEL to compare, got none")
    return variants


@dataclass
class CompareConfig:
    variants: list[str]
    base: TrainConfig  # the recipe every variant shares; its model and options are replaced
    seeds: int = 1
    name: str | None = None
    rerun: bool = False
    notes: list[str] = field(default_factory=list)  # the user's own, e.g. which copy of the data

    def validate(self) -> None:
        if self.seeds < 1:
            raise InvalidArgumentError(f"expected --seeds >= 1, got {self.seeds}")


@dataclass
class CompareResult:
    name: str
    folder: Path
    tidy: Any  # DataFrame, one row per variant and seed
    epochs: Any  # DataFrame, one row per variant, seed and epoch
    aggregated: Any  # DataFrame, one row per variant
    conditions: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _convergence_epoch(accs: list[float]) -> float:
    """Epochs to reach 95% of the best test accuracy."""
    if not accs:
        return math.nan
    target = 0.95 * max(accs)
    return float(next(i for i, a in enumerate(accs, start=1) if a >= target))


def _tidy_row(variant: Variant, seed: int, summary: dict[str, Any] | None, epochs: list[dict[str, Any]],
              status: str, reused: bool) -> dict[str, Any]:  # fmt: skip
    s = summary or {}
    accs = [e["test_acc"] for e in epochs]
    times = [e["epoch_time_s"] for e in epochs]
    last = epochs[-1] if epochs else {}
    return {
        "variant": variant.label,
        "model": variant.model,
        "options": ";".join(f"{k}={v}" for k, v in variant.options),
        "seed": seed,
        "status": status,
        "reused": reused,
        "run_id": s.get("run_id", ""),
        "params": s.get("params", math.nan),
        "forward_MACs_per_sample": s.get("forward_MACs_per_sample", math.nan),
        "train_FLOPs_per_sample": s.get("train_FLOPs_per_sample", math.nan),
        "epochs_done": len(epochs),
        "median_epoch_time_s": statistics.median(times) if times else math.nan,
        "iqr_epoch_time_s": iqr(times),
        "total_train_time_s": sum(times) if times else math.nan,
        "best_test_acc_pct": max(accs) if accs else math.nan,
        "final_test_acc_pct": last.get("test_acc", math.nan),
        "final_train_acc_pct": last.get("train_acc", math.nan),
        "epochs_to_95pct_of_best": _convergence_epoch(accs),
        "train_test_gap_pct_points": last.get("train_acc", math.nan) - last.get("test_acc", math.nan),
        "warmup_s": s.get("warmup_s", math.nan),
        "peak_gpu_mem_MiB": s.get("peak_gpu_mem_MiB", math.nan),
    }


def _find_reusable(out: Path, conditions_hash: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    import pandas as pd

    runs_csv = out / "runs.csv"
    if not runs_csv.exists():
        return None
    runs = pd.read_csv(runs_csv)
    if "conditions_hash" not in runs.columns:
        return None
    match = runs[(runs.conditions_hash.astype(str) == conditions_hash) & runs.status.isin(REUSABLE)]
    for _, row in match.iloc[::-1].iterrows():
        epochs_csv = Path(row.run_dir) / "epochs.csv"
        if not epochs_csv.exists():
            epochs_csv = out / "runs" / row.run_id / "epochs.csv"
        if epochs_csv.exists():
            epochs = pd.read_csv(epochs_csv).to_dict("records")
            if len(epochs) == int(row.epochs_done):
                return row.to_dict(), epochs
    return None


def run_compare(config: CompareConfig, callbacks: Callable[[str], Callbacks] | None = None,
                log: Callable[[str], None] = lambda _m: None) -> CompareResult:  # fmt: skip
    """Train (or reuse) every variant x seed; one failing variant leaves the others' rows intact."""
    import pandas as pd
    import torch

    from cnnbench.data import load_split
    from cnnbench.device import resolve_device
    from cnnbench.train import Trainer

    config.validate()
    config.base.validate()
    # Problems every variant would share (no GPU, no data) stop the command before anything trains.
    resolve_device(config.base.device)
    for split in ("train", "test"):
        b = config.base
        load_split(b.dataset, split, b.data_dir, synthetic_shape=b.input_size, synthetic_classes=b.num_classes,
                   synthetic_size=b.synthetic_size)  # fmt: skip
    variants = parse_variants(config.variants)
    out = ensure_dir(Path(config.base.out))
    name = config.name or "_".join(dict.fromkeys(v.model for v in variants))[:80]
    folder = ensure_dir(out / "compare" / name)
    tidy_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    notes: list[str] = list(config.notes)
    conditions: dict[str, Any] = {}
    try:
        for variant in variants:
            for i in range(config.seeds):
                seed = config.base.seed + i
                run_config = dataclasses.replace(
                    config.base, model=variant.model, options=dict(variant.options), seed=seed, run_name=None
                )
                summary, epochs, status, reused = None, [], "error", False
                try:
                    planned = planned_conditions(run_config)
                    found = None if config.rerun else _find_reusable(out, planned["conditions_hash"])
                    if found is not None:
                        summary, epochs = found
                        status, reused = str(summary["status"]), True
                        notes.append(
                            f"{variant.label} seed {seed}: reused run {summary['run_id']} (identical conditions)"
                        )
                    else:
                        result = Trainer(run_config, callbacks(variant.label) if callbacks else None).run()
                        summary, status = result.summary, result.status
                        epochs = [dataclasses.asdict(e) for e in result.epochs]
                except torch.cuda.OutOfMemoryError:
                    status = "out of memory"
                except CnnbenchError as exc:
                    status = f"error: {exc}"
                except Exception as exc:  # one variant's failure must not lose the others' rows
                    status = f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if status.startswith("error") or status == "out of memory":
                    log(f"{variant.label} seed {seed}: {status}")
                if summary is not None and not conditions:
                    conditions = {k: summary.get(k) for k in SHARED_CONDITIONS}
                tidy_rows.append(_tidy_row(variant, seed, summary, epochs, status, reused))
                epoch_rows += [{"variant": variant.label, "seed": seed, **e} for e in epochs]
    finally:
        # Written even when interrupted: whatever was measured stays measured.
        tidy = pd.DataFrame(tidy_rows)
        epochs_df = pd.DataFrame(epoch_rows)
        if not tidy.empty:
            _write_meta(folder, conditions, notes)
            write_frame_atomic(tidy, folder / "tidy.csv")
            write_frame_atomic(epochs_df, folder / "epochs.csv")
    result = CompareResult(name, folder, tidy, epochs_df, aggregate(tidy), conditions, notes)
    write_outputs(result)
    return result


def aggregate(tidy: Any) -> Any:
    """One row per variant: mean and std over seeds, epoch time as median and IQR over seeds' medians."""
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
            "median_epoch_time_s": float(ok.median_epoch_time_s.median()) if len(ok) else math.nan,
            "iqr_epoch_time_s": mean("iqr_epoch_time_s"),
            "total_train_time_s": mean("total_train_time_s"),
            "best_test_acc_pct_mean": mean("best_test_acc_pct"),
            "best_test_acc_pct_std": std("best_test_acc_pct"),
            "final_test_acc_pct_mean": mean("final_test_acc_pct"),
            "final_test_acc_pct_std": std("final_test_acc_pct"),
            "epochs_to_95pct_of_best": mean("epochs_to_95pct_of_best"),
            "train_test_gap_pct_points": mean("train_test_gap_pct_points"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def load_compare(source: Path) -> CompareResult:
    """Re-render a comparison from its folder (or its tidy.csv) without training."""
    import pandas as pd

    source = Path(source)
    folder = source.parent if source.suffix == ".csv" else source
    tidy_path = source if source.suffix == ".csv" else folder / "tidy.csv"
    if not tidy_path.is_file():
        raise InvalidArgumentError(f"expected a compare folder or its tidy.csv, got {str(source)!r}")
    tidy = pd.read_csv(tidy_path, keep_default_na=True)
    tidy["options"] = tidy["options"].fillna("")
    tidy["run_id"] = tidy["run_id"].fillna("")
    epochs = (
        pd.read_csv(folder / "epochs.csv")
        if (folder / "epochs.csv").is_file() and (folder / "epochs.csv").stat().st_size > 1
        else pd.DataFrame()
    )
    meta = (
        json.loads((folder / "conditions.json").read_text()) if (folder / "conditions.json").is_file() else {}
    )
    return CompareResult(
        folder.name, folder, tidy, epochs, aggregate(tidy), meta.get("conditions", {}), meta.get("notes", [])
    )


def add_notes(result: CompareResult, notes: list[str]) -> None:
    """Append notes not already there and save them with the conditions (for ``--from --note``)."""
    new = [n for n in dict.fromkeys(notes) if n not in result.notes]
    if new:
        result.notes.extend(new)
        _write_meta(result.folder, result.conditions, result.notes)


def _write_meta(folder: Path, conditions: dict[str, Any], notes: list[str]) -> None:
    """conditions.json: what ``--from`` reads back besides the CSVs."""
    (folder / "conditions.json").write_text(
        json.dumps({"conditions": conditions, "notes": notes}, indent=2, default=str)
    )


# --- files ----------------------------------------------------------------------------------------


def _fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if missing(mean):
        return "-"
    return f"{mean:.{digits}f}" if missing(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_table(aggregated: Any) -> Any:
    """The aggregated table as text cells with units in the column names (for Markdown and LaTeX)."""
    import pandas as pd

    rows = []
    for _, r in aggregated.iterrows():
        rows.append({
            "variant": r.variant,
            "params": format_number(r.params, ",.0f"),
            "fwd MACs/sample (M)": format_number(r.forward_MACs_per_sample / 1e6, ",.1f"),
            "train FLOPs/sample (M)": format_number(r.train_FLOPs_per_sample / 1e6, ",.1f"),
            "epoch time (s, median)": format_number(r.median_epoch_time_s, ".3f"),
            "epoch time IQR (s)": format_number(r.iqr_epoch_time_s, ".3f"),
            "train time (s)": format_number(r.total_train_time_s, ".1f"),
            "best test acc (%)": _fmt_mean_std(r.best_test_acc_pct_mean, r.best_test_acc_pct_std),
            "final test acc (%)": _fmt_mean_std(r.final_test_acc_pct_mean, r.final_test_acc_pct_std),
            "epochs to 95% of best": format_number(r.epochs_to_95pct_of_best, ".1f"),
            "train-test gap (pp)": format_number(r.train_test_gap_pct_points, ".2f"),
            "seeds": str(r.seeds),
            "status": r.status,
        })  # fmt: skip
    return pd.DataFrame(rows)


TERMINAL_HEADERS = {
    "fwd MACs/sample (M)": "MACs (M)",
    "train FLOPs/sample (M)": "train FLOPs (M)",
    "epoch time (s, median)": "epoch s",
    "epoch time IQR (s)": "IQR s",
    "train time (s)": "total s",
    "best test acc (%)": "best acc %",
    "final test acc (%)": "final acc %",
    "epochs to 95% of best": "conv. ep",
    "train-test gap (pp)": "gap pp",
    "seeds": "n",
}


def conditions_text(conditions: dict[str, Any]) -> str:
    c = conditions
    if not c:
        return "conditions: none recorded (no variant ran)"
    device = c.get("gpu_name") or c.get("device")
    return (
        f"{c.get('dataset')} ({c.get('data_source')}), input {c.get('input_size')}, {c.get('epochs')} epochs, "
        f"batch {c.get('batch_size')}, {c.get('optimizer')} lr {c.get('lr')} wd {c.get('weight_decay')}, "
        f"scheduler {c.get('scheduler')} (step {c.get('step_size')}, gamma {c.get('gamma')}), "
        f"label smoothing {c.get('label_smoothing')}, augment {c.get('augment')}, precision {c.get('precision')}, "
        f"channels_last {c.get('channels_last')}, compile {c.get('compile')}, CUDA graphs {c.get('cuda_graphs')}; "
        f"device {device}; torch {c.get('torch_version')}, CUDA {c.get('cuda_version') or '-'}, "
        f"cuDNN {c.get('cudnn_version') or '-'}, cnnbench {c.get('cnnbench_version')}"
    )


def write_outputs(result: CompareResult) -> None:
    """Markdown, LaTeX (booktabs), aggregated CSV and plots (PNG and SVG) in the compare folder."""
    folder = result.folder
    write_frame_atomic(result.aggregated, folder / "aggregated.csv")
    table = display_table(result.aggregated)
    notes = "".join(f"- {n}\n" for n in result.notes)
    (folder / "table.md").write_text(
        f"# {result.name}\n\nConditions: {conditions_text(result.conditions)}\n\n{table.to_markdown(index=False, disable_numparse=True)}\n"
        + (f"\nNotes:\n{notes}" if notes else "")
    )
    latex = table.style.hide(axis="index").to_latex(
        hrules=True, column_format="l" + "r" * (len(table.columns) - 2) + "l"
    )
    (folder / "table.tex").write_text(latex.replace("%", r"\%").replace("±", r"$\pm$"))
    _plots(result)


def _plots(result: CompareResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder, agg, epochs = result.folder, result.aggregated, result.epochs
    device = result.conditions.get("gpu_name") or result.conditions.get("device") or ""
    subtitle = f"{result.conditions.get('dataset', '')}, {result.conditions.get('precision', '')}, {device}"

    def save(fig: Any, stem: str) -> None:
        fig.tight_layout()
        for ext in ("png", "svg"):
            fig.savefig(folder / f"{stem}.{ext}", dpi=150)
        plt.close(fig)

    if not epochs.empty:  # a comparison rendered from its tidy rows alone has no curves to draw
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for variant, group in epochs.groupby("variant", sort=False):
            stats = group.groupby("epoch").test_acc.agg(["mean", "min", "max"])
            line = ax.plot(stats.index, stats["mean"], label=variant)[0]
            if group.seed.nunique() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"Test accuracy per epoch ({subtitle})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "accuracy_per_epoch")

    valid = agg.dropna(subset=["best_test_acc_pct_mean"])
    for column, label, stem in (
        ("params", "parameters", "accuracy_vs_params"),
        ("forward_MACs_per_sample", "forward MACs per sample", "accuracy_vs_macs"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.errorbar(
            valid[column], valid.best_test_acc_pct_mean, yerr=valid.best_test_acc_pct_std.fillna(0), fmt="o"
        )
        for _, r in valid.iterrows():
            ax.annotate(
                r.variant,
                (r[column], r.best_test_acc_pct_mean),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.margins(x=0.2, y=0.1)
        ax.set(
            xlabel=f"{label} (log scale)",
            ylabel="best test accuracy (%)",
            title=f"Accuracy vs {label} ({subtitle})",
        )
        ax.grid(alpha=0.3)
        save(fig, stem)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = agg.dropna(subset=["median_epoch_time_s"])
    ax.bar(timed.variant, timed.median_epoch_time_s, yerr=timed.iqr_epoch_time_s.fillna(0) / 2, capsize=4)
    ax.set(ylabel="epoch time (s), median; bars: IQR", title=f"Training time per epoch ({subtitle})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    save(fig, "epoch_time")
