"""``compare --launcher slurm`` against a real one-node Slurm (tests/slurm_cluster.py: munge, slurmctld
and slurmd started for the test session, all their files in a temporary folder). Without Slurm or root
these tests skip, unless CNNBENCH_REQUIRE_SLURM=1 (as CI sets it) makes that a failure."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli, signals_at_default, tiny_argv, wait_until

# One cluster for the session (conftest's ``slurm``): its tests run one after another in one worker.
pytestmark = pytest.mark.xdist_group("slurm")

SMALL = [*tiny_argv(quiet=False, lr=0.005, synthetic_size=256), "--launcher", "slurm", "--gpus-per-job", "0"]
NETS = """
import time

import torch.nn as nn

class Net(nn.Module):
    def __init__(self, num_classes, slow):
        super().__init__()
        self.fc, self.slow = nn.Linear(768, num_classes), slow

    def forward(self, x):
        if self.training and x.device.type == "cpu":  # counted on meta before it trains: not there
            if not self.slow:
                raise RuntimeError("boom while training")
            time.sleep(0.2)  # a long run that leaves the CPU to the other tests
        return self.fc(x.flatten(1))

def boom(num_classes):
    return Net(num_classes, slow=False)

def slow(num_classes):
    return Net(num_classes, slow=True)
