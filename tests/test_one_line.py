"""Every mistake a careless or hostile user makes ends in one line naming the input at fault, before
anything is trained or written: odd sizes and splits, names past the file system's limit, zoo models
and their options, your own folders with broken links, options a model cannot honour."""

import os
import warnings

import numpy as np
import pytest
from conftest import cli, one_line_error, tiny_argv
from PIL import Image
from test_own_data import train_args, write_folder

SYN = tiny_argv(input_size=(1, 16, 16), epochs=1, batch_size=128, synthetic_size=None)
LONG = "a" * 300


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["train", "lenet", *SYN, "--synthetic-size", "200", "--val-split", "0.001"],
         ["expected a --val-split of at least one image, got 0.001 of 200 images"]),
        (["train", "lenet", *SYN, "--run-name", LONG], ["expected a run name of at most 200 bytes", "got 300"]),
        (["compare", "lenet", *SYN, "--name", LONG], ["expected --name of at most 200 bytes", "got 300"]),
        (["train", "lenet", *SYN, "--out", LONG], ["expected a writable output directory", "File name too long"]),
        (["train", "lenet", *SYN, "--aux-loss", "0.3"],
         ["expected --aux-loss 0 for lenet5, whose output has no auxiliary heads' logits", "got 0.3"]),
        (["train", "lenet", "-d", "imagefolder", "--data-dir", ".", "--image-size", "0"],
         ["expected --image-size >= 1, got 0"]),
        (["train", "lenet", "-d", "imagefolder", "--data-dir", ".", "--image-size", "-1"],
         ["expected --image-size >= 1, got -1"]),
        (["compare", "lenet", "-d", "imagefolder", "-e", "1", "--device", "cpu"],
         ["expected --data-dir (or $CNNBENCH_DATA_DIR) with train/ and val/ folders"]),
    ],
    ids=["val-split-rounds-to-none", "long-run-name", "long-name", "long-out", "aux-loss-without-heads",
         "image-size-0", "image-size-negative", "imagefolder-without-data-dir"],
)  # fmt: skip
def test_a_mistake_is_one_line_and_nothing_is_recorded(tmp_path, monkeypatch, args, phrases):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNBENCH_DATA_DIR", raising=False)
    one_line_error(cli(*args), *phrases)
    assert not list(tmp_path.rglob("runs.csv"))


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["summary", "torchvision:maxvit_t", "-i", "3x64x64"],
         ["torchvision:maxvit_t cannot take input 3x64x64: ValueError: Input size (16, 16) of block 0"]),
        (["train", "torchvision:vit_b_16", "-i", "3x8x8", "-d", "synthetic", "-e", "1", "--device", "cpu"],
         ["torchvision:vit_b_16 cannot take input 3x8x8: AssertionError"]),
        (["summary", "timm:resnet18", "-o", "no_such_option=3"],
         ["unknown option 'no_such_option' for timm:resnet18: expected one of", "drop_rate"]),
        (["summary", "timm:resnet18", "-o", "pretrained=true"],
         ["expected options of timm:resnet18 other than pretrained, which cnnbench sets itself"]),
        (["summary", "torchvision:resnet18", "-o", "weights=DEFAULT"],
         ["expected options of torchvision:resnet18 other than weights, which cnnbench sets itself"]),
        (["summary", "torchvision:resnet18", "-o", "nonsense=1"],
         ["unknown option 'nonsense' for torchvision:resnet18: expected one of", "zero_init_residual"]),
        (["summary", "examples/net.py:make", "-o", "width=abc"],
         ["expected examples/net.py:make to build a model with width='abc', got TypeError"]),
    ],
    ids=["maxvit-small-input", "vit-small-input", "timm-unknown-option", "timm-pretrained", "torchvision-weights",
         "torchvision-unknown-option", "factory-option-of-the-wrong-type"],
)  # fmt: skip
def test_zoo_builders_and_their_options_are_checked_in_one_line(args, phrases, tmp_path, monkeypatch):
    if any(a.startswith("timm:") for a in args):
        pytest.importorskip("timm")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(root)  # examples/net.py, as the README names it
    one_line_error(cli(*args, "--out", tmp_path), *phrases)


