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


# The task lives in a module beside the script: the pool's workers never import the script itself.
NAP_MODULE = """
import time
from pathlib import Path


def nap(flag):
    Path(flag).touch()
    time.sleep(1.0)
    return "finished"
"""

CTRL_C_SCRIPT = """
import os, signal, sys, time

from cnnbench.device import worker_pool
from cnnbench.report.plots import PlotWorkers
from napping import nap

if __name__ == "__main__":
    plotting, decoding = PlotWorkers(2), worker_pool(2)
    plotting.pool.submit(int).result()  # both pools' workers started and ready
    in_flight = decoding.submit(nap, sys.argv[1])
    try:
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.01)
        os.killpg(0, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole process group
        time.sleep(60)
    except KeyboardInterrupt:
        print("the caller stopped", flush=True)
    finally:
        decoding.shutdown(wait=True, cancel_futures=True)
        plotting.close()
    print("the task in flight", in_flight.result(), flush=True)
"""


def test_ctrl_c_stops_the_caller_and_not_its_worker_processes_which_print_no_traceback(tmp_path):
    """Decoding and plotting workers share the terminal's process group with the command: on Ctrl-C the
    command stops and shuts them down; they neither raise KeyboardInterrupt (a traceback each) nor drop a
    task in flight."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    (tmp_path / "napping.py").write_text(NAP_MODULE)
    from conftest import signals_at_default

    done = subprocess.run([sys.executable, str(script), str(tmp_path / "started")], capture_output=True, text=True,
                          timeout=120, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          preexec_fn=signals_at_default)  # fmt: skip  # a Ctrl-C to test, whatever pytest inherited
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the caller stopped", "the task in flight finished"]
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


UNGUARDED_SCRIPT = """
import os, sys

from cnnbench.device import worker_pool
from cnnbench.report.plots import PlotWorkers

print("the script's body ran in", os.getpid(), flush=True)
plotting, pool = PlotWorkers(1), worker_pool(2)
workers = {pool.submit(os.getpid).result() for _ in range(8)}
pool.shutdown()
plotting.close()
print("answered by", len(workers - {os.getpid()}), "workers", flush=True)
"""


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_script_without_a_main_guard_runs_once_and_its_pools_work(tmp_path, how):
    """cnnbench's worker processes (decoding, plotting) start without the caller's script: a user's
    ``cnnbench.compare(...)`` script with no ``if __name__ == "__main__"`` guard ran again in each worker,
    and one read from stdin (``python - <script.py``) broke every pool with a FileNotFoundError."""
    import os
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    argv, stdin = (
        ([sys.executable, str(script)], None) if how == "file" else ([sys.executable, "-"], script.open())
    )
    done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("the script's body ran in "), done.stdout
    assert lines[1] in ("answered by 1 workers", "answered by 2 workers"), done.stdout
    assert "Traceback" not in done.stderr, done.stderr
