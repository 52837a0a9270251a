"""Every plot cnnbench draws: a comparison's accuracy per epoch, accuracy against parameters, MACs or a
swept option, epoch time; and exercise 1's pooled maps. Saved through a temporary file and renamed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.comparison.latency import timed_on
from cnnbench.errors import InvalidArgumentError
from cnnbench.report.tables import latency_columns, swept_option
from cnnbench.store.tables import atomic_path


class PlotWorkers:
    """Processes that draw a comparison's figures side by side, started while its runs train: each imports
    matplotlib and draws a throwaway figure (its fonts, its text layout) meanwhile, so the comparison's
    tail is its slowest figure instead of matplotlib's start-up and every figure in turn (1.5-2 s on an
    H200's host). Where the runs train on the CPU the figures are drawn in-process: there training is the
    wait, and other processes would take the cores it uses."""

    def __init__(self, workers: int = 5) -> None:
        from cnnbench.device import worker_pool

        self.workers = workers
        self.pool = worker_pool(workers, initializer=_ready_to_plot)
        # A pool starts its processes as work arrives: one task each starts them all now.
        for _ in range(workers):
            self.pool.submit(_started)

    def draw(self, figures: list[tuple[Callable[..., None], dict[str, Any]]]) -> None:
        """Each ``function(**arguments)`` in a worker; the first error, if any, raised here."""
        for future in [self.pool.submit(function, **arguments) for function, arguments in figures]:
            future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ready_to_plot() -> None:
    import gc
    import io
    import os

    os.nice(10)  # where CPUs are short, the comparison's own process goes first
    import pandas  # noqa: F401  (the tables arrive as DataFrames)

    plt = _pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], marker="o", label="x")
    ax.set(title="fonts", xlabel="x", ylabel="y")
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(io.BytesIO(), format=ext)
    plt.close(fig)
    gc.freeze()  # what is loaded now stays to the end: its exit need not walk it


def _started() -> None:
    """A worker's first task: nothing, once its initialiser has run."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, folder: Path, stem: str) -> None:
    plt = _pyplot()
    fig.tight_layout()
    for ext in ("png", "svg"):
        with atomic_path(folder / f"{stem}.{ext}") as tmp:
            fig.savefig(tmp, dpi=150, format=ext)
    plt.close(fig)


def compare_plots(result: Any, workers: PlotWorkers | None = None) -> None:
    """A comparison's figures (PNG and SVG): drawn by ``workers`` where they were started, else here."""
    figures = compare_figures(result)
    if workers is not None:
        workers.draw(figures)
        return
    for function, arguments in figures:
        function(**arguments)


def compare_figures(result: Any) -> list[tuple[Callable[..., None], dict[str, Any]]]:
    """Each figure a comparison draws, as a function and its arguments (plain tables, picklable): accuracy
    per epoch, accuracy against parameters and MACs (or the swept option), against energy where it was
    measured, and epoch time."""
    folder, agg, epochs = result.folder, result.aggregated, result.epochs
    c = result.conditions
    device = c.get("gpu_name") or c.get("device") or "device not recorded"
    subtitle = ", ".join(str(v) for v in (c.get("dataset"), c.get("precision"), device) if v)
    figures: list[tuple[Callable[..., None], dict[str, Any]]] = []
    if not epochs.empty:  # a comparison rendered from its tidy rows alone has no curves to draw
        figures.append((_accuracy_per_epoch_plot, {"epochs": epochs}))
    valid = agg.dropna(subset=["final_test_acc_mean"])
    swept = swept_option(result.tidy)
    if swept is not None and valid.params.nunique() <= 1:
        figures.append((_sweep_plot, {"valid": valid, "tidy": result.tidy, "key": swept}))
    else:
        for column, label, stem in (
            ("params", "parameters", "accuracy_vs_params"),
            ("forward_MACs_per_sample", "forward MACs per sample", "accuracy_vs_macs"),
        ):
            figures.append(
                (_accuracy_vs_plot, {"valid": valid, "column": column, "label": label, "stem": stem})
            )
    measured = (
        agg.dropna(subset=["final_test_acc_mean", "energy_train_J_mean"])
        if "energy_train_J_mean" in agg
        else agg.iloc[:0]
    )
    if len(measured):
        figures.append((_energy_plot, {"agg": measured}))
    timed = valid.dropna(subset=["total_train_s"]) if "total_train_s" in valid else valid.iloc[:0]
    if len(timed):
        figures.append((_accuracy_vs_plot, {"valid": timed, "column": "total_train_s",
                                            "label": "training time (s)", "stem": "accuracy_vs_time"}))  # fmt: skip
    backends = latency_columns(valid)
    if backends:  # compare --latency: the first backend's p50, the cost of using each variant
        title = (f"Accuracy vs latency ({', '.join(str(v) for v in (c.get('dataset'), c.get('precision')) if v)})\n"
                 f"trained on {device}; timed on {timed_on(result.latency)}, {backends[0]}")  # fmt: skip
        figures.append((_accuracy_vs_plot, {"valid": valid, "column": f"latency_ms_p50_{backends[0]}",
                                            "stem": "accuracy_vs_latency", "title": title,
                                            "label": f"p50 latency at batch 1, {backends[0]} (ms)"}))  # fmt: skip
    figures.append((_epoch_time_plot, {"agg": agg}))
    return [
        (function, {**arguments, "subtitle": subtitle, "folder": folder}) for function, arguments in figures
    ]


# Okabe and Ito's palette, told apart by colour-blind readers; each variant also has its own marker and
# line style, so a greyscale print tells them apart too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


