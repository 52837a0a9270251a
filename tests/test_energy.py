"""The whole cost: energy per epoch and per run from the device's counter (a fake NVML here, with a counter
and a power reading the test controls), the sampling fallback, shared cards, nulls where nothing is
measured, and the Pareto front of accuracy against energy."""

import itertools
import json
import math

import pandas as pd
import pytest
from conftest import cli, tiny_argv

from cnnbench import energy

SYNTH = tiny_argv()


class NotSupported(Exception):
    pass


class FakeNVML:
    """NVML's calls that cnnbench makes: a total-energy counter (mJ) and a power reading (mW) per GPU."""

    def __init__(self, counter=True):
        self.counter = counter
        self.millijoules = {0: 1_000_000, 1: 5_000_000}
        self.milliwatts = {0: 100_000, 1: 250_000}

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.counter:
            raise NotSupported("this GPU has no energy counter")
        return self.millijoules[handle]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.milliwatts[handle]


def test_the_counter_of_one_gpu_and_of_a_data_parallel_runs_gpus():
    nvml = FakeNVML()
    one = energy.gpu_meter([0], nvml)
    both = energy.gpu_meter([0, 1], nvml)
    assert one.method == "nvml energy counter" and one.read() == 0.0
    nvml.millijoules[0] += 2_500  # 2.5 J on GPU 0
    nvml.millijoules[1] += 4_000
    assert one.read() == pytest.approx(2.5) and both.read() == pytest.approx(6.5)


def test_without_a_counter_power_is_sampled_and_integrated_against_a_known_curve():
    now = [0.0]
    watts = {"w": 100.0}
    sampler = energy.PowerSampler(
        lambda: watts["w"], interval_s=3600, clock=lambda: now[0]
    )  # we sample by hand
    try:
        for step in range(1, 21):  # P(t) = 100 + 50 t W over 2 s, sampled every 0.1 s
            now[0] = step * 0.1
            watts["w"] = 100.0 + 50.0 * now[0]
            sampler.sample()
        assert sampler.read() == pytest.approx(100 * 2 + 25 * 2**2)  # = 300 J, exact for a line
    finally:
        sampler.close()
    fallback = energy.gpu_meter([0], FakeNVML(counter=False))
    try:
        assert fallback.method == "nvml power sampling" and fallback.read() >= 0
    finally:
        fallback.close()


def test_no_nvml_means_no_reading_not_zero(monkeypatch):
    monkeypatch.setattr(energy, "_nvml", lambda: None)
    meter = energy.gpu_meter([0])
    assert meter.method == "none" and meter.read() is None
    assert energy.idle_power(meter) is None
    assert energy.cpu_meter("/nonexistent").read() is None


def test_rapl_counters_wrap(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("900000\n")
    meter = energy.cpu_meter(str(tmp_path))
    (zone / "energy_uj").write_text("100000\n")  # wrapped past 1 J
    assert meter.method == "rapl" and meter.read() == pytest.approx(0.2)


@pytest.fixture
def counted(monkeypatch):
    """Every reading of the run's meter comes 10 J after the last; the card idles at 42 W."""
    from cnnbench.training import trainer

    def meter(device, gpus=None):
        ticks = itertools.count(0, 10)
        return energy.Counters([lambda: float(next(ticks))], "nvml energy counter")

    monkeypatch.setattr(trainer, "open_meter", meter)
    monkeypatch.setattr(energy, "idle_power", lambda meter: 42.0)
    energy._IDLE_POWER.clear()


def test_each_epoch_and_the_run_sum_the_counters_readings(tmp_path, counted):
    result = cli("train", "lenet", *SYNTH, "-e", "3", "--run-name", "r", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    epochs = pd.read_csv(tmp_path / "runs" / "r" / "epochs.csv")
    assert epochs.energy_J.tolist() == [10.0] * 3 and epochs.eval_energy_J.tolist() == [10.0] * 3
    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    assert (row.energy_train_J, row.energy_eval_J, row.energy_per_epoch_J) == (30.0, 30.0, 10.0)
    assert (
        row.energy_warmup_J == 10.0
        and row.idle_power_W == 42.0
        and row.energy_method == "nvml energy counter"
    )
    assert row.J_per_image == pytest.approx(30.0 / (3 * row.train_samples))
    assert row.mean_power_W == pytest.approx(30.0 / row.total_train_s)
    assert not row.energy_shared
    assert "energy 30 J training" in " ".join(result.output.split())


def test_a_shared_card_is_marked_and_the_table_says_so(tmp_path, counted):
    result = cli("compare", "lenet", *SYNTH, "-e", "2", "--name", "s", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    agg = pd.read_csv(tmp_path / "compare" / "s" / "aggregated.csv").iloc[0]
    assert agg.energy_per_epoch_J_mean == 10.0 and agg.energy_train_J_mean == 20.0 and agg.energy_pareto
    md = (tmp_path / "compare" / "s" / "table.md").read_text()
    assert "energy/epoch (J)" in md and "the device idled at 42 W" in md and "SHARED" not in md
    assert (tmp_path / "compare" / "s" / "accuracy_vs_energy.png").stat().st_size > 1000
    # the same run trained beside another on its card: the reading is the card's, and said to be
    from cnnbench.recipe import TrainConfig
    from cnnbench.training.trainer import train

    train(TrainConfig(model="lenet", dataset="synthetic", input_size=(3, 16, 16), synthetic_size=64, batch_size=16,
                      epochs=1, device="cpu", out=tmp_path / "m", jobs_per_gpu=2, run_name="shared"))  # fmt: skip
    assert pd.read_csv(tmp_path / "m" / "runs.csv").iloc[0].energy_shared


def test_without_a_meter_every_energy_field_is_null_in_strict_json(tmp_path):
    def strict(text):
        return json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))

    result = cli("profile", "lenet", "--device", "cpu", "--batch-sizes", "2", "--warmup", "1",
                                 "--iters", "2", "-f", "json", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = strict(result.stdout)["rows"]
    assert all(r["images_per_J"] is None and r["J_per_step"] is None for r in rows)
    trained = cli("compare", "lenet", *SYNTH, "-e", "1", "--name", "n", "--out", str(tmp_path))
    assert (
        trained.exit_code == 0
        and "Energy not measured" in (tmp_path / "compare" / "n" / "table.md").read_text()
    )
    assert math.isnan(pd.read_csv(tmp_path / "runs.csv").iloc[0].energy_train_J)  # an empty cell, never 0


def test_the_pareto_front_of_a_hand_made_table():
    from cnnbench.comparison.aggregate import pareto_front

    accuracy = [90.0, 85.0, 80.0, 88.0, 70.0, math.nan]
    joules = [100.0, 20.0, 30.0, 100.0, 5.0, 1.0]
    # 90@100 (most accurate), 85@20, 70@5 are on it; 80@30 and 88@100 are beaten; NaN is not on it
    assert pareto_front(accuracy, joules) == [True, True, False, False, True, False]
