#!/usr/bin/env bash
# The chapter's architecture comparison under the accuracy protocol (final accuracy, a 5,000-image
# validation split selecting the model, 3 seeds), which also gives its fp32 energy; the same comparison
# in bf16 + channels-last for the energy of a precision; and NVML's counter against sampled power over
# one run. Needs a CUDA GPU, cnnbench installed and CIFAR-10 where cnnbench finds it.
# Usage: bash benchmarks/accuracy_energy.sh OUT   (results/compare/ and results/energy/ hold ours)
set -euo pipefail
out=${1:?usage: accuracy_energy.sh OUT}
cnnbench compare lenet vgg resnet --epochs 20 --seeds 3 --val-split 5000 --name architectures \
  --out "$out" -q --force
cnnbench compare lenet vgg resnet --epochs 20 --seeds 3 --precision bf16 --channels-last --name energy_bf16 \
  --out "$out" -q --force
python benchmarks/energy_check.py --out "$out/energy_check"
