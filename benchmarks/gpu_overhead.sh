#!/usr/bin/env bash
# One device call: the GPU tests on the current code; whether cuDNN autotuning pays for its warm-up
# (each setting in its own process, so no autotuning cache is shared); where a short compare spends
# the time that is not epochs (cProfile of `cnnbench compare ... --epochs 2`).
# Usage (device machine, repo root): bash benchmarks/gpu_overhead.sh OUTDIR
source "$(dirname "$0")/device_env.sh" "$@"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv
timeout 180 python3 -m pytest -q tests/test_gpu.py > "$out/gpu_tests.log" 2>&1; tail -1 "$out/gpu_tests.log"
mkdir -p "$res/explore"
for model in vgg16 simple_resnet; do
  for setting in bf16+CL+fusedAdam bf16+CL+fusedAdam+heuristics fp16+CL+fusedAdam; do
    timeout 60 python3 benchmarks/step_explore.py --models $model --settings $setting \
      --out "$res/explore/step_${model}_${setting}.csv" 2>&1 | grep -E "ms/step|failed"
  done
done
for precision in bf16 fp16; do
  timeout 60 python3 benchmarks/step_explore.py --models simple_resnet --settings --kernels $precision \
    --out /tmp/unused.csv > "$res/explore/kernels_simple_resnet_$precision.txt" 2>&1
done
start=$(date +%s.%N)
timeout 120 python3 -m cProfile -o "$res/explore/compare2.prof" -m cnnbench compare lenet vgg resnet \
  --epochs 2 --precision bf16 --channels-last --out /tmp/res2 -q > "$res/explore/compare2.log" 2>&1
end=$(date +%s.%N)
echo "compare_2_epochs_under_cprofile_wall_s=$(python3 -c "print(round($end-$start, 2))")" | tee -a "$res/explore/compare2.log"
cp /tmp/res2/runs.csv "$res/explore/compare2_runs.csv"
python3 -X importtime -c "import cnnbench.cli, torch" 2> "$res/explore/importtime.log"
save
