"""Where a comparison's seconds go: one `cnnbench compare ...` under cProfile, its wall time split into
phases by the cumulative time of the functions that do each (imports wherever they happen, data, model
building, FLOP counting, idle power, warm-up, CUDA-graph capture, training epochs, evaluation, the run's
files, aggregation, tables and plots). cProfile slows Python-heavy phases (imports most), so the phases
are shares of a profiled run, and its wall time is printed beside the unprofiled one when given.

    python benchmarks/compare_phases.py OUT.csv [--label NAME] -- COMPARE ARGS...

Phases overlap where one calls another (an import inside model building is counted in both); the
`training epochs` row is the epochs' loops less their evaluation.
"""

from __future__ import annotations

import argparse
import csv
import os
import pstats
import subprocess
import sys
import tempfile
import time

# phase -> (file suffix, function name) whose cumulative time it is; several add up.
PHASES = {
    "imports (all, wherever they happen)": [("<frozen importlib._bootstrap>", "_find_and_load")],
    "data loading": [("cnnbench/data/readers.py", "load_split")],
    "model building": [("cnnbench/models/build.py", "prepare_model")],
    "FLOP counting": [("cnnbench/models/counting.py", "count_flops")],
    "idle power (waited for)": [("cnnbench/training/trainer.py", "process_idle_power"),
                                ("cnnbench/training/trainer.py", "watts")],
    "warm-up (autotuning, step probe)": [("cnnbench/training/step.py", "warmup")],
    "loader probe": [("cnnbench/training/trainer.py", "_probe_loader")],
    "CUDA-graph capture": [("cnnbench/training/step.py", "capture")],
    "epochs incl. their evaluation": [("cnnbench/training/trainer.py", "_epoch")],
    "evaluation (per epoch and final)": [("cnnbench/training/step.py", "evaluate")],
    "checkpoints": [("cnnbench/store/runs.py", "save_checkpoint")],
    "aggregation": [("cnnbench/compare/aggregate.py", "aggregate")],
    "tables and plots": [("cnnbench/report/outputs.py", "write_outputs")],
    "plots alone": [("cnnbench/report/plots.py", "compare_plots")],
    "trainer set-up (data, model, counts, optimizer)": [("cnnbench/training/trainer.py", "_setup")],
    "one run, start to end": [("cnnbench/training/trainer.py", "_run")],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--label", default="")
    cut = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    ns = parser.parse_args(sys.argv[1:cut])
    args = sys.argv[cut + 1 :]
    prof = tempfile.mktemp(suffix=".prof")
    store = tempfile.mkdtemp()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cProfile", "-o", prof, "-m", "cnnbench", "compare", *args,
                    "--out", store, "-q"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    rows = []
    for phase, targets in PHASES.items():
        seconds = sum(ct for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items()
                      for suffix, func in targets if name == func and file.endswith(suffix))  # fmt: skip
        rows.append({"label": ns.label, "phase": phase, "seconds": round(seconds, 3)})
    epochs = next(r for r in rows if r["phase"] == "epochs incl. their evaluation")["seconds"]
    per_epoch_eval = sum(ct for (file, _l, name), (_cc, _nc, _tt, ct, callers) in stats.items()
                         if name == "evaluate" and file.endswith("cnnbench/training/step.py")
                         for caller, (_c, _n, _t, cct) in callers.items() if caller[2] == "_epoch")  # fmt: skip
    rows.append({"label": ns.label, "phase": "training epochs (less their evaluation)",
                 "seconds": round(epochs - per_epoch_eval, 3)})  # fmt: skip
    rows.append(
        {"label": ns.label, "phase": "wall, profiled (process start to exit)", "seconds": round(wall, 3)}
    )
    new = not os.path.exists(ns.out)
    with open(ns.out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["label", "phase", "seconds"])
        if new:
            writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        print(f"{r['label']:>8} {r['phase']:<50} {r['seconds']:8.3f} s")


if __name__ == "__main__":
    main()
