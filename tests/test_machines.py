"""Every number carries its machine (environment.json, runs.csv's columns); comparisons from several
machines joined into one table (`compare --from A --from B`); `cnnbench diff` of two runs."""

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import cli, compare_tiny, one_line_error, tiny_argv

from cnnbench.stats import welch_interval

pytestmark = pytest.mark.xdist_group("machines")  # its fixtures train once, in one worker
ROOT = Path(__file__).resolve().parent.parent


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_every_run_writes_its_environment_and_runs_csv_carries_its_key_fields(tmp_path):
    done = cli("train", "lenet5", *tiny_argv(), "--out", str(tmp_path))
    assert done.exit_code == 0, done.output
    run = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run / "environment.json").read_text())
    assert manifest["python_version"] == platform.python_version()
    assert manifest["cpu_count"] == os.cpu_count() and manifest["cpus_usable"] == len(os.sched_getaffinity(0))
    assert torch.__version__.startswith(manifest["packages"]["torch"])
    assert manifest["torch_cuda"] == torch.version.cuda
    assert manifest["collect_env"]["os"] and manifest["collect_env"]["libc_version"]
    with open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    assert manifest["cpu_model"] == (model or platform.processor() or platform.machine())
    if (ROOT / ".git").exists() and shutil.which("git"):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert manifest["cnnbench_commit"].removesuffix("-dirty") == head
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # no NVML here: the manifest says no GPUs
        count = 0
    assert manifest["gpu_count"] == count and len(manifest["gpus"]) == count
    if count:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        assert manifest["gpu_power_limit_W"] == pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000
    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    for column in ("python_version", "cpu_model", "cpu_count", "gpu_count", "cnnbench_commit"):
        assert str(row[column]) == str(manifest[column]), column


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    """A comparison made here, and its copy relabelled as an H100's (as a store carried from another
    machine reads): its device and its epoch times changed in its copied rows."""
    root = tmp_path_factory.mktemp("machines")
    done = compare_tiny(root / "here", "lenet5", "cnn_dropout", "--seeds", "2", "--name", "chapter")
    assert done.exit_code == 0, done.output
    shutil.copytree(root / "here", root / "there")
    folder = root / "there" / "compare" / "chapter"
    meta = json.loads((folder / "conditions.json").read_text())
    meta["conditions"].update(gpu_name="NVIDIA H100 80GB HBM3", device="cuda", channels_last=True)
    (folder / "conditions.json").write_text(json.dumps(meta))
    tidy = pd.read_csv(folder / "tidy.csv")
    tidy["median_epoch_s"] = tidy.median_epoch_s / 4
    tidy["final_test_acc"] = tidy.final_test_acc + [1.0, 3.0, 0.0, 2.0]
    tidy.to_csv(folder / "tidy.csv", index=False)
    (folder / "plan.json").unlink()  # a folder carried alone: its rows are the record
    return root, root / "here" / "compare" / "chapter", folder


