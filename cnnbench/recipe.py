"""The recipe: everything a training run needs, as one dataclass that flows one way.

CLI options (declared here, in each field's metadata) -> :class:`TrainConfig` -> a comparison's jobs ->
the workers that train them -> the run's ``config.json``, every step through :meth:`TrainConfig.to_dict`
and :meth:`TrainConfig.from_dict`. The same metadata decides which fields are conditions (what a run
computes, hashed to find identical runs), which every run of a comparison shares, and how the
conditions line names them. A new recipe field is one field here, and one :class:`Opt` if users set it.

No torch here: the CLI imports this module to declare its options.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.choices import OPTIMIZERS, PRECISIONS, SCHEDULERS
from cnnbench.data.specs import (
    AUGMENTATIONS,
    DATASET_NAMES,
    augmentation_named,
    format_input_size,
    get_dataset_spec,
    parse_input_size,
)
from cnnbench.errors import InvalidArgumentError
from cnnbench.fields import Opt, check_names, declared, field_default
from cnnbench.store.tables import DEFAULT_RESULTS_DIR, read_json, to_json, write_text_atomic


def _bookkeeping(
    default: Any, option: Opt | None = None, shared: bool = False, label: str | None = None
) -> Any:
    """A field that does not change what a run computes (where files go, how often it is saved): left out
    of the run's conditions and of the hash that decides reuse."""
    return declared(default, option=option, condition=False, shared=shared, label=label)


def _added(default: Any, option: Opt | None = None, label: str | None = None) -> Any:
    """A condition added after runs were recorded without it: at its default it stays out of the hash,
    so those runs (which had the default) are still found and reused."""
    return declared(default, option=option, hashed_at_default=False, label=label)


PLACEMENTS = ("auto", "device", "host")


def _no_augment(_given: bool) -> str:
    return "none"


def _image_size(size: int) -> tuple[int, int, int]:
    if size < 1:  # before any image is read: a size of none is the option's mistake, not an image's
        raise InvalidArgumentError(f"expected --image-size >= 1, got {size}")
    return (3, size, size)


def results_dir(text: str) -> Path:
    """``--out``'s folder; an empty name is a mistake, not the current folder."""
    if not str(text).strip():
        raise InvalidArgumentError(
            "expected --out to name a folder, got an empty name (--out . is this folder)"
        )
    return Path(text)