"""


def squeue(*fields: str) -> list[list[str]]:
    """Every job the cluster lists (ended ones too), one row of ``fields`` (squeue's %-codes) each."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "|".join(fields)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return [line.split("|") for line in out.splitlines()]


def statuses(folder: Path) -> list[str]:
    return pd.read_csv(folder / "tidy.csv").status.tolist()


def wait_for(test, seconds: float, what: str):
    """conftest's wait_until, asking every second, its failure with the jobs as squeue lists them then."""
    return wait_until(test, seconds, lambda: f"{what} (squeue: {squeue('%i', '%T', '%r')})", interval=1.0)


def test_two_variants_are_one_array_run_one_at_a_time_and_match_an_inline_run(slurm, tmp_path):
    slurm, inline = tmp_path / "slurm", tmp_path / "inline"
    args = ["lenet5:pool=max,avg", *SMALL, "-e", "1", "--deterministic", "--name", "c"]
    result = cli("compare", *args, "--max-parallel", "1", "--time", "5", "--out", str(slurm))
    assert result.exit_code == 0, result.output
    assert "2 runs submitted to Slurm as job array" in result.output
    # a cluster without accounting: one line of cnnbench's, no submitit warning
    assert result.output.count("this cluster keeps no accounting") == 1
    assert "Bypassing" not in result.output and "status may be inaccurate" not in result.output
    assert statuses(slurm / "compare" / "c") == ["ok", "ok"]
    # one array, and its jobs one after the other (--max-parallel 1): each starts once the other ended
    array = re.search(r"job array (\d+)", result.output).group(1)
    jobs = sorted(j for j in squeue("%i", "%S", "%e") if j[0].split("_")[0] == array)
    assert [j[0] for j in jobs] == [f"{array}_0", f"{array}_1"]
    (_, start0, end0), (_, start1, end1) = jobs
    assert start1 >= end0 or start0 >= end1, jobs

    # the same recipe trained in this process: same conditions, same epochs (deterministic, CPU)
    here = [a for a in args if a not in ("--launcher", "slurm", "--gpus-per-job", "0")]
    result = cli("compare", *here, "--out", str(inline))
    assert result.exit_code == 0, result.output
    ran = {f: pd.read_csv(f / "runs.csv").sort_values("options") for f in (slurm, inline)}
    assert ran[slurm].conditions_hash.tolist() == ran[inline].conditions_hash.tolist()
    assert ran[slurm].conditions_hash.nunique() == 2
    epochs = {
        f: pd.read_csv(f / "compare" / "c" / "epochs.csv").sort_values(["variant", "epoch"]) for f in ran
    }
    for column in ("train_loss", "test_acc"):
        assert epochs[slurm][column].tolist() == epochs[inline][column].tolist(), column


def test_cancelled_timed_out_and_failed_jobs_each_end_with_their_status(slurm, tmp_path):
    out, nets = tmp_path / "r", tmp_path / "nets.py"
    nets.write_text(NETS)
    long = [*SMALL, "-e", "1000", "--no-wait", "--out", str(out)]
    # one job of a minute that trains for longer (Slurm counts time limits in whole minutes)
    result = cli("compare", f"{nets}:slow", *long, "--time", "1", "--name", "t")
    assert result.exit_code == 0, result.output
    # one to cancel while it trains, one whose training raises
    result = cli("compare", f"{nets}:slow", f"{nets}:boom", *long, "--time", "5", "--name", "cf")
    assert result.exit_code == 0, result.output
    assert "cnnbench compare --from" in result.output
    t, cf = out / "compare" / "t", out / "compare" / "cf"
    assert statuses(t) == ["pending"] and statuses(cf) == ["pending", "pending"]
    # the same comparison again while its jobs are the cluster's: refused, nothing submitted twice
    listed = len(squeue("%i"))
    again = cli("compare", f"{nets}:slow", f"{nets}:boom", *long, "--time", "5", "--name", "cf", "--force")
    assert again.exit_code == 1, again.output
    assert re.fullmatch(
        r"error: expected comparison cf to be idle, got [12] of its jobs still queued or running in Slurm; "
        rf"cnnbench compare --from {re.escape(str(cf))} shows their table, scancel \d+ stops them",
        " ".join(again.output.split()),
    ), again.output
    assert len(squeue("%i")) == listed and statuses(cf) == ["pending", "pending"]

    # cancelled once its run has written an epoch
    plan = {r["variant"]: r["run_id"] for r in json.loads((cf / "plan.json").read_text())["runs"]}
    jobs = json.loads((cf / "jobs" / "jobs.json").read_text())
    job_of = dict(zip(jobs["labels"], jobs["job_ids"], strict=True))
    wait_for(lambda: (out / "runs" / plan[f"{nets}:slow"] / "epochs.csv").is_file(), 120, "a first epoch")
    subprocess.run(["scancel", job_of[f"{nets}:slow seed 0"]], check=True)
    labels = pd.read_csv(cf / "tidy.csv").variant.tolist()

    def ended(folder: Path) -> list[str] | None:
        result = cli("compare", "--from", str(folder))
        assert result.exit_code == 0, result.output
        got = statuses(folder)
        return got if not any(s.startswith("pending") for s in got) else None  # "pending (Priority)" too

    got = dict(zip(labels, wait_for(lambda: ended(cf), 60, "the cancel and the failure"), strict=True))
    assert got[f"{nets}:slow"] == "cancelled"
    assert got[f"{nets}:boom"] == "failed: RuntimeError: boom while training"
    runs = pd.read_csv(out / "runs.csv")
    cancelled = runs[runs.status == "cancelled"]
    assert len(cancelled) == 1 and cancelled.epochs_done.iloc[0] >= 1  # what it measured is kept
    assert wait_for(lambda: ended(t), 120, "the time limit") == ["timeout"]


def test_a_data_parallel_job_is_two_slurm_tasks(slurm, tmp_path):
    result = cli("compare", "lenet5", *SMALL[:-1], "2", "-e", "1", "--time", "5",
                                 "--name", "dp", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    tidy = pd.read_csv(tmp_path / "compare" / "dp" / "tidy.csv")
    assert tidy.status.tolist() == ["ok"]
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs.world_size.tolist() == [2]


def test_ctrl_c_while_waiting_leaves_the_jobs_queued_and_from_collects_them(slurm, tmp_path):
    command = [sys.executable, "-m", "cnnbench", "compare", "lenet5", *SMALL, "-e", "1", "--time", "5",
               "--name", "w", "--out", str(tmp_path)]  # fmt: skip
    waiting = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=signals_at_default)  # fmt: skip  # a Ctrl-C to test, whatever pytest inherited
    said = []
    for line in waiting.stdout:
        said.append(line)
        if "submitted to Slurm" in line:
            break
    waiting.send_signal(signal.SIGINT)
    said.append(waiting.communicate(timeout=60)[0])
    text = "".join(said)
    assert "stopped waiting; the jobs go on in Slurm" in text and "Traceback" not in text
    # no command that would be refused while the jobs run: the --from command above is the one to type
    assert "this command reuses" not in text and "the --from command above renders their table" in " ".join(
        text.split()
    )
    assert [state for _, state in squeue("%i", "%T")] != []  # the job is still the cluster's
    folder = tmp_path / "compare" / "w"

    def collected() -> bool:
        result = cli("compare", "--from", str(folder))
        assert result.exit_code == 0, result.output
        got = statuses(folder)
        return got if not got[0].startswith("pending") else None

    assert wait_for(collected, 120, "the job's row") == ["ok"]


def test_a_job_that_cannot_start_is_said_so_waiting_or_not(slurm, tmp_path):
    """--nodes 2 on a one-node cluster stays PENDING forever: --from gives squeue's reason, and a waiting
    comparison cancels the job and says why instead of waiting forever."""
    out = tmp_path / "out"
    queued = cli("compare", "lenet5", *SMALL, "-e", "1", "--nodes", "2", "--no-wait", "--name", "q",
                                 "--out", str(out))  # fmt: skip
    assert queued.exit_code == 0, queued.output
    folder = out / "compare" / "q"

    def status():
        rendered = cli("compare", "--from", str(folder))
        assert rendered.exit_code == 0, rendered.output
        found = pd.read_csv(folder / "tidy.csv").status.iloc[0]
        return found if "Slurm cannot start it as asked" in found else None

    said = wait_for(status, 60, "squeue's reason")
    assert said.startswith("pending (Partition")
    (job,) = json.loads((folder / "jobs" / "jobs.json").read_text())["job_ids"]
    subprocess.run(["scancel", job.split("_")[0]], check=True)

    waited = cli("compare", "lenet5", *SMALL, "-e", "1", "--nodes", "2", "--name", "w", "--time", "5",
                                 "--out", str(out))  # fmt: skip
    assert waited.exit_code == 1, waited.output  # every variant failed
    status = pd.read_csv(out / "compare" / "w" / "tidy.csv").status.iloc[0]
    assert status.startswith("failed: Partition") and "Slurm cannot start it as asked" in status
    assert status.endswith("; cancelled")
    (job,) = json.loads((out / "compare" / "w" / "jobs" / "jobs.json").read_text())["job_ids"]
    assert wait_for(lambda: all(row[1] != "PENDING" for row in squeue("%i", "%T") if row[0] == job), 30,
                    "the job's cancellation")  # fmt: skip


def test_a_silent_slurm_is_named(slurm, tmp_path, monkeypatch):
    out = tmp_path / "out"
    queued = cli("compare", "lenet5", *SMALL, "-e", "1", "--nodes", "2", "--no-wait", "--name", "s",
                                 "--out", str(out))  # fmt: skip
    assert queued.exit_code == 0, queued.output
    conf = Path(slurm) / "silent.conf"  # the controller's port closed: no answer, as when it is down
    conf.write_text(
        re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=9", (Path(slurm) / "slurm.conf").read_text())
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    rendered = cli("compare", "--from", str(out / "compare" / "s"))
    assert rendered.exit_code == 0, rendered.output
    status = pd.read_csv(out / "compare" / "s" / "tidy.csv").status.iloc[0]
    assert status.startswith("pending (Slurm did not answer; squeue: ") and "controller" in status
    monkeypatch.undo()
    subprocess.run(["scancel", "-u", "root"], check=True)
