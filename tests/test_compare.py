"""cnnbench compare: the variant grammar, files against the runs they came from, --from, failures."""

import functools
import json

import pandas as pd
import pytest
import torch
from conftest import cli, compare_tiny

from cnnbench.comparison.variants import Variant, parse_variants
from cnnbench.errors import InvalidArgumentError, ResultsError, UnknownModelError

SIZES = dict(epochs=2, batch_size=64, synthetic_size=256)
compare = functools.partial(compare_tiny, **SIZES)


def test_grammar_expands_lists_and_products():
    assert parse_variants(["lenet", "cnn_dropout:dropout=0,0.3,0.5,0.7"]) == [
        Variant("lenet5", ()),
        *[Variant("cnn_dropout", (("dropout", v),)) for v in ("0", "0.3", "0.5", "0.7")],
    ]
    both = parse_variants(["cifar10net:batch_norm=true,false:dropout=0,0.5"])
    assert [v.label for v in both] == [
        "cifar10net:batch_norm=true:dropout=0", "cifar10net:batch_norm=true:dropout=0.5",
        "cifar10net:batch_norm=false:dropout=0", "cifar10net:batch_norm=false:dropout=0.5",
    ]  # fmt: skip
    assert parse_variants(["vgg", "vgg16"]) == [Variant("vgg16", ())]  # aliases fold, duplicates drop


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("lenet:0.3", InvalidArgumentError, "expected key=value after lenet:, got '0.3'"),
        ("lenet:pool=", InvalidArgumentError, "expected a value for pool"),
        ("lenet:pool=max:pool=avg", InvalidArgumentError, "expected each key once"),
        (":pool=max", InvalidArgumentError, "expected MODEL"),
        ("lenett", UnknownModelError, "did you mean lenet"),
    ],
)
def test_grammar_errors(spec, error, message):
    with pytest.raises(error, match=message):
        parse_variants([spec])


