"""report.html: one self-contained page per comparison (or training run, or profile table) that opens
offline in any browser, prints on A4 and reads on a phone.

Everything it shows comes from the files beside it (tidy.csv, aggregated.csv, epochs.csv,
conditions.json, plan.json, the SVG figures); nothing is fetched: the figures are inlined as data URIs,
the curves are drawn here as inline SVG, the style sheet and the sorting script are inline. Every text
that came from a user (variant names, notes, file names, failure reasons) goes through
:func:`html.escape`, so none of it is read as markup.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cnnbench.report.tables import conditions_text, display_table, footnotes
from cnnbench.store.tables import format_number, missing, write_text_atomic

REPORT = "report.html"
FIGURES = (  # stem, caption; those present in the folder are shown in this order
    (
        "accuracy_per_epoch",
        "Test accuracy per epoch: mean over seeds, band from the lowest to the highest seed.",
    ),
    ("accuracy_vs_macs", "Final test accuracy against forward MACs per sample; dotted: the Pareto front."),
    ("accuracy_vs_params", "Final test accuracy against parameters; dotted: the Pareto front."),
    ("accuracy_vs_energy", "Final test accuracy against the training's energy; the Pareto front joined."),
    ("accuracy_vs_time", "Final test accuracy against training time; dotted: the Pareto front."),
    (
        "accuracy_vs_latency",
        "Final test accuracy against inference latency at batch 1 (p50); dotted: the Pareto front.",
    ),
    ("epoch_time", "Epoch time, median over epochs; bars: the interquartile range."),
)
RUN_COLUMNS = (  # tidy.csv's column, its heading, its format
    ("variant", "variant", None),
    ("seed", "seed", "d"),
    ("status", "status", None),
    ("final_test_acc", "final test acc (%)", ".2f"),
    ("test_at_best_val", "test acc at best val epoch (%)", ".2f"),
    ("best_test_acc", "best test acc (%, chosen on test)", ".2f"),
    ("epochs_done", "epochs", "d"),
    ("median_epoch_s", "epoch time (s, median)", ".3f"),
    ("total_train_s", "train time (s)", ".1f"),
    ("energy_train_J", "train energy (J)", ",.0f"),
    ("peak_gpu_mem_MiB", "peak GPU memory (MiB)", ",.0f"),
    ("run_id", "run id", None),
)
ENVIRONMENT = (  # conditions' key, its label
    ("gpu_name", "GPU"),
    ("device", "device"),
    ("cpu_model", "CPU"),
    ("driver_version", "driver"),
    ("gpu_power_limit_W", "GPU power limit (W)"),
    ("mig_mode", "MIG"),
    ("python_version", "Python"),
    ("torch_version", "torch"),
    ("cuda_version", "CUDA"),
    ("cudnn_version", "cuDNN"),
    ("cnnbench_version", "cnnbench"),
    ("cnnbench_commit", "cnnbench commit"),
    ("data_source", "data"),
)

STYLE = """
:root { color-scheme: light; --ink: #1a1a1a; --muted: #555; --rule: #ccc; --band: #f3f3f3; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1rem; max-width: 72rem; overflow-wrap: break-word; }
h1 { font-size: 1.5rem; margin: 0.2rem 0 0.6rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 0.5rem; }
p, li, dd { max-width: 48rem; } .muted { color: var(--muted); }
code, pre { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 0.85em; }
pre { white-space: pre-wrap; word-break: break-all; background: var(--band); padding: 0.6rem; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.15rem 1rem; margin: 0; }
dt { font-weight: 600; } dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }  /* a commit hash, a path */
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--rule); padding: 0.3rem 0.5rem; text-align: right; vertical-align: top;
         overflow-wrap: normal; }
