"""What a run ran on, written beside it as environment.json: PyTorch's own collector
(:mod:`torch.utils.collect_env`: OS, libc, compilers, Python, CUDA runtime, driver, cuDNN, CPU) plus what it
lacks: each GPU as NVML reports it (model, memory, power limit, clocks, MIG mode), CUDA MPS, the CPU's
model and cores, the packages that move results, and cnnbench's own commit where it runs from a git
checkout. The few fields that explain a difference between two machines' numbers (:data:`KEY_FIELDS`) go
into runs.csv too.

Collected once per process (a comparison's runs share it): collect_env's slowest part, ``pip list``, is
replaced by the versions of the packages that matter, read from their metadata.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "timm", "numpy", "cnnbench", "nvidia-ml-py")
# manifest key -> runs.csv column: what two machines' numbers differ by, beyond the GPU and torch's versions.
KEY_FIELDS = {
    "driver_version": "driver_version", "python_version": "python_version", "cpu_model": "cpu_model",
    "cpu_count": "cpu_count", "gpu_count": "gpu_count", "gpu_memory_MiB": "gpu_memory_MiB",
    "gpu_power_limit_W": "gpu_power_limit_W", "gpu_max_sm_clock_MHz": "gpu_max_sm_clock_MHz",
    "mig_mode": "mig_mode", "cnnbench_commit": "cnnbench_commit",
}  # fmt: skip


def _collect_env() -> dict[str, Any]:
    """collect_env's parts, each alone (one that fails on this machine is None, the rest stand)."""
    from torch.utils import collect_env as ce

    parts = {
        "os": lambda: ce.get_os(ce.run),
        "libc_version": ce.get_libc_version,
        "python_platform": ce.get_python_platform,
        "gcc_version": lambda: ce.get_gcc_version(ce.run),
        "cuda_runtime_version": lambda: ce.get_running_cuda_version(ce.run),
        "nvidia_driver_version": lambda: ce.get_nvidia_driver_version(ce.run),
        "nvidia_gpu_models": lambda: ce.get_gpu_info(ce.run),
        "cudnn_version": lambda: ce.get_cudnn_version(ce.run),
        "cpu_info": lambda: ce.get_cpu_info(ce.run),
    }
    found: dict[str, Any] = {}
    for key, part in parts.items():
        try:
            found[key] = part()
        except Exception:  # noqa: BLE001  (a tool this machine lacks: that part unknown)
            found[key] = None
    return found


def _gpus() -> list[dict[str, Any]]:
    """Each GPU as NVML sees it; [] without NVML (no nvidia-ml-py, no driver)."""
    from cnnbench.energy import _nvml

    nvml = _nvml()
    if nvml is None:
        return []

    def ask(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:  # noqa: BLE001  (NVML_ERROR_NOT_SUPPORTED on this card)
            return None

    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = ask(nvml.nvmlDeviceGetName, handle)
        memory = ask(nvml.nvmlDeviceGetMemoryInfo, handle)
        limit = ask(nvml.nvmlDeviceGetPowerManagementLimit, handle)
        mig = ask(nvml.nvmlDeviceGetMigMode, handle)
        gpus.append({
            "index": index,
            "name": name.decode() if isinstance(name, bytes) else name,
            "memory_MiB": memory.total / 2**20 if memory is not None else None,
            "power_limit_W": limit / 1000 if limit is not None else None,
            "max_sm_clock_MHz": ask(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM),
            "max_memory_clock_MHz": ask(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM),
            "sm_clock_MHz": ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
            "mig_mode": ("on" if mig[0] else "off") if mig is not None else None,
        })  # fmt: skip
    driver = ask(nvml.nvmlSystemGetDriverVersion)
    if gpus:
        gpus[0]["driver"] = driver.decode() if isinstance(driver, bytes) else driver
    return gpus


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _packages() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _commit() -> dict[str, Any]:
    """cnnbench's git commit and whether its checkout has changes, where it runs from one."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return {"cnnbench_commit": None, "cnnbench_dirty": None}
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()  # fmt: skip
        changes = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"cnnbench_commit": None, "cnnbench_dirty": None}
    return {
        "cnnbench_commit": head + ("-dirty" if changes.strip() else ""),
        "cnnbench_dirty": bool(changes.strip()),
    }


@functools.cache
def manifest() -> dict[str, Any]:
    """This machine's environment (the same for every run of this process)."""
    import torch

    from cnnbench.device import usable_cpus

    gpus = _gpus()
    first = gpus[0] if gpus else {}
    return {
        "collect_env": _collect_env(),
        "gpus": gpus,
        "gpu_count": len(gpus) if gpus else (torch.cuda.device_count() if torch.cuda.is_available() else 0),
        "gpu_memory_MiB": first.get("memory_MiB"),
        "gpu_power_limit_W": first.get("power_limit_W"),
        "gpu_max_sm_clock_MHz": first.get("max_sm_clock_MHz"),
        "mig_mode": first.get("mig_mode"),
        "driver_version": first.get("driver"),
        "cuda_mps": bool(os.environ.get("CUDA_MPS_PIPE_DIRECTORY"))
        or os.environ.get("CNNBENCH_CUDA_MPS") == "1",
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "python_version": platform.python_version(),
        "packages": _packages(),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        **_commit(),
    }


def key_fields(found: dict[str, Any]) -> dict[str, Any]:
    """The manifest's fields that runs.csv carries."""
    return {column: found.get(key) for key, column in KEY_FIELDS.items()}
