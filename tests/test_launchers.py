"""compare --launcher local|slurm: the runs handed to a scheduler through submitit."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cnnbench import launchers
from cnnbench.cli import app
from cnnbench.launchers import SchedulerOptions

runner = CliRunner()
RECIPE = ["-d", "synthetic", "-i", "3x16x16", "-e", "1", "--device", "cpu"]


def test_local_launcher_runs_two_jobs_end_to_end(tmp_path):
    out = tmp_path / "r"
    # --device auto: local jobs train where this machine's device is (the CPU here)
    result = runner.invoke(app, ["compare", "lenet5", "lenet5:pool=max", "-d", "synthetic", "-i", "3x16x16", "-e", "1",
                                 "--launcher", "local", "--max-parallel", "2", "--name", "loc", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 runs through submitit's local executor" in result.output
    folder = out / "compare" / "loc"
    tidy = pd.read_csv(folder / "tidy.csv")
    assert tidy.status.tolist() == ["ok", "ok"] and not tidy.reused.any()
    plan = json.loads((folder / "plan.json").read_text())
    runs = pd.read_csv(out / "runs.csv")
    # each job named its run, and the table found exactly those
    assert sorted(plan["runs"].values()) == sorted(runs.run_id) == sorted(tidy.run_id)
    assert len(list((folder / "jobs").glob("*_log.out"))) == 2  # submitit's logs, one per job
    # the same command again reuses both runs: nothing is submitted
    again = runner.invoke(app, ["compare", "lenet5", "lenet5:pool=max", "-d", "synthetic", "-i", "3x16x16", "-e", "1",
                                "--launcher", "local", "--name", "loc", "--force", "--out", str(out)])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(out / "runs.csv")) == 2


def test_a_job_that_crashes_becomes_its_row_and_the_others_go_on(tmp_path):
    # A network of the user's own that builds here but crashes inside a scheduler's job.
    nets = tmp_path / "nets.py"
    nets.write_text(
        "import os\nimport torch.nn as nn\n\n"
        "def fragile(num_classes, input_shape=None):\n"
        "    if os.environ.get('SUBMITIT_LOCAL_JOB_ID'):\n"
        "        raise RuntimeError('crashed in the job')\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    out = tmp_path / "r"
    result = runner.invoke(app, ["compare", "lenet5", f"{nets}:fragile", *RECIPE, "--launcher", "local",
                                 "--gpus-per-job", "0", "--name", "f", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output  # one run has a result
    tidy = pd.read_csv(out / "compare" / "f" / "tidy.csv")
    assert tidy.status.tolist() == ["ok", "failed: worker exited with code 1"]


def test_no_wait_then_from_collects_what_the_store_holds(tmp_path, monkeypatch):
    """--no-wait with a scheduler that has not run the jobs yet: every row pending; once a job's run is
    in the store, --from renders it."""
    submitted = []

    class FakeJob:
        def __init__(self, i):
            self.job_id = f"77_{i}"

        def done(self):
            return False

    def fake_submit(launcher, folder, options, argvs):
        submitted.extend(argvs)
        return [FakeJob(i) for i in range(len(argvs))]

    monkeypatch.setattr(launchers, "submit", fake_submit)
    out = tmp_path / "r"
    result = runner.invoke(app, ["compare", "lenet5", "lenet5:pool=max", *RECIPE, "--launcher", "slurm",
                                 "--no-wait", "--name", "nw", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = out / "compare" / "nw"
    assert "cnnbench compare --from" in result.output and str(folder) in result.output.replace("\n", "")
    assert pd.read_csv(folder / "tidy.csv").status.tolist() == ["pending", "pending"]
    assert json.loads((folder / "jobs.json").read_text())["job_ids"] == ["77_0", "77_1"]
    # a job runs (here: the first job's own command, as the scheduler would run it)
    first = submitted[0]
    assert first[0] == "train" and "--run-name" in first
    assert first[first.index("--device") + 1] == "cpu"  # as asked (--device auto asks a node's GPU)
    code = launchers.run_cnnbench(first)
    assert code == 0
    later = runner.invoke(app, ["compare", "--from", str(folder)])
    assert later.exit_code == 0, later.output
    assert pd.read_csv(folder / "tidy.csv").status.tolist() == ["ok", "pending"]


def test_slurm_gets_the_jobs_scheduling_options(tmp_path, monkeypatch):
    made = {}

    class FakeExecutor:
        def __init__(self, folder, cluster):
            made.update(folder=folder, cluster=cluster)

        def update_parameters(self, **params):
            made["params"] = params

    import submitit

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    monkeypatch.setattr(launchers.shutil, "which", lambda name: "/usr/bin/sbatch")
    options = SchedulerOptions(partition="gpu", gpus_per_job=2, time_min=30, max_parallel=4)
    launchers.executor("slurm", tmp_path, options)
    assert made["cluster"] == "slurm"
    assert made["params"] == {"timeout_min": 30, "gpus_per_node": 2, "tasks_per_node": 1, "nodes": 1,
                              "name": "cnnbench", "slurm_partition": "gpu", "slurm_array_parallelism": 4}  # fmt: skip
    # a job with two GPUs trains data-parallel on both
    assert launchers.job_argv(["train", "vgg16"], options)[-2:] == ["--gpus", "all"]
    assert launchers.job_argv(["train", "vgg16"], SchedulerOptions(gpus_per_job=1)) == ["train", "vgg16"]


def test_slurm_without_slurm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(launchers.shutil, "which", lambda name: None)
    result = runner.invoke(app, ["compare", "lenet5", *RECIPE, "--launcher", "slurm", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "expected Slurm for --launcher slurm (sbatch on PATH), got none" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--launcher", "local", "--gpus", "2"], "expected --gpus with --launcher inline"),
     (["--no-wait"], "expected --no-wait with --launcher local or slurm"),
     (["--launcher", "local", "--max-parallel", "0"], "expected --max-parallel >= 1")],
)  # fmt: skip
def test_launcher_options_checked_before_work(tmp_path, args, message):
    result = runner.invoke(app, ["compare", "lenet5", *RECIPE, *args, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "runs.csv").exists()


@pytest.mark.parametrize(("gpus_per_job", "device"), [("1", "cuda"), ("0", "cpu")])
def test_slurm_jobs_ask_for_a_nodes_gpu_unless_they_ask_for_none(tmp_path, monkeypatch, gpus_per_job, device):
    submitted = []

    class Pending:
        job_id = "5_0"

        def done(self):
            return False

    monkeypatch.setattr(launchers, "submit", lambda launcher, folder, options, argvs: [
        submitted.extend(argvs) or Pending() for _ in argvs])  # fmt: skip
    result = runner.invoke(app, ["compare", "lenet5", "-d", "synthetic", "-e", "1", "--launcher", "slurm",
                                 "--gpus-per-job", gpus_per_job, "--no-wait", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    argv = submitted[0]
    assert argv[argv.index("--device") + 1] == device


def test_ctrl_c_while_waiting_for_slurm_leaves_the_jobs_running_and_renders_what_ended(tmp_path, monkeypatch):
    class Waiting:
        job_id = "9_0"

        def done(self):
            raise KeyboardInterrupt  # the user stops waiting at the first poll

        def cancel(self, check=True):
            raise AssertionError("a Slurm job must not be cancelled by Ctrl-C on the waiting side")

    monkeypatch.setattr(
        launchers, "submit", lambda launcher, folder, options, argvs: [Waiting() for _ in argvs]
    )
    result = runner.invoke(app, ["compare", "lenet5", *RECIPE, "--launcher", "slurm", "--name", "w",
                                 "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped waiting; the jobs go on in Slurm" in result.output
    assert pd.read_csv(tmp_path / "compare" / "w" / "tidy.csv").status.tolist() == ["pending"]
