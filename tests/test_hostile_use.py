"""Every run ends with a status and every mistake with one line, on the surfaces a careless or unlucky
user meets: resumes that fail, your own folders and models, the CLI's arguments, the results' files."""

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
from conftest import cli, one_line_error, tiny_argv, tiny_recipe
from PIL import Image

from cnnbench.recipe import TrainConfig
from cnnbench.training.trainer import train

SYNTH = tiny_argv()


# --- a resume that fails never touches the run --------------------------------------------------------


def _row(out):
    return pd.read_csv(out / "runs.csv").set_index("run_id").loc["r"]


def test_a_resume_of_a_cut_epochs_csv_leaves_the_run_as_it_was_and_repair_mends_it(tmp_path):
    train(tiny_recipe(tmp_path, run_name="r"))
    before = (tmp_path / "runs.csv").read_text()
    config_before = (tmp_path / "runs" / "r" / "config.json").read_text()
    epochs = tmp_path / "runs" / "r" / "epochs.csv"
    with open(epochs, "a") as fh:
        fh.write("3,0.51,80.1,0.6")  # a third epoch's row cut mid-write (its checkpoint never came)
    result = cli("train", "--resume", "r", "-e", "3", "--out", tmp_path, "-q")
    one_line_error(result, f"of {epochs} is cut off", "--repair moves it aside")
    assert (tmp_path / "runs.csv").read_text() == before  # the finished run's row, untouched
    assert (tmp_path / "runs" / "r" / "config.json").read_text() == config_before
    repaired = cli("train", "--resume", "r", "-e", "3", "--out", tmp_path, "-q", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"repaired {epochs}" in " ".join(repaired.output.split())
    assert len(list(epochs.parent.glob("epochs.csv.damaged-*"))) == 1
    assert pd.read_csv(epochs).epoch.tolist() == [1, 2, 3] and _row(tmp_path).status == "ok"


def test_a_resume_from_another_models_checkpoint_leaves_the_run_as_it_was(tmp_path):
    train(tiny_recipe(tmp_path, run_name="r"))
    other = train(tiny_recipe(tmp_path / "o", run_name="r", model="cnn_dropout"))
    before = (tmp_path / "runs.csv").read_text()
    (tmp_path / "runs" / "r" / "last.pt").write_bytes((other.run_dir / "last.pt").read_bytes())
    one_line_error(
        cli("train", "--resume", "r", "-e", "3", "--out", tmp_path, "-q"), "expected a checkpoint of lenet5"
    )
    assert (tmp_path / "runs.csv").read_text() == before
    assert _row(tmp_path).epochs_done == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [(np.random.default_rng(0).bytes(4096), "got a damaged file (not one torch can read)"),
     (None, "refused to load")],
    ids=["random-bytes", "runs-code"],
)  # fmt: skip
@pytest.mark.filterwarnings("error")  # a warning printed above the error would make it more than one line
def test_a_checkpoint_is_called_what_it_is(tmp_path, content, message):
    import pickle

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "planted"), "w"))

    train(tiny_recipe(tmp_path, run_name="r", epochs=1))
    path = tmp_path / "runs" / "r" / "last.pt"
    path.write_bytes(content if content is not None else pickle.dumps({"model": Planted()}))
    result = cli("train", "--resume", "r", "-e", "2", "--out", tmp_path, "-q")
    one_line_error(result, message, str(path))
    if content is None:
        assert "it names io.open" in result.output
    assert not (tmp_path / "planted").exists()


def test_ctrl_c_in_warm_up_names_the_run_it_leaves(tmp_path, monkeypatch):
    from cnnbench.training import step

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(step.TrainStep, "warmup", interrupted)
    result = cli("train", "lenet", *SYNTH, "-e", "1", "--out", tmp_path)
    assert result.exit_code == 130
    (run,) = (tmp_path / "runs").iterdir()
    assert f"run {run.name} stopped before its first epoch ended, so it measured nothing" in " ".join(
        result.output.split()
    )
    assert "nothing was written" not in result.output
    assert pd.read_csv(tmp_path / "runs.csv").status.tolist() == ["interrupted"]


def test_the_continue_command_of_a_data_parallel_run_names_its_processes(capsys, monkeypatch):
    import io

    from rich.console import Console

    from cnnbench.report import progress

    console = Console(file=io.StringIO(), width=300)
    monkeypatch.setattr(progress, "err_console", console)
    shown = progress.TrainProgress(quiet=True)
    shown.on_run("r1", TrainConfig(model="lenet", out="out", world_size=2))
    progress.print_interrupted_run(shown)
    assert "cnnbench train --resume r1 --gpus 2 --out out\n" in console.file.getvalue()
    shown.on_run("r2", TrainConfig(model="lenet"))  # the default folder goes without saying
    progress.print_interrupted_run(shown)
    assert "cnnbench train --resume r2\n" in console.file.getvalue()


# --- your own folders ------------------------------------------------------------------------------


