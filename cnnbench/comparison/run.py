"""Train several architectures under identical settings and write one honest table.

:func:`run_compare` reads top-down: checks that every variant would share (device, data, the results
table, the name) -> the plan (a reused run or a new job per variant x seed, saved as plan.json) -> the
launcher trains the jobs -> the rows, found in the store by run id -> aggregation -> the outputs
(:mod:`cnnbench.report`). :func:`collect` does the last three for a saved plan (``compare --from``);
reading a saved folder back is :mod:`cnnbench.comparison.saved`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnbench.comparison.aggregate import LEGACY_NAMES, aggregate, tidy_row
from cnnbench.comparison.latency import measure_variants, read_latency
from cnnbench.comparison.plan import CompareConfig, Plan, PlannedRun, default_name, recipe_of
from cnnbench.comparison.saved import CompareResult, add_notes, load_compare, write_meta
from cnnbench.comparison.variants import Variant, parse_variants, resolve_baseline
from cnnbench.errors import CnnbenchError, InvalidArgumentError
from cnnbench.launchers.base import Job, JobView, Launcher, Outcome
from cnnbench.launchers.slurm_states import slurm_jobs_alive
from cnnbench.recipe import SHARED_CONDITIONS
from cnnbench.store.runs import RunRecords, validate_runs_table
from cnnbench.store.tables import (
    Table,
    ensure_dir,
    frame_of,
    hold,
    read_frame,
    read_json,
    write_frame_atomic,
    write_text_atomic,
)
from cnnbench.training.conditions import data_options, planned_conditions
from cnnbench.training.status import REUSABLE
from cnnbench.training.trainer import Callbacks, new_run_id

PENDING = "pending"  # a run handed to a scheduler that has not ended yet
NOT_STARTED = "not started"  # a run the comparison was stopped before it began


def is_pending(status: str | None) -> bool:
    """A run's status while its job waits: pending, or pending (and why)."""
    return status is not None and (status == PENDING or status.startswith(f"{PENDING} ("))


def make_launcher(config: CompareConfig, folder: Path, callbacks: Callable[[Job], Callbacks] | None,
                  log: Callable[[str], None]) -> Launcher:  # fmt: skip
    """The launcher of ``--launcher`` (and ``--gpus``): jobs files and logs go to FOLDER/jobs/."""
    from cnnbench.launchers.inline import InlineLauncher
    from cnnbench.launchers.scheduler import SubmititLauncher
    from cnnbench.launchers.workers import WorkerLauncher

    kind = config.launcher_kind
    if issubclass(kind, SubmititLauncher):
        return kind(folder / "jobs", config.scheduler, config.wait, log)
    if issubclass(kind, WorkerLauncher):
        return kind(config.gpus, config.base.jobs_per_gpu, config.mps, folder / "jobs", log)
    return InlineLauncher(callbacks)


def run_compare(config: CompareConfig, callbacks: Callable[[Job], Callbacks] | None = None,
                log: Callable[[str], None] = lambda _m: None, view: JobView | None = None) -> CompareResult:  # fmt: skip
    """Train (or reuse) every variant x seed; one failing variant leaves the others' rows intact. A Ctrl-C
    keeps what was measured: the rows so far are written before it propagates."""
    from cnnbench.data.readers import load_split
    from cnnbench.device import is_cuda, resolve_device

    config.validate()
    variants = parse_variants(config.variants)
    base = config.base
    base.replace(model=variants[0].model).validate()  # the shared recipe, checked once
    baseline = resolve_baseline(config.baseline, variants)
    # Problems every variant would share stop the command before anything trains or is written.
    here = config.launcher_kind.on_this_machine
    planning_device = base.device if here else "auto"  # a Slurm job finds its device on its node
    device = resolve_device(base.device) if here else planning_device
    if config.price_per_gpu_hour is not None and here and not is_cuda(device):
        raise InvalidArgumentError(
            f"expected --price-per-gpu-hour with runs on a GPU, got device {device} (a run on the CPU "
            "uses no GPU-hours to put a price on)"
        )
    out = Path(base.out)
    first = planned_conditions(base.replace(model=variants[0].model, device=planning_device))
    name = config.name or default_name(config, variants, first)
    folder = out / "compare" / name
    if config.name is not None and (folder / "tidy.csv").exists() and not config.force:
        raise InvalidArgumentError(
            f"expected a new --name, got {name!r}, which holds a comparison already ({folder}); "
            "--force replaces it, another --name writes beside it"
        )
    launcher = make_launcher(config, folder, callbacks, log)
    launcher.check()
    ensure_dir(out)
    repaired = validate_runs_table(out, config.repair)
    if repaired:
        log(f"repaired {repaired}")
    if here:  # the data is this machine's: read once here, before any job starts
        for split in ("train", "test"):
            progress = callbacks(None).on_data if callbacks else None  # decoding your own images is shown
            load_split(base.dataset, split, base.data_dir, **data_options(base), progress=progress)

    # One process at a time runs a comparison: a second of the same name would write its table over the
    # first's, or the first's over it. (--from renders beside a running one: it trains nothing.)
    lock = hold(ensure_dir(folder) / ".lock", f"expected comparison {name} to be idle, got it running in "
                "another process now; wait for it to end, or give another --name")  # fmt: skip
    try:
        _refuse_live_slurm_jobs(folder, name)
        plan = Plan(config, name, folder, [], baseline)
        return _run_plan(
            plan, _plan_runs(plan, variants, launcher, planning_device, log), launcher, device, view, log
        )
    finally:
        lock.release()


