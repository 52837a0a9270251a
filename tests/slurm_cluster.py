"""A one-node Slurm cluster on this machine, all its files in one folder: the cluster the scheduler tests
run against, and one a user can start to try ``compare --launcher slurm`` without a real cluster.

    python tests/slurm_cluster.py start /tmp/slurm    # prints the SLURM_CONF line to export
    SLURM_CONF=/tmp/slurm/slurm.conf cnnbench compare lenet5:pool=max,avg -d synthetic -e 1 \\
        --device cpu --launcher slurm --gpus-per-job 0 --time 5
    python tests/slurm_cluster.py stop /tmp/slurm

It needs Debian's ``slurm-wlm`` and ``munge`` packages and root (slurmd starts jobs as their users). The
cluster keeps no accounting (no slurmdbd), as many small clusters do. Its own munge daemon, key, ports,
state, spool and logs live in the folder, so it never touches a real cluster's files; the commands find
it through ``SLURM_CONF``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("slurmd", "slurmctld", "munged")  # stopped in this order


def missing() -> str | None:
    """Why a cluster cannot start here, or None."""
    for command in ("munged", "slurmctld", "slurmd", "sinfo", "sbatch"):
        if shutil.which(command) is None:
            return f"{command} is not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd needs root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(folder: Path) -> str:
    host = socket.gethostname().split(".")[0]
    # slurmd -C reads this machine's CPUs, sockets and memory as a NodeName line.
    node = next(line for line in subprocess.run(["slurmd", "-C"], capture_output=True, text=True,
                                                check=True).stdout.splitlines() if line.startswith("NodeName"))  # fmt: skip
    return f"""\
ClusterName=cnnbench-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
# Jobs ended stay in squeue for 10 minutes (what a cluster without accounting reports states from);
# the rest is for speed: a cancelled job killed 5 s after its SIGTERM, limits checked every few seconds.
MinJobAge=600
KillWait=5
OverTimeLimit=0
InactiveLimit=0
MessageTimeout=10
SchedulerParameters=sched_interval=2
{node} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _wait(test: callable, seconds: float, what: str, folder: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if test():
            return
        time.sleep(0.2)
    logs = "".join(p.read_text()[-2000:] for p in sorted((folder / "log").glob("*.log")))
    raise RuntimeError(f"the test cluster did not {what} in {seconds:.0f} s; its logs:\n{logs}")


def start(folder: Path) -> dict[str, str]:
    """Start munge, slurmctld and slurmd with their files in ``folder``; return once the node is idle.
    The environment variables that point Slurm's commands at this cluster."""
    folder = Path(folder).resolve()
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "munge").chmod(0o700)
    key = folder / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    munge = folder / "munge"
    subprocess.run(["munged", f"--socket={munge}/munge.socket", f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                    f"--log-file={folder}/log/munged.log", f"--seed-file={munge}/munged.seed", "--force"],
                   check=True, capture_output=True)  # fmt: skip
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, capture_output=True)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, capture_output=True)

    def idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout
        return out.strip() == "idle"

    _wait(idle, 60, "show its node idle", folder)
    return {"SLURM_CONF": str(conf)}


def stop(folder: Path) -> None:
    """Stop the cluster's daemons (its files stay in ``folder``)."""
    folder = Path(folder).resolve()
    pids = {"slurmd": folder / "slurmd.pid", "slurmctld": folder / "slurmctld.pid",
            "munged": folder / "munge" / "munged.pid"}  # fmt: skip
    for name in DAEMONS:
        try:
            pid = int(pids[name].read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python tests/slurm_cluster.py start|stop FOLDER")
    if sys.argv[1] == "start":
        why = missing()
        if why:
            sys.exit(f"error: {why}")
        print(f"export SLURM_CONF={start(Path(sys.argv[2]))['SLURM_CONF']}")
    else:
        stop(Path(sys.argv[2]))
