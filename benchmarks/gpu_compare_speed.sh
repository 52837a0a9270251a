#!/usr/bin/env bash
# One device call: issue 4's speed run alone (start to end), then the same with --compile.
# Usage (device machine, repo root): bash benchmarks/gpu_compare_speed.sh OUTDIR [--no-compile-run]
source "$(dirname "$0")/device_env.sh" "$1"
extras=("" "--compile")
[ "${2:-}" = "--no-compile-run" ] && extras=("")
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader)
for extra in "${extras[@]}"; do
  name=architectures_bf16${extra:+_compile}
  start=$(date +%s.%N)
  timeout 200 python3 -m cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last $extra --name $name --out "$res" -q > "$out/$name.log" 2>&1
  end=$(date +%s.%N)
  echo "wall_s=$(python3 -c "print(round($end-$start, 2))") command='cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last $extra' gpu='$gpu' caches='python bytecode and matplotlib fonts warm'" | tee "$res/compare/$name/wall_time.txt"
  save
done