def _refuse_live_slurm_jobs(folder: Path, name: str) -> None:
    """A comparison submitted to Slurm without waiting is still the cluster's until its jobs end: run again,
    it would submit them all a second time (a queued or running run has no row to reuse yet)."""
    alive = slurm_jobs_alive(folder / "jobs")
    if alive:
        arrays = " ".join(sorted({j.split("_")[0] for j in alive}))
        raise InvalidArgumentError(
            f"expected comparison {name} to be idle, got {len(alive)} of its jobs still queued or running in "
            f"Slurm; cnnbench compare --from {folder} shows their table, scancel {arrays} stops them"
        )


def _run_plan(plan: Plan, jobs: list[Job], launcher: Launcher, device: str, view: JobView | None,
              log: Callable[[str], None] = lambda _m: None) -> CompareResult:  # fmt: skip
    """The planned jobs run by ``launcher``, each variant's latency timed after them (``--latency``), then
    the comparison's files; a Ctrl-C keeps what was measured: the rows so far are written before it
    propagates (a Ctrl-C while latency is timed writes the tables with the latencies timed so far)."""
    plan.save()
    outcomes: dict[str, Outcome] = {}
    finished = False
    workers = _plot_workers(plan.config, device, jobs)
    try:
        launcher.run(jobs, view or JobView(), outcomes)
        finished = True
        if plan.config.latency:
            measure_variants(plan, device, log)
    finally:
        try:
            # Written even when interrupted: whatever was measured stays measured.
            result = collect(plan, outcomes, started=True, write=finished, workers=workers)
        finally:
            if workers is not None:
                workers.close()
    return result


def _plot_workers(config: CompareConfig, device: str, jobs: list[Job]) -> Any:
    """Processes that draw the plots, started now while the runs train, where they train on a GPU of this
    machine and it has CPUs to spare; None where the plots are drawn in-process at the end (runs on the
    CPU, whose cores the training uses; a scheduler's jobs, waited for elsewhere; nothing to train)."""
    from cnnbench.device import is_cuda, usable_cpus

    cpus = usable_cpus()
    if not jobs or config.launcher_kind.scheduled or not is_cuda(device) or cpus < 4:
        return None
    from cnnbench.report.plots import PlotWorkers

    # One per figure (five at most): on an H200's host five drew a comparison's figures in 0.4-0.5 s,
    # two in 0.7-0.8 s and one in 1.0-1.8 s, about what drawing them in-process takes.
    return PlotWorkers(min(5, cpus - 2))


