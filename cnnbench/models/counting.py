"""What counts as a MAC, held to by both counters cnnbench uses.

The convention: **MACs are the multiply-accumulates of convolutions, linear layers and matrix products,
attention's QK^T and AV included**. Normalisation, pooling, activations and other elementwise ops carry
none (they are listed by name as uncounted ops instead). fvcore gives the headline count; PyTorch's
FlopCounterMode, which counts 2 FLOPs per multiply-add of the same operators, cross-checks it and
counts training (forward + backward).

Two corrections to the counters as they ship:
- FlopCounterMode's convolution backward ignores ``groups`` in the weight gradient, counting a
  depthwise convolution's weight gradient ``groups`` times over (EfficientNet-B0: 32.2 training GFLOPs
  per sample instead of about 2.3);
- fvcore has no handle for ``scaled_dot_product_attention``, so attention products went uncounted.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

from cnnbench.errors import CnnbenchError, InputSizeError, InvalidArgumentError, first_line
from cnnbench.models.build import shared_meta
from cnnbench.models.outputs import aux_logits_of, logits_of

# Warn when fvcore and FlopCounterMode disagree by more than this (percent of the larger).
CROSSCHECK_TOLERANCE_PCT = 2.0

# fvcore's own handles for ops outside the convention; they are switched off so both counters count
# the same operators (fvcore would count BatchNorm at about 2 per element, adaptive pooling at 1).
FVCORE_OFF = (
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::adaptive_avg_pool2d", "aten::upsample_nearest2d", "aten::upsample_bilinear2d",
)  # fmt: skip

# Operator families for the cross-check: fvcore's and PyTorch's names of one kind of work.
FAMILIES = {"conv": "convolution", "_convolution": "convolution", "convolution": "convolution",
            "_convolution_mode": "convolution",  # a convolution with padding="same" or "valid"
            "addmm": "matrix product", "mm": "matrix product", "matmul": "matrix product",
            "linear": "matrix product", "bmm": "matrix product", "baddbmm": "matrix product",
            "einsum": "matrix product", "tensordot": "matrix product", "mv": "matrix product",
            "addmv": "matrix product", "dot": "matrix product", "vdot": "matrix product", "addbmm": "matrix product",
            "bilinear": "matrix product", "_trilinear": "matrix product",
            # recurrent layers: their gates are matrix products (PyTorch decomposes them as such on meta)
            "lstm": "matrix product", "gru": "matrix product", "rnn_tanh": "matrix product",
            "rnn_relu": "matrix product", "lstm_cell": "matrix product", "gru_cell": "matrix product"}  # fmt: skip


def family(op: str) -> str:
    """The kind of work an operator does, whatever the counter calls it: 'aten::addmm',
    'aten.addmm.default' and 'addmm' are all 'matrix product'."""
    name = str(op).replace("aten::", "").replace("aten.", "").split(".")[0]
    if "attention" in name:
        # Attention is two matrix products, and FlopCounterMode sees them as such wherever PyTorch
        # decomposes it (as on the meta device).
        return "matrix product"
    return FAMILIES.get(name, name)


def grouped_conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, bias: Any, stride: Any,
                               padding: Any, dilation: Any, transposed: bool, output_padding: Any, groups: int,
                               output_mask: Any, out_shape: Any, **kwargs: Any) -> int:  # fmt: skip
    """PyTorch's count of a convolution's backward, with the weight gradient divided by ``groups``:
    each group's weight sees only its own input and output channels."""
    from torch.utils.flop_counter import conv_backward_flop

    args = (
        grad_out_shape,
        x_shape,
        w_shape,
        bias,
        stride,
        padding,
        dilation,
        transposed,
        output_padding,
        groups,
    )
    # torch's formula takes tensors or shapes through its ``out_val`` wrapper
    grad_input = conv_backward_flop(*args, [output_mask[0], False, False], out_val=out_shape)
    grad_weight = conv_backward_flop(*args, [False, output_mask[1], False], out_val=out_shape)
    return grad_input + grad_weight // max(int(groups), 1)


