#!/usr/bin/env bash
# Several runs at once, and one run over several GPUs (results/multi_gpu/). Needs CUDA GPUs, cnnbench
# installed and CIFAR-10 where cnnbench finds it. Every mode starts from an empty results folder, so
# nothing is reused, and is timed start to end in the same call on the same machine:
#   sequential       today's compare: the three runs one after another on GPU 0
#   gpus=1,jobs=3    the three at once on GPU 0 under CUDA MPS, and again without MPS (time-sliced)
#   gpus=all         one run per GPU (2 or more GPUs)
#   DDP              profile resnet18 -i 3x224x224 --gpus 1,2,4 (synthetic), and simple_resnet trained
#                    for 20 epochs on 1 GPU and data-parallel on 2 (2 or more GPUs)
# Usage: bash benchmarks/multi_gpu.sh OUT
set -uo pipefail
out=${1:?usage: multi_gpu.sh OUT}
mkdir -p "$out"
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
recipe=(lenet vgg resnet --epochs 20 --precision bf16 --channels-last -q)
timed() {  # timed NAME cnnbench ARGS...: wall time of one command, its log in OUT/NAME.log
  local name=$1; shift
  local start end
  start=$(python3 -c 'import time; print(time.time())')
  "$@" > "$out/$name.log" 2>&1
  echo "exit=$?" >> "$out/$name.log"
  end=$(python3 -c 'import time; print(time.time())')
  echo "$name $(python3 -c "print(f'{$end - $start:.2f}')")" >> "$out/wall.txt"
}
timed sequential cnnbench compare "${recipe[@]}" --out "$out/sequential"
timed jobs3_mps cnnbench compare "${recipe[@]}" --gpus 1 --jobs-per-gpu 3 --out "$out/jobs3_mps"
timed jobs3_no_mps cnnbench compare "${recipe[@]}" --gpus 1 --jobs-per-gpu 3 --no-mps --out "$out/jobs3_no_mps"
counts=1
if [ "$gpus" -ge 2 ]; then
  timed gpus_all cnnbench compare "${recipe[@]}" --gpus all --out "$out/gpus_all"
  counts=1,2
  [ "$gpus" -ge 4 ] && counts=1,2,4
  timed ddp_train_1 cnnbench train resnet --epochs 20 --precision bf16 --channels-last -q --no-cuda-graphs --out "$out/ddp_train"
  timed ddp_train_2 cnnbench train resnet --epochs 20 --precision bf16 --channels-last -q --gpus 2 --out "$out/ddp_train"
fi
timed scaling cnnbench profile resnet18 -i 3x224x224 --num-classes 1000 --precision bf16 --channels-last \
  --gpus $counts --batch-sizes 128 --warmup 10 --iters 30 --out "$out/scaling"
cat "$out/wall.txt"