def _plan_runs(plan: Plan, variants: list[Variant], launcher: Launcher, planning_device: str,
               log: Callable[[str], None]) -> list[Job]:  # fmt: skip
    """Every variant x seed of the plan: a finished run with identical conditions (unless --rerun), or a
    new job with its own run id; a variant that cannot run gets its error as its status."""
    from cnnbench.models.counting import count_flops

    config = plan.config
    records = RunRecords(Path(config.base.out), SHARED_CONDITIONS)
    jobs: list[Job] = []
    for variant in variants:
        for seed in config.seed_values:
            planned = PlannedRun(variant, seed)
            plan.runs.append(planned)
            recipe = recipe_of(config, variant, seed)
            try:
                conditions = planned_conditions(recipe.replace(device=planning_device))
                recipe.validate()
            except CnnbenchError as exc:
                from cnnbench.training.status import final_status

                planned.error = final_status(exc)
                log(f"{planned.label}: {planned.error}")
                continue
            planned.conditions_hash = conditions["conditions_hash"]
            found = None if config.rerun else records.newest_with(planned.conditions_hash, REUSABLE)
            if found is not None:
                planned.run_id, planned.reused = found, True
                continue
            recipe = recipe.replace(run_name=new_run_id(recipe), device=launcher.job_device(recipe.device))
            planned.run_id = recipe.run_name
            cost = 0.0
            if launcher.orders_by_cost:  # the queue runs the longest first
                shape = tuple(int(d) for d in conditions["input_size"].split("x"))
                cost = float(
                    count_flops(variant.model, dict(variant.options), shape, conditions["num_classes"])[1]
                )
                cost *= recipe.epochs
            jobs.append(Job(planned.label, recipe, cost))
    return jobs


def collect(plan: Plan, outcomes: dict[str, Outcome] | None = None, started: bool = False,
            write: bool = True, recorded: Recorded | None = None, workers: Any = None) -> CompareResult:  # fmt: skip
    """The comparison's rows as the store holds them now, found by run id; a run with no row in the store
    keeps the row the folder has ``recorded`` (every number of it: the folder may have been copied away
    from its store), else takes its status from how its job ended (``outcomes``), else pending. Writes
    tidy.csv, epochs.csv and conditions.json, and with ``write`` the tables and plots (by ``workers``,
    :class:`cnnbench.report.plots.PlotWorkers`, where they were started)."""
    import pandas as pd

    from cnnbench.store.runs import RunStore

    outcomes = outcomes or {}
    out = Path(plan.config.base.out)
    records = RunRecords(out, SHARED_CONDITIONS)
    # A job that ended without its run's row (killed before it could write one) gets the row now, made
    # from what its run wrote: every run ends with a status, and nothing it measured is lost.
    # One whose row says "interrupted" while its scheduler knows why (cancelled, timed out: the job was
    # killed before it could say so itself) takes the scheduler's word.
    settled = []
    for r in plan.runs:
        outcome = outcomes.get(r.label, Outcome())
        if not (r.run_id and outcome.ended):
            continue
        if r.run_id not in records.rows:
            if recorded is not None and recorded.keeps(r.label):
                continue  # the folder's row stands (its store does not hold the run: copied, moved aside)
            settled.append(RunStore(out, r.run_id).settle(outcome.describe(), replace=()))
        elif outcome.status in ("cancelled", "timeout"):
            settled.append(RunStore(out, r.run_id).settle(outcome.status, replace=("interrupted",)))
    if any(settled):
        records = RunRecords(out, SHARED_CONDITIONS)
    tidy_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    notes: list[str] = list(plan.config.notes)
    conditions: dict[str, Any] = {}
    kept: set[str] = set()  # runs whose recorded rows are written back as they were
    for run in plan.runs:
        summary, epochs = None, []
        record = records.record(run.run_id) if run.run_id else None
        if run.error is not None:
            status = run.error
        elif record is None and recorded is not None and recorded.keeps(run.label):
            kept.add(run.label)
            tidy_rows.append(recorded.typed_row(run.label))
            continue
        elif record is not None:
            summary, epochs = record
            status = str(summary["status"])
            if run.reused:
                made = "deterministic" if summary.get("deterministic") else "not deterministic"
                notes.append(f"{run.label}: reused run {run.run_id} (identical conditions; {made})")
        elif run.label in outcomes:
            status = outcomes[run.label].describe()
        else:
            status = NOT_STARTED if started else PENDING
        if summary is not None and not conditions:
            conditions = {k: summary.get(k) for k in SHARED_CONDITIONS}
        tidy_rows.append(
            tidy_row(run.variant, run.seed, summary, epochs, status, run.reused, plan.config.base.target_acc)
        )
        epoch_rows += [{"variant": run.variant.label, "seed": run.seed, **e} for e in epochs]
    tidy = pd.DataFrame(tidy_rows)
    # with its header even before any run has an epoch (a comparison stopped early), so it reads back
    epochs_df = pd.DataFrame(epoch_rows) if epoch_rows else pd.DataFrame(columns=["variant", "seed", "epoch"])
    if recorded is not None and kept:
        conditions = conditions or recorded.conditions
        epochs_df = recorded.with_epochs_of(kept, epochs_df)
    if not tidy.empty:
        write_meta(plan.folder, conditions, notes, plan.baseline, plan.config.price_per_gpu_hour)
        if recorded is not None and kept:
            write_text_atomic(plan.folder / "tidy.csv", recorded.merged_text(tidy, kept, "tidy"))
            write_text_atomic(plan.folder / "epochs.csv", recorded.merged_text(epochs_df, kept, "epochs"))
        else:
            write_frame_atomic(tidy, plan.folder / "tidy.csv")
            write_frame_atomic(epochs_df, plan.folder / "epochs.csv")
    latency = read_latency(plan.folder)
    result = CompareResult(
        plan.name,
        plan.folder,
        tidy,
        epochs_df,
        aggregate(tidy, plan.baseline, plan.config.price_per_gpu_hour, latency),
        conditions,
        notes,
        plan.config.command_line(),
        latency,
    )
    if plan.config.base.tensorboard is not None:
        _log_reused_runs(plan, tidy, epochs_df)
    if write:
        from cnnbench.report.outputs import write_outputs

        write_outputs(result, workers)
    return result


