"""Data-parallel training through torchrun: two gloo processes on the CPU, as a user would start them."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import cli, tiny_argv

from cnnbench.training import distributed
from cnnbench.training.distributed import World

# Small enough for two cores, large enough to learn in one epoch.
RECIPE = ["lenet5", *tiny_argv(quiet=False, seed=3, synthetic_size=512, batch_size=32, lr=0.005)]


def torchrun(*argv, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(distributed.torchrun_argv(processes, ["train", *argv]), env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def single(*argv):
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "cnnbench", "train", *argv], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_rank_0_alone_writes_and_it_resumes(tmp_path):
    ddp = torchrun(*RECIPE, "-e", "1", "--out", str(tmp_path / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one = single(*RECIPE, "-e", "1", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    runs = pd.read_csv(tmp_path / "ddp" / "runs.csv")
    assert len(runs) == 1  # one run, written once
    row = runs.iloc[0]
    assert row.status == "ok" and row.world_size == 2 and row.batch_per_process == 16 and row.batch_size == 32
    assert row.train_samples == 512 and row.test_samples == 512  # the whole sets, over both shards
    assert not row.cuda_graphs
    assert "1/2 shard per process" in row.data_placement
    assert [p.name for p in (tmp_path / "ddp" / "runs").iterdir()] == [row.run_id]
    assert ddp.stdout.count("best test acc") == 1  # rank 0 prints, rank 1 does not
    # The same global batch and recipe: the first epoch's loss matches a single process's (the order in
    # which samples are drawn differs, so not to the digit).
    ref = pd.read_csv(tmp_path / "one" / "runs.csv").iloc[0]
    ddp_epoch = pd.read_csv(tmp_path / "ddp" / "runs" / row.run_id / "epochs.csv").iloc[0]
    one_epoch = pd.read_csv(tmp_path / "one" / "runs" / ref.run_id / "epochs.csv").iloc[0]
    assert ddp_epoch.train_loss == pytest.approx(one_epoch.train_loss, rel=0.03)
    # world_size 1 stays out of the hash, so runs recorded before it existed are still reused
    assert ref.world_size == 1 and ref.conditions_hash != row.conditions_hash

    # It resumes in as many processes as it was trained in, and only so.
    out, run_id = tmp_path / "ddp", row.run_id
    alone = cli("train", "--resume", run_id, "--epochs", "2", "--out", str(out))
    assert alone.exit_code == 1
    assert f"expected to resume run {run_id} in 2 process(es) (--gpus 2)" in alone.output
    again = torchrun("--resume", run_id, "--epochs", "2", "--out", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 1 and runs.epochs_done.iloc[0] == 2 and runs.status.iloc[0] == "ok"
    assert pd.read_csv(out / "runs" / run_id / "epochs.csv").epoch.tolist() == [1, 2]


def test_gpus_starts_torchrun_with_the_runs_own_recipe(monkeypatch, tmp_path):
    import torch

    from cnnbench.recipe import read_job

    started = {}

    def launch(gpus, argv):
        started.update(gpus=list(gpus), argv=list(argv), recipe=read_job(argv[argv.index("--config") + 1]))
        return None  # every rank ended well

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(distributed, "launch", launch)
    result = cli("train", "lenet5", "-d", "synthetic", "--gpus", "1,3", "-e", "2", "-b", "256",
                                 "--momentum", "0.8", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert started["gpus"] == ["1", "3"]
    assert started["argv"][:2] == ["train", "--config"] and "--gpus" not in started["argv"]
    recipe = started["recipe"]  # every rank trains this recipe, under one run id fixed before the launch
    assert (recipe.model, recipe.batch_size, recipe.epochs, recipe.momentum) == ("lenet5", 256, 2, 0.8)
    assert recipe.run_name.startswith("lenet5-synthetic-s0-") and recipe.out == tmp_path
    assert not (tmp_path / "runs.csv").exists()  # the launching process trains nothing itself


def test_gpus_without_a_gpu_is_one_line(tmp_path):
    result = cli("train", "lenet5", "-d", "synthetic", "--gpus", "2", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "expected CUDA GPUs for --gpus 2, got none" in result.output
    assert "Traceback" not in result.output


def test_shards_are_disjoint_and_equal_for_training():
    import numpy as np

    from cnnbench.data.readers import ArrayDataset
    from cnnbench.data.specs import get_dataset_spec

    data = ArrayDataset(np.zeros((11, 3, 2, 2), np.uint8), np.arange(11), get_dataset_spec("synthetic"), "x")
    train = [distributed.shard(data, World(r, r, 3), equal=True).labels.tolist() for r in range(3)]
    test = [distributed.shard(data, World(r, r, 3), equal=False).labels.tolist() for r in range(3)]
    assert train == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(test, [])) == list(range(11))
    with pytest.raises(Exception, match="divisible by the 3 processes"):
        distributed.per_rank_batch(128, World(0, 0, 3))


@pytest.mark.slow
def test_profile_measures_data_parallel_scaling_at_each_process_count(tmp_path):
    result = cli("profile", "lenet5", "--gpus", "2,1", "--device", "cpu", "--batch-sizes", "16",
                                 "--warmup", "1", "--iters", "3", "--out", str(tmp_path), "-f", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [r["processes"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["world_size"] == r["processes"] and r["batch_per_process"] == 16 and r["backend"] == "gloo"
        assert r["images_per_s"] == pytest.approx(r["processes"] * 16 / (r["step_ms_median"] / 1e3))
    assert rows[0]["scaling_efficiency_pct"] == pytest.approx(100)
    assert rows[1]["scaling_efficiency_pct"] == pytest.approx(
        100 * rows[1]["images_per_s"] / (2 * rows[0]["images_per_s"])
    )
    saved = pd.read_csv(tmp_path / "profile_scaling.csv")
    assert saved.processes.tolist() == [1, 2] and (saved.device == "cpu").all() and saved.date.notna().all()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--gpus", "1,2"], "expected CUDA GPUs for --gpus 1,2, got none"),
     (["--gpus", "0,1", "--device", "cpu"], "expected --gpus of counts >= 1"),
     (["--gpus", "1,2", "--device", "cpu", "--batch-sizes", "8,16"], "expected one --batch-sizes value with --gpus")],
)  # fmt: skip
def test_profile_scaling_refuses_bad_counts_in_one_line(tmp_path, args, message):
    result = cli("profile", "lenet5", *args, "--out", str(tmp_path))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_the_step_probes_clock_is_one_for_every_rank(tmp_path):
    """The warm-up's step probe stops after half a second; in a data-parallel run every rank must stop
    at the same step, each step being a collective (seen under a loaded CI: one rank stepped once more
    and gloo aborted on a mismatched collective). Rank 0's time is up and rank 1's is not: both stop."""
    script = tmp_path / "probe_clock.py"
    script.write_text(
        "import sys, time\n"
        "from types import SimpleNamespace\n"
        "import torch.distributed as dist\n"
        "from cnnbench.training.step import TrainStep\n"
        "dist.init_process_group('gloo')\n"
        "rank = dist.get_rank()\n"
        "start = time.perf_counter() - (60.0 if rank == 0 else 0.0)\n"
        "up = TrainStep._time_is_up(SimpleNamespace(device='cpu'), start, 30.0)\n"
        "open(f'{sys.argv[1]}/rank{rank}.txt', 'w').write(f'rank {rank}: up {up}')\n"
        "dist.destroy_process_group()\n"
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # A file per rank: the two ranks' prints to one pipe can interleave mid-line.
    assert [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)] == [
        "rank 0: up True",
        "rank 1: up True",
    ]
    # One process alone reads its own clock.
    from types import SimpleNamespace

    from cnnbench.training.step import TrainStep

    alone = SimpleNamespace(device="cpu")
    assert TrainStep._time_is_up(alone, 0.0, 1.0) and not TrainStep._time_is_up(alone, 1e12, 1.0)


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_reaches_the_ranks_of_a_data_parallel_run(monkeypatch, tmp_path, quiet):
    import torch

    started = {}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed, "launch", lambda gpus, argv: started.update(argv=list(argv)))
    result = cli("train", "lenet5", "-d", "synthetic", "--gpus", "2", "--out", str(tmp_path),
                                 *(["-q"] if quiet else []))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ("-q" in started["argv"]) is quiet


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("started_by", ["torchrun", "cnnbench --gpus"])
def test_a_mistake_under_torchrun_is_said_once(tmp_path, monkeypatch, rank, started_by):
    """torchrun starts every rank with the same command line: of a user's own torchrun, rank 0 says the
    mistake and the others exit quietly; under ``--gpus``, each rank leaves it in the folder cnnbench
    gave them, for the one process that started them to say."""
    import time

    monkeypatch.setattr(time, "sleep", lambda _s: None)  # rank 1's moment for rank 0 to speak
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    if started_by == "cnnbench --gpus":
        monkeypatch.setenv(distributed.RANK_ERRORS_ENV, str(tmp_path))
    result = cli("train", "lenet5", "-e", "0", "--out", tmp_path / "r")
    assert result.exit_code == 1
    said = "error: expected --epochs >= 1, got 0"
    if started_by == "torchrun":
        assert result.output == (said + "\n" if rank == 0 else "")
    else:
        assert result.output == "" and (tmp_path / f"rank{rank}").read_text() == said.removeprefix("error: ")
