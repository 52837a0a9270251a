"""How a run ends: every run ends with one of these statuses, whatever stops it.

``ok``, ``not learning`` (at chance after its epochs), ``diverged`` (its loss exploded), ``out of memory``,
``interrupted`` (Ctrl-C), and ``failed: <reason>`` for anything else.
"""

from __future__ import annotations

import math

from cnnbench.device import is_cpu_oom
from cnnbench.errors import CnnbenchError, OutOfMemory, first_line

# Statuses of finished runs whose numbers can stand in for a new run with the same conditions.
REUSABLE = ("ok", "not learning", "diverged")
# Statuses of runs that ran to an answer (a compare where no run did is a failed command).
FINISHED = REUSABLE


def diverged(loss: float, num_classes: int) -> bool:
    """A non-finite loss, or one that exploded: a thousand times cross-entropy at chance (ln C)."""
    return not math.isfinite(loss) or loss > 1e3 * math.log(max(num_classes, 2))


def final_status(exc: BaseException) -> str:
    """The status a run ends in when ``exc`` stops it."""
    import torch

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError, OutOfMemory)) or is_cpu_oom(exc):
        return "out of memory"
    if isinstance(exc, CnnbenchError):
        return f"failed: {first_line(exc)}"
    return f"failed: {type(exc).__name__}" + (f": {first_line(exc)}" if str(exc).strip() else "")
