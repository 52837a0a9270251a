"""The results store's files: CSV tables that are validated before work, locked across processes and
replaced atomically; strict JSON; the conditions every row carries.

Every write goes to a uniquely named temporary file in the same folder, is flushed and fsynced, and is
then renamed over the old file, so a crash, a full disk or a Ctrl-C leaves either the old file or the
new one, never half of one. Every read-modify-write of a table holds a file lock (``NAME.lock``), so
processes that append to one table at once (a sweep over several GPUs) lose no row.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import io
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import __version__
from cnnbench.errors import InvalidArgumentError, ResultsError, first_line

# Where the tool writes unless told otherwise: a user's own measurements, which git ignores (the folder
# says so itself, wherever it is made), so they never mix with a repository's published results.
DEFAULT_RESULTS_DIR = Path("results") / "local"
_IGNORE_ALL = "# Made by cnnbench: the measurements of this machine, kept out of git (delete this file to commit them).\n*\n"
LOCK_TIMEOUT_S = 120.0
CACHE_ENV = "CNNBENCH_CACHE_DIR"  # another folder for cnnbench's caches ("" turns the counts' cache off)


def cache_home() -> Path:
    """Where cnnbench keeps what it can make again (model counts, the image caches of read-only folders):
    $CNNBENCH_CACHE_DIR, else $XDG_CACHE_HOME/cnnbench, else ~/.cache/cnnbench."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnbench"


def missing(value: Any) -> bool:
    """No number: None or NaN (what a failed or skipped measurement leaves in a row)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: Any, fmt: str) -> str:
    """A table cell: ``format(value, fmt)``, or '-' where there is no number."""
    return "-" if missing(value) else format(value, fmt)


def plain(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars as Python numbers, NaN and infinities as None, paths as text."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy and torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def to_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON (``null`` where a number is missing, never NaN or Infinity)."""
    return json.dumps(plain(value), indent=indent, allow_nan=False)


def read_json(path: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object from ``path`` with ``required`` keys, or a one-line error naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"expected {path} to exist, got no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ResultsError(f"expected JSON in {path}, got unreadable content ({_reason(exc)})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"expected a JSON object in {path}, got {type(data).__name__}")
    absent = [k for k in required if k not in data]
    if absent:
        raise ResultsError(f"expected {path} to hold {', '.join(absent)}, got an incomplete file")
    return data


def environment(device: str = "cpu") -> dict[str, Any]:
    """Software and hardware conditions of a measurement, as CSV columns."""
    import torch

    from cnnbench.device import is_cuda

    gpu = ""
    if is_cuda(device) and torch.cuda.is_available():
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
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise InvalidArgumentError(f"expected a writable output directory, got a file: {str(path)!r}")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".cnnbench-write-test-"):
            pass
        if path == DEFAULT_RESULTS_DIR and not (path / ".gitignore").exists():
            (path / ".gitignore").write_text(_IGNORE_ALL)
    except OSError as exc:
        raise InvalidArgumentError(
            f"expected a writable output directory, got {str(path)!r} ({exc.strerror})"
        ) from None
    return path


# --- atomic writes --------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """An OSError's own words (strerror), else its first line."""
    return getattr(exc, "strerror", None) or first_line(exc)