def _log_reused_runs(plan: Plan, tidy: Any, epochs: Any) -> None:
    """``--tensorboard``: the runs this comparison reused trained before it (and logged nothing to this
    folder); their logs are written from their epochs, beside those of the runs it trained."""
    from cnnbench.store.tensorboard import log_run, logged_runs

    root = Path(plan.config.base.tensorboard)
    done = logged_runs(root)
    for row in tidy.to_dict("records"):
        if not row.get("reused") or not row.get("run_id") or row["run_id"] in done:
            continue
        config_path = Path(plan.config.base.out) / "runs" / str(row["run_id"]) / "config.json"
        recipe = read_json(config_path).get("config", {}) if config_path.is_file() else {}
        mine = (
            epochs[(epochs.variant == row["variant"]) & (epochs.seed == row["seed"])]
            if len(epochs)
            else epochs
        )
        log_run(
            root,
            str(row["variant"]),
            int(row["seed"]),
            str(row["run_id"]),
            mine.to_dict("records"),
            recipe,
            row,
        )


def render(source: Path, baseline: str | None = None, notes: list[str] | None = None,
           price_per_gpu_hour: float | None = None, latency: dict[str, Any] | None = None,
           log: Callable[[str], None] = lambda _m: None) -> CompareResult:  # fmt: skip
    """``compare --from``: a saved comparison rendered without training. One whose plan still has runs
    that had not ended (pending: a scheduler's, or a comparison's whose process is gone) is collected from
    the store again, every row the folder holds kept unless the store holds that run's row; otherwise its
    files are rewritten only when ``baseline``, ``notes``, the price or ``latency`` (its variants timed on
    this machine now: ``backends``, ``threads``, ``requests``, ``device``) change what they say, or when its
    tables or figures are missing, so a published comparison renders without being rewritten."""
    source = Path(source)
    folder = source.parent if source.suffix == ".csv" else source
    if price_per_gpu_hour is not None:
        _refuse_price_without_gpu_hours(folder)
    if latency is not None:
        _time_saved(folder, latency, log)
    if (folder / "plan.json").is_file() and source.suffix != ".csv":
        recorded = Recorded.read(folder)
        if recorded is None or recorded.unsettled:
            plan = Plan.load(folder)
            if baseline is not None:
                plan.baseline = resolve_baseline(baseline, list(dict.fromkeys(r.variant for r in plan.runs)))
            if price_per_gpu_hour is not None:
                plan.config.price_per_gpu_hour = price_per_gpu_hour
            plan.config.notes = [*plan.config.notes, *[n for n in notes or [] if n not in plan.config.notes]]
            return collect(plan, _outcomes_so_far(plan), recorded=recorded)
    result = load_compare(source, baseline)
    changed = baseline is not None or latency is not None or any(n not in result.notes for n in notes or [])
    if price_per_gpu_hour is not None and price_per_gpu_hour != result.aggregated.attrs.get(
        "price_per_gpu_hour"
    ):
        chosen = result.aggregated.baseline.iloc[0] if "baseline" in result.aggregated else None
        result.aggregated = aggregate(result.tidy, chosen, price_per_gpu_hour, result.latency)
        changed = True
    if changed or _outputs_missing(result.folder):
        add_notes(result, notes or [])
        from cnnbench.report.outputs import write_outputs

        write_outputs(result)
    elif not (result.folder / "report.html").is_file():  # a comparison made before there were reports
        from cnnbench.report.html import write_report

        write_report(result, result.command)
    return result


