import os

import pytest
import torch

# The terminal's width is read when rich's consoles are made: made here, with no COLUMNS set, they
# follow each test's own COLUMNS instead of whichever test first imported the display.
os.environ.pop("COLUMNS", None)
import cnnbench.display  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; keep torch from oversubscribing them.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def results_dir(tmp_path):
    return tmp_path / "results"