def test_two_machines_join_into_one_table_and_their_folders_stay_as_they_were(two_machines, tmp_path):
    root, here, there = two_machines
    before = {folder: _tree_hash(folder.parent.parent) for folder in (here, there)}
    done = cli("compare", "--from", str(here), "--from", str(there), "--out", str(tmp_path), "--name", "both")
    assert done.exit_code == 0, done.output
    assert {folder: _tree_hash(folder.parent.parent) for folder in (here, there)} == before
    joined = pd.read_csv(tmp_path / "compare" / "both" / "joined.csv")
    a, b = pd.read_csv(here / "tidy.csv"), pd.read_csv(there / "tidy.csv")
    cpu = next(c.split("|")[0] for c in joined.columns if c.startswith("CPU"))
    h100 = "NVIDIA H100 80GB HBM3"
    for variant in ("lenet5", "cnn_dropout"):
        row = joined[joined.variant == variant].iloc[0]
        mine, theirs = a[a.variant == variant], b[b.variant == variant]
        pooled = [*mine.final_test_acc, *theirs.final_test_acc]
        assert row.final_test_acc_mean == pytest.approx(statistics.fmean(pooled)) and row.seeds == 4
        assert row[f"{h100}|epoch_time_ratio"] == pytest.approx(0.25)
        assert row[f"{cpu}|median_epoch_s"] == pytest.approx(mine.median_epoch_s.median())
        delta, low, high = welch_interval(theirs.final_test_acc.tolist(), mine.final_test_acc.tolist())
        assert (
            row[f"{h100}|delta_acc"],
            row[f"{h100}|delta_low"],
            row[f"{h100}|delta_high"],
        ) == pytest.approx((delta, low, high))
    tidy = pd.read_csv(tmp_path / "compare" / "both" / "tidy.csv")
    assert len(tidy) == 8 and tidy.run_id.nunique() == 4  # the same run ids from two machines: kept apart
    assert tidy.groupby("run_id").source.nunique().eq(2).all()
    table = (tmp_path / "compare" / "both" / "table.md").read_text()
    assert (
        f"{h100}: epoch time / {cpu}'s" in table
        and "0.25x" in table
        and "final test acc (%, all devices)" in table
    )
    assert "(n=4)" in table and (tmp_path / "compare" / "both" / "report.html").is_file()


def test_recipes_that_differ_are_refused_with_the_fields_named_unless_apart(two_machines, tmp_path):
    _root, here, there = two_machines
    other = tmp_path / "other"
    shutil.copytree(there, other)
    meta = json.loads((other / "conditions.json").read_text())
    meta["conditions"].update(epochs=5, lr=0.01)
    (other / "conditions.json").write_text(json.dumps(meta))
    refused = cli("compare", "--from", str(here), "--from", str(other), "--out", str(tmp_path))
    one_line_error(
        refused, "expected comparisons of one recipe to join", "epochs (2 vs 5)", "lr (0.001 vs 0.01)"
    )
    assert not (tmp_path / "compare").exists()
    apart = cli(
        "compare",
        "--from",
        str(here),
        "--from",
        str(other),
        "--out",
        str(tmp_path),
        "--apart",
        "--name",
        "apart",
    )
    assert apart.exit_code == 0, apart.output
    table = (tmp_path / "compare" / "apart" / "table.md").read_text()
    assert "all devices" not in table and "Accuracy is not pooled" in table and "epochs (2 vs 5)" in table
    one_line_error(cli("compare", "--from", str(here), "--from", str(other), "--epochs", "3"),
                   "expected only --name, --out or --apart beside several --from")  # fmt: skip


def test_diff_names_exactly_the_recipe_and_environment_fields_that_differ(tmp_path):
    for lr in ("0.001", "0.002"):
        done = cli("train", "lenet5", *tiny_argv(), "--lr", lr, "--out", str(tmp_path / "a"))
        assert done.exit_code == 0, done.output
    first, second = sorted(
        (tmp_path / "a" / "runs").iterdir(), key=lambda p: json.loads((p / "config.json").read_text())["lr"]
    )
    # the second run's folder carried to another store, as if it had run on a machine with another Python
    carried = tmp_path / "b" / "runs" / second.name
    shutil.copytree(second, carried)
    env = json.loads((carried / "environment.json").read_text())
    env["python_version"] = "3.99.0"
    (carried / "environment.json").write_text(json.dumps(env))
    from cnnbench.store.diff import diff

    result = diff(first.name, carried, tmp_path / "a")
    assert [(k, a, b) for k, a, b in result.recipe] == [("lr", 0.001, 0.002)]
    assert [(k, a, b) for k, a, b in result.environment] == [
        ("python_version", platform.python_version(), "3.99.0")
    ]
    assert [m[0] for m in result.measured] == ["final test accuracy", "median epoch time"]
    shown = cli("diff", first.name, str(carried), "--out", str(tmp_path / "a"), columns=200)
    assert shown.exit_code == 0 and "python_version" in shown.output and "3.99.0" in shown.output
    assert "not judged: 1 seed of this recipe" in shown.output  # lr differs: one seed each, no spread
    one_line_error(cli("diff", "nope", first.name, "--out", str(tmp_path / "a")), "expected a run id of")
