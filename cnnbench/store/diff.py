"""``cnnbench diff RUN_A RUN_B``: why two runs' numbers differ. The recipe fields that differ, the
environment fields that differ (environment.json and the run's recorded conditions), and the measured
differences (final test accuracy, median epoch time, energy per epoch), each read against the spread that
seeds give for this model and recipe in the runs' stores: a difference of two single runs is within that
spread when it is below 1.96 x sqrt(2) x the seeds' standard deviation (the 95% range of the difference
of two draws), and is called beyond it otherwise; with fewer than two such seeds it is not judged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.store.runs import find_run
from cnnbench.store.tables import missing, read_frame, read_json

# Recorded per run but not a cause: where its files went, when it ran, its name, what is measured anyway.
NOT_CAUSES = {"out", "data_dir", "run_name", "tensorboard", "date", "run_id", "conditions_hash", "config",
              "collect_env.cpu_info", "class_names"}  # fmt: skip
RECIPE_KEYS_TO_SKIP = {"out", "data_dir", "run_name", "tensorboard"}
VOLATILE = ("sm_clock_MHz", "idle_power_W", "params", "forward_MACs_per_sample", "train_FLOPs_per_sample",
            "train_samples", "test_samples", "val_samples", "images_skipped", "batches_made")  # fmt: skip
MEASURES = (  # label, how it is read from a run's epochs, its unit, the runs.csv column of the seeds' spread
    ("final test accuracy", "final_test_acc", "pp", "final_test_acc"),
    ("median epoch time", "median_epoch_s", "s", "median_epoch_s"),
    ("energy per epoch", "energy_per_epoch_J", "J", "energy_per_epoch_J"),
)


@dataclass
class RunRecord:
    run_id: str
    folder: Path
    config: dict[str, Any]  # config.json: the conditions, with the recipe under "config"
    environment: dict[str, Any]  # environment.json, flattened ({} for a run recorded before it existed)
    measured: dict[str, float]


@dataclass
class RunDiff:
    a: RunRecord
    b: RunRecord
    recipe: list[tuple[str, Any, Any]] = field(default_factory=list)
    environment: list[tuple[str, Any, Any]] = field(default_factory=list)
    measured: list[tuple[str, float, float, float, str, str]] = field(
        default_factory=list
    )  # label, a, b, b-a, unit, reading


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if isinstance(data, list):
        out = {}
        for index, value in enumerate(data):
            out.update(_flat(value, f"{prefix}{index}."))
        return out
    return {prefix[:-1]: data}


def read_run(folder: Path) -> RunRecord:
    config = read_json(folder / "config.json")
    env_path = folder / "environment.json"
    environment = _flat(read_json(env_path)) if env_path.is_file() else {}
    epochs = read_frame(folder / "epochs.csv") if (folder / "epochs.csv").is_file() else None
    measured = {"final_test_acc": math.nan, "median_epoch_s": math.nan, "energy_per_epoch_J": math.nan}
    if epochs is not None and len(epochs):
        measured["final_test_acc"] = float(epochs.test_acc.iloc[-1])
        measured["median_epoch_s"] = float(epochs.epoch_time_s.median())
        if "energy_J" in epochs and epochs.energy_J.notna().any():
            measured["energy_per_epoch_J"] = float(epochs.energy_J.mean())
    return RunRecord(folder.name, folder, config, environment, measured)


def _same(value: Any, wanted: Any) -> bool:
    """One recorded value against another, as a CSV cell reads back: blanks alike, numbers by value."""
    if missing(value) or value == "":
        return missing(wanted) or wanted == ""
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == str(wanted)


def _seed_peers(records: list[RunRecord]) -> list[dict[str, Any]]:
    """The finished runs, in the stores of ``records``, that share a record's recipe (every condition but
    the seed) and device: each once, whichever store lists it. Each store's runs.csv is read once."""
    from cnnbench.recipe import CONDITION_FIELDS
    from cnnbench.training.status import FINISHED

    peers: dict[str, dict[str, Any]] = {}
    tables: dict[Path, Any] = {}
    for record in records:
        table = record.folder.parent.parent / "runs.csv"
        if not table.is_file():
            continue
        if table not in tables:
            tables[table] = read_frame(table)
        same = tables[table]
        for key in (*(k for k in CONDITION_FIELDS if k != "seed"), "gpu_name", "device"):
            if key in same and key in record.config:
                wanted = record.config[key]
                same = same[same[key].map(lambda v, w=wanted: _same(v, w)).astype(bool)]
        same = (
            same[same.status.astype(str).isin(FINISHED)] if "status" in same else same
        )  # runs that ended whole
        for row in same.to_dict("records"):
            peers[f"{table}:{row['run_id']}"] = row
    return list(peers.values())


def _seed_spread(peers: list[dict[str, Any]], column: str) -> tuple[float, int]:
    """The standard deviation over ``peers`` (:func:`_seed_peers`) of ``column``, and how many have it."""
    spread = [float(row[column]) for row in peers if column in row and not missing(row[column])]
    return (statistics.stdev(spread) if len(spread) > 1 else math.nan), len(spread)


def _environment(record: RunRecord, recipe: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded conditions outside its recipe, and its environment.json, as one flat mapping."""
    plain = {k: v for k, v in record.config.items() if k not in recipe and not isinstance(v, (dict, list))}
    return {**plain, **record.environment}


def diff(a: str | Path, b: str | Path, out: Path) -> RunDiff:
    first, second = read_run(find_run(a, out)), read_run(find_run(b, out))
    result = RunDiff(first, second)
    recipe_a, recipe_b = first.config.get("config", {}), second.config.get("config", {})
    for key in sorted((set(recipe_a) | set(recipe_b)) - RECIPE_KEYS_TO_SKIP):
        if recipe_a.get(key) != recipe_b.get(key):
            result.recipe.append((key, recipe_a.get(key), recipe_b.get(key)))
    env_a, env_b = _environment(first, recipe_a), _environment(second, recipe_b)
    for key in sorted(set(env_a) | set(env_b)):
        if key in NOT_CAUSES or key.endswith(VOLATILE) or key in recipe_a or key in recipe_b:
            continue
        if env_a.get(key) != env_b.get(key):
            result.environment.append((key, env_a.get(key), env_b.get(key)))
    same_recipe = not [k for k, _x, _y in result.recipe if k != "seed"]
    peers = _seed_peers([first, second] if same_recipe else [first])
    for label, key, unit, column in MEASURES:
        x, y = first.measured[key], second.measured[key]
        if missing(x) and missing(y):
            continue
        if missing(x) or missing(y):
            where = " and ".join(n for n, v in (("A", x), ("B", y)) if missing(v))
            result.measured.append((label, x, y, math.nan, unit, f"not measured on {where}"))
            continue
        delta = y - x
        std, seeds = _seed_spread(peers, column)
        if missing(std) or missing(delta):
            reading = f"not judged: {seeds} seed{'s' if seeds != 1 else ''} of this recipe in the store"
        else:
            bound = 1.96 * math.sqrt(2) * std
            side = "within" if abs(delta) <= bound else "beyond"
            reading = f"{side} the spread of {seeds} seeds (±{bound:.3g} {unit})"
        result.measured.append((label, x, y, delta, unit, reading))
    return result
