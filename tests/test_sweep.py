"""compare --gpus: one worker process per GPU, the longest jobs first, each next job to the GPU that frees."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.errors import DeviceError, InvalidArgumentError
from cnnbench.sweep import Job, Sweep, parse_gpus

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "available", "expected"),
    [("all", 4, ["0", "1", "2", "3"]), ("2", 4, ["0", "1"]), ("0,2,3", 4, ["0", "2", "3"]), ("1", 1, ["0"])],
)
def test_gpu_lists(text, available, expected):
    assert parse_gpus(text, available) == expected


@pytest.mark.parametrize(
    ("text", "available", "error"),
    [("all", 0, DeviceError), ("5", 4, InvalidArgumentError), ("0,0", 4, InvalidArgumentError),
     ("0,7", 4, InvalidArgumentError), ("two", 4, InvalidArgumentError)],
)  # fmt: skip
def test_bad_gpu_lists(text, available, error):
    with pytest.raises(error):
        parse_gpus(text, available)


class FakeRun:
    """A job that ends after ``steps`` polls, or fails with ``code``."""

    def __init__(self, steps, code=0):
        self.steps, self.code = steps, code

    def poll(self):
        self.steps -= 1
        return self.code if self.steps <= 0 else None


def test_longest_jobs_first_and_each_next_job_to_the_gpu_that_frees():
    jobs = [Job(f"j{i}", [], cost) for i, cost in enumerate([1, 5, 3, 4, 2])]
    durations = {"j1": 6, "j3": 1, "j2": 1, "j4": 1, "j0": 1}  # polls until each ends
    sweep = Sweep(
        jobs, ["0", "1"], launch=lambda job, gpu: FakeRun(durations[job.label], 1 if job.label == "j4" else 0)
    )
    sweep.run(interval=0)
    assert [j.label for j in sweep.started] == ["j1", "j3", "j2", "j4", "j0"]  # by cost, longest first
    placed = {j.label: j.gpu for j in jobs}
    assert placed["j1"] == "0" and placed["j3"] == "1"
    assert placed["j2"] == placed["j4"] == placed["j0"] == "1"  # GPU 0 stays busy with the longest job
    assert {j.label: j.returncode for j in jobs} == {
        "j0": 0,
        "j1": 0,
        "j2": 0,
        "j3": 0,
        "j4": 1,
    }  # a crash is kept


def test_jobs_per_gpu_runs_that_many_at_once():
    running, peak = [], []

    class Counted(FakeRun):
        def __init__(self):
            super().__init__(3)
            running.append(self)
            peak.append(len([r for r in running if r.steps > 0]))

    Sweep([Job(f"j{i}", [], 1) for i in range(6)], ["0"], per_gpu=3, launch=lambda job, gpu: Counted()).run(
        interval=0
    )
    assert max(peak) == 3


def test_a_sweep_on_two_workers_end_to_end(tmp_path, monkeypatch):
    # The workers run on the CPU here; on a GPU machine each would see one GPU (CUDA_VISIBLE_DEVICES).
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    factory = tmp_path / "nets.py"
    factory.write_text(
        "import os\nimport torch.nn as nn\n\n"
        "def fails_in_workers(num_classes, input_shape=None):\n"
        "    if 'CUDA_VISIBLE_DEVICES' in os.environ:\n"
        "        raise RuntimeError('a worker crash')\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    args = ["compare", "lenet", "lenet:pool=max,median", f"{factory}:fails_in_workers", "-d", "synthetic", "-i", "3x16x16",
            "-e", "1", "--device", "cpu", "--gpus", "2", "--out", str(tmp_path), "--name", "s", "-q"]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "3 runs on GPUs 0, 1, 1 at a time on each, longest first" in result.output
    tidy = pd.read_csv(tmp_path / "compare" / "s" / "tidy.csv").set_index("variant")
    assert tidy.loc["lenet5", "status"] in ("ok", "not learning") and not tidy.loc["lenet5", "reused"]
    assert tidy.loc["lenet5:pool=max", "epochs_done"] == 1
    assert tidy.loc[f"{factory}:fails_in_workers", "status"] == "failed: worker exited with code 1"
    assert tidy.loc["lenet5:pool=median", "status"].startswith("failed: bad value for option pool")
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 and set(runs.jobs_per_gpu) == {1}
