"""A run's conditions as they are known before any data is loaded: every condition field of the recipe,
as given or as resolved for this device, model and data, and their hash (:func:`cnnbench.recipe.conditions_hash`),
which finds identical runs to reuse."""

from __future__ import annotations

from typing import Any

from cnnbench.data.specs import format_input_size, get_dataset_spec
from cnnbench.device import is_cuda, optimizer_impl, resolve_device, use_channels_last
from cnnbench.models import format_options, get_model_info
from cnnbench.recipe import CONDITION_FIELDS, TrainConfig, conditions_hash
from cnnbench.training.step import uses_cuda_graphs


def planned_conditions(config: TrainConfig) -> dict[str, Any]:
    """The conditions that decide what a run computes, known before any data is loaded."""
    import torch

    device = resolve_device(config.device)
    info = get_model_info(config.model)
    spec = get_dataset_spec(config.dataset)
    synthetic = spec.name == "synthetic"
    shape = tuple(config.input_size or spec.input_shape) if spec.sized_by_user else spec.input_shape
    gpu = torch.cuda.get_device_name(torch.device(device)) if is_cuda(device) else ""
    # Every field of TrainConfig but its bookkeeping, as given or as resolved for this device and data.
    conditions = {
        "model": info.name,
        "options": format_options(info.parse_options(config.options)),
        "family": info.family,
        "dataset": spec.name,
        "input_size": format_input_size(shape),
        "num_classes": num_classes_of(config, spec),
        **{k: getattr(config, k) for k in CONDITION_FIELDS if k not in ("model", "options", "dataset",
                                                                        "input_size", "num_classes")},
        "augment": spec.augment if config.augment is None else config.augment,
        "cache_size": _cache_size(config, shape) if spec.name == "imagefolder" else None,
        "synthetic_size": config.synthetic_size if synthetic else None,
        "channels_last": use_channels_last(config.channels_last, device),
        "cuda_graphs": uses_cuda_graphs(config, device),
        "optimizer_impl": optimizer_impl(config.optimizer, device),
        "device_kind": gpu or "cpu",
    }  # fmt: skip
    conditions["conditions_hash"] = conditions_hash(conditions)
    return conditions


def num_classes_of(config: TrainConfig, spec: Any) -> int:
    """The classes a run trains on: the dataset's, --num-classes of synthetic data, or your own class folders."""
    if spec.name == "synthetic":
        return int(config.num_classes or spec.num_classes)
    if spec.name == "imagefolder":  # the class folders, counted before any image is decoded
        from cnnbench.data.imagefolder import classes_of
        from cnnbench.data.readers import imagefolder_root

        root = imagefolder_root(config.data_dir)
        found = len(classes_of(root))
        if config.num_classes is not None and config.num_classes != found:
            from cnnbench.errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"expected --num-classes {found} (the class folders of {root}) or none, got {config.num_classes}"
            )
        return found
    return spec.num_classes


def _cache_size(config: TrainConfig, shape: tuple[int, ...]) -> int:
    from cnnbench.data.readers import default_cache_size

    return int(config.cache_size or default_cache_size(int(shape[1])))


def data_options(config: TrainConfig) -> dict[str, Any]:
    """What load_split needs of a run's configuration beyond the dataset's name and folder."""
    return dict(synthetic_shape=config.input_size, synthetic_classes=config.num_classes,
                synthetic_size=config.synthetic_size, skip_bad_images=config.skip_bad_images,
                cache_size=config.cache_size)  # fmt: skip
