"""A comparison as text: the table with units in its column names, its conditions line and
footnotes, and the same in Markdown and LaTeX (booktabs), every cell escaped."""

from __future__ import annotations

from typing import Any

from cnnbench.recipe import condition_items
from cnnbench.store.tables import format_number, missing


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
            "epoch time (s, median)": format_number(r.median_epoch_s, ".3f"),
            "epoch time IQR (s)": format_number(r.iqr_epoch_s, ".3f"),
            "train time (s)": format_number(r.total_train_s, ".1f"),
            "best test acc (%)": _fmt_mean_std(r.best_test_acc_mean, r.best_test_acc_std),
            "final test acc (%)": _fmt_mean_std(r.final_test_acc_mean, r.final_test_acc_std),
            "epochs to 95% of best": format_number(r.epochs_to_95pct_of_best, ".1f"),
            "train-test gap (pp)": format_number(r.train_test_gap_pct_points, ".2f"),
            "seeds": str(r.seeds),
            "status": r.status,
        })  # fmt: skip
        if aggregated.seeds.max() >= 2:
            rows[-1][DELTA] = _fmt_delta(r)
    return pd.DataFrame(rows)


DELTA = "Δ best acc (pp, 95% CI)"


def _fmt_delta(r: Any) -> str:
    """'+3.55 [+1.19, +5.91] *': the difference from the baseline, its interval, a mark if it excludes 0."""
    if r.variant == r.baseline:
        return "reference"
    if missing(r.delta_ci95_low):
        return "-"
    mark = " *" if r.delta_significant else ""
    return f"{r.delta_best_acc:+.2f} [{r.delta_ci95_low:+.2f}, {r.delta_ci95_high:+.2f}]{mark}"


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
    DELTA: "Δ acc pp [95% CI]",
}
# Which terminal columns stay when the table is too wide for the terminal, most important first.
# A variant that failed or did not learn must show it at any width: status comes right after the name.
TERMINAL_PRIORITY = ["status", "best acc %", "Δ acc pp [95% CI]", "epoch s", "params", "MACs (M)", "final acc %", "n", "gap pp",
                     "conv. ep", "train FLOPs (M)", "IQR s", "total s"]  # fmt: skip


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
    return f"{text}; device {device}"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def footnotes(result: Any) -> list[str]:
    """What a reader must know to read the table: how many seeds stand behind each number."""
    seeds = result.aggregated.seeds.max() if len(result.aggregated) else 0
    if seeds >= 2:
        return [
            f"{DELTA}: mean best test accuracy minus that of {result.aggregated.baseline.iloc[0]}, over "
            f"{seeds} seeds, with a 95% confidence interval from Welch's t (unequal variances); * where the "
            "interval excludes zero."
        ]
    if seeds == 1:
        return [
            "One seed per variant: a difference smaller than the spread between seeds of such runs "
            "(1-2 points of accuracy for the chapter's models on CIFAR-10) is not an answer; --seeds 3 or more measures it."
        ]
    return []


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
