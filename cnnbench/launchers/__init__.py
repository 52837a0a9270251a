"""Where a comparison's runs train: one :class:`~cnnbench.launchers.base.Launcher` interface for inline
runs (:mod:`.inline`), per-GPU workers (:mod:`.workers`) and submitit's local and Slurm executors
(:mod:`.scheduler`), found by name."""

from __future__ import annotations

import importlib
from typing import Any

from cnnbench.choices import LAUNCHERS as NAMES

# --launcher's names, each the class that runs it ("module:class", imported when asked for: the inline
# launcher brings torch, and the command line's --help must not); --gpus's workers run beside inline.
LAUNCHERS = {
    "inline": "cnnbench.launchers.inline:InlineLauncher",
    "local": "cnnbench.launchers.scheduler:LocalLauncher",
    "slurm": "cnnbench.launchers.scheduler:SlurmLauncher",
}
WORKERS = "cnnbench.launchers.workers:WorkerLauncher"
assert tuple(LAUNCHERS) == NAMES, "each name --launcher takes has its class here"


def launcher_class(name: str, gpus: str | None = None) -> Any:
    """The :class:`~cnnbench.launchers.base.Launcher` class of ``--launcher name`` (with ``--gpus``, the
    per-GPU workers in place of the inline launcher)."""
    module, _, cls = (WORKERS if gpus is not None and name == "inline" else LAUNCHERS[name]).partition(":")
    return getattr(importlib.import_module(module), cls)
