"""What a model must compute: parameters, per-layer output shapes and MACs, forward and training FLOPs.

Units: a MAC is one multiply-add. fvcore counts one multiply-add as one "flop", so its totals are MACs
here; FLOPs = 2 x MACs. Training FLOPs (forward + backward) are measured with PyTorch's
``FlopCounterMode``, which counts 2 FLOPs per multiply-add of matrix-like operators only.
All per-sample figures are for one input of the stated size, in fp32.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.datasets import format_input_size, get_dataset_spec
from cnnbench.device import cublas_workspace_bytes
from cnnbench.flops import family, flop_counter, fvcore_analysis
from cnnbench.models import format_options, get_model_info
from cnnbench.results import DEFAULT_RESULTS_DIR, check_table, ensure_dir, environment, upsert_rows

# Warn when fvcore and FlopCounterMode disagree by more than this (percent of the larger).
CROSSCHECK_TOLERANCE_PCT = 2.0
MAC_CONVENTION = (
    "MACs of convolutions, linear layers and matrix products (attention's QK^T and AV included); "
    "normalisation, pooling and elementwise ops carry none"
)


@dataclass(frozen=True)
class SummaryConfig:
    model: str
    options: dict[str, str] = field(default_factory=dict)
    input_size: tuple[int, int, int] | None = None
    dataset: str | None = None
    num_classes: int | None = None
    depth: int = 3
    batch_size: int = 1  # for the memory estimate
    precision: str = "fp32"  # for the memory estimate


@dataclass
class LayerRow:
    name: str
    type: str
    depth: int
    output_shape: list[int] | None
    params: int
    macs: int
    params_pct: float  # of the model's parameters
    macs_pct: float  # of the model's forward MACs


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
    crosscheck_warning: str | None
    uncounted_ops: dict[str, int]
    layers: list[LayerRow]
    batch_size: int
    memory: dict[str, Any]
    mac_convention: str = MAC_CONVENTION

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
            **{f"memory_{k}": (round(v, 3) if isinstance(v, float) else v) for k, v in self.memory.items()},
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
    if num_classes is None and spec.num_classes < 1:
        from cnnbench.errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"expected --num-classes with --dataset {spec.name} (its classes are its folders), got none"
        )
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
    forward, train, _ = _count(model_name, options, shape, num_classes)
    return forward, train


@functools.cache
def _count(
    model_name: str, options: tuple[tuple[str, str], ...], shape: tuple[int, int, int], num_classes: int
) -> tuple[int, int, tuple[tuple[str, int], ...]]:
    """(forward FLOPs, training FLOPs, forward FLOPs per operator family), per sample."""
    import torch

    model, _ = build(model_name, dict(options), shape, num_classes, device="meta")
    model.eval()
    with flop_counter() as counter, torch.no_grad():
        model(torch.empty(1, *shape, device="meta"))
    forward = counter.get_total_flops()
    families: Counter[str] = Counter()
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        families[family(str(op))] += int(flops)
    # Batch of 2: BatchNorm in training mode needs more than one value per channel.
    model.train()
    x = torch.empty(2, *shape, device="meta")
    with flop_counter() as counter:
        model(x).sum().backward()
    train = counter.get_total_flops() // 2
    return forward, train, tuple(sorted(families.items()))


def crosscheck(
    fvcore_by_op: dict[str, int], counter_flops_by_family: dict[str, int]
) -> tuple[float, str | None]:
    """(difference in %, a warning naming the operator families responsible, or None) between fvcore's
    MACs and FlopCounterMode's forward FLOPs / 2 over the operators both count."""
    fv: Counter[str] = Counter()
    for op, macs in fvcore_by_op.items():
        fv[family(op)] += int(macs)
    fc: Counter[str] = Counter()
    for op, flops in counter_flops_by_family.items():
        fc[family(op)] += int(flops) // 2
    both = set(fv) & set(fc)
    a, b = sum(fv[k] for k in both), sum(fc[k] for k in both)
    diff = abs(a - b) / max(a, b, 1) * 100
    if diff <= CROSSCHECK_TOLERANCE_PCT:
        return diff, None
    apart = [f"{k} {fv[k]:,} vs {fc[k]:,}" for k in sorted(both) if fv[k] != fc[k]]
    return diff, (
        f"fvcore and FlopCounterMode differ by {diff:.1f}% on the operators both count (tolerance "
        f"{CROSSCHECK_TOLERANCE_PCT:g}%): {'; '.join(apart)} MACs"
    )


