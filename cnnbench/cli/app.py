"""The command-line interface: each command is its options, a docstring and one library call.

The options of ``train`` and ``compare`` come from the fields of the recipe, the comparison and the
scheduler (:mod:`cnnbench.cli.options`), declared once in the library. torch is imported only inside
commands, so ``cnnbench --help`` stays fast.
"""

from __future__ import annotations

import gc
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cnnbench import __version__
from cnnbench.choices import PRECISIONS, PROFILE_MODES
from cnnbench.cli.options import OUTPUT, GroupedCommand, choice_enum, dataclass_options
from cnnbench.comparison.plan import CompareConfig
from cnnbench.errors import CnnbenchError
from cnnbench.launchers.scheduler import SchedulerOptions
from cnnbench.recipe import TrainConfig
from cnnbench.settings import PoolConfig, ProfileConfig, SummaryConfig


class _ErrorBoundary(TyperGroup):
    """The one place where library errors become a red line and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnbenchError as exc:
            from cnnbench.training.distributed import rank_error

            if rank_error(str(exc)):
                raise typer.Exit(1) from None  # one line per run, not one per rank
            from rich.text import Text

            from cnnbench.report.terminal import err_console

            # The message as written: square brackets in it are text, not markup.
            err_console.print(
                Text.assemble(("error:", "bold red"), f" {exc}"), highlight=False, soft_wrap=True
            )
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


class PoolFormat(str, Enum):
    table = "table"
    json = "json"


class ProfileFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


Precision = choice_enum(PRECISIONS)
Mode = choice_enum((*PROFILE_MODES, "both"))

# Options of the commands that measure a model without training it (summary, profile).
ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL", help="Registered model name or alias (see `cnnbench list`).")
]
OptionsOpt = Annotated[
    list[str] | None, typer.Option("--option", "-o", metavar="KEY=VALUE", help="Model option (repeatable).")
]
InputSizeOpt = Annotated[
    str | None, typer.Option("--input-size", "-i", metavar="CxHxW", help="Input size, e.g. 3x224x224.")
]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", "-d", metavar="NAME",
                 help="Take input size and classes from cifar10, cifar100, mnist, imagenet or fashion-mnist."),
]  # fmt: skip
NumClassesOpt = Annotated[
    int | None, typer.Option("--num-classes", metavar="N", help="Number of classes (default: the dataset's).")
]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="Autocast precision.")]  # type: ignore[valid-type]
ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last", help="NHWC memory format (default: on for CUDA, off on CPU)."
    ),
]
OutOpt = Annotated[
    str | None,
    typer.Option(
        "--out", metavar="DIR", help="Results directory (default: ./results/local, which git ignores)."
    ),
]
# Options every command that writes a table takes.
RepairOpt = Annotated[
    bool,
    typer.Option(
        "--repair",
        help="Move a damaged results table aside (as NAME.damaged-DATE) and keep its intact rows.",
        rich_help_panel=OUTPUT,
    ),
]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Show every column, however wide the table (default: fit the terminal).",
        rich_help_panel=OUTPUT,
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar; one line per run.", rich_help_panel=OUTPUT)
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


@app.command("list", cls=GroupedCommand)
def list_command(
    patterns: Annotated[
        list[str] | None, typer.Argument(metavar="PATTERN...", help="Glob patterns, e.g. 'vgg*'.")
    ] = None,
    options: Annotated[
        str | None, typer.Option("--options", metavar="MODEL", help="List the options of this model.")
    ] = None,
) -> None:
    """List registered architectures (aliases, family, default input, description)."""
    from cnnbench.report.terminal import print_model_list

    print_model_list(patterns or [], options)


@app.command(cls=GroupedCommand)
@dataclass_options("summary", summary=SummaryConfig)
def summary(
    model: ModelArg,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.", rich_help_panel=OUTPUT)
    ] = OutputFormat.table,
    repair: RepairOpt = False,
    wide: WideOpt = False,
    summary: dict[str, Any] | None = None,
) -> None:
    """Per-layer table and totals: parameters, MACs, FLOPs (forward and training), memory."""
    from cnnbench.measure.commands import summary_command

    summary_command(SummaryConfig(model=model, **(summary or {})), repair, fmt.value, wide)


@app.command("pool", cls=GroupedCommand)
@dataclass_options("pool", pool=PoolConfig)
def pool_command(
    fmt: Annotated[
        PoolFormat, typer.Option("--format", "-f", help="Output format.", rich_help_panel=OUTPUT)
    ] = PoolFormat.table,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE", help="Also draw input and outputs (.png or .svg)."),
    ] = None,
    pool: dict[str, Any] | None = None,
) -> None:
    """Exercise 1: max and average pooling of the chapter's edge map (or an image), side by side."""
    from cnnbench.measure.commands import pool_command

    pool_command(PoolConfig(**(pool or {})), plot, fmt.value)


