"""What each job a scheduler runs does, on the machine that runs it: :func:`run_job` starts the job's
``cnnbench train --config JOB.json``, passes the scheduler's signals on to it as the run's status, and
gives the run a final row where its process could not write one. submitit pickles it by name, so it
lives apart from the launchers that submit it (:mod:`cnnbench.launchers.scheduler`).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from cnnbench.training.status import failed


def run_job(argv: list[str], time_limit_s: float | None = None, kind: str = "slurm",
            comparison_pid: int | None = None) -> int | str:  # fmt: skip
    """What each scheduled job runs: ``cnnbench train --config JOB.json`` in a process of its own (its
    output goes to the job's log); its exit code, or the status a signal gave it.

    The scheduler's signals reach the run: its warning that the time is nearly up (SIGUSR2, which
    submitit asks Slurm for and its local executor sends) and a stop (SIGTERM: Slurm's cancel, or the
    comparison of a local job stopping) end the run, which writes its epochs and an ``interrupted``
    row; the row then says what ended it: ``timeout``, ``cancelled`` (Slurm), ``interrupted`` (a local
    comparison that was stopped). A run killed before it wrote a row gets one. A local job ends with the
    process of its comparison (``comparison_pid``), however that ends: killed outright, it could not stop
    its jobs, which would train on detached."""
    import signal
    import time

    # A local job is started with Ctrl-C blocked (the comparison stops it); its run takes Ctrl-C again.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    env, rank = dict(os.environ), 0
    if kind == "slurm":
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        if JobEnvironment().num_tasks > 1:  # a data-parallel job: this task is one rank, Slurm says which
            world = TorchDistributedEnvironment()
            rank = world.rank
            env.update(MASTER_ADDR=world.master_addr, MASTER_PORT=str(world.master_port), RANK=str(world.rank),
                       WORLD_SIZE=str(world.world_size), LOCAL_RANK=str(world.local_rank),
                       LOCAL_WORLD_SIZE=str(world.local_world_size))  # fmt: skip
    gone = _exit_watch(comparison_pid) if comparison_pid is not None else None
    if gone is not None and gone.is_set():
        return "not started"  # its comparison ended before the job began
    child = subprocess.Popen(argv, env=env)
    started = time.monotonic()
    why: list[str] = []

    def forward(signum: int, _frame: object) -> None:
        if not why:
            late = time_limit_s is not None and time.monotonic() - started >= 0.9 * time_limit_s
            if signum == signal.SIGUSR2 or (signum == signal.SIGTERM and late):
                why.append("timeout")
            elif signum == signal.SIGTERM and kind == "slurm":
                why.append("cancelled")
            else:
                why.append("interrupted")
            child.send_signal(signal.SIGTERM)

    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    }
    if gone is not None:  # the comparison's end stops the run as a stop of the comparison would

        def stop_when_gone() -> None:
            gone.wait()
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=stop_when_gone, daemon=True).start()
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if (why or code != 0) and rank == 0:  # rank 0 keeps the run's record
        from cnnbench.recipe import read_job
        from cnnbench.store.runs import RunStore

        recipe = read_job(Path(argv[argv.index("--config") + 1]))
        status = why[0] if why else failed(f"exited with code {code}")
        RunStore(recipe.out, str(recipe.run_name)).settle(status, replace=("interrupted",) if why else ())
    return why[0] if why else code  # stopped before its run had a folder, the job still says how it ended


def _exit_watch(pid: int) -> threading.Event:
    """An event set when process ``pid`` ends (at once where it has ended already): a thread waits on the
    process's descriptor (pidfd), which the kernel makes readable as it exits, with no polling."""
    import select

    gone = threading.Event()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        gone.set()
        return gone
    except (AttributeError, OSError):  # no pidfd here (a kernel before 5.3): nothing to watch with
        return gone

    def watch() -> None:
        select.select([fd], [], [])
        os.close(fd)
        gone.set()

    threading.Thread(target=watch, daemon=True).start()
    return gone
