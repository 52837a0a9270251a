"""The command-line interface. Thin commands: parse options, build a config, call the library.

torch is imported only inside commands, so ``cnnbench --help`` stays fast.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cnnbench import __version__
from cnnbench.errors import CnnbenchError


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
)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


# Shared option aliases, defined once.
ModelArg = Annotated[str, typer.Argument(help="Registered model name or alias (see `cnnbench list`).")]
OptionsOpt = Annotated[
    list[str] | None, typer.Option("--option", "-o", help="Model option key=value (repeatable).")
]
InputSizeOpt = Annotated[
    str | None, typer.Option("--input-size", "-i", help="Input size CxHxW, e.g. 3x224x224.")
]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", "-d", help="Dataset whose input size and classes to use.")
]
NumClassesOpt = Annotated[
    int | None, typer.Option("--num-classes", help="Number of classes (default: the dataset's).")
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Results directory (default: ./results).")]


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
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns, e.g. 'vgg*'.")] = None,
    options: Annotated[str | None, typer.Option("--options", help="List the options of this model.")] = None,
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
    names = list_models(include=patterns or None)
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
    depth: Annotated[int, typer.Option(min=1, help="Show layers down to this nesting depth.")] = 3,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    out: OutOpt = None,
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
    )
    result = summarize(config)
    save_summary(result, out)
    _print_summary(result, fmt)


def _print_summary(result: Any, fmt: OutputFormat) -> None:
    import pandas as pd

    from cnnbench.display import console, summary_table, summary_totals

    if fmt is OutputFormat.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt is OutputFormat.csv:
        typer.echo(pd.DataFrame([result.csv_row()]).to_csv(index=False), nl=False)
    elif fmt is OutputFormat.markdown:
        layers = pd.DataFrame([vars(layer) for layer in result.layers])
        typer.echo(layers.to_markdown(index=False))
        typer.echo("")
        totals = {k: v for k, v in result.csv_row().items()}
        typer.echo(pd.DataFrame(list(totals.items()), columns=["quantity", "value"]).to_markdown(index=False))
    else:
        console.print(summary_table(result))
        console.print(summary_totals(result))


class Optimizer(str, Enum):
    adam = "adam"
    sgd = "sgd"
    adamw = "adamw"


class Scheduler(str, Enum):
    step = "step"
    cosine = "cosine"
    onecycle = "onecycle"
    none = "none"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


TrainDatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="cifar10|cifar100|mnist|fashion-mnist|synthetic.")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Dataset folder (default: $CNNBENCH_DATA_DIR, else ./data).")
]
EpochsOpt = Annotated[int, typer.Option("--epochs", "-e", help="Epochs to train.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Training batch size.")]
OptimizerOpt = Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Learning rate.")]
WeightDecayOpt = Annotated[float, typer.Option("--weight-decay", help="Weight decay.")]
SchedulerOpt = Annotated[Scheduler, typer.Option("--scheduler", help="LR schedule (step: StepLR(20, 0.5)).")]
LabelSmoothingOpt = Annotated[float, typer.Option("--label-smoothing", help="Cross-entropy label smoothing.")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="Autocast precision.")]
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
DeviceOpt = Annotated[str, typer.Option("--device", help="auto|cpu|cuda[:N].")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (weights, data order, augmentation).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one line per run.")]
NoGraphsOpt = Annotated[
    bool,
    typer.Option("--no-cuda-graphs", help="Run the eager loop instead of replaying a captured CUDA graph."),
]
NoCheckpointOpt = Annotated[bool, typer.Option("--no-checkpoint", help="Do not write best/last checkpoints.")]


@app.command()
def train(
    model: Annotated[
        str | None, typer.Argument(help="Registered model name or alias (omit with --resume).")
    ] = None,
    option: OptionsOpt = None,
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
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue an interrupted run (id or folder).")
    ] = None,
    no_checkpoint: NoCheckpointOpt = False,
    no_cuda_graphs: NoGraphsOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one architecture; per-epoch CSV, checkpoints and a runs table under results/."""
    from cnnbench import train as training
    from cnnbench.display import TrainProgress, print_run

    out_dir = out or Path("results")
    progress = TrainProgress(quiet)
    try:
        with progress:
            if resume:
                result = training.resume(
                    out_dir, resume, progress, device=None if device == "auto" else device
                )
            else:
                if model is None:
                    from cnnbench.errors import InvalidArgumentError

                    raise InvalidArgumentError("expected a MODEL argument or --resume RUN, got neither")
                config = _train_config(
                    model, _options(option), checkpoints=not no_checkpoint, dataset=dataset, data_dir=data_dir,
                    epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                    scheduler=scheduler, label_smoothing=label_smoothing, precision=precision,
                    channels_last=channels_last, compile=compile, device=device, seed=seed, out=out_dir,
                    input_size=input_size, num_classes=num_classes, no_cuda_graphs=no_cuda_graphs,
                )  # fmt: skip
                result = training.train(config, progress)
    except KeyboardInterrupt:
        from cnnbench.display import err_console

        err_console.print("[yellow]interrupted:[/] finished epochs and the last checkpoint are kept")
        raise typer.Exit(130) from None
    print_run(result)


