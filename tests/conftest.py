import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# The terminal's width is read when rich's consoles are made: made here, with no COLUMNS set, they
# follow each test's own COLUMNS instead of whichever test first imported the display.
os.environ.pop("COLUMNS", None)
import cnnbench.report.progress  # noqa: E402, F401
from cnnbench.recipe import TrainConfig  # noqa: E402
from cnnbench.training.trainer import Callbacks  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """The tiers, read from what a test uses where that can be read: the one-node Slurm (its fixture), CUDA
    (test_gpu.py) and the real CIFAR-10 copy are each a marker of their own and slow; the rest is marked
    where it is written. The fast tier (the README's command) is ``not slow``; ``-m ""`` runs both. The
    slow run first, so that the workers end together."""
    for item in items:
        if "slurm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
        if item.path.name == "test_gpu.py":
            item.add_marker(pytest.mark.gpu)
        if any(item.get_closest_marker(m) for m in ("slurm", "gpu", "integration")):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


def unavailable(what: str, required_by: str) -> None:
    """A test whose real component (a Slurm cluster, a browser, LaTeX) is not here: skipped, unless the
    environment variable ``required_by`` is 1 (CI sets each, having installed them), which makes it a
    failure, so that CI never passes by skipping what it should have run."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 and {what}")
    pytest.skip(what)


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
        unavailable(f"no Slurm cluster can start here: {why}", "CNNBENCH_REQUIRE_SLURM")
    folder = tmp_path_factory.mktemp("slurm")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in slurm_cluster.start(folder).items():
            mp.setenv(key, value)
        try:
            yield folder
        finally:
            subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True)
            slurm_cluster.stop(folder)


def cli(*args, columns=300, **kw):
    """``cnnbench ARGS`` as a user types them, run in this process at a terminal ``columns`` wide: the
    result's exit code and output (stdout and stderr as the terminal shows them)."""
    from typer.testing import CliRunner

    from cnnbench.cli import app

    env = {"COLUMNS": str(columns), **kw.pop("env", {})}
    return CliRunner().invoke(app, [str(a) for a in args], env=env, **kw)


# --- tiny recipes, as configs and as the options a user types ----------------------------------------

TINY = dict(model="lenet5", dataset="synthetic", input_size=(3, 16, 16), synthetic_size=64, batch_size=16, epochs=2,
            device="cpu")  # fmt: skip


def tiny_recipe(out=None, **changes) -> TrainConfig:
    """A recipe that trains in about a second on one CPU core (LeNet-5 on 64 synthetic 16x16 images in
    batches of 16, two epochs), with ``changes``; its results in ``out`` where given."""
    return TrainConfig(**{**TINY, **({} if out is None else {"out": out}), **changes})


def tiny_argv(quiet=True, **changes) -> list[str]:
    """The options a user types for ``tiny_recipe(**changes)`` (the model, a command's argument, is not
    among them), with ``-q`` unless ``quiet=False``. A test's own options after them win."""
    return command_line(tiny_recipe(**changes)) + (["-q"] if quiet else [])


def compare_tiny(out, *args, **changes):
    """``cnnbench compare`` of ``tiny_recipe(**changes)`` into ``out``, the test's own ``args`` (variants and
    options, which win) after it."""
    return cli("compare", *tiny_argv(**changes), "--out", out, *args)


def command_line(recipe: TrainConfig, command: str = "train") -> list[str]:
    """The options a user types for ``recipe``: a field at its default is left out."""
    from cnnbench.fields import typed_options

    return typed_options(recipe, command)


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


# --- real cnnbench processes, for the tests that stop them -------------------------------------------

SLOW = '''
import os, signal, time
import torch.nn as nn

class Slow(nn.Module):
    """A network whose every forward takes 50 ms: epochs long enough to be stopped in."""
    def __init__(self, num_classes):
        super().__init__()
        self.f = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
        self.calls = 0

    def forward(self, x):
        time.sleep(0.05)
        self.calls += 1
        if os.environ.get("RANK") == "1" and os.environ.get("KILL_RANK_1") and self.calls == 12:
            os.kill(os.getpid(), signal.SIGKILL)  # a rank that dies, as an out-of-memory kill does
        return self.f(x)

def make(num_classes):
    return Slow(num_classes)
'''
RECIPE = tiny_argv()


@pytest.fixture
def slow(tmp_path):
    path = tmp_path / "slow.py"
    path.write_text(SLOW)
    return f"{path}:make"


