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
import subprocess
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


def sum_over_ranks(*tensors: Any) -> None:
    """Add each tensor up over the ranks, in place (nothing to do in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
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
    """The torchrun command that runs ``cnnbench ARGV`` in ``processes`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "cnnbench", *argv]  # fmt: skip


def run_data_parallel(gpus: str, argv: Sequence[str]) -> int:
    """``cnnbench ARGV`` as a data-parallel run on the GPUs of ``--gpus`` (all, N or 0,2,3)."""
    import torch

    from cnnbench.device import parse_gpus

    return launch(parse_gpus(gpus, torch.cuda.device_count()), argv)


def launch(gpus: Sequence[str], argv: Sequence[str]) -> int:
    """Run ``cnnbench ARGV`` under torchrun, one process per GPU of ``gpus``; its exit code."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(torchrun_argv(len(gpus), argv), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached every rank as well; rank 0 records the run as interrupted.
        return process.wait()