def summarize(config: SummaryConfig) -> ModelSummary:
    import torch

    shape, num_classes = resolve_input(config.model, config.input_size, config.dataset, config.num_classes)
    info = get_model_info(config.model)
    torch.manual_seed(0)
    model, parsed = build(info.name, config.options, shape, num_classes, check_memory=(1, "cpu"))
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    x = torch.randn(1, *shape)

    shapes: dict[str, list[int]] = {}
    names = {m: n for n, m in model.named_modules()}

    def record(mod: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and names[mod] not in shapes:
            shapes[names[mod]] = list(out.shape)

    order: list[str] = []  # modules in the order they first run, which is the order of the table

    def first_call(mod: Any, _inp: Any) -> None:
        if names[mod] not in order:
            order.append(names[mod])

    handles = [m.register_forward_hook(record) for m in model.modules()]
    handles += [m.register_forward_pre_hook(first_call) for m in model.modules()]
    # The fast path of nn.MultiheadAttention is one fused op that no counter sees into.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        analysis = fvcore_analysis(model, (x,))
        by_module = analysis.by_module()
        total_macs = int(analysis.total())
        by_operator = dict(analysis.by_operator())
        uncounted = dict(Counter(analysis.unsupported_ops()) + analysis.counted_as_zero)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)

    fwd_flops, train_flops, families = _count(
        info.name, tuple(sorted(config.options.items())), shape, num_classes
    )
    fc_macs = fwd_flops // 2
    diff, warning = crosscheck(by_operator, dict(families))

    layers = []
    for name in execution_order(model, order):
        mod = model.get_submodule(name)
        depth = name.count(".") + 1
        if not name or depth > config.depth:
            continue
        layer_params = sum(p.numel() for p in mod.parameters())
        layer_macs = int(by_module.get(name, 0))
        layers.append(
            LayerRow(
                name=name,
                type=type(mod).__name__,
                depth=depth,
                output_shape=shapes.get(name),
                params=layer_params,
                macs=layer_macs,
                params_pct=100 * layer_params / max(params, 1),
                macs_pct=100 * layer_macs / max(total_macs, 1),
            )
        )
    meta_model, _ = build(info.name, config.options, shape, num_classes, device="meta")
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
        crosscheck_warning=warning,
        uncounted_ops=uncounted,
        layers=layers,
        batch_size=config.batch_size,
        memory=estimate_memory(
            meta_model,
            shape,
            config.batch_size,
            config.precision,
            cublas_workspace_bytes("cuda", config.precision),
        ),
    )


def execution_order(model: Any, called: list[str]) -> list[str]:
    """Module names in the order they first ran; one that never ran itself (a ModuleList, a
    projection used through its weights) goes just before the next module in registration order that
    did, so containers precede their children."""
    position = {name: i for i, name in enumerate(called)}
    registered = [n for n, _ in model.named_modules()]
    keys: dict[str, tuple[float, int]] = {}
    following = math.inf
    for name in reversed(registered):
        if name in position:
            following = position[name]
            keys[name] = (following, 0)
        else:
            keys[name] = (following, -1)
    rank = {name: i for i, name in enumerate(registered)}
    return sorted(registered, key=lambda n: (keys[n], rank[n]))


def estimate_memory(
    meta_model: Any,
    shape: tuple[int, int, int],
    batch: int,
    precision: str = "fp32",
    workspace: int | None = None,
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
    """
    import torch

    param_storages = {p.untyped_storage()._cdata for p in meta_model.parameters()}
    param_bytes = sum(p.numel() * 4 for p in meta_model.parameters())
    saved: dict[int, int] = {}

    def pack(t: Any) -> Any:
        storage = t.untyped_storage()
        if storage._cdata not in param_storages:
            saved[storage._cdata] = storage.nbytes()
        return t

    peak_layer = 0

    def layer(_m: Any, inputs: Any, out: Any) -> None:
        nonlocal peak_layer
        tensors = [t for t in (*inputs, out) if isinstance(t, torch.Tensor)]
        peak_layer = max(peak_layer, sum(t.numel() * t.element_size() for t in tensors))

    x = torch.empty(batch, *shape, device="meta")
    handles = [m.register_forward_hook(layer) for m in meta_model.modules() if not list(m.children())]
    try:
        meta_model.eval()
        with torch.no_grad():
            meta_model(x)
    finally:
        for h in handles:
            h.remove()
    meta_model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        meta_model(torch.empty(max(batch, 2), *shape, device="meta"))
    train_bytes = sum(saved.values()) * batch / max(batch, 2)
    half = precision in ("bf16", "fp16")
    scale = 0.5 if half else 1.0
    if half:
        train_bytes = train_bytes / 2 + param_bytes / 2
    # While the backward pass runs through the largest layer, the gradients of its input and output
    # are alive beside everything saved.
    train_bytes += peak_layer * scale
    mib = 2**20
    input_bytes = x.numel() * 4
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


def save_summary(summary: ModelSummary, out_dir: Path | None = None, repair: bool = False) -> Path:
    """Upsert one row per (model, options, input size, classes) into summary.csv."""
    out = ensure_dir(Path(out_dir or DEFAULT_RESULTS_DIR))
    path = out / "summary.csv"
    check_table(path, repair)
    upsert_rows(path, [summary.csv_row()], key=("model", "options", "input_size", "num_classes"))
    return path
