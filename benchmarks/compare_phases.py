"""Where a comparison's seconds go: one `cnnbench compare ...` in a child process whose phases are timed by
wrappers put around the functions that do them (no profiler: a wrapper costs a microsecond a call, so the
profiled wall time stays the plain one). Imports are timed wherever they happen (``builtins.__import__``,
outermost statement only) and taken out of the phase they happen in, so that no second is counted twice;
the first CUDA initialisation is its own phase, and so is the interpreter's start and exit.

    python benchmarks/compare_phases.py OUT.csv [--label NAME] [--keep-counts] -- COMPARE ARGS...

The counts cache is an empty folder unless --keep-counts (a fresh machine counts every model).

Rows: label, phase, seconds (exclusive of the imports and CUDA initialisation inside it), calls, and the
command. ``training epochs`` is the epochs' timed loops (the runs' ``total_train_s``); ``rest`` is what no
phase names (the CLI's own code, the progress display, Python between the timed calls).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

# phase -> [(module, attribute path)]; each phase's seconds are its own: less the timed phases called inside it.
PHASES = {
    "device and results checks": [("cnnbench.device", "resolve_device"), ("cnnbench.store.runs", "validate_runs_table")],
    "data loading": [("cnnbench.data.readers", "load_split")],
    "plan (conditions, reuse lookup)": [("cnnbench.comparison.run", "_plan_runs")],
    "model building": [("cnnbench.models.build", "prepare_model")],
    "FLOP counting": [("cnnbench.models.counting", "count_flops")],
    "idle power (waited for)": [("cnnbench.energy", "IdlePower.watts")],
    "trainer set-up, other": [("cnnbench.training.trainer", "Trainer._setup")],
    "run folder and config.json": [("cnnbench.training.trainer", "Trainer._open_store")],
    "warm-up (autotuning, step probe)": [("cnnbench.training.step", "TrainStep.warmup")],
    "loader probe": [("cnnbench.training.trainer", "Trainer._probe_loader")],
    "CUDA-graph capture": [("cnnbench.training.step", "TrainStep.capture")],
    "epochs (loop and evaluation)": [("cnnbench.training.trainer", "Trainer._epoch")],
    "evaluation (per epoch and final)": [("cnnbench.training.step", "evaluate")],
    "epoch rows": [("cnnbench.store.runs", "RunStore.append_epoch")],
    "checkpoints": [("cnnbench.store.runs", "RunStore.save_checkpoint")],
    "run summary and runs.csv row": [("cnnbench.training.trainer", "Trainer._summary"), ("cnnbench.store.runs", "RunStore.finish")],
    "one run, other": [("cnnbench.training.trainer", "Trainer._run")],
    "collect (tidy, aggregation)": [("cnnbench.comparison.run", "collect")],
    "tables (Markdown, LaTeX, CSV)": [("cnnbench.report.outputs", "write_outputs")],
    "plots": [("cnnbench.report.plots", "compare_plots")],
}  # fmt: skip
CHILD = r"""
import builtins, importlib, json, sys, time
T = {"start": time.time()}
sys._xoptions.pop("importtime", None)  # this process's imports are timed, not those of processes it starts
imports = [0.0, 0]  # seconds in outermost imports, nesting depth
cuda = [0.0]
real_import = builtins.__import__
def timed_import(*a, **k):
    if imports[1]:
        return real_import(*a, **k)
    imports[1] = 1
    t = time.perf_counter()
    try:
        return real_import(*a, **k)
    finally:
        imports[0] += time.perf_counter() - t
        imports[1] = 0
builtins.__import__ = timed_import
t = time.perf_counter()
from cnnbench.cli import main as cli_main
T["cli_import_s"] = time.perf_counter() - t
PHASES, TIMINGS = json.loads(sys.argv[1]), sys.argv[2]
acc = {}  # phase -> [own seconds, calls]
stack = []  # open timed calls: [children's seconds, imports and CUDA initialisation inside]
def wrap(phase, fn):
    def timed(*a, **k):
        t, ic = time.perf_counter(), imports[0] + cuda[0]
        stack.append([0.0, 0.0])
        try:
            return fn(*a, **k)
        finally:
            children, children_ic = stack.pop()
            inclusive, ic = time.perf_counter() - t, imports[0] + cuda[0] - ic
            row = acc.setdefault(phase, [0.0, 0])
            row[0] += inclusive - children - (ic - children_ic)
            row[1] += 1
            if stack:
                stack[-1][0] += inclusive
                stack[-1][1] += ic
    timed.__wrapped__ = fn
    return timed
