"""Every torchvision classifier at its own input size: cnnbench's parameters and forward MACs against the
figures torchvision publishes with its weights (``num_params``, ``_ops`` in GMACs), the heads rule
applied (GoogLeNet's published count leaves its auxiliary heads out). CPU only, no weights downloaded.

    python benchmarks/zoo_counts.py --out results/zoo        # torchvision.csv
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import torch
import torchvision

from cnnbench.models import get_model_info
from cnnbench.models.build import build_meta
from cnnbench.models.counting import count_flops

HEADS = {"googlenet": {"aux_logits": "false"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    rows = []
    for name in torchvision.models.list_models(module=torchvision.models):
        weights = torchvision.models.get_model_weights(name).DEFAULT
        info = get_model_info(f"torchvision:{name}")
        options = HEADS.get(name, {})
        start = time.perf_counter()
        params = sum(p.numel() for p in build_meta(info.name, options, info.default_input, 1000).parameters())
        forward, train = count_flops(info.name, options, info.default_input, 1000)
        published = float(weights.meta["_ops"])
        decimals = len(str(weights.meta["_ops"]).split(".")[1]) if "." in str(weights.meta["_ops"]) else 0
        gmacs = forward / 2 / 1e9
        rows.append({
            "model": name, "input_size": "x".join(map(str, info.default_input)), "options": ";".join(
                f"{k}={v}" for k, v in options.items()), "params": params,
            "published_params": weights.meta["num_params"], "params_match": params == weights.meta["num_params"],
            "GMACs": round(gmacs, 6), "published_GMACs": published,
            "GMACs_match_at_printed_precision": round(gmacs, decimals) == published,
            "train_over_forward": round(train / forward, 3), "seconds": round(time.perf_counter() - start, 2),
        })  # fmt: skip
        print(rows[-1], flush=True)
    with open(args.out / "torchvision.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    params_ok = sum(r["params_match"] for r in rows)
    macs_ok = sum(r["GMACs_match_at_printed_precision"] for r in rows)
    print(
        f"{len(rows)} models: parameters {params_ok}/{len(rows)}, MACs {macs_ok}/{len(rows)} (torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
