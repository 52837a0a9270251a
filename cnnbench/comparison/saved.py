"""A comparison as its folder keeps it: tidy.csv, epochs.csv and conditions.json (with plan.json, the
command that made it), read back without training and checked before anything is written
(``compare --from``, ``cnnbench report``, the join of several machines' comparisons)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.comparison.aggregate import LEGACY_NAMES, TIDY_COLUMNS, TIDY_NUMBERS, aggregate
from cnnbench.comparison.latency import read_latency
from cnnbench.comparison.plan import Plan
from cnnbench.errors import CnnbenchError, InvalidArgumentError, ResultsError
from cnnbench.store.tables import read_frame, read_json, to_json, write_text_atomic


@dataclass
class CompareResult:
    name: str
    folder: Path
    tidy: Any  # DataFrame, one row per variant and seed
    epochs: Any  # DataFrame, one row per variant, seed and epoch
    aggregated: Any  # DataFrame, one row per variant
    conditions: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    command: str | None = None  # the line that makes it again, where its plan is known
    latency: Any = None  # DataFrame: the rows of compare --latency (its latency.csv), where it timed them


def load_compare(source: Path, baseline: str | None = None) -> CompareResult:
    """A comparison from its folder (or its tidy.csv) without training; every file it reads is checked
    before anything is written."""
    import pandas as pd

    source = Path(source)
    folder = source.parent if source.suffix == ".csv" else source
    tidy_path = source if source.suffix == ".csv" else folder / "tidy.csv"
    if not tidy_path.is_file():
        raise InvalidArgumentError(f"expected a compare folder or its tidy.csv, got {str(source)!r}")
    tidy = read_frame(tidy_path).rename(columns=LEGACY_NAMES)
    absent = [c for c in TIDY_COLUMNS if c not in tidy.columns]
    if tidy.empty or absent:
        raise ResultsError(
            f"expected a tidy table with {', '.join(absent or TIDY_COLUMNS)} in {tidy_path}, got none"
        )
    for column in TIDY_NUMBERS:
        if column in tidy.columns and not pd.api.types.is_numeric_dtype(tidy[column]):
            bad = tidy[column][pd.to_numeric(tidy[column], errors="coerce").isna() & tidy[column].notna()]
            raise ResultsError(
                f"expected numbers in column {column} of {tidy_path}, got {str(bad.iloc[0])!r} on line {bad.index[0] + 2}"
            )
    tidy["options"] = tidy["options"].astype(object).fillna("").astype(str)
    tidy["run_id"] = tidy["run_id"].astype(object).fillna("").astype(str)
    epochs_path = folder / "epochs.csv"
    epochs = read_frame(epochs_path) if epochs_path.is_file() else pd.DataFrame()
    meta_path = folder / "conditions.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    if baseline is not None:
        labels = list(dict.fromkeys(tidy.variant))
        if baseline not in labels:
            raise InvalidArgumentError(
                f"expected --baseline to be one of {', '.join(labels)}, got {baseline!r}"
            )
    else:
        baseline = meta.get("baseline")
    price = meta.get("price_per_gpu_hour")
    latency = read_latency(folder)
    return CompareResult(folder.name, folder, tidy, epochs, aggregate(tidy, baseline, price, latency),
                         meta.get("conditions", {}), meta.get("notes", []), recorded_command(folder), latency)  # fmt: skip


def recorded_command(folder: Path) -> str | None:
    """The command that made the comparison in ``folder``: from its plan.json, else its command.txt (a
    folder put together by hand), else None."""
    if (folder / "plan.json").is_file():
        try:
            return Plan.load(folder).config.command_line()
        except CnnbenchError:
            return None  # a plan this version cannot read: the tables still render
    text = folder / "command.txt"
    return text.read_text(encoding="utf-8").strip() or None if text.is_file() else None


def add_notes(result: CompareResult, notes: list[str]) -> None:
    """Append notes not already there and save them with the conditions (for ``--from --note``)."""
    new = [n for n in dict.fromkeys(notes) if n not in result.notes]
    if new:
        result.notes.extend(new)
    baseline = result.aggregated.baseline.iloc[0] if "baseline" in result.aggregated else None
    price = result.aggregated.attrs.get("price_per_gpu_hour")
    write_meta(result.folder, result.conditions, result.notes, baseline, price)


def write_meta(folder: Path, conditions: dict[str, Any], notes: list[str], baseline: str | None = None,
                price_per_gpu_hour: float | None = None) -> None:  # fmt: skip
    """conditions.json: what ``--from`` reads back besides the CSVs."""
    meta = {
        "conditions": conditions,
        "notes": notes,
        "baseline": baseline,
        "price_per_gpu_hour": price_per_gpu_hour,
    }
    write_text_atomic(folder / "conditions.json", to_json(meta))