# Matrix products neither counter knows as shipped (fvcore has no handle; FlopCounterMode no formula):
# their MACs from their operands' shapes, given to both. A matrix-vector product is what matmul becomes
# for a vector, and an einsum or tensordot may become any of them.
EXTRA_MACS = {
    "mv": lambda mat, vec, *_a, **_k: mat[0] * mat[1],
    "addmv": lambda _self, mat, vec, *_a, **_k: mat[0] * mat[1],
    "dot": lambda a, _b, *_a, **_k: a[0],
    "vdot": lambda a, _b, *_a, **_k: a[0],
    "addbmm": lambda _self, b1, b2, *_a, **_k: b1[0] * b1[1] * b1[2] * b2[2],
    "baddbmm": lambda _self, b1, b2, *_a, **_k: b1[0] * b1[1] * b1[2] * b2[2],  # fvcore lacks it
    # nn.Bilinear, y_k = x1' A_k x2 + b_k, as torch computes it: x1 against A (in1 x in2 per output),
    # then against x2 (in2 per output). fvcore sees aten::bilinear, FlopCounterMode its _trilinear.
    "bilinear": lambda x1, x2, w, *_a, **_k: math.prod(x1[:-1]) * w[0] * (w[1] * w[2] + w[2]),
    "_trilinear": lambda *args, **_k: trilinear_macs(*args),
}


def trilinear_macs(i1: Any, i2: Any, i3: Any, expand1: Any, expand2: Any, expand3: Any, sumdim: Any,
                   *_rest: Any) -> int:  # fmt: skip
    """``aten._trilinear`` (nn.Bilinear forward, and each of its gradients) as torch computes it: the
    first two inputs multiplied over every dimension either holds, summing those the third lacks, then
    that product with the third."""
    rank = len(i1) + len(expand1)

    def spread(shape: Any, expand: Any) -> list[int]:
        sizes = iter(shape)
        return [1 if d in expand else next(sizes) for d in range(rank)]

    a, b, c = spread(i1, expand1), spread(i2, expand2), spread(i3, expand3)
    size = [max(x, y, z) for x, y, z in zip(a, b, c, strict=True)]
    held = lambda s: {d for d in range(rank) if d not in (expand1, expand2, expand3)[s]}  # noqa: E731
    first = held(0) | held(1)
    kept = first - ({d for d in sumdim} - held(2))
    return math.prod(size[d] for d in first) + math.prod(size[d] for d in kept | held(2))


def _extra_flops(name: str) -> Any:
    def flops(*shapes: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * EXTRA_MACS[name](*shapes, **kwargs)

    return flops


def flop_counter() -> Any:
    """PyTorch's FlopCounterMode with the grouped-convolution correction and the matrix products it lacks."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    extra = {getattr(torch.ops.aten, name): _extra_flops(name) for name in EXTRA_MACS
             if name not in ("baddbmm", "bilinear")}  # fmt: skip  # torch has baddbmm's; bilinear decomposes
    return FlopCounterMode(
        display=False,
        custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop, **extra},
    )


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for scaled_dot_product_attention: QK^T (L x S x E) and AV (L x S x Ev) per head."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    *batch, length, embed = q
    source, value = k[-2], v[-1]
    return math.prod(batch) * length * source * (embed + value)


def _fvcore_extra(name: str) -> Any:
    from fvcore.nn.jit_handles import get_shape

    def handle(inputs: list[Any], _outputs: list[Any]) -> int:
        return int(EXTRA_MACS[name](*(get_shape(v) or () for v in inputs)))

    return handle


def fvcore_analysis(model: Any, x: Any) -> Any:
    """fvcore's FlopCountAnalysis under the convention above (its warnings collected, not printed)."""
    import logging
    import warnings

    with warnings.catch_warnings():
        # fvcore's import touches torch.jit.script, deprecated in recent PyTorch; not our users' concern.
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model, x)
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_macs)
    # Ops outside the convention count zero, and are listed with the ops fvcore cannot count.
    analysis.counted_as_zero = Counter()
    # What fvcore's own handles would have counted for them (timm's table counts with its defaults).
    analysis.outside_convention = Counter()
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS

    def zero(name: str) -> Any:
        default = _DEFAULT_SUPPORTED_OPS.get(name)

        def handle(inputs: Any, outputs: Any) -> int:
            analysis.counted_as_zero[name] += 1
            if default is not None:
                analysis.outside_convention[name.removeprefix("aten::")] += int(default(inputs, outputs))
            return 0

        return handle

    for op in FVCORE_OFF:
        analysis.set_op_handle(op, zero(op))
    for name in EXTRA_MACS:
        if name != "_trilinear":  # the trace keeps aten::bilinear whole
            analysis.set_op_handle(f"aten::{name}", _fvcore_extra(name))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def count_flops(
    model_name: str, options: dict[str, str], shape: tuple[int, int, int], num_classes: int
) -> tuple[int, int]:
    """(forward FLOPs per sample, training FLOPs per sample).

    Measured with FlopCounterMode on the meta device: exact shapes, no arithmetic, no memory. Kept per
    process, so a comparison's seeds and repeated variants count once, and in the user's cache of counts
    (:mod:`cnnbench.models.cache`), so that a later process counts a model it has counted before in no time.
    """
    counted = count_by_family(model_name, tuple(sorted(options.items())), tuple(shape), num_classes)
    return counted.forward, counted.train


