"""Rendering for the terminal (rich). Numbers stay numbers until they reach this module."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from cnnbench.models._api import format_options
from cnnbench.results import format_number, missing

console = Console()
err_console = Console(stderr=True)


def si(value: float | int | None, unit: str = "", digits: int = 3) -> str:
    """1819065856 -> '1.82 G' (decimal prefixes)."""
    if missing(value):
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}".rstrip()
    return f"{value:.{digits}g} {unit}".rstrip()


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def simple_table(
    title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]], **kw: Any
) -> Table:
    table = Table(title=title, **kw)
    rows = [[str(c) for c in row] for row in rows]
    columns = list(columns)
    for i, col in enumerate(columns):
        # Right-align columns of numbers, left-align text.
        numeric = all(_looks_numeric(row[i]) for row in rows) if rows else False
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _looks_numeric(text: str) -> bool:
    head = text.strip().lstrip("+-")[:1]
    return text.strip() in {"-", ""} or head.isdigit() or head == "."


def summary_table(summary: Any) -> Table:
    rows = [
        (
            "  " * (layer.depth - 1) + layer.name,
            layer.type,
            "x".join(map(str, layer.output_shape[1:])) if layer.output_shape else "-",
            count(layer.params),
            count(layer.macs),
        )
        for layer in summary.layers
    ]
    return simple_table(
        f"{summary.model} at {summary.input_size}, {summary.num_classes} classes (per sample, fp32)",
        ("layer", "type", "output shape", "params", "MACs"),
        rows,
    )


def summary_totals(summary: Any) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    opts = format_options(summary.options).replace(";", ", ") or "-"
    lines = [
        ("options", opts, ""),
        ("input size", summary.input_size, "C x H x W, batch 1"),
        ("parameters", count(summary.params), f"{count(summary.trainable_params)} trainable"),
        ("parameter memory", f"{summary.param_mb:.2f} MB", "fp32, 10^6 bytes"),
        (
            "forward MACs / sample",
            f"{count(summary.macs)} ({si(summary.macs)})",
            "fvcore; 1 MAC = 1 multiply-add",
        ),
        ("forward FLOPs / sample", f"{count(summary.flops)} ({si(summary.flops)})", "= 2 x MACs"),
        (
            "training FLOPs / sample",
            f"{count(summary.train_flops)} ({si(summary.train_flops)})",
            "forward + backward, torch FlopCounterMode",
        ),
        (
            "MAC cross-check",
            f"{summary.crosscheck_diff_pct:.2f}%",
            f"FlopCounterMode forward: {count(summary.flop_counter_macs)} MACs",
        ),
    ]
    if summary.uncounted_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(summary.uncounted_ops.items()))
        lines.append(("not counted by fvcore", ops, "elementwise/pooling ops carry no MACs here"))
    for line in lines:
        table.add_row(*line)
    return table


class TrainProgress:
    """A rich progress bar with live loss and accuracy; silent with ``quiet``."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=err_console,
            disable=quiet,
            transient=False,
        )
        self.task = None
        self.steps = 0
        self.last = ""

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def on_start(self, run_id: str, config: Any, steps_per_epoch: int, start_epoch: int) -> None:
        self.steps = steps_per_epoch
        self.epochs = config.epochs
        self.run_id = run_id
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            f"{run_id} epoch {start_epoch}/{config.epochs}", total=steps_per_epoch, status=""
        )

    def on_warmup(self, seconds: float) -> None:
        pass

    def on_step(self, epoch: int, step: int, loss: float | None) -> None:
        if self.task is None:
            return
        fields = {"status": f"loss {loss:.3f} {self.last}"} if loss is not None else {}
        self.progress.update(self.task, completed=step, description=f"epoch {epoch}/{self.epochs}", **fields)

    def on_epoch(self, row: Any) -> None:
        self.last = f"| test acc {row.test_acc:.2f}% ({row.epoch_time_s:.2f} s/epoch)"
        if self.task is not None:
            self.progress.update(self.task, status=f"train acc {row.train_acc:.1f}% {self.last}")
        if not self.quiet:
            self.progress.console.print(
                f"epoch {row.epoch:>3}  train loss {row.train_loss:.4f} acc {row.train_acc:6.2f}%  "
                f"test loss {row.test_loss:.4f} acc {row.test_acc:6.2f}%  {row.epoch_time_s:.2f} s  "
                f"{row.images_per_s:,.0f} img/s",
                highlight=False,
            )


