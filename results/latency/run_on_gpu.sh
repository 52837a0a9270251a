#!/bin/bash
# On the GPU machine, from the repository root, with .whl/ carried: (1) the published chapter comparison
# (compare/architectures, trained on an H200) timed for use, compare --from --latency on a copy, through
# all four backends; (2) batch-1 latency of five models by backend, then cnnbench's eager and ONNX Runtime
# figures checked against hand loops with CUDA events in interleaved rounds (benchmarks/latency.py).
# Rows, folders and logs go to $OUT.
set -u
OUT=${OUT:?}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/gpu.txt"
python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" >> "$OUT/gpu.txt" 2>&1 \
  || echo "onnxruntime not installed on this machine: its rows say so" >> "$OUT/gpu.txt"
cp -r results/compare/architectures "$OUT/architectures"
start=$(date +%s)
python -m cnnbench compare --from "$OUT/architectures" --latency --backend eager,compile,onnxruntime,aotinductor \
  --device cuda --wide > "$OUT/architectures_latency.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" >> "$OUT/architectures_latency.log"
timeout 420 python benchmarks/latency.py --device cuda --requests 300 --rounds 5 --out "$OUT/latency_gpu" \
  > "$OUT/latency_gpu.log" 2>&1
echo "exit $?" >> "$OUT/latency_gpu.log"
find "$OUT" -name "*.lock" -delete
# What comes back is a few files: the folders travel as one archive.
(cd "$OUT" && tar czf gpu_latency.tgz architectures latency_gpu && rm -rf architectures latency_gpu)