@pytest.mark.slow
def test_two_models_two_seeds_files_match_their_runs(tmp_path):
    result = compare(tmp_path, "lenet", "cnn_dropout:dropout=0.3", "--seeds", "2", "--name", "t")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "t"
    tidy = pd.read_csv(folder / "tidy.csv")
    assert list(zip(tidy.variant, tidy.seed, strict=True)) == [
        ("lenet5", 0), ("lenet5", 1), ("cnn_dropout:dropout=0.3", 0), ("cnn_dropout:dropout=0.3", 1)
    ]  # fmt: skip
    runs = pd.read_csv(tmp_path / "runs.csv").set_index("run_id")
    epochs_all = pd.read_csv(folder / "epochs.csv")
    for _, row in tidy.iterrows():
        run = runs.loc[row.run_id]
        epochs = pd.read_csv(tmp_path / "runs" / row.run_id / "epochs.csv")
        assert run.seed == row.seed and run.model == row.model and row.status == "ok"
        assert row.params == run.params and row.forward_MACs_per_sample == run.forward_MACs_per_sample
        assert row.best_test_acc == pytest.approx(epochs.test_acc.max())
        assert row.final_test_acc == pytest.approx(epochs.test_acc.iloc[-1])
        # the gap's train accuracy is the final model's over its training images, in eval mode
        assert row.train_acc_basis == "eval mode"
        assert row.train_test_gap_pct_points == pytest.approx(run.train_eval_acc - epochs.test_acc.iloc[-1])
        assert row.median_epoch_s == pytest.approx(epochs.epoch_time_s.median())
        # the tidy row carries the run's own numbers under the names runs.csv gives them
        assert (row.median_epoch_s, row.best_test_acc) == (run.median_epoch_s, run.best_test_acc)
        assert row.total_train_s == pytest.approx(epochs.epoch_time_s.sum())
        best = epochs.test_acc.max()
        assert row.epochs_to_95pct_of_best == epochs.epoch[epochs.test_acc >= 0.95 * best].iloc[0]
        mine = epochs_all[(epochs_all.variant == row.variant) & (epochs_all.seed == row.seed)]
        assert mine.test_acc.tolist() == pytest.approx(epochs.test_acc.tolist())
    agg = pd.read_csv(folder / "aggregated.csv").set_index("variant")
    lenet = tidy[tidy.variant == "lenet5"]
    assert agg.loc["lenet5", "best_test_acc_mean"] == pytest.approx(lenet.best_test_acc.mean())
    assert agg.loc["lenet5", "best_test_acc_std"] == pytest.approx(lenet.best_test_acc.std(ddof=1))
    assert (
        agg.loc["lenet5", "seeds"] == 2 and agg.loc["lenet5", "params"] == 15_926
    )  # LeNet-5 at 3x16x16: 16x1x1 flatten
    md = (folder / "table.md").read_text()
    assert "| lenet5" in md and "synthetic" in md
    assert md.index("final test acc (%)") < md.index("best test acc (%, chosen on test)")
    tex = (folder / "table.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "$\\pm$" in tex
    for stem in (
        "accuracy_per_epoch",
        "accuracy_vs_params",
        "accuracy_vs_macs",
        "accuracy_vs_time",
        "epoch_time",
    ):
        for ext in ("png", "svg"):
            assert (folder / f"{stem}.{ext}").stat().st_size > 1000
    assert "lenet5" in result.output and "cnn_dropout:dropout=0.3" in result.output

    # --from renders identical tables without training
    before = {f: (folder / f).read_text() for f in ("table.md", "table.tex", "aggregated.csv")}
    rendered = cli("compare", "--from", str(folder), columns=200)
    assert rendered.exit_code == 0, rendered.output
    assert {f: (folder / f).read_text() for f in before} == before
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 4  # nothing retrained

    # --note adds provenance to a saved comparison, once however often it is given
    for _ in range(2):
        noted = cli("compare", "--from", str(folder), "--note", "data: copy X")
        assert noted.exit_code == 0, noted.output
    assert (folder / "table.md").read_text().count("- data: copy X") == 1
    assert json.loads((folder / "conditions.json").read_text())["notes"] == ["data: copy X"]

    # identical conditions are reused; --rerun trains again
    again = compare(tmp_path, "lenet", "--seeds", "2", "--name", "t2")
    assert again.exit_code == 0 and again.output.count("reused run") == 2
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 4
    forced = compare(tmp_path, "lenet", "--name", "t3", "--rerun")
    assert forced.exit_code == 0 and "reused" not in forced.output
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 5


def test_a_failing_variant_keeps_the_others(tmp_path, monkeypatch):
    from cnnbench.training import trainer

    original = trainer.Trainer.run

    def run(self):
        if self.config.model == "cnn_dropout":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self)

    monkeypatch.setattr(trainer.Trainer, "run", run)
    result = compare(tmp_path, "lenet:pool=avg,median", "cnn_dropout", "lenet:pool=max", "--name", "f")
    assert result.exit_code == 0, result.output
    tidy = pd.read_csv(tmp_path / "compare" / "f" / "tidy.csv").set_index("variant")
    assert tidy.loc["lenet5:pool=avg", "status"] == "ok"
    assert tidy.loc["lenet5:pool=max", "status"] == "ok"
    assert tidy.loc["lenet5:pool=median", "status"].startswith("failed: bad value for option pool")
    assert tidy.loc["cnn_dropout", "status"] == "out of memory"
    assert tidy.loc["cnn_dropout", "epochs_done"] == 0
    assert "out of memory" in (tmp_path / "compare" / "f" / "table.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lenet:0.3"], "expected key=value after lenet:"),
        (["lenet", "--seeds", "0"], "expected --seeds >= 1, got 0"),
        (["vgg17"], "unknown model 'vgg17'"),
        ([], "expected at least one MODEL"),
        (["lenet", "--device", "tpu"], "expected --device auto|cpu|cuda[:N], got 'tpu'"),
        (["lenet", "--seeds", "2", "--seed-list", "1,2,3"],
         "expected --seed-list or --seeds, got both (the list names every seed)"),
        (["lenet", "--price-per-gpu-hour", "-2"], "expected --price-per-gpu-hour > 0 and at most 1e+06, got -2"),
        (["lenet", "--price-per-gpu-hour", "nan"], "expected --price-per-gpu-hour > 0 and at most 1e+06, got nan"),
    ],
)  # fmt: skip
def test_bad_compare_input(tmp_path, args, message):
    result = compare(tmp_path, *args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_missing_dataset_stops_before_any_variant_trains(tmp_path, monkeypatch):
    from cnnbench.errors import DatasetError

    def no_download(name, data_dir):
        raise DatasetError(f"dataset {name} not found and the download failed (no network): expected ...")

    monkeypatch.setattr("cnnbench.data.readers._download", no_download)
    (tmp_path / "none").mkdir()
    result = cli(
        "compare",
        "lenet",
        "cnn_dropout",
        "-d",
        "mnist",
        "--data-dir",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 1
    assert "dataset mnist not found" in result.output
    assert not (tmp_path / "runs.csv").exists()


@pytest.mark.slow
def test_plot_workers_draw_the_figures_a_comparison_draws_itself(tmp_path):
    """On a GPU a comparison's figures are drawn side by side by processes started while it trains: the
    same figures, pixel for pixel, as drawn in-process; a figure's error is raised in the comparison."""
    import dataclasses

    from cnnbench.comparison.saved import load_compare
    from cnnbench.report.plots import PlotWorkers, compare_plots

    result = compare(tmp_path, "lenet", "cnn_dropout", "--name", "t")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "t"
    elsewhere = tmp_path / "drawn-by-workers"
    elsewhere.mkdir()
    loaded = load_compare(folder)
    workers = PlotWorkers(2)
    try:
        compare_plots(dataclasses.replace(loaded, folder=elsewhere), workers)
        pngs = sorted(p.name for p in folder.glob("*.png"))
        assert pngs == [
            "accuracy_per_epoch.png",
            "accuracy_vs_macs.png",
            "accuracy_vs_params.png",
            "accuracy_vs_time.png",
            "epoch_time.png",
        ]
        assert sorted(p.name for p in elsewhere.glob("*.png")) == pngs
        assert sorted(p.name for p in elsewhere.glob("*.svg")) == sorted(p.name for p in folder.glob("*.svg"))
        for name in pngs:  # the curves need the epochs, which a loaded comparison keeps
            assert (elsewhere / name).read_bytes() == (folder / name).read_bytes(), name
        # A folder that is gone: the worker's error, raised here as the in-process drawing raises it.
        with pytest.raises(ResultsError, match=r"could not write .*gone/accuracy_per_epoch.png"):
            compare_plots(dataclasses.replace(loaded, folder=tmp_path / "gone"), workers)
    finally:
        workers.close()


@pytest.mark.parametrize(
    ("device", "cpus", "launcher", "jobs", "started"),
    [("cuda", 16, "inline", 1, 5), ("cuda", 6, "inline", 1, 4), ("cuda", 4, "inline", 1, 2), ("cuda", 3, "inline", 1, 0),
     ("cpu", 16, "inline", 1, 0), ("cuda", 16, "slurm", 1, 0), ("cuda", 16, "local", 1, 0), ("cuda", 16, "inline", 0, 0)],
)  # fmt: skip
def test_plot_workers_start_where_runs_train_on_a_gpu_here_with_cpus_to_spare(monkeypatch, device, cpus, launcher,
                                                                            jobs, started):  # fmt: skip
    from cnnbench.comparison import run as comparing
    from cnnbench.comparison.plan import CompareConfig
    from cnnbench.recipe import TrainConfig
    from cnnbench.report import plots

    made = []
    monkeypatch.setattr("cnnbench.device.usable_cpus", lambda: cpus)
    monkeypatch.setattr(plots, "PlotWorkers", lambda n: made.append(n) or n)
    config = CompareConfig(["lenet"], TrainConfig(model="lenet"), launcher=launcher)
    workers = comparing._plot_workers(config, device, [object()] * jobs)
    assert made == ([started] if started else []) and workers == (started or None)
