"""A comparison's files: aggregated.csv, table.md, table.tex, the plots (PNG and SVG) and report.html, each
written to a temporary file and renamed, so a failure leaves the earlier outputs whole."""

from __future__ import annotations

from typing import Any

from cnnbench.report.html import write_report
from cnnbench.report.plots import PlotWorkers, compare_plots
from cnnbench.report.tables import (
    conditions_text,
    display_table,
    escape_latex,
    escape_markdown,
    footnotes,
    latex_table,
    markdown_table,
)
from cnnbench.store.tables import write_frame_atomic, write_text_atomic


def write_outputs(result: Any, workers: PlotWorkers | None = None) -> None:
    """Markdown, LaTeX (booktabs), aggregated CSV, plots (PNG and SVG) and report.html in the compare folder, each
    written to a temporary file and renamed, so a failure leaves the earlier outputs whole; the plots
    drawn by ``workers`` where they were started."""
    folder = result.folder
    write_frame_atomic(result.aggregated, folder / "aggregated.csv")
    table = display_table(result.aggregated)
    notes = "".join(f"- {escape_markdown(n)}\n" for n in [*footnotes(result), *result.notes])
    write_text_atomic(
        folder / "table.md",
        f"# {escape_markdown(result.name)}\n\nConditions: {escape_markdown(conditions_text(result.conditions))}\n\n"
        f"{markdown_table(table)}\n" + (f"\nNotes:\n{notes}" if notes else ""),
    )
    tex_notes = "".join(f"% {escape_latex(n)}\n" for n in [*footnotes(result), *result.notes])
    write_text_atomic(folder / "table.tex", tex_notes + latex_table(table))
    compare_plots(result, workers)
    write_report(result, result.command)  # last: it inlines the figures