originals = {}
for phase, targets in PHASES.items():
    for module, path in targets:
        mod = importlib.import_module(module)
        owner, name = mod, path
        if "." in path:
            cls, name = path.split(".")
            owner = getattr(mod, cls, None)
        fn = vars(owner).get(name) if owner is not None else None
        if fn is None:
            continue  # a checkout without it (an older one): its time falls to the phase around it
        originals[id(fn)] = wrap(phase, fn)
# Every reference to a timed function (a module's own, a `from x import f` elsewhere) gets its wrapper.
for mod in list(sys.modules.values()):
    if getattr(mod, "__name__", "").startswith("cnnbench"):
        for owner in [mod] + [v for v in vars(mod).values() if isinstance(v, type)]:
            for key, value in list(vars(owner).items()):
                if id(value) in originals:
                    setattr(owner, key, originals[id(value)])
import torch.cuda
real_init = torch.cuda._lazy_init
def timed_init():
    if torch.cuda.is_initialized():
        return real_init()
    t = time.perf_counter()
    try:
        return real_init()
    finally:
        cuda[0] += time.perf_counter() - t
torch.cuda._lazy_init = timed_init
T["imports_before_main_s"] = imports[0]
T["main_start"] = time.time()
code = 0
try:
    sys.argv = ["cnnbench", *sys.argv[3:]]
    cli_main()
except SystemExit as exc:
    code = exc.code or 0
T["main_end"] = time.time()
T["imports_s"] = imports[0]
T["cuda_init_s"] = cuda[0]
T["phases"] = acc
json.dump(T, open(TIMINGS, "w"))
sys.exit(code)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--keep-counts",
        action="store_true",
        help="use the user's FLOP-counts cache (default: an empty one, as on a fresh machine)",
    )
    cut = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    ns = parser.parse_args(sys.argv[1:cut])
    args = sys.argv[cut + 1 :]
    store = tempfile.mkdtemp()
    timings = os.path.join(store, "timings.json")
    command = ["compare", *args, "--out", store, "-q"]
    env = dict(os.environ)
    if not ns.keep_counts:
        env["CNNBENCH_CACHE_DIR"] = tempfile.mkdtemp()
    t0 = time.time()
    with open(os.path.join(store, "stderr.txt"), "w+") as err:
        child = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, json.dumps(PHASES), timings,
                                *command], stdout=subprocess.DEVNULL, stderr=err, env=env)  # fmt: skip
        err.seek(0)
        lines = err.read().splitlines()
    if child.returncode:
        print("\n".join(line for line in lines if not line.startswith("import time:")), file=sys.stderr)
        sys.exit(f"cnnbench compare {' '.join(args)} exited with {child.returncode}")
    by_package: dict[str, float] = {}  # top-level package -> its modules' own import seconds
    for line in lines:
        if line.startswith("import time:") and "self [us]" not in line:
            own, _cumulative, name = line.removeprefix("import time:").split("|")
            package = name.strip().split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(own) / 1e6
    end = time.time()
    t = json.load(open(timings))
    runs = list(csv.DictReader(open(os.path.join(store, "runs.csv"))))
    train_s = sum(float(r["total_train_s"]) for r in runs)
    phases = {p: {"s": v[0], "calls": v[1]} for p, v in t["phases"].items()}
    if "epochs (loop and evaluation)" in phases:
        phases["epochs (loop and evaluation)"]["s"] -= train_s
        phases["epoch bookkeeping (synchronise, energy, peak memory)"] = phases.pop(
            "epochs (loop and evaluation)"
        )
    rows = [
        ("interpreter start", t["start"] - t0, 1),
        ("imports (all, wherever they happen)", t["imports_s"], 1),
        ("CUDA initialisation", t["cuda_init_s"], 1),
        ("training epochs (the runs' total_train_s)", train_s, len(runs)),
        *((p, v["s"], v["calls"]) for p, v in phases.items()),
    ]
    named = sum(s for _, s, _ in rows)
    wall = end - t0
    rows += [("interpreter exit", end - t["main_end"], 1)]
    rows += [("rest (CLI, display, between timed calls)", wall - named - (end - t["main_end"]), 1)]
    rows += [("wall (process start to exit)", wall, 1)]
    top = sorted(by_package.items(), key=lambda kv: -kv[1])[:8]
    rows += [(f"  of the imports: {package}", seconds, 1) for package, seconds in top]
    new = not os.path.exists(ns.out)
    with open(ns.out, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["label", "phase", "seconds", "calls", "command"])
        for phase, seconds, calls in rows:
            writer.writerow([ns.label, phase, f"{seconds:.3f}", calls, "cnnbench compare " + " ".join(args)])
    for phase, seconds, calls in rows:
        print(f"{ns.label:>8} {phase:<55} {seconds:8.3f} s  x{calls}")
    print(f"{'':>8} {'wall / training':<55} {wall / train_s:8.3f}")


if __name__ == "__main__":
    main()
