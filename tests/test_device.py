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
