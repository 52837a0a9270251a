"""The settings of the commands that measure a model without training it (``summary``, ``profile``) and of
the pooling exercise (``pool``), declared as the recipe is: each field carries its option, and the
options these commands share with ``train`` (the model's options and input, precision, device, results
folder) are the recipe's own (:mod:`cnnbench.recipe`), declared once. No torch here: ``cnnbench --help``
builds the options from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.choices import PRECISIONS, PROFILE_MODES
from cnnbench.errors import InvalidArgumentError
from cnnbench.fields import Opt, declared
from cnnbench.recipe import (
    CHANNELS_LAST_OPTION,
    COMPILE_OPTION,
    DATA_DIR_OPTION,
    DATASET_OPTION,
    DEVICE_OPTION,
    INPUT_SIZE_OPTION,
    MODEL_OPTION,
    NUM_CLASSES_OPTION,
    OUT_OPTION,
    PRECISION_OPTION,
)
from cnnbench.store.tables import DEFAULT_RESULTS_DIR

MODES = PROFILE_MODES


def parse_batch_sizes(text: str) -> list[int]:
    """``--batch-sizes 1,32,128`` as sorted sizes; anything else is one line."""
    try:
        sizes = sorted({int(t) for t in str(text).replace(" ", "").split(",") if t})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise InvalidArgumentError(f"expected --batch-sizes as positive integers like 1,32,128, got {text!r}")
    return sizes


def parse_modes(text: str) -> list[str]:
    """``--mode infer|train|both`` as the modes measured."""
    return list(MODES) if text == "both" else [text]


@dataclass(frozen=True)
class ModelInput:
    """The model a command measures and its input: what summary's and profile's settings begin with."""

    model: str
    options: dict[str, str] = declared(default_factory=dict, option=MODEL_OPTION)
    input_size: tuple[int, int, int] | None = declared(None, option=INPUT_SIZE_OPTION)
    dataset: str | None = declared(None, option=DATASET_OPTION)
    num_classes: int | None = declared(None, option=NUM_CLASSES_OPTION)


@dataclass(frozen=True)
class SummaryConfig(ModelInput):
    """What ``cnnbench summary`` counts: the model, its input, and the batch and precision of its memory
    estimate."""

    depth: int = declared(
        3, option=Opt(("--depth",), "Show layers down to this nesting depth.", "N", commands=("summary",))
    )
    batch_size: int = declared(
        1, option=Opt(("--batch-size", "-b"), "Batch of the memory estimate.", "N", commands=("summary",))
    )
    precision: str = declared("fp32", option=PRECISION_OPTION)
    deploy_form: bool = declared(
        False, option=Opt(("--deploy-form",), "Count the model reparameterised for inference (timm's "
                          "reparameterize_model: fused branches and BN), as published tables do.", commands=("summary",))
    )  # fmt: skip
    out: Path = declared(DEFAULT_RESULTS_DIR, option=OUT_OPTION)

    def validate(self) -> None:
        if self.depth < 1 or self.batch_size < 1:
            raise InvalidArgumentError(
                f"expected --depth >= 1 and --batch-size >= 1, got {self.depth} and {self.batch_size}"
            )
        if self.precision not in PRECISIONS:
            raise InvalidArgumentError(f"expected --precision {'|'.join(PRECISIONS)}, got {self.precision!r}")


BACKENDS = ("eager", "compile", "onnxruntime", "aotinductor")


def parse_backends(text: str) -> list[str]:
    """``"eager,onnxruntime"`` -> ["eager", "onnxruntime"]; an unknown name is refused in one line."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise InvalidArgumentError(f"expected --backend of {', '.join(BACKENDS)}, got {text!r}")
    return list(dict.fromkeys(names))


DEFAULT_BATCH_SIZES = (1, 32, 128, 512)  # profile's sweep unless --batch-sizes (--latency: batch 1)
DEFAULT_REQUESTS = 300  # timed requests of a latency row unless --requests says otherwise


