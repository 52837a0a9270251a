"""Where a comparison's runs train: one Launcher interface (inline, per-GPU workers, submitit's local
executor and Slurm), one poll loop, and the recipe a job carries arriving whole wherever it trains."""

import json
import os

import pandas as pd
import pytest
from conftest import cli, tiny_argv

from cnnbench.launchers import scheduler, slurm_states
from cnnbench.launchers.base import Job, JobView, Outcome, run_queue
from cnnbench.launchers.scheduler import LocalLauncher, SchedulerOptions, SlurmLauncher
from cnnbench.recipe import TrainConfig

# Small enough for two cores, large enough to learn in one epoch (status ok).
LEARNS = tiny_argv(quiet=False, epochs=1, lr=0.005, synthetic_size=256, device="auto")
RECIPE = tiny_argv(quiet=False, epochs=1, lr=0.005, synthetic_size=256)


def test_local_launcher_runs_two_jobs_end_to_end(tmp_path, jobs_where):
    out = tmp_path / "r"
    # --device auto: local jobs train where this machine's device is (the CPU here)
    result = cli("compare", "lenet5", "lenet5:pool=max", *LEARNS, "--launcher", "local", "--max-parallel", "2", "--name", "loc",
                                 "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 runs through submitit's local executor" in result.output
    folder = out / "compare" / "loc"
    tidy = pd.read_csv(folder / "tidy.csv")
    assert tidy.status.tolist() == ["ok", "ok"] and not tidy.reused.any()
    plan = json.loads((folder / "plan.json").read_text())
    runs = pd.read_csv(out / "runs.csv")
    # each job named its run, and the table found exactly those
    assert sorted(r["run_id"] for r in plan["runs"]) == sorted(runs.run_id) == sorted(tidy.run_id)
    if jobs_where == "processes":
        assert len(list((folder / "jobs").glob("*_log.out"))) == 2  # submitit's logs, one per job
    assert sorted(p.stem for p in (folder / "jobs").glob("*.json")) == sorted(runs.run_id)  # the job files
    # the same command again reuses both runs: nothing is submitted
    again = cli("compare", "lenet5", "lenet5:pool=max", *LEARNS, "--launcher", "local", "--name", "loc", "--force",
                                "--out", str(out))  # fmt: skip
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(out / "runs.csv")) == 2


