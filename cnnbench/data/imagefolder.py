"""Images from disk in torchvision's ImageFolder layout, decoded once into a uint8 cache.

``DIR/train/CLASS/*.png`` and ``DIR/val/CLASS/*`` (or ``test/``): class names and their order come
from the training folders. Each image is decoded (in threads), resized so its shorter side is the
image size and centre-cropped to a square, and the split is kept as one uint8 array in
``DIR/.cnnbench-cache/`` (or ``~/.cache/cnnbench`` where DIR cannot be written), keyed by the file
list, the files' sizes and times, and the image size, so a second run starts in seconds. The
training split's per-channel mean and std are computed once and kept with it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.data.specs import check_fits
from cnnbench.errors import DatasetError, first_line

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
SPLITS = {"train": ("train",), "test": ("val", "test")}
Progress = Callable[[int, int], None]  # (images decoded, images in all)


def split_dir(root: Path, split: str) -> Path:
    for name in SPLITS[split]:
        if (root / name).is_dir():
            return root / name
    want = " or ".join(f"{root / n}/" for n in SPLITS[split])
    raise DatasetError(f"expected {want} with one folder per class (ImageFolder layout), got no such folder")


def classes_of(root: Path) -> list[str]:
    """The class names: the folders of the training split, sorted; each must hold an image."""
    train = split_dir(Path(root), "train")
    classes = sorted(d.name for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(f"expected one folder per class in {train}, got none")
    if len(classes) < 2:
        raise DatasetError(
            f"expected at least two class folders in {train} (a classifier needs two classes), got only {classes[0]!r}"
        )
    for name in classes:
        if not _images(train / name):
            raise DatasetError(f"expected images in class folder {train / name}, got none (an empty class)")
    return classes


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def load(
    root: Path, split: str, image_size: int, skip_bad: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """The split as uint8 images [N, 3, S, S], int64 labels, class names, the training split's mean and
    std (0-1 scale), and how many unreadable images were skipped; from the cache when it is current."""
    root = Path(root)
    classes = classes_of(root)
    folder = split_dir(root, split)
    unknown = sorted(
        d.name
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in classes
    )
    if unknown:
        raise DatasetError(
            f"expected the class folders of {folder} to be those of {split_dir(root, 'train')}, got "
            f"{', '.join(unknown)}, which training has not (its images would have no label)"
        )
    files = [(path, label) for label, name in enumerate(classes) for path in _images(folder / name)]
    if not files:
        raise DatasetError(f"expected images in {folder}/CLASS/, got none")
    check_fits(
        len(files),
        (3, image_size, image_size),
        f"{len(files):,} images of {folder} at {image_size}x{image_size}",
    )
    cache = _cache_path(root, split, image_size, skip_bad, files)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                cached = {k: data[k] for k in data.files}
            return cached | {"classes": classes, "cache": str(cache), "from_cache": True}
        except Exception:  # a damaged cache (cut, overwritten) is decoded again, never read as whole
            cache.unlink(missing_ok=True)
    images, labels, bad = _decode(files, image_size, skip_bad, progress)
    if split == "train":
        scaled = images.astype(np.float64) / 255.0
        mean, std = scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))
    else:
        train = load(root, "train", image_size, skip_bad, progress)
        mean, std = train["mean"], train["std"]
    data = {
        "images": images,
        "labels": labels,
        "mean": mean,
        "std": np.maximum(std, 1e-3),
        "skipped": np.array(bad),
    }
    _save(cache, data)
    return data | {"classes": classes, "cache": str(cache), "from_cache": False}


def _decode(files: list[tuple[Path, int]], size: int, skip_bad: bool,
            progress: Progress | None) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    done = 0

    def one(item: tuple[Path, int]) -> np.ndarray | None:
        nonlocal done
        path, _ = item
        try:
            image = _square(path, size)
        except Exception as exc:  # PIL raises many types for one unreadable file
            if not skip_bad:
                reason = first_line(exc)
                raise DatasetError(
                    f"expected a readable image at {path}, got {reason}; --skip-bad-images leaves such files out"
                ) from None
            image = None
        done += 1
        if progress is not None:
            progress(done, len(files))
        return image

    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2))) as pool:
        decoded = list(pool.map(one, files))
    kept = [(img, label) for img, (_, label) in zip(decoded, files, strict=True) if img is not None]
    if not kept:
        raise DatasetError(f"expected readable images, got none of {len(files)}")
    images = np.stack([img for img, _ in kept])
    labels = np.array([label for _, label in kept], dtype=np.int64)
    return images, labels, len(files) - len(kept)


def _square(path: Path, size: int) -> np.ndarray:
    """RGB, shorter side resized to ``size``, centre-cropped to ``size`` x ``size``, as [3, S, S] uint8."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (and 32-bit integer): to 8 bits
            depth = 65535 if image.mode.startswith("I;16") else max(int(np.asarray(image).max()), 1)
            image = Image.fromarray(
                (np.asarray(image, dtype=np.float64) * 255.0 / depth).round().astype(np.uint8)
            )
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def _cache_path(root: Path, split: str, size: int, skip_bad: bool, files: list[tuple[Path, int]]) -> Path:
    key = hashlib.sha1()
    for path, label in files:
        stat = path.stat()
        key.update(f"{path.relative_to(root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    key.update(f"{size}|{skip_bad}".encode())
    name = f"{split}-{size}px-{key.hexdigest()[:16]}.npz"
    here = root / ".cnnbench-cache"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here / name
    except OSError:
        pass
    return (
        Path.home()
        / ".cache"
        / "cnnbench"
        / f"{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]}-{name}"
    )


def _save(path: Path, data: dict[str, Any]) -> None:
    from cnnbench.store.tables import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **data)
