#!/bin/bash
# On a CUDA machine, from the repository root: the GPU tests, then the Python API and the command line
# on the same card (profile of ResNet-18, a small comparison). Logs go to $OUT (default results/api).
set -u
OUT=${OUT:-results/api}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/gpu.txt"
python -m pytest -q -o addopts="" -p no:cacheprovider tests/test_gpu.py > "$OUT/gpu_tests.log" 2>&1
echo "exit $?" >> "$OUT/gpu_tests.log"
python - > "$OUT/api_cuda.log" 2>&1 <<'PY'
import cnnbench

profiled = cnnbench.profile("resnet18", dataset="cifar10", batch_sizes=[128], modes="train", device="cuda",
                            out="/tmp/cnnbench-api")
print(profiled)
print(profiled.rows[["model", "mode", "batch_size", "step_ms_median", "step_ms_iqr", "samples_per_s"]].to_string())
pooling = cnnbench.compare(["lenet:pool=avg,max"], dataset="synthetic", input_size="3x32x32", synthetic_size=2048,
                           epochs=2, seeds=2, device="cuda", out="/tmp/cnnbench-api")
print(pooling)
print(cnnbench.runs(out="/tmp/cnnbench-api")[["run_id", "model", "options", "seed", "status", "device_kind"]])
PY
echo "exit $?" >> "$OUT/api_cuda.log"
python -m cnnbench profile resnet18 -d cifar10 --batch-sizes 128 --mode train --device cuda --out /tmp/cnnbench-cli \
  > "$OUT/cli_profile.log" 2>&1
echo "exit $?" >> "$OUT/cli_profile.log"
