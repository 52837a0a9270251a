"""cnnbench from Python: each command a function, each result an object with DataFrames.

    import cnnbench
    cnnbench.summary("vgg16").layers                      # a DataFrame, one row per layer
    run = cnnbench.train("lenet", epochs=2, dataset="synthetic", input_size="3x32x32")
    run.epochs                                             # a DataFrame, one row per epoch
    cnnbench.compare(["lenet", "resnet"], epochs=2).table  # one row per variant
    cnnbench.runs(model="lenet5")                          # the results store, filtered

A model is whatever the command line takes (a registry name, ``torchvision:NAME``, ``timm:NAME``,
``file.py:factory``, ``package.module:callable``) or a Python object: an ``nn.Module``, or a callable
that makes one (``num_classes=`` and, where it takes them, ``input_shape=`` and options), named for the
rows by ``name=`` (default: its class or function name). Keywords are the fields of the command's
settings, as a job file's keys are; a misspelt one is refused naming the valid ones. Mistakes raise
:class:`~cnnbench.errors.CnnbenchError` subclasses with the command line's one-line messages. Nothing
prints unless ``progress=True``; each result shows in Jupyter as the table the terminal prints.

The command line calls the same functions (``run_summary``, ``run_train``, ``run_compare``,
``run_profile``) with the settings it parsed: the two faces are one path.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.errors import InvalidArgumentError, ResultsError

__all__ = ["Comparison", "Profile", "Run", "Summary", "compare", "create_model", "list_models", "make_report", "profile", "runs",
           "summary", "train"]  # fmt: skip


# --- models given as names or as Python objects ----------------------------------------------------------


def _model_name(model: Any, name: str | None) -> str:
    """The registry's name for ``model``: a name as given, or a Python object registered under ``name``."""
    if isinstance(model, str):
        if name is not None:
            raise InvalidArgumentError(
                f"expected name= only with a Python object (a name names itself), got name={name!r} for {model!r}"
            )
        return model
    from cnnbench.models._api import is_registered
    from cnnbench.models._sources import register_object

    if name is None:
        name = getattr(model, "__name__", None) or type(model).__name__
        if name == "<lambda>":
            raise InvalidArgumentError("expected name= for a lambda (its rows need a name), got none")
    if register_object(name, model, is_registered):  # the name named another object: its counts go
        from cnnbench.models.counting import forget_counts

        forget_counts()
    return name


def _variant_names(variants: Any) -> list[str]:
    """Compare's variants as names: strings as given (with their ``:key=v1,v2`` options), Python objects
    under their names; a mapping gives each object its name."""
    if isinstance(variants, (str, bytes)) or not isinstance(variants, (Iterable, Mapping)):
        variants = [variants]
    if isinstance(variants, Mapping):
        return [
            _model_name(model, None if isinstance(model, str) else str(name))
            for name, model in variants.items()
        ]
    return [_model_name(v, None) for v in variants]


# --- keywords: the fields of a command's settings ----------------------------------------------------------


def _check_keywords(
    command: str, given: Mapping[str, Any], valid: Iterable[str], classes: Iterable[type] = ()
) -> None:
    from cnnbench.fields import check_names

    check_names(given, valid, f"keywords of cnnbench.{command}", options_of_fields=classes)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the command line reads them: an input size as ``"3x32x32"`` or a tuple, model options as
    text (``True`` as ``true``), so that a recipe given either way has one conditions hash."""
    from cnnbench.data.specs import parse_input_size

    out = dict(values)
    if isinstance(out.get("input_size"), str):
        out["input_size"] = parse_input_size(out["input_size"])
    if out.get("options") is not None:
        if not isinstance(out["options"], Mapping):
            raise InvalidArgumentError(f"expected options= as a dict, got {type(out['options']).__name__}")
        out["options"] = {
            str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in out["options"].items()
        }
    for key in ("out", "data_dir", "trace", "tensorboard"):
        if out.get(key) is not None:
            out[key] = Path(out[key])
    if isinstance(out.get("backends"), str):  # "eager,onnxruntime", as --backend reads it
        from cnnbench.settings import parse_backends

        out["backends"] = parse_backends(out["backends"])
    return out


# --- results that a notebook shows and pandas takes ---------------------------------------------------------


class _Shown:
    """A result whose ``_repr_html_`` is the table the terminal prints (rendered in one place:
    :mod:`cnnbench.report.notebook`), and whose ``frame()`` is its main DataFrame."""

    result: Any
    main = ""  # the attribute frame() returns
    printer = ""  # the function of cnnbench.report.terminal that prints the result as the command does

    def frame(self) -> Any:
        return getattr(self, self.main)

    def _render(self) -> None:
        from cnnbench.report import terminal

        getattr(terminal, self.printer)(self.result)

    def _repr_html_(self) -> str:
        from cnnbench.report.notebook import html_of

        return html_of(self._render)

    def __str__(self) -> str:
        from cnnbench.report.notebook import text_of

        return text_of(self._render)


@dataclass(repr=False)
class Summary(_Shown):
    """``cnnbench summary``: ``layers`` (one row per layer), ``totals`` (the row of summary.csv)."""

    result: Any  # cnnbench.measure.summary.ModelSummary
    csv_path: Path

    @property
    def layers(self) -> Any:
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(layer) for layer in self.result.layers])

    @property
    def totals(self) -> dict[str, Any]:
        return self.result.csv_row()

    main, printer = "layers", "print_summary"

    def __repr__(self) -> str:
        t = self.totals
        return f"<Summary {t['model']} {t['input_size']}: {t['params']:,} params, {t['forward_MACs_per_sample']:,} MACs forward per sample>"


@dataclass(repr=False)
class Run(_Shown):
    """``cnnbench train``: the run's id, folder, status, summary (its row of runs.csv) and ``epochs``."""

    result: Any  # cnnbench.training.trainer.RunResult

    run_id = property(lambda self: self.result.run_id)
    run_dir = property(lambda self: self.result.run_dir)
    status = property(lambda self: self.result.status)
    summary = property(lambda self: self.result.summary)

    @property
    def epochs(self) -> Any:
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(row) for row in self.result.epochs])

    main, printer = "epochs", "print_run"

    def __repr__(self) -> str:
        from cnnbench.store.tables import format_number

        return f"<Run {self.run_id} {self.status}: final test acc {format_number(self.summary.get('final_test_acc'), '.2f')}%>"


