"""``compare --from A --from B ...``: comparisons of one recipe made on different machines, joined into one
table with a column group per device.

Each folder is read as ``--from`` reads one (checked, never written): a merge writes only its own folder,
OUT/compare/NAME. Rows keep the folder they came from, so run ids that collide across machines stay
apart. The recipes must match, field by field, except where a run ran (the device and what follows from
it: channels-last, CUDA graphs, cuDNN autotuning, the data's placement, the software's versions); a
field that differs is named, unless ``apart`` shows such comparisons side by side anyway, their
accuracy then unpooled.

Per variant: accuracy pooled over every device's seeds (where the recipes match), and for each device
after the first the difference from the first with its Welch interval (Holm-adjusted p over the
variants: did the device change the accuracy?); per device: epoch time, images/s, energy per epoch and
per image, GPU-hours, cost; and each device's epoch time as a ratio to the first device's.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.errors import InvalidArgumentError
from cnnbench.store.manifest import KEY_FIELDS
from cnnbench.store.tables import missing, to_json, write_frame_atomic, write_text_atomic

# Where a run ran, and what follows from it: these may differ between the joined comparisons.
WHERE_IT_RAN = {
    "device", "gpu_name", "torch_version", "cuda_version", "cudnn_version", "cnnbench_version", "data_source",
    "cuda_mps", "driver_version", "python_version", "cpu_model", "gpu_power_limit_W", "mig_mode",
    "cnnbench_commit", "channels_last", "cuda_graphs", "cudnn_autotune", "placement", "jobs_per_gpu",
    "world_size",
} | set(KEY_FIELDS.values())  # fmt: skip


@dataclass
class Joined:
    name: str
    folder: Path
    devices: list[str]  # one label per source, in order
    sources: list[Any]  # their CompareResults
    tidy: Any  # every source's rows, with source and device columns
    table: Any  # one row per variant (numbers)
    recipe_matches: bool
    differences: list[str] = field(default_factory=list)
    # as shown (terminal, Markdown, HTML): the shared recipe, the table's header and rows, the notes
    recipe_text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def recipe_differences(first: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The recipe fields (not where it ran) in which two comparisons' conditions differ, as "field (a vs b)"."""
    keys = sorted((set(first) | set(other)) - WHERE_IT_RAN)
    return [f"{k} ({first.get(k)!r} vs {other.get(k)!r})" for k in keys if first.get(k) != other.get(k)]


def _with_machine(result: Any) -> Any:
    """The comparison with the machine's fields its conditions lack (a comparison made before they were
    recorded there) taken from its runs' rows in the store beside it, where all its runs agree."""
    from cnnbench.store.tables import read_frame

    table = result.folder.parent.parent / "runs.csv"
    wanted = [k for k in KEY_FIELDS.values() if missing(result.conditions.get(k))]
    if not wanted or not table.is_file():
        return result
    rows = read_frame(table)
    mine = (
        rows[rows.run_id.astype(str).isin(set(result.tidy.run_id.astype(str)))]
        if "run_id" in rows
        else rows.iloc[:0]
    )
    for key in wanted:
        values = {str(v) for v in mine.get(key, []) if not missing(v)}
        if len(values) == 1:
            result.conditions[key] = values.pop()
    return result


def _device_labels(sources: list[Any]) -> list[str]:
    labels: list[str] = []
    for result in sources:
        c = result.conditions
        label = str(c.get("gpu_name") or c.get("cpu_model") or c.get("device") or result.folder.name)
        if c.get("device") == "cpu" or (not c.get("gpu_name") and str(c.get("device", "")).startswith("cpu")):
            label = f"CPU ({c['cpu_model']})" if c.get("cpu_model") else "CPU"
        same = sum(1 for x in labels if x == label or x.startswith(f"{label} #"))
        labels.append(f"{label} #{same + 1}" if same else label)  # two machines with one GPU: by their order
    return labels


def _mean(values: list[float]) -> float:
    values = [v for v in values if not missing(v)]
    return statistics.fmean(values) if values else math.nan


