"""Images from disk in torchvision's ImageFolder layout, decoded once into a memory-mapped uint8 cache.

``DIR/train/CLASS/*.jpg`` and ``DIR/val/CLASS/*`` (or ``test/``): class names and their order come from
the training folders. Each image is decoded (JPEGs at a reduced DCT scale where the stored size allows:
PIL's draft mode), resized so its shorter side is the stored size and centre-cropped to a square. Worker
processes decode chunks of the file list and write them straight into one uint8 file, so memory does not
grow with the folder: nothing holds the split at once, and the per-channel statistics are integer sums
added chunk by chunk. The cache is a folder ``DIR/.cnnbench-cache/SPLIT-Spx-v2-KEY/`` (or under
``~/.cache/cnnbench`` where DIR cannot be written), keyed by the file list, the files' sizes and times,
the stored size and the cache's version; it is written under a temporary name and renamed when whole, so
an interrupted decode leaves nothing that reads as a cache. Training reads it through :class:`MappedImages`
(positioned reads, never the whole file into memory).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.device import usable_cpus, worker_pool
from cnnbench.errors import DatasetError, first_line

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
SPLITS = {"train": ("train",), "test": ("val", "test")}
CACHE_VERSION = 2  # a cache of another version is never read (its name differs, and its meta says so)
CHUNK = 64  # images per task of a decoding worker: its memory is a chunk, whatever the folder's size
IN_PROCESS_BELOW = 256  # fewer images than this are decoded without starting worker processes
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
        if not _has_image(train / name):
            raise DatasetError(f"expected images in class folder {train / name}, got none (an empty class)")
    return classes


def _has_image(folder: Path) -> bool:
    return any(p.suffix.lower() in EXTENSIONS and p.is_file() for p in folder.rglob("*"))


def _readable(
    files: list[tuple[str, int]], skip_bad: bool
) -> tuple[list[tuple[str, int]], list[os.stat_result]]:
    """The files that can be opened at all, and their stats (which key the cache): a dangling symlink or a
    loop of them is named (as an unreadable image is), or left out with ``skip_bad``."""
    kept, stats = [], []
    for path, label in files:
        try:
            stats.append(os.stat(path))
        except OSError as exc:
            if not skip_bad:
                what = (
                    "a symlink loop" if exc.errno == errno.ELOOP else "a dangling symlink or a missing file"
                )
                raise DatasetError(
                    f"expected a readable image at {path}, got {what} ({exc.strerror}); --skip-bad-images "
                    "leaves such files out"
                ) from None
            continue
        kept.append((path, label))
    return kept, stats


def _images(folder: Path) -> list[str]:
    # Strings, not Path objects: a million of them is a tenth of the memory.
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(
            os.path.join(dirpath, f) for f in filenames if os.path.splitext(f)[1].lower() in EXTENSIONS
        )
    return sorted(found)


# --- the cache, read ----------------------------------------------------------------------------------


@dataclass
class MappedImages:
    """uint8 images [N, 3, S, S] in a cache file, read on demand with positioned reads: indexing gives a
    view (another :class:`MappedImages`), :meth:`gather` reads rows into memory. The whole file is never
    read at once, so memory stays what the batches need whatever the split's size."""

    path: str
    count: int  # images in the file
    size: int
    index: np.ndarray | None = None  # the file's images this view holds, in order (None: all of them)
    identity: tuple[int, int] = (0, 0)  # the file's (inode, mtime): a cache decoded again is another file

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def image_bytes(self) -> int:
        return 3 * self.size * self.size

    def __len__(self) -> int:
        return self.count if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.size, self.size)

    @property
    def nbytes(self) -> int:
        return len(self) * self.image_bytes

    def rows(self) -> np.ndarray:
        """The file positions of this view's images."""
        return np.arange(self.count) if self.index is None else self.index

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self.gather(np.array([key]))[0]
        index = self.rows()[key]
        return MappedImages(
            self.path, self.count, self.size, np.asarray(index, dtype=np.int64), self.identity
        )

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.gather(np.arange(len(self)))
        return array if dtype is None else array.astype(dtype)

    def _fd(self) -> int:
        # One descriptor per process (a forked worker opens its own): positioned reads need no seek.
        key = (os.getpid(), self.path, self.identity)
        fd = _OPEN.get(key)
        if fd is None:
            try:
                fd = _OPEN[key] = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:  # deleted while the run reads it (a clean-up of the cache folder)
                raise DatasetError(
                    f"expected the image cache {self.path} to stay while the run reads it, got it deleted; "
                    "run again to decode the images anew"
                ) from None
        return fd

    def gather(self, positions: Any, out: np.ndarray | None = None) -> np.ndarray:
        """The images at ``positions`` of this view, as uint8 [k, 3, S, S] (into ``out`` when given);
        runs of consecutive file positions are read with one call each."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        rows = positions if self.index is None else self.index[positions]
        if out is None:
            out = np.empty((len(rows), 3, self.size, self.size), dtype=np.uint8)
        flat = out.reshape(len(rows), -1)
        fd, size = self._fd(), self.image_bytes
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            if stop <= start:
                continue
            view = memoryview(flat[start:stop]).cast("B")
            got = os.preadv(fd, [view], int(rows[start]) * size)
            if got != len(view):
                raise DatasetError(
                    f"expected {len(view)} bytes of images in {self.path}, got {got} (a cut cache?)"
                )
        return out

    def chunks(self, images_per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first position, images) over the view in order, ``images_per_chunk`` at a time."""
        for start in range(0, len(self), images_per_chunk):
            yield start, self.gather(np.arange(start, min(start + images_per_chunk, len(self))))


