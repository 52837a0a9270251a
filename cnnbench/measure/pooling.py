"""Exercise 1 of the chapter: max and average pooling applied to the same feature map, side by side.

The default input is the chapter's edge map: a 4x4 square outline of ones inside a 6x6 map of zeros.
``image`` takes test image N of a dataset instead (its grey level, 0 to 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnbench.errors import InvalidArgumentError
from cnnbench.settings import PoolConfig

# The chapter's edge feature map (exercise 1): the outline of a square.
EDGE_MAP = [
    [0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 0],
    [0, 1, 0, 0, 1, 0],
    [0, 1, 0, 0, 1, 0],
    [0, 1, 1, 1, 1, 0],
    [0, 0, 0, 0, 0, 0],
]


@dataclass
class PoolResult:
    source: str
    kernel: int
    stride: int
    input: list[list[float]]
    max: list[list[float]]
    avg: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kernel": self.kernel, "stride": self.stride, "input": self.input,
                "max": self.max, "avg": self.avg}  # fmt: skip

    def findings(self) -> list[str]:
        """One line on what each pooling keeps, from the numbers themselves."""
        flat_max = [v for row in self.max for v in row]
        flat_avg = [v for row in self.avg for v in row]
        peak = max(max(v for row in self.input for v in row), 0.0)
        full = sum(v == peak for v in flat_max) if peak else 0
        nonzero = [v for v in flat_avg if v > 0]
        avg_range = f"{min(nonzero):.3g} to {max(nonzero):.3g}" if nonzero else "0"
        return [
            f"max keeps the strongest response in each {self.kernel}x{self.kernel} window: {full} of "
            f"{len(flat_max)} windows read the edge at full strength ({peak:g}), so the outline survives intact",
            f"average keeps the mean of each window: the same edge reads {avg_range}, diluted by the background "
            "around it; it keeps how much of a window the feature fills, not whether it is there",
        ]


def pool(config: PoolConfig) -> PoolResult:
    """Max and average pooling of one map with one kernel and stride."""
    import torch
    import torch.nn.functional as F

    if config.kernel < 1 or config.stride < 1:
        raise InvalidArgumentError(
            f"expected --kernel and --stride >= 1, got {config.kernel} and {config.stride}"
        )
    if config.image is None:
        x, source = torch.tensor(EDGE_MAP, dtype=torch.float32), "the chapter's 6x6 edge map"
    else:
        x, source = _image(config)
    side = min(x.shape)
    if config.kernel > side:
        raise InvalidArgumentError(f"expected --kernel <= {side} (the input's side), got {config.kernel}")
    batch = x[None, None]
    as_rows = lambda t: [[round(float(v), 6) for v in row] for row in t[0, 0]]  # noqa: E731
    return PoolResult(
        source, config.kernel, config.stride, as_rows(batch),
        as_rows(F.max_pool2d(batch, config.kernel, config.stride)),
        as_rows(F.avg_pool2d(batch, config.kernel, config.stride)),
    )  # fmt: skip


def _image(config: PoolConfig) -> tuple[Any, str]:
    import torch

    from cnnbench.data.readers import load_split

    test = load_split(config.dataset, "test", config.data_dir)
    if not 0 <= config.image < len(test):
        raise InvalidArgumentError(
            f"expected --image in [0, {len(test)}) for {test.spec.name}, got {config.image}"
        )
    grey = torch.from_numpy(test.images[config.image]).float().mean(0) / 255.0
    return grey, f"test image {config.image} of {test.spec.name} (grey level, 0 to 1)"
