"""What each dataset is (shape, classes, normalisation), without importing torch."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from cnnbench.errors import DatasetError, InvalidArgumentError

# The training augmentations by name (cnnbench.data.loader does them): none, flips alone, the chapter's
# padded random crop and flip, ImageNet's random-resized crop and flip.
AUGMENTATIONS = ("none", "flip", "crop", "rrc")


def augmentation_named(augment: object) -> str:
    """An augmentation by its name, where older recipes (and callers) said true for the chapter's crop and
    flip and false (or nothing) for none."""
    if augment is True:
        return "crop"
    if augment is False or augment is None:
        return "none"
    return str(augment)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # the training augmentation by default, one of AUGMENTATIONS
    trainable: bool = True  # False for shape-only entries such as imagenet

    @property
    def sized_by_user(self) -> bool:
        """Whether --input-size decides the input (synthetic data, your own images)."""
        return self.name in ("synthetic", "imagefolder")


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        # The chapter's CIFAR-10 normalisation constants.
        DatasetSpec("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "crop"),
        DatasetSpec("cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "crop"),
        DatasetSpec("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), "none"),
        DatasetSpec("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,), "none"),
        DatasetSpec("synthetic", (3, 32, 32), 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "none"),
        # Your own images (--data-dir with train/ and val/): classes, mean and std come from the folders;
        # ImageNet's random-resized crops.
        DatasetSpec("imagefolder", (3, 224, 224), 0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "rrc"),
        # Shape only: summary and profile at ImageNet size; no training data.
        DatasetSpec(
            "imagenet", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rrc", False
        ),
    )
}


# How the commands that train name the datasets they take.
DATASET_NAMES = "cifar10, cifar100, mnist, synthetic, imagefolder (your own) or fashion-mnist"


def get_dataset_spec(name: str) -> DatasetSpec:
    key = name.lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASETS:
        close = difflib.get_close_matches(key, DATASETS, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}{hint}")
    return DATASETS[key]


def parse_input_size(text: str) -> tuple[int, int, int]:
    """Parse 'CxHxW' (or 'HxW', meaning 3 channels) into a tuple of positive ints."""
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 2:
        dims = (3, *dims)
    if len(dims) != 3 or min(dims) < 1:
        raise InvalidArgumentError(
            f"expected --input-size as CxHxW with positive integers (e.g. 3x32x32), got {text!r}"
        )
    return dims  # type: ignore[return-value]


def format_input_size(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def host_memory_bytes() -> int:
    """The host's RAM."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(count: int, shape: tuple[int, ...], what: str, bytes_per_value: int = 1) -> None:
    """Refuse, before any allocation, data that cannot fit the host's memory: ``count`` arrays of
    ``shape`` (uint8 unless ``bytes_per_value`` says otherwise)."""
    import math

    need = count * math.prod(shape) * bytes_per_value
    have = host_memory_bytes()
    if need > have // 2:
        raise DatasetError(
            f"{what} need about {need / 2**30:,.1f} GiB; expected data that fits in half of this machine's "
            f"{have / 2**30:,.1f} GiB of memory"
        )