@app.command()
def compare(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="MODEL[:key=v1,v2...] variants, e.g. cnn_dropout:dropout=0,0.5."),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Repeat each variant with this many seeds.")] = 1,
    name: Annotated[str | None, typer.Option("--name", help="Folder name under results/compare/.")] = None,
    rerun: Annotated[bool, typer.Option("--rerun", help="Train even when identical runs exist.")] = False,
    note: Annotated[
        list[str] | None,
        typer.Option("--note", help="A note for the tables (repeatable), e.g. which copy of the data."),
    ] = None,
    from_: Annotated[
        Path | None, typer.Option("--from", help="Render a saved comparison (folder or tidy.csv).")
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
    quiet: QuietOpt = False,
) -> None:
    """Train several architectures with one recipe; tables (terminal, CSV, Markdown, LaTeX) and plots."""
    from cnnbench import compare as comparing
    from cnnbench.display import TrainProgress, console, print_compare

    if from_ is not None:
        result = comparing.load_compare(from_)
        comparing.add_notes(result, note or [])
        comparing.write_outputs(result)
    else:
        if not models:
            from cnnbench.errors import InvalidArgumentError

            raise InvalidArgumentError("expected at least one MODEL (or --from DIR), got none")
        base = _train_config(
            models[0].partition(":")[0], {}, checkpoints=checkpoint, dataset=dataset, data_dir=data_dir,
            epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
            scheduler=scheduler, label_smoothing=label_smoothing, precision=precision,
            channels_last=channels_last, compile=compile, device=device, seed=seed, out=out or Path("results"),
            input_size=input_size, num_classes=num_classes, no_cuda_graphs=no_cuda_graphs,
        )  # fmt: skip
        config = comparing.CompareConfig(
            variants=models, base=base, seeds=seeds, name=name, rerun=rerun, notes=note or []
        )
        progress = TrainProgress(quiet)
        try:
            with progress:
                result = comparing.run_compare(
                    config, callbacks=lambda _label: progress, log=lambda m: console.print(m, highlight=False)
                )
        except KeyboardInterrupt:
            from cnnbench.display import err_console

            err_console.print("[yellow]interrupted:[/] finished runs and the partial tables are kept")
            raise typer.Exit(130) from None
    print_compare(result)


class Mode(str, Enum):
    infer = "infer"
    train = "train"
    both = "both"


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
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")
    ] = "1,32,128,512",
    mode: Annotated[
        Mode, typer.Option("--mode", help="Inference forward, training step, or both.")
    ] = Mode.both,
    precision: PrecisionOpt = Precision.fp32,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    device: DeviceOpt = "auto",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed steps before timing.")] = 10,
    iters: Annotated[int, typer.Option("--iters", help="Timed steps.")] = 50,
    layers: Annotated[bool, typer.Option("--layers", help="Per-module times and the top operators.")] = False,
    trace: Annotated[Path | None, typer.Option("--trace", help="Write a Chrome/Perfetto trace here.")] = None,
    grads: Annotated[
        bool, typer.Option("--grads", help="Per-layer gradient norms for one batch at init.")
    ] = False,
    fmt: Annotated[
        ProfileFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ProfileFormat.table,
    out: OutOpt = None,
) -> None:
    """Step time (median, IQR), throughput, memory, TFLOP/s and utilisation per batch size and mode."""
    from cnnbench import profile as profiling
    from cnnbench.display import print_profile

    config = profiling.ProfileConfig(
        model=model, options=_options(option), input_size=_input_size(input_size), dataset=dataset,
        num_classes=num_classes, batch_sizes=profiling.parse_batch_sizes(batch_sizes),
        modes=["infer", "train"] if mode is Mode.both else [mode.value], precision=precision.value,
        channels_last=channels_last, compile=compile, device=device, warmup=warmup, iters=iters, layers=layers,
        trace=trace, grads=grads, out=out or Path("results"),
    )  # fmt: skip
    print_profile(profiling.profile(config), fmt.value)


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
    **recipe: Any,
) -> Any:
    """The one translation of the shared training options (train, compare) into a TrainConfig."""
    from cnnbench.train import TrainConfig

    return TrainConfig(
        model=model, options=options, optimizer=optimizer.value, scheduler=scheduler.value,
        precision=precision.value, input_size=_input_size(input_size), cuda_graphs=not no_cuda_graphs,
        checkpoints=checkpoints, **recipe,
    )  # fmt: skip


def _options(items: list[str] | None) -> dict[str, str]:
    from cnnbench.models import parse_option_strings

    return parse_option_strings(items or [])


def main() -> None:
    app()
