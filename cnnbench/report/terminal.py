"""Rendering for the terminal (rich): tables that fit it, progress, and the live display of a launcher's
jobs. Numbers stay numbers until they reach this module."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from cnnbench.models._info import format_options
from cnnbench.store.tables import format_number, missing, to_json

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


def fitted_table(
    title: str | None,
    columns: list[str],
    rows: Iterable[Iterable[Any]],
    priority: list[str],
    width: int | None = None,
    wide: bool = False,
) -> tuple[Table, list[str]]:
    """A table that fits ``width`` columns without cutting a cell: the first column (the name of the
    row) is never cut; when the table is too wide, the columns last in ``priority`` (and those not in
    it) are left out. Returns the table and the names of the columns left out."""
    rows = [[str(c) for c in row] for row in rows]
    width = width or console.width
    if not wide:  # a long name (a factory by its absolute path) would leave no room for the numbers
        rows = _short_names(rows, max(24, width // 2))  # a name of half the width at most, whole below
        if "status" in columns:  # a long reason (Slurm's, an error's) is whole in the CSV and the log
            i, budget = columns.index("status"), max(24, width // 3)
            rows = [
                [*r[:i], r[i] if len(r[i]) <= budget else r[i][: budget - 1] + "…", *r[i + 1 :]] for r in rows
            ]
    order = [c for c in priority if c in columns and c != columns[0]]
    order += [c for c in columns[1:] if c not in order]
    shown = [columns[0], *order]

    def build(names: list[str]) -> Table:
        keep = [columns.index(n) for n in columns if n in names]
        table = simple_table(title, [columns[i] for i in keep], [[r[i] for i in keep] for r in rows])
        for column in table.columns:
            column.no_wrap = True
        return table

    if wide:
        return build(columns), []
    # Measuring a long table takes rich a tenth of a second: the columns left out are chosen on
    # arithmetic (each column's widest cell, its padding and border), then the choice measured once.
    from rich.cells import cell_len

    widest = {c: max([cell_len(c), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(columns)}
    while len(shown) > 1 and sum(widest[c] + 3 for c in shown) + 1 > width:
        shown.pop()
    while len(shown) > 1 and _natural_width(build(shown)) > width:
        shown.pop()
    return build(shown), [c for c in columns if c not in shown]


def _short_names(rows: list[list[str]], budget: int) -> list[list[str]]:
    """Rows whose first cell (the row's name) is at most ``budget`` characters: the middle of a longer
    one gives way to '…', its start and its end (a factory's name and options) kept, unless two names
    would then read the same."""
    if all(len(r[0]) <= budget for r in rows):
        return rows
    head = budget // 3

    def short(name: str) -> str:
        return name if len(name) <= budget else f"{name[:head]}…{name[len(name) - (budget - head - 1) :]}"

    names = [short(r[0]) for r in rows]
    if len(set(names)) != len({r[0] for r in rows}):
        return rows
    return [[n, *r[1:]] for n, r in zip(names, rows, strict=True)]


def _looks_numeric(text: str) -> bool:
    head = text.strip().lstrip("+-")[:1]
    return text.strip() in {"-", ""} or head.isdigit() or head == "."


def _natural_width(table: Table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def print_fitted(table: Table, hidden: list[str], wide: bool = False) -> None:
    """Print a table from :func:`fitted_table`, and say which columns were left out."""
    if wide:  # as wide as it needs, however narrow the terminal: cells are never cut
        Console(width=max(console.width, _natural_width(table)), file=console.file).print(table)
    else:
        console.print(table)
    if hidden:
        console.print(
            f"[dim]not shown at {console.width} columns: {', '.join(hidden)} (--wide shows all)[/]",
            highlight=False,
        )


def summary_table(summary: Any, wide: bool = False) -> tuple[Table, list[str]]:
    rows = [
        (
            "  " * (layer.depth - 1) + layer.name,
            layer.type,
            "x".join(map(str, layer.output_shape[1:])) if layer.output_shape else "-",
            count(layer.params),
            f"{layer.params_pct:.1f}",
            count(layer.macs),
            f"{layer.macs_pct:.1f}",
        )
        for layer in summary.layers
    ]
    columns = ["layer", "type", "output shape", "params", "params %", "MACs", "MACs %"]
    return fitted_table(
        f"{summary.model} at {summary.input_size}, {summary.num_classes} classes (per sample, fp32; "
        "layers in the order they run)",
        columns,
        rows,
        priority=["params", "MACs", "MACs %", "output shape", "params %", "type"],
        wide=wide,
    )


def summary_totals(summary: Any) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    opts = format_options(summary.options).replace(";", ", ") or "-"
    m = summary.memory
    lines = [
        ("options", opts, ""),
        ("input size", summary.input_size, "C x H x W, batch 1"),
        ("parameters", count(summary.params), f"{count(summary.trainable_params)} trainable"),
        ("parameter memory", f"{summary.param_mb:.2f} MB", "fp32, 10^6 bytes"),
        (
            "forward MACs / sample",
            f"{count(summary.macs)} ({si(summary.macs)})",
            f"{summary.macs_source}; 1 MAC = 1 multiply-add",
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
        ("MACs count", "", summary.mac_convention),
        *(
            [
                (
                    "with fvcore's defaults",
                    f"{count(summary.fvcore_default_macs)} ({si(summary.fvcore_default_macs)})",
                    "as timm's table counts: fvcore's total with "
                    + ", ".join(f"{op} {si(v)}" for op, v in sorted(summary.outside_convention.items()) if v),
                )
            ]
            if any(summary.outside_convention.values())
            else []
        ),
        *([("MACs are of", "", summary.count_note)] if summary.count_note else []),
        (
            f"training memory, batch {m['batch_size']}",
            f"{m['total_train_MiB']:,.1f} MiB",
            f"estimate, {m['precision']}: weights {m['params_MiB']:,.1f} + gradients {m['grads_MiB']:,.1f} + "
            f"Adam {m['optimizer_MiB']:,.1f} + saved activations {m['activations_train_MiB']:,.1f}"
            + (
                " + cuBLAS workspaces " + f"{m['cublas_workspace_MiB']:,.1f}"
                if m["cublas_workspace_MiB"] is not None
                else "; cuBLAS workspaces not included (no GPU here to size them)"
            ),
        ),
        (
            "inference activations",
            f"{m['activations_infer_MiB']:,.1f} MiB",
            f"estimate, batch {m['batch_size']}",
        ),
    ]
    if summary.aux_heads != "none":
        lines.append(
            ("auxiliary heads", summary.aux_heads.split(" ", 1)[0], summary.aux_heads.split(" ", 1)[1])
        )
    if summary.uncounted_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(summary.uncounted_ops.items()))
        lines.append(("no MACs counted for", ops, "normalisation, pooling, elementwise"))
    for line in lines:
        table.add_row(*line)
    return table


def print_run(result: Any) -> None:
    s = result.summary
    colour = "green" if result.status == "ok" else "red"
    selected = (
        f"test {format_number(s.get('test_at_best_val'), '.2f')}% at the best validation epoch "
        f"({s.get('best_val_epoch')}), " if not missing(s.get("best_val_acc")) else ""
    )  # fmt: skip
    target = ""
    if s.get("target_acc") is not None:
        target = (f"{s['target_acc']:g}% reached in epoch {s['epochs_to_target']} ({s['seconds_to_target']:.1f} s of "
                  "training), " if not missing(s.get("seconds_to_target")) else f"{s['target_acc']:g}% not reached, ")  # fmt: skip
    energy = (
        f"energy {s['energy_train_J']:,.0f} J training ({s['J_per_image'] * 1e3:.2f} mJ/image, {s['mean_power_W']:.0f} W), "
        if not missing(s.get("energy_train_J")) else "energy not measured, "
    )  # fmt: skip
    console.print(
        f"[{colour}]{result.status}[/] {result.run_id}: final test acc {s['final_test_acc']:.2f}%, {selected}{target}{energy}"
        f"best test acc {s['best_test_acc']:.2f}% (epoch {s['best_epoch']}, chosen on test), median epoch "
        f"{s['median_epoch_s']:.3f} s (IQR {s['iqr_epoch_s']:.3f}), warm-up {s['warmup_s']:.2f} s, {s['device_kind']}, "
        f"{s['precision']}",
        highlight=False,
    )
    console.print(
        f"results: {result.run_dir}/epochs.csv and {result.run_dir.parent.parent / 'runs.csv'}",
        highlight=False, soft_wrap=True,  # a path is never cut by a line end: it is copied whole
    )  # fmt: skip


def print_compare(result: Any, wide: bool = False) -> None:
    from cnnbench.report.tables import (
        TERMINAL_PRIORITY,
        conditions_text,
        display_table,
        footnotes,
        terminal_header,
    )

    console.print(f"[bold]{result.name}[/]: {conditions_text(result.conditions)}", highlight=False)
    table = display_table(result.aggregated).rename(columns=terminal_header)
    print_fitted(
        *fitted_table(
            "per sample: MACs forward, FLOPs forward+backward; epoch time median and IQR; "
            "conv. ep = epochs to 95% of best; gap = final train - final test accuracy",
            list(table.columns),
            table.itertuples(index=False),
            priority=_with_latency(TERMINAL_PRIORITY, [c for c in table.columns if c.endswith(" p50 ms")]),
            wide=wide,
        ),
        wide=wide,
    )
    for note in [*footnotes(result), *result.notes]:
        console.print(note, style="dim", highlight=False, markup=False)
    console.print(
        f"files: {result.folder}/ (report.html, tidy.csv, aggregated.csv, epochs.csv, table.md, table.tex, *.png, *.svg)",
        highlight=False, soft_wrap=True,  # a path is never cut by a line end: it is copied whole
    )  # fmt: skip


def _with_latency(priority: list[str], latency: list[str]) -> list[str]:
    """The columns' priority with the latency columns (compare --latency) right after the epoch time: what
    a variant costs to use beside what it costs to train."""
    at = priority.index("epoch s") + 1
    return [*priority[:at], *latency, *priority[at:]]


def print_joined(joined: Any, wide: bool = False) -> None:
    """Comparisons joined across machines: the recipe, the table (a column group per device), the notes."""
    console.print(f"[bold]{joined.name}[/]: {joined.recipe_text}", highlight=False)
    table, hidden = fitted_table("joined: a column group per device", joined.header, joined.rows,
                                 priority=joined.header, wide=wide)  # fmt: skip
    print_fitted(table, hidden, wide=wide)
    for note in joined.notes:
        console.print(note, style="dim", highlight=False, markup=False)
    console.print(f"files: {joined.folder}/ (report.html, joined.csv, tidy.csv, table.md, sources.json)",
                  highlight=False, soft_wrap=True)  # fmt: skip


def print_diff(result: Any) -> None:
    """``cnnbench diff``: what differs between two runs (recipe, environment) and by how much they differ."""
    from rich.table import Table as RichTable

    console.print(f"[bold]{result.a.run_id}[/] (A) vs [bold]{result.b.run_id}[/] (B)", highlight=False)
    for title, items in (("recipe", result.recipe), ("environment", result.environment)):
        if not items:
            console.print(f"{title}: the same", highlight=False)
            continue
        table = RichTable(
            title=f"{title}: {len(items)} field{'s differ' if len(items) != 1 else ' differs'}",
            title_justify="left",
        )
        for column in ("field", "A", "B"):
            table.add_column(column, overflow="fold")
        for key, x, y in items:
            table.add_row(key, str(x), str(y))
        console.print(table)
    table = RichTable(title="measured (B - A)", title_justify="left")
    for column in ("measure", "A", "B", "B - A", "reading"):
        table.add_column(column, overflow="fold")
    for label, x, y, delta, unit, reading in result.measured:
        table.add_row(label, f"{x:.4g} {unit}", f"{y:.4g} {unit}", f"{delta:+.3g} {unit}", reading)
    console.print(table)


def _print_latency_rows(rows: list[dict[str, Any]], wide: bool) -> None:
    first = rows[0]
    console.print(
        f"{first['model']} at {first['input_size']}, fp32, eval mode without autograd, {first['threads']} CPU threads; "
        f"{first['timed_requests']} timed requests after {first['warmup_requests']} untimed; "
        f"{first.get('gpu_name') or first.get('device')}", highlight=False)  # fmt: skip
    trained = any("test_acc" in r for r in rows)
    columns = ["backend", "batch", "p50 ms", "p90 ms", "p99 ms", "max ms", "samples/s", "max |Δ| vs eager",
               "top-1 agree %", *(["test acc %", "eager acc %"] if trained else []), "prepare s", "status"]  # fmt: skip
    table_rows = []
    for r in rows:
        name = r["backend"] + (f" ({r['provider']})" if r.get("provider") else "")
        table_rows.append([name, r["batch_size"], *(format_number(r.get(k), ".3f") for k in (
            "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_max")),
            format_number(r.get("samples_per_s"), ",.0f"), format_number(r.get("max_abs_diff"), ".2e"),
            format_number(r.get("top1_agreement_pct"), ".1f"),
            *([format_number(r.get("test_acc"), ".2f"), format_number(r.get("eager_test_acc"), ".2f")] if trained else []),
            format_number(r.get("prepare_s"), ".2f"), r["status"]])  # fmt: skip
    priority = ["backend", "batch", "p50 ms", "p99 ms", "status", "test acc %", "eager acc %", "max |Δ| vs eager",
                "p90 ms", "max ms", "top-1 agree %", "samples/s", "prepare s"]  # fmt: skip
    print_fitted(
        *fitted_table("latency per request (ms)", columns, table_rows, priority=priority, wide=wide),
        wide=wide,
    )


def print_profile(result: Any, fmt: str = "table", wide: bool = False) -> None:
    import pandas as pd

    if fmt == "json":
        print(to_json({"rows": result.rows, "layers": result.layers, "top_ops": result.top_ops,
                       "grads": result.grads}))  # fmt: skip
        return
    if fmt == "csv":
        print(pd.DataFrame(result.rows).to_csv(index=False), end="")
        return
    if result.latency:
        _print_latency_rows(result.rows, wide)
    elif result.rows:
        _print_profile_rows(result.rows, wide)
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


def _print_profile_rows(rows: list[dict[str, Any]], wide: bool) -> None:
    first = rows[0]
    device = first["gpu_name"] or first["device"]
    console.print(
        f"[bold]{first['model']}[/] at {first['input_size']} on {device}, {first['precision']}"
        f"{', channels-last' if first['channels_last'] else ''}{', compiled' if first['compile'] else ''}; "
        f"{first['timed_steps']} timed steps after {first['warmup_steps']} warm-up; torch {first['torch_version']}",
        highlight=False,
    )
    cells = [
        (r["mode"], r["batch_size"], format_number(r.get("step_ms_median"), ".3f"), format_number(r.get("step_ms_iqr"), ".3f"),
         format_number(r.get("samples_per_s"), ",.0f"), format_number(r.get("peak_mem_MiB"), ",.0f"),
         format_number(r.get("estimated_mem_MiB"), ",.0f"), format_number(r.get("achieved_TFLOPs"), ".2f"),
         format_number(r.get("MFU_pct"), ".1f"), format_number(r.get("images_per_J"), ",.1f"),
         format_number(r.get("compile_s"), ".1f"), r["status"])
        for r in rows
    ]  # fmt: skip
    only_infer = {r["mode"] for r in rows} == {"infer"}
    step = "forward" if only_infer else "forward (infer) / forward+backward+Adam (train)"
    columns = ["mode", "batch", "step ms (median)", "IQR ms", "samples/s", "peak MiB", "est. MiB", "TFLOP/s",
               "MFU %", "images/J", "compile s", "status"]  # fmt: skip
    print_fitted(
        *fitted_table(
            f"step = {step}; MFU against the {first.get('peak_basis')} dense peak "
            f"({format_number(first.get('peak_TFLOPs'), '.0f')} TFLOP/s); peak MiB measured, est. MiB "
            "summary's estimate",
            columns,
            cells,
            priority=[
                "batch",
                "step ms (median)",
                "status",
                "samples/s",
                "IQR ms",
                "peak MiB",
                "TFLOP/s",
                "MFU %",
                "images/J",
                "compile s",
            ],  # fmt: skip
            wide=wide,
        ),
        wide=wide,
    )


def print_pool(result: Any) -> None:
    """The input and both poolings side by side, then what each keeps."""
    from rich.columns import Columns

    def grid(title: str, rows: list[list[float]]) -> Table:
        table = Table(title=title, show_header=False, box=None, padding=(0, 1))
        for _ in rows[0]:
            table.add_column(justify="right")
        for row in rows:
            table.add_row(*(f"{v:.3g}" for v in row))
        return table

    k, s = result.kernel, result.stride
    console.print(f"[bold]{result.source}[/], {k}x{k} windows, stride {s}", highlight=False)
    console.print(
        Columns(
            [grid("input", result.input), grid("max pool", result.max), grid("average pool", result.avg)],
            padding=(0, 4),
        )  # fmt: skip
    )
    for line in result.findings():
        console.print(f"- {line}", highlight=False)


def print_scaling(result: Any, fmt: str = "table") -> None:
    """profile --gpus: throughput and scaling efficiency per process count."""
    import pandas as pd

    if fmt == "json":
        print(to_json({"rows": result.rows}))
        return
    if fmt == "csv":
        print(pd.DataFrame(result.rows).to_csv(index=False), end="")
        return
    first = result.rows[0]
    where = first.get("gpu_name") or first.get("cpu") or first.get("device")
    title = (
        f"{first['model']} data-parallel training step, {first['input_size']}, {first['precision']}, "
        f"batch {first.get('batch_per_process', '?')} per process ({first['backend']}, {where})"
    )
    rows = []
    for r in result.rows:
        if r["status"] != "ok":
            rows.append([r["processes"], "-", "-", "-", r["status"]])
            continue
        eff = r.get("scaling_efficiency_pct")
        rows.append([r["processes"], f"{r['step_ms_median']:.2f} ({r['step_ms_iqr']:.2f})",
                     f"{r['images_per_s']:,.0f}", "-" if eff is None else f"{eff:.1f}", "ok"])  # fmt: skip
    columns = ["processes", "step ms, median (IQR)", "images/s", "scaling eff. %", "status"]
    print_fitted(*fitted_table(title, columns, rows, priority=columns))
    console.print(
        "images/s = processes x batch / the slowest rank's median step; efficiency = images/s over processes "
        "x one process's images/s (the same eager step, CUDA graphs off)",
        highlight=False,
    )
    console.print(f"results: {result.csv_path}", highlight=False, soft_wrap=True)


def print_model_list(patterns: list[str], options_of: str | None) -> None:
    """``cnnbench list``: the registry's models (glob ``patterns``), what a source offers
    (``torchvision:*resnet*``), or one model's options."""
    from cnnbench.data.specs import format_input_size, get_dataset_spec
    from cnnbench.errors import UnknownModelError
    from cnnbench.models import get_model_info, list_models
    from cnnbench.models._sources import list_external

    if options_of:
        info = get_model_info(options_of)
        rows = [(key, opt.describe_values(), str(info.defaults.get(key, opt.default)).lower(), opt.help)
                for key, opt in info.options.items()]  # fmt: skip
        if info.open_options:
            from cnnbench.models._sources import open_options

            rows = [(key, "any", default, "") for key, default in open_options(info.name)]
        console.print(
            simple_table(
                f"options of {info.name} (-o key=value)", ("name", "values", "default", "help"), rows
            )
        )
        return
    external = [p for p in patterns if ":" in p]  # torchvision:* and timm:* list what the source offers
    local = [p for p in patterns if ":" not in p]
    found = [name for p in external for name in list_external(p)]
    for name in found:
        console.print(name, highlight=False)
    if external and not local and found:
        return
    names = list_models(include=local or None) if local or not external else []
    if not names:
        raise UnknownModelError(
            f"no model matches {' '.join(patterns)!r}; run `cnnbench list` to see them all"
        )
    rows = []
    for name in names:
        info = get_model_info(name)
        spec = get_dataset_spec(info.default_dataset)
        rows.append((name, ", ".join(info.aliases) or "-", info.family,
                     f"{format_input_size(spec.input_shape)} ({spec.name})", info.description))  # fmt: skip
    console.print(simple_table(None, ("name", "aliases", "family", "default input", "description"), rows))


def print_summary(result: Any, fmt: str = "table", wide: bool = False) -> None:
    """``cnnbench summary`` as a table, CSV, JSON or Markdown (pandas imported for the last two only:
    it costs a third of a second)."""
    if fmt == "json":
        print(to_json(result.to_dict()))
    elif fmt == "csv":
        import pandas as pd

        print(pd.DataFrame([result.csv_row()]).to_csv(index=False), end="")
    elif fmt == "markdown":
        import pandas as pd

        print(pd.DataFrame([vars(layer) for layer in result.layers]).to_markdown(index=False))
        print("")
        print(
            pd.DataFrame(list(result.csv_row().items()), columns=["quantity", "value"]).to_markdown(
                index=False
            )
        )
    else:
        print_fitted(*summary_table(result, wide), wide=wide)
        console.print(summary_totals(result))
        if result.crosscheck_warning:
            err_console.print(
                f"[yellow]warning:[/] {result.crosscheck_warning}", highlight=False, soft_wrap=True
            )
