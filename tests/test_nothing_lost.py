"""No recorded number is rewritten or dropped by a command that only reads or renders, whatever the user
did to the files: a comparison folder copied away from its store, a runs.csv saved by a spreadsheet (a
byte order mark, CRLF) or linked in from elsewhere, a comparison killed outright."""

import shutil
import signal

import pandas as pd
import pytest
from conftest import RECIPE, cli, cnnbench_processes, one_line_error, start, tiny_argv, wait_until

SYN = tiny_argv(input_size=(1, 16, 16), epochs=1, batch_size=128)


@pytest.fixture(scope="module")
def par2(tmp_path_factory):
    """Two variants, two seeds each, trained once for the module: its store and its folder."""
    out = tmp_path_factory.mktemp("par2") / "res"
    result = cli("compare", "lenet", "lenet:pool=max", *SYN, "--seeds", "2", "--name", "par2", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def lines(path):
    return path.read_text().splitlines()


@pytest.mark.parametrize("where", ["copied", "store-moved-aside"])
def test_from_keeps_every_recorded_row_when_the_store_does_not_hold_it(par2, tmp_path, where):
    """A row set to pending (as --from writes it while a job is queued) makes --from collect the rows
    again; a run the store does not hold keeps its recorded row, byte for byte, and its epochs."""
    if where == "copied":
        folder = tmp_path / "elsewhere" / "compare" / "par2"
        shutil.copytree(par2 / "compare" / "par2", folder)
    else:
        out = tmp_path / "res"
        shutil.copytree(par2, out)
        (out / "runs.csv").rename(out / "runs.csv.aside")
        folder = out / "compare" / "par2"
    tidy = pd.read_csv(folder / "tidy.csv")
    tidy.loc[0, "status"] = "pending"
    tidy.to_csv(folder / "tidy.csv", index=False)
    before_tidy, before_epochs = lines(folder / "tidy.csv"), lines(folder / "epochs.csv")
    result = cli("compare", "--from", folder)
    assert result.exit_code == 0, result.output
    assert lines(folder / "tidy.csv") == before_tidy
    assert lines(folder / "epochs.csv") == before_epochs
    after = pd.read_csv(folder / "tidy.csv")
    assert after.final_test_acc.notna().all() and after.run_id.notna().all()
    # the numbers shown are the recorded ones
    shown = pd.read_csv(folder / "aggregated.csv")
    assert shown.final_test_acc_mean.tolist() == pytest.approx(
        tidy.groupby("variant", sort=False).final_test_acc.mean().tolist()
    )


def test_a_spreadsheets_byte_order_mark_and_crlf_leave_the_store_whole(par2, tmp_path):
    """Excel's "CSV UTF-8" begins with a BOM and ends lines with CRLF: the store reads it as the same
    columns, finds old runs by id, and the next comparison writes back one run_id column."""
    out = tmp_path / "res"
    shutil.copytree(par2, out)
    old = pd.read_csv(out / "runs.csv")
    text = (out / "runs.csv").read_text()
    (out / "runs.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    result = cli("compare", "lenet", "lenet:pool=max", "cnn_dropout", *SYN, "--seeds", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output
    header = lines(out / "runs.csv")[0].split(",")
    assert header.count("run_id") == 1 and header[0] == "run_id"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == len(old) + 2 and set(old.run_id) <= set(runs.run_id)
    assert "reused run" in " ".join(result.output.split())  # the old rows are found by id and reused


def test_a_symlinked_runs_csv_stays_a_link_and_its_target_gets_the_rows(tmp_path):
    kept = tmp_path / "shared" / "runs.csv"
    kept.parent.mkdir()
    kept.write_text("")
    out = tmp_path / "res"
    out.mkdir()
    (out / "runs.csv").symlink_to(kept)
    result = cli("train", "lenet", *SYN, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "runs.csv").is_symlink()
    assert len(pd.read_csv(kept)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["inline", "local"])
def test_a_comparison_killed_outright_leaves_no_pending_rows_and_no_jobs(tmp_path, slow, launcher):
    """SIGKILL (the OOM killer, a power loss) after the first epoch: a local launcher's jobs end with
    the comparison; --from shows the run that had begun as interrupted with its epochs, the other as not
    started, never pending."""
    out = tmp_path / "out"
    extra = ["--launcher", "local", "--max-parallel", "1"] if launcher == "local" else []
    process = start(
        "compare", slow, *RECIPE, "--seeds", "2", "-e", "400", "--name", "k", "--out", out, *extra
    )
    wait_until(lambda: any(len(lines(p)) >= 2 for p in out.glob("runs/*/epochs.csv")), 120, "a first epoch")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    wait_until(lambda: not cnnbench_processes(str(out)), 60, "the comparison's jobs to end with it")
    result = cli("compare", "--from", out / "compare" / "k")
    assert result.exit_code == 0, result.output
    tidy = pd.read_csv(out / "compare" / "k" / "tidy.csv")
    assert tidy.status.tolist() == ["interrupted", "not started"]
    run_id = tidy.run_id.iloc[0]
    epochs = pd.read_csv(out / "runs" / run_id / "epochs.csv")
    assert tidy.epochs_done.iloc[0] == len(epochs) >= 1
    row = pd.read_csv(out / "runs.csv").set_index("run_id").loc[run_id]
    assert row.status == "interrupted" and row.epochs_done == len(epochs)


def test_from_refuses_the_options_it_cannot_honour_and_honours_a_price(par2, tmp_path):
    folder = par2 / "compare" / "par2"
    one_line_error(cli("compare", "--from", folder, "--epochs", "7"), "beside --from", "got --epochs")
    one_line_error(cli("compare", "--from", folder, "lenet"), "got VARIANT lenet")
    one_line_error(cli("compare", "--from", folder, "--price-per-gpu-hour", "3"), "used no GPU-hours")
    gpu = tmp_path / "compare" / "gpu"
    shutil.copytree(folder, gpu)
    tidy = pd.read_csv(gpu / "tidy.csv")
    tidy["gpu_hours"] = 0.5  # as a run on a GPU records it
    tidy.to_csv(gpu / "tidy.csv", index=False)
    before = (gpu / "tidy.csv").read_bytes()
    priced = cli("compare", "--from", gpu, "--price-per-gpu-hour", "3")
    assert priced.exit_code == 0, priced.output
    assert pd.read_csv(gpu / "aggregated.csv").cost_mean.tolist() == [1.5, 1.5]
    assert "| cost |" in (gpu / "table.md").read_text().replace("  ", " ")
    assert (gpu / "tidy.csv").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "phrases"),
    [(["--seed", "5", "--seed-list", "1,2"], ["expected --seed-list or --seed, got both"]),
     (["--seeds", "1", "--seed-list", "3,4"], ["expected --seed-list or --seeds, got both"]),
     (["--price-per-gpu-hour", "1e308"], ["at most 1e+06, got 1e+308"]),
     (["--price-per-gpu-hour", "2"], ["expected --price-per-gpu-hour with runs on a GPU, got device cpu"])],
    ids=["seed", "seeds", "huge-price", "price-on-cpu"],
)  # fmt: skip
def test_conflicting_or_meaningless_compare_options_are_refused(tmp_path, args, phrases):
    one_line_error(cli("compare", "lenet", *SYN, *args, "--out", tmp_path), *phrases)
    assert not (tmp_path / "runs.csv").exists()


