"""compare --gpus: one worker process per GPU, the longest jobs first, each next job to the GPU that frees;
several on one GPU under a CUDA MPS daemon of the comparison's own; one display for all of them."""

import os

import pandas as pd
import pytest
from conftest import cli, tiny_argv

from cnnbench.device import parse_gpus
from cnnbench.errors import DeviceError, InvalidArgumentError
from cnnbench.launchers.base import Job, Outcome
from cnnbench.recipe import TrainConfig

SYNTH = tiny_argv(epochs=1, synthetic_size=96, batch_size=128)


@pytest.mark.parametrize(
    ("text", "available", "expected"),
    [("all", 4, ["0", "1", "2", "3"]), ("2", 4, ["0", "1"]), ("0,2,3", 4, ["0", "2", "3"]), ("1", 1, ["0"])],
)
def test_gpu_lists(text, available, expected):
    assert parse_gpus(text, available) == expected


@pytest.mark.parametrize(
    ("text", "available", "error"),
    [("all", 0, DeviceError), ("5", 4, InvalidArgumentError), ("0,0", 4, InvalidArgumentError),
     ("0,7", 4, InvalidArgumentError), ("two", 4, InvalidArgumentError), ("", 4, InvalidArgumentError)],
)  # fmt: skip
def test_bad_gpu_lists(text, available, error):
    with pytest.raises(error):
        parse_gpus(text, available)


def test_a_sweep_on_two_workers_end_to_end(tmp_path, monkeypatch, jobs_where):
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
    args = ["compare", "lenet", "lenet:pool=max,median", f"{factory}:fails_in_workers", *SYNTH, "--gpus", "2",
            "--out", str(tmp_path), "--name", "s"]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "3 runs on GPUs 0, 1, 1 at a time on each, longest first" in result.output
    tidy = pd.read_csv(tmp_path / "compare" / "s" / "tidy.csv").set_index("variant")
    assert tidy.loc["lenet5", "status"] in ("ok", "not learning") and not tidy.loc["lenet5", "reused"]
    assert tidy.loc["lenet5:pool=max", "epochs_done"] == 1
    assert tidy.loc[f"{factory}:fails_in_workers", "status"].startswith("failed: worker exited with code 1: ")
    assert "a worker crash" in tidy.loc[f"{factory}:fails_in_workers", "status"]
    assert tidy.loc["lenet5:pool=median", "status"].startswith("failed: bad value for option pool")
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 and set(runs.jobs_per_gpu) == {1}
    logs = sorted((tmp_path / "compare" / "s" / "jobs").glob("*.log"))
    assert len(logs) == 3 and any("a worker crash" in p.read_text() for p in logs)  # each worker's own log


FAKE_MPS = """#!/bin/sh
# stands in for nvidia-cuda-mps-control: logs how it was called
echo "args=$* pipe=$CUDA_MPS_PIPE_DIRECTORY visible=${CUDA_VISIBLE_DEVICES:-none} stdin=$(cat 2>/dev/null | tr -d '\\n')" >> "$MPS_LOG"
"""


def test_several_runs_per_gpu_share_it_through_their_own_mps_daemon(tmp_path, monkeypatch, jobs_here):
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
    args = ["compare", "lenet", "lenet:pool=max", *SYNTH, "--gpus", "1", "--jobs-per-gpu", "2", "--out", str(tmp_path),
            "--name", "m"]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "CUDA MPS on for the sweep" in result.output
    start, stop = log.read_text().splitlines()
    assert start.startswith("args=-d pipe=") and "visible=none" in start  # the daemon sees every GPU
    assert stop.startswith("args= pipe=") and stop.endswith("stdin=quit")  # and is stopped afterwards
    pipe = start.split("pipe=")[1].split()[0]
    assert "cnnbench-mps-" in pipe and not os.path.exists(pipe)  # private folders, removed after
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs.cuda_mps.tolist() == [True, True] and runs.jobs_per_gpu.tolist() == [2, 2]
    assert "runs at once per GPU 2" in result.output and "CUDA MPS on" in result.output


def test_without_mps_the_sweep_says_the_runs_take_turns():
    from cnnbench.launchers.workers import mps_daemon

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


def _job(label, gpu):
    return Job(label, TrainConfig(model="lenet5"), 1, gpu=gpu)


def test_one_live_display_shows_each_running_run_and_a_failures_last_lines(monkeypatch):
    from cnnbench.report import progress

    console = _console()
    monkeypatch.setattr(progress, "err_console", console)
    view = progress.JobsDisplay(live=True)
    a, b = _job("lenet5 seed 0", "0"), _job("vgg16 seed 0", "1")
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
        view.job_ended(b, Outcome(ended=True, returncode=1))
        assert [str(r) for r in view._render().columns[0]._cells][
            0
        ] == "[bold]runs: 1 of 3 ended, 1 running[/]"
    text = console.file.getvalue()
    assert "vgg16 seed 0: failed: worker exited with code 1" in text and "CUDA out of memory" in text


def test_in_a_pipe_the_display_passes_every_workers_line_on(monkeypatch):
    import io

    from rich.console import Console

    from cnnbench.report import progress

    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    monkeypatch.setattr(progress, "err_console", console)
    view = progress.JobsDisplay(live=False)
    job = _job("lenet5 seed 0", "0")
    line = "lenet5 seed 0 epoch 1/20  train loss 1.9877 acc 50.08%  test loss 0.8718 acc 94.90%  0.97 s  5,155 img/s"
    view.job_started(job)
    view.job_line(job, line)
    view.job_ended(job, Outcome(ended=True, returncode=0))
    assert console.file.getvalue().splitlines() == [line]  # whole, unwrapped, nothing added
