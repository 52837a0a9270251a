"""A comparison as text: the table with units in its column names, its conditions line and
footnotes, and the same in Markdown and LaTeX (booktabs), every cell escaped."""

from __future__ import annotations

from typing import Any

from cnnbench.comparison.latency import latency_note
from cnnbench.recipe import condition_items
from cnnbench.store.tables import format_number, missing


def _fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if missing(mean):
        return "-"
    return f"{mean:.{digits}f}" if missing(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


FINAL = "final test acc (%)"
AT_BEST_VAL = "test acc at best val epoch (%)"
BEST_ON_TEST = "best test acc (%, chosen on test)"
DELTA = "Δ final acc (pp, 95% CI)"


def _has(aggregated: Any, column: str) -> bool:
    return column in aggregated.columns and aggregated[column].notna().any()


def display_table(aggregated: Any) -> Any:
    """The aggregated table as text cells with units in the column names (for Markdown and LaTeX): final
    test accuracy first; the test accuracy of the epoch chosen on validation where there is a split;
    the best epoch by test accuracy after, named for the selection it is."""
    import pandas as pd

    rows = []
    target = _has(aggregated, "seeds_reaching_target")
    for _, r in aggregated.iterrows():
        row = {
            "variant": r.variant,
            "params": format_number(r.params, ",.0f"),
            "fwd MACs/sample (M)": format_number(r.forward_MACs_per_sample / 1e6, ",.1f"),
            "train FLOPs/sample (M)": format_number(r.train_FLOPs_per_sample / 1e6, ",.1f"),
            "epoch time (s, median)": format_number(r.median_epoch_s, ".3f"),
            "epoch time IQR (s)": format_number(r.iqr_epoch_s, ".3f"),
            "train time (s)": format_number(r.total_train_s, ".1f"),
            FINAL: _fmt_mean_std(r.final_test_acc_mean, r.final_test_acc_std),
        }
        if _has(aggregated, "test_at_best_val_mean"):
            row[AT_BEST_VAL] = _fmt_mean_std(r.test_at_best_val_mean, r.test_at_best_val_std)
        row[BEST_ON_TEST] = _fmt_mean_std(r.best_test_acc_mean, r.best_test_acc_std)
        if target:
            reached = "-" if missing(r.seeds_reaching_target) else f"{int(r.seeds_reaching_target)}/{r.seeds}"
            row["time to target (s)"] = _fmt_mean_std(r.seconds_to_target_mean, r.seconds_to_target_std, 1)
            row["seeds reaching target"] = reached
        if _has(aggregated, "energy_train_J_mean"):
            row["energy/epoch (J)"] = _fmt_mean_std(r.energy_per_epoch_J_mean, r.energy_per_epoch_J_std, 0)
            row["train energy (kJ)"] = format_number(r.energy_train_J_mean / 1e3, ",.1f")
            row["energy (mJ/image)"] = format_number(r.J_per_image_mean * 1e3, ".2f")
            if target:
                row["energy to target (kJ)"] = format_number(r.energy_to_target_J_mean / 1e3, ",.1f")
        if _has(aggregated, "gpu_hours_mean") and aggregated.gpu_hours_mean.max() > 0:
            row["GPU-hours"] = format_number(r.gpu_hours_mean, ".4f")
        if _has(aggregated, "cost_mean"):
            row["cost"] = format_number(r.cost_mean, ",.4f")
        for backend in latency_columns(aggregated):
            for stat in ("p50", "p99"):
                row[f"latency {stat} (ms, batch 1, {backend})"] = format_number(
                    r[f"latency_ms_{stat}_{backend}"], ".3f"
                )
        row.update({
            "epochs to 95% of best": format_number(r.epochs_to_95pct_of_best, ".1f"),
            "train-test gap (pp)": format_number(r.train_test_gap_pct_points, ".2f"),
            "seeds": str(r.seeds),
            "status": r.status,
        })  # fmt: skip
        if aggregated.seeds.max() >= 2:
            row[DELTA] = _fmt_delta(r)
        rows.append(row)
    return pd.DataFrame(rows)


def latency_columns(aggregated: Any) -> list[str]:
    """The backends whose batch-1 latency the aggregated table holds (``compare --latency``), in order."""
    prefix = "latency_ms_p50_"
    return [c.removeprefix(prefix) for c in aggregated.columns if c.startswith(prefix)]


def terminal_header(column: str) -> str:
    """A column's short name in the terminal: ``latency p50 (ms, batch 1, eager)`` is ``eager p50 ms``."""
    if column.startswith("latency p") and column.endswith(")"):
        stat, _, rest = column.removeprefix("latency ").partition(" ")
        return f"{rest.rsplit(', ', 1)[-1].rstrip(')')} {stat} ms"
    return TERMINAL_HEADERS.get(column, column)


def _fmt_delta(r: Any) -> str:
    """'+3.55 [+1.19, +5.91] *': the difference in final accuracy from the baseline, its interval, and a
    mark where it is significant (Holm-adjusted with three variants or more)."""
    if r.variant == r.baseline:
        return "reference"
    if missing(getattr(r, "delta_final_ci95_low", None)):
        return "-"
    mark = " *" if r.delta_final_significant else ""
    return f"{r.delta_final_acc:+.2f} [{r.delta_final_ci95_low:+.2f}, {r.delta_final_ci95_high:+.2f}]{mark}"


TERMINAL_HEADERS = {
    "fwd MACs/sample (M)": "MACs (M)",
    "train FLOPs/sample (M)": "train FLOPs (M)",
    "epoch time (s, median)": "epoch s",
    "epoch time IQR (s)": "IQR s",
    "train time (s)": "total s",
    FINAL: "final acc %",
    AT_BEST_VAL: "at best val %",
    BEST_ON_TEST: "best on test %",
    "time to target (s)": "to target s",
    "seeds reaching target": "reached",
    "energy/epoch (J)": "J/epoch",
    "train energy (kJ)": "kJ",
    "energy (mJ/image)": "mJ/img",
    "energy to target (kJ)": "kJ to target",
    "epochs to 95% of best": "conv. ep",
    "train-test gap (pp)": "gap pp",
    "seeds": "n",
    DELTA: "Δ final pp [95% CI]",
}
# Which terminal columns stay when the table is too wide for the terminal, most important first.
# A variant that failed or did not learn must show it at any width: status comes right after the name.
TERMINAL_PRIORITY = ["status", "final acc %", "Δ final pp [95% CI]", "at best val %", "epoch s", "params", "MACs (M)",
                     "to target s", "reached", "J/epoch", "mJ/img", "best on test %", "n", "kJ", "kJ to target",
                     "GPU-hours", "cost", "gap pp", "conv. ep", "train FLOPs (M)", "IQR s", "total s"]  # fmt: skip


def conditions_text(conditions: dict[str, Any]) -> str:
    """The conditions every run of a comparison shares, in one line: the recipe's shared fields, then the
    device and software (:func:`cnnbench.recipe.condition_items`)."""
    if not conditions:
        return "conditions: none recorded (no variant ran)"
    device = conditions.get("gpu_name") or conditions.get("device")
    items = [(label, value) for label, value in condition_items(conditions) if label not in ("GPU", "device")]
    text = ", ".join(
        label.format(_cell(value)) if "{}" in label else f"{label} {_cell(value)}" for label, value in items
    )
    return f"{text}; device {device}" if device else text


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def footnotes(result: Any) -> list[str]:
    """What a reader must know to read the table: which accuracy leads and what selected it, how many
    seeds stand behind each number, and how differences were tested."""
    agg, c = result.aggregated, result.conditions
    seeds = agg.seeds.max() if len(agg) else 0
    notes = []
    split = c.get("val_split")
    if split or _has(agg, "test_at_best_val_mean"):
        held = (f"{split:.0%} of the" if split < 1 else f"{split:,.0f}") if split else "some"
        notes.append(
            f"Final test acc: the last epoch's. Test acc at best val epoch: the epoch best on validation ({held} "
            "training images held out, stratified by class, the same for every variant and seed) selects the "
            "model; the test set selects nothing. Best test acc (chosen on test) picks the epoch on the test "
            "set itself and is biased upward."
        )
    elif len(agg):
        notes.append(
            "Final test acc: the last epoch's; no model was selected (no --val-split). Best test acc (chosen "
            "on test) picks the best epoch on the test set itself, as the chapter's loop reports it, and is "
            "biased upward."
        )
    if seeds >= 2:
        reference = agg.baseline.iloc[0]
        adjusted = len(agg) >= 3
        how = (f"* where Holm-adjusted p < 0.05 over the {len(agg) - 1} comparisons with {reference} (Welch's t); "
               "the intervals are not adjusted") if adjusted else "* where the interval excludes zero"  # fmt: skip
        notes.append(
            f"{DELTA}: mean final test accuracy minus that of {reference}, over {seeds} seeds, with a 95% confidence "
            f"interval from Welch's t (unequal variances); {how}."
        )
    elif seeds == 1:
        notes.append(
            "One seed per variant: a difference smaller than the spread between seeds of such runs "
            "(1-2 points of accuracy for the chapter's models on CIFAR-10) is not an answer; --seeds 3 or more measures it."
        )
    if _has(agg, "seeds_reaching_target"):
        target = c.get("target_acc") or "the target"
        notes.append(
            f"Time to target: training seconds (warm-up and evaluation apart) until the evaluation split "
            f"(validation where there is one, else test) first reached {target}%, mean ± std over the seeds that did."
        )
    notes.append(energy_note(result))
    latency = latency_note(getattr(result, "latency", None), c)
    if latency:
        notes.append(latency)
    if (
        "train_acc_basis" in result.tidy.columns
        and (result.tidy.train_acc_basis == "running, train mode").any()
    ):
        notes.append("Gap: final train accuracy minus final test accuracy; the train accuracy of runs recorded "
                     "before it was measured in eval mode is the last epoch's running accuracy (train mode).")  # fmt: skip
    else:
        notes.append("Gap: final train accuracy (the final model over its training images, eval mode) minus final "
                     "test accuracy.")  # fmt: skip
    return notes


def energy_note(result: Any) -> str:
    """How the energy columns were measured, or that they were not."""
    agg, tidy = result.aggregated, result.tidy
    if not _has(agg, "energy_train_J_mean"):
        return "Energy not measured (no GPU energy counter or RAPL readable here)."
    methods = sorted(set(tidy.energy_method.dropna())) if "energy_method" in tidy else []
    idle = agg.idle_power_W.dropna() if "idle_power_W" in agg else []
    text = (f"Energy: the device's own counter ({', '.join(methods)}) read around every epoch, training apart "
            "from evaluation and warm-up; J/epoch mean ± std over seeds; mJ/image of training")  # fmt: skip
    if len(idle):
        text += f"; the device idled at {idle.mean():.0f} W before the first run"
    if "energy_shared" in agg and agg.energy_shared.any():
        text += "; SHARED: other runs trained on the card at the same time, so each reading holds theirs too"
    price = agg.attrs.get("price_per_gpu_hour")
    if price is not None:
        text += f"; cost = GPU-hours x {price:g}"
    return text + "."


def escape_markdown(text: Any) -> str:
    """A Markdown table cell: pipes, backslashes and emphasis marks escaped, one line."""
    out = str(text).replace("\\", "\\\\")
    for ch in "|_*`#":
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.splitlines())


