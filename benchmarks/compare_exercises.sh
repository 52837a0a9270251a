#!/usr/bin/env bash
# The chapter's five exercises as committed under results/compare/: needs a CUDA GPU, cnnbench
# installed, and CIFAR-10 where cnnbench finds it (--data-dir or $CNNBENCH_DATA_DIR). Extra arguments
# go to every compare (the committed results used --seeds 3).
# Usage: bash benchmarks/compare_exercises.sh OUT [--seeds 3] [EXERCISE...]
#   EXERCISE: pooling architectures skip_connections batch_norm dropout (default: all)
set -euo pipefail
out=${1:?usage: compare_exercises.sh OUT [compare options] [EXERCISE...]}
shift
opts=()
names=()
for arg in "$@"; do
  case $arg in pooling|architectures|skip_connections|batch_norm|dropout) names+=("$arg") ;; *) opts+=("$arg") ;; esac
done
[ ${#names[@]} -gt 0 ] || names=(pooling architectures skip_connections batch_norm dropout)
declare -A variants=(
  [pooling]="lenet:pool=avg,max cnn_dropout:pool=max,avg"
  [architectures]="lenet vgg resnet"
  [skip_connections]="resnet:skip=true,false"
  [batch_norm]="cifar10net:batch_norm=true,false"
  [dropout]="cnn_dropout:dropout=0,0.3,0.5,0.7"
)
for name in "${names[@]}"; do
  # shellcheck disable=SC2086  # the variants are separate words
  cnnbench compare ${variants[$name]} --epochs 20 --name "$name" --out "$out" -q --force "${opts[@]}"
done
