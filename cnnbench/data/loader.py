"""A loader that keeps the whole set on the device and does all per-batch work there.

``DeviceLoader`` shuffles, augments (random crop with 4-pixel zero padding and horizontal flip, as the
chapter's transforms) and normalises on the device; a set too large for the GPU stays in pinned host
memory and is streamed per batch with the same order and augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnbench.data.readers import ArrayDataset
from cnnbench.device import is_cuda


def fits_on_device(dataset_bytes: int, device: str) -> bool:
    """Whether a dataset can live on the device: uint8 images plus one float32 epoch (4x) within half
    the GPU's free memory. The CPU always holds it."""
    import torch

    if not is_cuda(device):
        return True
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return 5 * dataset_bytes < free // 2


class DeviceLoader:
    """Batches from a uint8 dataset that lives on ``device``; all per-batch work runs there.

    The order and augmentation of epoch ``e`` depend only on ``(seed, e)``, so a resumed run sees
    the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        device: Any,
        shuffle: bool,
        augment: bool,
        seed: int = 0,
        channels_last: bool = False,
        resident: bool = True,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.resident = resident
        images = torch.from_numpy(np.ascontiguousarray(data.images))
        # Resident: the whole set on the device, each epoch built there at once. Otherwise the uint8 set
        # stays in pinned host memory and each batch is gathered there and copied over.
        self.images = (
            images.to(self.device)
            if resident
            else (images.pin_memory() if self.device.type == "cuda" else images)
        )
        self.labels = torch.from_numpy(data.labels).to(self.device)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.channels_last = channels_last
        std = torch.tensor(data.spec.std, device=self.device).view(1, -1, 1, 1)
        mean = torch.tensor(data.spec.mean, device=self.device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.pad = 4
        # The epoch of a loader that neither shuffles nor augments, built once.
        self._unchanging: tuple[Any, Any] | None = None

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def in_order(self, batch_size: int) -> DeviceLoader:
        """The same images, neither shuffled nor augmented: the training set as an evaluation sees it."""
        import copy

        view = copy.copy(self)
        view.shuffle = view.augment = False
        view.batch_size, view._unchanging = batch_size, None
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
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=gen, device=self.device)
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
        """The first ``n`` images, normalised, in dataset order: real inputs of the right shape for
        warm-up and graph capture, without building a whole epoch."""
        import torch

        x = self._normalise(self.images[:n].to(self.device))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[:n].clone()

    def _normalise(self, x: Any) -> Any:
        # (x/255 - mean)/std as one multiply-add on a fresh float copy
        return x.float().mul_(self.scale).add_(self.shift)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """Batches of epoch ``epoch``: slices of the epoch built on the device, or batches streamed from
        host memory with the same order and augmentation."""
        if not self.resident:
            yield from self._streamed(epoch)
            return
        images, labels = self.epoch_tensors(epoch)
        for start in range(0, self.num_samples, self.batch_size):
            yield images[start : start + self.batch_size], labels[start : start + self.batch_size]

    def _streamed(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        import torch

        n = self.num_samples
        gen = torch.Generator()
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.augment:
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=gen)
            flips = torch.rand(n, generator=gen) < 0.5
        labels = self.labels[order.to(self.labels.device)]
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx]
            x = x.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else x
            if self.augment:
                end = start + len(idx)
                x = self._crop_flip(x, offsets[start:end].to(self.device), flips[start:end].to(self.device))
            x = self._normalise(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels[start : start + self.batch_size]

    def _crop_flip(self, x: Any, offsets: Any, flips: Any) -> Any:
        """Random crop of the zero-padded image and horizontal flip, as one gather."""
        import torch
        import torch.nn.functional as F

        b, c, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = offsets[:, 0:1] + ar_h  # [B, H]
        # Flipping the crop is reading its columns right to left.
        cols = offsets[:, 1:2] + torch.where(flips[:, None], w - 1 - ar_w, ar_w)  # [B, W]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