def test_from_draws_the_figures_a_stopped_comparison_did_not(par2, tmp_path):
    folder = tmp_path / "compare" / "par2"
    shutil.copytree(par2 / "compare" / "par2", folder)
    for figure in [*folder.glob("*.png"), *folder.glob("*.svg"), folder / "table.md"]:
        figure.unlink()
    before = (folder / "tidy.csv").read_bytes()
    result = cli("compare", "--from", folder)
    assert result.exit_code == 0, result.output
    assert (folder / "accuracy_per_epoch.png").is_file() and (folder / "table.md").is_file()
    assert (folder / "tidy.csv").read_bytes() == before


# --- every printed continuation works as printed ---------------------------------------------------------


@pytest.mark.slow
def test_a_named_comparison_stopped_part_way_continues_with_the_command_it_prints(tmp_path, slow):
    import shlex
    import subprocess
    import sys

    out = tmp_path / "out"
    process = start("compare", slow, "lenet5", *RECIPE, "-e", "6", "--name", "n", "--out", out)
    wait_until(lambda: any(len(lines(p)) >= 2 for p in out.glob("runs/*/epochs.csv")), 120, "a first epoch")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    said = " ".join(output.split())
    assert "during run" in said and "Traceback" not in said
    command = shlex.split(said.split("trains the rest: ", 1)[1])
    assert command[0] == "cnnbench" and command[-1] == "--force"
    again = subprocess.run([sys.executable, "-m", "cnnbench", *command[1:]], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert pd.read_csv(out / "compare" / "n" / "tidy.csv").status.tolist() == ["ok", "ok"]


def test_a_stop_names_what_a_run_kept_and_the_command_that_goes_on(tmp_path, capsys):
    """No epoch and no checkpoint: the line says so (it promised both); a data-parallel run on the CPU is
    continued in as many processes on the CPU (--gpus N alone wants GPUs)."""
    from cnnbench.recipe import TrainConfig
    from cnnbench.report.progress import TrainProgress, print_interrupted_run

    (tmp_path / "runs" / "r").mkdir(parents=True)
    progress = TrainProgress(quiet=True)
    progress.on_run("r", TrainConfig(model="lenet", out=tmp_path, device="cpu", world_size=2))
    print_interrupted_run(progress, "stopped by SIGTERM")
    said = " ".join(capsys.readouterr().err.split())
    assert "run r stopped before its first epoch ended, so it measured nothing" in said
    assert f"start it again with: cnnbench train --resume r --gpus 2 --device cpu --out {tmp_path}" in said
    assert "checkpoint" not in said


def test_a_stop_after_a_run_ended_does_not_name_that_run(tmp_path, monkeypatch):
    """A stop while the figures are drawn (every run ended ok) names no run as the one it stopped."""
    from cnnbench.comparison.command import _stopped_line
    from cnnbench.comparison.plan import make_config
    from cnnbench.training.status import Stopped

    train_result = cli("train", "lenet", *SYN, "--run-name", "done", "--out", tmp_path)
    assert train_result.exit_code == 0, train_result.output
    config = make_config(["lenet"], {"out": tmp_path}, {}, {})
    monkeypatch.setattr("sys.argv", ["cnnbench", "compare", "lenet"])
    line = _stopped_line(Stopped(15), config, "done")
    assert line.startswith("[yellow]stopped by SIGTERM:[/] finished runs") and "during run" not in line
