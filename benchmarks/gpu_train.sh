#!/usr/bin/env bash
# One device call: GPU tests, profile fidelity, the train speed benchmark, the chapter's profile.
# Usage (device machine, repo root): bash benchmarks/gpu_train.sh OUTDIR
source "$(dirname "$0")/device_env.sh" "$@"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$out/gpu_tests.log" 2>&1; tail -3 "$out/gpu_tests.log"
timeout 60 python3 benchmarks/profile_fidelity.py --out /tmp/res/profile_fidelity.csv 2>&1 | tee "$out/profile_fidelity.log" | tail -4
timeout 330 python3 benchmarks/train_speed.py --data-dir /tmp/data --out /tmp/res/train_speed > "$out/train_speed.log" 2>&1; tail -16 "$out/train_speed.log"
save
timeout 90 python3 benchmarks/profile_chapter.py --out /tmp/res/profile_chapter > "$out/profile_chapter.log" 2>&1; tail -3 "$out/profile_chapter.log"
save