def join(sources: list[Path], out: Path, name: str | None = None, apart: bool = False) -> Joined:
    """Join the comparisons in ``sources`` into OUT/compare/NAME (see the module's docstring)."""
    import pandas as pd

    from cnnbench.comparison.aggregate import holm
    from cnnbench.comparison.saved import load_compare
    from cnnbench.stats import welch_interval, welch_p
    from cnnbench.training.status import FINISHED

    results = [
        _with_machine(load_compare(Path(s))) for s in sources
    ]  # each checked before anything is written
    differences = []
    for result in results[1:]:
        differing = recipe_differences(results[0].conditions, result.conditions)
        if differing:
            differences.append(f"{results[0].folder} and {result.folder} differ in {', '.join(differing)}")
    if differences and not apart:
        raise InvalidArgumentError(
            f"expected comparisons of one recipe to join, got {differences[0]}; --apart shows them side by side "
            "without pooling their accuracy"
        )
    devices = _device_labels(results)
    rows = []
    for index, (result, device) in enumerate(zip(results, devices, strict=True)):
        tidy = result.tidy.copy()
        tidy.insert(0, "device", device)
        tidy.insert(0, "source", f"{index + 1}:{result.folder}")
        rows.append(tidy)
    tidy = pd.concat(rows, ignore_index=True)
    images_per_s = {}
    for result, device in zip(results, devices, strict=True):
        epochs = result.epochs
        if not epochs.empty and "images_per_s" in epochs:
            for variant, group in epochs.groupby("variant"):
                images_per_s[(device, variant)] = float(group.images_per_s.median())
    variants = list(dict.fromkeys(tidy.variant))
    first = devices[0]
    table = []
    p_values: list[tuple[int, str, float]] = []
    for variant in variants:
        mine = tidy[tidy.variant == variant]
        ok = mine[mine.status.astype(str).isin(FINISHED)]  # runs that ended whole, learning or not
        row: dict[str, Any] = {"variant": variant, "params": _mean(mine.params.tolist()),
                               "forward_MACs_per_sample": _mean(mine.forward_MACs_per_sample.tolist())}  # fmt: skip
        if not differences:
            accs = ok.final_test_acc.dropna().tolist()
            row.update({"final_test_acc_mean": _mean(accs),
                        "final_test_acc_std": statistics.stdev(accs) if len(accs) > 1 else math.nan,
                        "seeds": len(accs)})  # fmt: skip
        base = ok[ok.device == first].final_test_acc.dropna().tolist()
        for device in devices:
            d, d_ok = mine[mine.device == device], ok[ok.device == device]
            row[f"{device}|seeds"] = len(d_ok)
            row[f"{device}|final_test_acc_mean"] = _mean(d_ok.final_test_acc.tolist())
            row[f"{device}|median_epoch_s"] = (
                float(d.median_epoch_s.dropna().median()) if d.median_epoch_s.notna().any() else math.nan
            )
            row[f"{device}|images_per_s"] = images_per_s.get((device, variant), math.nan)
            row[f"{device}|energy_per_epoch_J"] = _mean(
                d.get("energy_per_epoch_J", pd.Series(dtype=float)).tolist()
            )
            row[f"{device}|J_per_image"] = _mean(d.get("J_per_image", pd.Series(dtype=float)).tolist())
            row[f"{device}|gpu_hours"] = _mean(d.get("gpu_hours", pd.Series(dtype=float)).tolist())
            if device != first:
                first_time = row[f"{first}|median_epoch_s"]
                row[f"{device}|epoch_time_ratio"] = (
                    row[f"{device}|median_epoch_s"] / first_time if first_time else math.nan
                )
                if not differences:
                    other = d_ok.final_test_acc.dropna().tolist()
                    delta, low, high = welch_interval(other, base)
                    row[f"{device}|delta_acc"], row[f"{device}|delta_low"], row[f"{device}|delta_high"] = (
                        delta,
                        low,
                        high,
                    )
                    p_values.append((len(table), device, welch_p(other, base)))
        table.append(row)
    for device in devices[1:]:
        mine = [(i, p) for i, d, p in p_values if d == device]
        adjusted = holm([p for _, p in mine]) if mine else []
        for (i, _p), q in zip(mine, adjusted, strict=True):
            table[i][f"{device}|delta_p_holm"] = q
    frame = pd.DataFrame(table)
    label = (
        name
        or "join-" + hashlib.sha1("\n".join(str(Path(s).resolve()) for s in sources).encode()).hexdigest()[:8]
    )
    from cnnbench.store.runs import plain_name

    plain_name(label, "a comparison's name")
    folder = Path(out) / "compare" / label
    for source in results:
        if folder.resolve() == source.folder.resolve():
            raise InvalidArgumentError(f"expected a --name other than the joined folders', got {label!r}")
    folder.mkdir(parents=True, exist_ok=True)
    joined = Joined(label, folder, devices, results, tidy, frame, not differences, differences)
    from cnnbench.report.tables import conditions_text

    joined.recipe_text = conditions_text(
        {k: v for k, v in results[0].conditions.items() if k not in WHERE_IT_RAN}
    )
    from cnnbench.report.joined import display_rows, joined_markdown, joined_notes

    joined.header, joined.rows = display_rows(joined)
    joined.notes = joined_notes(joined)
    write_frame_atomic(tidy, folder / "tidy.csv")
    write_frame_atomic(frame, folder / "joined.csv")
    write_text_atomic(folder / "sources.json", to_json({
        "sources": [{"folder": str(r.folder.resolve()), "device": d, "conditions": r.conditions}
                    for r, d in zip(results, devices, strict=True)],
        "recipe_matches": not differences, "differences": differences,
    }))  # fmt: skip
    write_text_atomic(folder / "table.md", joined_markdown(joined))
    from cnnbench.report.html import write_joined_report

    write_joined_report(joined)  # from the joined table as shown, and each source's conditions
    return joined
