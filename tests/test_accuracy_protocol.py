"""Accuracy a reviewer accepts: final accuracy first, a validation split that selects the model, time to
accuracy, Holm-adjusted significance over many variants, and the overfitting gap on the same footing."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli, tiny_argv

from cnnbench.comparison.aggregate import aggregate
from cnnbench.data.readers import ArrayDataset, split_validation
from cnnbench.data.specs import get_dataset_spec
from cnnbench.errors import DatasetError
from cnnbench.recipe import TrainConfig
from cnnbench.training.trainer import train

LEARNS = tiny_argv(synthetic_size=256, lr=0.005)


def _data(labels, seed=0):
    labels = np.asarray(labels)
    images = np.random.default_rng(seed).integers(0, 255, (len(labels), 1, 2, 2), dtype=np.uint8)
    return ArrayDataset(images, labels, get_dataset_spec("synthetic"), "x")


def test_the_validation_split_is_stratified_disjoint_and_the_same_whatever_the_images():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    train_a, val_a = split_validation(_data(labels, seed=1), 20)
    train_b, val_b = split_validation(_data(labels, seed=2), 20)  # other images, other run seeds: same split
    assert np.bincount(val_a.labels).tolist() == [12, 6, 2]  # each class gives its share
    assert len(train_a.labels) == 80 and len(val_a.labels) == 20
    held_a = {bytes(x) for x in val_a.images}
    assert not held_a & {bytes(x) for x in train_a.images}  # disjoint
    data = _data(labels, seed=2)
    position = {bytes(x): i for i, x in enumerate(data.images)}
    other = _data(labels, seed=1)
    index_a = sorted(i for i, x in enumerate(other.images) if bytes(x) in held_a)
    index_b = sorted(position[bytes(x)] for x in val_b.images)
    assert index_a == index_b  # the same images held out, by position, for every run
    assert np.bincount(split_validation(_data(labels), 0.1)[1].labels).tolist() == [6, 3, 1]  # a fraction


def test_a_split_larger_than_a_class_can_give_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match="leaves every class training images"):
        split_validation(_data([0] * 10 + [1] * 2), 11)
    result = cli("train", "lenet", *LEARNS, "-e", "1", "--val-split", "300", "--out", str(tmp_path))
    assert result.exit_code == 1 and "expected a validation split that leaves every class" in result.output


def test_with_a_validation_split_best_pt_is_the_validation_best_epoch(tmp_path):
    run = train(TrainConfig(model="lenet", dataset="synthetic", input_size=(3, 16, 16), synthetic_size=256,
                            batch_size=16, lr=0.005, epochs=4, val_split=64, device="cpu", out=tmp_path, run_name="r"))  # fmt: skip
    epochs = pd.read_csv(tmp_path / "runs" / "r" / "epochs.csv")
    assert epochs.val_acc.notna().all() and epochs.val_loss.notna().all()
    best = epochs.loc[epochs.val_acc.idxmax()]
    assert torch.load(tmp_path / "runs" / "r" / "best.pt", weights_only=True)["epoch"] == best.epoch
    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    assert (row.val_samples, row.train_samples, row.val_split_seed) == (64, 192, 0)
    assert row.best_val_epoch == best.epoch and row.test_at_best_val == pytest.approx(best.test_acc)
    assert row.final_test_acc == pytest.approx(epochs.test_acc.iloc[-1])
    assert 0 <= row.train_eval_acc <= 100  # the final model over its training images, in eval mode
    assert run.summary["conditions_hash"] != train(TrainConfig(
        model="lenet", dataset="synthetic", input_size=(3, 16, 16), synthetic_size=256, batch_size=16, lr=0.005,
        epochs=1, device="cpu", out=tmp_path / "b")).summary["conditions_hash"]  # fmt: skip


def _tidy(values: dict[str, list[float]], best_offset: float = 1.0) -> pd.DataFrame:
    rows = []
    for variant, accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"variant": variant, "seed": seed, "status": "ok", "epochs_done": 20, "params": 1,
                         "forward_MACs_per_sample": 1, "train_FLOPs_per_sample": 1, "median_epoch_s": 1.0,
                         "iqr_epoch_s": 0.0, "total_train_s": 20.0, "final_test_acc": acc,
                         "best_test_acc": acc + best_offset})  # fmt: skip
    return pd.DataFrame(rows)


def test_holm_adjusts_the_marks_of_many_variants_by_hand():
    from scipy import stats

    values = {
        "base": [60.0, 61.0, 62.0],
        "a": [64.0, 65.5, 66.0],
        "b": [61.0, 62.5, 62.0],
        "c": [60.2, 61.5, 61.8],
    }
    agg = aggregate(_tidy(values)).set_index("variant")
    p = {v: stats.ttest_ind(values[v], values["base"], equal_var=False).pvalue for v in ("a", "b", "c")}
    order = sorted(p, key=p.get)  # Holm by hand: the i-th smallest times (m - i), made monotone
    adjusted, running = {}, 0.0
    for i, v in enumerate(order):
        running = max(running, min(1.0, (3 - i) * p[v]))
        adjusted[v] = running
    for v in ("a", "b", "c"):
        assert agg.loc[v, "delta_final_p"] == pytest.approx(p[v])
        assert agg.loc[v, "delta_final_p_holm"] == pytest.approx(adjusted[v])
        assert bool(agg.loc[v, "delta_final_significant"]) == (adjusted[v] < 0.05)
    assert agg.loc["a", "delta_final_p"] < 0.05  # significant alone, and still after the adjustment here
    assert math.isnan(agg.loc["base", "delta_final_p"])
    # the difference is in final accuracy, and the best-epoch one stays beside it
    assert agg.loc["a", "delta_final_acc"] == pytest.approx(np.mean(values["a"]) - np.mean(values["base"]))
    assert agg.loc["a", "delta_best_acc"] == pytest.approx(agg.loc["a", "delta_final_acc"])


def test_final_accuracy_leads_every_table_and_the_best_is_named_for_its_selection():
    from cnnbench.report.tables import BEST_ON_TEST, FINAL, display_table

    agg = aggregate(_tidy({"x": [70.0, 72.0], "y": [60.0, 61.0]}, best_offset=3.0))
    table = display_table(agg)
    columns = list(table.columns)
    assert (
        columns.index(FINAL) < columns.index(BEST_ON_TEST)
        and BEST_ON_TEST == "best test acc (%, chosen on test)"
    )
    assert table[FINAL].tolist() == ["71.00 ± 1.41", "60.50 ± 0.71"]
    assert table[BEST_ON_TEST].tolist() == [
        "74.00 ± 1.41",
        "63.50 ± 0.71",
    ]  # not the final, where they differ


def test_time_to_accuracy_for_a_run_that_reaches_it_and_one_that_does_not(tmp_path):
    result = cli("compare", "lenet", "lenet:pool=max", *LEARNS, "-e", "3", "--seeds", "2",
                                 "--target-acc", "15", "--name", "t", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    slow = cli("compare", "lenet", *LEARNS[:-3], "--lr", "1e-9", "--device", "cpu", "-q", "-e", "2",
                               "--target-acc", "99", "--name", "never", "--out", str(tmp_path))  # fmt: skip
    assert slow.exit_code == 0, slow.output
    tidy = pd.read_csv(tmp_path / "compare" / "t" / "tidy.csv")
    for _, row in tidy.iterrows():
        epochs = pd.read_csv(tmp_path / "runs" / row.run_id / "epochs.csv")
        first = epochs[epochs.test_acc >= 15]
        if len(first):
            assert row.epochs_to_target == first.epoch.iloc[0]
            assert row.seconds_to_target == pytest.approx(epochs.epoch_time_s[: first.index[0] + 1].sum())
        else:
            assert math.isnan(row.seconds_to_target)
    never = pd.read_csv(tmp_path / "compare" / "never" / "aggregated.csv").iloc[0]
    assert never.seeds_reaching_target == 0 and math.isnan(never.seconds_to_target_mean)
    md = (tmp_path / "compare" / "never" / "table.md").read_text()
    assert "| 0/1 |" in md and "time to target (s)" in md


def test_an_old_comparison_still_renders_final_first(tmp_path):
    from cnnbench.comparison.saved import load_compare
    from cnnbench.report.tables import FINAL, display_table

    folder = tmp_path / "old"
    folder.mkdir()
    old = _tidy({"a": [50.0]}).assign(model="a", options="", run_id="r", reused=False)
    old.to_csv(folder / "tidy.csv", index=False)  # the columns cnnbench 0.1 wrote, none of the new
    result = load_compare(folder)
    table = display_table(result.aggregated)
    assert table[FINAL].tolist() == ["50.00"]
    assert cli("compare", "--from", str(folder)).exit_code == 0