_OPEN: dict[tuple[int, str, tuple[int, int]], int] = {}


# --- the split -----------------------------------------------------------------------------------------


def load(
    root: Path, split: str, size: int, skip_bad: bool = False, progress: Progress | None = None,
    workers: int | None = None, train_stats: tuple[Any, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The split as :class:`MappedImages` [N, 3, S, S] at stored size ``size``, int64 labels, class names,
    the training split's mean and std (0-1 scale), and how many unreadable images were skipped; from the
    cache when it is whole and current, else decoded into it first. ``train_stats`` is the training
    split's (mean, std) where the caller has loaded it already (else it is loaded here)."""
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
    listed = [(path, label) for label, name in enumerate(classes) for path in _images(folder / name)]
    files, stats = _readable(listed, skip_bad)
    if not files:
        raise DatasetError(f"expected images in {folder}/CLASS/, got none")
    cache = _cache_dir(root, split, size, skip_bad, files, stats)
    data = _read_cache(cache, size)
    if data is None:
        _check_disk(
            cache.parent, len(files) * 3 * size * size, f"{len(files):,} images of {folder} at {size}x{size}"
        )
        data = _decode_into(cache, files, size, skip_bad, progress, workers)
        from_cache = False
    else:
        from_cache = True
    if split != "train":  # every split is normalised with the training split's statistics
        if train_stats is None:
            train = load(root, "train", size, skip_bad, progress, workers)
            train_stats = (train["mean"], train["std"])
        data["mean"], data["std"] = np.asarray(train_stats[0]), np.asarray(train_stats[1])
    return data | {"classes": classes, "cache": str(cache), "from_cache": from_cache}


def _read_cache(cache: Path, size: int) -> dict[str, Any] | None:
    """The cache's contents, or None when there is none; one that is damaged, cut or of another version
    or size is removed (and decoded again), never read as whole."""
    if not cache.is_dir():
        return None
    try:
        meta = json.loads((cache / "meta.json").read_text())
        count = int(meta["count"])
        labels = np.load(cache / "labels.npy", allow_pickle=False)
        whole = (
            meta["version"] == CACHE_VERSION
            and meta["size"] == size
            and labels.shape == (count,)
            and (cache / "images.u8").stat().st_size == count * 3 * size * size
        )
        if whole:
            stat = (cache / "images.u8").stat()
            return {
                "images": MappedImages(
                    str(cache / "images.u8"), count, size, None, (stat.st_ino, stat.st_mtime_ns)
                ),
                "labels": labels.astype(np.int64),
                "mean": np.array(meta["mean"], dtype=np.float64),
                "std": np.array(meta["std"], dtype=np.float64),
                "skipped": int(meta["skipped"]),
                "decode_s": float(meta.get("decode_s", float("nan"))),
            }
    except (OSError, ValueError, KeyError, TypeError):
        pass
    shutil.rmtree(cache, ignore_errors=True)
    return None


# --- decoding ------------------------------------------------------------------------------------------


def _decode_into(cache: Path, files: list[tuple[str, int]], size: int, skip_bad: bool,
                 progress: Progress | None, workers: int | None) -> dict[str, Any]:  # fmt: skip
    """Decode every file into ``cache`` (written under a temporary name, renamed when whole)."""
    t0 = time.perf_counter()
    _remove_abandoned(cache)
    partial = cache.with_name(f"{cache.name}.partial-{os.getpid()}-{os.urandom(3).hex()}")
    partial.mkdir(parents=True)
    try:
        images_path = str(partial / "images.u8")
        image_bytes = 3 * size * size
        with open(images_path, "wb") as fh:
            fh.truncate(len(files) * image_bytes)
        bad, sums, squares = _decode_all(images_path, [p for p, _ in files], size, progress, workers)
        if bad and not skip_bad:
            slot, reason = min(bad)
            raise DatasetError(
                f"expected a readable image at {files[slot][0]}, got {reason}; --skip-bad-images leaves such files out"
            )
        kept = np.setdiff1d(np.arange(len(files)), [slot for slot, _ in bad])
        if not len(kept):
            raise DatasetError(f"expected readable images, got none of {len(files)}")
        if bad:
            _compact(images_path, kept, image_bytes)
        pixels = len(kept) * size * size
        mean = sums / (255.0 * pixels)
        std = np.sqrt(np.maximum(squares / (255.0**2 * pixels) - mean**2, 0.0))
        labels = np.array([files[i][1] for i in kept], dtype=np.int64)
        np.save(partial / "labels.npy", labels)
        decode_s = time.perf_counter() - t0
        meta = {"version": CACHE_VERSION, "size": size, "count": int(len(kept)), "skipped": len(bad),
                "mean": mean.tolist(), "std": np.maximum(std, 1e-3).tolist(), "decode_s": decode_s}  # fmt: skip
        (partial / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(partial, cache)  # atomic: the cache appears whole or not at all
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    data = _read_cache(cache, size)
    if data is None:
        raise DatasetError(f"expected a readable image cache at {cache} after decoding, got none")
    return data


def _decode_all(images_path: str, paths: list[str], size: int, progress: Progress | None,
                workers: int | None) -> tuple[list[tuple[int, str]], np.ndarray, np.ndarray]:  # fmt: skip
    """Decode ``paths`` into ``images_path`` (image i at offset i), in worker processes for a large
    folder; (the unreadable images' (position, reason), per-channel sums and sums of squares)."""
    tasks = [
        (images_path, start, paths[start : start + CHUNK], size) for start in range(0, len(paths), CHUNK)
    ]
    bad: list[tuple[int, str]] = []
    sums, squares = np.zeros(3, np.int64), np.zeros(3, np.int64)
    done = 0

    def add(result: tuple[list[tuple[int, str]], np.ndarray, np.ndarray, int]) -> None:
        nonlocal done, sums, squares
        bad.extend(result[0])
        sums, squares = sums + result[1], squares + result[2]
        done += result[3]
        if progress is not None:
            progress(done, len(paths))

    count = workers or usable_cpus()  # one decoding process per CPU this process may use
    if len(paths) < IN_PROCESS_BELOW or count <= 1:
        for task in tasks:
            add(decode_chunk(*task))
        return bad, sums, squares
    from concurrent.futures import FIRST_COMPLETED, wait

    with worker_pool(count) as pool:
        pending: set[Any] = set()
        queue = iter(tasks)
        try:
            for task in queue:  # a bounded window of tasks: results arrive as they finish
                pending.add(pool.submit(decode_chunk, *task))
                if len(pending) >= 4 * count:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        add(future.result())
            for future in pending:
                add(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return bad, sums, squares


def decode_chunk(images_path: str, first: int, paths: list[str], size: int
                 ) -> tuple[list[tuple[int, str]], np.ndarray, np.ndarray, int]:  # fmt: skip
    """Decode ``paths`` (images ``first``, ``first`` + 1, ...) and write each at its offset in
    ``images_path``; (unreadable (position, reason), per-channel sums, sums of squares, images done).
    Positioned writes, not a memory map: the written pages are the page cache's, not this process's."""
    bad: list[tuple[int, str]] = []
    sums, squares = np.zeros(3, np.int64), np.zeros(3, np.int64)
    fd = os.open(images_path, os.O_WRONLY)
    try:
        for i, path in enumerate(paths):
            try:
                image = square_image(path, size)
            except Exception as exc:  # PIL raises many types for one unreadable file
                bad.append((first + i, first_line(exc)))
                continue
            os.pwrite(fd, image.tobytes(), (first + i) * image.nbytes)
            channels = image.reshape(3, -1).astype(np.int64)
            sums += channels.sum(axis=1)
            squares += (channels * channels).sum(axis=1)
    finally:
        os.close(fd)
    return bad, sums, squares, len(paths)


def square_image(path: str | Path, size: int) -> np.ndarray:
    """RGB, shorter side resized to ``size``, centre-cropped to ``size`` x ``size``, as [3, S, S] uint8.

    A JPEG much larger than ``size`` is decoded at a reduced DCT scale (1/2, 1/4, 1/8; PIL's draft mode)
    that still leaves both sides at least ``size``; then only the centre square is resized (the resize's
    ``box``), straight to ``size`` x ``size``: the pixels a crop would drop are never resampled."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        # a large photograph of the user's own is what it is (PIL's warning, with its source line, says
        # nothing they can act on); one past PIL's hard limit is an error, named as an unreadable image
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image:
        if image.format == "JPEG":
            image.draft("RGB", (size, size))
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (and 32-bit integer): to 8 bits
            depth = 65535 if image.mode.startswith("I;16") else max(int(np.asarray(image).max()), 1)
            image = Image.fromarray(
                (np.asarray(image, dtype=np.float64) * 255.0 / depth).round().astype(np.uint8)
            )
        if image.mode != "RGB":  # convert() copies even when there is nothing to convert
            image = image.convert("RGB")
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        image = image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def _compact(images_path: str, kept: np.ndarray, image_bytes: int) -> None:
    """Move the kept images down over the skipped ones' places, then cut the file to the kept."""
    fd = os.open(images_path, os.O_RDWR)
    try:
        for target, source in enumerate(kept):
            if target != source:
                os.pwrite(fd, os.pread(fd, image_bytes, int(source) * image_bytes), target * image_bytes)
        os.ftruncate(fd, len(kept) * image_bytes)
    finally:
        os.close(fd)


# --- where the cache lives -----------------------------------------------------------------------------


def _cache_dir(root: Path, split: str, size: int, skip_bad: bool, files: list[tuple[str, int]],
               stats: list[os.stat_result]) -> Path:  # fmt: skip
    key = hashlib.sha1()
    prefix = len(str(root)) + 1
    for (path, label), stat in zip(files, stats, strict=True):
        key.update(f"{path[prefix:]}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    key.update(f"{size}|{skip_bad}|v{CACHE_VERSION}".encode())
    name = f"{split}-{size}px-v{CACHE_VERSION}-{key.hexdigest()[:16]}"
    here = root / ".cnnbench-cache"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here / name
    except OSError:
        pass
    from cnnbench.store.tables import cache_home

    # a folder this process cannot write (read-only, another user's): the cache goes where cnnbench keeps
    # its caches, and the run says so (ArrayDataset.cache_elsewhere)
    return cache_home() / f"{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]}-{name}"


def _remove_abandoned(cache: Path) -> None:
    """Partial caches of this name left by decodes that were killed (their process is gone)."""
    if not cache.parent.is_dir():
        return
    for partial in cache.parent.glob(f"{cache.name}.partial-*"):
        try:
            pid = int(partial.name.rsplit(".partial-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _check_disk(folder: Path, need: int, what: str) -> None:
    """Refuse, before decoding, a cache the disk cannot hold."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DatasetError(
            f"{what} need {need / 2**30:,.1f} GiB of cache; expected that much free in {folder}, got "
            f"{free / 2**30:,.1f} GiB (a smaller --cache-size needs less)"
        )
