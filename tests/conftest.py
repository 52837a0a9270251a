import os

import pytest
import torch

# The terminal's width is read when rich's consoles are made: made here, with no COLUMNS set, they
# follow each test's own COLUMNS instead of whichever test first imported the display.
os.environ.pop("COLUMNS", None)
import cnnbench.report.progress  # noqa: E402, F401
from cnnbench.training.trainer import Callbacks  # noqa: E402

# The files whose tests take tens of seconds each, run first: the workers then end together, instead of
# one running the last long test alone while the others wait.
LONG_FIRST = ("test_readme.py", "test_slurm.py", "test_zoo.py", "test_distributed.py", "test_stopped_runs.py", "test_train.py",
              "test_significance.py", "test_sweep.py", "test_launchers.py", "test_compare.py")  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))


@pytest.fixture(autouse=True, scope="session")
def _counts_cache(tmp_path_factory):
    # The cache of model counts of this test session's own, never the user's (subprocesses inherit it);
    # one for all its workers (beside their own temporary folders), so that each model is counted once.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ["CNNBENCH_CACHE_DIR"] = str(shared / "counts-cache")
    yield


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; keep torch from oversubscribing them (one thread each when two workers share them).
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
    yield


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster of this test session's own (tests/slurm_cluster.py), pointed to by
    SLURM_CONF; tests that use it carry ``pytest.mark.xdist_group("slurm")``, so one worker starts it.
    Skipped where it cannot start, unless CNNBENCH_REQUIRE_SLURM=1 (CI) makes that a failure."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import slurm_cluster

    why = slurm_cluster.missing()
    if why:
        if os.environ.get("CNNBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"CNNBENCH_REQUIRE_SLURM=1 and no Slurm cluster can start here: {why}")
        pytest.skip(f"no Slurm cluster can start here: {why}")
    folder = tmp_path_factory.mktemp("slurm")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in slurm_cluster.start(folder).items():
            mp.setenv(key, value)
        try:
            yield folder
        finally:
            subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True)
            slurm_cluster.stop(folder)


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


def one_line_error(result, *phrases):
    """A CLI result that is a mistake said in one line: exit code 1, ``error: ...`` with ``phrases``, no
    traceback."""
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    for phrase in phrases:
        assert phrase in text, text
    assert "Traceback" not in result.output
    assert result.output.startswith("error:"), result.output
    assert (
        len(result.output.strip().splitlines()) == 1
        or "\n" not in result.output.strip().split("error: ", 1)[1]
    )
