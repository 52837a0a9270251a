"""Your own images: the ImageFolder layout, decoded once into a cache, in train and compare."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli
from PIL import Image

from cnnbench.data import imagefolder
from cnnbench.data.loader import DeviceLoader
from cnnbench.data.readers import ArrayDataset
from cnnbench.data.specs import DatasetSpec

CLASSES = ["circles", "squares", "stripes"]


def write_folder(root, per_class=(12, 4), size=(40, 48)):
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class, strict=True):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
                pixels[..., c] += 150  # each class has its own colour: learnable
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def train_args(root, out, *extra):
    return ["-d", "imagefolder", "--data-dir", str(root), "--image-size", "24", "-e", "1", "--device", "cpu",
            "-b", "8", "--out", str(out), "-q", *extra]  # fmt: skip


def test_a_folder_of_pngs_trains_and_compares_and_the_cache_is_reused(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs")
    result = cli("train", "lenet", *train_args(root, tmp_path / "r"))
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "r" / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert (config["num_classes"], config["input_size"], config["train_samples"], config["test_samples"]) == (
        3,
        "3x24x24",
        36,
        12,
    )
    # On the CPU the images are read from their cache file, batch by batch.
    assert config["data_placement"] == "the image cache on disk, streamed per batch"
    assert config["data_source"] == str(root) and config["class_names"] == "circles;squares;stripes"
    assert (config["augment"], config["cache_size"]) == ("rrc", 27)  # 24 / 0.875, ImageNet's 256 for 224
    assert config["augmentation"].startswith("random-resized crop of the stored 27x27 to 24x24 (area 0.08-1")
    caches = sorted(p.name.split("-")[:3] for p in (root / ".cnnbench-cache").iterdir())
    assert caches == [["test", "27px", "v2"], ["train", "27px", "v2"]]

    from cnnbench.data import readers

    readers._CACHE.clear()  # a new process: only the files on disk remain

    def no_decoding(*_a, **_k):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(imagefolder, "_decode_into", no_decoding)
    result = cli("compare", "lenet", "cnn_dropout", *train_args(root, tmp_path / "r"), "--name", "c")
    assert result.exit_code == 0, result.output
    tidy = pd.read_csv(tmp_path / "r" / "compare" / "c" / "tidy.csv")
    assert tidy.variant.tolist() == ["lenet5", "cnn_dropout"] and set(tidy.status) <= {"ok", "not learning"}


def test_classes_counts_and_channel_statistics_come_from_the_folders(tmp_path):
    root = write_folder(tmp_path / "imgs")
    train = imagefolder.load(root, "train", 16)
    assert train["classes"] == CLASSES and np.bincount(train["labels"]).tolist() == [12, 12, 12]
    assert train["images"].shape == (36, 3, 16, 16) and train["images"].dtype == np.uint8
    expected = np.asarray(train["images"]).astype(np.float64).mean(axis=(0, 2, 3)) / 255
    assert np.allclose(train["mean"], expected)
    assert train["mean"][0] > train["mean"][1] - 0.2  # the colours are there
    val = imagefolder.load(root, "test", 16)
    assert (
        np.allclose(val["mean"], train["mean"]) and len(val["labels"]) == 12
    )  # val/ serves as the test split


def test_resize_and_centre_crop(tmp_path):
    path = tmp_path / "wide.png"
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, 20:40] = 255  # a white band in the middle third
    Image.fromarray(pixels).save(path)
    square = imagefolder.square_image(path, 10)
    assert square.shape == (3, 10, 10)
    assert square[:, :, 3:7].min() > 200  # the centre crop keeps the band's middle


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: __import__("shutil").rmtree(root / "val"), "val/ or"),
        (lambda root: [p.unlink() for p in (root / "train" / "squares").iterdir()], "an empty class"),
        (lambda root: (root / "train" / "circles" / "0.png").write_bytes(b"not a png"), "0.png"),
    ],
    ids=["missing-split", "empty-class", "unreadable"],
)
def test_bad_folders_are_one_line(tmp_path, damage, message):
    root = write_folder(tmp_path / "imgs")
    damage(root)
    result = cli("train", "lenet", *train_args(root, tmp_path / "r"))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_skip_bad_images_leaves_them_out_and_counts_them(tmp_path):
    root = write_folder(tmp_path / "imgs")
    (root / "train" / "circles" / "0.png").write_bytes(b"not a png")
    result = cli("train", "lenet", *train_args(root, tmp_path / "r", "--skip-bad-images"))
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "r" / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert (
        config["train_samples"] == 35 and config["images_skipped"] == 1 and config["skip_bad_images"] is True
    )


def test_streamed_batches_hold_the_same_images_as_resident_ones():
    rng = np.random.default_rng(0)
    spec = DatasetSpec("imagefolder", (3, 8, 8), 4, (0.5,) * 3, (0.25,) * 3, True)
    data = ArrayDataset(
        rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8), rng.integers(0, 4, 20), spec, "x"
    )
    plain = [DeviceLoader(data, 6, "cpu", False, False, resident=r) for r in (True, False)]
    a, b = [torch.cat([x for x, _ in loader.epoch(0)]) for loader in plain]
    assert torch.equal(a, b)
    shuffled = DeviceLoader(data, 6, "cpu", True, True, seed=2, resident=False)
    batches = list(shuffled.epoch(1))
    assert [len(y) for _, y in batches] == [6, 6, 6, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(data.labels.tolist())
    again = torch.cat([x for x, _ in shuffled.epoch(1)])
    assert torch.equal(again, torch.cat([x for x, _ in batches]))  # the same (seed, epoch), the same batches


def test_summary_of_your_own_data_asks_for_its_classes(tmp_path):
    result = cli("summary", "lenet", "-d", "imagefolder", "--out", str(tmp_path))
    assert result.exit_code == 1 and "expected --num-classes with --dataset imagefolder" in result.output
