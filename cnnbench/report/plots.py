"""Every plot cnnbench draws: a comparison's accuracy per epoch, accuracy against parameters, MACs or a
swept option, epoch time; and exercise 1's pooled maps. Saved through a temporary file and renamed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.errors import InvalidArgumentError
from cnnbench.report.tables import swept_option
from cnnbench.store.tables import atomic_path


def compare_plots(result: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder, agg, epochs = result.folder, result.aggregated, result.epochs
    c = result.conditions
    device = c.get("gpu_name") or c.get("device") or "device not recorded"
    subtitle = ", ".join(str(v) for v in (c.get("dataset"), c.get("precision"), device) if v)

    def save(fig: Any, stem: str) -> None:
        fig.tight_layout()
        for ext in ("png", "svg"):
            with atomic_path(folder / f"{stem}.{ext}") as tmp:
                fig.savefig(tmp, dpi=150, format=ext)
        plt.close(fig)

    if not epochs.empty:  # a comparison rendered from its tidy rows alone has no curves to draw
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for variant, group in epochs.groupby("variant", sort=False):
            stats = group.groupby("epoch").test_acc.agg(["mean", "min", "max"])
            line = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=variant)[0]
            if group.seed.nunique() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        last = int(epochs.epoch.max())
        ax.set_xlim(0.5, last + 0.5)  # one epoch is a point at 1, not a range around it
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"Test accuracy per epoch ({subtitle})")
        # Epochs are whole numbers: each one marked while they fit, whole-number ticks beyond.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(last, 10), min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "accuracy_per_epoch")

    valid = agg.dropna(subset=["final_test_acc_mean"])
    swept = swept_option(result.tidy)
    if swept is not None and valid.params.nunique() <= 1:
        _sweep_plot(valid, result.tidy, swept, subtitle, save)
    else:
        for column, label, stem in (
            ("params", "parameters", "accuracy_vs_params"),
            ("forward_MACs_per_sample", "forward MACs per sample", "accuracy_vs_macs"),
        ):
            fig, ax = plt.subplots(figsize=(6, 4.5))
            ax.errorbar(
                valid[column],
                valid.final_test_acc_mean,
                yerr=valid.final_test_acc_std.fillna(0),
                fmt="o",
            )
            for _, r in valid.iterrows():
                ax.annotate(
                    r.variant, (r[column], r.final_test_acc_mean), fontsize=7, xytext=(4, 4),
                    textcoords="offset points",
                )  # fmt: skip
            ax.set_xscale("log")
            ax.margins(x=0.2, y=0.1)
            ax.set(xlabel=f"{label} (log scale)", ylabel="final test accuracy (%)",
                   title=f"Accuracy vs {label} ({subtitle})")  # fmt: skip
            ax.grid(alpha=0.3)
            save(fig, stem)

    measured = (
        agg.dropna(subset=["final_test_acc_mean", "energy_train_J_mean"])
        if "energy_train_J_mean" in agg
        else agg.iloc[:0]
    )
    if len(measured):
        _energy_plot(measured, subtitle, save)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = agg.dropna(subset=["median_epoch_s"])
    ax.bar(timed.variant, timed.median_epoch_s, yerr=timed.iqr_epoch_s.fillna(0) / 2, capsize=4)
    ax.set(ylabel="epoch time (s), median; bars: IQR", title=f"Training time per epoch ({subtitle})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    save(fig, "epoch_time")


def _energy_plot(agg: Any, subtitle: str, save: Callable[[Any, str], None]) -> None:
    """Final accuracy against the training's energy, the Pareto front (none better on both) joined."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    kj = agg.energy_train_J_mean / 1e3
    ax.errorbar(kj, agg.final_test_acc_mean, yerr=agg.final_test_acc_std.fillna(0), fmt="o", color="tab:gray")
    front = agg[agg.energy_pareto].sort_values("energy_train_J_mean")
    ax.plot(
        front.energy_train_J_mean / 1e3,
        front.final_test_acc_mean,
        "o-",
        color="tab:red",
        label="Pareto front",
    )
    for _, r in agg.iterrows():
        ax.annotate(r.variant, (r.energy_train_J_mean / 1e3, r.final_test_acc_mean), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.1)
    ax.set(xlabel="energy of the training (kJ, log scale)", ylabel="final test accuracy (%)",
           title=f"Accuracy vs energy ({subtitle})")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, "accuracy_vs_energy")


def _sweep_plot(valid: Any, tidy: Any, key: str, subtitle: str, save: Callable[[Any, str], None]) -> None:
    """Accuracy against the swept option's value (numbers on a numeric axis, others in order)."""
    import matplotlib.pyplot as plt

    value_of = {
        row.variant: dict(kv.split("=", 1) for kv in str(row.options).split(";") if "=" in kv).get(key, "")
        for row in tidy.itertuples()
    }
    values = [value_of.get(v, "") for v in valid.variant]
    try:
        x: list[Any] = [float(v) for v in values]
    except ValueError:
        x = list(range(len(values)))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(x, valid.final_test_acc_mean, yerr=valid.final_test_acc_std.fillna(0), fmt="o-", capsize=4)
    ax.set_xticks(x, values)
    ax.margins(x=0.1, y=0.1)
    ax.set(xlabel=key, ylabel="final test accuracy (%); bars: std over seeds",
           title=f"Accuracy vs {key} ({subtitle})")  # fmt: skip
    ax.grid(alpha=0.3)
    save(fig, f"accuracy_vs_{key}")


def pool_plot(result: Any, path: Path) -> None:
    """Input, max and average pooling as three heat maps (PNG or SVG by the file's suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in ("png", "svg"):
        raise InvalidArgumentError(f"expected --plot to end in .png or .svg, got {str(path)!r}")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    panels = [("input", result.input), (f"max pool {result.kernel}x{result.kernel}, stride {result.stride}", result.max),
              (f"average pool {result.kernel}x{result.kernel}, stride {result.stride}", result.avg)]  # fmt: skip
    for ax, (title, data) in zip(axes, panels, strict=True):
        ax.imshow(data, cmap="viridis", vmin=0, vmax=max(1.0, max(max(r) for r in result.input)))
        if len(data) <= 8:
            for i, row in enumerate(data):
                for j, v in enumerate(row):
                    ax.text(
                        j, i, f"{v:.2g}", ha="center", va="center", color="w" if v < 0.5 else "k", fontsize=8
                    )
        ax.set(title=title, xticks=[], yticks=[])
    fig.suptitle(result.source, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=150, format=suffix)
    plt.close(fig)