def _folder(root, classes=("a", "b"), val=None, n=6, mode="RGB"):
    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("val", val or classes)):
        for c, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                if mode == "I;16":
                    pixels = (rng.integers(0, 4000, (20, 20)) + 60000 * (c % 2)).astype("<u2")
                    Image.fromarray(pixels).save(folder / f"{i}.png")  # mode I;16
                else:
                    Image.fromarray(rng.integers(0, 255, (20, 20, 3)).astype(np.uint8)).save(
                        folder / f"{i}.png"
                    )
    return root


def _images(root, *extra):
    return ["-d", "imagefolder", "--data-dir", str(root), "--image-size", "16", "-e", "1", "-b", "4", "--device", "cpu",
            "-q", *extra]  # fmt: skip


def test_a_damaged_cache_is_decoded_again(tmp_path):
    root = _folder(tmp_path / "imgs")
    assert cli("train", "lenet", *_images(root), "--out", tmp_path / "r").exit_code == 0
    caches = list((root / ".cnnbench-cache").glob("*/images.u8"))
    assert len(caches) == 2
    for cache in caches:
        cache.write_bytes(cache.read_bytes()[:100])  # cut
    from cnnbench.data import readers

    readers._CACHE.clear()  # a new process: only the files on disk remain
    again = cli("train", "lenet", *_images(root), "--out", tmp_path / "r")
    assert again.exit_code == 0, again.output
    assert all(c.stat().st_size > 1000 for c in (root / ".cnnbench-cache").glob("*/images.u8"))


def test_16_bit_pngs_are_scaled_to_8_bits(tmp_path):
    from cnnbench.data import imagefolder

    root = _folder(tmp_path / "imgs", mode="I;16")
    data = imagefolder.load(root, "train", 16)
    images = np.asarray(data["images"])
    dark, bright = images[data["labels"] == 0], images[data["labels"] == 1]
    assert dark.max() < 20 and bright.min() > 230  # 0-4000 and 60000-64000 of 65535, not all white


def test_a_validation_class_that_training_lacks_is_one_line(tmp_path):
    root = _folder(tmp_path / "imgs", val=("a", "b", "zebra"))
    one_line_error(
        cli("train", "lenet", *_images(root), "--out", tmp_path / "r"), "got zebra, which training has not"
    )


def test_one_class_is_refused(tmp_path):
    root = _folder(tmp_path / "imgs", classes=("a",))
    one_line_error(
        cli("train", "lenet", *_images(root), "--out", tmp_path / "r"), "a classifier needs two classes"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [(["-d", "synthetic", "-i", "3x100000x100000"], "expected data that fits in half of this machine's"),
     (["-d", "synthetic", "--num-classes", "1000000000"], "expected data that fits in half of this machine's"),
     # Your own images live in their cache file, not in memory: it is the disk that must hold them.
     # (the stored size: a model too large for its input is refused before this, by the model's check)
     (["-d", "imagefolder", "--image-size", "32", "--cache-size", "60000"], "GiB of cache; expected that much free in")],
    ids=["huge-input", "huge-classes", "huge-images"],
)  # fmt: skip
def test_data_that_cannot_fit_is_one_line_before_any_allocation(tmp_path, args, message):
    root = _folder(tmp_path / "imgs")
    result = cli(
        "train", "lenet", *args, "--data-dir", root, "--device", "cpu", "--out", tmp_path / "r", "-q"
    )
    one_line_error(result, "need", message)
    assert not list((root / ".cnnbench-cache").glob("*"))  # refused before a byte of cache was written


# --- your own models ------------------------------------------------------------------------------


def _model_file(tmp_path, body):
    path = tmp_path / "nets.py"
    path.write_text("import sys\nimport torch.nn as nn\n\n" + body)
    return path


def test_what_a_factory_prints_stays_out_of_json_and_csv(tmp_path):
    nets = _model_file(tmp_path, "def make(num_classes):\n    print('building!')\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))\n")  # fmt: skip
    for fmt in ("json", "csv"):
        result = cli("summary", f"{nets}:make", "-f", fmt, "--out", str(tmp_path))
        assert result.exit_code == 0, result.output
        assert "building!" not in result.stdout
        if fmt == "json":
            assert json.loads(result.stdout)["params"] == 3 * 32 * 32 * 10 + 10
        else:
            assert pd.read_csv(__import__("io").StringIO(result.stdout)).params[0] == 30730


def test_a_factory_that_raises_and_a_file_that_exits_are_one_line(tmp_path):
    nets = _model_file(tmp_path, "def make(num_classes):\n    raise ValueError('width must be even')\n")
    one_line_error(cli("summary", f"{nets}:make", "--out", tmp_path), "got ValueError: width must be even")
    script = tmp_path / "script.py"
    script.write_text("import sys\nsys.exit(0)\n")
    one_line_error(
        cli("summary", f"{script}:make", "--out", tmp_path), "it called sys.exit(0) while importing"
    )


