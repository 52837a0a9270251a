"""Comparisons joined across machines (:mod:`cnnbench.comparison.join`), as text: the table with a group of
columns per device, its notes, and the same in Markdown (the terminal prints the rows, report.html
shows them)."""

from __future__ import annotations

from typing import Any

from cnnbench.store.tables import format_number, missing


def display_rows(joined: Any) -> tuple[list[str], list[list[str]]]:
    """The joined table as text: per variant, pooled accuracy, then a group of columns per device."""
    header = ["variant", "params"]
    if joined.recipe_matches:
        header.append("final test acc (%, all devices)")
    for device in joined.devices:
        header += [f"{device}: epoch time (s)", f"{device}: images/s", f"{device}: energy/epoch (J)",
                   f"{device}: energy (mJ/image)", f"{device}: GPU-hours"]  # fmt: skip
        if device != joined.devices[0]:
            header.append(f"{device}: epoch time / {joined.devices[0]}'s")
            if joined.recipe_matches:
                header.append(f"{device}: Δ final acc vs {joined.devices[0]} (pp, 95% CI)")
        else:
            header.append(f"{device}: final test acc (%)")
    rows = []
    for r in joined.table.to_dict("records"):
        row = [str(r["variant"]), format_number(r["params"], ",.0f")]
        if joined.recipe_matches:
            std = r["final_test_acc_std"]
            row.append(
                f"{format_number(r['final_test_acc_mean'], '.2f')} ± {format_number(std, '.2f')} (n={r['seeds']})"
            )
        for device in joined.devices:
            row += [format_number(r[f"{device}|median_epoch_s"], ".3f"), format_number(r[f"{device}|images_per_s"], ",.0f"),
                    format_number(r[f"{device}|energy_per_epoch_J"], ",.0f"),
                    format_number(r[f"{device}|J_per_image"] * 1e3, ".2f"), format_number(r[f"{device}|gpu_hours"], ".4f")]  # fmt: skip
            if device != joined.devices[0] and not r[f"{device}|seeds"]:
                row += ["-", "- (not run on this device)"] if joined.recipe_matches else ["-"]
            elif device != joined.devices[0]:
                row.append(format_number(r[f"{device}|epoch_time_ratio"], ".2f") + "x")
                if joined.recipe_matches:
                    delta, low, high = (r.get(f"{device}|delta_acc"), r.get(f"{device}|delta_low"),
                                        r.get(f"{device}|delta_high"))  # fmt: skip
                    if missing(delta) or missing(low):
                        row.append("- (fewer than 2 seeds)")
                    else:
                        q = r.get(f"{device}|delta_p_holm")
                        mark = " *" if not missing(q) and q < 0.05 else ""
                        row.append(f"{delta:+.2f} [{low:+.2f}, {high:+.2f}]{mark}")
            else:
                row.append(format_number(r[f"{device}|final_test_acc_mean"], ".2f"))
        rows.append(row)
    return header, rows


def joined_notes(joined: Any) -> list[str]:
    notes = [
        f"Devices: {', '.join(f'{d} ({r.folder})' for d, r in zip(joined.devices, joined.sources, strict=True))}."
    ]
    if joined.recipe_matches:
        notes.append(
            "Accuracy pooled over every device's seeds (the recipes match field by field). Δ: a device's mean "
            f"final test accuracy minus {joined.devices[0]}'s, 95% Welch interval; * where the Holm-adjusted p "
            "over the variants is below 0.05: the device changed the accuracy."
        )
    else:
        notes.append("Shown apart (--apart): " + "; ".join(joined.differences) + ". Accuracy is not pooled.")
    notes.append("Epoch time: median over seeds of each run's median epoch; images/s: median over epochs and "
                 "seeds; energy per epoch and per image of training, mean over seeds; ratio: epoch time over "
                 f"{joined.devices[0]}'s.")  # fmt: skip
    return notes


def joined_markdown(joined: Any) -> str:
    import pandas as pd

    from cnnbench.report.tables import escape_markdown, markdown_table

    notes = "".join(f"- {escape_markdown(n)}\n" for n in joined.notes)
    return (f"# {escape_markdown(joined.name)}\n\nRecipe: {escape_markdown(joined.recipe_text)}\n\n"
            f"{markdown_table(pd.DataFrame(joined.rows, columns=joined.header))}\n\nNotes:\n{notes}")  # fmt: skip
