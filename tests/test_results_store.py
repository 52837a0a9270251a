"""The results store: nothing measured is lost or corrupted, nothing that was not asked for runs."""

import errno
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import InterruptAt, cli, one_line_error, tiny_argv, tiny_recipe

from cnnbench.errors import ResultsError
from cnnbench.store.tables import append_row, check_table, read_table, upsert_rows
from cnnbench.training.resuming import resume
from cnnbench.training.trainer import train

SYNTH = tiny_argv(synthetic_size=128, batch_size=128)


# --- checkpoints and resume -----------------------------------------------------------------------


class WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    out = tmp_path / "r"
    train(tiny_recipe(out, batch_size=64, synthetic_size=256, run_name="r", epochs=1))
    planted = tmp_path / "planted"
    with open(out / "runs" / "r" / "last.pt", "wb") as fh:
        pickle.dump({"model": WritesAFile(str(planted))}, fh)
    result = cli("train", "--resume", "r", "--out", out, "-e", "2", "-q")
    one_line_error(result, "refused to load", "last.pt")
    assert not planted.exists()


@pytest.mark.parametrize("run_id", ["../r", "/tmp/r", "a/b", "..", "runs\\r"])
def test_resume_takes_only_a_run_id_under_out_runs(tmp_path, run_id):
    one_line_error(
        cli("train", "--resume", run_id, "--out", tmp_path), "expected a run id as a plain folder name"
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "got a damaged file"),
        (lambda p: p.write_bytes(b""), "got a damaged file"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "last.pt"),
        (lambda p: torch.save(train_other_model(p), p), "expected a checkpoint of lenet5"),
    ],
    ids=["truncated", "empty", "random", "other-model"],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, damage, message):
    out = tmp_path / "r"
    train(tiny_recipe(out, batch_size=64, synthetic_size=256, run_name="r", epochs=1))
    ckpt = out / "runs" / "r" / "last.pt"
    damage(ckpt)
    result = cli("train", "--resume", "r", "--out", out, "-e", "2", "-q")
    one_line_error(result, message, str(ckpt))


def train_other_model(path):
    other = train(
        tiny_recipe(
            path.parent.parent.parent / "other",
            batch_size=64,
            synthetic_size=256,
            run_name="r",
            model="cnn_dropout",
            epochs=1,
        )
    )
    return torch.load(other.run_dir / "last.pt", weights_only=True)


@pytest.mark.parametrize(
    "text", ["", "{", '{"model": "lenet5"}', "[]"], ids=["empty", "cut", "incomplete", "list"]
)
def test_a_damaged_config_json_is_one_line_naming_the_file(tmp_path, text):
    out = tmp_path / "r"
    train(tiny_recipe(out, batch_size=64, synthetic_size=256, run_name="r", epochs=1))
    (out / "runs" / "r" / "config.json").write_text(text)
    one_line_error(cli("train", "--resume", "r", "--out", out, "-e", "2", "-q"), "config.json")


def test_a_finished_run_continues_to_a_larger_epochs_without_a_second_row(tmp_path):
    out = tmp_path / "r"
    straight = train(tiny_recipe(tmp_path / "s", batch_size=64, synthetic_size=256, run_name="r", epochs=4))
    train(tiny_recipe(out, batch_size=64, synthetic_size=256, run_name="r", epochs=2))
    result = cli("train", "--resume", "r", "--out", out, "-e", "4", "-q")
    assert result.exit_code == 0, result.output
    epochs = pd.read_csv(out / "runs" / "r" / "epochs.csv")
    assert epochs.epoch.tolist() == [1, 2, 3, 4]
    cols = ["train_loss", "test_acc"]
    expected = pd.DataFrame([vars(r) for r in straight.epochs])[cols]
    pd.testing.assert_frame_equal(epochs[cols], expected, check_exact=False, rtol=1e-6)
    runs = pd.read_csv(out / "runs.csv")
    assert runs.run_id.tolist() == ["r"] and runs.epochs_done.tolist() == [4] and runs.epochs.tolist() == [4]
    assert json.loads((out / "runs" / "r" / "config.json").read_text())["epochs"] == 4
    # The same number again: nothing to do, said in one line; another model: an error.
    one_line_error(cli("train", "--resume", "r", "--out", out, "-q"), "has finished its 4 epochs")
    one_line_error(
        cli("train", "vgg", "--resume", "r", "--out", out, "-e", "6", "-q"), "expected model lenet5"
    )


