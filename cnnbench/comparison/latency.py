"""``compare --latency``: what each variant costs to use, beside what it costs to train and what it scores.

After the runs, each variant is timed as ``profile --latency`` times a model (:mod:`cnnbench.measure.latency`:
batch 1, eval mode without autograd, fp32, each backend checked against eager before it is timed), on the
comparison's device with its ``--backend``, ``--threads`` and ``--requests``. The rows, tagged with their
variant, go to the comparison's own latency.csv, which ``--from`` reads back; the aggregated table takes
each variant's newest p50 and p99 per backend, and the accuracy-against-latency figure the first backend's.

The architecture is timed as built (seed 0): a comparison keeps no weights by default, and the weights'
values do not change how long an fp32 forward takes. Accuracy is the variant's, from its trained runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, first_line

LATENCY_FILE = "latency.csv"


def measure_variants(plan: Any, device: str, log: Callable[[str], None]) -> None:
    """Every variant of ``plan`` (a :class:`~cnnbench.comparison.plan.Plan`) that could be planned, timed on
    ``device``; its rows appended to the comparison's latency.csv. A variant that cannot be built for timing
    is said in one line and left without a latency; the others are still timed."""
    from cnnbench.measure.latency import latency
    from cnnbench.settings import ProfileConfig

    config, base = plan.config, plan.config.base
    variants = list(dict.fromkeys(r.variant for r in plan.runs if r.error is None))
    log(f"latency: {len(variants)} variant(s) at batch 1 through {', '.join(config.backends)} on {device}")
    for variant in variants:
        settings = ProfileConfig(
            model=variant.model, options=dict(variant.options), input_size=base.input_size,
            dataset=base.dataset, num_classes=base.num_classes, latency=True, backends=list(config.backends),
            threads=config.threads, requests=config.requests, out=plan.folder, device=device,
        )  # fmt: skip
        try:
            latency(settings, device, log, tags={"variant": variant.label})
        except CnnbenchError as exc:
            log(f"latency of {variant.label} not timed: {first_line(exc)}")


def read_latency(folder: Path) -> Any:
    """The comparison's latency.csv (checked as every table is), or None where it timed none."""
    from cnnbench.store.tables import read_frame

    path = Path(folder) / LATENCY_FILE
    return read_frame(path) if path.is_file() else None


def latency_backends(rows: Any) -> list[str]:
    """The backends the rows time, in the order they were asked."""
    return [] if rows is None or rows.empty else list(dict.fromkeys(rows.backend.astype(str)))


def _newest(rows: Any) -> Any:
    """Each variant's newest row per backend (a comparison timed again keeps its earlier rows)."""
    return rows.assign(variant=rows.variant.astype(str)).groupby(["variant", "backend"], sort=False).tail(1)


def add_latency(aggregated: Any, rows: Any) -> Any:
    """``aggregated`` with each variant's newest p50 and p99 (ms) per backend (``latency_ms_p50_eager``, ...):
    NaN where its row failed; ``latency_status_<backend>`` where a row is not plainly ``ok``."""
    if rows is None or rows.empty or aggregated.empty or "variant" not in rows.columns:
        return aggregated
    newest = _newest(rows)
    frame = aggregated.copy()
    for backend in latency_backends(rows):
        mine = newest[newest.backend == backend].set_index("variant")
        timed = mine.status.astype(str).str.startswith(("ok", "disagrees"))
        for stat in ("p50", "p99"):
            values = mine[f"latency_ms_{stat}"].where(timed) if f"latency_ms_{stat}" in mine else math.nan
            frame[f"latency_ms_{stat}_{backend}"] = frame.variant.map(values).astype(float)
        statuses = frame.variant.map(mine.status.astype(str))
        if (statuses.fillna("ok") != "ok").any():
            frame[f"latency_status_{backend}"] = statuses.fillna("not timed")
    return frame


def timed_on(rows: Any) -> str:
    """The device the newest latency rows ran on: the GPU's name, or the CPU and its model."""
    last = rows.iloc[-1]
    gpu, cpu = last.get("gpu_name"), last.get("cpu_model")
    return gpu if _text(gpu) else f"{last.device} ({cpu})" if _text(cpu) else str(last.device)


def latency_note(rows: Any, conditions: dict[str, Any] | None = None) -> str | None:
    """How the latency columns were measured (device, threads, requests, what was timed, the provider that
    ran ONNX Runtime), whether that device is not the one the runs trained on (``conditions``), and which
    variants' rows are not plainly ok."""
    if rows is None or rows.empty:
        return None
    newest = _newest(rows)
    last = newest.iloc[-1]
    gpu = last.get("gpu_name")
    backends = []
    for backend in latency_backends(rows):
        providers = sorted(
            {str(p) for p in newest[newest.backend == backend].get("provider", []) if _text(p)}
        )
        backends.append(f"{backend} ({', '.join(providers)})" if providers else backend)
    text = (f"Latency: per-request inference at batch 1 ({', '.join(backends)}), p50 and p99 in ms over "
            f"{_values(newest.timed_requests)} requests after {_values(newest.warmup_requests)} untimed, on {timed_on(rows)} "
            f"with {_values(newest.threads)} CPU threads, fp32, eval mode without autograd; the architecture as built (its "
            "weights do not change an fp32 forward's time); preparation (export, compilation) timed apart in "
            "latency.csv")  # fmt: skip
    trained = (conditions or {}).get("gpu_name") or (conditions or {}).get("device")
    if _text(trained) and str(trained) != str(gpu if _text(gpu) else last.device):
        text += f"; NOT the device the runs trained on ({trained})"
    odd = newest[newest.status.astype(str) != "ok"]
    if len(odd):
        text += "; " + "; ".join(f"{r.variant} {r.backend}: {r.status}" for r in odd.itertuples())
    return text + "."


def _values(column: Any) -> str:
    """A setting's value, or the values it took where the variants were timed at different times."""
    values = sorted({int(v) for v in column.dropna()})
    return " or ".join(map(str, values)) if len(values) > 1 else str(values[0]) if values else "?"


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)