def test_a_job_that_crashes_becomes_its_row_and_the_others_go_on(tmp_path, jobs_here):
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
    result = cli("compare", "lenet5", f"{nets}:fragile", *RECIPE, "--launcher", "local",
                                 "--gpus-per-job", "0", "--name", "f", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output  # one run has a result
    tidy = pd.read_csv(out / "compare" / "f" / "tidy.csv")
    assert tidy.status[0] == "ok"
    # the crash's own words, from the job's log, not just an exit code
    assert tidy.status[1].startswith("failed: worker exited with code 1: ")
    assert "crashed in the job" in tidy.status[1]


class FakeJob:
    def __init__(self, i, done=False):
        self.job_id = f"77_{i}"
        self._done = done

    def done(self):
        return self._done


@pytest.fixture
def slurm_queue(monkeypatch):
    """A Slurm that queues the jobs and runs none; the commands it was given (tests/test_slurm.py runs
    a real one: this one has the GPUs a job may ask for)."""
    submitted = []

    class FakeExecutor:
        def map_array(self, fn, argvs, *more):
            submitted.extend(argvs)
            return [FakeJob(i) for i in range(len(argvs))]

    monkeypatch.setattr(scheduler, "executor", lambda *_args: FakeExecutor())
    monkeypatch.setattr(scheduler.shutil, "which", lambda name: "/usr/bin/sbatch")
    return submitted


def test_slurm_gets_the_jobs_scheduling_options(tmp_path, monkeypatch):
    made = {}

    class FakeExecutor:
        def __init__(self, folder, cluster):
            made.update(folder=folder, cluster=cluster)

        def update_parameters(self, **params):
            made["params"] = params

    import submitit

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    options = SchedulerOptions(partition="gpu", gpus_per_job=2, nodes=3, time_min=30, max_parallel=4)
    scheduler.executor("slurm", tmp_path, options)
    assert made["cluster"] == "slurm"
    assert made["params"] == {"timeout_min": 30, "gpus_per_node": 2, "tasks_per_node": 2, "nodes": 3,
                              "name": "cnnbench", "slurm_signal_delay_s": 90, "slurm_partition": "gpu",
                              "slurm_array_parallelism": 4}  # fmt: skip
    # the same job on the nodes' CPUs: two tasks, no GPU asked for
    scheduler.executor("slurm", tmp_path, options, on_cpu=True)
    assert made["params"]["gpus_per_node"] == 0 and made["params"]["tasks_per_node"] == 2
    # a job with two GPUs trains data-parallel on both: through Slurm each task is a rank and runs the job
    # as it is; on this machine the job starts torchrun on all of them
    job = Job("vgg16 seed 0", TrainConfig(model="vgg16", run_name="r"))
    assert SlurmLauncher(tmp_path, options, True, print).command(job)[-2] == "--config"
    assert LocalLauncher(tmp_path, options, True, print).command(job)[-2:] == ["--gpus", "all"]
    one = SlurmLauncher(tmp_path, SchedulerOptions(gpus_per_job=1), True, print).command(job)
    assert one[-2] == "--config"


def test_slurm_without_slurm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(scheduler.shutil, "which", lambda name: None)
    result = cli("compare", "lenet5", *RECIPE, "--launcher", "slurm", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "expected Slurm for --launcher slurm (sbatch on PATH), got none" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--launcher", "local", "--gpus", "2"], "expected --gpus with --launcher inline"),
     (["--no-wait"], "expected --no-wait with --launcher local or slurm"),
     (["--launcher", "local", "--max-parallel", "0"], "expected --max-parallel >= 1"),
     (["--launcher", "slurm", "--nodes", "0"], "expected --nodes >= 1, got 0"),
     (["--launcher", "local", "--nodes", "2"], "expected --nodes 1 with --launcher local, got 2")],
)  # fmt: skip
def test_launcher_options_checked_before_work(tmp_path, args, message):
    result = cli("compare", "lenet5", *RECIPE, *args, "--out", str(tmp_path))
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "runs.csv").exists()


