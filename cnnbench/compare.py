"""Train several architectures under identical settings and write one honest table.

Variant grammar: ``MODEL[:k=v[,v2...][:k2=v...]]``. A comma list expands to one variant per value and
several keys expand to their product: ``cnn_dropout:dropout=0,0.3,0.5,0.7`` is four variants.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.device import is_cuda, resolve_device
from cnnbench.errors import CnnbenchError, InvalidArgumentError, OutOfMemory, ResultsError
from cnnbench.launchers import LAUNCHERS, SchedulerOptions
from cnnbench.models import get_model_info
from cnnbench.results import (
    atomic_path,
    ensure_dir,
    format_number,
    missing,
    plain,
    read_frame,
    read_json,
    to_json,
    write_frame_atomic,
    write_text_atomic,
)
from cnnbench.runs import RunStore, plain_name, validate_runs_table
from cnnbench.stats import welch_interval
from cnnbench.train import Callbacks, TrainConfig, data_options, final_status, planned_conditions

# Statuses of finished runs whose numbers can stand in for a new run with the same conditions.
REUSABLE = ("ok", "not learning", "diverged")
# Statuses of runs that ran to an answer (a compare where no run did is a failed command).
FINISHED = REUSABLE
# A run handed to a scheduler that has not ended yet (--no-wait, or compare --from before the jobs end).
PENDING = "pending"
# A run's own numbers, under the names runs.csv gives them, that the tidy table carries over.
RUN_NUMBERS = (
    "params", "forward_MACs_per_sample", "train_FLOPs_per_sample", "epochs_done", "median_epoch_s", "iqr_epoch_s",
    "total_train_s", "best_test_acc", "final_test_acc", "final_train_acc", "warmup_s", "peak_gpu_mem_MiB",
)  # fmt: skip
# Names that tidy tables written by cnnbench 0.1 used for those numbers.
LEGACY_NAMES = {
    "median_epoch_time_s": "median_epoch_s", "iqr_epoch_time_s": "iqr_epoch_s", "total_train_time_s": "total_train_s",
    "best_test_acc_pct": "best_test_acc", "final_test_acc_pct": "final_test_acc",
    "final_train_acc_pct": "final_train_acc",
}  # fmt: skip
# The columns of the tidy table that --from needs, and those of them that hold numbers.
TIDY_COLUMNS = ("variant", "model", "options", "seed", "status", "run_id", "epochs_done")
TIDY_NUMBERS = (
    "seed", *RUN_NUMBERS, "epochs_to_95pct_of_best", "train_test_gap_pct_points",
)  # fmt: skip
SHARED_CONDITIONS = (
    "dataset", "data_source", "input_size", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "scheduler", "step_size", "gamma", "label_smoothing", "precision", "channels_last", "compile", "cuda_graphs",
    "deterministic", "jobs_per_gpu", "cuda_mps",
    "augment", "device", "gpu_name", "torch_version", "cuda_version", "cudnn_version", "cnnbench_version",
)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    model: str
    options: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return self.model + "".join(f":{k}={v}" for k, v in self.options)


def parse_variants(specs: list[str]) -> list[Variant]:
    """Expand ``MODEL[:k=v,...]`` specs; malformed text or an unknown model is an error."""
    variants: list[Variant] = []
    from cnnbench.models._sources import is_external, split_spec

    for spec in specs:
        name, rest = split_spec(spec) if is_external(spec) else spec.partition(":")[::2]
        if not name.strip():
            raise InvalidArgumentError(f"expected MODEL[:key=value,...], got {spec!r}")
        model = get_model_info(name).name
        keys: list[str] = []
        values: dict[str, list[str]] = {}
        for item in [t.strip() for t in rest.replace(":", ",").split(",")] if rest else []:
            if "=" in item:
                key, _, value = item.partition("=")
                key = key.strip().lower()
                if not key or key in values:
                    raise InvalidArgumentError(
                        f"expected each key once in {spec!r}, got {key or 'an empty key'!r}"
                    )
                keys.append(key)
                values[key] = []
                item = value.strip()
            elif not keys:
                raise InvalidArgumentError(f"expected key=value after {name}:, got {item!r} in {spec!r}")
            if not item:
                raise InvalidArgumentError(f"expected a value for {keys[-1]} in {spec!r}, got an empty one")
            values[keys[-1]].append(item)
        for combo in itertools.product(*(values[k] for k in keys)):
            variant = Variant(model, tuple(zip(keys, combo, strict=True)))
            if variant not in variants:
                variants.append(variant)
    if not variants:
        raise InvalidArgumentError("expected at least one MODEL to compare, got none")
    return variants


@dataclass
class CompareConfig:
    variants: list[str]
    base: TrainConfig  # the recipe every variant shares; its model and options are each variant's
    seeds: int = 1
    name: str | None = None
    rerun: bool = False
    notes: list[str] = field(default_factory=list)  # the user's own, e.g. which copy of the data
    force: bool = False  # replace an existing comparison of the same --name
    repair: bool = False  # move a damaged runs.csv aside, keeping its intact rows
    seed_list: list[int] | None = None  # these seeds instead of base.seed .. base.seed + seeds - 1
    gpus: str | None = (
        None  # --gpus all|N|0,2,3: one worker process per GPU (None: one run after another here)
    )
    jobs_per_gpu: int = 1
    mps: bool = True  # several runs on a GPU share it through CUDA MPS where it exists (else time-sliced)
    baseline: str | None = None  # the variant differences are measured from (default: the first)
    launcher: str = "inline"  # inline (here, or --gpus workers) | local | slurm (through submitit)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    wait: bool = True  # wait for the scheduler's jobs and render; False: submit and return
    collect: bool = False  # train nothing: a saved plan's rows from the store (compare --from)
    scheduled_runs: dict[str, str] = field(default_factory=dict)  # label -> run id a scheduler's job writes

    @property
    def seed_values(self) -> list[int]:
        return list(self.seed_list) if self.seed_list else [self.base.seed + i for i in range(self.seeds)]

    def validate(self) -> None:
        if self.seeds < 1:
            raise InvalidArgumentError(f"expected --seeds >= 1, got {self.seeds}")
        if self.seed_list is not None:
            if (
                not self.seed_list
                or len(set(self.seed_list)) != len(self.seed_list)
                or min(self.seed_list) < 0
            ):
                raise InvalidArgumentError(
                    f"expected --seed-list of distinct seeds >= 0, got {self.seed_list}"
                )
        if self.name is not None:
            plain_name(self.name, "--name")
        if self.launcher not in LAUNCHERS:
            raise InvalidArgumentError(f"expected --launcher in {'|'.join(LAUNCHERS)}, got {self.launcher!r}")
        if self.launcher != "inline":
            if self.gpus is not None:
                raise InvalidArgumentError(
                    f"expected --gpus with --launcher inline, got --launcher {self.launcher} "
                    "(a scheduler's job asks for --gpus-per-job instead)"
                )
            self.scheduler.validate()
        elif not self.wait:
            raise InvalidArgumentError(
                "expected --no-wait with --launcher local or slurm, got --launcher inline"
            )


@dataclass
class CompareResult:
    name: str
    folder: Path
    tidy: Any  # DataFrame, one row per variant and seed
    epochs: Any  # DataFrame, one row per variant, seed and epoch
    aggregated: Any  # DataFrame, one row per variant
    conditions: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _convergence_epoch(accs: list[float]) -> float:
    """Epochs to reach 95% of the best test accuracy."""
    if not accs:
        return math.nan
    target = 0.95 * max(accs)
    return float(next(i for i, a in enumerate(accs, start=1) if a >= target))


def _tidy_row(variant: Variant, seed: int, summary: dict[str, Any] | None, epochs: list[dict[str, Any]],
              status: str, reused: bool) -> dict[str, Any]:  # fmt: skip
    """The run's summary numbers as runs.csv names them, and what only a comparison derives from its
    epochs (epochs to 95% of the best accuracy, the final train-test gap)."""
    s = summary or {}
    last = epochs[-1] if epochs else {}
    return {
        "variant": variant.label,
        "model": variant.model,
        "options": ";".join(f"{k}={v}" for k, v in variant.options),
        "seed": seed,
        "status": status,
        "reused": reused,
        "run_id": s.get("run_id", ""),
        **{k: s.get(k, 0 if k == "epochs_done" else math.nan) for k in RUN_NUMBERS},
        "epochs_to_95pct_of_best": _convergence_epoch([e["test_acc"] for e in epochs]),
        "train_test_gap_pct_points": last.get("train_acc", math.nan) - last.get("test_acc", math.nan),
    }


def _find_reusable(out: Path, conditions_hash: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The newest finished run with these conditions: its runs.csv row, with its conditions read back
    from its own config.json (typed, no NaN for an empty cell), and its epoch rows."""
    runs_csv = out / "runs.csv"
    if not runs_csv.exists():
        return None
    runs = read_frame(runs_csv)
    if "conditions_hash" not in runs.columns:
        return None
    match = runs[(runs.conditions_hash.astype(str) == conditions_hash) & runs.status.isin(REUSABLE)]
    for _, row in match.iloc[::-1].iterrows():
        record = _run_record(out, row)
        if record is not None:
            return record
    return None