def test_a_model_file_up_a_folder_gets_a_run_folder_that_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "up").mkdir()
    _model_file(
        tmp_path,
        "def make(num_classes):\n    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n",
    )
    monkeypatch.chdir(tmp_path / "up")
    assert cli("train", "../nets.py:make", *SYNTH, "-e", "1", "--out", "r").exit_code == 0
    (run,) = (tmp_path / "up" / "r" / "runs").iterdir()
    assert not run.name.startswith(".") and run.name.startswith("nets.py_make-")


def test_the_timm_hint_names_a_command_that_installs_it(monkeypatch):
    import builtins

    from cnnbench.models import _sources

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError())
                        if name == "timm" else real(name, *a, **k))  # fmt: skip
    _sources.external_info.cache_clear()
    one_line_error(cli("summary", "timm:resnet18"), "pip install timm")


# --- the CLI's arguments -------------------------------------------------------------------------------


def test_square_brackets_in_a_message_are_kept(tmp_path):
    one_line_error(cli("train", "lenet", "-o", "pool=[max]", "--out", tmp_path), "got '[max]'")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["train", "lenet", "--out", ""], "expected --out to name a folder, got an empty name"),
     (["summary", "lenet", "--out", ""], "expected --out to name a folder, got an empty name"),
     (["compare", "lenet", "--jobs-per-gpu", "3", "-d", "synthetic"], "expected --jobs-per-gpu with --gpus"),
     (["compare", "lenet", "--gpus", "", "-d", "synthetic"], "expected CUDA GPUs for --gpus"),
     (["compare", "lenet", "-d", "synthetic", "--launcher", "local", "--gpus-per-job", "2"],
      "expected 2 GPUs here for --gpus-per-job 2 with --launcher local"),
     (["pool", "--plot", "/proc/x.png"], "could not write /proc/x.png"),
     (["pool", "--plot", "{tmp}/missing/x.png"], "could not write"),
     (["profile", "lenet", "--device", "cpu", "--batch-sizes", "2", "--trace", "{tmp}/no/t.json"],
      "expected --trace in a writable folder")],
)  # fmt: skip
def test_mistakes_are_one_line_before_any_work(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    one_line_error(result, message)
    assert not (tmp_path / "results").exists() and not list(tmp_path.glob("*.csv"))


def test_the_cpu_estimate_leaves_the_first_step_out(monkeypatch):
    import io
    import time

    from rich.console import Console

    from cnnbench.report import progress

    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    console = Console(file=io.StringIO(), width=300)
    monkeypatch.setattr(progress, "err_console", console)
    shown = progress.TrainProgress(quiet=True)
    shown.device, shown.steps = "cpu", 100
    for step, ends_at in enumerate([100.0, 101.0, 102.0, 103.0, 104.0, 105.0], start=1):  # a 100 s first step
        now[0] = ends_at
        shown.on_step(1, step, None)
    assert "about 100 s an epoch, judging by steps 2 to 6" in console.file.getvalue()


# --- the results' files ------------------------------------------------------------------------------


def test_every_results_file_is_as_readable_as_the_umask_says(tmp_path):
    old = os.umask(0o022)
    try:
        assert (
            cli(
                "compare", "lenet", *SYNTH, "-e", "1", "--checkpoint", "--name", "m", "--out", tmp_path
            ).exit_code
            == 0
        )
        assert cli("summary", "lenet", "--out", tmp_path).exit_code == 0
    finally:
        os.umask(old)
    (run,) = (tmp_path / "runs").iterdir()
    files = [tmp_path / "runs.csv", tmp_path / "summary.csv", tmp_path / "compare" / "m" / "tidy.csv",
             tmp_path / "compare" / "m" / "accuracy_per_epoch.png", run / "config.json", run / "epochs.csv",
             run / "last.pt", run / "best.pt"]  # fmt: skip
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: "0o644" for f in files}


def test_profiles_native_logs_stay_out_of_a_cpu_trace(tmp_path, capfd):
    result = cli("profile", "lenet", "--layers", "--trace", tmp_path / "t.json", "--device", "cpu", "--batch-sizes", "2",
                 "--warmup", "1", "--iters", "2", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    native = capfd.readouterr()  # what reached the file descriptors themselves, as a terminal shows it
    for text in (result.output, native.out, native.err):
        assert "ERROR:" not in text and "USDT:" not in text
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_the_profilers_native_lines_are_dropped_and_every_other_line_kept(capfd):
    from cnnbench.measure.profile import _without_profiler_logs

    with _without_profiler_logs():  # Kineto writes to the descriptor, past Python's sys.stderr
        os.write(2, b"USDT:2026-12-07 01:02:03 1:2 profiler_start\nan error of the model's own\n")
        os.write(2, b"ERROR:2026-12-07 01:02:03 1:2 gpuGetDeviceCount failed with code 35\n")
    assert capfd.readouterr().err == "an error of the model's own\n"