def variant_style(index: int) -> dict[str, Any]:
    """The colour, marker and line style of the ``index``-th variant, the same in every figure."""
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)],
            "linestyle": LINESTYLES[index % len(LINESTYLES)]}  # fmt: skip


def pareto_front(x: Any, y: Any) -> list[int]:
    """Positions of the points no other beats on both (smaller ``x``, larger ``y``), by increasing x."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], float("-inf")
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def _log_x(ax: Any, values: Any) -> None:
    """A log x axis labelled in plain numbers: 1, 2 and 5 per decade where the points span less than two
    decades (matplotlib's own labels then run its minor ticks' 3x10^0 and 4x10^0 into each other)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    positive = [float(v) for v in values if v == v and float(v) > 0]
    if positive and max(positive) / min(positive) < 100:
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _accuracy_per_epoch_plot(epochs: Any, subtitle: str, folder: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for index, (variant, group) in enumerate(epochs.groupby("variant", sort=False)):
        stats = group.groupby("epoch").test_acc.agg(["mean", "min", "max"])
        style = variant_style(index)
        ax.plot(stats.index, stats["mean"], markersize=4, label=variant, **style)
        if group.seed.nunique() > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.2)
    last = int(epochs.epoch.max())
    ax.set_xlim(0.5, last + 0.5)  # one epoch is a point at 1, not a range around it
    ax.set(xlabel="epoch", ylabel="test accuracy (%); band: min-max over seeds",
           title=f"Test accuracy per epoch ({subtitle})")  # fmt: skip
    # Epochs are whole numbers: each one marked while they fit, whole-number ticks beyond.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(last, 10), min_n_ticks=1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, folder, "accuracy_per_epoch")


def _accuracy_vs_plot(valid: Any, column: str, label: str, stem: str, subtitle: str, folder: Path,
                      title: str | None = None) -> None:  # fmt: skip
    """Final accuracy (std over seeds as bars) against a cost, each variant in its own style, the Pareto
    front (no variant cheaper and more accurate) joined."""
    fig, ax = _pyplot().subplots(figsize=(6, 4.5))
    valid = valid.dropna(subset=[column])
    spread = valid.final_test_acc_std.fillna(0).tolist()
    for index, (_, r) in enumerate(valid.iterrows()):
        style = variant_style(index)
        ax.errorbar(r[column], r.final_test_acc_mean, yerr=spread[index], fmt=style["marker"], color=style["color"],
                    capsize=3)  # fmt: skip
        ax.annotate(r.variant, (r[column], r.final_test_acc_mean), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    x, y = valid[column].tolist(), valid.final_test_acc_mean.tolist()
    front = pareto_front(x, y)
    if len(front) > 1:
        ax.plot(
            [x[i] for i in front], [y[i] for i in front], color="#555555", linestyle=":", label="Pareto front"
        )
        ax.legend(fontsize=8)
    _log_x(ax, x)
    ax.margins(x=0.2, y=0.1)
    ax.set(xlabel=f"{label} (log scale)", ylabel="final test accuracy (%); bars: std over seeds",
           title=title or f"Accuracy vs {label} ({subtitle})")  # fmt: skip
    ax.title.set_fontsize(10 if title else ax.title.get_fontsize())
    ax.grid(alpha=0.3)
    _save(fig, folder, stem)


def _epoch_time_plot(agg: Any, subtitle: str, folder: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    timed = agg.dropna(subset=["median_epoch_s"])
    ax.bar(timed.variant, timed.median_epoch_s, yerr=timed.iqr_epoch_s.fillna(0) / 2, capsize=4)
    ax.set(ylabel="epoch time (s), median; bars: IQR", title=f"Training time per epoch ({subtitle})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, folder, "epoch_time")


def _energy_plot(agg: Any, subtitle: str, folder: Path) -> None:
    """Final accuracy against the training's energy, the Pareto front (none better on both) joined."""
    fig, ax = _pyplot().subplots(figsize=(6, 4.5))
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
    _log_x(ax, kj.tolist())
    ax.margins(x=0.2, y=0.1)
    ax.set(xlabel="energy of the training (kJ, log scale)", ylabel="final test accuracy (%)",
           title=f"Accuracy vs energy ({subtitle})")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, folder, "accuracy_vs_energy")


def _sweep_plot(valid: Any, tidy: Any, key: str, subtitle: str, folder: Path) -> None:
    """Accuracy against the swept option's value (numbers on a numeric axis, others in order)."""
    value_of = {
        row.variant: dict(kv.split("=", 1) for kv in str(row.options).split(";") if "=" in kv).get(key, "")
        for row in tidy.itertuples()
    }
    values = [value_of.get(v, "") for v in valid.variant]
    try:
        x: list[Any] = [float(v) for v in values]
    except ValueError:
        x = list(range(len(values)))
    fig, ax = _pyplot().subplots(figsize=(6, 4.5))
    ax.errorbar(x, valid.final_test_acc_mean, yerr=valid.final_test_acc_std.fillna(0), fmt="o-", capsize=4)
    ax.set_xticks(x, values)
    ax.margins(x=0.1, y=0.1)
    ax.set(xlabel=key, ylabel="final test accuracy (%); bars: std over seeds",
           title=f"Accuracy vs {key} ({subtitle})")  # fmt: skip
    ax.grid(alpha=0.3)
    _save(fig, folder, f"accuracy_vs_{key}")


def pool_plot(result: Any, path: Path) -> None:
    """Input, max and average pooling as three heat maps (PNG or SVG by the file's suffix)."""
    plt = _pyplot()
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