@pytest.mark.parametrize(("gpus_per_job", "device"), [("1", "cuda"), ("0", "cpu")])
def test_slurm_jobs_ask_for_a_nodes_gpu_unless_they_ask_for_none(tmp_path, slurm_queue, gpus_per_job, device):
    result = cli("compare", "lenet5", "-d", "synthetic", "-e", "1", "--launcher", "slurm",
                                 "--gpus-per-job", gpus_per_job, "--no-wait", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(open(slurm_queue[0][5]).read())["recipe"]["device"] == device


class FakeRun:
    """A job that ends after ``steps`` polls with ``code``."""

    def __init__(self, steps, code=0):
        self.steps, self.code, self.stopped = steps, code, False

    def poll(self):
        self.steps -= 1
        return self.code if self.steps <= 0 else None

    def stop(self):
        self.stopped = True

    def wait(self, timeout):
        pass


def test_the_poll_loop_runs_the_longest_first_each_next_to_the_slot_that_frees():
    jobs = [Job(f"j{i}", TrainConfig(model="lenet5"), cost) for i, cost in enumerate([1, 5, 3, 4, 2])]
    durations = {"j1": 6, "j3": 1, "j2": 1, "j4": 1, "j0": 1}  # polls until each ends
    started = []

    def start(job, slot):
        started.append(job.label)
        return FakeRun(durations[job.label], 1 if job.label == "j4" else 0)

    outcomes = {}
    run_queue(jobs, ["0", "1"], start, JobView(), outcomes, interval=0)
    assert started == ["j1", "j3", "j2", "j4", "j0"]  # by cost, longest first
    placed = {j.label: j.gpu for j in jobs}
    assert placed["j1"] == "0" and placed["j3"] == "1"
    assert placed["j2"] == placed["j4"] == placed["j0"] == "1"  # slot 0 stays busy with the longest job
    assert {k: o.returncode for k, o in outcomes.items()} == {"j0": 0, "j1": 0, "j2": 0, "j3": 0, "j4": 1}
    assert all(o.ended for o in outcomes.values())


def test_the_poll_loop_runs_as_many_at_once_as_it_has_slots():
    running, peak = [], []

    class Counted(FakeRun):
        def __init__(self):
            super().__init__(3)
            running.append(self)
            peak.append(len([r for r in running if r.steps > 0]))

    jobs = [Job(f"j{i}", TrainConfig(model="lenet5")) for i in range(6)]
    run_queue(jobs, ["0"] * 3, lambda job, slot: Counted(), JobView(), {}, interval=0)
    assert max(peak) == 3


def test_ctrl_c_in_the_poll_loop_stops_every_running_job():
    runs = []

    def start(job, slot):
        runs.append(FakeRun(10**6))
        return runs[-1]

    class Interrupting(JobView):
        def job_started(self, job):
            if len(runs) == 2:
                raise KeyboardInterrupt

    outcomes = {}
    with pytest.raises(KeyboardInterrupt):
        run_queue([Job(f"j{i}", TrainConfig(model="lenet5")) for i in range(3)], ["a", "b"], start, Interrupting(),
                  outcomes, interval=0)  # fmt: skip
    assert [r.stopped for r in runs] == [True, True]
    assert set(outcomes) == {"j0", "j1"} and not any(o.ended for o in outcomes.values())


def test_an_outcome_without_a_row_says_how_its_job_ended(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(
        "epoch 1 ...\nTraceback (most recent call last):\n  File x\nRuntimeError: the GPU fell off\n"
    )
    assert Outcome().describe() == "pending"
    assert Outcome(ended=True, returncode=3).describe() == "failed: worker exited with code 3"
    assert Outcome(ended=True, returncode=1, log=log).describe() == (
        "failed: worker exited with code 1: RuntimeError: the GPU fell off"
    )
    assert Outcome(ended=True, returncode=1, status="timeout").describe() == "timeout"


def test_a_job_file_is_the_recipe_and_nothing_else(tmp_path):
    from cnnbench.recipe import read_job

    recipe = TrainConfig(model="lenet5", lr=0.01, run_name="r", out=tmp_path)
    path = Job("lenet5 seed 0", recipe).write(tmp_path)
    assert path == tmp_path / "r.json" and read_job(path) == recipe
    assert os.path.getsize(path) > 0


@pytest.mark.parametrize(
    ("states", "alive"),
    [({"7_[0-1]": "PENDING"}, ["7_0", "7_1"]), ({"7_0": "RUNNING", "7_[1]": "PENDING"}, ["7_0", "7_1"]),
     ({"7_0": "COMPLETED", "7_1": "CANCELLED"}, []), ({"7_0": "TIMEOUT", "7_1": "RUNNING"}, ["7_1"]), ({}, [])],
    ids=["array-not-started", "one-running-one-queued", "ended", "one-ended", "no-longer-listed"],
)  # fmt: skip
def test_the_jobs_slurm_still_has_are_those_it_lists_as_not_ended(tmp_path, monkeypatch, states, alive):
    """sacct lists an array's tasks that have not started as one line (7_[0-1]); a job it lists no more
    (long gone from its accounting) is not counted, so an old comparison's name can be run again. The
    real cluster of the Slurm tests keeps no accounting, so sacct's answers are given here."""
    (tmp_path / "jobs.json").write_text(json.dumps({"launcher": "slurm", "job_ids": ["7_0", "7_1"],
                                                    "labels": ["a seed 0", "b seed 0"]}))  # fmt: skip
    monkeypatch.setattr(scheduler.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        slurm_states.SlurmStates, "refresh", lambda self, ids: setattr(self, "states", dict(states))
    )
    assert slurm_states.slurm_jobs_alive(tmp_path) == alive
