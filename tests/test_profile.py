"""cnnbench profile: rows per batch size and mode, the OOM path, layer table, gradient norms, bad input."""

import json

import pandas as pd
import pytest
import torch
from conftest import cli

from cnnbench.measure import profile as profiling


def run(tmp_path, *args):
    return cli("profile", "--device", "cpu", "--warmup", "1", "--iters", "3", "--out", str(tmp_path), *args, columns=200)  # fmt: skip


def test_rows_for_every_batch_size_and_mode(tmp_path):
    result = run(tmp_path, "lenet", "--batch-sizes", "4,1,2", "-f", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]  # stdout holds the data; what is measured next is said on stderr
    assert (
        "1/6: inference at batch 1, " in result.stderr and "6/6: training step at batch 4, " in result.stderr
    )
    assert [(r["mode"], r["batch_size"]) for r in rows] == [
        ("infer", 1), ("infer", 2), ("infer", 4), ("train", 1), ("train", 2), ("train", 4)
    ]  # fmt: skip
    for r in rows:
        assert r["status"] == "ok" and r["step_ms_median"] > 0 and r["step_ms_iqr"] >= 0
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] / (r["step_ms_median"] / 1e3))
        # FLOPs per step: LeNet-5 at 1x28x28 does 563,280 forward FLOPs and 1,517,040 training FLOPs per sample
        per_sample = 563_280 if r["mode"] == "infer" else 1_517_040
        assert r["FLOPs_per_step"] == per_sample * r["batch_size"]
        assert r["achieved_TFLOPs"] == pytest.approx(r["FLOPs_per_step"] / (r["step_ms_median"] / 1e3) / 1e12)
        assert r["MFU_pct"] is None  # no peak for a CPU: JSON says null, never NaN
    csv = pd.read_csv(tmp_path / "profile.csv")
    assert len(csv) == 6
    for column in (
        "gpu_name",
        "torch_version",
        "precision",
        "channels_last",
        "compile",
        "batch_size",
        "date",
    ):
        assert column in csv.columns


def test_out_of_memory_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    original = profiling._measure

    def measure(config, name, shape, classes, mode, batch, *rest):
        if batch >= 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(config, name, shape, classes, mode, batch, *rest)

    monkeypatch.setattr(profiling, "_measure", measure)
    result = run(tmp_path, "lenet", "--batch-sizes", "16,2,8", "--mode", "infer", "-f", "csv")
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "profile.csv")
    assert csv.batch_size.tolist() == [2, 8, 16]
    assert csv.status.tolist() == ["ok", "out of memory", "out of memory"]


@pytest.mark.slow
def test_layer_table_times_every_module_and_totals_them(tmp_path):
    config = profiling.ProfileConfig("cnn_dropout", batch_sizes=[16], modes=["train"], device="cpu", layers=True,
                                     trace=tmp_path / "trace.json", out=tmp_path)  # fmt: skip
    result = profiling.profile(config)
    layers = {r["layer"]: r for r in result.layers}
    total = layers.pop("(step total, measured)")
    assert set(layers) == {f"features.{i}" for i in range(6)} | {f"classifier.{i}" for i in range(7)}
    assert all(r["forward_ms"] > 0 and r["backward_ms"] >= 0 for r in layers.values())
    assert layers["features.3"]["backward_ms"] > 0  # the second convolution's backward is timed
    # The total row says how much of the measured step the modules account for: their sum, exactly
    # (how that compares with the step time is a measurement, not something a busy machine can promise).
    assert total["attributed_ms"] == pytest.approx(
        sum(r["forward_ms"] + r["backward_ms"] for r in layers.values())
    )
    assert total["forward_ms"] > 0
    assert result.top_ops and any("conv" in op["op"] for op in result.top_ops)
    assert json.loads((tmp_path / "trace.json").read_text())["traceEvents"]


@pytest.mark.parametrize("batch_norm", ["false"])
def test_gradient_norms_show_what_skip_connections_do(batch_norm):
    opts = {"batch_norm": batch_norm}
    with_skip = profiling.gradient_norms("resnet", {**opts, "skip": "true"}, (3, 32, 32), 10, "cpu", batch=8)
    plain = profiling.gradient_norms("resnet", {**opts, "skip": "false"}, (3, 32, 32), 10, "cpu", batch=8)
    assert with_skip[0]["parameter"] == plain[0]["parameter"] == "conv1.weight"
    assert plain[-1]["parameter"] == "fc.weight"
    # Without skips (and without BN) the first layer's gradient all but vanishes at initialisation.
    first_vs_last = lambda rows: rows[0]["grad_norm"] / rows[-1]["grad_norm"]  # noqa: E731
    assert first_vs_last(with_skip) > 100 * first_vs_last(plain)


def test_grads_flag_prints_the_table(tmp_path):
    result = run(tmp_path, "resnet", "--grads", "--batch-sizes", "2", "--mode", "infer", "-o", "skip=false")
    assert result.exit_code == 0, result.output
    assert "conv1.weight" in result.output and "gradient L2 norm" in result.output


def test_peak_table_picks_the_longest_name():
    # "A10" is in "A100"'s name and the other way round never: each card gets its own row.
    assert profiling.peak_tflops("NVIDIA A10", "bf16") == (125.0, "bf16")
    torch.backends.cudnn.allow_tf32 = True
    assert profiling.peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == (156.0, "tf32")
    assert profiling.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == (989.4, "bf16")
    assert profiling.peak_tflops("NVIDIA H100 PCIe", "bf16") == (756.0, "bf16")
    assert profiling.peak_tflops("Some GPU", "bf16") == (None, "bf16")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lenet", "--batch-sizes", "0,4"], "expected --batch-sizes as positive integers"),
        (["lenet", "--batch-sizes", "a"], "expected --batch-sizes as positive integers"),
        (["lenet", "--iters", "0"], "expected --warmup >= 0 and --iters >= 1"),
        (["lenet", "-i", "1x8x8"], "expected at least 1x16x16"),
        (["lenett"], "unknown model 'lenett'"),
    ],
)
def test_bad_profile_input(tmp_path, args, message):
    result = run(tmp_path, *args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_profile_says_what_it_measures_and_a_stop_keeps_what_was_measured(tmp_path, slow):
    """On a slow device a sweep takes minutes: each batch size is said as it starts, and Ctrl-C keeps the
    rows measured (they are in profile.csv already) and says so."""
    import signal

    from conftest import start, wait_until

    out = tmp_path / "p"
    process = start("profile", slow, "-i", "3x16x16", "--batch-sizes", "1,2,4,8", "--warmup", "2", "--iters", "20",
                    "--device", "cpu", "--out", out)  # fmt: skip
    table = out / "profile.csv"
    wait_until(lambda: table.is_file() and len(table.read_text().splitlines()) >= 2, 120, "a first row")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    said = " ".join(output.split())
    assert "1/8: inference at batch 1, 2 untimed and 20 timed steps on cpu" in said
    assert f"interrupted: the batch sizes measured so far are kept in {table}" in said
    assert "Traceback" not in said
    rows = pd.read_csv(table)
    assert 1 <= len(rows) < 8 and (rows.status == "ok").all()
