"""How sure a comparison is: seeds, differences with confidence intervals, and reproducible runs."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import cli, tiny_argv

from cnnbench.stats import welch_interval, welch_p

SYNTH = tiny_argv(batch_size=64, epochs=1, synthetic_size=128)


def test_welch_interval_by_hand():
    # means 2 and 5, variances 1 and 1 over three values each: se = sqrt(2/3), df = 4, t(0.975, 4) = 2.7764
    diff, low, high = welch_interval([4, 5, 6], [1, 2, 3])
    assert diff == pytest.approx(3.0)
    assert high - diff == pytest.approx(2.776445 * (2 / 3) ** 0.5, rel=1e-5)
    assert low == pytest.approx(2 * diff - high)
    assert all(v != v for v in welch_interval([1.0], [2.0, 3.0]))  # one value: no interval (NaN)


def test_welch_p_by_hand_and_without_warnings_when_one_sample_has_no_spread():
    """Every seed of a model stuck at chance reads the same accuracy; its p-value is exact and the
    terminal gets no warning (scipy's ttest_ind warns of catastrophic cancellation there)."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # se = sqrt(0.25 / 3), t = 2.5 / se = sqrt(75), df = 2, where p = 1 - t / sqrt(t^2 + 2) in closed form
        assert welch_p([10.0, 10.0, 10.0], [12.0, 13.0, 12.5]) == pytest.approx(
            1 - 75**0.5 / 77**0.5, rel=1e-9
        )
    a, b = [64.0, 65.5, 66.0, 63.0], [60.0, 61.0, 62.0]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert welch_p([1.0], [2.0, 3.0]) != welch_p([1.0], [2.0, 3.0])  # one value: NaN
    assert welch_p([10.0, 10.0], [10.0, 10.0]) != welch_p([10.0, 10.0], [10.0, 10.0])  # no spread: NaN


@pytest.mark.slow  # trains several comparisons or runs: seconds each
def test_two_seeds_give_differences_with_intervals_in_every_output(tmp_path):
    result = cli("compare", "lenet", "lenet:pool=max", "cnn_dropout", *SYNTH, "--seeds", "2",
                                 "--out", str(tmp_path), "--name", "s", columns=250)  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "s"
    agg = pd.read_csv(folder / "aggregated.csv").set_index("variant")
    tidy = pd.read_csv(folder / "tidy.csv")
    a = tidy[tidy.variant == "lenet5:pool=max"].final_test_acc.tolist()
    b = tidy[tidy.variant == "lenet5"].final_test_acc.tolist()
    diff, low, high = welch_interval(a, b)
    row = agg.loc["lenet5:pool=max"]
    assert row.baseline == "lenet5" and row.delta_final_acc == pytest.approx(diff)
    assert (row.delta_final_ci95_low, row.delta_final_ci95_high) == pytest.approx((low, high))
    # three variants: the mark is Holm's, over the two comparisons with the baseline
    assert bool(row.delta_final_significant) == (row.delta_final_p_holm < 0.05)
    md = (folder / "table.md").read_text()
    assert "Δ final acc (pp, 95% CI)" in md and "| reference |" in md and "Holm-adjusted p" in md
    assert r"$\Delta$ final acc (pp, 95\% CI)" in (folder / "table.tex").read_text()
    assert "Δ final pp [95% CI]" in result.output and "reference" in result.output
    # --baseline re-renders the same runs against another variant
    again = cli("compare", "--from", str(folder), "--baseline", "cnn_dropout")
    assert again.exit_code == 0, again.output
    assert set(pd.read_csv(folder / "aggregated.csv").baseline) == {"cnn_dropout"}
    assert json.loads((folder / "conditions.json").read_text())["baseline"] == "cnn_dropout"
    bad = cli("compare", "--from", str(folder), "--baseline", "vgg16")
    assert bad.exit_code == 1 and "expected --baseline to be one of lenet5" in bad.output


def test_one_seed_says_what_it_implies(tmp_path):
    result = cli("compare", "lenet", *SYNTH, "--out", str(tmp_path), "--name", "one")
    assert "One seed per variant" in (tmp_path / "compare" / "one" / "table.md").read_text()
    assert "Δ" not in (tmp_path / "compare" / "one" / "table.md").read_text()
    assert result.exit_code == 0


def test_seed_list_picks_the_seeds(tmp_path):
    result = cli("compare", "lenet", *SYNTH, "--seed-list", "0,5,9", "--out", str(tmp_path),
                                 "--name", "l")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "compare" / "l" / "tidy.csv").seed.tolist() == [0, 5, 9]
    bad = cli("compare", "lenet", *SYNTH, "--seed-list", "0,x", "--out", str(tmp_path))
    assert bad.exit_code == 1 and "expected --seed-list as integers" in bad.output


DETERMINISTIC_RUN = [sys.executable, "-m", "cnnbench", "train", "cnn_dropout", "-d", "synthetic", "-i", "3x16x16", "--synthetic-size", "256",
                     "-e", "2", "-b", "32", "--device", "cpu", "--seed", "3", "--deterministic", "-q",
                     "--no-checkpoint"]  # fmt: skip


@pytest.mark.slow
def test_deterministic_runs_in_two_processes_give_identical_epoch_rows(tmp_path):
    for out in ("a", "b"):
        done = subprocess.run([*DETERMINISTIC_RUN, "--out", str(tmp_path / out)], capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
    rows = []
    for out in ("a", "b"):
        (run,) = (tmp_path / out / "runs").iterdir()
        epochs = pd.read_csv(run / "epochs.csv")
        rows.append(epochs[["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"]])
        config = json.loads((run / "config.json").read_text())
        assert config["deterministic"] is True and config["cublas_workspace_config"] == ":4096:8"
    pd.testing.assert_frame_equal(rows[0], rows[1], check_exact=True)


@pytest.mark.slow  # trains several comparisons or runs: seconds each
def test_a_reused_run_says_whether_it_was_deterministic(tmp_path):
    args = ["compare", "lenet", *SYNTH, "--out", str(tmp_path)]
    assert cli(*args, "--deterministic", "--name", "a").exit_code == 0
    again = cli(*args, "--deterministic", "--name", "b")
    assert "(identical conditions; deterministic)" in again.output
    plain = cli(*args, "--name", "c")
    assert "reused run" not in plain.output  # a deterministic run does not stand in for a plain one