td { white-space: nowrap; } th { min-width: 6ch; }
th:first-child, td:first-child, td.text { text-align: left; }
thead th { position: sticky; top: 0; background: #fff; border-bottom: 2px solid var(--ink); vertical-align: bottom; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button::after { content: " \\2195"; color: var(--muted); }
th[aria-sort="ascending"] button::after { content: " \\2191"; }
th[aria-sort="descending"] button::after { content: " \\2193"; }
tbody tr:nth-child(even) { background: var(--band); }
tr.not-ok td { font-style: italic; }
figure { margin: 1rem 0; break-inside: avoid; } figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { font-size: 0.85rem; color: var(--muted); }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); gap: 1rem; }
.curves svg { width: 100%; height: auto; }
@media print {
  @page { size: A4; margin: 14mm; }
  body { font-size: 10pt; max-width: none; padding: 0; }
  .table-wrap { overflow: visible; } table { font-size: 7pt; } thead th { position: static; }
  th button::after { content: ""; }
  figure, .curves > div, tr { break-inside: avoid; } h2 { break-after: avoid; }
  figure img { max-height: 120mm; width: auto; }
}
"""

SCRIPT = """
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("thead th").forEach((th, column) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", () => {
      const down = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("thead th").forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      const body = table.tBodies[0];
      const key = (row) => {
        const cell = row.cells[column];
        const value = cell.dataset.value;
        return value === undefined || value === "" ? null : Number(value);
      };
      const rows = Array.from(body.rows);
      const numeric = rows.some((row) => key(row) !== null);
      rows.sort((a, b) => {
        let order;
        if (numeric) {
          const x = key(a), y = key(b);
          if (x === null || y === null) return (x === null) - (y === null);  // blanks last either way
          order = x - y;
        } else {
          order = a.cells[column].textContent.localeCompare(b.cells[column].textContent);
        }
        return down ? -order : order;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
}
"""


def e(value: Any) -> str:
    """Text shown as text: ``<``, ``&`` and quotes escaped."""
    return html.escape("" if value is None else str(value), quote=True)


def _number_in(text: str) -> str:
    """The first number a cell shows (``"64.02 ± 1.82"`` -> ``"64.02"``), for sorting; blank if none."""
    found = re.search(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    return found.group(0).replace(",", "") if found else ""


def _table(header: list[str], rows: Iterable[list[str]], row_classes: Iterable[str] = (), text_columns: set[int] = frozenset(),
           caption: str = "") -> str:  # fmt: skip
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in header)
    body = []
    classes = list(row_classes)
    for index, row in enumerate(rows):
        cells = []
        for column, cell in enumerate(row):
            if column in text_columns or column == 0:
                cells.append(f'<td class="text">{e(cell)}</td>')
            else:
                cells.append(f'<td data-value="{e(_number_in(str(cell)))}">{e(cell)}</td>')
        attr = f' class="{classes[index]}"' if index < len(classes) and classes[index] else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    cap = f"<caption class=muted>{e(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="sortable">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")  # fmt: skip


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{e(caption)}" width="700">'
            f"<figcaption>{e(caption)}</figcaption></figure>")  # fmt: skip


def curve_svg(title: str, epochs: Any, series: tuple[tuple[str, str, str], ...]) -> str:
    """A small line chart of ``epochs``' columns over its epochs (mean over seeds; a band from the lowest
    to the highest seed where there are several), as inline SVG with its own axis labels."""
    width, height, left, right, top, bottom = 320, 190, 38, 8, 22, 30
    grouped = epochs.groupby("epoch")
    xs = sorted(epochs.epoch.unique())
    lines, low, high = [], math.inf, -math.inf
    for column, _label, _dash in series:
        if column not in epochs or epochs[column].isna().all():
            continue
        stats = grouped[column].agg(["mean", "min", "max"])
        low, high = min(low, float(stats["min"].min())), max(high, float(stats["max"].max()))
        lines.append((column, stats))
    if not lines:
        return ""
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    span_x = max(xs[-1] - xs[0], 1)

    def point(x: float, y: float) -> str:
        px = left + (x - xs[0]) / span_x * (width - left - right)
        py = top + (high - y) / (high - low) * (height - top - bottom)
        return f"{px:.1f},{py:.1f}"

    parts = [f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="none" stroke="#ccc"/>']  # fmt: skip
    styles = {column: dash for column, _label, dash in series}
    for column, stats in lines:
        if (epochs.groupby("epoch")[column].count() > 1).any():
            band = [point(x, y) for x, y in zip(stats.index, stats["max"], strict=True)]
            band += [point(x, y) for x, y in zip(stats.index[::-1], stats["min"][::-1], strict=True)]
            parts.append(
                f'<polygon points="{" ".join(band)}" fill="#0072B2" fill-opacity="0.15" stroke="none"/>'
            )
        pts = " ".join(point(x, y) for x, y in zip(stats.index, stats["mean"], strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#0072B2" stroke-width="1.6" '
                     f'stroke-dasharray="{styles[column]}"/>')  # fmt: skip
    for value in (low, high):
        parts.append(f'<text x="{left - 3}" y="{point(xs[0], value).split(",")[1]}" font-size="9" '
                     f'text-anchor="end" dominant-baseline="middle">{value:.3g}</text>')  # fmt: skip
    parts.append(f'<text x="{left}" y="{height - 8}" font-size="9">epoch {xs[0]}</text>')
    parts.append(
        f'<text x="{width - right}" y="{height - 8}" font-size="9" text-anchor="end">{xs[-1]}</text>'
    )
    legend = ", ".join(f"{label} ({'solid' if not dash else 'dashed'})" for column, label, dash in series
                       if column in dict(lines))  # fmt: skip
    parts.append(f'<text x="{left}" y="13" font-size="10" font-weight="600">{e(title)}</text>')
    return (
        f'<div><svg viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}: {e(legend)}">'
        f'{"".join(parts)}</svg><div class="muted" style="font-size:0.8rem">{e(legend)}</div></div>'
    )


def _page(title: str, sections: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
            + "".join(sections) + f"<script>{SCRIPT}</script></body></html>\n")  # fmt: skip


def _environment(conditions: dict[str, Any]) -> str:
    items = [(label, conditions[key]) for key, label in ENVIRONMENT if not missing(conditions.get(key))]
    if not items:
        return "<p class=muted>not recorded</p>"
    return "<dl>" + "".join(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in items) + "</dl>"


def _cell(value: Any, spec: str | None) -> str:
    if missing(value) or value == "":
        return "-"
    if spec is None:
        return str(value)
    if spec == "d":
        return str(int(float(value)))
    return format_number(float(value), spec)


def comparison_html(result: Any, command: str | None) -> str:
    """The report of a comparison (a :class:`~cnnbench.comparison.saved.CompareResult`); ``command`` is the
    line that reproduces it, where it is known."""
    agg, tidy, epochs, conditions = result.aggregated, result.tidy, result.epochs, result.conditions
    variants = list(dict.fromkeys(tidy.variant))
    seeds = sorted({int(s) for s in tidy.seed.dropna()})
    baseline = (
        agg.baseline.iloc[0] if "baseline" in agg and len(agg) and not missing(agg.baseline.iloc[0]) else None
    )
    device = conditions.get("gpu_name") or conditions.get("device") or "not recorded"
    sections = [
        f"<h1>{e(result.name)} <span class=muted style=\"font-weight:400\">· cnnbench comparison</span></h1>",
        "<p>Compared: " + ", ".join(f"<strong>{e(v)}</strong>" for v in variants)
        + (f"; differences from <strong>{e(baseline)}</strong>" if baseline else "")
        + f"; seeds {e(', '.join(map(str, seeds)))} ({len(seeds)} per variant). Device: {e(device)}.</p>",
        f"<h2>Conditions</h2><p>{e(conditions_text(conditions))}</p>",
    ]  # fmt: skip
    table = display_table(agg)
    statuses = ["" if s == "ok" else "not-ok" for s in agg.status]
    sections.append("<h2>Results</h2>" + _table(list(table.columns), table.astype(str).values.tolist(), statuses,
                                                caption="One row per variant: mean ± std over seeds."))  # fmt: skip
    notes = [*footnotes(result), *result.notes]
    if notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    figures = [(result.folder / f"{stem}.svg", caption) for stem, caption in FIGURES]
    figures += [(p, f"Final test accuracy against {p.stem.removeprefix('accuracy_vs_')}.")
                for p in sorted(result.folder.glob("accuracy_vs_*.svg"))
                if p.stem not in {stem for stem, _ in FIGURES}]  # fmt: skip
    shown = [_figure(path, caption) for path, caption in figures if path.is_file()]
    if shown:
        sections.append("<h2>Figures</h2>" + "".join(shown))
    if not epochs.empty:
        curves = [curve_svg(str(v), group, (("test_acc", "test accuracy (%)", ""), ("train_acc", "train accuracy (%)", "4 3")))
                  for v, group in epochs.groupby("variant", sort=False)]  # fmt: skip
        losses = [curve_svg(f"{v}: loss", group, (("train_loss", "train loss", ""), ("test_loss", "test loss", "4 3")))
                  for v, group in epochs.groupby("variant", sort=False)]  # fmt: skip
        sections.append("<h2>Per-variant curves</h2><p class=muted>Mean over seeds per epoch; the band spans the "
                        "lowest and highest seed.</p><div class=curves>" + "".join(curves + losses) + "</div>")  # fmt: skip
    rows = [
        [_cell(r.get(column), spec) for column, _h, spec in RUN_COLUMNS if column in tidy]
        for r in tidy.to_dict("records")
    ]
    header = [heading for column, heading, _s in RUN_COLUMNS if column in tidy]
    sections.append("<h2>Runs</h2>" + _table(header, rows, ["" if s == "ok" else "not-ok" for s in tidy.status],
                                            {header.index("status"), header.index("run id")} & set(range(len(header))),
                                            caption="One row per variant and seed, as tidy.csv holds them."))  # fmt: skip
    unfinished = tidy[tidy.status.astype(str) != "ok"]
    if len(unfinished):
        sections.append("<h2>Runs without a result</h2><ul>" + "".join(
            f"<li><strong>{e(r.variant)}</strong> seed {e(r.seed)}: {e(r.status)}</li>" for r in unfinished.itertuples()
        ) + "</ul>")  # fmt: skip
    sections.append(f"<h2>Environment</h2>{_environment(conditions)}")
    sections.append("<h2>Reproduce</h2>" + (f"<pre>{e(command)}</pre>" if command else
                                             "<p class=muted>The command was not recorded (rendered from tidy.csv).</p>"))  # fmt: skip
    return _page(f"{result.name}: cnnbench comparison", sections)


def run_html(run_dir: Path, config: dict[str, Any], epochs: Any, summary: dict[str, Any] | None,
             command: str | None) -> str:  # fmt: skip
    """The report of one training run: its result (its row of runs.csv, where found), curves, per-epoch
    table, recipe and conditions, environment."""
    title = run_dir.name
    device = config.get("gpu_name") or config.get("device") or "not recorded"
    sections = [f"<h1>{e(title)} <span class=muted style=\"font-weight:400\">· cnnbench run</span></h1>",
                f"<p>{e(config.get('model'))} ({e(config.get('options') or 'default options')}) on "
                f"{e(config.get('dataset'))}, seed {e(config.get('seed'))}; device {e(device)}.</p>"]  # fmt: skip
    if summary:
        shown = [(k, summary.get(k)) for k in ("status", "final_test_acc", "best_test_acc", "test_at_best_val",
                                                 "median_epoch_s", "total_train_s", "energy_train_J")
                 if not missing(summary.get(k))]  # fmt: skip
        sections.append(
            "<h2>Result</h2><dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in shown) + "</dl>"
        )
    if not epochs.empty:
        plot = epochs.assign(variant=title)
        sections.append("<h2>Curves</h2><div class=curves>"
                        + curve_svg("accuracy (%)", plot, (("test_acc", "test", ""), ("train_acc", "train", "4 3")))
                        + curve_svg("loss", plot, (("train_loss", "train", ""), ("test_loss", "test", "4 3"))) + "</div>")  # fmt: skip
        columns = [c for c in epochs.columns if epochs[c].notna().any()]
        rows = [
            [_cell(r[c], "d" if c == "epoch" else ".4g") for c in columns] for r in epochs.to_dict("records")
        ]
        sections.append("<h2>Epochs</h2>" + _table(columns, rows, caption="epochs.csv"))
    recipe = {
        k: v
        for k, v in config.items()
        if k not in ("config", "class_names") and not isinstance(v, (dict, list))
    }
    sections.append("<h2>Recipe and conditions</h2><dl>"
                    + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in recipe.items()) + "</dl>")  # fmt: skip
    sections.append(f"<h2>Environment</h2>{_environment(config)}")
    sections.append(
        "<h2>Reproduce</h2>" + (f"<pre>{e(command)}</pre>" if command else "<p class=muted>not recorded</p>")
    )
    return _page(f"{title}: cnnbench run", sections)


def profile_html(path: Path, rows: Any) -> str:
    """The report of a profile table: one row per model, mode and batch size, with its conditions."""
    keep = [c for c in ("model", "options", "input_size", "mode", "batch_size", "precision", "channels_last",
                        "step_ms_median", "step_ms_iqr", "samples_per_s", "peak_mem_MiB", "estimated_mem_MiB",
                        "achieved_TFLOPs", "MFU_pct", "status", "gpu_name", "device", "torch_version", "date")
            if c in rows]  # fmt: skip
    table = [
        [_cell(r[c], None if isinstance(r[c], str) else ".4g") for c in keep] for r in rows.to_dict("records")
    ]
    sections = [f"<h1>{e(path.name)}</h1>",
                "<p>Step time: median over the timed steps after warm-up; IQR its spread; samples/s per "
                "batch over the median step; memory in MiB (peak measured, estimate from summary).</p>",
                "<h2>Rows</h2>" + _table(keep, table, caption=str(path))]  # fmt: skip
    first = rows.iloc[0].to_dict() if len(rows) else {}
    sections.append(f"<h2>Environment</h2>{_environment(first)}")
    return _page(f"{path.name}: cnnbench profile", sections)


def write_report(result: Any, command: str | None) -> Path:
    """report.html in the comparison's folder, written to a temporary file and renamed."""
    path = result.folder / REPORT
    write_text_atomic(path, comparison_html(result, command))
    return path


def write_joined_report(joined: Any) -> Path:
    """report.html of comparisons joined across machines (a :class:`cnnbench.comparison.join.Joined`: its
    table and notes as shown, each source's conditions, every source's rows)."""
    sections = [f"<h1>{e(joined.name)} <span class=muted style=\"font-weight:400\">· cnnbench, joined</span></h1>",
                "<p>Devices: " + ", ".join(f"<strong>{e(d)}</strong>" for d in joined.devices) + ".</p>",
                f"<h2>Recipe</h2><p>{e(joined.recipe_text)}</p>",
                "<h2>Results</h2>" + _table(joined.header, joined.rows, caption="One row per variant; a group of columns per device."),
                "<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in joined.notes) + "</ul>"]  # fmt: skip
    for device, result in zip(joined.devices, joined.sources, strict=True):
        sections.append(f"<h2>Environment: {e(device)}</h2>{_environment(result.conditions)}"
                        f"<p class=muted>from {e(result.folder)}</p>")  # fmt: skip
    runs = joined.tidy
    shown = [
        (c, h, s)
        for c, h, s in (("source", "source", None), ("device", "device", None), *RUN_COLUMNS)
        if c in runs
    ]
    sections.append("<h2>Runs</h2>" + _table([h for _c, h, _s in shown],
                                            [[_cell(r.get(c), s) for c, _h, s in shown] for r in runs.to_dict("records")],
                                            text_columns={0, 1, 2, 4}, caption="Every source's rows."))  # fmt: skip
    path = joined.folder / REPORT
    write_text_atomic(path, _page(f"{joined.name}: cnnbench joined comparison", sections))
    return path
