import os

import pytest
import torch

# The terminal's width is read when rich's consoles are made: made here, with no COLUMNS set, they
# follow each test's own COLUMNS instead of whichever test first imported the display.
os.environ.pop("COLUMNS", None)
import cnnbench.report.progress  # noqa: E402, F401
from cnnbench.training.trainer import Callbacks  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _counts_cache(tmp_path_factory):
    # The cache of model counts of this test session's own, never the user's (subprocesses inherit it).
    os.environ["CNNBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; keep torch from oversubscribing them (one thread each when two workers share them).
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
    yield


@pytest.fixture
def results_dir(tmp_path):
    return tmp_path / "results"


class InterruptAt(Callbacks):
    """Ctrl-C during epoch ``epoch``, as a user would press it."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_step(self, epoch, step, loss):
        if epoch == self.epoch:
            raise KeyboardInterrupt
