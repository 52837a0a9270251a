"""What a new user sees: help at 80 columns, tables that fit a terminal or a pipe, logs that name their
run, Ctrl-C that says how to continue, strict JSON, and plots that show what was measured."""

import json
import re

import pandas as pd
import pytest
from conftest import cli, tiny_argv

# One worker for the module: its fixture trains one comparison, which two workers would each train.
pytestmark = pytest.mark.xdist_group("terminal")
SYNTH = tiny_argv(quiet=False, batch_size=64, synthetic_size=128)
LONG = ["cifar10net:batch_norm=true,false", "cnn_dropout:dropout=0.3"]


def strict(text):
    """json.loads that refuses NaN and Infinity, as a strict parser does."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("command", ["list", "summary", "train", "compare", "profile"])
def test_help_fits_80_columns_without_bool_placeholders(command):
    out = cli(command, "--help", columns=80).output
    assert "<bool>" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    if command in ("train", "compare"):
        assert "fashion-mnist" in out  # the dataset choices, never split at the hyphen
        assert not re.search(r"fashion-\s*\n", out)


@pytest.fixture(scope="module")
def long_compare(tmp_path_factory):
    out = tmp_path_factory.mktemp("r")
    # Module-scoped: built once with small data for the width tests below.
    result = cli("compare", *LONG, *SYNTH, "-e", "1", "-q", "--out", str(out), "--name", "w", columns=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "compare" / "w"


@pytest.mark.parametrize("columns", [80, 120])
def test_compare_table_fits_the_terminal_and_never_cuts_the_variant(long_compare, columns):
    out = cli("compare", "--from", str(long_compare), columns=columns).output
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= columns for line in table), [(len(line), line) for line in table]
    for variant in ("cifar10net:batch_norm=false", "cifar10net:batch_norm=true", "cnn_dropout:dropout=0.3"):
        assert any(variant in line for line in table), out
    hidden = re.search(r"not shown at \d+ columns: (.*) \(--wide shows all\)", " ".join(out.split()))
    assert hidden, out
    assert "final acc %" in table[1] and "final acc %" not in hidden.group(1)
    wide = cli("compare", "--from", str(long_compare), "--wide", columns=columns)
    assert "not shown" not in wide.output
    for header in ("IQR s", "total s", "gap pp", "train FLOPs (M)"):
        assert header in wide.output


def test_piped_compare_logs_name_variant_and_seed_on_every_epoch_line(tmp_path):
    result = cli("compare", "lenet", "lenet:pool=max", *SYNTH, "-e", "2", "--seeds", "2",
                                 "--out", str(tmp_path), columns=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    epoch_lines = [line for line in result.output.splitlines() if re.search(r"epoch \d/2", line)]
    assert len(epoch_lines) == 2 * 2 * 2
    for variant in ("lenet5", "lenet5:pool=max"):
        for seed in (0, 1):
            for epoch in (1, 2):
                assert any(line.startswith(f"{variant} seed {seed} epoch {epoch}/2 ") for line in epoch_lines)


def test_ctrl_c_prints_the_run_id_and_the_command_that_resumes_it(tmp_path, monkeypatch):
    from cnnbench.report import progress as display

    original = display.TrainProgress.on_step

    def on_step(self, epoch, step, loss):
        original(self, epoch, step, loss)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(display.TrainProgress, "on_step", on_step)
    result = cli("train", "lenet", *SYNTH, "-e", "3", "--out", str(tmp_path))
    assert result.exit_code == 130
    run_id = pd.read_csv(tmp_path / "runs.csv").run_id.iloc[0]
    assert f"cnnbench train --resume {run_id} --out {tmp_path}" in result.output
    monkeypatch.setattr(display.TrainProgress, "on_step", original)
    again = cli("train", "--resume", run_id, "--out", str(tmp_path), "-q")
    assert again.exit_code == 0, again.output
    assert pd.read_csv(tmp_path / "runs" / run_id / "epochs.csv").epoch.tolist() == [1, 2, 3]


def test_download_errors_carry_their_cause():
    from cnnbench.data.readers import _cause

    exc = RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
        "<urlopen error [Errno -3] Temporary failure in name resolution>\n"
    )
    assert _cause(exc) == (
        "Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -3] Temporary failure in name resolution>"
    )


def test_json_outputs_are_strict(tmp_path):
    summary = cli("summary", "lenet", "-f", "json", "--out", str(tmp_path))
    strict(summary.output)
    profile = cli("profile", "lenet", "--device", "cpu", "--batch-sizes", "2", "--warmup", "1",
                                  "--iters", "2", "-f", "json", "--out", str(tmp_path))  # fmt: skip
    rows = strict(profile.stdout)["rows"]  # what is measured next is said on stderr
    assert rows[0]["MFU_pct"] is None and rows[0]["peak_mem_MiB"] is None
    cli("compare", "lenet", *SYNTH, "-e", "1", "-q", "--out", str(tmp_path), "--name", "c")
    strict((tmp_path / "compare" / "c" / "conditions.json").read_text())
    for config in (tmp_path / "runs").glob("*/config.json"):
        strict(config.read_text())


@pytest.fixture
def plotted(monkeypatch):
    """Each saved figure's first axes: title -> (x limits, line markers, x ticks)."""
    import matplotlib.pyplot as plt

    captured = {}
    original = plt.Figure.savefig

    def savefig(self, *a, **kw):
        ax = self.axes[0]
        captured[ax.get_title()] = (ax.get_xlim(), [line.get_marker() for line in ax.get_lines()],
                                    list(ax.get_xticks()))  # fmt: skip
        return original(self, *a, **kw)

    monkeypatch.setattr(plt.Figure, "savefig", savefig)
    return captured


