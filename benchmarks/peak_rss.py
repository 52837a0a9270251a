"""Run a command and report its peak resident memory: the command's own process, and the sum over it and
every process it starts (decoding workers, loader processes), sampled every 20 ms from /proc.

    python benchmarks/peak_rss.py OUT.json -- COMMAND [ARGS...]

Writes {"command", "wall_s", "exit_code", "peak_rss_GiB", "peak_tree_rss_GiB"} to OUT.json and prints it.
/proc rather than getrusage: Linux keeps a process's maxrss across exec, so a child started from a large
parent reports the parent's peak, and workers of a forkserver are not the command's children.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def _tree(pid: int) -> list[int]:
    found = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [p for child in fh.read().split() for p in _tree(int(child))]
        except OSError:
            pass
    return found


def main() -> None:
    out, sep, *command = sys.argv[1:]
    assert sep == "--", __doc__
    t0 = time.perf_counter()
    proc = subprocess.Popen(command)
    peak = {"own": 0, "tree": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                pids = _tree(proc.pid)
                sizes = []
                for p in pids:
                    try:
                        sizes.append(_rss_kib(p))
                    except (OSError, StopIteration):
                        sizes.append(0)
                peak["own"] = max(peak["own"], sizes[0])
                peak["tree"] = max(peak["tree"], sum(sizes))
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    code = proc.wait()
    done.set()
    watcher.join()
    record = {"command": " ".join(command), "wall_s": round(time.perf_counter() - t0, 2), "exit_code": code,
              "peak_rss_GiB": round(peak["own"] / 2**20, 3), "peak_tree_rss_GiB": round(peak["tree"] / 2**20, 3)}  # fmt: skip
    with open(out, "w") as fh:
        json.dump(record, fh, indent=1)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
