"""Datasets read into uint8 arrays: CIFAR-10/100 from their standard pickled batches (no PIL per image),
MNIST-like sets from IDX files, synthetic data of any shape, and your own folders (:mod:`.imagefolder`).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.data.specs import DatasetSpec, check_fits, format_input_size, get_dataset_spec
from cnnbench.errors import DatasetError, first_line

DATA_DIR_ENV = "CNNBENCH_DATA_DIR"
DEBIAN_DATASETS = Path("/usr/share/datasets")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "./data"))


def _given_root(data_dir: Path | None) -> Path:
    """The folder a dataset is read from: --data-dir, else $CNNBENCH_DATA_DIR, else ./data. A folder the
    user named must exist: a mistyped one is refused, not created."""
    if data_dir is not None:
        given, named = Path(data_dir), "--data-dir"
    elif DATA_DIR_ENV in os.environ:
        given, named = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        return default_data_dir()
    if not given.is_dir():
        raise DatasetError(
            f"expected {named} to be an existing folder, got {given} (nothing is created there)"
        )
    return given


def imagefolder_root(data_dir: Path | None) -> Path:
    """Your own images' folder: --data-dir or $CNNBENCH_DATA_DIR, which must be given (./data is
    CIFAR's place, not a default for them)."""
    if data_dir is None and DATA_DIR_ENV not in os.environ:
        raise DatasetError(
            f"expected --data-dir (or ${DATA_DIR_ENV}) with train/ and val/ folders for --dataset imagefolder, got none"
        )
    return _given_root(data_dir)


@dataclass
class ArrayDataset:
    """A split held as uint8 images [N, C, H, W] and int64 labels [N]."""

    images: Any  # np.ndarray, or your own images' MappedImages (read from their cache on demand)
    labels: np.ndarray
    spec: DatasetSpec
    source: str
    skipped: int = 0  # unreadable images left out (--skip-bad-images)
    class_names: tuple[str, ...] = ()  # where the data names its classes (your own images' folders)
    decode_s: float = 0.0  # seconds spent decoding your own images into their cache (0: read from it)
    cache: str = ""  # your own images' cache folder

    @property
    def cache_elsewhere(self) -> bool:
        """Whether your own images' cache lies outside their folder (which this process cannot write)."""
        return bool(self.cache) and not Path(self.cache).is_relative_to(Path(self.source))

    def __len__(self) -> int:
        return len(self.labels)


# --- the validation split ---------------------------------------------------------------------------

# The validation split's own seed: every variant and seed of a comparison holds out the same images.
VAL_SPLIT_SEED = 0


def split_validation(data: ArrayDataset, size: float) -> tuple[ArrayDataset, ArrayDataset]:
    """(training, validation): ``size`` images (a count, or a fraction of the split) held out of ``data``,
    stratified by class (each class gives its share, the largest remainders rounding up), chosen by
    :data:`VAL_SPLIT_SEED` alone."""
    import dataclasses

    n = len(data.labels)
    count = int(round(size * n)) if size < 1 else int(size)
    if count < 1:  # a fraction of a few images rounds to none: nothing to validate on
        raise DatasetError(
            f"expected a --val-split of at least one image, got {size:g} of {n:,} images, which is {size * n:.2f}"
        )
    classes, counts = np.unique(data.labels, return_counts=True)
    shares = count * counts / n
    quota = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - quota), kind="stable")[: count - int(quota.sum())]:
        quota[i] += 1
    short = [(int(k), int(c), int(q)) for k, c, q in zip(classes, counts, quota, strict=True) if q >= c]
    if count >= n or short:
        k, c, q = short[0] if short else (int(classes[0]), int(counts[0]), int(quota[0]))
        raise DatasetError(
            f"expected a validation split that leaves every class training images, got {count:,} of {n:,} "
            f"(class {k} has {c:,} and would give {q:,})"
        )
    rng = np.random.default_rng(VAL_SPLIT_SEED)
    held = np.sort(np.concatenate([rng.permutation(np.flatnonzero(data.labels == k))[:q]
                                   for k, q in zip(classes, quota, strict=True)]))  # fmt: skip
    kept = np.setdiff1d(np.arange(n), held, assume_unique=True)
    return (dataclasses.replace(data, images=data.images[kept], labels=data.labels[kept]),
            dataclasses.replace(data, images=data.images[held], labels=data.labels[held]))  # fmt: skip


