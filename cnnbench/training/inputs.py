"""A run's data: its splits read (and decoded, for your own images), the validation images held out, each
split sharded over a data-parallel run's processes, and a :class:`~cnnbench.data.loader.DeviceLoader`
for each, on the device where they fit or streamed from the host."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.data.specs import get_dataset_spec
from cnnbench.models import get_model_info
from cnnbench.recipe import TrainConfig
from cnnbench.store.tables import CACHE_ENV
from cnnbench.training.conditions import data_options
from cnnbench.training.distributed import World, per_rank_batch, shard


@dataclass
class RunData:
    """The loaders of a run and what its record says of its data."""

    spec: Any  # the dataset's spec as read (its input shape and classes)
    train_loader: Any
    test_loader: Any
    val_loader: Any  # None without --val-split
    source: str  # where the images came from
    images_skipped: int  # unreadable images left out (--skip-bad-images)
    class_names: list[str]
    test_samples: int  # of the whole test split, before sharding
    val_samples: int
    load_s: float  # reading and decoding the splits, and building the loaders
    decode_s: float  # of it, decoding your own images


def load_run_data(config: TrainConfig, world: World, device: str, channels_last: bool,
                  progress: Callable[[int, int], None], note: Callable[[str], None]) -> RunData:  # fmt: skip
    """The run's data as ``config`` asks for it, on ``device``; ``progress`` sees your own images decoded,
    ``note`` hears where their cache went when their folder cannot be written."""
    from cnnbench.data.loader import DeviceLoader, fits_on_device, makes_batches_one_by_one
    from cnnbench.data.readers import load_split, split_validation

    c = config
    spec = get_dataset_spec(c.dataset)
    if spec.name == "imagefolder":  # a model too large for its input is refused before any decoding
        from cnnbench.models.build import check_fits
        from cnnbench.training.conditions import num_classes_of

        shape = tuple(c.input_size or spec.input_shape)
        check_fits(get_model_info(c.model).name, c.options, shape, num_classes_of(c, spec),
                   per_rank_batch(c.batch_size, world), device)  # fmt: skip
    t0 = time.perf_counter()
    train = load_split(spec.name, "train", c.data_dir, **data_options(c), progress=progress)
    test = load_split(spec.name, "test", c.data_dir, **data_options(c), progress=progress)
    read_spec = train.spec
    if train.cache_elsewhere and world.is_main:
        note(f"{train.source} cannot be written: its image cache is kept in {Path(train.cache).parent} "
             f"(${CACHE_ENV} names another folder)")  # fmt: skip
    augment = train.spec.augment if c.augment is None else c.augment
    test_samples = len(test.labels)
    val = None
    if c.val_split:  # the same images for every variant and seed: the split has a seed of its own
        train, val = split_validation(train, c.val_split)
    val_samples = len(val.labels) if val is not None else 0
    train, test = shard(train, world, equal=True), shard(test, world, equal=False)
    val = shard(val, world, equal=False) if val is not None else None
    held = train.images.nbytes + test.images.nbytes + (val.images.nbytes if val is not None else 0)
    per_batch = makes_batches_one_by_one(train, augment)
    resident = {"device": True, "host": False}.get(c.placement) or (
        c.placement == "auto" and fits_on_device(held, device, per_batch)
    )

    def evaluation(split: Any) -> Any:
        return DeviceLoader(split, c.eval_batch_size, device, False, False, 0, channels_last, resident)

    # Each rank shuffles and augments its own shard with its own generator.
    train_loader = DeviceLoader(train, per_rank_batch(c.batch_size, world), device, True, augment,
                                c.seed * world.size + world.rank, channels_last, resident)  # fmt: skip
    return RunData(
        spec=read_spec, train_loader=train_loader, test_loader=evaluation(test),
        val_loader=evaluation(val) if val is not None else None, source=train.source,
        images_skipped=train.skipped + test.skipped, class_names=list(train.class_names),
        test_samples=test_samples, val_samples=val_samples, load_s=time.perf_counter() - t0,
        decode_s=train.decode_s + test.decode_s,
    )  # fmt: skip
