import os

import pytest
import torch

# The terminal's width is read when rich's consoles are made: made here, with no COLUMNS set, they
# follow each test's own COLUMNS instead of whichever test first imported the display.
os.environ.pop("COLUMNS", None)
import cnnbench.display  # noqa: E402, F401
from cnnbench.train import Callbacks  # noqa: E402


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; keep torch from oversubscribing them.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def results_dir(tmp_path):
    return tmp_path / "results"


def limit_synthetic(monkeypatch, size):
    """Synthetic data of ``size`` training and test images unless a config asks for another size:
    small sets keep an epoch well under a second on two cores."""
    from cnnbench import train

    original = train.TrainConfig.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        self.synthetic_size = self.synthetic_size or size

    monkeypatch.setattr(train.TrainConfig, "__init__", init)


@pytest.fixture
def small_synthetic(monkeypatch):
    limit_synthetic(monkeypatch, 128)


class InterruptAt(Callbacks):
    """Ctrl-C during epoch ``epoch``, as a user would press it."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_step(self, epoch, step, loss):
        if epoch == self.epoch:
            raise KeyboardInterrupt
