"""One recipe flows one way: every field survives JSON, the command line and every launcher unchanged, with
the same conditions hash; earlier runs' hashes stay what they were."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import cli, command_line

from cnnbench.fields import options_of
from cnnbench.recipe import CONDITION_FIELDS, SHARED_CONDITIONS, TrainConfig
from cnnbench.store.tables import DEFAULT_RESULTS_DIR
from cnnbench.training.conditions import planned_conditions

# Every field of the recipe at a value other than its default. A new field fails the first test until it
# is added here, and so gets its round trip through JSON, the command line and the launchers.
NON_DEFAULT = {
    "model": "cnn_dropout", "options": {"dropout": "0.3", "pool": "avg"}, "dataset": "synthetic",
    "data_dir": Path("/data/elsewhere"), "epochs": 7, "batch_size": 48, "optimizer": "sgd", "lr": 0.05,
    "momentum": 0.8, "nesterov": True, "weight_decay": 0.002, "scheduler": "cosine", "step_size": 5, "gamma": 0.1,
    "warmup_epochs": 2, "label_smoothing": 0.1, "precision": "bf16", "channels_last": True, "compile": True,
    "device": "cpu", "seed": 11, "out": Path("/tmp/results-elsewhere"), "augment": "rrc", "eval_batch_size": 250,
    "checkpoints": False, "warmup_steps": 1, "cuda_graphs": False, "input_size": (3, 20, 20), "num_classes": 7,
    "synthetic_size": 640, "deterministic": True, "skip_bad_images": True, "val_split": 0.2, "target_acc": 55.0,
    "world_size": 2, "run_name": "my-run",
    "jobs_per_gpu": 3, "aux_loss": 0.3, "cache_size": 40, "placement": "host",
    "cudnn_autotune": True, "tensorboard": Path("/tmp/tb-elsewhere"),
}  # fmt: skip


def test_the_non_default_recipe_names_every_field_at_another_value():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(NON_DEFAULT) == set(fields)
    default = TrainConfig(model="lenet5")
    for name, value in NON_DEFAULT.items():
        assert getattr(default, name) != value, name


def test_every_field_survives_json_with_its_conditions_hash():
    recipe = TrainConfig(**NON_DEFAULT)
    text = json.dumps(recipe.to_dict())
    back = TrainConfig.from_dict(json.loads(text))
    assert back == recipe
    assert planned_conditions(back)["conditions_hash"] == planned_conditions(recipe)["conditions_hash"]
    # as a run's config.json keeps it: without where its files, data and logs are
    record = recipe.to_dict(location=False)
    assert "out" not in record and "data_dir" not in record and "tensorboard" not in record
    assert TrainConfig.from_dict(record) == dataclasses.replace(
        recipe, out=DEFAULT_RESULTS_DIR, data_dir=None, tensorboard=None
    )


def test_every_field_a_user_sets_has_an_option_and_survives_the_command_line():
    recipe = TrainConfig(
        **{**NON_DEFAULT, "world_size": 1, "data_dir": None}
    )  # set by torchrun; a real folder
    argv = command_line(recipe, "train")
    result = cli("train", recipe.model, *argv, "--dry-run")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert TrainConfig.from_dict(printed["recipe"]) == recipe
    assert printed["conditions_hash"] == planned_conditions(recipe)["conditions_hash"]
    settable = {f.name for f, _ in options_of(TrainConfig, "train")}
    assert set(NON_DEFAULT) - settable == {"model", "world_size"}  # the argument, and torchrun's count


def test_a_job_file_overrides_and_typos_are_checked(tmp_path):
    from cnnbench.recipe import write_job

    job = write_job(tmp_path / "j.json", "x", TrainConfig(model="lenet5", lr=0.02, epochs=3))
    result = cli("train", "--config", str(job), "--epochs", "5", "--dry-run")
    assert result.exit_code == 0, result.output
    recipe = TrainConfig.from_dict(json.loads(result.output)["recipe"])
    assert (recipe.lr, recipe.epochs) == (0.02, 5)
    (tmp_path / "typo.json").write_text(json.dumps({"recipe": {"model": "lenet5", "learning_rate": 0.1}}))
    bad = cli("train", "--config", str(tmp_path / "typo.json"))
    assert bad.exit_code == 1 and "got unknown 'learning_rate'" in bad.output


def test_resume_takes_only_what_a_continued_run_may_change(tmp_path):
    result = cli("train", "--resume", "r", "--lr", "0.1", "--seed", "3", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "expected only --epochs, --device and --out with --resume" in result.output
    assert "got --lr --seed" in " ".join(result.output.split())


# The conditions hashes of recipes as runs recorded them before these fields existed (computed with the
# code that recorded them): the same recipes must find those runs again.
RECORDED_HASHES = {
    "f6722280712a429e": dict(model="lenet", device="cpu"),
    "03e0df88582df66f": dict(model="resnet", dataset="synthetic", input_size=(3, 16, 16), num_classes=10,
                             synthetic_size=256, device="cpu", epochs=2, batch_size=64),
    "a5f5769e6a811122": dict(model="cnn_dropout", options={"dropout": "0.3"}, optimizer="sgd", lr=0.05, momentum=0.8,
                             step_size=5, gamma=0.1, label_smoothing=0.1, augment=False, device="cpu", seed=3,
                             deterministic=True),
    "c8a9f0a10b51b1ca": dict(model="vgg16", dataset="fashion-mnist", device="cpu", precision="bf16", channels_last=True,
                             compile=True, scheduler="cosine", weight_decay=0.0),
}  # fmt: skip


@pytest.mark.parametrize("expected", RECORDED_HASHES)
def test_earlier_recipes_keep_their_conditions_hash(expected):
    assert planned_conditions(TrainConfig(**RECORDED_HASHES[expected]))["conditions_hash"] == expected


def test_conditions_come_from_the_field_metadata():
    assert {"lr", "momentum", "nesterov", "warmup_epochs", "augment"} <= set(CONDITION_FIELDS)
    assert not {"out", "data_dir", "device", "run_name", "jobs_per_gpu", "checkpoints"} & set(
        CONDITION_FIELDS
    )
    assert {"jobs_per_gpu", "cuda_mps", "torch_version", "momentum"} <= set(SHARED_CONDITIONS)
    assert not {"model", "options", "seed"} & set(SHARED_CONDITIONS)


def test_a_warm_up_ramps_the_rate_then_hands_over_to_the_schedule():
    from cnnbench.training.step import make_optimizer

    params = [torch.nn.Parameter(torch.zeros(3))]
    recipe = TrainConfig(model="x", lr=0.1, warmup_epochs=2, step_size=2, gamma=0.5, epochs=6)
    opt, schedule = make_optimizer(recipe, params, 1, False, "cpu")
    rates = []
    for _ in range(6):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.05, 0.05])


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"nesterov": True}, "expected --nesterov with --optimizer sgd"),
     ({"warmup_epochs": 20}, "expected --warmup-epochs in [0, 20)"),
     ({"warmup_epochs": 1, "scheduler": "onecycle"}, "expected --warmup-epochs 0 with --scheduler onecycle"),
     ({"momentum": 1.5}, "expected --momentum in [0, 1)"), ({"gamma": 0.0}, "expected --gamma in (0, 1]"),
     ({"jobs_per_gpu": 0}, "expected --jobs-per-gpu >= 1"), ({"synthetic_size": 0}, "expected --synthetic-size >= 1")],
)  # fmt: skip
def test_a_recipe_that_cannot_run_is_one_line(changes, message):
    import re

    from cnnbench.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        TrainConfig(model="lenet5", **changes).validate()


# --- the recipe a job carries arrives whole wherever it trains ------------------------------------------

# Non-default in everything a CPU run can carry, and small: 64 images of 16x16, 2 epochs.
TRAINED = ["-d", "synthetic", "-i", "3x16x16", "--num-classes", "5", "--synthetic-size", "64", "-e", "2", "-b", "16",
           "--optimizer", "sgd", "--lr", "0.02", "--momentum", "0.8", "--nesterov", "--weight-decay", "0.001",
           "--step-size", "1", "--gamma", "0.3", "--warmup-epochs", "1", "--label-smoothing", "0.1", "--augment",
           "flip", "--data-placement", "host", "--seed", "5", "--eval-batch-size", "32", "--warmup-steps", "1", "--no-cuda-graphs", "--channels-last",
           "--deterministic", "--val-split", "16", "--target-acc", "30", "--device", "cpu", "-q"]  # fmt: skip


def _launched(tmp_path, name, *launcher):
    out = tmp_path / name
    result = cli("compare", "lenet5:pool=max", *TRAINED, *launcher, "--name", "c", "--out", str(out), columns=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "compare" / "c" / "plan.json").read_text())
    (run,) = plan["runs"]
    row = pd.read_csv(out / "runs.csv").iloc[0]
    saved = json.loads((out / "runs" / run["run_id"] / "config.json").read_text())
    planned = TrainConfig.from_dict(plan["compare"]["base"]).replace(
        model="lenet5", options={"pool": "max"}, seed=5, run_name=run["run_id"]
    )
    return planned, TrainConfig.from_dict(saved["config"]), row, run


@pytest.mark.parametrize(
    "launcher",
    [[], ["--launcher", "local", "--gpus-per-job", "0"], ["--gpus", "1"],
     pytest.param(["--launcher", "slurm", "--gpus-per-job", "0"], marks=[pytest.mark.xdist_group("slurm"), pytest.mark.slurm])],
    ids=["inline", "submitit-local", "gpu-workers", "slurm"],
)  # fmt: skip
def test_a_comparisons_run_trains_the_recipe_it_planned(tmp_path, monkeypatch, request, launcher):
    # The job file's round trip is what is tested: the local and GPU workers' jobs run in this process
    # (their processes are run end to end in test_launchers and test_gpu_workers), Slurm's on a real one-node cluster.
    request.getfixturevalue("slurm" if "slurm" in launcher else "jobs_here")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # the workers run on the CPU here
    planned, trained, row, run = _launched(tmp_path, "r", *launcher)
    assert trained == planned.replace(
        out=DEFAULT_RESULTS_DIR, data_dir=None, world_size=1
    )  # config.json keeps no paths
    assert (trained.momentum, trained.step_size, trained.gamma, trained.nesterov) == (0.8, 1, 0.3, True)
    assert row.conditions_hash == run["conditions_hash"] == planned_conditions(planned)["conditions_hash"]
    assert row.status in ("ok", "not learning") and row.epochs_done == 2
    lrs = pd.read_csv(Path(planned.out) / "runs" / run["run_id"] / "epochs.csv").lr.tolist()
    assert lrs == pytest.approx([0.01, 0.02])  # one warm-up epoch at half the rate, then the schedule


# --- summary, profile and pool: options from their settings' fields, under the names users typed -------

# Every option these commands took before their options were declared from the settings' fields.
OPTIONS_BEFORE = {
    "summary": ["-o", "--option", "-i", "--input-size", "-d", "--dataset", "--num-classes", "--depth", "-f", "--format",
                "-b", "--batch-size", "--precision", "--out", "--repair", "--wide"],
    "profile": ["-o", "--option", "-i", "--input-size", "-d", "--dataset", "--num-classes", "--batch-sizes", "--gpus",
                "--mode", "--precision", "--channels-last", "--no-channels-last", "--compile", "--device", "--warmup",
                "--iters", "--layers", "--trace", "--grads", "-f", "--format", "--out", "--repair", "--wide"],
    "pool": ["-k", "--kernel", "-s", "--stride", "--image", "-d", "--dataset", "--data-dir", "-f", "--format", "--plot"],
}  # fmt: skip


@pytest.mark.parametrize("command", OPTIONS_BEFORE)
def test_every_option_of_summary_profile_and_pool_keeps_its_name(command):
    import re

    shown = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cli(command, "--help").output))
    assert set(OPTIONS_BEFORE[command]) <= shown, sorted(set(OPTIONS_BEFORE[command]) - shown)


def test_summary_profile_and_pool_take_their_options_as_typed(tmp_path):
    summary = cli("summary", "lenet5", "-o", "pool=max", "-i", "1x28x28", "-d", "mnist", "--num-classes", "10",
                  "--depth", "1", "-b", "4", "--precision", "bf16", "-f", "json", "--out", tmp_path)  # fmt: skip
    assert summary.exit_code == 0, summary.output
    data = json.loads(summary.output)
    assert (data["options"], data["input_size"], data["memory"]["batch_size"]) == (
        {"pool": "max"},
        "1x28x28",
        4,
    )
    assert data["memory"]["precision"] == "bf16"
    profile = cli("profile", "lenet5", "-o", "pool=max", "-i", "1x28x28", "--num-classes", "7", "--batch-sizes", "2,3",
                  "--mode", "infer", "--precision", "fp32", "--no-channels-last", "--device", "cpu", "--warmup", "1",
                  "--iters", "2", "-f", "json", "--out", tmp_path)  # fmt: skip
    assert profile.exit_code == 0, profile.output
    rows = pd.read_csv(tmp_path / "profile.csv")
    assert (
        rows.batch_size.tolist() == [2, 3] and set(rows["mode"]) == {"infer"} and set(rows.num_classes) == {7}
    )
    pooled = cli("pool", "-k", "3", "-s", "1", "-f", "json")
    assert pooled.exit_code == 0 and json.loads(pooled.output)["kernel"] == 3
    assert "expected --depth >= 1" in cli("summary", "lenet5", "--depth", "0", "--out", tmp_path).output


def test_a_long_help_comes_in_sections_by_subject_and_loses_no_option():
    import re

    from cnnbench.cli.options import PANELS

    text = cli("compare", "--help", columns=100).output
    titles = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Z][\w ]+:", line)]
    assert titles == ["Arguments", "Options", *(p for p in PANELS if p != "Memory estimate")]
    recipe = text.split("\nRecipe:\n")[1].split("\nSpeed:\n")[0]
    assert "--lr X" in recipe and "--epochs N" in recipe and "--precision" not in recipe
    for field in ("lr", "seeds", "launcher", "out", "precision", "dataset"):  # every field's option, once
        assert sum(field in names for names in PANELS.values()) == 1
    options = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text))
    assert len(options) >= 62 and {"--repair", "--wide", "--quiet", "--from", "--gpus-per-job"} <= options
    summary = cli("summary", "--help", columns=100).output  # trains nothing: its batch is the estimate's
    estimate = summary.split("\nMemory estimate:\n")[1].split("\nOutput:\n")[0]
    assert "--batch-size N" in estimate and "--precision" in estimate and "\nRecipe:" not in summary
