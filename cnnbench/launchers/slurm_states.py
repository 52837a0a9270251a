"""What Slurm says of a comparison's jobs: their states from ``sacct`` (or ``squeue`` where the cluster
keeps no accounting), why a pending job waits, which ones Slurm can never start, and, for
``compare --from``, how the jobs of a comparison saved in ``jobs.json`` have ended so far.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cnnbench.launchers.base import Outcome
from cnnbench.training.status import failed

# How Slurm says a job ended, as a run's status; COMPLETED: the job's result says how its run ended.
ENDED = {"COMPLETED": None, "CANCELLED": "cancelled", "TIMEOUT": "timeout", "DEADLINE": "timeout",
         "PREEMPTED": failed("preempted by Slurm"), "NODE_FAIL": failed("its node failed (Slurm NODE_FAIL)"),
         "OUT_OF_MEMORY": failed("out of memory on its node (Slurm OUT_OF_MEMORY)"),
         "BOOT_FAIL": failed("its node did not boot (Slurm BOOT_FAIL)"), "FAILED": failed("Slurm says FAILED")}  # fmt: skip


# squeue's reasons for a pending job that Slurm will not start as it was asked, whatever frees up: its
# request exceeds the partition, or names what the cluster has not.
NEVER_STARTS = {
    "PartitionNodeLimit": "it asks for more nodes than its partition has",
    "PartitionTimeLimit": "it asks for more time than its partition allows",
    "PartitionConfig": "it asks for what its partition is not configured to give",
    "BadConstraints": "no node has what it asks for",
    "InvalidAccount": "its account is not valid here", "InvalidQOS": "its QOS is not valid here",
    "QOSMaxNodePerJobLimit": "it asks for more nodes than its QOS allows",
    "QOSMaxWallDurationPerJobLimit": "it asks for more time than its QOS allows",
}  # fmt: skip
ASK_TIMEOUT_S = 20.0  # a Slurm client that gets no answer from its controller retries for about a minute


def pending_reason(reason: str | None) -> str | None:
    """squeue's reason for a pending job as a table says it; None where it gives none."""
    if not reason or reason in ("None", "(null)"):
        return None
    if reason in NEVER_STARTS:
        return f"{reason}: Slurm cannot start it as asked, {NEVER_STARTS[reason]}"
    return reason


