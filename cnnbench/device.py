"""Where work runs: device selection, GPU lists, synchronisation and autocast, shared by every command.

A leaf: it imports nothing of cnnbench but its errors, so every layer may use it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from multiprocessing import context as mp_context
from typing import Any

from cnnbench.errors import DeviceError, InvalidArgumentError


def is_cuda(device: str) -> bool:
    """Whether a resolved device name ('cpu', 'cuda', 'cuda:1') is a CUDA GPU."""
    return str(device).startswith("cuda")


def usable_cpus() -> int:
    """The CPUs this process may use (a Slurm allocation's, a taskset's), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_pool(workers: int, initializer: Callable[[], None] | None = None) -> Any:
    """A ``ProcessPoolExecutor`` of ``workers`` processes for this package's side work (decoding,
    plotting): children of the forkserver, a clean process that never held CUDA or the caller's threads
    (spawn where there is no forkserver: Windows), never a fork of the caller, and never running the
    caller's script again (:class:`_ContextWithoutMain`). Each runs ``initializer`` first, and leaves
    Ctrl-C to its caller (:func:`_start_worker`). Only this package's functions are submitted to it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = _ContextWithoutMain.of(method)
    _start_helpers_deaf_to_hangups(context)

    class Pool(ProcessPoolExecutor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            # A submit may start a worker: a stop signal handled halfway through would leave it to start
            # with its parent's semaphores gone (a FileNotFoundError traceback from the forkserver). The
            # signal waits until the submit is done, and is handled then.
            with _signals_held(_STOP_SIGNALS):
                return super().submit(fn, *args, **kwargs)

    return Pool(workers, mp_context=context, initializer=_start_worker, initargs=(initializer,))


@contextlib.contextmanager
def _main_left_out() -> Iterator[None]:
    """``__main__`` seen by multiprocessing, for the block, as a module with no file. A process started
    by spawn or the forkserver first imports its parent's main script (as ``__mp_main__``) so that
    functions defined there can be unpickled; the pool runs this package's functions only, and a
    user's script calling ``cnnbench.compare`` with no ``if __name__ == "__main__"`` guard would run
    again in every worker (and a script read from stdin, ``python - <script.py``, names no file at all:
    a FileNotFoundError in each, a broken pool). A module with neither file nor spec is left alone, as a
    notebook's is."""
    import sys
    import types

    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _popen_without_main(process: Any, start: Callable[[Any], Any]) -> Any:
    with _main_left_out():
        return start(process)


