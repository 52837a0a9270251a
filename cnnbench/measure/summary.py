"""What a model must compute: parameters, per-layer output shapes and MACs, forward and training FLOPs.

Units: a MAC is one multiply-add. fvcore counts one multiply-add as one "flop", so its totals are MACs
here; FLOPs = 2 x MACs. Training FLOPs (forward + backward) are measured with PyTorch's
``FlopCounterMode``, which counts 2 FLOPs per multiply-add of matrix-like operators only.
All per-sample figures are for one input of the stated size, in fp32.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.data.specs import format_input_size
from cnnbench.measure.memory import cublas_workspace_bytes, estimate_memory
from cnnbench.models import format_options, get_model_info
from cnnbench.models.build import build_for_counting, check_fits, resolve_input, shared_meta
from cnnbench.models.counting import (
    count_by_family,
    crosscheck,
    deploy_form,
    fusing_modules,
    fvcore_analysis,
    headline_macs,
)
from cnnbench.models.outputs import tensors_only
from cnnbench.settings import SummaryConfig
from cnnbench.store.tables import DEFAULT_RESULTS_DIR, check_table, ensure_dir, environment, upsert_rows

MAC_CONVENTION = (
    "MACs of convolutions, linear layers and matrix products (attention's QK^T and AV included); "
    "normalisation, pooling and elementwise ops carry none"
)


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
    fvcore_macs: int  # fvcore's own total: ``macs`` where it skipped no MAC-bearing op
    macs_source: str  # which counter gave ``macs``, family by family
    count_note: str  # the registry's word on what the MACs are of (AlexNet: one tower), or ""
    crosscheck_diff_pct: float
    crosscheck_warning: str | None
    uncounted_ops: dict[str, int]
    layers: list[LayerRow]
    batch_size: int
    memory: dict[str, Any]
    mac_convention: str = MAC_CONVENTION
    # Auxiliary heads (GoogLeNet's, Inception's): in the parameters or not; MACs are the main path's.
    aux_heads: str = "none"
    # What fvcore's default handles count outside the convention (normalisation, upsampling, adaptive
    # pooling), by op: tables counted with fvcore's defaults (timm's) hold these too.
    outside_convention: dict[str, int] = field(default_factory=dict)

    @property
    def fvcore_default_macs(self) -> int:
        """fvcore's total under its own defaults, the convention of timm's published table."""
        return self.fvcore_macs + sum(self.outside_convention.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fvcore_default_macs": self.fvcore_default_macs}

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
            "fvcore_forward_MACs_per_sample": self.fvcore_macs,
            "fvcore_default_forward_MACs_per_sample": self.fvcore_default_macs,
            "MACs_source": self.macs_source,
            "MACs_note": self.count_note,
            "mac_crosscheck_diff_pct": round(self.crosscheck_diff_pct, 3),
            **{f"memory_{k}": (round(v, 3) if isinstance(v, float) else v) for k, v in self.memory.items()},
            "uncounted_ops": ";".join(f"{k}:{v}" for k, v in sorted(self.uncounted_ops.items())),
            "aux_heads": self.aux_heads,
            "precision": "fp32",
        }
        env = environment("cpu")
        row.update({k: env[k] for k in ("torch_version", "cnnbench_version", "date")})
        return row


def _form_counted(model: Any) -> str:
    """Where the model can be reparameterised for inference (RepVGG-style branches, conv + BN fusion: the
    modules timm's ``reparameterize_model`` fuses), which form the counts are of."""
    fusable = fusing_modules(model)
    if not fusable:
        return ""
    return (
        f"the model as built (its training form): {fusable} of its modules reparameterise for inference "
        "(timm's reparameterize_model), and published tables count that deploy form, which has fewer MACs"
    )


def summarize(config: SummaryConfig) -> ModelSummary:
    """The model's summary, counted on its shapes alone: the model on the meta device for the layer
    table, the parameters, FlopCounterMode's counts and the memory estimate, and with zero weights on
    the CPU for fvcore, whose trace needs real tensors. No weight is initialised: none is used."""
    import torch

    shape, num_classes = resolve_input(config.model, config.input_size, config.dataset, config.num_classes)
    info = get_model_info(config.model)
    parsed = info.parse_options(config.options)
    check_fits(info.name, config.options, shape, num_classes, 1, "cpu")
    meta = shared_meta(info.name, config.options, shape, num_classes)
    model = build_for_counting(info.name, config.options, shape, num_classes).eval()
    as_built = _form_counted(meta)
    if config.deploy_form:  # the form published tables count: fused branches and BN (on the CPU: fusing
        model = deploy_form(model, info.name)  # computes weights from weights, which the meta device cannot)
        meta = model
    params = sum(p.numel() for p in meta.parameters())
    # The fast path of nn.MultiheadAttention is one fused op that neither counters nor hooks see into.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    traceable = model.register_forward_hook(tensors_only)
    try:
        analysis = fvcore_analysis(model, (torch.zeros(1, *shape),))
        with recording_shapes(model) as (shapes, order):  # fvcore's trace runs the forward, once
            total_macs = int(analysis.total())
        by_module = analysis.by_module()
        by_operator = dict(analysis.by_operator())
        uncounted = dict(Counter(analysis.unsupported_ops()) + analysis.counted_as_zero)
        outside = dict(analysis.outside_convention)
    finally:
        traceable.remove()
        torch.backends.mha.set_fastpath_enabled(fastpath)

    counts = count_by_family(
        info.name, tuple(sorted(config.options.items())), shape, num_classes, config.deploy_form
    )
    diff, warning = crosscheck(by_operator, dict(counts.families))
    fvcore_macs = total_macs
    headline = headline_macs(by_operator, dict(counts.families), dict(Counter(analysis.unsupported_ops())))
    total_macs = headline.macs  # layers keep fvcore's per-module counts; the totals cover every op
    if warning and headline.taken:
        warning += f"; the headline takes {' and '.join(headline.taken)} from FlopCounterMode, which counts what fvcore skipped"

    layers = []
    for name in execution_order(meta, order):
        mod = meta.get_submodule(name)
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
    return ModelSummary(
        model=info.name,
        options=parsed,
        input_size=format_input_size(shape),
        num_classes=num_classes,
        params=params,
        trainable_params=sum(p.numel() for p in meta.parameters() if p.requires_grad),
        param_mb=sum(p.numel() * p.element_size() for p in meta.parameters()) / 1e6,
        macs=total_macs,
        flops=2 * total_macs,
        train_flops=counts.train,
        flop_counter_macs=counts.forward // 2,
        fvcore_macs=fvcore_macs,
        macs_source=headline.source,
        count_note=info.count_note
        or (
            "the deploy form: reparameterised for inference (timm's reparameterize_model)"
            if config.deploy_form
            else as_built
        ),
        crosscheck_diff_pct=diff,
        crosscheck_warning=warning,
        uncounted_ops=uncounted,
        layers=layers,
        batch_size=config.batch_size,
        memory=estimate_memory(
            meta,
            shape,
            config.batch_size,
            config.precision,
            cublas_workspace_bytes("cuda", config.precision),
            counts,
        ),
        aux_heads=aux_heads(counts.aux_heads, info.name),
        outside_convention=outside,
    )


@contextlib.contextmanager
def recording_shapes(model: Any) -> Iterator[tuple[dict[str, list[int]], list[str]]]:
    """Inside the block, each module's output shape the first time it runs, and the order modules
    first run in, which is the order of the table."""
    import torch

    shapes: dict[str, list[int]] = {}
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def record(mod: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and names[mod] not in shapes:
            shapes[names[mod]] = list(out.shape)

    def first_call(mod: Any, _inp: Any) -> None:
        if names[mod] not in order:
            order.append(names[mod])

    handles = [m.register_forward_hook(record) for m in model.modules()]
    handles += [m.register_forward_pre_hook(first_call) for m in model.modules()]
    try:
        yield shapes, order
    finally:
        for h in handles:
            h.remove()


def aux_heads(count: int, name: str) -> str:
    """Whether the model has auxiliary heads (their logits beside the main ones in train mode) and so
    whether its parameter count holds them: torchvision publishes GoogLeNet's without them
    (``-o aux_logits=false``), Inception v3's with."""
    if not count:
        return "none"
    hint = "; -o aux_logits=false leaves them out" if name.startswith("torchvision:") else ""
    return f"{count} counted in the parameters (not in the MACs, which follow the main logits){hint}"


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


def save_summary(summary: ModelSummary, out_dir: Path | None = None, repair: bool = False) -> Path:
    """Upsert one row per (model, options, input size, classes) into summary.csv."""
    out = ensure_dir(Path(out_dir or DEFAULT_RESULTS_DIR))
    path = out / "summary.csv"
    check_table(path, repair)
    upsert_rows(path, [summary.csv_row()], key=("model", "options", "input_size", "num_classes"))
    return path
