"""profile --latency: percentiles that match a model's known delays, every backend checked against eager
before it is timed, a backend that cannot take a model ending as its row's status, a trained run's
weights giving its recorded accuracy, bad input refused in one line."""

import importlib.util

import pandas as pd
import pytest
from conftest import cli, one_line_error, tiny_argv

pytestmark = pytest.mark.xdist_group("latency")

# Every tenth call sleeps 12 ms, the others 2 ms: of any 100 consecutive requests, exactly 10 are slow.
DELAYED = """
import time

import torch.nn as nn


class Delayed(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, num_classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(0.012 if self.calls % 10 == 0 else 0.002)
        return self.head(x.flatten(1))


def make(num_classes):
    return Delayed(num_classes)
"""

FFT = """
import torch
import torch.nn as nn


class Spectral(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, num_classes)

    def forward(self, x):
        return self.head(torch.fft.fft2(x).abs().flatten(1))  # no ONNX operator for an FFT


def make(num_classes):
    return Spectral(num_classes)
"""

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


def _latency(tmp_path, model, *args):
    done = cli("profile", model, "-i", "3x8x8", "--num-classes", "4", "--latency", "--device", "cpu",
               "--out", str(tmp_path), "--wide", *args)  # fmt: skip
    assert done.exit_code == 0, done.output
    return pd.read_csv(tmp_path / "latency.csv"), done.output


def test_percentiles_are_those_of_the_models_known_delays(tmp_path):
    (tmp_path / "delayed.py").write_text(DELAYED)
    rows, _ = _latency(tmp_path, f"{tmp_path / 'delayed.py'}:make", "--warmup", "0", "--requests", "100",
                       "--threads", "1")  # fmt: skip
    row = rows.iloc[0]
    # The agreement check ran 8 calls first: the timed 100 still hold exactly 10 slow ones.
    assert 2.0 <= row.latency_ms_p50 < 2.0 + 8.0  # a sleep is never shorter than asked
    assert row.latency_ms_p99 >= 12.0 and row.latency_ms_max >= 12.0
    assert row.latency_ms_p90 < row.latency_ms_p99  # nine slow requests above rank 90: p90 sits between
    assert (row.timed_requests, row.warmup_requests, row.threads, row.batch_size) == (100, 0, 1, 1)
    assert (row.backend, row.status, bool(row.eval_mode), bool(row.autograd)) == ("eager", "ok", True, False)


@pytest.mark.skipif(not HAS_ORT, reason='onnxruntime is not installed (pip install "cnnbench[deploy]")')
def test_onnxruntime_agrees_with_eager_and_an_unexportable_model_is_its_rows_status(tmp_path):
    rows, output = _latency(
        tmp_path, "lenet5", "-i", "3x32x32", "--backend", "eager,onnxruntime", "--requests", "20"
    )
    ort = rows[rows.backend == "onnxruntime"].iloc[0]
    assert ort.status == "ok" and ort.provider == "CPUExecutionProvider" and ort.top1_agreement_pct == 100.0
    assert 0 <= ort.max_abs_diff <= ort.tolerance and ort.prepare_s > 0
    assert "onnxruntime (CPUExecutionProvider)" in output
    (tmp_path / "fft.py").write_text(FFT)
    rows, _ = _latency(
        tmp_path / "fft", f"{tmp_path / 'fft.py'}:make", "--backend", "eager,onnxruntime", "--requests", "5"
    )
    assert rows.set_index("backend").status.eager == "ok"
    assert (
        rows.set_index("backend").status.onnxruntime.startswith("failed: ")
        and "fft" in rows.status.iloc[1].lower()
    )


def test_a_backend_that_disagrees_with_eager_is_marked(tmp_path, monkeypatch):
    """A fake backend (one whose answers are off by 0.5): the real ones cannot be made to disagree."""
    from cnnbench.measure import latency

    class Off(latency.Backend):
        name = "compile"

        def run(self, x):
            return self.model(x) + 0.5

    monkeypatch.setitem(latency.BACKEND_CLASSES, "compile", Off)
    rows, output = _latency(
        tmp_path, "lenet5", "-i", "3x32x32", "--backend", "eager,compile", "--requests", "5"
    )
    off = rows[rows.backend == "compile"].iloc[0]
    assert off.status.startswith("disagrees: max |difference| from eager 0.5 > tolerance 0.001")
    assert off.max_abs_diff == pytest.approx(0.5) and off.latency_ms_p50 > 0  # marked, and still timed
    assert "disagrees" in output


def test_weights_of_a_trained_run_give_its_recorded_accuracy_on_eager(tmp_path):
    done = cli("train", "lenet5", *tiny_argv(), "--out", str(tmp_path))
    assert done.exit_code == 0, done.output
    recorded = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    rows, output = _latency(
        tmp_path, "lenet5", "--weights", recorded.run_id, "--batch-sizes", "1,16", "--requests", "5"
    )
    assert rows.test_acc.tolist() == [recorded.final_test_acc] * 2  # batch 1 and 16 (the last batch padded)
    assert rows.weights_run.tolist() == [recorded.run_id] * 2 and rows.input_size.tolist() == ["3x16x16"] * 2
    assert "test acc %" in output
    one_line_error(cli("profile", "vgg16", "--latency", "--weights", recorded.run_id, "--out", str(tmp_path)),
                   f"expected MODEL to be the model of run {recorded.run_id} (lenet5) with --weights, got 'vgg16'")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--latency", "--threads", "0"], "expected --threads >= 1, got 0"),
     (["--latency", "--backend", "tvm"], "expected --backend of eager, compile, onnxruntime, aotinductor, got 'tvm'"),
     (["--latency", "--weights", "no-such-run"], "expected a run id of"),
     (["--backend", "onnxruntime"], "expected --latency with --backend or --weights"),
     (["--latency", "--requests", "0"], "expected --requests >= 1, got 0")],
)  # fmt: skip
def test_bad_latency_input_is_one_line(tmp_path, args, message):
    one_line_error(cli("profile", "lenet5", "--device", "cpu", "--out", str(tmp_path), *args), message)


@pytest.mark.slow
def test_compile_and_aotinductor_agree_with_eager(tmp_path):
    rows, _ = _latency(
        tmp_path, "lenet5", "-i", "3x32x32", "--backend", "eager,compile,aotinductor", "--requests", "20"
    )
    for row in rows.itertuples():
        assert row.status == "ok" and row.top1_agreement_pct == 100.0 and row.max_abs_diff <= row.tolerance, (
            row
        )
    assert rows.set_index("backend").prepare_s.aotinductor > 1  # export and compilation, timed apart
