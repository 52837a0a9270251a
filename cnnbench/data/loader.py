"""A loader that keeps the set on the device where it fits and does all per-batch work there.

``DeviceLoader`` shuffles, augments and normalises on the device: ``crop`` is the chapter's random crop
with 4-pixel zero padding and horizontal flip, ``rrc`` ImageNet's random-resized crop and flip, ``flip``
flips alone, ``none`` nothing (evaluation's centre crop where images are stored larger than the input).
A set too large for the GPU stays in pinned host memory, or in your images' cache file, and is streamed
per batch with the same order and augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnbench.data.imagefolder import MappedImages
from cnnbench.data.readers import ArrayDataset
from cnnbench.data.specs import AUGMENTATIONS, augmentation_named
from cnnbench.device import is_cuda

# ImageNet's random-resized crop (torchvision's RandomResizedCrop defaults): a share of the image's area
# and a width:height ratio drawn log-uniform, ten tries before the whole image.
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_ATTEMPTS = 10


def fits_on_device(dataset_bytes: int, device: str, per_batch: bool = False) -> bool:
    """Whether a dataset can live on the device: uint8 images plus one float32 epoch (4x) within half
    the GPU's free memory; the uint8 images alone where batches are made one at a time (``per_batch``).
    The CPU always holds it."""
    import torch

    if not is_cuda(device):
        return True
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return (1 if per_batch else 5) * dataset_bytes < free // 2


def makes_batches_one_by_one(data: ArrayDataset, augment: Any) -> bool:
    """Whether a loader builds each batch on its own (images read from a cache file, random-resized
    crops, a stored size other than the input's) rather than a whole epoch at once."""
    stored = tuple(data.images.shape[2:])
    return (
        isinstance(data.images, MappedImages)
        or augmentation_named(augment) == "rrc"
        or stored != data.spec.input_shape[1:]
    )


class DeviceLoader:
    """Batches from a uint8 dataset; all per-batch work (crops, flips, normalisation) runs on ``device``.

    Two ways to make an epoch:

    - *whole*: a set that fits on the device with its float epoch (CIFAR, MNIST) has each epoch built
      there at once, and batches are slices of it;
    - *per batch*: anything else (your own images, random-resized crops, a set too large for the GPU)
      gathers each batch, from the uint8 set on the device, or from host memory or the image cache by a
      background thread that fills pinned buffers a few batches ahead (``resident=False``).

    The order and augmentation of epoch ``e`` depend only on ``(seed, e)``, so a resumed run sees the
    same batches as an uninterrupted one; per batch they are drawn on the CPU, so a set streamed from
    the host gets the batches it would get on the device.
    """

    PREFETCH = 4  # batches a streaming loader's thread reads ahead

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        device: Any,
        shuffle: bool,
        augment: Any,
        seed: int = 0,
        channels_last: bool = False,
        resident: bool = True,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.mode = augmentation_named(augment)
        if self.mode not in AUGMENTATIONS:
            from cnnbench.errors import InvalidArgumentError

            raise InvalidArgumentError(f"expected --augment in {'|'.join(AUGMENTATIONS)}, got {augment!r}")
        self.stored = int(data.images.shape[2])
        self.out = int(data.spec.input_shape[1])
        self.per_batch = makes_batches_one_by_one(data, augment)
        mapped = isinstance(data.images, MappedImages)
        # Images read from their cache file stay there on the CPU: the file is the host memory.
        self.resident = resident and not (mapped and self.device.type == "cpu")
        if self.resident:
            self.images = self._to_device(data.images)
        elif mapped:
            self.images = data.images
        else:
            images = torch.from_numpy(np.ascontiguousarray(data.images))
            self.images = images.pin_memory() if self.device.type == "cuda" else images
        self.labels = torch.from_numpy(data.labels).to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.channels_last = channels_last
        std = torch.tensor(data.spec.std, device=self.device).view(1, -1, 1, 1)
        mean = torch.tensor(data.spec.mean, device=self.device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.pad = 4 if self.stored == self.out else 0  # the chapter's zero padding, where there is no room
        # The epoch of a loader that neither shuffles nor augments, built once.
        self._unchanging: tuple[Any, Any] | None = None
        self.build_s = float("nan")  # seconds the last whole training epoch took to build

    @property
    def augment(self) -> bool:
        return self.mode != "none"

    @property
    def augmentation(self) -> str:
        """What the training batches go through, in words (recorded with the run's conditions)."""
        stored, out = self.stored, self.out
        if self.mode == "rrc":
            return (f"random-resized crop of the stored {stored}x{stored} to {out}x{out} (area {RRC_SCALE[0]:g}-"
                    f"{RRC_SCALE[1]:g}, ratio 3/4-4/3, bilinear) and horizontal flip")  # fmt: skip
        if self.mode == "crop":
            how = f"zero-padded by {self.pad}" if self.pad else f"of the stored {stored}x{stored}"
            return f"random {out}x{out} crop {how} and horizontal flip"
        centre = f"centre {out}x{out} crop of the stored {stored}x{stored}" if stored != out else ""
        if self.mode == "flip":
            return f"{centre + ' and ' if centre else ''}horizontal flip"
        return centre or "none"

    @property
    def placement(self) -> str:
        """Where the images live, in words (the run's data_placement)."""
        if self.resident:
            return "device"
        if isinstance(self.images, MappedImages):
            return "the image cache on disk, streamed per batch"
        return "pinned host memory, streamed per batch"

    @property
    def whole_epochs(self) -> bool:
        """Whether each epoch is built whole on the device (batches are its slices)."""
        return self.resident and not self.per_batch

    def _to_device(self, images: Any) -> Any:
        import torch

        if not isinstance(images, MappedImages):
            return torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        # From the cache file in chunks: host memory holds one chunk, never the set.
        out = torch.empty(images.shape, dtype=torch.uint8, device=self.device)
        per_chunk = max(1, (256 << 20) // images.image_bytes)
        for start, chunk in images.chunks(per_chunk):
            out[start : start + len(chunk)].copy_(torch.from_numpy(chunk))
        return out

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def in_order(self, batch_size: int) -> DeviceLoader:
        """The same images, neither shuffled nor augmented: the training set as an evaluation sees it."""
        import copy

        view = copy.copy(self)
        view.shuffle, view.mode = False, "none"
        view.batch_size, view._unchanging, view._pinned = batch_size, None, None
        return view

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def batch_sizes(self) -> set[int]:
        n, b = self.num_samples, self.batch_size
        return {min(b, n)} | ({n % b} if n % b else set())

    def epoch_tensors(self, epoch: int) -> tuple[Any, Any]:
        """The whole epoch, shuffled, augmented and normalised: float images [N, C, H, W] and labels.

        A handful of large kernels per epoch instead of a dozen small ones per batch: batches are then
        slices (views) of these tensors, which costs the training loop no kernel launches at all.
        """
        if not (self.shuffle or self.augment):
            # Every epoch is the same (evaluation): normalise once, not once per epoch.
            if self._unchanging is None:
                self._unchanging = self._build_epoch(epoch)
            return self._unchanging
        return self._build_epoch(epoch)

    def _build_epoch(self, epoch: int) -> tuple[Any, Any]:
        import torch

        n = self.num_samples
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle else None
        if self.augment:
            span = 2 * self.pad if self.mode == "crop" else 0
            offsets = torch.randint(0, span + 1, (n, 2), generator=gen, device=self.device)
            if self.mode == "flip":
                offsets.fill_(self.pad)
            flips = torch.rand(n, generator=gen, device=self.device) < 0.5
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        images = torch.empty(
            self.images.shape, dtype=torch.float32, device=self.device, memory_format=memory_format
        )
        labels = self.labels[order] if order is not None else self.labels
        chunk = 8192  # bounds the temporaries of the gather
        for start in range(0, n, chunk):
            idx = order[start : start + chunk] if order is not None else slice(start, start + chunk)
            x = self.images[idx]
            if self.augment:
                x = self._crop_flip(x, offsets[start : start + chunk], flips[start : start + chunk])
            images[start : start + chunk] = self._normalise(x)
        return images, labels

    def head(self, n: int) -> tuple[Any, Any]:
        """The first ``n`` images as evaluation sees them, normalised, in dataset order: real inputs of the
        right shape for warm-up and graph capture, without building a whole epoch."""
        import torch

        if self.resident:
            x = self.images[:n]
        else:
            x = torch.from_numpy(self._gather(np.arange(min(n, self.num_samples)))).to(self.device)
        x = self._normalise(self._centre(x))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[:n].clone()

    def _normalise(self, x: Any) -> Any:
        # (x/255 - mean)/std as one multiply-add on a fresh float copy
        return x.float().mul_(self.scale).add_(self.shift)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """Batches of epoch ``epoch``: slices of the epoch built on the device, or batches made one by one
        with the same order and augmentation."""
        if not self.whole_epochs:
            yield from self._batches(epoch)
            return
        import time

        from cnnbench.device import synchronize

        t0 = time.perf_counter()
        images, labels = self.epoch_tensors(epoch)
        if self.shuffle or self.augment:  # a training epoch: how long its building took (the loader's time)
            synchronize(str(self.device))
            self.build_s = time.perf_counter() - t0
        for start in range(0, self.num_samples, self.batch_size):
            yield images[start : start + self.batch_size], labels[start : start + self.batch_size]

    # --- one batch at a time ---------------------------------------------------------------------

    def draws(self, epoch: int) -> dict[str, Any]:
        """Epoch ``epoch``'s order and augmentation parameters, drawn on the CPU from ``(seed, epoch)``."""
        import torch

        n = self.num_samples
        gen = torch.Generator()
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        draws: dict[str, Any] = {
            "order": torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        }
        if self.mode == "crop":
            span = self.stored + 2 * self.pad - self.out
            draws["offsets"] = torch.randint(0, span + 1, (n, 2), generator=gen)
        elif self.mode == "rrc":
            draws["boxes"] = rrc_boxes(n, self.stored, gen)
        if self.mode != "none":
            draws["flips"] = torch.rand(n, generator=gen) < 0.5
        return draws

    def _batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        import torch

        draws = self.draws(epoch)
        order = draws["order"]
        labels = self.labels[order.to(self.labels.device)]
        source = self._resident_batches(order) if self.resident else self._streamed(order)
        for start, x in source:
            end = start + len(x)
            x = self._transform(x, {k: v[start:end] for k, v in draws.items() if k != "order"})
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels[start:end]

    def _resident_batches(self, order: Any) -> Iterator[tuple[int, Any]]:
        order = order.to(self.device)
        for start in range(0, self.num_samples, self.batch_size):
            yield start, self.images[order[start : start + self.batch_size]]

    def _gather(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if isinstance(self.images, MappedImages):
            return self.images.gather(positions, out)
        rows = self.images.numpy()[positions]
        if out is None:
            return rows
        out[...] = rows
        return out

    def _streamed(self, order: Any) -> Iterator[tuple[int, Any]]:
        """(first position, uint8 batch on the device): a background thread reads each batch into a
        pinned buffer a few batches ahead; a buffer is refilled once its copy to the device has ended."""
        import queue
        import threading

        import torch

        cuda = self.device.type == "cuda"
        order_np = order.numpy()
        spans = [
            (s, min(s + self.batch_size, self.num_samples))
            for s in range(0, self.num_samples, self.batch_size)
        ]
        shape = (self.batch_size, self.images.shape[1], self.stored, self.stored)
        free: queue.Queue = queue.Queue()
        if cuda:
            # Pinned once per loader and batch shape, not per epoch: pinning costs milliseconds per MB.
            # (A view of the same images at another batch size, in_order's, gets buffers of its own.)
            pinned = getattr(self, "_pinned", None)
            if pinned is None or pinned[0] != shape:
                buffers = [
                    torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(self.PREFETCH + 1)
                ]
                self._pinned = pinned = (shape, buffers)
            for buffer in pinned[1]:
                free.put((buffer, None))
        ready: queue.Queue = queue.Queue(maxsize=self.PREFETCH)
        stop = threading.Event()

        def produce() -> None:
            try:
                for start, end in spans:
                    if stop.is_set():
                        return
                    if cuda:
                        buffer, copied = free.get()
                        if copied is not None:
                            copied.synchronize()
                        self._gather(order_np[start:end], buffer.numpy()[: end - start])
                        ready.put((start, buffer, end - start))
                    else:
                        ready.put((start, torch.from_numpy(self._gather(order_np[start:end])), end - start))
            except BaseException as exc:  # handed to the training loop, which raises it
                ready.put((None, exc, 0))

        thread = threading.Thread(target=produce, name="cnnbench-loader", daemon=True)
        thread.start()
        try:
            for _ in spans:
                start, item, count = ready.get()
                if start is None:
                    raise item
                if not cuda:
                    yield start, item
                    continue
                x = item[:count].to(self.device, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record()
                free.put((item, copied))
                yield start, x
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting for room or for a buffer
                try:
                    ready.get_nowait()
                except queue.Empty:
                    pass
                if cuda:
                    free.put((torch.empty(shape, dtype=torch.uint8), None))
                thread.join(timeout=0.05)
            if cuda:  # the next epoch refills these buffers: every copy out of them has ended first
                torch.cuda.current_stream(self.device).synchronize()

    def _centre(self, x: Any) -> Any:
        o = (self.stored - self.out) // 2
        return x[:, :, o : o + self.out, o : o + self.out] if o else x

    def _transform(self, x: Any, draws: dict[str, Any]) -> Any:
        """A uint8 batch at the stored size -> the float, normalised batch at the input size."""
        import torch

        if self.mode == "none":
            return self._normalise(self._centre(x))
        flips = draws["flips"].to(x.device)
        if self.mode == "rrc":
            return self._resized_crop(self._normalise(x), draws["boxes"].to(x.device), flips)
        if self.mode == "flip":
            centre = (self.stored + 2 * self.pad - self.out) // 2
            offsets = torch.full((len(flips), 2), centre, dtype=torch.long, device=flips.device)
        else:
            offsets = draws["offsets"].to(x.device)
        return self._normalise(self._crop_flip(x, offsets, flips))

    def _resized_crop(self, x: Any, boxes: Any, flips: Any) -> Any:
        """Each image's box (left, top, width, height in stored pixels) resized to the input size, flipped
        where ``flips`` says: one affine grid sample for the batch."""
        import torch
        import torch.nn.functional as F

        b = x.shape[0]
        s = float(self.stored)
        left, top, width, height = boxes.to(x.dtype).unbind(1)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = torch.where(flips, -width / s, width / s)  # reading right to left is the flip
        theta[:, 0, 2] = (2 * left + width) / s - 1
        theta[:, 1, 1] = height / s
        theta[:, 1, 2] = (2 * top + height) / s - 1
        grid = F.affine_grid(theta, [b, x.shape[1], self.out, self.out], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _crop_flip(self, x: Any, offsets: Any, flips: Any) -> Any:
        """Random crop of the zero-padded image and horizontal flip, as one gather."""
        import torch
        import torch.nn.functional as F

        b, c, _, _ = x.shape
        h = w = self.out
        p = self.pad
        padded = F.pad(x, (p, p, p, p)) if p else x
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = offsets[:, 0:1] + ar_h  # [B, H]
        # Flipping the crop is reading its columns right to left.
        cols = offsets[:, 1:2] + torch.where(flips[:, None], w - 1 - ar_w, ar_w)  # [B, W]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def rrc_boxes(n: int, size: int, gen: Any) -> Any:
    """``n`` random-resized-crop boxes (left, top, width, height) in a ``size`` x ``size`` image, drawn as
    torchvision's RandomResizedCrop draws them: an area share in :data:`RRC_SCALE`, a log-uniform ratio
    in :data:`RRC_RATIO`, the first of :data:`RRC_ATTEMPTS` tries that fits, else the whole image."""
    import math

    import torch

    area = float(size * size)
    shares = torch.empty(n, RRC_ATTEMPTS).uniform_(*RRC_SCALE, generator=gen) * area
    log_ratio = torch.empty(n, RRC_ATTEMPTS).uniform_(
        math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]), generator=gen
    )
    ratio = torch.exp(log_ratio)
    w = torch.sqrt(shares * ratio).round().long()
    h = torch.sqrt(shares / ratio).round().long()
    fits = (w > 0) & (h > 0) & (w <= size) & (h <= size)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1, dtype=torch.long))
    pick = first.clamp(min=0)[:, None]
    w = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.full((n,), size, dtype=torch.long))
    h = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.full((n,), size, dtype=torch.long))
    u = torch.rand(n, 2, generator=gen)
    left = (u[:, 0] * (size - w + 1)).floor().long().clamp(max=size - 1)
    top = (u[:, 1] * (size - h + 1)).floor().long().clamp(max=size - 1)
    return torch.stack([left, top, w, h], 1)
