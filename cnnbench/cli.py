"""The command-line interface. Thin commands: parse options, build a config, call the library.

torch is imported only inside commands, so ``cnnbench --help`` stays fast.
"""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cnnbench import __version__
from cnnbench.choices import LAUNCHERS, OPTIMIZERS, PRECISIONS, PROFILE_MODES, SCHEDULERS
from cnnbench.errors import CnnbenchError
from cnnbench.results import DEFAULT_RESULTS_DIR


class _ErrorBoundary(TyperGroup):
    """The one place where library errors become a red line and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnbenchError as exc:
            from cnnbench.display import err_console

            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_ErrorBoundary,
    help="Benchmark CNN architectures: parameters, FLOPs, epoch time on CUDA and test accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: one line per option at 80 columns, and no <bool> placeholders on flags.
    rich_markup_mode=None,
)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


# Shared option aliases, defined once.
ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL", help="Registered model name or alias (see `cnnbench list`).")
]
OptionsOpt = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", metavar="KEY=VALUE", help="Model option (repeatable)."),
]
InputSizeOpt = Annotated[
    str | None,
    typer.Option("--input-size", "-i", metavar="CxHxW", help="Input size, e.g. 3x224x224."),
]
DATASET_NAMES = "cifar10, cifar100, mnist, synthetic, imagefolder (your own) or fashion-mnist"
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        metavar="NAME",
        help="Take input size and classes from cifar10, cifar100, mnist, imagenet or fashion-mnist.",
    ),
]
NumClassesOpt = Annotated[
    int | None, typer.Option("--num-classes", metavar="N", help="Number of classes (default: the dataset's).")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", metavar="DIR", help="Results directory (default: ./results).")
]
RepairOpt = Annotated[
    bool,
    typer.Option(
        "--repair",
        help="Move a damaged results table aside (as NAME.damaged-DATE) and keep its intact rows.",
    ),
]
Optimizer = Enum("Optimizer", {name: name for name in OPTIMIZERS}, type=str)
Scheduler = Enum("Scheduler", {name: name for name in SCHEDULERS}, type=str)
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)
Launcher = Enum("Launcher", {name: name for name in LAUNCHERS}, type=str)
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="Autocast precision.")]
WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="Show every column, however wide the table (default: fit the terminal)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnnbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Benchmark CNN architectures: parameters, FLOPs, epoch time on CUDA and test accuracy."""


def _input_size(text: str | None) -> tuple[int, int, int] | None:
    from cnnbench.datasets import parse_input_size

    return parse_input_size(text) if text else None


@app.command("list")
def list_command(
    patterns: Annotated[
        list[str] | None, typer.Argument(metavar="PATTERN...", help="Glob patterns, e.g. 'vgg*'.")
    ] = None,
    options: Annotated[
        str | None, typer.Option("--options", metavar="MODEL", help="List the options of this model.")
    ] = None,
) -> None:
    """List registered architectures (aliases, family, default input, description)."""
    from cnnbench.datasets import format_input_size, get_dataset_spec
    from cnnbench.display import console, simple_table
    from cnnbench.models import get_model_info, list_models

    if options:
        info = get_model_info(options)
        rows = [
            (key, opt.describe_values(), str(info.defaults.get(key, opt.default)).lower(), opt.help)
            for key, opt in info.options.items()
        ]
        console.print(
            simple_table(
                f"options of {info.name} (-o key=value)", ("name", "values", "default", "help"), rows
            )
        )
        return
    from cnnbench.models._sources import list_external

    external = [p for p in patterns or [] if ":" in p]  # torchvision:* and timm:* list what the source offers
    local = [p for p in patterns or [] if ":" not in p]
    found = [name for p in external for name in list_external(p)]
    for name in found:
        console.print(name, highlight=False)
    if external and not local:
        if found:
            return
        names: list[str] = []
    else:
        names = list_models(include=local or None)
    if not names:
        from cnnbench.errors import UnknownModelError

        raise UnknownModelError(
            f"no model matches {' '.join(patterns or [])!r}; run `cnnbench list` to see them all"
        )
    rows = []
    for name in names:
        info = get_model_info(name)
        spec = get_dataset_spec(info.default_dataset)
        rows.append(
            (
                name,
                ", ".join(info.aliases) or "-",
                info.family,
                f"{format_input_size(spec.input_shape)} ({spec.name})",
                info.description,
            )
        )
    console.print(simple_table(None, ("name", "aliases", "family", "default input", "description"), rows))


