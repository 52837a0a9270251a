#!/usr/bin/env bash
# The chapter's exercises 2-5 as committed under results/compare/: needs a CUDA GPU (about 6 minutes
# on an H200), cnnbench installed, and CIFAR-10 where cnnbench finds it (--data-dir or
# $CNNBENCH_DATA_DIR). Usage: bash benchmarks/compare_exercises.sh OUT
set -euo pipefail
out=${1:?usage: compare_exercises.sh OUT}
for args in "lenet vgg resnet --name architectures" "resnet:skip=true,false --name skip_connections" \
            "cifar10net:batch_norm=true,false --name batch_norm" "cnn_dropout:dropout=0,0.3,0.5,0.7 --name dropout"; do
  # shellcheck disable=SC2086  # the variants and the name are separate words
  cnnbench compare $args --epochs 20 --out "$out" -q --force
done
