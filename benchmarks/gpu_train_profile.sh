#!/usr/bin/env bash
# One device call: GPU tests, the train speed benchmark, profile fidelity and the chapter's profile.
# Usage (device machine, repo root): bash benchmarks/gpu_train_profile.sh OUTDIR
set -u
out=${1:?OUTDIR}
mkdir -p "$out" /tmp/res
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 .data/make_cifar10.py /tmp/data >/dev/null
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$out/gpu_tests.log" 2>&1; tail -3 "$out/gpu_tests.log"
python3 benchmarks/profile_fidelity.py --out /tmp/res/profile_fidelity.csv 2>&1 | tee "$out/profile_fidelity.log" | tail -12
python3 benchmarks/profile_chapter.py --out /tmp/res/profile_chapter > "$out/profile_chapter.log" 2>&1; tail -34 "$out/profile_chapter.log"
python3 benchmarks/train_speed.py --data-dir /tmp/data --out /tmp/res/train_speed > "$out/train_speed.log" 2>&1; tail -9 "$out/train_speed.log"
tar czf "$out/results.tgz" --exclude='*.pt' -C /tmp/res .