@app.command()
def summary(
    model: ModelArg,
    option: OptionsOpt = None,
    input_size: InputSizeOpt = None,
    dataset: DatasetOpt = None,
    num_classes: NumClassesOpt = None,
    depth: Annotated[
        int, typer.Option(min=1, metavar="N", help="Show layers down to this nesting depth.")
    ] = 3,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, metavar="N", help="Batch for the memory estimate.")
    ] = 1,
    precision: PrecisionOpt = Precision.fp32,
    out: OutOpt = None,
    repair: RepairOpt = False,
    wide: WideOpt = False,
) -> None:
    """Per-layer table and totals: parameters, MACs, FLOPs (forward and training), memory."""
    from cnnbench.models import parse_option_strings
    from cnnbench.summary import SummaryConfig, save_summary, summarize

    config = SummaryConfig(
        model=model,
        options=parse_option_strings(option or []),
        input_size=_input_size(input_size),
        dataset=dataset,
        num_classes=num_classes,
        depth=depth,
        batch_size=batch_size,
        precision=precision.value,
    )
    result = summarize(config)
    save_summary(result, out, repair)
    _print_summary(result, fmt, wide)


def _print_summary(result: Any, fmt: OutputFormat, wide: bool) -> None:
    import pandas as pd

    from cnnbench.display import console, err_console, print_fitted, summary_table, summary_totals
    from cnnbench.results import to_json

    if fmt is OutputFormat.json:
        typer.echo(to_json(result.to_dict()))
    elif fmt is OutputFormat.csv:
        typer.echo(pd.DataFrame([result.csv_row()]).to_csv(index=False), nl=False)
    elif fmt is OutputFormat.markdown:
        layers = pd.DataFrame([vars(layer) for layer in result.layers])
        typer.echo(layers.to_markdown(index=False))
        typer.echo("")
        totals = {k: v for k, v in result.csv_row().items()}
        typer.echo(pd.DataFrame(list(totals.items()), columns=["quantity", "value"]).to_markdown(index=False))
    else:
        print_fitted(*summary_table(result, wide), wide=wide)
        console.print(summary_totals(result))
        if result.crosscheck_warning:
            err_console.print(
                f"[yellow]warning:[/] {result.crosscheck_warning}", highlight=False, soft_wrap=True
            )


TrainDatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", metavar="NAME", help=f"One of: {DATASET_NAMES}.")
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", metavar="DIR", help="Dataset folder (default: $CNNBENCH_DATA_DIR, else ./data)."
    ),
]
EpochsOpt = Annotated[int, typer.Option("--epochs", "-e", metavar="N", help="Epochs to train.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", metavar="N", help="Training batch size.")]
OptimizerOpt = Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer.")]
LrOpt = Annotated[float, typer.Option("--lr", metavar="X", help="Learning rate.")]
WeightDecayOpt = Annotated[float, typer.Option("--weight-decay", metavar="X", help="Weight decay.")]
SchedulerOpt = Annotated[Scheduler, typer.Option("--scheduler", help="LR schedule (step: StepLR(20, 0.5)).")]
LabelSmoothingOpt = Annotated[
    float, typer.Option("--label-smoothing", metavar="X", help="Cross-entropy label smoothing.")
]
ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last", help="NHWC memory format (default: on for CUDA, off on CPU)."
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile", help="torch.compile the full-batch training step (compile time counted in the warm-up)."
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="auto|cpu|cuda[:N]", help="Where to run.")]
SeedOpt = Annotated[
    int, typer.Option("--seed", metavar="N", help="Random seed (weights, data order, augmentation).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one line per run.")]