_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&", "_": r"\_",
          "$": r"\$", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "±": r"$\pm$", "Δ": r"$\Delta$"}  # fmt: skip


def escape_latex(text: Any) -> str:
    """A LaTeX cell: every special character escaped, one line."""
    return "".join(_LATEX.get(ch, ch) for ch in " ".join(str(text).splitlines()))


def markdown_table(frame: Any) -> str:
    columns = [escape_markdown(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += [
        "| " + " | ".join(escape_markdown(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def latex_table(frame: Any) -> str:
    """A booktabs tabular: text columns left, numbers right."""
    align = "l" + "r" * (len(frame.columns) - 2) + "l"
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(escape_latex(c) for c in frame.columns) + r" \\",
             r"\midrule"]  # fmt: skip
    lines += [" & ".join(escape_latex(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def swept_option(tidy: Any) -> str | None:
    """The one option whose values tell the variants of one model apart (a sweep), if that is what
    the comparison is; None for a comparison of several models or of several options at once."""
    if tidy.model.nunique() != 1:
        return None
    options = [
        dict(kv.split("=", 1) for kv in str(o).split(";") if "=" in kv) for o in tidy.options.fillna("")
    ]
    keys = {k for o in options for k in o}
    varying = [k for k in sorted(keys) if len({o.get(k) for o in options}) > 1]
    return varying[0] if len(varying) == 1 else None
