#!/usr/bin/env bash
# One device call: where SimpleResNet's and VGG-16's step time goes, and what compile buys.
# Usage (device machine, repo root): bash benchmarks/gpu_explore.sh OUTDIR
source "$(dirname "$0")/device_env.sh" "$@"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv
fast="fp32 fp32+CL bf16+CL bf16+CL+fusedAdam fp32+compile fp32+CL+compile bf16+CL+compile"
timeout 330 python3 benchmarks/step_explore.py --kernels bf16 --models simple_resnet vgg16 --settings $fast \
  --out "$out/step_explore.csv" > "$out/step_explore.log" 2>&1
grep -E "ms/step|failed" "$out/step_explore.log"
# The Trainer's compile path (compiled full-batch step captured as a CUDA graph), end to end.
timeout 100 python3 benchmarks/speed_explore.py --epochs 2 --models simple_resnet \
  --settings bf16+channels_last bf16+channels_last+compile --out "$out/speed_explore.csv" 2>&1 | grep -v Warn | tail -4
# Issue 4's overhead: everything but the epochs, from a 2-epoch bf16 compare.
start=$(date +%s.%N)
timeout 90 python3 -m cnnbench compare lenet vgg resnet --epochs 2 --precision bf16 --channels-last --out /tmp/res2 -q > "$out/compare2.log" 2>&1
end=$(date +%s.%N)
echo "compare_2_epochs_wall_s=$(python3 -c "print(round($end-$start, 2))")" | tee -a "$out/compare2.log"
cp /tmp/res2/runs.csv "$out/compare2_runs.csv" 2>/dev/null
python3 -X importtime -c "import cnnbench.cli, torch" 2> "$out/importtime.log"; sort -t'|' -k2 -n "$out/importtime.log" | tail -3
timeout 120 python3 benchmarks/step_explore.py --models simple_resnet --settings bf16+CL+compile-max-autotune \
  --out "$out/step_explore_max_autotune.csv" 2>&1 | grep -E "ms/step|failed"
