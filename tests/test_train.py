"""cnnbench train: CSV contents, resume, interruption, statuses, real data, bad input."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import InterruptAt, cli, tiny_argv, tiny_recipe

from cnnbench.training.resuming import resume
from cnnbench.training.trainer import train

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_synthetic_run_writes_epoch_rows_and_a_run_summary(results_dir):
    result = train(
        tiny_recipe(results_dir, epochs=3, batch_size=64, synthetic_size=512, input_size=(3, 32, 32))
    )
    assert result.status == "ok"
    epochs = pd.read_csv(result.run_dir / "epochs.csv")
    assert list(epochs.columns) == [
        "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s", "eval_time_s",
        "images_per_s", "peak_gpu_mem_MiB", "val_loss", "val_acc", "energy_J", "eval_energy_J",
    ]  # fmt: skip
    assert epochs.epoch.tolist() == [1, 2, 3]
    assert (epochs.epoch_time_s > 0).all()
    assert epochs.images_per_s.tolist() == pytest.approx((512 / epochs.epoch_time_s).tolist())
    assert epochs.lr.tolist() == [1e-3] * 3  # StepLR(20, 0.5) has not stepped yet
    assert epochs.test_acc.iloc[-1] > 30  # the synthetic classes are learnable (chance: 10%)
    runs = pd.read_csv(results_dir / "runs.csv")
    row = runs.iloc[0]
    assert row.run_id == result.run_id and row.status == "ok" and row.epochs_done == 3
    assert row.best_test_acc == epochs.test_acc.max()
    assert row.final_test_acc == epochs.test_acc.iloc[-1]
    assert row.median_epoch_s == pytest.approx(epochs.epoch_time_s.median())
    assert row.total_train_s == pytest.approx(epochs.epoch_time_s.sum())
    assert (row.model, row.dataset, row.params, row.forward_MACs_per_sample) == (
        "lenet5",
        "synthetic",
        62_006,
        651_720,
    )
    for column in ("optimizer", "lr", "weight_decay", "scheduler", "precision", "seed", "device", "gpu_name",
                   "torch_version", "cuda_version", "date", "batch_size", "conditions_hash"):  # fmt: skip
        assert column in runs.columns
    assert (row.optimizer, row.batch_size, row.precision, row.seed) == ("adam", 64, "fp32", 0)
    # On the CPU the defaults are NCHW and the multi-tensor (foreach) Adam; CUDA's are in test_gpu.py.
    assert (row.channels_last, row.optimizer_impl) == (False, "foreach")
    assert json.loads((result.run_dir / "config.json").read_text())["model"] == "lenet5"
    assert (result.run_dir / "last.pt").exists() and (result.run_dir / "best.pt").exists()


def test_interrupt_keeps_finished_epochs_and_resume_is_identical(tmp_path):
    # Dropout and augmentation draw random numbers every step: a resume must restore every generator.
    small = dict(model="cnn_dropout", epochs=3, batch_size=32, synthetic_size=128, augment="crop")
    straight = train(tiny_recipe(tmp_path / "a", **small))
    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_recipe(out, run_name="r", **small), InterruptAt(3))
    kept = pd.read_csv(out / "runs" / "r" / "epochs.csv")
    assert kept.epoch.tolist() == [1, 2]
    assert torch.load(out / "runs" / "r" / "last.pt", weights_only=False)["epoch"] == 2
    assert pd.read_csv(out / "runs.csv").status.tolist() == ["interrupted"]
    resumed = resume(out, "r")
    assert resumed.status == "ok"
    cols = ["train_loss", "train_acc", "test_loss", "test_acc", "lr"]
    a = pd.DataFrame([vars(r) for r in straight.epochs])[cols]
    b = pd.read_csv(out / "runs" / "r" / "epochs.csv")[cols]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
    # The run's one row, replaced by the resumed run (never a second row for one run).
    runs = pd.read_csv(out / "runs.csv")
    assert (
        runs.run_id.tolist() == ["r"] and runs.status.tolist() == ["ok"] and runs.epochs_done.tolist() == [3]
    )


def test_divergence_stops_the_run(results_dir):
    result = train(
        tiny_recipe(
            results_dir,
            batch_size=64,
            synthetic_size=512,
            input_size=(3, 32, 32),
            optimizer="sgd",
            lr=1e12,
            epochs=5,
        )
    )
    assert result.status == "diverged"
    assert len(result.epochs) < 5
    assert pd.read_csv(results_dir / "runs.csv").status.tolist() == ["diverged"]


def test_a_run_at_chance_is_flagged_not_learning(results_dir):
    result = train(
        tiny_recipe(
            results_dir, batch_size=64, synthetic_size=512, input_size=(3, 32, 32), lr=1e-12, epochs=1, seed=1
        )
    )
    assert result.status == "not learning"


@pytest.mark.parametrize(
    "flag, expected", [([], False), (["--channels-last"], True), (["--no-channels-last"], False)]
)
def test_channels_last_flag_is_recorded(results_dir, flag, expected):
    result = cli("train", "lenet", *tiny_argv(epochs=1), "--no-checkpoint", *flag, "--out", str(results_dir))
    assert result.exit_code == 0, result.output
    assert pd.read_csv(results_dir / "runs.csv").iloc[0].channels_last == expected


def train_one_epoch(results_dir, *args):
    """`cnnbench train lenet` for one epoch on real data; its row of runs.csv."""
    result = cli("train", "lenet", *args, "-e", "1", "--out", str(results_dir), "-q", "--no-checkpoint")
    assert result.exit_code == 0, result.output
    return pd.read_csv(results_dir / "runs.csv").iloc[0]


@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
@pytest.mark.slow
def test_lenet_learns_fashion_mnist_in_one_epoch(results_dir):
    row = train_one_epoch(results_dir, "-d", "fashion-mnist")
    assert row.status == "ok" and row.best_test_acc > 70.0
    assert row.data_source == str(FASHION)


@pytest.mark.integration
@pytest.mark.skipif(
    "CNNBENCH_CIFAR10_DIR" not in os.environ, reason="set CNNBENCH_CIFAR10_DIR to a CIFAR-10 copy"
)
def test_lenet_on_the_real_cifar10_copy(results_dir):
    row = train_one_epoch(results_dir, "--data-dir", os.environ["CNNBENCH_CIFAR10_DIR"])
    assert (row.train_samples, row.test_samples, row.params) == (50_000, 10_000, 62_006)
    assert row.best_test_acc > 30.0  # chance is 10%


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "0"], "expected --epochs >= 1, got 0"),
        (["-b", "0"], "expected --batch-size >= 1, got 0"),
        (["-d", "imagenet2"], "unknown dataset 'imagenet2'"),
        (["--lr", "-1"], "expected --lr > 0"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "expected"),
        (["--device", "tpu"], "expected --device auto|cpu|cuda[:N], got 'tpu'"),
        (["-d", "mnist", "--data-dir", "{tmp}"], "dataset mnist not found"),
        (["-d", "mnist", "--data-dir", "{tmp}"], "point --data-dir or $CNNBENCH_DATA_DIR at the folder"),
        (["-d", "mnist", "--data-dir", "{tmp}/none"], "expected --data-dir to be an existing folder"),
        (["--out", "/proc/cnnbench"], "expected a writable output directory"),
    ],
)
def test_bad_train_input_is_one_line_and_exit_1(args, message, tmp_path, monkeypatch):
    # No network: make the torchvision download fail fast.
    monkeypatch.setattr("cnnbench.data.readers._download", _no_download)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "r")]
    result = cli("train", "lenet", "-q", *out, *args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def _no_download(name, data_dir):
    from cnnbench.data.readers import _expected_files
    from cnnbench.errors import DatasetError

    raise DatasetError(
        f"dataset {name} not found and the download failed (no network): expected {_expected_files(name, data_dir)}"
    )


def test_progress_output_shows_each_epoch(results_dir):
    result = cli(
        "train",
        "lenet",
        "-d",
        "synthetic",
        "-i",
        "3x16x16",
        "-e",
        "2",
        "--device",
        "cpu",
        "--out",
        str(results_dir),
        columns=200,
    )
    assert result.exit_code == 0, result.output
    # Every epoch line names the run's model and seed (piped logs of several runs stay readable).
    assert "lenet5 seed 0 epoch 1/2" in result.output and "lenet5 seed 0 epoch 2/2" in result.output
    assert "ok lenet5-synthetic-s0" in result.output and "median epoch" in result.output
    assert result.output.count("training on the CPU") == 1


@pytest.mark.parametrize(
    ("options", "device", "captured"),
    [
        ({}, "cuda", True),
        ({"precision": "fp16"}, "cuda", True),  # loss scaling stays on the device with fused Adam
        ({"precision": "bf16", "optimizer": "adamw", "scheduler": "cosine"}, "cuda:0", True),
        ({"optimizer": "sgd"}, "cuda", False),  # its LR is a Python float the graph cannot see change
        ({"scheduler": "onecycle"}, "cuda", False),  # changes betas every step
        ({"cuda_graphs": False}, "cuda", False),
        ({}, "cpu", False),
    ],
)
def test_which_runs_replay_a_captured_cuda_graph(tmp_path, options, device, captured):
    from cnnbench.training.step import uses_cuda_graphs

    assert (
        uses_cuda_graphs(
            tiny_recipe(
                tmp_path, epochs=3, batch_size=64, synthetic_size=512, input_size=(3, 32, 32), **options
            ),
            device,
        )
        is captured
    )