def test_a_reused_run_puts_no_nan_in_the_header_conditions_or_plot_titles(tmp_path, plotted):
    args = ["compare", "lenet", *SYNTH, "-e", "1", "-q", "--out", str(tmp_path)]
    assert cli(*args, "--name", "first").exit_code == 0
    plotted.clear()
    again = cli(*args, "--name", "again")
    assert again.exit_code == 0 and "reused run" in again.output
    header = " ".join(again.output.split("again:", 1)[1].split("per sample:")[0].split())
    assert "device cpu" in header and "nan" not in header.lower()
    meta = strict((tmp_path / "compare" / "again" / "conditions.json").read_text())
    assert meta["conditions"]["gpu_name"] == "" and meta["conditions"]["device"] == "cpu"
    assert plotted and all("nan" not in title.lower() and "cpu" in title for title in plotted)


def test_profile_grads_is_the_gradient_report_alone(tmp_path):
    result = cli("profile", "resnet", "--grads", "--device", "cpu", "-o", "skip=false",
                                 "--out", str(tmp_path), columns=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gradient L2 norm" in result.output and "conv1.weight" in result.output
    assert not (tmp_path / "profile.csv").exists()  # no batch sweep ran
    assert "step ms" not in result.output


def test_a_one_epoch_compare_draws_a_point_at_epoch_1(tmp_path, plotted):
    assert cli("compare", "lenet", *SYNTH, "-e", "1", "-q", "--out", str(tmp_path),
                               "--name", "one").exit_code == 0  # fmt: skip
    xlim, markers, ticks = next(v for k, v in plotted.items() if k.startswith("Test accuracy per epoch"))
    assert xlim == (0.5, 1.5) and markers == ["o"] and 1.0 in ticks
    assert all(float(t).is_integer() for t in ticks)


def test_a_dropout_sweep_is_plotted_against_the_swept_value(tmp_path):
    result = cli("compare", "cnn_dropout:dropout=0,0.3,0.5", *SYNTH, "-e", "1", "-q",
                                 "--out", str(tmp_path), "--name", "d")  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "d"
    assert (folder / "accuracy_vs_dropout.png").stat().st_size > 1000
    assert not (folder / "accuracy_vs_params.png").exists()  # one parameter count: no such plot


def test_a_train_config_on_the_cpu_says_so_once(tmp_path):
    result = cli("compare", "lenet", "lenet:pool=max", *SYNTH, "-e", "1", "--out", str(tmp_path), columns=200)  # fmt: skip
    assert result.output.count("training on the CPU") == 1
    assert re.search(r"about [\d.,]+ s an epoch", result.output)


def test_a_long_variant_name_gives_way_to_the_numbers_at_80_columns():
    from cnnbench.report.terminal import fitted_table

    factory = "/home/someone/projects/a_rather_long_folder/of_models/network_factory.py:make:width=16"
    columns = ["variant", "params", "epoch s", "final acc %", "status"]
    rows = [[factory, "5,466", "4.603", "75.10", "ok"], ["lenet5", "15,926", "3.254", "67.30", "ok"]]
    table, hidden = fitted_table(None, columns, rows, priority=columns, width=80)
    assert "final acc %" not in hidden and "epoch s" not in hidden
    names = [cell for cell in table.columns[0]._cells]
    assert names == ["/home/someone…k_factory.py:make:width=16", "lenet5"]  # 40 of 80 columns at most
    _table, all_shown = fitted_table(None, columns, rows, priority=columns, width=80, wide=True)
    assert _table.columns[0]._cells[0] == factory  # --wide shows the whole name


def test_a_result_path_is_printed_on_one_line_whatever_the_width(tmp_path):
    deep = tmp_path / ("a_results_folder_whose_name_is_longer_than_a_terminal_is_wide_" * 2)
    result = cli("train", "lenet", *SYNTH, "-e", "1", "-q", "--out", str(deep), columns=80)  # fmt: skip
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("results: ")]
    assert f"{deep}/runs/" in line and line.endswith(f"{deep / 'runs.csv'}")


def test_a_run_on_the_cpu_says_what_it_does_before_its_warm_up(tmp_path):
    result = cli("train", "lenet", *SYNTH, "-e", "1", "--warmup-steps", "2", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0]
        == "warming up on the CPU: 2 untimed steps of batch 64, then the epochs and an estimate of their time"
    )
    quiet = cli("train", "lenet", *SYNTH, "-e", "1", "-q", "--out", str(tmp_path))
    assert "warming up" not in quiet.output
