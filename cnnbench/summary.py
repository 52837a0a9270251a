"""What a model must compute: parameters, per-layer output shapes and MACs, forward and training FLOPs.

Units: a MAC is one multiply-add. fvcore counts one multiply-add as one "flop", so its totals are MACs
here; FLOPs = 2 x MACs. Training FLOPs (forward + backward) are measured with PyTorch's
``FlopCounterMode``, which counts 2 FLOPs per multiply-add of matrix-like operators only.
All per-sample figures are for one input of the stated size, in fp32.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.datasets import format_input_size, get_dataset_spec
from cnnbench.models import format_options, get_model_info
from cnnbench.results import DEFAULT_RESULTS_DIR, check_table, ensure_dir, environment, upsert_rows

# Warn when fvcore and FlopCounterMode disagree by more than this (percent of the larger).
CROSSCHECK_TOLERANCE_PCT = 2.0


@dataclass(frozen=True)
class SummaryConfig:
    model: str
    options: dict[str, str] = field(default_factory=dict)
    input_size: tuple[int, int, int] | None = None
    dataset: str | None = None
    num_classes: int | None = None
    depth: int = 3


@dataclass
class LayerRow:
    name: str
    type: str
    depth: int
    output_shape: list[int] | None
    params: int
    macs: int


@dataclass
class ModelSummary:
    model: str
    options: dict[str, Any]
    input_size: str
    num_classes: int
    params: int
    trainable_params: int
    param_mb: float
    macs: int
    flops: int
    train_flops: int
    flop_counter_macs: int
    crosscheck_diff_pct: float
    uncounted_ops: dict[str, int]
    layers: list[LayerRow]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def csv_row(self) -> dict[str, Any]:
        row = {
            "model": self.model,
            "options": format_options(self.options),
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "param_memory_MB": round(self.param_mb, 3),
            "forward_MACs_per_sample": self.macs,
            "forward_FLOPs_per_sample": self.flops,
            "train_FLOPs_per_sample": self.train_flops,
            "flopcounter_forward_MACs_per_sample": self.flop_counter_macs,
            "mac_crosscheck_diff_pct": round(self.crosscheck_diff_pct, 3),
            "uncounted_ops": ";".join(f"{k}:{v}" for k, v in sorted(self.uncounted_ops.items())),
            "precision": "fp32",
        }
        env = environment("cpu")
        row.update({k: env[k] for k in ("torch_version", "cnnbench_version", "date")})
        return row


def resolve_input(
    model: str, input_size: tuple[int, int, int] | None, dataset: str | None, num_classes: int | None
) -> tuple[tuple[int, int, int], int]:
    """Input shape and class count from --input-size / --dataset / the model's default dataset."""
    info = get_model_info(model)
    spec = get_dataset_spec(dataset or info.default_dataset)
    shape = tuple(input_size) if input_size else spec.input_shape
    if num_classes is not None and num_classes < 1:
        from cnnbench.errors import InvalidArgumentError

        raise InvalidArgumentError(f"expected --num-classes >= 1, got {num_classes}")
    return shape, int(num_classes or spec.num_classes)  # type: ignore[return-value]


def build(
    model: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int, device: Any = None,
    check_memory: tuple[int, str] | None = None,
):  # fmt: skip
    """Build a registered model (optionally directly on ``device``, e.g. 'meta') with parsed options.

    ``check_memory=(batch, device)`` first measures the model on the meta device and refuses, with one
    line, a size whose parameters and activations cannot fit that device's memory.
    """
    import torch

    info = get_model_info(model)
    parsed = info.parse_options(options)
    if check_memory is not None:
        with torch.device("meta"):
            meta = info.builder(shape, num_classes, **parsed)
        _check_fits(info.name, meta, shape, *check_memory)
    with torch.device(device or "cpu"):
        return info.builder(shape, num_classes, **parsed), parsed


