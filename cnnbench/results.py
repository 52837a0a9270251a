"""CSV files under results/: conditions every row carries, atomic writes, upserts and appends."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnbench import __version__
from cnnbench.errors import InvalidArgumentError

DEFAULT_RESULTS_DIR = Path("results")


def missing(value: Any) -> bool:
    """No number: None or NaN (what a failed or skipped measurement leaves in a row)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: Any, fmt: str) -> str:
    """A table cell: ``format(value, fmt)``, or '-' where there is no number."""
    return "-" if missing(value) else format(value, fmt)


def environment(device: str = "cpu") -> dict[str, Any]:
    """Software and hardware conditions of a measurement, as CSV columns."""
    import torch

    gpu = ""
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {
        "device": device,
        "gpu_name": gpu,
        "cpu": platform.processor() or platform.machine(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "",
        "cnnbench_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or fail with a one-line error if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".cnnbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InvalidArgumentError(
            f"expected a writable output directory, got {str(path)!r} ({exc.strerror})"
        ) from None
    return path


def write_frame_atomic(frame: Any, path: Path) -> None:
    """Write a DataFrame to CSV via a temporary file, so an interrupted write never truncates results."""
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def upsert_rows(path: Path, rows: Sequence[Mapping[str, Any]], key: Iterable[str]) -> None:
    """Replace rows of ``path`` whose ``key`` columns match, append the rest; keeps other rows intact."""
    import pandas as pd

    new = pd.DataFrame(list(rows))
    key = list(key)
    if path.exists():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        new_keys = set(new[key].astype(str).itertuples(index=False, name=None))
        keep = [tuple(r) not in new_keys for r in old[key].astype(str).itertuples(index=False, name=None)]
        merged = pd.concat([old[keep], new.astype(str)], ignore_index=True)
    else:
        merged = new
    write_frame_atomic(merged, path)


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one row, widening the header if the row brings new columns; flushed before returning."""
    import pandas as pd

    if path.exists():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        if set(row) <= set(old.columns):
            with path.open("a", newline="") as fh:
                pd.DataFrame([row], columns=list(old.columns)).to_csv(fh, header=False, index=False)
                fh.flush()
                os.fsync(fh.fileno())
            return
        write_frame_atomic(pd.concat([old, pd.DataFrame([row]).astype(str)], ignore_index=True), path)
    else:
        write_frame_atomic(pd.DataFrame([row]), path)
