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


# Matrix products that neither counter knew as shipped (fvcore has no handle, FlopCounterMode no formula):
# per sample, a matrix-vector product, one with an added vector, a dot product and a batched sum of
# products; the tensordot variant adds one op that fvcore skips and FlopCounterMode sees as a matrix product.
PRODUCTS = """
import torch
import torch.nn as nn


class Products(nn.Module):
    def __init__(self, num_classes, tensordot=False):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(32, 48))
        self.w2, self.b2 = nn.Parameter(torch.randn(32, 32)), nn.Parameter(torch.randn(32))
        self.u = nn.Parameter(torch.randn(32))
        self.c, self.p, self.q = (nn.Parameter(torch.randn(*s)) for s in ((5, 4), (2, 5, 3), (2, 3, 4)))
        self.t = nn.Parameter(torch.randn(num_classes, 32))
        self.tensordot = tensordot

    def forward(self, x):
        out = []
        for f in x.flatten(1):
            h = torch.addmv(self.b2, self.w2, torch.mv(self.w1, f))
            s = torch.dot(h, self.u) + torch.addbmm(self.c, self.p, self.q).sum()
            o = torch.tensordot(self.t, h, dims=1) if self.tensordot else (self.t * h).sum(1)
            out.append(o + s)
        return torch.stack(out)


def make(num_classes):
    return Products(num_classes)


def make_tensordot(num_classes):
    return Products(num_classes, tensordot=True)


class Bilinear(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.b = nn.Bilinear(48, 48, num_classes)

    def forward(self, x):
        return self.b(x.flatten(1), x.flatten(1))


def make_bilinear(num_classes):
    return Bilinear(num_classes)
"""
PRODUCT_MACS = 32 * 48 + 32 * 32 + 32 + 2 * 5 * 3 * 4  # mv, addmv, dot, addbmm: 2,712
TENSORDOT_MACS = 10 * 32


def test_matrix_products_neither_counter_knew_are_counted_exactly(tmp_path):
    (tmp_path / "products.py").write_text(PRODUCTS)
    counted = _summary(
        f"{tmp_path / 'products.py'}:make", "-i", "3x4x4", "--num-classes", "10", tmp_path=tmp_path
    )
    assert counted["macs"] == counted["fvcore_macs"] == counted["flop_counter_macs"] == PRODUCT_MACS == 2_712
    assert counted["macs_source"] == "fvcore" and counted["crosscheck_warning"] in (None, "")
    with_tensordot = _summary(f"{tmp_path / 'products.py'}:make_tensordot", "-i", "3x4x4", "--num-classes", "10",
                              tmp_path=tmp_path / "t")  # fmt: skip
    assert with_tensordot["macs"] == with_tensordot["flop_counter_macs"] == PRODUCT_MACS + TENSORDOT_MACS
    assert with_tensordot["fvcore_macs"] == PRODUCT_MACS
    assert with_tensordot["macs_source"] == (
        "fvcore, with matrix product from FlopCounterMode (fvcore skipped aten::tensordot x1)"
    )
    # nn.Bilinear as torch computes it: x1 against each output's 48 x 48 matrix, then against x2
    bilinear = _summary(f"{tmp_path / 'products.py'}:make_bilinear", "-i", "3x4x4", "--num-classes", "10",
                        tmp_path=tmp_path / "b")  # fmt: skip
    assert bilinear["macs"] == bilinear["fvcore_macs"] == bilinear["flop_counter_macs"] == 10 * (48 * 48 + 48)
    # training: the forward and the weight's gradient (48 x 48 x 10 products, plus the sum over x2)
    assert bilinear["train_flops"] == 2 * (2 * 10 * (48 * 48 + 48))


NORMED = """
import torch.nn as nn


def make(num_classes):
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
"""


def test_what_fvcores_defaults_add_is_counted_apart(tmp_path):
    """Normalisation and pooling carry no MACs here; fvcore's own handles (the convention of timm's table)
    count BatchNorm at 2 per element and adaptive pooling at 1 per input element: said apart."""
    (tmp_path / "normed.py").write_text(NORMED)
    counted = _summary(
        f"{tmp_path / 'normed.py'}:make", "-i", "3x8x8", "--num-classes", "10", tmp_path=tmp_path
    )
    assert counted["macs"] == 4 * 8 * 8 * 3 * 9 + 4 * 10 == 6_952
    assert counted["outside_convention"] == {"batch_norm": 2 * 4 * 8 * 8, "adaptive_avg_pool2d": 4 * 8 * 8}
    assert counted["fvcore_default_macs"] == 6_952 + 512 + 256
    row = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert row.fvcore_default_forward_MACs_per_sample == 7_720
    text = cli("summary", f"{tmp_path / 'normed.py'}:make", "-i", "3x8x8", "--num-classes", "10", "--out",
               str(tmp_path))  # fmt: skip
    assert "with fvcore's defaults" in text.output and "7,720" in text.output


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
def test_ghostnetv3s_deploy_form_meets_timms_table_under_fvcores_defaults(tmp_path):
    """timm's table gives GhostNetV3-050 0.0519 G: its deploy form counted with fvcore's defaults, which add
    BatchNorm, upsampling and adaptive pooling to the 49.6 M of its convolutions and linear layers."""
    pytest.importorskip("timm")
    counted = _summary("timm:ghostnetv3_050", "--deploy-form", tmp_path=tmp_path)
    assert counted["macs"] == pytest.approx(49.64e6, rel=0.001)
    assert set(counted["outside_convention"]) == {"batch_norm", "upsample_nearest2d", "adaptive_avg_pool2d"}
    assert counted["fvcore_default_macs"] == pytest.approx(51.9e6, rel=0.001)


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