@app.command(cls=GroupedCommand)
@dataclass_options("train", recipe=TrainConfig)
def train(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="Registered model name or alias (omit with --resume)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", metavar="RUN_ID", help="Continue a run of --out/runs/ (to --epochs if given)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="FILE", help="Train the recipe of a job file or a run's config.json."
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            metavar="all|N|0,2,3",
            help="Train data-parallel on these GPUs (torchrun + DDP); --batch-size stays the global batch.",
        ),
    ] = None,  # fmt: skip
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the recipe and its conditions hash as JSON; train nothing."),
    ] = False,
    repair: RepairOpt = False,
    quiet: QuietOpt = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Train one architecture; per-epoch CSV, checkpoints and a runs table under results/local/."""
    from cnnbench.training.command import TrainRequest, train_command

    request = TrainRequest(model, recipe or {}, config, resume, gpus, repair, quiet)
    raise typer.Exit(train_command(request, quiet, dry_run))


@app.command(cls=GroupedCommand)
@dataclass_options("compare", {"checkpoints": False}, recipe=TrainConfig, compare=CompareConfig,
                   scheduler=SchedulerOptions)  # fmt: skip
def compare(
    models: Annotated[
        list[str] | None,
        typer.Argument(metavar="VARIANT...", help="MODEL[:key=v1,v2...], e.g. cnn_dropout:dropout=0,0.5."),
    ] = None,
    from_: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            metavar="DIR",
            help="Render a saved comparison (folder or tidy.csv); given "
            "several times, join comparisons made on other machines into one table.",
        ),
    ] = None,
    apart: Annotated[
        bool,
        typer.Option("--apart", help="With several --from: join comparisons whose recipes differ, unpooled."),
    ] = False,
    repair: RepairOpt = False,
    wide: WideOpt = False,
    quiet: QuietOpt = False,
    recipe: dict[str, Any] | None = None,
    compare: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
) -> None:
    """Train several architectures with one recipe; tables (terminal, CSV, Markdown, LaTeX) and plots."""
    from cnnbench.comparison.command import compare_command

    raise typer.Exit(compare_command(models or [], recipe or {}, compare or {}, scheduler or {}, from_, repair, wide,
                                     quiet, apart))  # fmt: skip


@app.command(cls=GroupedCommand)
@dataclass_options("profile", profile=ProfileConfig)
def profile(
    model: ModelArg,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            metavar="N,N,...",
            help="Data-parallel images/s and scaling efficiency at these GPU counts.",
        ),
    ] = None,  # fmt: skip
    fmt: Annotated[
        ProfileFormat, typer.Option("--format", "-f", help="Output format.", rich_help_panel=OUTPUT)
    ] = ProfileFormat.table,
    repair: RepairOpt = False,
    wide: WideOpt = False,
    profile: dict[str, Any] | None = None,
) -> None:
    """Step time (median, IQR), throughput, memory, TFLOP/s and utilisation per batch size and mode."""
    from cnnbench.measure.commands import profile_command

    given = dict(profile or {})
    if gpus is not None:
        given.setdefault("batch_sizes", [128])  # per GPU
    raise typer.Exit(profile_command(ProfileConfig(model=model, **given), gpus, repair, fmt.value, wide))


@app.command("diff", cls=GroupedCommand)
def diff_command(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="A run id (of --out) or a run's folder.")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="Another, in the same store or another.")],
    out: OutOpt = None,
) -> None:
    """Why two runs differ: recipe and environment fields, and the measured differences against seeds' spread."""
    from cnnbench.recipe import results_dir
    from cnnbench.report.terminal import print_diff
    from cnnbench.store.diff import diff
    from cnnbench.store.tables import DEFAULT_RESULTS_DIR

    print_diff(diff(run_a, run_b, DEFAULT_RESULTS_DIR if out is None else results_dir(out)))


@app.command("report", cls=GroupedCommand)
def report_command(
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="A comparison folder, a run's folder or a profile.csv.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", metavar="FILE", help="Write here (default: beside PATH's tables)."),
    ] = None,
) -> None:
    """One HTML page of a saved comparison, run or profile table, readable offline and printable."""
    from cnnbench.api import make_report
    from cnnbench.report.terminal import console

    console.print(f"report: {make_report(path, output)}", highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    finally:
        # A command leaves a million objects behind (torch's, pandas', matplotlib's), and the interpreter's
        # last collection walks them all on the way out: a second on an H200's host. Frozen, they are
        # left to the operating system. Files are closed and atexit handlers still run.
        gc.freeze()
