"""A run's bookkeeping: its folder, config.json, epochs.csv, checkpoints and its row of runs.csv.

``OUT/runs/RUN_ID/`` holds ``config.json`` (the run's configuration and conditions), ``epochs.csv``
(one row written as each epoch ends), ``last.pt`` and ``best.pt``; ``OUT/runs.csv`` holds one row per
run, replaced (never duplicated) when a run is resumed. The guarantees of :mod:`cnnbench.store.tables`
hold for all of them: tables validated before work, locked, atomically replaced; checkpoints loaded
with ``weights_only=True``, so a file can never run code.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, InvalidArgumentError, ResultsError, first_line
from cnnbench.store.tables import (
    append_row,
    atomic_path,
    check_table,
    hold,
    missing,
    plain,
    read_frame,
    read_json,
    to_json,
    update_row,
    upsert_rows,
    write_frame_atomic,
    write_text_atomic,
)

# A name is at most 255 bytes on Linux's file systems, and files are named after a run or a comparison
# (jobs/RUN_ID.json, NAME.lock): a name leaves room for what is added to it.
MAX_NAME_BYTES = 200
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "scaler", "rng", "epoch")


def plain_name(text: str, what: str) -> str:
    """``text`` as a single folder name: no separators, no '..', not absolute, not empty."""
    bad = (
        not text
        or text in (".", "..")
        or any(ch in text for ch in "/\\\0")
        or text != text.strip()
        or text.startswith("-")
    )
    if bad:
        raise InvalidArgumentError(
            f"expected {what} as a plain folder name (no separators or '..'), got {text!r}"
        )
    if len(text.encode()) > MAX_NAME_BYTES:  # the file system's limit of one name (ENAMETOOLONG)
        raise InvalidArgumentError(
            f"expected {what} of at most {MAX_NAME_BYTES} bytes (files are named after it, within the file system's 255), got "
            f"{len(text.encode())}: {text[:40]}..."
        )
    return text


def epoch_summary(epochs: list[dict[str, Any]], target_acc: float | None = None) -> dict[str, Any]:
    """What a run's row says of its epoch rows: how many; the final test accuracy (the last epoch's: the
    number a table leads with); the best test accuracy (chosen on the test set itself, kept as the
    chapter's loop reports it); with a validation split, the best validation epoch and its test accuracy;
    epoch times (median, IQR, total); evaluation time; peak memory; with ``target_acc``, the first epoch
    and the training seconds (warm-up apart) to reach it on validation (else test)."""
    import math
    import statistics

    from cnnbench.stats import iqr

    def number(row: dict[str, Any] | None, key: str) -> float:
        value = row.get(key) if row else None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan

    def best(key: str) -> dict[str, Any] | None:
        scored = [r for r in epochs if math.isfinite(number(r, key))]
        return max(scored, key=lambda r: number(r, key), default=None)

    times = [float(r["epoch_time_s"]) for r in epochs]
    last = epochs[-1] if epochs else None
    best_test, best_val = best("test_acc"), best("val_acc")
    summary = {
        "epochs_done": len(epochs),
        "best_test_acc": number(best_test, "test_acc"),
        "best_epoch": best_test["epoch"] if best_test else math.nan,
        "final_test_acc": number(last, "test_acc"),
        "final_train_acc": number(last, "train_acc"),
        "final_val_acc": number(last, "val_acc"),
        "best_val_acc": number(best_val, "val_acc"),
        "best_val_epoch": best_val["epoch"] if best_val else math.nan,
        "test_at_best_val": number(best_val, "test_acc"),
        "median_epoch_s": statistics.median(times) if times else math.nan,
        "iqr_epoch_s": iqr(times),
        "total_train_s": sum(times),
        "total_eval_s": sum(float(r["eval_time_s"]) for r in epochs),
        "peak_gpu_mem_MiB": max((r["peak_gpu_mem_MiB"] for r in epochs), default=math.nan),
        **energy_summary(epochs),
    }
    return {**summary, **time_to_accuracy(epochs, target_acc)}


def energy_summary(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's energy from its epoch rows: training and evaluation apart (joules), per epoch (mean), the
    training's joules per image and mean power; NaN where an epoch was not measured."""
    import math

    def total(key: str) -> float:
        values = [r.get(key) for r in epochs]
        finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        return sum(finite) if epochs and len(finite) == len(values) else math.nan

    train, seconds = total("energy_J"), sum(float(r["epoch_time_s"]) for r in epochs)
    images = sum(float(r["images_per_s"]) * float(r["epoch_time_s"]) for r in epochs)
    return {
        "energy_train_J": train,
        "energy_eval_J": total("eval_energy_J"),
        "energy_per_epoch_J": train / len(epochs) if epochs else math.nan,
        "J_per_image": train / images if images else math.nan,
        "mean_power_W": train / seconds if seconds else math.nan,
    }


def time_to_accuracy(epochs: list[dict[str, Any]], target_acc: float | None) -> dict[str, Any]:
    """The first epoch, and the training seconds up to its end (warm-up and evaluation apart), at which
    the evaluation split (validation where there is one, else test) reaches ``target_acc`` %; NaN when
    the run never does (or no target was set)."""
    import math

    found = {"target_acc": target_acc, "epochs_to_target": math.nan, "seconds_to_target": math.nan,
             "energy_to_target_J": math.nan}  # fmt: skip
    if target_acc is None:
        return found
    seconds, joules = 0.0, 0.0
    for row in epochs:
        seconds += float(row["epoch_time_s"])
        energy = row.get("energy_J")
        joules += float(energy) if isinstance(energy, (int, float)) else math.nan
        val = row.get("val_acc")
        acc = val if isinstance(val, (int, float)) and math.isfinite(val) else row.get("test_acc")
        if isinstance(acc, (int, float)) and acc >= target_acc:
            return {**found, "epochs_to_target": row["epoch"], "seconds_to_target": seconds,
                    "energy_to_target_J": joules}  # fmt: skip
    return found


def validate_runs_table(out: Path, repair: bool = False) -> str | None:
    """Check OUT/runs.csv before any work (see :func:`cnnbench.store.tables.check_table`)."""
    return check_table(Path(out) / "runs.csv", repair)


@dataclass
class Checkpoint:
    state: dict[str, Any]
    epoch: int


class RunStore:
    """The files of one run under ``OUT/runs/RUN_ID``."""

    def __init__(self, out: Path, run_id: str) -> None:
        self.out = Path(out)
        self.run_id = plain_name(run_id, "a run id")
        self.dir = self.out / "runs" / run_id
        self._checkpoint: Checkpoint | None = None
        self._lock: Any = None

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def epochs_path(self) -> Path:
        return self.dir / "epochs.csv"

    @property
    def last_path(self) -> Path:
        return self.dir / "last.pt"

    @classmethod
    def create(cls, out: Path, run_id: str, record: dict[str, Any]) -> RunStore:
        store = cls(out, run_id)
        try:
            store.dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise InvalidArgumentError(
                f"expected a new run name, got existing run {run_id!r} (continue it with --resume)"
            ) from None
        store.claim()
        store.write_config(record)
        return store

    @classmethod
    def open(cls, out: Path, run_id: str) -> RunStore:
        store = cls(out, run_id)
        if not store.config_path.is_file():
            raise InvalidArgumentError(
                f"expected a run id under {store.out / 'runs'}/ with a config.json, got {run_id!r}"
            )
        return store

    def claim(self) -> RunStore:
        """Hold the run's lock (``RUN_ID/.lock``) until :meth:`release` or this process ends: one process
        at a time trains a run. A second (a ``--resume`` of a run still training) is refused before it
        reads or changes any of the run's files, whose epochs would interleave."""
        self._lock = hold(
            self.dir / ".lock",
            f"expected run {self.run_id} to be idle, got it training in another process now; "
            "--resume it once that process has ended",
        )
        return self

    def release(self) -> None:
        """Let another process train the run (see :meth:`claim`)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def read_config(self) -> dict[str, Any]:
        data = read_json(self.config_path, required=("config", "conditions_hash", "model"))
        if not isinstance(data["config"], dict) or "model" not in data["config"]:
            raise ResultsError(
                f"expected {self.config_path} to hold the run's configuration, got an incomplete one"
            )
        return data

    def write_config(self, record: dict[str, Any]) -> None:
        write_text_atomic(self.config_path, to_json(record))

    def append_epoch(self, row: dict[str, Any]) -> None:
        append_row(self.epochs_path, row)

    def epochs(self, up_to: int) -> list[dict[str, Any]]:
        """Epoch rows 1..``up_to``; rows beyond it (finished after the last checkpoint, or by a run
        that wrote none) are dropped from the file, so no epoch is ever written twice."""
        if not self.epochs_path.exists():
            return []
        frame = read_frame(self.epochs_path)
        if frame.empty:
            return []
        kept = frame[frame.epoch <= up_to]
        if len(kept) != len(frame):
            write_frame_atomic(kept, self.epochs_path)
        return kept.to_dict("records")

    def save_checkpoint(self, state: dict[str, Any], epoch: int, improved: bool, best_acc: float) -> None:
        import torch

        state = {**state, "epoch": epoch}
        try:
            with atomic_path(self.last_path) as tmp:
                torch.save(state, tmp)
            if improved:
                with atomic_path(self.dir / "best.pt") as tmp:
                    torch.save({"model": state["model"], "epoch": epoch, "test_acc": best_acc}, tmp)
        except RuntimeError as exc:  # torch.save reports a full disk as a RuntimeError of its writer
            if "No space left" in str(exc) or "file write failed" in str(exc):
                raise ResultsError(f"no space left on device: {self.last_path}") from None
            raise

    def load_checkpoint(self) -> Checkpoint | None:
        """``last.pt``, loaded without running any code; None when the run wrote none."""
        import torch

        if self._checkpoint is not None:
            return self._checkpoint
        if not self.last_path.exists():
            return None
        path = self.last_path
        try:
            with warnings.catch_warnings():
                # torch's unpickler warns of a pickle protocol other than its own (three lines asking to
                # file an issue) before it refuses a file; what is refused is said below, in one line.
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            names = pickled_globals(path)
            if names:
                raise ResultsError(
                    f"refused to load {path}: it holds more than tensors and plain values (it names "
                    f"{', '.join(names[:3])})"
                ) from None
            raise ResultsError(
                f"expected a checkpoint in {path}, got a damaged file (not one torch can read)"
            ) from None
        except Exception as exc:  # truncated, empty or random bytes: torch's readers raise many types
            raise ResultsError(
                f"expected a checkpoint in {path}, got a damaged file ({first_line(exc)})"
            ) from None
        if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
            raise ResultsError(
                f"expected a cnnbench checkpoint in {path}, got one without {', '.join(CHECKPOINT_KEYS)}"
            )
        self._checkpoint = Checkpoint(state, int(state["epoch"]))
        return self._checkpoint

    def finish(self, summary: dict[str, Any]) -> None:
        """The run's one row of OUT/runs.csv, replacing an earlier row of the same run."""
        upsert_rows(self.out / "runs.csv", [summary], key=("run_id",))

    def settle(self, status: str, replace: tuple[str, ...] | None = ("interrupted",)) -> bool:
        """Give the run the final ``status`` its own process could not write: where it has no row (it was
        killed), a row made from its config.json and epochs.csv, so what it measured is kept; where its
        row says one of ``replace`` (how its process saw a scheduler's signal; None: whatever it says),
        that status. False when
        the run has no folder to make a row from, or its row says how it ended already."""
        if not self.config_path.is_file():
            return False

        def settled(row: dict[str, str] | None) -> dict[str, Any] | None:
            if row is not None:
                return {**row, "status": status} if replace is None or row.get("status") in replace else None
            saved = read_json(self.config_path)
            epochs = read_frame(self.epochs_path).to_dict("records") if self.epochs_path.exists() else []
            conditions = {k: v for k, v in saved.items() if k != "config"}
            return {"run_id": self.run_id, "status": status, **epoch_summary(epochs), **conditions,
                    "run_dir": str(self.dir)}  # fmt: skip

        return update_row(self.out / "runs.csv", "run_id", self.run_id, settled)


class Replica(RunStore):
    """A data-parallel run's store as ranks other than 0 hold it: it reads (the checkpoint a resumed
    run starts from) and writes nothing, since rank 0 writes the run's one record."""

    @classmethod
    def create(cls, out: Path, run_id: str, record: dict[str, Any]) -> RunStore:
        return cls(out, run_id)

    @classmethod
    def of(cls, store: RunStore) -> Replica:
        return cls(store.out, store.run_id)

    def write_config(self, record: dict[str, Any]) -> None:
        pass

    def append_epoch(self, row: dict[str, Any]) -> None:
        pass

    def epochs(self, up_to: int) -> list[dict[str, Any]]:
        if not self.epochs_path.exists():
            return []
        frame = read_frame(self.epochs_path)
        return [] if frame.empty else frame[frame.epoch <= up_to].to_dict("records")

    def save_checkpoint(self, state: dict[str, Any], epoch: int, improved: bool, best_acc: float) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        pass


def pickled_globals(path: Path) -> list[str]:
    """The classes and functions a pickle (or a torch.save archive's data.pkl) names, read without
    running it; empty for a file that is no pickle at all."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = next((archive.read(n) for n in archive.namelist() if n.endswith("data.pkl")), b"")
        else:
            data = Path(path).read_bytes()
        names, strings = [], []
        for op, arg, _pos in pickletools.genops(data):
            if op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        allowed = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.")
        return [n for n in dict.fromkeys(names) if not n.startswith(allowed)]
    except Exception:  # not a pickle: nothing it names
        return []


def restore_into(step: Any, checkpoint: Checkpoint, path: Path, model_name: str) -> None:
    """Load a checkpoint into a step; one that does not fit the model is a one-line error."""
    try:
        step.load_state_dict(checkpoint.state)
    except CnnbenchError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        reason = first_line(exc)
        raise ResultsError(
            f"expected a checkpoint of {model_name} in {path}, got another ({reason[:120]})"
        ) from None


class RunRecords:
    """OUT/runs.csv read once: each run's row by run id (a resumed run's latest), with what its own
    folder adds (``conditions`` read back from its config.json, typed, no NaN for an empty cell) and its
    epoch rows."""

    def __init__(self, out: Path, conditions: Iterable[str] = ()) -> None:
        self.out = Path(out)
        self.conditions = tuple(conditions)
        path = self.out / "runs.csv"
        self.frame = read_frame(path) if path.exists() else None
        self.rows: dict[str, dict[str, Any]] = {}
        if self.frame is not None and "run_id" in self.frame.columns:
            for row in self.frame.to_dict("records"):
                self.rows[str(row["run_id"])] = {
                    k: (None if missing(v) else plain(v)) for k, v in row.items()
                }

    def newest_with(self, conditions_hash: str, statuses: Iterable[str]) -> str | None:
        """The newest run with these conditions that ended in one of ``statuses`` and whose files are
        whole (its config.json, and every epoch its row counts)."""
        wanted = set(statuses)
        for run_id, row in reversed(self.rows.items()):
            if str(row.get("conditions_hash")) == conditions_hash and row.get("status") in wanted:
                if self.record(run_id, whole=True) is not None:
                    return run_id
        return None

    def record(self, run_id: str, whole: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(its row with its conditions, its epoch rows), or None when it has no row; with ``whole``, also
        None when its config.json or any epoch it counts is missing."""
        row = self.rows.get(run_id)
        if row is None:
            return None
        store = RunStore(self.out, run_id)
        epochs = read_frame(store.epochs_path).to_dict("records") if store.epochs_path.exists() else []
        has_config = store.config_path.exists()
        if whole and (not has_config or len(epochs) != int(row.get("epochs_done") or 0)):
            return None
        summary = dict(row)
        if has_config:
            saved = read_json(store.config_path)
            summary.update({k: v for k, v in saved.items() if k in self.conditions})
        return summary, epochs


def find_run(name: str | Path, out: Path) -> Path:
    """A run's folder: ``name`` itself where it is one (a folder with config.json), else OUT/runs/NAME."""
    path = Path(name)
    for folder in (path, Path(out) / "runs" / str(name)):
        if folder.is_dir() and (folder / "config.json").is_file():
            return folder
    raise InvalidArgumentError(
        f"expected a run id of {Path(out) / 'runs'} or a run's folder, got {str(name)!r}"
    )
