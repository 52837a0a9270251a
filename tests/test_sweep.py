"""compare --gpus: one worker process per GPU, the longest jobs first, each next job to the GPU that frees."""

import os

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


FAKE_MPS = """#!/bin/sh
# stands in for nvidia-cuda-mps-control: logs how it was called
echo "args=$* pipe=$CUDA_MPS_PIPE_DIRECTORY visible=${CUDA_VISIBLE_DEVICES:-none} stdin=$(cat 2>/dev/null | tr -d '\\n')" >> "$MPS_LOG"
"""


def test_several_runs_per_gpu_share_it_through_their_own_mps_daemon(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / "nvidia-cuda-mps-control"
    control.write_text(FAKE_MPS)
    control.chmod(0o755)
    log = tmp_path / "mps.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("MPS_LOG", str(log))
    args = ["compare", "lenet", "lenet:pool=max", "-d", "synthetic", "-i", "3x16x16", "-e", "1", "--device", "cpu",
            "--gpus", "1", "--jobs-per-gpu", "2", "--out", str(tmp_path), "--name", "m", "-q"]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "CUDA MPS on for the sweep" in result.output
    start, stop = log.read_text().splitlines()
    assert start.startswith("args=-d pipe=") and "visible=none" in start  # the daemon sees every GPU
    assert stop.startswith("args= pipe=") and stop.endswith("stdin=quit")  # and is stopped afterwards
    pipe = start.split("pipe=")[1].split()[0]
    assert "cnnbench-mps-" in pipe and not os.path.exists(pipe)  # private folders, removed after
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs.cuda_mps.tolist() == [True, True] and runs.jobs_per_gpu.tolist() == [2, 2]
    assert "runs at once per GPU 2 (CUDA MPS)" in result.output


def test_without_mps_the_sweep_says_the_runs_take_turns():
    from cnnbench.sweep import mps_daemon

    said = []
    with mps_daemon(True, said.append) as env:
        assert env == {}
    assert said and "time-sliced" in said[0]
    with mps_daemon(False, said.append) as env:  # one run per GPU: no daemon, nothing said
        assert env == {} and len(said) == 1


def _console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=200)


def test_one_live_display_shows_each_running_run_and_a_failures_last_lines(monkeypatch):
    from cnnbench import display

    console = _console()
    monkeypatch.setattr(display, "err_console", console)
    view = display.SweepDisplay(live=True)
    a, b = Job("lenet5 seed 0", [], 1, gpu="0"), Job("vgg16 seed 0", [], 2, gpu="1")
    with view:
        view.jobs_planned(3)
        view.job_started(a)
        view.job_started(b)
        view.job_line(a, "lenet5 seed 0 epoch 3/20  train loss 1.2 acc 55.00%")
        view.job_line(b, "RuntimeError: CUDA out of memory")
        lines = [str(row) for row in view._render().columns[0]._cells]
        assert lines[0] == "[bold]runs: 0 of 3 ended, 2 running[/]"
        assert lines[1] == "GPU 0  lenet5 seed 0: 3/20  train loss 1.2 acc 55.00%"
        assert lines[2] == "GPU 1  vgg16 seed 0: running, no epoch ended yet"
        b.returncode = 1
        view.job_ended(b)
        assert [str(r) for r in view._render().columns[0]._cells][
            0
        ] == "[bold]runs: 1 of 3 ended, 1 running[/]"
    text = console.file.getvalue()
    assert "vgg16 seed 0: worker exited with code 1" in text and "CUDA out of memory" in text


def test_in_a_pipe_the_display_passes_every_workers_line_on(monkeypatch):
    import io

    from rich.console import Console

    from cnnbench import display

    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    monkeypatch.setattr(display, "err_console", console)
    view = display.SweepDisplay(live=False)
    job = Job("lenet5 seed 0", [], 1, gpu="0")
    line = "lenet5 seed 0 epoch 1/20  train loss 1.9877 acc 50.08%  test loss 0.8718 acc 94.90%  0.97 s  5,155 img/s"
    view.job_started(job)
    view.job_line(job, line)
    view.job_ended(job)
    assert console.file.getvalue().splitlines() == [line]  # whole, unwrapped, nothing added
