"""summary: golden MAC counts, JSON fields, the CSV upsert, and the CLI's errors."""

import json

import pandas as pd
import pytest
from conftest import cli

from cnnbench.measure.summary import summarize
from cnnbench.settings import SummaryConfig


def test_lenet5_golden_numbers():
    s = summarize(SummaryConfig("lenet5", input_size=(1, 28, 28)))
    # The chapter's table: 156 + 2,416 + 30,840 + 10,164 + 850 parameters; MACs by hand:
    # conv1 24*24*6*25 + conv2 8*8*16*150 + fc 256*120 + 120*84 + 84*10.
    assert s.params == 44_426
    assert s.macs == 86_400 + 153_600 + 30_720 + 10_080 + 840 == 281_640
    assert s.flops == 2 * s.macs
    assert s.flop_counter_macs == s.macs
    # forward + backward: 3x forward minus conv1's input gradient (the input needs none).
    assert s.train_flops == 3 * s.flops - 2 * 86_400
    assert s.uncounted_ops == {"aten::avg_pool2d": 2}
    fc1 = next(layer for layer in s.layers if layer.name == "fc1")
    assert (fc1.params, fc1.macs, fc1.output_shape) == (30_840, 30_720, [1, 120])


@pytest.mark.parametrize(("name", "gmacs"), [("resnet18", 1.82), ("vgg16", 15.47)])
def test_imagenet_golden_macs(name, gmacs):
    s = summarize(SummaryConfig(name, input_size=(3, 224, 224), num_classes=1000))
    assert s.macs / 1e9 == pytest.approx(gmacs, rel=0.01)
    assert s.crosscheck_diff_pct < 1.0


def test_vit_counts_attention_and_lists_the_ops_that_carry_no_macs():
    s = summarize(SummaryConfig("vit_tiny"))
    assert "aten::scaled_dot_product_attention" not in s.uncounted_ops  # fvcore has a handle for it now
    assert s.flop_counter_macs == s.macs and s.crosscheck_warning is None
    assert s.uncounted_ops["aten::layer_norm"] == 25 and "aten::gelu" in s.uncounted_ops


def test_summary_json_has_the_documented_fields(results_dir):
    result = cli("summary", "lenet", "--format", "json", "--out", str(results_dir))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in (
        "model",
        "input_size",
        "num_classes",
        "params",
        "trainable_params",
        "macs",
        "flops",
        "train_flops",
        "uncounted_ops",
        "layers",
    ):
        assert key in data
    assert data["model"] == "lenet5" and data["input_size"] == "1x28x28" and data["params"] == 44_426
    assert {"name", "type", "output_shape", "params", "macs"} <= set(data["layers"][0])


def test_summary_csv_is_upserted_per_model_options_and_input(results_dir):
    for args in (["lenet"], ["lenet"], ["lenet", "-o", "pool=max"], ["lenet", "-i", "3x32x32"]):
        assert cli("summary", *args, "--out", str(results_dir)).exit_code == 0
    table = pd.read_csv(results_dir / "summary.csv")
    assert len(table) == 3
    row = table[(table.options == "pool=avg") & (table.input_size == "1x28x28")].iloc[0]
    assert row.params == 44_426 and row.forward_MACs_per_sample == 281_640
    assert row.forward_FLOPs_per_sample == 563_280 and row.precision == "fp32"
    assert table[table.input_size == "3x32x32"].iloc[0].params == 62_006


def test_summary_table_and_markdown(results_dir):
    result = cli("summary", "vgg16", "-d", "cifar10", "--depth", "1", "--out", str(results_dir))
    assert result.exit_code == 0
    assert "33,638,218" in result.output and "313" in result.output  # 313 M MACs at 32x32
    md = cli("summary", "lenet", "-f", "markdown", "--out", str(results_dir))
    assert "| conv1" in md.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "vgg17"], "unknown model 'vgg17'; did you mean vgg19, vgg16"),
        (["summary", "vgg16", "-i", "3x16x16"], "expected at least 3x32x32"),
        (["summary", "vgg16", "-i", "3by32"], "expected --input-size as CxHxW"),
        (["summary", "vgg16", "-o", "dropout"], "expected -o key=value, got 'dropout'"),
        (["summary", "vgg16", "-o", "skip=true"], "unknown option 'skip' for vgg16"),
        (["summary", "lenet", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["list", "nothing*"], "no model matches"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(args, message, results_dir):
    result = cli(*[*args] + (["--out", str(results_dir)] if args[0] == "summary" else []))
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line, maybe wrapped once by the terminal


def test_list_and_options():
    result = cli("list", "vgg*")
    assert result.exit_code == 0 and "vgg16_bn" in result.output and "lenet5" not in result.output
    result = cli("list", "--options", "resnet")
    assert "skip" in result.output and "batch_norm" in result.output


def test_version_and_help():
    assert cli("--version").output.strip() == "cnnbench 0.1.0"
    out = cli("--help").output
    for command in ("list", "summary", "train", "compare", "profile"):
        assert command in out


def test_summary_csv_format_prints_the_row(results_dir):
    result = cli("summary", "resnet", "-f", "csv", "--out", str(results_dir))
    assert result.exit_code == 0, result.output
    printed = pd.read_csv(__import__("io").StringIO(result.output))
    assert printed.model.tolist() == ["simple_resnet"] and printed.params.tolist() == [2_777_674]
    assert printed.input_size.tolist() == ["3x32x32"]