def fusing_modules(model: Any) -> int:
    """How many of the model's modules fuse for inference (the methods timm's ``reparameterize_model``
    calls: ``fuse``, ``reparameterize``, ``switch_to_deploy``)."""
    methods = ("fuse", "reparameterize", "switch_to_deploy")
    return sum(1 for m in model.modules() if any(hasattr(m, a) for a in methods))


def deploy_form(model: Any, name: str) -> Any:
    """``model`` reparameterised in place for inference by timm's ``reparameterize_model`` (each module's
    ``fuse``, ``reparameterize`` or ``switch_to_deploy``); a model with no such module is refused."""
    if not fusing_modules(model):
        raise InvalidArgumentError(f"expected a reparameterisable model for --deploy-form, got {name} (it has no "
                                   "module that fuses for inference)")  # fmt: skip
    try:
        from timm.utils import reparameterize_model
    except ImportError:
        raise InvalidArgumentError(
            'expected timm for --deploy-form, got none installed: pip install "cnnbench[timm]"'
        ) from None
    return reparameterize_model(model, inplace=True)


class Counts(NamedTuple):
    """What the meta device tells of a model at one input size, per sample (fp32 bytes)."""

    forward: int  # FLOPs, eval mode
    train: int  # FLOPs of forward + backward through the main logits
    families: tuple[tuple[str, int], ...]  # forward FLOPs per operator family
    aux_heads: int  # auxiliary logits beside the main ones in train mode (GoogLeNet: 2)
    peak_layer_bytes: int  # the largest input + output of one leaf module, eval mode
    saved_bytes: int  # every tensor autograd saves for the backward pass, once each, weights left out


def count_by_family(
    model_name: str,
    options: tuple[tuple[str, str], ...],
    shape: tuple[int, int, int],
    num_classes: int,
    deploy: bool = False,
) -> Counts:
    """The model's counts per sample, from the user's cache of counts where it holds them; a model whose
    forward cannot run at this size (in train mode: an auxiliary head too small for it) is one line."""
    from cnnbench.models import cache

    key = cache.key(
        "counts" if not deploy else "counts-deploy-form", model_name, dict(options), shape, num_classes
    )
    found = cache.get(key)
    if found is not None:
        try:
            return Counts(**{**found, "families": tuple((str(k), int(v)) for k, v in found["families"])})
        except (TypeError, ValueError):  # another version's entry: counted again
            pass
    try:
        counted = _count(model_name, options, shape, num_classes, deploy)
    except CnnbenchError:
        raise
    except Exception as exc:
        size = "x".join(map(str, shape))
        if _runs_without_counter(model_name, options, shape, num_classes):
            raise CountingError(
                f"expected PyTorch's FLOP counter to count {model_name}, got a failure inside the counter (the "
                f"model itself runs at input {size}): {first_line(exc)}"
            ) from None
        raise InputSizeError(f"{model_name} cannot be counted at input {size}: {first_line(exc)}") from None
    cache.put(key, {**counted._asdict(), "families": [list(item) for item in counted.families]})
    return counted


class CountingError(CnnbenchError):
    """The counter failed where the model itself runs: not the input's fault."""


def _runs_without_counter(model_name: str, options: tuple[tuple[str, str], ...], shape: tuple[int, int, int],
                          num_classes: int) -> bool:  # fmt: skip
    """Whether the model's forward and backward run on the meta device at ``shape`` with no counter: if so,
    a failure under the counter is the counter's, not the input size's."""
    import torch

    try:
        model = shared_meta(model_name, dict(options), shape, num_classes)
        model.train()
        logits_of(model(torch.empty(2, *shape, device="meta")), model_name).sum().backward()
        model.zero_grad(set_to_none=True)
        return True
    except Exception:  # noqa: BLE001  (any failure: the size may be the cause)
        return False


def forget_counts() -> None:
    """Forget this process's models and counts by name: a name now names another model (a Python object
    registered again under it)."""
    from cnnbench.models.build import forget_shared_meta

    forget_shared_meta()
    _count.cache_clear()


