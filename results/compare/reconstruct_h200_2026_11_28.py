"""Rebuild the tidy rows of the 2026-11-28 H200 comparisons from their terminal output.

That device session ran every comparison, but its result folders did not come back: the tarball also
held VGG-16 checkpoints and went over the 16 MB the device returns per file. What came back is the
terminal output (h200-2026-11-28-logs/ and the tool's output tail, transcribed below). Each row here is
one run (one seed); numbers are as printed (epoch times to 1 ms, accuracies to 0.01 points). Per-epoch
rows were not recovered, so these folders have no accuracy-per-epoch plot. The statuses of the fp32
architecture runs were cut off the printed lines: vgg16's 10.00% is "not learning" by cnnbench's rule
(best accuracy under chance + 2 points), the other two finished all 20 epochs far above chance.
MACs and training FLOPs per sample are recomputed with the same FlopCounterMode code the runs used.

    python results/compare/reconstruct_h200_2026_11_28.py && for d in architectures architectures_bf16 \
        skip_connections batch_norm dropout; do cnnbench compare --from results/compare/$d; done
"""

import json
import math
from pathlib import Path

import pandas as pd

from cnnbench.summary import count_flops

HERE = Path(__file__).parent
NAN = math.nan
CONDITIONS = {
    "dataset": "cifar10",
    "data_source": "CIFAR-10 JPEG re-encoded copy (../shared/datasets, make_cifar10.py)",
    "input_size": "3x32x32", "epochs": 20, "batch_size": 128, "optimizer": "adam", "lr": 0.001,
    "weight_decay": 0.0001, "scheduler": "step", "step_size": 20, "gamma": 0.5, "label_smoothing": 0.0,
    "compile": False, "cuda_graphs": True, "augment": True, "device": "cuda", "gpu_name": "NVIDIA H200",
    "torch_version": "2.11.0+cu130", "cuda_version": "13.0", "cudnn_version": 91900, "cnnbench_version": "0.1.0",
}  # fmt: skip
# variant, model, options, params, epoch s, IQR s, total s, best %, final %, conv. epochs, gap pp, status
RUNS = {
    ("architectures", "fp32"): [
        ("lenet5", "lenet5", {}, 62_006, 0.190, 0.003, 3.8, 63.60, 63.60, 13.0, -2.54, "ok"),
        ("vgg16", "vgg16", {}, 33_638_218, 1.939, 0.003, 38.7, 10.00, 10.00, 1.0, -0.24, "not learning"),
        ("simple_resnet", "simple_resnet", {}, 2_777_674, 2.339, 0.001, 46.8, 83.65, 83.53, 10.0, 4.78, "ok"),
    ],
    ("architectures_bf16", "bf16"): [
        ("lenet5", "lenet5", {}, 62_006, 0.174, 0.002, 3.5, 63.22, 63.22, 13.0, -2.59, "ok"),
        ("vgg16", "vgg16", {}, 33_638_218, 1.246, 0.005, 24.9, 10.00, 10.00, 1.0, -0.23, "not learning"),
        ("simple_resnet", "simple_resnet", {}, 2_777_674, 1.077, 0.002, 21.5, 84.04, 83.15, 8.0, 5.23, "ok"),
    ],
    ("skip_connections", "fp32"): [
        # skip=true is the architectures run, reused (same conditions)
        ("simple_resnet:skip=true", "simple_resnet", {"skip": "true"}, 2_777_674, 2.339, 0.001, 46.8, 83.65, 83.53, 10.0, 4.78, "ok"),
        ("simple_resnet:skip=false", "simple_resnet", {"skip": "false"}, 2_735_946, 2.141, 0.002, 42.8, 81.42, 79.81, 14.0, NAN, "ok"),
    ],
    ("batch_norm", "fp32"): [
        ("cifar10net:batch_norm=true", "cifar10net", {"batch_norm": "true"}, 4_507_722, 0.816, 0.001, 16.3, 83.36, 82.15, 10.0, NAN, "ok"),
        ("cifar10net:batch_norm=false", "cifar10net", {"batch_norm": "false"}, 4_505_994, 0.714, 0.003, 14.2, 77.60, 77.29, 10.0, NAN, "ok"),
    ],
    ("dropout", "fp32"): [
        (f"cnn_dropout:dropout={p}", "cnn_dropout", {"dropout": p}, 4_404_362, t, iqr, tot, best, final, conv, gap, "ok")
        for p, t, iqr, tot, best, final, conv, gap in (
            ("0", 0.438, 0.004, 8.7, 76.78, 76.72, 10.0, 0.43),
            ("0.3", 0.446, 0.003, 8.9, 76.04, 76.01, 8.0, -3.34),
            ("0.5", 0.443, 0.004, 8.9, 74.64, 74.36, 10.0, -5.68),
            ("0.7", 0.450, 0.004, 9.0, 65.74, 65.74, 11.0, -7.84),
        )
    ],
}  # fmt: skip
NOTES = {
    "architectures_bf16": ["wall time of the whole command (process start to files written): 81.03 s on the H200, "
                           "with checkpoints written every epoch; the target was under 45 s"],
    "skip_connections": ["simple_resnet:skip=true seed 0: reused the architectures run (identical conditions)"],
}  # fmt: skip


def main() -> None:
    for (name, precision), runs in RUNS.items():
        rows = []
        for variant, model, options, params, ep, iqr, total, best, final, conv, gap, status in runs:
            fwd, train = count_flops(model, options, (3, 32, 32), 10)
            rows.append({
                "variant": variant, "model": model, "options": ";".join(f"{k}={v}" for k, v in options.items()),
                "seed": 0, "status": status, "reused": name == "skip_connections" and options.get("skip") == "true",
                "run_id": "", "params": params, "forward_MACs_per_sample": fwd // 2, "train_FLOPs_per_sample": train,
                "epochs_done": 20, "median_epoch_time_s": ep, "iqr_epoch_time_s": iqr, "total_train_time_s": total,
                "best_test_acc_pct": best, "final_test_acc_pct": final, "final_train_acc_pct": final + gap,
                "epochs_to_95pct_of_best": conv, "train_test_gap_pct_points": gap, "warmup_s": NAN, "peak_gpu_mem_MiB": NAN,
            })  # fmt: skip
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(folder / "tidy.csv", index=False)
        conditions = {**CONDITIONS, "precision": precision, "channels_last": precision == "bf16"}
        notes = ["reconstructed from the terminal output of the H200 run (see reconstruct_h200_2026_11_28.py); "
                 "per-epoch rows were not recovered", *NOTES.get(name, [])]  # fmt: skip
        (folder / "conditions.json").write_text(
            json.dumps({"conditions": conditions, "notes": notes}, indent=2)
        )


if __name__ == "__main__":
    main()
