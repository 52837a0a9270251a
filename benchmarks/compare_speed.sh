#!/usr/bin/env bash
# Start-to-end wall time of `cnnbench compare lenet vgg resnet --epochs 20 --precision bf16
# --channels-last` (results/compare_speed/): needs a CUDA GPU, cnnbench installed and CIFAR-10 where
# cnnbench finds it. Each mode runs a fresh process; run the script twice on one machine to see the
# runs that find warm caches (cuDNN's and Inductor's). Usage: bash benchmarks/compare_speed.sh OUT [--compile]
set -euo pipefail
out=${1:?usage: compare_speed.sh OUT [--compile]}
shift
start=$(date +%s.%N)
cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last "$@" --out "$out" -q --rerun
end=$(date +%s.%N)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
python3 -c "print(f'wall_s={$end - $start:.2f} gpu=$gpu args=$*')"
