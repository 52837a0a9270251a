"""The user's cache of what a model costs to count (FLOPs, bytes of its parameters and activations per
sample), so that a process counts a model at a size once, not at every start (counting on the meta
device costs a second or more, most of it PyTorch's first import of its compiler's machinery).

A count is keyed by the model, its options, input size and classes, and by what could change it: the
torch and cnnbench versions, the source of the model's code (the file and its modification time for
registry models and your own, the package's version for torchvision and timm) and the rules of counting
(a hash of :mod:`cnnbench.models.counting`'s source: a count made under other rules is made again). The file is
``$XDG_CACHE_HOME/cnnbench/counts.json`` (``~/.cache``), replaced atomically under a lock; one that
cannot be read or written is passed over, never an error: the count is simply made again.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from cnnbench.store.tables import CACHE_ENV as ENV
from cnnbench.store.tables import cache_home


def _path() -> Path | None:
    if os.environ.get(ENV) == "":  # the cache turned off
        return None
    return cache_home() / "counts.json"


def _source(model: str) -> str:
    """What the model's code is: its file and that file's modification time, or its package's version."""
    from cnnbench import __version__
    from cnnbench.models import get_model_info

    source = model.partition(":")[0]
    if source in ("torchvision", "timm"):
        import importlib

        return f"{source} {importlib.import_module(source).__version__}"
    info = get_model_info(model)
    try:
        if info.family == "user":  # your own factory: its module's file, named before the colon
            module = model.rpartition(":")[0]
            file = Path(module) if module.endswith(".py") or "/" in module else Path(_module_file(module))
        else:
            file = Path(inspect.getsourcefile(inspect.unwrap(info.builder)) or "")
        stat = file.stat()
        return f"{file} {stat.st_mtime_ns} {stat.st_size} {__version__}"
    except (OSError, TypeError):
        return f"unknown {__version__}"


@functools.cache
def counting_rules() -> str:
    """A hash of the counting module's source (what an op counts, and which ops count), read as a file:
    the counting module is this cache's user, not its import."""
    try:
        return hashlib.sha1(Path(__file__).with_name("counting.py").read_bytes()).hexdigest()[:16]
    except OSError:  # a build without its sources: the version alone keys the counts
        return "unknown"


def _module_file(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    return spec.origin if spec is not None and spec.origin else ""


def key(
    kind: str, model: str, options: dict[str, Any], shape: tuple[int, ...], num_classes: int
) -> str | None:
    """The entry of a count; None for a Python object handed to the API, whose code no file names."""
    import torch

    from cnnbench.models import get_model_info

    info = get_model_info(model)
    if info.family == "python":
        return None
    name = info.name
    parts = [kind, name, sorted((str(k), str(v)) for k, v in options.items()), list(shape), num_classes,
             torch.__version__, _source(name), counting_rules()]  # fmt: skip
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def get(k: str | None) -> Any:
    path = _path()
    return _read(path).get(k) if path is not None and k is not None else None


def put(k: str | None, value: Any) -> None:
    path = _path()
    if path is None or k is None:
        return
    try:
        from cnnbench.store.tables import table_lock, write_text_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        with table_lock(path):
            data = _read(path)
            data[k] = value
            write_text_atomic(path, json.dumps(data))
    except Exception:  # a cache that cannot be written costs a recount, nothing else
        pass
