"""The registry: every model builds and runs at each supported input; published parameter counts."""

import pytest
import torch

from cnnbench.errors import InputSizeError, InvalidOptionError, UnknownModelError
from cnnbench.models import get_model, get_model_info, list_models
from cnnbench.recipe import parse_option_strings

ALL = list_models()
CASES = [(name, shape) for name in ALL for shape in get_model_info(name).supported_inputs]


@pytest.mark.parametrize(("name", "shape"), CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in CASES])
def test_every_model_builds_and_runs_forward(name, shape):
    classes = 7
    if shape[1] >= 224:
        # Full-size forward passes of the ImageNet models cost seconds each on CPU; the meta device
        # checks shapes through the whole network without arithmetic.
        with torch.device("meta"):
            model = get_model(name, shape, classes)
        out = model.eval()(torch.empty(2, *shape, device="meta"))
    else:
        model = get_model(name, shape, classes).eval()
        with torch.no_grad():
            out = model(torch.randn(2, *shape))
        assert torch.isfinite(out).all()
    assert tuple(out.shape) == (2, classes)


# (name, input shape, classes, parameters): the chapter's tables, torchvision's published counts and the
# reference table of ../shared/datasets/README.md.
PUBLISHED = [
    ("lenet5", (1, 28, 28), 10, 44_426),
    ("lenet5", (3, 32, 32), 10, 62_006),
    ("alexnet", (3, 224, 224), 1000, 62_378_344),
    ("vgg16", (3, 224, 224), 1000, 138_357_544),
    ("vgg11", (3, 224, 224), 1000, 132_863_336),
    ("vgg19_bn", (3, 224, 224), 1000, 143_678_248),
    ("vgg16", (3, 32, 32), 10, 33_638_218),
    ("vgg16_bn", (3, 32, 32), 10, 33_646_666),
    ("resnet18", (3, 224, 224), 1000, 11_689_512),
    ("resnet34", (3, 224, 224), 1000, 21_797_672),
    ("resnet", (3, 32, 32), 10, 2_777_674),
    ("cifar10net", (3, 32, 32), 10, 4_507_722),
    ("efficientnet_b0", (3, 224, 224), 1000, 5_288_548),
]


@pytest.mark.parametrize(("name", "shape", "classes", "params"), PUBLISHED)
def test_published_parameter_counts(name, shape, classes, params):
    with torch.device("meta"):
        model = get_model(name, shape, classes)
    assert sum(p.numel() for p in model.parameters()) == params


def test_lenet5_layers_match_the_chapter_table():
    model = get_model("lenet5", (1, 28, 28), 10)
    per_layer = [
        sum(p.numel() for p in m.parameters())
        for m in (model.conv1, model.conv2, model.fc1, model.fc2, model.fc3)
    ]
    assert per_layer == [156, 2_416, 30_840, 10_164, 850]


def test_cnn_dropout_classifier_is_derived_from_the_feature_map():
    assert get_model("cnn_dropout", (3, 32, 32), 10).classifier[0].in_features == 128 * 8 * 8
    assert get_model("cnn_dropout", (1, 28, 28), 10).classifier[0].in_features == 128 * 7 * 7


def test_aliases_and_glob_filters():
    assert get_model_info("lenet").name == "lenet5"
    assert get_model_info("vgg").name == "vgg16"
    assert get_model_info("resnet").name == "simple_resnet"
    assert list_models("vgg*") == sorted(
        ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    )
    assert list_models(["lenet", "alex*"]) == ["alexnet", "lenet5"]
    assert "vgg16_bn" not in list_models("vgg*", exclude="*_bn")


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean vgg19, vgg16"):
        get_model_info("vgg17")


def test_options_change_the_architecture():
    plain = get_model("resnet", (3, 32, 32), 10, skip=False)
    assert all(not b.skip and b.downsample is None for stage in plain.layers for b in stage)
    no_bn = get_model("cifar10net", (3, 32, 32), 10, batch_norm="false")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())
    avg = get_model("lenet5", (1, 28, 28), 10, pool="max")
    assert isinstance(avg.pool1, torch.nn.MaxPool2d)
    drop = get_model("cnn_dropout", (3, 32, 32), 10, dropout="0.3")
    assert [m.p for m in drop.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]
    assert (
        sum(isinstance(m, torch.nn.BatchNorm2d) for m in get_model("vgg16_bn", (3, 32, 32), 10).modules())
        == 13
    )


def test_bad_options_name_the_valid_ones():
    with pytest.raises(
        InvalidOptionError, match="unknown option 'skip' for vgg16: expected one of batch_norm"
    ):
        get_model("vgg16", (3, 32, 32), 10, skip="false")
    with pytest.raises(InvalidOptionError, match=r"expected float in \[0, 1\], got '1.5'"):
        get_model("cnn_dropout", (3, 32, 32), 10, dropout="1.5")
    with pytest.raises(InvalidOptionError, match="expected true\\|false, got 'maybe'"):
        get_model("resnet", (3, 32, 32), 10, skip="maybe")
    with pytest.raises(InvalidOptionError, match="expected -o key=value"):
        parse_option_strings(["dropout"])


def test_input_too_small_names_the_layer_and_the_smallest_size():
    with pytest.raises(
        InputSizeError, match=r"layer features\.9 \(MaxPool2d\) fails; expected at least 3x32x32"
    ):
        get_model("vgg16", (3, 16, 16), 10)
    with pytest.raises(InputSizeError, match=r"layer conv2 \(Conv2d\) fails; expected at least 1x16x16"):
        get_model("lenet5", (1, 12, 12), 10)
