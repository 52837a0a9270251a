"""Device helpers: the CUDA defaults and cuDNN autotuning scoped to a block."""

import pytest
import torch

from cnnbench.device import cudnn_autotune, use_channels_last


@pytest.mark.parametrize(
    "requested, device, expected",
    [
        (None, "cuda", True),
        (None, "cuda:1", True),
        (None, "cpu", False),
        (False, "cuda", False),
        (True, "cpu", True),
    ],
)
def test_channels_last_defaults_to_cuda_only(requested, device, expected):
    assert use_channels_last(requested, device) is expected


def test_cudnn_autotune_is_scoped_and_restored_after_errors():
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with cudnn_autotune(True):
            assert torch.backends.cudnn.benchmark is True
            with cudnn_autotune(False):
                assert torch.backends.cudnn.benchmark is False
            assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.benchmark is False
        with pytest.raises(RuntimeError), cudnn_autotune(True):
            raise RuntimeError("a failing step")
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


def test_cudnn_autotunes_only_runs_long_enough_to_earn_it_back_unless_asked():
    from cnnbench.recipe import TrainConfig
    from cnnbench.training.step import AUTOTUNE_MIN_STEPS, autotunes

    chapter = TrainConfig(model="vgg16")  # 20 epochs of CIFAR-10 at batch 128: 391 steps, 390 full
    assert not autotunes(chapter, "cuda:0", 391)  # 7,800 full-batch steps: cuDNN's heuristics
    assert autotunes(chapter.replace(epochs=52), "cuda:0", 391)  # 20,280
    assert not autotunes(chapter.replace(epochs=51), "cuda:0", 391)  # 19,890
    assert AUTOTUNE_MIN_STEPS == 20_000
    assert autotunes(chapter.replace(cudnn_autotune=True), "cuda:0", 391)  # asked for
    assert not autotunes(chapter.replace(epochs=100, cudnn_autotune=False), "cuda:0", 391)
    assert not autotunes(chapter.replace(epochs=100), "cpu", 391)  # no cuDNN
    assert not autotunes(chapter.replace(epochs=100, cudnn_autotune=True, deterministic=True), "cuda:0", 391)