NoGraphsOpt = Annotated[
    bool,
    typer.Option("--no-cuda-graphs", help="Run the eager loop instead of replaying a captured CUDA graph."),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="Deterministic algorithms only, no cuDNN autotuning: the same seed gives the same digits.",
    ),
]
JobsPerGpuOpt = Annotated[
    int,
    typer.Option(
        "--jobs-per-gpu",
        min=1,
        metavar="K",
        help="Runs at once on each GPU (recorded: it moves epoch times).",
    ),
]
GpusTrainOpt = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="all|N|0,2,3",
        help="Train data-parallel on these GPUs (torchrun + DDP); --batch-size stays the global batch.",
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--image-size", min=8, metavar="N", help="Your own images (-d imagefolder): resize and crop to NxN."
    ),
]
SkipBadImagesOpt = Annotated[
    bool, typer.Option("--skip-bad-images", help="Your own images: leave unreadable files out, counted.")
]
NoCheckpointOpt = Annotated[bool, typer.Option("--no-checkpoint", help="Do not write best/last checkpoints.")]


class PoolFormat(str, Enum):
    table = "table"
    json = "json"


@app.command("pool")
def pool_command(
    kernel: Annotated[int, typer.Option("--kernel", "-k", metavar="N", help="Pooling window side.")] = 2,
    stride: Annotated[int, typer.Option("--stride", "-s", metavar="N", help="Pooling stride.")] = 2,
    image: Annotated[
        int | None,
        typer.Option("--image", metavar="N", help="Pool test image N of --dataset instead of the edge map."),
    ] = None,
    dataset: TrainDatasetOpt = "cifar10",
    data_dir: DataDirOpt = None,
    fmt: Annotated[PoolFormat, typer.Option("--format", "-f", help="Output format.")] = PoolFormat.table,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE", help="Also draw input and outputs (.png or .svg)."),
    ] = None,
) -> None:
    """Exercise 1: max and average pooling of the chapter's edge map (or an image), side by side."""
    from cnnbench import pooling
    from cnnbench.display import print_pool
    from cnnbench.results import to_json

    result = pooling.pool(
        pooling.PoolConfig(kernel=kernel, stride=stride, image=image, dataset=dataset, data_dir=data_dir)
    )
    if plot is not None:
        pooling.plot(result, plot)
    if fmt is PoolFormat.json:
        typer.echo(to_json(result.to_dict()))
    else:
        print_pool(result)


