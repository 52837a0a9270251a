"""Memory of a training step: estimated from shapes on the meta device, and what cuBLAS keeps on the GPU
(measured once per card, since PyTorch sizes its workspaces by card and version)."""

from __future__ import annotations

import functools
import math
from typing import Any

from cnnbench.device import clear_cublas_workspaces, is_cuda
from cnnbench.models.counting import Counts, largest_layer, saved_for_backward
from cnnbench.recipe import TrainConfig
from cnnbench.training.step import FixedBatch, TrainStep


@functools.cache
def cublas_workspace_bytes(device: str, precision: str = "fp32") -> int | None:
    """Bytes that cuBLAS keeps on ``device`` once cnnbench's training step has run matrix products:
    measured, since PyTorch sizes these workspaces per card and version (64 MiB per handle and stream
    on an H200 with torch 2.11) and keeps one per thread and stream that ran one (the warm-up's stream,
    the step's, autograd's backward thread). Freed first, then a tiny linear model trained a few steps
    by :class:`cnnbench.training.step.TrainStep` as a run trains (eager); what stays allocated once it is gone.
    None off CUDA. Call it before any CUDA graph is captured: it frees the workspaces graphs use."""
    import gc

    import torch

    if not is_cuda(device) or not torch.cuda.is_available():
        return None
    where = torch.device(device)
    torch.cuda.synchronize(where)
    clear_cublas_workspaces()
    before = torch.cuda.memory_allocated(where)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).to(where)
    x, y = torch.randn(32, 64, device=where), torch.randint(0, 10, (32,), device=where)
    recipe = TrainConfig(model="probe", batch_size=32, eval_batch_size=32, precision=precision, cuda_graphs=False,
                         warmup_steps=1)  # fmt: skip
    step = TrainStep(model, recipe, device, steps_per_epoch=1, autotune=True)
    step.warmup(FixedBatch(x, y), FixedBatch(x, y))
    for _ in range(2):
        step.step(x, y)
    torch.cuda.synchronize(where)
    del model, x, y, step
    gc.collect()
    return int(torch.cuda.memory_allocated(where) - before)


def estimate_memory(
    meta_model: Any,
    shape: tuple[int, int, int],
    batch: int,
    precision: str = "fp32",
    workspace: int | None = None,
    counts: Counts | None = None,
) -> dict[str, Any]:
    """Memory of one training step at ``batch`` (MiB = 2**20 bytes), estimated on the meta device.

    - params: the fp32 weights; gradients take as much again;
    - input: the batch itself, in fp32;
    - activations (inference): the largest input + output of one layer;
    - activations (training): every tensor autograd saves for the backward pass, counted once each
      (measured with saved-tensor hooks, the weights themselves left out), and the gradients alive at
      once while the backward pass crosses the largest layer;
    - optimizer: Adam's two moment buffers per weight;
    - in bf16/fp16, saved activations take half the bytes, and each weight's half-precision copy is
      saved for the backward pass as well;
    - ``workspace``: the bytes cuBLAS keeps once a training step has run matrix products
      (:func:`cnnbench.device.cublas_workspace_bytes`, measured on the GPU), counted for a model with
      linear layers. None (no GPU to measure them) leaves them out: ``cublas_workspace_MiB`` is None.

    Activations are measured per sample and grow with the batch; ``counts`` (the model's
    :class:`~cnnbench.models.counting.Counts`, which hold them) spares measuring them again.
    """
    import torch

    param_bytes = sum(p.numel() * 4 for p in meta_model.parameters())
    if counts is None:
        meta_model.eval()
        with torch.no_grad(), largest_layer(meta_model) as peak:
            meta_model(torch.empty(1, *shape, device="meta"))
        meta_model.train()
        with saved_for_backward(meta_model) as saved:
            meta_model(torch.empty(2, *shape, device="meta"))  # BatchNorm in training needs two
        peak_per_sample, saved_per_sample = peak[0], sum(saved.values()) / 2
    else:
        peak_per_sample, saved_per_sample = counts.peak_layer_bytes, counts.saved_bytes
    peak_layer = peak_per_sample * batch
    train_bytes = saved_per_sample * batch
    half = precision in ("bf16", "fp16")
    scale = 0.5 if half else 1.0
    if half:
        train_bytes = train_bytes / 2 + param_bytes / 2
    # While the backward pass runs through the largest layer, the gradients of its input and output
    # are alive beside everything saved.
    train_bytes += peak_layer * scale
    mib = 2**20
    input_bytes = batch * math.prod(shape) * 4
    infer = peak_layer * scale
    memory = {
        "batch_size": batch,
        "precision": precision,
        "params_MiB": param_bytes / mib,
        "grads_MiB": param_bytes / mib,
        "activations_infer_MiB": infer / mib,
        "activations_train_MiB": train_bytes / mib,
        "optimizer_MiB": 2 * param_bytes / mib,
        "input_MiB": input_bytes / mib,
    }
    matmuls = any(isinstance(m, torch.nn.Linear) for m in meta_model.modules())
    memory["cublas_workspace_MiB"] = None if workspace is None else workspace / mib if matmuls else 0.0
    memory["total_train_MiB"] = (
        memory["params_MiB"] + memory["grads_MiB"] + memory["activations_train_MiB"] + memory["optimizer_MiB"]
        + memory["input_MiB"] + (memory["cublas_workspace_MiB"] or 0.0)
    )  # fmt: skip
    return memory