@dataclass(repr=False)
class Comparison(_Shown):
    """``cnnbench compare``: ``table`` (one row per variant, aggregated.csv), ``tidy`` (one per variant and
    seed), ``epochs`` (one per variant, seed and epoch), ``latency`` (with ``latency=True``: one per
    variant and backend, latency.csv; else None), its ``folder`` and ``conditions``."""

    result: Any  # cnnbench.comparison.saved.CompareResult

    table = property(lambda self: self.result.aggregated)
    tidy = property(lambda self: self.result.tidy)
    epochs = property(lambda self: self.result.epochs)
    folder = property(lambda self: self.result.folder)
    conditions = property(lambda self: self.result.conditions)
    latency = property(lambda self: self.result.latency)

    main, printer = "table", "print_compare"

    def __repr__(self) -> str:
        return f"<Comparison {self.result.name}: {len(self.table)} variants, {len(self.tidy)} runs, in {self.folder}>"


@dataclass(repr=False)
class Profile(_Shown):
    """``cnnbench profile``: ``rows`` (one per mode and batch size, as profile.csv), ``layers`` and
    ``top_ops`` (with ``layers=True``), ``grads`` (with ``grads=True``)."""

    result: Any  # cnnbench.measure.profile.ProfileResult

    def _frame(self, name: str) -> Any:
        import pandas as pd

        return pd.DataFrame(getattr(self.result, name))

    rows = property(lambda self: self._frame("rows"))
    layers = property(lambda self: self._frame("layers"))
    top_ops = property(lambda self: self._frame("top_ops"))
    grads = property(lambda self: self._frame("grads"))

    printer = "print_profile"

    @property
    def main(self) -> str:  # type: ignore[override]
        return "grads" if self.result.grads else "rows"

    def __repr__(self) -> str:
        return f"<Profile: {len(self.result.rows)} rows in {self.result.csv_path}>"


# --- the commands ------------------------------------------------------------------------------------------


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names matching the glob ``pattern`` (names and aliases); ``torchvision:*res*`` and
    ``timm:...`` list those sources' models."""
    from cnnbench.models import list_models as registered
    from cnnbench.models._sources import is_external, list_external

    if pattern is not None and ":" in pattern and is_external(pattern.replace("*", "x")):
        return list_external(pattern)
    return registered(pattern)


def create_model(model: Any, *, input_size: Any = None, dataset: str | None = None, num_classes: int | None = None,
                 seed: int | None = None, name: str | None = None, **options: Any) -> Any:  # fmt: skip
    """The ``nn.Module`` every command builds for ``model`` (its options as keywords), for ``input_size``
    and ``num_classes`` (default: its dataset's); from ``seed`` where given."""
    import torch

    from cnnbench.models.build import build, resolve_input

    model_name = _model_name(model, name)
    typed = _typed({"input_size": input_size, "options": options})
    shape, classes = resolve_input(model_name, typed["input_size"], dataset, num_classes)
    if seed is not None:
        torch.manual_seed(seed)
    return build(model_name, typed["options"], shape, classes)[0]