@app.command()
def train(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="Registered model name or alias (omit with --resume)."),
    ] = None,
    option: OptionsOpt = None,
    dataset: TrainDatasetOpt = "cifar10",
    data_dir: DataDirOpt = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", "-e", metavar="N", help="Epochs to train (default: 20; with --resume, the run's own)."
        ),
    ] = None,
    batch_size: BatchSizeOpt = 128,
    optimizer: OptimizerOpt = Optimizer.adam,
    lr: LrOpt = 1e-3,
    weight_decay: WeightDecayOpt = 1e-4,
    scheduler: SchedulerOpt = Scheduler.step,
    label_smoothing: LabelSmoothingOpt = 0.0,
    precision: PrecisionOpt = Precision.fp32,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    input_size: InputSizeOpt = None,
    num_classes: NumClassesOpt = None,
    out: OutOpt = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", metavar="RUN_ID", help="Continue a run of --out/runs/ (to --epochs if given)."
        ),
    ] = None,
    no_checkpoint: NoCheckpointOpt = False,
    no_cuda_graphs: NoGraphsOpt = False,
    deterministic: DeterministicOpt = False,
    image_size: ImageSizeOpt = None,
    skip_bad_images: SkipBadImagesOpt = False,
    jobs_per_gpu: JobsPerGpuOpt = 1,
    gpus: GpusTrainOpt = None,
    run_name: Annotated[
        str | None,
        typer.Option(
            "--run-name",
            metavar="NAME",
            help="The run's folder under OUT/runs/ (default: model, seed, time).",
        ),
    ] = None,
    repair: RepairOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one architecture; per-epoch CSV, checkpoints and a runs table under results/."""
    from cnnbench import distributed
    from cnnbench import train as training
    from cnnbench.display import TrainProgress, print_run

    out_dir = out or DEFAULT_RESULTS_DIR
    main_process = distributed.is_main_process()
    config = None
    if not resume:
        if model is None:
            from cnnbench.errors import InvalidArgumentError

            raise InvalidArgumentError("expected a MODEL argument or --resume RUN_ID, got neither")
        config = _train_config(
            model, _options(option), checkpoints=not no_checkpoint, dataset=dataset, data_dir=data_dir,
            epochs=20 if epochs is None else epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
            weight_decay=weight_decay, scheduler=scheduler, label_smoothing=label_smoothing,
            precision=precision, channels_last=channels_last, compile=compile, device=device, seed=seed,
            out=out_dir, input_size=input_size, num_classes=num_classes, no_cuda_graphs=no_cuda_graphs,
            deterministic=deterministic, image_size=image_size, skip_bad_images=skip_bad_images,
            jobs_per_gpu=jobs_per_gpu, run_name=run_name,
        )  # fmt: skip
    if gpus is not None and not distributed.world_from_env().distributed:
        # This process only starts torchrun; the ranks it starts run this command without --gpus.
        from cnnbench.sweep import train_argv

        if config is None:
            argv = ["train", "--resume", str(resume), "--out", str(out_dir)]
            argv += ["--epochs", str(epochs)] if epochs is not None else []
        else:
            config.validate()
            argv = train_argv(config, config.options)
        argv += ["--repair"] * repair + ["--quiet"] * quiet
        raise typer.Exit(distributed.run_data_parallel(gpus, argv))
    progress = TrainProgress(quiet or not main_process)
    try:
        with progress:
            if config is None:
                result = training.resume(
                    out_dir, str(resume), progress, epochs=epochs, model=model,
                    device=None if device == "auto" else device, repair=repair,
                )  # fmt: skip
            else:
                result = training.train(config, progress, repair=repair)
    except KeyboardInterrupt:
        if main_process:
            _interrupted_run(progress.run_id, out, checkpoints=not no_checkpoint or bool(resume))
        raise typer.Exit(130) from None
    if main_process:
        print_run(result)


def _interrupted_run(run_id: str | None, out: Path | None, checkpoints: bool) -> None:
    """What Ctrl-C leaves, and the exact command that continues it."""
    from cnnbench.display import err_console

    if run_id is None:
        err_console.print("[yellow]interrupted[/] before the run started; nothing was written")
        return
    where = f" --out {shlex.quote(str(out))}" if out is not None else ""
    if checkpoints:
        err_console.print(
            f"[yellow]interrupted:[/] run {run_id} keeps its finished epochs and last checkpoint; "
            f"continue it with: cnnbench train --resume {run_id}{where}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err_console.print(
            f"[yellow]interrupted:[/] run {run_id} keeps its finished epochs, but it wrote no checkpoint "
            "(--no-checkpoint), so it cannot be resumed",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def compare(
    models: Annotated[
        list[str] | None,
        typer.Argument(metavar="VARIANT...", help="MODEL[:key=v1,v2...], e.g. cnn_dropout:dropout=0,0.5."),
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", metavar="K", help="Repeat each variant with this many seeds.")
    ] = 1,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="Folder name under OUT/compare/ (default: models and a hash)."
        ),
    ] = None,
    seed_list: Annotated[
        str | None,
        typer.Option("--seed-list", metavar="N,N,...", help="Run these seeds (instead of --seeds)."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="VARIANT",
            help="Measure differences from this variant (default: the first).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing comparison of that --name.")
    ] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="Train even when identical runs exist.")] = False,
    note: Annotated[
        list[str] | None,
        typer.Option(
            "--note", metavar="TEXT", help="A note for the tables (repeatable), e.g. the data's copy."
        ),
    ] = None,
    from_: Annotated[
        Path | None,
        typer.Option("--from", metavar="DIR", help="Render a saved comparison (folder or tidy.csv)."),
    ] = None,
    dataset: TrainDatasetOpt = "cifar10",
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = 20,
    batch_size: BatchSizeOpt = 128,
    optimizer: OptimizerOpt = Optimizer.adam,
    lr: LrOpt = 1e-3,
    weight_decay: WeightDecayOpt = 1e-4,
    scheduler: SchedulerOpt = Scheduler.step,
    label_smoothing: LabelSmoothingOpt = 0.0,
    precision: PrecisionOpt = Precision.fp32,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    input_size: InputSizeOpt = None,
    num_classes: NumClassesOpt = None,
    out: OutOpt = None,
    checkpoint: Annotated[
        bool,
        typer.Option("--checkpoint", help="Write best/last checkpoints per run (off: compare reuses runs)."),
    ] = False,
    no_cuda_graphs: NoGraphsOpt = False,
    deterministic: DeterministicOpt = False,
    image_size: ImageSizeOpt = None,
    skip_bad_images: SkipBadImagesOpt = False,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus", metavar="all|N|0,2,3", help="Run the jobs at once, one worker process per GPU."
        ),
    ] = None,
    jobs_per_gpu: JobsPerGpuOpt = 1,
    no_mps: Annotated[
        bool, typer.Option("--no-mps", help="With --jobs-per-gpu: time-slice the GPU instead of CUDA MPS.")
    ] = False,
    launcher: Annotated[
        Launcher,
        typer.Option("--launcher", help="Where the runs train: here, submitit's local executor, or Slurm."),
    ] = Launcher.inline,
    partition: Annotated[
        str | None, typer.Option("--partition", metavar="NAME", help="Slurm partition of the jobs.")
    ] = None,
    gpus_per_job: Annotated[
        int,
        typer.Option("--gpus-per-job", metavar="N", help="GPUs each job asks for (over 1: data-parallel)."),
    ] = 1,
    time_min: Annotated[int, typer.Option("--time", metavar="MINUTES", help="Each job's time limit.")] = 60,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", metavar="N", help="Jobs running at once.")
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Submit and return; render later with --from OUT/compare/NAME."),
    ] = False,
    repair: RepairOpt = False,
    wide: WideOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train several architectures with one recipe; tables (terminal, CSV, Markdown, LaTeX) and plots."""
    from cnnbench import compare as comparing
    from cnnbench.display import SweepDisplay, TrainProgress, console, err_console, print_compare
    from cnnbench.launchers import SchedulerOptions

    if from_ is not None and (Path(from_) / "plan.json").is_file():
        # A comparison handed to a scheduler: its rows as the store holds them now.
        result = comparing.collect(Path(from_), baseline, note or [])
    elif from_ is not None:
        result = comparing.load_compare(from_, baseline)
        comparing.add_notes(result, note or [])
        comparing.write_outputs(result)
    else:
        if not models:
            from cnnbench.errors import InvalidArgumentError

            raise InvalidArgumentError("expected at least one MODEL (or --from DIR), got none")
        base = _train_config(
            "", {}, checkpoints=checkpoint, dataset=dataset, data_dir=data_dir,
            epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
            scheduler=scheduler, label_smoothing=label_smoothing, precision=precision,
            channels_last=channels_last, compile=compile, device=device, seed=seed, out=out or DEFAULT_RESULTS_DIR,
            input_size=input_size, num_classes=num_classes, no_cuda_graphs=no_cuda_graphs,
            deterministic=deterministic, image_size=image_size, skip_bad_images=skip_bad_images,
        )  # fmt: skip
        config = comparing.CompareConfig(
            variants=models, base=base, seeds=seeds, name=name, rerun=rerun, notes=note or [], force=force,
            repair=repair, seed_list=_seed_list(seed_list), baseline=baseline, gpus=gpus, jobs_per_gpu=jobs_per_gpu,
            launcher=launcher.value, wait=not no_wait, mps=not no_mps,
            scheduler=SchedulerOptions(partition, gpus_per_job, time_min, max_parallel),
        )  # fmt: skip
        progress = TrainProgress(quiet)

        def for_variant(label: str) -> TrainProgress:
            progress.variant = label
            return progress

        # Runs in workers or a scheduler's jobs share one display; runs trained here, a progress bar.
        elsewhere = gpus is not None or launcher != Launcher.inline
        view = SweepDisplay(live=elsewhere and err_console.is_terminal and not quiet)
        try:
            with view if elsewhere else progress:
                result = comparing.run_compare(
                    config, callbacks=for_variant, log=lambda m: console.print(m, highlight=False), view=view
                )
        except KeyboardInterrupt:
            from cnnbench.display import err_console

            during = f" during run {progress.run_id}" if progress.run_id else ""
            err_console.print(
                f"[yellow]interrupted{during}:[/] finished runs and the partial tables are kept; the same "
                f"command again reuses the finished runs and trains the rest: {_command_line()}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
    print_compare(result, wide=wide)
    statuses = result.tidy.status if len(result.tidy) else None
    if (
        from_ is None
        and statuses is not None
        and not statuses.isin((*comparing.FINISHED, comparing.PENDING)).any()
    ):
        raise typer.Exit(1)  # every variant failed: a script must not take this for a result


def _seed_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        from cnnbench.errors import InvalidArgumentError

        raise InvalidArgumentError(f"expected --seed-list as integers like 0,5,9, got {text!r}") from None


def _command_line() -> str:
    return shlex.join(["cnnbench", *sys.argv[1:]])


Mode = Enum("Mode", {name: name for name in (*PROFILE_MODES, "both")}, type=str)


class ProfileFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def profile(
    model: ModelArg,
    option: OptionsOpt = None,
    input_size: InputSizeOpt = None,
    dataset: DatasetOpt = None,
    num_classes: NumClassesOpt = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            metavar="N,N,...",
            help="Batch sizes (default 1,32,128,512; with --gpus, 128 per GPU).",
        ),
    ] = None,
    mode: Annotated[
        Mode, typer.Option("--mode", help="Inference forward, training step, or both.")
    ] = Mode.both,
    precision: PrecisionOpt = Precision.fp32,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    warmup: Annotated[int, typer.Option("--warmup", metavar="N", help="Untimed steps before timing.")] = 10,
    iters: Annotated[int, typer.Option("--iters", metavar="N", help="Timed steps.")] = 50,
    layers: Annotated[bool, typer.Option("--layers", help="Per-module times and the top operators.")] = False,
    trace: Annotated[
        Path | None, typer.Option("--trace", metavar="FILE", help="Write a Chrome/Perfetto trace here.")
    ] = None,
    grads: Annotated[
        bool,
        typer.Option("--grads", help="Only the per-layer gradient norms of one batch at initialisation."),
    ] = False,
    fmt: Annotated[
        ProfileFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ProfileFormat.table,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            metavar="N,N,...",
            help="Data-parallel images/s and scaling efficiency at these GPU counts.",
        ),
    ] = None,
    out: OutOpt = None,
    repair: RepairOpt = False,
    wide: WideOpt = False,
) -> None:
    """Step time (median, IQR), throughput, memory, TFLOP/s and utilisation per batch size and mode."""
    from cnnbench import profile as profiling
    from cnnbench.display import print_profile, print_scaling

    config = profiling.ProfileConfig(
        model=model, options=_options(option), input_size=_input_size(input_size), dataset=dataset,
        num_classes=num_classes,
        batch_sizes=profiling.parse_batch_sizes(batch_sizes or ("128" if gpus else "1,32,128,512")),
        modes=["infer", "train"] if mode is Mode.both else [mode.value], precision=precision.value,
        channels_last=channels_last, compile=compile, device=device, warmup=warmup, iters=iters, layers=layers,
        trace=trace, grads=grads, out=out or DEFAULT_RESULTS_DIR,
    )  # fmt: skip
    if gpus is not None:
        print_scaling(profiling.profile_scaling(config, gpus, repair), fmt.value)
        return
    print_profile(profiling.profile(config, repair), fmt.value, wide=wide)


def _train_config(
    model: str,
    options: dict[str, str],
    *,
    checkpoints: bool,
    optimizer: Optimizer,
    scheduler: Scheduler,
    precision: Precision,
    input_size: str | None,
    no_cuda_graphs: bool,
    image_size: int | None,
    **recipe: Any,
) -> Any:
    """The one translation of the shared training options (train, compare) into a TrainConfig."""
    from cnnbench.train import TrainConfig

    shape = _input_size(input_size) or ((3, image_size, image_size) if image_size else None)
    return TrainConfig(
        model=model, options=options, optimizer=optimizer.value, scheduler=scheduler.value,
        precision=precision.value, input_size=shape, cuda_graphs=not no_cuda_graphs,
        checkpoints=checkpoints, **recipe,
    )  # fmt: skip


def _options(items: list[str] | None) -> dict[str, str]:
    from cnnbench.models import parse_option_strings

    return parse_option_strings(items or [])


def main() -> None:
    app()
