"""Decoding rate of `-d imagefolder`'s first run alone: images/s into a fresh cache, with 1 worker process
and with one per CPU, and per core, on a folder of JPEGs (benchmarks/make_jpeg_folder.py makes one).

    python benchmarks/decode_rate.py DIR [--size 256] [--workers 1,16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from cnnbench.data import imagefolder
from cnnbench.device import usable_cpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", default=f"1,{usable_cpus()}")
    args = parser.parse_args()
    for workers in (int(w) for w in args.workers.split(",")):
        shutil.rmtree(args.root / ".cnnbench-cache", ignore_errors=True)
        t0 = time.perf_counter()
        data = imagefolder.load(args.root, "train", args.size, workers=workers)
        seconds = time.perf_counter() - t0
        n = len(data["images"])
        print(json.dumps({"images": n, "stored_size": args.size, "workers": workers, "seconds": round(seconds, 2),
                          "images_per_s": round(n / seconds), "images_per_s_per_worker": round(n / seconds / workers),
                          "cpus": len(os.sched_getaffinity(0))}))  # fmt: skip


if __name__ == "__main__":
    main()
