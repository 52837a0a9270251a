#!/usr/bin/env bash
# Your own images at scale (results/imagefolder_scale/): a generated folder of ImageNet-like JPEGs, then
# `cnnbench train torchvision:resnet18 -d imagefolder --image-size 224` twice (the first run decodes into
# the cache, the second reads it), once streamed from the cache (--data-placement host), and the same
# model on synthetic data at the same size, each under benchmarks/peak_rss.py (peak host memory of the
# process and of everything it starts). Needs a CUDA GPU and cnnbench importable.
# Usage: bash benchmarks/imagefolder_scale.sh OUT [TRAIN_IMAGES] [VAL_IMAGES] [DATA_DIR]
set -euo pipefail
out=$(mkdir -p "${1:?usage: imagefolder_scale.sh OUT [TRAIN] [VAL] [DATA_DIR]}" && cd "$1" && pwd)
train=${2:-100000}
val=${3:-5000}
data=${4:-$(mktemp -d)/jpegs}
here=$(cd "$(dirname "$0")" && pwd)
common=(torchvision:resnet18 --image-size 224 --precision bf16 --channels-last -b 256)
start=$(date +%s.%N)
python3 "$here/make_jpeg_folder.py" "$data" --train "$train" --val "$val" --classes 100 | tee "$out/make.log"
python3 -c "print(f'generated in {$(date +%s.%N) - $start:.1f} s')" | tee -a "$out/make.log"
du -sh "$data/train" | tee -a "$out/make.log"
sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "page cache not dropped (needs root)" | tee -a "$out/make.log"
run() {  # NAME ARGS...: one train under the memory sampler, its log and rows kept
  local name=$1; shift
  python3 "$here/peak_rss.py" "$out/$name.rss.json" -- python3 -m cnnbench train "$@" --out "$out/store" \
    > "$out/$name.log" 2>&1 || { echo "$name failed"; tail -20 "$out/$name.log"; }
  tail -3 "$out/$name.log"
}
imgs=(-d imagefolder --data-dir "$data")
run first "${common[@]}" "${imgs[@]}" --epochs 2 --no-checkpoint
run second "${common[@]}" "${imgs[@]}" --epochs 2 --no-checkpoint
run streamed "${common[@]}" "${imgs[@]}" --epochs 1 --data-placement host --no-checkpoint
run synthetic torchvision:resnet18 -d synthetic -i 3x224x224 --num-classes 100 --synthetic-size "${SYNTH:-20000}" \
  --precision bf16 --channels-last -b 256 --epochs 2 --no-checkpoint
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt" || echo "no GPU" > "$out/gpu.txt"
nproc >> "$out/gpu.txt"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
out = Path(sys.argv[1])
runs = pd.read_csv(out / "store" / "runs.csv")
epochs = []
for _, r in runs.iterrows():
    e = pd.read_csv(Path(r.run_dir) / "epochs.csv")
    epochs.append(e.assign(run_id=r.run_id))
names = ["first", "second", "streamed", "synthetic"]
rows = []
for name, (_, r) in zip(names, runs.iterrows()):
    rss = json.loads((out / f"{name}.rss.json").read_text())
    e = pd.read_csv(Path(r.run_dir) / "epochs.csv")
    rows.append({"run": name, "dataset": r.dataset, "train_samples": r.train_samples, "input_size": r.input_size,
                 "cache_size": r.get("cache_size"), "augment": r.augment, "data_placement": r.data_placement,
                 "data_load_s": round(r.data_load_s, 2), "data_decode_s": round(r.data_decode_s, 2),
                 "decode_images_per_s": round((r.train_samples + r.test_samples) / r.data_decode_s) if r.data_decode_s > 0 else None,
                 "epoch_s": ";".join(f"{v:.2f}" for v in e.epoch_time_s),
                 "epoch_images_per_s": ";".join(f"{v:.0f}" for v in e.images_per_s),
                 "loader_images_per_s": round(r.loader_images_per_s), "step_images_per_s": round(r.step_images_per_s),
                 "input_bound": r.input_bound, "warmup_s": round(r.warmup_s, 2), "wall_s": rss["wall_s"],
                 "peak_rss_GiB": rss["peak_rss_GiB"], "peak_tree_rss_GiB": rss["peak_tree_rss_GiB"],
                 "test_acc_last": round(e.test_acc.iloc[-1], 2)})
table = pd.DataFrame(rows)
table.to_csv(out / "scale.csv", index=False)
print(table.T.to_string())
PY