def check_latency(latency: bool, backends: list[str], threads: int | None, requests: int,
                  weights: str | None = None) -> None:  # fmt: skip
    """The latency settings of ``profile`` and ``compare``: a whole number of threads and requests, and
    --backend or --weights only with --latency (without it they would be dropped)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InvalidArgumentError(f"expected --threads >= 1, got {threads}")
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise InvalidArgumentError(f"expected --requests >= 1, got {requests}")
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown:
        raise InvalidArgumentError(
            f"expected --backend of {', '.join(BACKENDS)}, got {','.join(map(str, backends))!r}"
        )
    if not latency:
        given = [o for o, on in (("--backend", backends != ["eager"]), ("--weights", weights is not None),
                                 ("--threads", threads is not None), ("--requests", requests != DEFAULT_REQUESTS)) if on]  # fmt: skip
        if given:
            raise InvalidArgumentError(f"expected --latency with {', '.join(given)}, got no --latency")


LATENCY_COMMANDS = ("profile", "compare")  # the commands that measure latency, and its options
BACKEND_OPTION = Opt(("--backend",), f"With --latency: {', '.join(BACKENDS)} (comma-separated; default eager).",
                     "NAME,...", kind=str, parse=parse_backends, commands=LATENCY_COMMANDS)  # fmt: skip
THREADS_OPTION = Opt(("--threads",), "With --latency: CPU threads (default: the usable cores).", "N",
                     commands=LATENCY_COMMANDS)  # fmt: skip
REQUESTS_OPTION = Opt(("--requests",), "With --latency: timed requests after the untimed warm-up.", "N",
                      commands=LATENCY_COMMANDS)  # fmt: skip


def _profile(decls: tuple[str, ...], help: str, metavar: str | None = None, **kw: Any) -> Opt:
    return Opt(decls, help, metavar, commands=("profile",), **kw)


@dataclass(frozen=True)
class ProfileConfig(ModelInput):
    """What ``cnnbench profile`` measures: the model, its input, the batch sizes and modes, how the step
    runs, and how long it is timed."""

    batch_sizes: list[int] = declared(
        default_factory=lambda: list(DEFAULT_BATCH_SIZES),
        option=_profile(("--batch-sizes",), "Batch sizes (default 1,32,128,512; with --gpus, 128 per GPU).",
                        "N,N,...", kind=str, parse=parse_batch_sizes),
    )  # fmt: skip
    modes: list[str] = declared(
        default_factory=lambda: list(MODES),
        option=_profile(("--mode",), "Inference forward, training step, or both (default: both).",
                        kind=str, choices=(*MODES, "both"), parse=parse_modes),
    )  # fmt: skip
    precision: str = declared("fp32", option=PRECISION_OPTION)
    channels_last: bool | None = declared(
        None, option=CHANNELS_LAST_OPTION
    )  # None: NHWC on CUDA, NCHW on the CPU
    compile: bool = declared(False, option=COMPILE_OPTION)
    device: str = declared("auto", option=DEVICE_OPTION)
    warmup: int = declared(10, option=_profile(("--warmup",), "Untimed steps before timing.", "N"))
    iters: int = declared(50, option=_profile(("--iters",), "Timed steps.", "N"))
    layers: bool = declared(False, option=_profile(("--layers",), "Per-module times and the top operators."))
    trace: Path | None = declared(
        None, option=_profile(("--trace",), "Write a Chrome/Perfetto trace here.", "FILE", kind=Path)
    )
    grads: bool = declared(
        False,
        option=_profile(("--grads",), "Only the per-layer gradient norms of one batch at initialisation."),
    )
    latency: bool = declared(
        False, option=_profile(("--latency",), "Per-request inference latency (p50, p90, p99, max) by backend, "
                               "batch 1 unless --batch-sizes; rows to latency.csv.")
    )  # fmt: skip
    backends: list[str] = declared(default_factory=lambda: ["eager"], option=BACKEND_OPTION)
    threads: int | None = declared(None, option=THREADS_OPTION)
    requests: int = declared(DEFAULT_REQUESTS, option=REQUESTS_OPTION)
    weights: str | None = declared(
        None, option=_profile(("--weights",), "With --latency: a trained run (its id under --out, or its folder): "
                              "its weights, and its test accuracy through each backend.", "RUN")
    )  # fmt: skip
    out: Path = declared(DEFAULT_RESULTS_DIR, option=OUT_OPTION)

    def validate(self) -> None:
        check_latency(self.latency, self.backends, self.threads, self.requests, self.weights)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise InvalidArgumentError(f"expected --batch-sizes of positive integers, got {self.batch_sizes}")
        if any(m not in MODES for m in self.modes):
            raise InvalidArgumentError(f"expected --mode infer|train|both, got {self.modes}")
        if self.warmup < 0 or self.iters < 1:
            raise InvalidArgumentError(
                f"expected --warmup >= 0 and --iters >= 1, got {self.warmup} and {self.iters}"
            )
        if self.precision not in PRECISIONS:
            raise InvalidArgumentError(f"expected --precision {'|'.join(PRECISIONS)}, got {self.precision!r}")


def _pool(decls: tuple[str, ...], help: str, metavar: str | None = None) -> Opt:
    return Opt(decls, help, metavar, commands=("pool",))


@dataclass(frozen=True)
class PoolConfig:
    """Exercise 1: the window and stride of both poolings, and their input (the chapter's edge map, or
    test image N of a dataset)."""

    kernel: int = declared(2, option=_pool(("--kernel", "-k"), "Pooling window side.", "N"))
    stride: int = declared(2, option=_pool(("--stride", "-s"), "Pooling stride.", "N"))
    image: int | None = declared(
        None, option=_pool(("--image",), "Pool test image N of --dataset instead of the edge map.", "N")
    )
    dataset: str = declared("cifar10", option=DATASET_OPTION)
    data_dir: Path | None = declared(None, option=DATA_DIR_OPTION)
