"""Dataset readers and the device-resident loader."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnbench.data.loader import DeviceLoader
from cnnbench.data.readers import load_split, read_idx
from cnnbench.errors import DatasetError


def write_cifar10(root, n_per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
        batches[name] = (data, labels)
    return batches


def test_cifar_reader_reads_the_standard_layout(tmp_path):
    batches = write_cifar10(tmp_path)
    train = load_split("cifar10", "train", tmp_path, download=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == np.uint8
    first, labels = batches["data_batch_1"]
    # Row-major 3072 bytes = 1024 red, 1024 green, 1024 blue, each 32x32.
    assert np.array_equal(train.images[0, 1].ravel(), first[0, 1024:2048])
    assert train.labels[:4].tolist() == labels
    test = load_split("cifar10", "test", tmp_path, download=False)
    assert test.labels.tolist() == batches["test_batch"][1]


def test_missing_dataset_says_where_files_go(tmp_path):
    with pytest.raises(DatasetError, match=r"expected .*cifar-10-batches-py/\{data_batch_1"):
        load_split("cifar10", "train", tmp_path, download=False)


def test_idx_reader(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + images.tobytes()))
    assert np.array_equal(read_idx(path), images)
    path.write_bytes(gzip.compress(header + images.tobytes()[:-1]))
    with pytest.raises(DatasetError, match="expected 1568 values"):
        read_idx(path)


def test_loader_crops_flips_and_normalises_like_the_chapter(tmp_path):
    write_cifar10(tmp_path, n_per_batch=8)
    data = load_split("cifar10", "train", tmp_path, download=False)
    loader = DeviceLoader(data, batch_size=16, device="cpu", shuffle=True, augment=True, seed=3)
    seen = 0
    mean = torch.tensor(data.spec.mean).view(3, 1, 1)
    std = torch.tensor(data.spec.std).view(3, 1, 1)
    for x, y in loader.epoch(0):
        for img, label in zip(x, y, strict=True):
            raw = torch.round((img * std + mean) * 255).to(torch.uint8)
            # Some training image, padded by 4 zeros, contains this crop (flipped or not) with this label.
            match = False
            for i in np.flatnonzero(data.labels == int(label)):
                padded = torch.nn.functional.pad(torch.from_numpy(data.images[i]), (4, 4, 4, 4))
                for oy in range(9):
                    for ox in range(9):
                        crop = padded[:, oy : oy + 32, ox : ox + 32]
                        if torch.equal(crop, raw) or torch.equal(crop.flip(2), raw):
                            match = True
                            break
                    if match:
                        break
                if match:
                    break
            assert match
            seen += 1
    assert seen == 40
    # The same (seed, epoch) gives the same batches; another epoch, others.
    a = torch.cat([x for x, _ in loader.epoch(1)])
    b = torch.cat([x for x, _ in loader.epoch(1)])
    c = torch.cat([x for x, _ in loader.epoch(2)])
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loader_without_augmentation_is_plain_normalisation(tmp_path):
    write_cifar10(tmp_path)
    data = load_split("cifar10", "test", tmp_path, download=False)
    loader = DeviceLoader(data, batch_size=3, device="cpu", shuffle=False, augment=False)
    x = torch.cat([b for b, _ in loader.epoch(0)])
    expected = (
        torch.from_numpy(data.images).float() / 255 - torch.tensor(data.spec.mean).view(1, 3, 1, 1)
    ) / torch.tensor(data.spec.std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    assert len(loader) == 2 and loader.batch_sizes() == {3, 1}
    # Evaluation epochs are all alike: built once, then the same tensors every epoch.
    assert loader.epoch_tensors(1)[0] is loader.epoch_tensors(0)[0]


def test_a_data_folder_named_in_the_environment_must_exist_and_is_never_created(tmp_path, monkeypatch):
    """$CNNBENCH_DATA_DIR is held to what --data-dir is: a mistyped folder is refused before any download
    could create it."""
    from cnnbench.data import readers

    missing = tmp_path / "mistyped"
    monkeypatch.setenv("CNNBENCH_DATA_DIR", str(missing))
    for name in ("cifar10", "mnist", "imagefolder"):
        with pytest.raises(DatasetError, match=rf"^expected \$CNNBENCH_DATA_DIR to be an existing folder, got "
                                               rf"{missing} \(nothing is created there\)$"):  # fmt: skip
            readers.load_split(name, "train", synthetic_shape=(3, 32, 32))
    assert not missing.exists()


def test_a_failed_download_takes_away_the_empty_folders_it_made(tmp_path, monkeypatch):
    """torchvision makes its folders (./data, MNIST/raw) before it fails to fetch a file: with no network
    they are left empty. They are taken away; a folder that was there, or holds a file, stays."""
    from torchvision import datasets

    from cnnbench.data import readers

    partial = []  # where the attempt leaves part of a file

    def offline(self, root, train=True, download=False, **_kw):
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        for path in partial:
            path.write_bytes(b"")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error no network>")

    monkeypatch.setattr(datasets.MNIST, "__init__", offline)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNBENCH_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="dataset mnist not found and the download failed"):
        readers.load_split("mnist", "train")
    assert list(tmp_path.iterdir()) == []  # ./data and data/MNIST/raw, made by the attempt, are gone
    given = tmp_path / "mine"
    given.mkdir()
    partial.append(given / "MNIST" / "raw" / "train-images-idx3-ubyte.gz.part")
    with pytest.raises(DatasetError, match="dataset mnist not found and the download failed"):
        readers.load_split("mnist", "train", given)
    assert given.is_dir() and partial[0].is_file()