class _SpawnProcess(mp_context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802  (multiprocessing's name)
        return _popen_without_main(process_obj, mp_context.SpawnProcess._Popen)


if hasattr(mp_context, "ForkServerProcess"):  # not on Windows

    class _ForkServerProcess(mp_context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:  # noqa: N802
            return _popen_without_main(process_obj, mp_context.ForkServerProcess._Popen)


class _ContextWithoutMain:
    """multiprocessing's forkserver or spawn context whose processes start without the caller's main
    script (:func:`_main_left_out`). The process classes are module-level: a child unpickles its own."""

    @staticmethod
    def of(method: str) -> Any:
        import multiprocessing

        base = type(multiprocessing.get_context(method))
        process = _ForkServerProcess if method == "forkserver" else _SpawnProcess
        return type(f"{base.__name__}WithoutMain", (base,), {"Process": process})()


_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _signals_held(names: tuple[str, ...]) -> Any:
    """The signals ``names`` held (blocked, not lost) for the block, in the main thread: one that comes
    meanwhile is handled as the block ends, and processes started in it inherit the mask."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {getattr(signal, n) for n in names})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_helpers_deaf_to_hangups(context: Any) -> None:
    """Start multiprocessing's helper processes (the resource tracker, the forkserver) with SIGHUP blocked,
    as the tracker ignores SIGINT and SIGTERM itself: a closed terminal's SIGHUP reaches the whole process
    group, and a tracker it killed was relaunched with a warning and a KeyError traceback for every
    semaphore the pool then freed. The caller stops on SIGHUP and shuts the pool down; the helpers end
    when it does (they read its pipe to its end)."""
    from multiprocessing import resource_tracker

    # Blocked, not ignored: a hangup that comes meanwhile stops this process once the helpers are up.
    # They keep the mask (inherited through exec), so SIGHUP never reaches them.
    with _signals_held(("SIGHUP",)):
        resource_tracker.ensure_running()
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            with _main_left_out():  # the forkserver, too, would import the main script
                forkserver.ensure_running()


def _start_worker(initializer: Callable[[], None] | None) -> None:
    import signal

    # A terminal's Ctrl-C and hangup reach its whole process group. The caller stops on them and shuts
    # its pool down; a worker that raised KeyboardInterrupt as well would print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if initializer is not None:
        initializer()


def is_cpu_oom(exc: BaseException) -> bool:
    """The CPU allocator's refusal, which torch raises as a plain RuntimeError."""
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def optimizer_impl(optimizer: str, device: str) -> str:
    """Adam/AdamW run fused on CUDA: one kernel for all parameters instead of a dozen multi-tensor
    passes (VGG-16's bf16 step on an H200: 3.13 -> 2.32 ms). Same update rule, other rounding."""
    return "fused" if is_cuda(device) and optimizer in ("adam", "adamw") else "foreach"


def use_channels_last(requested: bool | None, device: str) -> bool:
    """NHWC unless asked otherwise on CUDA, where cuDNN's tensor-core convolutions are NHWC-native
    (SimpleResNet's fp32 training step on an H200: 6.06 -> 3.99 ms); NCHW on the CPU."""
    return is_cuda(device) if requested is None else requested


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; reject CUDA requests without a GPU."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"expected a CUDA GPU for --device {name}, got none (torch sees no GPU); use --device cpu"
            )
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"expected --device cuda:N with N < {torch.cuda.device_count()}, got {name!r}")
        return name
    raise DeviceError(f"expected --device auto|cpu|cuda[:N], got {name!r}")


@contextlib.contextmanager
def cudnn_autotune(enabled: bool) -> Iterator[None]:
    """cuDNN benchmark mode inside the block only.

    Autotuning tries every algorithm once per new shape: worth it for the full training batch that
    is timed thousands of times, not for the one partial batch per epoch or the evaluation batch
    (VGG-16's warm-up on an H200: 7.7 s in bf16 with autotuning for all three shapes).
    """
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Inside the block, when ``enabled``: PyTorch's deterministic algorithms, cuDNN's deterministic
    kernels without autotuning, and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG), so that two
    processes with the same seed on the same GPU model compute the same digits. Ops that have no
    deterministic kernel warn rather than stop the run."""
    import torch

    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def clear_cublas_workspaces() -> None:
    """Free the workspaces cuBLAS handles keep, so that the next step's peak includes its own."""
    import torch

    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None and torch.cuda.is_available():
        clear()


def synchronize(device: str) -> None:
    import torch

    if is_cuda(device):
        torch.cuda.synchronize(device)


def autocast(precision: str, device: str) -> Any:

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    # The cast cache must be off for CUDA graph capture; one forward reuses each weight once anyway.
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, cache_enabled=False)


def parse_gpus(text: str, available: int) -> list[str]:
    """``all``, a count ``N`` (the first N GPUs) or a list ``0,2,3``, checked against the GPUs there are."""
    if available < 1:
        raise DeviceError(f"expected CUDA GPUs for --gpus {text}, got none (torch sees no GPU)")
    text = text.strip().lower()
    if text == "all":
        return [str(i) for i in range(available)]
    try:
        if "," not in text:
            count = int(text)
            if not 1 <= count <= available:
                raise InvalidArgumentError(f"expected --gpus between 1 and {available}, got {count}")
            return [str(i) for i in range(count)]
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidArgumentError(
            f"expected --gpus all, a count or a list like 0,2,3, got {text!r}"
        ) from None
    if len(set(ids)) != len(ids) or any(not 0 <= i < available for i in ids):
        raise InvalidArgumentError(f"expected --gpus of distinct ids in [0, {available}), got {text!r}")
    return [str(i) for i in ids]