def _time_saved(folder: Path, latency: dict[str, Any], log: Callable[[str], None]) -> None:
    """``compare --from DIR --latency``: the saved comparison's variants timed here, now (a comparison whose
    runs trained elsewhere, a Slurm cluster's, or one made before it timed latency)."""
    from cnnbench.device import resolve_device

    if not (folder / "plan.json").is_file():
        raise InvalidArgumentError(
            f"expected a comparison folder with its plan.json for --from with --latency (it names each variant's "
            f"model and input), got {str(folder)!r}"
        )
    plan = Plan.load(folder)
    # what is not given now stays as the comparison had it (eager, the usable cores, 300 requests by default)
    plan.config.backends = latency.get("backends") or plan.config.backends
    plan.config.threads = latency.get("threads") or plan.config.threads
    plan.config.requests = latency.get("requests") or plan.config.requests
    measure_variants(plan, resolve_device(latency.get("device") or "auto"), log)


def _refuse_price_without_gpu_hours(folder: Path) -> None:
    """A price per GPU-hour of a comparison whose runs used none (they ran on the CPU) would price nothing."""
    tidy_path = folder / "tidy.csv"
    tidy = read_frame(tidy_path) if tidy_path.is_file() else None
    if tidy is not None and not tidy.empty:
        import pandas as pd

        hours = pd.to_numeric(tidy.get("gpu_hours", pd.Series(dtype=float)), errors="coerce")
        if not (hours > 0).any():
            raise InvalidArgumentError(
                f"expected --price-per-gpu-hour for a comparison that ran on a GPU, got {folder}, whose runs "
                "used no GPU-hours (they ran on the CPU)"
            )


def _outputs_missing(folder: Path) -> bool:
    """Whether a comparison's tables or figures are missing (a comparison stopped while it drew them)."""
    tables = ("table.md", "table.tex", "aggregated.csv")
    return any(not (folder / name).is_file() for name in tables) or not any(folder.glob("*.png"))


def _outcomes_so_far(plan: Plan) -> dict[str, Outcome]:
    """How the plan's runs that left no row have ended, as far as can be told now: a Slurm job by Slurm's
    word; a run of a comparison run here (inline, by workers or submitit's local executor) whose process
    is gone (killed outright: the OOM killer, a power loss) as interrupted where it had begun (its row is
    made from what it wrote) and not started otherwise. A run whose process still holds it stays pending."""
    from cnnbench.launchers.slurm_states import slurm_outcomes
    from cnnbench.store.runs import RunStore
    from cnnbench.store.tables import held_elsewhere

    if plan.config.launcher_kind.leaves_jobs_queued:  # the cluster's word on its jobs
        return slurm_outcomes(plan.folder / "jobs")
    if held_elsewhere(plan.folder / ".lock"):
        return {}  # the comparison runs now
    outcomes = {}
    for run in plan.runs:
        if not run.run_id or run.reused:
            continue
        store = RunStore(Path(plan.config.base.out), run.run_id)
        if held_elsewhere(store.dir / ".lock"):
            continue  # a job that outlived its comparison trains it still
        began = store.config_path.is_file()
        outcomes[run.label] = Outcome(ended=True, status="interrupted" if began else NOT_STARTED)
    return outcomes


def _label(row: dict[str, str]) -> str:
    """A row's run label (``VARIANT seed N``) from its text cells; empty where its seed is no number."""
    try:
        return f"{row.get('variant', '')} seed {int(float(row.get('seed', '')))}"
    except ValueError:
        return ""