# --- CIFAR ----------------------------------------------------------------------------------------

_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles what CIFAR's batch files hold (dicts, lists, numpy arrays) and nothing else: a file
    in the data folder can never run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_file(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file, checked: readable, images of 3x32x32 bytes, one label in [0, classes) each."""
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="latin1").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        reason = first_line(exc)
        raise DatasetError(
            f"expected a CIFAR batch file at {path}, got unreadable content ({reason})"
        ) from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DatasetError(f"expected a CIFAR batch with 'data' and {label_key!r} in {path}, got other keys")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"expected uint8 images of 3x32x32 (N x 3072) in {path}, got {data.dtype} {data.shape}"
        )
    labels = np.asarray(batch[label_key], dtype=np.int64)
    _check_labels(path, labels, len(data), num_classes)
    return data.reshape(-1, 3, 32, 32), labels


def _check_labels(path: Path, labels: np.ndarray, count: int, num_classes: int) -> None:
    if labels.shape != (count,):
        raise DatasetError(f"expected {count} labels (one per image) in {path}, got {labels.size}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DatasetError(f"expected labels in [0, {num_classes}) in {path}, got {bad}")


def _read_cifar(
    root: Path, files: list[str], label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    parts = [_read_cifar_file(root / name, label_key, num_classes) for name in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --- MNIST-like (IDX) -----------------------------------------------------------------------------

_IDX = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DIRS = {
    "mnist": ["MNIST/raw", "mnist", "MNIST"],
    "fashion-mnist": ["FashionMNIST/raw", "fashion-mnist", "FashionMNIST"],
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic, dims, then big-endian uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"expected an IDX file of unsigned bytes, got {path}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"expected {int(np.prod(dims))} values in {path}, got {data.size}")
    return data.reshape(dims).copy()  # frombuffer is read-only; torch wants writable memory


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for suffix in ("", ".gz"):
            if (d / (stem + suffix)).is_file():
                return d / (stem + suffix)
    return None


def _idx_dirs(name: str, data_dir: Path) -> list[Path]:
    dirs = [data_dir / sub for sub in _IDX_DIRS[name]] + [data_dir]
    if name == "fashion-mnist":
        dirs.append(DEBIAN_DATASETS / "fashion-mnist")  # Debian's dataset-fashion-mnist package
    return dirs


# --- synthetic ------------------------------------------------------------------------------------


def synthetic(
    split: str, shape: tuple[int, int, int], num_classes: int, size: int, seed: int = 1234
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable random images: a fixed random template per class blended with per-image noise."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(num_classes, *shape)).astype(np.float32)
    split_rng = np.random.default_rng(seed + (1 if split == "train" else 2))
    labels = split_rng.integers(0, num_classes, size=size).astype(np.int64)
    noise = split_rng.integers(0, 256, size=(size, *shape)).astype(np.float32)
    images = (0.5 * templates[labels] + 0.5 * noise).astype(np.uint8)
    return images, labels


# --- entry point ----------------------------------------------------------------------------------


def _expected_files(name: str, data_dir: Path) -> str:
    how = f"; point --data-dir or ${DATA_DIR_ENV} at the folder that holds them"
    if name in _CIFAR:
        folder, train, test, _ = _CIFAR[name]
        return f"{data_dir / folder}/{{{','.join(train + test)}}}{how}"
    stems = [s for pair in _IDX.values() for s in pair]
    where = f"{data_dir / _IDX_DIRS[name][0]}/"
    if name == "fashion-mnist":
        where += f" (or {DEBIAN_DATASETS / 'fashion-mnist'}/, from Debian's dataset-fashion-mnist)"
    return f"{where}{{{','.join(stems)}}}[.gz]{how}"


def _download(name: str, data_dir: Path) -> None:
    """Fetch through torchvision into data_dir; raise DatasetError naming the expected files on failure,
    with the empty folders the attempt made (./data, MNIST/raw) taken away again."""
    before = _folders(data_dir)
    try:
        from torchvision import datasets as tv

        cls = {
            "cifar10": tv.CIFAR10,
            "cifar100": tv.CIFAR100,
            "mnist": tv.MNIST,
            "fashion-mnist": tv.FashionMNIST,
        }[name]
        for train in (True, False):
            cls(root=str(data_dir), train=train, download=True)
    except Exception as exc:  # no network, or a mirror refused: the user needs to know where files go
        for folder in sorted(_folders(data_dir) - before, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: something was written there, and stays
                folder.rmdir()
        raise DatasetError(
            f"dataset {name} not found and the download failed ({_cause(exc)}): expected "
            f"{_expected_files(name, data_dir)}"
        ) from None


def _folders(data_dir: Path) -> set[Path]:
    """data_dir and the folders up to two levels under it (where torchvision's downloads make theirs)."""
    if not data_dir.is_dir():
        return set()
    return {data_dir, *(p for pattern in ("*", "*/*") for p in data_dir.glob(pattern) if p.is_dir())}


def _cause(exc: BaseException) -> str:
    """The download error with its cause: torchvision's first line names the file, its last the reason
    (MNIST: "Error downloading ...:" then the mirrors tried, then the URL error)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    tail = (
        lines[-1]
        if len(lines) > 1
        else (str(cause).strip().splitlines()[0] if cause and str(cause).strip() else "")
    )
    return f"{lines[0]} {tail}".strip()


_CACHE: dict[tuple, ArrayDataset] = {}


def load_split(
    name: str,
    split: str,
    data_dir: Path | None = None,
    download: bool = True,
    synthetic_shape: tuple[int, int, int] | None = None,
    synthetic_classes: int | None = None,
    synthetic_size: int | None = None,
    skip_bad_images: bool = False,
    progress: Any = None,
    cache_size: int | None = None,
) -> ArrayDataset:
    """Load ``split`` ('train' or 'test') of dataset ``name`` as uint8 arrays (cached per process).

    ``synthetic_shape`` is the input size of the datasets that take one (synthetic data, and your own
    images, ``imagefolder``, which keeps them at ``cache_size``); ``progress(done, total)`` hears how
    decoding your own images goes.
    """
    # Your own images take neither classes nor a size from the options: a key without them is the same data.
    own = get_dataset_spec(name).name == "imagefolder"
    key = (name, split, str(data_dir), synthetic_shape, None if own else synthetic_classes,
           None if own else synthetic_size, skip_bad_images, cache_size)  # fmt: skip
    if key not in _CACHE:
        if own:
            _CACHE[key] = _load_imagefolder(
                split, data_dir, synthetic_shape, skip_bad_images, progress, cache_size
            )
        else:
            _CACHE[key] = _load_split(
                name, split, data_dir, download, synthetic_shape, synthetic_classes, synthetic_size
            )
    return _CACHE[key]


def default_cache_size(image_size: int) -> int:
    """The size your own images are stored at for training at ``image_size``: ImageNet's 256 for 224
    (an image size is 87.5% of the stored one), so random-resized and centre crops have room."""
    return max(image_size, round(image_size / 0.875))


def _load_imagefolder(split: str, data_dir: Path | None, shape: tuple[int, int, int] | None, skip_bad: bool,
                      progress: Any, cache_size: int | None) -> ArrayDataset:  # fmt: skip
    from cnnbench.data import imagefolder

    root = imagefolder_root(data_dir)
    channels, size, width = shape or (3, 224, 224)
    if channels != 3 or size != width:
        raise DatasetError(
            f"expected --image-size N (3 x N x N) for your own images, got {channels}x{size}x{width}"
        )
    stored = cache_size or default_cache_size(size)
    if stored < size:
        raise DatasetError(f"expected --cache-size >= --image-size ({size}), got {stored}")
    train_stats = None
    if split != "train":  # the training split's statistics, from the split this process has loaded
        train = load_split("imagefolder", "train", data_dir, synthetic_shape=shape, skip_bad_images=skip_bad,
                           progress=progress, cache_size=cache_size)  # fmt: skip
        train_stats = (train.spec.mean, train.spec.std)
    data = imagefolder.load(root, split, stored, skip_bad, progress, train_stats=train_stats)
    spec = DatasetSpec("imagefolder", (3, size, size), len(data["classes"]), tuple(map(float, data["mean"])),
                       tuple(map(float, data["std"])), "rrc")  # fmt: skip
    return ArrayDataset(data["images"], data["labels"], spec, str(root), skipped=int(data["skipped"]),
                        class_names=tuple(data["classes"]), decode_s=0.0 if data["from_cache"] else data["decode_s"],
                        cache=data["cache"])  # fmt: skip


def _load_split(
    name: str,
    split: str,
    data_dir: Path | None,
    download: bool,
    synthetic_shape: tuple[int, int, int] | None,
    synthetic_classes: int | None,
    synthetic_size: int | None,
) -> ArrayDataset:
    spec = get_dataset_spec(name)
    if not spec.trainable:
        raise DatasetError(f"expected a dataset with images to train on, got {name!r} (shape only)")
    data_dir = _given_root(data_dir) if spec.name != "synthetic" else Path(data_dir or default_data_dir())
    if spec.name == "synthetic":
        shape = tuple(synthetic_shape or spec.input_shape)
        classes = int(synthetic_classes or spec.num_classes)
        size = int(synthetic_size or (5000 if split == "train" else 1000))
        # float32 class templates and noise on the way to uint8 images: refused before they are made
        check_fits(4 * classes + 9 * size, shape, f"synthetic data of {size:,} images of {format_input_size(shape)} "
                   f"in {classes:,} classes")  # fmt: skip
        images, labels = synthetic(split, shape, classes, size)
        mean, std = (0.5,) * shape[0], (0.25,) * shape[0]
        spec = DatasetSpec("synthetic", shape, classes, mean, std, "none")
        return ArrayDataset(images, labels, spec, "synthetic (seeded)")
    if spec.name in _CIFAR:
        folder, train_files, test_files, key = _CIFAR[spec.name]
        candidates = [data_dir / folder, data_dir]
        files = train_files if split == "train" else test_files
        root = next((c for c in candidates if all((c / f).is_file() for f in files)), None)
        if root is None:
            return _fetch_missing(spec.name, split, data_dir, download)
        images, labels = _read_cifar(root, files, key, spec.num_classes)
        return ArrayDataset(images, labels, spec, str(root))
    dirs = _idx_dirs(spec.name, data_dir)
    img_stem, lbl_stem = _IDX[split]
    img_path, lbl_path = _find_idx(dirs, img_stem), _find_idx(dirs, lbl_stem)
    if img_path is None or lbl_path is None:
        return _fetch_missing(spec.name, split, data_dir, download)
    images = read_idx(img_path)
    if images.ndim != 3:
        raise DatasetError(f"expected images of N x H x W in {img_path}, got {images.ndim} dimensions")
    labels = read_idx(lbl_path).astype(np.int64)
    _check_labels(lbl_path, labels, len(images), spec.num_classes)
    images = images[:, None, :, :]
    return ArrayDataset(images, labels, spec, str(img_path.parent))


def _fetch_missing(name: str, split: str, data_dir: Path, download: bool) -> ArrayDataset:
    """Files not found: download them and read again, or say which files are expected where."""
    if download:
        _download(name, data_dir)
        return load_split(name, split, data_dir, download=False)
    raise DatasetError(f"dataset {name} not found: expected {_expected_files(name, data_dir)}")
