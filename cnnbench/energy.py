"""Energy: joules read around the work, from the device's own counters.

- On NVIDIA GPUs, NVML's total-energy counter (millijoules since the driver loaded, Volta and newer),
  through ``nvidia-ml-py`` (NVIDIA's bindings, module ``pynvml``); where a GPU has no counter, its power
  sampled every 20 ms in a thread and integrated (trapezoids). A data-parallel run adds its GPUs.
- On the CPU, RAPL's package counter (``/sys/class/powercap/intel-rapl:*/energy_uj``) where it is readable.
- Elsewhere nothing: readings are None, never a zero, and the output says "energy not measured".

A reading is taken after the device has finished its queued work (the caller synchronises), so an epoch's
joules are the epoch's. When the card runs other processes' work too (several runs per GPU, MPS), the
reading is the card's over the run's window and the run is marked ``energy_shared``. No torch here.
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Callable
from typing import Any

from cnnbench.device import synchronize

SAMPLE_INTERVAL_S = 0.02
IDLE_WINDOW_S = 1.0


def _nvml() -> Any:
    """The NVML bindings, initialised; None where there is no NVIDIA driver (or no nvidia-ml-py)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no driver, no library, no permission: energy is not measured
        return None


class EnergyMeter:
    """Joules of a set of sources since the meter was made; ``read()`` is None where nothing is read."""

    method = "none"

    def read(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class Counters(EnergyMeter):
    """Cumulative counters (joules) read on demand: NVML's energy counters, or RAPL's."""

    def __init__(self, readers: list[Callable[[], float]], method: str) -> None:
        self.readers, self.method = readers, method
        self.origin = [read() for read in readers]

    def read(self) -> float | None:
        return sum(read() - start for read, start in zip(self.readers, self.origin, strict=True))


class PowerSampler(EnergyMeter):
    """Power (watts) sampled in a thread and integrated: for GPUs without an energy counter."""

    method = "nvml power sampling"

    def __init__(self, power: Callable[[], float], interval_s: float = SAMPLE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.power, self.interval_s, self.clock = power, interval_s, clock
        self.joules = 0.0
        self.last = (clock(), power())
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        with self.lock:
            now, watts = self.clock(), self.power()
            then, before = self.last
            self.joules += 0.5 * (watts + before) * (now - then)
            self.last = (now, watts)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.sample()

    def read(self) -> float | None:
        self.sample()
        with self.lock:
            return self.joules

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=1)


def gpu_meter(indices: list[int], nvml: Any = None) -> EnergyMeter:
    """The meter of GPUs ``indices`` (NVML's numbering): their counters, else their power sampled."""
    nvml = nvml or _nvml()
    if nvml is None or not indices:
        return EnergyMeter()
    try:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
    except Exception:
        return EnergyMeter()
    try:
        for handle in handles:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        readers = [lambda h=h: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3 for h in handles]
        return Counters(readers, "nvml energy counter")
    except Exception:  # no counter on this GPU (older than Volta, some virtual machines)
        pass
    try:
        for handle in handles:
            nvml.nvmlDeviceGetPowerUsage(handle)
        return PowerSampler(lambda: sum(nvml.nvmlDeviceGetPowerUsage(h) for h in handles) / 1e3)
    except Exception:
        return EnergyMeter()


def cpu_meter(root: str = "/sys/class/powercap") -> EnergyMeter:
    """RAPL's package counters where readable (they wrap at ``max_energy_range_uj``)."""
    readers = []
    for zone in sorted(glob.glob(f"{root}/intel-rapl:[0-9]*")):
        if ":" in zone.rsplit("intel-rapl:", 1)[1]:
            continue  # a sub-zone (core, uncore, dram): inside its package's count
        try:
            with open(f"{zone}/energy_uj") as fh:
                int(fh.read())
            with open(f"{zone}/max_energy_range_uj") as fh:
                wrap = int(fh.read())
        except (OSError, ValueError):
            continue
        readers.append(_rapl_reader(f"{zone}/energy_uj", wrap))
    return Counters(readers, "rapl") if readers else EnergyMeter()


def _rapl_reader(path: str, wrap: int) -> Callable[[], float]:
    state = {"last": None, "turns": 0}

    def read() -> float:
        with open(path) as fh:
            value = int(fh.read())
        if state["last"] is not None and value < state["last"]:
            state["turns"] += 1
        state["last"] = value
        return (value + state["turns"] * wrap) / 1e6

    return read


def open_meter(device: str, gpus: list[int] | None = None) -> EnergyMeter:
    """The meter of a run on ``device``: its GPUs' (``gpus``, NVML's numbering; default: the device's
    own), or the CPU's package."""
    if not str(device).startswith("cuda"):
        return cpu_meter()
    return gpu_meter(gpus if gpus is not None else [nvml_index(device)])


def nvml_index(device: str) -> int:
    """NVML's number for a CUDA device: found by its UUID, since CUDA_VISIBLE_DEVICES renumbers them."""
    import torch

    index = torch.device(device).index or 0
    nvml = _nvml()
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        for i in range(nvml.nvmlDeviceGetCount()):
            found = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))
            found = found.decode() if isinstance(found, bytes) else found
            if found.removeprefix("GPU-") == uuid.removeprefix("GPU-"):
                return i
    except Exception:
        pass
    return index


def idle_power(meter: EnergyMeter, seconds: float = IDLE_WINDOW_S) -> float | None:
    """Watts the sources draw over a quiet window (before any work): how much of a small model's energy
    is the device idling."""
    before = meter.read()
    if before is None:
        return None
    start = time.monotonic()
    time.sleep(seconds)
    after = meter.read()
    return (after - before) / (time.monotonic() - start) if after is not None else None


_IDLE_POWER: dict[str, float | None] = {}


class IdlePower:
    """The device's power over a quiet window, measured once per process, before its first run: on a
    thread from the moment the meter opens, so the window overlaps the run's host-side set-up."""

    def __init__(self, meter: EnergyMeter, device: str) -> None:
        self.device, self.thread = device, None
        if meter.method == "none" or device in _IDLE_POWER:
            return
        synchronize(device)

        def measure() -> None:
            _IDLE_POWER[device] = idle_power(meter)

        self.thread = threading.Thread(target=measure, name="cnnbench-idle-power", daemon=True)
        self.thread.start()

    def watts(self) -> float | None:
        if self.thread is not None:
            self.thread.join()
        return _IDLE_POWER.get(self.device)
