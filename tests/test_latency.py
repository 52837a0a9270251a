"""profile --latency: percentiles that match a model's known delays, every backend checked against eager
before it is timed, a backend that cannot take a model ending as its row's status, a trained run's
weights giving its recorded accuracy, bad input refused in one line."""

import importlib.util

import pandas as pd
import pytest
from conftest import cli, compare_tiny, one_line_error, tiny_argv

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
     (["--backend", "onnxruntime"], "expected --latency with --backend, got no --latency"),
     (["--latency", "--requests", "0"], "expected --requests >= 1, got 0")],
)  # fmt: skip
def test_bad_latency_input_is_one_line(tmp_path, args, message):
    one_line_error(cli("profile", "lenet5", "--device", "cpu", "--out", str(tmp_path), *args), message)


# The FFT model at the tiny recipe's input (3x16x16): ONNX cannot export it, eager runs it.
FFT16 = FFT.replace("3 * 8 * 8", "3 * 16 * 16")


@pytest.mark.skipif(not HAS_ORT, reason='onnxruntime is not installed (pip install "cnnbench[deploy]")')
def test_compare_latency_gives_each_variant_its_columns_figure_and_note(tmp_path):
    (tmp_path / "fft.py").write_text(FFT16)
    fft = f"{tmp_path / 'fft.py'}:make"
    out = str(tmp_path / "out")
    done = compare_tiny(out, "lenet5", fft, "--name", "lat", "--latency", "--backend", "eager,onnxruntime",
                        "--requests", "10", "--threads", "1")  # fmt: skip
    assert done.exit_code == 0, done.output
    folder = tmp_path / "out" / "compare" / "lat"
    rows = pd.read_csv(folder / "latency.csv")
    assert len(rows) == 4 and set(rows.threads) == {1} and set(rows.timed_requests) == {10}
    by = rows.set_index(["variant", "backend"])
    assert by.status["lenet5", "onnxruntime"] == "ok" and by.status[fft, "eager"] == "ok"
    assert by.status[fft, "onnxruntime"].startswith("failed: ")
    agg = pd.read_csv(folder / "aggregated.csv").set_index("variant")
    for variant in ("lenet5", fft):  # the table's number is the row's, to the last digit
        assert agg.latency_ms_p50_eager[variant] == by.latency_ms_p50[variant, "eager"]
        assert agg.latency_ms_p99_eager[variant] == by.latency_ms_p99[variant, "eager"]
    assert agg.latency_ms_p50_onnxruntime["lenet5"] == by.latency_ms_p50["lenet5", "onnxruntime"]
    assert pd.isna(agg.latency_ms_p50_onnxruntime[fft])  # failed: no number, and the note says why
    assert agg.latency_status_onnxruntime[fft].startswith("failed: ")
    table = (folder / "table.md").read_text()
    assert "latency p50 (ms, batch 1, eager)" in table and "latency p99 (ms, batch 1, onnxruntime)" in table
    lenet_line = next(line for line in table.splitlines() if line.startswith("| lenet5 "))
    assert f"| {by.latency_ms_p50['lenet5', 'eager']:.3f} |" in lenet_line
    assert (
        "Latency: per-request inference at batch 1 (eager, onnxruntime (CPUExecutionProvider)), p50 and p99 in "
        "ms over 10 requests after 10 untimed, on cpu (" in table
    )
    assert f"{fft} onnxruntime: failed: " in table.replace("\\", "")
    assert (folder / "accuracy_vs_latency.svg").is_file() and (folder / "accuracy_vs_latency.png").is_file()
    assert "against inference latency at batch 1" in (folder / "report.html").read_text()
    assert "eager p50 ms" in done.output  # the terminal's short name
    command = (folder / "report.html").read_text()
    assert "--latency --backend eager,onnxruntime --threads 1 --requests 10" in command

    # --from reads the rows back (timing nothing); --from --latency times the variants again, here
    again = cli("compare", "--from", str(folder), "--wide")
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(folder / "latency.csv")) == 4 and "eager p50 ms" in again.output
    one_line_error(
        cli("compare", "--from", str(folder), "--device", "cpu"), "expected --latency with --device"
    )
    one_line_error(
        cli("compare", "--from", str(folder), "--threads", "2"), "expected --latency with --threads"
    )
    timed = cli("compare", "--from", str(folder), "--latency", "--requests", "5", "--device", "cpu")
    assert timed.exit_code == 0, timed.output
    rows = pd.read_csv(folder / "latency.csv")
    # the comparison's own backends and threads, with the requests given now, for both variants
    assert len(rows) == 8 and list(rows.timed_requests[-4:]) == [5] * 4 and set(rows.threads[-4:]) == {1}
    agg = pd.read_csv(folder / "aggregated.csv").set_index("variant")
    newest = rows[rows.variant == "lenet5"].groupby("backend").tail(1).set_index("backend")
    assert agg.latency_ms_p50_eager["lenet5"] == newest.latency_ms_p50.eager  # the newest row per backend
    assert agg.latency_ms_p50_onnxruntime["lenet5"] == newest.latency_ms_p50.onnxruntime
    # timed where the runs trained: nothing to flag; elsewhere (rows read against a GPU's conditions): said
    from cnnbench.comparison.latency import latency_note

    assert "NOT the device" not in (folder / "table.md").read_text()
    assert latency_note(rows, {"gpu_name": "NVIDIA H200"}).endswith(
        f"; NOT the device the runs trained on (NVIDIA H200); {fft} onnxruntime: {by.status[fft, 'onnxruntime']}."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--backend", "onnxruntime"], "expected --latency with --backend, got no --latency"),
     (["--latency", "--threads", "0"], "expected --threads >= 1, got 0"),
     (["--latency", "--launcher", "slurm", "--no-wait"], "expected --latency with runs trained and waited for on "
      "this machine, got --launcher slurm --no-wait"),
     (["--latency", "--backend", "tvm"], "expected --backend of eager, compile, onnxruntime, aotinductor, got 'tvm'")],
)  # fmt: skip
def test_bad_compare_latency_input_is_one_line(tmp_path, args, message):
    one_line_error(compare_tiny(str(tmp_path), "lenet5", *args), message)
    assert not (tmp_path / "compare").exists()  # refused before anything is written


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