class SlurmStates:
    """The states of a comparison's Slurm jobs, asked of the cluster for all of them at once and at most
    once a second: from sacct, or from squeue where the cluster keeps no accounting (squeue lists an ended
    job for MinJobAge, 300 s by default). submitit's own watcher asks sacct alone and warns on every
    call where there is none, so the jobs' states are read here instead."""

    def __init__(self, log: Callable[[str], None] = lambda _m: None) -> None:
        self.log = log
        self.states: dict[str, str] = {}
        self.reasons: dict[str, str] = {}  # squeue's reason of each pending job
        self.source = "sacct"
        self.answered = False  # whether the last question got an answer (then a job not in it is gone)
        self.silence: str | None = None  # what the last question got instead of an answer
        self._asked = -math.inf

    def _ask(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=ASK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 1, "", f"no answer in {ASK_TIMEOUT_S:.0f} s")

    def refresh(self, job_ids: Sequence[str]) -> None:

        if time.monotonic() - self._asked < 1.0 or not job_ids:
            return
        self._asked = time.monotonic()
        ids = ",".join(sorted({j.split("_")[0] for j in job_ids}))
        if self.source == "sacct":
            done = self._ask(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ids])
            if done.returncode == 0 and "disabled" not in done.stdout + done.stderr:
                self._read(done.stdout)
                if any(state == "PENDING" for state in self.states.values()):
                    self._read_reasons(ids)
                return
            if "disabled" in done.stdout + done.stderr:
                self.source = "squeue"
                self.log("this cluster keeps no accounting (sacct has none): job states come from squeue")
        done = self._ask(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ids])
        if done.returncode == 0 or "Invalid job id" in done.stderr:  # every job asked for is gone
            self._read(done.stdout)
        else:
            self.answered = False
            words = (done.stderr.strip() or f"exit code {done.returncode}").splitlines()[0]
            said = self.silence is not None
            self.silence = f"Slurm did not answer; squeue: {words.removeprefix('squeue: ')}"
            if not said:
                self.log(f"{self.silence} (asking again)")

    def _read_reasons(self, ids: str) -> None:
        done = self._ask(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i|%T|%r", "-j", ids])
        if done.returncode == 0:
            self.reasons.update({job_id: reason for job_id, _state, reason in _jobs(done.stdout) if reason})

    def _read(self, text: str) -> None:
        self.states, self.reasons, self.silence = {}, {}, None
        for job_id, state, reason in _jobs(text):
            self.states[job_id] = state
            if reason:
                self.reasons[job_id] = reason
        self.answered = True

    @staticmethod
    def of_task(table: dict[str, str], job_id: str) -> str | None:
        """``table``'s entry for a job, or for the line of its array's tasks that have not started, which
        sacct and squeue list as one line, ARRAY_[0-3]."""
        array = job_id.split("_")[0]
        return table.get(job_id) or next(
            (v for key, v in table.items() if key.startswith(f"{array}_[")), None
        )

    def pending(self, job_id: str) -> str | None:
        """What stands after "pending" for a job that has not ended: squeue's reason, or that Slurm did not
        answer; None where there is nothing to add."""
        if self.silence is not None:
            return self.silence
        return pending_reason(self.of_task(self.reasons, job_id))

    def never_starts(self, job_id: str) -> str | None:
        """squeue's reason where Slurm will not start the pending job as it was asked."""
        reason = self.reasons.get(job_id)
        return reason if reason in NEVER_STARTS and self.states.get(job_id) == "PENDING" else None

    def ended(self, job_id: str) -> tuple[bool, str | None]:
        """(whether the job has ended, the status it gives its run), from the last answer."""
        state = self.states.get(job_id)
        if state is None:
            # squeue no longer lists it: it ended longer ago than MinJobAge, how is lost
            gone = self.answered and self.source == "squeue"
            return gone, failed("ended, and Slurm no longer says how") if gone else None
        if state not in ENDED:
            return False, None
        return True, ENDED[state]


def _jobs(text: str) -> Iterator[tuple[str, str, str]]:
    """(job id, state, reason) of each job line of sacct's ``JobID|State`` or squeue's ``%i|%T|%r`` (no
    reason: ""); a job's steps (``ID.batch``) left out, "CANCELLED by 0" read as CANCELLED."""
    for line in text.splitlines():
        job_id, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        if job_id.strip() and "." not in job_id and state.strip():
            yield job_id.strip(), state.split()[0], reason.strip()


def _saved_jobs(folder: Path) -> tuple[dict[str, Any], SlurmStates] | None:
    """FOLDER/jobs.json, a comparison's jobs handed to Slurm, and their states now; None where it has none
    or this machine has no Slurm to ask."""
    from cnnbench.store.tables import read_json

    path = Path(folder) / "jobs.json"
    if not path.is_file() or shutil.which("squeue") is None:
        return None
    saved = read_json(path)
    states = SlurmStates()
    states.refresh(saved["job_ids"])
    return saved, states


def slurm_outcomes(folder: Path) -> dict[str, Outcome]:
    """``compare --from`` on a comparison whose jobs went to Slurm without waiting: how each job that has
    ended by now ended (a run that left no row takes its status from it), from FOLDER/jobs.json."""
    found = _saved_jobs(folder)
    if found is None:
        return {}
    saved, states = found
    outcomes = {}
    for label, job_id in zip(saved["labels"], saved["job_ids"], strict=True):
        ended, status = states.ended(job_id)
        if ended:
            outcomes[label] = Outcome(ended=True, returncode=1,
                                      status=status or failed("its job ended without its run's row"))  # fmt: skip
        else:  # pending, with squeue's reason or Slurm's silence
            outcomes[label] = Outcome(status=states.pending(job_id))
    return outcomes


def slurm_jobs_alive(folder: Path) -> list[str]:
    """The jobs of FOLDER/jobs.json that Slurm lists now as not ended (queued, running, ...). A job it no
    longer lists is not counted: long gone from its accounting, it cannot be told from one that ended."""
    found = _saved_jobs(folder)
    if found is None:
        return []
    saved, states = found
    alive = [(j, states.of_task(states.states, j)) for j in saved["job_ids"]]
    return [j for j, state in alive if state is not None and state not in ENDED]
