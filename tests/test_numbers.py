"""Every number right for every architecture: FLOPs by hand formula, published values, the MAC
convention, a cross-check that can fail, memory estimates, the layer table, and exercise 1."""

import json
import math

import pytest
import torch
from conftest import cli

from cnnbench.measure.summary import summarize
from cnnbench.models import get_model, get_model_info, list_models
from cnnbench.models.counting import count_flops, crosscheck, flop_counter
from cnnbench.settings import SummaryConfig


def test_a_depthwise_convolution_counts_its_backward_by_hand():
    b, c, h, w, k = 2, 32, 8, 8, 3
    conv = torch.nn.Conv2d(c, c, k, padding=1, groups=c, bias=False)
    x = torch.randn(b, c, h, w, requires_grad=True)
    with flop_counter() as counter:
        conv(x).sum().backward()
    per_output = k * k  # each output of a depthwise conv multiplies one channel's k x k window
    forward = 2 * b * c * h * w * per_output
    # backward: the input gradient and the weight gradient, each as many multiply-adds as the forward
    assert counter.get_total_flops() == 3 * forward


@pytest.mark.parametrize("name", list_models())
def test_training_flops_are_two_to_three_and_a_half_forward_passes(name):
    info = get_model_info(name)
    from cnnbench.data.specs import get_dataset_spec

    spec = get_dataset_spec(info.default_dataset)
    forward, train = count_flops(name, {}, spec.input_shape, spec.num_classes)
    assert 2.0 <= train / forward <= 3.5


def hand_macs(model, shape):
    """Multiply-adds of every Conv2d and Linear from their shapes alone, for one sample."""
    total = 0

    def conv(m, _i, out):
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, _i, out):
        nonlocal total
        total += out[0].numel() * m.in_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear)
    with torch.no_grad():
        model.eval()(torch.empty(1, *shape, device="meta"))
    return total


CNNS = [n for n in list_models() if n != "vit_tiny"]


@pytest.mark.parametrize("name", CNNS)
def test_macs_are_the_convolutions_and_linear_layers_by_hand(name):
    s = summarize(SummaryConfig(name, depth=1))
    shape = tuple(int(d) for d in s.input_size.split("x"))
    with torch.device("meta"):
        model = get_model(name, shape, s.num_classes)
    assert s.macs == hand_macs(model, shape) == s.flop_counter_macs


def test_vit_macs_include_attention_by_hand():
    s = summarize(
        SummaryConfig("vit_tiny", input_size=(3, 224, 224), num_classes=1000, options={"patch_size": "16"})
    )
    tokens, width, layers = 197, 192, 12
    attention = layers * 2 * tokens * tokens * width  # QK^T and AV, all heads together
    assert attention == 178_831_872
    with torch.device("meta"):
        model = get_model("vit_tiny", (3, 224, 224), 1000, patch_size=16)
    # besides the modules hand_macs sees (patch projection, MLPs, classifier), each layer's q/k/v and
    # output projections, which nn.MultiheadAttention applies through its weights, per token
    linear = layers * tokens * (3 * width * width + width * width)
    assert s.macs == hand_macs(model, (3, 224, 224)) + linear + attention
    assert s.crosscheck_warning is None and s.macs == s.flop_counter_macs


# torchvision's published figures (parameters, GMACs under its "_ops"), read offline from its weights'
# metadata.
TORCHVISION = {
    "vgg11": "VGG11_Weights", "vgg13": "VGG13_Weights", "vgg16": "VGG16_Weights", "vgg19": "VGG19_Weights",
    "vgg11_bn": "VGG11_BN_Weights", "vgg13_bn": "VGG13_BN_Weights", "vgg16_bn": "VGG16_BN_Weights",
    "vgg19_bn": "VGG19_BN_Weights", "resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
    "efficientnet_b0": "EfficientNet_B0_Weights",
}  # fmt: skip


# VGG-16 and VGG-16-BN stand for their family in the fast tier; the other depths are the same builder at
# another configuration, counted (seconds each at 224) in the slow tier.
FAST = {"vgg16", "vgg16_bn", "resnet18", "resnet34", "efficientnet_b0"}