def prepare_model(
    name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int, device: str,
    channels_last: bool = False, seed: int = 0, check_batch: int | None = None,
) -> Any:  # fmt: skip
    """A model as every command runs it: built from ``seed``, on ``device``, channels-last if asked;
    with ``check_batch``, refused in one line when that batch cannot fit the device."""
    import torch

    torch.manual_seed(seed)
    check = (check_batch, device) if check_batch is not None else None
    model, _ = build(name, options, shape, num_classes, check_memory=check)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def forward_bytes(model: Any, shape: tuple[int, int, int], batch: int) -> int:
    """Bytes of the input and of every leaf module's output for one fp32 forward of ``batch``,
    measured on the meta device (shapes only): an upper bound on inference activations."""
    import torch

    total = batch * math.prod(shape) * 4

    def count(_m: Any, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(batch, *shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def device_memory_bytes(device: str) -> int:
    """All the memory of ``device``: the GPU's, or the host's RAM."""
    import torch

    from cnnbench.device import is_cuda

    if is_cuda(device):
        return torch.cuda.mem_get_info(torch.device(device))[1]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_fits(name: str, meta_model: Any, shape: tuple[int, int, int], batch: int, device: str) -> None:
    from cnnbench.errors import InputSizeError

    params = sum(p.numel() * p.element_size() for p in meta_model.parameters())
    need = params + forward_bytes(meta_model, shape, batch)
    have = device_memory_bytes(device)
    if need > have:
        raise InputSizeError(
            f"{name} at {format_input_size(shape)} needs about {need / 2**30:,.1f} GiB for its parameters and "
            f"the activations of a batch of {batch}; expected a size that fits in {have / 2**30:,.1f} GiB ({device})"
        )


def count_flops(
    model_name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int
) -> tuple[int, int]:
    """(forward FLOPs per sample, training FLOPs per sample).

    Measured with FlopCounterMode on the meta device: exact shapes, no arithmetic, no memory. Kept per
    process, so a comparison's seeds and repeated variants count once.
    """
    return _count_flops(model_name, tuple(sorted(options.items())), tuple(shape), num_classes)


@functools.cache
def _count_flops(
    model_name: str, options: tuple[tuple[str, str], ...], shape: tuple[int, int, int], num_classes: int
) -> tuple[int, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, _ = build(model_name, dict(options), shape, num_classes, device="meta")
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *shape, device="meta"))
    forward = counter.get_total_flops()
    # Batch of 2: BatchNorm in training mode needs more than one value per channel.
    model.train()
    x = torch.empty(2, *shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    train = counter.get_total_flops() // 2
    return forward, train


def _fvcore_analysis(model: Any, x: Any):
    import warnings

    with warnings.catch_warnings():
        # fvcore's import touches torch.jit.script, deprecated in recent PyTorch; not our users' concern.
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    # fvcore logs a warning per unsupported op; we collect and report them instead.
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def summarize(config: SummaryConfig) -> ModelSummary:
    import torch

    shape, num_classes = resolve_input(config.model, config.input_size, config.dataset, config.num_classes)
    info = get_model_info(config.model)
    torch.manual_seed(0)
    model, parsed = build(info.name, config.options, shape, num_classes, check_memory=(1, "cpu"))
    model.eval()
    x = torch.randn(1, *shape)

    shapes: dict[str, list[int]] = {}
    names = {m: n for n, m in model.named_modules()}

    def record(mod: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and names[mod] not in shapes:
            shapes[names[mod]] = list(out.shape)

    handles = [m.register_forward_hook(record) for m in model.modules()]
    # The fast path of nn.MultiheadAttention is one fused op that no counter sees into.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        analysis = _fvcore_analysis(model, (x,))
        by_module = analysis.by_module()
        total_macs = int(analysis.total())
        uncounted = dict(Counter(analysis.unsupported_ops()))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)

    fwd_flops, train_flops = count_flops(info.name, config.options, shape, num_classes)
    fc_macs = fwd_flops // 2
    diff = abs(total_macs - fc_macs) / max(total_macs, fc_macs, 1) * 100

    layers = []
    for name, mod in model.named_modules():
        if not name:
            continue
        depth = name.count(".") + 1
        if depth > config.depth:
            continue
        layers.append(
            LayerRow(
                name=name,
                type=type(mod).__name__,
                depth=depth,
                output_shape=shapes.get(name),
                params=sum(p.numel() for p in mod.parameters()),
                macs=int(by_module.get(name, 0)),
            )
        )
    params = sum(p.numel() for p in model.parameters())
    return ModelSummary(
        model=info.name,
        options=parsed,
        input_size=format_input_size(shape),
        num_classes=num_classes,
        params=params,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        param_mb=sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
        macs=total_macs,
        flops=2 * total_macs,
        train_flops=int(train_flops),
        flop_counter_macs=int(fc_macs),
        crosscheck_diff_pct=diff,
        uncounted_ops=uncounted,
        layers=layers,
    )


def save_summary(summary: ModelSummary, out_dir: Path | None = None, repair: bool = False) -> Path:
    """Upsert one row per (model, options, input size, classes) into summary.csv."""
    out = ensure_dir(Path(out_dir or DEFAULT_RESULTS_DIR))
    path = out / "summary.csv"
    check_table(path, repair)
    upsert_rows(path, [summary.csv_row()], key=("model", "options", "input_size", "num_classes"))
    return path