def _find_run(out: Path, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The run ``run_id`` (a scheduler's job names its run) once it has finished, as _find_reusable."""
    runs_csv = out / "runs.csv"
    if not runs_csv.exists():
        return None
    runs = read_frame(runs_csv)
    mine = runs[(runs.run_id.astype(str) == run_id) & runs.status.isin(REUSABLE)]
    return _run_record(out, mine.iloc[-1]) if len(mine) else None


def _run_record(out: Path, row: Any) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    store = RunStore(out, str(row.run_id))
    if not store.epochs_path.exists() or not store.config_path.exists():
        return None
    epochs = read_frame(store.epochs_path).to_dict("records")
    if len(epochs) != int(row.epochs_done):
        return None
    summary = {k: (None if missing(v) else plain(v)) for k, v in row.to_dict().items()}
    saved = read_json(store.config_path)
    summary.update({k: v for k, v in saved.items() if k in SHARED_CONDITIONS})
    return summary, epochs


def run_compare(config: CompareConfig, callbacks: Callable[[str], Callbacks] | None = None,
                log: Callable[[str], None] = lambda _m: None, view: Any = None) -> CompareResult:  # fmt: skip
    """Train (or reuse) every variant x seed; one failing variant leaves the others' rows intact.
    ``view`` (a :class:`cnnbench.sweep.SweepView`) shows the runs of workers and scheduled jobs."""
    import pandas as pd
    import torch

    from cnnbench.data import load_split
    from cnnbench.train import Trainer

    config.validate()
    variants = parse_variants(config.variants)
    # The recipe every variant shares, checked once (its model is each variant's own).
    dataclasses.replace(config.base, model=variants[0].model).validate()
    # Problems every variant would share (no GPU, no data, a damaged runs.csv, a name taken) stop the
    # command before anything trains.
    if config.launcher != "slurm" and not config.collect:
        resolve_device(config.base.device)  # a Slurm job finds its device on its node
    out = ensure_dir(Path(config.base.out))
    repaired = validate_runs_table(out, config.repair)
    if repaired:
        log(f"repaired {repaired}")
    for split in ("train", "test") if not config.collect else ():
        progress = callbacks("").on_data if callbacks else None  # decoding your own images is shown
        load_split(
            config.base.dataset, split, config.base.data_dir, **data_options(config.base), progress=progress
        )
    baseline = resolve_baseline(config.baseline, variants)
    name = config.name or default_name(config, variants)
    folder = out / "compare" / name
    if config.name is not None and (folder / "tidy.csv").exists() and not (config.force or config.collect):
        raise InvalidArgumentError(
            f"expected a new --name, got {name!r}, which holds a comparison already ({folder}); "
            "--force replaces it, another --name writes beside it"
        )
    ensure_dir(folder)
    swept: dict[str, Any] = {}  # the runs handed to workers or a scheduler, by label
    if config.launcher != "inline" and not config.collect:
        swept = _schedule(config, variants, out, folder, log, view)
    elif config.gpus and not config.collect:
        swept = _sweep(config, variants, out, log, view)
    by_scheduler = config.collect or config.launcher != "inline"
    tidy_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    notes: list[str] = list(config.notes)
    conditions: dict[str, Any] = {}
    try:
        for variant in variants:
            for seed in config.seed_values:
                run_config = dataclasses.replace(
                    config.base, model=variant.model, options=dict(variant.options), seed=seed, run_name=None,
                    device=_planning_device(config),
                )  # fmt: skip
                summary, epochs, status, reused = None, [], "error", False
                try:
                    planned = planned_conditions(run_config)
                    label = f"{variant.label} seed {seed}"
                    job = swept.get(label)
                    if label in config.scheduled_runs:  # a scheduler's job names its run
                        found = _find_run(out, config.scheduled_runs[label])
                    elif config.rerun and job is None and not by_scheduler:
                        found = None
                    else:
                        found = _find_reusable(out, planned["conditions_hash"])
                    if (job is not None or by_scheduler) and found is None:  # no finished run (yet)
                        status = _worker_status(
                            out, planned["conditions_hash"], job, config.scheduled_runs.get(label)
                        )
                    elif job is not None or by_scheduler:  # trained by a worker or a scheduler's job
                        summary, epochs = found
                        status = str(summary["status"])
                    elif found is not None:
                        summary, epochs = found
                        status, reused = str(summary["status"]), True
                        made = "deterministic" if summary.get("deterministic") else "not deterministic"
                        notes.append(
                            f"{variant.label} seed {seed}: reused run {summary['run_id']} (identical conditions; {made})"
                        )
                    else:
                        result = Trainer(run_config, callbacks(variant.label) if callbacks else None).run()
                        summary, status = result.summary, result.status
                        epochs = [dataclasses.asdict(e) for e in result.epochs]
                except (torch.cuda.OutOfMemoryError, OutOfMemory):
                    status = "out of memory"
                except ResultsError:
                    raise  # the results store itself is in trouble, for every variant alike
                except Exception as exc:  # one variant's failure must not lose the others' rows
                    status = final_status(exc)
                if status not in FINISHED:
                    log(f"{variant.label} seed {seed}: {status}")
                if summary is not None and not conditions:
                    conditions = {k: summary.get(k) for k in SHARED_CONDITIONS}
                tidy_rows.append(_tidy_row(variant, seed, summary, epochs, status, reused))
                epoch_rows += [{"variant": variant.label, "seed": seed, **e} for e in epochs]
    finally:
        # Written even when interrupted: whatever was measured stays measured.
        tidy = pd.DataFrame(tidy_rows)
        epochs_df = pd.DataFrame(epoch_rows)
        if not tidy.empty:
            _write_meta(folder, conditions, notes, baseline)
            write_frame_atomic(tidy, folder / "tidy.csv")
            write_frame_atomic(epochs_df, folder / "epochs.csv")

    result = CompareResult(name, folder, tidy, epochs_df, aggregate(tidy, baseline), conditions, notes)
    write_outputs(result)
    return result


def _sweep(
    config: CompareConfig, variants: list[Variant], out: Path, log: Callable[[str], None], view: Any = None
) -> dict[str, Any]:
    """Train every run not already in the store on the GPUs of --gpus, one worker process each (under
    CUDA MPS when several share a GPU); the jobs by label ("VARIANT seed N")."""
    import torch

    from cnnbench import sweep

    gpus = sweep.parse_gpus(config.gpus or "", torch.cuda.device_count())
    jobs = _jobs(config, variants, out)
    log(f"{len(jobs)} runs on GPUs {', '.join(gpus)}, {config.jobs_per_gpu} at a time on each, longest first")
    if not jobs:
        return {}
    if config.jobs_per_gpu > 1 and not config.mps:
        log("CUDA MPS off (--no-mps): the runs on each GPU take turns (time-sliced)")
    with sweep.mps_daemon(config.jobs_per_gpu > 1 and config.mps, log) as env:

        def launch(job: sweep.Job, gpu: str) -> Any:
            return sweep.launch_process(job, gpu, view, env)

        return {
            job.label: job
            for job in sweep.Sweep(
                jobs, gpus, config.jobs_per_gpu, launch, view=view or sweep.SweepView()
            ).run()
        }


def _schedule(
    config: CompareConfig,
    variants: list[Variant],
    out: Path,
    folder: Path,
    log: Callable[[str], None],
    view: Any = None,
) -> dict[str, Any]:
    """Hand every run not already in the store to the scheduler of --launcher through submitit; wait
    for them unless --no-wait. The jobs by label."""
    from cnnbench import launchers, sweep

    jobs = _jobs(config, variants, out)
    logs = ensure_dir(folder / "jobs")
    options = config.scheduler
    # Each job names its run, so the table finds it wherever the job ran (a node's GPU is part of a
    # run's conditions, which the submitting machine cannot know).
    stamp = uuid.uuid4().hex[:6]
    for i, job in enumerate(jobs):
        run_id = f"{folder.name}-{i}-{stamp}"[-120:]
        job.argv += ["--run-name", run_id]
        config.scheduled_runs[job.label] = run_id
    save_plan(folder, config)
    if not jobs:
        return {}
    if config.launcher == "local":
        # submitit's local executor starts every job at once: at most --max-parallel at a time here.
        ex = launchers.executor("local", logs, options)
        slots = launchers.local_slots(options)

        def launch(job: sweep.Job, _slot: str) -> launchers.SubmititHandle:
            return launchers.SubmititHandle(
                ex.submit(launchers.run_cnnbench, launchers.job_argv(job.argv, options))
            )

        log(f"{len(jobs)} runs through submitit's local executor, {slots} at a time; logs in {logs}")
        if not config.wait:
            log("--no-wait: local jobs end with this command's process group; they run to the end here")
        ran = sweep.Sweep(jobs, ["local"], slots, launch, view=view or sweep.SweepView()).run()
        return {job.label: job for job in ran}
    submitted = launchers.submit(config.launcher, logs, options, [job.argv for job in jobs])
    ids = [j.job_id for j in submitted]
    log(f"{len(jobs)} runs submitted to Slurm as job array {ids[0].split('_')[0]}; logs in {logs}")
    write_text_atomic(folder / "jobs.json", to_json({"launcher": config.launcher, "job_ids": ids,
                                                      "labels": [job.label for job in jobs]}))  # fmt: skip
    handles = [launchers.SubmititHandle(j) for j in submitted]
    if not config.wait:
        log(f"not waiting: render the table later with  cnnbench compare --from {folder}")
        return {job.label: job for job in jobs}
    import time

    done = 0
    try:
        while done < len(jobs):
            for job, handle in zip(jobs, handles, strict=True):
                if job.returncode is None:
                    job.returncode = handle.poll()
            now = sum(job.returncode is not None for job in jobs)
            if now != done:
                done = now
                log(f"{done}/{len(jobs)} runs ended")
            if done < len(jobs):
                time.sleep(10)
    except KeyboardInterrupt:
        # Ctrl-C stops the waiting, not the cluster's jobs: the table shows what has ended so far.
        log(
            f"stopped waiting; the jobs go on in Slurm: render the table later with  cnnbench compare --from {folder}"
        )
    return {job.label: job for job in jobs}


def _planning_device(config: CompareConfig) -> str:
    """The device the conditions of a comparison's runs are worked out for here: its own, unless Slurm
    trains them (on nodes whose GPUs this machine may not have: their runs are found by run id)."""
    return "auto" if config.launcher == "slurm" or config.collect else config.base.device


def _jobs(config: CompareConfig, variants: list[Variant], out: Path) -> list[Any]:
    """One job per run of the comparison that the store does not hold yet, with its train command and
    its cost (training FLOPs x epochs: the longest go first)."""
    from cnnbench import sweep
    from cnnbench.summary import count_flops

    device = config.base.device
    if device == "auto" and config.launcher == "local":  # local jobs run where this machine's device is
        device = "cuda" if is_cuda(resolve_device("auto")) else "cpu"
    elif device == "auto" and config.launcher == "slurm":  # a node's GPUs, if the job asks for any
        device = "cuda" if config.scheduler.gpus_per_job > 0 else "cpu"
    jobs = []
    for variant in variants:
        for seed in config.seed_values:
            run = dataclasses.replace(
                config.base, model=variant.model, options=dict(variant.options), seed=seed, device=device
            )
            try:
                planned = planned_conditions(dataclasses.replace(run, device=_planning_device(config)))
                shape = tuple(int(d) for d in planned["input_size"].split("x"))
                flops = count_flops(variant.model, dict(variant.options), shape, planned["num_classes"])[1]
            except CnnbenchError:
                continue  # a variant that cannot run gets its row from the loop that follows, not a worker
            if not config.rerun and _find_reusable(out, planned["conditions_hash"]) is not None:
                continue
            cost = flops * run.epochs
            argv = sweep.train_argv(run, dict(variant.options)) + ["--jobs-per-gpu", str(config.jobs_per_gpu)]
            jobs.append(sweep.Job(f"{variant.label} seed {seed}", argv, float(cost)))
    return jobs


def _worker_status(out: Path, conditions_hash: str, job: Any, run_id: str | None = None) -> str:
    """How a worker's or a scheduler's run stands when it left no finished run: its row's status, else
    its exit code, else pending (a job not ended, or a saved plan's run that has not started)."""
    runs = read_frame(out / "runs.csv") if (out / "runs.csv").exists() else None
    if runs is not None and "conditions_hash" in runs.columns:
        mine = (
            runs[runs.run_id.astype(str) == run_id]
            if run_id
            else runs[runs.conditions_hash.astype(str) == conditions_hash]
        )
        if len(mine):
            return str(mine.status.iloc[-1])
    if job is None or job.returncode is None:
        return PENDING
    return f"failed: worker exited with code {job.returncode}"


def save_plan(folder: Path, config: CompareConfig) -> None:
    """plan.json: the comparison's variants, seeds and recipe, from which ``--from`` collects its rows
    out of the store while (or after) a scheduler runs them."""
    base = dataclasses.asdict(config.base)
    plan = {"variants": config.variants, "seeds": config.seed_values, "baseline": config.baseline,
            "notes": config.notes, "launcher": config.launcher, "base": plain(base),
            "runs": config.scheduled_runs}  # fmt: skip
    write_text_atomic(folder / "plan.json", to_json(plan))


def collect(folder: Path, baseline: str | None = None, notes: list[str] | None = None) -> CompareResult:
    """The comparison whose plan ``folder`` holds, its rows read from the store as they stand now."""
    plan = read_json(folder / "plan.json", required=("variants", "seeds", "base"))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    base = dict(plan["base"])
    for key in ("out", "data_dir"):
        base[key] = Path(base[key]) if base.get(key) else None
    base["out"] = folder.parent.parent  # OUT/compare/NAME, wherever OUT is now
    if base.get("input_size"):
        base["input_size"] = tuple(base["input_size"])
    try:
        recipe = TrainConfig(**{k: v for k, v in base.items() if k in known})
    except TypeError as exc:
        raise ResultsError(f"expected a comparison's plan in {folder / 'plan.json'}, got {exc}") from None
    config = CompareConfig(
        variants=list(plan["variants"]), base=recipe, seed_list=[int(s) for s in plan["seeds"]], name=folder.name,
        notes=[*plan.get("notes", []), *(notes or [])], baseline=baseline or plan.get("baseline"), collect=True,
        scheduled_runs=dict(plan.get("runs") or {}),
    )  # fmt: skip
    return run_compare(config)


def resolve_baseline(spec: str | None, variants: list[Variant]) -> str | None:
    """The label of the variant named by --baseline (any spelling the grammar accepts), or None."""
    if spec is None:
        return None
    labels = [v.label for v in variants]
    try:
        label = parse_variants([spec])[0].label
    except CnnbenchError:
        label = spec
    if label not in labels:
        raise InvalidArgumentError(f"expected --baseline to be one of {', '.join(labels)}, got {spec!r}")
    return label


def default_name(config: CompareConfig, variants: list[Variant]) -> str:
    """The models, then a hash of the variants, seeds and shared conditions: two comparisons that
    differ in anything get two folders, and the same comparison run again gets its own folder back."""
    import hashlib

    shared = {k: v for k, v in planned_conditions(dataclasses.replace(config.base, model=variants[0].model)).items()
              if k not in ("model", "options", "family", "seed", "conditions_hash")}  # fmt: skip
    key = {"variants": [v.label for v in variants], "seeds": config.seed_values, **shared}
    digest = hashlib.sha1(to_json(key, indent=None).encode()).hexdigest()[:8]
    models = re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(dict.fromkeys(v.model for v in variants)))[:60]
    return f"{models}-{digest}"


def aggregate(tidy: Any, baseline: str | None = None) -> Any:
    """One row per variant: mean and std over seeds, epoch time as median and IQR over seeds' medians;
    with two or more seeds, each variant's difference in best test accuracy from ``baseline`` (the
    first variant by default) with its 95% confidence interval (Welch's t)."""
    import pandas as pd

    rows = []
    for variant, group in tidy.groupby("variant", sort=False):
        ok = group[group.epochs_done > 0]
        statuses = sorted(set(group.status))

        def mean(col: str, ok: Any = ok) -> float:
            return float(ok[col].mean()) if len(ok) else math.nan

        def std(col: str, ok: Any = ok) -> float:
            return float(ok[col].std(ddof=1)) if len(ok) > 1 else math.nan

        rows.append({
            "variant": variant,
            "seeds": len(group),
            "status": statuses[0] if len(statuses) == 1 else ", ".join(statuses),
            "params": group.params.iloc[0],
            "forward_MACs_per_sample": group.forward_MACs_per_sample.iloc[0],
            "train_FLOPs_per_sample": group.train_FLOPs_per_sample.iloc[0],
            "median_epoch_s": float(ok.median_epoch_s.median()) if len(ok) else math.nan,
            "iqr_epoch_s": mean("iqr_epoch_s"),
            "total_train_s": mean("total_train_s"),
            "best_test_acc_mean": mean("best_test_acc"),
            "best_test_acc_std": std("best_test_acc"),
            "final_test_acc_mean": mean("final_test_acc"),
            "final_test_acc_std": std("final_test_acc"),
            "epochs_to_95pct_of_best": mean("epochs_to_95pct_of_best"),
            "train_test_gap_pct_points": mean("train_test_gap_pct_points"),
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    reference = baseline or frame.variant.iloc[0]
    accs = {
        v: g[g.epochs_done > 0].best_test_acc.dropna().tolist()
        for v, g in tidy.groupby("variant", sort=False)
    }
    deltas = [welch_interval(accs.get(v, []), accs.get(reference, [])) for v in frame.variant]
    frame["baseline"] = reference
    frame["delta_best_acc"] = [d[0] for d in deltas]
    frame["delta_ci95_low"] = [d[1] for d in deltas]
    frame["delta_ci95_high"] = [d[2] for d in deltas]
    frame["delta_significant"] = [bool(lo > 0 or hi < 0) for _, lo, hi in deltas]
    return frame


def load_compare(source: Path, baseline: str | None = None) -> CompareResult:
    """Re-render a comparison from its folder (or its tidy.csv) without training; every file it reads
    is checked before anything is written."""
    import pandas as pd

    source = Path(source)
    folder = source.parent if source.suffix == ".csv" else source
    tidy_path = source if source.suffix == ".csv" else folder / "tidy.csv"
    if not tidy_path.is_file():
        raise InvalidArgumentError(f"expected a compare folder or its tidy.csv, got {str(source)!r}")
    tidy = read_frame(tidy_path).rename(columns=LEGACY_NAMES)
    absent = [c for c in TIDY_COLUMNS if c not in tidy.columns]
    if tidy.empty or absent:
        raise ResultsError(
            f"expected a tidy table with {', '.join(absent or TIDY_COLUMNS)} in {tidy_path}, got none"
        )
    for column in TIDY_NUMBERS:
        if column in tidy.columns and not pd.api.types.is_numeric_dtype(tidy[column]):
            bad = tidy[column][pd.to_numeric(tidy[column], errors="coerce").isna() & tidy[column].notna()]
            raise ResultsError(
                f"expected numbers in column {column} of {tidy_path}, got {str(bad.iloc[0])!r} on line {bad.index[0] + 2}"
            )
    tidy["options"] = tidy["options"].fillna("").astype(str)
    tidy["run_id"] = tidy["run_id"].fillna("").astype(str)
    epochs_path = folder / "epochs.csv"
    epochs = read_frame(epochs_path) if epochs_path.is_file() else pd.DataFrame()
    meta_path = folder / "conditions.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    if baseline is not None:
        labels = list(dict.fromkeys(tidy.variant))
        if baseline not in labels:
            raise InvalidArgumentError(
                f"expected --baseline to be one of {', '.join(labels)}, got {baseline!r}"
            )
    else:
        baseline = meta.get("baseline")
    return CompareResult(
        folder.name,
        folder,
        tidy,
        epochs,
        aggregate(tidy, baseline),
        meta.get("conditions", {}),
        meta.get("notes", []),
    )


def add_notes(result: CompareResult, notes: list[str]) -> None:
    """Append notes not already there and save them with the conditions (for ``--from --note``)."""
    new = [n for n in dict.fromkeys(notes) if n not in result.notes]
    if new:
        result.notes.extend(new)
    baseline = result.aggregated.baseline.iloc[0] if "baseline" in result.aggregated else None
    _write_meta(result.folder, result.conditions, result.notes, baseline)


def _write_meta(
    folder: Path, conditions: dict[str, Any], notes: list[str], baseline: str | None = None
) -> None:
    """conditions.json: what ``--from`` reads back besides the CSVs."""
    meta = {"conditions": conditions, "notes": notes, "baseline": baseline}
    write_text_atomic(folder / "conditions.json", to_json(meta))


# --- files ----------------------------------------------------------------------------------------


def _fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if missing(mean):
        return "-"
    return f"{mean:.{digits}f}" if missing(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_table(aggregated: Any) -> Any:
    """The aggregated table as text cells with units in the column names (for Markdown and LaTeX)."""
    import pandas as pd

    rows = []
    for _, r in aggregated.iterrows():
        rows.append({
            "variant": r.variant,
            "params": format_number(r.params, ",.0f"),
            "fwd MACs/sample (M)": format_number(r.forward_MACs_per_sample / 1e6, ",.1f"),
            "train FLOPs/sample (M)": format_number(r.train_FLOPs_per_sample / 1e6, ",.1f"),
            "epoch time (s, median)": format_number(r.median_epoch_s, ".3f"),
            "epoch time IQR (s)": format_number(r.iqr_epoch_s, ".3f"),
            "train time (s)": format_number(r.total_train_s, ".1f"),
            "best test acc (%)": _fmt_mean_std(r.best_test_acc_mean, r.best_test_acc_std),
            "final test acc (%)": _fmt_mean_std(r.final_test_acc_mean, r.final_test_acc_std),
            "epochs to 95% of best": format_number(r.epochs_to_95pct_of_best, ".1f"),
            "train-test gap (pp)": format_number(r.train_test_gap_pct_points, ".2f"),
            "seeds": str(r.seeds),
            "status": r.status,
        })  # fmt: skip
        if aggregated.seeds.max() >= 2:
            rows[-1][DELTA] = _fmt_delta(r)
    return pd.DataFrame(rows)


DELTA = "Δ best acc (pp, 95% CI)"


def _fmt_delta(r: Any) -> str:
    """'+3.55 [+1.19, +5.91] *': the difference from the baseline, its interval, a mark if it excludes 0."""
    if r.variant == r.baseline:
        return "reference"
    if missing(r.delta_ci95_low):
        return "-"
    mark = " *" if r.delta_significant else ""
    return f"{r.delta_best_acc:+.2f} [{r.delta_ci95_low:+.2f}, {r.delta_ci95_high:+.2f}]{mark}"


TERMINAL_HEADERS = {
    "fwd MACs/sample (M)": "MACs (M)",
    "train FLOPs/sample (M)": "train FLOPs (M)",
    "epoch time (s, median)": "epoch s",
    "epoch time IQR (s)": "IQR s",
    "train time (s)": "total s",
    "best test acc (%)": "best acc %",
    "final test acc (%)": "final acc %",
    "epochs to 95% of best": "conv. ep",
    "train-test gap (pp)": "gap pp",
    "seeds": "n",
    DELTA: "Δ acc pp [95% CI]",
}
# Which terminal columns stay when the table is too wide for the terminal, most important first.
TERMINAL_PRIORITY = ["best acc %", "Δ acc pp [95% CI]", "epoch s", "status", "params", "MACs (M)", "final acc %", "n", "gap pp",
                     "conv. ep", "train FLOPs (M)", "IQR s", "total s"]  # fmt: skip


def conditions_text(conditions: dict[str, Any]) -> str:
    c = conditions
    if not c:
        return "conditions: none recorded (no variant ran)"
    device = c.get("gpu_name") or c.get("device")
    return (
        f"{c.get('dataset')} ({c.get('data_source')}), input {c.get('input_size')}, {c.get('epochs')} epochs, "
        f"batch {c.get('batch_size')}, {c.get('optimizer')} lr {c.get('lr')} wd {c.get('weight_decay')}, "
        f"scheduler {c.get('scheduler')} (step {c.get('step_size')}, gamma {c.get('gamma')}), "
        f"label smoothing {c.get('label_smoothing')}, augment {c.get('augment')}, precision {c.get('precision')}, "
        f"channels_last {c.get('channels_last')}, compile {c.get('compile')}, CUDA graphs {c.get('cuda_graphs')}, "
        f"deterministic {bool(c.get('deterministic'))}, runs at once per GPU {c.get('jobs_per_gpu') or 1}"
        f"{' (CUDA MPS)' if c.get('cuda_mps') else ''}; "
        f"device {device}; torch {c.get('torch_version')}, CUDA {c.get('cuda_version') or '-'}, "
        f"cuDNN {c.get('cudnn_version') or '-'}, cnnbench {c.get('cnnbench_version')}"
    )


def footnotes(result: CompareResult) -> list[str]:
    """What a reader must know to read the table: how many seeds stand behind each number."""
    seeds = result.aggregated.seeds.max() if len(result.aggregated) else 0
    if seeds >= 2:
        return [
            f"{DELTA}: mean best test accuracy minus that of {result.aggregated.baseline.iloc[0]}, over "
            f"{seeds} seeds, with a 95% confidence interval from Welch's t (unequal variances); * where the "
            "interval excludes zero."
        ]
    if seeds == 1:
        return [
            "One seed per variant: a difference smaller than the spread between seeds of such runs "
            "(1-2 points of accuracy for the chapter's models on CIFAR-10) is not an answer; --seeds 3 or more measures it."
        ]
    return []


def escape_markdown(text: Any) -> str:
    """A Markdown table cell: pipes, backslashes and emphasis marks escaped, one line."""
    out = str(text).replace("\\", "\\\\")
    for ch in "|_*`#":
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.splitlines())


_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&", "_": r"\_",
          "$": r"\$", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "±": r"$\pm$", "Δ": r"$\Delta$"}  # fmt: skip


def escape_latex(text: Any) -> str:
    """A LaTeX cell: every special character escaped, one line."""
    return "".join(_LATEX.get(ch, ch) for ch in " ".join(str(text).splitlines()))


def markdown_table(frame: Any) -> str:
    columns = [escape_markdown(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += [
        "| " + " | ".join(escape_markdown(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def latex_table(frame: Any) -> str:
    """A booktabs tabular: text columns left, numbers right."""
    align = "l" + "r" * (len(frame.columns) - 2) + "l"
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(escape_latex(c) for c in frame.columns) + r" \\",
             r"\midrule"]  # fmt: skip
    lines += [" & ".join(escape_latex(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_outputs(result: CompareResult) -> None:
    """Markdown, LaTeX (booktabs), aggregated CSV and plots (PNG and SVG) in the compare folder, each
    written to a temporary file and renamed, so a failure leaves the earlier outputs whole."""
    folder = result.folder
    write_frame_atomic(result.aggregated, folder / "aggregated.csv")
    table = display_table(result.aggregated)
    notes = "".join(f"- {escape_markdown(n)}\n" for n in [*footnotes(result), *result.notes])
    write_text_atomic(
        folder / "table.md",
        f"# {escape_markdown(result.name)}\n\nConditions: {escape_markdown(conditions_text(result.conditions))}\n\n"
        f"{markdown_table(table)}\n" + (f"\nNotes:\n{notes}" if notes else ""),
    )
    tex_notes = "".join(f"% {escape_latex(n)}\n" for n in [*footnotes(result), *result.notes])
    write_text_atomic(folder / "table.tex", tex_notes + latex_table(table))
    _plots(result)


def swept_option(tidy: Any) -> str | None:
    """The one option whose values tell the variants of one model apart (a sweep), if that is what
    the comparison is; None for a comparison of several models or of several options at once."""
    if tidy.model.nunique() != 1:
        return None
    options = [
        dict(kv.split("=", 1) for kv in str(o).split(";") if "=" in kv) for o in tidy.options.fillna("")
    ]
    keys = {k for o in options for k in o}
    varying = [k for k in sorted(keys) if len({o.get(k) for o in options}) > 1]
    return varying[0] if len(varying) == 1 else None


def _plots(result: CompareResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder, agg, epochs = result.folder, result.aggregated, result.epochs
    c = result.conditions
    device = c.get("gpu_name") or c.get("device") or "device not recorded"
    subtitle = ", ".join(str(v) for v in (c.get("dataset"), c.get("precision"), device) if v)

    def save(fig: Any, stem: str) -> None:
        fig.tight_layout()
        for ext in ("png", "svg"):
            with atomic_path(folder / f"{stem}.{ext}") as tmp:
                fig.savefig(tmp, dpi=150, format=ext)
        plt.close(fig)

    if not epochs.empty:  # a comparison rendered from its tidy rows alone has no curves to draw
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for variant, group in epochs.groupby("variant", sort=False):
            stats = group.groupby("epoch").test_acc.agg(["mean", "min", "max"])
            line = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=variant)[0]
            if group.seed.nunique() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        last = int(epochs.epoch.max())
        ax.set_xlim(0.5, last + 0.5)  # one epoch is a point at 1, not a range around it
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"Test accuracy per epoch ({subtitle})")
        # Epochs are whole numbers: each one marked while they fit, whole-number ticks beyond.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(last, 10), min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "accuracy_per_epoch")

    valid = agg.dropna(subset=["best_test_acc_mean"])
    swept = swept_option(result.tidy)
    if swept is not None and valid.params.nunique() <= 1:
        _sweep_plot(valid, result.tidy, swept, subtitle, save)
    else:
        for column, label, stem in (
            ("params", "parameters", "accuracy_vs_params"),
            ("forward_MACs_per_sample", "forward MACs per sample", "accuracy_vs_macs"),
        ):
            fig, ax = plt.subplots(figsize=(6, 4.5))
            ax.errorbar(
                valid[column],
                valid.best_test_acc_mean,
                yerr=valid.best_test_acc_std.fillna(0),
                fmt="o",
            )
            for _, r in valid.iterrows():
                ax.annotate(
                    r.variant, (r[column], r.best_test_acc_mean), fontsize=7, xytext=(4, 4),
                    textcoords="offset points",
                )  # fmt: skip
            ax.set_xscale("log")
            ax.margins(x=0.2, y=0.1)
            ax.set(xlabel=f"{label} (log scale)", ylabel="best test accuracy (%)",
                   title=f"Accuracy vs {label} ({subtitle})")  # fmt: skip
            ax.grid(alpha=0.3)
            save(fig, stem)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = agg.dropna(subset=["median_epoch_s"])
    ax.bar(timed.variant, timed.median_epoch_s, yerr=timed.iqr_epoch_s.fillna(0) / 2, capsize=4)
    ax.set(ylabel="epoch time (s), median; bars: IQR", title=f"Training time per epoch ({subtitle})")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    save(fig, "epoch_time")


def _sweep_plot(valid: Any, tidy: Any, key: str, subtitle: str, save: Callable[[Any, str], None]) -> None:
    """Accuracy against the swept option's value (numbers on a numeric axis, others in order)."""
    import matplotlib.pyplot as plt

    value_of = {
        row.variant: dict(kv.split("=", 1) for kv in str(row.options).split(";") if "=" in kv).get(key, "")
        for row in tidy.itertuples()
    }
    values = [value_of.get(v, "") for v in valid.variant]
    try:
        x: list[Any] = [float(v) for v in values]
    except ValueError:
        x = list(range(len(values)))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(x, valid.best_test_acc_mean, yerr=valid.best_test_acc_std.fillna(0), fmt="o-", capsize=4)
    ax.set_xticks(x, values)
    ax.margins(x=0.1, y=0.1)
    ax.set(xlabel=key, ylabel="best test accuracy (%); bars: std over seeds",
           title=f"Accuracy vs {key} ({subtitle})")  # fmt: skip
    ax.grid(alpha=0.3)
    save(fig, f"accuracy_vs_{key}")