@pytest.mark.parametrize(
    ("name", "weights"),
    [pytest.param(n, w, marks=() if n in FAST else pytest.mark.slow) for n, w in TORCHVISION.items()],
)
def test_published_parameters_and_macs_of_torchvision(name, weights):
    from torchvision.models import get_weight

    meta = get_weight(f"{weights}.IMAGENET1K_V1").meta
    s = summarize(SummaryConfig(name, input_size=(3, 224, 224), num_classes=1000, depth=1))
    assert s.params == meta["num_params"]
    assert s.macs / 1e9 == pytest.approx(meta["_ops"], rel=0.005)


def test_alexnet_is_the_papers_single_tower_and_says_so():
    s = summarize(SummaryConfig("alexnet", input_size=(3, 224, 224), num_classes=1000, depth=1))
    assert s.params == 62_378_344  # torchvision's narrower variant has 61,100,840
    with torch.device("meta"):
        assert s.macs == hand_macs(get_model("alexnet", (3, 224, 224), 1000), (3, 224, 224))
    listing = cli("list", "alexnet").output
    assert "single-tower" in listing and "not torchvision's" in listing


def test_the_cross_check_warns_and_names_the_operators():
    diff, warning = crosscheck(
        {"conv": 1000, "addmm": 100}, {"aten.convolution.default": 2000, "aten.addmm": 300}
    )
    assert diff == pytest.approx(50 / 1150 * 100)
    assert (
        "differ by 4.3%" in warning
        and "matrix product 100 vs 150" in warning
        and "convolution" not in warning
    )
    assert crosscheck({"conv": 1000}, {"aten.convolution": 2000}) == (0.0, None)


def test_summary_json_states_the_convention_memory_and_cross_check(tmp_path):
    out = cli("summary", "resnet18", "-d", "cifar10", "-b", "128", "-f", "json", "--out", str(tmp_path))
    data = json.loads(out.output)
    assert "attention's QK^T and AV included" in data["mac_convention"]
    assert data["crosscheck_warning"] is None
    m = data["memory"]
    for key in (
        "params_MiB",
        "activations_infer_MiB",
        "activations_train_MiB",
        "optimizer_MiB",
        "total_train_MiB",
    ):
        assert m[key] > 0
    assert m["params_MiB"] == pytest.approx(data["params"] * 4 / 2**20)
    assert m["optimizer_MiB"] == pytest.approx(2 * m["params_MiB"])
    assert m["total_train_MiB"] == pytest.approx(
        2 * m["params_MiB"]
        + m["optimizer_MiB"]
        + m["activations_train_MiB"]
        + m["input_MiB"]
        + (m["cublas_workspace_MiB"] or 0.0)  # measured on a GPU machine, None without one
    )
    assert m["batch_size"] == 128
    half = json.loads(cli("summary", "resnet18", "-d", "cifar10", "-b", "128", "--precision", "bf16",
                                          "-f", "json", "--out", str(tmp_path)).output)["memory"]  # fmt: skip
    assert half["activations_train_MiB"] < m["activations_train_MiB"]


def test_saved_activations_of_a_linear_relu_linear_by_hand():
    from cnnbench.measure.memory import estimate_memory

    with torch.device("meta"):
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(12, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5)
        )
    m = estimate_memory(model, (3, 2, 2), batch=8)
    # the first linear saves its input (8x12), ReLU its output (8x20), which the second linear saves too;
    # crossing the largest layer (ReLU: 8x20 in, 8x20 out), the backward pass holds two gradients that size
    saved, crossing = (8 * 12 + 8 * 20) * 4, (8 * 20 + 8 * 20) * 4
    assert m["activations_train_MiB"] * 2**20 == pytest.approx(saved + crossing)
    assert m["input_MiB"] * 2**20 == 8 * 12 * 4


def test_layer_rows_follow_execution_order_with_shares():
    s = summarize(SummaryConfig("simple_resnet", depth=1))
    names = [layer.name for layer in s.layers]
    assert names.index("bn1") < names.index("maxpool")  # registered the other way round
    assert sum(layer.params_pct for layer in s.layers) == pytest.approx(100)
    assert sum(layer.macs_pct for layer in s.layers) == pytest.approx(100)
    fc = next(layer for layer in s.layers if layer.name == "fc")
    assert fc.params_pct == pytest.approx(100 * fc.params / s.params)