def write_error(path: Path, exc: OSError) -> ResultsError:
    """The one-line error for a failed write: a full disk says so by name."""
    if exc.errno == errno.ENOSPC:
        return ResultsError(f"no space left on device: {path}")
    return ResultsError(f"could not write {path}: {_reason(exc)}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A unique temporary path beside ``path`` for a writer to fill; renamed over ``path`` when the
    block ends without error (after an fsync), removed otherwise. A symlink is followed: the file it
    points to is replaced, and the link stays (a table kept elsewhere and linked in keeps its rows)."""
    path = resolved(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # a missing or read-only folder
        raise write_error(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); a results file is as readable as the umask says, like
        # any file its user writes, so that colleagues on a shared --out can read it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def resolved(path: Path) -> Path:
    """``path`` with its symlinks followed (the file a link names, even where that file does not exist yet)."""
    return Path(os.path.realpath(path))


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_frame_atomic(frame: Any, path: Path) -> None:
    """A DataFrame as CSV, through a temporary file (an interrupted write never truncates results)."""
    write_text_atomic(path, frame.to_csv(index=False))


# --- CSV tables -----------------------------------------------------------------------------------


@dataclass
class Table:
    """A CSV table as text cells: what was on disk, unparsed, so no column can shift."""

    header: list[str]
    rows: list[list[str]]

    def to_text(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buf.getvalue()


@dataclass
class Damage:
    """Where a table is damaged, and the intact rows it still holds."""

    line: int
    what: str
    intact: Table


def _parse(path: Path) -> tuple[Table, Damage | None]:
    if path.is_dir():
        raise ResultsError(f"expected a CSV file at {path}, got a directory")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"could not read {path}: {_reason(exc)}") from None
    try:
        # utf-8-sig: a byte order mark, as a spreadsheet's "CSV UTF-8" begins, is no part of the first
        # column's name (read as such, the next write added a second run_id column).
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ResultsError(f"expected a CSV table in {path}, got binary content (not UTF-8 text)") from None
    if not text:
        return Table([], []), None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        records = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise ResultsError(f"expected a CSV table in {path}, got unreadable text ({exc})") from None
    if not header or len(set(header)) != len(header) or any(not h.strip() for h in header):
        raise ResultsError(
            f"expected a CSV header of distinct column names on line 1 of {path}, got {header}"
        )
    rows: list[list[str]] = []
    damage: tuple[int, str] | None = None
    # Every write ends its line; a last line without one was cut off mid-write.
    cut = records[-1][0] if records and not text.endswith("\n") else None
    for line, row in records:
        if line == cut:
            damage = damage or (line, "is cut off (no line end)")
            continue
        if not row:
            continue  # a blank line carries no measurement
        if len(row) != len(header):
            damage = damage or (line, f"has {len(row)} fields, expected {len(header)}")
            continue
        rows.append(row)
    table = Table(header, rows)
    return table, (Damage(damage[0], damage[1], table) if damage else None)


def read_table(path: Path) -> Table:
    """The table at ``path`` (empty when there is none); a damaged one is a one-line error."""
    path = Path(path)
    if not path.exists():
        return Table([], [])
    table, damage = _parse(path)
    if damage is not None:
        raise ResultsError(
            f"line {damage.line} of {path} {damage.what}; nothing was written. "
            f"--repair moves it aside as {path.name}.damaged-DATE and keeps its {len(damage.intact.rows)} intact rows"
        )
    return table


def check_table(path: Path, repair: bool = False) -> str | None:
    """Validate a table before any work: an error for a damaged one, unless ``repair`` moves it aside
    (``NAME.damaged-DATE``) and writes back its intact rows. Returns what was repaired, if anything."""
    path = Path(path)
    if not path.exists():
        return None
    with table_lock(path):
        table, damage = _parse(path)
        if damage is None:
            return None
        if not repair:
            read_table(path)  # raises the one-line error
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        os.replace(path, aside)
        write_text_atomic(path, damage.intact.to_text())
    return (
        f"{path}: line {damage.line} {damage.what}; moved aside as {aside.name}, "
        f"{len(table.rows)} intact rows kept"
    )


@contextlib.contextmanager
def table_lock(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` across processes around a read-modify-write of ``path``."""
    from filelock import FileLock, Timeout

    lock = FileLock(f"{resolved(path)}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        with lock:
            yield
    except Timeout:
        raise ResultsError(
            f"expected to lock {path} within {LOCK_TIMEOUT_S:.0f} s, got it held by another process"
        ) from None


def hold(path: Path, busy: str) -> Any:
    """The lock file ``path``, held by this process until released or the process ends, however it ends
    (the kernel lets go of a killed process's lock); ``busy`` is the one-line error when another process
    holds it now."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InvalidArgumentError(busy) from None
    except OSError as exc:
        raise write_error(path, exc) from None
    return lock


def held_elsewhere(path: Path) -> bool:
    """Whether another process holds the lock file ``path`` now (see :func:`hold`): a run training, a
    comparison running. False where there is no such file."""
    if not Path(path).exists():
        return False
    try:
        hold(path, "held").release()
    except InvalidArgumentError:
        return True
    except ResultsError:  # a read-only copy: nothing can be running there
        return False
    return False


def _cell(value: Any) -> str:
    if missing(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(plain(value)) if not isinstance(value, str) else value


def _merge(table: Table, rows: Sequence[Mapping[str, Any]]) -> Table:
    header = list(table.header)
    for row in rows:
        header += [k for k in row if k not in header]
    pad = len(header) - len(table.header)
    merged = [old + [""] * pad for old in table.rows]
    merged += [[_cell(row.get(k)) for k in header] for row in rows]
    return Table(header, merged)


def append_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append rows under the table's lock; new columns widen the header (older rows get empty cells)."""
    path = Path(path)
    with table_lock(path):
        table = read_table(path)
        write_text_atomic(path, _merge(table, rows).to_text())


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    append_rows(path, [row])


def upsert_rows(path: Path, rows: Sequence[Mapping[str, Any]], key: Iterable[str]) -> None:
    """Replace the rows whose ``key`` columns match, append the rest; other rows stay as they were."""
    path = Path(path)
    key = list(key)
    with table_lock(path):
        table = read_table(path)
        new_keys = {tuple(_cell(r.get(k)) for k in key) for r in rows}
        if table.header and all(k in table.header for k in key):
            index = [table.header.index(k) for k in key]
            table = Table(table.header, [r for r in table.rows if tuple(r[i] for i in index) not in new_keys])
        write_text_atomic(path, _merge(table, rows).to_text())


def update_row(path: Path, key: str, value: str, change: Any) -> bool:
    """Under the table's lock: ``change(row)`` of the row whose ``key`` is ``value`` (None when there is
    none, text cells otherwise) gives the row to write in its place, or None to leave the table as it is."""
    path = Path(path)
    with table_lock(path):
        table = read_table(path)
        index = table.header.index(key) if key in table.header else None
        rows = [r for r in table.rows if index is not None and r[index] == value]
        new = change(dict(zip(table.header, rows[-1], strict=True)) if rows else None)
        if new is None:
            return False
        kept = Table(table.header, [r for r in table.rows if index is None or r[index] != value])
        write_text_atomic(path, _merge(kept, [new]).to_text())
    return True


def read_frame(path: Path) -> Any:
    """A validated table as a DataFrame (numbers typed by pandas, empty cells as NaN)."""

    return frame_of(read_table(path))


def frame_of(table: Table) -> Any:
    """Text cells as pandas types them (numbers as numbers, empty cells as NaN)."""
    import pandas as pd

    if not table.header:
        return pd.DataFrame()
    return pd.read_csv(io.StringIO(table.to_text()))
