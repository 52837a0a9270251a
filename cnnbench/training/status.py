"""How a run ends: every run ends with one of these statuses, whatever stops it.

``ok``, ``not learning`` (at chance after its epochs), ``diverged`` (its loss exploded), ``out of memory``,
``interrupted`` (Ctrl-C, SIGTERM, SIGHUP: a closed terminal unless under ``nohup``, ``kill``), ``timeout`` and ``cancelled``
(a scheduler's), and ``failed: <reason>`` for anything else.

:func:`stop_on_signals` makes SIGTERM and SIGHUP stop the work as Ctrl-C does, so that the run's
``finally`` writes its row; :func:`deferred_signals` holds any of them back while that row is written.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator

from cnnbench.device import is_cpu_oom
from cnnbench.errors import CnnbenchError, OutOfMemory, first_line

# Statuses of finished runs whose numbers can stand in for a new run with the same conditions.
REUSABLE = ("ok", "not learning", "diverged")
# Statuses of runs that ran to an answer (a compare where no run did is a failed command).
FINISHED = REUSABLE


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The work was stopped by a signal (SIGTERM, SIGHUP): handled wherever Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's exit code of a process ended by ``exc``: 128 + the signal's number."""
    return 128 + (exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT))


_deferring = 0
_pending: list[int] = []


def _stop(signum: int, _frame: object) -> None:
    if _deferring:
        _pending.append(signum)  # raised once the row being written is whole
        return
    raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside the block, SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (:class:`Stopped` for the
    last two) in the main thread, so every run they stop ends with its status. A signal this process was
    started with ignored stays ignored: SIGHUP under ``nohup`` (a run that outlives its terminal), SIGINT
    in a script's background job. Outside the main thread (where Python cannot take signals) it does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    for s in previous:
        signal.signal(s, _stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """A stop signal that arrives inside the block waits until it ends (a run's record is written whole)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending:
            signum = _pending[0]
            _pending.clear()
            raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


def diverged(loss: float, num_classes: int) -> bool:
    """A non-finite loss, or one that exploded: a thousand times cross-entropy at chance (ln C)."""
    return not math.isfinite(loss) or loss > 1e3 * math.log(max(num_classes, 2))


FAILED = "failed"


def failed(reason: str) -> str:
    """The status of a run that failed, with why: ``failed: REASON``, as every table and launcher says it."""
    return f"{FAILED}: {reason}"


def final_status(exc: BaseException) -> str:
    """The status a run ends in when ``exc`` stops it."""
    import torch

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError, OutOfMemory)) or is_cpu_oom(exc):
        return "out of memory"
    if isinstance(exc, CnnbenchError):
        return failed(first_line(exc))
    return failed(type(exc).__name__ + (f": {first_line(exc)}" if str(exc).strip() else ""))