class Recorded:
    """What a comparison's folder holds already, as the text cells of its tidy.csv and epochs.csv: what
    ``--from`` keeps, byte for byte, for every run whose row the store does not hold."""

    def __init__(self, folder: Path, tidy: Table, epochs: Table) -> None:
        self.tidy, self.epochs = tidy, epochs
        self.names = [LEGACY_NAMES.get(h, h) for h in tidy.header]
        self.rows = {_label(dict(zip(self.names, r, strict=True))): r for r in tidy.rows}
        meta = folder / "conditions.json"
        self.conditions = read_json(meta).get("conditions", {}) if meta.is_file() else {}

    @classmethod
    def read(cls, folder: Path) -> Recorded | None:
        from cnnbench.store.tables import read_table

        tidy = read_table(folder / "tidy.csv")
        if not tidy.rows or "variant" not in tidy.header or "seed" not in tidy.header:
            return None
        return cls(folder, tidy, read_table(folder / "epochs.csv"))

    def status(self, label: str) -> str | None:
        row = self.rows.get(label)
        return row[self.names.index("status")] if row is not None and "status" in self.names else None

    @property
    def unsettled(self) -> bool:
        """Rows still waiting on a run (pending), or rows without a status to tell."""
        return "status" not in self.names or any(is_pending(self.status(label)) for label in self.rows)

    def keeps(self, label: str) -> bool:
        """Whether the run's recorded row stands (where the store holds no row of it): every row that
        says how its run ended, and every row that holds a run's numbers, whatever its status says."""
        row = self.rows.get(label)
        if row is None:
            return False
        has_run = "run_id" in self.names and bool(row[self.names.index("run_id")])
        return has_run or not is_pending(self.status(label))

    def typed_row(self, label: str) -> dict[str, Any]:
        """The recorded row with numbers as numbers (for the aggregate and the display)."""
        row = (
            frame_of(Table(self.tidy.header, [self.rows[label]]))
            .rename(columns=LEGACY_NAMES)
            .iloc[0]
            .to_dict()
        )
        row.setdefault("status", "not recorded")
        row["options"] = row["options"] if isinstance(row.get("options"), str) else ""
        return row

    def _epoch_rows(self, kept: set[str]) -> list[list[str]]:
        if "variant" not in self.epochs.header or "seed" not in self.epochs.header:
            return []
        header = self.epochs.header
        return [r for r in self.epochs.rows if _label(dict(zip(header, r, strict=True))) in kept]

    def with_epochs_of(self, kept: set[str], epochs: Any) -> Any:
        """``epochs`` and the recorded epoch rows of the ``kept`` runs (typed, for the figures)."""
        import pandas as pd

        rows = self._epoch_rows(kept)
        if not rows:
            return epochs
        recorded = frame_of(Table(self.epochs.header, rows))
        return pd.concat([epochs, recorded], ignore_index=True) if len(epochs) else recorded

    def merged_text(self, frame: Any, kept: set[str], which: str) -> str:
        """``frame`` as CSV text where the ``kept`` runs' rows are the recorded rows, cell for cell (the
        recorded columns first, any new ones after), in the frame's order of runs."""
        import csv
        import io

        table = self.tidy if which == "tidy" else self.epochs
        recorded_rows = list(self.rows.values()) if which == "tidy" else self._epoch_rows(kept)
        names = [LEGACY_NAMES.get(h, h) for h in table.header]
        parsed = (
            list(csv.reader(io.StringIO(frame.to_csv(index=False), newline="")))
            if len(frame.columns)
            else [[]]
        )
        new_header, new_rows = parsed[0], parsed[1:]
        header = [*table.header, *[c for c in new_header if c not in names]]
        names += [c for c in new_header if c not in names]
        rows: list[list[str]] = []
        done: set[str] = set()
        for cells in new_rows:
            row = dict(zip(new_header, cells, strict=True))
            label = _label(row)
            if label not in kept:
                rows.append([row.get(n, "") for n in names])
            elif label not in done:  # the run's recorded rows, once, where its first row stands
                done.add(label)
                mine = [r for r in recorded_rows if _label(dict(zip(table.header, r, strict=True))) == label]
                rows += [r + [""] * (len(header) - len(r)) for r in mine]
        return Table(header, rows).to_text()
