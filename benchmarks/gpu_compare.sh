#!/usr/bin/env bash
# One device call: the speed run and the chapter's comparisons on the CIFAR-10 copy.
# Usage (device machine, repo root): bash benchmarks/gpu_compare.sh OUTDIR
source "$(dirname "$0")/device_env.sh" "$@"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$out/gpu_tests.log" 2>&1; tail -2 "$out/gpu_tests.log"

# Issue 4's speed target: start to end, from process start, 60 epochs, files written.
start=$(date +%s.%N)
python3 -m cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last --name architectures_bf16 --out "$res" -q > "$out/architectures_bf16.log" 2>&1
end=$(date +%s.%N)
echo "wall_s=$(python3 -c "print(round($end-$start, 2))") command='cnnbench compare lenet vgg resnet --epochs 20 --precision bf16 --channels-last' gpu='$(nvidia-smi --query-gpu=name --format=csv,noheader)'" | tee "$res/compare/architectures_bf16/wall_time.txt"
save
for args in "lenet vgg resnet --name architectures" "resnet:skip=true,false --name skip_connections" \
            "cifar10net:batch_norm=true,false --name batch_norm" "cnn_dropout:dropout=0,0.3,0.5,0.7 --name dropout"; do
  log="$out/compare_${args##* }.log"
  python3 -m cnnbench compare $args --epochs 20 --out "$res" -q > "$log" 2>&1
  grep -E "^\│|reused|error" "$log" | cut -c1-160
  save
done