@functools.cache
def _count(
    model_name: str,
    options: tuple[tuple[str, str], ...],
    shape: tuple[int, int, int],
    num_classes: int,
    deploy: bool = False,
) -> Counts:
    """One forward in eval mode and one training step, on the meta device, under the FLOP counter:
    what each computes, and the activations each holds (``deploy``: of the model reparameterised)."""
    import torch

    model, device = shared_meta(model_name, dict(options), shape, num_classes), "meta"
    if deploy:  # fusing computes new weights from the old, which the meta device cannot: zeros on the CPU
        from cnnbench.models.build import build_for_counting

        model = deploy_form(
            build_for_counting(model_name, dict(options), shape, num_classes).eval(), model_name
        )
        device = "cpu"
    model.eval()
    # With autograd on: models that hand a copy of a tensor to a sub-module in forward (PiT, CaiT) fail
    # under no_grad inside the FLOP counter ("Expected gradient function to be set"). On the meta device
    # the graph it keeps costs nothing.
    with flop_counter() as counter, largest_layer(model) as peak:
        model(torch.zeros(1, *shape, device=device))
    forward = counter.get_total_flops()
    families: Counter[str] = Counter()
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        families[family(str(op))] += int(flops)
    # Batch of 2: BatchNorm in training mode needs more than one value per channel.
    model.train()
    x = torch.zeros(2, *shape, device=device)
    with flop_counter() as counter:
        with saved_for_backward(model) as saved:
            out = model(x)
        logits_of(out, model_name).sum().backward()  # the main logits: what the loss is made of
    model.zero_grad(set_to_none=True)
    train = counter.get_total_flops() // 2
    return Counts(forward, train, tuple(sorted(families.items())), len(aux_logits_of(out)), peak[0],
                  sum(saved.values()) // 2)  # fmt: skip


@contextlib.contextmanager
def largest_layer(model: Any) -> Iterator[list[int]]:
    """Inside the block, ``[bytes]`` holds the largest input + output of one leaf module's call."""
    import torch

    peak = [0]

    def layer(_m: Any, inputs: Any, out: Any) -> None:
        tensors = [t for t in (*inputs, out) if isinstance(t, torch.Tensor)]
        peak[0] = max(peak[0], sum(t.numel() * t.element_size() for t in tensors))

    handles = [m.register_forward_hook(layer) for m in model.modules() if not list(m.children())]
    try:
        yield peak
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def saved_for_backward(model: Any) -> Iterator[dict[int, int]]:
    """Inside the block, the bytes of every storage autograd saves for the backward pass, by storage
    (so a tensor saved by two operators counts once), the model's weights left out."""
    import torch

    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: Any) -> Any:
        storage = t.untyped_storage()
        if storage._cdata not in param_storages:
            saved[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield saved


def _macs_by_family(fvcore_by_op: dict[str, int],
                    counter_flops_by_family: dict[str, int]) -> tuple[Counter[str], Counter[str]]:  # fmt: skip
    """fvcore's MACs and FlopCounterMode's (its FLOPs / 2), each by operator family."""
    fv: Counter[str] = Counter()
    for op, macs in fvcore_by_op.items():
        fv[family(op)] += int(macs)
    fc: Counter[str] = Counter()
    for op, flops in counter_flops_by_family.items():
        fc[family(op)] += int(flops) // 2
    return fv, fc


class Headline(NamedTuple):
    """The forward MACs a summary states, and where each part came from."""

    macs: int
    source: str  # "fvcore", or which families FlopCounterMode gave, and the ops fvcore skipped
    taken: tuple[str, ...]  # the families taken from FlopCounterMode


def headline_macs(fvcore_by_op: dict[str, int], counter_flops_by_family: dict[str, int],
                  fvcore_skipped: dict[str, int]) -> Headline:  # fmt: skip
    """fvcore's MACs, except in the families of the MAC-bearing ops fvcore skipped (a convolution with
    ``padding="same"``, an LSTM): there FlopCounterMode's count, which covers them, where it is larger.
    The headline never undercounts an op that either counter knows."""
    fv, fc = _macs_by_family(fvcore_by_op, counter_flops_by_family)
    skipped = {family(op) for op in fvcore_skipped} & set(FAMILIES.values())
    taken = tuple(sorted(f for f in skipped if fc[f] > fv[f]))
    total = sum(fc[f] if f in taken else fv[f] for f in set(fv) | set(taken))
    if not taken:
        return Headline(total, "fvcore", ())
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(fvcore_skipped.items()) if family(op) in taken)
    return Headline(
        total, f"fvcore, with {' and '.join(taken)} from FlopCounterMode (fvcore skipped {ops})", taken
    )


def crosscheck(
    fvcore_by_op: dict[str, int], counter_flops_by_family: dict[str, int]
) -> tuple[float, str | None]:
    """(difference in %, a warning naming the operator families responsible, or None) between fvcore's
    MACs and FlopCounterMode's forward FLOPs / 2 over the operators both count."""
    fv, fc = _macs_by_family(fvcore_by_op, counter_flops_by_family)
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
