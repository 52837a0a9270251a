"""Epoch time of the chapter's own training loop against `cnnbench train`, same card, same call.

The chapter's loop (section 2.5) is copied faithfully: torchvision transforms on PIL images
(RandomHorizontalFlip, RandomCrop(32, padding=4), ToTensor, Normalize), DataLoader(batch_size=128,
shuffle=True, num_workers=2), fp32, Adam(1e-3, weight decay 1e-4), StepLR(20, 0.5), and its
train_epoch with per-batch ``loss.item()``. One change: torchvision's CIFAR10 class refuses the JPEG
re-encoded copy (checksums), so a Dataset with the same __getitem__ (PIL image from the uint8 array,
then the transform) reads the same batch files.

Both loops time the training pass over one epoch only (evaluation apart), synchronised.
cnnbench settings: its defaults at the chapter's recipe (fp32; on CUDA that means channels-last and
fused Adam), the same with NCHW (``--no-channels-last``, the memory format the chapter uses), bf16 +
channels-last, and bf16 + channels-last + ``--compile`` (compilation is in the warm-up column); on
request (``--settings``) also fp16 + channels-last, whose BatchNorm PyTorch sends to cuDNN.

    python benchmarks/train_speed.py --data-dir DIR --out results/train_speed [--chapter-epochs 3] [--epochs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn, optim
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import cnnbench
from cnnbench.data.readers import load_split  # the chapter's loop reads the same CIFAR-10 copy cnnbench reads
from cnnbench.stats import iqr
from cnnbench.store.tables import environment

MODELS = ("lenet5", "cifar10net", "simple_resnet")
# label: (precision, channels_last, compile, the argument that gives its number of epochs)
SETTINGS = {
    "fp32 (defaults)": ("fp32", None, False, "epochs"),
    "fp32 NCHW": ("fp32", False, False, "nchw_epochs"),
    "bf16+channels_last": ("bf16", True, False, "fast_epochs"),
    "bf16+channels_last+compile": ("bf16", True, True, "fast_epochs"),
    "fp16+channels_last": ("fp16", True, False, "fast_epochs"),
}


class PickledCIFAR10(Dataset):
    """Same __getitem__ as torchvision.datasets.CIFAR10: PIL image from HWC uint8, then the transform."""

    def __init__(self, images, labels, transform):
        self.data = images.transpose(0, 2, 3, 1)  # NCHW -> NHWC, as torchvision keeps it
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def chapter_train_epoch(model, loader, criterion, optimizer, device):
    model.train()
    running_loss, correct, total = 0.0, 0, 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        _, predicted = outputs.max(1)
        total += labels.size(0)
        correct += predicted.eq(labels).sum().item()
    return running_loss / len(loader), 100.0 * correct / total


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def chapter_loop(model_name: str, data_dir: Path, epochs: int, device: str) -> list[float]:
    normalize = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    transform_train = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(32, padding=4),
            transforms.ToTensor(),
            normalize,
        ]
    )
    train_set = load_split("cifar10", "train", data_dir, download=False)
    dataset = PickledCIFAR10(train_set.images, train_set.labels, transform_train)
    loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=2)
    torch.manual_seed(0)
    model = cnnbench.create_model(model_name, input_size=(3, 32, 32), num_classes=10).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.001, weight_decay=1e-4)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
    times = []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        chapter_train_epoch(model, loader, criterion, optimizer, device)
        sync(device)
        times.append(time.perf_counter() - t0)
        scheduler.step()
        print(f"  chapter {model_name}: {times[-1]:.2f} s", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("results/train_speed"))
    parser.add_argument("--chapter-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20, help="cnnbench fp32 epochs (the accuracy check)")
    parser.add_argument("--fast-epochs", type=int, default=20, help="cnnbench bf16 + channels-last epochs")
    parser.add_argument("--nchw-epochs", type=int, default=5, help="cnnbench fp32 NCHW epochs (timing only)")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument(
        "--settings",
        nargs="*",
        default=list(SETTINGS)[:4],
        choices=list(SETTINGS),
        help="cnnbench settings to time",
    )
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = args.device
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(device)
    rows = []
    for name in args.models:
        chapter = chapter_loop(name, args.data_dir, args.chapter_epochs, device)
        runs = {}
        for label in args.settings:
            precision, channels_last, compile_model, epochs_arg = SETTINGS[label]
            epochs = getattr(args, epochs_arg)
            result = cnnbench.train(name, dataset="cifar10", data_dir=args.data_dir, epochs=epochs, precision=precision,
                                    channels_last=channels_last, compile=compile_model, out=args.out, device=device,
                                    checkpoints=False)  # fmt: skip
            runs[label] = result
            print(f"  cnnbench {name} {label}: median {result.summary['median_epoch_s']:.3f} s, "
                  f"best acc {result.summary['best_test_acc']:.2f}%", flush=True)  # fmt: skip
        base = statistics.median(chapter)
        for label, result in runs.items():
            s = result.summary
            rows.append({
                "model": name, "cnnbench_setting": label,
                "chapter_median_epoch_s": base, "chapter_iqr_epoch_s": iqr(chapter), "chapter_epochs_timed": len(chapter),
                "cnnbench_median_epoch_s": s["median_epoch_s"], "cnnbench_iqr_epoch_s": s["iqr_epoch_s"],
                "cnnbench_epochs_timed": s["epochs_done"], "speedup_x": base / s["median_epoch_s"],
                "cnnbench_best_test_acc": s["best_test_acc"], "cnnbench_warmup_s": s["warmup_s"],
                "cnnbench_run_id": s["run_id"], "channels_last": s["channels_last"], "compile": s["compile"],
                "optimizer_impl": s["optimizer_impl"], "batch_size": 128, **env,
            })  # fmt: skip
        pd.DataFrame(rows).to_csv(args.out / "speed.csv", index=False)
    table = pd.DataFrame(rows)[
        [
            "model",
            "cnnbench_setting",
            "chapter_median_epoch_s",
            "cnnbench_median_epoch_s",
            "cnnbench_epochs_timed",
            "speedup_x",
            "cnnbench_best_test_acc",
        ]
    ]
    print(f"\n{env['gpu_name']}, torch {env['torch_version']}, CUDA {env['cuda_version']}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