def print_run(result: Any) -> None:
    s = result.summary
    colour = "green" if result.status == "ok" else "red"
    console.print(
        f"[{colour}]{result.status}[/] {result.run_id}: best test acc {s['best_test_acc']:.2f}% "
        f"(epoch {s['best_epoch']}), final {s['final_test_acc']:.2f}%, median epoch {s['median_epoch_s']:.3f} s "
        f"(IQR {s['iqr_epoch_s']:.3f}), warm-up {s['warmup_s']:.2f} s, {s['device_kind']}, {s['precision']}",
        highlight=False,
    )
    console.print(
        f"results: {result.run_dir}/epochs.csv and {result.run_dir.parent.parent / 'runs.csv'}",
        highlight=False,
    )


def print_compare(result: Any) -> None:
    from cnnbench.compare import TERMINAL_HEADERS, conditions_text, display_table

    console.print(f"[bold]{result.name}[/]: {conditions_text(result.conditions)}", highlight=False)
    table = display_table(result.aggregated).rename(columns=TERMINAL_HEADERS)
    console.print(
        simple_table(
            "per sample: MACs forward, FLOPs forward+backward; epoch time median and IQR; "
            "conv. ep = epochs to 95% of best; gap = final train - test accuracy",
            list(table.columns),
            table.itertuples(index=False),
        )
    )
    for note in result.notes:
        console.print(f"[dim]{note}[/]", highlight=False)
    console.print(
        f"files: {result.folder}/ (tidy.csv, aggregated.csv, epochs.csv, table.md, table.tex, *.png, *.svg)",
        highlight=False,
    )


def print_profile(result: Any, fmt: str = "table") -> None:
    import json

    import pandas as pd

    if fmt == "json":
        console.print_json(json.dumps({"rows": result.rows, "layers": result.layers, "top_ops": result.top_ops,
                                       "grads": result.grads}, default=str))  # fmt: skip
        return
    if fmt == "csv":
        print(pd.DataFrame(result.rows).to_csv(index=False), end="")
        return
    first = result.rows[0]
    device = first["gpu_name"] or first["device"]
    console.print(
        f"[bold]{first['model']}[/] at {first['input_size']} on {device}, {first['precision']}"
        f"{', channels-last' if first['channels_last'] else ''}{', compiled' if first['compile'] else ''}; "
        f"{first['timed_steps']} timed steps after {first['warmup_steps']} warm-up; torch {first['torch_version']}",
        highlight=False,
    )
    rows = [
        (r["mode"], r["batch_size"], format_number(r.get("step_ms_median"), ".3f"), format_number(r.get("step_ms_iqr"), ".3f"),
         format_number(r.get("samples_per_s"), ",.0f"), format_number(r.get("peak_mem_MiB"), ",.0f"), format_number(r.get("achieved_TFLOPs"), ".2f"),
         format_number(r.get("MFU_pct"), ".1f"), format_number(r.get("compile_s"), ".1f"), r["status"])
        for r in result.rows
    ]  # fmt: skip
    basis = first.get("peak_basis")
    console.print(simple_table(
        f"step = {'forward' if len(set(r['mode'] for r in result.rows)) == 1 and first['mode'] == 'infer' else 'forward (infer) / forward+backward+Adam (train)'}; "
        f"MFU against the {basis} dense peak ({format_number(first.get('peak_TFLOPs'), '.0f')} TFLOP/s)",
        ("mode", "batch", "step ms (median)", "IQR ms", "samples/s", "peak MiB", "TFLOP/s", "MFU %", "compile s", "status"),
        rows,
    ))  # fmt: skip
    if result.layers:
        total = result.layers[-1]
        rows = [
            (
                r["layer"],
                r["type"],
                format_number(r["forward_ms"], ".4f"),
                format_number(r["backward_ms"], ".4f"),
            )
            for r in result.layers[:-1]
        ]
        rows.append((total["layer"], total["type"], format_number(total["forward_ms"], ".4f"), "-"))
        console.print(simple_table(
            f"per-module time (ms, median of 5 steps; modules sum to {total['attributed_ms']:.3f} ms of "
            f"{total['forward_ms']:.3f} ms measured; hooks add their own overhead)",
            ("layer", "type", "forward ms", "backward ms"), rows,
        ))  # fmt: skip
        console.print(simple_table(
            "top operators by device time (ms per step, self)",
            ("operator", "calls", "device ms", "cpu ms"),
            [(o["op"][:60], o["calls"], format_number(o["self_device_ms"], ".4f"), format_number(o["self_cpu_ms"], ".4f")) for o in result.top_ops],
        ))  # fmt: skip
    if result.grads:
        top = result.grads[-1]["grad_norm"] or float("nan")
        console.print(simple_table(
            "gradient L2 norm per weight, one batch at initialisation (input to output)",
            ("parameter", "shape", "grad norm", "vs last layer"),
            [(g["parameter"], g["shape"], f"{g['grad_norm']:.3e}", f"{g['grad_norm'] / top:.3e}") for g in result.grads],
        ))  # fmt: skip
    if result.csv_path:
        console.print(f"rows appended to {result.csv_path}", highlight=False)
