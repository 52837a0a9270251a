"""Counts that never undercount: models whose forward copies a tensor into a sub-module (PiT, CaiT) count
and train; ops fvcore skips (a depthwise convolution with padding="same", an LSTM) are counted by the
other counter, and the headline says so."""

import json

import pandas as pd
import pytest
from conftest import cli

# A depthwise 3x3 convolution with padding="same" on 8x16x16, an LSTM over its 16 rows (input 8*16=128,
# hidden 32), a linear head 32 -> 10: MACs written out by hand.
MIXED = """
import torch.nn as nn


class Mixed(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, padding="same", groups=8, bias=False)
        self.lstm = nn.LSTM(128, 32, batch_first=True)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.dw(x).permute(0, 2, 1, 3).flatten(2)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def make(num_classes):
    return Mixed(num_classes)
"""
DEPTHWISE = 8 * 16 * 16 * 3 * 3  # one multiply-add per output element per kernel tap, one input channel each
LSTM = 16 * 4 * 32 * (128 + 32)  # 16 steps x 4 gates x hidden x (input + hidden)
HEAD = 32 * 10


def _summary(*args, tmp_path):
    done = cli("summary", *args, "-f", "json", "--out", str(tmp_path))
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_ops_fvcore_skips_are_counted_by_the_other_counter_and_named(tmp_path):
    (tmp_path / "mixed.py").write_text(MIXED)
    counted = _summary(
        f"{tmp_path / 'mixed.py'}:make", "-i", "8x16x16", "--num-classes", "10", tmp_path=tmp_path
    )
    assert counted["macs"] == DEPTHWISE + LSTM + HEAD == 346_432
    assert counted["fvcore_macs"] == HEAD  # fvcore skipped the convolution and the LSTM
    assert counted["flop_counter_macs"] == counted["macs"]
    assert counted["macs_source"] == ("fvcore, with convolution and matrix product from FlopCounterMode (fvcore "
                                      "skipped aten::_convolution_mode x1, aten::lstm x1)")  # fmt: skip
    assert (
        "the headline takes convolution and matrix product from FlopCounterMode"
        in counted["crosscheck_warning"]
    )
    row = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert (row.forward_MACs_per_sample, row.fvcore_forward_MACs_per_sample) == (346_432, HEAD)
    assert row.MACs_source.startswith("fvcore, with convolution and matrix product")


def test_a_model_fvcore_counts_whole_keeps_fvcores_count(tmp_path):
    counted = _summary("lenet5", "-i", "3x32x32", tmp_path=tmp_path)
    assert (
        counted["macs"] == counted["fvcore_macs"] == counted["flop_counter_macs"] == 651_720
    )  # as runs record it
    assert counted["macs_source"] == "fvcore" and counted["count_note"] == ""


def test_alexnets_summary_says_its_macs_are_one_towers(tmp_path):
    counted = _summary("alexnet", tmp_path=tmp_path)
    assert (counted["macs"], counted["params"]) == (1_135_256_096, 62_378_344)
    assert counted["count_note"].startswith(
        "one tower at the paper's widths: 1.135 G MACs at 3x224x224, 1.6x the 0.7 G"
    )


@pytest.mark.slow
def test_a_reparameterisable_model_says_which_form_was_counted(tmp_path):
    pytest.importorskip("timm")
    counted = _summary("timm:ghostnetv3_050", tmp_path=tmp_path)
    assert counted["macs"] == pytest.approx(0.1175e9, rel=0.01)
    assert counted["count_note"].startswith(
        "the model as built (its training form): 48 of its modules reparameterise"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("model", "macs"), [("timm:pit_ti_224", 0.699e9), ("timm:cait_xxs24_224", 2.523e9)])
def test_models_that_copy_a_tensor_in_forward_count_and_train(tmp_path, model, macs):
    pytest.importorskip("timm")
    counted = _summary(model, tmp_path=tmp_path)
    assert counted["macs"] == pytest.approx(macs, rel=0.01) and counted["macs_source"] == "fvcore"
    trained = cli("train", model, "-d", "synthetic", "-i", "3x224x224", "--synthetic-size", "8", "-b", "4",
                  "-e", "1", "--device", "cpu", "--num-classes", "10", "--warmup-steps", "0", "-q",
                  "--out", str(tmp_path))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert pd.read_csv(tmp_path / "runs.csv").status.iloc[0] in ("ok", "not learning")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "macs", "families"),
    [("timm:convmixer_768_32", 20.68e9, "convolution"), ("timm:sequencer2d_s", 8.33e9, "matrix product")],
)
def test_the_headline_covers_what_fvcore_skips_in_timm_models(tmp_path, model, macs, families):
    pytest.importorskip("timm")
    counted = _summary(model, tmp_path=tmp_path)
    assert counted["macs"] == pytest.approx(macs, rel=0.01)
    assert (
        counted["fvcore_macs"] < counted["macs"]
        and f"with {families} from FlopCounterMode" in counted["macs_source"]
    )