def test_list_options_names_what_a_zoo_model_takes():
    pytest.importorskip("timm")
    result = cli("list", "--options", "timm:resnet18")
    assert result.exit_code == 0, result.output
    names = [line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") > 2]
    assert {"drop_rate", "drop_path_rate", "global_pool"} <= set(names)
    assert not {"pretrained", "num_classes", "in_chans"} & set(names)  # what cnnbench sets itself
    works = cli("summary", "timm:resnet18", "-o", "drop_rate=0.5", "-i", "3x32x32", "--format", "json")
    assert works.exit_code == 0, works.output


def test_a_zoo_builders_own_future_warning_is_not_shown():
    from cnnbench.models import get_model_info

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_model_info("torchvision:googlenet").builder((3, 64, 64), 10)


def test_a_very_large_image_of_yours_decodes_without_pils_warning(tmp_path, monkeypatch):
    from cnnbench.data.imagefolder import square_image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 pixels: past PIL's warning, short of its error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert square_image(tmp_path / "big.png", 8).shape == (3, 8, 8)


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_broken_link_among_your_images_is_named_or_left_out(tmp_path, link):
    root = write_folder(tmp_path / "imgs")
    bad = root / "train" / "circles" / "bad.png"
    if link == "dangling":
        bad.symlink_to(root / "gone.png")
    else:
        bad.symlink_to(root / "train" / "circles" / "other.png")
        (root / "train" / "circles" / "other.png").symlink_to(bad)
    one_line_error(cli("train", "lenet", *train_args(root, tmp_path / "r")), f"expected a readable image at {bad}",
                   "--skip-bad-images leaves such files out")  # fmt: skip
    skipped = cli("train", "lenet", *train_args(root, tmp_path / "r", "--skip-bad-images"))
    assert skipped.exit_code == 0, skipped.output


def test_num_classes_other_than_the_folders_is_refused(tmp_path):
    root = write_folder(tmp_path / "imgs")
    one_line_error(cli("train", "lenet", *train_args(root, tmp_path / "r", "--num-classes", "7")),
                   "expected --num-classes 3 (the class folders of", "got 7")  # fmt: skip


def test_a_cache_deleted_while_a_run_reads_it_is_one_line(tmp_path):
    import shutil

    from cnnbench.data import imagefolder
    from cnnbench.errors import DatasetError

    root = write_folder(tmp_path / "imgs")
    images = imagefolder.load(root, "train", 16)["images"]
    shutil.rmtree(root / ".cnnbench-cache")
    with pytest.raises(DatasetError, match="expected the image cache .* to stay while the run reads it"):
        images[np.arange(4)].gather(np.arange(4))


def test_a_model_too_large_for_its_input_is_refused_before_any_image_is_decoded(tmp_path):
    root = write_folder(tmp_path / "imgs")
    args = train_args(root, tmp_path / "r")
    args[args.index("--image-size") + 1], args[args.index("-b") + 1] = "4000", "512"
    one_line_error(
        cli("train", "lenet", *args), "lenet5 at 3x4000x4000 needs about", "expected a size that fits"
    )
    assert not (root / ".cnnbench-cache").exists()


def test_a_folder_that_cannot_hold_its_cache_says_where_the_cache_went(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs")
    (root / ".cnnbench-cache").write_text("")  # no cache folder can be made there (as in a read-only folder)
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    args = train_args(root, tmp_path / "r")
    args.remove("-q")
    result = cli("train", "lenet", *args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"{root} cannot be written: its image cache is kept in {tmp_path / 'cache'}" in said
    assert len(list((tmp_path / "cache").glob("*-train-*px-v*"))) == 1
