"""Can bf16 BatchNorm take cuDNN's NHWC kernels, and what would SimpleResNet's step gain?

PyTorch sends fp16 BatchNorm (fp32 weights) to cuDNN and bf16 BatchNorm to its native kernels. This
probe calls ``torch.cudnn_batch_norm`` directly on a bf16 channels-last input with fp32 weights:
whether it is accepted, how far its output, gradients and running statistics are from the native
path, the forward+backward time of one layer both ways, and SimpleResNet's captured training step
(bf16, channels-last, fused Adam, batch 128) with every BatchNorm2d sent either way.

    python benchmarks/bn_probe.py [--out results/train_speed/explore/bn_probe.csv]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import torch
from step_explore import capture, event_times_ms, make_step  # the same step, capture and timing
from torch import nn

from cnnbench.results import environment
from cnnbench.stats import iqr


class CudnnBN(nn.BatchNorm2d):
    """BatchNorm2d whose training forward calls cuDNN directly (probe only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
            return torch.cudnn_batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, True,
                                          self.momentum, self.eps)[0]  # fmt: skip
        return super().forward(x)


def cuda_ms(fn, iters: int = 200) -> tuple[float, float]:
    times = event_times_ms(fn, iters)
    return statistics.median(times), iqr(times)


def layer(shape: tuple[int, int, int, int], use_cudnn: bool) -> dict:
    torch.manual_seed(0)
    bn = (CudnnBN if use_cudnn else nn.BatchNorm2d)(shape[1]).cuda()
    x = torch.randn(shape, device="cuda").to(torch.bfloat16, memory_format=torch.channels_last)
    x.requires_grad_(True)
    g = torch.randn_like(x)

    def fwd_bwd() -> None:
        bn(x).backward(g)

    out = bn(x)
    out.backward(g)
    ref = {"out": out.detach().float(), "dx": x.grad.float(), "dw": bn.weight.grad.clone(),
           "rm": bn.running_mean.clone(), "rv": bn.running_var.clone()}  # fmt: skip
    med, spread = cuda_ms(fwd_bwd)
    return {"ref": ref, "ms": med, "iqr": spread}


def step_ms(use_cudnn: bool) -> tuple[float, float]:
    torch.backends.cudnn.benchmark = True
    model, step = make_step("simple_resnet", "bf16", True, None, True, 128)
    if use_cudnn:
        for m in model.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__ = CudnnBN
    graph, _ = capture(step)
    return cuda_ms(graph.replay)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/train_speed/explore/bn_probe.csv"))
    args = parser.parse_args()
    rows = []
    for shape in [(128, 64, 32, 32), (128, 128, 16, 16), (128, 256, 8, 8)]:
        native = layer(shape, False)
        try:
            cudnn = layer(shape, True)
        except Exception as exc:
            print(f"cudnn_batch_norm on bf16 NHWC with fp32 weights: refused ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0]})")  # fmt: skip
            return
        diff = {k: float((native["ref"][k] - cudnn["ref"][k]).abs().max()) for k in native["ref"]}
        rows.append({"what": "layer fwd+bwd", "shape": "x".join(map(str, shape)), "native_ms": native["ms"],
                     "cudnn_ms": cudnn["ms"], **{f"max_abs_diff_{k}": v for k, v in diff.items()}})  # fmt: skip
        print(rows[-1], flush=True)
    (n, n_iqr), (c, c_iqr) = step_ms(False), step_ms(True)
    rows.append({"what": "simple_resnet step, bf16 CL fused Adam, batch 128", "native_ms": n, "cudnn_ms": c,
                 "native_iqr_ms": n_iqr, "cudnn_iqr_ms": c_iqr})  # fmt: skip
    print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{**r, **environment("cuda")} for r in rows]).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