def test_pool_applies_both_poolings_to_the_chapters_edge_map(tmp_path):
    result = cli("pool", "-f", "json", "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["input"][1] == [0, 1, 1, 1, 1, 0] and len(data["input"]) == 6
    assert data["max"] == [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    assert data["avg"] == [[0.25, 0.5, 0.25], [0.5, 0, 0.5], [0.25, 0.5, 0.25]]
    assert (tmp_path / "p.png").stat().st_size > 5000
    table = cli("pool", "--kernel", "3", "--stride", "3", columns=120).output
    assert "max keeps the strongest response in each 3x3 window" in " ".join(table.split())
    assert "average keeps the mean" in table


def test_pool_takes_a_dataset_image(tmp_path):
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [0, 1, 2]}, fh)
    data = json.loads(cli("pool", "--image", "2", "--data-dir", str(tmp_path), "-f", "json").output)
    assert len(data["input"]) == 32 and len(data["max"]) == 16 and "test image 2 of cifar10" in data["source"]
    assert max(map(max, data["max"])) >= max(map(max, data["avg"]))
    bad = cli("pool", "--image", "3", "--data-dir", str(tmp_path))
    assert bad.exit_code == 1 and "expected --image in [0, 3)" in bad.output


@pytest.mark.parametrize(
    ("args", "message"), [(["-k", "7"], "expected --kernel <= 6"), (["-s", "0"], ">= 1")]
)
def test_pool_bad_input(args, message):
    result = cli("pool", *args)
    assert result.exit_code == 1 and message in result.output and not math.isnan(0)


def test_cublas_workspaces_count_for_models_with_matrix_products_only():
    from cnnbench.measure.memory import estimate_memory

    with torch.device("meta"):
        mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
        conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1))
    workspace = 130 * 2**20  # what cuBLAS keeps after a training step on an H200 with torch 2.11
    bare, sized = estimate_memory(mlp, (3, 2, 2), 8), estimate_memory(mlp, (3, 2, 2), 8, workspace=workspace)
    assert bare["cublas_workspace_MiB"] is None
    assert sized["cublas_workspace_MiB"] == 130
    assert sized["total_train_MiB"] == pytest.approx(bare["total_train_MiB"] + 130)
    assert estimate_memory(conv, (3, 2, 2), 8, workspace=workspace)["cublas_workspace_MiB"] == 0


def test_counts_are_cached_by_model_size_and_source_and_a_bad_cache_is_passed_over(tmp_path, monkeypatch):
    from cnnbench.models import cache, counting

    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path))
    counting._count.cache_clear()
    first = count_flops("lenet5", {}, (3, 32, 32), 10)
    assert json.loads((tmp_path / "counts.json").read_text())  # written
    counting._count.cache_clear()
    monkeypatch.setattr(counting, "_count", lambda *a: (_ for _ in ()).throw(AssertionError("counted again")))
    assert count_flops("lenet5", {}, (3, 32, 32), 10) == first  # a later process reads it
    other = cache.key("flops", "lenet5", {}, (3, 16, 16), 10)
    assert other != cache.key("flops", "lenet5", {}, (3, 32, 32), 10)
    nets = tmp_path / "nets.py"
    nets.write_text("import torch.nn as nn\ndef make(num_classes):\n    return nn.Linear(3, num_classes)\n")
    before = cache.key("flops", f"{nets}:make", {}, (3,), 10)
    import os

    os.utime(nets, ns=(1, 1))  # the user's file changed: its counts are made again
    assert cache.key("flops", f"{nets}:make", {}, (3,), 10) != before
    now = cache.key("flops", "lenet5", {}, (3, 32, 32), 10)
    monkeypatch.setattr(cache, "counting_rules", lambda: "other rules")  # cnnbench counts otherwise now
    assert cache.key("flops", "lenet5", {}, (3, 32, 32), 10) != now
    (tmp_path / "counts.json").write_text("{not json")
    monkeypatch.undo()
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path))
    counting._count.cache_clear()
    assert count_flops("lenet5", {}, (3, 32, 32), 10) == first  # counted again, no error
