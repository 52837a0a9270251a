"""Every model a user brings: the whole torchvision zoo builds and runs at its own input size with its
published parameter count, and a sample of families (and of timm's) is counted, forward and training."""

import re
import warnings

import pytest
import torchvision

from cnnbench.models import get_model_info
from cnnbench.models.build import build_meta
from cnnbench.models.counting import count_flops

TORCHVISION = torchvision.models.list_models(module=torchvision.models)
# The heads rule: torchvision publishes GoogLeNet without its auxiliary heads (its weights drop them) and
# Inception v3 with them; -o aux_logits=false leaves them out.
HEADS = {"googlenet": {"aux_logits": "false"}}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's and Inception's notes on their weight initialisation
        yield


def _first_of_each_family(names):
    """One model per family (the name's leading letters: resnet, vit, efficientnet, ...), the first listed."""
    seen = {}
    for name in names:
        seen.setdefault(re.match(r"[a-z]+", name).group(), name)
    return set(seen.values())


# The fast tier builds one model of each family; the slow tier builds the whole zoo.
FAMILIES = _first_of_each_family(TORCHVISION)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAMILIES else pytest.mark.slow) for n in TORCHVISION]
)
def test_every_torchvision_classifier_builds_at_its_own_size_with_its_published_parameters(name):
    weights = torchvision.models.get_model_weights(name).DEFAULT
    info = get_model_info(f"torchvision:{name}")
    assert info.default_input == (
        3,
        *weights.transforms().crop_size * (2 // len(weights.transforms().crop_size)),
    )
    model = build_meta(info.name, HEADS.get(name, {}), info.default_input, 1000)  # its output checked too
    assert sum(p.numel() for p in model.parameters()) == weights.meta["num_params"]


# The families whose counting needed more than a forward: auxiliary heads, a builder that computes as it
# builds, an input size passed to the builder, windowed attention. The rest are counted by
# benchmarks/zoo_counts.py against torchvision's published MACs (results/zoo/).
SAMPLE = ["googlenet", "inception_v3", "regnet_x_400mf", "vit_b_16", "swin_t", "maxvit_t", "efficientnet_b0"]


@pytest.mark.parametrize("name", SAMPLE)
def test_a_sample_of_families_is_counted_forward_and_training_at_its_own_size(name):
    info = get_model_info(f"torchvision:{name}")
    forward, train = count_flops(info.name, {}, info.default_input, 1000)
    assert forward > 0 and 2.5 * forward <= train <= 3.2 * forward  # backward about twice the forward


TIMM = ["convnext_atto", "efficientnet_b0", "deit_tiny_distilled_patch16_224", "levit_128s", "mobilevit_xxs",
        "regnetx_002", "inception_v3"]  # fmt: skip


@pytest.mark.parametrize("name", TIMM)
def test_a_sample_of_timm_families_is_counted_and_trains_on_its_logits(name):
    pytest.importorskip("timm")
    import torch

    from cnnbench.models.outputs import logits_of

    info = get_model_info(f"timm:{name}")
    shape = info.default_input
    forward, train = count_flops(info.name, {}, shape, 10)
    assert forward > 0 and train > forward
    model = build_meta(info.name, {}, shape, 10)
    out = model.train()(torch.empty(2, *shape, device="meta"))  # distilled models: two heads in train mode
    assert tuple(logits_of(out).shape) == (2, 10)
