"""Models from outside the registry: torchvision's, timm's, and a user's own factory, in every command."""

import json
import textwrap

import pandas as pd
import pytest
from conftest import cli, tiny_argv

SYNTH = tiny_argv(epochs=1, batch_size=64, synthetic_size=256)

FACTORY = '''
import torch.nn as nn

def make(num_classes, input_shape=None, width=8):
    """A small network of the user's own."""
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))

def wrong_output(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 1))

def not_a_module(num_classes):
    return "a string"

class Tagged(nn.Module):
    """Logits in a dict beside values that are not tensors, as some research code returns them."""
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, num_classes)

    def forward(self, x):
        return {"logits": self.fc(x.flatten(1)), "step": 1, "note": "text"}

def tagged(num_classes):
    return Tagged(num_classes)

CONSTANT = 3
'''


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "mynets.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def test_summary_of_torchvision_resnet50_matches_its_published_numbers(tmp_path):
    from torchvision.models import get_weight

    meta = get_weight("ResNet50_Weights.IMAGENET1K_V1").meta
    out = cli("summary", "torchvision:resnet50", "-f", "json", "--depth", "1", "--out", str(tmp_path))
    data = json.loads(out.output)
    assert data["params"] == meta["num_params"] == 25_557_032
    assert data["macs"] / 1e9 == pytest.approx(meta["_ops"], rel=0.005)
    assert data["input_size"] == "3x224x224" and data["num_classes"] == 1000


def test_a_factory_in_a_file_is_summarised_trained_and_takes_options(tmp_path, factory):
    name = f"{factory}:make"
    s = json.loads(cli("summary", name, "-i", "3x16x16", "-o", "width=4", "-f", "json",
                                       "--out", str(tmp_path)).output)  # fmt: skip
    assert s["params"] == (3 * 9 * 4 + 4) + (4 * 10 + 10)  # conv 3->4 3x3 + bias, linear 4->10 + bias
    assert s["options"] == {"width": 4}
    result = cli("train", name, *SYNTH, "-o", "width=4", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    assert row.model == name and row.params == s["params"] and row.options == "width=4"
    assert "/" not in row.run_id and (tmp_path / "runs" / row.run_id / "epochs.csv").exists()


def test_a_model_whose_output_holds_more_than_tensors_is_summarised_and_trained(tmp_path, factory):
    """fvcore traces the forward with torch.jit, which cannot follow a number or a string among the
    outputs (a traceback, before): the summary counts the logits' layer exactly."""
    name = f"{factory}:tagged"
    result = cli("summary", name, "-i", "3x16x16", "-f", "json", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["macs"] == 3 * 16 * 16 * 10 and s["params"] == 3 * 16 * 16 * 10 + 10
    trained = cli("train", name, *SYNTH, "--out", str(tmp_path))
    assert trained.exit_code == 0, trained.output


def test_a_compare_mixes_a_registry_model_and_a_user_model(tmp_path, factory):
    result = cli("compare", "lenet", f"{factory}:make:width=4,8", *SYNTH, "--out", str(tmp_path),
                                 "--name", "mixed")  # fmt: skip
    assert result.exit_code == 0, result.output
    tidy = pd.read_csv(tmp_path / "compare" / "mixed" / "tidy.csv")
    assert tidy.variant.tolist() == ["lenet5", f"{factory}:make:width=4", f"{factory}:make:width=8"]
    assert tidy.params.tolist()[1:] == [162, 314]
    assert (tmp_path / "compare" / "mixed" / "table.md").exists()


def test_a_default_compare_name_of_a_file_model_is_one_folder(tmp_path, factory):
    assert cli("compare", f"{factory}:make", *SYNTH, "--out", str(tmp_path)).exit_code == 0
    (folder,) = (tmp_path / "compare").iterdir()
    assert (folder / "tidy.csv").exists()


def test_list_shows_what_a_source_offers():
    out = cli("list", "torchvision:*resnet*").output.split()
    assert (
        "torchvision:resnet50" in out
        and "torchvision:wide_resnet50_2" in out
        and "torchvision:vgg16" not in out
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torchvision:resnet5", "unknown torchvision classification model 'resnet5'; did you mean resnet50"),
        ("no_such_pkg.models:make", "could not import no_such_pkg.models: ModuleNotFoundError"),
        ("{factory}:mak", "unknown name in {factory} 'mak'; did you mean make?"),
        ("{factory}:CONSTANT", "to be callable, got a int"),
        ("{factory}:not_a_module", "to return an nn.Module, got str"),
        ("{factory}:wrong_output", "to output (batch, 10), got (2, 11)"),
        ("timm:no_such_model" if __import__("importlib").util.find_spec("timm") else "timm:resnet18", "timm"),
        ("timm:resnet1" if __import__("importlib").util.find_spec("timm") else "timm:resnet18", "timm"),
    ],
)
def test_bad_model_names_are_one_line(tmp_path, factory, name, message):
    name, message = name.format(factory=factory), message.format(factory=factory)
    result = cli("summary", name, "-i", "3x16x16", "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_unknown_options_of_a_factory_name_its_parameters(tmp_path, factory):
    result = cli("summary", f"{factory}:make", "-o", "depth=3", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 1 and "unknown option 'depth'" in result.output and "width" in result.output


def test_profile_takes_a_user_model(tmp_path, factory):
    result = cli("profile", f"{factory}:make", "-i", "3x16x16", "--device", "cpu", "--batch-sizes",
                                 "2", "--warmup", "1", "--iters", "2", "-f", "json", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["mode"] for r in rows] == ["infer", "train"] and all(r["status"] == "ok" for r in rows)
    assert rows[0]["model"] == f"{factory}:make"


@pytest.mark.slow  # trains several comparisons or runs: seconds each
def test_timm_models_take_the_datasets_classes_and_input_size(tmp_path):
    pytest.importorskip("timm")
    out = cli("summary", "timm:resnet18", "-d", "cifar10", "--depth", "1", "-f", "json",
                              "--out", str(tmp_path))  # fmt: skip
    data = json.loads(out.output)
    assert (data["params"], data["input_size"], data["num_classes"]) == (11_181_642, "3x32x32", 10)
    # a ViT takes the input size (32x32 with patches of 4: the registry's ViT-Tiny, MAC for MAC)
    vit = json.loads(cli("summary", "timm:vit_tiny_patch16_224", "-i", "3x32x32", "--num-classes",
                                         "10", "-o", "patch_size=4", "-f", "json", "--out", str(tmp_path)).output)  # fmt: skip
    ours = json.loads(cli("summary", "vit_tiny", "-f", "json", "--out", str(tmp_path)).output)
    assert vit["macs"] == ours["macs"] == 365_107_584