def summary(model: Any, *, name: str | None = None, repair: bool = False, **settings: Any) -> Summary:
    """``cnnbench summary``: per-layer table and totals (parameters, MACs, FLOPs, memory), its row
    upserted into ``out``/summary.csv (default results/local). Settings: the fields of
    :class:`~cnnbench.settings.SummaryConfig` (options, input_size, dataset, num_classes, depth,
    batch_size, precision, out)."""
    from cnnbench.settings import SummaryConfig

    _check_keywords(
        "summary",
        settings,
        [*(f for f in _field_names(SummaryConfig) if f != "model"), "name", "repair"],
        [SummaryConfig],
    )
    return run_summary(SummaryConfig(model=_model_name(model, name), **_typed(settings)), repair)


def run_summary(config: Any, repair: bool = False) -> Summary:
    """The summary of ``config`` (a :class:`~cnnbench.settings.SummaryConfig`), saved in its ``out``."""
    from cnnbench.measure.summary import save_summary, summarize

    config.validate()
    result = summarize(config)
    return Summary(result, save_summary(result, config.out, repair))


def train(model: Any, *, name: str | None = None, progress: bool = False, repair: bool = False,
          **recipe: Any) -> Run:  # fmt: skip
    """``cnnbench train``: one run of the recipe (the fields of :class:`~cnnbench.recipe.TrainConfig`:
    epochs, batch_size, lr, dataset, input_size, device, seed, out, ...); its epochs and row written to
    the results store as the command line writes them."""
    from cnnbench.recipe import TrainConfig

    _check_keywords("train", recipe, [*[f for f in _field_names(TrainConfig) if f not in ("model", "world_size")],
                                      "name", "progress", "repair"], [TrainConfig])  # fmt: skip
    config = TrainConfig.from_dict({**_typed(recipe), "model": _model_name(model, name)})
    return run_train(config, progress=progress, repair=repair)


def run_train(config: Any, callbacks: Any = None, progress: bool = False, repair: bool = False) -> Run:
    """A new run of ``config``, shown with ``callbacks`` (a progress display with ``progress``)."""
    import contextlib

    from cnnbench.training.trainer import Callbacks, Trainer

    display: Any = contextlib.nullcontext(callbacks or Callbacks())
    if callbacks is None and progress:
        from cnnbench.report.progress import TrainProgress

        display = TrainProgress(False)
    with display as shown:
        return Run(Trainer(config, shown, repair=repair).run())


def compare(variants: Any, *, progress: bool = False, repair: bool = False, **settings: Any) -> Comparison:
    """``cnnbench compare``: every variant x seed trained (or reused) under one recipe, its tables and
    figures written. ``variants``: names with ``:key=v1,v2`` options, Python objects, or a dict of names to
    objects. Settings: the recipe's fields (as ``train``), the comparison's (seeds, baseline, name, notes,
    launcher, gpus, ...) and the scheduler's."""
    from cnnbench.comparison.plan import CompareConfig, make_config
    from cnnbench.launchers.scheduler import SchedulerOptions
    from cnnbench.recipe import TrainConfig

    groups = {
        "recipe": [f for f in _field_names(TrainConfig) if f not in ("model", "world_size")],
        "compare": [
            f for f in _field_names(CompareConfig) if f not in ("variants", "base", "scheduler", "repair")
        ],
        "scheduler": _field_names(SchedulerOptions),
    }
    _check_keywords(
        "compare",
        settings,
        [*(k for keys in groups.values() for k in keys), "progress", "repair"],
        [TrainConfig, CompareConfig, SchedulerOptions],
    )
    typed = _typed(settings)
    given = {group: {k: v for k, v in typed.items() if k in keys} for group, keys in groups.items()}
    names = _variant_names(variants)
    config = make_config(names, given["recipe"], given["compare"], given["scheduler"], repair)
    return run_compare(config, progress=progress)


def run_compare(config: Any, callbacks: Callable[[Any], Any] | None = None, log: Callable[[str], None] | None = None,
                view: Any = None, progress: bool = False) -> Comparison:  # fmt: skip
    """The comparison ``config`` describes (a :class:`~cnnbench.comparison.plan.CompareConfig`)."""
    from cnnbench.comparison import run as comparing
    from cnnbench.models._sources import object_info

    objects = [v for v in config.variants if object_info(v.partition(":")[0]) is not None]
    if objects and not config.launcher_kind.trains_here:
        where = f"--launcher {config.launcher}" if config.launcher != "inline" else f"gpus={config.gpus!r}"
        raise InvalidArgumentError(
            f"expected models that another process can build with {where} (its runs train in other processes), "
            f"got the Python object {objects[0].partition(':')[0]!r}; a factory in a file (file.py:factory) travels"
        )
    if callbacks is None and progress:
        from cnnbench.report.progress import TrainProgress

        with TrainProgress(False) as shown:
            return Comparison(
                comparing.run_compare(config, callbacks=shown.for_job, log=log or print, view=view)
            )
    return Comparison(
        comparing.run_compare(config, callbacks=callbacks, log=log or (lambda _m: None), view=view)
    )


