"""A folder of ImageNet-like JPEGs in the ImageFolder layout, for measuring `-d imagefolder` at scale.

    python benchmarks/make_jpeg_folder.py DIR [--train 100000] [--val 5000] [--classes 100]

Sizes are ImageNet's usual: widths 400-500 and heights 300-500 (most near 500x375), quality 90. The
content is smooth colour fields with fine noise, so files are of photographic size (tens of kB) and
decode at a photograph's cost, not a flat image's; each class has its own tint (the set is learnable).
Written by one process per CPU.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

_GRAIN: dict[int, np.ndarray] = {}


def _write(task: tuple[str, int, int, int]) -> int:
    folder, label, first, count = task
    rng = np.random.default_rng(first * 7919 + label)
    tint = np.random.default_rng(label).integers(0, 256, 3)
    if not _GRAIN:  # one field of fine noise per process, cut at a random place for each image
        _GRAIN[0] = np.random.default_rng(os.getpid()).normal(0, 12, (600, 600, 3)).astype(np.float32)
    for i in range(first, first + count):
        w = int(rng.choice([500, 500, 500, 375, 400, 450]))
        h = int(rng.choice([375, 375, 333, 500, 300, 400]))
        coarse = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32)
        y, x = rng.integers(0, 600 - h + 1), rng.integers(0, 600 - w + 1)
        pixels = 0.6 * field + 0.4 * tint + _GRAIN[0][y : y + h, x : x + w]
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{i:07d}.jpg"), quality=90
        )
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--val", type=int, default=5_000)
    parser.add_argument("--classes", type=int, default=100)
    args = parser.parse_args()
    tasks = []
    for split, total in (("train", args.train), ("val", args.val)):
        per_class = total // args.classes
        for label in range(args.classes):
            folder = os.path.join(args.root, split, f"n{label:04d}")
            os.makedirs(folder, exist_ok=True)
            for first in range(0, per_class, 100):
                tasks.append((folder, label, first, min(100, per_class - first)))
    with ProcessPoolExecutor(
        max_workers=len(os.sched_getaffinity(0))
    ) as pool:  # the CPUs this process may use
        written = sum(pool.map(_write, tasks))
    print(f"wrote {written:,} JPEGs under {args.root}")


if __name__ == "__main__":
    main()