def start(*argv, nohup=False, **kw):
    """``python -m cnnbench ARGV`` in a session of its own, its output in one pipe, signals at their
    defaults whatever this test process inherited."""
    env = {**os.environ, "COLUMNS": "300", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "cnnbench", *map(str, argv)]
    return subprocess.Popen(["nohup", *command] if nohup else command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=signals_at_default, **kw)  # fmt: skip


def signals_at_default():
    """In a child before it runs: the stop signals at their default disposition, whatever the test runner
    inherited (a script's background job starts with SIGINT ignored, and cnnbench keeps a signal it was
    started with ignored, so a test's SIGINT would do nothing)."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def wait_until(predicate, seconds=120.0, what="the awaited event", interval=0.1):
    """Ask ``predicate`` every ``interval`` seconds until it holds (returning its value); fail naming
    ``what`` (text, or a function that says it then) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (got := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what} did not happen in {seconds:.0f} s")
        time.sleep(interval)
    return got


def cnnbench_processes(marker):
    """Processes whose command line names ``marker`` (a folder only this test uses)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and "pytest" not in cmdline:
                found.append(int(pid))
    return found


# --- a job's command line, run in this process ----------------------------------------------------------


class InProcess:
    """``python -m cnnbench ARGS`` run by the CLI in this process, as the started process looks to the
    code that started it (``poll``, ``wait``, ``returncode``, its output on ``stdout`` when piped, else
    where this process's output goes). It has ended when it is returned: a launcher's own logic (queue,
    environment, logs, statuses) runs unchanged, without a Python start and torch import per job."""

    def __init__(self, argv, env=None, stdout=None, stderr=None, **_kw):
        import io
        import traceback

        argv = [str(a) for a in argv]
        assert argv[:3] == [sys.executable, "-m", "cnnbench"], argv
        changes = {}
        if env is not None:  # the child's environment as a change of this one's, undone after
            changes = {k: v for k, v in env.items() if os.environ.get(k) != v}
            changes.update({k: None for k in os.environ if k not in env})
        result = cli(*argv[3:], env=changes)
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            output += "".join(traceback.format_exception(result.exception))  # as Python prints it, dying
        self.args, self.pid, self.returncode = argv, os.getpid(), result.exit_code
        self.stdout = io.StringIO(output) if stdout == subprocess.PIPE else None
        if stdout != subprocess.PIPE:
            sys.stdout.write(output)

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode

    def send_signal(self, _signum):  # it has ended
        pass

    terminate = kill = lambda self: None


class _HereJob:
    """What submitit's local executor returns for a job, for one that ran in this process."""

    def __init__(self, folder, number, result):
        from types import SimpleNamespace

        self.job_id, self._result = str(number), result
        self.paths = SimpleNamespace(
            stdout=folder / f"{number}_0_log.out", stderr=folder / f"{number}_0_log.err"
        )

    def done(self):
        return True

    def task(self, _index):
        return self

    def result(self):
        return self._result

    def cancel(self, check=True):
        pass


class _HereExecutor:
    """submitit's local executor, running each job in this process as it is submitted: the function
    with its arguments, its output to the job's log, ``SUBMITIT_LOCAL_JOB_ID`` set as submitit sets it."""

    def __init__(self, folder):
        self.folder, self.submitted = Path(folder), 0

    def submit(self, fn, *args):
        import contextlib
        from unittest import mock

        self.submitted += 1
        job = _HereJob(self.folder, self.submitted, None)
        with (
            mock.patch.dict(os.environ, {"SUBMITIT_LOCAL_JOB_ID": job.job_id}),
            open(job.paths.stderr, "w") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            job._result = fn(*args)
        return job


@pytest.fixture
def jobs_here(monkeypatch):
    """A comparison's jobs run in this process wherever they would leave it: a ``python -m cnnbench``
    command started by a worker or by ``run_job`` is an :class:`InProcess` (other commands start as
    ever), and submitit's local executor runs each job as it is submitted."""
    from cnnbench.launchers import scheduler

    real = subprocess.Popen

    def popen(argv, *args, **kw):
        if [str(a) for a in list(argv)[:3]] == [sys.executable, "-m", "cnnbench"]:
            return InProcess(argv, *args, **kw)
        return real(argv, *args, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(scheduler, "executor", lambda _kind, folder, *_a, **_k: _HereExecutor(folder))


@pytest.fixture(params=["in-process", pytest.param("processes", marks=pytest.mark.slow)])
def jobs_where(request):
    """Both ways a launcher's jobs run in the tests: in this process (the fast tier) and as the real
    processes a user's comparison starts (the slow tier)."""
    if request.param == "in-process":
        request.getfixturevalue("jobs_here")
    return request.param