def profile(model: Any, *, name: str | None = None, progress: bool = False, repair: bool = False,
            **settings: Any) -> Profile:  # fmt: skip
    """``cnnbench profile``: step time (median, IQR), throughput, memory and TFLOP/s per batch size and
    mode, each row appended to ``out``/profile.csv. Settings: the fields of
    :class:`~cnnbench.settings.ProfileConfig` (batch_sizes as a list or ``"1,32"``, modes as a list
    or ``"infer"``, ``"train"``, ``"both"``)."""
    from cnnbench.settings import ProfileConfig, parse_batch_sizes, parse_modes

    _check_keywords("profile", settings, [*(f for f in _field_names(ProfileConfig) if f != "model"), "name",
                                          "progress", "repair"], [ProfileConfig])  # fmt: skip
    typed = _typed(settings)
    if isinstance(typed.get("batch_sizes"), (str, int)):
        typed["batch_sizes"] = parse_batch_sizes(str(typed["batch_sizes"]))
    if isinstance(typed.get("modes"), str):
        typed["modes"] = parse_modes(typed["modes"])
    config = ProfileConfig(model=_model_name(model, name), **typed)
    return run_profile(config, repair, print if progress else (lambda _line: None))


def run_profile(
    config: Any, repair: bool = False, say: Callable[[str], None] = lambda _line: None
) -> Profile:
    """The sweep ``config`` describes (a :class:`~cnnbench.settings.ProfileConfig`)."""
    from cnnbench.measure.profile import profile as measure

    return Profile(measure(config, repair, say))


def runs(out: Any = None, **filters: Any) -> Any:
    """The results store's runs (``out``/runs.csv, default results/local) as a DataFrame, one row per run,
    keeping those whose columns equal the filters (a list or tuple: any of its values; a callable: a
    test of each value), like ``mlflow.search_runs``."""
    import pandas as pd

    from cnnbench.store.tables import DEFAULT_RESULTS_DIR, read_frame

    path = Path(out or DEFAULT_RESULTS_DIR) / "runs.csv"
    if not path.is_file():
        raise ResultsError(
            f"expected a results folder holding runs.csv at {path.parent}, got no runs.csv there"
        )
    frame = read_frame(path)
    _check_keywords("runs (columns of runs.csv)", filters, list(frame.columns))
    for column, wanted in filters.items():
        if callable(wanted):
            keep = frame[column].map(wanted).astype(bool)
        elif isinstance(wanted, (list, tuple, set)):
            keep = frame[column].isin(list(wanted))
        else:
            keep = frame[column] == wanted
        frame = frame[keep]
    return pd.DataFrame(frame).reset_index(drop=True)


def make_report(path: str | Path, output: str | Path | None = None) -> Path:
    """``cnnbench report``: the HTML report of a comparison folder (its report.html), a training run's
    folder (its report.html) or a profile table (profile.html beside it), written to ``output`` if given.
    Returns the file written."""
    import pandas as pd

    from cnnbench.comparison.saved import load_compare
    from cnnbench.fields import typed_options
    from cnnbench.recipe import read_job
    from cnnbench.report import html
    from cnnbench.store.runs import RunRecords
    from cnnbench.store.tables import read_frame, read_json, write_text_atomic

    path = Path(path)
    if path.is_dir() and (path / "tidy.csv").is_file():
        result = load_compare(path)
        target = Path(output) if output else path / html.REPORT
        text = html.comparison_html(result, result.command)
    elif path.is_dir() and (path / "config.json").is_file():
        config = read_json(path / "config.json")
        epochs = read_frame(path / "epochs.csv") if (path / "epochs.csv").is_file() else pd.DataFrame()
        recipe = read_job(path / "config.json")
        command = shlex.join(["cnnbench", "train", recipe.model, *typed_options(recipe, "train")])
        target = Path(output) if output else path / html.REPORT
        summary = RunRecords(path.parent.parent).rows.get(path.name)  # its row of OUT/runs.csv, if any
        text = html.run_html(path, config, epochs, summary, command)
    else:
        table = path / "profile.csv" if path.is_dir() else path
        if not table.is_file() or table.suffix != ".csv":
            raise InvalidArgumentError(
                "expected a comparison folder (tidy.csv), a run's folder (config.json) or a profile table "
                f"(profile.csv), got {str(path)!r}"
            )
        rows = read_frame(table)
        if "step_ms_median" not in rows:
            raise InvalidArgumentError(f"expected a profile table with step_ms_median, got {str(table)!r}")
        target = Path(output) if output else table.with_suffix(".html")
        text = html.profile_html(table, rows)
    write_text_atomic(target, text)
    return target
