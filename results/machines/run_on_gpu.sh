#!/bin/bash
# On the GPU machine, from the repository root, with .whl/ (fvcore, submitit) and .data/ (CIFAR-10's
# bundle and make_cifar10.py) carried: the chapter's comparison (2 epochs, 3 seeds) on the GPU, LeNet-5's
# part of it on the same host's CPU, then the Python API's check. Stores and logs go to $OUT.
set -u
OUT=${OUT:?}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
python .data/make_cifar10.py /tmp/data > /dev/null
export CNNBENCH_DATA_DIR=/tmp/data
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader > "$OUT/gpu.txt"
lscpu | grep -E "Model name|^CPU\(s\)" > "$OUT/cpu.txt"
start=$(date +%s)
python -m cnnbench compare lenet vgg resnet --epochs 2 --seeds 3 --name chapter --out "$OUT/gpu_store" -q \
  > "$OUT/gpu_compare.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" >> "$OUT/gpu_compare.log"
start=$(date +%s)
python -m cnnbench compare lenet --epochs 2 --seeds 3 --device cpu --name chapter --out "$OUT/host_cpu_store" -q \
  > "$OUT/cpu_compare.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" >> "$OUT/cpu_compare.log"
# what travels back: the stores' tables and run folders, not the image caches
find "$OUT" -name "*.lock" -delete
mkdir -p "$OUT/api"
OUT="$OUT/api" bash results/api/gpu_check.sh
