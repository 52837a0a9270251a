"""Whatever stops a run, it ends with a status and keeps what it measured: SIGTERM, SIGHUP, Ctrl-C of a
comparison's jobs, a scheduler's time limit, a data-parallel rank that is killed. Real processes and
real signals, on the CPU."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from conftest import RECIPE, cnnbench_processes, start, wait_until

# Every test here starts cnnbench processes: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow


def epochs_written(out):
    return lambda: any(len(p.read_text().splitlines()) >= 2 for p in out.glob("runs/*/epochs.csv"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_run_ended_by_a_signal_is_interrupted_keeps_its_epochs_and_resumes(tmp_path, slow, sig):
    out = tmp_path / "r"
    process = start("train", slow, *RECIPE, "-e", "200", "--run-name", "r", "--out", out)
    wait_until(epochs_written(out))
    process.send_signal(sig)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + sig, output
    assert f"stopped by {sig.name}: run r keeps its finished epochs" in " ".join(output.split())
    assert "Traceback" not in output
    row = pd.read_csv(out / "runs.csv").iloc[0]
    done = len(pd.read_csv(out / "runs" / "r" / "epochs.csv"))
    assert row.status == "interrupted" and row.epochs_done == done >= 1
    resumed = subprocess.run([sys.executable, "-m", "cnnbench", "train", "--resume", "r", "-e", str(done + 1),
                              "--out", str(out), "-q"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert pd.read_csv(out / "runs.csv").iloc[0].status == "ok"


def test_a_run_under_nohup_trains_on_when_its_terminal_closes(tmp_path, slow):
    """``nohup cnnbench ...`` is how a run outlives its terminal: the SIGHUP of a closed terminal or SSH
    session is ignored as nohup asked, and the run trains on until something else stops it."""
    out = tmp_path / "r"
    process = start("train", slow, *RECIPE, "-e", "200", "--run-name", "r", "--out", out, nohup=True)
    epochs = out / "runs" / "r" / "epochs.csv"
    wait_until(epochs_written(out))
    process.send_signal(signal.SIGHUP)
    at_hangup = len(epochs.read_text().splitlines())
    wait_until(lambda: len(epochs.read_text().splitlines()) >= at_hangup + 2)  # two more epochs since
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert "stopped by SIGTERM" in output and "SIGHUP" not in output and "Traceback" not in output
    assert pd.read_csv(out / "runs.csv").iloc[0].status == "interrupted"


def test_a_run_trains_in_one_process_at_a_time_and_a_killed_ones_lock_goes_with_it(tmp_path, slow):
    """A --resume of a run that is still training is refused before it touches the run's files (both
    processes' epochs would interleave in one epochs.csv); a run killed outright (SIGKILL) leaves no
    lock behind, and resumes."""
    out = tmp_path / "r"
    process = start("train", slow, *RECIPE, "-e", "200", "--run-name", "r", "--out", out)
    epochs = out / "runs" / "r" / "epochs.csv"
    wait_until(epochs_written(out))
    second = subprocess.run([sys.executable, "-m", "cnnbench", "train", "--resume", "r", "-e", "300", "--out", str(out),
                             "-q"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stderr.strip().splitlines() == [
        "error: expected run r to be idle, got it training in another process now; --resume it once that "
        "process has ended"
    ]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    written = pd.read_csv(epochs).epoch.tolist()
    assert written == list(range(1, len(written) + 1))  # one process's epochs, in order
    resumed = subprocess.run([sys.executable, "-m", "cnnbench", "train", "--resume", "r", "-e", str(len(written) + 1),
                              "--out", str(out), "-q"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert pd.read_csv(epochs).epoch.tolist()[-1] == len(written) + 1
    assert pd.read_csv(out / "runs.csv").iloc[0].status == "ok"


def test_a_comparison_runs_in_one_process_at_a_time_and_from_renders_beside_it(tmp_path, slow):
    """A second comparison of the same name, while the first trains, is refused (even with --force) before
    it trains: one would write its table over the other's. --from, which trains nothing, renders beside."""
    out = tmp_path / "r"
    process = start("compare", slow, *RECIPE, "-e", "200", "--name", "c", "--out", out)
    wait_until(epochs_written(out))
    second = subprocess.run([sys.executable, "-m", "cnnbench", "compare", "lenet5", *RECIPE, "-e", "1", "--name", "c",
                             "--force", "--out", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        "error: expected comparison c to be idle, got it running in another process now; wait for it to end, "
        "or give another --name"
    )
    rendered = subprocess.run([sys.executable, "-m", "cnnbench", "compare", "--from", str(out / "compare" / "c")],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    tidy = pd.read_csv(out / "compare" / "c" / "tidy.csv")
    assert tidy.variant.tolist() == [slow] and tidy.status.tolist() == ["interrupted"]
    assert len(pd.read_csv(out / "runs.csv")) == 1  # the second trained nothing
    again = subprocess.run([sys.executable, "-m", "cnnbench", "compare", "lenet5", *RECIPE, "-e", "1", "--name", "c",
                            "--force", "--out", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert pd.read_csv(out / "compare" / "c" / "tidy.csv").variant.tolist() == ["lenet5"]


def test_a_comparison_stopped_by_sigterm_says_what_each_run_ended_as_and_from_keeps_it(tmp_path, slow):
    out = tmp_path / "r"
    process = start("compare", slow, "lenet5", *RECIPE, "-e", "200", "--name", "c", "--out", out)
    wait_until(epochs_written(out))
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    folder = out / "compare" / "c"
    assert pd.read_csv(folder / "tidy.csv").status.tolist() == ["interrupted", "not started"]
    rendered = subprocess.run([sys.executable, "-m", "cnnbench", "compare", "--from", str(folder)], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert pd.read_csv(folder / "tidy.csv").status.tolist() == ["interrupted", "not started"]  # never pending


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_local_launchers_jobs_end_with_their_comparison(tmp_path, slow, how):
    out = tmp_path / "r"
    process = start("compare", slow, "lenet5", *RECIPE, "-e", "200", "--launcher", "local",
                    "--max-parallel", "1", "--name", "c", "--out", out)  # fmt: skip
    wait_until(epochs_written(out))
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole foreground group
    else:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=90)
    assert process.returncode in (130, 143), output
    assert "Traceback" not in output, output
    wait_until(lambda: not cnnbench_processes(str(out)), seconds=30)  # no job trains on as an orphan
    tidy = pd.read_csv(out / "compare" / "c" / "tidy.csv")
    assert sorted(tidy.status) == ["interrupted", "not started"], output  # one at a time: the other waited
    assert pd.read_csv(out / "runs.csv").status.tolist() == ["interrupted"]


def test_a_local_job_past_its_time_ends_as_timeout_with_its_epochs(tmp_path, slow):
    out = tmp_path / "r"
    result = subprocess.run([sys.executable, "-m", "cnnbench", "compare", slow, *RECIPE, "-e", "400", "--launcher",
                             "local", "--time", "0.5", "--name", "t", "--out", str(out)], capture_output=True,
                            text=True, timeout=180)  # fmt: skip
    assert "Traceback" not in result.stdout + result.stderr
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row.status == "timeout" and row.epochs_done >= 1
    assert pd.read_csv(out / "compare" / "t" / "tidy.csv").status.tolist() == ["timeout"]


def test_a_killed_rank_gives_the_run_its_status_in_one_line(tmp_path, slow, monkeypatch):
    monkeypatch.setenv("KILL_RANK_1", "1")
    out = tmp_path / "r"
    done = subprocess.run([sys.executable, "-m", "cnnbench", "train", slow, *RECIPE, "-e", "50", "--gpus", "2",
                           "--run-name", "ddp", "--out", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: data-parallel run ddp failed: rank 1 was killed by SIGKILL; its finished epochs are kept"
    ]
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row.status == "failed: rank 1 was killed by SIGKILL" and row.world_size == 2


def test_a_data_parallel_run_under_nohup_trains_on_and_sigterm_is_said_once_by_rank_0(tmp_path, slow):
    """torch's agent takes SIGHUP over for its ranks (torchrun under nohup dies with its terminal): under
    nohup a data-parallel run trains on through a hangup of its whole process group. SIGTERM then stops
    every rank; rank 0 says so once, naming the run (the process that started the ranks adds nothing, and
    the agent's own log lines are not shown)."""
    out = tmp_path / "r"
    process = start(
        "train", slow, *RECIPE, "-e", "200", "--gpus", "2", "--run-name", "ddp", "--out", out, nohup=True
    )
    epochs = out / "runs" / "ddp" / "epochs.csv"
    wait_until(epochs_written(out))
    os.killpg(process.pid, signal.SIGHUP)  # what a closed terminal sends its jobs
    at_hangup = len(epochs.read_text().splitlines())
    wait_until(lambda: len(epochs.read_text().splitlines()) >= at_hangup + 2)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    said = [line for line in output.splitlines() if "SIGTERM" in line or "SIGHUP" in line]
    assert said == ["stopped by SIGTERM: run ddp keeps its finished epochs and last checkpoint; continue it with: "
                    f"cnnbench train --resume ddp --gpus 2 --device cpu --out {out}"], output  # fmt: skip
    assert "death signal" not in output and "Traceback" not in output
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row.status == "interrupted" and row.world_size == 2


@pytest.mark.xdist_group("slurm")
def test_slurm_refusing_the_jobs_is_one_line_with_its_own_words(tmp_path, slurm):
    env = {**os.environ, "COLUMNS": "300"}  # the test cluster's SLURM_CONF among them
    done = subprocess.run([sys.executable, "-m", "cnnbench", "compare", "lenet5", *RECIPE, "-e", "1", "--launcher",
                           "slurm", "--gpus-per-job", "0", "--partition", "nope", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: expected Slurm to queue the jobs, got sbatch's refusal: sbatch: error: invalid partition specified: nope"
    ), done.stderr
    assert json.loads((tmp_path / "r" / "compare").glob("*/plan.json").__next__().read_text())["runs"]


@pytest.mark.slow
def test_a_hangup_of_the_whole_group_while_images_decode_is_one_line(tmp_path):
    """A closed terminal sends SIGHUP to the whole process group, multiprocessing's resource tracker and
    forkserver and the decoding workers included: the command says it stopped, in one line; no helper's
    traceback, relaunch warning or KeyError follows it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for split, n in (("train", 300), ("val", 4)):
            folder = tmp_path / "imgs" / split / c
            folder.mkdir(parents=True)
            for i in range(n):  # PNGs (no reduced-scale decode): a decode long enough to be stopped in
                Image.fromarray(rng.integers(0, 255, (320, 320, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cache = tmp_path / "imgs" / ".cnnbench-cache"
    process = start("train", "lenet", "-d", "imagefolder", "--data-dir", tmp_path / "imgs", "--image-size", "32",
                    "-e", "1", "--device", "cpu", "--out", tmp_path / "out")  # fmt: skip
    wait_until(lambda: cache.is_dir() and any(".partial" in p.name for p in cache.iterdir()), 120,
               "the decode to begin")  # fmt: skip
    os.killpg(process.pid, signal.SIGHUP)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 129, output
    assert output.strip().splitlines()[-1] == "stopped by SIGHUP before the run started; nothing was written"
    assert "Traceback" not in output and "Warning" not in output and "KeyError" not in output, output
