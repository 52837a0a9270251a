#!/usr/bin/env bash
# One comparison's start-to-end wall time from two checkouts of cnnbench, alternated in one sitting on one
# machine (A B A B ...), each run from an empty results folder and counts cache, so a change's cost is a ratio measured on
# the same card. Needs a CUDA GPU, cnnbench's dependencies and CIFAR-10 where cnnbench finds it.
# Usage: bash benchmarks/compare_checkouts.sh OUT BEFORE_DIR AFTER_DIR [ROUNDS] [-- COMPARE ARGS...]
#   default comparison: lenet vgg resnet --epochs 20 --precision bf16 --channels-last
# Writes OUT/wall.csv (checkout, round, wall_s, the runs' training time), OUT/<checkout>_<round>.log and the
# runs' rows as OUT/<checkout>_<round>.runs.csv.
set -euo pipefail
out=$(mkdir -p "${1:?usage: compare_checkouts.sh OUT BEFORE_DIR AFTER_DIR [ROUNDS] [-- COMPARE ARGS...]}" && cd "$1" && pwd)
before=$(cd "${2:?}" && pwd)
after=$(cd "${3:?}" && pwd)
rounds=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(lenet vgg resnet --epochs 20 --precision bf16 --channels-last)
mkdir -p "$out"
echo "checkout,round,wall_s,train_s,command" > "$out/wall.csv"
for round in $(seq 1 "$rounds"); do
  cd "$(mktemp -d)"  # not the repository: `python -m` imports from the working folder first
  for name in before after; do
    dir=$before; [ $name = after ] && dir=$after
    store=$(mktemp -d)
    start=$(python3 -c 'import time; print(time.time())')
    # an empty FLOP-counts cache, as on a fresh machine
    CNNBENCH_CACHE_DIR=$(mktemp -d) PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" python3 -m cnnbench compare "${args[@]}" --out "$store" -q \
      > "$out/${name}_${round}.log" 2>&1
    end=$(python3 -c 'import time; print(time.time())')
    train=$(python3 -c "import csv; print(round(sum(float(r['total_train_s']) for r in csv.DictReader(open('$store/runs.csv'))), 2))")
    echo "$name,$round,$(python3 -c "print(round($end - $start, 2))"),$train,\"cnnbench compare ${args[*]}\"" >> "$out/wall.csv"
    cp "$store/runs.csv" "$out/${name}_${round}.runs.csv"  # the runs' accuracies, to check nothing else moved
    rm -rf "$store"
  done
done
cat "$out/wall.csv"