def test_an_interrupted_run_without_checkpoints_cannot_resume_and_says_so(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(
            tiny_recipe(tmp_path, batch_size=64, synthetic_size=256, run_name="r", checkpoints=False),
            InterruptAt(2),
        )
    one_line_error(
        cli("train", "--resume", "r", "--out", tmp_path, "-q"), "wrote no checkpoint", "cannot be resumed"
    )


def test_a_run_interrupted_in_epoch_1_never_writes_epoch_1_twice(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(
            tiny_recipe(tmp_path, batch_size=64, synthetic_size=256, run_name="r", epochs=2), InterruptAt(1)
        )
    assert not (tmp_path / "runs" / "r" / "epochs.csv").exists()
    resume(tmp_path, "r")
    assert pd.read_csv(tmp_path / "runs" / "r" / "epochs.csv").epoch.tolist() == [1, 2]
    assert pd.read_csv(tmp_path / "runs.csv").status.tolist() == ["ok"]


# --- the CSV tables -------------------------------------------------------------------------------

APPENDER = """
import sys
from cnnbench.store.tables import append_row
path, worker, wide = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "wide"
for i in range(50):
    row = {"worker": worker, "i": i, "text": f"w{worker},i{i}"}
    if wide:
        row[f"extra_{worker}"] = i
    append_row(path, row)
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
@pytest.mark.parametrize("wide", [False, True], ids=["same-columns", "new-columns"])
def test_eight_processes_append_400_rows_and_none_is_lost(tmp_path, existing, wide):
    path = tmp_path / "runs.csv"
    if existing:
        for i in range(3):
            append_row(path, {"worker": -1, "i": i, "text": "before"})
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(w), "wide" if wide else "same"])
        for w in range(8)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8
    table = pd.read_csv(path)
    mine = table[table.worker >= 0]
    assert len(table) == 400 + (3 if existing else 0) and len(mine) == 400
    for w in range(8):
        rows = mine[mine.worker == w]
        assert sorted(rows.i) == list(range(50))
        assert (rows.text == [f"w{w},i{i}" for i in rows.i]).all()
        if wide:
            assert (rows[f"extra_{w}"] == rows.i).all()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def runs_csv_with(tmp_path, text):
    path = tmp_path / "runs.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run_id,status,x\nA,ok,1\nB,ok,2\nC,o", "line 4 of {path} is cut off"),
        ("run_id,status,x\nA,ok,1\nB,ok\nC,ok,3\n", "line 3 of {path} has 2 fields, expected 3"),
        ("\x00\x01\xff\xfe binary", "got binary content"),
    ],
    ids=["cut-off", "wrong-fields", "not-csv"],
)
def test_a_damaged_table_stops_training_before_any_work(tmp_path, text, message):
    path = runs_csv_with(tmp_path, text) if "binary" not in text else tmp_path / "runs.csv"
    if "binary" in text:
        path.write_bytes(text.encode("latin1"))
    result = cli("train", "lenet", *SYNTH, "-e", "1", "--out", tmp_path)
    one_line_error(result, message.format(path=path))
    assert not (tmp_path / "runs").exists()  # nothing trained
    assert path.read_bytes() == (text.encode("latin1") if "binary" in text else text.encode())


def test_a_directory_where_a_table_belongs_is_refused(tmp_path):
    (tmp_path / "runs.csv").mkdir()
    one_line_error(cli("train", "lenet", *SYNTH, "-e", "1", "--out", tmp_path), "got a directory")


def test_repair_moves_the_damaged_table_aside_and_keeps_every_intact_row(tmp_path):
    text = "run_id,status,x\nA,ok,1\nB,ok\nC,ok,3\nD,o"
    path = runs_csv_with(tmp_path, text)
    learns = ["-b", "16", "--lr", "0.005", "--synthetic-size", "256"]
    result = cli(
        "train", "lenet", *SYNTH, *learns, "-e", "1", "--out", tmp_path, "--repair", "--no-checkpoint"
    )
    assert result.exit_code == 0, result.output
    aside = list(tmp_path.glob("runs.csv.damaged-*"))
    assert len(aside) == 1 and aside[0].read_text() == text
    table = pd.read_csv(path)
    assert table.run_id.tolist()[:2] == ["A", "C"] and len(table) == 3  # A, C and the new run
    assert table.status.tolist()[2] == "ok"


def test_appends_never_go_onto_a_cut_off_line(tmp_path):
    path = runs_csv_with(tmp_path, "a,b\n1,2\n3,")
    with pytest.raises(ResultsError, match="cut off"):
        append_row(path, {"a": 5, "b": 6})
    assert path.read_text() == "a,b\n1,2\n3,"
    assert "cut off" in check_table(path, repair=True)
    append_row(path, {"a": 5, "b": 6})
    assert read_table(path).rows == [["1", "2"], ["5", "6"]]


def test_columns_never_shift_when_rows_bring_new_ones(tmp_path):
    path = tmp_path / "t.csv"
    append_row(path, {"a": 1, "b": "x,y"})
    append_row(path, {"b": "z", "c": 3.5})
    upsert_rows(path, [{"a": 1, "b": "new", "d": True}], key=["a"])
    table = pd.read_csv(path)
    assert list(table.columns) == ["a", "b", "c", "d"]
    assert table.b.tolist() == ["z", "new"] and table.c.tolist()[0] == 3.5


def test_disk_full_says_so_keeps_earlier_files_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "r"
    train(tiny_recipe(out, batch_size=64, synthetic_size=256, epochs=1, run_name="first"))
    before = (out / "runs.csv").read_text()
    real_fsync = os.fsync

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and "last.pt" in os.readlink(
            f"/proc/self/fd/{fd}"
        ):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ResultsError, match=f"no space left on device: {out / 'runs' / 'r2' / 'last.pt'}"):
        train(tiny_recipe(out, batch_size=64, synthetic_size=256, epochs=2, run_name="r2"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    runs = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert runs.loc["r2", "status"] == f"failed: no space left on device: {out / 'runs' / 'r2' / 'last.pt'}"
    assert (out / "runs.csv").read_text().startswith(before.splitlines()[0])
    assert runs.loc["first", "status"] == "ok"
    assert pd.read_csv(out / "runs" / "r2" / "epochs.csv").epoch.tolist() == [1]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# --- every run ends with a final status -----------------------------------------------------------


def test_any_exception_ends_the_run_as_failed_never_running(tmp_path, monkeypatch):
    from cnnbench.training import step

    def broken(self, x, y):
        raise ValueError("a bug in a model")

    monkeypatch.setattr(step.TrainStep, "step", broken)
    with pytest.raises(ValueError):
        train(tiny_recipe(tmp_path, batch_size=64, synthetic_size=256, run_name="r"))
    assert pd.read_csv(tmp_path / "runs.csv").status.tolist() == ["failed: ValueError: a bug in a model"]


def test_an_exploding_loss_is_diverged_and_best_accuracy_is_what_it_measured(tmp_path):
    result = train(tiny_recipe(tmp_path, batch_size=64, synthetic_size=256, run_name="r", lr=1e4, epochs=4))
    assert result.status == "diverged"
    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    epochs = pd.read_csv(tmp_path / "runs" / "r" / "epochs.csv")
    assert row.status == "diverged" and row.best_test_acc == epochs.test_acc.max() >= 0


# --- inputs checked before work -------------------------------------------------------------------


def write_cifar(root, damage=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, 8).tolist(),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    if damage:
        damage(folder / "data_batch_3")
    return folder / "data_batch_3"


def _relabel(path):
    with open(path, "wb") as fh:
        pickle.dump({"data": np.zeros((8, 3072), np.uint8), "labels": [0] * 7 + [10]}, fh)


def _reshape(path):
    with open(path, "wb") as fh:
        pickle.dump({"data": np.zeros((8, 1000), np.uint8), "labels": [0] * 8}, fh)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "unreadable content"),
        (lambda p: p.write_bytes(np.random.default_rng(1).bytes(1000)), "unreadable content"),
        (_reshape, "expected uint8 images of 3x32x32"),
        (_relabel, "expected labels in [0, 10)"),
        (lambda p: p.write_bytes(pickle.dumps({"data": WritesAFile(str(p) + ".planted")})), "refused"),
    ],
    ids=["truncated", "random", "wrong-shape", "label-10", "code"],
)
def test_damaged_dataset_files_are_named_before_training(tmp_path, damage, message):
    bad = write_cifar(tmp_path / "data", damage)
    result = cli(
        "train", "lenet", "--data-dir", tmp_path / "data", "--device", "cpu", "--out", tmp_path / "r", "-q"
    )
    one_line_error(result, message, str(bad))
    assert not (tmp_path / "r" / "runs").exists()
    assert not os.path.exists(str(bad) + ".planted")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-d", "cifar10", "--num-classes", "100"],
            "expected --num-classes 10 (that of cifar10) or none, got 100",
        ),
        (
            ["-d", "cifar10", "-i", "3x64x64"],
            "expected --input-size 3x32x32 (that of cifar10) or none, got 3x64x64",
        ),
        (["--seed", "-1"], "expected --seed in [0, 2**32)"),
        (["--seed", str(2**40)], "expected --seed in [0, 2**32)"),
    ],
)
def test_settings_that_contradict_the_data_or_torch_are_errors(tmp_path, args, message):
    one_line_error(cli("train", "lenet", "--device", "cpu", "--out", tmp_path, "-q", *args), message)


def test_a_missing_data_dir_is_not_created(tmp_path):
    missing = tmp_path / "nowhere"
    one_line_error(cli("train", "lenet", "--data-dir", missing, "--out", tmp_path, "-q"), "existing folder")
    assert not missing.exists()


def test_an_input_size_that_cannot_fit_is_one_line(tmp_path):
    result = cli("summary", "lenet", "-i", "3x100000x100000", "--out", tmp_path)
    one_line_error(result, "lenet5 at 3x100000x100000 needs about", "expected a size that fits")


def test_cpu_out_of_memory_in_profile_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from cnnbench.measure import profile as profiling

    original = profiling._measure

    def measure(config, name, shape, classes, mode, batch, *rest):
        if batch == 4:
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
            )
        return original(config, name, shape, classes, mode, batch, *rest)

    monkeypatch.setattr(profiling, "_measure", measure)
    result = cli("profile", "lenet", "--device", "cpu", "--batch-sizes", "2,4,8", "--mode", "infer",
                 "--warmup", "1", "--iters", "2", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "profile.csv").status.tolist() == ["ok", "out of memory", "ok"]


def test_profile_trace_to_an_unwritable_path_is_an_error(tmp_path):
    result = cli("profile", "lenet", "--device", "cpu", "--layers", "--trace", tmp_path / "no" / "t.json",
                 "--batch-sizes", "2", "--out", tmp_path)  # fmt: skip
    one_line_error(result, "expected --trace in a writable folder")
    assert not (tmp_path / "profile.csv").exists()


# --- the tables of summary and profile ---------------------------------------------------------------


@pytest.mark.parametrize("command", [["summary", "lenet"], ["profile", "lenet", "--device", "cpu", "--batch-sizes", "2",
                                                              "--warmup", "1", "--iters", "2"]])  # fmt: skip
def test_summary_and_profile_tables_are_checked_and_repaired_too(tmp_path, command):
    table = tmp_path / ("summary.csv" if command[0] == "summary" else "profile.csv")
    table.write_text("model,x\nlenet5,1\nvgg16,")
    one_line_error(cli(*command, "--out", tmp_path), f"line 3 of {table} is cut off")
    assert table.read_text() == "model,x\nlenet5,1\nvgg16,"
    assert cli(*command, "--out", tmp_path, "--repair").exit_code == 0
    assert (
        pd.read_csv(table).model.tolist()[0] == "lenet5"
        and len(list(tmp_path.glob(f"{table.name}.damaged-*"))) == 1
    )
