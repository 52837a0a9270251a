"""Your own images at scale: a first decode in bounded memory, the memory-mapped cache it writes, what an
interrupted decode leaves, random-resized crops by seed and epoch, and the input-bound line."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cnnbench.data import imagefolder
from cnnbench.data.imagefolder import MappedImages
from cnnbench.data.loader import RRC_SCALE, DeviceLoader, rrc_boxes
from cnnbench.data.readers import ArrayDataset
from cnnbench.data.specs import DatasetSpec


def jpeg_folder(root, per_class, size=(96, 80), classes=2, val=4):
    """JPEGs with a colour per class, ``per_class`` training images each and ``val`` validation ones."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (size[1], size[0], 3)).astype(np.uint8)
                pixels[..., c % 3] += 150
                Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=85)
    return root


PEAK_RSS = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from cnnbench.data import imagefolder

    def rss_kib(pid):
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    def tree(pid):
        found = [pid]
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    found += tree(int(child))
        return found

    peak = {"self": 0, "workers": 0}
    done = threading.Event()

    def sample():  # the resident memory of this process and of its decoding workers, every 5 ms
        while not done.is_set():
            try:
                pids = tree(os.getpid())
                mine = rss_kib(pids[0])
                others = sum(rss_kib(p) for p in pids[1:])
            except (OSError, StopIteration):
                continue
            peak["self"] = max(peak["self"], mine)
            peak["workers"] = max(peak["workers"], others)
            time.sleep(0.005)

    watcher = threading.Thread(target=sample)
    watcher.start()
    data = imagefolder.load(sys.argv[1], "train", 64, workers=2)
    done.set()
    watcher.join()
    print(json.dumps({"count": len(data["images"]), "self_kib": peak["self"], "worker_kib": peak["workers"],
                      "from_cache": data["from_cache"], "torch": "torch" in sys.modules}))
    """
)


@pytest.mark.slow
def test_a_first_decode_does_not_grow_with_the_number_of_images(tmp_path):
    peaks = {}
    for count in (500, 2000):  # per class: 1,000 and 4,000 images
        root = jpeg_folder(tmp_path / str(count), count)
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(root)], capture_output=True, text=True, check=True
        )
        peaks[count] = json.loads(done.stdout)
        assert peaks[count]["count"] == 2 * count and not peaks[count]["from_cache"]
        assert not peaks[count]["torch"]  # decoding needs numpy and PIL alone
        assert peaks[count]["worker_kib"] > 20_000  # the workers were seen (two Pythons with numpy and PIL)
    # 3,000 more images of 3x64x64 are 37 MB of cache (295 MB as float64, the old statistics' copy): none
    # of it is held by the process or its workers.
    for key in ("self_kib", "worker_kib"):
        grown = (peaks[2000][key] - peaks[500][key]) / 1024
        assert grown < 12, f"{key} grew by {grown:.1f} MiB for 3,000 more images ({peaks})"


def test_the_mapped_cache_holds_what_a_direct_decode_gives(tmp_path):
    root = jpeg_folder(tmp_path / "imgs", 150, size=(120, 90))  # 300 images: decoded by worker processes
    data = imagefolder.load(root, "train", 48, workers=2)
    paths = sorted((root / "train").rglob("*.jpg"))
    direct = np.stack([imagefolder.square_image(p, 48) for p in paths])
    assert isinstance(data["images"], MappedImages) and data["images"].shape == (300, 3, 48, 48)
    assert np.array_equal(np.asarray(data["images"]), direct)
    assert data["labels"].tolist() == [0] * 150 + [1] * 150
    scaled = direct.astype(np.float64) / 255
    assert np.allclose(data["mean"], scaled.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    assert np.allclose(data["std"], scaled.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    # Views read the same rows as the array; a second load reads the cache without decoding.
    view = data["images"][np.array([299, 3, 4, 5, 0])]
    assert np.array_equal(view.gather(np.arange(5)), direct[[299, 3, 4, 5, 0]])
    assert np.array_equal(np.asarray(data["images"][10:20][::3]), direct[10:20][::3])
    again = imagefolder.load(root, "train", 48)
    assert again["from_cache"] and np.array_equal(np.asarray(again["images"]), direct)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_still_resized_from_enough_pixels(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (200, 30, 30)).save(path, quality=90)
    with Image.open(path) as image:
        image.draft("RGB", (150, 150))
        assert image.size == (200, 150)  # 1/8 scale: the smallest that leaves both sides >= 150
    square = imagefolder.square_image(path, 150)
    assert square.shape == (3, 150, 150) and abs(int(square[0].mean()) - 200) <= 2


KILLED = textwrap.dedent(
    """
    import sys, time
    from cnnbench.data import imagefolder
    slow = imagefolder.square_image
    def slower(path, size):
        time.sleep(0.01)
        return slow(path, size)
    imagefolder.square_image = slower
    imagefolder.load(sys.argv[1], "train", 32, workers=1, progress=lambda d, t: print(d, flush=True))
    """
)


def test_an_interrupted_decode_leaves_no_cache_that_reads_as_whole(tmp_path):
    root = jpeg_folder(tmp_path / "imgs", 200)
    decode = subprocess.Popen([sys.executable, "-c", KILLED, str(root)], stdout=subprocess.PIPE, text=True)
    assert int(decode.stdout.readline()) == 64  # the first chunk is written: the decode is half way
    decode.send_signal(signal.SIGKILL)
    decode.wait()
    left = list((root / ".cnnbench-cache").iterdir())
    assert len(left) == 1 and ".partial-" in left[0].name  # under its temporary name, never renamed
    data = imagefolder.load(root, "train", 32)
    assert not data["from_cache"] and len(data["images"]) == 400
    assert [p.name for p in (root / ".cnnbench-cache").iterdir()] == [os.path.basename(data["cache"])]
    # A cache of another version under the current name is decoded again, not read.
    meta = json.loads((root / ".cnnbench-cache" / os.path.basename(data["cache"]) / "meta.json").read_text())
    (root / ".cnnbench-cache" / os.path.basename(data["cache"]) / "meta.json").write_text(
        json.dumps(meta | {"version": 1})
    )
    assert not imagefolder.load(root, "train", 32)["from_cache"]


def _square_set(n=12, stored=40, out=32):
    rng = np.random.default_rng(1)
    spec = DatasetSpec("imagefolder", (3, out, out), 3, (0.5,) * 3, (0.25,) * 3, "rrc")
    return ArrayDataset(
        rng.integers(0, 256, (n, 3, stored, stored), dtype=np.uint8), rng.integers(0, 3, n), spec, "x"
    )


def test_random_resized_crops_follow_the_seed_and_epoch_and_imagenets_ranges():
    gen = torch.Generator().manual_seed(0)
    boxes = rrc_boxes(20_000, 256, gen)
    left, top, w, h = boxes.unbind(1)
    assert ((left >= 0) & (top >= 0) & (left + w <= 256) & (top + h <= 256)).all()
    share = (w * h).double() / 256**2
    assert share.min() >= RRC_SCALE[0] * 0.95 and share.max() <= 1.0
    assert 0.3 < share.median() < 0.7  # drawn across the range, not at one end
    ratio = w.double() / h.double()
    assert ratio.min() > 0.7 and ratio.max() < 1.45
    data = _square_set()
    loader = DeviceLoader(data, 5, "cpu", shuffle=True, augment="rrc", seed=4)
    first = [x for x, _ in loader.epoch(1)]
    assert [tuple(x.shape) for x in first] == [(5, 3, 32, 32), (5, 3, 32, 32), (2, 3, 32, 32)]
    same = torch.cat([x for x, _ in DeviceLoader(data, 5, "cpu", True, "rrc", seed=4).epoch(1)])
    assert torch.equal(torch.cat(first), same)
    assert not torch.equal(torch.cat(first), torch.cat([x for x, _ in loader.epoch(2)]))
    assert not torch.equal(
        torch.cat(first),
        torch.cat([x for x, _ in DeviceLoader(data, 5, "cpu", True, "rrc", seed=5).epoch(1)]),
    )
    # Evaluation is the centre crop of the stored image.
    plain = DeviceLoader(data, 12, "cpu", shuffle=False, augment="none")
    ((x, _),) = list(plain.epoch(0))
    expected = (torch.from_numpy(data.images[:, :, 4:36, 4:36]).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)


def test_a_whole_box_is_the_image_and_a_flip_reads_it_right_to_left():
    data = _square_set(n=2, stored=32, out=32)
    loader = DeviceLoader(data, 2, "cpu", shuffle=False, augment="rrc")
    image = torch.from_numpy(data.images).float()
    boxes = torch.tensor([[0, 0, 32, 32], [0, 0, 32, 32]])
    out = loader._resized_crop(image, boxes, torch.tensor([False, True]))
    assert torch.allclose(out[0], image[0], atol=1e-4)
    assert torch.allclose(out[1], image[1].flip(-1), atol=1e-4)
    # A box of the input's size is the plain crop at its place: pixel for pixel, no resampling.
    stored = _square_set(n=1, stored=40, out=32)
    larger = DeviceLoader(stored, 1, "cpu", shuffle=False, augment="rrc")
    image = torch.from_numpy(stored.images).float()
    crop = larger._resized_crop(image, torch.tensor([[5, 3, 32, 32]]), torch.tensor([False]))
    assert torch.allclose(crop[0], image[0, :, 3:35, 5:37], atol=1e-3)


def test_a_mapped_set_streams_the_batches_a_resident_one_gives(tmp_path):
    root = jpeg_folder(tmp_path / "imgs", 20)
    data = imagefolder.load(root, "train", 40)
    spec = DatasetSpec("imagefolder", (3, 32, 32), 2, tuple(data["mean"]), tuple(data["std"]), "rrc")
    mapped = ArrayDataset(data["images"], data["labels"], spec, str(root))
    in_memory = ArrayDataset(np.asarray(data["images"]), data["labels"], spec, str(root))
    for augment in ("rrc", "crop", "flip", "none"):
        a = [
            torch.cat(t)
            for t in zip(*DeviceLoader(mapped, 7, "cpu", True, augment, seed=3).epoch(2), strict=True)
        ]
        b = [
            torch.cat(t)
            for t in zip(*DeviceLoader(in_memory, 7, "cpu", True, augment, seed=3).epoch(2), strict=True)
        ]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), augment


@pytest.mark.slow
def test_the_input_bound_line_appears_when_the_loader_is_the_slower(tmp_path, monkeypatch):
    from cnnbench.recipe import TrainConfig
    from cnnbench.training.trainer import Callbacks, train

    class Notes(Callbacks):
        def __init__(self):
            self.notes = []

        def on_note(self, text):
            self.notes.append(text)

    root = jpeg_folder(tmp_path / "imgs", 24, size=(40, 40))
    # SimpleResNet's step on the CPU (tens of ms a batch) against a loader of 24x24 crops (well under one)
    config = TrainConfig(model="resnet", dataset="imagefolder", data_dir=root, input_size=(3, 24, 24), epochs=1,
                         batch_size=16, augment="none", device="cpu", out=tmp_path / "r", checkpoints=False)  # fmt: skip
    quick = Notes()
    result = train(config, quick)
    assert result.summary["input_bound"] is False and not any("input-bound" in n for n in quick.notes)
    assert result.summary["loader_images_per_s"] > result.summary["step_images_per_s"] > 0

    gather = MappedImages.gather

    def slow_gather(self, positions, out=None):
        time.sleep(0.4)  # a disk that gives 40 images/s (16 a batch)
        return gather(self, positions, out)

    monkeypatch.setattr(MappedImages, "gather", slow_gather)
    slow = Notes()
    # LeNet-5's step (a few ms a batch) against that disk: far faster even on a loaded CI machine, where
    # SimpleResNet's step fell under 40 images/s
    result = train(config.replace(model="lenet"), slow)
    assert result.summary["input_bound"] is True
    (line,) = [n for n in slow.notes if "input-bound" in n]
    assert line.startswith("input-bound: the loader gives ") and "images/s and the step takes" in line
    assert result.summary["loader_images_per_s"] < 41


def test_an_unreadable_image_among_the_workers_is_named_or_left_out_and_the_rest_kept_in_order(tmp_path):
    from cnnbench.errors import DatasetError

    root = jpeg_folder(tmp_path / "imgs", 150, size=(64, 48))  # 300 images: decoded by worker processes
    bad = root / "train" / "class0" / "00007.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="00007.jpg.*--skip-bad-images"):
        imagefolder.load(root, "train", 32, workers=2)
    assert not list((root / ".cnnbench-cache").iterdir())  # nothing half-written stays
    data = imagefolder.load(root, "train", 32, skip_bad=True, workers=2)
    kept = [p for p in sorted((root / "train").rglob("*.jpg")) if p != bad]
    assert (
        data["skipped"] == 1
        and len(data["images"]) == 299
        and data["labels"].tolist() == [0] * 149 + [1] * 150
    )
    assert np.array_equal(
        np.asarray(data["images"]), np.stack([imagefolder.square_image(p, 32) for p in kept])
    )