def parse_option_strings(items: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` from ``-o`` as a dict; a malformed item is an error."""
    from cnnbench.errors import InvalidOptionError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidOptionError(f"expected -o key=value, got {item!r}")
        out[key.strip().lower()] = value.strip()
    return out


# Options that several commands take, declared once: the model and its input (train, summary, profile),
# where a command runs and where its results go. Each is one field of each settings dataclass that holds
# it (the recipe here; summary's, profile's and pool's in cnnbench.settings).
MEASURED = ("train", "compare", "summary", "profile")  # the commands that build a model
MODEL_OPTION = Opt(("--option", "-o"), "Model option (repeatable).", "KEY=VALUE", kind=list[str],
                   parse=parse_option_strings, commands=("train", "summary", "profile"))  # fmt: skip
DATASET_OPTION = Opt(("--dataset", "-d"), f"One of: {DATASET_NAMES}; summary and profile take its input size "
                     "and classes.", "NAME", commands=(*MEASURED, "pool"))  # fmt: skip
DATA_DIR_OPTION = Opt(("--data-dir",), "Dataset folder (default: $CNNBENCH_DATA_DIR, else ./data).", "DIR", kind=Path,
                      commands=("train", "compare", "pool"))  # fmt: skip
INPUT_SIZE_OPTION = Opt(("--input-size", "-i"), "Input size, e.g. 3x64x64 (default: the dataset's; a real dataset "
                        "trains at its own).", "CxHxW", kind=str, parse=parse_input_size, commands=MEASURED)  # fmt: skip
NUM_CLASSES_OPTION = Opt(("--num-classes",), "Number of classes (default: the dataset's; a real dataset trains "
                         "with its own).", "N", commands=MEASURED)  # fmt: skip
PRECISION_OPTION = Opt(("--precision",), "Autocast precision (summary: of its memory estimate).", choices=PRECISIONS,
                       commands=MEASURED)  # fmt: skip
CHANNELS_LAST_OPTION = Opt(("--channels-last/--no-channels-last",), "NHWC memory format (default: on for CUDA, off "
                           "on CPU).", commands=("train", "compare", "profile"))  # fmt: skip
COMPILE_OPTION = Opt(("--compile",), "torch.compile the step (its compile time is reported on its own, with the "
                     "warm-up).", commands=("train", "compare", "profile"))  # fmt: skip
DEVICE_OPTION = Opt(
    ("--device",), "Where to run.", "auto|cpu|cuda[:N]", commands=("train", "compare", "profile")
)
OUT_OPTION = Opt(("--out",), "Results directory (default: ./results/local, which git ignores).", "DIR", kind=str,
                 parse=results_dir, commands=MEASURED)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a run needs; the defaults are the chapter's recipe."""

    model: str = declared(shared=False)
    options: dict[str, Any] = declared(default_factory=dict, shared=False, option=MODEL_OPTION)
    dataset: str = declared("cifar10", option=DATASET_OPTION)
    data_dir: Path | None = _bookkeeping(None, DATA_DIR_OPTION)
    epochs: int = declared(20, option=Opt(("--epochs", "-e"), "Epochs to train.", "N"), label="{} epochs")
    batch_size: int = declared(
        128, option=Opt(("--batch-size", "-b"), "Training batch size.", "N"), label="batch"
    )
    optimizer: str = declared("adam", option=Opt(("--optimizer",), "Optimizer.", choices=OPTIMIZERS))
    lr: float = declared(1e-3, option=Opt(("--lr",), "Learning rate.", "X"))
    momentum: float = declared(0.9, option=Opt(("--momentum",), "SGD's momentum.", "X"))
    nesterov: bool = _added(False, Opt(("--nesterov",), "SGD with Nesterov momentum."))
    weight_decay: float = declared(1e-4, option=Opt(("--weight-decay",), "Weight decay.", "X"), label="wd")
    scheduler: str = declared(
        "step",
        option=Opt(("--scheduler",), "LR schedule (step: StepLR(step size, gamma)).", choices=SCHEDULERS),
    )
    step_size: int = declared(20, option=Opt(("--step-size",), "StepLR: epochs between LR cuts.", "N"))
    gamma: float = declared(0.5, option=Opt(("--gamma",), "StepLR: factor of each cut.", "X"))
    warmup_epochs: int = _added(
        0, Opt(("--warmup-epochs",), "Linear LR warm-up over the first N epochs.", "N"),
        label="LR warm-up epochs",
    )  # fmt: skip
    label_smoothing: float = declared(
        0.0, option=Opt(("--label-smoothing",), "Cross-entropy label smoothing.", "X")
    )
    precision: str = declared("fp32", option=PRECISION_OPTION)
    channels_last: bool | None = declared(
        None, option=CHANNELS_LAST_OPTION
    )  # None: NHWC on CUDA, NCHW on the CPU
    compile: bool = declared(False, option=COMPILE_OPTION)
    device: str = _bookkeeping(
        "auto", DEVICE_OPTION, shared=True
    )  # the conditions hold the device's kind instead
    seed: int = declared(
        0, option=Opt(("--seed",), "Random seed (weights, data order, augmentation).", "N"), shared=False
    )
    out: Path = _bookkeeping(DEFAULT_RESULTS_DIR, OUT_OPTION)
    augment: str | None = declared(
        None,
        option=(Opt(("--augment",), "Training augmentation: none, flip, crop (padded random crop and flip, the "
                    "chapter's) or rrc (random-resized crop and flip, ImageNet's) (default: the dataset's).", "MODE",
                    choices=AUGMENTATIONS),
                Opt(("--no-augment",), "No training augmentation (--augment none).", kind=bool, parse=_no_augment)),
    )  # fmt: skip  # None: the dataset's own (crop for CIFAR, rrc for your own images, none for MNIST)
    eval_batch_size: int = _bookkeeping(1000, Opt(("--eval-batch-size",), "Batch size of evaluation.", "N"))
    checkpoints: bool = _bookkeeping(
        True,
        Opt(("--checkpoint/--no-checkpoint",), "Write best/last checkpoints (compare: reuse runs instead)."),
    )
    warmup_steps: int = _bookkeeping(
        3, Opt(("--warmup-steps",), "Untimed steps before the first epoch (autotuning, allocator).", "N")
    )
    cudnn_autotune: bool | None = _added(
        None,
        Opt(("--cudnn-autotune/--no-cudnn-autotune",), "cuDNN autotuning of the training step (default: for runs "
            "of 20,000 steps or more, where it earns its warm-up back)."),
        label="cuDNN autotuning asked",
    )  # fmt: skip  # None: cnnbench.training.step.autotunes decides; the run records what it did
    cuda_graphs: bool = declared(
        True,
        option=Opt(("--cuda-graphs/--no-cuda-graphs",), "Replay the training step as a captured CUDA graph."),
        label="CUDA graphs",
    )  # replay the training step as a CUDA graph where possible
    input_size: tuple[int, int, int] | None = declared(
        None,
        option=(INPUT_SIZE_OPTION,
                Opt(("--image-size",), "Your own images (-d imagefolder): resize and crop to NxN.", "N", kind=int,
                    parse=_image_size)),
        label="input",
    )  # fmt: skip  # synthetic data and your own images (a real dataset has its own)
    num_classes: int | None = declared(
        None, option=NUM_CLASSES_OPTION, label="classes"
    )  # synthetic only (a real dataset has its own)
    synthetic_size: int | None = declared(
        None,
        option=Opt(("--synthetic-size",), "Synthetic data: images per split (default 5000/1000).", "N"),
    )
    deterministic: bool = _added(
        False,
        Opt(
            ("--deterministic",),
            "Deterministic algorithms only, no cuDNN autotuning: same seed, same digits.",
        ),
    )
    skip_bad_images: bool = _added(
        False, Opt(("--skip-bad-images",), "Your own images: leave unreadable files out, counted.")
    )
    aux_loss: float = _added(
        0.0,
        Opt(("--aux-loss",), "Weight of auxiliary heads' losses (GoogLeNet's paper: 0.3; Inception's: 0.4).", "X"),
        label="auxiliary loss weight",
    )  # fmt: skip  # 0: the main logits alone make the loss
    val_split: float = _added(
        0.0,
        Opt(("--val-split",), "Hold out N training images (or a fraction), stratified, and select on them.", "N"),
        label="validation split",
    )  # fmt: skip  # 0: the chapter's recipe, no model selection
    target_acc: float | None = _bookkeeping(
        None,
        Opt(("--target-acc",), "Time to accuracy: epochs and training seconds to X% (on validation if any).", "X"),
        shared=True, label="target accuracy %",
    )  # fmt: skip
    world_size: int = _added(
        1, label="processes"
    )  # of a data-parallel run (train --gpus N); batch_size is global
    run_name: str | None = _bookkeeping(
        None,
        Opt(("--run-name",), "The run's folder under OUT/runs/ (default: model, seed, time).", "NAME",
            commands=("train",)),
    )  # fmt: skip
    cache_size: int | None = _added(
        None,
        Opt(("--cache-size",), "Your own images: the size they are stored at, crops taken from "
            "(default: --image-size / 0.875, 256 for 224).", "S"),
        label="stored image size",
    )  # fmt: skip  # None: the default for the image size (resolved in the conditions)
    placement: str = _added(
        "auto",
        Opt(("--data-placement",), "Where training images live: auto (the GPU where they fit), device, or "
            "host (streamed per batch from memory or your images' cache).", choices=PLACEMENTS),
        label="data placement asked",
    )  # fmt: skip  # the run's conditions say where its data went (data_placement)
    jobs_per_gpu: int = _bookkeeping(
        1, Opt(("--jobs-per-gpu",), "Runs at once on each GPU (recorded: it moves epoch times).", "K"),
        shared=True, label="runs at once per GPU",
    )  # fmt: skip
    tensorboard: Path | None = _bookkeeping(
        None,
        Opt(("--tensorboard",), "Also log each run's epoch scalars and hparams for TensorBoard under DIR "
            '(pip install "cnnbench[tensorboard]").', "DIR", kind=Path),
    )  # fmt: skip  # DIR/VARIANT/seedN, one TensorBoard run per variant and seed

    def __post_init__(self) -> None:
        # Recipes written before --augment took a name said true (the chapter's crop and flip) or false.
        if isinstance(self.augment, bool):
            self.augment = augmentation_named(self.augment)

    # --- one way in, one way out -----------------------------------------------------------------

    def to_dict(self, location: bool = True) -> dict[str, Any]:
        """Every field as plain JSON values; ``location=False`` leaves out where the run's files and data
        are (``out``, ``data_dir``), as a run's config.json keeps it."""
        record = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if not location:
            for key in ("out", "data_dir", "tensorboard"):
                record.pop(key)
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the recipe") -> TrainConfig:
        """The recipe ``data`` describes (from :meth:`to_dict`, a job file or a run's config.json); a key
        that is not a field is an error naming ``source``. Missing fields take their defaults."""
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(
                f"expected a recipe as a JSON object in {source}, got {type(data).__name__}"
            )
        check_names(data, (f.name for f in dataclasses.fields(cls)), "the fields of a recipe", source, [cls])
        if "model" not in data:
            raise InvalidArgumentError(f"expected a model in {source}, got none")
        values = dict(data)
        for key in ("out", "data_dir", "tensorboard"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if values.get("out") is None:
            values.pop("out", None)
        if values.get("input_size") is not None:
            values["input_size"] = tuple(values["input_size"])
        if values.get("options") is None:
            values.pop("options", None)
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        def need(ok: bool, what: str, got: Any) -> None:
            if not ok:
                raise InvalidArgumentError(f"expected {what}, got {got!r}")

        def whole(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        need(whole(self.epochs) and self.epochs >= 1, "--epochs >= 1", self.epochs)
        need(whole(self.batch_size) and self.batch_size >= 1, "--batch-size >= 1", self.batch_size)
        need(number(self.lr) and self.lr > 0, "--lr > 0", self.lr)
        need(number(self.momentum) and 0 <= self.momentum < 1, "--momentum in [0, 1)", self.momentum)
        need(isinstance(self.nesterov, bool), "--nesterov as true or false", self.nesterov)
        if self.nesterov:
            need(self.optimizer == "sgd" and self.momentum > 0, "--nesterov with --optimizer sgd and --momentum > 0",
                 f"--optimizer {self.optimizer} --momentum {self.momentum}")  # fmt: skip
        need(number(self.weight_decay) and self.weight_decay >= 0, "--weight-decay >= 0", self.weight_decay)
        need(number(self.label_smoothing) and 0 <= self.label_smoothing < 1, "--label-smoothing in [0, 1)",
             self.label_smoothing)  # fmt: skip
        need(self.optimizer in OPTIMIZERS, f"--optimizer in {'|'.join(OPTIMIZERS)}", self.optimizer)
        need(self.scheduler in SCHEDULERS, f"--scheduler in {'|'.join(SCHEDULERS)}", self.scheduler)
        need(self.precision in PRECISIONS, f"--precision in {'|'.join(PRECISIONS)}", self.precision)
        need(whole(self.step_size) and self.step_size >= 1, "--step-size >= 1", self.step_size)
        need(number(self.gamma) and 0 < self.gamma <= 1, "--gamma in (0, 1]", self.gamma)
        need(whole(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs,
             f"--warmup-epochs in [0, {self.epochs}) (fewer than --epochs)", self.warmup_epochs)  # fmt: skip
        if self.warmup_epochs:
            need(self.scheduler != "onecycle", "--warmup-epochs 0 with --scheduler onecycle (it warms up itself)",
                 self.warmup_epochs)  # fmt: skip
        need(whole(self.eval_batch_size) and self.eval_batch_size >= 1, "--eval-batch-size >= 1",
             self.eval_batch_size)  # fmt: skip
        # What torch.manual_seed and the loader's per-epoch generator accept alike.
        need(whole(self.seed) and 0 <= self.seed < 2**32, "--seed in [0, 2**32)", self.seed)
        need(whole(self.warmup_steps) and self.warmup_steps >= 0, "--warmup-steps >= 0", self.warmup_steps)
        need(whole(self.jobs_per_gpu) and self.jobs_per_gpu >= 1, "--jobs-per-gpu >= 1", self.jobs_per_gpu)
        need(number(self.val_split) and self.val_split >= 0 and (self.val_split < 1 or float(self.val_split).is_integer()),
             "--val-split as a count of images or a fraction in (0, 1)", self.val_split)  # fmt: skip
        need(number(self.aux_loss) and self.aux_loss >= 0, "--aux-loss >= 0", self.aux_loss)
        need(self.augment is None or self.augment in AUGMENTATIONS, f"--augment in {'|'.join(AUGMENTATIONS)}",
             self.augment)  # fmt: skip
        need(self.cudnn_autotune is None or isinstance(self.cudnn_autotune, bool),
             "--cudnn-autotune as true or false", self.cudnn_autotune)  # fmt: skip
        need(self.placement in PLACEMENTS, f"--data-placement in {'|'.join(PLACEMENTS)}", self.placement)
        if self.cache_size is not None:
            need(whole(self.cache_size) and self.cache_size >= 1, "--cache-size >= 1", self.cache_size)
        if self.target_acc is not None:
            need(
                number(self.target_acc) and 0 < self.target_acc <= 100,
                "--target-acc in (0, 100]",
                self.target_acc,
            )
        if self.synthetic_size is not None:
            need(whole(self.synthetic_size) and self.synthetic_size >= 1, "--synthetic-size >= 1",
                 self.synthetic_size)  # fmt: skip
        if not isinstance(self.options, Mapping):
            raise InvalidArgumentError(f"expected model options as key=value pairs, got {self.options!r}")
        spec = get_dataset_spec(self.dataset)
        if not spec.sized_by_user:
            # A real dataset decides its own input size and classes; a contradiction is a mistake.
            if self.input_size is not None and tuple(self.input_size) != spec.input_shape:
                raise InvalidArgumentError(
                    f"expected --input-size {format_input_size(spec.input_shape)} (that of {spec.name}) or none, "
                    f"got {format_input_size(tuple(self.input_size))}"
                )
            if self.num_classes is not None and self.num_classes != spec.num_classes:
                raise InvalidArgumentError(
                    f"expected --num-classes {spec.num_classes} (that of {spec.name}) or none, got {self.num_classes}"
                )
        elif self.num_classes is not None:
            need(whole(self.num_classes) and self.num_classes >= 2, "--num-classes >= 2", self.num_classes)
        if self.run_name is not None:
            from cnnbench.store.runs import plain_name

            plain_name(self.run_name, "a run name")
        if self.tensorboard is not None:
            from cnnbench.store.tensorboard import check_writer

            check_writer()
        from cnnbench.models import get_model_info

        get_model_info(self.model).parse_options(self.options)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# The settings that decide what a run computes: two runs equal in these are interchangeable.
CONDITION_FIELDS = tuple(name for name, f in _FIELDS.items() if f.metadata["condition"])
# Resolved at run time rather than set (on the device, the data, the software), and shared by the runs of
# a comparison: with the recipe's shared fields, the conditions a comparison's table states.
ENVIRONMENT_CONDITIONS = {
    "data_source": "data", "cuda_mps": "CUDA MPS", "device": "device", "gpu_name": "GPU",
    "torch_version": "torch", "cuda_version": "CUDA", "cudnn_version": "cuDNN", "cnnbench_version": "cnnbench",
    # from the run's environment.json (cnnbench.store.manifest.KEY_FIELDS): what else two machines differ by
    "driver_version": "driver", "python_version": "Python", "cpu_model": "CPU", "gpu_power_limit_W": "GPU power limit W",
    "mig_mode": "MIG", "cnnbench_commit": "cnnbench commit",
}  # fmt: skip
SHARED_CONDITIONS = (
    *(name for name, f in _FIELDS.items() if f.metadata["shared"]),
    *(k for k in ENVIRONMENT_CONDITIONS if k not in _FIELDS),
)


def without_added_defaults(conditions: Mapping[str, Any]) -> dict[str, Any]:
    """``conditions`` without the conditions added after runs were recorded that stand at their default,
    as those runs' records (which lack them) read."""
    return {k: v for k, v in conditions.items()
            if not (k in _FIELDS and _FIELDS[k].metadata["hashed_at_default"] is False and v == _FIELDS[k].default)}  # fmt: skip


def conditions_hash(conditions: Mapping[str, Any]) -> str:
    """A short hash of the conditions that decide what a run computes (fields, the optimizer's
    implementation and the device's kind); conditions added later are left out at their default."""
    key = without_added_defaults(
        {k: conditions.get(k) for k in (*CONDITION_FIELDS, "optimizer_impl", "device_kind")}
    )
    # Runs recorded before --augment took a name recorded true for the chapter's crop and false for none.
    key["augment"] = {"crop": True, "none": False}.get(key.get("augment"), key.get("augment"))
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def condition_items(conditions: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) of each shared condition, recipe first, then the environment; a condition added
    after a run was recorded reads as its default where the record lacks it."""
    items: list[tuple[str, Any]] = []
    for name in SHARED_CONDITIONS:
        f = _FIELDS.get(name)
        value = conditions.get(name)
        if value is None and f is not None and not f.metadata["hashed_at_default"]:
            value = field_default(f)
        if f is not None and name == "device":
            continue  # the environment's device (as resolved) is stated below
        if value is None or value == "":
            continue
        label = (f.metadata["label"] if f is not None else ENVIRONMENT_CONDITIONS[name]) or name.replace(
            "_", " "
        )
        items.append((label, value))
    return items


def write_job(path: Path, label: str, recipe: TrainConfig) -> Path:
    """A job file: the recipe one worker trains (``cnnbench train --config PATH``), and its label."""
    write_text_atomic(Path(path), to_json({"label": label, "recipe": recipe.to_dict()}))
    return Path(path)


def read_job(path: Path) -> TrainConfig:
    """The recipe of a job file, or of a run's config.json (whose ``config`` is its recipe; trained
    again, it is a new run with a name of its own)."""
    data = read_json(Path(path))
    recipe = data.get("recipe", data.get("config", data))
    if not isinstance(recipe, Mapping):
        raise InvalidArgumentError(f"expected a recipe in {path}, got {type(recipe).__name__}")
    config = TrainConfig.from_dict(recipe, source=str(path))
    return config.replace(run_name=None, world_size=1) if "config" in data else config
