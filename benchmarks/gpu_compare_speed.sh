#!/usr/bin/env bash
# One device call: issue 4's speed run (start to end) in the given modes, in order:
#   eager          the command as the issue states it
#   eager-again    the same on a machine that has run these models before (driver and cuDNN caches)
#   compile        the same with --compile (empty Inductor cache on a fresh machine)
#   compile-again  --compile once more, now that this machine's Inductor cache holds the compiled steps
# Usage (device machine, repo root): bash benchmarks/gpu_compare_speed.sh OUTDIR [MODE...]  (default: eager compile)
source "$(dirname "$0")/device_env.sh" "$1"
shift
modes=("$@")
[ $# -eq 0 ] && modes=(eager compile)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader)
for mode in "${modes[@]}"; do
  case $mode in
    eager) extra="" name=architectures_bf16 ;;
    eager-again) extra="" name=architectures_bf16_again ;;
    compile) extra="--compile" name=architectures_bf16_compile ;;
    compile-again) extra="--compile" name=architectures_bf16_compile_again ;;
    *) echo "unknown mode $mode"; exit 1 ;;
  esac
  start=$(date +%s.%N)
  timeout 200 python3 -m cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last $extra --name $name --out "$res" --rerun -q > "$out/$name.log" 2>&1
  end=$(date +%s.%N)
  echo "wall_s=$(python3 -c "print(round($end-$start, 2))") command='cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last $extra' mode=$mode gpu='$gpu' caches='python bytecode and matplotlib fonts warm'" | tee "$res/compare/$name/wall_time.txt"
  save
done
