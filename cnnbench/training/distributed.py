"""Data-parallel training of one run through torchrun and DistributedDataParallel.

``cnnbench train MODEL --gpus N`` starts ``torchrun --standalone --nproc-per-node N -m cnnbench train
...`` (what a user may also type), and each process it starts trains one shard:

- the world comes from torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); NCCL on
  CUDA, gloo on the CPU;
- ``--batch-size`` stays the global batch: each rank steps on ``batch / world`` samples and DDP
  averages the gradients, so a step is the one-process step on the whole batch;
- each rank holds its shard of the training set (every ``world``-th sample, equal shards so that
  every rank takes the same number of steps) and of the test set; the epoch's sums are added up over
  the ranks, so losses and accuracies are those of the whole sets;
- rank 0 alone writes the run's files and prints; the others keep a :class:`Replica` of the store
  that reads (a checkpoint to resume from) and never writes.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnbench.errors import InvalidArgumentError


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun describes in the environment, or a single process."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise InvalidArgumentError(
            "expected integer WORLD_SIZE, RANK and LOCAL_RANK (as torchrun sets them), got "
            f"{os.environ.get('WORLD_SIZE')!r}, {os.environ.get('RANK')!r}, {os.environ.get('LOCAL_RANK')!r}"
        ) from None
    return World(rank, local, size)


def is_main_process() -> bool:
    """Whether this process prints and writes: rank 0, or the only process."""
    return world_from_env().is_main


def join(world: World, device: str) -> str:
    """Join the process group of ``world``; the device this rank trains on."""
    import torch
    import torch.distributed as dist

    if not world.distributed:
        return device
    cuda = device.startswith("cuda")
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"expected a GPU for local rank {world.local_rank}, got {torch.cuda.device_count()} GPUs"
            )
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=torch.device(device) if cuda else None)
    return device


def leave(world: World) -> None:
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether this process is one rank of a data-parallel run (its process group is up)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def sum_over_ranks(*tensors: Any) -> None:
    """Add each tensor up over the ranks, in place (nothing to do in one process)."""
    import torch.distributed as dist

    if is_distributed():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def shard(data: Any, world: World, equal: bool) -> Any:
    """This rank's every ``world``-th sample of ``data``; ``equal`` cuts every shard to the smallest
    one's length, so that every rank takes the same number of training steps."""
    if not world.distributed:
        return data
    count = len(data.labels) // world.size if equal else None
    images = data.images[world.rank :: world.size][:count]
    labels = data.labels[world.rank :: world.size][:count]
    return dataclasses.replace(data, images=images, labels=labels)


def per_rank_batch(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise InvalidArgumentError(
            f"expected --batch-size divisible by the {world.size} processes (it is the global batch), got {batch_size}"
        )
    return batch_size // world.size


def wrap(model: Any, device: str, world: World) -> Any:
    """The model as the step runs it: DistributedDataParallel over the ranks, or the model itself."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
    return DistributedDataParallel(model, device_ids=ids)


def torchrun_argv(processes: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command that runs ``cnnbench ARGV`` in ``processes`` processes on this machine (what
    a user may type; cnnbench itself starts the same agent in-process, :func:`launch`)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "cnnbench", *argv]  # fmt: skip


# Where the ranks that cnnbench started leave the one-line error they do not print: the process that
# started them says the run's first failure, once. (Under a torchrun of the user's own, rank 0 prints.)
RANK_ERRORS_ENV = "CNNBENCH_RANK_ERRORS"


def rank_error(message: str) -> bool:
    """Leave ``message`` for the process that started this rank (True), or say whether this process
    should print it itself (False: the only process, or rank 0 of a torchrun of the user's own)."""
    world = world_from_env()
    folder = os.environ.get(RANK_ERRORS_ENV)
    if world.distributed and folder and os.path.isdir(folder):
        with open(os.path.join(folder, f"rank{world.rank}"), "w") as fh:
            fh.write(message)
        return True
    if not world.is_main:
        # torchrun stops every rank when one exits: a moment for rank 0 to say what they all found.
        import time

        time.sleep(1.0)
    return not world.is_main


@dataclass(frozen=True)
class RankFailure:
    """The first rank of a data-parallel run that failed, as torchrun's agent saw it."""

    rank: int
    exitcode: int
    message: str | None = None  # the one-line error the rank left (it prints none itself)

    def describe(self) -> str:
        import signal

        if self.exitcode < 0:
            return f"rank {self.rank} was killed by {signal.Signals(-self.exitcode).name}"
        return f"rank {self.rank} exited with code {self.exitcode}" + (
            f": {self.message}" if self.message else ""
        )


def run_data_parallel(gpus: str, argv: Sequence[str], device: str = "auto") -> RankFailure | None:
    """``cnnbench ARGV`` as a data-parallel run on the GPUs of ``--gpus`` (all, N or 0,2,3); with
    ``--device cpu``, in N processes on the CPU (gloo), what the tests run."""
    import torch

    from cnnbench.device import parse_gpus

    if device == "cpu":
        try:
            count = int(gpus)
        except ValueError:
            raise InvalidArgumentError(
                f"expected --gpus N (processes) with --device cpu, got {gpus!r}"
            ) from None
        if count < 1:
            raise InvalidArgumentError(f"expected --gpus N >= 1 with --device cpu, got {count}")
        return launch([""] * count, argv)
    return launch(parse_gpus(gpus, torch.cuda.device_count()), argv)


def launch(gpus: Sequence[str], argv: Sequence[str]) -> RankFailure | None:
    """Run ``cnnbench ARGV`` in one process per GPU of ``gpus`` under torch's elastic agent (torchrun's,
    started here, standalone); None when every rank ended well, else the first that failed. Its report
    of a failure stays a return value: the caller says it in one line. A stop signal (Ctrl-C, SIGTERM)
    stops every rank (the agent sends them SIGTERM) and is raised here as :class:`Stopped`."""
    import logging
    import shutil
    import signal
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from cnnbench.training.status import Stopped

    errors = tempfile.mkdtemp(prefix="cnnbench-ranks-")
    if any(gpus):
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # the ranks' environment is this process's
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ[RANK_ERRORS_ENV] = errors
    # The agent's own lines ("Received 15 death signal, shutting down workers"): cnnbench says how the
    # run ended. Its modules' loggers carry levels of their own, so each is set, not just the parent.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=len(gpus), run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)  # fmt: skip
    # Under nohup (SIGHUP ignored) torch's agent would still stop its ranks on a closed terminal's SIGHUP,
    # taking the signal over as torchrun does (pytorch/pytorch#76894): it is blocked instead, here and in
    # the ranks, which inherit the mask, for as long as they run.
    hangup_ignored = hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    if hangup_ignored:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        elastic_launch(config, sys.executable)("-m", "cnnbench", *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        path = os.path.join(errors, f"rank{rank}")
        message = open(path).read().strip() if os.path.isfile(path) else None
        return RankFailure(rank, failure.exitcode, message)
    except SignalException as exc:
        sig = exc.sigval
        if sig == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise Stopped(int(sig)) from None
    finally:
        if hangup_ignored:  # ignored again before it is unblocked: a hangup meanwhile is dropped
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        os.environ.pop(RANK_ERRORS_ENV, None)
        shutil.rmtree(errors, ignore_errors=True)
    return None
